"""A private network namespace with only lo up, and raw GRE sockets in it: the engine and
GRE-port tests that need real raw sockets on loopback without touching the root namespace."""
from __future__ import annotations

import os
import socket


def private_netns(request, prefix: str = "fpt-engine"):
    """Create a namespace named after the test (removed when it ends), lo up; returns
    (fastpptp.net.netns, name)."""
    from fastpptp.net import netns
    name = f"{prefix}-{os.getpid()}-{request.node.name[-20:]}".replace("[", "-").replace("]", "")
    name = "".join(ch for ch in name if ch.isalnum() or ch in "-_.")[:60]
    netns.create(name)
    request.addfinalizer(lambda: netns.remove(name, missing_ok=True))
    with netns.entered(name):
        os.system("ip link set lo up")
        lo_up = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
        lo_up.close()
    return netns, name


def raw_gre(netns, name: str, local: str, peer: str | None = None) -> socket.socket:
    """A raw GRE socket (fastpptp.net.rawgre) opened inside namespace ``name``."""
    from fastpptp.net import rawgre
    with netns.entered(name):
        return rawgre.open_gre_socket(local, peer=peer)

