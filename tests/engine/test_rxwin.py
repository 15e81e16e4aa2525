"""The GRE receive window and reorder buffer alone (RFC 2637 §4.3-4.4), one table on both
twins: fastpptp._rxwin.RxWindowForTest (the compiled struct and nogil functions of
fastpptp/_rxwin.pxd) and fastpptp._rxwin_ref.RxWindowForTest (the Python RxWindow).

Each row: window parameters, a list of steps at given times -- a data frame arriving with a
sequence number, an LCP Echo arriving, the timers firing, the ack timer asked, a packet of
ours sent (does it piggyback an ack?) -- and what must come out: the frames delivered in
order, the counters, the acks, seq_recv, what stays buffered and the next deadline.  The
same behaviour inside the engine: tests/engine/test_engine.py (reorder, gaps, jumps).
"""
from __future__ import annotations

import dataclasses
import struct

import pytest

from fastpptp import _rxwin_ref
from fastpptp.dataplane import EngineConfig
from support.packets import PEER, data_in, udp_packet

try:
    from fastpptp import _rxwin as _rxwin_compiled
except ImportError:                     # not built: the compiled rows fail with the reason
    _rxwin_compiled = None

U32 = 0xFFFFFFFF
COUNTERS = ("lost", "drop_reorder_timeout", "reordered", "drop_duplicate", "drop_too_old",
            "drop_seq_jump", "drop_no_room")


def data(n: int) -> bytes:
    """A data frame labelled n (PPP IPv4 protocol; the window never looks inside)."""
    return b"\xff\x03\x00\x21" + struct.pack("!I", n & U32)


def echo(n: int) -> bytes:
    """An LCP Echo-Request (RFC 1661 §5.8) labelled n."""
    return b"\xff\x03\xc0\x21\x09\x01\x00\x0c" + struct.pack("!I", n & U32)


def label(frame: bytes):
    n = struct.unpack("!I", frame[-4:])[0]
    return f"e{n}" if frame[2:4] == b"\xc0\x21" else n


# steps
def rx(seq, t=0.0):
    return ("rx", seq, t)


def ex(seq, t=0.0):
    return ("echo", seq, t)


def fire(t):
    return ("fire", t)


def ack(t):
    """The ack timer at t: the value of the ack-only packet it sends, or None."""
    return ("ack", t)


def send():
    """We send a packet: the ack it piggybacks, or None."""
    return ("send",)


@dataclasses.dataclass
class Row:
    name: str
    steps: list
    delivered: list
    counters: dict = dataclasses.field(default_factory=dict)   # the others: 0
    seq_recv: int | None = None
    acks: list = dataclasses.field(default_factory=list)
    buffered: int = 0
    deadline: float | None | str = "any"
    depth: int = 64
    timeout: float = 0.1
    ack_delay: float = 0.02
    pool: int = 1024


ROWS = [
    Row("in order", [rx(0), rx(1), rx(2)], [0, 1, 2], seq_recv=2, deadline=0.02),
    Row("first packet taken whatever its number", [rx(1000), rx(1001)], [1000, 1001],
        seq_recv=1001),
    Row("ack alone after ack_delay, once, only when changed",
        [rx(0), rx(1), ack(0.01), ack(0.03), ack(0.05), rx(2, 0.06), ack(0.1)],
        [0, 1, 2], acks=[None, 1, None, 2], seq_recv=2, deadline=None),
    Row("a packet we send piggybacks the ack, then no ack-only packet",
        [rx(0), send(), send(), ack(0.05), rx(1, 0.06), send()],
        [0, 1], acks=[0, None, None, 1], deadline=None),
    Row("gap filled", [rx(0), rx(2), rx(3), rx(1)], [0, 1, 2, 3],
        {"reordered": 2}, seq_recv=3),
    Row("gap given up after the timeout",
        [rx(0), rx(2, 0.01), rx(3, 0.02), fire(0.1), fire(0.12), rx(1, 0.13), rx(4, 0.14)],
        [0, 2, 3, 4], {"reordered": 2, "lost": 1, "drop_reorder_timeout": 1, "drop_too_old": 1},
        seq_recv=4),
    Row("the reorder deadline follows the oldest buffered frame",
        [rx(0), rx(2, 0.01), rx(4, 0.05)], [0], {"reordered": 2}, seq_recv=0, buffered=2,
        deadline=0.02),
    Row("two gaps given up one timeout apart",
        [rx(0), rx(2, 0.01), rx(4, 0.05), fire(0.12), fire(0.16)], [0, 2, 4],
        {"reordered": 2, "lost": 2, "drop_reorder_timeout": 2}, seq_recv=4),
    Row("duplicate of a delivered packet (history)", [rx(0), rx(1), rx(1), rx(0)], [0, 1],
        {"drop_duplicate": 2}, seq_recv=1),
    Row("duplicate of a buffered packet", [rx(0), rx(2), rx(2), rx(1)], [0, 1, 2],
        {"reordered": 1, "drop_duplicate": 1}, seq_recv=2),
    Row("too old: behind the 64-entry history", [rx(100), rx(10), rx(36)], [100],
        {"drop_too_old": 2}, seq_recv=100),
    Row("far ahead refused (a blind spoof), the stream goes on",
        [rx(0), rx(1000, 0.01), rx(1, 0.02), rx(2, 0.2)], [0, 1, 2], {"drop_seq_jump": 1},
        seq_recv=2),
    Row("confirmed jump taken at once when the window is silent",
        [rx(0), rx(1000, 0.2), rx(1001, 0.25), rx(1002, 0.26)], [0, 1001, 1002],
        {"drop_seq_jump": 1, "lost": 1000}, seq_recv=1002),
    Row("confirmed jump taken by the timer once the window falls silent",
        [rx(0), rx(1000, 0.01), rx(1001, 0.02), fire(0.05), fire(0.11), rx(1002, 0.12)],
        [0, 1002], {"drop_seq_jump": 2, "lost": 1001}, seq_recv=1002),
    Row("a packet taken into the window forgets the candidate",
        [rx(0), rx(1000, 0.01), rx(1001, 0.02), rx(1, 0.03), fire(0.2), rx(2, 0.21)],
        [0, 1, 2], {"drop_seq_jump": 2}, seq_recv=2),
    Row("the candidate again confirms nothing", [rx(0), rx(1000, 0.2), rx(1000, 0.3), fire(1.0)],
        [0], {"drop_seq_jump": 2}, seq_recv=0),
    Row("depth overflow: the oldest gaps given up to make room",
        [rx(0), rx(2), rx(3), rx(5)], [0, 2, 3], {"reordered": 3, "lost": 1}, seq_recv=3,
        buffered=1, depth=4),
    Row("depth + max(depth, 64) ahead is a jump, one less makes room",
        [rx(0), rx(1 + 4 + 64), rx(1 + 4 + 63)], [0], {"drop_seq_jump": 1, "lost": 64,
                                                       "reordered": 1},
        seq_recv=64, buffered=1, depth=4),
    Row("32-bit wrap", [rx(U32 - 1), rx(0), rx(U32), rx(1)], [U32 - 1, U32, 0, 1],
        {"reordered": 1}, seq_recv=1),
    Row("32-bit wrap, depth not a power of two",
        [rx(U32 - 2), rx(U32), rx(0), rx(1), rx(U32 - 1)], [U32 - 2, U32 - 1, U32, 0, 1],
        {"reordered": 3}, seq_recv=1, depth=5),
    Row("a gap across the wrap given up", [rx(U32 - 1), rx(1), fire(0.2)], [U32 - 1, 1],
        {"reordered": 1, "lost": 2, "drop_reorder_timeout": 2}, seq_recv=1),
    Row("LCP Echo delivered early, its slot a placeholder",
        [rx(0), ex(2), rx(1), rx(3)], [0, "e2", 1, 3], {"reordered": 1}, seq_recv=3),
    Row("LCP Echo behind the window after its gap was given up",
        [rx(0), rx(3), fire(0.2), ex(1, 0.3), ex(1, 0.3)], [0, 3, "e1", "e1"],
        {"reordered": 1, "lost": 2, "drop_reorder_timeout": 2}, seq_recv=3),
    Row("LCP Echo delivered once, then a duplicate", [rx(0), ex(1), ex(1)], [0, "e1"],
        {"drop_duplicate": 1}, seq_recv=1),
    Row("LCP Echo buffered twice is a duplicate", [rx(0), ex(2), ex(2), rx(1)], [0, "e2", 1],
        {"reordered": 1, "drop_duplicate": 1}, seq_recv=2),
    Row("LCP Echo far behind the history is too old", [rx(100), ex(10)], [100],
        {"drop_too_old": 1}, seq_recv=100),
    Row("reorder pool empty: drop_no_room; an echo placeholder needs no frame",
        [rx(0), rx(2), rx(3), rx(4), ex(5), rx(1)], [0, "e5", 1, 2, 3],
        {"reordered": 3, "drop_no_room": 1}, seq_recv=3, buffered=1, pool=2),
    Row("frames released by a call are free only after delivery",
        [rx(0), rx(2), rx(3), rx(5)], [0, 2, 3], {"reordered": 2, "lost": 1, "drop_no_room": 1},
        seq_recv=3, depth=4, pool=2),
]


def _impls():
    return {"compiled": getattr(_rxwin_compiled, "RxWindowForTest", None),
            "reference": _rxwin_ref.RxWindowForTest}


@pytest.fixture(params=["compiled", "reference"])
def RxWindow(request):
    cls = _impls()[request.param]
    if cls is None:
        pytest.fail("fastpptp._rxwin is not built (make build)")
    return cls


def run(RxWindow, row: Row):
    w = RxWindow(depth=row.depth, timeout=row.timeout, ack_delay=row.ack_delay, pool=row.pool)
    acks = []
    for step in row.steps:
        kind = step[0]
        if kind == "rx":
            w.receive(step[1] & U32, data(step[1]), step[2])
        elif kind == "echo":
            w.receive(step[1] & U32, echo(step[1]), step[2])
        elif kind == "fire":
            w.fire(step[1])
        elif kind == "ack":
            acks.append(w.ack_due(step[1]))
        else:
            acks.append(w.ack_taken())
    return w, acks


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_rxwin_table(RxWindow, row):
    w, acks = run(RxWindow, row)
    assert [label(f) for f in w.delivered] == row.delivered
    assert w.counters == {k: row.counters.get(k, 0) for k in COUNTERS}
    assert acks == row.acks
    if row.seq_recv is not None:
        assert w.seq_recv == row.seq_recv & U32
    assert w.buffered == row.buffered
    # every pool frame comes back once nothing is buffered
    assert w.pool_free <= row.pool
    if row.buffered == 0:
        assert w.pool_free == row.pool
    if row.deadline != "any":
        d = w.deadline()
        assert d == (None if row.deadline is None else pytest.approx(row.deadline))


def test_twins_agree_on_a_random_walk():
    """Beyond the table: a long random arrival order (reordering, loss, duplicates, echoes,
    jumps, timers) gives the same deliveries, counters, acks and deadlines on both twins."""
    import random
    if _rxwin_compiled is None:
        pytest.fail("fastpptp._rxwin is not built (make build)")
    for seed in range(20):
        r = random.Random(seed)
        depth = r.choice([1, 3, 4, 8, 64])
        pool = r.choice([2, 8, 1024])
        ws = [cls(depth=depth, timeout=0.05, ack_delay=0.01, pool=pool)
              for cls in (_rxwin_compiled.RxWindowForTest, _rxwin_ref.RxWindowForTest)]
        seq, t = r.randrange(1 << 32), 0.0
        log = [[], []]
        for _ in range(400):
            t += r.choice([0.0, 0.001, 0.01, 0.06])
            op = r.random()
            if op < 0.75:
                s = (seq + r.choice([0, 0, 1, 2, -1, -3, 5, depth, 200, 70000])) & U32
                seq = (seq + 1) & U32 if r.random() < 0.9 else seq
                f = echo(s) if r.random() < 0.1 else data(s)
                for w in ws:
                    w.receive(s, f, t)
            elif op < 0.85:
                for w in ws:
                    w.fire(t)
            elif op < 0.93:
                for i, w in enumerate(ws):
                    log[i].append(w.ack_due(t))
            else:
                for i, w in enumerate(ws):
                    log[i].append(w.ack_taken())
            for i, w in enumerate(ws):
                log[i].append((w.seq_recv, w.buffered, w.pool_free, w.deadline()))
        a, b = ws
        assert a.delivered == b.delivered, seed
        assert a.counters == b.counters, seed
        assert log[0] == log[1], seed


# ------------------------------------------------------------------ inside the engine
T_IN = "198.51.100.1"
CID, PCID = 7, 0x99


def test_engine_reorder_pool_bounds_what_all_calls_hold(Engine):
    """EngineConfig.reorder_pool: the frames all calls' reorder buffers hold together; one
    more is drop_no_room, and a call's frames go back when it is removed."""
    e = Engine(EngineConfig(reorder_pool=3))
    for cid in (CID, CID + 1):
        e.add_session(cid, PCID, PEER)
        e.set_data(cid, True, True)
    ip = [udp_packet(dst=T_IN, body=b"p%05d" % i) for i in range(8)]
    # call CID: 0 in order, 2 3 4 buffered (the pool is full), 5 refused
    e.process(0.0, gre_in=[data_in(CID, i, ip[i]) for i in (0, 2, 3, 4, 5)])
    c = e.counters(CID)
    assert c["reordered"] == 3 and c["drop_no_room"] == 1
    # call CID + 1 finds the pool empty too
    e.process(0.0, gre_in=[data_in(CID + 1, i, ip[i]) for i in (0, 2)])
    assert e.counters(CID + 1)["drop_no_room"] == 1
    # removing CID gives its three frames back: CID + 1 buffers again
    e.remove_session(CID)
    out = e.process(0.01, gre_in=[data_in(CID + 1, i, ip[i]) for i in (2, 3, 1)])
    assert [p for _, p in out.tun_out] == [ip[1], ip[2], ip[3]]
    assert e.counters(CID + 1)["reordered"] == 2
    e.close()


def test_engine_reorder_pool_config():
    assert _rxwin_ref.pool_frames(0, 64) == 1024
    assert _rxwin_ref.pool_frames(0, 1024) == 4096
    assert _rxwin_ref.pool_frames(7, 64) == 7
    with pytest.raises(ValueError):
        EngineConfig(reorder_pool=-1)
    with pytest.raises(ValueError):
        EngineConfig(reorder_pool=(1 << 20) + 1)
