"""fastpptp-client: the PNS side, a drop-in for ``pptp`` + ``pppd``.

Flow of one connection attempt:

1. Pin a host route to the server via the current gateway (so GRE and TCP keep their path
   when the default route moves into the tunnel).
2. TCP to the server's port 1723: Start-Control-Connection, Outgoing-Call.
3. The call is registered in the engine; a client-role PPP link runs LCP, authentication
   (checking MS-CHAPv2's authenticator response), CCP/MPPE and IPCP.
4. IPCP up: the TUN gets ``local peer remote``; defaultroute / replacedefaultroute / --route
   NETs / usepeerdns are applied, the ip-up hook runs; ``--up-file`` gets a JSON line.
5. Link down or control connection lost: everything applied in 4 is undone.  With
   ``persist`` we try again after ``holdoff`` seconds (doubling up to 60 s after failures),
   until ``maxfail`` consecutive failures (0 = never give up).
6. Under systemd (``notifier``, fastpptp.sdnotify): READY=1 when the tunnel first comes up
   (a unit ordered after ours starts with the tunnel there), STATUS= on each change,
   STOPPING=1 on stop, WATCHDOG=1 from the event loop.

Why an attempt ended is classified from typed events (:class:`FailureKind`), never from the
reason text, and :meth:`Client.run` returns pppd's exit status for it.
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import random
import signal
import socket
from dataclasses import dataclass, field
from typing import Callable

from .aio.driver import ControlStream
from .aio.offloop import netlink
from .aio.session import CallSession, EngineHub
from .config import PppOptions
from .hooks import run_hook
from .privs import PrivilegeError, Privileges
from .net.tun import TunLike
from .ppp.link import Authenticated, AuthenticationFailed, NetworkDown, NetworkUp
from .pptp.control import (CallCleared, CallEstablished, ControlClosed, ControlConnected,
                           EchoTimeout, Event)
from .pptp.messages import PPTP_PORT
from .sdnotify import Notifier
from .teardown import Teardown

log = logging.getLogger("fastpptp.client")

RESOLV_PPP = "/etc/ppp/resolv.conf"


@dataclass(frozen=True)
class ClientConfig:
    server: str
    user: str
    password: str
    port: int = PPTP_PORT
    ppp: PppOptions = PppOptions()
    routes: tuple[str, ...] = ()
    interface: str | None = None
    impl: str = "compiled"
    offload: bool = True
    pptp_echo_interval: float = 60.0
    up_file: str | None = None
    log_level: str = "info"
    ip_up: str | None = "/etc/ppp/ip-up"
    ip_down: str | None = "/etc/ppp/ip-down"
    connect_timeout: float = 30.0
    local_address: str | None = None     # pptp --localbind: source of TCP and GRE
    flow_control: bool = False           # RFC 2637 sliding window (old PACs); peers ignore it
    gre_io: str = "auto"                 # GRE port: auto|xdp|packet|raw (fastpptp/net/greport.py)


class FailureKind(enum.Enum):
    """Why a connection attempt failed, or why the tunnel it made went down.

    The value is pppd's exit status for it (pppd(8) "EXIT STATUS"; pppd.h EXIT_*), which
    :meth:`Client.run` returns when it gives up, so scripts written for ``pptp`` + ``pppd``
    keep working.  pppd running over ``pptp`` sees any loss of the PPTP connection as a
    modem hangup; we tell the PPTP phase before the call is up apart as CONNECT_FAILED.
    """

    FATAL_ERROR = 1             # EXIT_FATAL_ERROR: cannot run as configured (e.g. a forced
                                # --gre-io port that cannot run here): not retried
    CONNECT_FAILED = 8          # EXIT_CONNECT_FAILED: no TCP connection, or no PPTP call
    NEGOTIATION_FAILED = 10     # EXIT_NEGOTIATION_FAILED: the link ended before IPCP came up
                                # (LCP/CCP/IPCP refused, MPPE required but not negotiated)
    PEER_AUTH_FAILED = 11       # EXIT_PEER_AUTH_FAILED: the server failed our check of it
    PEER_DEAD = 15              # EXIT_PEER_DEAD: the server stopped answering echo requests
    HANGUP = 16                 # EXIT_HANGUP: the server ended a tunnel that was up
    AUTH_TOPEER_FAILED = 19     # EXIT_AUTH_TOPEER_FAILED: the server refused our credentials

    @property
    def exit_status(self) -> int:
        return self.value


class AttemptFailed(Exception):
    """One connection attempt failed before the tunnel came up: ``reason`` for the log,
    ``kind`` for the exit status."""

    def __init__(self, reason: str, kind: FailureKind):
        super().__init__(reason)
        self.reason, self.kind = reason, kind


@dataclass
class AttemptOutcome:
    """What one attempt saw, classified from typed events: the first reason for the log,
    and the first failure kind (a typed cause such as an authentication failure wins over
    the hangup that follows it; without one, the phase the attempt reached decides)."""

    reason: str | None = None
    cause: FailureKind | None = None
    call_up: bool = False               # the PPTP call was established
    network_up: bool = False            # IPCP came up: the tunnel carried traffic
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self, reason: str, cause: FailureKind | None = None) -> None:
        """The attempt is over (or going): keep the first reason and the first cause."""
        if self.reason is None:
            self.reason = reason
        self.note(cause)
        self.done.set()

    def note(self, cause: FailureKind | None) -> None:
        if self.cause is None:
            self.cause = cause

    def on_control_event(self, ev: Event) -> None:
        """A PPTP control connection event, as far as the outcome is concerned."""
        match ev:
            case CallEstablished():
                self.call_up = True
            case CallCleared(established=False):    # OCRP refused, or no answer in time
                self.end(f"call refused by the server ({ev.reason})", FailureKind.CONNECT_FAILED)
            case CallCleared():
                self.end("call cleared by server")
            case EchoTimeout():
                self.end(ev.reason, FailureKind.PEER_DEAD)
            case ControlClosed():
                self.end(ev.reason)

    def on_auth(self, ev: Authenticated | AuthenticationFailed) -> None:
        if isinstance(ev, AuthenticationFailed):
            # "self": the server refused us (or its MS-CHAPv2 authenticator response did
            # not match: pppd counts that as failing to authenticate to the peer too);
            # "peer": the server failed the check we asked for (require-* on the client)
            self.note(FailureKind.AUTH_TOPEER_FAILED if ev.direction == "self"
                      else FailureKind.PEER_AUTH_FAILED)

    @property
    def failure(self) -> FailureKind:
        """The kind of failure, once the attempt is over and not stopped by the user."""
        if self.cause is not None:
            return self.cause
        if self.network_up:
            return FailureKind.HANGUP
        if self.call_up:
            return FailureKind.NEGOTIATION_FAILED
        return FailureKind.CONNECT_FAILED


TunFactory = Callable[[str | None], TunLike]
EventHook = Callable[[str, dict[str, object]], None]


class Client:
    """The embeddable client: ``await client.run()`` until stopped (or maxfail reached)."""

    def __init__(self, config: ClientConfig, *, on_event: EventHook | None = None,
                 tun_factory: TunFactory | None = None, configure_network: bool = True,
                 notifier: Notifier | None = None):
        """``tun_factory(name) -> TunDevice-like`` (fd, name, vnet_hdr_len, close) replaces the
        real TUN (tests, or a router that owns its interfaces); with ``configure_network``
        False no address, route or DNS is touched (the embedder does it from ``on_event``).
        ``notifier`` tells systemd READY (tunnel up)/STATUS/STOPPING/WATCHDOG (default: none)."""
        self.config = config
        self._notify = notifier if notifier is not None else Notifier()
        self._tun_factory = tun_factory
        self._configure_network = configure_network
        self._on_event = on_event
        self._rng = random.SystemRandom()
        self._stop = asyncio.Event()
        self.session: CallSession | None = None
        self.up = asyncio.Event()
        self.exit_reason: str | None = None
        #: why the last attempt failed, or the last tunnel went down (None: it did not)
        self.failure: FailureKind | None = None
        self._undo: list[Callable[[], object]] = []

    def stop(self) -> None:
        if not self._stop.is_set():
            self._notify.stopping("stopping")
        self._stop.set()
        if self.session is not None and not self.session.closed:
            self.session.close("stopped by user")

    def exit_status(self) -> int:
        """pppd's exit status for how the client ended: 0 when stopped (by ``stop()`` or a
        signal; pppd says 5 there, but an embedder's stop is a clean end) or when nothing
        failed, else the status of the last failure (:class:`FailureKind`)."""
        if self._stop.is_set() or self.failure is None:
            return 0
        return self.failure.exit_status

    async def run(self) -> int:
        self._notify.status(f"connecting to {self.config.server}")
        self._notify.start_watchdog(asyncio.get_running_loop())
        try:
            return await self._run()
        finally:
            self._notify.close()

    async def _run(self) -> int:
        failures = 0
        holdoff = float(self.config.ppp.holdoff if self.config.ppp.holdoff is not None else 5)
        maxfail = self.config.ppp.maxfail if self.config.ppp.maxfail is not None else 10
        while True:
            try:
                established = await self._attempt()
                failures = 0 if established else failures + 1
            except AttemptFailed as exc:
                log.error("connection failed: %s", exc.reason)
                self.exit_reason = exc.reason
                self.failure = exc.kind
                failures += 1
                if exc.kind is FailureKind.FATAL_ERROR:     # retrying cannot help
                    return self.exit_status()
            if self._stop.is_set() or not self.config.ppp.persist:
                return self.exit_status()
            if maxfail and failures >= maxfail:
                log.error("giving up after %d consecutive failures (maxfail)", failures)
                return self.exit_status()
            delay = holdoff if failures <= 1 else min(60.0, holdoff * (2 ** (failures - 1)))
            self._notify.status(f"{self.exit_reason or 'tunnel down'}; reconnecting in {delay:.0f} s")
            log.info("persist: reconnecting in %.0f s", delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return self.exit_status()

    # ------------------------------------------------------------------ one attempt
    async def _attempt(self) -> bool:
        """One connection, until it ends: True if the tunnel came up (``self.failure`` then
        says why it went down, None if we stopped it); raises AttemptFailed if it did not."""
        from .dataplane import EngineConfig, load_engine
        from .net import tun
        from .net.greport import GreIoError, open_gre_io
        from .pptp.control import ControlConfig, ControlConnection, Role
        # Imported (and the link config built) before we dial: pppd behind pptpd sends its
        # first LCP Configure-Request ~0.1 s after the Outgoing-Call-Reply, and a first-time
        # import of the PPP stack inside the CallEstablished handler took ~0.18 s, so that
        # frame hit an unregistered call and LCP only came up on pppd's retry 3 s later.
        from .config import client_link_config
        from .ppp.link import PPPLink
        loop = asyncio.get_running_loop()
        cfg = self.config
        link_config = client_link_config(cfg.ppp, user=cfg.user, password=cfg.password)
        try:
            infos = await loop.getaddrinfo(cfg.server, cfg.port, family=socket.AF_INET, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise AttemptFailed(f"cannot resolve {cfg.server}: {exc}", FailureKind.CONNECT_FAILED) from exc
        server_ip = str(infos[0][4][0])
        mtu = cfg.ppp.mtu or 1400
        self._undo = []
        Engine = load_engine(cfg.impl)
        # IFF_VNET_HDR puts a virtio_net_hdr before every packet: only an engine that says it
        # parses one may get such a TUN, otherwise the header is taken for IP (no traffic).
        offload = cfg.offload and Engine.supports_vnet_hdr
        tundev: TunLike
        if self._tun_factory is not None:
            tundev = self._tun_factory(cfg.interface)
        else:
            tundev = tun.open_tun(cfg.interface, vnet_hdr=offload, offload=offload)
        self._undo.append(tundev.close)
        engine = Engine(EngineConfig(mtu=mtu, mru=cfg.ppp.mru or 1500, offload=offload,
                                     flow_control=cfg.flow_control))
        try:
            gre = open_gre_io(cfg.gre_io, local=cfg.local_address, peer=server_ip,
                              batch=engine.config.batch)
        except GreIoError as exc:               # a forced --gre-io that cannot run here
            for undo in reversed(self._undo):
                with contextlib.suppress(Exception):
                    undo()
            self._undo = []
            raise AttemptFailed(f"cannot start: {exc}", FailureKind.FATAL_ERROR) from None
        self._undo.append(gre.close)
        gre.peer_up(server_ip)
        # the reference engine (benchmark baseline) does its own socket calls on a raw socket
        port = gre.port if cfg.impl == "compiled" or gre.mode != "raw" else gre.raw.fileno()
        engine.start([tundev.fd], port, vnet_hdr_len=tundev.vnet_hdr_len)
        self._undo.append(engine.stop)
        hub = EngineHub(engine, loop)
        self._undo.append(hub.close)
        if self._configure_network and (cfg.ppp.defaultroute or cfg.ppp.replacedefaultroute):
            with contextlib.suppress(Exception):
                pinned = netlink.pin_host_route(server_ip)
                if pinned is not None:
                    self._undo.append(lambda: netlink.delete_route(f"{server_ip}/32", missing_ok=True))
        self.failure = None
        outcome = AttemptOutcome()
        conn = ControlConnection(Role.PNS, ControlConfig(echo_interval=cfg.pptp_echo_interval),
                                 loop.time(), self._rng)
        streams: list[ControlStream] = []      # the one stream, once connected

        def on_session_closed(s: CallSession, reason: str) -> None:
            for stream in streams:
                with contextlib.suppress(Exception):
                    stream.conn.clear_call(s.call_id, reason, now=loop.time())
                    stream.pump()
                loop.call_later(1.0, stream.close)
            outcome.end(reason)

        def on_auth(s: CallSession, ev: Authenticated | AuthenticationFailed) -> None:
            outcome.on_auth(ev)
            if isinstance(ev, AuthenticationFailed):
                log.error("authentication failed: %s", ev.reason)

        def on_event(ev: Event) -> None:
            now = loop.time()
            match ev:
                case ControlConnected():
                    log.info("control connection up: %s", ev)
                    # Register the call before the PAC can answer: pppd sends its first LCP
                    # Configure-Request ~0.1 s after the Outgoing-Call-Reply, and a frame for
                    # an unknown call is dropped (a 3 s restart).  The peer's call ID comes later.
                    call_id = conn.place_call(now=now)
                    engine.add_session(call_id, 0, server_ip)
                    hub.expect(call_id)
                case CallEstablished():
                    link = PPPLink(link_config, "client", None, self._rng)
                    rwin = ev.peer_rwin or 64
                    engine.set_peer_call(ev.call_id, ev.peer_call_id, peer_rwin=rwin, peer_ppd=ev.peer_ppd)
                    self.session = CallSession(
                        hub, link, call_id=ev.call_id, peer_call_id=ev.peer_call_id,
                        peer_addr=server_ip, peer_rwin=rwin, peer_ppd=ev.peer_ppd,
                        on_network_up=lambda s, e: self._network_up(s, e, tundev, server_ip),
                        on_network_down=lambda s, e: self._network_down(s, e, tundev),
                        on_closed=on_session_closed, on_auth=on_auth)
                    self.session.start(registered=True)
                case CallCleared():
                    if self.session is not None:
                        self.session.abort(f"server cleared the call ({ev.reason})", Teardown.PEER_CALL_CLEAR)
            # after the session saw it: its own reason (e.g. PPP's) is the one kept
            outcome.on_control_event(ev)

        def on_lost(exc: Exception | None) -> None:
            outcome.end("control connection closed")
            if self.session is not None:
                self.session.abort("control connection closed", Teardown.CONTROL_LOST)

        try:
            try:
                _, stream = await asyncio.wait_for(
                    loop.create_connection(lambda: ControlStream(conn, on_event, on_lost), server_ip, cfg.port,
                                           local_addr=(cfg.local_address, 0) if cfg.local_address else None),
                    cfg.connect_timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise AttemptFailed(f"cannot connect to {server_ip}:{cfg.port}: {exc}",
                                    FailureKind.CONNECT_FAILED) from exc
            streams.append(stream)
            if conn.closed:     # the server closed it before we spoke (e.g. admission refused us)
                raise AttemptFailed(f"{server_ip}:{cfg.port} closed the control connection at once",
                                    FailureKind.CONNECT_FAILED)
            conn.start(now=loop.time())
            stream.pump()
            stop_task = asyncio.ensure_future(self._stop.wait())
            done_task = asyncio.ensure_future(outcome.done.wait())
            await asyncio.wait({stop_task, done_task}, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set() and not outcome.done.is_set():
                if self.session is not None:
                    self.session.close("stopped by user")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.session.closed_event.wait(), 3.0)
                else:
                    with contextlib.suppress(Exception):
                        conn.stop("stopped by user", loop.time())
                        stream.pump()
                outcome.end("stopped by user")
            for t in (stop_task, done_task):
                t.cancel()
            established = self.session is not None and self.session.info.up
            outcome.network_up = established
            await asyncio.sleep(0.2)   # let Call-Clear-Request / StopCCRQ reach the wire
            stream.close()
            reason = outcome.reason or "link down"
            self.exit_reason = reason
            if self._stop.is_set():
                return established
            if not established:
                raise AttemptFailed(reason, outcome.failure)
            self.failure = outcome.failure
            return established
        finally:
            if self.session is not None:
                self.session.abort(outcome.reason or "done")
            self.up.clear()
            for undo in reversed(self._undo):
                with contextlib.suppress(Exception):
                    undo()
            self._undo = []

    def _network_up(self, session: CallSession, ev: NetworkUp, tundev: TunLike, server_ip: str) -> None:
        cfg = self.config
        if ev.family != 4:
            if self._configure_network:
                try:   # IPv6CP: pppd's "local LL address / remote LL address" on the link
                    netlink.add_address(tundev.name, f"{ev.local}/128", peer=str(ev.remote), nodad=True)
                except Exception as exc:
                    log.warning("IPv6 link-local %s: %s", ev.local, exc)
            return
        local, remote = str(ev.local), str(ev.remote)
        if self._configure_network:
            self._configure(tundev, local, remote, ev)
        info: dict[str, object] = {"event": "up", "interface": tundev.name, "local_ip": local, "remote_ip": remote,
                "dns": [str(d) for d in (ev.dns or ())], "auth": session.info.auth, "mppe": session.info.mppe,
                "server": server_ip, "call_id": session.call_id}
        log.info("tunnel up: %s %s <-> %s, %s, MPPE %s", tundev.name, local, remote, session.info.auth,
                 session.info.mppe or "none")
        asyncio.get_running_loop().create_task(run_hook(cfg.ip_up, ifname=tundev.name, local=local,
                                                        remote=remote, ipparam=cfg.ppp.ipparam,
                                                        peer=cfg.ppp.remotename, dns=tuple(ev.dns or ())))
        if cfg.up_file:
            with open(cfg.up_file, "a") as f:
                f.write(json.dumps(info) + "\n")
        self.up.set()
        self._notify.ready(f"tunnel up: {tundev.name} {local} -> {remote} via {server_ip}")
        if self._on_event is not None:
            self._on_event("up", info)

    def _configure(self, tundev: TunLike, local: str, remote: str, ev: NetworkUp) -> None:
        cfg = self.config
        netlink.set_mtu(tundev.name, cfg.ppp.mtu or 1400)
        netlink.add_address(tundev.name, local, peer=remote)
        netlink.set_link_up(tundev.name)
        if cfg.ppp.replacedefaultroute:
            old = netlink.replace_default_route(dev=tundev.name)
            self._undo.append(lambda: netlink.restore_default_route(old))
        elif cfg.ppp.defaultroute:
            if netlink.get_default_route() is None:
                netlink.add_route("0.0.0.0/0", dev=tundev.name)
                self._undo.append(lambda: netlink.delete_route("0.0.0.0/0", dev=tundev.name, missing_ok=True))
            else:
                log.warning("defaultroute: a default route exists already; not replaced "
                            "(use replacedefaultroute)")
        for net in cfg.routes:
            netlink.add_route(net, dev=tundev.name, replace=True)
        if cfg.ppp.usepeerdns and ev.dns:
            self._write_peer_dns(ev.dns)

    def _write_peer_dns(self, dns: tuple[object, ...]) -> None:
        """usepeerdns: pppd writes /etc/ppp/resolv.conf; we do the same and remove it on down."""
        try:
            os.makedirs(os.path.dirname(RESOLV_PPP), exist_ok=True)
            with open(RESOLV_PPP, "w") as f:
                f.writelines(f"nameserver {d}\n" for d in dns)
            self._undo.append(lambda: os.unlink(RESOLV_PPP))
        except OSError as exc:
            log.warning("usepeerdns: cannot write %s: %s", RESOLV_PPP, exc)

    def _network_down(self, session: CallSession, ev: NetworkDown | None, tundev: TunLike) -> None:
        if ev is not None or not session.info.local_ip:
            return
        c = session.final_counters
        asyncio.get_running_loop().create_task(run_hook(
            self.config.ip_down, ifname=tundev.name, local=session.info.local_ip,
            remote=session.info.remote_ip or "", ipparam=self.config.ppp.ipparam,
            bytes_sent=c.get("tx_bytes", 0), bytes_rcvd=c.get("rx_bytes", 0)))
        if self._on_event is not None:
            self._on_event("down", {"reason": session.info.reason})


def run_client(config: ClientConfig, *, privileges: Privileges | None = None) -> int:
    """The command: ``privileges`` (fastpptp.privs) are dropped before the first attempt --
    every attempt opens its own TUN and GRE socket, so there is no later end of start-up."""
    async def main() -> int:
        if privileges is not None:
            try:
                privileges.drop()
            except PrivilegeError as exc:
                log.error("cannot start: %s", exc)
                return 1
        # systemd (Type=notify): READY once the tunnel is up; ip-up/ip-down do not inherit
        # $NOTIFY_SOCKET
        client = Client(config, notifier=Notifier.from_env(unset_environment=True))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, client.stop)
        return await client.run()
    return asyncio.run(main())
