"""The layer-2 details that bypassing the IP stack makes ours (issue 9): for each GRE peer,
which interface and next hop the kernel's routing table picks, the next hop's MAC from the
kernel's neighbour table, our source address and the MTU; kept fresh from rtnetlink events.

The fast ports (``packet``, ``xdp``) write Ethernet + IPv4 themselves, so they need, per
IPv4 peer, a *nexthop entry*: (next-hop MAC, source address, MTU).  Without one the frame
goes through the port's slow path, the kernel's raw GRE socket, which routes, resolves ARP
(so sending through it is what fills the neighbour table for us) and fragments.

Layers:

* sans-I/O: :func:`decide` turns the kernel's answers (:class:`RouteInfo` from a route
  lookup, :class:`LinkInfo`, :class:`NeighInfo`) into a :class:`Nexthop` or a
  :class:`SlowPath` with the reason.  Pure, table-tested.
* queries: :func:`query_route`, :func:`query_link`, :func:`query_neigh`, :func:`resolve`
  through one :class:`Rtnl` request socket (never ``ip``; not pyroute2, see :class:`Rtnl`).
* :class:`NexthopTracker`: the peers of one port; resolves a peer when added, then a thread
  listens to RTM_NEWNEIGH/DELNEIGH, RTM_NEWROUTE/DELROUTE and RTM_NEWLINK (MTU, MAC, down)
  and re-resolves the peers concerned, and retries slow peers every ``refresh`` seconds.
  The thread only ever calls the port's ``set_nexthop``/``clear_nexthop`` (which take the
  port's table lock, never the GIL-holding engine's), so it is safe beside asyncio.

Neighbour freshness: the kernel only re-validates a neighbour entry (STALE -> DELAY -> PROBE,
RFC 1122 §2.3.2.1 / RFC 4861 §7.3 state machine, which Linux also runs for ARP) when *it*
sends to it, and our frames bypass it.  So the tracker "uses" the entry of every fast peer
each ``refresh`` (RTM_NEWNEIGH with NTF_USE, what ``ip neigh replace ... use`` sends): the
kernel then confirms it or notices it changed or died, and the events bring the result here.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import ipaddress
import logging
import os
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("fastpptp.net.nexthop")

__all__ = [
    "ARPHRD_ETHER", "NUD_INCOMPLETE", "NUD_REACHABLE", "NUD_STALE", "NUD_DELAY", "NUD_PROBE",
    "NUD_FAILED", "NUD_NOARP", "NUD_PERMANENT", "RTN_UNICAST", "RTN_LOCAL",
    "RouteInfo", "LinkInfo", "NeighInfo", "Nexthop", "SlowPath", "Decision",
    "nexthop_address", "neighbour_usable", "decide", "affected_by_neigh", "affected_by_route",
    "RtEvent", "parse_rtnl_events", "open_rtnl_events",
    "Rtnl", "query_route", "query_link", "query_neigh", "use_neighbour", "resolve",
    "NexthopTracker", "name_os_thread",
]

# linux/neighbour.h (NUD_*), linux/if_arp.h, linux/rtnetlink.h
NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_USE = 0x01
# states in which the entry's link-layer address is the kernel's current belief (include/net/
# neighbour.h NUD_VALID minus NOARP, which has no address on an Ethernet link)
NUD_USABLE = NUD_PERMANENT | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY
ARPHRD_ETHER = 1
RTN_UNICAST = 1
RTN_LOCAL = 2
IFF_UP = 0x1
RTMGRP_LINK = 0x1
RTMGRP_NEIGH = 0x4
RTMGRP_IPV4_ROUTE = 0x40
RTAX_MTU = 2
MIN_MTU = 68                # RFC 791: every IPv4 module forwards 68-byte datagrams


# ------------------------------------------------------------------------------ sans-I/O


@dataclass(frozen=True)
class RouteInfo:
    """The kernel's answer to ``route get PEER``."""

    rtype: int                  # RTN_UNICAST, RTN_LOCAL, ...
    oif: int | None
    gateway: str | None         # None: the peer is on-link
    prefsrc: str | None
    mtu: int | None = None      # the route's own MTU metric (RTAX_MTU), if any


@dataclass(frozen=True)
class LinkInfo:
    index: int
    mtu: int
    mac: str | None
    arphrd: int
    up: bool


@dataclass(frozen=True)
class NeighInfo:
    ifindex: int
    dst: str
    lladdr: str | None
    state: int


@dataclass(frozen=True)
class Nexthop:
    """Send to ``peer`` the fast way: Ethernet to ``mac`` (of ``via``), IPv4 from ``src``,
    datagrams up to ``mtu`` bytes."""

    peer: str
    via: str                    # the next hop: the gateway, or the peer itself when on-link
    mac: str
    src: str
    mtu: int
    # a static (NUD_PERMANENT) entry: never "used" -- NTF_USE turns it into a fresh
    # INCOMPLETE one on Linux 6.x (found on 6.18), losing the administrator's MAC
    static: bool = False


@dataclass(frozen=True)
class SlowPath:
    """Send to ``peer`` through the kernel's raw socket, and why.  ``via`` is the next hop
    whose neighbour entry, once resolved, would make it fast (None if that would not help)."""

    peer: str
    reason: str
    via: str | None = None
    kick: bool = False          # the kernel is not resolving ``via`` by itself: ask it to


Decision = Nexthop | SlowPath


def nexthop_address(peer: str, route: RouteInfo) -> str:
    """Whose MAC a frame to ``peer`` carries: the gateway's, or the peer's when on-link."""
    return route.gateway if route.gateway else peer


def neighbour_usable(neigh: NeighInfo | None) -> bool:
    return neigh is not None and bool(neigh.lladdr) and bool(neigh.state & NUD_USABLE)


def decide(peer: str, ifindex: int, route: RouteInfo | None, link: LinkInfo | None,
           neigh: NeighInfo | None, local: str | None = None) -> Decision:
    """Fast (a :class:`Nexthop`) or slow (a :class:`SlowPath`) for GRE to ``peer`` out of
    the port's interface ``ifindex``, from the kernel's answers.  ``local`` forces our
    source address (the server's address the peer's control connection came to); else the
    route's preferred source."""
    if route is None:
        return SlowPath(peer, "no route")
    if route.rtype != RTN_UNICAST:
        return SlowPath(peer, "local destination" if route.rtype == RTN_LOCAL
                        else f"route type {route.rtype}")
    if route.oif != ifindex:
        return SlowPath(peer, f"routed via ifindex {route.oif}, not {ifindex}")
    if link is None or link.index != ifindex:
        return SlowPath(peer, f"interface {ifindex} gone")
    if link.arphrd != ARPHRD_ETHER or not link.mac:
        return SlowPath(peer, f"interface {ifindex} is not Ethernet")
    if not link.up:
        return SlowPath(peer, f"interface {ifindex} down")
    src = local or route.prefsrc
    if not src:
        return SlowPath(peer, "no source address")
    via = nexthop_address(peer, route)
    if neigh is None:
        return SlowPath(peer, f"no neighbour entry for {via}", via, kick=True)
    if neigh.dst != via or neigh.ifindex != ifindex:
        return SlowPath(peer, f"neighbour answer for {neigh.dst}, not {via}", via)
    if not neighbour_usable(neigh):
        # INCOMPLETE: ARP is under way, the event will come; FAILED/NONE: nobody is asking
        busy = bool(neigh.state & NUD_INCOMPLETE)
        return SlowPath(peer, f"neighbour {via} unresolved (state 0x{neigh.state:02x})", via,
                        kick=not busy)
    mtu = link.mtu if not route.mtu else min(link.mtu, route.mtu)
    if mtu < MIN_MTU:
        return SlowPath(peer, f"MTU {mtu} below {MIN_MTU}")
    return Nexthop(peer, via, str(neigh.lladdr).lower(), src, min(mtu, 65535),
                   static=bool(neigh.state & NUD_PERMANENT))


def affected_by_route(decisions: dict[str, Decision], peers: Iterable[str],
                      prefix: str | None) -> list[str]:
    """The peers whose route lookup a route to ``prefix`` may change: those inside it, and
    those whose next hop (a gateway) is inside it.  ``prefix`` None (not told): every peer.
    A server's per-session routes (a /32 to each client's tunnel address on the TUN) thus
    re-resolve nobody, where each used to re-resolve every peer (issue 9, churn).

    Called once per route event, so a /32 (one per session) costs string compares only, and
    shorter prefixes integer masks: with ipaddress objects per peer and event, a 1 000-session
    connect storm cost the tracker thread 3.7 s of GIL-holding CPU (1 000 events x 1 000
    peers) -- time the server's event loop could not negotiate in (issue 10, first packets)."""
    if prefix is None:
        return list(peers)
    try:
        net = ipaddress.IPv4Network(prefix, strict=False)
    except ValueError:
        return list(peers)
    out = []
    if net.prefixlen == 32:
        a = str(net.network_address)
        for p in peers:
            d = decisions.get(p)
            if p == a or (d is not None and d.via == a):
                out.append(p)
        return out
    base, mask = int(net.network_address), int(net.netmask)
    for p in peers:
        d = decisions.get(p)
        if _ip_int(p) & mask == base or (
                d is not None and d.via is not None and _ip_int(d.via) & mask == base):
            out.append(p)
    return out


@functools.lru_cache(maxsize=1 << 16)
def _ip_int(addr: str) -> int:
    """A dotted-quad IPv4 address (as the tracker keeps them) as an integer."""
    return int.from_bytes(socket.inet_aton(addr), "big")


def affected_by_neigh(decisions: dict[str, Decision], ifindex: int, neigh_dst: str,
                      neigh_ifindex: int) -> list[str]:
    """The peers whose fast/slow decision depends on the neighbour entry ``neigh_dst``."""
    if neigh_ifindex != ifindex:
        return []
    return [p for p, d in decisions.items() if d.via == neigh_dst]


@dataclass(frozen=True)
class RtEvent:
    """One rtnetlink notification, reduced to what the tracker acts on."""

    kind: str                   # "neigh", "route", "link"
    family: int
    ifindex: int                # neigh, link; 0 for route
    dst: str | None = None      # neigh: NDA_DST (IPv4 only); route: the prefix "a.b.c.d/len"
                                # (IPv4; None when not told: then it may concern any peer)


_NLMSG_HDR = struct.Struct("=IHHII")
_RTA = struct.Struct("=HH")
RTM_NEWLINK, RTM_DELLINK, RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWNEIGH, RTM_DELNEIGH = 16, 17, 24, 25, 28, 29
NDA_DST = 1


def _nlmsgs(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence number, body) of each netlink message in one datagram; every length
    checked, a malformed header ends the datagram."""
    off = 0
    while off + _NLMSG_HDR.size <= len(data):
        ln, typ, _flags, seq, _pid = _NLMSG_HDR.unpack_from(data, off)
        if ln < _NLMSG_HDR.size or off + ln > len(data):
            return
        yield typ, seq, data[off + _NLMSG_HDR.size: off + ln]
        off += (ln + 3) & ~3


def parse_rtnl_events(data: bytes) -> list[RtEvent]:
    """The notifications in one rtnetlink datagram (linux/rtnetlink.h layouts: nlmsghdr,
    then ifinfomsg / rtmsg / ndmsg and rtattrs).  Malformed or foreign messages are
    skipped; every length is checked before use."""
    out: list[RtEvent] = []
    for typ, _seq, body in _nlmsgs(data):
        if typ in (RTM_NEWLINK, RTM_DELLINK) and len(body) >= 16:
            fam, _pad, _typ, index = struct.unpack_from("=BBHi", body)
            out.append(RtEvent("link", fam, index))
        elif typ in (RTM_NEWROUTE, RTM_DELROUTE) and len(body) >= 12:
            prefix = None
            if body[0] == socket.AF_INET and body[1] <= 32:
                raw = _attrs(body, 12).get(RTA_DST)
                if raw is not None and len(raw) == 4:
                    prefix = f"{socket.inet_ntoa(raw)}/{body[1]}"
                elif raw is None and body[1] == 0:
                    prefix = "0.0.0.0/0"                        # a default route
            out.append(RtEvent("route", body[0], 0, prefix))
        elif typ in (RTM_NEWNEIGH, RTM_DELNEIGH) and len(body) >= 12:
            fam, _p1, _p2, index = struct.unpack_from("=BBHi", body)
            raw = _attrs(body, 12).get(NDA_DST) if fam == socket.AF_INET else None
            dst = socket.inet_ntoa(raw) if raw is not None and len(raw) == 4 else None
            out.append(RtEvent("neigh", fam, index, dst))
    return out


def open_rtnl_events() -> socket.socket:
    """A non-blocking rtnetlink socket (calling thread's namespace) subscribed to link,
    neighbour and IPv4 route notifications.  Plain socket, not pyroute2: its own reader
    would buffer messages where select() cannot see them."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                      | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)     # SO_RCVBUFFORCE: bursts of events
        s.bind((0, RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE))
    except BaseException:
        s.close()
        raise
    return s


# ------------------------------------------------------------------------------ queries

NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_GETLINK, RTM_GETROUTE, RTM_GETNEIGH = 18, 26, 30
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_METRICS = 1, 4, 5, 7, 8
IFLA_ADDRESS, IFLA_MTU, IFLA_EXT_MASK = 1, 4, 29
RTEXT_FILTER_SKIP_STATS = 1 << 3
NDA_LLADDR = 2
_RTMSG = struct.Struct("=BBBBBBBBI")        # rtmsg: family, dst_len, src_len, tos, table, ...
_IFINFO = struct.Struct("=BxHiII")          # ifinfomsg: family, type, index, flags, change
_NDMSG = struct.Struct("=BxxxiHBB")         # ndmsg: family, ifindex, state, flags, type


def _attrs(body: bytes, off: int) -> dict[int, bytes]:
    """The rtattrs of ``body`` from ``off`` (type -> payload; the nested flag cleared), every
    length checked; a malformed one ends the list."""
    out: dict[int, bytes] = {}
    while off + _RTA.size <= len(body):
        alen, atyp = _RTA.unpack_from(body, off)
        if alen < _RTA.size or off + alen > len(body):
            break
        out[atyp & 0x3FFF] = body[off + _RTA.size: off + alen]
        off += (alen + 3) & ~3
    return out


def _rta(atyp: int, data: bytes) -> bytes:
    a = _RTA.pack(_RTA.size + len(data), atyp) + data
    return a + b"\0" * (-len(a) % 4)


def _u32(b: bytes | None) -> int | None:
    return struct.unpack("=I", b)[0] if b is not None and len(b) == 4 else None


def _ip4(b: bytes | None) -> str | None:
    return socket.inet_ntoa(b) if b is not None and len(b) == 4 else None


class Rtnl:
    """One rtnetlink request socket (calling thread's namespace): a request, then its replies
    up to the kernel's acknowledgement (NLM_F_ACK), nothing left unread.

    Not pyroute2 on purpose (issue 9): pyroute2 0.9's synchronous ``IPRoute`` leaves the
    acknowledgement of every single-message request (``route get``, ``get_links(i)``,
    ``neigh get``) unread in its own queue forever -- one bytes object per request in the
    reading thread's malloc arena, 75 kB of RSS per session in a churn -- and spends ~340 µs
    of GIL per request.  Here a request is a few struct calls and two syscalls."""

    RCVBUF = 1 << 16

    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self._seq = 0
        self._s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                socket.NETLINK_ROUTE)
        try:
            self._s.bind((0, 0))
            self._pid = self._s.getsockname()[0]
        except BaseException:
            self._s.close()
            raise

    def close(self) -> None:
        self._s.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, typ: int, body: bytes, flags: int = 0) -> list[tuple[int, bytes]]:
        """Send one request; its reply messages as (type, body).  OSError with the kernel's
        errno on an NLMSG_ERROR, ETIMEDOUT when no acknowledgement comes in ``timeout``.
        Messages of an earlier request (one that timed out) are skipped by sequence number."""
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        seq = self._seq
        self._s.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), typ,
                                     NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0) + body)
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError(errno.ETIMEDOUT, f"rtnetlink request {typ}: no answer")
            self._s.settimeout(left)
            try:
                data = self._s.recv(self.RCVBUF)
            except TimeoutError:
                continue
            for mtyp, mseq, mbody in _nlmsgs(data):
                if mseq != seq:
                    continue
                if mtyp == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", mbody)[0] if len(mbody) >= 4 else errno.EPROTO
                    if err:
                        raise OSError(err, os.strerror(err))
                    return out
                if mtyp == NLMSG_DONE:
                    return out
                out.append((mtyp, mbody))


def _v4(addr: str) -> str:
    a = ipaddress.ip_address(addr)
    if a.version != 4:
        raise ValueError(f"{addr}: the GRE ports carry IPv4 only")
    return str(a)


def query_route(rtnl: Rtnl, peer: str) -> RouteInfo | None:
    """``route get PEER`` (None when unreachable)."""
    body = _RTMSG.pack(socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0) + \
        _rta(RTA_DST, socket.inet_aton(_v4(peer)))
    try:
        msgs = rtnl.request(RTM_GETROUTE, body)
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL, errno.ESRCH):
            return None
        raise
    for typ, m in msgs:
        if typ != RTM_NEWROUTE or len(m) < _RTMSG.size:
            continue
        a = _attrs(m, _RTMSG.size)
        mtu = None
        if RTA_METRICS in a:
            mtu = _u32(_attrs(a[RTA_METRICS], 0).get(RTAX_MTU))
        return RouteInfo(rtype=m[7], oif=_u32(a.get(RTA_OIF)), gateway=_ip4(a.get(RTA_GATEWAY)),
                         prefsrc=_ip4(a.get(RTA_PREFSRC)), mtu=mtu or None)
    return None


def _mac(b: bytes | None) -> str | None:
    return ":".join(f"{x:02x}" for x in b) if b else None


def query_link(rtnl: Rtnl, ifindex: int) -> LinkInfo | None:
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + \
        _rta(IFLA_EXT_MASK, struct.pack("=I", RTEXT_FILTER_SKIP_STATS))
    try:
        msgs = rtnl.request(RTM_GETLINK, body)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    for typ, m in msgs:
        if typ != RTM_NEWLINK or len(m) < _IFINFO.size:
            continue
        _fam, arphrd, index, flags, _chg = _IFINFO.unpack_from(m)
        a = _attrs(m, _IFINFO.size)
        return LinkInfo(index=index, mtu=_u32(a.get(IFLA_MTU)) or 0, mac=_mac(a.get(IFLA_ADDRESS)),
                        arphrd=arphrd, up=bool(flags & IFF_UP))
    return None


def query_neigh(rtnl: Rtnl, ifindex: int, addr: str) -> NeighInfo | None:
    """The neighbour entry of ``addr`` on ``ifindex`` (RTM_GETNEIGH, Linux 5.0+), or None."""
    body = _NDMSG.pack(socket.AF_INET, ifindex, 0, 0, 0) + \
        _rta(NDA_DST, socket.inet_aton(_v4(addr)))
    try:
        msgs = rtnl.request(RTM_GETNEIGH, body)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV):
            return None
        raise
    for typ, m in msgs:
        if typ != RTM_NEWNEIGH or len(m) < _NDMSG.size:
            continue
        _fam, index, state, _flags, _typ = _NDMSG.unpack_from(m)
        a = _attrs(m, _NDMSG.size)
        dst = _ip4(a.get(NDA_DST))
        if dst is None:
            continue
        return NeighInfo(ifindex=index, dst=dst, lladdr=_mac(a.get(NDA_LLADDR)), state=state)
    return None


def use_neighbour(rtnl: Rtnl, ifindex: int, addr: str) -> None:
    """Have the kernel resolve / re-validate ``addr`` on ``ifindex`` as if it were sending
    to it (RTM_NEWNEIGH with NTF_USE: neigh_event_send; creates the entry if absent)."""
    body = _NDMSG.pack(socket.AF_INET, ifindex, 0, NTF_USE, 0) + \
        _rta(NDA_DST, socket.inet_aton(_v4(addr)))
    try:
        rtnl.request(RTM_NEWNEIGH, body, NLM_F_CREATE | NLM_F_REPLACE)
    except OSError as exc:
        log.debug("NTF_USE for %s on ifindex %d: %s", addr, ifindex, exc)


_ASK: Any = object()         # resolve(route=...): not known, ask the kernel


def resolve(rtnl: Rtnl, peer: str, ifindex: int, local: str | None = None, *,
            cache: dict[Any, Any] | None = None, route: RouteInfo | None = _ASK) -> Decision:
    """Ask the kernel (route, link, neighbour) and :func:`decide`.

    ``cache``: a dict shared by the resolutions of one pass (one batch of events, one tick):
    the link and each next hop's neighbour entry are then asked once per pass, not once per
    peer -- 1 000 peers behind one gateway cost 1 000 route lookups + 2 queries, not 3 000.
    ``route``: the peer's route when already known (a neighbour event changes no route)."""
    if route is _ASK:
        route = query_route(rtnl, peer)
    c: dict[Any, Any] = cache if cache is not None else {}
    if "link" not in c:
        c["link"] = query_link(rtnl, ifindex)
    neigh = None
    if route is not None and route.rtype == RTN_UNICAST and route.oif == ifindex:
        via = nexthop_address(peer, route)
        key = ("neigh", via)
        if key not in c:
            c[key] = query_neigh(rtnl, ifindex, via)
        neigh = c[key]
    return decide(peer, ifindex, route, c["link"], neigh, local)


# ------------------------------------------------------------------------------ tracker


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def name_os_thread(name: str) -> None:
    """Name the calling thread where ``/proc/PID/task/TID/comm`` and ``top -H`` show it
    (prctl PR_SET_NAME, 15 bytes kept).  Python before 3.14 leaves every thread "python";
    telling the tracker's thread (its CPU, its malloc arena) from the engine's I/O thread is
    how issue 9's fast-port RSS growth was pinned down.  Best effort: never raises."""
    with contextlib.suppress(Exception):
        _libc().prctl(15, name.encode()[:15], 0, 0, 0)      # PR_SET_NAME



class NexthopTable(Protocol):
    """What the tracker drives: the port's nexthop table (PacketPort, XdpPort)."""

    def set_nexthop(self, peer: str, mac: str, src: str, mtu: int) -> None: ...
    def clear_nexthop(self, peer: str) -> Any: ...


class NexthopTracker:
    """Keeps ``port``'s nexthop table right for the peers added, on interface ``ifindex``.

    Create it in the network namespace of the interface: its thread is started by the
    constructor, so it inherits the calling thread's namespace, and opens its two netlink
    sockets there: an :class:`Rtnl` for the queries, one for the neighbour/IPv4 route/link
    notifications (:func:`open_rtnl_events`, parsed by :func:`parse_rtnl_events`).
    All netlink work happens on that one thread; ``add_peer``/``refresh_all`` from another thread (asyncio's,
    the control plane's) are handed to it and waited for (a few netlink round trips: set-up
    time, never the packet path).  ``close()`` stops it (eventfd wake-up, joined).

    The thread only calls the port's ``set_nexthop``/``clear_nexthop`` (which take the
    port's table lock without the GIL-holding engine), and ``on_change(peer, decision)``
    whenever a peer's decision changes."""

    FULL_EVERY = 15         # ticks between two resolutions of the fast peers (path MTU)

    def __init__(self, port: NexthopTable, ifindex: int, *, refresh: float = 2.0,
                 on_change: Callable[[str, Decision], None] | None = None,
                 timeout: float = 10.0) -> None:
        if refresh <= 0:
            raise ValueError("refresh must be > 0")
        self.port = port
        self.ifindex = ifindex
        self.refresh = refresh
        self.on_change = on_change
        self.timeout = timeout
        self._lock = threading.RLock()
        self._peers: dict[str, str | None] = {}         # peer -> forced local address
        self._refs: dict[str, int] = {}                   # peer -> add_peer calls not removed
        self._decisions: dict[str, Decision] = {}
        self._routes: dict[str, RouteInfo | None] = {}    # peer -> its route when last resolved
        self._requests: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]]
        self._requests = queue.SimpleQueue()
        self._stop = False
        self._ticks = 0
        self.events = 0                                   # netlink events seen (diagnostics)
        self.resolutions = 0
        self._q: Any = None
        self._ev: Any = None
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        ready: Future[None] = Future()
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, args=(ready,), name=f"nexthop-tracker-{ifindex}", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=timeout)
        except BaseException:
            self.close()
            raise

    def start(self) -> NexthopTracker:
        """Kept for symmetry: the thread runs from the constructor on."""
        return self

    # -- peers

    def add_peer(self, peer: str, local: str | None = None) -> Decision:
        """Track ``peer`` (IPv4), optionally with our source address forced to ``local``;
        returns the decision made now (a slow one is retried and followed by events).
        Counted: several calls from one peer address (behind one NAT) each add it, and it
        is dropped when the last of them is removed."""
        peer = _v4(peer)
        loc = _v4(local) if local else None
        return self._call(self._add, peer, loc)            # type: ignore[no-any-return]

    def remove_peer(self, peer: str) -> None:
        peer = _v4(peer)
        with self._lock:
            if peer not in self._peers:
                return
            self._refs[peer] -= 1
            if self._refs[peer] > 0:
                return
            del self._refs[peer]
            del self._peers[peer]
            self._decisions.pop(peer, None)
            self._routes.pop(peer, None)
            self.port.clear_nexthop(peer)

    def decision(self, peer: str) -> Decision | None:
        with self._lock:
            return self._decisions.get(_v4(peer))

    def peers(self) -> dict[str, Decision]:
        with self._lock:
            return dict(self._decisions)

    def refresh_all(self) -> None:
        """Re-resolve every peer now."""
        self._call(self._refresh_all)

    # -- handing work to the thread

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if threading.current_thread() is self._thread:
            return fn(*args)
        if self._thread is None or self._stop:
            raise RuntimeError("nexthop tracker closed")
        fut: Future[Any] = Future()
        self._requests.put((fn, args, fut))
        os.eventfd_write(self._wake, 1)
        return fut.result(timeout=self.timeout)

    def _add(self, peer: str, local: str | None) -> Decision:
        with self._lock:
            self._peers[peer] = local
            self._refs[peer] = self._refs.get(peer, 0) + 1
            return self._resolve(peer)

    def _refresh_all(self) -> None:
        cache: dict[Any, Any] = {}
        with self._lock:
            for peer in list(self._peers):
                self._resolve(peer, cache)

    # -- on the thread (lock held)

    def _resolve(self, peer: str, cache: dict[Any, Any] | None = None, *,
                 same_route: bool = False) -> Decision:
        """Decide ``peer`` again.  ``cache``: shared by the peers of one pass (see
        :func:`resolve`); ``same_route``: only a neighbour entry changed, the peer's route
        is the one found last time (no route lookup).  This thread holds the GIL while it
        parses, so its cost per session matters: at 1 000 sessions a per-peer x per-event
        cost starved the server's event loop for seconds (issue 10)."""
        self.resolutions += 1
        c: dict[Any, Any] = cache if cache is not None else {}
        try:
            if same_route and peer in self._routes:
                route = self._routes[peer]
            else:
                route = self._routes[peer] = query_route(self._q, peer)
            d = resolve(self._q, peer, self.ifindex, self._peers.get(peer), cache=c, route=route)
        except OSError as exc:
            self._routes.pop(peer, None)
            d = SlowPath(peer, f"netlink: {exc}")
        if isinstance(d, SlowPath) and d.kick and d.via is not None and ("kicked", d.via) not in c:
            # nobody sent to it yet, or the last try failed: have the kernel ARP now (the
            # neighbour event brings the answer); with FAILED this repeats every tick.  Once
            # per next hop and pass: the peers behind it share its entry
            c[("kicked", d.via)] = True
            use_neighbour(self._q, self.ifindex, d.via)
        old = self._decisions.get(peer)
        self._decisions[peer] = d
        if isinstance(d, Nexthop):
            self.port.set_nexthop(peer, d.mac, d.src, d.mtu)
        elif isinstance(old, Nexthop) or old is None:
            self.port.clear_nexthop(peer)
        if d != old:
            if isinstance(d, Nexthop):
                log.info("GRE to %s: fast path via %s (%s), src %s, mtu %d", peer, d.via, d.mac,
                         d.src, d.mtu)
            else:
                log.info("GRE to %s: slow path (%s)", peer, d.reason)
            if self.on_change is not None:
                self.on_change(peer, d)
        return d

    def _on_events(self, events: Iterable[RtEvent]) -> None:
        todo: set[str] = set()              # a route or the link may have changed: resolve
        neigh_only: set[str] = set()        # only their next hop's entry changed
        with self._lock:
            for e in events:
                self.events += 1
                if e.kind == "neigh":
                    if e.dst is not None:
                        neigh_only.update(affected_by_neigh(self._decisions, self.ifindex, e.dst,
                                                            e.ifindex))
                elif e.kind == "route":
                    if e.family == socket.AF_INET:
                        todo.update(affected_by_route(self._decisions, self._peers, e.dst))
                elif e.ifindex == self.ifindex:     # link: MTU, MAC, up/down, gone
                    todo.update(self._peers)
            # one pass: the link and each next hop's entry asked once for all its peers
            cache: dict[Any, Any] = {}
            for peer in todo:
                if peer in self._peers:
                    self._resolve(peer, cache)
            for peer in neigh_only - todo:
                if peer in self._peers:
                    self._resolve(peer, cache, same_route=True)

    def _tick(self) -> None:
        """Every ``refresh``: retry slow peers, have the kernel re-validate fast ones; every
        ``FULL_EVERY`` ticks resolve fast ones again too: a path MTU the kernel learned from
        ICMP "fragmentation needed" (RFC 1191) lives in a route exception that ``route get``
        shows but no notification announces."""
        self._ticks += 1
        full = self._ticks % self.FULL_EVERY == 0
        used: set[str] = set()      # peers behind one gateway share its entry: one NTF_USE
        cache: dict[Any, Any] = {}
        with self._lock:
            for peer in list(self._peers):
                d = self._decisions.get(peer)
                if isinstance(d, Nexthop) and not full:
                    if d.via not in used and not d.static:
                        used.add(d.via)
                        use_neighbour(self._q, self.ifindex, d.via)
                else:
                    self._resolve(peer, cache)

    def _drain_events(self) -> None:
        for _ in range(256):        # bounded: what is queued now, then the loop goes on
            try:
                data = self._ev.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # the kernel dropped notifications (socket buffer overrun): we cannot know
                # which, so resolve every peer again
                log.warning("nexthop tracker: rtnetlink events lost (ENOBUFS); resolving all")
                self._refresh_all()
                continue
            self._on_events(parse_rtnl_events(data))

    def _serve_requests(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake)
        while True:
            try:
                fn, args, fut = self._requests.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:        # handed back to the caller
                fut.set_exception(exc)

    def _run(self, ready: Future[None]) -> None:
        name_os_thread("fp-nexthop")
        try:
            self._q = Rtnl()
            self._ev = open_rtnl_events()
            evfd = self._ev.fileno()
        except BaseException as exc:
            ready.set_exception(exc)
            self._close_sockets()
            return
        ready.set_result(None)
        next_tick = time.monotonic() + self.refresh
        try:
            while not self._stop:
                timeout = max(0.0, next_tick - time.monotonic())
                try:
                    ready_fds, _, _ = select.select([evfd, self._wake], [], [], timeout)
                except InterruptedError:
                    continue
                if self._stop:
                    break
                try:
                    if self._wake in ready_fds:
                        self._serve_requests()
                    if evfd in ready_fds:
                        self._drain_events()
                    if time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + self.refresh
                        self._tick()
                except Exception:   # a netlink hiccup must not end tracking: log, resolve again
                    log.exception("nexthop tracker: event handling failed; resolving all peers")
                    with contextlib.suppress(Exception):
                        self._refresh_all()
        finally:
            self._close_sockets()
            while True:     # nobody is left to serve what is still queued
                try:
                    _fn, _args, fut = self._requests.get_nowait()
                except queue.Empty:
                    break
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(RuntimeError("nexthop tracker closed"))

    def _close_sockets(self) -> None:
        for s in (self._ev, self._q):
            if s is not None:
                with contextlib.suppress(Exception):
                    s.close()
        self._ev = self._q = None

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)
        th, self._thread = self._thread, None
        if th is not None and th is not threading.current_thread():
            th.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._wake)
        self._wake = -1

    def __enter__(self) -> NexthopTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
