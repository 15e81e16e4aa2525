"""CHAP (RFC 1994) with MD5, MS-CHAPv1 (RFC 2433) and MS-CHAPv2 (RFC 2759), both roles.

Wire format (RFC 1994 §4), protocol 0xC223::

    Challenge/Response   Code=1/2 | Identifier | Length(2) | Value-Size(1) | Value | Name
    Success/Failure      Code=3/4 | Identifier | Length(2) | Message

Value per algorithm (the LCP Authentication-Protocol option's algorithm octet):

=========  =====  ===================================  =================================
algorithm  octet  Challenge Value                      Response Value
=========  =====  ===================================  =================================
MD5        0x05   16 random octets                     MD5(Identifier | secret | Challenge)
MS-CHAP    0x80   8 octets (RFC 2433 §3)               LM-Resp 24 | NT-Resp 24 | UseNT 1 = 49
MS-CHAPv2  0x81   16 octets (RFC 2759 §3)              Peer-Challenge 16 | Reserved 8 (0) |
                                                       NT-Response 24 | Flags 1 (0) = 49
=========  =====  ===================================  =================================

Theory of operation
  1. The authenticator picks a random Identifier and Challenge, sends Challenge and
     retransmits it (same Identifier and Value) every ``restart`` s, at most
     ``max_transmits`` times (pppd ``chap-restart``/``chap-max-challenge``).
  2. The peer answers every Challenge with a Response carrying its user name; a
     retransmitted Challenge gets the same Response (same MS-CHAPv2 Peer-Challenge).
  3. The authenticator hands Name, Challenge and Response to its verifier (the local one
     looks the Name up in the backend and compares; an external one -- RADIUS -- answers
     later, see ``ppp/auth/base.py``).  Success carries
     pppd's message ("Access granted"; MS-CHAPv2 ``S=<40 hex> M=Access granted``), Failure
     "Access denied" (MD5) or the MS format ``E=691 R=r C=<challenge hex> V=v [M=...]``
     (RFC 2433 §5 / RFC 2759 §6).  A Response repeated after the verdict gets the same
     verdict again (RFC 1994 §4.2: the Success may have been lost).
  4. MS-CHAP with retries (``retries`` > 0, R=1): the Failure carries a fresh challenge in
     C=, and the peer's next Response, Identifier = Failure's + 1, is checked against it.
  5. The MS-CHAPv2 peer checks the authenticator response S= (RFC 2759 §8.8); a wrong or
     missing S= fails authentication (mutual authentication).  ``S=...M=...`` without the
     space (Windows Server 2019) is accepted.

Results carry the MPPE start keys (RFC 3079), already derived: the authenticator takes
them from its verifier (the local one computes them from the secret the backend returned;
RADIUS sends MS-MPPE-Send/Recv-Key), the peer computes them from its password -- no one has
to keep the password afterwards.
"""
from __future__ import annotations

import dataclasses
import enum
import random
import re
import struct

from fastpptp.crypto import mschap
from fastpptp.ppp.auth.base import (
    AuthBackend, AuthResult, AuthTimers, AuthDecodeError, AuthUsageError, Role, SyncVerifier,
    VerifyRequest, VerifyResult, _Machine,
)
from fastpptp.ppp.auth.local import MSCHAP_RESPONSE_LEN, LocalVerifier, chap_md5_response
from fastpptp.ppp.constants import CHAP_ALGORITHM, AuthMethod, Protocol

SUCCESS_MESSAGE = "Access granted"       # pppd chap-md5.c / chap_ms.c
FAILURE_MESSAGE = "Access denied"
ERROR_AUTHENTICATION_FAILURE = 691       # RFC 2759 §6 / RFC 2433 §5
MSCHAPV2_FAILURE_VERSION = 3             # RFC 2759 §6: V=3 for MS-CHAPv2
MSCHAPV1_FAILURE_VERSION = 0             # pppd's value for MS-CHAPv1 ("no password change")
CHALLENGE_LEN = {AuthMethod.CHAP_MD5: 16, AuthMethod.MSCHAP_V1: 8, AuthMethod.MSCHAP_V2: 16}
CHAP_METHODS = tuple(CHALLENGE_LEN)


class ChapCode(enum.IntEnum):
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


@dataclasses.dataclass(frozen=True)
class ChapValuePacket:
    """A Challenge or a Response."""

    code: ChapCode
    identifier: int
    value: bytes
    name: bytes = b""

    def encode(self) -> bytes:
        if not 0 < len(self.value) <= 255:
            raise AuthUsageError("CHAP Value-Size must be 1..255")
        length = 5 + len(self.value) + len(self.name)
        if length > 0xFFFF:
            raise AuthUsageError("CHAP packet too long")
        return (struct.pack("!BBHB", self.code, self.identifier, length, len(self.value))
                + self.value + self.name)


@dataclasses.dataclass(frozen=True)
class ChapStatusPacket:
    """A Success or a Failure."""

    code: ChapCode
    identifier: int
    message: bytes = b""

    def encode(self) -> bytes:
        return struct.pack("!BBH", self.code, self.identifier, 4 + len(self.message)) \
            + self.message


def decode_chap(payload: bytes) -> ChapValuePacket | ChapStatusPacket:
    """Decode a CHAP packet; octets after Length are padding and ignored (RFC 1661 §5)."""
    if len(payload) < 4:
        raise AuthDecodeError(f"CHAP packet of {len(payload)} octets is shorter than its header")
    code, ident, length = struct.unpack_from("!BBH", payload)
    if length < 4 or length > len(payload):
        raise AuthDecodeError(f"CHAP Length {length} does not fit the {len(payload)}-octet packet")
    body = bytes(payload[4:length])
    if code in (ChapCode.CHALLENGE, ChapCode.RESPONSE):
        if not body:
            raise AuthDecodeError("CHAP Challenge/Response without Value-Size")
        size = body[0]
        if size == 0 or 1 + size > len(body):
            raise AuthDecodeError(f"CHAP Value-Size {size} does not fit the packet")
        return ChapValuePacket(ChapCode(code), ident, body[1:1 + size], body[1 + size:])
    if code in (ChapCode.SUCCESS, ChapCode.FAILURE):
        return ChapStatusPacket(ChapCode(code), ident, body)
    raise AuthDecodeError(f"unknown CHAP code {code}")


# --------------------------------------------------------------------------- MS messages

_HEX40 = re.compile(r"S=([0-9A-Fa-f]{40})")


def parse_mschapv2_success(message: str) -> tuple[str | None, str]:
    """Split an MS-CHAPv2 Success message into (``"S=<40 hex>"`` or None, M= text).

    Accepts ``S=... M=text`` (RFC 2759 §5), ``S=...M=text`` (Windows Server 2019, no space)
    and a bare ``S=...`` (pppd when the peer set the Flags octet)."""
    m = _HEX40.match(message)
    if m is None:
        return None, message
    rest = message[m.end():].lstrip(" ")
    text = rest[2:] if rest.startswith("M=") else rest
    return m.group(0), text


@dataclasses.dataclass(frozen=True)
class MsFailure:
    """The fields of an MS-CHAP Failure message ``E=e R=r C=c V=v M=text``."""

    error: int | None = None
    retry: bool = False
    challenge: bytes | None = None
    version: int | None = None
    text: str = ""

    def encode(self) -> str:
        parts = []
        if self.error is not None:
            parts.append(f"E={self.error}")
        parts.append(f"R={1 if self.retry else 0}")
        if self.challenge is not None:
            parts.append("C=" + self.challenge.hex().upper())
        if self.version is not None:
            parts.append(f"V={self.version}")
        if self.text:
            parts.append("M=" + self.text)
        return " ".join(parts)


_MS_FIELD = re.compile(r"\s*([ERCVM])=")


def parse_ms_failure(message: str) -> MsFailure:
    """Parse an MS-CHAP Failure message leniently (unknown or bad fields are skipped)."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(message):
        m = _MS_FIELD.match(message, pos)
        if m is None:
            break
        key = m.group(1)
        if key == "M":                       # M= runs to the end of the message
            fields["M"] = message[m.end():]
            break
        end = message.find(" ", m.end())
        end = len(message) if end < 0 else end
        fields[key] = message[m.end():end]
        pos = end
    error = int(fields["E"]) if fields.get("E", "").isdigit() else None
    version = int(fields["V"]) if fields.get("V", "").isdigit() else None
    try:
        challenge = bytes.fromhex(fields["C"]) if "C" in fields else None
    except ValueError:
        challenge = None
    return MsFailure(error, fields.get("R") == "1", challenge, version, fields.get("M", ""))


# --------------------------------------------------------------------------- algorithms

def mschapv1_response_value(challenge: bytes, password: str) -> bytes:
    """RFC 2433 §4 Response Value, pppd style: LM response zeroed, UseNT flag = 1."""
    return bytes(24) + mschap.nt_challenge_response(challenge, password) + b"\x01"


def mschapv2_response_value(auth_challenge: bytes, peer_challenge: bytes, user: bytes,
                            password: str) -> bytes:
    """RFC 2759 §4 Response Value: Peer-Challenge | 8 x 00 | NT-Response | Flags 00."""
    nt = mschap.generate_nt_response(auth_challenge, peer_challenge, user, password)
    return peer_challenge + bytes(8) + nt + b"\x00"


def _mppe_keys_v2(password: str, nt_response: bytes, is_server: bool) -> tuple[bytes, bytes]:
    return mschap.mppe_keys_mschapv2(password, nt_response, is_server, 16)


def _mppe_key_v1(password: str, challenge: bytes) -> bytes:
    return mschap.mppe_keys_mschapv1(password, challenge, 16)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


@dataclasses.dataclass(frozen=True)
class ChapResult(AuthResult):
    """AuthResult plus the RFC 3079 MPPE start keys (16 octets; shorter keys are their
    prefixes) for *our* side: ``mppe_send_key`` is what we encrypt with."""

    mppe_send_key: bytes = dataclasses.field(default=b"", repr=False)
    mppe_recv_key: bytes = dataclasses.field(default=b"", repr=False)

    def __repr__(self) -> str:
        return super().__repr__().replace("AuthResult(", "ChapResult(", 1)


def _check_method(method: AuthMethod) -> None:
    if method not in CHAP_METHODS:
        raise AuthUsageError(f"{method} is not a CHAP algorithm")


# --------------------------------------------------------------------------- authenticator

class ChapAuthenticator(_Machine):
    """The side that challenges (the server, usually).

    ``backend``: the secrets the peer's Response is checked against (through a
    :class:`~fastpptp.ppp.auth.local.LocalVerifier`), or ``verifier``: any synchronous
    verifier; with neither, verification is external: :class:`VerifyRequest` comes out of
    ``next_event()`` and the verdict goes back in through :meth:`verified`.
    """

    protocol = Protocol.CHAP
    role = Role.AUTHENTICATOR

    def __init__(self, method: AuthMethod, backend: AuthBackend | None, rng: random.Random,
                 name: str = "",
                 timers: AuthTimers | None = None, retries: int = 0, *,
                 verifier: SyncVerifier | None = None) -> None:
        _check_method(method)
        super().__init__(timers)
        self.method = method
        self.algorithm = CHAP_ALGORITHM[method]
        self.backend = backend
        self.verifier: SyncVerifier | None = (
            verifier if verifier is not None
            else LocalVerifier(backend) if backend is not None else None)
        self.rng = rng
        self.name = name
        self.retries = retries if method in (AuthMethod.MSCHAP_V1, AuthMethod.MSCHAP_V2) else 0
        self.identifier = 0
        self.challenge = b""
        self._transmits = 0
        self._started = False
        self._awaiting = False          # a Challenge (or retry Failure) is outstanding
        self._verdict: bytes | None = None   # the last Success/Failure sent, for repeats
        self._verdict_id = -1

    def __repr__(self) -> str:
        return f"ChapAuthenticator({self.method.label}, finished={self.finished})"

    def start(self, now: float) -> None:
        if self._started:
            raise AuthUsageError("ChapAuthenticator already started")
        self._started = True
        self.identifier = self.rng.randrange(256)
        self.challenge = self.rng.randbytes(CHALLENGE_LEN[self.method])
        self._awaiting = True
        self._arm_wait(now)
        self._transmit(now)

    def _challenge_packet(self) -> bytes:
        return ChapValuePacket(ChapCode.CHALLENGE, self.identifier, self.challenge,
                               self.name.encode("utf-8")).encode()

    def _transmit(self, now: float) -> None:
        self._transmits += 1
        self._send(self._challenge_packet())
        self._deadline = now + self.timers.restart

    def handle_timer(self, now: float) -> None:
        if self.finished:
            return
        overdue = self._verify_timed_out(now)
        if overdue is not None:
            # the verifier did not answer: a Failure (no retry offered), then the event
            self._conclude(overdue, VerifyResult(
                False, reason=f"no verdict from the verifier in {self.timers.verify_timeout:g} s"), now, allow_retry=False)
            return
        if self._pending is not None:
            return
        if self._wait_deadline is not None and now >= self._wait_deadline:
            self._fail("", "peer did not complete CHAP in time")
            return
        if self._deadline is None or now < self._deadline:
            return
        if self._transmits >= self.timers.max_transmits:
            self._fail("", f"no {self.method.label} Response after "
                       f"{self._transmits} Challenges")
            return
        self._transmit(now)

    def receive(self, payload: bytes, now: float) -> None:
        try:
            pkt = decode_chap(payload)
        except AuthDecodeError:
            self.malformed += 1
            return
        if not isinstance(pkt, ChapValuePacket) or pkt.code != ChapCode.RESPONSE \
                or not self._started:
            self.discarded += 1
            return
        if self._pending is not None:
            # A verdict is pending: the peer's retransmitted Response is not verified twice
            # (it gets the verdict when that comes); any other is stale.
            if pkt.identifier == self._pending.identifier:
                self.ignored_while_pending += 1
            else:
                self.discarded += 1
            return
        if not self._awaiting:
            # RFC 1994 §4.2: a repeated Response (our verdict was lost) gets it again.
            if self._verdict is not None and pkt.identifier == self._verdict_id:
                self._send(self._verdict)
            else:
                self.discarded += 1
            return
        if pkt.identifier != self.identifier:
            self.discarded += 1                 # stale Response to an earlier Challenge
            return
        if self.method is not AuthMethod.CHAP_MD5 and len(pkt.value) != MSCHAP_RESPONSE_LEN:
            self.malformed += 1                 # RFC 2433/2759: Value-Size must be 49
            return
        request = VerifyRequest(self.method, _text(pkt.name), pkt.identifier, self.challenge,
                                pkt.value, server_name=self.name or "*", name=pkt.name)
        if self.verifier is not None:
            self._conclude(request, self.verifier.verify(request), now)
        else:
            self._await_verdict(request, now)

    def verified(self, request: VerifyRequest, result: VerifyResult, now: float) -> None:
        """The external verifier's verdict on ``request``; dropped (``late_verdicts``) unless
        ``request`` is the pending one."""
        if self._take_verdict(request):
            self._conclude(request, result, now)

    # -- the verdict on the wire
    def _success_message(self, request: VerifyRequest, result: VerifyResult) -> str | None:
        """The Success message text, or None when an accepting verdict cannot be used."""
        if self.method is not AuthMethod.MSCHAP_V2:
            return result.message or SUCCESS_MESSAGE
        s, text = parse_mschapv2_success(result.authenticator_response)
        if s is None:
            return None
        # pppd chap_ms.c: no M= when the peer set the Flags octet.
        if request.response[48]:
            return s
        return f"{s} M={text or result.message or SUCCESS_MESSAGE}"

    def _conclude(self, request: VerifyRequest, result: VerifyResult, now: float,
                  allow_retry: bool = True) -> None:
        user = result.user or request.user
        ident = request.identifier
        message = self._success_message(request, result) if result.accepted else None
        if result.accepted and message is None:
            result = VerifyResult(False, user, "the verifier accepted MS-CHAPv2 without an "
                                  "authenticator response (S=)")
        if result.accepted and message is not None:
            nt = request.response[24:48] if self.method is not AuthMethod.CHAP_MD5 else b""
            peer_challenge = (request.response[:16] if self.method is AuthMethod.MSCHAP_V2
                              else b"")
            self._verdict = ChapStatusPacket(ChapCode.SUCCESS, ident,
                                             message.encode("utf-8")).encode()
            self._verdict_id = ident
            self._awaiting = False
            self._send(self._verdict)
            self._succeed(ChapResult(self.method, user, message, request.challenge,
                                     peer_challenge, nt, attributes=result.attributes,
                                     mppe_send_key=result.mppe_send_key,
                                     mppe_recv_key=result.mppe_recv_key))
            return
        reason = result.reason or f"{self.method.label} login rejected by the verifier"
        retry = allow_retry and self.retries > 0
        new_challenge = self.challenge
        if self.method is AuthMethod.CHAP_MD5:
            message = result.failure_message or FAILURE_MESSAGE
        else:
            if retry:
                new_challenge = self.rng.randbytes(CHALLENGE_LEN[self.method])
            version = (MSCHAPV2_FAILURE_VERSION if self.method is AuthMethod.MSCHAP_V2
                       else MSCHAPV1_FAILURE_VERSION)
            text = FAILURE_MESSAGE if self.method is AuthMethod.MSCHAP_V2 else ""
            error = ERROR_AUTHENTICATION_FAILURE
            if result.failure_message:
                # the verifier's MS-CHAP-Error: its error code and text; R=, C=, V= are ours
                theirs = parse_ms_failure(result.failure_message)
                error = theirs.error if theirs.error is not None else error
                text = theirs.text
            message = MsFailure(error, retry, new_challenge, version, text).encode()
        failure = ChapStatusPacket(ChapCode.FAILURE, ident, message.encode("utf-8")).encode()
        self._send(failure)
        if retry:
            # RFC 2759 §6 / RFC 2433 §5: the retried Response uses the new challenge and
            # the Failure's Identifier + 1.  We wait for it; we do not retransmit.
            self.retries -= 1
            self.challenge = new_challenge
            self.identifier = (ident + 1) & 0xFF
            self._deadline = None
            self._arm_wait(now)
            return
        self._verdict, self._verdict_id = failure, ident
        self._awaiting = False
        self._fail(user, reason, message)


# --------------------------------------------------------------------------- peer

class ChapPeer(_Machine):
    """The side that answers Challenges (the client, usually)."""

    protocol = Protocol.CHAP
    role = Role.PEER

    def __init__(self, method: AuthMethod, user: str, password: str,
                 rng: random.Random, timers: AuthTimers | None = None) -> None:
        _check_method(method)
        super().__init__(timers)
        self.method = method
        self.user = user
        self._password = password
        self.rng = rng
        self._started = False
        self._last: tuple[int, bytes, bytes, bytes] | None = None  # id, challenge, peer ch, nt
        self._last_response: bytes | None = None

    def __repr__(self) -> str:
        return f"ChapPeer({self.method.label}, user={self.user!r}, finished={self.finished})"

    def start(self, now: float) -> None:
        if self._started:
            raise AuthUsageError("ChapPeer already started")
        self._started = True
        self._arm_wait(now)

    def handle_timer(self, now: float) -> None:
        if (not self.finished and self._wait_deadline is not None
                and now >= self._wait_deadline):
            self._fail(self.user, f"authenticator did not complete {self.method.label} "
                       "in time")

    def receive(self, payload: bytes, now: float) -> None:
        try:
            pkt = decode_chap(payload)
        except AuthDecodeError:
            self.malformed += 1
            return
        if not self._started:
            self.discarded += 1
            return
        if isinstance(pkt, ChapValuePacket):
            if pkt.code == ChapCode.CHALLENGE:
                self._on_challenge(pkt)
            else:
                self.discarded += 1
            return
        if self._last is None or pkt.identifier != self._last[0]:
            self.discarded += 1
            return
        if pkt.code == ChapCode.SUCCESS:
            self._on_success(_text(pkt.message), self._last)
        else:
            self._on_failure(_text(pkt.message))

    def _on_challenge(self, pkt: ChapValuePacket) -> None:
        if (self._last is not None and self._last_response is not None
                and self._last[0] == pkt.identifier and self._last[1] == pkt.value):
            self._send(self._last_response)     # retransmitted Challenge: same Response
            return
        want = CHALLENGE_LEN[self.method] if self.method is not AuthMethod.CHAP_MD5 else None
        if want is not None and len(pkt.value) != want:
            self.malformed += 1
            return
        name = self.user.encode("utf-8")
        peer_challenge = nt = b""
        if self.method is AuthMethod.CHAP_MD5:
            value = chap_md5_response(pkt.identifier, self._password.encode("utf-8"),
                                      pkt.value)
        elif self.method is AuthMethod.MSCHAP_V1:
            value = mschapv1_response_value(pkt.value, self._password)
            nt = value[24:48]
        else:
            peer_challenge = self.rng.randbytes(16)
            value = mschapv2_response_value(pkt.value, peer_challenge, name, self._password)
            nt = value[24:48]
        self._last = (pkt.identifier, pkt.value, peer_challenge, nt)
        self._last_response = ChapValuePacket(ChapCode.RESPONSE, pkt.identifier, value,
                                              name).encode()
        self._send(self._last_response)
        if self.finished and self.succeeded:
            # RFC 1994 §4: re-challenge while up -- the new verdict counts again.
            self.finished = self.succeeded = False

    def _on_success(self, message: str, last: tuple[int, bytes, bytes, bytes]) -> None:
        if self.finished:
            return                              # repeated Success
        ident, challenge, peer_challenge, nt = last
        if self.method is AuthMethod.MSCHAP_V2:
            s, text = parse_mschapv2_success(message)
            if s is None:
                self._fail(self.user, "MS-CHAPv2 Success without authenticator response",
                           message)
                return
            if not mschap.check_authenticator_response(
                    self._password, nt, peer_challenge, challenge,
                    self.user.encode("utf-8"), s):
                self._fail(self.user, "MS-CHAPv2 authenticator response mismatch: the "
                           "server does not know our password", message)
                return
            send, recv = _mppe_keys_v2(self._password, nt, is_server=False)
            self._succeed(ChapResult(self.method, self.user, text, challenge, peer_challenge,
                                     nt, mschap.nt_password_hash(self._password),
                                     mppe_send_key=send, mppe_recv_key=recv))
        elif self.method is AuthMethod.MSCHAP_V1:
            key = _mppe_key_v1(self._password, challenge)
            self._succeed(ChapResult(self.method, self.user, message, challenge, b"", nt,
                                     mschap.nt_password_hash(self._password),
                                     mppe_send_key=key, mppe_recv_key=key))
        else:
            self._succeed(ChapResult(self.method, self.user, message, challenge))

    def _on_failure(self, message: str) -> None:
        if self.finished and not self.succeeded:
            return                              # repeated Failure
        self.finished = self.succeeded = False  # a failed re-challenge ends the link too
        if self.method is AuthMethod.CHAP_MD5:
            reason = f"CHAP authentication rejected by the peer: {message!r}"
        else:
            f = parse_ms_failure(message)
            code = f"E={f.error}" if f.error is not None else "no error code"
            reason = (f"{self.method.label} authentication rejected by the peer ({code}"
                      f"{', ' + f.text if f.text else ''})")
        self._fail(self.user, reason, message)
