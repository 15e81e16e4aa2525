"""The send side alone -- sequence numbers out, acks in, the opt-in flow control of
RFC 2637 Appendix A -- one table on both twins: fastpptp._txwin.TxWindowForTest (the
compiled struct and nogil functions of fastpptp/_txwin.pxd) and
fastpptp._txwin_ref.TxWindowForTest (the Python TxWindow).

Each row: the peer's window, flow control on or off, steps at given times -- we send a
packet (framed with its sequence number, held, or dropped), an ack arrives (must the
engine arm its timers?), the timers fire (the held packets sent now) -- the result of each
step and the state after.  The same inside the engine: tests/engine/test_engine.py
(flow control) and the differential tests.
"""
from __future__ import annotations

import dataclasses

import pytest

from fastpptp import _txwin_ref
from fastpptp.dataplane import TXQ_DEPTH, TXQ_SLOT

try:
    from fastpptp import _txwin as _txwin_compiled
except ImportError:
    _txwin_compiled = None

U32 = 0xFFFFFFFF


def send(t=0.0, size=None):
    return ("send", t, size)


def ack(n, t=0.0):
    return ("ack", n, t)


def fire(t):
    return ("fire", t)


def burst(k, t=0.0):
    """k packets sent at t: the count of each result."""
    return ("burst", k, t)


@dataclasses.dataclass
class Row:
    name: str
    steps: list
    results: list
    state: dict
    rwin: int = 64
    flow_control: bool = True


S, H, D = "sent", "held", "drop"

ROWS = [
    Row("flow control off: never held, no time-out", [send(), send(), send(), ack(1, 0.1)],
        [(S, 0), (S, 1), (S, 2), False],
        {"seq_sent": 2, "ack_recv": 1, "window": 1, "held": 0, "deadline": None},
        rwin=1, flow_control=False),
    Row("window full: held, sent when an ack opens it",
        [send(), send(), send(), send(), ack(0, 0.1), fire(0.1)],
        [(S, 0), (S, 1), (H, None), (H, None), True, [("p2", 2)]],
        {"seq_sent": 2, "ack_recv": 0, "window": 2, "held": 1}, rwin=2),
    Row("no ack within the time-out: the window halves, the time-out doubles",
        [send(0.0), fire(0.5), fire(1.0)], [(S, 0), [], []],
        {"seq_sent": 0, "ack_recv": 0, "window": 2, "held": 0, "ato": 2.0, "deadline": None},
        rwin=4),
    Row("the first RTT sample sets the time-out (SRTT + 4 DEV)",
        [send(0.0), ack(0, 0.2)], [(S, 0), False],
        {"ack_recv": 0, "ato": pytest.approx(0.6), "deadline": None}),
    Row("later samples are smoothed",
        [send(0.0), ack(0, 0.2), send(1.0), ack(1, 1.01)], [(S, 0), False, (S, 1), False],
        {"ato": pytest.approx(0.17625 + 4 * 0.1225)}),
    Row("the time-out is at least 0.1 s", [send(0.0), ack(0, 0.001)], [(S, 0), False],
        {"ato": pytest.approx(0.1)}),
    Row("the time-out runs while packets are unacknowledged",
        [send(0.0), send(0.1), ack(0, 0.2)], [(S, 0), (S, 1), True],
        {"deadline": pytest.approx(0.2 + 0.6), "ack_recv": 0}),
    Row("acks outside (ack_recv, seq_sent] are ignored",
        [send(), send(), ack(5), ack(0), ack(0), ack(U32)], [(S, 0), (S, 1), False, True, False,
                                                             False],
        {"seq_sent": 1, "ack_recv": 0}),
    Row("the window grows by one per ack, up to the peer's",
        [burst(4), fire(1.0), burst(3, 1.1), ack(4, 1.2), fire(1.2), ack(6, 1.3), send(1.4),
         ack(7, 1.5)],
        [{S: 4}, [], {S: 2, H: 1}, True, [("p6", 6)], False, (S, 7), False],
        {"seq_sent": 7, "ack_recv": 7, "window": 4, "held": 0}, rwin=4),
    Row("the hold queue is bounded: TXQ_DEPTH packets",
        [send(), burst(TXQ_DEPTH + 1)], [(S, 0), {H: TXQ_DEPTH, D: 1}],
        {"held": TXQ_DEPTH}, rwin=1),
    Row("a packet larger than a slot is not held",
        [send(), send(size=TXQ_SLOT + 1), send(size=TXQ_SLOT)], [(S, 0), (D, None), (H, None)],
        {"held": 1}, rwin=1),
]


def _impls():
    return {"compiled": getattr(_txwin_compiled, "TxWindowForTest", None),
            "reference": _txwin_ref.TxWindowForTest}


@pytest.fixture(params=["compiled", "reference"])
def TxWindow(request):
    cls = _impls()[request.param]
    if cls is None:
        pytest.fail("fastpptp._txwin is not built (make build)")
    return cls


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_txwin_table(TxWindow, row):
    w = TxWindow(rwin=row.rwin, flow_control=row.flow_control)
    i = 0
    results = []

    def payload(size):
        nonlocal i
        p = b"p%d" % i
        i += 1
        return p if size is None else p.ljust(size, b"\0")

    for step in row.steps:
        if step[0] == "send":
            results.append(w.send(payload(step[2]), step[1]))
        elif step[0] == "burst":
            counts: dict = {}
            for _ in range(step[1]):
                kind = w.send(payload(None), step[2])[0]
                counts[kind] = counts.get(kind, 0) + 1
            results.append(counts)
        elif step[0] == "ack":
            results.append(w.ack(step[1], step[2]))
        else:
            results.append([(p.decode(), seq) for p, seq in w.fire(step[1])])
    assert results == row.results
    st = w.state()
    assert {k: st[k] for k in row.state} == row.state


def test_first_sequence_number_is_zero_on_both():
    """seq_sent and ack_recv start at 2^32 - 1: the first packet is 0 (RFC 1982 arithmetic
    carries the wrap, as the receive window's table shows)."""
    for cls in _impls().values():
        if cls is None:
            pytest.fail("fastpptp._txwin is not built (make build)")
        w = cls(rwin=1, flow_control=False)
        assert w.state()["seq_sent"] == U32 and w.state()["ack_recv"] == U32
        assert w.send(b"x", 0.0) == ("sent", 0)
