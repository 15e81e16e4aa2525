"""Opening the ``packet`` GRE port (fastpptp/_port_packet.pyx) on an interface: the
TPACKET_V2 receive ring (V3 on request) and its cBPF filter, the AF_PACKET sender, the TCX ingress program that
stops the kernel's own processing of the PPTP GRE the ring takes (fastpptp.net.bpf), and
the nexthop tracker (fastpptp.net.nexthop) that fills the port's table.

    port = open_packet_port("eth0", ["198.51.100.1"], raw_gre_socket)
    port.tracker.add_peer("203.0.113.7")         # when a call to that peer comes up
    ...
    port.close()                                  # tracker, TCX program, ring, sockets

``packet_unavailable_reason(ifname)`` says why ``--gre-io auto`` must not pick this port
(None when it can): no CAP_NET_RAW, not an Ethernet interface, no TPACKET ring, no TCX
(kernel < 6.6) or no CAP_BPF.  Everything is opened in the calling thread's network
namespace.  Without the TCX program the kernel would answer every GRE packet the ring took
with ICMP protocol-unreachable (no raw socket bound) or hand it to the raw socket as well
(duplicates), so ``drop=False`` exists for tests only.
"""
from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from typing import Any

from fastpptp.net import nexthop

__all__ = ["open_packet_port", "packet_unavailable_reason", "ifindex_of",
           "interface_towards", "DEFAULT_RING"]

AF_PACKET = 17
SOL_PACKET = 263
PACKET_VERSION = 10
TPACKET_V2 = 1
TPACKET_V3 = 2

# 64 blocks of 256 KiB (16 MiB): 8 192 frames of 2 KiB, each a full-size GRE packet.
# TPACKET_V2 by default: every frame is ours the moment the kernel fills it.  TPACKET_V3
# packs frames tighter but hands a block over only when it is full or ``retire_ms`` after
# its first packet: at low rates every packet waits up to that long, and a TCP ACK stream
# is a low rate.  Measured (docs/BENCHMARKS.md "TPACKET_V2 against V3"): ping through the
# tunnel 1.16 ms median / 5.0 ms max on V3 against 0.32 / 1.2 on V2, and single-stream TCP
# faster on V2.  V3 stays selectable (``tpacket_version=3``) for comparison.
DEFAULT_RING = {"block_size": 1 << 18, "block_nr": 64, "frame_size": 2048, "retire_ms": 1,
                "tpacket_version": 2}
# Bytes of a TPACKET_V2 frame before the Ethernet header's end: TPACKET_ALIGN(tpacket2_hdr +
# sockaddr_ll + 16) = 80 (net/packet/af_packet.c tpacket_rcv: netoff); with margin.
V2_FRAME_OVERHEAD = 96


def ifindex_of(ifname_or_index: str | int) -> int:
    """The interface's index in the calling thread's namespace (OSError ENODEV if none)."""
    if isinstance(ifname_or_index, int):
        try:
            socket.if_indextoname(ifname_or_index)
        except OSError:
            raise OSError(errno.ENODEV, f"no interface with index {ifname_or_index}") from None
        return ifname_or_index
    try:
        return socket.if_nametoindex(ifname_or_index)
    except OSError:
        raise OSError(errno.ENODEV, f"no such interface: {ifname_or_index!r}") from None


def interface_towards(peer: str) -> int | None:
    """The ifindex the kernel routes ``peer`` through (None when unreachable or local)."""
    with nexthop.Rtnl() as rtnl:
        r = nexthop.query_route(rtnl, peer)
    if r is None or r.rtype != nexthop.RTN_UNICAST:
        return None
    return r.oif


def _link(ifindex: int) -> nexthop.LinkInfo:
    with nexthop.Rtnl() as rtnl:
        link = nexthop.query_link(rtnl, ifindex)
    if link is None:
        raise OSError(errno.ENODEV, f"no interface with index {ifindex}")
    return link


def packet_unavailable_reason(ifname_or_index: str | int | None) -> str | None:
    """Why the packet port cannot run on this interface here, or None if it can.  Probes
    for real (an AF_PACKET socket with TPACKET_V3, a TCX program attached and detached at
    once), so the answer holds for this process's capabilities and this kernel."""
    if ifname_or_index is None:
        return "no interface carries the tunnel's GRE (no route to the peer?)"
    try:
        ifindex = ifindex_of(ifname_or_index)
        link = _link(ifindex)
    except OSError as exc:
        return f"interface {ifname_or_index}: {exc.strerror or exc}"
    if link.arphrd != nexthop.ARPHRD_ETHER or not link.mac:
        return f"interface {ifname_or_index} is not Ethernet (link type {link.arphrd})"
    try:
        s = socket.socket(AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return "AF_PACKET needs CAP_NET_RAW"
        return f"AF_PACKET socket: {exc.strerror}"
    with s:
        try:
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        except OSError as exc:
            return f"TPACKET_V3 unsupported: {exc.strerror}"
    try:
        from fastpptp.net import bpf
        h = bpf.attach_gre_ingress_drop(ifindex, [])
    except ImportError:
        return "fastpptp.net.bpf is missing"
    except OSError as exc:
        return f"TCX ingress drop program unavailable (needs CAP_BPF, CAP_NET_ADMIN, Linux 6.6+): {exc}"
    h.close()
    return None


def open_packet_port(ifname_or_index: str | int, local_addrs: Iterable[str],
                     raw_socket: socket.socket | int | None, batch: int = 64, *,
                     drop: bool = True, track: bool = True, refresh: float = 2.0,
                     nexthops: int = 1024, **ring: int) -> Any:
    """Open a PacketPort on the interface: the ring accepts PPTP GRE to ``local_addrs``,
    the TCX drop program (``drop``) keeps the kernel from also processing it, and a
    started NexthopTracker (``track``) is at ``port.tracker``.  ``raw_socket`` (IPPROTO_GRE)
    is the slow path, None for none.  ``ring``: block_size, block_nr, frame_size, retire_ms
    (DEFAULT_RING).  Raises OSError (and cleans up) when any part cannot be set up."""
    from fastpptp._port_packet import PacketPort  # type: ignore[import-not-found]  # compiled
    ifindex = ifindex_of(ifname_or_index)
    link = _link(ifindex)
    if link.arphrd != nexthop.ARPHRD_ETHER or not link.mac:
        raise OSError(errno.EOPNOTSUPP, f"interface {ifname_or_index} is not Ethernet")
    unknown = set(ring) - set(DEFAULT_RING)
    if unknown:
        raise TypeError(f"unknown ring parameters: {sorted(unknown)}")
    params = {**DEFAULT_RING, **ring}
    if params["tpacket_version"] == 2 and "frame_size" not in ring:
        # a V2 frame holds one packet: size the slots to the link (jumbo frames included)
        need = link.mtu + V2_FRAME_OVERHEAD
        while params["frame_size"] < need:
            params["frame_size"] *= 2
        params["block_size"] = max(params["block_size"], params["frame_size"])
    room = params["frame_size"] - V2_FRAME_OVERHEAD if params["tpacket_version"] == 2 \
        else params["block_size"] - 256
    if room < link.mtu:
        # a frame longer than its slot is truncated in the ring (and the TCX program has
        # dropped it from the stack): it would only ever be counted, never delivered
        what = "frame_size" if params["tpacket_version"] == 2 else "block_size"
        raise ValueError(f"{what} {params[what]} too small for MTU {link.mtu}")
    addrs = [str(a) for a in local_addrs]
    # ring first, drop program second: in between the kernel may also see a packet (a
    # duplicate the engine's sequence window absorbs), never a packet neither sees
    port = PacketPort(ifindex, link.mac, addrs, raw_socket, batch=batch, nexthops=nexthops,
                      **params)
    try:
        if drop:
            from fastpptp.net import bpf
            port.owned.append(bpf.attach_gre_ingress_drop(ifindex, addrs))
        if track:
            port.tracker = nexthop.NexthopTracker(port, ifindex, refresh=refresh).start()
    except BaseException:
        port.close()
        raise
    return port
