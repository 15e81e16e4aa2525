"""The receive window's jump rules (fastpptp/_rxwin.pxd _rxw_jump, its twin
fastpptp/_rxwin_ref.py RxWindow._jump) under flood-rate burst loss and interleaved spoofs,
on both twins.

Issue 9: under a UDP flood the receiver's kernel drops runs of hundreds of datagrams; the
window must follow the new region within ~a millisecond (the fast rule: the region seen for
32 mean gaps between the stream's packets, >= 1 ms, <= the reorder time-out, up to an
already processed instant, with the window taking nothing meanwhile), not refuse everything
for the reorder time-out.  Issue 10: spoofed far-ahead packets (a live call ID, the peer's address) runs of
1, 2, 64 or 1000, in order or scattered, interleaved with a live genuine stream at 10,
1 000 or 100 000 packets/s, one packet per instant or in I/O-loop batches, never move the
window: every genuine packet is delivered, none is lost, every spoof is drop_seq_jump.
"""
from __future__ import annotations

import random
import struct

import pytest

from fastpptp import _rxwin_ref
from fastpptp.dataplane import EngineConfig
from support.packets import PEER, data_in, udp_packet

try:
    from fastpptp import _rxwin as _rxwin_compiled
except ImportError:                     # not built: the compiled cases fail with the reason
    _rxwin_compiled = None

U32 = 0xFFFFFFFF
TIMEOUT = 0.1                           # the default reorder_timeout
SPOOF = b"SPOOF"


def genuine(n: int) -> bytes:
    return b"\xff\x03\x00\x21" + struct.pack("!I", n & U32)


def spoofed(n: int) -> bytes:
    return b"\xff\x03\x00\x21" + SPOOF + struct.pack("!I", n & U32)


@pytest.fixture(params=["compiled", "reference"])
def RxWindow(request):
    if request.param == "reference":
        return _rxwin_ref.RxWindowForTest
    if _rxwin_compiled is None:
        pytest.fail("fastpptp._rxwin is not built (make build)")
    return _rxwin_compiled.RxWindowForTest


def feed(w, events):
    """events: (t, seq, spoof) in arrival order."""
    for t, seq, sp in events:
        w.receive(seq & U32, spoofed(seq) if sp else genuine(seq), t)


def labels(w):
    return [struct.unpack("!I", f[-4:])[0] for f in w.delivered if SPOOF not in f]


def stream(rate, n, seq0=0, t0=0.0, batch=1):
    """n genuine packets at ``rate``/s; with batch > 1 the I/O loop's view: ``batch``
    packets share one instant (the loop's ``now``), one instant every batch / rate."""
    return [(t0 + (k // batch) * batch / rate, (seq0 + k) & U32, False) for k in range(n)]


# ------------------------------------------------------------------ burst loss, followed fast
@pytest.mark.parametrize("rate", [50_000, 100_000, 200_000])
@pytest.mark.parametrize("batch", [1, 8, 32])
@pytest.mark.parametrize("loss", [200, 500, 5000])
def test_burst_loss_at_flood_rate_is_followed_within_a_few_ms(RxWindow, rate, batch, loss):
    """A warm stream (0.05 s: the EWMAs have learnt the rate), then ``loss`` packets
    dropped by the kernel, then the stream goes on.  Refused: what the window sees in
    max(1 ms, 32 packet gaps) plus one instant -- not the 0.1 s (5 000-20 000 packets) of
    the idle rule."""
    w = RxWindow(depth=64, timeout=TIMEOUT)
    warm = int(rate * 0.05) // batch * batch
    t1 = warm / rate
    ev = stream(rate, warm, 0, 0.0, batch)
    after = stream(rate, int(rate * 0.02), warm + loss, t1 + loss / rate, batch)
    feed(w, ev + after)
    silence = max(0.001, 32 / rate)                 # S of the fast rule
    bound = int(silence * rate) + 2 * batch + 4     # + the instant that proves it + slack
    refused = w.counters["drop_seq_jump"]
    assert 0 < refused <= bound
    assert refused * 10 < rate * TIMEOUT            # >= 10x better than the idle rule
    got = labels(w)
    assert got[:warm] == list(range(warm))
    assert got[warm:] == [s for _, s, _ in after[refused:]]
    assert w.counters["lost"] == loss + refused
    assert w.counters["drop_too_old"] == 0 and w.buffered == 0


def test_burst_loss_at_2k_pps_waits_32_gaps(RxWindow):
    """Below jump_at / timeout (1 280 packets/s at depth 64) a loss beyond the window
    lasts the time-out anyway (the idle rule); at 2 000/s, 150 lost (75 ms): S = 32 gaps
    = 16 ms, the region's first packet, 16 ms of it (tp), then the next one is taken."""
    w = RxWindow(timeout=TIMEOUT)
    feed(w, stream(2000, 400) + stream(2000, 60, 400 + 150, (400 + 150) / 2000))
    refused = w.counters["drop_seq_jump"]
    assert refused in (33, 34)              # 33, or 34 if S rounds an ulp above 16 ms
    assert labels(w)[400:] == list(range(550 + refused, 610))


def test_a_young_window_waits_the_timeout(RxWindow):
    """No gap learnt yet (the EWMA starts at the time-out): the fast rule waits timeout,
    so a new call is no weaker than before."""
    w = RxWindow(timeout=TIMEOUT)
    feed(w, stream(100_000, 3) + stream(100_000, 20_000, 1000, 0.001))
    assert w.counters["drop_seq_jump"] > 100_000 * 0.09


def test_fast_rule_needs_four_packets_and_an_earlier_instant(RxWindow):
    """1 000 packets/s in batches of 20 (an instant every 20 ms): S = 32 ms, and a step of
    up to 40 ms (two instant gaps) between the region's instants counts as continuous."""
    w = RxWindow(timeout=TIMEOUT)
    feed(w, stream(1000, 2000, 0, 0.0, 20))
    t = 2.0 + 0.005
    # two region packets 35 ms apart (>= S), a third at a later instant: not enough packets
    feed(w, [(t, 5000, False), (t + 0.035, 5001, False), (t + 0.036, 5002, False)])
    assert w.seq_recv == 1999
    # the fourth, at the same instant as the evidence packet: refused (its batch may still
    # hold a genuine packet); the fifth, at a later instant: taken
    feed(w, [(t + 0.036, 5003, False), (t + 0.037, 5004, False)])
    assert w.seq_recv == 5004
    assert w.counters["drop_seq_jump"] == 4


def test_a_receiver_stall_inside_the_evidence_restarts_it(RxWindow):
    """100 000 packets/s in batches of 32 (S = 1 ms, a step of up to 0.64 ms continuous).
    A spoofed burst ends one batch; the receiver is off the CPU 5 ms; the next batch is
    spoofs only (the rest of the burst, queued before the genuine packets of those 5 ms),
    and the one after starts with spoofs too.  Seen across the stall the run spans 5 ms,
    but the stall proves no silence: the evidence starts again after it, and the genuine
    packets behind the run forget it."""
    w = RxWindow(timeout=TIMEOUT)
    rate, batch = 100_000, 32
    feed(w, stream(rate, 3200, 0, 0.0, batch))
    t, seq, sp = 0.032, 3200, 50_000_000
    feed(w, [(t, seq + k, False) for k in range(batch)] + [(t, sp + k, True) for k in range(40)])
    seq, sp = seq + batch, sp + 40
    t += 0.005                                          # the stall
    feed(w, [(t, sp + k, True) for k in range(64)])     # a batch of spoofs only
    sp += 64
    t += 0.00001
    queued = 500                                        # the genuine packets of the stall
    feed(w, [(t, sp + k, True) for k in range(8)] + [(t, seq + k, False) for k in range(queued)])
    seq += queued
    feed(w, stream(rate, 320, seq, t + 0.0001, batch))
    assert labels(w) == list(range(seq + 320))
    assert w.counters["drop_seq_jump"] == 40 + 64 + 8 and w.counters["lost"] == 0


def test_the_region_restarts_its_evidence_when_another_region_appears(RxWindow):
    w = RxWindow(timeout=TIMEOUT)
    feed(w, stream(1000, 200))
    t = 0.2
    feed(w, [(t + k * 0.001, 1000 + k, False) for k in range(5)])          # region A, 4 ms
    feed(w, [(t + 0.005 + k * 0.004, 50_000 + k, False) for k in range(9)])  # region B
    assert w.seq_recv == 199                # 33 ms since A began, B's own 32 ms not yet
    feed(w, [(t + 0.041, 50_009, False), (t + 0.045, 50_010, False)])
    assert w.seq_recv == 50_010


# ------------------------------------------------------------------ spoofs never move a live window
def _interleave(gen, spoof_runs):
    """Insert each spoof run between two genuine instants (or at the front of an instant's
    batch, before its genuine packets: the worst order), at the arrival instants of the gap
    it falls in."""
    ev = list(gen)
    out = []
    runs = dict(spoof_runs)                 # index in gen -> run
    for i, e in enumerate(ev):
        if i in runs and i > 0:
            t_prev, t_cur = ev[i - 1][0], e[0]
            run = runs[i]
            for j, s in enumerate(run):
                # the run spread over the gap before this genuine packet, never reaching it
                tj = t_prev + (t_cur - t_prev) * (j + 1) / (len(run) + 1) if t_cur > t_prev \
                    else t_cur
                out.append((tj, s, True))
        out.append(e)
    return out


def _runs(r, n_gen, length, ordered, count, base):
    runs = []
    for at in r.sample(range(50, n_gen), count):
        if ordered:
            s0 = base + r.randrange(1 << 30)
            run = [(s0 + k) & U32 for k in range(length)]
        else:
            run = [(base + r.randrange(1 << 30)) & U32 for _ in range(length)]
        runs.append((at, run))
    return runs


@pytest.mark.parametrize("rate,batch,n_gen", [(10, 1, 300), (1000, 1, 3000),
                                              (100_000, 1, 30_000), (100_000, 32, 30_000),
                                              (1000, 4, 3000)])
@pytest.mark.parametrize("length", [1, 2, 64, 1000])
@pytest.mark.parametrize("ordered", [True, False])
def test_spoofed_runs_interleaved_with_a_live_stream_never_move_it(RxWindow, rate, batch,
                                                                   n_gen, length, ordered):
    r = random.Random(rate * 7 + length * 3 + ordered + batch)
    gen = stream(rate, n_gen, 5, 0.0, batch)
    # far ahead of the stream (>= jump_at), wherever it is by then
    runs = _runs(r, n_gen, length, ordered, 6, 5 + n_gen + 200)
    w = RxWindow(depth=64, timeout=TIMEOUT)
    feed(w, _interleave(gen, runs))
    assert labels(w) == [s for _, s, _ in gen]
    assert not any(SPOOF in f for f in w.delivered)
    c = w.counters
    assert c["drop_seq_jump"] == sum(len(run) for _, run in runs)
    assert c["lost"] == 0 and c["drop_too_old"] == 0
    assert w.seq_recv == (5 + n_gen - 1)


@pytest.mark.parametrize("stall", [0.005, 0.05])
def test_a_spoofed_run_straddling_batches_never_moves_a_live_window(RxWindow, stall):
    """The I/O loop's worst case: 100 000 packets/s in batches of 32 (one ``now`` each,
    0.32 ms apart: S = 1 ms), and now and then the receiver stalls ``stall`` (> S).  An
    in-order spoofed run straddles the stall: it ends the batch before (after its genuine
    packets: the candidate survives that batch) and leads the batch after (before its
    genuine packets).  Within that later batch the run has been seen for the stall, longer
    than S -- but the evidence instant must be an earlier, fully processed one: the genuine
    packets behind the run in the same batch forget it."""
    w = RxWindow(timeout=TIMEOUT)
    rate, batch = 100_000, 32
    seq, t, sp, spoofs = 0, 0.0, 10_000_000, 0
    for b in range(600):
        ev = []
        if b % 50 == 0 and b:
            t += stall
            ev += [(t, sp + k, True) for k in range(40)]        # the run goes on
            sp += 40
        ev += [(t, seq + k, False) for k in range(batch)]
        seq += batch
        if b % 50 == 49:
            ev += [(t, sp + k, True) for k in range(40)]        # the run starts
            sp += 40
        spoofs += sum(1 for e in ev if e[2])
        feed(w, ev)
        t += batch / rate
    assert labels(w) == list(range(seq))
    assert w.counters["drop_seq_jump"] == spoofs and w.counters["lost"] == 0


def test_a_pause_longer_than_32_gaps_is_silence(RxWindow):
    """The exposure, stated: a live 1 000 packet/s stream that pauses 50 ms (> 32 gaps)
    while a spoofer sends an in-order run far ahead lets the run move the window -- as a
    0.1 s pause does under the idle rule.  The peer's next packets are then too old and its
    LCP echoes fail (tests/engine/test_engine_hardening.py), as before."""
    w = RxWindow(timeout=TIMEOUT)
    feed(w, stream(1000, 200))
    feed(w, [(0.2 + k * 0.001, 900_000 + k, True) for k in range(50)])
    assert w.seq_recv != 199


# ------------------------------------------------------------------ twins agree
def test_twins_agree_on_flood_bursts_and_spoofs():
    if _rxwin_compiled is None:
        pytest.fail("fastpptp._rxwin is not built (make build)")
    for seed in range(12):
        r = random.Random(seed)
        depth = r.choice([4, 64, 256])
        ws = [cls(depth=depth, timeout=TIMEOUT, ack_delay=0.001, pool=4096)
              for cls in (_rxwin_compiled.RxWindowForTest, _rxwin_ref.RxWindowForTest)]
        seq, t = r.randrange(1 << 32), 0.0
        rate = r.choice([1000, 50_000, 200_000])
        batch = r.choice([1, 8, 64])
        log = [[], []]
        for _ in range(3000):
            t += batch / rate * r.choice([1, 1, 1, 0.5, 3, 20])
            evs = []
            for _ in range(batch):
                x = r.random()
                if x < 0.01:
                    seq = (seq + r.choice([200, 500, 3000])) & U32       # burst loss
                elif x < 0.03:
                    evs.append((t, (seq + r.randrange(300, 1 << 20)) & U32, True))
                s = (seq + r.choice([0, 0, 0, 0, 1, -1, 3])) & U32
                seq = (seq + 1) & U32
                evs.append((t, s, False))
            fire = r.random() < 0.1
            for i, w in enumerate(ws):
                feed(w, evs)
                if fire:
                    w.fire(t)
                log[i].append((w.seq_recv, w.buffered, w.deadline()))
        a, b = ws
        assert a.delivered == b.delivered, seed
        assert a.counters == b.counters, seed
        assert log[0] == log[1], seed


# ------------------------------------------------------------------ inside the engine
CID, PCID = 7, 0x99


def test_engine_follows_a_flood_burst_loss_within_a_few_ms(Engine):
    """The engine (both twins) fed as the I/O loop feeds it: batches of 32 at 100 000
    packets/s (one ``now`` per batch), 1 000 packets lost, spoofs leading some batches."""
    e = Engine(EngineConfig())
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    pkt = udp_packet(dst="198.51.100.1", body=b"x" * 16)
    rate, batch = 100_000, 32
    got, seq, t = 0, 0, 0.0
    for b in range(400):                     # 0.128 s
        if b == 200:
            seq += 1000                     # the kernel dropped a run
        dg = [data_in(CID, (seq + k) & U32, pkt) for k in range(batch)]
        if b % 50 == 25:                    # a spoofed run at the front of the batch
            dg = [data_in(CID, 5_000_000 + b * 64 + k, pkt) for k in range(64)] + dg
        got += len(e.process(t, gre_in=dg).tun_out)
        seq += batch
        t += batch / rate
    c = e.counters(CID)
    spoofs = 64 * 8
    refused = c["drop_seq_jump"] - spoofs
    # S = 1 ms (32 gaps of 10 us are less): 100 packets, plus the proving instant
    assert 0 < refused <= 100 + 3 * batch
    assert got == 400 * batch - refused
    assert c["lost"] == 1000 + refused and c["drop_too_old"] == 0
    e.close()
