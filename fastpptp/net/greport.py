"""Choosing and opening the GRE port the engine runs on: ``--gre-io auto|xdp|packet|raw``.

``xdp`` (an AF_XDP socket fed by our XDP program, fastpptp.net.xdpport) and ``packet``
(AF_PACKET TPACKET_V3 ring + PACKET_QDISC_BYPASS sends, the kernel's own processing stopped
by a TCX ingress program, fastpptp.net.packetport) bypass the kernel's IP stack for PPTP GRE
on one interface: the one that carries the tunnel.  ``raw`` is the kernel's raw IPPROTO_GRE
socket, the portable fallback, and also every other port's slow path (fragments, other
interfaces, peers whose next hop is not resolved yet).  ``auto`` tries xdp, then packet,
then raw, and says in one log line which runs and why (docs/DESIGN.md "GRE port").

The layer-2 work that bypassing the stack makes ours -- next-hop MAC, route, MTU -- is kept
up to date by a :class:`fastpptp.net.nexthop.NexthopTracker` for the peers the product
tells about (``peer_up``/``peer_down``: the server on each control connection, the client
for its server).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import rawgre

log = logging.getLogger("fastpptp.greio")

GRE_IO_MODES = ("auto", "xdp", "packet", "raw")
FAST_MODES = ("xdp", "packet")


class GreIoError(OSError):
    """A forced ``--gre-io`` mode cannot run here (the message says why); like the other
    OS-glue errors of fastpptp.net (TunError, NetlinkError), an OSError."""


@dataclass
class TunnelInterface:
    """The interface the fast port attaches to, and our IPv4 addresses on it."""
    index: int
    name: str
    addrs: list[str]


@dataclass
class GreIo:
    """The opened port, its raw socket (the slow path) and what keeps its next hops fresh."""
    port: Any                       # fastpptp._greport.GrePort
    raw: socket.socket
    mode: str                       # what runs: "xdp", "packet" or "raw"
    why: str                        # the log line's reason
    iface: TunnelInterface | None = None
    tracker: Any = None             # fastpptp.net.nexthop.NexthopTracker (fast modes)
    local: str | None = None        # the bound address: our GRE source (None: the route's)
    _peers: dict[str, int] = field(default_factory=dict)
    _closed: bool = False
    # the tracker's add/remove wait for netlink round trips on its own thread: handed to one
    # worker here, in order, so the asyncio loop calling peer_up never waits for them
    _worker: concurrent.futures.ThreadPoolExecutor | None = None

    def describe(self) -> str:
        return f"{self.mode}: {self.port.describe()} ({self.why})"

    def peer_up(self, peer: str) -> None:
        """A peer we will exchange GRE with (refcounted: one per control connection)."""
        n = self._peers.get(peer, 0)
        self._peers[peer] = n + 1
        if n == 0 and self.tracker is not None:
            self._submit(self._track, peer)

    def _submit(self, fn: Callable[[str], None], peer: str) -> None:
        if self._closed:
            return
        if self._worker is None:
            from .nexthop import name_os_thread
            self._worker = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="greio-nexthop", initializer=name_os_thread,
                initargs=("fp-greio-peers",))
        self._worker.submit(fn, peer)

    def _track(self, peer: str) -> None:
        try:
            self.tracker.add_peer(peer, self.local)
        except Exception as exc:               # the slow path still carries it
            log.warning("GRE I/O: next hop of %s not tracked (slow path): %s", peer, exc)

    def _untrack(self, peer: str) -> None:
        try:
            self.tracker.remove_peer(peer)
        except Exception as exc:
            log.debug("GRE I/O: untracking %s: %s", peer, exc)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until the tracker calls handed over so far are done (tests, start-up)."""
        if self._worker is not None:
            self._worker.submit(lambda: None).result(timeout=timeout)

    def peer_down(self, peer: str) -> None:
        n = self._peers.get(peer, 0)
        if n <= 1:
            self._peers.pop(peer, None)
            if n == 1 and self.tracker is not None:
                self._submit(self._untrack, peer)
        else:
            self._peers[peer] = n - 1

    def counters(self) -> dict[str, int]:
        return dict(self.port.counters())

    def close(self) -> None:
        """After the engine stopped: the tracker, the port (program/link, rings), the socket."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        # a tracker the port started itself (open_packet_port) is the port's to close
        own = self.tracker is not None and getattr(self.port, "tracker", None) is not self.tracker
        for what, fn in (("tracker", getattr(self.tracker, "close", None) if own else None),
                         ("port", getattr(self.port, "close", None)), ("raw socket", self.raw.close)):
            if fn is None:
                continue
            try:
                fn()
            except Exception as exc:
                log.warning("GRE I/O: closing the %s: %s", what, exc)


def _is_any(addr: str | None) -> bool:
    return addr is None or addr in ("", "0.0.0.0")


def tunnel_interface(local: str | None, peer: str | None, *, netns: str | None = None) -> TunnelInterface | None:
    """The interface that carries the tunnel: the route to ``peer`` if known (the client),
    else the one holding ``local`` (a server bound to an address), else the default route's
    (a server on 0.0.0.0).  None when none can be told (no route, loopback).

    Uses pyroute2's synchronous IPRoute: not from inside a running asyncio loop
    (:func:`open_gre_io` moves itself to a thread then)."""
    from pyroute2 import IPRoute
    with IPRoute() if netns is None else IPRoute(netns=netns, flags=0) as ipr:
        index = 0
        if peer is not None:
            routes = ipr.route("get", dst=peer)
            if routes:
                index = routes[0].get_attr("RTA_OIF") or 0
        if not index and not _is_any(local):
            for a in ipr.get_addr(family=socket.AF_INET):
                if a.get_attr("IFA_ADDRESS") == local:
                    index = a["index"]
                    break
        if not index:
            for r in ipr.get_default_routes(family=socket.AF_INET):
                index = r.get_attr("RTA_OIF") or 0
                if index:
                    break
        if not index:
            return None
        links = ipr.get_links(index)
        if not links:
            return None
        name = links[0].get_attr("IFLA_IFNAME")
        if name == "lo" or links[0]["flags"] & 0x8:             # IFF_LOOPBACK
            return None
        addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET, index=index)]
    if not _is_any(local):
        addrs = [local] if local in addrs else addrs
    return TunnelInterface(index, name, [str(ipaddress.IPv4Address(a)) for a in addrs if a])


def _fast_reason(mode: str, iface: TunnelInterface) -> str | None:
    try:
        return _fast_reason_of(mode, iface)
    except ImportError as exc:            # a build without that port's compiled module
        return f"not available in this build ({exc})"


def _fast_reason_of(mode: str, iface: TunnelInterface) -> str | None:
    if mode == "xdp":
        from . import xdpport
        return xdpport.xdp_unavailable_reason(iface.index, iface.addrs)
    from . import packetport
    return packetport.packet_unavailable_reason(iface.index)


def _open_fast(mode: str, iface: TunnelInterface, raw: socket.socket, batch: int) -> Any:
    if mode == "xdp":
        from . import xdpport
        return xdpport.open_xdp_port(iface.index, iface.addrs, raw, batch)
    from . import packetport
    return packetport.open_packet_port(iface.index, iface.addrs, raw, batch)


def open_gre_io(mode: str = "auto", *, local: str | None = None, peer: str | None = None,
                batch: int = 64, tracker_factory: Callable[[Any], Any] | None = None,
                rcvbuf: int = rawgre.DEFAULT_BUF, sndbuf: int = rawgre.DEFAULT_BUF,
                logger: logging.Logger = log) -> GreIo:
    """Open the GRE port for ``mode`` (GRE_IO_MODES).  ``local``: the address we bind and
    receive GRE on (None/0.0.0.0: any); ``peer``: the one peer (a client's server), which
    chooses the interface.  A forced fast mode that cannot run raises GreIoError; ``auto``
    falls back and says why.

    pyroute2's synchronous IPRoute (the interface, the ports' probes, the next-hop tracker)
    runs its own asyncio loop, which cannot start inside a running one: called from a loop
    (the server's and client's start-up), the whole opening runs in a short-lived thread."""
    args = (mode, local, peer, batch, tracker_factory, rcvbuf, sndbuf, logger)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _open_gre_io(*args)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="greio-open") as ex:
        return ex.submit(_open_gre_io, *args).result(timeout=60)


def _open_gre_io(mode: str, local: str | None, peer: str | None, batch: int,
                 tracker_factory: Callable[[Any], Any] | None, rcvbuf: int, sndbuf: int,
                 logger: logging.Logger) -> GreIo:
    from .._greport import RawPort  # type: ignore[import-not-found]  # compiled (Cython)
    if mode not in GRE_IO_MODES:
        raise GreIoError(f"--gre-io {mode!r}: not one of {', '.join(GRE_IO_MODES)}")
    raw = rawgre.open_gre_socket(None if _is_any(local) else local, rcvbuf=rcvbuf, sndbuf=sndbuf)
    try:
        if mode == "raw":
            io = GreIo(RawPort(raw, batch), raw, "raw", "--gre-io raw")
            logger.info("GRE I/O: %s", io.describe())
            return io
        iface = tunnel_interface(local, peer)
        reasons: list[str] = []
        if iface is None:
            reasons.append("no interface carries the tunnel (loopback or no route)")
        else:
            for m in (FAST_MODES if mode == "auto" else (mode,)):
                why = _fast_reason(m, iface)
                port = None
                if why is None:
                    try:
                        port = _open_fast(m, iface, raw, batch)
                    except OSError as exc:
                        why = f"set-up failed: {exc}"
                if port is None:
                    reasons.append(f"{m}: {why}")
                    continue
                try:
                    if tracker_factory is not None:
                        tracker = tracker_factory(port)
                    elif getattr(port, "tracker", None) is not None:
                        tracker = port.tracker        # open_packet_port starts one
                    else:
                        from .nexthop import NexthopTracker
                        tracker = NexthopTracker(port, iface.index)
                except BaseException:
                    port.close()
                    raise
                what = "--gre-io " + mode if mode != "auto" else "auto: fastest available"
                if reasons:
                    what += "; " + "; ".join(reasons)
                io = GreIo(port, raw, m, what, iface, tracker, None if _is_any(local) else local)
                logger.info("GRE I/O: %s", io.describe())
                return io
        if mode != "auto":
            raise GreIoError(f"--gre-io {mode} cannot run: {'; '.join(reasons)}")
        io = GreIo(RawPort(raw, batch), raw, "raw", "auto: " + "; ".join(reasons))
        logger.info("GRE I/O: %s", io.describe())
        return io
    except BaseException:
        raw.close()
        raise
