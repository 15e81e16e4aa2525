"""Data-plane defects of issue 10 (hardening), each pinned on both twins.

* decap_slab must not overwrite a row's own GRE/PPP frame with a packet released from the
  reorder buffer, and a released packet that fits no row is ``drop_no_room`` (never
  ``rx_packets``);
* a reorder depth that is not a power of two survives the 2^32 sequence wrap;
* a removed session's queued outgoing control frames give their queue slots back;
* one spoofed GRE packet far ahead of the window cannot move it (a jump beyond the window
  needs a second packet in the new region *and* the old region silent for the reorder
  time-out); a genuine burst loss larger than the window still recovers; LCP echoes are
  held to the window, so a hijacked window makes keepalives fail;
* the control queue: per-cause overflow counters, a default sized for thousands of
  sessions.
"""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from support.packets import PEER, data_in, dgram, gre, ppp, udp_packet
from fastpptp.dataplane import HEADROOM, EngineConfig, load_engine

CID, PCID = 7, 0x99
T_IN = "198.51.100.1"
ECHO_REPLY = b"\x0a\x07\x00\x08\x00\x00\x00\x00"
LCP_CONFREQ = b"\x01\x01\x00\x04"


def make(Engine, **cfg):
    e = Engine(EngineConfig(**cfg))
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    return e


def ip(i: int, size: int = 0) -> bytes:
    """Packet ``i`` for our TUN; ``size`` pads the body (0: small)."""
    return udp_packet(dst=T_IN, body=b"p%05d" % i + b"x" * size)


def decap_rows(e, datagrams, width=256, spare=8):
    """One decap_slab call: rows of ``width``, ``spare`` rows beyond the datagrams.
    Returns the delivered IP packets (bytes, in order)."""
    rows = len(datagrams) + spare
    slab = np.zeros((rows, width), np.uint8)
    lens = np.zeros(rows, np.uint32)
    for r, d in enumerate(datagrams):
        slab[r, HEADROOM:HEADROOM + len(d)] = np.frombuffer(d, np.uint8)
        lens[r] = len(d)
    o_tun, o_off, o_len = np.zeros(rows, np.int32), np.zeros(rows, np.int64), np.zeros(rows, np.uint32)
    m = e.decap_slab(slab, lens, len(datagrams), o_tun, o_off, o_len)
    flat = slab.reshape(-1)
    return [flat[o_off[j]:o_off[j] + o_len[j]].tobytes() for j in range(m)]


# ------------------------------------------------------------------ 1. decap_slab frames
def test_decap_slab_issue_reproducer_twins_agree_and_nothing_malformed():
    """The issue's reproducer (reorder_depth=4: 100, 102, 108, 107, then the time-out): the
    compiled twin used to copy 102 over row 108's own frame (drop_malformed)."""
    got = []
    for impl in ("compiled", "reference"):
        e = make(load_engine(impl), reorder_depth=4)
        out = decap_rows(e, [data_in(CID, s, ip(s)) for s in (100, 102, 108, 107)])
        out += [p for _, p in e.process(time.monotonic() + 5).tun_out]
        c = e.counters(CID)
        assert c["drop_malformed"] == 0
        assert c["rx_packets"] == len(out)
        got.append((out, c))
    assert got[0] == got[1]
    assert got[0][0] == [ip(100), ip(102), ip(107), ip(108)]


def test_decap_slab_release_does_not_clobber_the_rows_own_frame(Engine):
    """A datagram that moves the window releases buffered packets; they go to a free or a
    spare row, never over the datagram being decapsulated."""
    e = make(Engine, reorder_depth=4, reorder_timeout=0.05)
    assert decap_rows(e, [data_in(CID, s, ip(s)) for s in (100, 102)]) == [ip(100)]
    time.sleep(0.06)                        # the old region falls silent: a jump may be confirmed
    out = decap_rows(e, [data_in(CID, s, ip(s)) for s in (200, 201, 202)])      # far: a jump
    assert out == [ip(102), ip(201), ip(202)]
    c = e.counters(CID)
    assert c["drop_malformed"] == 0 and c["drop_seq_jump"] == 1 and c["rx_packets"] == 4


# ------------------------------------------------------------------ 2. depth not 2^k
@pytest.mark.parametrize("depth", [5, 6, 7, 64, 100])
def test_reorder_depth_not_power_of_two_survives_the_wrap(Engine, depth):
    e = make(Engine, reorder_depth=depth, reorder_timeout=0.1)
    seqs = [0xFFFFFFFD, 0xFFFFFFFF, 0, 1]
    out = e.process(0.0, gre_in=[data_in(CID, s, ip(i)) for i, s in enumerate(seqs)]).tun_out
    out += e.process(0.2).tun_out
    assert [p for _, p in out] == [ip(i) for i in range(4)]
    c = e.counters(CID)
    assert c["lost"] == 1 and c["rx_packets"] == 4          # 0xFFFFFFFE only


def test_reorder_depth_not_power_of_two_fills_every_slot_across_the_wrap(Engine):
    e = make(Engine, reorder_depth=5)
    seqs = [(0xFFFFFFFC + k) & 0xFFFFFFFF for k in range(8)]
    order = [0, 4, 3, 2, 1, 6, 7, 5]
    out = e.process(0.0, gre_in=[data_in(CID, seqs[k], ip(k)) for k in order]).tun_out
    assert [p for _, p in out] == [ip(k) for k in range(8)]
    assert e.counters(CID)["lost"] == 0


# ------------------------------------------------------------------ 3. control queue slots
def test_removed_sessions_queued_control_frames_free_their_slots(Engine):
    e = make(Engine, control_queue=1)
    e.send_control(CID, 0xC021, LCP_CONFREQ)
    e.remove_session(CID)
    e.add_session(8, 0x98, PEER)
    e.send_control(8, 0xC021, LCP_CONFREQ)
    out = e.process(0.0).gre_out
    assert len(out) == 1
    c = e.counters(8)
    assert c["drop_queue_full"] == 0 and c["tx_control"] == 1


def test_removal_keeps_the_order_of_other_sessions_frames(Engine):
    e = make(Engine, control_queue=4)
    e.add_session(8, 0x98, PEER)
    for k in range(4):
        e.send_control(CID if k % 2 else 8, 0xC021, bytes([1, k, 0, 4]))
    e.remove_session(CID)
    e.send_control(8, 0xC021, bytes([1, 9, 0, 4]))
    e.send_control(8, 0xC021, bytes([1, 10, 0, 4]))
    ids = [f[-3] for _, f in e.process(0.0).gre_out]        # LCP identifier
    assert ids == [0, 2, 9, 10]


# ------------------------------------------------------------------ 4. rows too narrow
def test_decap_slab_released_packet_wider_than_the_rows_is_no_room(Engine):
    e = make(Engine)
    big = ip(2, size=400)
    # wide rows: 0 delivered, 2 (big) buffered
    assert decap_rows(e, [data_in(CID, 0, ip(0)), data_in(CID, 2, big)], width=1024) == [ip(0)]
    # narrow rows: 1 fits its own row; the released 2 fits none
    assert decap_rows(e, [data_in(CID, 1, ip(1))], width=160) == [ip(1)]
    c = e.counters(CID)
    assert c["drop_no_room"] == 1 and c["rx_packets"] == 2 and c["lost"] == 0


def test_decap_slab_without_spare_rows_is_no_room(Engine):
    e = make(Engine)
    assert decap_rows(e, [data_in(CID, 0, ip(0)), data_in(CID, 2, ip(2)), data_in(CID, 3, ip(3))],
                      spare=0) == [ip(0)]
    # 4 is buffered (its row is free again), 1 fills the gap and stays in its own row; the
    # released 2 takes the free row of 4, and 3 and 4 find no room
    out = decap_rows(e, [data_in(CID, 4, ip(4)), data_in(CID, 1, ip(1))], spare=0)
    c = e.counters(CID)
    assert out == [ip(1), ip(2)]
    assert c["drop_no_room"] == 2 and c["rx_packets"] == 3 and c["lost"] == 0


# ------------------------------------------------------------------ 5. spoofed far-ahead GRE
def stream(e, seqs, t0, dt=0.001):
    """Genuine packets ``seqs`` one every ``dt`` from ``t0``; returns what was delivered."""
    out = []
    for k, s in enumerate(seqs):
        out += [p for _, p in e.process(t0 + k * dt, gre_in=[data_in(CID, s, ip(s))]).tun_out]
    return out


def test_spoofed_far_ahead_packets_do_not_move_the_window(Engine):
    e = make(Engine)
    assert stream(e, range(10), 0.0) == [ip(s) for s in range(10)]
    # a spoofer with the live call ID and the peer's address: a pair, back to back
    spoof = [data_in(CID, s, ip(s)) for s in (100_000, 100_001)]
    assert e.process(0.0095, gre_in=spoof).tun_out == []
    assert stream(e, range(10, 30), 0.010) == [ip(s) for s in range(10, 30)]
    # more of them later, while the peer keeps talking
    assert e.process(0.05, gre_in=[data_in(CID, 100_002 + k, ip(0)) for k in range(50)]).tun_out == []
    assert stream(e, range(30, 40), 0.05) == [ip(s) for s in range(30, 40)]
    c = e.counters(CID)
    assert c["drop_seq_jump"] == 52 and c["lost"] == 0 and c["drop_too_old"] == 0
    assert c["rx_packets"] == 40


def test_single_far_ahead_packet_never_moves_an_idle_window(Engine):
    e = make(Engine)
    stream(e, range(3), 0.0)
    assert e.process(60.0, gre_in=[data_in(CID, 5000, ip(0))]).tun_out == []
    assert stream(e, [3, 4], 61.0) == [ip(3), ip(4)]
    assert e.counters(CID)["drop_seq_jump"] == 1


def test_genuine_burst_loss_larger_than_the_window_recovers(Engine):
    """200 packets lost (> 64 + 64: beyond what makes room at once) in a 64 packet/s stream: the new region is
    taken as soon as the old one has been silent for reorder_timeout."""
    e = make(Engine, reorder_timeout=0.125)
    got = []
    for s in list(range(10)) + list(range(210, 310)):    # times in 1/64 s: exact in binary
        t = 0.0 if s < 10 else (s - 209) / 64
        got += [p for _, p in e.process(t, gre_in=[data_in(CID, s, ip(s))]).tun_out]
    first_new = 217                         # (217 - 209) / 64 = 0.125 s after the last old packet
    assert got == [ip(s) for s in range(10)] + [ip(s) for s in range(first_new, 310)]
    c = e.counters(CID)
    assert c["drop_seq_jump"] == first_new - 210
    assert c["lost"] == first_new - 10 and c["drop_too_old"] == 0


def test_just_beyond_the_window_still_makes_room(Engine):
    """Up to reorder_depth + max(reorder_depth, 64) ahead (a gap held open while the stream
    goes on): the oldest gaps are given up at once, as before -- one packet moves the window
    by at most that, and a blind spoofer hits that range with odds of ~2^-25 per packet."""
    e = make(Engine, reorder_depth=8)
    out = e.process(0.0, gre_in=[data_in(CID, s, ip(s)) for s in (0, 3, 15)]).tun_out
    assert [p for _, p in out] == [ip(0), ip(3)]
    c = e.counters(CID)
    assert c["lost"] == 6 and c["drop_seq_jump"] == 0                # 1, 2 and 4..7
    out = e.process(0.0, gre_in=[data_in(CID, s, ip(s)) for s in range(8, 15)]).tun_out
    assert [p for _, p in out] == [ip(s) for s in range(8, 16)]


def test_genuine_outage_recovers_on_the_second_packet(Engine):
    e = make(Engine)
    stream(e, range(5), 0.0)
    # 5 s of outage, the peer sent 1000 packets meanwhile; the first one seen is refused
    assert stream(e, range(1005, 1010), 5.0) == [ip(s) for s in range(1006, 1010)]
    c = e.counters(CID)
    assert c["drop_seq_jump"] == 1 and c["lost"] == 1001


def test_hijacked_window_makes_lcp_echoes_fail(Engine):
    """If spoofed packets do move an idle window (the only case they can: a pair far ahead
    while the peer is silent), the peer's genuine LCP Echo-Replies no longer pass either:
    the keepalive sees the dead data path and ends the call."""
    e = make(Engine)
    stream(e, range(5), 0.0)
    e.process(30.0, gre_in=[data_in(CID, s, ip(0)) for s in (1_000_000, 1_000_001)])
    e.recv_control()
    e.process(40.0, gre_in=[dgram(gre(CID, seq=5, payload=ppp(0xC021, ECHO_REPLY)))])
    assert e.recv_control() == []
    assert e.counters(CID)["drop_too_old"] == 1


def test_lcp_echo_behind_the_window_is_refused_when_already_delivered(Engine):
    e = make(Engine)
    echo = ppp(0xC021, ECHO_REPLY)
    e.process(0.0, gre_in=[dgram(gre(CID, seq=0, payload=echo))])
    e.process(0.0, gre_in=[dgram(gre(CID, seq=0, payload=echo))])
    assert len(e.recv_control()) == 1
    assert e.counters(CID)["drop_duplicate"] == 1


# ------------------------------------------------------------------ 6. control queue depth
def test_control_queue_default_holds_a_connect_storm(Engine):
    assert EngineConfig().control_queue >= 4096
    e = Engine(EngineConfig())
    for cid in range(1, 1001):
        e.add_session(cid, cid, PEER)
    frames = [dgram(gre(cid, seq=k, payload=ppp(0xC021, bytes([1, k, 0, 4]))))
              for k in range(4) for cid in range(1, 1001)]
    e.process(0.0, gre_in=frames)
    got = []
    while True:
        part = e.recv_control(1000)
        if not part:
            break
        got += part
    assert len(got) == 4000
    assert e.totals()["drop_queue_full"] == 0


def test_control_queue_overflow_is_counted_per_cause(Engine):
    e = make(Engine, control_queue=2)
    e.process(0.0, gre_in=[dgram(gre(CID, seq=k, payload=ppp(0xC021, bytes([1, k, 0, 4]))))
                           for k in range(5)])
    for k in range(3):
        e.send_control(CID, 0xC021, bytes([1, k, 0, 4]))
    c, t = e.counters(CID), e.totals()
    assert c["queue_full_rx_control"] == 3 and c["queue_full_tx_control"] == 1
    assert c["queue_full_event"] == 0
    assert c["drop_queue_full"] == 4                    # the sum, as before
    for k in ("drop_queue_full", "queue_full_rx_control", "queue_full_tx_control"):
        assert t[k] == c[k]                             # engine-wide too: outlives the call
    e.remove_session(CID)
    assert e.totals()["queue_full_rx_control"] == 3


def test_recv_control_drains_a_deep_queue_in_order(Engine):
    e = make(Engine, control_queue=1000)
    e.process(0.0, gre_in=[dgram(gre(CID, seq=k, payload=ppp(0xC021, bytes([1, k & 0xFF, 0, 4]))))
                           for k in range(700)])
    got = e.recv_control(10_000)
    assert [p[1] for _, _, p in got] == [k & 0xFF for k in range(700)]
    assert e.recv_control() == []


def test_confirmed_region_is_taken_by_the_timer_once_the_window_is_silent(Engine):
    e = make(Engine, reorder_timeout=0.125)
    stream(e, range(10), 0.0, dt=0.0)
    # a burst loss: the next packets come from far ahead while the window is not yet silent
    assert e.process(0.0625, gre_in=[data_in(CID, s, ip(s)) for s in (500, 501)]).tun_out == []
    assert e.next_deadline() == pytest.approx(0.125)            # last old packet + time-out
    assert e.process(0.125).tun_out == []                       # the window moves past 501
    assert stream(e, [502, 503], 0.25) == [ip(502), ip(503)]
    c = e.counters(CID)
    assert c["drop_seq_jump"] == 2 and c["lost"] == 492 and c["drop_too_old"] == 0


def test_spoofed_pair_is_forgotten_when_the_peer_speaks_again(Engine):
    """A confirmed spoofed pair while the peer talks, then an idle call: the timer must not
    move the window later -- the peer's next packet forgot the candidate."""
    e = make(Engine)
    stream(e, range(10), 0.0)
    e.process(0.0095, gre_in=[data_in(CID, s, ip(0)) for s in (70_000, 70_001)])
    assert stream(e, [10], 0.010) == [ip(10)]
    assert e.process(5.0).tun_out == []
    assert stream(e, [11, 12], 5.0) == [ip(11), ip(12)]
    c = e.counters(CID)
    assert c["drop_seq_jump"] == 2 and c["lost"] == 0


def test_io_thread_keeps_forwarding_while_the_control_queue_is_full(Engine):
    """Nobody drains the control queue: the I/O thread drops and counts, never waits."""
    tun_eng, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    gre_eng, gre_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tun.settimeout(5)
    e = make(Engine, control_queue=8)
    e.start([tun_eng.fileno()], gre_eng.fileno(), vnet_hdr_len=0)
    try:
        for k in range(50):
            gre_peer.send(dgram(gre(CID, seq=k, payload=ppp(0xC021, bytes([1, k, 0, 4])))))
        gre_peer.send(data_in(CID, 50, ip(50)))
        assert tun.recv(65535) == ip(50)
        c = e.counters(CID)
        assert c["queue_full_rx_control"] == 42 and c["rx_control"] == 8 and c["rx_packets"] == 1
        assert [p[1] for _, _, p in e.recv_control(100)] == list(range(8))
    finally:
        e.close()
        for x in (tun_eng, tun, gre_eng, gre_peer):
            x.close()
