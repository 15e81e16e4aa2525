"""One PPTP call's PPP link, glued to the data-plane engine.

Flow of a call (both roles):

1. The PPTP control connection establishes the call (OCRQ/OCRP); the owner creates a
   :class:`CallSession` with our call ID, the peer's call ID and the peer's address.
2. ``start()`` registers the call in the engine (so GRE for it is accepted) and brings the
   PPP link's lower layer up: LCP starts.
3. PPP control frames arrive from the engine's control queue (``EngineHub``) and go to the
   link; frames the link wants to send go back through ``engine.send_control`` so the GRE
   sequence numbers of the call stay coherent.
4. Link events drive the engine: LCP opened -> framing (ACFC/PFC, MTU); MPPE keys -> engine
   MPPE; network up -> routes and ``set_data``; link down -> data stops, the call is cleared.
   Network up opens the data path *before* the frames of the same step leave (the last IPCP
   Configure-Ack: a peer may send its first packet the moment it sees it), and an
   ``on_network_up`` hook that returns a future (the server's kernel route, added off the
   event loop) holds every later frame until it is done.
5. However the call ends (link down, ``abort``: TCP reset, Call-Clear-Request, the control
   connection gone), the link is brought to Dead: what it holds -- the peer's pool address
   -- is released there, exactly once.
6. External verification (server with a ``verifier``): the link's ``VerifyPeer`` starts a
   task awaiting ``verifier(request)``; its verdict goes back to ``link.verified`` (the link
   drops it if it came too late; the link's verify timeout fails the login on its own).  The
   loop never waits for it: LCP, the auth timers and every other session keep running.  The
   verdict's reply attributes are kept on the session (``attributes``, ``rate_limit``);
   Session-Timeout and Idle-Timeout end the session with ``SESSION_TIMEOUT`` /
   ``IDLE_TIMEOUT`` as the reason; ``set_session_timeout`` / ``set_idle_timeout`` replace
   them live (a RADIUS CoA-Request), counted from then.
7. Why it ended: the human text (``info.reason``, logged) and its type (``info.cause``, a
   :class:`~fastpptp.teardown.Teardown`) travel together.  ``close``/``abort`` take the
   owner's cause; the link's own cause, if it has one, wins (it says who began the end: the
   peer's LCP Terminate, our session timeout, an echo failure...).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from ..ppp.auth.base import NO_REPLY_ATTRIBUTES, ReplyAttributes, VerifyRequest, VerifyResult
from ..ppp.constants import ENGINE_EVENT_BASE
from ..shaping import RateLimit, RateSource
from ..teardown import Teardown
from ..ppp.link import (Authenticated, AuthenticationFailed, LcpOpened, LinkDown, LinkEvent,
                        MppeReset, MppeUp, NetworkDown, NetworkUp, Phase, PPPLink, VerifyPeer)
from .driver import DeadlineTimer

log = logging.getLogger("fastpptp.session")


class SessionEngine(Protocol):
    """The part of the data-plane engine API (docs/DESIGN.md, "Engine API") that the hub and
    the sessions drive; both twins (``_gre.Engine``, ``_gre_ref.Engine``) provide it."""

    @property
    def control_fd(self) -> int: ...
    def recv_control(self, max: int = 64) -> list[tuple[int, int, bytes]]: ...
    def add_session(self, call_id: int, peer_call_id: int, peer_addr: str, *, tun: int = 0,
                    peer_rwin: int = 64, peer_ppd: int = 0) -> None: ...
    def remove_session(self, call_id: int) -> None: ...
    def send_control(self, call_id: int, protocol: int, payload: bytes) -> None: ...
    def set_ppp(self, call_id: int, *, tx_acfc: bool, tx_pfc: bool, mtu: int) -> None: ...
    def set_mppe(self, call_id: int, send_key: bytes, recv_key: bytes, bits: int, stateful: bool,
                 rx_stateful: bool | None = None) -> None: ...
    def mppe_reset(self, call_id: int) -> None: ...
    def set_data(self, call_id: int, ipv4: bool, ipv6: bool) -> None: ...
    def add_route(self, call_id: int, addr: str) -> None: ...
    def remove_route(self, addr: str) -> None: ...
    def counters(self, call_id: int) -> dict[str, int]: ...
    def set_rate_limit(self, call_id: int, tx_kbit: int, rx_kbit: int, burst_bytes: int = 0) -> None: ...


#: ``on_network_up(session, NetworkUp)`` (may return a future: the session's frames wait for
#: it); ``on_network_down(session, NetworkDown | None)`` (None: the whole link went down after
#: the network was up); ``on_closed(session, reason)``;
#: ``on_auth(session, Authenticated | AuthenticationFailed)``; ``on_peer_frame(session)``: the
#: first PPP frame from the peer arrived (the call carried GRE).
NetworkUpHook = Callable[["CallSession", NetworkUp], "asyncio.Future[object] | None"]
PeerFrameHook = Callable[["CallSession"], None]
NetworkDownHook = Callable[["CallSession", NetworkDown | None], None]
ClosedHook = Callable[["CallSession", str], None]
AuthHook = Callable[["CallSession", Authenticated | AuthenticationFailed], None]
#: ``await verifier(request) -> VerifyResult``: checks a peer's credentials (RADIUS, ...).
#: It may take its time; an exception counts as a rejection.
AsyncVerifier = Callable[[VerifyRequest], Awaitable[VerifyResult]]

SESSION_TIMEOUT = "session timeout"      # the close texts of the verifier's limits (their
                                         # causes: Teardown.SESSION_TIMEOUT / IDLE_TIMEOUT)
IDLE_TIMEOUT = "idle timeout"
IDLE_CHECK_MAX = 30.0                    # seconds between idle checks, at most


class EngineHub:
    """Reads the engine's control queue on the event loop and routes frames to sessions."""

    def __init__(self, engine: SessionEngine, loop: asyncio.AbstractEventLoop | None = None):
        self.engine = engine
        self.loop = loop or asyncio.get_running_loop()
        self.sessions: dict[int, "CallSession"] = {}
        # calls registered in the engine before their CallSession exists (a PNS between its
        # Outgoing-Call-Request and the reply): their first frames wait here, a few at most
        self._pending: dict[int, list[tuple[int, bytes]]] = {}
        self.loop.add_reader(engine.control_fd, self._readable)

    PENDING_MAX = 16

    def expect(self, call_id: int) -> None:
        self._pending.setdefault(call_id, [])

    def forget(self, call_id: int) -> None:
        self._pending.pop(call_id, None)

    def register(self, session: "CallSession") -> list[tuple[int, bytes]]:
        """Route the call's frames to ``session``; returns any that arrived before it existed."""
        self.sessions[session.call_id] = session
        return self._pending.pop(session.call_id, [])

    def unregister(self, call_id: int) -> None:
        self.sessions.pop(call_id, None)

    #: frames taken per recv_control call; the hub drains the queue fully on every wake-up
    #: (a connect storm fills it faster than one batch: issue 10)
    BATCH = 256

    def _readable(self) -> None:
        while True:
            frames = self.engine.recv_control(self.BATCH)
            if not frames:
                return
            for call_id, protocol, payload in frames:
                session = self.sessions.get(call_id)
                if session is None:
                    early = self._pending.get(call_id)
                    if early is not None and len(early) < self.PENDING_MAX:
                        early.append((protocol, payload))
                    continue  # otherwise the call went away while the frame was queued
                try:
                    session.on_frame(protocol, payload)
                except Exception:  # one session's bug must not disturb the others
                    log.exception("call %d: error handling PPP frame 0x%04x", call_id, protocol)
                    session.abort("internal error", Teardown.INTERNAL_ERROR)

    def close(self) -> None:
        try:
            self.loop.remove_reader(self.engine.control_fd)
        except Exception:
            pass


@dataclass
class SessionInfo:
    """What `fastpptp status` shows of a session."""

    call_id: int
    peer_call_id: int
    peer: str
    started: float
    user: str | None = None
    auth: str | None = None
    mppe: str | None = None
    local_ip: str | None = None
    remote_ip: str | None = None
    dns: tuple[str, ...] = ()
    up: bool = False
    reason: str | None = None          # why it ended, for people (logs, the ``down`` event)
    cause: Teardown | None = None      # ... and for code (accounting, metrics)
    # set by the server: its session ID (``fastpptp sessions``, Acct-Session-Id) and the rate
    # limit (shaping.RateLimit) with its source (shaping.RateSource)
    session_id: str = ""
    rate: RateLimit | None = None
    rate_source: RateSource | None = None


class CallSession:
    """The PPP side of one call: a sans-I/O PPPLink pumped against the engine."""

    def __init__(self, hub: EngineHub, link: PPPLink, *, call_id: int, peer_call_id: int,
                 peer_addr: str, tun: int = 0, peer_rwin: int = 64, peer_ppd: int = 0,
                 on_network_up: NetworkUpHook | None = None,
                 on_network_down: NetworkDownHook | None = None,
                 on_closed: ClosedHook | None = None, on_auth: AuthHook | None = None,
                 on_peer_frame: PeerFrameHook | None = None,
                 verifier: AsyncVerifier | None = None):
        self.hub = hub
        self.engine = hub.engine
        self.link = link
        self.call_id = call_id
        self.tun = tun
        self.peer_rwin = peer_rwin
        self.peer_ppd = peer_ppd
        self.info = SessionInfo(call_id, peer_call_id, peer_addr, hub.loop.time())
        self._on_network_up = on_network_up
        self._on_network_down = on_network_down
        self._on_closed = on_closed
        self._on_auth = on_auth
        self._on_peer_frame = on_peer_frame
        self._heard_peer = False
        # frames held until the on_network_up hook's future is done (see pump)
        self._gate: asyncio.Future[object] | None = None
        self._held_out: list[tuple[int, bytes]] = []
        self._verifier = verifier
        self._verifications: set[asyncio.Task[None]] = set()
        #: the verifier's reply attributes (server; empty otherwise) and its rate limit
        #: for the shaper
        self.attributes: ReplyAttributes = NO_REPLY_ATTRIBUTES
        self.rate_limit: RateLimit | None = None
        self._session_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_limit = 0                     # seconds (0: none)
        self._idle_packets = -1                  # rx + tx data packets at the last check
        self._idle_since = 0.0
        self._timer = DeadlineTimer(hub.loop, self._on_timer)
        self._routes: list[str] = []
        self._lower_is_up = False
        self._lower_up_pending = False
        self._ipv6_up = False
        self.final_counters: dict[str, int] = {}
        self.closed = False
        self.up_event = asyncio.Event()
        self.closed_event = asyncio.Event()

    @property
    def now(self) -> float:
        return self.hub.loop.time()

    def start(self, wait_for_peer: float = 0.0, *, registered: bool = False) -> None:
        """Register the call and start LCP.

        ``wait_for_peer`` (PAC side): hold our first Configure-Request until the peer's first
        frame arrives, at most that many seconds.  The PNS only learns our call ID from the
        Outgoing-Call-Reply, so a Configure-Request we send at once can reach it before it
        has registered the call and be dropped, costing a whole 3 s restart period.
        ``registered``: the owner already put the call in the engine (a PNS does so when it
        sends the Outgoing-Call-Request); frames that arrived meanwhile are handled now."""
        if not registered:
            self.engine.add_session(self.call_id, self.info.peer_call_id, self.info.peer, tun=self.tun,
                                    peer_rwin=self.peer_rwin, peer_ppd=self.peer_ppd)
        early = self.hub.register(self)
        if wait_for_peer > 0 and not early:
            self._lower_up_pending = True
            self.hub.loop.call_later(wait_for_peer, self._lower_up)
        else:
            self._lower_up()
        for protocol, payload in early:
            self.on_frame(protocol, payload)

    def _lower_up(self) -> None:
        if self.closed or self._lower_is_up:
            return
        self._lower_is_up = True
        self._lower_up_pending = False
        self.link.lower_up(self.now)
        self.pump()

    def on_frame(self, protocol: int, payload: bytes) -> None:
        if self.closed:
            return
        if self._lower_up_pending:
            self._lower_up()
        if protocol >= ENGINE_EVENT_BASE:          # an engine event, e.g. EV_MPPE_RESET_NEEDED
            self.link.engine_event(protocol, self.now)
        else:
            if not self._heard_peer:
                self._heard_peer = True
                if self._on_peer_frame is not None:
                    self._on_peer_frame(self)
            self.link.receive(protocol, payload, self.now)
        self.pump()

    def close(self, reason: str, cause: Teardown = Teardown.LOCAL_CLOSE) -> None:
        """Administrative close: LCP Terminate, then teardown when the link reports down."""
        if self.closed:
            return
        self.link.close(self.now, reason, cause)
        self.pump()

    def abort(self, reason: str, cause: Teardown = Teardown.LOCAL_CLOSE) -> None:
        """Tear down now, without PPP goodbyes (control connection gone, internal error)."""
        # A peer that ends the link often closes the control connection before our LCP has
        # finished (pptpd exits with its pppd): keep the PPP reason, e.g. pppd's
        # Terminate-Request text "MPPE required but peer negotiation failed".  Its cause
        # wins: it says who began the end ("control connection closed; PPP: session
        # timeout" is our Session-Timeout, the peer closing TCP its consequence).
        ppp = self.link.down_reason
        if ppp and ppp not in reason:
            reason = f"{reason}; PPP: {ppp}"
        self._teardown(reason, self.link.down_cause or cause)

    # ------------------------------------------------------------------------------------
    def pump(self) -> None:
        """Frames out, events handled, timer re-armed.  A step's frames leave before its
        events are acted on (LinkDown removes the call: our Terminate-Ack must go first),
        except that NetworkUp opens the data path before them: the frame that brings IPCP
        up at the peer (our Configure-Ack) must not reach it before we take its packets."""
        if self.closed:
            return
        pending = self.link.frames_to_send()
        while not self.closed:
            ev = self.link.next_event()
            if ev is None:
                break
            if not isinstance(ev, NetworkUp):
                self._send_frames(pending)
                pending = []
            self._handle(ev)
        if not self.closed:
            # events may have produced frames (e.g. Terminate after MPPE failure)
            self._send_frames(pending + self.link.frames_to_send())
            self._timer.arm(self.link.get_timer())

    def _send_frames(self, frames: list[tuple[int, bytes]]) -> None:
        if self._gate is not None:
            self._held_out.extend(frames)
            return
        for protocol, payload in frames:
            self.engine.send_control(self.call_id, protocol, payload)

    GATE_TIMEOUT = 5.0   # seconds the frames wait for an on_network_up future at most

    def _hold_frames_until(self, gate: "asyncio.Future[object]") -> None:
        self._gate = gate
        timeout = self.hub.loop.call_later(self.GATE_TIMEOUT, self._open_gate, gate)

        def done(_: "asyncio.Future[object]") -> None:
            timeout.cancel()
            self._open_gate(gate)
        gate.add_done_callback(done)

    def _open_gate(self, gate: "asyncio.Future[object]") -> None:
        if self._gate is not gate:
            return
        self._gate = None
        held, self._held_out = self._held_out, []
        if not self.closed:
            if gate.done() and not gate.cancelled() and gate.exception() is not None:
                log.warning("call %d: network-up step failed: %s", self.call_id, gate.exception())
            self._send_frames(held)

    def _on_timer(self, now: float) -> None:
        if self.closed:
            return
        self.link.handle_timer(now)
        self.pump()

    def _handle(self, ev: LinkEvent) -> None:
        match ev:
            case LcpOpened(result=r):
                self.engine.set_ppp(self.call_id, tx_acfc=r.tx_acfc, tx_pfc=r.tx_pfc,
                                    mtu=r.peer_mru or 1500)
            case VerifyPeer(request=request):
                self._verify(request)
            case Authenticated():
                self.info.user = ev.user
                self.info.auth = ev.method.label
                log.info("call %d peer %s: authenticated %r with %s", self.call_id, self.info.peer,
                         ev.user, self.info.auth)
                if ev.direction == "peer":
                    self._apply_attributes(ev.attributes)
                if self._on_auth is not None:
                    self._on_auth(self, ev)
            case AuthenticationFailed():
                log.warning("call %d peer %s: authentication failed for %r with %s: %s", self.call_id,
                            self.info.peer, ev.user, ev.method.label, ev.reason)
                if self._on_auth is not None:
                    self._on_auth(self, ev)
            case MppeUp():
                self.engine.set_mppe(self.call_id, ev.send_key, ev.recv_key, ev.bits, ev.tx_stateful,
                                     rx_stateful=ev.rx_stateful)
                self.info.mppe = f"{ev.bits} {ev.mode}"
            case MppeReset():
                self.engine.mppe_reset(self.call_id)
            case NetworkUp():
                self._network_up(ev)
            case NetworkDown():
                self.engine.set_data(self.call_id, False, False)
                if self._on_network_down is not None:
                    self._on_network_down(self, ev)
            case LinkDown():
                self._teardown(ev.reason, ev.cause or Teardown.LOCAL_CLOSE)
            case _:
                log.debug("call %d: event %s", self.call_id, ev)

    # ---- external verification and the verifier's limits ---------------------------------
    def _verify(self, request: VerifyRequest) -> None:
        if self._verifier is None:
            # a link set up for external verification without a verifier: refuse at once
            self.link.verified(request, VerifyResult(False, reason="no verifier"), self.now)
            return
        task = self.hub.loop.create_task(self._await_verdict(self._verifier, request))
        self._verifications.add(task)
        task.add_done_callback(self._verifications.discard)

    async def _await_verdict(self, verifier: AsyncVerifier, request: VerifyRequest) -> None:
        try:
            result = await verifier(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:    # the verifier's bug or outage: a clean rejection
            log.exception("call %d: verifier failed for %r", self.call_id, request.user)
            result = VerifyResult(False, reason=f"verifier error: {type(exc).__name__}")
        if self.closed:
            return
        try:
            self.link.verified(request, result, self.now)
            self.pump()
        except Exception:    # our bug: end this session, never the loop or other sessions
            log.exception("call %d: error handling the verdict", self.call_id)
            self.abort("internal error", Teardown.INTERNAL_ERROR)

    def _apply_attributes(self, attrs: ReplyAttributes) -> None:
        self.attributes = attrs
        self.rate_limit = attrs.rate_limit
        if attrs.session_timeout:
            self.set_session_timeout(attrs.session_timeout)
        if attrs.idle_timeout:
            self.set_idle_timeout(attrs.idle_timeout)

    def set_session_timeout(self, seconds: int) -> None:
        """End the session ``seconds`` from now with SESSION_TIMEOUT (0: no limit); replaces
        the limit it had (RADIUS reply, CoA-Request)."""
        if self._session_timer is not None:
            self._session_timer.cancel()
            self._session_timer = None
        if seconds > 0 and not self.closed:
            self._session_timer = self.hub.loop.call_later(seconds, self._limit_reached, SESSION_TIMEOUT,
                                                           Teardown.SESSION_TIMEOUT)

    def set_idle_timeout(self, seconds: int) -> None:
        """End the session after ``seconds`` without data packets, counted from now (0: no
        limit); replaces the limit it had (RADIUS reply, CoA-Request)."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._idle_limit = seconds
        if seconds > 0 and not self.closed:
            self._idle_packets, self._idle_since = -1, self.now
            self._schedule_idle_check(seconds)

    def _schedule_idle_check(self, idle: int) -> None:
        period = min(max(idle / 4, 0.05), IDLE_CHECK_MAX)
        self._idle_timer = self.hub.loop.call_later(period, self._idle_check, idle)

    def _idle_check(self, idle: int) -> None:
        self._idle_timer = None
        if self.closed or idle != self._idle_limit:
            return
        try:
            c = self.engine.counters(self.call_id)
        except Exception:              # the call is leaving the engine
            return
        packets = c.get("rx_packets", 0) + c.get("tx_packets", 0)
        if packets != self._idle_packets:
            self._idle_packets, self._idle_since = packets, self.now
        elif self.now - self._idle_since >= idle:
            self._limit_reached(IDLE_TIMEOUT, Teardown.IDLE_TIMEOUT)
            return
        self._schedule_idle_check(idle)

    def _limit_reached(self, reason: str, cause: Teardown) -> None:
        if not self.closed:
            log.info("call %d peer %s: %s", self.call_id, self.info.peer, reason)
            self.close(reason, cause)

    def _network_up(self, ev: NetworkUp) -> None:
        if ev.family == 4:
            self.info.local_ip, self.info.remote_ip = str(ev.local), str(ev.remote)
            self.info.dns = tuple(str(d) for d in (ev.dns or ()))
            self.engine.add_route(self.call_id, str(ev.remote))
            self._routes.append(str(ev.remote))
            self.engine.set_data(self.call_id, True, self._ipv6_up)
            self.info.up = True
            if self._on_network_up is not None:
                gate = self._on_network_up(self, ev)
                if gate is not None and not gate.done():
                    self._hold_frames_until(gate)
            log.info("call %d peer %s: IPCP up local %s remote %s%s", self.call_id, self.info.peer,
                     ev.local, ev.remote, f" MPPE {self.info.mppe}" if self.info.mppe else "")
            self.up_event.set()
        else:
            self._ipv6_up = True
            if ev.remote:
                self.engine.add_route(self.call_id, str(ev.remote))
                self._routes.append(str(ev.remote))
            self.engine.set_data(self.call_id, bool(self.info.up), True)
            if self._on_network_up is not None:
                gate = self._on_network_up(self, ev)
                if gate is not None and not gate.done():
                    self._hold_frames_until(gate)

    def _teardown(self, reason: str, cause: Teardown) -> None:
        if self.closed:
            return
        self.closed = True
        self.info.reason, self.info.cause = reason, cause
        self._timer.cancel()
        for task in self._verifications:
            task.cancel()                 # a verdict now would be for a dead link
        for handle in (self._session_timer, self._idle_timer):
            if handle is not None:
                handle.cancel()
        self._gate, self._held_out = None, []
        if self.link.phase is not Phase.DEAD:
            # ended without PPP goodbyes (abort): the link goes to Dead all the same, which
            # releases what it holds (the pool address); its last words are not sent
            try:
                self.link.lower_down(self.now)
                self.link.frames_to_send()
                self.link.events()
            except Exception:
                log.exception("call %d: link teardown", self.call_id)
        counters: dict[str, int] = {}
        try:
            counters = self.engine.counters(self.call_id)
        except Exception:
            pass
        try:
            self.engine.set_data(self.call_id, False, False)
            for r in self._routes:
                self.engine.remove_route(r)
            self.engine.remove_session(self.call_id)
        except Exception:
            log.exception("call %d: engine teardown", self.call_id)
        self.hub.unregister(self.call_id)
        self.final_counters = counters
        # a call that never came up is a failure the operator should see (issue 10)
        log.log(logging.INFO if self.info.up else logging.WARNING,
                "call %d peer %s: down (%s) rx %d pkts %d bytes, tx %d pkts %d bytes,"
                " PPP control frames rx %d tx %d",
                self.call_id, self.info.peer, reason, counters.get("rx_packets", 0),
                counters.get("rx_bytes", 0), counters.get("tx_packets", 0), counters.get("tx_bytes", 0),
                counters.get("rx_control", 0), counters.get("tx_control", 0))
        if self.info.up and self._on_network_down is not None:
            try:
                self._on_network_down(self, None)
            except Exception:
                log.exception("call %d: network-down hook", self.call_id)
        self.closed_event.set()
        if self._on_closed is not None:
            self._on_closed(self, reason)
