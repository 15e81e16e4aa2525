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
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
from dataclasses import dataclass

from .aio.driver import ControlStream
from .aio.session import CallSession, EngineHub
from .config import PppOptions
from .aio.offloop import netlink
from .hooks import run_hook

log = logging.getLogger("fastpptp.client")

RESOLV_PPP = "/etc/ppp/resolv.conf"


@dataclass(frozen=True)
class ClientConfig:
    server: str
    user: str
    password: str
    port: int = 1723
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


class AttemptFailed(Exception):
    def __init__(self, reason: str, fatal: bool = False):
        super().__init__(reason)
        self.reason, self.fatal = reason, fatal


class Client:
    """The embeddable client: ``await client.run()`` until stopped (or maxfail reached)."""

    def __init__(self, config: ClientConfig, *, on_event=None, tun_factory=None,
                 configure_network: bool = True):
        """``tun_factory(name) -> TunDevice-like`` (fd, name, vnet_hdr_len, close) replaces the
        real TUN (tests, or a router that owns its interfaces); with ``configure_network``
        False no address, route or DNS is touched (the embedder does it from ``on_event``)."""
        self.config = config
        self._tun_factory = tun_factory
        self._configure_network = configure_network
        self._on_event = on_event
        self._rng = random.SystemRandom()
        self._stop = asyncio.Event()
        self.session: CallSession | None = None
        self.up = asyncio.Event()
        self.exit_reason: str | None = None
        self._undo: list = []

    def stop(self) -> None:
        self._stop.set()
        if self.session is not None and not self.session.closed:
            self.session.close("stopped by user")

    async def run(self) -> int:
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
                failures += 1
                if exc.fatal and not self.config.ppp.persist:
                    return 19 if "auth" in exc.reason.lower() else 1
            if self._stop.is_set() or not self.config.ppp.persist:
                return 0 if self.exit_reason in (None, "stopped by user") else 1
            if maxfail and failures >= maxfail:
                log.error("giving up after %d consecutive failures (maxfail)", failures)
                return 1
            delay = holdoff if failures <= 1 else min(60.0, holdoff * (2 ** (failures - 1)))
            log.info("persist: reconnecting in %.0f s", delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return 0

    # ------------------------------------------------------------------ one attempt
    async def _attempt(self) -> bool:
        from .dataplane import EngineConfig, load_engine
        from .net import rawgre, tun
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
            raise AttemptFailed(f"cannot resolve {cfg.server}: {exc}")
        server_ip = infos[0][4][0]
        mtu = cfg.ppp.mtu or 1400
        self._undo = []
        Engine = load_engine(cfg.impl)
        # IFF_VNET_HDR puts a virtio_net_hdr before every packet: only an engine that says it
        # parses one may get such a TUN, otherwise the header is taken for IP (no traffic).
        offload = cfg.offload and bool(getattr(Engine, "supports_vnet_hdr", False))
        if self._tun_factory is not None:
            tundev = self._tun_factory(cfg.interface)
        else:
            tundev = tun.open_tun(cfg.interface, vnet_hdr=offload, offload=offload)
        self._undo.append(tundev.close)
        gre = rawgre.open_gre_socket(cfg.local_address)
        self._undo.append(gre.close)
        engine = Engine(EngineConfig(mtu=mtu, mru=cfg.ppp.mru or 1500, offload=offload,
                                     flow_control=cfg.flow_control))
        engine.start([tundev.fd], gre.fileno(), vnet_hdr_len=getattr(tundev, "vnet_hdr_len", 0))
        self._undo.append(engine.stop)
        hub = EngineHub(engine, loop)
        self._undo.append(hub.close)
        if self._configure_network and (cfg.ppp.defaultroute or cfg.ppp.replacedefaultroute):
            with contextlib.suppress(Exception):
                pinned = netlink.pin_host_route(server_ip)
                if pinned is not None:
                    self._undo.append(lambda: netlink.delete_route(f"{server_ip}/32", missing_ok=True))
        established = False
        done = asyncio.Event()
        result: dict = {}
        conn = ControlConnection(Role.PNS, ControlConfig(echo_interval=cfg.pptp_echo_interval),
                                 loop.time(), self._rng)
        holder: dict = {}

        def on_session_closed(s, reason):
            result.setdefault("reason", reason)
            stream = holder.get("stream")
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.conn.clear_call(s.call_id, reason, now=loop.time())
                    stream.pump()
                loop.call_later(1.0, stream.close)
            done.set()

        def on_event(ev):
            name = type(ev).__name__
            now = loop.time()
            if name == "ControlConnected":
                log.info("control connection up: %s", ev)
                # Register the call before the PAC can answer: pppd sends its first LCP
                # Configure-Request ~0.1 s after the Outgoing-Call-Reply, and a frame for an
                # unknown call is dropped (a 3 s restart).  The peer's call ID comes later.
                call_id = conn.place_call(now=now)
                engine.add_session(call_id, 0, server_ip)
                hub.expect(call_id)
            elif name == "CallEstablished":
                link = PPPLink(link_config, "client", None, self._rng)
                engine.set_peer_call(ev.call_id, ev.peer_call_id, peer_rwin=getattr(ev, "peer_rwin", 64) or 64,
                                     peer_ppd=getattr(ev, "peer_ppd", 0) or 0)
                self.session = CallSession(hub, link, call_id=ev.call_id, peer_call_id=ev.peer_call_id,
                                           peer_addr=server_ip, peer_rwin=getattr(ev, "peer_rwin", 64) or 64,
                                           peer_ppd=getattr(ev, "peer_ppd", 0) or 0,
                                           on_network_up=lambda s, e: self._network_up(s, e, tundev, server_ip),
                                           on_network_down=lambda s, e: self._network_down(s, e, tundev),
                                           on_closed=on_session_closed,
                                           on_auth=self._auth_event)
                self.session.start(registered=True)
            elif name == "CallCleared":
                if self.session is not None:
                    self.session.abort(f"server cleared the call ({getattr(ev, 'reason', '')})".strip())
                result.setdefault("reason", "call cleared by server")
                done.set()
            elif name in ("ControlClosed", "EchoTimeout", "CallFailed", "ControlFailed"):
                result.setdefault("reason", str(getattr(ev, "reason", name)))
                done.set()

        def on_lost(exc):
            result.setdefault("reason", "control connection closed")
            if self.session is not None:
                self.session.abort("control connection closed")
            done.set()

        try:
            try:
                _, stream = await asyncio.wait_for(
                    loop.create_connection(lambda: ControlStream(conn, on_event, on_lost), server_ip, cfg.port,
                                           local_addr=(cfg.local_address, 0) if cfg.local_address else None),
                    cfg.connect_timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise AttemptFailed(f"cannot connect to {server_ip}:{cfg.port}: {exc}")
            holder["stream"] = stream
            conn.start(now=loop.time())
            stream.pump()
            stop_task = asyncio.ensure_future(self._stop.wait())
            done_task = asyncio.ensure_future(done.wait())
            await asyncio.wait({stop_task, done_task}, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set() and not done.is_set():
                if self.session is not None:
                    self.session.close("stopped by user")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.session.closed_event.wait(), 3.0)
                else:
                    with contextlib.suppress(Exception):
                        conn.stop("stopped by user", loop.time())
                        stream.pump()
                result.setdefault("reason", "stopped by user")
            for t in (stop_task, done_task):
                t.cancel()
            established = self.session is not None and self.session.info.up
            await asyncio.sleep(0.2)   # let Call-Clear-Request / StopCCRQ reach the wire
            stream.close()
            reason = result.get("reason", "link down")
            self.exit_reason = reason
            if not established and reason != "stopped by user":
                raise AttemptFailed(reason, fatal="auth" in reason.lower() or "mppe" in reason.lower())
            return established
        finally:
            if self.session is not None:
                self.session.abort(result.get("reason", "done"))
            self.up.clear()
            for undo in reversed(self._undo):
                with contextlib.suppress(Exception):
                    undo()
            self._undo = []

    def _auth_event(self, session, ev) -> None:
        if type(ev).__name__ == "AuthFailed":
            log.error("authentication failed: %s", ev.reason)

    def _network_up(self, session: CallSession, ev, tundev, server_ip: str) -> None:
        cfg = self.config
        if not self._configure_network:
            pass
        elif ev.family not in (4, "ipv4"):
            try:   # IPv6CP: pppd's "local LL address / remote LL address" on the link
                netlink.add_address(tundev.name, f"{ev.local}/128", peer=str(ev.remote), nodad=True)
            except Exception as exc:
                log.warning("IPv6 link-local %s: %s", ev.local, exc)
            return
        if ev.family not in (4, "ipv4"):
            return
        local, remote = str(ev.local), str(ev.remote)
        if self._configure_network:
            self._configure(tundev, local, remote, ev)
        info = {"event": "up", "interface": tundev.name, "local_ip": local, "remote_ip": remote,
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
        if self._on_event is not None:
            self._on_event("up", info)

    def _configure(self, tundev, local: str, remote: str, ev) -> None:
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

    def _write_peer_dns(self, dns) -> None:
        """usepeerdns: pppd writes /etc/ppp/resolv.conf; we do the same and remove it on down."""
        try:
            os.makedirs(os.path.dirname(RESOLV_PPP), exist_ok=True)
            with open(RESOLV_PPP, "w") as f:
                f.writelines(f"nameserver {d}\n" for d in dns)
            self._undo.append(lambda: os.unlink(RESOLV_PPP))
        except OSError as exc:
            log.warning("usepeerdns: cannot write %s: %s", RESOLV_PPP, exc)

    def _network_down(self, session: CallSession, ev, tundev) -> None:
        if ev is not None or not session.info.local_ip:
            return
        c = getattr(session, "final_counters", {}) or {}
        asyncio.get_running_loop().create_task(run_hook(
            self.config.ip_down, ifname=tundev.name, local=session.info.local_ip,
            remote=session.info.remote_ip or "", ipparam=self.config.ppp.ipparam,
            bytes_sent=c.get("tx_bytes", 0), bytes_rcvd=c.get("rx_bytes", 0)))
        if self._on_event is not None:
            self._on_event("down", {"reason": session.info.reason})


def run_client(config: ClientConfig) -> int:
    async def main() -> int:
        client = Client(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, client.stop)
        return await client.run()
    return asyncio.run(main())
