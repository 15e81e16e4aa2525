"""Shared pieces of the PPP authentication protocols (PAP, CHAP, MS-CHAP v1/v2).

Theory of operation
-------------------
Each authentication protocol is a small sans-I/O machine in one of two roles:

* the *authenticator* (RFC 1994 wording; RFC 1334 says "authenticator" too) demands proof
  from the peer and checks it against an :class:`AuthBackend`;
* the *peer* proves who it is with its own user name and password.

Both take bytes and ``now`` and give back frames, events and one deadline, like every
other PPP protocol object in fastpptp (see docs/DESIGN.md "Sans-I/O protocol objects")::

    m.start(now)                         # authenticator: first Challenge; PAP peer: Auth-Request
    m.receive(payload, now)              # information field of PAP (0xC023) or CHAP (0xC223)
    m.frames_to_send() -> [(protocol, information field), ...]
    m.next_event() -> AuthSucceeded | AuthFailed | None
    m.get_timer() -> float | None;  m.handle_timer(now)

An authenticator does not look secrets up itself: it hands the peer's credentials to a
*verifier* as a :class:`VerifyRequest` and acts on the :class:`VerifyResult`:

* a synchronous verifier (:class:`SyncVerifier`; :class:`~fastpptp.ppp.auth.local.LocalVerifier`
  over an :class:`AuthBackend` -- chap-secrets, a callback) answers inside ``receive``;
* with no synchronous verifier the authenticator is *external*: ``next_event()`` gives the
  :class:`VerifyRequest` itself, the driver asks whoever it likes (RADIUS...) without
  blocking, and feeds the verdict back with ``verified(request, result, now)``.  While the
  verdict is pending the authenticator sends nothing, ignores repeated Responses/Requests
  (never verified twice), keeps its timers, and fails the login with a Failure/Nak when
  ``AuthTimers.verify_timeout`` passes; a verdict for another request (an old one, or after
  the machine ended) is dropped and counted in ``late_verdicts``.

A machine ends exactly once, with :class:`AuthSucceeded` or :class:`AuthFailed`; after
that it still answers retransmissions the RFCs ask it to answer (a repeated PAP
Authenticate-Request or CHAP Response gets the same Ack/Success again) but never emits
another event.  Malformed packets from the peer are counted in ``malformed`` and dropped
(RFC 1994 §4: "silently discarded"), never raised.

Secrets never appear in ``repr()``, exceptions or log text.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
from ipaddress import IPv4Address
from typing import Protocol as _TypingProtocol, runtime_checkable

from fastpptp.errors import DecodeError, LocalProtocolError, ProtocolError
from fastpptp.ppp.constants import AuthMethod
from fastpptp.shaping import RateLimit

log = logging.getLogger("fastpptp.ppp.auth")


# --------------------------------------------------------------------------- errors

# Subclasses of the one hierarchy (fastpptp.errors): `except DecodeError` around any codec,
# PPP or PPTP, catches ours too; `except AuthError` catches only the PAP/CHAP ones.

class AuthError(ProtocolError):
    """Base class of authentication errors."""


class AuthUsageError(AuthError, LocalProtocolError):
    """We misused the API (our bug): e.g. starting a machine twice."""


class AuthDecodeError(AuthError, DecodeError):
    """A PAP/CHAP packet could not be decoded (bad length, truncated field ...).  The peer's
    fault: the machines count these and drop the packet."""


# --------------------------------------------------------------------------- results/events

@dataclasses.dataclass(frozen=True)
class ReplyAttributes:
    """What a verifier may say about the session besides yes/no (RADIUS reply attributes).

    framed_ip: the peer's address; overrides the pool.  ``FRAMED_IP_FROM_POOL``
        (255.255.255.254) = take one from the pool (the same as None);
        ``FRAMED_IP_PEER_CHOOSES`` (255.255.255.255) = let the peer choose, if the link's
        policy allows it (``LinkConfig.peer_may_choose_address``), else the pool.
    session_timeout / idle_timeout: seconds (None: no limit); the server's session applies
        them.  rate_limit: a :class:`~fastpptp.shaping.RateLimit` (down = towards the peer,
        kbit/s, 0 = unlimited); stored on the session.  acct_interim_interval, framed_mtu, framed_routes, classes (RADIUS Class,
        echoed in accounting): stored for their consumers.  dns / nbns: name servers to
        hand out instead of the configured ones (RFC 1877).
    """

    framed_ip: IPv4Address | None = None
    session_timeout: int | None = None
    idle_timeout: int | None = None
    rate_limit: RateLimit | None = None
    acct_interim_interval: int | None = None
    framed_mtu: int | None = None
    framed_routes: tuple[str, ...] = ()
    classes: tuple[bytes, ...] = ()
    dns: tuple[IPv4Address, ...] = ()
    nbns: tuple[IPv4Address, ...] = ()


FRAMED_IP_FROM_POOL = IPv4Address("255.255.255.254")     # RFC 2865 §5.8
FRAMED_IP_PEER_CHOOSES = IPv4Address("255.255.255.255")
NO_REPLY_ATTRIBUTES = ReplyAttributes()


class Role(enum.Enum):
    AUTHENTICATOR = "authenticator"     # the side that demands proof (usually the server)
    PEER = "peer"                        # the side that proves (usually the client)


@dataclasses.dataclass(frozen=True)
class AuthResult:
    """What a successful authentication leaves behind.

    ``nt_response`` / ``challenge`` / ``peer_challenge`` / ``password_hash`` are set for
    MS-CHAP v1/v2 only: they are what RFC 3079 MPPE start-key derivation needs
    (``password_hash`` is the 16-octet NtPasswordHash, MD4 of the UTF-16LE password).
    """

    method: AuthMethod
    user: str
    message: str = ""
    challenge: bytes = b""           # the authenticator's challenge
    peer_challenge: bytes = b""      # MS-CHAPv2 only
    nt_response: bytes = b""         # MS-CHAP v1/v2: the 24-octet NT-Response
    password_hash: bytes = dataclasses.field(default=b"", repr=False)
    attributes: ReplyAttributes = NO_REPLY_ATTRIBUTES   # the verifier's reply attributes

    def __repr__(self) -> str:   # never show key material
        return (f"AuthResult(method={self.method.label}, user={self.user!r}, "
                f"message={self.message!r})")


@dataclasses.dataclass(frozen=True)
class AuthSucceeded:
    """The authentication in this machine's direction succeeded."""

    result: AuthResult

    @property
    def user(self) -> str:
        return self.result.user

    @property
    def method(self) -> AuthMethod:
        return self.result.method


@dataclasses.dataclass(frozen=True)
class AuthFailed:
    """The authentication failed; ``reason`` is for logs (never holds a secret),
    ``message`` is the Failure/Nak message text sent or received."""

    method: AuthMethod
    user: str
    reason: str
    message: str = ""


# --------------------------------------------------------------------------- verification



@dataclasses.dataclass(frozen=True, eq=False)
class VerifyRequest:
    """The peer's credentials, to be verified (an authenticator's action).

    method:     PAP, CHAP-MD5, MS-CHAPv1 or MS-CHAPv2.
    user:       the name the peer sent, verbatim (PAP Peer-ID, CHAP Name; may be DOMAIN\\user).
    identifier: the Identifier of the packet that carried the credentials (the verdict's).
    challenge:  CHAP: the Challenge Value we sent (16 / 8 / 16 octets); PAP: empty.
    response:   CHAP: the Response Value verbatim (MD5: 16 octets; MS-CHAP v1/v2: 49 --
                RADIUS MS-CHAP-Response / MS-CHAP2-Response take it with the Identifier
                and Flags); PAP: empty.
    password:   PAP only: the password octets the peer sent.
    server_name: our name (pppd ``name``), the server column of chap-secrets.
    name:       the Name / Peer-ID octets as sent (MS-CHAPv2 hashes them; ``user`` is their
                text, undecodable octets replaced).

    Compared by identity (``eq=False``): a verdict answers this very object.
    """

    method: AuthMethod
    user: str
    identifier: int
    challenge: bytes = b""
    response: bytes = b""
    password: bytes = dataclasses.field(default=b"", repr=False)
    server_name: str = "*"
    name: bytes = b""


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """A verifier's verdict on a :class:`VerifyRequest`.

    accepted:        the credentials are good.
    user:            the name to record (e.g. the bare name a DOMAIN\\user matched);
                     "" = the request's.
    reason:          for logs when rejected (never holds a secret).
    message:         the success text (PAP Ack, CHAP Success, MS-CHAPv2 M=); "" = ours.
    failure_message: the failure text: CHAP-MD5/PAP: sent verbatim; MS-CHAP v1/v2: an
                     MS-CHAP-Error ``E=691 R=0 ...`` whose E= and M= we send (R=, C=, V=
                     follow our retry policy and challenge); "" = ours (E=691).
    authenticator_response: MS-CHAPv2: the ``S=<40 hex>`` text (RADIUS MS-CHAP2-Success
                     without its Identifier octet), sent verbatim; required on success.
    mppe_send_key / mppe_recv_key: MS-CHAP v1/v2: the 16-octet RFC 3079 start keys, ours to
                     send / receive with (RADIUS MS-MPPE-Send-Key / -Recv-Key, the NAS's
                     directions); empty = no MPPE from this login.
    attributes:      reply attributes for the session.
    """

    accepted: bool
    user: str = ""
    reason: str = ""
    message: str = ""
    failure_message: str = ""
    authenticator_response: str = ""
    mppe_send_key: bytes = dataclasses.field(default=b"", repr=False)
    mppe_recv_key: bytes = dataclasses.field(default=b"", repr=False)
    attributes: ReplyAttributes = NO_REPLY_ATTRIBUTES


class SyncVerifier(_TypingProtocol):
    """A verifier that answers at once (inside ``receive``): local secrets."""

    def verify(self, request: VerifyRequest) -> VerifyResult: ...


AuthEvent = AuthSucceeded | AuthFailed | VerifyRequest


# --------------------------------------------------------------------------- backend

class AuthBackend(_TypingProtocol):
    """Where an authenticator gets secrets (and a peer its own, if it uses a file).

    ``get_secret`` returns the plaintext secret shared with ``user`` when talking to
    ``server_name`` (CHAP variants need it: they compute the expected response), or None
    when the user is unknown.  ``check_password`` is for PAP, where the peer sends the
    password itself.
    """

    def get_secret(self, user: str, server_name: str) -> str | None: ...

    def check_password(self, user: str, password: str, server_name: str = "*") -> bool: ...


@runtime_checkable
class StaticAddressBackend(AuthBackend, _TypingProtocol):
    """A backend that also knows per-user static tunnel addresses (chap-secrets' fourth
    column): ``static_address(user, server_name)`` -> address or None.  The link asks it
    for the peer's address when its config has no ``assign_address``."""

    def static_address(self, user: str, server_name: str = "*") -> str | None: ...


# --------------------------------------------------------------------------- timers

@dataclasses.dataclass(frozen=True)
class AuthTimers:
    """Retransmission and give-up timers, pppd's defaults.

    ``restart`` / ``max_transmits``: pppd ``chap-restart 3`` / ``chap-max-challenge 10``
    and ``pap-restart 3`` / ``pap-max-authreq 10``.  ``wait`` bounds how long a side waits
    for the other to start or finish (pppd ``pap-timeout``/``chap-timeout`` style); 0 = for
    ever (the link's LCP echo still guards the line).  ``verify_timeout`` bounds the wait for
    an external verifier's verdict (RADIUS: longer than its timeout x retries x servers).
    """

    restart: float = 3.0
    max_transmits: int = 10
    wait: float = 60.0
    verify_timeout: float = 30.0    # an external verifier's verdict; 0 = for ever


class _Machine:
    """Frame queue, event queue and timer plumbing shared by all auth machines."""

    protocol: int = 0
    method: AuthMethod
    role: Role                    # each concrete machine says which side it plays

    def __init__(self, timers: AuthTimers | None) -> None:
        self.timers = timers or AuthTimers()
        self._frames: list[tuple[int, bytes]] = []
        self._events: list[AuthEvent] = []
        self._deadline: float | None = None     # retransmission / give-up
        self._wait_deadline: float | None = None
        self.finished = False
        self.succeeded = False
        self.result: AuthResult | None = None
        self.malformed = 0                       # packets dropped as undecodable
        self.discarded = 0                       # well-formed but unexpected (wrong id ...)
        # authenticators: the external verification in flight (see the module docstring)
        self._pending: VerifyRequest | None = None
        self._verify_deadline: float | None = None
        self.late_verdicts = 0                   # verdicts dropped: not for the pending request
        self.ignored_while_pending = 0           # peer's repeats while a verdict was pending

    # -- output
    def frames_to_send(self) -> list[tuple[int, bytes]]:
        out, self._frames = self._frames, []
        return out

    def next_event(self) -> AuthEvent | None:
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        ts = [t for t in (self._deadline, self._wait_deadline, self._verify_deadline)
              if t is not None]
        return min(ts) if ts else None

    # -- helpers
    def _send(self, payload: bytes) -> None:
        self._frames.append((self.protocol, payload))

    def _arm_wait(self, now: float) -> None:
        self._wait_deadline = now + self.timers.wait if self.timers.wait > 0 else None

    # -- external verification (authenticators)
    @property
    def pending(self) -> VerifyRequest | None:
        """The request whose verdict we wait for, or None."""
        return self._pending

    def _await_verdict(self, request: VerifyRequest, now: float) -> None:
        """Hand ``request`` to the driver (as an event) and wait: no retransmission meanwhile
        (the peer has answered), the verify timeout instead."""
        self._pending = request
        self._deadline = None
        t = self.timers.verify_timeout
        self._verify_deadline = now + t if t > 0 else None
        self._events.append(request)

    def _take_verdict(self, request: VerifyRequest) -> bool:
        """True when ``request`` is the pending one (it is then no longer pending)."""
        if self.finished or request is not self._pending:
            self.late_verdicts += 1
            log.debug("%s: dropped a verdict for a request that is not pending",
                      self.method.label)
            return False
        self._pending = None
        self._verify_deadline = None
        return True

    def _verify_timed_out(self, now: float) -> VerifyRequest | None:
        """The pending request if its verdict is overdue (verify timeout, or the overall wait
        ran out meanwhile); it is then no longer pending."""
        request = self._pending
        if request is None:
            return None
        overdue = [t for t in (self._verify_deadline, self._wait_deadline)
                   if t is not None and now >= t]
        if not overdue:
            return None
        self._pending = None
        self._verify_deadline = None
        return request

    def _succeed(self, result: AuthResult) -> None:
        if self.finished:
            return
        self.finished = True
        self.succeeded = True
        self.result = result
        self._deadline = self._wait_deadline = self._verify_deadline = None
        self._pending = None
        log.debug("%s %s succeeded for %r", self.method.label, self._role_name(), result.user)
        self._events.append(AuthSucceeded(result))

    def _fail(self, user: str, reason: str, message: str = "") -> None:
        if self.finished:
            return
        self.finished = True
        self._deadline = self._wait_deadline = self._verify_deadline = None
        self._pending = None
        log.info("%s %s failed for %r: %s", self.method.label, self._role_name(), user, reason)
        self._events.append(AuthFailed(self.method, user, reason, message))

    def _role_name(self) -> str:
        return self.role.value
