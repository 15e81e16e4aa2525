"""Two namespaces joined by a veth for the fast-GRE-port tests (fastpptp.net.bpf, XdpPort):
A 198.51.100.1/24 <-veth-> B 198.51.100.2/24, plus GRE frame builders and the kernel
counters the tests read.

Built on fastpptp.tools.netrig (names with pid + counter, cleanup by PID, namespaces removed
on exit).  Nothing is routed to or from the root namespace."""
from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator

from fastpptp.net import netns
from fastpptp.tools.flood import ip_checksum
from fastpptp.tools.netrig import NsPair, two_namespaces

ADDR_A = "198.51.100.1"
ADDR_B = "198.51.100.2"
OTHER = "203.0.113.9"          # an address nobody here owns
IPPROTO_GRE = 47
ETH_P_ALL = 0x0003


@contextlib.contextmanager
def gre_pair(prefix: str = "xdp", mtu: int | None = None) -> Iterator[NsPair]:
    """Two namespaces, veth between them: A 198.51.100.1/24, B 198.51.100.2/24."""
    with two_namespaces(mtu, prefix, 3.0, addr_a=ADDR_A, addr_b=ADDR_B) as rig:
        yield rig


def ifindex(ns: str, dev: str) -> int:
    with netns.entered(ns):
        return socket.if_nametoindex(dev)


def pptp_gre(call_id: int = 7, seq: int | None = 1, payload: bytes = b"\xff\x03\x00\x21" + b"p" * 60,
             version: int = 1, proto: int = 0x880B) -> bytes:
    """A GRE header (RFC 2637 §4.1: K=1, S=1 when seq, version 1, protocol 0x880B) + payload."""
    flags = 0x2000 | (0x1000 if seq is not None else 0) | version
    hdr = struct.pack("!HHHH", flags, proto, len(payload), call_id)
    if seq is not None:
        hdr += struct.pack("!I", seq)
    return hdr + payload


def raw_gre_socket(ns: str, bind: str | None = None) -> socket.socket:
    s = netns.open_socket(ns, socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)     # SO_RCVBUFFORCE: no drops in the tests
    if bind:
        s.bind((bind, 0))
    return s


def packet_socket(ns: str, dev: str) -> socket.socket:
    s = netns.open_socket(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((dev, ETH_P_ALL))
    s.setblocking(False)
    return s


def drain(s: socket.socket, limit: int = 10000) -> list[bytes]:
    out = []
    for _ in range(limit):
        try:
            out.append(s.recv(70000))
        except BlockingIOError:
            break
    return out


def snmp(ns: str, proto: str = "Ip") -> dict[str, int]:
    """/proc/net/snmp's ``proto`` line of namespace ``ns`` (Ip: InUnknownProtos, ...)."""
    with netns.entered(ns), open("/proc/thread-self/net/snmp") as f:
        lines = [ln.split() for ln in f if ln.startswith(proto + ":")]
    names, values = lines[0][1:], lines[1][1:]
    return {n: int(v) for n, v in zip(names, values, strict=True)}


def netstat(ns: str) -> dict[str, int]:
    """/proc/net/snmp's Icmp line of namespace ``ns`` (OutDestUnreachs, ...)."""
    return snmp(ns, "Icmp")


def have_root() -> bool:
    return os.geteuid() == 0


def icmp_echo(ns: str, dst: str, count: int = 2, timeout: float = 3.0) -> int:
    """Ping ``dst`` from ``ns`` with a raw ICMP socket (no ping binary needed); the number
    of echo replies received."""
    import select
    import time
    s = netns.open_socket(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    got = 0
    try:
        for seq in range(count):
            body = struct.pack("!BBHHH", 8, 0, 0, 0x4650, seq) + b"fastpptp-ping"
            body = body[:2] + struct.pack("!H", ip_checksum(body + b"\0" * (len(body) % 2))) + body[4:]
            s.sendto(body, (dst, 0))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
                if not r:
                    break
                pkt = s.recv(2048)
                ihl = (pkt[0] & 0x0F) * 4
                typ, _code, _ck, ident, rseq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
                if typ == 0 and ident == 0x4650 and rseq == seq:
                    got += 1
                    break
    finally:
        s.close()
    return got
