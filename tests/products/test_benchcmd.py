"""`fastpptp bench dataplane`'s inputs: the peer datagram streams it decapsulates must be
what a real peer sends (every row accepted, the inner IP packet intact), or the benchmark
would time the error path.  Rates are not asserted here (bench/, not timed tests)."""
from __future__ import annotations

import numpy as np
import pytest

from fastpptp.tools import benchcmd as bc
from fastpptp.dataplane import HEADROOM


def _decap_compiled(batch, dlen, engine) -> list[bytes]:
    """One batch of a peer stream through ``engine.decap_slab`` (what decap_compiled times):
    the IP packets for the TUN, in delivery order."""
    rows = bc.BATCH + 64                            # spare rows for the reorder buffer
    slab = np.zeros((rows, bc.ROW), np.uint8)
    slab[:bc.BATCH] = batch
    lens = np.full(rows, dlen, np.uint32)
    o_tun, o_off, o_len = np.zeros(rows, np.int32), np.zeros(rows, np.int64), np.zeros(rows, np.uint32)
    k = engine.decap_slab(slab, lens, bc.BATCH, o_tun, o_off, o_len)
    flat = slab.reshape(-1)
    return [flat[o_off[j]:o_off[j] + o_len[j]].tobytes() for j in range(k)]


@pytest.mark.parametrize("mppe", [None, True], ids=["plain", "mppe128"])
def test_peer_stream_decapsulates_to_the_sent_packet(mppe):
    stream, dlen = bc._peer_stream(512, mppe, 2)
    sent = bc._ip_packet(512, "198.51.100.1", "198.51.100.2")   # what _peer_stream wraps
    e = bc._engine("reference", mppe)
    frames = [stream[b, i, HEADROOM:HEADROOM + dlen].tobytes() for b in range(2) for i in range(bc.BATCH)]
    out = e.process(0.0, gre_in=frames)
    assert len(out.tun_out) == len(frames)
    assert all(pkt == sent for _, pkt in out.tun_out)


def test_multi_session_stream_reaches_every_call():
    stream, dlen = bc._peer_stream_sessions(128, 50, 1)
    # each row's IPv4 source is the sending peer's address (10.<k>.1), one per call
    srcs = {bytes(stream[0, i, HEADROOM + 12:HEADROOM + 16]) for i in range(bc.BATCH)}
    assert len(srcs) == 50
    assert bc.decap_compiled(128, None, min_time=0.01, sessions=50) > 0   # asserts every row accepted
    # and each row is the packet sent to that call's routed address, byte for byte
    want = [bc._ip_packet(128, f"172.17.{k >> 8}.{k & 255}") for k in ((i * 7919) % 50 for i in range(bc.BATCH))]
    assert _decap_compiled(stream[0], dlen, bc._engine("compiled", None, sessions=50)) == want


def test_decap_benchmarks_run_on_both_engines():
    assert bc.decap_compiled(64, True, min_time=0.01) > 0
    assert bc.decap_reference(64, True, min_time=0.01) > 0
    # what the compiled benchmark times is the real decryption: every row is the sent packet
    stream, dlen = bc._peer_stream(64, True, 1)
    sent = bc._ip_packet(64, "198.51.100.1", "198.51.100.2")
    assert _decap_compiled(stream[0], dlen, bc._engine("compiled", True)) == [sent] * bc.BATCH


@pytest.mark.slow
def test_rate_limiter_cost_compares_builds_with_and_without_the_limiter():
    """The ``rate_limit`` table of ``fastpptp bench dataplane`` (docs/BENCHMARKS.md, "What the
    limiter costs an unlimited session"): its baseline is a build of _gre.pyx with the limiter
    really compiled out, the others the limiter compiled in; one short round of each case runs
    and moves packets (rates are not asserted here).  Builds are cached in the temp directory
    by source hash: the first run compiles _gre.pyx twice."""
    off, on = bc._build_gre(True), bc._build_gre(False)
    assert off.RATE_LIMIT_COMPILED is False and on.RATE_LIMIT_COMPILED is True
    with pytest.raises(RuntimeError, match="no rate limiter"):
        bc._engine("compiled", None, engine_cls=off.Engine, rate_kbit=1000)
    assert bc._engine("compiled", None, engine_cls=off.Engine).counters(7)["drop_rate_limit"] == 0
    rows = bc.rate_limit_cost(min_time=0.005, rounds=1, payloads=(64,))
    assert [(r["op"], r["payload"]) for r in rows] == [("encap", 64), ("decap", 64)]
    assert all(r[case] > 0 for r in rows for case in bc.RL_CASES), rows
