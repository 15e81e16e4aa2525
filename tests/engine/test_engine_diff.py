"""Differential tests: the compiled engine and the reference produce byte-identical frames,
the same delivery and the same counters for the same input (hypothesis drives the input)."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.packets import PEER, dgram, gre, ipv4, ipv6, tcp_syn
from fastpptp.dataplane import EngineConfig, load_engine

CID, PCID = 7, 0x99
T_IN, T_PEER = "198.51.100.1", "198.51.100.2"
KEY_A = bytes(range(16))
KEY_B = bytes(range(16, 32))

Compiled = load_engine("compiled")
Reference = load_engine("reference")


def _pair(cfg, acfc, pfc, mppe):
    engines = []
    for E in (Compiled, Reference):
        e = E(cfg)
        e.add_session(CID, PCID, PEER, peer_rwin=4)
        e.add_session(CID + 1, PCID + 1, "192.0.2.3", tun=1)
        e.add_route(CID, T_PEER)
        for c in (CID, CID + 1):
            e.set_ppp(c, tx_acfc=acfc, tx_pfc=pfc, mtu=1400)
            e.set_data(c, True, True)
        if mppe:
            # "tx-stateful": we send stateful, receive stateless (CCP modes are per direction)
            e.set_mppe(CID, KEY_A, KEY_B, 128, mppe in ("stateful", "tx-stateful"),
                       rx_stateful=mppe == "stateful")
        engines.append(e)
    return engines


def _peer(acfc, pfc, mppe):
    """A reference engine playing the peer: it builds realistic frames for us to receive."""
    p = Reference(EngineConfig(ack_delay=0.0))
    p.add_session(PCID, CID, "192.0.2.1")
    p.set_ppp(PCID, tx_acfc=acfc, tx_pfc=pfc, mtu=1400)
    p.set_data(PCID, True, True)
    if mppe:
        p.set_mppe(PCID, KEY_B, KEY_A, 128, mppe == "stateful",
                   rx_stateful=mppe in ("stateful", "tx-stateful"))
    return p


def _rebase(frame: bytes, base: int) -> bytes:
    """Shift the GRE sequence number by ``base`` (to exercise wraparound near 2**32)."""
    f0 = frame[0]
    if not f0 & 0x10:
        return frame
    seq = (struct.unpack("!I", frame[8:12])[0] + base) & 0xFFFFFFFF
    return frame[:8] + struct.pack("!I", seq) + frame[12:]


def _payload(kind: int, i: int, size: int) -> bytes:
    body = bytes((i + k) & 0xFF for k in range(size))
    if kind == 0:
        return ipv4(T_PEER, T_IN, body)
    if kind == 1:
        return ipv6("2001:db8::2", "2001:db8::1", body)
    return tcp_syn(T_PEER, T_IN, 1460)


op = st.one_of(
    st.tuples(st.just("tun"), st.integers(0, 2), st.integers(0, 300), st.sampled_from([T_PEER, "203.0.113.5"]),
              st.integers(0, 1)),
    st.tuples(st.just("peer"), st.integers(0, 2), st.integers(0, 300), st.integers(1, 8)),
    st.tuples(st.just("flush"), st.booleans(), st.integers(0, 3)),
    st.tuples(st.just("echo")),
    st.tuples(st.just("ctl"), st.sampled_from([0xC021, 0x8021, 0x80FD, 0x8057])),
    st.tuples(st.just("deliver"), st.lists(st.integers(0, 40), max_size=12)),
    st.tuples(st.just("ackonly"), st.integers(0, 40)),
    st.tuples(st.just("junk"), st.binary(max_size=60)),
    st.tuples(st.just("mutate"), st.integers(0, 40), st.integers(0, 80), st.integers(0, 255)),
    st.tuples(st.just("time"), st.floats(0.0, 0.15)),
)


EXAMPLES = int(os.environ.get("FASTPPTP_DIFF_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=40),
       acfc=st.booleans(), pfc=st.booleans(),
       mppe=st.sampled_from([None, None, "stateless", "stateful", "tx-stateful"]),
       base=st.sampled_from([0, 1, 0xFFFFFFF0, 0x7FFFFFF8]),
       depth=st.sampled_from([4, 64]), flow=st.booleans(), ack_delay=st.sampled_from([0.0, 0.02]))
def test_twins_agree(ops, acfc, pfc, mppe, base, depth, flow, ack_delay):
    cfg = EngineConfig(reorder_depth=depth, reorder_timeout=0.05, ack_delay=ack_delay,
                       flow_control=flow, control_queue=8)
    engines = _pair(cfg, acfc, pfc, mppe)
    peer = _peer(acfc, pfc, mppe)
    sent: list[bytes] = []          # what the peer produced, for delivery in any order
    cursor = 0
    now = 0.0
    for o in ops:
        tun_in, gre_in = [], []
        if o[0] == "tun":
            _, kind, size, dst, tun = o
            p = _payload(kind, size, size)
            if kind == 0:
                p = ipv4(T_IN, dst, p[20:])
            elif kind == 2:
                p = tcp_syn(T_IN, dst, 1460)
            tun_in.append((tun, p))
        elif o[0] == "peer":
            out = peer.process(now, tun_in=[(0, _payload(o[1], o[2] + k, o[2])) for k in range(o[3])])
            sent += [_rebase(f, base) for _, f in out.gre_out]
        elif o[0] == "flush":
            # the frames not delivered yet, adjacent pairs swapped if asked, skipping some
            batch = sent[cursor:]
            cursor = len(sent)
            if o[1]:
                for k in range(0, len(batch) - 1, 2):
                    batch[k], batch[k + 1] = batch[k + 1], batch[k]
            gre_in += [dgram(f) for k, f in enumerate(batch) if not (o[2] and k % 4 == o[2])]
        elif o[0] == "echo":
            peer.send_control(PCID, 0xC021, b"\x09\x01\x00\x08\x00\x00\x00\x00")
            sent += [_rebase(f, base) for _, f in peer.process(now).gre_out]
        elif o[0] == "ctl":
            for e in engines:
                e.send_control(CID, o[1], b"\x01\x02\x00\x04")
        elif o[0] == "deliver":
            gre_in += [dgram(sent[i]) for i in o[1] if i < len(sent)]
        elif o[0] == "ackonly":
            gre_in.append(dgram(gre(CID, ack=(o[1] + base) & 0xFFFFFFFF)))
        elif o[0] == "junk":
            gre_in.append(o[1])
            gre_in.append(dgram(o[1]))
        elif o[0] == "mutate":
            if o[1] < len(sent):
                d = bytearray(dgram(sent[o[1]]))
                d[o[2] % len(d)] = o[3]
                gre_in.append(bytes(d))
        elif o[0] == "time":
            now += o[1]
        outs = [e.process(now, tun_in=tun_in, gre_in=gre_in) for e in engines]
        assert outs[0].tun_out == outs[1].tun_out
        assert outs[0].gre_out == outs[1].gre_out
        assert engines[0].next_deadline() == pytest.approx(engines[1].next_deadline())
        assert engines[0].recv_control() == engines[1].recv_control()
    for c in (CID, CID + 1):
        assert engines[0].counters(c) == engines[1].counters(c)
    assert engines[0].totals() == engines[1].totals()


@pytest.mark.parametrize("depth", [4, 64])
def test_twins_agree_on_a_long_reordered_stream(depth):
    """A deterministic stress: 3000 frames, window-sized shuffles, duplicates and drops."""
    import random
    rng = random.Random(1234)
    cfg = EngineConfig(reorder_depth=depth, reorder_timeout=0.01)
    engines = _pair(cfg, True, True, None)
    peer = _peer(True, True, None)
    frames = [f for _, f in peer.process(0.0, tun_in=[(0, _payload(i % 2, i, 40)) for i in range(3000)]).gre_out]
    frames = [_rebase(f, 0xFFFFF000) for f in frames]
    now = 0.0
    i = 0
    while i < len(frames):
        chunk = frames[i:i + 16]
        i += 16
        rng.shuffle(chunk)
        chunk = [f for f in chunk if rng.random() > 0.03] + [f for f in chunk if rng.random() < 0.02]
        now += 0.004
        outs = [e.process(now, gre_in=[dgram(f) for f in chunk],
                          tun_in=[(0, ipv4(T_IN, T_PEER, b"r" * 30))]) for e in engines]
        assert outs[0].tun_out == outs[1].tun_out
        assert outs[0].gre_out == outs[1].gre_out
    now += 1
    outs = [e.process(now) for e in engines]
    assert outs[0].tun_out == outs[1].tun_out and outs[0].gre_out == outs[1].gre_out
    c0, c1 = engines[0].counters(CID), engines[1].counters(CID)
    assert c0 == c1
    # every sequence number is delivered or counted lost, except drops in the last chunk
    assert 3000 - 16 <= c0["rx_packets"] + c0["lost"] <= 3000
    if depth == 64:
        assert c0["rx_packets"] > 2850 and c0["drop_duplicate"] > 0


def test_route_table_stress_matches_reference():
    """Thousands of route adds/removes (hash growth, backward-shift deletion, overwrites,
    sessions removed with their routes): every lookup agrees with the reference's dict."""
    import random
    rng = random.Random(99)
    engines = [Compiled(EngineConfig()), Reference(EngineConfig())]
    live = set()
    addrs = [f"10.{i >> 8}.{i & 255}.7" for i in range(400)] + [f"2001:db8::{i:x}" for i in range(100)]
    for step in range(6000):
        r = rng.random()
        if r < 0.05 or not live:
            cid = rng.randrange(1, 60)
            if cid not in live:
                for e in engines:
                    e.add_session(cid, cid + 1000, f"192.0.2.{cid}", tun=1)
                    e.set_data(cid, True, True)
                live.add(cid)
        elif r < 0.08:
            cid = rng.choice(sorted(live))
            for e in engines:
                e.remove_session(cid)
            live.discard(cid)
        elif r < 0.55:
            cid, a = rng.choice(sorted(live)), rng.choice(addrs)
            for e in engines:
                e.add_route(cid, a)
        elif r < 0.85:
            a = rng.choice(addrs)
            for e in engines:
                e.remove_route(a)
        else:
            probe = []
            for a in rng.sample(addrs, 20):
                if ":" in a:
                    probe.append((1, ipv6("2001:db8:ffff::1", a, b"r")))
                else:
                    probe.append((1, ipv4("198.51.100.1", a, b"r")))
            outs = [e.process(step * 1e-3, tun_in=probe) for e in engines]
            assert outs[0].gre_out == outs[1].gre_out
    assert engines[0].totals() == engines[1].totals()
    for cid in live:
        assert engines[0].counters(cid) == engines[1].counters(cid)
