"""``fastpptp bench sessions``: a PPTP load generator (issue 10).

N real PPTP clients in one process (asyncio), each with its own TCP control connection,
LCP, authentication, CCP/MPPE and IPCP -- fastpptp's own sans-I/O cores driven by the same
glue the client uses (``ControlStream``, ``CallSession``, ``EngineHub``) -- and each from a
source address of its own.

Flow:

1. Sources: ``--source-range CIDR`` gives one address per client (the range's hosts in
   order); ``--add-addresses IFACE`` puts them on IFACE for the run (netlink, as /32s) and
   takes them off afterwards.  Without a range every client uses the kernel's choice of
   source.  The server should reach the range through a route via this host: on-link, it
   needs an ARP entry per client, and the kernel's neighbour table (shared by all
   namespaces, gc_thresh3 = 1024 by default) overflows near 1 000 ("neighbor table
   overflow": SYN-ACKs lost, connects retried for 30 s).
2. Data path: ONE engine for every session, run sans-I/O (``engine.process``) from the
   event loop -- its I/O thread takes a single GRE socket, and the kernel would then pick
   one source address for all of them, while a PPTP server takes a call's GRE only from
   the address of its control connection.  So there is one raw GRE socket per source
   address, bound to it: receiving, it gets exactly that address's GRE (fed to
   ``process(gre_in=...)``); sending, the frames ``process`` returns go out on the socket of
   the session whose peer call ID is in the GRE key field (so live sessions from different
   sources need distinct peer call IDs: ours are random, pptpd's are its connection slot
   times 128; a server reusing one at the same time fails that session with a reason,
   ``SharedDataPath.map_peer_call``).  Control frames the sessions
   queue (``send_control``) are flushed by a ``process`` scheduled with ``call_soon``; the
   engine's timers (acks, reorder time-outs) by a deadline timer.
3. Traffic (``--traffic 10`` packets/s, or ``--traffic 2Mbit/s``, per session): a fake TUN
   side.  Each up session sends UDP packets from its tunnel address *to its own tunnel
   address*; the server routes them back down the same call (it must forward IPv4, as any
   concentrator does), so every packet crosses the tunnel both ways.  The payload holds the
   session index, a sequence number and the send time: received packets are counted per
   session, loss is sent minus received after a drain, the round trip is sampled.
4. Progress once a second on stderr (up / failed / in flight, throughput); at the end a
   summary (text, or ``--json``), and ``--plot FILE.png`` (matplotlib, the optional ``plot``
   dependency group, imported only then).

5. Churn (``--churn N``): instead of one session per client, the clients connect and
   disconnect over and over until N sessions in all have come up and ended (each held up
   ``--hold`` seconds).  A share ``--unclean`` of them ends without a goodbye, in equal
   parts: ``killed`` (no PPP/PPTP goodbye, TCP closed: what the kernel does for a killed
   client), ``rst`` (TCP reset, SO_LINGER 0) and ``silent`` (the GRE just stops and the TCP
   connection stays open, saying nothing, until the server clears the call on its own LCP
   echo timeout, or ``SILENT_WAIT`` s).  The summary's ``churn`` section counts cycles by
   ending and the failures; ``loadrig --churn`` watches the server's memory, fds, routes
   and TUNs around it.

Every wait is bounded: a session has ``setup_timeout`` to come up, the run ends
``duration`` seconds after the last session settled (up or failed), teardown is bounded.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import math
import random
import re
import resource
import socket
import struct
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..aio.driver import ControlStream, DeadlineTimer
from ..aio.session import CallSession, EngineHub
from ..client import AttemptOutcome, FailureKind
from ..config import client_link_config, parse_ppp_options
from ..errors import LocalProtocolError
from ..net import rawgre
from ..ppp.link import Authenticated, AuthenticationFailed, NetworkUp, PPPLink
from ..pptp.control import (CallCleared, CallEstablished, CallIdAllocator, ControlClosed,
                            ControlConfig, ControlConnected, ControlConnection, Event, Role)
from ..pptp.messages import PPTP_PORT

log = logging.getLogger("fastpptp.loadgen")

AUTH_METHODS = ("pap", "chap", "mschap", "mschapv2")
_AUTH_WORD = {"pap": "pap", "chap": "chap", "mschap": "mschap", "mschapv2": "mschap-v2"}
MAGIC = b"FPLG"
_PAYLOAD = struct.Struct("!4sIQd")       # magic, session index, sequence number, send time
UDP_PORT = 9                             # discard: nothing on the way answers it
GEN_INTERVAL = 0.05                      # seconds between traffic generation rounds
SAMPLE_INTERVAL = 0.25                   # seconds between timeline samples (progress: 1 s)
RTT_SAMPLES = 100_000
ENDINGS = ("clean", "killed", "rst", "silent")
SILENT_WAIT = 60.0                       # churn: longest a silent ending waits for the server


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class Traffic:
    """Per-session traffic: ``pps`` packets/s of ``size`` bytes (IP packet)."""

    pps: float = 0.0
    size: int = 256

    @property
    def mbit(self) -> float:
        return self.pps * self.size * 8 / 1e6


def parse_traffic(text: str, size: int = 256) -> Traffic:
    """``10`` or ``10pps`` (packets/s) or ``2Mbit/s`` / ``500kbit/s`` per session."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(pps|[kmg]bit(?:/s)?)?\s*", text, re.I)
    if not m:
        raise ValueError(f"bad traffic {text!r}: PPS, or N[k|M|G]bit/s")
    value, unit = float(m.group(1)), (m.group(2) or "pps").lower()
    if unit == "pps":
        return Traffic(value, size)
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}[unit[0]]
    return Traffic(value * scale / (size * 8), size)


@dataclass(frozen=True)
class LoadConfig:
    server: str
    clients: int
    rate: float = 0.0                    # new sessions per second; 0 = all at once
    duration: float = 10.0               # traffic seconds after the last session settled
    traffic: Traffic = Traffic()
    auth: str = "mschapv2"
    mppe: str = "128"                    # none | 40 | 128
    source_range: str | None = None
    add_addresses: str | None = None     # interface to put the sources on for the run
    user_template: str = "user%d"
    password_template: str = "pass%d"
    first_index: int = 0                 # %d of the first client
    port: int = PPTP_PORT
    setup_timeout: float = 60.0
    connect_timeout: float = 30.0
    impl: str = "compiled"
    ppp_options: tuple[str, ...] = ()    # extra pppd options for every client
    progress: bool = True
    churn: int = 0                       # > 0: connect/disconnect cycles in all (module doc, 5.)
    hold: float = 0.0                    # churn: seconds each session stays up
    unclean: float = 0.0                 # churn: share of cycles that end without a goodbye
    churn_limit: float = 3600.0          # churn: wall-clock bound, seconds


def ppp_words(cfg: LoadConfig) -> list[str]:
    """The pppd options a client of ``cfg`` runs with: only ``--auth`` allowed, ``--mppe``."""
    if cfg.auth not in AUTH_METHODS:
        raise ValueError(f"--auth must be one of {', '.join(AUTH_METHODS)}")
    words = [f"refuse-{_AUTH_WORD[a]}" for a in AUTH_METHODS if a != cfg.auth]
    if cfg.mppe == "none":
        words.append("nomppe")
    elif cfg.mppe in ("40", "128"):
        words.append(f"require-mppe-{cfg.mppe}")
    else:
        raise ValueError("--mppe must be none, 40 or 128")
    return words + list(cfg.ppp_options)


def source_addresses(cidr: str | None, n: int) -> list[str | None]:
    """``n`` source addresses from ``cidr`` (its hosts, in order), or None each (kernel's pick)."""
    if cidr is None:
        return [None] * n
    net = ipaddress.IPv4Network(cidr, strict=False)
    hosts = net.hosts() if net.prefixlen < 31 else iter(net)
    out: list[str | None] = []
    for a in hosts:
        if len(out) == n:
            break
        out.append(str(a))
    if len(out) < n:
        raise ValueError(f"{cidr} holds {len(out)} addresses, {n} clients need one each")
    return out


# ----------------------------------------------------------------------------- state
@dataclass
class SessionStat:
    """What the load generator knows of one client."""

    index: int
    source: str | None
    user: str
    started: float = 0.0
    tcp_at: float | None = None          # TCP connected
    control_at: float | None = None      # Start-Control-Connection-Reply: control connection up
    call_at: float | None = None         # Outgoing-Call-Reply: the call is established
    up_at: float | None = None           # IPCP up
    ended_at: float | None = None
    failure: str | None = None           # reason class, set once
    detail: str | None = None
    local_ip: str | None = None
    call_id: int = 0
    peer_call_id: int | None = None      # the server's call ID (Outgoing-Call-Reply)
    mppe: str | None = None
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0
    rx_reordered: int = 0
    rx_highest: int = -1
    rx_first_seq: int | None = None      # the first packet that came back: the ones before it
                                         # were lost while the path was not open end to end yet
    traffic_until: float | None = None   # time the sending stopped

    def phase(self) -> str:
        """Where the set-up stands, for failure reasons: a server out of capacity (pptpd
        with every pool address in use closes new connections at once) fails before the
        Start-Control-Connection-Reply; a refused user or an MPPE mismatch during PPP."""
        if self.tcp_at is None:
            return "before TCP connected"
        if self.control_at is None:
            return "before Start-Control-Connection-Reply"
        if self.call_at is None:
            return "before Outgoing-Call-Reply"
        return "during PPP set-up" if self.up_at is None else "after IPCP up"

    @property
    def setup_latency(self) -> float | None:
        return None if self.up_at is None else self.up_at - self.started


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def _ip_checksum(hdr: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_packet(addr: bytes, index: int, seq: int, now: float, size: int) -> bytes:
    """An IPv4/UDP packet from ``addr`` to ``addr`` (4 octets) of ``size`` octets whose
    payload carries the session index, the sequence number and the send time."""
    payload = _PAYLOAD.pack(MAGIC, index, seq, now)
    size = max(size, 28 + len(payload))
    payload += bytes(size - 28 - len(payload))
    udp = struct.pack("!HHHH", UDP_PORT, UDP_PORT, 8 + len(payload), 0) + payload   # no UDP csum
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, seq & 0xFFFF, 0, 64, 17, 0, addr, addr)
    return hdr[:10] + struct.pack("!H", _ip_checksum(hdr)) + hdr[12:] + udp


def parse_packet(pkt: bytes) -> tuple[int, int, float] | None:
    """(index, seq, send time) of a packet :func:`build_packet` made, else None."""
    if len(pkt) < 28 + _PAYLOAD.size or pkt[0] != 0x45 or pkt[9] != 17:
        return None
    magic, index, seq, sent = _PAYLOAD.unpack_from(pkt, 28)
    if magic != MAGIC:
        return None
    return index, seq, sent


_ICMP_TYPES = {0: "echo reply", 3: "unreachable", 5: "redirect", 8: "echo request", 11: "time exceeded"}


def foreign_kind(pkt: bytes) -> str:
    """A short name for a packet the tunnel delivered that is not ours: ``icmp redirect``
    (a server forwarding our packets back out of the link they came in on says so, RFC 792,
    unless its send_redirects is off), ``udp``, ``ipv6``..."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return "ipv6" if pkt and pkt[0] >> 4 == 6 else "not IPv4"
    proto = pkt[9]
    if proto == 1:
        ihl = (pkt[0] & 15) * 4
        t = pkt[ihl] if len(pkt) > ihl else -1
        return "icmp " + _ICMP_TYPES.get(t, f"type {t}")
    return {6: "tcp", 17: "udp"}.get(proto, f"ip proto {proto}")


# ----------------------------------------------------------------------------- data path
class SharedDataPath:
    """One engine for every session, run sans-I/O from the event loop (module doc, 2.).

    Presents the engine API the sessions and the hub use (``aio.session.SessionEngine``);
    ``send_control`` also schedules a flush.  ``on_packet(tun, ip)`` gets every IP packet
    the engine delivers."""

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop,
                 on_packet: Callable[[bytes], None]):
        self._engine = engine
        self._loop = loop
        self._on_packet = on_packet
        self._socks: dict[str | None, socket.socket] = {}
        # peer call ID -> (socket of the session's source, our call ID owning the mapping)
        self._by_peer_call: dict[int, tuple[socket.socket, int]] = {}
        self._flush_pending = False
        self._timer = DeadlineTimer(loop, lambda now: self.run())
        self.send_errors: Counter[str] = Counter()
        self.unmapped = 0                # frames for a peer call ID we have no socket for

    # sockets ----------------------------------------------------------------------------
    def socket_for(self, source: str | None) -> socket.socket:
        s = self._socks.get(source)
        if s is None:
            s = rawgre.open_gre_socket(source, rcvbuf=1 << 20, sndbuf=1 << 20)
            self._socks[source] = s
            self._loop.add_reader(s.fileno(), self._readable, s)
        return s

    def map_peer_call(self, peer_call_id: int, source: str | None, call_id: int) -> int | None:
        """Send frames keyed ``peer_call_id`` from ``source``; returns None, or our call ID
        of a live session that already has this peer call ID from another source.

        The engine's output names a frame's call only by the GRE key (the peer's call ID),
        so the shared data path needs those distinct among the live sessions.  RFC 2637
        makes a Call ID unique per control connection only (§2.7): pptpd 1.4.0 numbers by
        connection slot (0, 1, 2... for concurrent connections; a slot's number comes back
        when it frees), so a server reusing one Call ID across connections at the same time
        is legal; with a different source address it cannot be served here."""
        sock = self.socket_for(source)
        held = self._by_peer_call.get(peer_call_id)
        if held is not None and held[1] != call_id and held[0] is not sock:
            return held[1]
        self._by_peer_call[peer_call_id] = (sock, call_id)
        return None

    def unmap_peer_call(self, peer_call_id: int, call_id: int) -> None:
        """Forget the mapping if ``call_id`` still owns it (a later session may have the
        same peer call ID by now: pptpd hands a freed slot's number out again)."""
        held = self._by_peer_call.get(peer_call_id)
        if held is not None and held[1] == call_id:
            del self._by_peer_call[peer_call_id]

    def close(self) -> None:
        self._timer.cancel()
        for s in self._socks.values():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(s.fileno())
            s.close()
        self._socks.clear()
        self._by_peer_call.clear()

    # pumping ----------------------------------------------------------------------------
    def _readable(self, sock: socket.socket) -> None:
        batch: list[bytes] = []
        for _ in range(64):
            try:
                batch.append(sock.recv(65535))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:        # ICMP errors on the raw socket: count, go on
                self.send_errors[exc.__class__.__name__] += 1
                break
        if batch:
            self.run(gre_in=batch)

    def run(self, tun_in: list[tuple[int, bytes]] | None = None,
            gre_in: list[bytes] | None = None) -> None:
        """One ``process`` step: inputs in, GRE out on each session's socket, IP to
        ``on_packet``; the engine's next deadline re-armed."""
        self._flush_pending = False
        out = self._engine.process(self._loop.time(), tun_in=tun_in or (), gre_in=gre_in or ())
        for addr, frame in out.gre_out:
            held = self._by_peer_call.get(int.from_bytes(frame[6:8], "big"))
            if held is None:
                self.unmapped += 1
                continue
            sock = held[0]
            try:
                sock.sendto(frame, (addr, 0))
            except (BlockingIOError, InterruptedError):
                self.send_errors["EAGAIN"] += 1
            except OSError as exc:
                self.send_errors[exc.strerror or str(exc.errno)] += 1
        for _, ip in out.tun_out:
            self._on_packet(ip)
        self._timer.arm(self._engine.next_deadline())

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self.run)

    # the engine API the sessions use (SessionEngine) -------------------------------------
    @property
    def control_fd(self) -> int:
        return int(self._engine.control_fd)

    def recv_control(self, max: int = 64) -> list[tuple[int, int, bytes]]:
        frames: list[tuple[int, int, bytes]] = self._engine.recv_control(max)
        return frames

    def add_session(self, call_id: int, peer_call_id: int, peer_addr: str, *, tun: int = 0,
                    peer_rwin: int = 64, peer_ppd: int = 0) -> None:
        self._engine.add_session(call_id, peer_call_id, peer_addr, tun=tun, peer_rwin=peer_rwin,
                                 peer_ppd=peer_ppd)

    def set_peer_call(self, call_id: int, peer_call_id: int, *, peer_rwin: int = 64,
                      peer_ppd: int = 0) -> None:
        self._engine.set_peer_call(call_id, peer_call_id, peer_rwin=peer_rwin, peer_ppd=peer_ppd)

    def remove_session(self, call_id: int) -> None:
        self._engine.remove_session(call_id)

    def send_control(self, call_id: int, protocol: int, payload: bytes) -> None:
        self._engine.send_control(call_id, protocol, payload)
        self._schedule_flush()

    def set_ppp(self, call_id: int, *, tx_acfc: bool, tx_pfc: bool, mtu: int) -> None:
        self._engine.set_ppp(call_id, tx_acfc=tx_acfc, tx_pfc=tx_pfc, mtu=mtu)

    def set_mppe(self, call_id: int, send_key: bytes, recv_key: bytes, bits: int, stateful: bool,
                 rx_stateful: bool | None = None) -> None:
        self._engine.set_mppe(call_id, send_key, recv_key, bits, stateful, rx_stateful=rx_stateful)

    def mppe_reset(self, call_id: int) -> None:
        self._engine.mppe_reset(call_id)
        self._schedule_flush()

    def set_data(self, call_id: int, ipv4: bool, ipv6: bool) -> None:
        self._engine.set_data(call_id, ipv4, ipv6)

    def add_route(self, call_id: int, addr: str) -> None:
        self._engine.add_route(call_id, addr)

    def remove_route(self, addr: str) -> None:
        self._engine.remove_route(addr)

    def counters(self, call_id: int) -> dict[str, int]:
        c: dict[str, int] = self._engine.counters(call_id)
        return c

    def totals(self) -> dict[str, int]:
        t: dict[str, int] = self._engine.totals()
        return t


# ----------------------------------------------------------------------------- one client
class LoadClient:
    """One PPTP client of the load: control connection, call, PPP link on the shared engine."""

    def __init__(self, gen: "LoadGenerator", stat: SessionStat, password: str):
        self.gen = gen
        self.stat = stat
        self.password = password
        self.session: CallSession | None = None
        self.stream: ControlStream | None = None
        self.outcome = AttemptOutcome()
        self.peer_call_id: int | None = None
        self.addr_bytes = b""
        self.next_seq = 0
        self.stop = asyncio.Event()
        self.ending = "clean"             # churn: how this session ends (ENDINGS)
        self.quiet = False                # ending without a goodbye: no Call-Clear-Request

    def _fail(self, reason: str, detail: str | None = None) -> None:
        st = self.stat
        if st.failure is None and st.up_at is None:
            st.failure, st.detail = reason, detail
            st.ended_at = self.gen.loop.time()
            self.gen.on_settled()

    async def run(self) -> None:
        gen, st = self.gen, self.stat
        loop = gen.loop
        st.started = loop.time()
        try:
            await asyncio.wait_for(self._connect(), gen.config.setup_timeout)
        except asyncio.TimeoutError:
            self._fail(f"timeout ({st.phase()})", f"not up after {gen.config.setup_timeout:.0f} s")
        except OSError as exc:
            self._fail(f"connect: {exc.strerror or exc}", str(exc))
        except Exception as exc:       # our bug: this client fails, the others go on
            log.exception("client %d", st.index)
            self._fail(f"internal error: {type(exc).__name__}", str(exc))
        if st.up_at is not None:
            stop_task = asyncio.ensure_future(self.stop.wait())
            done_task = asyncio.ensure_future(self.outcome.done.wait())
            await asyncio.wait({stop_task, done_task}, return_when=asyncio.FIRST_COMPLETED)
            for t in (stop_task, done_task):
                t.cancel()
            if not self.stop.is_set():
                st.detail = self.outcome.reason
                gen.dropped[f"down after up: {self.outcome.reason}"] += 1
        await self._teardown()

    async def _connect(self) -> None:
        gen, st = self.gen, self.stat
        loop = gen.loop
        dp = gen.datapath
        conn = ControlConnection(Role.PNS, ControlConfig(echo_interval=60.0), loop.time(), gen.rng,
                                 allocator=gen.allocator)
        server = gen.server_ip
        dp.socket_for(st.source)           # ready before any GRE can arrive

        def on_closed(s: CallSession, reason: str) -> None:
            if self.stream is not None and not self.quiet:
                with contextlib.suppress(Exception):
                    self.stream.conn.clear_call(s.call_id, reason, now=loop.time())
                    self.stream.pump()
            self.outcome.end(reason)

        def on_auth(s: CallSession, ev: Authenticated | AuthenticationFailed) -> None:
            self.outcome.on_auth(ev)

        def on_up(s: CallSession, ev: NetworkUp) -> None:
            if ev.family != 4 or st.up_at is not None:
                return None
            st.up_at = loop.time()
            st.local_ip = str(ev.local)
            st.mppe = s.info.mppe
            self.addr_bytes = ipaddress.IPv4Address(ev.local).packed
            # our packets go to our own tunnel address (module doc, 3.): route it to us
            dp.add_route(s.call_id, st.local_ip)
            gen.on_settled()
            gen.up_clients.append(self)
            return None

        def on_event(ev: Event) -> None:
            now = loop.time()
            match ev:
                case ControlConnected():
                    st.control_at = now
                    call_id = conn.place_call(now=now)
                    st.call_id = call_id
                    dp.add_session(call_id, 0, server)
                    gen.hub.expect(call_id)
                case CallEstablished():
                    st.call_at = now
                    link = PPPLink(gen.link_config(st.user, self.password), "client", None, gen.rng)
                    rwin = ev.peer_rwin or 64
                    st.peer_call_id = ev.peer_call_id
                    clash = dp.map_peer_call(ev.peer_call_id, st.source, ev.call_id)
                    if clash is not None:
                        self._fail("server reused a peer call ID across sources",
                                   f"the server gave call ID {ev.peer_call_id} to our call {ev.call_id} "
                                   f"while our call {clash} from another source has it")
                        self.outcome.end("peer call ID clash")
                        return
                    self.peer_call_id = ev.peer_call_id
                    dp.set_peer_call(ev.call_id, ev.peer_call_id, peer_rwin=rwin, peer_ppd=ev.peer_ppd)
                    self.session = CallSession(
                        gen.hub, link, call_id=ev.call_id, peer_call_id=ev.peer_call_id,
                        peer_addr=server, peer_rwin=rwin, peer_ppd=ev.peer_ppd,
                        on_network_up=on_up, on_closed=on_closed, on_auth=on_auth)
                    self.session.start(registered=True)
                case CallCleared():
                    if self.session is not None:
                        self.session.abort(f"server cleared the call ({ev.reason})")
                    elif st.call_id:
                        gen.hub.forget(st.call_id)
                        with contextlib.suppress(KeyError):
                            dp.remove_session(st.call_id)
                case ControlClosed():
                    pass
            self.outcome.on_control_event(ev)

        def on_lost(exc: Exception | None) -> None:
            self.outcome.end("control connection closed")
            if self.session is not None:
                self.session.abort("control connection closed")

        _, stream = await asyncio.wait_for(
            loop.create_connection(lambda: ControlStream(conn, on_event, on_lost), server,
                                   gen.config.port,
                                   local_addr=(st.source, 0) if st.source else None),
            gen.config.connect_timeout)
        self.stream = stream
        st.tcp_at = loop.time()
        try:
            conn.start(now=loop.time())
            stream.pump()
        except LocalProtocolError:
            # the server closed the connection as soon as it accepted it (an admission
            # refusal: connection limit, per-source rate): a failure with that reason below
            if not self.outcome.done.is_set():
                raise
        up_wait = asyncio.ensure_future(self._wait_up())
        done_wait = asyncio.ensure_future(self.outcome.done.wait())
        try:
            await asyncio.wait({up_wait, done_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up_wait.cancel()
            done_wait.cancel()
        if st.up_at is None:
            kind = self.outcome.failure if self.outcome.done.is_set() else FailureKind.NEGOTIATION_FAILED
            self._fail(f"{kind.name.lower()}: {_generic(self.outcome.reason or 'link down')} "
                       f"({st.phase()})", self.outcome.reason)

    async def _wait_up(self) -> None:
        while self.session is None:
            await asyncio.sleep(0.05)
        await self.session.up_event.wait()

    async def _teardown(self) -> None:
        if self.ending != "clean" and self.stat.up_at is not None:
            await self._teardown_unclean()
            return
        loop = self.gen.loop
        s = self.session
        if s is not None and not s.closed:
            s.close("load test done")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(s.closed_event.wait(), 3.0)
            if not s.closed:
                s.abort("load test done")
        if self.stream is not None:
            conn = self.stream.conn
            with contextlib.suppress(Exception):
                conn.stop("load test done", loop.time())
                self.stream.pump()
            await asyncio.sleep(0.2)
            self.stream.close()
        if self.peer_call_id is not None:
            self.gen.datapath.unmap_peer_call(self.peer_call_id, self.stat.call_id)
        if s is None and self.stat.call_id:
            self.gen.hub.forget(self.stat.call_id)
            with contextlib.suppress(KeyError):
                self.gen.datapath.remove_session(self.stat.call_id)

    async def _teardown_unclean(self) -> None:
        """End without a goodbye (module doc, 5.): our side of the call is dropped at once
        (no LCP Terminate, no Call-Clear-Request), then TCP is closed (``killed``), reset
        (``rst``), or left open until the server gives up on the call (``silent``)."""
        self.quiet = True
        s = self.session
        if s is not None and not s.closed:
            s.abort(f"churn: {self.ending}")
        stream = self.stream
        if stream is not None and stream.transport is not None:
            if self.ending == "silent":
                # the server's LCP echo finds the GRE gone and clears the call (CDN), or closes
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._server_gave_up(), SILENT_WAIT)
            sock = stream.transport.get_extra_info("socket")
            if self.ending == "rst" and sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.transport.abort()
        if self.peer_call_id is not None:
            self.gen.datapath.unmap_peer_call(self.peer_call_id, self.stat.call_id)

    async def _server_gave_up(self) -> None:
        assert self.stream is not None
        conn = self.stream.conn
        while not conn.closed and self.stat.call_id in conn.calls():
            await asyncio.sleep(0.1)

    def packets(self, now: float, upto: float) -> list[bytes]:
        """The packets this session owes at ``upto`` (its rate since it came up)."""
        st = self.stat
        tr = self.gen.config.traffic
        if st.up_at is None or self.session is None or self.session.closed:
            return []
        due = int((upto - st.up_at) * tr.pps) - self.next_seq
        out = []
        for _ in range(max(0, min(due, 1000))):
            out.append(build_packet(self.addr_bytes, st.index, self.next_seq, now, tr.size))
            self.next_seq += 1
        st.tx_packets += len(out)
        st.tx_bytes += len(out) * tr.size
        return out


def _generic(reason: str) -> str:
    """A failure reason with its numbers taken out, so equal causes group together."""
    return re.sub(r"\d+", "N", reason)


# ----------------------------------------------------------------------------- the run
class LoadGenerator:
    def __init__(self, config: LoadConfig, *, out: Any = None):
        self.config = config
        self.out = out if out is not None else sys.stderr
        self.rng = random.SystemRandom()
        self.allocator = CallIdAllocator(self.rng, quarantine=0.0)
        self.stats: list[SessionStat] = []
        self.clients: list[LoadClient] = []
        self.up_clients: list[LoadClient] = []
        self.timeline: list[dict[str, float]] = []
        self.rtts: list[float] = []
        self.dropped: Counter[str] = Counter()     # sessions lost after they were up
        self.foreign_packets = 0
        self.foreign_kinds: Counter[str] = Counter()   # what they were (foreign_kind)
        self._settled = 0
        self._all_settled = asyncio.Event()
        self._link_configs: dict[tuple[str, str], Any] = {}
        self._opts = parse_ppp_options(" ".join(ppp_words(config)))
        self.server_ip = config.server
        self.t0 = 0.0
        self.traffic_start: float | None = None
        self.traffic_end: float | None = None

    def link_config(self, user: str, password: str) -> Any:
        return client_link_config(self._opts, user=user, password=password)

    def on_settled(self) -> None:
        self._settled = sum(1 for s in self.stats if s.up_at is not None or s.failure is not None)
        if self._settled >= len(self.stats):
            self._all_settled.set()

    def on_packet(self, ip: bytes) -> None:
        got = parse_packet(ip)
        if got is None or not 0 <= got[0] - self.config.first_index < len(self.stats):
            self.foreign_packets += 1
            kind = foreign_kind(ip)
            if len(self.foreign_kinds) < 64 or kind in self.foreign_kinds:   # bounded
                self.foreign_kinds[kind] += 1
            return
        index, seq, sent = got
        st = self.stats[index - self.config.first_index]
        if st.rx_first_seq is None:
            st.rx_first_seq = seq
        st.rx_packets += 1
        st.rx_bytes += len(ip)
        if seq < st.rx_highest:
            st.rx_reordered += 1
        else:
            st.rx_highest = seq
        if len(self.rtts) < RTT_SAMPLES:
            self.rtts.append(self.loop.time() - sent)

    # ---------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        from ..dataplane import EngineConfig, load_engine
        cfg = self.config
        self.loop = asyncio.get_running_loop()
        _raise_nofile(2 * cfg.clients + 64)
        infos = await self.loop.getaddrinfo(cfg.server, cfg.port, family=socket.AF_INET,
                                            type=socket.SOCK_STREAM)
        self.server_ip = str(infos[0][4][0])
        sources = source_addresses(cfg.source_range, cfg.clients)
        added: list[str] = []
        engine = load_engine(cfg.impl)(EngineConfig(control_queue=65536))
        self.datapath = SharedDataPath(engine, self.loop, self.on_packet)
        self.hub = EngineHub(self.datapath, self.loop)
        try:
            if cfg.add_addresses:
                added = await self.loop.run_in_executor(
                    None, _add_addresses, cfg.add_addresses, sources)
            for i, src in enumerate(sources):
                n = cfg.first_index + i
                self.stats.append(SessionStat(n, src, _fmt(cfg.user_template, n)))
                self.clients.append(LoadClient(self, self.stats[-1], _fmt(cfg.password_template, n)))
            if cfg.churn > 0:
                return await self._run_churn(sources)
            return await self._run_load()
        finally:
            self.hub.close()
            self.datapath.close()
            engine.close()
            if added:
                await self.loop.run_in_executor(None, _remove_addresses, cfg.add_addresses, added)

    async def _run_load(self) -> dict[str, Any]:
        cfg = self.config
        loop = self.loop
        self.t0 = loop.time()
        tasks: list[asyncio.Task[None]] = []
        progress = asyncio.ensure_future(self._progress())
        gen = asyncio.ensure_future(self._generate())

        async def launch() -> None:
            for i, c in enumerate(self.clients):
                if cfg.rate > 0:
                    delay = self.t0 + i / cfg.rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                tasks.append(loop.create_task(c.run()))
        launcher = asyncio.ensure_future(launch())
        # bounded: every client settles within its setup timeout after its start
        limit = cfg.setup_timeout + (cfg.clients / cfg.rate if cfg.rate > 0 else 0) + 10
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._all_settled.wait(), limit)
        self.setup_end = loop.time()
        self.traffic_start = self.setup_end
        await asyncio.sleep(cfg.duration)
        await launcher
        # stop sending, let the last packets come back, then end every session
        self.traffic_end = loop.time()
        gen.cancel()
        for st in self.stats:
            if st.up_at is not None:
                st.traffic_until = self.traffic_end
        await asyncio.sleep(min(1.0, cfg.duration) if cfg.traffic.pps else 0)
        self._sample()
        progress.cancel()
        summary = self.summary()
        for c in self.clients:
            c.stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15.0)
        for t in tasks:
            t.cancel()
        return summary

    async def _run_churn(self, sources: Sequence[str | None]) -> dict[str, Any]:
        """Module doc, 5.: ``clients`` slots, each connecting and disconnecting in turn (its
        own source address) until ``churn`` sessions in all have been up, or ``churn_limit`` s."""
        cfg = self.config
        loop = self.loop
        self.t0 = loop.time()
        deadline = self.t0 + cfg.churn_limit
        started = 0
        done: Counter[str] = Counter()             # cycles that came up, by ending
        failed: Counter[str] = Counter()           # cycles that did not come up, by reason
        lat: list[float] = []
        progress_at = self.t0 + 1.0

        async def slot(i: int, source: str | None) -> None:
            nonlocal started, progress_at
            n = cfg.first_index + i
            while started < cfg.churn and loop.time() < deadline:
                started += 1
                st = SessionStat(n, source, _fmt(cfg.user_template, n))
                c = LoadClient(self, st, _fmt(cfg.password_template, n))
                r = self.rng.random()
                c.ending = ("clean" if r >= cfg.unclean else
                            ENDINGS[1 + min(2, int(r / cfg.unclean * 3))])
                task = loop.create_task(c.run())
                while st.up_at is None and st.failure is None and not task.done():
                    await asyncio.sleep(0.02)
                if st.up_at is not None:
                    lat.append(st.up_at - st.started)
                    await asyncio.sleep(cfg.hold)
                    c.stop.set()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(task, SILENT_WAIT + 30)
                with contextlib.suppress(ValueError):
                    self.up_clients.remove(c)
                if st.up_at is not None:
                    done[c.ending] += 1
                else:
                    failed[st.failure or "never settled"] += 1
                    await asyncio.sleep(0.5)           # no hammering a refusing server
                if cfg.progress and loop.time() >= progress_at:
                    progress_at = loop.time() + 1.0
                    print(f"[{loop.time() - self.t0:6.1f}s] churn: {sum(done.values())} cycles done, "
                          f"{sum(failed.values())} failed", file=self.out, flush=True)

        await asyncio.gather(*(slot(i, src) for i, src in enumerate(sources)))
        took = loop.time() - self.t0
        cycles = sum(done.values())
        return {
            "server": cfg.server, "clients": cfg.clients, "auth": cfg.auth, "mppe": cfg.mppe,
            "churn": {"cycles": cycles, "requested": cfg.churn, "endings": dict(done),
                      "failed": sum(failed.values()), "failures": dict(failed),
                      "seconds": took, "cycles_per_s": cycles / took if took else None,
                      "setup_p50_s": _percentile(lat, 50), "setup_p99_s": _percentile(lat, 99),
                      "hold_s": cfg.hold, "unclean": cfg.unclean,
                      "dropped_after_up": dict(self.dropped)},
            "generator_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }

    async def _generate(self) -> None:
        """Every GEN_INTERVAL: each up session's packets through the engine, one batch."""
        tr = self.config.traffic
        if tr.pps <= 0:
            return
        loop = self.loop
        while True:
            await asyncio.sleep(GEN_INTERVAL)
            now = loop.time()
            batch: list[tuple[int, bytes]] = []
            for c in self.up_clients:
                batch.extend((0, p) for p in c.packets(now, now))
                if len(batch) >= 512:
                    self.datapath.run(tun_in=batch)
                    batch = []
            if batch:
                self.datapath.run(tun_in=batch)

    def _sample(self) -> None:
        up = sum(1 for s in self.stats if s.up_at is not None)
        failed = sum(1 for s in self.stats if s.failure is not None)
        self.timeline.append({
            "t": round(self.loop.time() - self.t0, 3), "up": up, "failed": failed,
            "in_flight": sum(1 for s in self.stats if s.started and s.up_at is None and s.failure is None),
            "rx_bytes": sum(s.rx_bytes for s in self.stats),
            "tx_bytes": sum(s.tx_bytes for s in self.stats)})

    async def _progress(self) -> None:
        """A timeline sample every SAMPLE_INTERVAL; a progress line once a second."""
        self._sample()
        per_line = round(1.0 / SAMPLE_INTERVAL)
        for i in itertools.count(1):
            await asyncio.sleep(SAMPLE_INTERVAL)
            self._sample()
            if i % per_line:
                continue
            cur = self.timeline[-1]
            prev = self.timeline[-1 - per_line]
            dt = max(1e-9, cur["t"] - prev["t"])
            mbit = (cur["rx_bytes"] - prev["rx_bytes"]) * 8 / dt / 1e6
            if self.config.progress:
                print(f"[{cur['t']:6.1f}s] up {cur['up']:5d}  failed {cur['failed']:4d}  "
                      f"in flight {cur['in_flight']:5d}  rx {mbit:8.2f} Mbit/s",
                      file=self.out, flush=True)

    # ---------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        cfg = self.config
        ups = [s for s in self.stats if s.up_at is not None]
        lat = [s.setup_latency for s in ups if s.setup_latency is not None]
        failures = Counter(s.failure for s in self.stats if s.failure is not None)
        never = sum(1 for s in self.stats if s.up_at is None and s.failure is None)
        if never:
            failures["never started or settled"] += never
        last_up = max((s.up_at for s in ups if s.up_at is not None), default=None)
        first_start = min((s.started for s in self.stats if s.started), default=self.t0)
        span = (last_up - first_start) if last_up is not None else None
        per_rx, per_tx = [], []
        tx_p = rx_p = tx_b = rx_b = 0
        for s in ups:
            assert s.up_at is not None
            secs = max(1e-9, (s.traffic_until or self.loop.time()) - s.up_at)
            per_rx.append(s.rx_bytes * 8 / secs / 1e6)
            per_tx.append(s.tx_bytes * 8 / secs / 1e6)
            tx_p += s.tx_packets
            rx_p += s.rx_packets
            tx_b += s.tx_bytes
            rx_b += s.rx_bytes
        window = ((self.traffic_end or self.loop.time()) - self.t0)
        spans: dict[str, list[float]] = {"tcp_connect": [], "pptp_control": [], "ppp_lcp_auth_ccp_ipcp": []}
        for s in ups:
            if s.tcp_at is not None and s.call_at is not None and s.up_at is not None:
                spans["tcp_connect"].append(s.tcp_at - s.started)
                spans["pptp_control"].append(s.call_at - s.tcp_at)
                spans["ppp_lcp_auth_ccp_ipcp"].append(s.up_at - s.call_at)
        phases = {name: _p50_p99(v) for name, v in spans.items()}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        totals = self.datapath.totals()
        return {
            "server": cfg.server, "clients": cfg.clients, "auth": cfg.auth, "mppe": cfg.mppe,
            "rate_limit": cfg.rate, "traffic": {"pps": cfg.traffic.pps, "size": cfg.traffic.size,
                                               "mbit_per_session": cfg.traffic.mbit},
            "up": len(ups), "failed": sum(failures.values()),
            "dropped_after_up": dict(self.dropped),
            "setup": {
                "rate_per_s": (len(ups) / span) if span else None,
                "time_to_all_up_s": (last_up - self.t0) if last_up is not None and len(ups) == cfg.clients else None,
                "time_to_last_up_s": (last_up - self.t0) if last_up is not None else None,
                "latency_p50_s": _percentile(lat, 50), "latency_p99_s": _percentile(lat, 99),
                "latency_max_s": max(lat) if lat else None,
                # where the set-up time went (p50, p99 in seconds): the TCP connect (a full
                # listen queue shows as SYN retransmits: 1 s, 3 s...), SCCRQ..OCRP, then PPP
                "phases_s": phases},
            "generator_cpu_s": usage.ru_utime + usage.ru_stime,
            "generator_maxrss_kb": usage.ru_maxrss,
            "failures": dict(failures),
            "data": {
                "tx_packets": tx_p, "rx_packets": rx_p, "tx_bytes": tx_b, "rx_bytes": rx_b,
                "lost_packets": max(0, tx_p - rx_p),
                # of those, sent before the session's first packet that came back (the far
                # end's return path not open yet right after IPCP), and sessions with such
                "lost_before_first_echo": sum(s.rx_first_seq or 0 for s in ups),
                "sessions_with_early_loss": sum(1 for s in ups if s.rx_first_seq),
                "loss_ratio": (tx_p - rx_p) / tx_p if tx_p else None,
                "reordered": sum(s.rx_reordered for s in ups),
                "aggregate_tx_mbit": sum(per_tx), "aggregate_rx_mbit": sum(per_rx),
                "per_session_rx_mbit": {"min": min(per_rx, default=None),
                                        "p50": _percentile(per_rx, 50),
                                        "max": max(per_rx, default=None)},
                "sessions_without_traffic": sum(1 for s in ups if s.rx_packets == 0) if cfg.traffic.pps else None,
                "rtt_p50_ms": _ms(_percentile(self.rtts, 50)), "rtt_p99_ms": _ms(_percentile(self.rtts, 99)),
                "foreign_packets": self.foreign_packets, "foreign_kinds": dict(self.foreign_kinds),
                "engine_drops": {k: v for k, v in totals.items() if k.startswith("drop_") and v},
                "send_errors": dict(self.datapath.send_errors), "unmapped_frames": self.datapath.unmapped},
            "duration_s": window,
            "sessions": [{"index": s.index, "source": s.source, "user": s.user, "up": s.up_at is not None,
                          "setup_s": s.setup_latency, "local_ip": s.local_ip, "mppe": s.mppe,
                          "call_id": s.call_id, "peer_call_id": s.peer_call_id,
                          "failure": s.failure, "detail": s.detail, "tx_packets": s.tx_packets,
                          "rx_packets": s.rx_packets, "tx_bytes": s.tx_bytes, "rx_bytes": s.rx_bytes,
                          "lost": max(0, s.tx_packets - s.rx_packets),
                          "rx_first_seq": s.rx_first_seq} for s in self.stats],
            "timeline": self.timeline,
        }


def _p50_p99(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": _percentile(values, 50), "p99": _percentile(values, 99)}


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000


def _fmt(template: str, n: int) -> str:
    return template % n if "%" in template else template


def _raise_nofile(need: int) -> None:
    """Two fds per client (TCP, raw GRE): raise the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        want = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def _add_addresses(iface: str, sources: Sequence[str | None]) -> list[str]:
    """Put the sources on ``iface`` as /32s (no prefix route: nothing else on the host
    changes); returns those added (ones already there are the user's, left alone)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    prefix = 32
    added: list[str] = []
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=iface)
        if not idx:
            raise ValueError(f"no interface {iface}")
        for a in sources:
            if a is None:
                continue
            try:
                ipr.addr("add", index=idx[0], address=a, prefixlen=prefix)
                added.append(a)
            except NetlinkError as exc:
                if exc.code != 17:             # EEXIST: the user's own, keep it
                    raise
    return added


def _remove_addresses(iface: str | None, addrs: Sequence[str]) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    prefix = 32
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=iface)
        if not idx:
            return
        for a in addrs:
            with contextlib.suppress(NetlinkError):
                ipr.addr("del", index=idx[0], address=a, prefixlen=prefix)


# ----------------------------------------------------------------------------- output
def format_summary(s: dict[str, Any]) -> str:
    def f(x: float | None, fmt: str = "{:.3f}") -> str:
        return "-" if x is None else fmt.format(x)
    if "churn" in s:
        c = s["churn"]
        return (f"churn: {c['cycles']} of {c['requested']} cycles in {c['seconds']:.1f} s "
                f"({f(c['cycles_per_s'], '{:.1f}')}/s), endings {c['endings']}, {c['failed']} failed "
                f"{c['failures'] or ''}; set-up p50 {f(c['setup_p50_s'])} s p99 {f(c['setup_p99_s'])} s")
    st, d = s["setup"], s["data"]
    lines = [
        f"sessions: {s['up']} up, {s['failed']} failed of {s['clients']} "
        f"({s['auth']}, MPPE {s['mppe']})",
        f"setup: {f(st['rate_per_s'], '{:.1f}')} sessions/s, all up after "
        f"{f(st['time_to_all_up_s'], '{:.2f}')} s, latency p50 {f(st['latency_p50_s'])} s "
        f"p99 {f(st['latency_p99_s'])} s max {f(st['latency_max_s'])} s",
    ]
    ph = st.get("phases_s", {})
    if ph:
        lines.append("  set-up phases p50/p99 s: " + ", ".join(
            f"{k} {f(v['p50'])}/{f(v['p99'])}" for k, v in ph.items()))
    for reason, n in sorted(s["failures"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  failed: {n:5d}  {reason}")
    for reason, n in sorted(s["dropped_after_up"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  dropped after up: {n:5d}  {reason}")
    if s["traffic"]["pps"]:
        ps = d["per_session_rx_mbit"]
        lines += [
            f"traffic: tx {d['tx_packets']} pkts {d['tx_bytes']} B, rx {d['rx_packets']} pkts "
            f"{d['rx_bytes']} B, loss {f(d['loss_ratio'], '{:.4%}')} ({d['lost_packets']} packets, "
            f"{d['lost_before_first_echo']} of them before a session's first echo, in "
            f"{d['sessions_with_early_loss']} sessions), reordered {d['reordered']}",
            f"throughput: aggregate tx {d['aggregate_tx_mbit']:.2f} rx {d['aggregate_rx_mbit']:.2f} "
            f"Mbit/s; per session rx min {f(ps['min'])} p50 {f(ps['p50'])} max {f(ps['max'])} Mbit/s",
            f"round trip: p50 {f(d['rtt_p50_ms'], '{:.2f}')} ms p99 {f(d['rtt_p99_ms'], '{:.2f}')} ms; "
            f"sessions without traffic: {d['sessions_without_traffic']}; other packets received "
            f"{d['foreign_packets']}" + (" (" + ", ".join(f"{k}: {v}" for k, v in
                                                            d.get("foreign_kinds", {}).items()) + ")"
                                         if d.get("foreign_kinds") else ""),
        ]
    lines.append(f"load generator: CPU {s['generator_cpu_s']:.2f} s, max RSS {s['generator_maxrss_kb']} kB")
    return "\n".join(lines)


def write_plot(summary: dict[str, Any], path: str) -> None:
    """Sessions up (and failed) over time, and the received throughput: a PNG.  Needs
    matplotlib (``pip install fastpptp[plot]``), imported here only."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tl = summary["timeline"]
    t = [p["t"] for p in tl]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    ax1.plot(t, [p["up"] for p in tl], label="up")
    ax1.plot(t, [p["failed"] for p in tl], label="failed")
    ax1.plot(t, [p["in_flight"] for p in tl], label="in flight")
    ax1.set_ylabel("sessions")
    ax1.legend()
    ax1.set_title(f"fastpptp bench sessions: {summary['clients']} clients -> {summary['server']}")
    rx = [0.0] + [(b["rx_bytes"] - a["rx_bytes"]) * 8 / max(1e-9, b["t"] - a["t"]) / 1e6
                  for a, b in zip(tl, tl[1:], strict=False)]
    ax2.plot(t, rx, label="rx (echoed) Mbit/s")
    ax2.set_ylabel("Mbit/s")
    ax2.set_xlabel("seconds")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_sessions_bench(config: LoadConfig, *, json_out: bool = False, plot: str | None = None) -> int:
    """The ``bench sessions`` command: 0 when every client came up and none dropped."""
    async def main() -> dict[str, Any]:
        return await LoadGenerator(config).run()
    # each failed session would log a warning (fastpptp.session): the summary counts them by
    # reason instead, and the JSON holds each one's detail
    logging.getLogger("fastpptp").setLevel(logging.ERROR)
    summary = asyncio.run(main())
    if plot:
        try:
            write_plot(summary, plot)
        except ImportError:
            print("--plot needs matplotlib: pip install 'fastpptp[plot]'", file=sys.stderr)
            return 2
    if json_out:
        print(json.dumps(summary))
    else:
        print(format_summary(summary))
    if "churn" in summary:
        c = summary["churn"]
        return 0 if c["cycles"] >= config.churn and not c["failed"] else 1
    ok = summary["up"] == config.clients and not summary["failed"] and not summary["dropped_after_up"]
    return 0 if ok else 1
