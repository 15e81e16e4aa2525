"""Choosing the GRE port (fastpptp/net/greport.py): the tunnel interface, forced and auto
modes, the fallback's reason, and the peer refcount that drives the next-hop tracker."""
from __future__ import annotations

import logging
import os
import subprocess

import pytest

from fastpptp._greport import RawPort
from fastpptp.net import greport, netns


def _sh(ns: str, cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], check=True)


@pytest.fixture
def veth_ns(request):
    """One namespace with lo and a veth to a second namespace: 198.51.100.1/24 here,
    198.51.100.2 there; a default route via .2 (inside the namespace only)."""
    tag = f"{os.getpid() % 100000}"
    a, b = f"fpt-sel-a-{tag}", f"fpt-sel-b-{tag}"
    for n in (a, b):
        netns.create(n)
        request.addfinalizer(lambda n=n: netns.remove(n, missing_ok=True))
    subprocess.run(["ip", "-n", a, "link", "add", "sel0", "type", "veth", "peer", "name", "sel1",
                    "netns", b], check=True)
    _sh(a, "ip link set lo up && ip addr add 198.51.100.1/24 dev sel0 && ip link set sel0 up "
           "&& ip route add default via 198.51.100.2")
    _sh(b, "ip link set lo up && ip addr add 198.51.100.2/24 dev sel1 && ip link set sel1 up")
    return a


def test_unknown_mode_is_refused():
    with pytest.raises(greport.GreIoError, match="not one of"):
        greport.open_gre_io("fast")


@pytest.mark.netns
def test_tunnel_interface_by_peer_by_local_and_by_default_route(veth_ns):
    with netns.entered(veth_ns):
        by_peer = greport.tunnel_interface(None, "198.51.100.2")
        by_local = greport.tunnel_interface("198.51.100.1", None)
        by_default = greport.tunnel_interface(None, None)
        loopback = greport.tunnel_interface("127.0.0.1", "127.0.0.1")
    for it in (by_peer, by_local, by_default):
        assert it is not None and it.name == "sel0" and it.addrs == ["198.51.100.1"]
    assert loopback is None


@pytest.mark.netns
def test_raw_forced_and_auto_on_loopback_falls_back_with_its_reason(veth_ns, caplog):
    caplog.set_level(logging.INFO, logger="fastpptp.greio")
    with netns.entered(veth_ns):
        raw = greport.open_gre_io("raw", local="198.51.100.1", batch=8)
        auto = greport.open_gre_io("auto", local="127.0.0.1", batch=8)
        with pytest.raises(greport.GreIoError, match="xdp cannot run"):
            greport.open_gre_io("xdp", local="127.0.0.1")
    try:
        assert raw.mode == "raw" and isinstance(raw.port, RawPort) and raw.why == "--gre-io raw"
        assert auto.mode == "raw" and "no interface carries the tunnel" in auto.why
        lines = [r.getMessage() for r in caplog.records if r.name == "fastpptp.greio"]
        assert any(m.startswith("GRE I/O: raw:") and "--gre-io raw" in m for m in lines), lines
        assert any("auto: no interface carries the tunnel" in m for m in lines), lines
    finally:
        raw.close()
        auto.close()
    raw.close()                                      # idempotent


class _Tracker:
    def __init__(self):
        self.calls = []

    def add_peer(self, ip, local=None):
        self.calls.append(("add", ip))

    def remove_peer(self, ip):
        self.calls.append(("remove", ip))

    def close(self):
        self.calls.append(("close",))


def test_peers_are_refcounted_per_control_connection():
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    t = _Tracker()
    io = greport.GreIo(RawPort(s, 4), s, "packet", "test", tracker=t)
    io.peer_up("192.0.2.7")
    io.peer_up("192.0.2.7")                          # a second control connection from it
    io.peer_down("192.0.2.7")
    io.wait_idle()
    assert t.calls == [("add", "192.0.2.7")]
    io.peer_down("192.0.2.7")
    io.peer_down("192.0.2.9")                        # never up: nothing
    io.wait_idle()
    assert t.calls == [("add", "192.0.2.7"), ("remove", "192.0.2.7")]
    io.close()
    assert t.calls[-1] == ("close",) and s.fileno() == -1
