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
  through one pyroute2 ``IPRoute`` (never ``ip``).
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
import errno
import ipaddress
import logging
import os
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("fastpptp.net.nexthop")

__all__ = [
    "ARPHRD_ETHER", "NUD_INCOMPLETE", "NUD_REACHABLE", "NUD_STALE", "NUD_DELAY", "NUD_PROBE",
    "NUD_FAILED", "NUD_NOARP", "NUD_PERMANENT", "RTN_UNICAST", "RTN_LOCAL",
    "RouteInfo", "LinkInfo", "NeighInfo", "Nexthop", "SlowPath", "Decision",
    "nexthop_address", "neighbour_usable", "decide", "affected_by_neigh",
    "RtEvent", "parse_rtnl_events", "open_rtnl_events",
    "query_route", "query_link", "query_neigh", "use_neighbour", "resolve",
    "NexthopTracker",
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
    return Nexthop(peer, via, str(neigh.lladdr).lower(), src, min(mtu, 65535))


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
    dst: str | None = None      # neigh: NDA_DST (IPv4 only)


_NLMSG_HDR = struct.Struct("=IHHII")
_RTA = struct.Struct("=HH")
RTM_NEWLINK, RTM_DELLINK, RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWNEIGH, RTM_DELNEIGH = 16, 17, 24, 25, 28, 29
NDA_DST = 1


def parse_rtnl_events(data: bytes) -> list[RtEvent]:
    """The notifications in one rtnetlink datagram (linux/rtnetlink.h layouts: nlmsghdr,
    then ifinfomsg / rtmsg / ndmsg and rtattrs).  Malformed or foreign messages are
    skipped; every length is checked before use."""
    out: list[RtEvent] = []
    off = 0
    while off + _NLMSG_HDR.size <= len(data):
        ln, typ, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, off)
        if ln < _NLMSG_HDR.size or off + ln > len(data):
            break
        body = data[off + _NLMSG_HDR.size: off + ln]
        off += (ln + 3) & ~3
        if typ in (RTM_NEWLINK, RTM_DELLINK) and len(body) >= 16:
            fam, _pad, _typ, index = struct.unpack_from("=BBHi", body)
            out.append(RtEvent("link", fam, index))
        elif typ in (RTM_NEWROUTE, RTM_DELROUTE) and len(body) >= 12:
            out.append(RtEvent("route", body[0], 0))
        elif typ in (RTM_NEWNEIGH, RTM_DELNEIGH) and len(body) >= 12:
            fam, _p1, _p2, index = struct.unpack_from("=BBHi", body)
            dst = None
            a = 12
            while a + _RTA.size <= len(body):
                alen, atyp = _RTA.unpack_from(body, a)
                if alen < _RTA.size or a + alen > len(body):
                    break
                if atyp == NDA_DST and fam == socket.AF_INET and alen == _RTA.size + 4:
                    dst = socket.inet_ntoa(body[a + 4: a + 8])
                a += (alen + 3) & ~3
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


def _v4(addr: str) -> str:
    a = ipaddress.ip_address(addr)
    if a.version != 4:
        raise ValueError(f"{addr}: the GRE ports carry IPv4 only")
    return str(a)


def query_route(ipr: Any, peer: str) -> RouteInfo | None:
    """``route get PEER`` (None when unreachable)."""
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        msgs = ipr.route("get", dst=_v4(peer))
    except NetlinkError as exc:
        if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL, errno.ESRCH):
            return None
        raise
    if not msgs:
        return None
    m = msgs[0]
    mtu = None
    metrics = m.get_attr("RTA_METRICS")
    if metrics is not None:
        mtu = metrics.get_attr("RTAX_MTU")
    return RouteInfo(rtype=m["type"], oif=m.get_attr("RTA_OIF"), gateway=m.get_attr("RTA_GATEWAY"),
                     prefsrc=m.get_attr("RTA_PREFSRC"), mtu=mtu or None)


def _link_info(m: Any) -> LinkInfo:
    return LinkInfo(index=m["index"], mtu=m.get_attr("IFLA_MTU") or 0,
                    mac=m.get_attr("IFLA_ADDRESS"), arphrd=m["ifi_type"],
                    up=bool(m["flags"] & IFF_UP))


def query_link(ipr: Any, ifindex: int) -> LinkInfo | None:
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        msgs = ipr.get_links(ifindex)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    return _link_info(msgs[0]) if msgs else None


def _neigh_info(m: Any) -> NeighInfo:
    return NeighInfo(ifindex=m["ifindex"], dst=m.get_attr("NDA_DST"),
                     lladdr=m.get_attr("NDA_LLADDR"), state=m["state"])


def query_neigh(ipr: Any, ifindex: int, addr: str) -> NeighInfo | None:
    """The neighbour entry of ``addr`` on ``ifindex`` (RTM_GETNEIGH), or None."""
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        msgs = ipr.neigh("get", dst=_v4(addr), ifindex=ifindex)
    except NetlinkError as exc:
        if exc.code in (errno.ENOENT, errno.ENODEV):
            return None
        raise
    return _neigh_info(msgs[0]) if msgs else None


def use_neighbour(ipr: Any, ifindex: int, addr: str) -> None:
    """Have the kernel resolve / re-validate ``addr`` on ``ifindex`` as if it were sending
    to it (RTM_NEWNEIGH with NTF_USE: neigh_event_send; creates the entry if absent)."""
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        ipr.neigh("replace", dst=_v4(addr), ifindex=ifindex, flags=NTF_USE, state=0)
    except NetlinkError as exc:
        log.debug("NTF_USE for %s on ifindex %d: %s", addr, ifindex, os.strerror(exc.code))


def drop_unclaimed(ipr: Any) -> int:
    """Empty the queue where pyroute2 (0.9.x) files every message no request claims -- the
    trailing ACK of each ``get``/``replace`` arrives after the request has finished, so each
    query leaves one there -- read only by ``IPRoute.get()``, which the tracker never calls.
    Unemptied it grows by a message per query for the socket's life (pyroute2 0.9.7: 8 000
    link queries on one socket, +14 MB RSS; the tracker makes ~3 per peer per resolution).
    The queues are per thread: call on the thread that uses ``ipr``; returns how many were
    dropped (0 if pyroute2 has no such queue)."""
    q = getattr(getattr(getattr(ipr, "asyncore", None), "msg_queue", None), "root", None)
    n = 0
    while q is not None and not q.empty():
        q.get_nowait()
        q.task_done()
        n += 1
    return n


def resolve(ipr: Any, peer: str, ifindex: int, local: str | None = None) -> Decision:
    """Ask the kernel (route, link, neighbour) and :func:`decide`."""
    route = query_route(ipr, peer)
    link = query_link(ipr, ifindex)
    neigh = None
    if route is not None and route.rtype == RTN_UNICAST and route.oif == ifindex:
        neigh = query_neigh(ipr, ifindex, nexthop_address(peer, route))
    return decide(peer, ifindex, route, link, neigh, local)


# ------------------------------------------------------------------------------ tracker


class NexthopTable(Protocol):
    """What the tracker drives: the port's nexthop table (PacketPort, XdpPort)."""

    def set_nexthop(self, peer: str, mac: str, src: str, mtu: int) -> None: ...
    def clear_nexthop(self, peer: str) -> Any: ...


class NexthopTracker:
    """Keeps ``port``'s nexthop table right for the peers added, on interface ``ifindex``.

    Create it in the network namespace of the interface: its thread is started by the
    constructor, so it inherits the calling thread's namespace, and opens its two netlink
    sockets there: pyroute2 for the queries, a plain one for the neighbour/IPv4 route/link
    notifications (:func:`open_rtnl_events`, parsed by :func:`parse_rtnl_events`).
    pyroute2 0.9's synchronous API gives every thread its own socket, so all netlink work
    happens on that one thread; ``add_peer``/``refresh_all`` from another thread (asyncio's,
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
        with self._lock:
            for peer in list(self._peers):
                self._resolve(peer)

    # -- on the thread (lock held)

    def _resolve(self, peer: str) -> Decision:
        from pyroute2.netlink.exceptions import NetlinkError
        self.resolutions += 1
        try:
            d = resolve(self._q, peer, self.ifindex, self._peers.get(peer))
        except (NetlinkError, OSError) as exc:
            d = SlowPath(peer, f"netlink: {exc}")
        if isinstance(d, SlowPath) and d.kick and d.via is not None:
            # nobody sent to it yet, or the last try failed: have the kernel ARP now (the
            # neighbour event brings the answer); with FAILED this repeats every tick
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
        todo: set[str] = set()
        with self._lock:
            for e in events:
                self.events += 1
                if e.kind == "neigh":
                    if e.dst is not None:
                        todo.update(affected_by_neigh(self._decisions, self.ifindex, e.dst,
                                                      e.ifindex))
                elif e.kind == "route":
                    if e.family == socket.AF_INET:
                        todo.update(self._peers)
                elif e.ifindex == self.ifindex:     # link: MTU, MAC, up/down, gone
                    todo.update(self._peers)
            for peer in todo:
                if peer in self._peers:
                    self._resolve(peer)

    def _tick(self) -> None:
        """Every ``refresh``: retry slow peers, have the kernel re-validate fast ones; every
        ``FULL_EVERY`` ticks resolve fast ones again too: a path MTU the kernel learned from
        ICMP "fragmentation needed" (RFC 1191) lives in a route exception that ``route get``
        shows but no notification announces."""
        self._ticks += 1
        full = self._ticks % self.FULL_EVERY == 0
        with self._lock:
            for peer in list(self._peers):
                d = self._decisions.get(peer)
                if isinstance(d, Nexthop) and not full:
                    use_neighbour(self._q, self.ifindex, d.via)
                else:
                    self._resolve(peer)

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
        from pyroute2 import IPRoute
        try:
            self._q = IPRoute()
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
                drop_unclaimed(self._q)
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
