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
from typing import Protocol as _TypingProtocol, runtime_checkable

from fastpptp.errors import DecodeError, LocalProtocolError, ProtocolError
from fastpptp.ppp.constants import AuthMethod

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


AuthEvent = AuthSucceeded | AuthFailed


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
    ever (the link's LCP echo still guards the line).
    """

    restart: float = 3.0
    max_transmits: int = 10
    wait: float = 60.0


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

    # -- output
    def frames_to_send(self) -> list[tuple[int, bytes]]:
        out, self._frames = self._frames, []
        return out

    def next_event(self) -> AuthEvent | None:
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        ts = [t for t in (self._deadline, self._wait_deadline) if t is not None]
        return min(ts) if ts else None

    # -- helpers
    def _send(self, payload: bytes) -> None:
        self._frames.append((self.protocol, payload))

    def _arm_wait(self, now: float) -> None:
        self._wait_deadline = now + self.timers.wait if self.timers.wait > 0 else None

    def _succeed(self, result: AuthResult) -> None:
        if self.finished:
            return
        self.finished = True
        self.succeeded = True
        self.result = result
        self._deadline = self._wait_deadline = None
        log.debug("%s %s succeeded for %r", self.method.label, self._role_name(), result.user)
        self._events.append(AuthSucceeded(result))

    def _fail(self, user: str, reason: str, message: str = "") -> None:
        if self.finished:
            return
        self.finished = True
        self._deadline = self._wait_deadline = None
        log.info("%s %s failed for %r: %s", self.method.label, self._role_name(), user, reason)
        self._events.append(AuthFailed(self.method, user, reason, message))

    def _role_name(self) -> str:
        return self.role.value
