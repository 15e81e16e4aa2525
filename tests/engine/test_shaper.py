"""Rate limits (token bucket + hold queue) on both twins, with the clock in our hands.

Everything goes through ``process(now, ...)``: the compiled and the reference engine must
pass, hold, release and drop exactly the same packets for the same arrival schedule.
Rates: 1000 kbit/s = 125 000 bytes/s, so 1000 bytes of tokens come back every 8 ms.
"""
from __future__ import annotations

import struct

import pytest

from support.packets import PEER, data_in, dgram, gre, parse_gre, ppp, udp_packet
from fastpptp.dataplane import (COUNTER_NAMES, RL_BURST_MIN, RL_BURST_TIME, RLQ_SLOT,
                                TOTAL_NAMES, EngineConfig)

CID, PCID = 7, 0x99
T_PEER = "198.51.100.2"
KBIT = 1000                 # 125 000 bytes/s
TICK = 0.008                # 1000 bytes of tokens at KBIT


def ip(size: int, i: int = 0) -> bytes:
    """An IPv4/UDP packet of exactly ``size`` bytes whose body starts with its index."""
    body = struct.pack("!I", i) + bytes(size - 28 - 4)
    return udp_packet(dst=T_PEER, body=body)


def index_of(packet: bytes) -> int:
    return struct.unpack_from("!I", packet, 28)[0]


def make(Engine, **cfg):
    e = Engine(EngineConfig(**cfg))
    e.add_session(CID, PCID, PEER)
    e.set_ppp(CID, tx_acfc=False, tx_pfc=False, mtu=1500)
    e.set_data(CID, True, True)
    return e


def sent(out) -> list[int]:
    """Indexes of the IP packets in out.gre_out (no MPPE, FF 03 + 2-byte protocol)."""
    res = []
    for _, frame in out.gre_out:
        g = parse_gre(frame)
        if g["payload"][:4] == b"\xff\x03\x00\x21":
            res.append(index_of(g["payload"][4:]))
    return res


def delivered(out) -> list[int]:
    return [index_of(p) for _, p in out.tun_out]


def tx(e, now, first, count, size=1000):
    return sent(e.process(now, tun_in=[(0, ip(size, first + k)) for k in range(count)]))


class Peer:
    """Datagrams from the peer, numbered in sequence."""

    def __init__(self):
        self.seq = 0

    def data(self, i, size=1000):
        self.seq += 1
        return data_in(CID, self.seq, ip(size, i))

    def lcp(self, code=1, ident=1):
        self.seq += 1
        return dgram(gre(CID, seq=self.seq, payload=ppp(0xC021, bytes([code, ident, 0, 4]))))


def rx(e, now, peer, first, count, size=1000):
    return delivered(e.process(now, gre_in=[peer.data(first + k, size) for k in range(count)]))


# ------------------------------------------------------------------ counters and arguments
def test_drop_rate_limit_is_a_counter_and_a_total(engine):
    assert "drop_rate_limit" in COUNTER_NAMES and "drop_rate_limit" in TOTAL_NAMES
    engine.add_session(CID, PCID, PEER)
    assert engine.counters(CID)["drop_rate_limit"] == 0
    assert engine.totals()["drop_rate_limit"] == 0


@pytest.mark.parametrize("args,exc", [
    ((CID, -1, 0), ValueError),
    ((CID, 0, -1), ValueError),
    ((CID, 1_000_000_001, 0), ValueError),
    ((CID, 0, 0, -1), ValueError),
    ((CID, 0, 0, (1 << 30) + 1), ValueError),
    ((CID, 1.5, 0), TypeError),
    ((CID, 0, "1"), TypeError),
    ((CID, 0, 0, None), TypeError),
    ((CID + 1, 10, 10), KeyError),
    ((0x10000, 10, 10), KeyError),
])
def test_set_rate_limit_arguments(engine, args, exc):
    engine.add_session(CID, PCID, PEER)
    with pytest.raises(exc):
        engine.set_rate_limit(*args)


def test_rate_limit_queue_config():
    assert EngineConfig().rate_limit_queue == 64
    EngineConfig(rate_limit_queue=0)
    with pytest.raises(ValueError):
        EngineConfig(rate_limit_queue=1025)


# ------------------------------------------------------------------ policing (queue 0)
def test_policer_exact_schedule(Engine):
    e = make(Engine, rate_limit_queue=0)
    e.set_rate_limit(CID, KBIT, 0, burst_bytes=3000)
    assert tx(e, 10.0, 0, 5) == [0, 1, 2]             # a full bucket: 3000 bytes
    assert e.counters(CID)["drop_rate_limit"] == 2
    assert tx(e, 10.0 + TICK, 5, 2) == [5]              # 8 ms later: 1000 bytes more
    assert tx(e, 10.0 + TICK * 2.5, 7, 3) == [7]        # 1500 bytes: one packet, 500 left
    assert tx(e, 10.0 + TICK * 3, 10, 1) == [10]        # 500 + 500
    assert tx(e, 10.0 + 1.0, 11, 4) == [11, 12, 13]     # refilled to the burst, not more
    c = e.counters(CID)
    assert c["drop_rate_limit"] == 2 + 1 + 2 + 1
    assert c["tx_packets"] == 9 and c["tx_bytes"] == 9000
    assert e.next_deadline() is None                    # nothing held, nothing to wake for


def test_automatic_burst_for_slow_and_fast_limits(Engine):
    e = make(Engine, rate_limit_queue=0)
    e.set_rate_limit(CID, 1000, 0)                      # 1 Mbit/s: RL_BURST_MIN
    assert RL_BURST_MIN == 6000
    assert len(tx(e, 1.0, 0, 10)) == 6
    e.set_rate_limit(CID, 0, 0)
    e.set_rate_limit(CID, 1_000_000, 0)                 # 1 Gbit/s: 10 ms at the rate
    burst = 1_000_000 * 125 * RL_BURST_TIME
    assert burst == 1_250_000
    assert len(tx(e, 2.0, 0, 1300)) == 1250
    assert e.counters(CID)["drop_rate_limit"] == 4 + 50


def test_packet_larger_than_the_burst_passes_on_a_full_bucket(Engine):
    e = make(Engine, rate_limit_queue=0)
    e.set_rate_limit(CID, KBIT, 0, burst_bytes=1000)
    assert tx(e, 5.0, 0, 2, size=1400) == [0]           # full: passes, 400 bytes in debt
    assert tx(e, 5.0 + TICK, 2, 1, size=1400) == []     # 600 tokens: not full, not enough
    assert tx(e, 5.0 + TICK * 1.4, 3, 1, size=1400) == [3]   # 1000 = full again
    assert e.counters(CID)["drop_rate_limit"] == 2


# ------------------------------------------------------------------ holding (the default)
def test_hold_queue_releases_in_order_at_the_rate(Engine):
    e = make(Engine)
    e.set_rate_limit(CID, KBIT, 0, burst_bytes=3000)
    assert tx(e, 1.0, 0, 5) == [0, 1, 2]
    assert e.counters(CID)["drop_rate_limit"] == 0
    assert e.next_deadline() == pytest.approx(1.0 + TICK)
    assert sent(e.process(1.0 + TICK / 2)) == []       # not yet
    assert sent(e.process(1.0 + TICK)) == [3]
    assert e.next_deadline() == pytest.approx(1.0 + 2 * TICK)
    # a new packet queues behind the held one even if tokens would allow it
    assert tx(e, 1.0 + 2 * TICK, 5, 1) == [4]           # timer runs after input: 4 leaves
    assert sent(e.process(1.0 + 3 * TICK)) == [5]
    assert e.next_deadline() is None
    c = e.counters(CID)
    assert c["tx_packets"] == 6 and c["drop_rate_limit"] == 0


def test_hold_queue_is_bounded_in_bytes_and_packets(Engine):
    # 1000 kbit/s: the queue holds max(50 ms at the rate, 6000) = 6250 bytes
    e = make(Engine)
    e.set_rate_limit(CID, KBIT, 0, burst_bytes=3000)
    assert tx(e, 1.0, 0, 20) == [0, 1, 2]
    assert e.counters(CID)["drop_rate_limit"] == 11      # 6 held
    got = []
    for k in range(1, 7):
        got += sent(e.process(1.0 + k * TICK))
    assert got == [3, 4, 5, 6, 7, 8]
    # at most rate_limit_queue packets
    e = make(Engine, rate_limit_queue=4)
    e.set_rate_limit(CID, KBIT, 0, burst_bytes=3000)
    assert tx(e, 1.0, 0, 20) == [0, 1, 2]
    assert e.counters(CID)["drop_rate_limit"] == 13      # 4 held
    # packets larger than a queue slot are only policed
    e = make(Engine, mtu=4000)
    e.set_ppp(CID, tx_acfc=False, tx_pfc=False, mtu=4000)
    e.set_rate_limit(CID, KBIT, 0, burst_bytes=RLQ_SLOT + 100)
    assert tx(e, 1.0, 0, 2, size=RLQ_SLOT + 1) == [0]
    assert e.counters(CID)["drop_rate_limit"] == 1


def test_unlimited_is_zero_and_releases_what_was_held(Engine):
    e = make(Engine)
    e.set_rate_limit(CID, 0, 0)
    assert len(tx(e, 1.0, 0, 500)) == 500
    e.set_rate_limit(CID, KBIT, 0, burst_bytes=2000)
    assert tx(e, 2.0, 0, 5) == [0, 1]
    e.set_rate_limit(CID, 0, 0)                          # lifted: the held ones go at once
    assert e.next_deadline() is not None
    assert sent(e.process(2.0)) == [2, 3, 4]
    assert len(tx(e, 2.0, 5, 100)) == 100
    assert e.next_deadline() is None


def test_changing_the_limit_live_keeps_the_tokens(Engine):
    e = make(Engine, rate_limit_queue=0)
    e.set_rate_limit(CID, KBIT, 0, burst_bytes=3000)
    assert tx(e, 1.0, 0, 3) == [0, 1, 2]                 # empty now
    e.set_rate_limit(CID, 2 * KBIT, 0, burst_bytes=3000)  # twice as fast from here
    assert tx(e, 1.0 + TICK / 2, 3, 2) == [3]            # 4 ms x 250 000 B/s = 1000
    e.set_rate_limit(CID, 2 * KBIT, 0, burst_bytes=1000)  # a smaller bucket caps the tokens
    assert tx(e, 2.0, 5, 2) == [5]
    # held packets follow the new rate
    e = make(Engine)
    e.set_rate_limit(CID, KBIT, 0, burst_bytes=1000)
    assert tx(e, 1.0, 0, 3) == [0]
    assert e.next_deadline() == pytest.approx(1.0 + TICK)
    e.set_rate_limit(CID, 4 * KBIT, 0, burst_bytes=1000)
    assert sent(e.process(1.0)) == []                    # recomputed: due at +2 ms
    assert e.next_deadline() == pytest.approx(1.0 + TICK / 4)
    assert sent(e.process(1.0 + TICK / 4)) == [1]
    assert sent(e.process(1.0 + TICK / 2)) == [2]


# ------------------------------------------------------------------ directions, control
def test_receive_direction_holds_and_drops_on_its_own(Engine):
    e = make(Engine, rate_limit_queue=2)
    e.set_rate_limit(CID, 0, KBIT, burst_bytes=2000)
    peer = Peer()
    assert rx(e, 1.0, peer, 0, 6) == [0, 1]              # 2 pass, 2 held, 2 dropped
    c = e.counters(CID)
    assert c["drop_rate_limit"] == 2 and c["rx_packets"] == 2
    assert delivered(e.process(1.0 + TICK)) == [2]
    assert delivered(e.process(1.0 + 2 * TICK)) == [3]
    assert e.counters(CID)["rx_packets"] == 4
    # meanwhile the other direction is not limited at all
    assert len(tx(e, 1.0 + 2 * TICK, 0, 200)) == 200


def test_directions_are_independent(Engine):
    e = make(Engine, rate_limit_queue=0)
    e.set_rate_limit(CID, KBIT, 2 * KBIT, burst_bytes=2000)
    peer = Peer()
    assert tx(e, 1.0, 0, 3) == [0, 1]
    assert rx(e, 1.0, peer, 0, 3) == [0, 1]
    assert tx(e, 1.0 + TICK / 2, 3, 1) == []             # tx: 500 bytes of tokens
    assert rx(e, 1.0 + TICK / 2, peer, 3, 1) == [3]      # rx: 1000
    assert e.counters(CID)["drop_rate_limit"] == 1 + 1 + 1


def test_control_frames_and_acks_are_never_limited(Engine):
    e = make(Engine, rate_limit_queue=0)
    e.set_rate_limit(CID, KBIT, KBIT, burst_bytes=1000)
    peer = Peer()
    assert tx(e, 1.0, 0, 2) == [0]
    assert rx(e, 1.0, peer, 0, 2) == [0]
    # LCP (and CCP/IPCP) out: pass with the bucket empty
    for proto in (0xC021, 0x80FD, 0x8021):
        e.send_control(CID, proto, bytes([1, 1, 0, 4]))
    out = e.process(1.0, gre_in=[peer.lcp(), peer.lcp(code=9)])
    protos = [parse_gre(f)["payload"][2:4] for _, f in out.gre_out]
    assert protos.count(b"\xc0\x21") == 1 and b"\x80\xfd" in protos and b"\x80\x21" in protos
    got = e.recv_control()
    assert [(cid, p) for cid, p, _ in got] == [(CID, 0xC021), (CID, 0xC021)]
    # the ack-only packet for what we received (and dropped) goes out too
    assert rx(e, 1.0, peer, 2, 1) == []
    out = e.process(2.0)
    assert [parse_gre(f)["payload"] for _, f in out.gre_out] == [b""]
    c = e.counters(CID)
    assert c["drop_rate_limit"] == 3 and c["tx_control"] == 3 and c["rx_control"] == 2
    assert c["tx_acks"] == 1


def test_twins_agree_on_a_long_random_schedule():
    """The same random arrivals in both directions through both twins: the same packets
    pass, wait and drop, at the same times."""
    import random
    from fastpptp.dataplane import load_engine
    results = []
    for impl in ("compiled", "reference"):
        rng = random.Random(12)
        e = make(load_engine(impl), rate_limit_queue=8)
        e.set_rate_limit(CID, 3000, 1500)
        peer = Peer()
        log = []
        now = 100.0
        for step in range(400):
            now += rng.choice((0.0, 0.0005, 0.001, 0.003, 0.02))
            tun_in = [(0, ip(rng.randrange(100, 1500), step * 10 + k))
                      for k in range(rng.randrange(0, 6))]
            gre_in = [peer.data(step * 10 + k, rng.randrange(100, 1500))
                      for k in range(rng.randrange(0, 6))]
            if step == 200:
                e.set_rate_limit(CID, 800, 5000, burst_bytes=4000)
            out = e.process(now, tun_in=tun_in, gre_in=gre_in)
            log.append((sent(out), delivered(out), e.next_deadline()))
        results.append((log, e.counters(CID)))
        e.close()
    assert results[0] == results[1]
    assert results[0][1]["drop_rate_limit"] > 0
