"""The option-negotiation automaton of RFC 1661 §4, shared by LCP and every NCP.

Theory of operation
-------------------
A control protocol (LCP, IPCP, IPV6CP, CCP) is one instance of this automaton.  It is driven
by *events* -- Up/Down from the layer below, Open/Close from the administrator (the link),
TO+/TO- from the restart timer and eleven kinds of received packet -- and answers each one,
in each of its ten *states*, with a list of *actions* and a next state.  The (state, event)
-> (actions, state) map is the RFC 1661 §4.1 state transition table, transcribed verbatim
below as text (`_RFC1661_TABLE`) and parsed at import time, so the code and the RFC can be
compared cell by cell.  Cells marked '-' are illegal events: for Up/Down/TO they are our own
bug (LocalProtocolError); for received packets (only possible before the lower layer is up)
the packet is counted and dropped.

What the table leaves to the protocol is the option handling; a subclass supplies it:

* `request_options()` -- the options of our next Configure-Request;
* `check_request(options, now)` -- a verdict (ack / nak+suggestion / reject) per option of
  the peer's Configure-Request; the automaton turns the verdicts into Configure-Ack,
  -Nak or -Reject (RFC 1661 §5.2-5.4) and into the RCR+ / RCR- event; after Max-Failure
  consecutive Naks, Naks become Rejects (§4.6);
* `request_acked(options)` -- the peer's request we just acked (commit the peer's values);
* `ack_received(options)`, `nak_received(options, now)`, `reject_received(options, now)` --
  the peer's answer to our request (already matched against our Identifier and, for Ack and
  Reject, against our options: §5.2 and §5.4 demand exact echoes);
* `handle_code(packet, now)` -- codes beyond Terminate-Ack (LCP 8-13, CCP 14-15);
* `result()` -- the frozen dataclass carried by ThisLayerUp.

The restart timer (3 s) runs in Closing, Stopping, Req-Sent, Ack-Rcvd and Ack-Sent only.
The restart counter is loaded with Max-Configure (10) before Configure-Requests and with
Max-Terminate (2) before Terminate-Requests, and decremented by each transmission; a timeout
with the counter still > 0 is TO+, otherwise TO-.

Everything is sans-I/O: methods take `now`, output is pulled with `frames_to_send()`,
`next_event()` and `get_timer()`.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import random
from typing import Any, Callable

from ..errors import DecodeError, LocalProtocolError
from .constants import Code
from .packet import Option, Packet, decode_options, encode_options

__all__ = [
    "State", "Event", "FsmConfig", "FSM", "Verdict", "OptionVerdict",
    "ProtoEvent", "ThisLayerUp", "ThisLayerDown", "ThisLayerStarted", "ThisLayerFinished",
    "TRANSITIONS", "ack", "nak", "reject",
]

log = logging.getLogger(__name__)

MAX_QUEUE = 256          # bound on queued frames and events (a link that never drains)


class State(enum.IntEnum):
    """RFC 1661 §4.2 states, numbered as in the RFC's table."""

    Initial = 0
    Starting = 1
    Closed = 2
    Stopped = 3
    Closing = 4
    Stopping = 5
    ReqSent = 6
    AckRcvd = 7
    AckSent = 8
    Opened = 9


class Event(enum.Enum):
    """RFC 1661 §4.3 events."""

    Up = "Up"
    Down = "Down"
    Open = "Open"
    Close = "Close"
    TO_plus = "TO+"
    TO_minus = "TO-"
    RCR_plus = "RCR+"
    RCR_minus = "RCR-"
    RCA = "RCA"
    RCN = "RCN"
    RTR = "RTR"
    RTA = "RTA"
    RUC = "RUC"
    RXJ_plus = "RXJ+"
    RXJ_minus = "RXJ-"
    RXR = "RXR"


# RFC 1661 §4.1, "State Transition Table", copied cell by cell.  Suffixes: r = restart option,
# x = crossed connection, p = passive option (both noted in the RFC's text; we implement the
# default behaviour: 'r' does not restart the link, 'p' is not passive).
_RFC1661_TABLE = """
      | State
      |    0         1         2         3         4         5
Events| Initial   Starting  Closed    Stopped   Closing   Stopping
------+-----------------------------------------------------------
 Up   |    2     irc,scr/6     -         -         -         -
 Down |    -         -         0       tls/1       0         1
 Open |  tls/1       1     irc,scr/6     3r        5r        5r
 Close|    0       tlf/0       2         2         4         4
  TO+ |    -         -         -         -       str/4     str/5
  TO- |    -         -         -         -       tlf/2     tlf/3
 RCR+ |    -         -       sta/2 irc,scr,sca/8   4         5
 RCR- |    -         -       sta/2 irc,scr,scn/6   4         5
 RCA  |    -         -       sta/2     sta/3       4         5
 RCN  |    -         -       sta/2     sta/3       4         5
 RTR  |    -         -       sta/2     sta/3     sta/4     sta/5
 RTA  |    -         -         2         3       tlf/2     tlf/3
 RUC  |    -         -       scj/2     scj/3     scj/4     scj/5
 RXJ+ |    -         -         2         3         4         5
 RXJ- |    -         -       tlf/2     tlf/3     tlf/2     tlf/3
 RXR  |    -         -         2         3         4         5

      | State
      |    6         7         8           9
Events| Req-Sent  Ack-Rcvd  Ack-Sent    Opened
------+-----------------------------------------
 Up   |    -         -         -           -
 Down |    1         1         1         tld/1
 Open |    6         7         8           9r
 Close|irc,str/4 irc,str/4 irc,str/4 tld,irc,str/4
  TO+ |  scr/6     scr/6     scr/8         -
  TO- |  tlf/3p    tlf/3p    tlf/3p        -
 RCR+ |  sca/8   sca,tlu/9   sca/8   tld,scr,sca/8
 RCR- |  scn/6     scn/7     scn/6   tld,scr,scn/6
 RCA  |  irc/7     scr/6x  irc,tlu/9   tld,scr/6x
 RCN  |irc,scr/6   scr/6x  irc,scr/8   tld,scr/6x
 RTR  |  sta/6     sta/6     sta/6   tld,zrc,sta/5
 RTA  |    6         6         8       tld,scr/6
 RUC  |  scj/6     scj/7     scj/8       scj/9
 RXJ+ |    6         6         8           9
 RXJ- |  tlf/3     tlf/3     tlf/3   tld,irc,str/5
 RXR  |    6         7         8         ser/9
"""

_ACTIONS = {"tlu", "tld", "tls", "tlf", "irc", "zrc", "scr", "sca", "scn", "str", "sta",
            "scj", "ser"}


def _parse_table(text: str) -> dict[tuple[State, Event], tuple[tuple[str, ...], State] | None]:
    table: dict[tuple[State, Event], tuple[tuple[str, ...], State] | None] = {}
    events = {e.value: e for e in Event}
    columns: list[int] = []
    for line in text.splitlines():
        if "|" not in line:
            continue
        head, _, cells = line.partition("|")
        head = head.strip()
        if head == "" and cells.split() and cells.split()[0].isdigit():
            columns = [int(c) for c in cells.split()]
            continue
        if head not in events:
            continue
        parts = cells.split()
        if len(parts) != len(columns):
            raise AssertionError(f"table row {head!r} has {len(parts)} cells")
        for col, cell in zip(columns, parts, strict=True):
            key = (State(col), events[head])
            if cell == "-":
                table[key] = None
                continue
            acts, _, nxt = cell.rpartition("/")
            nxt = nxt.rstrip("rpx")
            actions = tuple(acts.split(",")) if acts else ()
            if not set(actions) <= _ACTIONS:
                raise AssertionError(f"unknown action in {cell!r}")
            table[key] = (actions, State(int(nxt)))
    if len(table) != len(State) * len(Event):
        raise AssertionError("state transition table incomplete")
    return table


#: (state, event) -> (actions, next state), or None where RFC 1661 marks the event illegal.
TRANSITIONS = _parse_table(_RFC1661_TABLE)

_TIMED_STATES = frozenset({State.Closing, State.Stopping, State.ReqSent, State.AckRcvd,
                           State.AckSent})


# ---------------------------------------------------------------------------------------------
# Events out


@dataclasses.dataclass(frozen=True)
class ProtoEvent:
    """Base class of everything `next_event()` returns."""


@dataclasses.dataclass(frozen=True)
class ThisLayerUp(ProtoEvent):
    """tlu: the automaton entered Opened; `result` is what was agreed (protocol-specific)."""

    result: Any


@dataclasses.dataclass(frozen=True)
class ThisLayerDown(ProtoEvent):
    """tld: the automaton left Opened; `reason` says why (peer's Terminate text, ...),
    `trigger` which RFC 1661 event did it (RTR: the peer's Terminate-Request)."""

    reason: str = ""
    trigger: Event | None = None


@dataclasses.dataclass(frozen=True)
class ThisLayerStarted(ProtoEvent):
    """tls: this layer wants the lower layer up (call `up()` once it is)."""


@dataclasses.dataclass(frozen=True)
class ThisLayerFinished(ProtoEvent):
    """tlf: this layer no longer needs the lower layer (closed, failed or terminated);
    `trigger`: the RFC 1661 event that did it."""

    reason: str = ""
    trigger: Event | None = None


# ---------------------------------------------------------------------------------------------
# Option verdicts returned by check_request()


class Verdict(enum.IntEnum):
    ACK = 0
    NAK = 1
    REJECT = 2


@dataclasses.dataclass(frozen=True)
class OptionVerdict:
    """Our answer to one option of the peer's Configure-Request.

    `original` is the option as received (None for a Nak that asks the peer to add an
    option it did not send, RFC 1661 §5.3); `suggestion` is the value we Nak with.
    """

    verdict: Verdict
    original: Option | None
    suggestion: Option | None = None


def ack(opt: Option) -> OptionVerdict:
    return OptionVerdict(Verdict.ACK, opt)


def nak(opt: Option | None, suggestion: Option) -> OptionVerdict:
    return OptionVerdict(Verdict.NAK, opt, suggestion)


def reject(opt: Option) -> OptionVerdict:
    return OptionVerdict(Verdict.REJECT, opt)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FsmConfig:
    """Counters and timer of RFC 1661 §4.6, shared by every protocol's config.

    restart_timer: seconds between retransmissions of Configure-/Terminate-Request (3 s).
    max_configure: Configure-Requests sent without an answer before giving up (10).
    max_terminate: Terminate-Requests sent without a Terminate-Ack (2).
    max_failure:   Configure-Naks sent without sending a Configure-Ack before Naks turn
                   into Rejects (5).
    """

    restart_timer: float = 3.0
    max_configure: int = 10
    max_terminate: int = 2
    max_failure: int = 5


class FSM:
    """RFC 1661 §4 automaton; subclass per protocol (see the module docstring)."""

    protocol: int = 0
    name: str = "FSM"
    #: Code-Reject of one of these codes is catastrophic (RXJ-); others are RXJ+.
    catastrophic_codes = frozenset(range(1, 8))

    def __init__(self, config: FsmConfig, rng: random.Random):
        self.config = config
        self.rng = rng
        self._state = State.Initial
        self._frames: collections.deque[tuple[int, bytes]] = collections.deque()
        self._events: collections.deque[ProtoEvent] = collections.deque()
        self._id = rng.randrange(256)         # last Identifier we used
        self._restart_count = 0
        self._timer: float | None = None
        self._now = 0.0
        self._failures = 0                    # Configure-Naks sent since the last Ack (§4.6)
        # our outstanding Configure-Request
        self._req_id: int | None = None
        self._req_options: list[Option] = []
        self._req_data = b""
        self._req_answered = True
        self._retransmit = False
        # the Terminate-Request being (re)transmitted
        self._term_id = 0
        self._term_reason = b""
        # per-event context for the actions
        self._rx: Packet | None = None
        self._reply: Packet | None = None
        self._reason = ""
        self._trigger: Event | None = None
        self._rx_options: list[Option] | None = None
        self._from_state = State.Initial
        self._deferred_close: str | None = None
        self.counters: dict[str, int] = collections.Counter()
        self.last_error: str = ""
        self._actions = self._action_table()

    # ---- public API ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    def up(self, now: float) -> None:
        """The lower layer is up (RFC 1661 'Up')."""
        self._event(Event.Up, now)

    def down(self, now: float) -> None:
        """The lower layer went down (RFC 1661 'Down')."""
        self._event(Event.Down, now, reason="lower layer down")

    def open(self, now: float) -> None:
        """Administrative Open: negotiate when the lower layer is up."""
        self._event(Event.Open, now)

    def close(self, now: float, reason: str = "") -> None:
        """Administrative Close: terminate the link (sends Terminate-Request with `reason`)."""
        self._term_reason = reason.encode("utf-8", "replace")[:200]
        self._event(Event.Close, now, reason=reason or "closed")

    def protocol_rejected(self, now: float) -> None:
        """The peer Protocol-Rejected this protocol (LCP told the link): RXJ- (§5.7)."""
        self._event(Event.RXJ_minus, now, reason=f"{self.name} protocol rejected by peer")

    def frames_to_send(self) -> list[tuple[int, bytes]]:
        out = list(self._frames)
        self._frames.clear()
        return out

    def next_event(self) -> ProtoEvent | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[ProtoEvent]:
        out = list(self._events)
        self._events.clear()
        return out

    def get_timer(self) -> float | None:
        deadlines = [d for d in (self._timer, self._extra_deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if self._timer is not None and now >= self._timer:
            self._timer = None
            if self._restart_count > 0:
                # Retransmitting an unanswered request: same Identifier and options (§5.1).
                self._retransmit = self._state in (State.ReqSent, State.AckSent)
                self._event(Event.TO_plus, now)
            else:
                self._event(Event.TO_minus, now, reason=self._timeout_reason())
        self._extra_timer(now)

    def receive(self, payload: bytes, now: float) -> None:
        """Process one received Information field of this protocol."""
        self._now = now
        self.counters["rx_packets"] += 1
        try:
            pkt = Packet.decode(payload)
        except DecodeError as exc:
            self._drop("malformed", str(exc))
            return
        if self._state in (State.Initial, State.Starting):
            # RFC 1661 §4.2: no packets are expected before the lower layer is up.
            self._drop("not_up", f"{code_name(pkt.code)} in state {self._state.name}")
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s rcvd %s", self.name, self.describe(pkt))
        code = pkt.code
        if code == Code.CONFIGURE_REQUEST:
            self._rcv_configure_request(pkt, now)
        elif code == Code.CONFIGURE_ACK:
            self._rcv_configure_ack(pkt, now)
        elif code in (Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT):
            self._rcv_configure_nak_rej(pkt, now)
        elif code == Code.TERMINATE_REQUEST:
            text = pkt.data.decode("utf-8", "replace")
            self._event(Event.RTR, now, pkt=pkt,
                        reason="peer terminated" + (f": {text}" if text else ""))
        elif code == Code.TERMINATE_ACK:
            self._event(Event.RTA, now, pkt=pkt, reason="terminated")
        elif code == Code.CODE_REJECT:
            self._rcv_code_reject(pkt, now)
        elif not self.handle_code(pkt, now):
            self.counters["rx_unknown_code"] += 1
            self._event(Event.RUC, now, pkt=pkt)

    # ---- hooks for subclasses -----------------------------------------------------------

    def request_options(self) -> list[Option]:
        return []

    def check_request(self, options: list[Option], now: float) -> list[OptionVerdict]:
        return [reject(o) for o in options]

    def request_acked(self, options: list[Option]) -> None:
        """The peer's Configure-Request `options` is being acked: commit the peer's values."""

    def ack_received(self, options: list[Option]) -> None:
        """Our request was acked: commit our values."""

    def nak_received(self, options: list[Option], now: float) -> bool:
        """Adjust our next request to the peer's Nak; return False if the Nak is invalid."""
        return True

    def reject_received(self, options: list[Option], now: float) -> bool:
        """Stop requesting the rejected options; return False if the Reject is invalid."""
        return True

    def handle_code(self, pkt: Packet, now: float) -> bool:
        """Codes beyond 7; return False for an unknown code (-> Code-Reject)."""
        return False

    def result(self) -> Any:
        return None

    def reset_negotiation(self) -> None:
        """Called on irc/scr from a non-negotiating state: start from the configured wishes."""

    def up_failure(self) -> str | None:
        """Checked on tlu: a reason why the agreed result is unusable, or None."""
        return None

    def this_layer_up(self, now: float) -> None:
        """Extra work on tlu (after ThisLayerUp is queued)."""

    def this_layer_down(self, now: float) -> None:
        """Extra work on tld."""

    def _extra_deadline(self) -> float | None:
        return None

    def _extra_timer(self, now: float) -> None:
        pass

    def _timeout_reason(self) -> str:
        if self._state in (State.Closing, State.Stopping):
            return "no Terminate-Ack (Max-Terminate)"
        return f"{self.name}: no answer to Configure-Request (Max-Configure)"

    # ---- helpers for subclasses ---------------------------------------------------------

    def send_packet(self, code: int, data: bytes, identifier: int | None = None) -> int:
        if identifier is None:
            identifier = self._next_id()
        pkt = Packet(code, identifier, data)
        self._queue_frame(pkt.encode())
        self.counters["tx_packets"] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s sent %s", self.name, self.describe(pkt))
        return identifier

    #: option type -> name, for log lines (subclasses fill it in)
    option_names: dict[int, str] = {}

    def describe(self, pkt: Packet) -> str:
        """One log line per packet with every field, as pppd prints them (interop debugging)."""
        head = f"{code_name(pkt.code)} id={pkt.identifier} len={len(pkt.data) + 4}"
        if pkt.code in (Code.CONFIGURE_REQUEST, Code.CONFIGURE_ACK, Code.CONFIGURE_NAK,
                        Code.CONFIGURE_REJECT):
            try:
                opts = decode_options(pkt.data)
            except DecodeError:
                return head + " <malformed options>"
            return head + " [" + " ".join(
                f"{self.option_names.get(o.type, o.type)}:{o.value.hex() or '-'}"
                for o in opts) + "]"
        return head + (f" data={pkt.data[:32].hex()}" if pkt.data else "")

    def emit(self, event: ProtoEvent) -> None:
        if len(self._events) >= MAX_QUEUE:
            self._events.popleft()
            self.counters["events_dropped"] += 1
        self._events.append(event)

    def defer_close(self, reason: str) -> None:
        """Ask for Close once the current packet is processed (from inside a hook)."""
        if self._deferred_close is None:
            self._deferred_close = reason

    def _queue_frame(self, info: bytes) -> None:
        if len(self._frames) >= MAX_QUEUE:
            self._frames.popleft()
            self.counters["tx_dropped"] += 1
        self._frames.append((self.protocol, info))

    def _next_id(self) -> int:
        self._id = (self._id + 1) & 0xFF
        return self._id

    def _drop(self, why: str, detail: str) -> None:
        self.counters["rx_" + why] += 1
        self.last_error = detail
        log.debug("%s dropped packet (%s): %s", self.name, why, detail)

    # ---- packet -> event ----------------------------------------------------------------

    def _rcv_configure_request(self, pkt: Packet, now: float) -> None:
        try:
            options = pkt.options()
        except DecodeError as exc:
            self._drop("malformed", f"Configure-Request: {exc}")
            return
        verdicts = self.check_request(options, now)
        rejects = [v.original for v in verdicts if v.verdict is Verdict.REJECT and v.original]
        naks = [v for v in verdicts if v.verdict is Verdict.NAK]
        if not rejects and naks and self._failures >= self.config.max_failure:
            # §4.6 Max-Failure: the negotiation does not converge -- Reject instead of Nak.
            rejects = [v.original for v in naks if v.original is not None]
            if not rejects:
                naks = []
        if rejects:
            reply = Packet(Code.CONFIGURE_REJECT, pkt.identifier, encode_options(rejects))
            good = False
        elif naks:
            reply = Packet(Code.CONFIGURE_NAK, pkt.identifier,
                           encode_options(v.suggestion for v in naks if v.suggestion))
            good = False
        else:
            # §5.2: the Ack echoes the request's options exactly.
            reply = Packet(Code.CONFIGURE_ACK, pkt.identifier, pkt.data)
            good = True
        self._event(Event.RCR_plus if good else Event.RCR_minus, now, pkt=pkt, reply=reply,
                    options=options)
        self._after_reply(now)

    def _reply_matches(self, pkt: Packet) -> bool:
        return (self._req_id is not None and pkt.identifier == self._req_id
                and not self._req_answered)

    def _rcv_configure_ack(self, pkt: Packet, now: float) -> None:
        negotiating = self._state in (State.ReqSent, State.AckRcvd, State.AckSent, State.Opened)
        if negotiating:
            if not self._reply_matches(pkt) or pkt.data != self._req_data:
                self._drop("bad_reply", "Configure-Ack does not match our request")
                return
            self._req_answered = True
            self.ack_received(list(self._req_options))
        self._event(Event.RCA, now, pkt=pkt)
        self._after_reply(now)

    def _rcv_configure_nak_rej(self, pkt: Packet, now: float) -> None:
        negotiating = self._state in (State.ReqSent, State.AckRcvd, State.AckSent, State.Opened)
        if negotiating:
            if not self._reply_matches(pkt):
                self._drop("bad_reply", "Configure-Nak/Reject does not match our request")
                return
            try:
                options = pkt.options()
            except DecodeError as exc:
                self._drop("malformed", f"Configure-Nak/Reject: {exc}")
                return
            if pkt.code == Code.CONFIGURE_REJECT:
                if not _is_subsequence(options, self._req_options):
                    self._drop("bad_reply", "Configure-Reject is not a subset of our request")
                    return
                valid = self.reject_received(options, now)
            else:
                valid = self.nak_received(options, now)
            if not valid:
                self._drop("bad_reply", "Configure-Nak/Reject rejected by option handler")
                return
            self._req_answered = True
            if self._deferred_close is not None:
                # The handler found the negotiation hopeless (e.g. no common auth method):
                # close instead of sending another Configure-Request.
                self._after_reply(now)
                return
        self._event(Event.RCN, now, pkt=pkt)
        self._after_reply(now)

    def _after_reply(self, now: float) -> None:
        if self._deferred_close is not None:
            reason, self._deferred_close = self._deferred_close, None
            self.close(now, reason)

    def _rcv_code_reject(self, pkt: Packet, now: float) -> None:
        rejected = pkt.data[0] if pkt.data else 0
        if rejected in self.catastrophic_codes:
            self._event(Event.RXJ_minus, now, pkt=pkt,
                        reason=f"peer Code-Rejected {code_name(rejected)}")
        else:
            self.code_rejected(rejected)
            self._event(Event.RXJ_plus, now, pkt=pkt)

    def code_rejected(self, code: int) -> None:
        """A permitted Code-Reject (RXJ+) of `code`: stop using that code."""

    # ---- the automaton ------------------------------------------------------------------

    def _event(self, event: Event, now: float, *, pkt: Packet | None = None,
               reply: Packet | None = None, options: list[Option] | None = None,
               reason: str = "") -> None:
        self._now = now
        cell = TRANSITIONS[(self._state, event)]
        if cell is None:
            if event is Event.Down:
                # Down before Up: harmless (e.g. an NCP the link never started); ignore.
                self.counters["ignored_down"] += 1
                return
            if event in (Event.Up, Event.TO_plus, Event.TO_minus):
                raise LocalProtocolError(f"{self.name}: {event.value} in state "
                                         f"{self._state.name}")
            self._drop("wrong_state", f"{event.value} in state {self._state.name}")
            return
        actions, new_state = cell
        old = self._state
        self._rx, self._reply, self._reason, self._trigger = pkt, reply, reason, event
        self._rx_options = options
        self._from_state = old
        self._state = new_state
        try:
            for i, action in enumerate(actions):
                self._actions[action](actions[i + 1:])
        finally:
            self._rx = self._reply = None
            self._retransmit = False
        if new_state not in _TIMED_STATES:
            self._timer = None
        if old != new_state:
            log.debug("%s %s: %s -> %s", self.name, event.value, old.name, new_state.name)

    # RFC 1661 §4.4 actions.  `rest` is the list of actions still to run in this cell.

    def _action_table(self) -> dict[str, Callable[[tuple[str, ...]], None]]:
        """The §4.4 actions by their RFC names (the keys are ``_ACTIONS``, which the
        transition table is checked against); bound here so subclass overrides count."""
        return {"tlu": self._a_tlu, "tld": self._a_tld, "tls": self._a_tls,
                "tlf": self._a_tlf, "irc": self._a_irc, "zrc": self._a_zrc,
                "scr": self._a_scr, "sca": self._a_sca, "scn": self._a_scn,
                "str": self._a_str, "sta": self._a_sta, "scj": self._a_scj,
                "ser": self._a_ser}

    def _a_tlu(self, rest: tuple[str, ...]) -> None:
        problem = self.up_failure()
        if problem is not None:
            # The options were agreed but are unusable (e.g. MPPE required but absent, no
            # local address): do not report Up; close once this event is processed.
            self.defer_close(problem)
            return
        self.emit(ThisLayerUp(self.result()))
        self.this_layer_up(self._now)

    def _a_tld(self, rest: tuple[str, ...]) -> None:
        self.emit(ThisLayerDown(self._reason, self._trigger))
        self.this_layer_down(self._now)

    def _a_tls(self, rest: tuple[str, ...]) -> None:
        self.emit(ThisLayerStarted())

    def _a_tlf(self, rest: tuple[str, ...]) -> None:
        self.emit(ThisLayerFinished(self._reason, self._trigger))

    def _a_irc(self, rest: tuple[str, ...]) -> None:
        # Max-Terminate before a Terminate-Request, Max-Configure otherwise (§4.6).
        self._restart_count = (self.config.max_terminate if "str" in rest
                               else self.config.max_configure)

    def _a_zrc(self, rest: tuple[str, ...]) -> None:
        self._restart_count = 0
        self._timer = self._now + self.config.restart_timer

    def _a_scr(self, rest: tuple[str, ...]) -> None:
        if self._retransmit and self._req_id is not None:
            ident = self._req_id
            self.counters["tx_retransmits"] += 1
        else:
            if self._from_state not in (State.ReqSent, State.AckRcvd, State.AckSent):
                # Not negotiating before this event: start again from the configured wishes
                # (as pppd's resetci); a Nak/Reject only shapes the current negotiation.
                self.reset_negotiation()
            self._req_options = list(self.request_options())
            self._req_data = encode_options(self._req_options)
            ident = self._next_id()
            self._req_id = ident
        self._req_answered = False
        self.send_packet(Code.CONFIGURE_REQUEST, self._req_data, ident)
        self._restart_count -= 1
        self._timer = self._now + self.config.restart_timer

    def _a_sca(self, rest: tuple[str, ...]) -> None:
        assert self._reply is not None and self._rx_options is not None
        self.request_acked(self._rx_options)
        self._failures = 0
        self._send_reply()

    def _a_scn(self, rest: tuple[str, ...]) -> None:
        assert self._reply is not None
        if self._reply.code == Code.CONFIGURE_NAK:
            self._failures += 1
        self._send_reply()

    def _send_reply(self) -> None:
        assert self._reply is not None
        self.send_packet(self._reply.code, self._reply.data, self._reply.identifier)

    def _a_str(self, rest: tuple[str, ...]) -> None:
        if self._restart_count >= self.config.max_terminate:
            self._term_id = self._next_id()     # a fresh Terminate-Request, else a retransmission
        self.send_packet(Code.TERMINATE_REQUEST, self._term_reason, self._term_id)
        self._restart_count -= 1
        self._timer = self._now + self.config.restart_timer

    def _a_sta(self, rest: tuple[str, ...]) -> None:
        ident = self._rx.identifier if self._rx is not None else self._next_id()
        self.send_packet(Code.TERMINATE_ACK, b"", ident)

    def _a_scj(self, rest: tuple[str, ...]) -> None:
        assert self._rx is not None
        self.send_code_reject(self._rx)

    def send_code_reject(self, rejected: Packet) -> None:
        """Code-Reject `rejected`, truncated to fit the peer's MRU (RFC 1661 §5.6)."""
        data = rejected.encode()[: max(0, self._peer_mru() - 4)]
        self.send_packet(Code.CODE_REJECT, data)

    def _peer_mru(self) -> int:
        return 1500

    def _a_ser(self, rest: tuple[str, ...]) -> None:
        """Send-Echo-Reply: only LCP has echo; NCPs never reach here (RXR is LCP-only)."""


def _is_subsequence(sub: list[Option], full: list[Option]) -> bool:
    it = iter(full)
    return all(any(o == f for f in it) for o in sub)


def code_name(code: int) -> str:
    """'CONFIGURE_REQUEST' for 1, 'code-99' for an unknown code (log lines)."""
    try:
        return Code(code).name
    except ValueError:
        return f"code-{code}"
