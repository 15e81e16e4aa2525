"""PAP, the Password Authentication Protocol (RFC 1334 §2), both roles, sans-I/O.

Wire format (RFC 1334 §2.2), protocol 0xC023::

    Authenticate-Request  Code=1 | Identifier | Length(2) | Peer-ID Length(1) | Peer-ID
                          | Passwd-Length(1) | Password
    Authenticate-Ack/Nak  Code=2/3 | Identifier | Length(2) | Msg-Length(1) | Message

Theory of operation: the *peer* sends Authenticate-Request and retransmits it every
``restart`` seconds (RFC 1334 §2.1: the authenticator never retransmits) until an Ack or
Nak with the same Identifier arrives or ``max_transmits`` is reached.  The *authenticator*
waits (bounded by ``wait``) for a request, has its verifier check it (the local one asks
the backend; an external one answers later, see ``ppp/auth/base.py``) and answers Ack
"Login ok" or Nak "Login incorrect" -- pppd's texts.  A retransmitted request for which we
already answered is answered again with the same verdict (the Ack may have been lost).
"""
from __future__ import annotations

import dataclasses
import enum
import random
import struct

from fastpptp.ppp.auth.base import (
    AuthBackend, AuthResult, AuthTimers, AuthDecodeError, AuthUsageError, Role, SyncVerifier,
    VerifyRequest, VerifyResult, _Machine,
)
from fastpptp.ppp.auth.local import LocalVerifier
from fastpptp.ppp.constants import AuthMethod, Protocol

PAP_ACK_MESSAGE = "Login ok"            # pppd upap.c
PAP_NAK_MESSAGE = "Login incorrect"


class PapCode(enum.IntEnum):
    AUTHENTICATE_REQUEST = 1
    AUTHENTICATE_ACK = 2
    AUTHENTICATE_NAK = 3


@dataclasses.dataclass(frozen=True)
class PapRequest:
    identifier: int
    peer_id: bytes
    password: bytes = dataclasses.field(repr=False)

    def encode(self) -> bytes:
        if len(self.peer_id) > 255 or len(self.password) > 255:
            raise AuthUsageError("PAP Peer-ID and Password are at most 255 octets")
        body = (bytes([len(self.peer_id)]) + self.peer_id
                + bytes([len(self.password)]) + self.password)
        return struct.pack("!BBH", PapCode.AUTHENTICATE_REQUEST, self.identifier,
                           4 + len(body)) + body


@dataclasses.dataclass(frozen=True)
class PapReply:
    code: PapCode         # AUTHENTICATE_ACK or AUTHENTICATE_NAK
    identifier: int
    message: bytes = b""

    def encode(self) -> bytes:
        msg = self.message[:255]
        return struct.pack("!BBHB", self.code, self.identifier, 5 + len(msg), len(msg)) + msg


def decode_pap(payload: bytes) -> PapRequest | PapReply:
    """Decode one PAP packet; octets beyond Length are padding (RFC 1661 §5) and ignored."""
    if len(payload) < 4:
        raise AuthDecodeError(f"PAP packet of {len(payload)} octets is shorter than its header")
    code, ident, length = struct.unpack_from("!BBH", payload)
    if length < 4 or length > len(payload):
        raise AuthDecodeError(f"PAP Length {length} does not fit the {len(payload)}-octet packet")
    body = payload[4:length]
    if code == PapCode.AUTHENTICATE_REQUEST:
        if not body:
            raise AuthDecodeError("PAP Authenticate-Request without Peer-ID Length")
        n = body[0]
        if 1 + n + 1 > len(body):
            raise AuthDecodeError("PAP Peer-ID Length overruns the packet")
        peer_id = body[1:1 + n]
        m = body[1 + n]
        if 2 + n + m > len(body):
            raise AuthDecodeError("PAP Passwd-Length overruns the packet")
        return PapRequest(ident, bytes(peer_id), bytes(body[2 + n:2 + n + m]))
    if code in (PapCode.AUTHENTICATE_ACK, PapCode.AUTHENTICATE_NAK):
        if not body:
            # RFC 1334 requires Msg-Length; some peers omit it -- accept an empty message.
            return PapReply(PapCode(code), ident, b"")
        m = body[0]
        if 1 + m > len(body):
            raise AuthDecodeError("PAP Msg-Length overruns the packet")
        return PapReply(PapCode(code), ident, bytes(body[1:1 + m]))
    raise AuthDecodeError(f"unknown PAP code {code}")


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


class PapPeer(_Machine):
    """The side that authenticates itself with PAP (the client, usually)."""

    protocol = Protocol.PAP
    method = AuthMethod.PAP
    role = Role.PEER

    def __init__(self, user: str, password: str, rng: random.Random,
                 timers: AuthTimers | None = None) -> None:
        super().__init__(timers)
        self.user = user
        self._password = password.encode("utf-8")
        self._identifier = rng.randrange(256)
        self._transmits = 0
        self._started = False

    def __repr__(self) -> str:
        return f"PapPeer(user={self.user!r}, finished={self.finished})"

    def start(self, now: float) -> None:
        if self._started:
            raise AuthUsageError("PapPeer already started")
        self._started = True
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        self._transmits += 1
        self._send(PapRequest(self._identifier, self.user.encode("utf-8"),
                              self._password).encode())
        self._deadline = now + self.timers.restart

    def handle_timer(self, now: float) -> None:
        if self.finished or self._deadline is None or now < self._deadline:
            return
        if self._transmits >= self.timers.max_transmits:
            self._fail(self.user, "no response to PAP Authenticate-Request")
            return
        self._transmit(now)

    def receive(self, payload: bytes, now: float) -> None:
        try:
            pkt = decode_pap(payload)
        except AuthDecodeError:
            self.malformed += 1
            return
        if (not isinstance(pkt, PapReply) or pkt.identifier != self._identifier
                or not self._started or self.finished):
            self.discarded += 1
            return
        if pkt.code == PapCode.AUTHENTICATE_ACK:
            self._succeed(AuthResult(AuthMethod.PAP, self.user, _text(pkt.message)))
        else:
            self._fail(self.user, "PAP authentication rejected by the peer", _text(pkt.message))


class PapAuthenticator(_Machine):
    """The side that checks a PAP password (the server, usually).

    ``backend`` / ``verifier`` / neither (external verification): as
    :class:`~fastpptp.ppp.auth.chap.ChapAuthenticator`."""

    protocol = Protocol.PAP
    method = AuthMethod.PAP
    role = Role.AUTHENTICATOR

    def __init__(self, backend: AuthBackend | None, rng: random.Random | None = None,
                 timers: AuthTimers | None = None, server_name: str = "*", *,
                 verifier: SyncVerifier | None = None) -> None:
        super().__init__(timers)
        self.backend = backend
        self.verifier: SyncVerifier | None = (
            verifier if verifier is not None
            else LocalVerifier(backend) if backend is not None else None)
        self.server_name = server_name
        self._answered: tuple[int, PapReply] | None = None
        self._started = False

    def start(self, now: float) -> None:
        if self._started:
            raise AuthUsageError("PapAuthenticator already started")
        self._started = True
        self._arm_wait(now)

    def handle_timer(self, now: float) -> None:
        if self.finished:
            return
        overdue = self._verify_timed_out(now)
        if overdue is not None:
            self._conclude(overdue, VerifyResult(
                False, reason=f"no verdict from the verifier in {self.timers.verify_timeout:g} s"))
        elif (self._pending is None and self._wait_deadline is not None
                and now >= self._wait_deadline):
            self._fail("", "peer did not send a PAP Authenticate-Request in time")

    def receive(self, payload: bytes, now: float) -> None:
        try:
            pkt = decode_pap(payload)
        except AuthDecodeError:
            self.malformed += 1
            return
        if not isinstance(pkt, PapRequest) or not self._started:
            self.discarded += 1
            return
        if self._pending is not None:
            # the peer retransmits every `restart` s: verified once, answered with the verdict
            self.ignored_while_pending += 1
            return
        if self._answered is not None:
            ident, reply = self._answered
            # RFC 1334 §2.2.1 / pppd: a retransmitted request gets the same answer again.
            if ident == pkt.identifier or self.succeeded:
                self._send(PapReply(reply.code, pkt.identifier, reply.message).encode())
            else:
                self.discarded += 1
            return
        request = VerifyRequest(AuthMethod.PAP, _text(pkt.peer_id), pkt.identifier,
                                password=pkt.password, server_name=self.server_name,
                                name=pkt.peer_id)
        if self.verifier is not None:
            self._conclude(request, self.verifier.verify(request))
        else:
            self._await_verdict(request, now)

    def verified(self, request: VerifyRequest, result: VerifyResult, now: float) -> None:
        """The external verifier's verdict on ``request``; dropped (``late_verdicts``) unless
        ``request`` is the pending one."""
        if self._take_verdict(request):
            self._conclude(request, result)

    def _conclude(self, request: VerifyRequest, result: VerifyResult) -> None:
        user = result.user or request.user
        if result.accepted:
            text = result.message or PAP_ACK_MESSAGE
            reply = PapReply(PapCode.AUTHENTICATE_ACK, request.identifier, text.encode("utf-8"))
        else:
            text = result.failure_message or PAP_NAK_MESSAGE
            reply = PapReply(PapCode.AUTHENTICATE_NAK, request.identifier, text.encode("utf-8"))
        self._answered = (request.identifier, reply)
        self._send(reply.encode())
        if result.accepted:
            self._succeed(AuthResult(AuthMethod.PAP, user, text, attributes=result.attributes))
        else:
            self._fail(user, result.reason or "PAP login rejected by the verifier", text)
