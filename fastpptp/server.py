"""fastpptp-server: the PAC side, a drop-in for pptpd + pppd.

Flow:

1. Start-up: one TUN device for every session (the engine maps each client's tunnel address
   to its call) -- or, with ``per_session_interfaces``, none yet (see 3a) --, the raw GRE
   socket, the engine's native loop, the TCP listener on 1723 and the status socket.
2. Each TCP connection gets a sans-I/O PPTP control connection (PAC role) driven by
   :class:`~fastpptp.aio.driver.ControlStream`.  Admission control first
   (:class:`~fastpptp.admission.Admission`, sans-I/O): connection limit, per-source
   failed-login lockout, per-source rate limit.
3. An Outgoing-Call-Request gets a fresh, unpredictable call ID (at most ``calls_per_source``
   live calls per peer address; the control connection rate-limits requests and the shared
   allocator keeps its quarantine from being filled: ``CallIdAllocator.for_pac``); the call is
   registered in the engine and a server-role PPP link starts (LCP -> MS-CHAPv2/... ->
   CCP/MPPE -> IPCP).  The link owns the peer's pool address until it reaches Dead.
3a. ``per_session_interfaces`` (pppd/pptpd style): before the call is accepted it gets its own
   TUN ``ppp<unit>`` (lowest free unit from :class:`~fastpptp.net.units.UnitTable`;
   ``interface`` may give another prefix) with the MTU
   set, added to the running engine (``add_tun``), so the engine has it before LCP starts.
4. IPCP up: the engine takes the call's packets, then a /32 route to the client's address via
   the TUN is added on the netlink worker thread (off the loop; the last IPCP Configure-Ack
   waits for it) (per-session: the link goes up
   with ``local peer remote`` point-to-point addressing, which routes the peer), ip-up hook
   with the interface name; link down: the route, the address and the call ID are released,
   ip-down hook, Call-Disconnect-Notify; a per-session TUN is removed from the engine and
   closed (the kernel deletes the interface) once ip-down has run, and its unit is free.
5. SIGTERM: every call is cleared (LCP Terminate, Call-Disconnect-Notify,
   Stop-Control-Connection-Request) before exit.  SIGHUP: secrets and options reloaded; live
   sessions keep running, only their rate limits follow a changed chap-secrets (6).
6. Session control (the control socket, ``fastpptp sessions | terminate | rate-limit``): every
   call has a session ID (16 random hex digits, unique across restarts: Acct-Session-Id);
   :meth:`Server.terminate` ends the sessions a :class:`~fastpptp.status.SessionMatch` selects;
   a session's rate limit (``SessionInfo.rate``, a :class:`~fastpptp.shaping.RateLimit`) comes
   from the auth backend (chap-secrets' RATE column, an embedding callback) when the user
   authenticates, else from ``default_rate_limit``; it reaches the engine when the network
   comes up, and :meth:`Server.limit_session` changes it live.
6a. Dynamic Authorization (RFC 5176; ``config.radius.dae``): a UDP listener
   (:class:`~fastpptp.aio.dae.DaeListener` over the sans-I/O
   :class:`~fastpptp.radius.dae.DaeCore`) started with the server and closed first at stop.
   A Disconnect-Request ends the matching sessions through :meth:`Server.terminate`; a
   CoA-Request changes their Session-Timeout / Idle-Timeout (the session's timers) and rate
   limit (:meth:`Server.limit_session`, ``RateSource.RADIUS``).
7. Under systemd (``notifier``, fastpptp.sdnotify): READY=1 once the listener accepts,
   STATUS= with the session count on every change, RELOADING=1/READY=1 around SIGHUP,
   STOPPING=1 when 5 begins, WATCHDOG=1 from the event loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import ipaddress
import logging
import os
import random
import signal
import socket
from collections.abc import Callable, Coroutine, Sequence
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .admission import Admission, AdmissionLimits, Admit, Refusal, idle_victim
from .aio.dae import DaeListener
from .aio.accounting import Accountant
from .aio.driver import ControlStream
from .aio.session import AsyncVerifier, CallSession, EngineHub, SessionEngine
from .config import AddressPool, PppOptions, parse_ppp_options, peer_route_problem, server_link_config
from .aio.offloop import netlink
from .hooks import run_hook
from .metrics import MetricsServer, ServerStats, parse_listen, teardown_reason
from .net import netlink as netlink_direct
from .net.tun import TunLike
from .net.units import UnitTable, unit_pattern
from .ppp.auth.base import AuthBackend, StaticAddressBackend
from .ppp.auth.secrets import Secret, SecretsFileBackend
from .ppp.link import (Authenticated, AuthenticationFailed, LinkConfig, NetworkDown, NetworkUp,
                       PPPLink)
from .pptp.control import (CallCleared, CallIdAllocator, CallIdsExhausted, CallRequested, ControlClosed,
                           ControlConnected, EchoTimeout, Event)
from .pptp.messages import PPTP_PORT, CallDisconnectResult, GeneralErrorCode
from .privs import PrivilegeError, Privileges
from .radius.accounting import AcctAuthentic, AcctSession, Nas, interim_interval, terminate_cause
from .radius.aio import RadiusDriver
from .radius.client import RadiusClient
from .radius.framed import FramedRoute, parse_framed_route, session_mtu
from .radius.settings import RadiusSettings
from .radius.verifier import NasContext, RadiusVerdict, RadiusVerifier
from .sdnotify import Notifier
from .shaping import UNLIMITED, RateLimit, RateLimitBackend, RateSource
from .status import DEFAULT_CONTROL_SOCKET, SessionMatch, StatusServer
from .teardown import Teardown

if TYPE_CHECKING:
    from .net.greport import GreIo
    from .radius.dae import CoaChange, DaeSession

log = logging.getLogger("fastpptp.server")

SHARED_DEFAULT_INTERFACE = "fpptp0"
#: ``terminate`` (hard): time the LCP Terminate-Request gets to leave the engine's control
#: queue before the call is cleared (remove_session drops the call's queued frames).
HARD_TERMINATE_GRACE = 0.1
#: ``terminate --soft``: the longest the LCP Terminate exchange may take before the call is
#: cleared anyway (pppd's lcp-restart 3 s x lcp-max-terminate 2 fits, with room).
SOFT_TERMINATE_LIMIT = 10.0


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "0.0.0.0"
    port: int = PPTP_PORT
    local_ips: tuple[str, ...] = ("198.51.100.1",)
    remote_ips: tuple[str, ...] = ()
    connections: int = 100
    calls_per_source: int = 64           # live calls from one peer address (issue 10)
    ppp: PppOptions = PppOptions()
    secrets_file: str | None = "/etc/ppp/chap-secrets"
    interface: str = "fpptp0"
    per_session_interfaces: bool = False
    ip_up: str | None = "/etc/ppp/ip-up"
    ip_down: str | None = "/etc/ppp/ip-down"
    rate_limit: int = 20                 # new control connections per source per 10 s
    max_auth_failures: int = 5           # per source per 5 minutes
    control_socket: str | None = None
    impl: str = "compiled"
    offload: bool = True
    pptp_echo_interval: float = 60.0
    log_level: str = "info"
    option_file: str | None = None       # re-read on SIGHUP
    flow_control: bool = False           # RFC 2637 sliding window (old PACs/PNSs); peers ignore it
    gre_io: str = "auto"                 # GRE port: auto|xdp|packet|raw (fastpptp/net/greport.py)
    metrics_listen: str | None = None    # "ADDR:PORT": Prometheus /metrics (fastpptp/metrics.py)
    metrics_per_session: bool = False    # per-session series (labels session, user)
    default_rate_limit: RateLimit | None = None   # every session without a per-user limit
    radius: RadiusSettings | None = None        # RADIUS auth/accounting/DAE (fastpptp/radius/)


class ServerEngine(SessionEngine, Protocol):
    """The part of the engine API (docs/DESIGN.md, "Engine API") the server calls itself;
    sessions use the rest through :class:`~fastpptp.aio.session.EngineHub`."""

    def start(self, tun_fds: list[int], gre: object, *, vnet_hdr_len: int | None = None) -> None: ...

    def stop(self) -> None: ...

    def port_counters(self) -> dict[str, int]: ...

    def add_tun(self, fd: int, vnet_hdr_len: int | None = None) -> int: ...

    def remove_tun(self, index: int) -> None: ...

    def counters(self, call_id: int) -> dict[str, int]: ...

    def totals(self) -> dict[str, int]: ...

    @property
    def loops(self) -> int: ...

    def set_rate_limit(self, call_id: int, tx_kbit: int, rx_kbit: int, burst_bytes: int = 0) -> None: ...


class Server:
    """The embeddable server.  ``await server.start()`` then ``await server.serve_forever()``.

    ``auth_backend``: anything with ``get_secret(user, server_name)`` and
    ``check_password(user, password, server_name)`` (see fastpptp.ppp.auth.secrets), and
    optionally ``static_address`` and ``rate_limit(user, server_name)``; default:
    chap-secrets.  ``verifier``: ``async verifier(VerifyRequest) -> VerifyResult`` checks the
    peers instead (RADIUS ...; ``auth_backend`` then only gives static addresses), with
    ``verify_timeout`` seconds for a verdict (default ``AuthTimers.verify_timeout``).  ``assign_address(user) -> str | None`` overrides the pool.  ``on_event(kind,
    info)`` is told of session events ("up", "down", "auth-failed").  ``notifier``: tells systemd
    READY/STOPPING/STATUS (session count)/WATCHDOG (fastpptp.sdnotify; default: none).
    """

    def __init__(self, config: ServerConfig, *, auth_backend: AuthBackend | None = None,
                 verifier: AsyncVerifier | None = None, verify_timeout: float | None = None,
                 assign_address: Callable[[str], str | None] | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 tun_factory: Callable[[str], TunLike] | None = None, configure_network: bool = True,
                 notifier: Notifier | None = None):
        self.config = config
        self._notify = notifier if notifier is not None else Notifier()
        self._auth_backend = auth_backend
        self._verifier = verifier
        self._verify_timeout = verify_timeout
        self._assign_address = assign_address
        self._on_event = on_event
        self._engine: ServerEngine | None = None
        self._tun: TunLike | None = None
        self._gre: GreIo | None = None          # the GRE port (fastpptp/net/greport.py)
        self._tun_factory = tun_factory
        self._configure_network = configure_network
        self.pool = AddressPool(config.remote_ips)
        self.sessions: dict[int, CallSession] = {}
        self._calls_of: dict[ControlStream, set[int]] = {}
        self._streams: set[ControlStream] = set()
        self._admitted_at: dict[ControlStream, float] = {}     # for _evict_idle
        # a control connection may live without a call (or before one): room for twice the
        # sessions, and never fewer than 8
        self.admission = Admission(AdmissionLimits(
            max_connections=max(config.connections * 2, 8), rate_limit=config.rate_limit,
            max_auth_failures=config.max_auth_failures, rate_window=10.0, lockout_window=300.0))
        self._rng = random.SystemRandom()
        self._tcp_server: asyncio.Server | None = None
        self._status: StatusServer | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._hub: EngineHub | None = None
        # shared by every control connection; hardened against unauthenticated churn (issue
        # 10): only IDs that carried GRE are quarantined, at most 256 per source, and the
        # oldest is reused before a new call is refused
        self._call_ids = CallIdAllocator.for_pac(self._rng)
        # the kernel route changes of IPCP up/down, one at a time in call order, off the loop
        self._netlink_worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._ppp = config.ppp
        self._secrets_from_file = False
        # per_session_interfaces: call ID -> its interface; the units (ppp0 = unit 0)
        self._ifaces: dict[int, SessionInterface] = {}
        self._units = UnitTable(unit_pattern(config.interface, SHARED_DEFAULT_INTERFACE))
        self._tun_offload = False
        self._down_hooks: dict[int, asyncio.Task[int | None]] = {}
        self._hook_tasks: set[asyncio.Task[int | None]] = set()
        self.stats = ServerStats()              # event counters, read by the metrics collector
        self._metrics: MetricsServer | None = None
        # RADIUS authentication (config.radius, and no embedder's verifier): made at start
        self._radius_driver: RadiusDriver | None = None
        self.radius_verifier: RadiusVerifier | None = None
        self._radattr: dict[int, tuple[str, ...]] = {}     # call ID -> its Access-Accept, radattr.so's form
        self._dae: DaeListener | None = None      # RFC 5176 listener (config.radius.dae)
        self._accounting: Accountant | None = None       # RADIUS accounting (acct servers set)

    @property
    def engine(self) -> ServerEngine:
        """The data-plane engine (after :meth:`start`)."""
        if self._engine is None:
            raise RuntimeError("server not started")
        return self._engine

    @property
    def hub(self) -> EngineHub:
        """The engine's control-queue hub (after :meth:`start`)."""
        if self._hub is None:
            raise RuntimeError("server not started")
        return self._hub

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._auth_backend is None:
            self._auth_backend = self._load_secrets()
            self._secrets_from_file = True
        await self._radius_auth_start()
        self._open_dataplane()
        self._hub = EngineHub(self.engine, loop)
        await self._start_accounting()              # Accounting-On before any session's Start
        # a connect storm (1 000 clients at once) must not overflow the accept queue: the
        # kernel caps the backlog at net.core.somaxconn
        backlog = max(socket.SOMAXCONN, self.admission.limits.max_connections)
        self._tcp_server = await loop.create_server(self._make_stream, self.config.listen, self.config.port,
                                                    reuse_address=True, backlog=backlog)
        path = self.config.control_socket or DEFAULT_CONTROL_SOCKET
        self._status = StatusServer(path, self.snapshot, control=self)
        try:
            await self._status.start()
        except OSError as exc:
            log.warning("status socket %s unavailable: %s", path, exc)
            self._status = None
        await self._start_dae()
        if self.config.metrics_listen:
            self._metrics = MetricsServer(self, loop, per_session=self.config.metrics_per_session)
            self._metrics.start(*parse_listen(self.config.metrics_listen))
        log.info("listening on %s:%d, tunnel %s, pool %d addresses, MPPE policy %s", self.config.listen,
                 self.config.port, self.config.local_ips[0], len(self.pool), self._policy_summary())
        self._notify.ready(self._status_line())     # the listener accepts from here on
        self._notify.start_watchdog(loop)

    def _policy_summary(self) -> str:
        flags = [f for f in self._ppp.auth_flags if "mppe" in f]
        return ",".join(flags) or "default"

    def _load_secrets(self) -> AuthBackend:
        from .ppp.auth.secrets import SecretsFile
        path = self.config.secrets_file
        if path and os.path.exists(path):
            return SecretsFileBackend(SecretsFile.load(path))
        log.warning("no secrets file %s: every login will fail", path)
        return SecretsFileBackend(SecretsFile([], path or "<none>"))

    def _open_dataplane(self) -> None:
        from .dataplane import EngineConfig, load_engine
        from .net import tun
        from .net.greport import open_gre_io
        mtu = self._ppp.mtu or 1400
        Engine = load_engine(self.config.impl)
        # IFF_VNET_HDR puts a virtio_net_hdr before every packet: only an engine that says it
        # parses one may get such a TUN, otherwise the header is taken for IP (no traffic).
        offload = self.config.offload and Engine.supports_vnet_hdr
        self._tun_offload = offload
        bind = self.config.listen if self.config.listen not in ("0.0.0.0", "::") else None
        ecfg = EngineConfig(mtu=mtu, mru=self._ppp.mru or 1500, offload=offload,
                            flow_control=self.config.flow_control)
        engine: ServerEngine = Engine(ecfg)
        gre = self._gre = open_gre_io(self.config.gre_io, local=bind, batch=ecfg.batch)
        # the reference engine is the benchmark baseline: its own Python socket calls on the
        # raw socket, never the compiled port (whose Python helpers copy)
        port = gre.port if self.config.impl == "compiled" or gre.mode != "raw" else gre.raw.fileno()
        self._engine = engine
        if self.config.per_session_interfaces:
            # no shared TUN: each call adds its own to the running engine (_open_interface)
            engine.start([], port)
            return
        dev: TunLike
        if self._tun_factory is not None:
            dev = self._tun_factory(self.config.interface)
        else:
            dev = tun.open_tun(self.config.interface, vnet_hdr=offload, offload=offload)
        self._tun = dev
        if self._configure_network:
            netlink.set_mtu(dev.name, mtu)
            netlink.add_address(dev.name, f"{self.config.local_ips[0]}/32")
            netlink.set_link_up(dev.name)
        engine.start([dev.fd], port, vnet_hdr_len=dev.vnet_hdr_len)

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    async def stop(self, reason: str = "administrative shutdown") -> None:
        """Clear every call (LCP Terminate, Call-Disconnect-Notify, StopCCRQ), then close."""
        if self._stopping:
            return
        self._stopping = True
        self._notify.stopping(f"stopping: {reason}")
        log.info("stopping: %s (%d sessions)", reason, len(self.sessions))
        if self._tcp_server is not None:
            self._tcp_server.close()
        self._stop_dae()
        for s in list(self.sessions.values()):
            s.close(reason, Teardown.SHUTDOWN)
        loop = asyncio.get_running_loop()      # the one clock of the server: the loop's
        deadline = loop.time() + 3.0
        while any(not s.closed for s in self.sessions.values()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for s in list(self.sessions.values()):
            s.abort(reason, Teardown.SHUTDOWN)
        for stream in list(self._streams):
            with contextlib.suppress(Exception):
                stream.conn.stop("admin-shutdown", loop.time())
                stream.pump()
        deadline = loop.time() + 2.0
        while self._streams and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for stream in list(self._streams):
            stream.close()
        await self._stop_accounting()               # the sessions' Stops, then Accounting-Off
        if self._status is not None:
            await self._status.close()
        if self._metrics is not None:
            await self._metrics.close()
        self._radius_auth_stop()
        if self._hub is not None:
            self._hub.close()
        if self._netlink_worker is not None:        # the route deletes queued above finish
            await loop.run_in_executor(None, functools.partial(self._netlink_worker.shutdown, wait=True))
            self._netlink_worker = None
        if self._engine is not None:
            self._engine.stop()
            if self._gre is not None:
                self._gre.close()                   # logs what it cannot close
            if self._tun is not None:
                with contextlib.suppress(Exception):
                    self._tun.close()
        for call_id in list(self._ifaces):          # ip-down hooks still running: not waited
            self._release_interface(call_id)
        self._notify.close()
        self._stopped.set()

    def reload(self) -> None:
        """SIGHUP: re-read secrets and the options file; live sessions keep what they have."""
        self._notify.reloading()
        if self._secrets_from_file:
            try:
                self._auth_backend = self._load_secrets()
            except Exception as exc:
                log.error("reload of %s failed, keeping the old secrets: %s", self.config.secrets_file, exc)
        if self.config.option_file:
            try:
                with open(self.config.option_file) as f:
                    self._ppp = parse_ppp_options(f.read(), self.config.option_file)
            except Exception as exc:
                log.error("reload of %s failed, keeping the old options: %s", self.config.option_file, exc)
        self._reapply_rates()
        log.info("reloaded secrets and options")
        self._notify.ready(self._status_line())

    # ------------------------------------------------------------------ control connections
    def _make_stream(self) -> ControlStream:
        from .pptp.control import ControlConfig, ControlConnection, Role
        loop = asyncio.get_running_loop()
        conn = ControlConnection(Role.PAC, ControlConfig(echo_interval=self.config.pptp_echo_interval,
                                                         maximum_channels=self.config.connections),
                                 loop.time(), self._rng, allocator=self._call_ids)
        holder: dict[str, ControlStream] = {}

        def on_event(ev: Event) -> None:
            self._control_event(holder["stream"], ev)

        def on_lost(exc: Exception | None) -> None:
            self._control_lost(holder["stream"], exc)

        stream = ControlStream(conn, on_event, on_lost, on_made=self._admit)
        holder["stream"] = stream
        return stream

    def _admit(self, stream: ControlStream) -> None:
        peer = _source(stream)
        if self._stopping:
            stream.close()
            return
        now = asyncio.get_running_loop().time()
        decision = self.admission.connect(peer, now)
        if (not isinstance(decision, Admit) and decision.reason is Refusal.CONNECTIONS
                and self._evict_idle(now)):
            decision = self.admission.connect(peer, now)
        if not isinstance(decision, Admit):
            retry = "" if decision.retry_after is None else f", retry in {decision.retry_after:.0f} s"
            log.warning("control connection from %s refused: %s%s", peer, decision.reason.value, retry)
            self.stats.admission_refusals[decision.reason.name.lower()] += 1
            stream.close()
            return
        self._streams.add(stream)
        self._calls_of[stream] = set()
        self._admitted_at[stream] = now
        if self._gre is not None:
            self._gre.peer_up(peer)            # its GRE comes from the control connection's peer
        stream.conn.source = peer              # its call IDs' quarantine counts against it
        log.info("control connection from %s", peer)

    def _evict_idle(self, now: float) -> bool:
        """At the connection limit, close the connection without a call that
        admission.idle_victim picks (silent or slow-loris connections would otherwise keep
        every login out for the whole Start-Control-Connection-Request wait); its slot is
        free at once.  Counted as admission refusal ``idle_evicted``."""
        victim = idle_victim(((_source(s), t, s) for s, t in self._admitted_at.items()
                              if s in self._streams and not self._calls_of.get(s)), now)
        if victim is None:
            return False
        log.warning("control connection from %s closed at the connection limit: no call after %.0f s",
                    _source(victim), now - self._admitted_at[victim])
        self.stats.admission_refusals["idle_evicted"] += 1
        self._streams.discard(victim)                  # _control_lost must not count it again
        self._admitted_at.pop(victim, None)
        self.admission.disconnect(_source(victim))
        if self._gre is not None:
            self._gre.peer_down(_source(victim))
        victim.close()
        return True

    def _control_event(self, stream: ControlStream, ev: Event) -> None:
        peer = stream.peername[0] if stream.peername else "?"
        now = asyncio.get_running_loop().time()
        if isinstance(ev, CallRequested):
            if len(self.sessions) >= self.config.connections or self._stopping:
                log.warning("call from %s refused: %d sessions (limit %d)", peer, len(self.sessions),
                            self.config.connections)
                self.stats.calls_refused["stopping" if self._stopping else "session_limit"] += 1
                stream.conn.reject_call(ev, now=now)
                return
            from_peer = sum(1 for s in self.sessions.values() if s.info.peer == peer)
            if from_peer >= self.config.calls_per_source:
                log.warning("call from %s refused: %d calls from it (limit %d)", peer, from_peer,
                            self.config.calls_per_source)
                stream.conn.reject_call(ev, now=now)
                return
            iface = None
            if self.config.per_session_interfaces:
                try:
                    iface = self._open_interface()
                except Exception as exc:
                    log.error("call from %s refused: no interface: %s", peer, exc)
                    self.stats.calls_refused["no_interface"] += 1
                    stream.conn.reject_call(ev, now=now)
                    return
            try:
                call_id = stream.conn.accept_call(ev, now=now)   # fresh ID from the shared allocator
            except CallIdsExhausted:
                if iface is not None:
                    self._close_interface(iface)
                log.warning("call from %s refused: no free call ID (%d in use)", peer, len(self._call_ids))
                stream.conn.reject_call(ev, now=now)
                return
            except BaseException:
                if iface is not None:
                    self._close_interface(iface)
                raise
            if call_id in stream.conn.calls():
                if iface is not None:
                    self._ifaces[call_id] = iface
                self._start_call(stream, call_id, ev)
            elif iface is not None:
                self._close_interface(iface)
        elif isinstance(ev, CallCleared):
            s = self.sessions.get(ev.call_id)
            if s is not None:
                # the control connection's end clears its calls with General Error (pptp/
                # control.py _close): the carrier went; else the peer asked (Call-Clear-
                # Request, Stop-Control-Connection-Request)
                lost = ev.result == CallDisconnectResult.GENERAL_ERROR
                s.abort(f"peer cleared the call ({ev.reason or 'Call-Clear-Request'})",
                        Teardown.CONTROL_LOST if lost else Teardown.PEER_CALL_CLEAR)
        elif isinstance(ev, (ControlClosed, EchoTimeout)):
            failed = isinstance(ev, EchoTimeout) or ev.error is not None or "timeout" in ev.reason
            log.log(logging.WARNING if failed else logging.INFO, "control connection from %s closing: %s",
                    peer, ev.reason)
            stream.close()
        elif isinstance(ev, ControlConnected):
            log.info("control connection from %s: %s", peer, ev)
        else:
            log.debug("control %s: %s", peer, ev)

    def _control_lost(self, stream: ControlStream, exc: Exception | None) -> None:
        self._admitted_at.pop(stream, None)
        if stream in self._streams:           # admitted: it counted as open
            self._streams.discard(stream)
            self.admission.disconnect(_source(stream))
            if self._gre is not None:
                self._gre.peer_down(_source(stream))
        for call_id in self._calls_of.pop(stream, set()):
            s = self.sessions.get(call_id)
            if s is not None:
                s.abort("control connection closed", Teardown.CONTROL_LOST)

    # ------------------------------------------------------------------ calls
    def _start_call(self, stream: ControlStream, call_id: int, req: CallRequested) -> None:
        peer = _source(stream)
        link = PPPLink(self._link_config(), "server", self._auth_backend, self._rng,
                       external_verifier=self._verifier is not None or self.radius_verifier is not None)
        verifier = self._verifier if self.radius_verifier is None else \
            self._radius_call_verifier(stream, call_id, link)
        iface = self._ifaces.get(call_id)

        def closed(s: CallSession, reason: str) -> None:
            self._call_closed(stream, s, reason)

        session = CallSession(self.hub, link, call_id=call_id, peer_call_id=req.peer_call_id,
                              peer_addr=peer, tun=iface.index if iface is not None else 0,
                              peer_rwin=req.peer_rwin or 64,      # 0: the PNS gave no window
                              peer_ppd=req.peer_ppd,
                              on_network_up=self._network_up, on_network_down=self._network_down,
                              on_closed=closed, on_auth=self._auth_event, verifier=verifier,
                              on_peer_frame=lambda s: self._call_ids.mark_active(s.call_id))
        session.info.session_id = self._new_session_id()
        self.sessions[call_id] = session
        self.stats.calls_accepted += 1
        self._calls_of.setdefault(stream, set()).add(call_id)
        self._notify.status(self._status_line())
        if iface is not None:
            log.info("call %d peer %s: interface %s", call_id, peer, iface.name)
        session.start(wait_for_peer=1.0)

    # ------------------------------------------------------------------ RADIUS authentication
    async def _radius_auth_start(self) -> None:
        """``config.radius`` (and no embedder's verifier): the RADIUS client on its own UDP
        socket and the verifier every call asks (radius/verifier.py).  The verify timeout
        covers every server's tries (the auth machine would give up first otherwise)."""
        settings = self.config.radius
        if settings is None or not settings.authenticates:     # DAE or accounting only
            return
        if self._verifier is not None:
            log.info("RADIUS authentication not started: the embedder's verifier checks logins")
            return
        driver = RadiusDriver(RadiusClient(settings.auth_servers, settings.policy),
                              bind_address=settings.bind_address)
        await driver.start()
        self._radius_driver = driver
        self.radius_verifier = RadiusVerifier(
            driver, settings, self._link_config().policy.mppe,
            local_backend=lambda: self._auth_backend, hostname=socket.gethostname())
        if self._verify_timeout is None:
            p = settings.policy
            self._verify_timeout = p.timeout * p.tries * len(settings.auth_servers) + 2.0
        if settings.radattr_dir is not None and not self.config.per_session_interfaces:
            log.warning("radattr.so: radattr.<ifname> files need per-session interfaces "
                        "(--per-session-interfaces); none are written")
        log.info("RADIUS authentication: %s (order %s)", ", ".join(
            f"{s.address[0]}:{s.address[1]}" for s in settings.auth_servers), settings.auth_order)

    def _radius_auth_stop(self) -> None:
        if self._radius_driver is not None:
            self._radius_driver.close()
            self._radius_driver = None

    def _radius_call_verifier(self, stream: ControlStream, call_id: int, link: PPPLink) -> AsyncVerifier:
        """The call's verifier: NAS-Port = call ID, Calling-Station-Id = the peer's address,
        Called-Station-Id = ours.  On an Access-Accept, before the verdict reaches the link: a
        narrowed MPPE policy (MS-MPPE-Encryption-Types/-Policy) goes into the link's config,
        and the reply is kept for the radattr file."""
        assert self.radius_verifier is not None
        ours = ""
        if stream.transport is not None:
            sockname = stream.transport.get_extra_info("sockname")
            if isinstance(sockname, tuple) and sockname:
                ours = str(sockname[0])

        def accepted(verdict: RadiusVerdict) -> None:
            self._radattr[call_id] = verdict.reply
            mppe = verdict.session_mppe
            if mppe is None:
                return
            log.info("call %d: MPPE narrowed by RADIUS to %s%s", call_id,
                     ",".join(str(b) for b in sorted(mppe.policy.bits)),
                     " (required)" if mppe.policy.required else "")
            link.config = dataclasses.replace(link.config, policy=dataclasses.replace(
                link.config.policy, mppe=mppe.policy))
        return self.radius_verifier.for_call(NasContext(call_id, _source(stream), ours), accepted)

    def _radattr_path(self, ifname: str) -> str | None:
        radius = self.config.radius
        if radius is None or radius.radattr_dir is None or not ifname:
            return None
        return os.path.join(radius.radattr_dir, f"radattr.{ifname}")

    def _radattr_write(self, session: CallSession, ifname: str) -> None:
        """radattr.so: the call's Access-Accept attributes in ``<dir>/radattr.<ifname>``
        before ip-up runs (pppd's ip_up_notifier), one ``Name value`` per line."""
        lines = self._radattr.get(session.call_id)
        path = self._radattr_path(ifname)
        if lines is None or path is None:
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{line}\n" for line in lines))
        except OSError as exc:
            log.warning("call %d: radattr file %s: %s", session.call_id, path, exc)

    def _radattr_remove(self, call_id: int) -> None:
        self._radattr.pop(call_id, None)
        iface = self._ifaces.get(call_id)
        path = self._radattr_path(iface.name) if iface is not None else None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # ------------------------------------------------------------------ per-session interfaces
    def _open_interface(self) -> SessionInterface:
        """The lowest free unit whose name no other interface has (a real pppd's ppp0 stays
        untouched: TUNSETIFF on an existing persistent TUN would attach to it), opened, its
        MTU set, added to the engine."""
        from .net import tun as tunmod
        taken: set[str] = set()
        if self._configure_network and self._tun_factory is None:
            taken = {link.name for link in netlink.list_links()}

        def open_device(name: str) -> TunLike | None:
            if self._tun_factory is not None:
                return self._tun_factory(name)
            try:
                return tunmod.open_tun(name, vnet_hdr=self._tun_offload, offload=self._tun_offload)
            except tunmod.TunError as exc:          # EBUSY: someone else's, created meanwhile
                log.warning("interface %s unavailable (%s), trying the next unit", name, exc)
                return None

        unit, name, dev = self._units.allocate(open_device, taken)
        try:
            name = dev.name or name
            if self._configure_network:
                netlink.set_mtu(name, self._ppp.mtu or 1400)
            index = self.engine.add_tun(dev.fd, vnet_hdr_len=dev.vnet_hdr_len)
        except BaseException:
            with contextlib.suppress(Exception):
                dev.close()
            self._units.release(unit)
            raise
        return SessionInterface(unit, name, dev, index)

    def _close_interface(self, iface: SessionInterface) -> None:
        if iface.attached:
            with contextlib.suppress(KeyError, ValueError):
                self.engine.remove_tun(iface.index)     # before the fd goes: never a stale fd
            iface.attached = False
        with contextlib.suppress(Exception):
            iface.tun.close()                          # the kernel deletes the interface
        self._units.release(iface.unit)

    def _release_interface(self, call_id: int) -> None:
        iface = self._ifaces.pop(call_id, None)
        self._down_hooks.pop(call_id, None)
        if iface is not None:
            self._close_interface(iface)
            log.info("call %d: interface %s removed", call_id, iface.name)

    def _ifname(self, session: CallSession) -> str:
        iface = self._ifaces.get(session.call_id)
        if iface is not None:
            return iface.name
        if self.config.per_session_interfaces:
            return ""
        return self._shared_ifname

    @property
    def _shared_ifname(self) -> str:
        """The shared TUN's name (the configured one until it is open)."""
        return self._tun.name if self._tun is not None else self.config.interface

    def _link_config(self) -> LinkConfig:
        cfg = server_link_config(self._ppp, local_ip=self.config.local_ips[0],
                                 assign_address=self._allocate_address,
                                 release_address=self.pool.release,
                                 claim_address=self._claim_address,
                                 peer_address_allowed=self._peer_address_allowed)
        if self._verify_timeout is not None:
            cfg = dataclasses.replace(cfg, auth_timers=dataclasses.replace(
                cfg.auth_timers, verify_timeout=self._verify_timeout))
        return cfg

    def _allocate_address(self, user: str) -> str | None:
        if self._assign_address is not None:
            return self._assign_address(user)
        static = None
        if isinstance(self._auth_backend, StaticAddressBackend):
            static = self._auth_backend.static_address(user, self._ppp.name or "*")
        return self.pool.allocate(static)

    def _claim_address(self, user: str, addr: ipaddress.IPv4Address) -> str | None:
        """LinkConfig.claim_address: a peer's own address (Framed-IP-Address 255.255.255.255
        with ipcp-accept-remote) or the verifier's is held in the pool like a pool address,
        so no two live sessions share one (the shared TUN routes by address)."""
        if str(addr) in self.config.local_ips:
            return "one of our tunnel addresses"
        return None if self.pool.claim(str(addr)) else "in use by another session"

    def _peer_address_allowed(self, user: str, addr: ipaddress.IPv4Address) -> bool:
        """LinkConfig.peer_address_allowed: pppd's auth_ip_addr over the user's chap-secrets
        address column, when the entry has one (``*``, subnets, ``!addr``, ``-``), and not an
        address this host has or reaches directly."""
        backend = self._auth_backend
        entry = (backend.lookup(user, self._ppp.name or "*")
                 if isinstance(backend, SecretsFileBackend) else None)   # chap-secrets only
        if isinstance(entry, Secret) and entry.addresses and not entry.allows_address(str(addr)):
            return False
        if not self._configure_network:
            return True
        # The host's own and directly reached addresses are never a peer's (config.
        # peer_route_problem).  One route lookup, on the loop: only for an address a peer
        # chose (Framed-IP-Address 255.255.255.255 with ipcp-accept-remote).
        try:
            route = netlink_direct.route_to(str(addr))
        except netlink_direct.NoRouteError:
            return True                              # unreachable: nothing to take over
        except OSError as e:
            log.warning("peer %r chose %s: cannot check the host's route to it (%s): refused",
                        user, addr, e)
            return False
        tunnels = {self._shared_ifname, *(i.name for i in self._ifaces.values())}
        problem = peer_route_problem(route.gateway, route.ifname, tunnels)
        if problem is not None:
            log.warning("peer %r may not choose %s: %s", user, addr, problem)
        return problem is None

    def _auth_event(self, session: CallSession, ev: Authenticated | AuthenticationFailed) -> None:
        if isinstance(ev, AuthenticationFailed):
            self.stats.auth_failures[ev.method.value] += 1
            self.admission.auth_failed(session.info.peer, session.now)
            self._emit("auth-failed", {"user": ev.user, "peer": session.info.peer})
            return
        self.stats.auth_successes[ev.method.value] += 1
        if session.rate_limit is not None:      # the verifier's reply (RADIUS) names one
            session.info.rate, session.info.rate_source = session.rate_limit, RateSource.RADIUS
        elif session.info.rate is None:      # a limit set before (admin) stays
            rate = self._user_rate(ev.user)
            if rate is not None:
                session.info.rate, session.info.rate_source = rate, RateSource.AUTH

    def _network_up(self, session: CallSession, ev: NetworkUp) -> asyncio.Future[object] | None:
        self._install_rate(session)
        if ev.family in (4, "ipv4"):
            self.stats.sessions_setup += 1
            self._acct_session_up(session)
        iface = self._ifaces.get(session.call_id)
        if iface is not None:
            return self._network_up_own_interface(session, iface, ev)
        if ev.family not in (4, "ipv4"):
            # IPv6CP (RFC 5072): link-local addresses from the interface identifiers; the
            # peer's gets a host route through the shared TUN like an IPv4 peer.
            if not self._configure_network:
                return None
            call_id, local = session.call_id, ev.local
            address = self._netlink_call(functools.partial(
                netlink_direct.add_address, self._shared_ifname, f"{local}/128", peer=str(ev.remote),
                nodad=True))

            def link_local(f: asyncio.Future[object]) -> None:
                if not f.cancelled() and f.exception() is not None:
                    log.warning("call %d: IPv6 link-local %s: %s", call_id, local, f.exception())
            address.add_done_callback(link_local)
            return address
        framed_mtu = session.attributes.framed_mtu
        if session.attributes.framed_routes or (framed_mtu and framed_mtu < (self._ppp.mtu or 1400)):
            log.info("call %d: Framed-Route / Framed-MTU need per-session interfaces: not applied",
                     session.call_id)
        route: asyncio.Future[object] | None = None
        if self._configure_network:
            # off the event loop (~4 ms per route in a connect storm); the session holds its
            # last IPCP Configure-Ack until the route is there (see CallSession.pump)
            call_id, remote = session.call_id, ev.remote
            route = self._netlink_call(functools.partial(
                netlink_direct.add_route, f"{remote}/32", dev=self._shared_ifname, src=self.config.local_ips[0],
                replace=True))

            def added(f: asyncio.Future[object]) -> None:
                if not f.cancelled() and f.exception() is not None:
                    log.error("call %d: route to %s failed: %s", call_id, remote, f.exception())
            route.add_done_callback(added)
        self._hook(run_hook(
            self.config.ip_up, ifname=self._ifname(session),
            local=str(ev.local), remote=str(ev.remote), ipparam=self._ppp.ipparam,
            peer=session.info.user))
        self._emit("up", self._session_doc(session))
        return route

    def _netlink_call(self, fn: Callable[[], object]) -> asyncio.Future[object]:
        """``fn()`` (a netlink change) on the one worker thread: changes apply in the order
        made, and the loop does not wait for them.  The thread is made by the loop's thread,
        so it works in the same network namespace."""
        if self._netlink_worker is None:
            self._netlink_worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="netlink")
        return asyncio.get_running_loop().run_in_executor(self._netlink_worker, fn)

    def _network_up_own_interface(self, session: CallSession, iface: SessionInterface,
                                  ev: NetworkUp) -> asyncio.Future[object] | None:
        """pppd's sifaddr/sifup: the link up, ``local peer remote`` on it (the kernel routes
        the peer through it), then ip-up with its name.  The netlink part runs on the worker
        thread (off the loop); ip-up starts once it is done, and the session's last IPCP
        Configure-Ack waits for it (the future returned)."""
        ipv4 = ev.family in (4, "ipv4")
        link_down, iface.up = not iface.up, True
        if not self._configure_network:
            self._own_interface_up(session, iface, ev)
            return None
        name, local = iface.name, f"{ev.local}/{32 if ipv4 else 128}"
        mtu, routes = self._framed(session) if ipv4 else (None, ())

        def configure() -> None:
            if mtu is not None:                 # the Access-Accept's Framed-MTU (radius/framed.py)
                netlink_direct.set_mtu(name, mtu)
            # IPv6 with a peer: the kernel routes the peer only if the link is already up
            if link_down:
                netlink_direct.set_link_up(name)
            netlink_direct.add_address(name, local, peer=str(ev.remote), nodad=not ipv4)
            for r in routes:                    # its Framed-Routes, once the peer is routed
                try:
                    netlink_direct.add_route(str(r.destination), dev=name, metric=r.metric,
                                             gateway=str(r.gateway) if r.gateway else None)
                except Exception as exc:        # one bad route never fails the session
                    log.warning("call %d: Framed-Route %s via %s: %s", session.call_id,
                                r.destination, name, exc)

        def configured(f: asyncio.Future[object]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("call %d: %s address %s peer %s: %s", session.call_id, name, ev.local,
                          ev.remote, f.exception())
            self._own_interface_up(session, iface, ev)
        done = self._netlink_call(configure)
        done.add_done_callback(configured)
        return done

    def _framed(self, session: CallSession) -> tuple[int | None, tuple[FramedRoute, ...]]:
        """The verifier's Framed-MTU and Framed-Routes for the session's own interface
        (radius/framed.py); a value that cannot be applied is logged and left out."""
        attrs, routes = session.attributes, []
        try:
            mtu = session_mtu(self._ppp.mtu or 1400, attrs.framed_mtu)
        except ValueError as exc:
            mtu = None
            log.warning("call %d: %s: ignored", session.call_id, exc)
        for text in attrs.framed_routes:
            try:
                routes.append(parse_framed_route(text))
            except ValueError as exc:
                log.warning("call %d: %s: ignored", session.call_id, exc)
        return mtu, tuple(routes)

    def _own_interface_up(self, session: CallSession, iface: SessionInterface, ev: NetworkUp) -> None:
        if ev.family not in (4, "ipv4"):
            return
        self._radattr_write(session, iface.name)
        self._hook(run_hook(
            self.config.ip_up, ifname=iface.name, local=str(ev.local), remote=str(ev.remote),
            ipparam=self._ppp.ipparam, peer=session.info.user))
        self._emit("up", self._session_doc(session))

    def _network_down(self, session: CallSession, ev: NetworkDown | None) -> None:
        if ev is not None:      # IPCP down while the link lives on: nothing to free yet
            return
        remote = session.info.remote_ip
        own = session.call_id in self._ifaces     # its own interface goes away as a whole
        if remote and self._configure_network and not own:
            # off the loop, after the add queued before it (the worker keeps the order)
            done = self._netlink_call(functools.partial(
                netlink_direct.delete_route, f"{remote}/32", dev=self._shared_ifname, missing_ok=True))
            done.add_done_callback(functools.partial(_route_deleted, session.call_id, remote))
        c = session.final_counters
        if remote:
            task = self._hook(run_hook(
                self.config.ip_down, ifname=self._ifname(session),
                local=session.info.local_ip or "", remote=remote, ipparam=self._ppp.ipparam,
                peer=session.info.user, connect_time=int(session.now - session.info.started),
                bytes_sent=c.get("tx_bytes", 0), bytes_rcvd=c.get("rx_bytes", 0)))
            if own:
                self._down_hooks[session.call_id] = task    # like pppd: ip-down sees the interface

    def _call_closed(self, stream: ControlStream, session: CallSession, reason: str) -> None:
        now = asyncio.get_running_loop().time()
        self.sessions.pop(session.call_id, None)
        cause = session.info.cause or Teardown.LOCAL_CLOSE
        self.stats.session_closed(teardown_reason(cause, shutdown=self._stopping), session.final_counters)
        self._acct_session_closed(session, cause)
        self._calls_of.get(stream, set()).discard(session.call_id)
        self._notify.status(self._status_line())
        # the pool address went back when the link reached Dead (PPPLink owns it)
        self._emit("down", {**self._session_doc(session), "reason": reason, "cause": cause.value})
        self._radattr_remove(session.call_id)
        if session.call_id in self._ifaces:
            hook = self._down_hooks.get(session.call_id)
            if hook is not None and not hook.done():
                call_id = session.call_id

                def release(_hook: asyncio.Task[int | None]) -> None:
                    self._release_interface(call_id)
                hook.add_done_callback(release)
            else:
                self._release_interface(session.call_id)
        if stream in self._streams:
            with contextlib.suppress(Exception):
                if cause is Teardown.NO_ADDRESS:
                    # a resource error, not an administrative one (RFC 2637 §2.13, §2.16)
                    stream.conn.clear_call(session.call_id, reason, now=now,
                                           result=CallDisconnectResult.GENERAL_ERROR,
                                           error=GeneralErrorCode.NO_RESOURCE)
                else:
                    stream.conn.clear_call(session.call_id, reason, now=now)
                stream.pump()

    def _hook(self, run: Coroutine[Any, Any, int | None]) -> asyncio.Task[int | None]:
        """Run an ip-up/ip-down hook in the background, holding the task until it is done
        (the loop keeps only a weak reference to it)."""
        task = asyncio.get_running_loop().create_task(run)
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)
        return task

    def _emit(self, kind: str, info: dict[str, Any]) -> None:
        if self._on_event is not None:
            try:
                self._on_event(kind, info)
            except Exception:
                log.exception("on_event hook failed")

    # ------------------------------------------------------------------ session control
    def _new_session_id(self) -> str:
        """16 random hex digits: unique across restarts (64 bits from the system's CSPRNG)
        and among the live sessions, so RADIUS can use it as Acct-Session-Id."""
        live = {s.info.session_id for s in self.sessions.values()}
        while True:
            sid = f"{self._rng.getrandbits(64):016x}"
            if sid not in live:
                return sid

    def find_sessions(self, match: SessionMatch) -> list[CallSession]:
        """The live sessions ``match`` selects (a session not yet authenticated has no user
        and, before IPCP, no address: only ``session``, ``peer`` and ``all`` select it)."""
        return [s for s in self.sessions.values() if not s.closed and match.matches(
            session_id=s.info.session_id, user=s.info.user, ip=s.info.remote_ip, peer=s.info.peer)]

    def terminate(self, match: SessionMatch, *, soft: bool = False,
                  reason: str = "administratively terminated",
                  cause: Teardown = Teardown.ADMIN) -> list[str]:
        """End the sessions ``match`` selects; returns their session IDs (none matched: []).

        Hard (default): LCP Terminate-Request with ``reason`` goes out once, and the call is
        cleared HARD_TERMINATE_GRACE (0.1 s) later without waiting for the peer's
        Terminate-Ack. Soft: the normal teardown: LCP Terminate-Request, retransmitted until
        the peer's Terminate-Ack (or the LCP terminate timer runs out, at most
        SOFT_TERMINATE_LIMIT), then the call is cleared.  Either way the call is cleared like
        any other: Call-Disconnect-Notify, counters logged, the address back to the pool,
        ip-down.  ``cause``: the type of ``reason`` (a RADIUS Disconnect-Request gives its own)."""
        hits = self.find_sessions(match)
        loop = asyncio.get_running_loop()
        for s in hits:
            log.info("call %d session %s user %s peer %s: %sterminate: %s", s.call_id, s.info.session_id,
                     s.info.user or "-", s.info.peer, "soft " if soft else "", reason)
            s.close(reason, cause)
            loop.call_later(SOFT_TERMINATE_LIMIT if soft else HARD_TERMINATE_GRACE, s.abort, reason, cause)
        return [s.info.session_id for s in hits]

    def limit_session(self, session_id: str, rate: RateLimit, *,
                      source: RateSource = RateSource.ADMIN) -> bool:
        """Change a live session's rate limit (0/0 = unlimited); False when no live session
        has that ID.  Reaches the engine at once when the network is up, else when it comes up."""
        for s in self.sessions.values():
            if s.info.session_id == session_id and not s.closed:
                self._set_rate(s, rate, source)
                return True
        return False

    def _user_rate(self, user: str) -> RateLimit | None:
        backend = self._auth_backend
        if isinstance(backend, RateLimitBackend):
            try:
                return backend.rate_limit(user, self._ppp.name or "*")
            except Exception as exc:   # an embedder's callback (or its rate text) failed
                log.error("rate limit of %r unavailable, none applied: %s", user, exc)
        return None

    def _configured_rate(self, user: str | None) -> tuple[RateLimit | None, RateSource | None]:
        """The limit the configuration gives a user: per user (auth backend), else the default."""
        rate = self._user_rate(user) if user is not None else None
        if rate is not None:
            return rate, RateSource.AUTH
        if self.config.default_rate_limit is not None:
            return self.config.default_rate_limit, RateSource.DEFAULT
        return None, None

    def _install_rate(self, session: CallSession) -> None:
        """Network up: the session's limit (per user, set at authentication; else the default)
        into the engine before the first packet; none at all: the engine is not asked."""
        info = session.info
        if info.rate is None and self.config.default_rate_limit is not None:
            info.rate, info.rate_source = self.config.default_rate_limit, RateSource.DEFAULT
        if info.rate is not None:
            self._engine_rate(session)

    def _set_rate(self, session: CallSession, rate: RateLimit | None, source: RateSource | None) -> None:
        info = session.info
        had = info.rate is not None
        info.rate, info.rate_source = rate, (source if rate is not None else None)
        log.info("call %d session %s user %s: rate limit %s (%s)", session.call_id, info.session_id,
                 info.user or "-", rate if rate is not None else "none",
                 source.value if source is not None else "-")
        if info.up and (had or rate is not None):
            self._engine_rate(session)

    def _engine_rate(self, session: CallSession) -> None:
        rate = session.info.rate or UNLIMITED
        try:
            self.engine.set_rate_limit(session.call_id, tx_kbit=rate.down_kbit, rx_kbit=rate.up_kbit)
        except (KeyError, ValueError) as exc:     # the call left the engine meanwhile
            log.warning("call %d: rate limit %s not set: %s", session.call_id, rate, exc)

    def _reapply_rates(self) -> None:
        """After a reload: sessions whose limit came from the configuration (per user or the
        default, or none) get what it says now; limits set live (admin, RADIUS) stay."""
        for s in list(self.sessions.values()):
            if s.closed or s.info.user is None:
                continue
            if s.info.rate_source not in (None, RateSource.AUTH, RateSource.DEFAULT):
                continue
            rate, source = self._configured_rate(s.info.user)
            if (rate, source) != (s.info.rate, s.info.rate_source):
                self._set_rate(s, rate, source)

    # ------------------------------------------------------------------ Dynamic Authorization
    @property
    def dae(self) -> DaeListener | None:
        """The RFC 5176 listener (after :meth:`start`; None when not configured)."""
        return self._dae

    async def _start_dae(self) -> None:
        """Listen for Disconnect/CoA requests when ``config.radius.dae`` says so.  Clients:
        ``dae.allowed``, or else the configured RADIUS servers; the NAS identity a request
        may name: ``nas_identifier``, ``nas_ip_address`` and our specific listen addresses."""
        from .radius.dae import DaeCore, DaePolicy, DaeTarget
        radius = self.config.radius
        if radius is None or radius.dae is None:
            return
        dae = radius.dae
        allowed = dae.allowed
        if not allowed:
            nets = []
            for srv in radius.auth_servers + radius.acct_servers:
                try:
                    nets.append(ipaddress.ip_network(srv.address[0]))
                except ValueError:          # a name, not an address: it cannot be matched
                    log.warning("Dynamic Authorization: RADIUS server %s is no address; not allowed",
                                srv.address[0])
            allowed = tuple(nets)
        addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        for text in (radius.nas_ip_address, dae.listen[0], self.config.listen):
            if text:
                with contextlib.suppress(ValueError):
                    ip = ipaddress.ip_address(text)
                    if not ip.is_unspecified:
                        addresses.add(ip)
        policy = DaePolicy(secret=dae.secret, allowed=allowed, nas_identifier=radius.nas_identifier,
                           nas_addresses=frozenset(addresses),
                           require_message_authenticator=dae.require_message_authenticator,
                           require_event_timestamp=dae.require_event_timestamp,
                           event_timestamp_window=dae.event_timestamp_window)
        core = DaeCore(policy, DaeTarget(self._dae_sessions, self._dae_disconnect, self._dae_change))
        listener = DaeListener(core, dae.listen)
        await listener.start()
        self._dae = listener
        if not allowed:
            log.warning("Dynamic Authorization: no allowed clients (--dae-allowed): every request is dropped")

    def _stop_dae(self) -> None:
        if self._dae is not None:
            self._dae.close()
            self._dae = None

    def _dae_sessions(self) -> list[DaeSession]:
        from .radius.dae import DaeSession
        return [DaeSession(session_id=s.info.session_id, call_id=s.call_id, user=s.info.user,
                           framed_ip=s.info.remote_ip, calling_station=s.info.peer)
                for s in self.sessions.values() if not s.closed]

    def _dae_disconnect(self, session_ids: Sequence[str], reason: str) -> None:
        for sid in session_ids:
            self.terminate(SessionMatch(session=sid), reason=reason, cause=Teardown.DISCONNECT_REQUEST)

    def _dae_change(self, session_ids: Sequence[str], change: CoaChange) -> None:
        wanted = set(session_ids)
        for s in [s for s in self.sessions.values() if s.info.session_id in wanted and not s.closed]:
            log.info("call %d session %s user %s: RADIUS CoA: session-timeout %s idle-timeout %s rate %s",
                     s.call_id, s.info.session_id, s.info.user or "-",
                     _or_dash(change.session_timeout), _or_dash(change.idle_timeout), _or_dash(change.rate))
            if change.session_timeout is not None:
                s.set_session_timeout(change.session_timeout)
            if change.idle_timeout is not None:
                s.set_idle_timeout(change.idle_timeout)
            if change.rate is not None:
                self.limit_session(s.info.session_id, change.rate, source=RateSource.RADIUS)

    # ------------------------------------------------------------------ RADIUS accounting
    @property
    def accounting(self) -> Accountant | None:
        """The RADIUS accountant (after :meth:`start`, with accounting servers configured)."""
        return self._accounting

    async def _start_accounting(self) -> None:
        """With accounting servers configured (whatever authenticates the users): the
        accountant's socket and Accounting-On (fastpptp/aio/accounting.py)."""
        radius = self.config.radius
        if radius is None or not radius.acct_servers:
            return
        nas_ip = ipaddress.ip_address(radius.nas_ip_address) if radius.nas_ip_address else None
        # RFC 2865 §5.4/§5.32: a NAS-IP-Address or a NAS-Identifier in every request
        nas = Nas(radius.nas_identifier or (None if nas_ip is not None else socket.gethostname()), nas_ip)
        accountant = Accountant.from_settings(radius, nas, nas_session_id=self._new_session_id())
        await accountant.start()
        self._accounting = accountant
        log.info("RADIUS accounting to %s", ", ".join(f"{srv.address[0]}:{srv.address[1]}"
                                                      for srv in radius.acct_servers))

    def _acct_session_up(self, session: CallSession) -> None:
        """IPCP up: Start, and Interim-Updates (the Access-Accept's Acct-Interim-Interval, else
        the configured one; at least ``acct_interim_floor``)."""
        radius = self.config.radius
        if self._accounting is None or radius is None:
            return
        info, attrs = session.info, session.attributes
        iface = self._ifaces.get(session.call_id)
        acct = AcctSession(
            session_id=info.session_id, nas_port=session.call_id, calling_station=info.peer,
            user=info.user, called_station=self._acct_called_station(session.call_id),
            framed_ip=ipaddress.IPv4Address(info.remote_ip) if info.remote_ip else None,
            port_id=iface.name if iface is not None else None, classes=attrs.classes,
            # our RADIUS verifier, or an embedder's (RADIUS with accounting configured)
            authentic=(AcctAuthentic.RADIUS if self._verifier is not None or self.radius_verifier is not None
                       else AcctAuthentic.LOCAL))
        interval = interim_interval(attrs.acct_interim_interval, radius.acct_interim_interval,
                                    radius.acct_interim_floor)
        call_id = session.call_id
        self._accounting.session_up(acct, lambda: self.engine.counters(call_id), interval=interval)

    def _acct_session_closed(self, session: CallSession, cause: Teardown) -> None:
        """However the session ended: Stop with its final counters and the mapped cause."""
        if self._accounting is not None:
            self._accounting.session_closed(session.info.session_id, session.final_counters,
                                            terminate_cause(cause, shutdown=self._stopping))

    def _acct_called_station(self, call_id: int) -> str | None:
        """Called-Station-Id: our address the call's control connection came to."""
        for stream, calls in self._calls_of.items():
            if call_id in calls and stream.transport is not None:
                sockname = stream.transport.get_extra_info("sockname")
                if isinstance(sockname, tuple) and sockname:
                    return str(sockname[0])
        return None

    async def _stop_accounting(self) -> None:
        if self._accounting is not None:
            await self._accounting.stop()
            self._accounting = None

    # ------------------------------------------------------------------ status
    def _session_doc(self, s: CallSession) -> dict[str, Any]:
        c: dict[str, int]
        try:
            c = self.engine.counters(s.call_id) if not s.closed else s.final_counters
        except Exception:
            c = {}
        return {
            "session_id": s.info.session_id,
            "user": s.info.user, "peer": s.info.peer, "call_id": s.call_id,
            "interface": self._ifname(s) or None, "local_ip": s.info.local_ip, "remote_ip": s.info.remote_ip, "auth": s.info.auth,
            "mppe": s.info.mppe, "uptime_s": round(self.hub.loop.time() - s.info.started, 3),
            "rx_packets": c.get("rx_packets", 0), "tx_packets": c.get("tx_packets", 0),
            "rx_bytes": c.get("rx_bytes", 0), "tx_bytes": c.get("tx_bytes", 0),
            "drops": {k[5:]: v for k, v in c.items() if k.startswith("drop_")},
            "rate": s.info.rate.to_json() if s.info.rate is not None else None,
            "rate_source": s.info.rate_source.value if s.info.rate_source is not None else None,
        }

    def snapshot(self) -> dict[str, Any]:
        return {"sessions": [self._session_doc(s) for s in self.sessions.values() if not s.closed],
                # engine-wide drops no session owns (queue full on dead calls, unknown call IDs)
                "totals": dict(self.engine.totals()) if self._engine is not None else {},
                "gre_io": self._gre_io_doc()}

    def _gre_io_doc(self) -> dict[str, Any]:
        """The GRE port: which mode runs, on what, why, and its counters."""
        if self._gre is None or self._engine is None:
            return {}
        return {"mode": self._gre.mode, "port": self._gre.port.describe(), "why": self._gre.why,
                "interface": self._gre.iface.name if self._gre.iface is not None else None,
                "counters": dict(self._engine.port_counters())}

    def _status_line(self) -> str:
        """systemd's one-line STATUS= (``systemctl status``): the session count."""
        n = len(self.sessions)
        return f"{n} session{'' if n == 1 else 's'}, listening on {self.config.listen}:{self.config.port}"


@dataclass(eq=False)
class SessionInterface:
    """A call's own TUN (``per_session_interfaces``): pppd's unit, its name, the open device and
    its index in the engine's TUN table (``attached`` until it is removed from the engine)."""

    unit: int
    name: str
    tun: TunLike
    index: int
    attached: bool = True
    up: bool = False


def _route_deleted(call_id: int, remote: str, done: asyncio.Future[object]) -> None:
    """A route delete's outcome: a route already gone is no failure (missing_ok)."""
    if not done.cancelled() and done.exception() is not None:
        log.warning("call %d: deleting the route to %s failed: %s", call_id, remote, done.exception())


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _source(stream: ControlStream) -> str:
    """The peer address of a control connection ("?" before it is known)."""
    peername: object = stream.peername
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return "?"


def run_server(config: ServerConfig, *, privileges: Privileges | None = None) -> int:
    """The command: ``privileges`` (fastpptp.privs) limits capabilities before start-up and
    drops them (and switches user) once the listener, TUN, GRE and control sockets exist."""
    async def main() -> int:
        # systemd (Type=notify): READY once listening, STOPPING, STATUS, WATCHDOG; the hooks we
        # start do not inherit $NOTIFY_SOCKET
        server = Server(config, notifier=Notifier.from_env(unset_environment=True))
        try:
            if privileges is not None:
                privileges.limit()
            await server.start()
        except (OSError, PrivilegeError) as exc:
            log.error("cannot start: %s", exc)
            return 1
        if privileges is not None:
            try:
                privileges.drop()
            except PrivilegeError as exc:
                log.error("cannot start: %s", exc)
                await server.stop(str(exc))
                return 1
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(server.stop("SIGTERM")))
        loop.add_signal_handler(signal.SIGINT, lambda: loop.create_task(server.stop("SIGINT")))
        loop.add_signal_handler(signal.SIGHUP, server.reload if privileges is None
                                else privileges.around(server.reload))
        await server.serve_forever()
        return 0
    return asyncio.run(main())
