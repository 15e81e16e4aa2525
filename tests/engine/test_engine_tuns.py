"""The engine's TUN table: add_tun / remove_tun, while the I/O thread runs and in the
sans-I/O core, on both twins.  Fake TUNs are SOCK_SEQPACKET socketpairs (one IP packet per
message), the GRE socket a SOCK_DGRAM socketpair, as in tests/test_engine_io.py."""
from __future__ import annotations

import os
import socket
import time

import pytest

from support.packets import data_in, parse_gre, udp_packet
from fastpptp.dataplane import EngineConfig, load_engine

T_LOCAL = "198.51.100.1"
MAX_TUN = 256


def seqpair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b.settimeout(5)
    return a, b


@pytest.fixture
def gre_pair():
    eng, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    far.settimeout(5)
    yield eng, far
    eng.close()
    far.close()


@pytest.fixture
def socks():
    """Collects sockets made by a test; closed afterwards."""
    held = []
    yield held
    for s in held:
        s.close()


def recv_data(gre_far, want_call_id, limit=50):
    """Next GRE data frame (seq present) for the peer call ID ``want_call_id``; ack-only
    frames and other calls' frames are skipped (bounded)."""
    for _ in range(limit):
        g = parse_gre(gre_far.recv(65535))
        if g["seq"] is not None and g["call_id"] == want_call_id:
            return g
    raise AssertionError(f"no data frame for peer call ID {want_call_id}")


def open_call(e, cid, tun, remote):
    e.add_session(cid, cid + 0x100, "192.0.2.2", tun=tun)
    e.add_route(cid, remote)
    e.set_data(cid, True, False)


def test_add_tun_while_running_forwards_remove_then_add_another(Engine, gre_pair, socks):
    gre_eng, gre_far = gre_pair
    e = Engine(EngineConfig(ack_delay=0.01))
    e.start([], gre_eng.fileno())                   # per-session mode starts with no TUN
    try:
        for round_, remote in enumerate(("198.51.100.2", "198.51.100.3")):
            tun_eng, tun_far = seqpair()
            socks += [tun_eng, tun_far]
            idx = e.add_tun(tun_eng.fileno(), vnet_hdr_len=0)
            assert idx == 0                         # the lowest free index, reused
            assert e.tuns() == {0: tun_eng.fileno()}
            cid = 10 + round_
            open_call(e, cid, idx, remote)
            # TUN -> GRE
            out = udp_packet(src=T_LOCAL, dst=remote, body=b"out%d" % round_)
            tun_far.send(out)
            g = recv_data(gre_far, cid + 0x100)
            assert g["payload"] == b"\xff\x03\x00\x21" + out
            # GRE -> TUN
            inn = udp_packet(src=remote, dst=T_LOCAL, body=b"in%d" % round_)
            gre_far.send(data_in(cid, 0, inn))
            assert tun_far.recv(65535) == inn
            c = e.counters(cid)
            assert (c["tx_packets"], c["rx_packets"]) == (1, 1)
            e.remove_session(cid)
            e.remove_tun(idx)
            assert e.tuns() == {}
    finally:
        e.stop()


def test_tuns_added_while_running_are_independent(Engine, gre_pair, socks):
    """Three TUNs next to a start() TUN, one call each: every packet reaches its own TUN."""
    gre_eng, gre_far = gre_pair
    t0_eng, t0_far = seqpair()
    socks += [t0_eng, t0_far]
    e = Engine(EngineConfig())
    e.start([t0_eng.fileno()], gre_eng.fileno(), vnet_hdr_len=0)
    try:
        fars = {}
        for k in range(3):
            te, tf = seqpair()
            socks += [te, tf]
            idx = e.add_tun(te.fileno(), vnet_hdr_len=0)
            assert idx == k + 1
            open_call(e, 20 + k, idx, f"198.51.100.{20 + k}")
            fars[20 + k] = tf
        for n in range(5):
            for cid in fars:
                gre_far.send(data_in(cid, n, udp_packet(src=f"198.51.100.{cid}", dst=T_LOCAL,
                                                        body=b"%d-%d" % (cid, n))))
        for cid, tf in fars.items():
            got = [tf.recv(65535) for _ in range(5)]
            assert [udp_packet(src=f"198.51.100.{cid}", dst=T_LOCAL, body=b"%d-%d" % (cid, n))
                    for n in range(5)] == got
        t0_far.setblocking(False)
        with pytest.raises(BlockingIOError):
            t0_far.recv(65535)                      # nothing leaked to the start() TUN
    finally:
        e.stop()


def test_remove_tun_detaches_sessions_index_reuse_never_leaks(Engine, gre_pair, socks):
    gre_eng, gre_far = gre_pair
    e = Engine(EngineConfig())
    e.start([], gre_eng.fileno())
    try:
        a_eng, a_far = seqpair()
        socks += [a_eng, a_far]
        ia = e.add_tun(a_eng.fileno(), vnet_hdr_len=0)
        open_call(e, 30, ia, "198.51.100.30")
        e.remove_tun(ia)                            # session 30 still there: detached
        b_eng, b_far = seqpair()
        socks += [b_eng, b_far]
        ib = e.add_tun(b_eng.fileno(), vnet_hdr_len=0)
        assert ib == ia
        open_call(e, 31, ib, "198.51.100.31")
        gre_far.send(data_in(30, 0, udp_packet(src="198.51.100.30", dst=T_LOCAL, body=b"stale")))
        good = udp_packet(src="198.51.100.31", dst=T_LOCAL, body=b"fresh")
        gre_far.send(data_in(31, 0, good))
        assert b_far.recv(65535) == good            # only the new call's packet
        deadline = time.monotonic() + 5
        while e.counters(30)["drop_not_ready"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert e.counters(30)["drop_not_ready"] == 1
        assert e.counters(30)["rx_packets"] == 0
        # towards the detached call: dropped, not sent
        b_far.send(udp_packet(src=T_LOCAL, dst="198.51.100.30"))
        b_far.send(udp_packet(src=T_LOCAL, dst="198.51.100.31", body=b"x"))
        assert recv_data(gre_far, 31 + 0x100)["seq"] == 0
        assert e.counters(30)["tx_packets"] == 0 and e.counters(30)["drop_not_ready"] == 2
        e.remove_session(30)                        # a detached session goes away cleanly
        e.remove_session(31)
        e.remove_tun(ib)
    finally:
        e.stop()


def test_churn_while_traffic_flows(Engine, gre_pair, socks):
    """TUNs added and removed (fd closed right after) while a steady call forwards: nothing
    of the steady call is lost and every churned TUN gets exactly its own packet."""
    gre_eng, gre_far = gre_pair
    s_eng, s_far = seqpair()
    socks += [s_eng, s_far]
    e = Engine(EngineConfig())
    e.start([], gre_eng.fileno())
    try:
        steady = e.add_tun(s_eng.fileno(), vnet_hdr_len=0)
        open_call(e, 40, steady, "198.51.100.40")
        n = 40
        for k in range(n):
            te, tf = seqpair()
            idx = e.add_tun(te.fileno(), vnet_hdr_len=0)
            assert idx == 1
            open_call(e, 41, idx, "198.51.100.41")
            pkt = udp_packet(src="198.51.100.41", dst=T_LOCAL, body=b"churn%d" % k)
            gre_far.send(data_in(41, 0, pkt))
            gre_far.send(data_in(40, k, udp_packet(src="198.51.100.40", dst=T_LOCAL,
                                                   body=b"steady%d" % k)))
            assert tf.recv(65535) == pkt
            e.remove_session(41)
            e.remove_tun(idx)
            te.close()
            tf.close()
        got = [s_far.recv(65535) for _ in range(n)]
        assert got == [udp_packet(src="198.51.100.40", dst=T_LOCAL, body=b"steady%d" % k)
                       for k in range(n)]
        assert e.tuns() == {0: s_eng.fileno()}
    finally:
        e.stop()


def test_index_allocation_limits_and_errors(Engine, socks):
    e = Engine(EngineConfig())
    base, other = seqpair()
    socks += [base, other]
    fds = [os.dup(base.fileno()) for _ in range(MAX_TUN)]
    try:
        assert [e.add_tun(fd, vnet_hdr_len=0) for fd in fds] == list(range(MAX_TUN))
        with pytest.raises(ValueError):
            e.add_tun(other.fileno(), vnet_hdr_len=0)       # MAX_TUN reached
        e.remove_tun(7)
        e.remove_tun(3)
        assert e.add_tun(other.fileno(), vnet_hdr_len=0) == 3   # the lowest free index
        with pytest.raises(ValueError):
            e.add_tun(other.fileno(), vnet_hdr_len=0)       # same fd twice
        with pytest.raises(KeyError):
            e.remove_tun(7)                                 # already removed
        with pytest.raises(ValueError):
            e.remove_tun(MAX_TUN)
        e.remove_tun(100)
        with pytest.raises(ValueError):
            e.add_tun(base.fileno(), vnet_hdr_len=5)        # not a virtio_net_hdr length
        assert e.add_tun(base.fileno(), vnet_hdr_len=0) == 7     # 7 < 100: lowest first
        assert len(e.tuns()) == MAX_TUN - 1
    finally:
        for fd in fds:
            os.close(fd)


def test_start_keeps_added_tuns_and_stop_frees_only_its_own(Engine, gre_pair, socks):
    gre_eng, gre_far = gre_pair
    a_eng, a_far = seqpair()
    b_eng, b_far = seqpair()
    socks += [a_eng, a_far, b_eng, b_far]
    e = Engine(EngineConfig())
    assert e.add_tun(a_eng.fileno(), vnet_hdr_len=0) == 0      # before start
    with pytest.raises(ValueError):
        e.start([b_eng.fileno()], gre_eng.fileno(), vnet_hdr_len=0)   # index 0 is taken
    e.start([], gre_eng.fileno())
    try:
        open_call(e, 50, 0, "198.51.100.50")
        pkt = udp_packet(src="198.51.100.50", dst=T_LOCAL)
        gre_far.send(data_in(50, 0, pkt))
        assert a_far.recv(65535) == pkt            # a TUN added before start is polled
    finally:
        e.stop()
    assert e.tuns() == {0: a_eng.fileno()}
    e.remove_tun(0)
    e.start([b_eng.fileno()], gre_eng.fileno(), vnet_hdr_len=0)
    try:
        assert e.tuns() == {0: b_eng.fileno()}
        assert e.add_tun(a_eng.fileno(), vnet_hdr_len=0) == 1
    finally:
        e.stop()
    assert e.tuns() == {1: a_eng.fileno()}         # start()'s TUN freed, the added one kept


def test_detached_session_in_the_sans_io_core():
    """process(): the two twins agree on a detached session, packet for packet."""
    outs = []
    for impl in ("compiled", "reference"):
        e = load_engine(impl)(EngineConfig())
        base, other = seqpair()
        try:
            idx = e.add_tun(base.fileno(), vnet_hdr_len=0)
            open_call(e, 60, idx, "198.51.100.60")
            open_call(e, 61, 1, "198.51.100.61")           # a TUN index with no fd: allowed
            inn = udp_packet(src="198.51.100.60", dst=T_LOCAL)
            o1 = e.process(1.0, gre_in=[data_in(60, 0, inn)],
                           tun_in=[(idx, udp_packet(src=T_LOCAL, dst="198.51.100.60"))])
            e.remove_tun(idx)
            o2 = e.process(2.0, gre_in=[data_in(60, 1, inn)],
                           tun_in=[(idx, udp_packet(src=T_LOCAL, dst="198.51.100.60")),
                                   (idx, udp_packet(src=T_LOCAL, dst="198.51.100.99"))])
            outs.append((o1.tun_out, o1.gre_out, o2.tun_out, o2.gre_out,
                         e.counters(60), e.totals()))
        finally:
            base.close()
            other.close()
    assert outs[0] == outs[1]
    tun1, gre1, tun2, gre2, c, totals = outs[0]
    assert tun1 == [(0, inn)] and len(gre1) == 1
    assert tun2 == [] and gre2 == []                       # nothing for the detached call
    assert c["drop_not_ready"] == 2 and c["rx_packets"] == 1 and c["tx_packets"] == 1
    assert totals["drop_no_route"] == 1                    # .99: no route, TUN 0 has no call
