"""Sans-I/O RADIUS client: identifiers, retransmission, failover, response checking.

Theory of operation
  1. ``send(code, attributes, now)`` opens a *transaction* and returns its handle.  The
     transaction tries the configured servers in order of preference: the live ones by
     their index (the first is the primary), then the ones marked dead, so with every server
     dead a request is still tried rather than failed at once.
  2. On each server it sends up to ``policy.tries`` times, ``policy.timeout`` apart
     (radiusclient's ``radius_timeout`` / ``radius_retries``).  An Access-Request is resent
     byte for byte with the same Identifier (RFC 2865 §3).  An Accounting-Request is encoded
     anew with ``Acct-Delay-Time`` = the caller's value + the seconds since the first send,
     and so with a new Identifier (RFC 2866 §5.2).
  3. A server that used up its tries is marked dead for ``policy.dead_time`` and the
     transaction fails over to the next one (a new Identifier and authenticator under that
     server's secret).  A valid response marks its server alive again; once a dead server's
     time is up it is the preferred one again ("and back").
  4. A datagram is matched by its source address (the server) and Identifier to an
     outstanding attempt, then checked (:func:`~fastpptp.radius.packet.verify_response`):
     Response Authenticator, Message-Authenticator (required by default: BlastRADIUS) and
     code.  Anything that fails is dropped and counted -- it never ends a transaction, so a
     forger cannot make us give up or accept; the genuine answer still can arrive.
  5. With every server tried, the transaction ends in :class:`NoResponse`; otherwise in
     :class:`Response`.  Identifiers stay reserved until their transaction ends, so a late
     answer to an earlier attempt is still accepted.  A server has 256 Identifiers; a
     transaction that finds none free waits until one is released.

  6. Each server has its own :class:`ServerCounters` (``server_counters[index]``): requests,
     retransmits, responses, timeouts (tries used up there), dropped datagrams by reason, and
     the response latency -- the receive time minus the time of the last send of the
     Identifier answered, in the caller's clock -- as a sum and fixed buckets
     (:data:`LATENCY_BUCKETS`), so a metrics scrape can read a histogram off plain integers.
     An Access-Request resent byte for byte cannot tell which copy was answered: the time
     from the last send never overstates the latency.

Output is pulled: ``datagrams_to_send()`` (destination, bytes), ``next_event()``;
``get_timer()`` is the next deadline and ``handle_timer(now)`` fires it.  Nothing here
opens a socket or reads a clock (see aio.py for the asyncio driver).
"""
from __future__ import annotations

import bisect
import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fastpptp.errors import DecodeError, LocalProtocolError
from fastpptp.radius.auth import AccessReply, parse_access_reply
from fastpptp.radius.dictionary import REQUEST_CODES, Attr, Code
from fastpptp.radius.packet import (
    Attribute, MissingMessageAuthenticator, Packet, RadiusAuthError, UnexpectedCode, decode_packet,
    encode_request, verify_response,
)

__all__ = ["RadiusServer", "ClientPolicy", "RadiusClient", "Response", "NoResponse", "Event",
           "COUNTERS", "ServerCounters", "SERVER_COUNTERS", "DROP_REASONS", "LATENCY_BUCKETS"]

Address = tuple[str, int]

# every counter the client keeps, each with its one-line meaning
COUNTERS: dict[str, str] = {
    "tx_requests": "transactions opened",
    "tx_datagrams": "datagrams handed out to send (first sends, retransmits, failovers)",
    "tx_retransmits": "resends to the same server after a timeout",
    "tx_failovers": "moves of a transaction to the next server",
    "rx_responses": "valid responses that ended a transaction",
    "rx_malformed": "datagrams that do not decode as RADIUS",
    "rx_unknown_source": "datagrams from an address that is none of our servers",
    "rx_unexpected": "valid-looking datagrams matching no outstanding request (late, duplicate)",
    "rx_forged": "responses with a bad Response Authenticator or Message-Authenticator",
    "rx_no_message_authenticator": "responses dropped for lacking a required Message-Authenticator",
    "rx_bad_code": "signed responses whose code does not answer the request",
    "no_response": "transactions that ended with no server answering",
    "servers_marked_dead": "times a server was marked dead",
}

#: the counters each server has (:class:`ServerCounters`), each with its one-line meaning
SERVER_COUNTERS: dict[str, str] = {
    "requests": "requests sent to the server (a transaction's first send there, failovers included)",
    "retransmits": "resends to the server after a timeout",
    "responses": "valid responses from the server",
    "timeouts": "transactions on which the server used up its tries (then failover, or no response)",
}

#: why a datagram from a server was dropped (``ServerCounters.dropped``), with the meanings
DROP_REASONS: dict[str, str] = {
    "malformed": "does not decode as RADIUS",
    "unexpected": "matches no outstanding request (late, duplicate)",
    "forged": "bad Response Authenticator or Message-Authenticator",
    "no_message_authenticator": "lacks the required Message-Authenticator",
    "bad_code": "signed, but its code does not answer the request",
}

#: upper bounds in seconds of the response-latency buckets (one more bucket above the last)
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class RadiusServer:
    """One RADIUS server: numeric address and UDP port, and the shared secret."""
    address: Address
    secret: bytes = field(repr=False)


@dataclass(slots=True)
class ServerCounters:
    """One server's counters (:data:`SERVER_COUNTERS`, dropped datagrams by
    :data:`DROP_REASONS`) and its response latency: ``latency_sum`` seconds over ``responses``
    answers; ``latency_buckets[i]`` answers took at most ``LATENCY_BUCKETS[i]`` seconds and
    more than the bound before (not cumulative), the last one more than ``LATENCY_BUCKETS[-1]``."""
    requests: int = 0
    retransmits: int = 0
    responses: int = 0
    timeouts: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    latency_sum: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def answered(self, latency: float) -> None:
        self.responses += 1
        self.latency_sum += latency
        # le semantics: an answer of exactly a bound's seconds is in that bound's bucket
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1


@dataclass(frozen=True)
class ClientPolicy:
    timeout: float = 3.0          # seconds between sends to one server
    tries: int = 3                # sends per server before failing over
    dead_time: float = 30.0       # seconds a server that did not answer is tried last
    require_message_authenticator: bool = True   # on Access-* responses (BlastRADIUS)

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.tries < 1 or self.dead_time < 0:
            raise ValueError("timeout > 0, tries >= 1 and dead_time >= 0 are required")


@dataclass(frozen=True)
class Response:
    """A verified response.  ``secret`` and ``request_authenticator`` are those of the
    attempt it answers (they decrypt the reply's hidden attributes)."""
    handle: int
    packet: Packet
    server: int
    secret: bytes = field(repr=False)
    request_authenticator: bytes = field(repr=False)

    def access_reply(self) -> AccessReply:
        return parse_access_reply(self.packet, self.secret, self.request_authenticator)


@dataclass(frozen=True)
class NoResponse:
    """No server answered the transaction (every server tried ``tries`` times)."""
    handle: int


Event = Response | NoResponse


@dataclass(eq=False)
class _Transaction:
    handle: int
    code: Code
    attributes: list[Attribute]        # without Acct-Delay-Time
    base_delay: int                    # the caller's Acct-Delay-Time
    created: float
    order: collections.deque[int]      # servers still to try, the current one first
    sends: int = 0                     # sends to the current server
    deadline: float | None = None
    wire: bytes = b""                  # the last datagram sent (resent as is for Access-*)
    ids: list[tuple[int, int]] = field(default_factory=list)   # (server, identifier) reserved


class RadiusClient:
    """The client side of RFC 2865/2866/5176 requests over several servers (sans-I/O)."""

    def __init__(self, servers: Sequence[RadiusServer], policy: ClientPolicy | None = None) -> None:
        if not servers:
            raise ValueError("at least one RADIUS server is required")
        self.servers = tuple(servers)
        self.policy = policy or ClientPolicy()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.server_counters = tuple(ServerCounters() for _ in self.servers)
        self._by_address = {s.address: i for i, s in enumerate(self.servers)}
        self._dead_until = [float("-inf")] * len(self.servers)
        self._next_id = [0] * len(self.servers)
        # (server, identifier) -> (transaction, Request Authenticator of that attempt,
        # the time of its last send)
        self._outstanding: dict[tuple[int, int], tuple[_Transaction, bytes, float]] = {}
        self._active: dict[int, _Transaction] = {}
        self._waiting: collections.deque[_Transaction] = collections.deque()
        self._out: list[tuple[Address, bytes]] = []
        self._events: collections.deque[Event] = collections.deque()
        self._handles = 0

    # --- input ------------------------------------------------------------------------------

    def send(self, code: Code, attributes: Iterable[Attribute], now: float) -> int:
        """Open a transaction for a request; returns its handle."""
        if code not in REQUEST_CODES:
            raise LocalProtocolError(f"{code!r} is not a request")
        attrs = list(attributes)
        base_delay = 0
        for a in attrs:
            if a.type == Attr.ACCT_DELAY_TIME and a.vendor == 0:
                if len(a.value) != 4:
                    raise LocalProtocolError("Acct-Delay-Time is a 4-octet integer")
                base_delay = int.from_bytes(a.value, "big")
        attrs = [a for a in attrs if not (a.type == Attr.ACCT_DELAY_TIME and a.vendor == 0)]
        self._handles += 1
        txn = _Transaction(self._handles, code, attrs, base_delay, now, self._server_order(now))
        self._active[txn.handle] = txn
        self.counters["tx_requests"] += 1
        self._start_on_server(txn, now, failover=False)
        return txn.handle

    def cancel(self, handle: int) -> None:
        """Forget a transaction (its answer, if any, is then counted as unexpected)."""
        txn = self._active.get(handle)
        if txn is not None:
            self._finish(txn)

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        server = self._by_address.get(source)
        if server is None:
            self.counters["rx_unknown_source"] += 1
            return
        dropped = self.server_counters[server].dropped
        try:
            packet = decode_packet(data)
        except DecodeError:
            self.counters["rx_malformed"] += 1
            dropped["malformed"] += 1
            return
        entry = self._outstanding.get((server, packet.identifier))
        if entry is None:
            self.counters["rx_unexpected"] += 1
            dropped["unexpected"] += 1
            return
        txn, request_auth, sent_at = entry
        secret = self.servers[server].secret
        access = txn.code in (Code.ACCESS_REQUEST, Code.STATUS_SERVER)
        try:
            verify_response(data, packet, txn.code, request_auth, secret,
                            require_message_authenticator=access and self.policy.require_message_authenticator)
        except MissingMessageAuthenticator:
            self.counters["rx_no_message_authenticator"] += 1
            dropped["no_message_authenticator"] += 1
            return
        except UnexpectedCode:
            self.counters["rx_bad_code"] += 1
            dropped["bad_code"] += 1
            return
        except RadiusAuthError:
            self.counters["rx_forged"] += 1
            dropped["forged"] += 1
            return
        self._dead_until[server] = float("-inf")
        self.counters["rx_responses"] += 1
        self.server_counters[server].answered(now - sent_at)
        self._finish(txn)
        self._events.append(Response(txn.handle, packet, server, secret, request_auth))
        self._drain_waiting(now)

    def handle_timer(self, now: float) -> None:
        for txn in list(self._active.values()):
            if txn.deadline is None or txn.deadline > now:
                continue
            if txn.sends < self.policy.tries:
                self.counters["tx_retransmits"] += 1
                self._send_or_wait(txn, now)
                continue
            server = txn.order.popleft()
            self.server_counters[server].timeouts += 1
            if self._dead_until[server] <= now:
                self.counters["servers_marked_dead"] += 1
            self._dead_until[server] = now + self.policy.dead_time
            if txn.order:
                self._start_on_server(txn, now, failover=True)
            else:
                self.counters["no_response"] += 1
                self._finish(txn)
                self._events.append(NoResponse(txn.handle))
        self._drain_waiting(now)

    # --- output -----------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [t.deadline for t in self._active.values() if t.deadline is not None]
        return min(deadlines) if deadlines else None

    def server_alive(self, index: int, now: float) -> bool:
        return self._dead_until[index] <= now

    @property
    def outstanding(self) -> int:
        """Open transactions (sent or waiting for an Identifier)."""
        return len(self._active)

    # --- internals --------------------------------------------------------------------------

    def _server_order(self, now: float) -> collections.deque[int]:
        alive = [i for i in range(len(self.servers)) if self._dead_until[i] <= now]
        dead = sorted((i for i in range(len(self.servers)) if self._dead_until[i] > now),
                      key=lambda i: self._dead_until[i])
        return collections.deque(alive + dead)

    def _start_on_server(self, txn: _Transaction, now: float, *, failover: bool) -> None:
        # the datagram is encoded anew for each server (its secret, its Identifiers)
        txn.sends = 0
        txn.wire = b""
        txn.deadline = None
        if failover:
            self.counters["tx_failovers"] += 1
        self._send_or_wait(txn, now)

    def _send_or_wait(self, txn: _Transaction, now: float) -> None:
        if not self._transmit(txn, now):
            self._waiting.append(txn)

    def _allocate_id(self, server: int) -> int | None:
        start = self._next_id[server]
        for k in range(256):
            ident = (start + k) & 0xFF
            if (server, ident) not in self._outstanding:
                self._next_id[server] = (ident + 1) & 0xFF
                return ident
        return None

    def _transmit(self, txn: _Transaction, now: float) -> bool:
        """Send (or resend) on the current server; False when no Identifier is free."""
        server = txn.order[0]
        resend_same = bool(txn.wire) and txn.code in (Code.ACCESS_REQUEST, Code.STATUS_SERVER)
        if not resend_same:
            ident = self._allocate_id(server)
            if ident is None:
                txn.deadline = None
                return False
            attrs = list(txn.attributes)
            delay = txn.base_delay + int(now - txn.created)
            if txn.code == Code.ACCOUNTING_REQUEST and (delay or txn.base_delay or txn.sends):
                attrs.append(Attribute(Attr.ACCT_DELAY_TIME, delay.to_bytes(4, "big")))
            wire, auth = encode_request(Packet(txn.code, ident, attributes=attrs),
                                        self.servers[server].secret)
            txn.wire = wire
            txn.ids.append((server, ident))
            self._outstanding[(server, ident)] = (txn, auth, now)
        else:                                   # the same Identifier: its latency counts from now
            key = txn.ids[-1]
            self._outstanding[key] = (txn, self._outstanding[key][1], now)
        sc = self.server_counters[server]
        if txn.sends:
            sc.retransmits += 1
        else:
            sc.requests += 1
        txn.sends += 1
        txn.deadline = now + self.policy.timeout
        self.counters["tx_datagrams"] += 1
        self._out.append((self.servers[server].address, txn.wire))
        return True

    def _finish(self, txn: _Transaction) -> None:
        for key in txn.ids:
            self._outstanding.pop(key, None)
        txn.ids.clear()
        txn.deadline = None
        self._active.pop(txn.handle, None)
        if txn in self._waiting:
            self._waiting.remove(txn)

    def _drain_waiting(self, now: float) -> None:
        for _ in range(len(self._waiting)):
            txn = self._waiting[0]
            if not self._transmit(txn, now):    # still no Identifier free: keep its place
                break
            self._waiting.popleft()
