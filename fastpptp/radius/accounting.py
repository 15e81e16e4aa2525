"""RADIUS accounting (RFC 2866, RFC 2869): what a PPTP concentrator puts in its
Accounting-Requests, why a session ended, when the next Interim-Update is due and which
requests to give up when too many are outstanding.

Sans-I/O: values in, attribute lists and decisions out.  No socket, no clock: the caller
passes the wall-clock time (Event-Timestamp) and the seconds of service (Acct-Session-Time).
The asyncio side (:mod:`fastpptp.aio.accounting`) sends the lists through the RADIUS client,
which retransmits them with Acct-Delay-Time (:mod:`fastpptp.radius.client`).

Theory of operation
  1. A session is accounted from the moment its network is up (IPCP opened: the user has
     service) until it ends: one **Start**, an **Interim-Update** every
     :func:`interim_interval` seconds, one **Stop** with the final counters and the
     Acct-Terminate-Cause :func:`terminate_cause` maps from the session's typed end cause.  A
     session that never came up (failed login, failed negotiation) has no records.
  2. The NAS itself sends **Accounting-On** when it starts (so the server closes what a
     crashed predecessor left open) and **Accounting-Off** when it stops cleanly.
  3. Every record of a session carries the same attributes naming it -- Acct-Session-Id (the
     server's session ID, unique across restarts), User-Name, NAS-Port (our call ID),
     Calling-/Called-Station-Id, Framed-IP-Address, the Class values of the Access-Accept
     verbatim (RFC 2865 §5.25) -- and Interim/Stop its usage: Acct-Input/Output-Octets with
     the -Gigawords that count their 2^32 wraps (RFC 2869 §5.1/§5.2), -Packets and
     Acct-Session-Time.  *Input* is what the user sent (RFC 2866 §5.3): the engine's ``rx``.
  4. :class:`AccountingBacklog` bounds the requests outstanding at once: a session's new
     Interim-Update or Stop supersedes its unanswered Interim-Update (the newer counters
     include the older ones); over the limit the oldest Interim-Update is given up first,
     then the oldest Start; a Stop, Accounting-On and Accounting-Off are never given up.
"""
from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from fastpptp.radius.dictionary import (
    AcctStatusType, AcctTerminateCause, Attr, FramedProtocol, NasPortType, ServiceType,
)
from fastpptp.radius.packet import Attribute
from fastpptp.teardown import Teardown

__all__ = [
    "AcctAuthentic", "Nas", "AcctSession", "Usage", "RequestKind", "start_attributes",
    "interim_attributes", "stop_attributes", "accounting_on_attributes",
    "accounting_off_attributes", "terminate_cause", "TERMINATE_CAUSES", "interim_interval",
    "AccountingBacklog", "Admission", "BACKLOG_COUNTERS", "DEFAULT_INTERIM_FLOOR",
]

_U32 = 1 << 32

#: RFC 2869 §5.16: an Acct-Interim-Interval "SHOULD NOT be smaller than 60" (pppd's radius
#: plugin raises smaller ones to 60); ``RadiusSettings.acct_interim_floor`` may lower it
DEFAULT_INTERIM_FLOOR = 60


class AcctAuthentic(enum.IntEnum):
    """RFC 2866 §5.6: how the user was authenticated."""
    RADIUS = 1
    LOCAL = 2          # chap-secrets, an embedding backend
    REMOTE = 3


class RequestKind(enum.Enum):
    """An Accounting-Request's Acct-Status-Type, as the backlog tells them apart."""
    START = AcctStatusType.START
    INTERIM = AcctStatusType.INTERIM_UPDATE
    STOP = AcctStatusType.STOP
    ON = AcctStatusType.ACCOUNTING_ON
    OFF = AcctStatusType.ACCOUNTING_OFF


@dataclass(frozen=True)
class Nas:
    """The NAS's own attributes, in every request (RFC 2865 §5.4/§5.32: at least one);
    an IPv6 ``ip_address`` goes in NAS-IPv6-Address (RFC 3162 §2.1)."""
    identifier: str | None = None
    ip_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    def __post_init__(self) -> None:
        if not self.identifier and self.ip_address is None:
            raise ValueError("a NAS needs a NAS-Identifier or a NAS-IP-Address")

    def attributes(self) -> list[Attribute]:
        out: list[Attribute] = []
        if isinstance(self.ip_address, ipaddress.IPv4Address):
            out.append(Attribute(Attr.NAS_IP_ADDRESS, self.ip_address.packed))
        elif self.ip_address is not None:
            out.append(Attribute(Attr.NAS_IPV6_ADDRESS, self.ip_address.packed))
        if self.identifier:
            out.append(Attribute(Attr.NAS_IDENTIFIER, self.identifier.encode()))
        return out


@dataclass(frozen=True)
class AcctSession:
    """What names a session in each of its records (fixed from its Start on).

    ``nas_port``: our call ID; ``port_id``: its interface (NAS-Port-Id), when it has its
    own; ``calling_station``: the peer's public address; ``called_station``: ours (the
    control connection's local address); ``framed_ip``: the address the peer got;
    ``classes``: the Access-Accept's Class values, echoed verbatim."""
    session_id: str
    nas_port: int
    calling_station: str
    user: str | None = None
    called_station: str | None = None
    framed_ip: ipaddress.IPv4Address | None = None
    port_id: str | None = None
    classes: tuple[bytes, ...] = ()
    authentic: AcctAuthentic = AcctAuthentic.LOCAL


@dataclass(frozen=True)
class Usage:
    """A session's counters as accounting sees them: *input* = from the user (RFC 2866
    §5.3), the engine's ``rx``; *output* = to the user, its ``tx``."""
    input_octets: int = 0
    output_octets: int = 0
    input_packets: int = 0
    output_packets: int = 0

    @classmethod
    def from_engine(cls, counters: Mapping[str, int]) -> Usage:
        """From ``Engine.counters(call_id)`` (or a session's ``final_counters``)."""
        return cls(counters.get("rx_bytes", 0), counters.get("tx_bytes", 0),
                   counters.get("rx_packets", 0), counters.get("tx_packets", 0))


def _int(type_: Attr, value: int) -> Attribute:
    return Attribute(type_, (value % _U32).to_bytes(4, "big"))


def _common(kind: RequestKind, nas: Nas, session_id: str, timestamp: int) -> list[Attribute]:
    return [_int(Attr.ACCT_STATUS_TYPE, kind.value),
            Attribute(Attr.ACCT_SESSION_ID, session_id.encode()),
            *nas.attributes(),
            _int(Attr.EVENT_TIMESTAMP, timestamp)]


def _session(session: AcctSession) -> list[Attribute]:
    out: list[Attribute] = []
    if session.user:
        out.append(Attribute(Attr.USER_NAME, session.user.encode()))
    out += [_int(Attr.NAS_PORT, session.nas_port),
            _int(Attr.NAS_PORT_TYPE, NasPortType.VIRTUAL),
            _int(Attr.SERVICE_TYPE, ServiceType.FRAMED),
            _int(Attr.FRAMED_PROTOCOL, FramedProtocol.PPP),
            Attribute(Attr.CALLING_STATION_ID, session.calling_station.encode())]
    if session.port_id:
        out.append(Attribute(Attr.NAS_PORT_ID, session.port_id.encode()))
    if session.called_station:
        out.append(Attribute(Attr.CALLED_STATION_ID, session.called_station.encode()))
    if session.framed_ip is not None:
        out.append(Attribute(Attr.FRAMED_IP_ADDRESS, session.framed_ip.packed))
    out += [Attribute(Attr.CLASS, c) for c in session.classes]
    out.append(_int(Attr.ACCT_AUTHENTIC, session.authentic))
    return out


def _usage(usage: Usage, session_time: int) -> list[Attribute]:
    # RFC 2869 §5.1/§5.2: Gigawords = how often the 32-bit Octets counter wrapped
    return [_int(Attr.ACCT_INPUT_OCTETS, usage.input_octets),
            _int(Attr.ACCT_INPUT_GIGAWORDS, usage.input_octets // _U32),
            _int(Attr.ACCT_OUTPUT_OCTETS, usage.output_octets),
            _int(Attr.ACCT_OUTPUT_GIGAWORDS, usage.output_octets // _U32),
            _int(Attr.ACCT_INPUT_PACKETS, usage.input_packets),
            _int(Attr.ACCT_OUTPUT_PACKETS, usage.output_packets),
            _int(Attr.ACCT_SESSION_TIME, max(0, session_time))]


def start_attributes(nas: Nas, session: AcctSession, *, timestamp: int) -> list[Attribute]:
    """Acct-Status-Type Start (RFC 2866 §5.1): the session has service from now on."""
    return _common(RequestKind.START, nas, session.session_id, timestamp) + _session(session)


def interim_attributes(nas: Nas, session: AcctSession, usage: Usage, *, session_time: int,
                       timestamp: int) -> list[Attribute]:
    """Interim-Update (RFC 2869 §2.1): the counters so far."""
    return (_common(RequestKind.INTERIM, nas, session.session_id, timestamp) + _session(session)
            + _usage(usage, session_time))


def stop_attributes(nas: Nas, session: AcctSession, usage: Usage, *, session_time: int,
                    cause: AcctTerminateCause, timestamp: int) -> list[Attribute]:
    """Stop (RFC 2866 §5.1): the final counters and why the session ended (§5.10)."""
    return (_common(RequestKind.STOP, nas, session.session_id, timestamp) + _session(session)
            + _usage(usage, session_time) + [_int(Attr.ACCT_TERMINATE_CAUSE, cause)])


def accounting_on_attributes(nas: Nas, session_id: str, *, timestamp: int) -> list[Attribute]:
    """Accounting-On (RFC 2866 §5.1): the NAS starts; ``session_id`` names this run of it
    (Acct-Session-Id is in every Accounting-Request, RFC 2866 §5.5), the same in the Off."""
    return _common(RequestKind.ON, nas, session_id, timestamp)


def accounting_off_attributes(nas: Nas, session_id: str, *, timestamp: int) -> list[Attribute]:
    """Accounting-Off: the NAS stops cleanly (its sessions' Stops went before)."""
    return _common(RequestKind.OFF, nas, session_id, timestamp)


# --- why a session ended -----------------------------------------------------------------------

#: Acct-Terminate-Cause (RFC 2866 §5.10) of each :class:`~fastpptp.teardown.Teardown` cause
#: (every member: a test checks).  The producers (ppp/link.py, aio/session.py, server.py)
#: type the end where it happens; metrics.TEARDOWN_LABELS maps the same causes for the metric.
TERMINATE_CAUSES: Mapping[Teardown, AcctTerminateCause] = MappingProxyType({
    # the peer's LCP Terminate-Request or PPTP Call-Clear-Request: the user hung up
    Teardown.PEER_TERMINATE: AcctTerminateCause.USER_REQUEST,
    Teardown.PEER_CALL_CLEAR: AcctTerminateCause.USER_REQUEST,
    # carrier lost: TCP gone or PPTP echo unanswered, LCP echo unanswered, stateless MPPE
    # keys out of step for good (no data flows)
    Teardown.CONTROL_LOST: AcctTerminateCause.LOST_CARRIER,
    Teardown.ECHO_TIMEOUT: AcctTerminateCause.LOST_CARRIER,
    Teardown.MPPE_LOST_SYNC: AcctTerminateCause.LOST_CARRIER,
    Teardown.AUTH_FAILED: AcctTerminateCause.USER_ERROR,
    Teardown.NEGOTIATION_FAILED: AcctTerminateCause.SERVICE_UNAVAILABLE,   # e.g. MPPE required
    Teardown.LOOPBACK: AcctTerminateCause.PORT_ERROR,
    Teardown.INTERNAL_ERROR: AcctTerminateCause.NAS_ERROR,
    Teardown.SESSION_TIMEOUT: AcctTerminateCause.SESSION_TIMEOUT,
    Teardown.IDLE_TIMEOUT: AcctTerminateCause.IDLE_TIMEOUT,
    # the operator: `fastpptp terminate`, the embedding API, a RFC 5176 Disconnect-Request
    Teardown.ADMIN: AcctTerminateCause.ADMIN_RESET,
    Teardown.DISCONNECT_REQUEST: AcctTerminateCause.ADMIN_RESET,
    Teardown.SHUTDOWN: AcctTerminateCause.ADMIN_REBOOT,
    # ended for a non-error reason not otherwise listed (a session without an address never
    # came up: it has no Stop)
    Teardown.NO_ADDRESS: AcctTerminateCause.NAS_REQUEST,
    Teardown.LOCAL_CLOSE: AcctTerminateCause.NAS_REQUEST,
})


def terminate_cause(cause: Teardown, *, shutdown: bool = False) -> AcctTerminateCause:
    """The Acct-Terminate-Cause of a session that ended for ``cause`` (the session's: its
    link's own cause if it had one, see ``CallSession.abort``).

    ``shutdown``: the server is stopping (SIGTERM...): Admin-Reboot, whatever the cause (a
    peer closing TCP after our shutdown Terminate-Request ends for our shutdown)."""
    if shutdown:
        return AcctTerminateCause.ADMIN_REBOOT
    return TERMINATE_CAUSES[cause]


def interim_interval(reply: int | None, configured: int, floor: int = DEFAULT_INTERIM_FLOOR) -> int:
    """Seconds between a session's Interim-Updates (0: none): the Access-Accept's
    Acct-Interim-Interval, else the configured one; a non-zero interval is at least
    ``floor`` (RFC 2869 §5.16, as pppd's radius plugin)."""
    interval = reply if reply else configured
    if interval <= 0:
        return 0
    return max(interval, floor)


# --- the bound on outstanding requests ---------------------------------------------------------

#: the backlog's counters, each with its one-line meaning
BACKLOG_COUNTERS: dict[str, str] = {
    "interim_superseded": "unanswered Interim-Updates given up for the session's newer record",
    "interim_dropped": "Interim-Updates given up (or not sent) because too many were outstanding",
    "start_dropped": "Starts given up because too many requests were outstanding",
    "over_limit": "Stops / Accounting-On/-Off admitted beyond the limit (never given up)",
}


@dataclass(frozen=True)
class Admission:
    """The backlog's answer to a new request: its key (None: do not send it) and the keys of
    outstanding requests to give up (cancel)."""
    key: int | None
    cancel: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Entry:
    kind: RequestKind
    session_id: str


class AccountingBacklog:
    """Which accounting requests are outstanding, bounded by ``limit`` (see 4. above).

    ``admit(kind, session_id)`` before sending, ``done(key)`` when the request ended (answered,
    no server answered, or cancelled)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the accounting backlog limit must be >= 1")
        self.limit = limit
        self.counters: dict[str, int] = dict.fromkeys(BACKLOG_COUNTERS, 0)
        self._entries: dict[int, _Entry] = {}     # insertion order = age
        self._keys = 0

    def __len__(self) -> int:
        return len(self._entries)

    def kinds(self) -> list[RequestKind]:
        """The outstanding requests' kinds, the oldest first."""
        return [e.kind for e in self._entries.values()]

    def admit(self, kind: RequestKind, session_id: str) -> Admission:
        cancel: list[int] = []
        if kind in (RequestKind.INTERIM, RequestKind.STOP):
            for key, e in self._entries.items():
                if e.kind is RequestKind.INTERIM and e.session_id == session_id:
                    cancel.append(key)
                    self.counters["interim_superseded"] += 1
            self._drop(cancel)
        if len(self._entries) >= self.limit:
            victim = self._oldest(RequestKind.INTERIM)
            if victim is None and kind is RequestKind.INTERIM:
                self.counters["interim_dropped"] += 1
                return Admission(None, tuple(cancel))
            if victim is None and kind is RequestKind.START:
                victim = self._oldest(RequestKind.START)
            if victim is not None:
                dropped = self._entries[victim].kind
                self.counters["interim_dropped" if dropped is RequestKind.INTERIM else "start_dropped"] += 1
                cancel.append(victim)
                self._drop([victim])
            else:
                self.counters["over_limit"] += 1
        self._keys += 1
        self._entries[self._keys] = _Entry(kind, session_id)
        return Admission(self._keys, tuple(cancel))

    def done(self, key: int) -> None:
        self._entries.pop(key, None)

    def _oldest(self, kind: RequestKind) -> int | None:
        return next((k for k, e in self._entries.items() if e.kind is kind), None)

    def _drop(self, keys: Iterable[int]) -> None:
        for k in keys:
            self._entries.pop(k, None)
