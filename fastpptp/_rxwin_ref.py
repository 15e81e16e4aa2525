"""GRE receive window and reorder buffer, pure Python: the readable twin of
fastpptp/_rxwin.pxd (same functions, same results; tests/engine/test_rxwin.py runs one
table on both).

RFC 2637 §4.3-4.4: GRE carries sequence numbers but nothing is retransmitted, so the
receiver only orders, drops duplicates and gives gaps up.

* The first packet is taken whatever its number (peers start at 0 or at 1).
* The next expected (``seq_recv + 1``) is delivered, then the buffer drains.
* Up to ``depth - 1`` ahead: buffered (``reordered``) until its gap fills or has been
  open ``timeout`` seconds (then ``lost`` and ``drop_reorder_timeout`` count the sequence
  numbers skipped).
* ``depth`` <= d < ``jump_at`` (= depth + max(depth, 64)) ahead: the oldest gaps are given
  up at once (``lost``) to make room.
* Further ahead: a jump (RxWindow._jump): refused (``drop_seq_jump``) until a second packet
  near the candidate confirms the region and the window has been silent for ``timeout``,
  or (fast, issue 9) the region, with JUMP_FAST_N packets, has been seen for GAP_K mean
  gaps of the stream (at least JUMP_FLOOR) with the window taking nothing meanwhile.
* Behind: ``drop_duplicate`` when that number was delivered (64-entry history) or is
  buffered, else ``drop_too_old``; an LCP Echo-Request/Reply is delivered out of order
  (keepalives survive reordering) only inside the window or behind it within the history,
  never twice.

The window never calls the engine: ``receive`` and ``fire`` return an RxOut the caller acts
on (arm its timers, count, deliver ``frames`` in order), then it calls ``RxPool.put`` with
``out.pooled`` -- frames released by one call are free again only once delivered, as in the
compiled twin, where they are pool memory.  The pool (one per engine, ``pool_frames``
frames) bounds the memory all reorder buffers hold together; an empty pool refuses the
frame (``drop_no_room``).
"""
from __future__ import annotations

import dataclasses

U32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
#: Packets up to depth + max(depth, JUMP_SLACK) ahead make room in the window at once;
#: further ahead is a jump.
JUMP_SLACK = 64
HIST = 64           # sequence numbers behind the window remembered as delivered
#: Fast jump (RxWindow._jump): the new region seen for GAP_K mean gaps of the stream, at
#: least JUMP_FLOOR seconds and at most the reorder timeout, holding JUMP_FAST_N packets.
GAP_K = 32
JUMP_FAST_N = 4
JUMP_FLOOR = 1000 * 1e-6        # the compiled RXW_JUMP_FLOOR_US * 1e-6, the same double
#: The automatic reorder pool (EngineConfig.reorder_pool = 0): this many frames, and at least
#: four full windows.
POOL_MIN = 1024

# RxOut.drop: why ``receive`` did not take the packet (the compiled RXW_* codes)
TAKEN, DUPLICATE, TOO_OLD, SEQ_JUMP, NO_ROOM = range(5)
#: the per-call counter each drop reason is counted in
DROP_COUNTER = {DUPLICATE: "drop_duplicate", TOO_OLD: "drop_too_old",
                SEQ_JUMP: "drop_seq_jump", NO_ROOM: "drop_no_room"}


def serial_diff(a: int, b: int) -> int:
    """a - b as a signed 32-bit serial-number distance (RFC 1982)."""
    return ((a - b + 0x80000000) & U32) - 0x80000000


def is_lcp_echo(frame) -> bool:
    """LCP Echo-Request/Reply (RFC 1661 §5.8), sent with FF 03 and a 2-byte protocol."""
    return (len(frame) >= 5 and frame[0] == 0xFF and frame[1] == 0x03 and frame[2] == 0xC0
            and frame[3] == 0x21 and frame[4] in (9, 10))


def pool_frames(reorder_pool: int, reorder_depth: int) -> int:
    """Frames in an engine's reorder pool: EngineConfig.reorder_pool, or when 0
    max(POOL_MIN, 4 x reorder_depth)."""
    return reorder_pool or max(POOL_MIN, 4 * reorder_depth)


@dataclasses.dataclass(frozen=True)
class RxParams:
    """One per engine, shared by its calls (the compiled rx_params)."""

    depth: int
    timeout: float
    ack_delay: float

    @property
    def jump_at(self) -> int:
        return self.depth + max(self.depth, JUMP_SLACK)


class RxPool:
    """The reorder frames of one engine, counted (the compiled twin holds the memory)."""

    __slots__ = ("cap", "nfree")

    def __init__(self, cap: int):
        self.cap = cap
        self.nfree = cap

    def get(self) -> bool:
        if self.nfree == 0:
            return False
        self.nfree -= 1
        return True

    def put(self, k: int) -> None:
        self.nfree += k


class RxOut:
    """What one ``receive``/``fire`` asks of the caller (the compiled rx_out): ``frames``
    to deliver in order as (frame, own) -- own: the packet's own frame, not a buffered one;
    ``pooled`` of them to give back to the pool after; counters; ``arm``: put the call on
    the timer list."""

    __slots__ = ("frames", "pooled", "lost", "lost_timeout", "reordered", "drop", "arm")

    def __init__(self):
        self.frames: list[tuple[bytes, bool]] = []
        self.pooled = 0
        self.lost = 0
        self.lost_timeout = 0
        self.reordered = False
        self.drop = TAKEN
        self.arm = False


class RxWindow:
    """The receive window of one call; field names as the compiled rx_window's."""

    __slots__ = ("p", "pool", "seq_recv", "ack_sent", "started", "hist", "last", "gap", "pkts", "pend", "inst_n",
                 "jump",
                 "jump_n", "jump_t0", "jump_tp", "reorder", "reorder_dl", "ack_dl")

    def __init__(self, params: RxParams, pool: RxPool):
        self.p = params
        self.pool = pool
        self.seq_recv = U32         # last in-order sequence number received
        self.ack_sent = U32         # last ack we sent
        self.started = False
        self.hist = 0               # bit k: seq_recv - k was delivered
        self.last = 0.0             # arrival of the last packet taken into the window
        self.gap = 0.0              # EWMA (1/8) of the gaps between arrival instants (batches)
        self.pkts = 1.0             # EWMA (1/8) of the packets taken per instant
        self.pend = 0.0             # the gap that ended at ``last``, learnt with its count
        self.inst_n = 0             # packets taken at the instant ``last``
        self.jump: int | None = None    # the latest refused far-ahead sequence number
        self.jump_n = 0             # refused packets near each other (>= 2: a confirmed region)
        self.jump_t0 = 0.0          # when the candidate region's first packet was refused
        self.jump_tp = 0.0          # when its latest was (a batch, processed by a later instant)
        self.reorder: dict[int, tuple[float, bytes]] = {}   # seq -> (arrival, frame or b"" = done)
        self.reorder_dl: float | None = None
        self.ack_dl: float | None = None

    # ---- the API
    def receive(self, seq: int, frame: bytes, now: float) -> RxOut:
        """A frame with GRE sequence number ``seq`` arrived at ``now``."""
        o = RxOut()
        p = self.p
        if not self.started:
            self.started = True
            self.seq_recv = self.ack_sent = (seq - 1) & U32   # nothing acked yet, whatever seq is
            self.last = now
            self.gap = p.timeout            # nothing learnt yet: the fast jump waits timeout
            self.pkts = 1.0
            self.pend = p.timeout
            self.inst_n = 1
            self._advance(seq, True, now, o)
            o.frames.append((frame, True))
            return o
        d = serial_diff(seq, (self.seq_recv + 1) & U32)
        if d >= p.jump_at:
            # far beyond the window: a new region, or a blind spoof (see _jump)
            if not self._jump(seq, now, o):
                return o
            self.last = now                 # the silence crossed is the loss, not a gap
            self.pend = self.gap
            self.inst_n = 0
            d = 0                           # the jump made seq the next expected
        elif d >= p.depth:
            # just beyond (a gap held open filled the buffer): give up the oldest gaps (lost)
            # to make room; one packet moves the window by at most max(depth, JUMP_SLACK)
            self._skip_to((seq - p.depth + 1) & U32, now, False, o)
            d = serial_diff(seq, (self.seq_recv + 1) & U32)
        if d == 0:
            self._taken(now)
            self._advance(seq, True, now, o)
            o.frames.append((frame, True))
            self._drain(now, o)
            return o
        echo = is_lcp_echo(frame)
        if d < 0:
            back = -d - 1                   # 0: seq == seq_recv
            if back < HIST and (self.hist >> back) & 1:
                o.drop = DUPLICATE
            elif echo and back < HIST:
                # a keepalive arriving after its gap was given up: still delivered, but only
                # near the window, so a window moved away from the peer makes echoes fail
                o.frames.append((frame, True))
            else:
                o.drop = TOO_OLD
            return o
        if seq in self.reorder:
            o.drop = DUPLICATE
            return o
        if not echo and not self.pool.get():
            o.drop = NO_ROOM
            return o
        self._taken(now)
        if echo:
            o.frames.append((frame, True))
            frame = b""                     # placeholder: counts as delivered when reached
        self.reorder[seq] = (now, bytes(frame))
        o.reordered = True
        if self.reorder_dl is None:
            self.reorder_dl = now + p.timeout
            o.arm = True
        return o

    def fire(self, now: float) -> RxOut:
        """The window's timers at ``now``: gaps held past the timeout are given up, and a
        confirmed jump candidate whose window has been silent that long is taken."""
        o = RxOut()
        while self.reorder_dl is not None and self.reorder_dl <= now:
            first = min(self.reorder, key=lambda q: serial_diff(q, self.seq_recv))
            self._skip_to(first, now, True, o)
        due = self.jump_due()
        if due is not None and due <= now:
            # the new region is confirmed and the window silent: move to just past the
            # candidate (it and every gap before it lost)
            cand, self.jump = self.jump, None
            self._skip_to((cand + 1) & U32, now, False, o)
        return o

    def release(self) -> None:
        """The call ends: its buffered frames go back to the pool."""
        self.pool.put(sum(1 for _, fr in self.reorder.values() if fr))
        self.reorder.clear()

    def jump_silence(self) -> float:
        """How long a far-ahead region must be seen, the window taking nothing meanwhile,
        before the window follows it at once: GAP_K mean gaps between packets (gap / pkts),
        within [JUMP_FLOOR, timeout]."""
        s = GAP_K * self.gap / self.pkts
        if s < JUMP_FLOOR:
            s = JUMP_FLOOR
        if s > self.p.timeout:
            s = self.p.timeout
        return s

    def jump_stride(self) -> float:
        """The longest step between instants at which the region is seen that still counts
        as continuous: S / 2, or two instant gaps of the stream; a longer one (most likely
        the receiver off the CPU) restarts the region's evidence."""
        g = self.jump_silence() * 0.5
        if 2 * self.gap > g:
            g = 2 * self.gap
        return g

    def jump_due(self) -> float | None:
        """When a confirmed candidate is taken by the timer (None: not armed)."""
        if self.jump is not None and self.jump_n >= 2:
            return self.last + self.p.timeout
        return None

    def deadlines(self) -> tuple[float | None, ...]:
        return (self.reorder_dl, self.ack_dl, self.jump_due())

    def deadline(self) -> float | None:
        """The earliest of the window's deadlines (None: none)."""
        ds = [d for d in self.deadlines() if d is not None]
        return min(ds) if ds else None

    def ack_pending(self) -> bool:
        """An ack to piggyback on the next packet we send (only when it changed)."""
        return self.started and self.seq_recv != self.ack_sent

    def ack_taken(self) -> int:
        """A packet we send carries the ack: nothing pending any more."""
        self.ack_sent = self.seq_recv
        self.ack_dl = None
        return self.seq_recv

    def ack_due(self, now: float) -> bool:
        """The ack timer: True when an ack-only packet must go out (then ``ack_sent``)."""
        if self.ack_dl is not None and self.ack_dl <= now:
            self.ack_dl = None
            return self.seq_recv != self.ack_sent
        return False

    def ack_sent_now(self) -> int:
        """An ack-only packet goes out: the value it carries."""
        self.ack_sent = self.seq_recv
        return self.seq_recv

    # ---- parts
    def _advance(self, seq, delivered, now, o):
        """seq_recv moves forward to ``seq``; the history remembers what was delivered and
        an ack becomes pending (sent alone after ack_delay unless data carries it)."""
        k = serial_diff(seq, self.seq_recv)
        self.hist = ((self.hist << k) & M64) if k < 64 else 0
        if delivered:
            self.hist |= 1
        self.seq_recv = seq
        if self.ack_dl is None:
            self.ack_dl = now + self.p.ack_delay
            o.arm = True

    def _taken(self, now):
        """A packet taken into the window; the candidate is forgotten.  When an arrival
        *instant* is over (the I/O loop gives a batch one ``now``) the EWMAs (1/8, as RFC
        6298's SRTT) learn the gap that ended at it (capped at the timeout) and the packets
        it took: gap / pkts is the mean gap between packets (a receiver stall ends in a long
        gap and a large backlog batch: its rate, not a silence)."""
        if now > self.last:
            self.gap += (self.pend - self.gap) * 0.125
            self.pkts += (float(self.inst_n) - self.pkts) * 0.125
            g = now - self.last
            if g > self.p.timeout:
                g = self.p.timeout
            self.pend = g
            self.inst_n = 1
            self.last = now
        else:
            self.inst_n += 1
        self.jump = None

    def _release(self, fr, o):
        if fr:
            o.frames.append((fr, False))
            o.pooled += 1

    def _drain(self, now, o):
        r = self.reorder
        while r:
            nxt = (self.seq_recv + 1) & U32
            item = r.pop(nxt, None)
            if item is None:
                break
            self._advance(nxt, True, now, o)
            self._release(item[1], o)
        if r:
            self.reorder_dl = min(a for a, _ in r.values()) + self.p.timeout
            o.arm = True
        else:
            self.reorder_dl = None

    def _skip_to(self, new_expected, now, timeout, o):
        """Give up every gap before ``new_expected``: buffered frames there are released in
        order, missing sequence numbers are counted lost."""
        exp = (self.seq_recv + 1) & U32
        if serial_diff(new_expected, exp) <= 0:
            return
        for q in sorted((q for q in self.reorder if serial_diff(q, new_expected) < 0),
                        key=lambda q: serial_diff(q, exp)):
            self._lost(serial_diff(q, (self.seq_recv + 1) & U32), timeout, o)
            _, fr = self.reorder.pop(q)
            self._advance(q, True, now, o)
            self._release(fr, o)
        gap = serial_diff(new_expected, (self.seq_recv + 1) & U32)
        if gap > 0:
            self._lost(gap, timeout, o)
            self._advance((new_expected - 1) & U32, False, now, o)
        self._drain(now, o)

    @staticmethod
    def _lost(gap, timeout, o):
        o.lost += gap
        if timeout:
            o.lost_timeout += gap

    def _jump(self, seq, now, o) -> bool:
        """``seq`` is ``jump_at`` or more ahead of the window (RFC 2637 §4.4: nothing is
        retransmitted, so after a burst loss the window must follow the peer; issue 10: a
        blind spoof far ahead must not drag it away). Refused (``drop_seq_jump``) and
        remembered as the candidate of a new region; a packet taken into the window forgets
        it. The window follows the region when (the compiled _rxw_jump explains why each is
        spoof-safe):

        * idle rule: a packet near the candidate (within max(depth, JUMP_SLACK)) when the
          window has had no packet for the timeout -- at once, or by ``fire`` (to just past
          the candidate, needing jump_n >= 2) once the window falls silent;
        * fast rule (issue 9): a near packet makes JUMP_FAST_N and the region was seen at an
          earlier instant ``jump_tp`` at least ``jump_silence()`` after its first packet
          ``jump_t0`` -- the window took nothing while the region was live that long; a
          step between the region's instants longer than ``jump_stride()`` restarts
          ``jump_t0`` (a receiver stall proves no silence).

        True when ``seq`` is now the next expected (gaps before it ``lost``), else False."""
        p = self.p
        if self.jump is not None:
            k = serial_diff(seq, self.jump)
            # near: the region's own reordering may reach what makes room in the window
            slack = max(p.depth, JUMP_SLACK)
            near = k != 0 and -slack < k < slack
            if near and (now - self.last >= p.timeout
                         or (self.jump_n + 1 >= JUMP_FAST_N and now > self.jump_tp
                             and self.jump_tp - self.jump_t0 >= self.jump_silence())):
                self.jump = None
                self._skip_to(seq, now, False, o)
                return True
            o.drop = SEQ_JUMP
            if k == 0:
                return False                # the candidate again: confirms nothing
            if near:
                self.jump_n += 1
                if now - self.jump_tp > self.jump_stride():
                    self.jump_t0 = now      # a stall inside the evidence: it starts again
            else:
                self.jump_n = 1             # another region: its own evidence from now
                self.jump_t0 = now
        else:
            o.drop = SEQ_JUMP
            self.jump_n = 1
            self.jump_t0 = now
        self.jump = seq
        self.jump_tp = now
        if self.jump_n >= 2:                # confirmed: the timer takes it if the window stays silent
            o.arm = True
        return False


class RxWindowForTest:
    """The table test's view of one window (the same class on the compiled side,
    fastpptp._rxwin.RxWindowForTest): acts on each RxOut as the engine does -- delivers in
    order into ``delivered``, counts into ``counters`` (the engine's names) -- and gives the
    pool frames back."""

    def __init__(self, depth=64, timeout=0.1, ack_delay=0.02, pool=1024):
        self.pool = RxPool(pool)
        self.win = RxWindow(RxParams(depth, timeout, ack_delay), self.pool)
        self.delivered: list[bytes] = []
        self.counters = dict.fromkeys(("lost", "drop_reorder_timeout", "reordered",
                                       "drop_duplicate", "drop_too_old", "drop_seq_jump",
                                       "drop_no_room"), 0)

    def _act(self, o: RxOut) -> None:
        c = self.counters
        c["lost"] += o.lost
        c["drop_reorder_timeout"] += o.lost_timeout
        c["reordered"] += o.reordered
        if o.drop != TAKEN:
            c[DROP_COUNTER[o.drop]] += 1
        self.delivered.extend(bytes(f) for f, _ in o.frames)
        self.pool.put(o.pooled)

    def receive(self, seq: int, frame: bytes, now: float) -> None:
        self._act(self.win.receive(seq & U32, bytes(frame), now))

    def fire(self, now: float) -> None:
        self._act(self.win.fire(now))

    def ack_due(self, now: float) -> int | None:
        """The ack timer: the value of the ack-only packet it sends, or None."""
        return self.win.ack_sent_now() if self.win.ack_due(now) else None

    def ack_taken(self) -> int | None:
        """A data packet goes out: the ack it piggybacks, or None."""
        return self.win.ack_taken() if self.win.ack_pending() else None

    @property
    def seq_recv(self) -> int:
        return self.win.seq_recv

    @property
    def buffered(self) -> int:
        return len(self.win.reorder)

    @property
    def pool_free(self) -> int:
        return self.pool.nfree

    def deadline(self) -> float | None:
        return self.win.deadline()
