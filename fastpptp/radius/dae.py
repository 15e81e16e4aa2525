"""Dynamic Authorization (RFC 5176) on the NAS: the sans-I/O core of the Disconnect / CoA
listener (the rate-limit attributes it reads are parsed by :mod:`fastpptp.radius.rates`).

Nothing here opens a socket or reads a clock: ``handle(datagram, source, now, wall)`` takes
the loop's monotonic time (the duplicate cache) and the wall clock (Event-Timestamp) as
arguments, acts through a :class:`DaeTarget` (the server's sessions) and returns the datagram
to send back, or None.  The asyncio listener is :mod:`fastpptp.aio.dae`.

Theory of operation
  1. Dropped silently and counted (no answer: an answer would confirm a guess), in order:
     a source outside ``allowed`` (``rx_disallowed_source``); a datagram that is not RADIUS
     (``rx_malformed``) or not a Disconnect-/CoA-Request (``rx_unexpected_code``); a bad
     Request Authenticator -- MD5 over the packet with 16 zero octets in its place and the
     secret appended, RFC 5176 §2.3 / §3.5 (``rx_bad_authenticator``); a Message-Authenticator
     that does not verify (``rx_bad_message_authenticator``; RFC 5176 §3.1, computed with the
     zero authenticator) or is missing when required (``rx_no_message_authenticator``); an
     Event-Timestamp more than ``event_timestamp_window`` seconds from our clock, or missing
     when required (``rx_stale``; RFC 5176 §4.2 replay protection).
  2. Duplicates (RFC 5176 §2.3, RFC 5080 §2.2.2): a request identical to one answered in the
     last ``duplicate_lifetime`` seconds from the same address (same Identifier, Request
     Authenticator and octets) gets the cached answer again and is not executed again
     (``rx_duplicates``).  The cache is bounded (``cache_size``; oldest out first).
  3. Checked and answered with a NAK and Error-Cause (RFC 5176 §3.5): NAS-IP-Address,
     NAS-IPv6-Address, NAS-Identifier, when present, must be ours (403
     NAS-Identification-Mismatch); every attribute must be one the code allows and we
     support (401 Unsupported-Attribute; Service-Type other than Framed: 405
     Unsupported-Service, Authorize-Only echoed); at least one session identification
     attribute (402 Missing-Attribute); values we cannot use (407 Invalid-Attribute-Value).
  4. Matching: Acct-Session-Id (our session ID), User-Name, Framed-IP-Address,
     Calling-Station-Id (the peer's address), NAS-Port (our call ID).  Several given: all must
     match; every matching session is acted on; none: NAK 503 Session-Context-Not-Found.
  5. Disconnect-Request: ``target.disconnect(ids, reason)``, Disconnect-ACK.  CoA-Request:
     Session-Timeout and Idle-Timeout (seconds from now; 0 = none) and the rate limit
     (Mikrotik-Rate-Limit, else Cisco-AVPair ``rate-limit``, else Filter-Id ``down/up``:
     :func:`fastpptp.radius.rates.rate_limit_from_attributes`; a value that does not parse:
     NAK 407; a Filter-Id naming a filter: NAK 401, we have none) through
     ``target.change(ids, change)``, CoA-ACK.  A target that raises: NAK 506
     Resources-Unavailable (logged by the caller's logger, counted ``action_errors``).
  6. Every answer echoes the request's Proxy-State attributes in order (RFC 5176 §3.6),
     carries a Message-Authenticator and the Response Authenticator: MD5(Code | Identifier |
     Length | Request Authenticator | Attributes | Secret), RFC 5176 §2.3.

Secrets are never logged.
"""
from __future__ import annotations

import collections
import hashlib
import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from fastpptp.errors import DecodeError
from fastpptp.radius.dictionary import (
    VENDOR_CISCO, VENDOR_MIKROTIK, Attr, CiscoAttr, Code, ErrorCause, MikrotikAttr,
)
from fastpptp.radius.packet import (
    Attribute, BadMessageAuthenticator, MissingMessageAuthenticator, Packet, RadiusAuthError,
    decode_packet, encode_response, text_value, verify_request,
)
from fastpptp.radius.rates import is_rate_avpair, rate_limit_from_attributes
from fastpptp.shaping import RateLimit

__all__ = [
    "DaeCore", "DaePolicy", "DaeSession", "DaeTarget", "CoaChange", "COUNTERS",
    "VENDOR_CISCO", "CISCO_AVPAIR", "VENDOR_MIKROTIK", "MIKROTIK_RATE_LIMIT",
    "SERVICE_TYPE_AUTHORIZE_ONLY", "DISCONNECT_REASON",
]

log = logging.getLogger("fastpptp.radius.dae")

CISCO_AVPAIR = CiscoAttr.CISCO_AVPAIR                       # vendor VENDOR_CISCO (9)
MIKROTIK_RATE_LIMIT = MikrotikAttr.MIKROTIK_RATE_LIMIT      # vendor VENDOR_MIKROTIK (14988)
SERVICE_TYPE_FRAMED = 2
SERVICE_TYPE_AUTHORIZE_ONLY = 17     # RFC 5176 §3.2

#: the close reason of a session ended by a Disconnect-Request (an administrative reset:
#: accounting's Admin-Reset, metrics' "admin")
DISCONNECT_REASON = "administratively terminated (RADIUS Disconnect-Request)"

COUNTERS: dict[str, str] = {
    "rx_requests": "datagrams received",
    "rx_disallowed_source": "datagrams from an address outside the allowed networks (dropped)",
    "rx_malformed": "datagrams that do not decode as RADIUS (dropped)",
    "rx_unexpected_code": "RADIUS packets that are no Disconnect-/CoA-Request (dropped)",
    "rx_bad_authenticator": "requests with a bad Request Authenticator: forged or wrong secret (dropped)",
    "rx_bad_message_authenticator": "requests whose Message-Authenticator does not verify (dropped)",
    "rx_no_message_authenticator": "requests without the required Message-Authenticator (dropped)",
    "rx_stale": "requests with an Event-Timestamp outside the window, or none when required (dropped)",
    "rx_duplicates": "retransmitted requests answered from the cache, not executed again",
    "tx_disconnect_ack": "Disconnect-ACKs sent",
    "tx_disconnect_nak": "Disconnect-NAKs sent",
    "tx_coa_ack": "CoA-ACKs sent",
    "tx_coa_nak": "CoA-NAKs sent",
    "sessions_disconnected": "sessions ended by Disconnect-Requests",
    "sessions_changed": "sessions changed by CoA-Requests",
    "action_errors": "requests whose action failed in the server (NAK 506)",
}

# RFC 5176 §3: what identifies the NAS, what identifies a session (the ones we can match),
# and what else each request may carry
_NAS_IDENTIFICATION = frozenset({Attr.NAS_IP_ADDRESS, Attr.NAS_IDENTIFIER, Attr.NAS_IPV6_ADDRESS})
_SESSION_IDENTIFICATION = frozenset({Attr.ACCT_SESSION_ID, Attr.USER_NAME, Attr.FRAMED_IP_ADDRESS,
                                     Attr.CALLING_STATION_ID, Attr.NAS_PORT})
_ALWAYS = frozenset({Attr.MESSAGE_AUTHENTICATOR, Attr.PROXY_STATE, Attr.EVENT_TIMESTAMP,
                     Attr.SERVICE_TYPE})
_DISCONNECT_ONLY = frozenset({Attr.ACCT_TERMINATE_CAUSE})
_COA_CHANGES = frozenset({Attr.SESSION_TIMEOUT, Attr.IDLE_TIMEOUT, Attr.FILTER_ID})
_ALLOWED: dict[Code, frozenset[int]] = {
    Code.DISCONNECT_REQUEST: _NAS_IDENTIFICATION | _SESSION_IDENTIFICATION | _ALWAYS | _DISCONNECT_ONLY,
    Code.COA_REQUEST: _NAS_IDENTIFICATION | _SESSION_IDENTIFICATION | _ALWAYS | _COA_CHANGES,
}
_ANSWER = {Code.DISCONNECT_REQUEST: (Code.DISCONNECT_ACK, Code.DISCONNECT_NAK),
           Code.COA_REQUEST: (Code.COA_ACK, Code.COA_NAK)}
_TX_COUNTER = {Code.DISCONNECT_ACK: "tx_disconnect_ack", Code.DISCONNECT_NAK: "tx_disconnect_nak",
               Code.COA_ACK: "tx_coa_ack", Code.COA_NAK: "tx_coa_nak"}

Address = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- the core ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DaeSession:
    """What a request can match a live session by."""
    session_id: str                 # Acct-Session-Id
    call_id: int                    # NAS-Port
    user: str | None                # User-Name (None before authentication)
    framed_ip: str | None           # Framed-IP-Address (None before IPCP)
    calling_station: str            # Calling-Station-Id: the peer's public address


@dataclass(frozen=True)
class CoaChange:
    """What a CoA-Request changes; None = unchanged.  Timeouts in seconds from now, 0 = none."""
    session_timeout: int | None = None
    idle_timeout: int | None = None
    rate: RateLimit | None = None


@dataclass(frozen=True)
class DaeTarget:
    """The server side: the live sessions, and the two actions (may raise: NAK 506)."""
    sessions: Callable[[], Iterable[DaeSession]]
    disconnect: Callable[[Sequence[str], str], None]
    change: Callable[[Sequence[str], CoaChange], None]


@dataclass(frozen=True)
class DaePolicy:
    """``allowed``: the client networks (none: every request is dropped); ``nas_identifier``
    / ``nas_addresses``: ours (None / empty: any value is accepted, we cannot tell);
    ``event_timestamp_window``: seconds an Event-Timestamp may differ from our clock."""
    secret: bytes
    allowed: tuple[Network, ...]
    nas_identifier: str | None = None
    nas_addresses: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset()
    require_message_authenticator: bool = False
    require_event_timestamp: bool = False
    event_timestamp_window: int = 300
    duplicate_lifetime: float = 300.0
    cache_size: int = 4096

    def __repr__(self) -> str:       # never the secret
        return (f"DaePolicy(allowed={[str(n) for n in self.allowed]}, nas_identifier="
                f"{self.nas_identifier!r}, require_message_authenticator="
                f"{self.require_message_authenticator})")


class _Nak(Exception):
    def __init__(self, cause: ErrorCause, *extra: Attribute) -> None:
        super().__init__(cause.name)
        self.cause = cause
        self.extra = extra


@dataclass
class _Cached:
    digest: bytes
    answer: bytes
    expires: float


class DaeCore:
    """``handle(datagram, source, now, wall)`` -> the answer to send to ``source``, or None."""

    def __init__(self, policy: DaePolicy, target: DaeTarget) -> None:
        self.policy = policy
        self.target = target
        self.counters: collections.Counter[str] = collections.Counter({k: 0 for k in COUNTERS})
        self._cache: collections.OrderedDict[tuple[str, int, bytes], _Cached] = collections.OrderedDict()

    def allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.policy.allowed)

    def handle(self, datagram: bytes, source: Address, now: float, wall: float) -> bytes | None:
        c = self.counters
        c["rx_requests"] += 1
        if not self.allowed(source[0]):
            c["rx_disallowed_source"] += 1
            return None
        try:
            request = decode_packet(datagram)
        except DecodeError:
            c["rx_malformed"] += 1
            return None
        if request.code not in _ANSWER:
            c["rx_unexpected_code"] += 1
            return None
        raw = datagram[:int.from_bytes(datagram[2:4], "big")]
        self._expire(now)
        key = (source[0], request.identifier, request.authenticator)
        digest = hashlib.sha256(raw).digest()
        cached = self._cache.get(key)
        if cached is not None and cached.digest == digest:
            c["rx_duplicates"] += 1
            return cached.answer
        try:
            verify_request(raw, request, self.policy.secret,
                           require_message_authenticator=self.policy.require_message_authenticator)
        except MissingMessageAuthenticator:
            c["rx_no_message_authenticator"] += 1
            return None
        except BadMessageAuthenticator:
            c["rx_bad_message_authenticator"] += 1
            return None
        except RadiusAuthError:
            c["rx_bad_authenticator"] += 1
            return None
        if not self._timely(request, wall):
            c["rx_stale"] += 1
            return None
        answer = self._answer(request)
        self._cache[key] = _Cached(digest, answer, now + self.policy.duplicate_lifetime)
        self._cache.move_to_end(key)
        while len(self._cache) > self.policy.cache_size:
            self._cache.popitem(last=False)
        return answer

    def _expire(self, now: float) -> None:
        while self._cache:
            key, entry = next(iter(self._cache.items()))
            if entry.expires > now:
                return
            del self._cache[key]

    def _timely(self, request: Packet, wall: float) -> bool:
        try:
            ts = request.get_int(Attr.EVENT_TIMESTAMP)
        except DecodeError:
            return False
        if ts is None:
            return not self.policy.require_event_timestamp
        return abs(wall - ts) <= self.policy.event_timestamp_window

    # --- answering ----------------------------------------------------------------------------

    def _answer(self, request: Packet) -> bytes:
        ack, nak = _ANSWER[request.code]
        try:
            hits = self._execute(request)
            log.info("%s from RADIUS: %d session(s): %s", request.code.name, len(hits), ", ".join(hits))
            reply = Packet(ack, request.identifier)
        except _Nak as exc:
            log.info("%s from RADIUS: NAK %d %s", request.code.name, exc.cause, exc.cause.name)
            reply = Packet(nak, request.identifier,
                           attributes=[*exc.extra, Attribute(Attr.ERROR_CAUSE, int(exc.cause).to_bytes(4, "big"))])
        # RFC 5176 §3.6: Proxy-State copied into the answer, in order
        reply.attributes += [a for a in request.attributes if a.vendor == 0 and a.type == Attr.PROXY_STATE]
        self.counters[_TX_COUNTER[reply.code]] += 1
        return encode_response(reply, self.policy.secret, request.authenticator)

    def _execute(self, request: Packet) -> list[str]:
        self._check_nas(request)
        change = self._check_attributes(request)
        hits = [s.session_id for s in self.target.sessions() if _matches(request, s)]
        if not hits:
            raise _Nak(ErrorCause.SESSION_CONTEXT_NOT_FOUND)
        try:
            if change is None:
                self.target.disconnect(hits, DISCONNECT_REASON)
            else:
                self.target.change(hits, change)
        except Exception:
            log.exception("%s for session(s) %s failed", request.code.name, ", ".join(hits))
            self.counters["action_errors"] += 1
            raise _Nak(ErrorCause.RESOURCES_UNAVAILABLE) from None
        self.counters["sessions_disconnected" if change is None else "sessions_changed"] += len(hits)
        return hits

    def _check_nas(self, request: Packet) -> None:
        ours = self.policy.nas_addresses
        for t in (Attr.NAS_IP_ADDRESS, Attr.NAS_IPV6_ADDRESS):
            for v in request.get_all(t):
                try:
                    addr = ipaddress.ip_address(v)
                except ValueError:
                    raise _Nak(ErrorCause.INVALID_ATTRIBUTE_VALUE) from None
                if ours and addr not in ours:
                    raise _Nak(ErrorCause.NAS_IDENTIFICATION_MISMATCH)
        name = self.policy.nas_identifier
        for v in request.get_all(Attr.NAS_IDENTIFIER):
            if name is not None and v.decode("utf-8", errors="replace") != name:
                raise _Nak(ErrorCause.NAS_IDENTIFICATION_MISMATCH)

    def _check_attributes(self, request: Packet) -> CoaChange | None:
        """The attributes' support and values; a CoA's change (None for a Disconnect)."""
        for v in request.get_all(Attr.SERVICE_TYPE):
            service = int.from_bytes(v, "big")
            if service != SERVICE_TYPE_FRAMED:
                # RFC 5176 §3.2: no dynamic re-authorization here (its State is not looked
                # at); Authorize-Only is echoed in the NAK
                extra = (Attribute(Attr.SERVICE_TYPE, v),) if service == SERVICE_TYPE_AUTHORIZE_ONLY else ()
                raise _Nak(ErrorCause.UNSUPPORTED_SERVICE, *extra)
        allowed = _ALLOWED[request.code]
        coa = request.code is Code.COA_REQUEST
        for a in request.attributes:
            if a.vendor == 0 and a.type in allowed:
                continue
            if coa and a.vendor == VENDOR_MIKROTIK and a.type == MIKROTIK_RATE_LIMIT:
                continue
            if coa and a.vendor == VENDOR_CISCO and a.type == CISCO_AVPAIR and is_rate_avpair(text_value(a.value)):
                continue
            raise _Nak(ErrorCause.UNSUPPORTED_ATTRIBUTE)
        if not any(a.vendor == 0 and a.type in _SESSION_IDENTIFICATION for a in request.attributes):
            raise _Nak(ErrorCause.MISSING_ATTRIBUTE)
        if not coa:
            return None
        try:
            rate = rate_limit_from_attributes(request.attributes)
        except ValueError:
            raise _Nak(ErrorCause.INVALID_ATTRIBUTE_VALUE) from None
        if rate is None and request.has(Attr.FILTER_ID):
            raise _Nak(ErrorCause.UNSUPPORTED_ATTRIBUTE)      # a filter by name: we have none
        change = CoaChange(session_timeout=request.get_int(Attr.SESSION_TIMEOUT),
                           idle_timeout=request.get_int(Attr.IDLE_TIMEOUT), rate=rate)
        if change == CoaChange():
            raise _Nak(ErrorCause.MISSING_ATTRIBUTE)          # nothing to change
        return change


def _matches(request: Packet, s: DaeSession) -> bool:
    """Every session identification attribute of the request names ``s``."""
    for a in request.attributes:
        if a.vendor != 0:
            continue
        if a.type == Attr.ACCT_SESSION_ID:
            ok = a.value.decode("utf-8", errors="replace") == s.session_id
        elif a.type == Attr.USER_NAME:
            ok = s.user is not None and a.value.decode("utf-8", errors="replace") == s.user
        elif a.type == Attr.FRAMED_IP_ADDRESS:
            ok = s.framed_ip is not None and str(ipaddress.IPv4Address(a.value)) == s.framed_ip
        elif a.type == Attr.CALLING_STATION_ID:
            ok = a.value.decode("utf-8", errors="replace") == s.calling_station
        elif a.type == Attr.NAS_PORT:
            ok = int.from_bytes(a.value, "big") == s.call_id
        else:
            continue
        if not ok:
            return False
    return True
