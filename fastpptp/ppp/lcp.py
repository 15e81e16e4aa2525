"""LCP: the Link Control Protocol (RFC 1661 §5-6, RFC 1570), on the shared automaton.

Options (RFC 1661 §6, numbers from IANA):

====  ========================  ====================================================
type  option                    what we do
====  ========================  ====================================================
1     Maximum-Receive-Unit      request `LcpConfig.mru` (1400, as Windows); accept the
                                peer's if >= 128, else Nak with 128
2     Async-Control-Char-Map    accept (meaningless on PPTP's synchronous link); never
                                request
3     Authentication-Protocol   authenticator: request `auth_require[i]`, walk the list
                                on Nak; peer: Ack if in `auth_accept`, else Nak with our
                                preferred (e.g. EAP from Windows RRAS -> MS-CHAPv2)
5     Magic-Number              request a random non-zero number; detect a looped-back
                                link (§6.4)
7, 8  PFC, ACFC                 request and accept (configurable)
other (4 Quality, 13 Callback, 17 MRRU, 19 Endpoint-Discriminator, 23 Link-Discriminator,
      ...)                      Configure-Reject
====  ========================  ====================================================

Codes beyond the automaton: Protocol-Reject (8, sent via `protocol_reject()`), Echo-Request/
Reply (9/10, with keepalive like pppd's lcp-echo-interval / lcp-echo-failure), Discard-
Request (11), Identification (12) and Time-Remaining (13) from RFC 1570 (reported as events).
"""
from __future__ import annotations

import dataclasses
import random
import struct

from .constants import CHAP_ALGORITHM, AuthMethod, Code, Protocol
from .fsm import (FSM, FsmConfig, OptionVerdict, ProtoEvent, State, Event, ack, nak, reject)
from .packet import Option, Packet

__all__ = [
    "LCP", "LcpConfig", "LcpResult", "EchoFailure", "LoopbackDetected",
    "IdentificationReceived", "TimeRemainingReceived", "ProtocolRejected",
    "encode_auth", "decode_auth", "DEFAULT_MRU", "MIN_MRU",
    "OPT_MRU", "OPT_ACCM", "OPT_AUTH", "OPT_QUALITY", "OPT_MAGIC", "OPT_PFC", "OPT_ACFC",
    "OPT_CALLBACK", "OPT_MRRU", "OPT_ENDPOINT_DISC", "OPT_LINK_DISC",
]

DEFAULT_MRU = 1500       # RFC 1661 §6.1: the MRU when none is negotiated
MIN_MRU = 128            # smallest MRU we agree to send with (pppd's MINMRU)

OPT_MRU = 1
OPT_ACCM = 2
OPT_AUTH = 3
OPT_QUALITY = 4
OPT_MAGIC = 5
OPT_PFC = 7
OPT_ACFC = 8
OPT_CALLBACK = 13
OPT_MRRU = 17
OPT_ENDPOINT_DISC = 19
OPT_LINK_DISC = 23

_CHAP_BY_ALG = {alg: m for m, alg in CHAP_ALGORITHM.items()}


def encode_auth(method: AuthMethod) -> bytes:
    """The Authentication-Protocol option value for `method` (RFC 1661 §6.2, RFC 1994 §3)."""
    if method is AuthMethod.PAP:
        return struct.pack("!H", Protocol.PAP)
    if method is AuthMethod.EAP:
        return struct.pack("!H", Protocol.EAP)
    return struct.pack("!HB", Protocol.CHAP, CHAP_ALGORITHM[method])


def decode_auth(value: bytes) -> AuthMethod | None:
    """The method an Authentication-Protocol value names, or None if we do not know it."""
    if len(value) < 2:
        return None
    proto = struct.unpack_from("!H", value)[0]
    if proto == Protocol.PAP and len(value) == 2:
        return AuthMethod.PAP
    if proto == Protocol.EAP and len(value) == 2:
        return AuthMethod.EAP
    if proto == Protocol.CHAP and len(value) == 3:
        return _CHAP_BY_ALG.get(value[2])
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class LcpConfig(FsmConfig):
    """What our LCP asks for and accepts.

    mru:           MRU we request (what we can receive). None = don't request (1500).
    auth_require:  authenticator side: methods we may authenticate the peer with, most
                   preferred first (e.g. (MSCHAP_V2, MSCHAP_V1)). Empty = 'noauth'.
    auth_accept:   peer side: methods we agree to authenticate ourselves with, most
                   preferred first (the first is our Nak suggestion). Empty = refuse all.
    magic:         negotiate a Magic-Number (needed for loop detection and echo checks).
    pfc, acfc:     request and accept Protocol-Field- / Address-and-Control-Field-Compression.
    echo_interval: seconds between keepalive Echo-Requests once Opened; 0 disables
                   (pppd lcp-echo-interval).
    echo_failure:  unanswered Echo-Requests after which the peer is declared dead:
                   EchoFailure is emitted and LCP closes; 0 disables (pppd lcp-echo-failure).
    max_loopback:  Magic-Number collisions (§6.4) before LoopbackDetected and close.
    magic_number:  a fixed Magic-Number to request first (replays, tests); None = random.
                   A collision or a Nak still replaces it with a random one.
    """

    mru: int | None = 1400
    auth_require: tuple[AuthMethod, ...] = ()
    auth_accept: tuple[AuthMethod, ...] = (AuthMethod.MSCHAP_V2, AuthMethod.MSCHAP_V1,
                                           AuthMethod.CHAP_MD5)
    magic: bool = True
    pfc: bool = True
    acfc: bool = True
    echo_interval: float = 30.0
    echo_failure: int = 4
    max_loopback: int = 10
    magic_number: int | None = None


@dataclasses.dataclass(frozen=True)
class LcpResult:
    """What LCP agreed, carried by ThisLayerUp.

    local_mru:  MRU we asked for and the peer acked: the largest Information field the peer
                may send us (1500 if not negotiated).
    peer_mru:   MRU the peer asked for and we acked: the largest Information field we may
                send (1500 if not negotiated) -- use it for the engine's `mtu`.
    local_magic / peer_magic: Magic-Numbers each side uses (0 = not negotiated).
    authenticate_peer: the method WE use to authenticate the PEER (we asked, the peer
                acked); None = we do not authenticate the peer.
    authenticate_self: the method the PEER uses to authenticate US (the peer asked, we
                acked); None = the peer does not authenticate us.
    tx_pfc / tx_acfc: we MAY compress the protocol / address-and-control fields of frames
                we send (the peer asked for PFC/ACFC and we acked) -> engine.set_ppp().
    rx_pfc / rx_acfc: the peer may send us compressed frames (we asked, it acked).
    peer_accm:  the ACCM the peer asked for (None if not), informational on PPTP.
    """

    local_mru: int = DEFAULT_MRU
    peer_mru: int = DEFAULT_MRU
    local_magic: int = 0
    peer_magic: int = 0
    authenticate_peer: AuthMethod | None = None
    authenticate_self: AuthMethod | None = None
    tx_pfc: bool = False
    tx_acfc: bool = False
    rx_pfc: bool = False
    rx_acfc: bool = False
    peer_accm: int | None = None


@dataclasses.dataclass(frozen=True)
class EchoFailure(ProtoEvent):
    """`missed` Echo-Requests went unanswered: the peer is dead; LCP is closing."""

    missed: int


@dataclasses.dataclass(frozen=True)
class LoopbackDetected(ProtoEvent):
    """The link appears looped back (our own Magic-Number came back). `where` says how."""

    where: str


@dataclasses.dataclass(frozen=True)
class IdentificationReceived(ProtoEvent):
    """RFC 1570 Identification (code 12), e.g. Windows' "MSRASV5.20"."""

    magic: int
    message: bytes


@dataclasses.dataclass(frozen=True)
class TimeRemainingReceived(ProtoEvent):
    """RFC 1570 Time-Remaining (code 13): the peer will end the link in `seconds`."""

    magic: int
    seconds: int
    message: bytes


@dataclasses.dataclass(frozen=True)
class ProtocolRejected(ProtoEvent):
    """The peer Protocol-Rejected `protocol` (RFC 1661 §5.7): stop that NCP (RXJ-)."""

    protocol: int


def _u32(v: int) -> bytes:
    return struct.pack("!I", v)


def _u16(v: int) -> bytes:
    return struct.pack("!H", v)


class LCP(FSM):
    """The Link Control Protocol on the RFC 1661 automaton (see module docstring)."""

    protocol = Protocol.LCP
    name = "LCP"
    option_names = {
        OPT_MRU: "mru", OPT_ACCM: "asyncmap", OPT_AUTH: "auth", OPT_QUALITY: "quality",
        OPT_MAGIC: "magic", OPT_PFC: "pcomp", OPT_ACFC: "accomp", OPT_CALLBACK: "callback",
        OPT_MRRU: "mrru", OPT_ENDPOINT_DISC: "endpoint", OPT_LINK_DISC: "linkdisc",
    }

    def __init__(self, config: LcpConfig, rng: random.Random):
        super().__init__(config, rng)
        self.config: LcpConfig = config
        self._peer_agreed: dict[int, Option] = {}
        self._our_acked: dict[int, Option] = {}
        self._loop_count = 0
        self._echo_deadline: float | None = None
        self._echo_pending = 0
        self._echo_enabled = True
        self._want_magic: int | None = None
        self.reset_negotiation()

    # ---- our request --------------------------------------------------------------------

    def reset_negotiation(self) -> None:
        cfg = self.config
        self._want_mru = cfg.mru if cfg.mru is not None and cfg.mru != DEFAULT_MRU else None
        self._want_magic = (cfg.magic_number or self._new_magic()) if cfg.magic else None
        self._auth_tried: list[AuthMethod] = []
        self._want_auth = cfg.auth_require[0] if cfg.auth_require else None
        if self._want_auth is not None:
            self._auth_tried.append(self._want_auth)
        self._want_pfc = cfg.pfc
        self._want_acfc = cfg.acfc
        self._our_acked = {}

    def _new_magic(self, avoid: int = 0) -> int:
        while True:
            m = self.rng.getrandbits(32)
            if m and m != avoid and m != self._want_magic:
                return m

    def request_options(self) -> list[Option]:
        opts = []
        if self._want_mru is not None:
            opts.append(Option(OPT_MRU, _u16(self._want_mru)))
        if self._want_auth is not None:
            opts.append(Option(OPT_AUTH, encode_auth(self._want_auth)))
        if self._want_magic is not None:
            opts.append(Option(OPT_MAGIC, _u32(self._want_magic)))
        if self._want_pfc:
            opts.append(Option(OPT_PFC))
        if self._want_acfc:
            opts.append(Option(OPT_ACFC))
        return opts

    def ack_received(self, options: list[Option]) -> None:
        self._our_acked = {o.type: o for o in options}

    def nak_received(self, options: list[Option], now: float) -> bool:
        for o in options:
            if o.type == OPT_MRU and len(o.value) == 2:
                v = struct.unpack("!H", o.value)[0]
                if MIN_MRU <= v <= max(DEFAULT_MRU, self.config.mru or 0):
                    self._want_mru = v if v != DEFAULT_MRU else None
                else:
                    self._want_mru = None
            elif o.type == OPT_AUTH and self._want_auth is not None:
                self._next_auth(decode_auth(o.value))
            elif o.type == OPT_MAGIC and self._want_magic is not None:
                # §6.4: a Nak'd Magic-Number means choose a new one (the peer may be us).
                self._want_magic = self._new_magic()
            # Naks of options we did not request (hints) are ignored: we only ask for
            # what we need; the peer Configure-Rejects or lives with our choice.
        return True

    def _next_auth(self, suggested: AuthMethod | None) -> None:
        allowed = self.config.auth_require
        choice: AuthMethod | None
        if suggested is not None and suggested in allowed and suggested not in self._auth_tried:
            choice = suggested
        else:
            choice = next((m for m in allowed if m not in self._auth_tried), None)
        if choice is None:
            label = suggested.label if suggested else "an unknown method"
            self.defer_close(f"peer refused to authenticate with any allowed method "
                             f"(it suggested {label})")
            return
        self._auth_tried.append(choice)
        self._want_auth = choice

    def reject_received(self, options: list[Option], now: float) -> bool:
        for o in options:
            if o.type == OPT_MRU:
                self._want_mru = None
            elif o.type == OPT_AUTH:
                self.defer_close("peer refused to authenticate")
            elif o.type == OPT_MAGIC:
                self._want_magic = None
            elif o.type == OPT_PFC:
                self._want_pfc = False
            elif o.type == OPT_ACFC:
                self._want_acfc = False
        return True

    # ---- the peer's request -------------------------------------------------------------

    def check_request(self, options: list[Option], now: float) -> list[OptionVerdict]:
        cfg = self.config
        out: list[OptionVerdict] = []
        seen: set[int] = set()
        for o in options:
            t, v = o.type, o.value
            if t in seen and t in (OPT_MRU, OPT_ACCM, OPT_AUTH, OPT_MAGIC, OPT_PFC, OPT_ACFC):
                out.append(reject(o))          # a duplicated option is not negotiable
                continue
            seen.add(t)
            if t == OPT_MRU and len(v) == 2:
                mru = struct.unpack("!H", v)[0]
                out.append(ack(o) if mru >= MIN_MRU else nak(o, Option(OPT_MRU, _u16(MIN_MRU))))
            elif t == OPT_ACCM and len(v) == 4:
                out.append(ack(o))
            elif t == OPT_AUTH and len(v) >= 2:
                method = decode_auth(v)
                if method is not None and method in cfg.auth_accept:
                    out.append(ack(o))
                elif cfg.auth_accept:
                    out.append(nak(o, Option(OPT_AUTH, encode_auth(cfg.auth_accept[0]))))
                else:
                    out.append(reject(o))
            elif t == OPT_MAGIC and len(v) == 4:
                magic = struct.unpack("!I", v)[0]
                if magic == 0:
                    # §6.4: zero is illegal and MUST be Nak'd.
                    out.append(nak(o, Option(OPT_MAGIC, _u32(self._new_magic()))))
                elif self._want_magic is not None and magic == self._want_magic:
                    # §6.4: our own number -- maybe a looped-back link; pick a new one and Nak.
                    self._loop_count += 1
                    self._want_magic = self._new_magic(avoid=magic)
                    out.append(nak(o, Option(OPT_MAGIC, _u32(self._new_magic(avoid=magic)))))
                    if cfg.max_loopback and self._loop_count >= cfg.max_loopback:
                        self.emit(LoopbackDetected("Magic-Number in Configure-Request"))
                        self.defer_close("loopback detected")
                else:
                    out.append(ack(o))
            elif t == OPT_PFC and not v and cfg.pfc:
                out.append(ack(o))
            elif t == OPT_ACFC and not v and cfg.acfc:
                out.append(ack(o))
            else:
                # Callback, MRRU, Endpoint/Link Discriminator, Quality, malformed values and
                # anything unknown: Configure-Reject (§5.4).
                out.append(reject(o))
        return out

    def request_acked(self, options: list[Option]) -> None:
        self._peer_agreed = {o.type: o for o in options}

    def result(self) -> LcpResult:
        ours, theirs = self._our_acked, self._peer_agreed
        return LcpResult(
            local_mru=struct.unpack("!H", ours[OPT_MRU].value)[0] if OPT_MRU in ours
            else DEFAULT_MRU,
            peer_mru=self._peer_mru(),
            local_magic=struct.unpack("!I", ours[OPT_MAGIC].value)[0] if OPT_MAGIC in ours
            else 0,
            peer_magic=self._peer_magic(),
            authenticate_peer=decode_auth(ours[OPT_AUTH].value) if OPT_AUTH in ours else None,
            authenticate_self=decode_auth(theirs[OPT_AUTH].value) if OPT_AUTH in theirs
            else None,
            tx_pfc=OPT_PFC in theirs,
            tx_acfc=OPT_ACFC in theirs,
            rx_pfc=OPT_PFC in ours,
            rx_acfc=OPT_ACFC in ours,
            peer_accm=struct.unpack("!I", theirs[OPT_ACCM].value)[0] if OPT_ACCM in theirs
            else None,
        )

    def _peer_mru(self) -> int:
        o = self._peer_agreed.get(OPT_MRU)
        return struct.unpack("!H", o.value)[0] if o is not None else DEFAULT_MRU

    def _peer_magic(self) -> int:
        o = self._peer_agreed.get(OPT_MAGIC)
        return struct.unpack("!I", o.value)[0] if o is not None else 0

    def _local_magic(self) -> int:
        o = self._our_acked.get(OPT_MAGIC)
        return struct.unpack("!I", o.value)[0] if o is not None else 0

    # ---- LCP-only codes -----------------------------------------------------------------

    def handle_code(self, pkt: Packet, now: float) -> bool:
        code = pkt.code
        if code == Code.PROTOCOL_REJECT:
            if self.state is not State.Opened:
                self._drop("wrong_state", "Protocol-Reject outside Opened")   # §5.7
                return True
            if len(pkt.data) < 2:
                self._drop("malformed", "Protocol-Reject without a protocol")
                return True
            proto = struct.unpack_from("!H", pkt.data)[0]
            if proto == Protocol.LCP:
                self._event(Event.RXJ_minus, now, pkt=pkt, reason="peer Protocol-Rejected LCP")
            else:
                self.emit(ProtocolRejected(proto))
                self._event(Event.RXJ_plus, now, pkt=pkt)
            return True
        if code in (Code.ECHO_REQUEST, Code.ECHO_REPLY, Code.DISCARD_REQUEST):
            if len(pkt.data) < 4:
                self._drop("malformed", f"{Code(code).name} without a Magic-Number")
                return True
            magic = struct.unpack_from("!I", pkt.data)[0]
            if self.state is State.Opened:
                local = self._local_magic()
                if local and magic == local:
                    # Our own number came back: the link is looped back (§6.4).
                    self.emit(LoopbackDetected(f"own Magic-Number in {Code(code).name}"))
                    return True
                if code == Code.ECHO_REPLY:
                    self._echo_pending = 0
            self._event(Event.RXR, now, pkt=pkt)
            return True
        if code == Code.IDENTIFICATION:
            if len(pkt.data) < 4:
                self._drop("malformed", "Identification without a Magic-Number")
                return True
            self.emit(IdentificationReceived(struct.unpack_from("!I", pkt.data)[0],
                                             bytes(pkt.data[4:])))
            return True
        if code == Code.TIME_REMAINING:
            if len(pkt.data) < 8:
                self._drop("malformed", "Time-Remaining shorter than 8 octets")
                return True
            magic, seconds = struct.unpack_from("!II", pkt.data)
            self.emit(TimeRemainingReceived(magic, seconds, bytes(pkt.data[8:])))
            return True
        return False

    def _a_ser(self, rest: tuple[str, ...]) -> None:
        pkt = self._rx
        if pkt is None or pkt.code != Code.ECHO_REQUEST:
            return                       # Echo-Reply / Discard-Request: nothing to send
        # Echo-Reply: our Magic-Number, then the request's data, never above the peer's MRU.
        data = (_u32(self._local_magic()) + pkt.data[4:])[: self._peer_mru() - 4]
        self.send_packet(Code.ECHO_REPLY, data, pkt.identifier)

    def code_rejected(self, code: int) -> None:
        if code in (Code.ECHO_REQUEST, Code.ECHO_REPLY):
            self._echo_enabled = False
            self._echo_deadline = None

    def protocol_reject(self, protocol: int, packet: bytes, now: float) -> None:
        """Protocol-Reject an unknown PPP `protocol` carrying `packet` (RFC 1661 §5.7).

        Only sent in the Opened state; the rejected information is truncated so that the
        packet never exceeds the peer's MRU.
        """
        self._now = now
        if self.state is not State.Opened:
            self.counters["protocol_reject_suppressed"] += 1
            return
        data = (_u16(protocol & 0xFFFF) + packet)[: self._peer_mru() - 4]
        self.send_packet(Code.PROTOCOL_REJECT, data)

    def send_identification(self, message: bytes, now: float) -> None:
        """Send an RFC 1570 Identification (allowed in any state once the link is up)."""
        if self.state in (State.Initial, State.Starting):
            return
        self.send_packet(Code.IDENTIFICATION,
                         (_u32(self._local_magic()) + message)[: self._peer_mru() - 4])

    # ---- keepalive ----------------------------------------------------------------------

    def this_layer_up(self, now: float) -> None:
        self._loop_count = 0
        self._echo_pending = 0
        if self._echo_enabled and self.config.echo_interval > 0:
            # pppd sends the first Echo-Request as soon as LCP opens.
            self._send_echo(now)

    def this_layer_down(self, now: float) -> None:
        self._echo_deadline = None
        self._echo_pending = 0

    def _send_echo(self, now: float) -> None:
        self.send_packet(Code.ECHO_REQUEST, _u32(self._local_magic()))
        self._echo_pending += 1
        self._echo_deadline = now + self.config.echo_interval

    def _extra_deadline(self) -> float | None:
        return self._echo_deadline

    def _extra_timer(self, now: float) -> None:
        if self._echo_deadline is None or now < self._echo_deadline:
            return
        self._echo_deadline = None
        if self.state is not State.Opened:
            return
        fail = self.config.echo_failure
        if fail and self._echo_pending >= fail:
            self.emit(EchoFailure(self._echo_pending))
            self.close(now, "Peer not responding")
            return
        self._send_echo(now)
