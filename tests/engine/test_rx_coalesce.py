"""Receive coalescing in the I/O loop (EngineConfig.rx_coalesce_us, both twins): after a busy
GRE burst, with nothing else ready, the loop waits that long for more before it sleeps in
epoll -- interrupt moderation, so a bulk receiver on a ring that wakes per frame (TPACKET_V2,
AF_XDP) is not woken per packet.  A trickle is never held: a burst of fewer than
RX_COALESCE_MIN datagrams never makes the loop wait.  Nothing is lost either way."""
from __future__ import annotations

import time

import pytest

from support.packets import PEER, data_in, udp_packet
from fastpptp._gre_ref import RX_COALESCE_MIN
from fastpptp.dataplane import EngineConfig

CID, PCID = 7, 0x99
T_IN = "198.51.100.1"


def _engine(Engine, us: int):
    e = Engine(EngineConfig(rx_coalesce_us=us))
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    return e


def _deliver(fakes, seqs) -> list[bytes]:
    got = []
    fakes.tun.settimeout(5)
    for _ in seqs:
        got.append(fakes.tun.recv(65535))
    return got


@pytest.mark.parametrize("bad", [-1, 1001])
def test_config_bounds(bad):
    with pytest.raises(ValueError, match="rx_coalesce_us"):
        EngineConfig(rx_coalesce_us=bad)
    assert EngineConfig().rx_coalesce_us == 30


@pytest.mark.parametrize("us,waits", [(200, True), (0, False)])
def test_a_busy_burst_makes_the_next_idle_moment_a_wait(Engine, fakes, us, waits):
    e = _engine(Engine, us)
    n = 4 * RX_COALESCE_MIN
    pkts = [udp_packet(dst=T_IN, body=b"burst%d" % k) for k in range(n)]
    for k, ip in enumerate(pkts):             # queued before the loop runs: one burst of n
        fakes.gre.send(data_in(CID, k + 1, ip))
    try:
        e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno())
        assert _deliver(fakes, pkts) == pkts
        deadline = time.monotonic() + 2
        while waits and e.coalesced == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert (e.coalesced > 0) == waits, e.coalesced
        assert e.counters(CID)["rx_packets"] == n
    finally:
        e.close()


def test_a_trickle_is_never_held(Engine, fakes):
    # one datagram at a time, each waited for: every burst is 1 < RX_COALESCE_MIN, so even
    # with a long coalescing time the loop never waits and each packet comes through alone
    e = _engine(Engine, 1000)
    try:
        e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno())
        for k in range(20):
            ip = udp_packet(dst=T_IN, body=b"lone%d" % k)
            fakes.gre.send(data_in(CID, k + 1, ip))
            assert _deliver(fakes, [ip]) == [ip]
        assert e.coalesced == 0
        assert e.counters(CID)["rx_packets"] == 20
    finally:
        e.close()
