"""The PPP link: RFC 1661 §3 phases over LCP, authentication, CCP/MPPE, IPCP and IPv6CP.

Theory of operation
-------------------
One :class:`PPPLink` per PPTP call, sans-I/O like its parts (docs/DESIGN.md "PPP link")::

    Dead --lower_up--> Establish --LCP Opened--> Authenticate --both directions done-->
    Network (CCP, then IPCP/IPv6CP) ... --close / LCP down--> Terminate --> Dead

1. Establish (§3.3): only LCP runs; every other frame is silently discarded (§3.5).
2. Authenticate (§3.5): LCP's result says who authenticates whom
   (``authenticate_peer``: we are the authenticator; ``authenticate_self``: the peer
   authenticates us); one PAP/CHAP machine runs per direction.  The peer's credentials are
   checked at once against ``auth_backend``, or, with ``external_verifier``, handed out as
   :class:`VerifyPeer` and the verdict fed back with :meth:`PPPLink.verified` (RADIUS);
   its reply attributes ride on :class:`Authenticated` and a Framed-IP-Address or name
   servers in them override the pool and the configured ones for IPCP.  Only LCP and the
   authentication protocols pass; NCP frames are discarded.  A failure closes LCP
   ("Authentication failed" / "Failed to authenticate ourselves to peer", pppd's texts).
3. Network (§3.6): when MPPE is allowed, CCP runs first and IPCP/IPv6CP start only once
   CCP is settled, so IP data never flows before the MPPE keys are in place (their early
   Configure-Requests are held, a few at most, and replayed).  MPPE start keys come from
   the MS-CHAP result (RFC 3079); :class:`MppeUp` is emitted before any
   :class:`NetworkUp`.  MPPE required but not agreed -- CCP refused or failed, or the
   authentication was not MS-CHAP -- closes the link: ``LinkDown("MPPE required but not
   negotiated")``.  CCP or IPv6CP when disabled are Protocol-Rejected, as pppd does.
   Stateless MPPE that lost sync for good (the engine's EV_MPPE_LOST_SYNC, after >= 4096
   packets lost) closes the link too: ``LinkDown(MPPE_LOST_SYNC)``.
4. Terminate (§3.7): ``close()`` or the peer's Terminate-Request; LCP finishing gives one
   :class:`LinkDown` with the first reason recorded (auth failure, echo failure, MPPE...).

Unknown protocols are answered with LCP Protocol-Reject (§5.7) while LCP is Opened; IPv4,
IPv6 and compressed datagrams that reach the link (the engine carries those) are dropped
and counted.  Outgoing frames keep the order in which the parts produced them (an auth
Failure goes out before the LCP Terminate-Request it causes).
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import random
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Callable, Literal, Protocol as _TypingProtocol

from .auth.base import (
    FRAMED_IP_FROM_POOL, FRAMED_IP_PEER_CHOOSES, NO_REPLY_ATTRIBUTES, AuthBackend, AuthFailed,
    AuthSucceeded, AuthTimers, ReplyAttributes, StaticAddressBackend, VerifyRequest,
    VerifyResult,
)
from .auth.chap import ChapAuthenticator, ChapPeer, ChapResult
from .auth.pap import PapAuthenticator, PapPeer
from .auth.policy import MS_CHAP_METHODS, AuthPolicy
from .ccp import CCP, CcpConfig, CcpResult, MppeFailed, ResetRequested
from .constants import EV_MPPE_LOST_SYNC, EV_MPPE_RESET_NEEDED, AuthMethod, Protocol
from ..teardown import Teardown
from .fsm import Event, ProtoEvent, ThisLayerDown, ThisLayerFinished, ThisLayerUp
from .ipcp import IPCP, IpcpConfig, IpcpResult
from .ipv6cp import IPV6CP, Ipv6cpConfig, Ipv6cpResult
from .lcp import LCP, EchoFailure, LcpConfig, LcpResult, LoopbackDetected, ProtocolRejected

__all__ = [
    "PPPLink", "LinkConfig", "Phase", "LinkEvent", "LcpOpened", "VerifyPeer", "Authenticated",
    "AuthenticationFailed",
    "MppeUp", "MppeReset", "NetworkUp", "NetworkDown", "LinkDown", "EV_MPPE_RESET_NEEDED",
    "EV_MPPE_LOST_SYNC", "NO_PEER_ADDRESS", "peer_address_problem",
    "MPPE_NOT_NEGOTIATED", "MPPE_LOST_SYNC",
]

log = logging.getLogger(__name__)

MPPE_NOT_NEGOTIATED = "MPPE required but not negotiated"
#: the down reason after the engine's EV_MPPE_LOST_SYNC: the stateless receive keys are out
#: of step for good (the peer's coherency count wrapped past ours) and cannot be reset
MPPE_LOST_SYNC = "MPPE lost synchronisation (stateless, >= 4096 packets lost)"
#: the down reason of a server link with no address for its peer (pool exhausted): the owner
#: tells the PNS with a resource error (RFC 2637 §2.13/§2.16: General Error, No-Resource)
NO_PEER_ADDRESS = "no IP address available for the peer"
#: the cause LCP's end gives the link by the RFC 1661 event behind it (§4.3), when nothing
#: typed was noted before: the peer's Terminate-Request; the peer rejecting LCP itself or a
#: catastrophic code; LCP's Max-Configure running out.  Down (the owner's cause), Close (its
#: closer noted the cause: see _LinkLCP.close) and RTA (after a close) give none.
_LCP_CAUSES: dict[Event, Teardown] = {
    Event.RTR: Teardown.PEER_TERMINATE,
    Event.RXJ_minus: Teardown.NEGOTIATION_FAILED,
    Event.TO_minus: Teardown.NEGOTIATION_FAILED,
}


def _lcp_cause(trigger: Event | None) -> Teardown | None:
    return _LCP_CAUSES.get(trigger) if trigger is not None else None


MAX_HELD_FRAMES = 8                  # NCP frames held while CCP settles (bounded)
MAX_EVENTS = 256
MAX_FRAMES = 1024                    # frames queued for an owner that does not drain

LinkRole = Literal["server", "client"]
Direction = Literal["peer", "self"]      # "peer": we check the peer; "self": it checks us
Family = Literal[4, 6]

_DATA_PROTOCOLS = frozenset({Protocol.IPV4, Protocol.IPV6, Protocol.COMPRESSED})
_AUTH_PROTOCOLS = frozenset({Protocol.PAP, Protocol.CHAP})


class Phase(enum.Enum):
    """RFC 1661 §3.2 link phases."""

    DEAD = "Dead"
    ESTABLISH = "Establish"
    AUTHENTICATE = "Authenticate"
    NETWORK = "Network"
    TERMINATE = "Terminate"


# --------------------------------------------------------------------------- events

@dataclasses.dataclass(frozen=True)
class LinkEvent:
    """Base of the events :meth:`PPPLink.next_event` returns."""


@dataclasses.dataclass(frozen=True)
class LcpOpened(LinkEvent):
    """LCP reached Opened; ``result`` is the LcpResult (MRUs, ACFC/PFC -> engine.set_ppp)."""

    result: LcpResult


@dataclasses.dataclass(frozen=True)
class VerifyPeer(LinkEvent):
    """External verification (``PPPLink(..., external_verifier=True)``): check ``request``
    -- without blocking: LCP and the auth timers keep running -- and give the verdict to
    ``link.verified(request, result, now)``.  A verdict that comes too late is dropped."""

    request: VerifyRequest


@dataclasses.dataclass(frozen=True)
class Authenticated(LinkEvent):
    """One direction of authentication succeeded.

    ``direction`` "peer": we authenticated the peer, ``user`` is the peer's name (server);
    "self": the peer accepted us, ``user`` is our own name (client).  ``attributes``: the
    verifier's reply attributes (session/idle timeout, rate limit, class...; the link itself
    applies the address and name servers)."""

    user: str
    method: AuthMethod
    direction: Direction = "peer"
    attributes: ReplyAttributes = NO_REPLY_ATTRIBUTES


@dataclasses.dataclass(frozen=True)
class AuthenticationFailed(LinkEvent):
    """One direction of authentication failed; the link is closing."""

    user: str
    method: AuthMethod
    reason: str
    direction: Direction = "peer"


@dataclasses.dataclass(frozen=True)
class MppeUp(LinkEvent):
    """CCP agreed MPPE: RFC 3079 start keys for engine.set_mppe (ours to send with first).

    The mode is per direction (CCP negotiates each on its own): ``tx_stateful`` for what we
    send, ``rx_stateful`` for what we receive.
    """

    send_key: bytes = dataclasses.field(repr=False)
    recv_key: bytes = dataclasses.field(repr=False)
    bits: int = 128
    tx_stateful: bool = False
    rx_stateful: bool = False

    @property
    def mode(self) -> str:
        """"stateless", "stateful", or e.g. "tx-stateless/rx-stateful" when they differ."""
        tx = "stateful" if self.tx_stateful else "stateless"
        rx = "stateful" if self.rx_stateful else "stateless"
        return tx if tx == rx else f"tx-{tx}/rx-{rx}"


@dataclasses.dataclass(frozen=True)
class MppeReset(LinkEvent):
    """The peer sent CCP Reset-Request (Reset-Ack already queued): engine.mppe_reset()."""


@dataclasses.dataclass(frozen=True)
class NetworkUp(LinkEvent):
    """An NCP opened: ``family`` 4 (IPCP) or 6 (IPv6CP; link-local addresses)."""

    family: Family
    local: IPv4Address | IPv6Address | None
    remote: IPv4Address | IPv6Address | None
    dns: tuple[IPv4Address, ...] = ()
    nbns: tuple[IPv4Address, ...] = ()


@dataclasses.dataclass(frozen=True)
class NetworkDown(LinkEvent):
    family: Family


@dataclasses.dataclass(frozen=True)
class LinkDown(LinkEvent):
    """The link is dead (phase Dead); ``reason`` is the first cause recorded, ``cause`` its
    type (None: nothing typed ended the link, e.g. its lower layer went down: the owner's
    cause applies)."""

    reason: str
    cause: Teardown | None = None


# --------------------------------------------------------------------------- config

@dataclasses.dataclass(frozen=True)
class LinkConfig:
    """Everything one PPP link needs, for either role.

    Built from pppd options by ``fastpptp.config.server_link_config`` /
    ``client_link_config`` (the link itself knows no pppd option names), or directly.

    lcp / ipcp / ipv6cp / ccp: the control protocols' configs (timers, MRU, addresses...);
        the link fills in from ``policy`` what depends on it (LCP auth lists, CCP MPPE).
        ``ipv6cp`` None disables IPv6CP (pppd noipv6).
    policy:     AuthPolicy (pppd auth/require-*/refuse-*/MPPE options).
    name:       our name (pppd ``name``): in CHAP Challenges, and the server column when
                looking secrets up.  remotename: the peer's (pppd ``remotename``).
    user, password: client credentials (pppd ``user`` / ``password``); without a password
                the backend is asked for the secret of (user, remotename).
    assign_address: server: ``user -> IPv4 address | None`` for the peer (a pool or the
                secrets file); None: the backend's per-user static address if it has one
                (``static_address``), else ``ipcp.peer_address``.
    release_address: given back each address ``assign_address`` handed out, when the
                link dies.
    dns / nbns: server: name servers to hand out (RFC 1877); client: see ipcp.request_dns.
    auth_timers: PAP/CHAP restart, max transmits, wait and verify timeout.  mschap_retries:
                MS-CHAP Failure R=1 retries the authenticator allows (0 = pppd's behaviour).
    peer_may_choose_address: server (pppd ``ipcp-accept-remote``): a verifier's
                Framed-IP-Address 255.255.255.255 lets the peer use the address it asks for,
                if :func:`peer_address_problem` and ``claim_address`` accept it; a refused
                (or 0.0.0.0) request is Nak'd with a pool address.  False (pppd's default):
                such a peer gets one from the pool.
    claim_address: server: ``(user, address) -> None | reason`` reserves an address the
                link did not take from ``assign_address`` (the peer's choice, the verifier's
                Framed-IP-Address) for this session, or says why not (in use by another
                session, outside the user's chap-secrets addresses...).  A claimed address
                is given back through ``release_address`` like a pool one.  None: only the
                link's own checks apply -- the owner then keeps addresses unique itself.
    peer_address_allowed: server: ``(user, address) -> bool``, the user's own limits on an
                address the peer chooses (pppd's auth_ip_addr over chap-secrets' address
                column); None: no such limits.  Not asked about the verifier's own address.
    """

    lcp: LcpConfig = dataclasses.field(default_factory=LcpConfig)
    ipcp: IpcpConfig = dataclasses.field(default_factory=IpcpConfig)
    ipv6cp: Ipv6cpConfig | None = None
    ccp: CcpConfig | None = None
    policy: AuthPolicy = dataclasses.field(default_factory=AuthPolicy)
    name: str = ""
    remotename: str = ""
    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    assign_address: Callable[[str], IPv4Address | str | None] | None = None
    dns: tuple[IPv4Address | str, ...] = ()
    nbns: tuple[IPv4Address | str, ...] = ()
    auth_timers: AuthTimers = dataclasses.field(default_factory=AuthTimers)
    mschap_retries: int = 0
    release_address: Callable[[str], None] | None = None
    peer_may_choose_address: bool = False
    claim_address: Callable[[str, IPv4Address], str | None] | None = None
    peer_address_allowed: Callable[[str, IPv4Address], bool] | None = None


# --------------------------------------------------------------------------- the link

class _LinkLCP(LCP):
    """LCP that tells the link why it closes itself (no common auth method, loopback,
    echo failure...): those reasons never reach ThisLayerFinished otherwise.

    The cause comes with the text: LCP emits EchoFailure / LoopbackDetected just before it
    closes for them; without such an event LCP closes itself only for a hopeless negotiation
    (the peer refused to authenticate).  The link's own closes (``PPPLink.close``, ``_fatal``,
    an authentication failure) noted their cause before calling this: the first one stays."""

    def __init__(self, config: LcpConfig, rng: random.Random,
                 on_close: Callable[[str, Teardown], None]) -> None:
        super().__init__(config, rng)
        self._on_close = on_close
        self._typed_cause: Teardown | None = None

    def emit(self, event: ProtoEvent) -> None:
        if isinstance(event, EchoFailure):
            self._typed_cause = Teardown.ECHO_TIMEOUT
        elif isinstance(event, LoopbackDetected):
            self._typed_cause = Teardown.LOOPBACK
        super().emit(event)

    def close(self, now: float, reason: str = "") -> None:
        self._on_close(reason, self._typed_cause or Teardown.NEGOTIATION_FAILED)
        super().close(now, reason)


class _Part(_TypingProtocol):
    """What the link drives in each of its parts (LCP, the auth machines, the NCPs)."""

    def frames_to_send(self) -> list[tuple[int, bytes]]: ...

    def next_event(self) -> object | None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


Authenticator = PapAuthenticator | ChapAuthenticator
Authenticatee = PapPeer | ChapPeer


_THIS_NETWORK = IPv4Network("0.0.0.0/8")      # RFC 1122 §3.2.1.3 (a): never a host's


def peer_address_problem(addr: IPv4Address, local: IPv4Address | None) -> str | None:
    """Why ``addr`` cannot be a peer's tunnel address, or None when it can.

    pppd's ``bad_ip_adrs`` (auth.c: loopback, multicast, class E -- which holds the
    limited broadcast 255.255.255.255), plus 0.0.0.0/8 ("this network", RFC 1122
    §3.2.1.3; 0.0.0.0 itself is the peer asking us to choose, RFC 1332 §3.3) and our own
    tunnel address (the point-to-point link's two ends must differ).  Whether another
    session holds it is the owner's question (``LinkConfig.claim_address``)."""
    if addr in _THIS_NETWORK:
        return "unspecified (0.0.0.0/8)"
    if addr.is_loopback:
        return "loopback"
    if addr.is_multicast:
        return "multicast"
    if addr.is_reserved:                # 240.0.0.0/4, 255.255.255.255 included
        return "broadcast" if addr == IPv4Address("255.255.255.255") else "reserved (class E)"
    if local is not None and addr == local:
        return "our own tunnel address"
    return None


class PPPLink:
    """RFC 1661 §3 phase machine driving LCP, PAP/CHAP, CCP, IPCP and IPv6CP."""

    def __init__(self, config: LinkConfig, role: LinkRole, auth_backend: AuthBackend | None,
                 rng: random.Random | None = None, *, external_verifier: bool = False) -> None:
        """``external_verifier``: the peer's credentials go out as :class:`VerifyPeer` and
        the verdict comes back through :meth:`verified` (``auth_backend`` then serves only
        static addresses and a client's own secret); otherwise ``auth_backend`` checks them
        at once."""
        if role not in ("server", "client"):
            raise ValueError("role must be 'server' or 'client'")
        self.config = config
        self.role: LinkRole = role
        self.backend = auth_backend
        self.external_verifier = external_verifier
        self.rng = rng or random.Random()
        self.lcp = self._new_lcp()
        self.phase = Phase.DEAD
        self.lcp_result: LcpResult | None = None
        self.authenticator: Authenticator | None = None   # our machine checking the peer
        self.authenticatee: Authenticatee | None = None   # our machine proving ourselves
        self.peer_user: str | None = None
        self.peer_attributes: ReplyAttributes = NO_REPLY_ATTRIBUTES  # the verifier's reply
        self.auth_result: ChapResult | None = None        # the result MPPE keys come from
        self.ccp: CCP | None = None
        self.ipcp: IPCP | None = None
        self.ipv6cp: IPV6CP | None = None
        self.mppe: MppeUp | None = None
        self.counters: dict[str, int] = collections.Counter()
        self._frames: list[tuple[int, bytes]] = []
        self._events: collections.deque[LinkEvent] = collections.deque()
        self._held: list[tuple[int, bytes]] = []     # NCP frames waiting for CCP
        self._ncps_started = False
        self._down_reason: str | None = None
        self._down_cause: Teardown | None = None
        self._network_up: set[Family] = set()
        self._assigned_address: str | None = None
        self._chosen: IPv4Address | None = None       # _peer_choice's current answer
        self._now = 0.0

    def _new_lcp(self) -> "_LinkLCP":
        policy = self.config.policy
        return _LinkLCP(dataclasses.replace(self.config.lcp, auth_require=policy.auth_require,
                                            auth_accept=policy.auth_accept),
                        self.rng, self._note_reason)

    # ---- public API ---------------------------------------------------------------------

    def lower_up(self, now: float) -> None:
        """The PPTP call is connected: start LCP (Dead -> Establish)."""
        self._now = now
        if self.phase is not Phase.DEAD:
            return
        if self.lcp.state.name not in ("Initial", "Starting"):
            self.lcp = self._new_lcp()          # a finished LCP: start from scratch
        self.phase = Phase.ESTABLISH
        self._down_reason = self._down_cause = None
        self.lcp.open(now)
        self.lcp.up(now)
        self._pump(now)

    def lower_down(self, now: float) -> None:
        """The PPTP call is gone: everything stops without Terminate (RFC 1661 'Down').
        No cause of its own: the owner knows why the call went (``CallSession.abort``)."""
        self._note_reason("lower layer down")
        if self.lcp.state.name not in ("Initial", "Starting"):
            self.lcp.down(now)
        self._pump(now)
        if self.phase is not Phase.DEAD:
            self._to_dead()

    def close(self, now: float, reason: str = "", cause: Teardown = Teardown.LOCAL_CLOSE) -> None:
        """Administrative close: LCP Terminate-Request with ``reason``; ``cause`` is its type."""
        self._note_reason(reason or "closed by us", cause)
        if self.phase in (Phase.ESTABLISH, Phase.AUTHENTICATE, Phase.NETWORK):
            self.phase = Phase.TERMINATE
        self.lcp.close(now, reason)
        self._pump(now)

    def receive(self, protocol: int, payload: bytes, now: float) -> None:
        """One received PPP frame (protocol, information field)."""
        self._now = now
        self.counters["rx_frames"] += 1
        phase = self.phase
        if phase is Phase.DEAD:
            self._discard("dead", protocol)
        elif protocol == Protocol.LCP:
            self.lcp.receive(payload, now)
        elif protocol in _DATA_PROTOCOLS:
            self._discard("data", protocol)            # the engine's business
        elif phase is Phase.ESTABLISH:
            self._discard("establish", protocol)       # §3.5: only LCP before auth
        elif protocol in _AUTH_PROTOCOLS:
            self._receive_auth(protocol, payload, now)
        elif phase is Phase.AUTHENTICATE:
            self._discard("authenticate", protocol)    # §3.5: no NCP before auth is done
        elif phase is Phase.TERMINATE:
            self._discard("terminate", protocol)
        elif protocol == Protocol.CCP:
            if self.ccp is None:
                self.lcp.protocol_reject(protocol, payload, now)
            else:
                self.ccp.receive(payload, now)
        elif protocol == Protocol.IPCP:
            self._receive_ncp(protocol, payload, now, self.ipcp)
        elif protocol == Protocol.IPV6CP:
            if self.config.ipv6cp is None:
                self.lcp.protocol_reject(protocol, payload, now)
            else:
                self._receive_ncp(protocol, payload, now, self.ipv6cp)
        else:
            self.counters["protocol_reject"] += 1
            self.lcp.protocol_reject(protocol, payload, now)
        self._pump(now)

    def engine_event(self, event: int, now: float) -> None:
        """An engine pseudo-frame (>= 0x10000): EV_MPPE_RESET_NEEDED (stateful MPPE lost a
        packet: CCP Reset-Request) or EV_MPPE_LOST_SYNC (stateless MPPE keys out of step for
        good: the link closes, as pppd does after too many MPPE errors; a session that
        carries nothing must not stay up on unencrypted LCP echoes)."""
        if event == EV_MPPE_RESET_NEEDED:
            if self.ccp is not None and self.mppe is not None:
                self.ccp.send_reset_request(now)
            else:
                self.counters["reset_needed_ignored"] += 1
        elif event == EV_MPPE_LOST_SYNC:
            self.counters["mppe_lost_sync"] += 1
            if self.mppe is not None and self.phase not in (Phase.TERMINATE, Phase.DEAD):
                self._fatal(MPPE_LOST_SYNC, now, Teardown.MPPE_LOST_SYNC)
        else:
            self.counters["unknown_engine_event"] += 1
        self._pump(now)

    def verified(self, request: VerifyRequest, result: VerifyResult, now: float) -> None:
        """The verdict on a :class:`VerifyPeer` request.  Dropped (``counters
        ["verdict_dropped"]``) when that request is no longer pending: the link went down or
        renegotiated, the verify timeout passed, or the verdict was already given."""
        self._now = now
        m = self.authenticator
        if m is None or m.pending is not request:
            self.counters["verdict_dropped"] += 1
            log.debug("PPP link: dropped a verdict for %s %r: not pending", request.method.label,
                      request.user)
            return
        m.verified(request, result, now)
        self._pump(now)

    def frames_to_send(self) -> list[tuple[int, bytes]]:
        out, self._frames = self._frames, []
        return out

    def next_event(self) -> LinkEvent | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[LinkEvent]:
        out = list(self._events)
        self._events.clear()
        return out

    def get_timer(self) -> float | None:
        ts = [t for t in (p.get_timer() for p in self._parts()) if t is not None]
        return min(ts) if ts else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        for part in self._parts():
            t = part.get_timer()
            if t is not None and now >= t:
                part.handle_timer(now)
        self._pump(now)

    # ---- internals ----------------------------------------------------------------------

    def _parts(self) -> list[_Part]:
        return [p for p in (self.lcp, self.authenticator, self.authenticatee, self.ccp,
                            self.ipcp, self.ipv6cp) if p is not None]

    def _discard(self, why: str, protocol: int) -> None:
        self.counters[f"discard_{why}"] += 1
        log.debug("PPP %s phase: discarded protocol 0x%04x", self.phase.value, protocol)

    def _emit(self, ev: LinkEvent) -> None:
        if len(self._events) >= MAX_EVENTS:
            self._events.popleft()
            self.counters["events_dropped"] += 1
        self._events.append(ev)

    @property
    def down_reason(self) -> str | None:
        """Why the link went (or is going) down, as first noted: e.g. the text of the peer's
        LCP Terminate-Request.  None while nothing has ended it."""
        return self._down_reason

    @property
    def down_cause(self) -> Teardown | None:
        """The type of :attr:`down_reason`, as first noted (None: nothing typed ended the link
        yet).  Noted apart from the text: LCP closing itself tells its text at once and its
        cause by a typed event just after (EchoFailure, LoopbackDetected)."""
        return self._down_cause

    def _note_reason(self, reason: str, cause: Teardown | None = None) -> None:
        if self._down_reason is None and reason:
            self._down_reason = reason
        if self._down_cause is None and cause is not None:
            self._down_cause = cause

    def _receive_auth(self, protocol: int, payload: bytes, now: float) -> None:
        delivered = False
        for m in (self.authenticator, self.authenticatee):
            if m is not None and m.protocol == protocol:
                m.receive(payload, now)
                delivered = True
        if not delivered:
            self._discard("auth_not_negotiated", protocol)

    def _receive_ncp(self, protocol: int, payload: bytes, now: float,
                     ncp: IPCP | IPV6CP | None) -> None:
        if ncp is not None:
            ncp.receive(payload, now)
        elif len(self._held) < MAX_HELD_FRAMES:
            self._held.append((protocol, payload))     # replayed when CCP settles
        else:
            self._discard("held_full", protocol)

    def _pump(self, now: float) -> None:
        """Move frames out of the parts and act on their events until all is quiet."""
        for _ in range(64):                      # bounded: each round consumes events
            busy = False
            for part in self._parts():
                self._frames.extend(part.frames_to_send())
                while (ev := part.next_event()) is not None:
                    busy = True
                    self._on_event(part, ev, now)
                    self._frames.extend(part.frames_to_send())
            if len(self._frames) > MAX_FRAMES:
                self.counters["tx_dropped"] += len(self._frames) - MAX_FRAMES
                del self._frames[:len(self._frames) - MAX_FRAMES]
            if not busy:
                return
        log.warning("PPP link: event loop did not settle")

    def _on_event(self, part: _Part, ev: object, now: float) -> None:
        if part is self.lcp:
            self._on_lcp(ev, now)
        elif part is self.authenticator or part is self.authenticatee:
            self._on_auth(part is self.authenticator, ev, now)
        elif part is self.ccp:
            self._on_ccp(ev, now)
        elif (part is self.ipcp or part is self.ipv6cp) and isinstance(part, (IPCP, IPV6CP)):
            self._on_ncp(part, ev, now)

    # ---- LCP ----------------------------------------------------------------------------

    def _on_lcp(self, ev: object, now: float) -> None:
        if isinstance(ev, ThisLayerUp):
            self.lcp_result = ev.result
            self._emit(LcpOpened(ev.result))
            self._start_auth(ev.result, now)
        elif isinstance(ev, ThisLayerDown):
            self._note_reason(ev.reason, _lcp_cause(ev.trigger))
            self._stop_upper(now)
            if self.phase is not Phase.DEAD:
                # LCP left Opened: renegotiating (Establish) or terminating (a Terminate-
                # Request or -Ack from the peer; our own closes set Terminate first).
                self.phase = (Phase.TERMINATE if self.phase is Phase.TERMINATE
                              or ev.trigger in (Event.RTR, Event.RTA) else Phase.ESTABLISH)
        elif isinstance(ev, ThisLayerFinished):
            self._note_reason(ev.reason, _lcp_cause(ev.trigger))
            self._stop_upper(now)
            # close() on a link already Dead (lower_down first) still finishes LCP
            # (Starting -> Initial, tlf): the link went down once, LinkDown was given then
            if self.phase is not Phase.DEAD:
                self._to_dead()
        elif isinstance(ev, EchoFailure):
            self._note_reason(f"peer not responding ({ev.missed} LCP Echo-Requests "
                              "unanswered)", Teardown.ECHO_TIMEOUT)
        elif isinstance(ev, LoopbackDetected):
            self._note_reason(f"loopback detected ({ev.where})", Teardown.LOOPBACK)
        elif isinstance(ev, ProtocolRejected):
            self._on_protocol_rejected(ev.protocol, now)

    def _on_protocol_rejected(self, protocol: int, now: float) -> None:
        ncp: CCP | IPCP | IPV6CP | None = (
            self.ccp if protocol == Protocol.CCP else self.ipcp if protocol == Protocol.IPCP
            else self.ipv6cp if protocol == Protocol.IPV6CP else None)
        if ncp is not None:
            ncp.protocol_rejected(now)
        elif protocol == Protocol.CCP and self.config.policy.mppe.required:
            self._fatal(MPPE_NOT_NEGOTIATED, now, Teardown.NEGOTIATION_FAILED)

    def _to_dead(self) -> None:
        self.phase = Phase.DEAD
        self.authenticator = self.authenticatee = None
        self.ccp = self.ipcp = self.ipv6cp = None
        self._held.clear()
        self._ncps_started = False
        self._release_address()
        self._emit(LinkDown(self._down_reason or "link terminated", self._down_cause))

    def _release_address(self) -> None:
        """Give back the address ``assign_address`` handed this link (once: it is forgotten).
        The link owns it from allocation; every way to Dead passes here (the owner of a call
        that ends without PPP goodbyes calls :meth:`lower_down`)."""
        addr, self._assigned_address = self._assigned_address, None
        self._chosen = None
        if addr is not None and self.config.release_address is not None:
            self.config.release_address(addr)

    def _stop_upper(self, now: float) -> None:
        """LCP left Opened: NCPs go down (§3.7); auth restarts on the next LCP Up."""
        ncps: tuple[tuple[IPCP | IPV6CP | None, Family], ...] = ((self.ipcp, 4), (self.ipv6cp, 6))
        for ncp, family in ncps:
            if ncp is not None:
                ncp.down(now)
                if family in self._network_up:
                    self._network_up.discard(family)
                    self._emit(NetworkDown(family))
        if self.ccp is not None:
            self.ccp.down(now)
        # drain what they said while going down, but do not act on it any more
        for part in (self.ipcp, self.ipv6cp, self.ccp):
            if part is not None:
                part.frames_to_send()
                part.events()
        self.authenticator = self.authenticatee = None
        self.ccp = self.ipcp = self.ipv6cp = None
        self.mppe = None
        self._held.clear()
        self._ncps_started = False

    def _fatal(self, reason: str, now: float, cause: Teardown) -> None:
        log.warning("PPP link closing: %s", reason)
        self._note_reason(reason, cause)
        self.phase = Phase.TERMINATE
        self.lcp.close(now, reason)

    # ---- Authenticate phase -------------------------------------------------------------

    def _client_password(self) -> str:
        cfg = self.config
        if cfg.password:
            return cfg.password
        if self.backend is not None:
            secret = self.backend.get_secret(self._our_user(), cfg.remotename or "*")
            if secret is not None:
                return secret
        return ""

    def _our_user(self) -> str:
        return self.config.user or self.config.name

    def _start_auth(self, result: LcpResult, now: float) -> None:
        self.phase = Phase.AUTHENTICATE
        cfg = self.config
        theirs, ours = result.authenticate_peer, result.authenticate_self
        if cfg.policy.auth_required and theirs is None:
            self._fatal("peer refused to authenticate", now, Teardown.NEGOTIATION_FAILED)
            return
        if theirs is not None:
            if self.backend is None and not self.external_verifier:
                self._fatal("no authentication backend to check the peer", now, Teardown.INTERNAL_ERROR)
                return
            # external verification: an authenticator without backend emits VerifyRequest
            backend = None if self.external_verifier else self.backend
            checker: Authenticator
            if theirs is AuthMethod.PAP:
                checker = PapAuthenticator(backend, self.rng, cfg.auth_timers,
                                           server_name=cfg.name or "*")
            else:
                checker = ChapAuthenticator(theirs, backend, self.rng, cfg.name,
                                            cfg.auth_timers, retries=cfg.mschap_retries)
            self.authenticator = checker
            checker.start(now)
        if ours is not None:
            user, password = self._our_user(), self._client_password()
            prover: Authenticatee
            if ours is AuthMethod.PAP:
                prover = PapPeer(user, password, self.rng, cfg.auth_timers)
            else:
                prover = ChapPeer(ours, user, password, self.rng, cfg.auth_timers)
            self.authenticatee = prover
            prover.start(now)
        self._maybe_network(now)

    def _on_auth(self, checking_peer: bool, ev: object, now: float) -> None:
        direction: Direction = "peer" if checking_peer else "self"
        if isinstance(ev, VerifyRequest):
            self._emit(VerifyPeer(ev))
        elif isinstance(ev, AuthSucceeded):
            attributes = NO_REPLY_ATTRIBUTES
            if direction == "peer":
                self.peer_user = ev.user
                attributes = self.peer_attributes = ev.result.attributes
            self._emit(Authenticated(ev.user, ev.method, direction, attributes))
            self._maybe_network(now)
        elif isinstance(ev, AuthFailed):
            self._emit(AuthenticationFailed(ev.user, ev.method, ev.reason, direction))
            # pppd's Terminate-Request texts
            text = ("Authentication failed" if direction == "peer"
                    else "Failed to authenticate ourselves to peer")
            self._note_reason(f"{text}: {ev.reason}", Teardown.AUTH_FAILED)
            self.phase = Phase.TERMINATE
            self.lcp.close(now, text)

    def _maybe_network(self, now: float) -> None:
        if self.phase is not Phase.AUTHENTICATE:
            return
        for m in (self.authenticator, self.authenticatee):
            if m is not None and not m.succeeded:
                return
        self._start_network(now)

    # ---- Network phase ------------------------------------------------------------------

    def _ms_result(self) -> ChapResult | None:
        """The MS-CHAP result MPPE keys come from: ours as authenticator on a server,
        as authenticatee on a client (RFC 3079 is written for that pairing).  A result
        without keys (an external verifier that sent none) gives no MPPE."""
        first, second = ((self.authenticator, self.authenticatee) if self.role == "server"
                         else (self.authenticatee, self.authenticator))
        for m in (first, second):
            if m is not None and isinstance(m.result, ChapResult) \
                    and m.result.method in MS_CHAP_METHODS \
                    and m.result.mppe_send_key and m.result.mppe_recv_key:
                return m.result
        return None

    def _start_network(self, now: float) -> None:
        self.phase = Phase.NETWORK
        mppe = self.config.policy.mppe
        self.auth_result = self._ms_result()
        if mppe.required and self.auth_result is None:
            log.info("MPPE required but authentication was not MS-CHAP")
            self._fatal(MPPE_NOT_NEGOTIATED, now, Teardown.NEGOTIATION_FAILED)
            return
        if mppe.allowed and mppe.bits and self.auth_result is not None:
            base = self.config.ccp or CcpConfig()
            self.ccp = CCP(dataclasses.replace(
                base, mppe_bits=tuple(sorted(mppe.bits, reverse=True)),
                mppe_required=mppe.required, mppe_stateful=mppe.stateful,
                mppe_prefer_stateful=mppe.prefer_stateful), self.rng)
            self.ccp.open(now)
            self.ccp.up(now)
        else:
            self._start_ncps(now)

    def _ipcp_config(self) -> IpcpConfig:
        cfg = self.config
        ipcp = cfg.ipcp
        if cfg.dns and not ipcp.dns:
            ipcp = dataclasses.replace(ipcp, dns=cfg.dns)
        if cfg.nbns and not ipcp.nbns:
            ipcp = dataclasses.replace(ipcp, nbns=cfg.nbns)
        attrs = self.peer_attributes
        if self.role == "server" and attrs.dns:
            ipcp = dataclasses.replace(ipcp, dns=attrs.dns)
        if self.role == "server" and attrs.nbns:
            ipcp = dataclasses.replace(ipcp, nbns=attrs.nbns)
        if self.role != "server" or self.peer_user is None:
            return ipcp
        # LCP renegotiated (and the peer authenticated again): the address this link holds
        # goes back first -- the link owns at most one at a time
        self._release_address()
        framed = attrs.framed_ip
        if framed not in (None, FRAMED_IP_FROM_POOL):
            if framed != FRAMED_IP_PEER_CHOOSES:
                # the verifier's address, checked as a peer's choice would be: never another
                # live session's (the shared TUN routes by address) and never the pool
                # instead of what AAA said -- refused, the link ends with NO_PEER_ADDRESS
                problem = self._claim(framed)
                if problem is not None:
                    log.warning("PPP: verifier's Framed-IP-Address %s for %r refused: %s",
                                framed, self.peer_user, problem)
                    return dataclasses.replace(ipcp, peer_address=None, assign_peer_address=None)
                return dataclasses.replace(ipcp, peer_address=framed)
            if cfg.peer_may_choose_address:
                # RFC 1332 §3.3: the peer states its address; _peer_choice checks it (the
                # pool is touched only when it names none or one we refuse)
                return dataclasses.replace(ipcp, peer_address=None,
                                           assign_peer_address=self._peer_choice)
            log.info("verifier lets the peer choose its address, policy does not "
                     "(no ipcp-accept-remote): pool")
        addr = self._pool_address()
        if addr is not None:
            ipcp = dataclasses.replace(ipcp, peer_address=addr)
        return ipcp

    def _pool_address(self) -> IPv4Address | None:
        """An address for the peer from ``assign_address`` (held by the link from now on),
        else the backend's static one for the user."""
        cfg = self.config
        user = self.peer_user or ""
        addr: IPv4Address | str | None = None
        if cfg.assign_address is not None:
            addr = cfg.assign_address(user)
            if addr is not None:
                self._assigned_address = str(addr)
        elif isinstance(self.backend, StaticAddressBackend):
            addr = self.backend.static_address(user, cfg.name or "*")
        return None if addr is None else IPv4Address(addr)

    def _claim(self, addr: IPv4Address, *, peer_chose: bool = False) -> str | None:
        """Take ``addr`` for the peer if the link's checks, the user's limits (an address
        the peer chose) and the owner's ``claim_address`` allow it (the link then holds it:
        see :meth:`_release_address`); else why not."""
        cfg = self.config
        local = cfg.ipcp.local_address
        problem = peer_address_problem(addr, None if local is None else IPv4Address(local))
        if problem is None and peer_chose and cfg.peer_address_allowed is not None \
                and not cfg.peer_address_allowed(self.peer_user or "", addr):
            problem = "not among the user's allowed addresses"
        if problem is None and cfg.claim_address is not None:
            problem = cfg.claim_address(self.peer_user or "", addr)
        if problem is None:
            self._release_address()               # what it held before (a Nak'd offer)
            self._assigned_address = str(addr) if cfg.claim_address is not None else None
        return problem

    def _peer_choice(self, requested: IPv4Address) -> IPv4Address | None:
        """IPCP's ``assign_peer_address`` under Framed-IP-Address 255.255.255.255 with the
        policy's consent (pppd ipcp-accept-remote).  Called for every Configure-Request
        (with 0.0.0.0 when the peer names no address), so idempotent: the address the link
        holds stays the answer while the peer asks for it.  A requested address that
        :meth:`_claim` refuses, or 0.0.0.0, is answered with a pool address (the Nak's
        hint, RFC 1661 §5.3); with none to give the link closes (NO_PEER_ADDRESS)."""
        held = self._chosen
        if held is not None and requested == held:
            return held
        if int(requested) != 0:
            problem = self._claim(requested, peer_chose=True)
            if problem is None:
                log.info("IPCP: peer %r chose its address %s", self.peer_user, requested)
                self._chosen = requested
                return requested
            self.counters["peer_address_refused"] += 1
            log.info("IPCP: peer %r may not use %s: %s", self.peer_user, requested, problem)
        if held is None:
            held = self._chosen = self._pool_address()
            if held is None:
                self._fatal(NO_PEER_ADDRESS, self._now, Teardown.NO_ADDRESS)
        return held

    def _start_ncps(self, now: float) -> None:
        if self._ncps_started or self.phase is not Phase.NETWORK:
            return
        self._ncps_started = True
        ipcp_config = self._ipcp_config()
        if self.role == "server" and ipcp_config.peer_address is None \
                and ipcp_config.assign_peer_address is None:
            # Never let a client pick its own address on a server (pppd: "Peer is not
            # authorized to use remote address").
            self._fatal(NO_PEER_ADDRESS, now, Teardown.NO_ADDRESS)
            return
        self.ipcp = IPCP(ipcp_config, self.rng)
        self.ipcp.open(now)
        self.ipcp.up(now)
        if self.config.ipv6cp is not None:
            self.ipv6cp = IPV6CP(self.config.ipv6cp, self.rng)
            self.ipv6cp.open(now)
            self.ipv6cp.up(now)
        held, self._held = self._held, []
        for protocol, payload in held:
            ncp = self.ipcp if protocol == Protocol.IPCP else self.ipv6cp
            if ncp is not None:
                ncp.receive(payload, now)

    def _on_ccp(self, ev: object, now: float) -> None:
        if isinstance(ev, ThisLayerUp):
            res: CcpResult = ev.result
            if res.mppe_bits:
                r = self.auth_result
                if self.mppe is None and r is not None:    # CCP runs only after MS-CHAP
                    key_len = 16 if res.mppe_bits == 128 else 8
                    self.mppe = MppeUp(r.mppe_send_key[:key_len], r.mppe_recv_key[:key_len],
                                       res.mppe_bits, res.tx_stateful, res.rx_stateful)
                    self._emit(self.mppe)
            elif self.config.policy.mppe.required:
                self._fatal(MPPE_NOT_NEGOTIATED, now, Teardown.NEGOTIATION_FAILED)
                return
            self._start_ncps(now)
        elif isinstance(ev, MppeFailed):
            log.info("MPPE failed: %s", ev.reason)
            self._fatal(MPPE_NOT_NEGOTIATED, now, Teardown.NEGOTIATION_FAILED)
        elif isinstance(ev, ResetRequested):
            self._emit(MppeReset())
        elif isinstance(ev, ThisLayerDown):
            if self.mppe is not None and self.config.policy.mppe.required:
                self._fatal("MPPE disabled: CCP went down", now, Teardown.NEGOTIATION_FAILED)
        elif isinstance(ev, ThisLayerFinished):
            if self.config.policy.mppe.required:
                self._fatal(MPPE_NOT_NEGOTIATED, now, Teardown.NEGOTIATION_FAILED)
            else:
                self._start_ncps(now)      # no compression then; IP may flow in clear

    def _on_ncp(self, ncp: IPCP | IPV6CP, ev: object, now: float) -> None:
        family: Family = 4 if ncp is self.ipcp else 6
        if isinstance(ev, ThisLayerUp):
            up: NetworkUp
            if family == 4:
                r4: IpcpResult = ev.result
                up = NetworkUp(4, r4.local, r4.remote, tuple(r4.dns), tuple(r4.nbns))
            else:
                r6: Ipv6cpResult = ev.result
                up = NetworkUp(6, r6.local_link_local, r6.peer_link_local)
            self._network_up.add(family)
            self._emit(up)
        elif isinstance(ev, ThisLayerDown):
            if family in self._network_up:
                self._network_up.discard(family)
                self._emit(NetworkDown(family))
        elif isinstance(ev, ThisLayerFinished):
            # pppd: with no network protocol left, the link has no purpose.
            others = [n for n in (self.ipcp, self.ipv6cp) if n is not None and n is not ncp
                      and n.state.name not in ("Initial", "Starting", "Closed", "Stopped")]
            if not others and self.phase is Phase.NETWORK:
                self._fatal(f"No network protocols running ({ncp.name}: {ev.reason})", now,
                            Teardown.NEGOTIATION_FAILED)
