"""Sans-I/O PPTP control connection (RFC 2637 §3), both roles: PAC (server) and PNS (client).

Theory of operation
-------------------
``ControlConnection`` is fed the TCP byte stream and the clock; it hands back bytes to write,
events and one deadline (h11 style)::

    conn = ControlConnection(Role.PNS, ControlConfig(), now, rng)
    conn.start(now)                         # PNS: Start-Control-Connection-Request
    conn.receive_data(data, now)            # b"" = the peer closed TCP
    sock.send(conn.data_to_send())
    while (ev := conn.next_event()) is not None: ...
    deadline = conn.get_timer(); ... conn.handle_timer(now)

Control connection states (RFC 2637 §3.1.1 PAC, §3.1.2 PNS)::

    PNS:  IDLE --start()/SCCRQ--> WAIT_CTL_REPLY --SCCRP ok--> ESTABLISHED
    PAC:  WAIT_CTL_REQUEST --SCCRQ ok / SCCRP--> ESTABLISHED
    both: ESTABLISHED --stop()/StopCCRQ--> WAIT_STOP_REPLY --StopCCRP/timeout--> CLOSED
          any --StopCCRQ / StopCCRP--> CLOSED;  any --TCP close, decode error, timeout--> CLOSED

Calls (RFC 2637 §3.2, outgoing calls only; §3.3 incoming calls are refused)::

    PNS:  place_call()/OCRQ -> WAIT_REPLY --OCRP ok--> ESTABLISHED --clear_call()/CCRQ-->
          WAIT_DISCONNECT --CDN, TCP close (pptpd), or timeout--> cleared
    PAC:  OCRQ -> CallRequested event -> accept_call()/OCRP -> ESTABLISHED
          --CCRQ from the PNS, or clear_call()--> CDN, cleared

A PAC bounds what a peer can ask before any login (issue 10): ``max_calls`` calls at once
per connection, ``call_rate``/``call_burst`` Outgoing-Call-Requests per second (more get OCRP
General-Error/No-Resource), and released call IDs count against ``source`` in the shared
allocator's quarantine (see ``CallIdAllocator.for_pac``).

Every call that leaves the table produces exactly one ``CallCleared`` event (whoever
cleared it), and the connection ends with exactly one ``ControlClosed`` event, after which
the owner closes TCP (after flushing ``data_to_send()``).

Interop leniency (what real peers send): an empty host name; Result Code 0 meaning success in
SCCRP/OCRP/StopCCRP/Echo-Reply (Windows, Android); Set-Link-Info with any ACCM; a peer Call ID
of 0 (pptpd answers every OCRQ with Call ID 0); no Call-Disconnect-Notify after a
Call-Clear-Request (pptpd closes TCP instead -- the call counts as cleared).

Messages in the wrong state never raise: they get the RFC's answer where it has one (OCRQ
before the control connection: OCRP General-Error/Not-Connected; a second SCCRQ: SCCRP
"already exists"; ICRQ: ICRP Do-Not-Accept -- we place no incoming calls), else they are
logged, counted in ``stats`` and ignored, or -- before the control connection is up, where
nothing else makes sense -- the connection is closed with a reason.
"""
from __future__ import annotations

import collections
import enum
import logging
import random
from dataclasses import dataclass, field

from . import messages as m
from ..errors import LocalProtocolError, ProtocolError
from .errors import PptpDecodeError
from .framer import PptpFramer

__all__ = [
    "Role", "State", "CallState", "ControlConfig", "ControlConnection", "CallIdAllocator",
    "CallIdsExhausted", "Event", "ControlConnected", "CallRequested", "CallEstablished",
    "CallCleared", "LinkInfo", "WanError", "EchoTimeout", "ControlClosed",
]

log = logging.getLogger("fastpptp.pptp.control")

MAX_OUTPUT = 64 * 1024      # bound on bytes queued for a peer that does not read
_TIMER_SLACK = 1e-6         # seconds


class Role(enum.Enum):
    PNS = "pns"     # PPTP Network Server: the client side, places outgoing calls
    PAC = "pac"     # PPTP Access Concentrator: the server side


class State(enum.Enum):
    IDLE = "idle"
    WAIT_CTL_REQUEST = "wait-ctl-request"
    WAIT_CTL_REPLY = "wait-ctl-reply"
    ESTABLISHED = "established"
    WAIT_STOP_REPLY = "wait-stop-reply"
    CLOSED = "closed"


class CallState(enum.Enum):
    WAIT_REPLY = "wait-reply"             # PNS: OCRQ sent
    WAIT_ACCEPT = "wait-accept"           # PAC: CallRequested given to the owner
    ESTABLISHED = "established"
    WAIT_DISCONNECT = "wait-disconnect"   # PNS: CCRQ sent


@dataclass(frozen=True)
class ControlConfig:
    """Settings of one control connection (times in seconds; 0/None disables a timer)."""

    host_name: bytes | str = b""
    vendor_string: bytes | str = b"fastpptp"
    firmware_revision: int = 1
    maximum_channels: int = 0              # PAC: announced in SCCRP (pptpd says 1)
    framing_capabilities: int = (m.FramingCapabilities.ASYNCHRONOUS
                                 | m.FramingCapabilities.SYNCHRONOUS)
    bearer_capabilities: int = m.BearerCapabilities.ANALOG | m.BearerCapabilities.DIGITAL
    recv_window: int = 64                  # our Packet Recv Window Size
    processing_delay: int = 0              # our Packet Processing Delay (1/10 s)
    minimum_bps: int = 2400                # PNS: OCRQ (pptp-linux's values)
    maximum_bps: int = 10_000_000
    connect_speed: int = 10_000_000        # PAC: OCRP Connect Speed (pptpd's value)
    echo_interval: float | None = 60.0     # idle time before we send Echo-Request
    echo_timeout: float = 60.0             # time the peer has to answer it
    setup_timeout: float = 30.0            # SCCRQ/SCCRP/OCRP/accept_call wait; mid-message stall
    stop_timeout: float = 10.0             # StopCCRP wait
    clear_timeout: float = 10.0            # PNS: Call-Disconnect-Notify wait after CCRQ
    max_calls: int = 128                   # calls at once per control connection (pptpd: 128)
    # PAC: Outgoing-Call-Requests accepted per second (token bucket of call_burst); more get
    # OCRP General-Error/No-Resource.  Control runs before any login, and every call takes a
    # call ID: an unauthenticated peer must not churn through them (issue 10).  0: no limit.
    call_rate: float = 1.0
    call_burst: int = 8


# --- events ---------------------------------------------------------------------------

class Event:
    """Base of the events ``next_event()`` returns."""


@dataclass(frozen=True)
class ControlConnected(Event):
    peer_host_name: bytes
    peer_vendor: bytes
    protocol_version: int
    firmware_revision: int
    framing_capabilities: int
    bearer_capabilities: int
    maximum_channels: int


@dataclass(frozen=True)
class CallRequested(Event):
    """PAC: the PNS sent an Outgoing-Call-Request; answer with accept_call / reject_call."""

    request_id: int
    peer_call_id: int
    call_serial_number: int
    peer_rwin: int                 # the PNS's Packet Receive Window Size
    peer_ppd: int                  # the PNS's Packet Processing Delay
    minimum_bps: int
    maximum_bps: int
    bearer_type: int
    framing_type: int
    phone_number: bytes
    subaddress: bytes


@dataclass(frozen=True)
class CallEstablished(Event):
    call_id: int                   # ours: the key of the GRE packets we receive
    peer_call_id: int              # the peer's: the key we put in the GRE packets we send
    peer_rwin: int
    peer_ppd: int
    connect_speed: int


@dataclass(frozen=True)
class CallCleared(Event):
    call_id: int
    peer_call_id: int
    result: int                    # CDN/OCRP Result Code (0 if none applies)
    error: int = 0
    cause: int = 0
    stats: bytes = b""             # CDN Call Statistics
    reason: str = ""
    by_peer: bool = False
    established: bool = True       # False: the call never came up (OCRP refused, timeout)


@dataclass(frozen=True)
class LinkInfo(Event):
    call_id: int
    send_accm: int
    receive_accm: int


@dataclass(frozen=True)
class WanError(Event):
    call_id: int
    crc_errors: int
    framing_errors: int
    hardware_overruns: int
    buffer_overruns: int
    timeout_errors: int
    alignment_errors: int


@dataclass(frozen=True)
class EchoTimeout(Event):
    reason: str = "no Echo-Reply"


@dataclass(frozen=True)
class ControlClosed(Event):
    reason: str
    by_peer: bool = False
    error: ProtocolError | None = field(default=None, compare=False)


# --- call IDs ---------------------------------------------------------------------------

class CallIdsExhausted(LocalProtocolError):
    """Every call ID is in use or in quarantine."""


class CallIdAllocator:
    """Our call IDs: unique (share one allocator per server), unpredictable (random from the
    injected rng: GRE keys are the only thing binding a GRE packet to a call) and not reused
    while stale GRE for a released call may still arrive (``quarantine`` seconds).
    Call ID 0 is never handed out: pptpd uses it for every call, and a GRE key of 0 is what
    a confused peer sends.

    The quarantine must not be a resource a peer can fill: PPTP control runs before any PPP
    login, so an unauthenticated peer can have calls accepted and cleared as fast as it likes
    (issue 10: 65 520 IDs in 50 s, then no call for anyone).  A server therefore builds its
    allocator with the three bounds below (the defaults keep the plain behaviour):

    * ``quarantine_idle=False``: only an ID whose call carried GRE from the peer (the owner
      says so with :meth:`mark_active`) is quarantined; an ID that never saw a GRE packet
      can have no stale GRE in flight and is free again at once.
    * ``per_owner``: at most that many quarantined IDs per owner (the peer's address, given
      to :meth:`release`); beyond it the owner's oldest goes free early.
    * ``reuse_oldest=True``: when no ID is free, the oldest quarantined one is handed out
      rather than raising :class:`CallIdsExhausted` (stale GRE for it would still have to
      come from that call's peer address); only 65 535 live calls exhaust the space.
    """

    def __init__(self, rng: random.Random, quarantine: float = 60.0, *, tries: int = 64,
                 first: int = 1, last: int = 0xFFFF, quarantine_idle: bool = True,
                 per_owner: int = 0, reuse_oldest: bool = False):
        if not 1 <= first <= last <= 0xFFFF:
            raise ValueError("call ID range must lie within 1..65535")
        if per_owner < 0:
            raise ValueError("per_owner must be >= 0 (0: no per-owner cap)")
        self._rng = rng
        self.quarantine = quarantine
        self._tries = tries
        self.first, self.last = first, last
        self.quarantine_idle = quarantine_idle
        self.per_owner = per_owner
        self.reuse_oldest = reuse_oldest
        self._in_use: set[int] = set()
        self._active: set[int] = set()                    # in use and carried GRE
        self._released: dict[int, tuple[float, str]] = {}  # call ID -> (usable again at, owner)
        # release order (at, call ID), globally and per owner; entries whose ID left the
        # quarantine early are skipped when met (the dict above is the truth)
        self._order: collections.deque[tuple[float, int]] = collections.deque()
        self._owners: dict[str, collections.deque[tuple[float, int]]] = {}
        self.stats: collections.Counter[str] = collections.Counter()

    @classmethod
    def for_pac(cls, rng: random.Random, quarantine: float = 60.0, *,
                per_owner: int = 256) -> "CallIdAllocator":
        """The allocator a server shares between its control connections: quarantine only
        IDs that carried GRE, at most ``per_owner`` per peer address, reuse the oldest
        rather than run out."""
        return cls(rng, quarantine, quarantine_idle=False, per_owner=per_owner,
                   reuse_oldest=True)

    def _quarantined(self, entry: tuple[float, int]) -> bool:
        at, call_id = entry
        held = self._released.get(call_id)
        return held is not None and held[0] == at

    def _unquarantine(self, call_id: int) -> None:
        at, owner = self._released.pop(call_id)
        queue = self._owners.get(owner)
        if queue is None:
            return
        while queue and not self._quarantined(queue[0]):
            queue.popleft()
        if not queue:
            del self._owners[owner]

    def _expire(self, now: float) -> None:
        while self._order and self._order[0][0] <= now:
            entry = self._order.popleft()
            if self._quarantined(entry):
                self._unquarantine(entry[1])

    def _take_oldest(self) -> int | None:
        """The longest-quarantined ID, out of quarantine (None: nothing quarantined)."""
        while self._order:
            entry = self._order.popleft()
            if self._quarantined(entry):
                self._unquarantine(entry[1])
                return entry[1]
        return None

    def available(self, call_id: int, now: float) -> bool:
        self._expire(now)
        return self.first <= call_id <= self.last and call_id not in self._in_use \
            and call_id not in self._released

    def allocate(self, now: float) -> int:
        self._expire(now)
        first, size = self.first, self.last - self.first + 1
        for _ in range(self._tries):
            call_id = self._rng.randrange(first, first + size)
            if call_id not in self._in_use and call_id not in self._released:
                self._in_use.add(call_id)
                return call_id
        start = self._rng.randrange(first, first + size)   # nearly full: bounded linear scan
        for i in range(size):
            call_id = first + (start - first + i) % size
            if call_id not in self._in_use and call_id not in self._released:
                self._in_use.add(call_id)
                return call_id
        if self.reuse_oldest:
            oldest = self._take_oldest()
            if oldest is not None:
                self.stats["reused_early"] += 1
                self._in_use.add(oldest)
                return oldest
        raise CallIdsExhausted("no free call ID")

    def reserve(self, call_id: int, now: float) -> None:
        """Take a specific call ID (tests, or an owner that picks its own)."""
        if not self.available(call_id, now):
            raise CallIdsExhausted(f"call ID {call_id} is in use or in quarantine")
        self._in_use.add(call_id)

    def mark_active(self, call_id: int) -> None:
        """GRE from the peer arrived for this call: quarantine its ID when it is released."""
        if call_id in self._in_use:
            self._active.add(call_id)

    def release(self, call_id: int, now: float, owner: str = "") -> None:
        """Give ``call_id`` back; ``owner`` (the peer's address) is whose quarantine it
        counts against."""
        if call_id not in self._in_use:
            return
        self._in_use.discard(call_id)
        active = call_id in self._active
        self._active.discard(call_id)
        if not (active or self.quarantine_idle) or self.quarantine <= 0:
            self.stats["released_idle"] += 1
            return
        self._expire(now)
        at = now + self.quarantine
        self._released[call_id] = (at, owner)
        self._order.append((at, call_id))
        queue = self._owners.setdefault(owner, collections.deque())
        queue.append((at, call_id))
        if self.per_owner:
            while len(self._owners_live(queue)) > self.per_owner:
                _, oldest = queue[0]
                self.stats["owner_cap"] += 1
                self._unquarantine(oldest)        # pops it (and any stale heads) off queue

    def _owners_live(self, queue: collections.deque[tuple[float, int]]) -> collections.deque[tuple[float, int]]:
        """``queue`` without stale heads (its length then bounds the owner's quarantine)."""
        while queue and not self._quarantined(queue[0]):
            queue.popleft()
        return queue

    def quarantined(self, owner: str | None = None) -> int:
        """How many IDs wait in quarantine (of ``owner``, or of everyone)."""
        if owner is None:
            return len(self._released)
        return sum(1 for _, o in self._released.values() if o == owner)

    def __len__(self) -> int:
        return len(self._in_use)


# --- the connection ---------------------------------------------------------------------

@dataclass
class _Call:
    call_id: int | None
    peer_call_id: int
    state: CallState
    deadline: float | None
    owned_id: bool                    # we allocated call_id from our allocator: release it
    request_id: int = 0
    clear_requested: bool = False     # PAC: CCRQ arrived before the owner answered the OCRQ
    awaiting_reply: bool = False      # PNS: OCRQ sent, no OCRP yet (even if clearing since)
    peer_rwin: int = 0
    peer_ppd: int = 0
    connect_speed: int = 0

    @property
    def id(self) -> int:
        """Our call ID.  Only a PAC call still waiting for its owner (WAIT_ACCEPT) has none,
        and the code asking for it never holds one of those."""
        if self.call_id is None:
            raise LocalProtocolError(f"call from peer call {self.peer_call_id} has no call ID "
                                     f"yet ({self.state.value})")
        return self.call_id


_SUCCESS = 0   # Result Code 0: success for Windows/Android, treated like the RFC's 1


def _reached(now: float, deadline: float | None) -> bool:
    """A timer with ``deadline`` is due at ``now``; None is a timer that is off (its
    timeout configured as 0)."""
    return deadline is not None and now >= deadline


def _came_up(call: _Call) -> bool:
    """The call got as far as an answered Outgoing-Call-Request (``CallCleared.established``):
    not a call still waiting for its reply -- nor a PNS call cleared before the reply came
    (WAIT_DISCONNECT with ``awaiting_reply``)."""
    return not call.awaiting_reply and call.state not in (CallState.WAIT_REPLY,
                                                          CallState.WAIT_ACCEPT)


def _ok(result: int) -> bool:
    return result in (1, _SUCCESS)


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


class ControlConnection:
    """One PPTP control connection (one TCP connection), in either role."""

    def __init__(self, role: Role, config: ControlConfig | None = None, now: float = 0.0,
                 rng: random.Random | None = None, allocator: CallIdAllocator | None = None):
        self.role = Role(role)
        self.config = config or ControlConfig()
        self._rng = rng if rng is not None else random.Random()
        self.allocator = allocator if allocator is not None else CallIdAllocator(self._rng)
        self._now = now
        self._framer = PptpFramer()
        self._out = bytearray()
        self._events: collections.deque[Event] = collections.deque()
        self._calls: list[_Call] = []          # small: ≤ max_calls, kept in creation order
        self._next_request = 1
        # requests whose call died before the owner answered (request ID -> why): answering
        # them later is a race, not a bug, so it must not raise
        self._gone_requests: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._serial = 0
        self._echo_id = self._rng.randrange(0, 1 << 32)
        self._echo_outstanding: tuple[int, float] | None = None   # (identifier, sent at)
        self._last_rx = now
        self._partial_since: float | None = None
        self._state_deadline: float | None = None
        self.stats: collections.Counter[str] = collections.Counter()
        self.peer: m.SCCRQ | m.SCCRP | None = None
        # whose quarantine our released call IDs count against (the owner sets the peer's
        # address here once it knows it; see CallIdAllocator)
        self.source = ""
        self._call_tokens = float(self.config.call_burst)
        self._tokens_at = now
        if self.role is Role.PAC:
            self.state = State.WAIT_CTL_REQUEST     # a peer that connects and says nothing
            self._state_deadline = self._after(now, self.config.setup_timeout)
        else:
            self.state = State.IDLE

    # --- public API: pull side -------------------------------------------------------
    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        out = list(self._events)
        self._events.clear()
        return out

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def calls(self) -> dict[int, CallState]:
        """Our call ID -> state, for the calls that have one."""
        return {c.call_id: c.state for c in self._calls if c.call_id is not None}

    def get_timer(self) -> float | None:
        if self.state is State.CLOSED:
            return None
        deadlines = [self._state_deadline, self._keepalive_deadline()]
        if self._partial_since is not None:
            deadlines.append(self._after(self._partial_since, self.config.setup_timeout))
        deadlines.extend(c.deadline for c in self._calls)
        due = [d for d in deadlines if d is not None]
        return min(due) if due else None

    # --- public API: input -----------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from TCP; ``b""`` means the peer closed its side (EOF)."""
        self._now = now
        if self.state is State.CLOSED:
            return
        if not data:
            self.connection_lost(now)
            return
        self._last_rx = now
        try:
            self._framer.feed(data)
            for msg in self._framer:
                self._dispatch(msg, now)
                if self.closed:          # the message closed us
                    return
        except PptpDecodeError as exc:
            self.stats["decode_error"] += 1
            log.warning("PPTP control stream error: %s", exc)
            self._close(f"malformed control message: {exc}", now, error=exc, by_peer=True)
            return
        if not self._framer.pending:
            self._partial_since = None
        elif self._partial_since is None:
            self._partial_since = now

    def connection_lost(self, now: float) -> None:
        """TCP is gone.  A PNS call waiting for its Call-Disconnect-Notify counts as cleared
        normally: pptpd answers Call-Clear-Request by closing TCP."""
        self._now = now
        if self.state is State.CLOSED:
            return
        for call in list(self._calls):
            if call.state is CallState.WAIT_DISCONNECT:
                self._drop_call(call, now, result=m.CallDisconnectResult.REQUEST,
                                reason="TCP closed after Call-Clear-Request", by_peer=True,
                                established=_came_up(call))
        stopping = self.state is State.WAIT_STOP_REPLY
        self._close("peer closed the control connection" if not stopping
                    else "control connection stopped", now, by_peer=True)

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self.state is State.CLOSED:
            return
        # asyncio may fire a timer up to its clock resolution early: compare with a margin
        due = now + _TIMER_SLACK
        if self._state_deadline is not None and due >= self._state_deadline:
            what = {State.WAIT_CTL_REQUEST: "no Start-Control-Connection-Request",
                    State.WAIT_CTL_REPLY: "no Start-Control-Connection-Reply",
                    State.WAIT_STOP_REPLY: "no Stop-Control-Connection-Reply"}.get(
                        self.state, "timeout")
            self.stats["timeout"] += 1
            self._close(f"timeout: {what}", now)
            return
        if self._partial_since is not None and \
                _reached(due, self._after(self._partial_since, self.config.setup_timeout)):
            self.stats["timeout"] += 1
            self._close("timeout: peer stopped in the middle of a control message", now)
            return
        if self.state is State.ESTABLISHED:
            if self._echo_outstanding is not None:
                if _reached(due, self._after(self._echo_outstanding[1],
                                             self.config.echo_timeout)):
                    self.stats["echo_timeout"] += 1
                    self._events.append(EchoTimeout(
                        f"no Echo-Reply within {self.config.echo_timeout:g} s"))
                    self._close("echo timeout", now)
                    return
            elif self.config.echo_interval and due >= self._last_rx + self.config.echo_interval:
                self._echo_id = (self._echo_id + 1) & 0xFFFFFFFF
                self._echo_outstanding = (self._echo_id, now)
                self._send(m.EchoRequest(identifier=self._echo_id))
        for call in list(self._calls):
            if call.deadline is None or due < call.deadline:
                continue
            if call.state is CallState.WAIT_REPLY:
                # RFC 2637 §3.2 (PNS): no OCRP -> clear the call
                self._send(m.CallClearRequest(call_id=call.id))
                self._drop_call(call, now, result=m.OutgoingCallResult.TIME_OUT,
                                reason="timeout: no Outgoing-Call-Reply", established=False)
            elif call.state is CallState.WAIT_DISCONNECT:
                self._drop_call(call, now, result=m.CallDisconnectResult.REQUEST,
                                reason="timeout: no Call-Disconnect-Notify",
                                established=_came_up(call))
            elif call.state is CallState.WAIT_ACCEPT:
                self._send(m.OCRP(call_id=0, peer_call_id=call.peer_call_id,
                                  result_code=m.OutgoingCallResult.TIME_OUT))
                self._drop_call(call, now, result=m.OutgoingCallResult.TIME_OUT,
                                reason="the call request was not answered in time")
                log.warning("OCRQ from peer call %d not answered by the owner: refused",
                            call.peer_call_id)

    # --- public API: commands --------------------------------------------------------
    def start(self, now: float | None = None) -> None:
        """PNS: send Start-Control-Connection-Request."""
        now = self._clock(now)
        if self.role is not Role.PNS:
            raise LocalProtocolError("only the PNS starts the control connection")
        if self.state is not State.IDLE:
            raise LocalProtocolError(f"start() in state {self.state.value}")
        cfg = self.config
        self._send(m.SCCRQ(host_name=_as_bytes(cfg.host_name),
                           vendor_string=_as_bytes(cfg.vendor_string),
                           framing_capabilities=cfg.framing_capabilities,
                           bearer_capabilities=cfg.bearer_capabilities,
                           maximum_channels=cfg.maximum_channels,
                           firmware_revision=cfg.firmware_revision))
        self.state = State.WAIT_CTL_REPLY
        self._state_deadline = self._after(now, cfg.setup_timeout)

    def place_call(self, now: float | None = None, *, call_id: int | None = None,
                   phone_number: bytes | str = b"", subaddress: bytes | str = b"",
                   minimum_bps: int | None = None, maximum_bps: int | None = None,
                   bearer_type: int = m.BearerType.ANY, framing_type: int = m.FramingType.ANY,
                   recv_window: int | None = None, processing_delay: int | None = None) -> int:
        """PNS: send Outgoing-Call-Request; returns our call ID (``CallEstablished`` or
        ``CallCleared`` follows)."""
        now = self._clock(now)
        if self.role is not Role.PNS:
            raise LocalProtocolError("only the PNS places outgoing calls")
        self._require_established("place_call")
        if len(self._calls) >= self.config.max_calls:
            raise LocalProtocolError("too many calls on this control connection")
        if call_id is None:
            call_id = self.allocator.allocate(now)
        else:
            self.allocator.reserve(call_id, now)
        cfg = self.config
        serial, self._serial = self._serial, (self._serial + 1) & 0xFFFF
        self._send(m.OCRQ(
            call_id=call_id, call_serial_number=serial,
            minimum_bps=cfg.minimum_bps if minimum_bps is None else minimum_bps,
            maximum_bps=cfg.maximum_bps if maximum_bps is None else maximum_bps,
            bearer_type=bearer_type, framing_type=framing_type,
            packet_recv_window_size=cfg.recv_window if recv_window is None else recv_window,
            packet_processing_delay=(cfg.processing_delay if processing_delay is None
                                     else processing_delay),
            phone_number=_as_bytes(phone_number), subaddress=_as_bytes(subaddress)))
        self._calls.append(_Call(call_id, 0, CallState.WAIT_REPLY,
                                 self._after(now, cfg.setup_timeout), owned_id=True,
                                 awaiting_reply=True))
        return call_id

    def accept_call(self, req: CallRequested, call_id: int | None = None,
                    now: float | None = None, *, connect_speed: int | None = None,
                    recv_window: int | None = None,
                    processing_delay: int | None = None) -> int:
        """PAC: answer a ``CallRequested`` with Outgoing-Call-Reply "Connected".  With
        ``call_id`` None our call ID comes from (and goes back to) ``self.allocator``;
        an explicit one stays the owner's to release."""
        now = self._clock(now)
        call = self._pending(req)
        if call is None:       # the call died first (timeout, CCRQ, close): report it ended
            reason = self._gone_requests.pop(req.request_id)
            call_id = 0 if call_id is None else call_id
            self._events.append(CallCleared(call_id, req.peer_call_id,
                                            m.CallDisconnectResult.GENERAL_ERROR,
                                            reason=reason, by_peer=True, established=False))
            return call_id
        owned = call_id is None
        if call_id is None:
            call_id = self.allocator.allocate(now)
        if not 0 <= call_id <= 0xFFFF or call_id in self.calls():
            raise LocalProtocolError(f"call ID {call_id} invalid or already used here")
        cfg = self.config
        speed = cfg.connect_speed if connect_speed is None else connect_speed
        self._send(m.OCRP(
            call_id=call_id, peer_call_id=call.peer_call_id,
            result_code=m.OutgoingCallResult.CONNECTED, connect_speed=speed,
            packet_recv_window_size=cfg.recv_window if recv_window is None else recv_window,
            packet_processing_delay=(cfg.processing_delay if processing_delay is None
                                     else processing_delay)))
        call.call_id, call.owned_id = call_id, owned
        call.state, call.deadline, call.connect_speed = CallState.ESTABLISHED, None, speed
        self._events.append(CallEstablished(call_id, call.peer_call_id, call.peer_rwin,
                                            call.peer_ppd, speed))
        if call.clear_requested:
            self._send(m.CDN(call_id=call_id, result_code=m.CallDisconnectResult.REQUEST))
            self._drop_call(call, now, result=m.CallDisconnectResult.REQUEST, by_peer=True,
                            reason="peer sent Call-Clear-Request")
        return call_id

    def reject_call(self, req: CallRequested, result: int = m.OutgoingCallResult.GENERAL_ERROR,
                    now: float | None = None, *, error: int | None = None,
                    cause: int = 0) -> None:
        """PAC: answer a ``CallRequested`` with an Outgoing-Call-Reply refusal (the Error
        Code defaults to No-Resource for General Error, None otherwise)."""
        self._clock(now)
        call = self._pending(req)
        if call is None:
            self._gone_requests.pop(req.request_id)
            return
        if error is None:
            error = (m.GeneralErrorCode.NO_RESOURCE
                     if result == m.OutgoingCallResult.GENERAL_ERROR else m.GeneralErrorCode.NONE)
        self._send(m.OCRP(call_id=0, peer_call_id=call.peer_call_id, result_code=result,
                          error_code=error, cause_code=cause))
        self._calls.remove(call)

    def clear_call(self, call_id: int, reason: str = "", now: float | None = None, *,
                   result: int | None = None, error: int = 0, cause: int = 0,
                   stats: bytes = b"") -> None:
        """PNS: Call-Clear-Request (``CallCleared`` follows the peer's CDN or TCP close).
        PAC: Call-Disconnect-Notify (default result Admin Shutdown, as pptpd) and
        ``CallCleared`` at once.  Clearing an unknown or already-clearing call is a no-op."""
        now = self._clock(now)
        call = self._by_call_id(call_id)
        if call is None or self.state is State.CLOSED:
            return
        if self.role is Role.PNS:
            if call.state is CallState.WAIT_DISCONNECT:
                return
            self._send(m.CallClearRequest(call_id=call_id))
            call.state = CallState.WAIT_DISCONNECT
            call.deadline = self._after(now, self.config.clear_timeout)
            if reason:
                log.info("call %d: clearing: %s", call_id, reason)
            return
        result = m.CallDisconnectResult.ADMIN_SHUTDOWN if result is None else result
        self._send(m.CDN(call_id=call_id, result_code=result, error_code=error, cause_code=cause,
                         call_statistics=bytes(stats)[:128]))
        self._drop_call(call, now, result=result, error=error, cause=cause,
                        stats=bytes(stats)[:128],
                        reason=reason or "cleared locally")

    def set_link_info(self, call_id: int, send_accm: int = 0xFFFFFFFF,
                      receive_accm: int = 0xFFFFFFFF, now: float | None = None) -> None:
        """Set-Link-Info for one of our calls (RFC 2637 §2.15: ACCMs agreed by LCP)."""
        self._clock(now)
        call = self._by_call_id(call_id)
        if call is None or call.state is not CallState.ESTABLISHED:
            raise LocalProtocolError(f"set_link_info: call {call_id} is not established")
        self._send(m.SetLinkInfo(peer_call_id=call.peer_call_id, send_accm=send_accm,
                                 receive_accm=receive_accm))

    def stop(self, reason: str | int = m.StopCtrlConnReason.NONE,
             now: float | None = None) -> None:
        """Clear every call (PAC: CDN Admin-Shutdown, PNS: Call-Clear-Request), then
        Stop-Control-Connection-Request; ``ControlClosed`` follows the reply or a timeout.
        ``reason`` is a StopCCRQ Reason code or free text for the log (Reason 1, None)."""
        now = self._clock(now)
        if self.state in (State.CLOSED, State.WAIT_STOP_REPLY):
            return
        code: int
        if isinstance(reason, str):
            code, text = m.StopCtrlConnReason.NONE, reason
        else:
            code, text = reason, f"reason {int(reason)}"
        if self.state in (State.IDLE, State.WAIT_CTL_REQUEST, State.WAIT_CTL_REPLY):
            self._close(f"stopped before the control connection was up: {text}", now)
            return
        for call in list(self._calls):
            if call.state is CallState.WAIT_ACCEPT:
                self._send(m.OCRP(call_id=0, peer_call_id=call.peer_call_id,
                                  result_code=m.OutgoingCallResult.GENERAL_ERROR,
                                  error_code=m.GeneralErrorCode.NO_RESOURCE))
                self._drop_call(call, now, result=m.OutgoingCallResult.GENERAL_ERROR,
                                reason=f"control connection stopping: {text}")
                continue
            if self.role is Role.PAC:
                self._send(m.CDN(call_id=call.id,
                                 result_code=m.CallDisconnectResult.ADMIN_SHUTDOWN))
            elif call.state is not CallState.WAIT_DISCONNECT:
                self._send(m.CallClearRequest(call_id=call.id))
            self._drop_call(call, now, result=m.CallDisconnectResult.ADMIN_SHUTDOWN,
                            reason=f"control connection stopping: {text}",
                            established=_came_up(call))
        self._send(m.StopCCRQ(reason=code))
        self.state = State.WAIT_STOP_REPLY
        self._state_deadline = self._after(now, self.config.stop_timeout)
        log.info("stopping control connection: %s", text)

    # --- dispatch ----------------------------------------------------------------------
    def _dispatch(self, msg: m.Message, now: float) -> None:
        self.stats["rx"] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("rcvd %s", msg.describe())
        # one case per message type, so a handler's parameter type is checked against it
        match msg:
            case m.SCCRQ():
                self._on_StartControlConnectionRequest(msg, now)
            case m.SCCRP():
                self._on_StartControlConnectionReply(msg, now)
            case m.StopCCRQ():
                self._on_StopControlConnectionRequest(msg, now)
            case m.StopCCRP():
                self._on_StopControlConnectionReply(msg, now)
            case m.EchoRequest():
                self._on_EchoRequest(msg, now)
            case m.EchoReply():
                self._on_EchoReply(msg, now)
            case m.OCRQ():
                self._on_OutgoingCallRequest(msg, now)
            case m.OCRP():
                self._on_OutgoingCallReply(msg, now)
            case m.ICRQ():
                self._on_IncomingCallRequest(msg, now)
            case m.ICRP():
                self._on_IncomingCallReply(msg, now)
            case m.ICCN():
                self._on_IncomingCallConnected(msg, now)
            case m.CCRQ():
                self._on_CallClearRequest(msg, now)
            case m.CDN():
                self._on_CallDisconnectNotify(msg, now)
            case m.WEN():
                self._on_WanErrorNotify(msg, now)
            case m.SLI():
                self._on_SetLinkInfo(msg, now)
            case _:     # decode() makes only the 15 types above
                raise LocalProtocolError(f"no handler for {type(msg).__name__}")

    def _wrong_state(self, msg: m.Message, now: float, *, close_if_not_up: bool = True) -> None:
        self.stats["wrong_state"] += 1
        name = type(msg).__name__
        if close_if_not_up and self.state in (State.WAIT_CTL_REQUEST, State.WAIT_CTL_REPLY):
            log.warning("%s before the control connection is up (%s): closing", name,
                        self.state.value)
            self._close(f"unexpected {name} in state {self.state.value}", now, by_peer=True)
        else:
            log.info("ignoring %s in state %s (role %s)", name, self.state.value,
                     self.role.value)

    # control connection management --------------------------------------------------
    def _on_StartControlConnectionRequest(self, msg: m.SCCRQ, now: float) -> None:
        if self.role is not Role.PAC or self.state is not State.WAIT_CTL_REQUEST:
            if self.state is State.ESTABLISHED:
                # RFC 2637 §2.2 Result Code 3: command channel already exists
                self._send(self._sccrp(m.StartCtrlConnResult.ALREADY_EXISTS))
            self._wrong_state(msg, now)
            return
        if msg.protocol_version >> 8 != m.PROTOCOL_VERSION >> 8:
            self._send(self._sccrp(m.StartCtrlConnResult.BAD_PROTOCOL_VERSION))
            self._close(f"peer protocol version 0x{msg.protocol_version:04X} not supported",
                        now, by_peer=True)
            return
        self._send(self._sccrp(m.StartCtrlConnResult.SUCCESSFUL))
        self._established(msg, now)

    def _sccrp(self, result: int) -> m.SCCRP:
        cfg = self.config
        return m.SCCRP(result_code=result, host_name=_as_bytes(cfg.host_name),
                       vendor_string=_as_bytes(cfg.vendor_string),
                       framing_capabilities=cfg.framing_capabilities,
                       bearer_capabilities=cfg.bearer_capabilities,
                       maximum_channels=cfg.maximum_channels,
                       firmware_revision=cfg.firmware_revision)

    def _on_StartControlConnectionReply(self, msg: m.SCCRP, now: float) -> None:
        if self.role is not Role.PNS or self.state is not State.WAIT_CTL_REPLY:
            self._wrong_state(msg, now)
            return
        if not _ok(msg.result_code):
            self._close(f"Start-Control-Connection-Reply refused: result {int(msg.result_code)}"
                        f" error {int(msg.error_code)}", now, by_peer=True)
            return
        self._established(msg, now)

    def _established(self, msg: m.SCCRQ | m.SCCRP, now: float) -> None:
        self.peer = msg
        self.state = State.ESTABLISHED
        self._state_deadline = None
        self._events.append(ControlConnected(
            msg.host_name, msg.vendor_string, msg.protocol_version, msg.firmware_revision,
            int(msg.framing_capabilities), int(msg.bearer_capabilities), msg.maximum_channels))

    def _on_StopControlConnectionRequest(self, msg: m.StopCCRQ, now: float) -> None:
        # RFC 2637 §2.3: answer, and all calls are implicitly cleared.  Valid in any state.
        self._send(m.StopCCRP(result_code=m.StopCtrlConnResult.OK))
        for call in list(self._calls):
            self._drop_call(call, now, result=m.CallDisconnectResult.ADMIN_SHUTDOWN,
                            reason="peer stopped the control connection", by_peer=True,
                            established=_came_up(call))
        reason = msg.reason.name.lower() if isinstance(msg.reason, enum.Enum) else msg.reason
        self._close(f"peer sent Stop-Control-Connection-Request ({reason})", now, by_peer=True)

    def _on_StopControlConnectionReply(self, msg: m.StopCCRP, now: float) -> None:
        if self.state is not State.WAIT_STOP_REPLY:
            self._wrong_state(msg, now, close_if_not_up=False)
            return
        self._close("control connection stopped", now)

    def _on_EchoRequest(self, msg: m.EchoRequest, now: float) -> None:
        self._send(m.EchoReply(identifier=msg.identifier, result_code=m.EchoResult.OK))

    def _on_EchoReply(self, msg: m.EchoReply, now: float) -> None:
        if self._echo_outstanding is not None and msg.identifier == self._echo_outstanding[0]:
            self._echo_outstanding = None
            self.stats["echo_ok"] += 1
        else:
            self._wrong_state(msg, now, close_if_not_up=False)

    # calls ------------------------------------------------------------------------------
    def _on_OutgoingCallRequest(self, msg: m.OCRQ, now: float) -> None:
        if self.role is not Role.PAC or self.state is not State.ESTABLISHED:
            not_up = self.state is not State.ESTABLISHED
            self._send(m.OCRP(call_id=0, peer_call_id=msg.call_id,
                              result_code=m.OutgoingCallResult.GENERAL_ERROR,
                              error_code=(m.GeneralErrorCode.NOT_CONNECTED if not_up
                                          else m.GeneralErrorCode.PAC_ERROR)))
            self._wrong_state(msg, now, close_if_not_up=False)
            return
        if len(self._calls) >= self.config.max_calls or not self._call_token(now):
            self.stats["calls_refused" if len(self._calls) >= self.config.max_calls
                       else "calls_rate_limited"] += 1
            if self.stats["calls_refused"] + self.stats["calls_rate_limited"] == 1:
                log.warning("peer %s: Outgoing-Call-Request refused (%d calls, at most %d; "
                            "%g per s): later ones are only counted", self.source or "?",
                            len(self._calls), self.config.max_calls, self.config.call_rate)
            self._send(m.OCRP(call_id=0, peer_call_id=msg.call_id,
                              result_code=m.OutgoingCallResult.GENERAL_ERROR,
                              error_code=m.GeneralErrorCode.NO_RESOURCE))
            return
        request_id = self._next_request
        self._next_request += 1
        self._calls.append(_Call(None, msg.call_id, CallState.WAIT_ACCEPT,
                                 self._after(now, self.config.setup_timeout), owned_id=False,
                                 request_id=request_id, peer_rwin=msg.packet_recv_window_size,
                                 peer_ppd=msg.packet_processing_delay))
        self._events.append(CallRequested(
            request_id, msg.call_id, msg.call_serial_number, msg.packet_recv_window_size,
            msg.packet_processing_delay, msg.minimum_bps, msg.maximum_bps,
            int(msg.bearer_type), int(msg.framing_type), msg.phone_number, msg.subaddress))

    def _call_token(self, now: float) -> bool:
        """Take one Outgoing-Call-Request token (False: over ``call_rate``)."""
        rate = self.config.call_rate
        if rate <= 0:
            return True
        self._call_tokens = min(float(self.config.call_burst),
                                self._call_tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._call_tokens < 1.0:
            return False
        self._call_tokens -= 1.0
        return True

    def _on_OutgoingCallReply(self, msg: m.OCRP, now: float) -> None:
        call = next((c for c in self._calls if c.call_id == msg.peer_call_id
                     and c.awaiting_reply), None)
        if self.role is not Role.PNS or call is None:
            self._wrong_state(msg, now)
            return
        if call.state is CallState.WAIT_DISCONNECT and _ok(msg.result_code):
            # cleared before the reply came: learn the PAC's call ID so its CDN matches
            call.awaiting_reply = False
            call.peer_call_id = msg.call_id
            return
        # a refusal ends the call, cleared meanwhile or not: it never came up, and the PAC
        # has no call left to send a Call-Disconnect-Notify for
        call.awaiting_reply = False
        if not _ok(msg.result_code):
            self._drop_call(call, now, result=msg.result_code, error=msg.error_code,
                            cause=msg.cause_code, peer_call_id=msg.call_id, by_peer=True,
                            established=False,
                            reason=f"Outgoing-Call-Reply refused: result {int(msg.result_code)}")
            return
        call.peer_call_id = msg.call_id
        call.state, call.deadline = CallState.ESTABLISHED, None
        call.peer_rwin, call.peer_ppd = msg.packet_recv_window_size, msg.packet_processing_delay
        call.connect_speed = msg.connect_speed
        self._events.append(CallEstablished(call.id, call.peer_call_id, call.peer_rwin,
                                            call.peer_ppd, call.connect_speed))

    def _on_IncomingCallRequest(self, msg: m.ICRQ, now: float) -> None:
        # We place and accept no incoming calls (RFC 2637 §3.3): refuse it.
        self.stats["incoming_refused"] += 1
        self._send(m.ICRP(call_id=0, peer_call_id=msg.call_id,
                          result_code=m.IncomingCallResult.DO_NOT_ACCEPT))
        log.info("refused Incoming-Call-Request for peer call %d", msg.call_id)

    def _on_IncomingCallReply(self, msg: m.ICRP, now: float) -> None:
        self._wrong_state(msg, now)          # we never send ICRQ

    def _on_IncomingCallConnected(self, msg: m.ICCN, now: float) -> None:
        self._wrong_state(msg, now)          # we never accept an incoming call

    def _on_CallClearRequest(self, msg: m.CCRQ, now: float) -> None:
        # PNS -> PAC; Call ID is the PNS's, i.e. our peer call ID (RFC 2637 §2.12)
        call = next((c for c in self._calls if c.peer_call_id == msg.call_id
                     and c.state is CallState.ESTABLISHED), None)
        pending = next((c for c in self._calls if c.peer_call_id == msg.call_id
                        and c.state is CallState.WAIT_ACCEPT), None)
        if self.role is Role.PAC and call is None and pending is not None:
            pending.clear_requested = True     # answered once the owner accepts (or rejects)
            return
        if self.role is not Role.PAC or call is None:
            self._wrong_state(msg, now)
            return
        self._send(m.CDN(call_id=call.id, result_code=m.CallDisconnectResult.REQUEST))
        self._drop_call(call, now, result=m.CallDisconnectResult.REQUEST, by_peer=True,
                        reason="peer sent Call-Clear-Request")

    def _on_CallDisconnectNotify(self, msg: m.CDN, now: float) -> None:
        # PAC -> PNS; Call ID is the PAC's.  pptpd gives every call ID 0: prefer the call
        # we asked to clear, then any established one.
        candidates = [c for c in self._calls if c.peer_call_id == msg.call_id
                      and c.state in (CallState.ESTABLISHED, CallState.WAIT_DISCONNECT)]
        candidates.sort(key=lambda c: c.state is not CallState.WAIT_DISCONNECT)
        if self.role is not Role.PNS or not candidates:
            self._wrong_state(msg, now)
            return
        result = msg.result_code
        self._drop_call(candidates[0], now, result=result, error=msg.error_code,
                        cause=msg.cause_code, stats=msg.call_statistics, by_peer=True,
                        established=_came_up(candidates[0]),
                        reason="peer sent Call-Disconnect-Notify"
                        + (f" ({result.name.lower()})" if isinstance(result, enum.Enum) else ""))

    def _on_WanErrorNotify(self, msg: m.WEN, now: float) -> None:
        call = self._by_call_id(msg.peer_call_id)
        if call is None or call.state is not CallState.ESTABLISHED:
            self._wrong_state(msg, now)
            return
        self._events.append(WanError(call.id, msg.crc_errors, msg.framing_errors,
                                     msg.hardware_overruns, msg.buffer_overruns,
                                     msg.timeout_errors, msg.alignment_errors))

    def _on_SetLinkInfo(self, msg: m.SLI, now: float) -> None:
        # Meant PNS -> PAC, accepted both ways, any ACCM (PPTP carries no async framing).
        call = self._by_call_id(msg.peer_call_id)
        if call is None or call.state is not CallState.ESTABLISHED:
            if len([c for c in self._calls if c.state is CallState.ESTABLISHED]) == 1 \
                    and msg.peer_call_id == 0:
                # pptp-linux's BEZEQ_ISRAEL quirk sends 0: one call, no ambiguity
                call = next(c for c in self._calls if c.state is CallState.ESTABLISHED)
            else:
                self._wrong_state(msg, now)
                return
        self._events.append(LinkInfo(call.id, msg.send_accm, msg.receive_accm))

    # --- helpers -------------------------------------------------------------------------
    def _send(self, msg: m.Message) -> None:
        if self.state is State.CLOSED:
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sent %s", msg.describe())
        self.stats["tx"] += 1
        self._out += msg.encode()
        if len(self._out) > MAX_OUTPUT:
            self._out.clear()
            self._close("peer does not read the control connection", self._now)

    def _clock(self, now: float | None) -> float:
        if now is not None:
            self._now = now
        return self._now

    @staticmethod
    def _after(now: float, delay: float | None) -> float | None:
        return now + delay if delay else None

    def _keepalive_deadline(self) -> float | None:
        if self.state is not State.ESTABLISHED:
            return None
        if self._echo_outstanding is not None:
            return self._after(self._echo_outstanding[1], self.config.echo_timeout)
        if not self.config.echo_interval:
            return None
        return self._last_rx + self.config.echo_interval

    def _require_established(self, what: str) -> None:
        if self.state is not State.ESTABLISHED:
            raise LocalProtocolError(f"{what}() in state {self.state.value}")

    def _by_call_id(self, call_id: int) -> _Call | None:
        return next((c for c in self._calls if c.call_id == call_id), None)

    def _pending(self, req: CallRequested) -> _Call | None:
        """The waiting call of ``req``; None if it died before the owner answered."""
        if self.role is not Role.PAC:
            raise LocalProtocolError("only the PAC answers Outgoing-Call-Requests")
        call = next((c for c in self._calls if c.state is CallState.WAIT_ACCEPT
                     and c.request_id == req.request_id), None)
        if call is None and req.request_id not in self._gone_requests:
            raise LocalProtocolError("this call request was already answered or never made")
        return call

    def _drop_call(self, call: _Call, now: float, *, result: int, reason: str,
                   error: int = 0, cause: int = 0, stats: bytes = b"", by_peer: bool = False,
                   established: bool = True, peer_call_id: int | None = None) -> None:
        self._calls.remove(call)
        if call.owned_id and call.call_id is not None:
            self.allocator.release(call.call_id, now, self.source)
        if call.call_id is None:           # a request the owner has not answered yet
            self._gone_requests[call.request_id] = reason
            while len(self._gone_requests) > 4 * self.config.max_calls:
                self._gone_requests.popitem(last=False)
            return
        self._events.append(CallCleared(
            call.call_id, call.peer_call_id if peer_call_id is None else peer_call_id,
            int(result), int(error), int(cause), stats, reason, by_peer, established))

    def _close(self, reason: str, now: float, *, error: ProtocolError | None = None,
               by_peer: bool = False) -> None:
        if self.state is State.CLOSED:
            return
        for call in list(self._calls):
            self._drop_call(call, now, result=m.CallDisconnectResult.GENERAL_ERROR,
                            reason=f"control connection closed: {reason}", by_peer=by_peer,
                            established=_came_up(call))
        self.state = State.CLOSED
        self._state_deadline = None
        self._partial_since = None
        self._events.append(ControlClosed(reason, by_peer, error))
        log.info("control connection closed: %s", reason)
