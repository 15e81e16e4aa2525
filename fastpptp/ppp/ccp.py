"""CCP: the Compression Control Protocol (RFC 1962), negotiating MPPE (RFC 3078 §2).

The only option we agree to is type 18, MPPE/MPPC, whose value is 4 octets of "Supported
Bits" (RFC 3078 §2; bit names as pppd prints them, `<mppe +H -M +S -L -D -C>`):

    octet 0: H = 0x01  stateless mode (key changes every packet)
    octet 3: M = 0x80  56-bit keys       S = 0x40  128-bit keys
             L = 0x20  40-bit keys       D = 0x10  obsolete
             C = 0x01  MPPC compression (refused: we never set it and Nak it off)

(The brief's "M = MPPC" was checked against pppd/Linux `ppp_mppe.h` and the captures:
C is MPPC, M is 56-bit.)  Negotiation follows pppd: our Configure-Request offers every key
length we allow plus H; a peer's request offering several lengths is Nak'd down to the
strongest common one, and stateful mode (H clear) is Nak'd to H unless `mppe_stateful`.

Modes are per direction (RFC 1962 §1: a Configure-Request names what its sender wants to
*receive*; pppd hands its own request to the decompressor and the peer's to the
compressor), so CcpResult says what we send (the peer's acked request) and what we receive
(our acked request) separately.  pppd never *requests* stateful mode; `mppe_prefer_stateful`
(fastpptp's ``prefer-mppe-stateful``) does, in both directions: our Configure-Request goes
without H, and the peer's stateless request is Nak'd towards stateful once (pppd with
``mppe-stateful`` takes that Nak and requests stateful itself, ccp.c ccp_nakci; a pppd
*without* it ends the link on our stateful request: "Refusing MPPE stateful mode offered by
peer", then LCP Terminate, seen in docs/INTEROP.md).  If the peer repeats a stateless request
we Ack it, and if it only Rejects our stateful request we ask again for stateless.
Deflate (26), BSD-Compress (21), Predictor (1, 2) and every other option: Configure-Reject.

Reset-Request/Reset-Ack (codes 14/15, RFC 1962 §2.1): `send_reset_request(now)` and the
ResetRequested event (we answer Reset-Ack ourselves; the link calls engine.mppe_reset()).
When MPPE is required and cannot be agreed (rejected, no common key length, CCP failing or
going down) the MppeFailed event tells the link to terminate it.
"""
from __future__ import annotations

import dataclasses
import random
import struct

from .constants import Code, Protocol
from .fsm import FSM, FsmConfig, OptionVerdict, ProtoEvent, State, ack, nak, reject
from .packet import Option, Packet

__all__ = ["CCP", "CcpConfig", "CcpResult", "MppeFailed", "ResetRequested", "ResetAcked",
           "OPT_MPPE", "OPT_DEFLATE", "OPT_BSD_COMPRESS", "MPPE_H", "MPPE_M", "MPPE_S",
           "MPPE_L", "MPPE_D", "MPPE_C", "KEY_BITS", "mppe_option", "describe_mppe"]

OPT_PREDICTOR1 = 1
OPT_PREDICTOR2 = 2
OPT_MPPE = 18
OPT_BSD_COMPRESS = 21
OPT_DEFLATE = 26

# Supported Bits as a big-endian 32-bit number.
MPPE_H = 0x01000000
MPPE_M = 0x00000080
MPPE_S = 0x00000040
MPPE_L = 0x00000020
MPPE_D = 0x00000010
MPPE_C = 0x00000001
KEY_BITS = {128: MPPE_S, 56: MPPE_M, 40: MPPE_L}
RESET_ACK_TIMEOUT = 1.0      # seconds before an unanswered Reset-Request is resent (pppd)


def mppe_option(bits: int) -> Option:
    return Option(OPT_MPPE, struct.pack("!I", bits))


def describe_mppe(bits: int) -> str:
    """pppd's notation, e.g. '<mppe +H -M +S -L -D -C>'."""
    flags = [("H", MPPE_H), ("M", MPPE_M), ("S", MPPE_S), ("L", MPPE_L), ("D", MPPE_D),
             ("C", MPPE_C)]
    return "<mppe " + " ".join(("+" if bits & b else "-") + n for n, b in flags) + ">"


@dataclasses.dataclass(frozen=True, kw_only=True)
class CcpConfig(FsmConfig):
    """MPPE policy.

    mppe_bits:     key lengths we allow, any of 128, 56, 40 (strongest is preferred);
                   empty = no MPPE (the peer's MPPE option is rejected, like pppd nomppe).
    mppe_required: the link must not run without MPPE (pppd require-mppe): if it cannot be
                   agreed, MppeFailed is emitted and CCP closes.
    mppe_stateful: also accept stateful MPPE (pppd mppe-stateful); stateless is
                   requested and preferred.
    mppe_prefer_stateful: request stateful MPPE in both directions (fastpptp
                   prefer-mppe-stateful; implies mppe_stateful), see the module docstring.
    """

    mppe_bits: tuple[int, ...] = (128,)
    mppe_required: bool = True
    mppe_stateful: bool = False
    mppe_prefer_stateful: bool = False

    def __post_init__(self) -> None:
        bad = set(self.mppe_bits) - set(KEY_BITS)
        if bad:
            raise ValueError(f"MPPE key lengths must be among 40, 56, 128, not {sorted(bad)}")


@dataclasses.dataclass(frozen=True)
class CcpResult:
    """What CCP agreed, carried by ThisLayerUp.

    mppe_bits:    session key length, 40, 56 or 128 (the same both ways); 0 = no MPPE (only
                  when not required).
    tx_stateless: what we send: True = stateless (H bit, key changes every packet), False =
                  stateful.  It is the peer's request, which we acked.
    rx_stateless: what we receive: our request, which the peer acked.
    """

    mppe_bits: int
    tx_stateless: bool = True
    rx_stateless: bool = True

    @property
    def tx_stateful(self) -> bool:
        return not self.tx_stateless

    @property
    def rx_stateful(self) -> bool:
        return not self.rx_stateless


@dataclasses.dataclass(frozen=True)
class MppeFailed(ProtoEvent):
    """MPPE is required but could not be agreed (or went down): terminate the link."""

    reason: str


@dataclasses.dataclass(frozen=True)
class ResetRequested(ProtoEvent):
    """The peer sent Reset-Request: call engine.mppe_reset(); Reset-Ack is already sent."""

    identifier: int


@dataclasses.dataclass(frozen=True)
class ResetAcked(ProtoEvent):
    """The peer answered our Reset-Request."""

    identifier: int


def _key_lengths(bits: int) -> set[int]:
    return {k for k, b in KEY_BITS.items() if bits & b}


class CCP(FSM):
    protocol = Protocol.CCP
    name = "CCP"
    option_names = {
        OPT_PREDICTOR1: "predictor1", OPT_PREDICTOR2: "predictor2", OPT_MPPE: "mppe",
        OPT_BSD_COMPRESS: "bsd", OPT_DEFLATE: "deflate",
    }

    def __init__(self, config: CcpConfig, rng: random.Random):
        super().__init__(config, rng)
        self.config: CcpConfig = config
        self._allowed = set(config.mppe_bits)
        self._peer_bits: int | None = None
        self._acked_bits: int | None = None
        self._failed = False
        self._admin_stop = False     # we were told to close/down: no MppeFailed for that
        self._reset_id: int | None = None
        self._reset_deadline: float | None = None
        self._reset_tries = 0
        self._accept_stateful = config.mppe_stateful or config.mppe_prefer_stateful
        # The peer refused stateful mode (rejected our stateful request): stop asking.
        self._stateful_refused = False
        self.reset_negotiation()

    def open(self, now: float) -> None:
        self._admin_stop = False
        super().open(now)

    def up(self, now: float) -> None:
        self._admin_stop = False
        super().up(now)

    def close(self, now: float, reason: str = "") -> None:
        if not self._failed:
            self._admin_stop = True
        super().close(now, reason)

    def down(self, now: float) -> None:
        self._admin_stop = True
        super().down(now)

    # ---- helpers ------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        """Required MPPE is impossible: report once and close."""
        if not self._failed:
            self._failed = True
            self.emit(MppeFailed(reason))
        self.defer_close(reason)

    def _prefer_stateful(self) -> bool:
        return self.config.mppe_prefer_stateful and not self._stateful_refused

    def _desired(self, offered: int) -> int:
        """The Supported Bits we can agree to, given the peer's `offered` bits."""
        common = _key_lengths(offered) & self._allowed
        key = max(common) if common else max(self._allowed)
        if offered & MPPE_H:
            # Stateless offered: fine, unless we prefer stateful and have not yet suggested it.
            stateless = not (self._prefer_stateful() and self._stateful_naks_left > 0)
        else:
            stateless = not self._accept_stateful
        return (MPPE_H if stateless else 0) | KEY_BITS[key]

    # ---- our request --------------------------------------------------------------------

    def reset_negotiation(self) -> None:
        self._want: int | None = None
        self._stateful_naks_left = 1     # Naks towards stateful per negotiation (prefer)
        if self._allowed:
            self._want = 0 if self._prefer_stateful() else MPPE_H
            for k in self._allowed:
                self._want |= KEY_BITS[k]
        self._acked_bits = None

    def request_options(self) -> list[Option]:
        return [] if self._want is None else [mppe_option(self._want)]

    def ack_received(self, options: list[Option]) -> None:
        self._acked_bits = self._want if options else None

    def nak_received(self, options: list[Option], now: float) -> bool:
        for o in options:
            if o.type != OPT_MPPE or len(o.value) != 4 or self._want is None:
                continue
            bits = struct.unpack("!I", o.value)[0]
            common = _key_lengths(bits) & self._allowed
            if not common:
                self._fail(f"MPPE: no common key length (peer offers "
                           f"{describe_mppe(bits)})")
                return True
            stateless = bool(bits & MPPE_H)
            if not stateless and not self._accept_stateful:
                self._fail("MPPE: peer insists on stateful mode (mppe_stateful is off)")
                return True
            self._want = (MPPE_H if stateless else 0) | KEY_BITS[max(common)]
        return True

    def reject_received(self, options: list[Option], now: float) -> bool:
        if any(o.type == OPT_MPPE for o in options):
            if self._want is not None and not self._want & MPPE_H and not self._stateful_refused:
                # A peer refusing stateful mode may reject the whole option (pppd's ccp_reqci
                # does, though with require-mppe it also ends the link): ask again, stateless.
                self._stateful_refused = True
                self._want |= MPPE_H
                self.counters["mppe_stateful_rejected"] += 1
                return True
            self._want = None
            if self.config.mppe_required:
                self._fail("MPPE required but the peer rejected it")
        return True

    # ---- the peer's request -------------------------------------------------------------

    def check_request(self, options: list[Option], now: float) -> list[OptionVerdict]:
        out: list[OptionVerdict] = []
        seen = False
        for o in options:
            if o.type == OPT_MPPE and len(o.value) == 4 and self._allowed and not seen:
                seen = True
                bits = struct.unpack("!I", o.value)[0]
                want = self._desired(bits)
                if bits & MPPE_H and not want & MPPE_H:
                    self._stateful_naks_left -= 1
                out.append(ack(o) if bits == want else nak(o, mppe_option(want)))
            else:
                out.append(reject(o))    # Deflate, BSD-Compress, Predictor, MPPC-only, ...
        if not seen and self._allowed and self.config.mppe_required:
            # Ask the peer to add MPPE (RFC 1661 §5.3); after Max-Failure we give up asking
            # and up_failure() reports it.
            out.append(nak(None, mppe_option(self._desired(0))))
        return out

    def request_acked(self, options: list[Option]) -> None:
        self._peer_bits = next((struct.unpack("!I", o.value)[0] for o in options
                                if o.type == OPT_MPPE), None)

    def up_failure(self) -> str | None:
        ours, theirs = self._acked_bits, self._peer_bits
        if ours is None and theirs is None:
            if self.config.mppe_required:
                self._fail("MPPE required but not negotiated")
                return "MPPE required but not negotiated"
            return None
        # The mode (H) may differ by direction; the key length may not: one MS-CHAP master
        # key yields both start keys at the one length (RFC 3079 §3).
        if ours is None or theirs is None or _key_lengths(ours) != _key_lengths(theirs):
            reason = (f"MPPE differs by direction: we receive {describe_mppe(ours or 0)}, "
                      f"we send {describe_mppe(theirs or 0)}")
            self._fail(reason)
            return reason
        return None

    def result(self) -> CcpResult:
        rx, tx = self._acked_bits or 0, self._peer_bits or 0
        keys = _key_lengths(rx)
        if not keys:
            return CcpResult(0)
        return CcpResult(max(keys), tx_stateless=bool(tx & MPPE_H),
                         rx_stateless=bool(rx & MPPE_H))

    def this_layer_up(self, now: float) -> None:
        self._failed = False

    def this_layer_down(self, now: float) -> None:
        self._reset_id = self._reset_deadline = None
        if self.config.mppe_required and self._acked_bits and not self._admin_stop:
            self._fail("MPPE disabled: CCP went down")

    def _a_tlf(self, rest: tuple[str, ...]) -> None:
        super()._a_tlf(rest)
        if self.config.mppe_required and self._allowed and not self._admin_stop:
            self._fail(f"MPPE required but CCP finished: {self._reason or 'closed'}")

    # ---- Reset-Request / Reset-Ack ------------------------------------------------------

    def handle_code(self, pkt: Packet, now: float) -> bool:
        if pkt.code == Code.RESET_REQUEST:
            if self.state is State.Opened:
                self.emit(ResetRequested(pkt.identifier))
                self.send_packet(Code.RESET_ACK, b"", pkt.identifier)
            else:
                self._drop("wrong_state", "Reset-Request outside Opened")
            return True
        if pkt.code == Code.RESET_ACK:
            if self.state is State.Opened and pkt.identifier == self._reset_id:
                self._reset_id = None
                self._reset_deadline = None
                self.emit(ResetAcked(pkt.identifier))
            else:
                self._drop("bad_reply", "unexpected Reset-Ack")
            return True
        return False

    def send_reset_request(self, now: float) -> None:
        """Ask the peer to reset its MPPE sender (stateful MPPE lost sync, RFC 3078 §7.1)."""
        self._now = now
        if self.state is not State.Opened:
            self.counters["reset_request_suppressed"] += 1
            return
        if self._reset_id is not None:
            return                       # one outstanding Reset-Request at a time
        self._reset_id = self.send_packet(Code.RESET_REQUEST, b"")
        self._reset_tries = 1
        self._reset_deadline = now + RESET_ACK_TIMEOUT

    def _extra_deadline(self) -> float | None:
        return self._reset_deadline

    def _extra_timer(self, now: float) -> None:
        # Like pppd (RACKTIMEOUT): resend an unanswered Reset-Request, same Identifier,
        # at most Max-Configure times.
        if self._reset_deadline is None or now < self._reset_deadline:
            return
        self._reset_deadline = None
        if self.state is not State.Opened or self._reset_id is None:
            self._reset_id = None
            return
        if self._reset_tries >= self.config.max_configure:
            self._reset_id = None
            return
        self.send_packet(Code.RESET_REQUEST, b"", self._reset_id)
        self._reset_tries += 1
        self._reset_deadline = now + RESET_ACK_TIMEOUT
