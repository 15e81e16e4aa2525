"""Target ``control``: the PPTP control connection (fastpptp/pptp/control.py + framer), PAC
and PNS roles, the peer's byte stream cut at random points, the owner's calls interleaved.

Input: header ``flags`` (bit 0: role PAC, bits 1-2: max_calls 2/4/8/128, bit 3: call_rate
off), then records: 0 peer bytes (the next octet cuts them into pieces of that size + 1),
1 time passes (octet / 4 s, timers fire), 2 peer EOF, 3 owner: place a call (PNS) or answer
the oldest CallRequested (PAC: accept or reject by the next octet), 4 owner: clear one of
our calls, 5 stop, 6 connection lost, 7 Set-Link-Info, 8-15 the peer answers about one of our
calls with its IDs right (PNS: OCRP with a result code, CDN; PAC: CCRQ, Set-Link-Info).

Invariants on every step (besides "never raises"):
* every Call-Disconnect-Notify / Call-Clear-Request / Set-Link-Info we send names a call ID
  this connection owns (one it accepted or placed and has not yet released), every
  Outgoing-Call-Reply answers a peer call ID that asked (CallRequested) and is unanswered;
* every CallCleared/CallEstablished event is for a call ID we own (CallCleared with
  ``established=True`` only after a CallEstablished for it, or -- by design -- for a PNS
  call we cleared before its reply);
* bounds: calls <= max_calls, bytes queued to send <= MAX_OUTPUT + one message, framer
  buffer <= its max, forgotten requests <= 4 * max_calls, allocator in use <= max_calls;
* what we send parses as whole messages; ControlClosed at most once, then no calls, no timer.
"""
from __future__ import annotations

import random

from fastpptp.pptp import messages as m
from fastpptp.pptp.control import (
    MAX_OUTPUT, CallCleared, CallEstablished, CallRequested, CallState, ControlClosed,
    ControlConfig, ControlConnection, Role, State,
)
from fastpptp.pptp.framer import PptpFramer

from ..records import Reader, Writer, check

NAME = "control"
_MAX_CALLS = (2, 4, 8, 128)


class _Owner:
    """What the server/client does with the events, and the ledger the invariants check."""

    def __init__(self, conn: ControlConnection) -> None:
        self.conn = conn
        self.requests: list[CallRequested] = []
        self.owned: set[int] = set()           # our call IDs live in this connection
        self.established: set[int] = set()
        self.asked: dict[int, int] = {}         # peer call ID -> OCRQs unanswered
        self.cleared_early: set[int] = set()     # PNS: calls we cleared awaiting their OCRP
        self.closed = 0
        self.out = PptpFramer(max_length=1024)

    def drain(self) -> None:
        conn = self.conn
        data = conn.data_to_send()
        check(len(data) <= MAX_OUTPUT + 512, f"{len(data)} octets queued to send")
        self.out.feed(data)
        for msg in self.out:
            self._sent(msg)
        check(self.out.pending == 0, "we sent part of a message")
        while (ev := conn.next_event()) is not None:
            if isinstance(ev, CallRequested):
                self.requests.append(ev)
            elif isinstance(ev, CallEstablished):
                check(ev.call_id in self.owned, f"CallEstablished for call {ev.call_id} not ours")
                self.established.add(ev.call_id)
            elif isinstance(ev, CallCleared):
                if ev.established:
                    # by design (tests/pptp/test_pptp_call_limits.py) a PNS call cleared
                    # before its reply counts as established once a Connected reply came
                    check(ev.call_id in self.established or ev.call_id in self.cleared_early,
                          f"CallCleared(established) for call {ev.call_id} never established")
                check(ev.call_id in self.owned or (ev.call_id == 0 and not ev.established),
                      f"CallCleared for call {ev.call_id} we do not own")
                self.owned.discard(ev.call_id)
                self.established.discard(ev.call_id)
            elif isinstance(ev, ControlClosed):
                self.closed += 1
        cfg = conn.config
        check(len(conn.calls()) <= cfg.max_calls, f"{len(conn.calls())} calls")
        check(conn._framer.pending <= conn._framer.max_buffer, "framer buffer over its bound")
        check(len(conn._gone_requests) <= 4 * cfg.max_calls, "forgotten requests unbounded")
        check(len(conn.allocator._in_use) <= cfg.max_calls, "allocator holds too many IDs")
        check(set(conn.calls()) <= self.owned, f"calls {set(conn.calls())} not all ours")
        check(self.closed <= 1, "ControlClosed twice")
        if self.closed:
            check(conn.closed and not conn.calls() and conn.get_timer() is None,
                  "closed connection still has calls or a timer")

    def _sent(self, msg: m.Message) -> None:
        if isinstance(msg, m.CDN):
            check(msg.call_id in self.owned, f"CDN for call {msg.call_id} we do not own")
        elif isinstance(msg, m.CallClearRequest):
            check(msg.call_id in self.owned, f"CCRQ for call {msg.call_id} we do not own")
        elif isinstance(msg, m.SetLinkInfo):
            pass     # checked at the call site (peer call ID of an established call)
        elif isinstance(msg, m.OCRP):
            n = self.asked.get(msg.peer_call_id, 0)
            check(n > 0, f"OCRP for peer call {msg.peer_call_id} nobody asked for")
            self.asked[msg.peer_call_id] = n - 1


def one_input(data: bytes) -> None:
    r = Reader(data)
    flags = r.byte()
    role = Role.PAC if flags & 1 else Role.PNS
    cfg = ControlConfig(echo_interval=10, echo_timeout=5, setup_timeout=8,
                        max_calls=_MAX_CALLS[flags >> 1 & 3],
                        call_rate=0.0 if flags & 8 else 1.0)
    rng = random.Random(flags)
    conn = ControlConnection(role, cfg, 0.0, rng)
    own = _Owner(conn)
    now = 0.0
    if role is Role.PNS:
        conn.start(now)
    own.drain()
    steps = 0
    while not r.done and steps < 200:
        steps += 1
        tag = r.byte() & 15
        if tag == 0:
            chunk, size = r.chunk(), r.byte() + 1
            _note_ocrqs(own, chunk)
            for i in range(0, len(chunk), size):
                conn.receive_data(chunk[i:i + size], now)
        elif tag == 1:
            now += r.byte() / 4
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
        elif tag == 2:
            conn.receive_data(b"", now)
        elif tag == 3:
            answer = r.byte()
            if role is Role.PNS:
                if conn.state is State.ESTABLISHED and len(conn.calls()) < cfg.max_calls:
                    own.owned.add(conn.place_call(now))
            elif own.requests:
                req = own.requests.pop(0)
                if answer & 1:
                    conn.reject_call(req, now=now)
                else:
                    own.owned.add(conn.accept_call(req, now=now))
        elif tag == 4:
            ids = sorted(own.owned)
            pick = r.byte()
            if ids:
                call_id = ids[pick % len(ids)]
                if conn.calls().get(call_id) is CallState.WAIT_REPLY:
                    own.cleared_early.add(call_id)
                conn.clear_call(call_id, "fuzz", now)
        elif tag == 5:
            conn.stop("fuzz", now)
        elif tag == 6:
            conn.connection_lost(now)
        elif tag == 7:
            pick = r.byte()
            live = sorted(c for c, s in conn.calls().items() if s is CallState.ESTABLISHED)
            if live:
                conn.set_link_info(live[pick % len(live)], 0, 0, now=now)
        else:
            # the peer answers about one of our calls with the right IDs (what a peer
            # learns for free from our own messages)
            pick, code, other = r.byte(), r.byte(), r.u16()
            calls = [c for c in conn._calls if c.call_id is not None]
            if calls:
                call = calls[pick % len(calls)]
                msg: m.Message
                if role is Role.PNS:
                    msg = (m.OCRP(call_id=other, peer_call_id=call.id, result_code=code & 7)
                           if tag & 1 else m.CDN(call_id=call.peer_call_id, result_code=code & 7))
                else:
                    msg = (m.CallClearRequest(call_id=call.peer_call_id) if tag & 1
                           else m.SetLinkInfo(peer_call_id=call.id, send_accm=other))
                # these octets join the same stream: after a partial peer message they
                # complete it (e.g. into an OCRQ the PNS must refuse), so the ledger sees them
                _note_ocrqs(own, raw := msg.encode())
                conn.receive_data(raw, now)
        own.drain()


def _note_ocrqs(own: _Owner, chunk: bytes) -> None:
    """The OCRQs in ``chunk`` (a PAC may answer each once): a lenient scan of whole
    messages -- a mid-stream cut only makes the ledger stricter, never looser.  Call it for
    every octet the peer sends (records 0 and 8-15): the stream is one, whatever wrote it."""
    framer = PptpFramer()
    try:
        framer.feed(own.conn._framer._buf + chunk)
        for msg in framer:
            if isinstance(msg, m.OCRQ):
                own.asked[msg.call_id] = own.asked.get(msg.call_id, 0) + 1
    except Exception:
        pass


# --------------------------------------------------------------------------- seeds

def _msgs() -> list[m.Message]:
    return [m.SCCRQ(), m.SCCRP(), m.OCRQ(call_id=7), m.OCRP(call_id=9, peer_call_id=7),
            m.EchoRequest(identifier=1), m.EchoReply(identifier=1), m.CallClearRequest(call_id=7),
            m.CDN(call_id=9, result_code=1), m.SetLinkInfo(peer_call_id=7),
            m.WEN(peer_call_id=7), m.ICRQ(call_id=3), m.ICRP(call_id=3, peer_call_id=4),
            m.ICCN(peer_call_id=3), m.StopCCRQ(), m.StopCCRP()]


def seeds() -> list[bytes]:
    from .. import captures
    out = []
    for to_pac, to_pns in captures.control_streams():
        for flags, stream in ((1, to_pac), (0, to_pns)):
            w = Writer(bytes([flags]))
            if flags == 0:
                w.byte(1).byte(0)
            framer = PptpFramer(max_length=1024)
            framer.feed(stream)
            for msg in framer:
                raw = msg.encode()
                w.record(0, raw).byte(len(raw) // 2 + 1)
                w.byte(3).byte(0)       # place or accept between messages
                w.byte(9).byte(0).byte(1).u16(5)     # PNS: OCRP Connected; PAC: CCRQ
            w.byte(1).byte(40).byte(4).byte(0).byte(5)
            out.append(w.bytes())
    every = Writer(bytes([9]))
    for msg in _msgs():
        every.record(0, msg.encode()).byte(3).byte(3).byte(0)
    out.append(every.bytes())
    pns = Writer(bytes([0]))
    for msg in _msgs():
        pns.record(0, msg.encode()).byte(255).byte(3).byte(0).byte(1).byte(3)
    out.append(pns.bytes())
    return out
