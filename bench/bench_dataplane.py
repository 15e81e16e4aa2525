"""pytest-benchmark: data-plane packets/s, compiled vs reference vs memcpy.

    .venv/bin/python -m pytest bench/bench_dataplane.py --benchmark-columns=mean,ops

One benchmark round = one batch (256 packets for compiled/memcpy, 32 for the reference), so
``ops`` x batch = packets/s.  ``fastpptp bench dataplane [--json]`` (fastpptp/tools/benchcmd.py)
measures the same things in one run and prints packets/s and the ratios directly.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from fastpptp.tools import benchcmd as bc
from fastpptp.dataplane import HEADROOM

PAYLOADS = bc.PAYLOADS
MPPE = [None, "128-stateless"]


def _rounds(benchmark, fn, per_round):
    benchmark.extra_info["packets_per_round"] = per_round
    benchmark.pedantic(fn, rounds=200, iterations=1, warmup_rounds=5)


@pytest.mark.parametrize("mppe", MPPE)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_encap_compiled(benchmark, payload, mppe):
    e = bc._engine("compiled", mppe)
    slab = np.zeros((bc.BATCH, bc.ROW), np.uint8)
    lens = np.full(bc.BATCH, payload, np.uint32)
    out = np.zeros((bc.BATCH, 3), np.uint32)
    slab[:, HEADROOM:HEADROOM + payload] = np.frombuffer(bc._ip_packet(payload), np.uint8)
    plain = slab[:, HEADROOM:HEADROOM + payload].copy()

    def one():
        if mppe:
            slab[:, HEADROOM:HEADROOM + payload] = plain
        assert e.encap_slab(0, slab, lens, bc.BATCH, out) == bc.BATCH
    _rounds(benchmark, one, bc.BATCH)


@pytest.mark.parametrize("mppe", MPPE)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_encap_reference(benchmark, payload, mppe):
    e = bc._engine("reference", mppe)
    pkts = [(0, bc._ip_packet(payload))] * 32
    _rounds(benchmark, lambda: e.process(time.monotonic(), tun_in=pkts), 32)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_memcpy(benchmark, payload):
    from fastpptp._gre import bench_memcpy
    src = np.ones((bc.BATCH, bc.ROW), np.uint8)
    dst = np.zeros((bc.BATCH, bc.ROW), np.uint8)
    lens = np.full(bc.BATCH, payload, np.uint32)
    _rounds(benchmark, lambda: bench_memcpy(src, dst, lens, bc.BATCH, HEADROOM), bc.BATCH)


@pytest.mark.parametrize("mppe", MPPE)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_decap_compiled(benchmark, payload, mppe):
    _bench_decap(benchmark, bc._engine("compiled", mppe), payload, mppe)


def _bench_decap(benchmark, e, payload, mppe):
    """``decap_slab`` of full batches of a peer's stream (a new batch of the stream each round,
    so sequence numbers advance as on the wire)."""
    stream, dlen = bc._peer_stream(payload, mppe, 210)
    slab = np.zeros((bc.BATCH + 64, bc.ROW), np.uint8)
    lens = np.full(bc.BATCH + 64, dlen, np.uint32)
    o_tun = np.zeros(bc.BATCH + 64, np.int32)
    o_off = np.zeros(bc.BATCH + 64, np.int64)
    o_len = np.zeros(bc.BATCH + 64, np.uint32)
    it = iter(range(len(stream)))

    def setup():
        slab[:bc.BATCH] = stream[next(it)]
        return (), {}

    def one():
        assert e.decap_slab(slab, lens, bc.BATCH, o_tun, o_off, o_len) == bc.BATCH
    benchmark.extra_info["packets_per_round"] = bc.BATCH
    benchmark.pedantic(one, setup=setup, rounds=200, iterations=1, warmup_rounds=5)


@pytest.mark.parametrize("sessions", [1, 100, 10_000])
def test_encap_sessions_flat(benchmark, sessions):
    """Per-packet cost must not grow with the number of sessions (route hash, call table)."""
    e = bc._engine("compiled", None, sessions=sessions)
    slab = np.zeros((bc.BATCH, bc.ROW), np.uint8)
    lens = np.full(bc.BATCH, 512, np.uint32)
    out = np.zeros((bc.BATCH, 3), np.uint32)
    for i in range(bc.BATCH):
        k = (i * 7919) % sessions
        dst = "198.51.100.2" if sessions == 1 else f"172.16.{k >> 8}.{k & 255}"
        slab[i, HEADROOM:HEADROOM + 512] = np.frombuffer(bc._ip_packet(512, dst), np.uint8)
    _rounds(benchmark, lambda: e.encap_slab(0, slab, lens, bc.BATCH, out), bc.BATCH)


@pytest.mark.parametrize("case", bc.RL_CASES)
@pytest.mark.parametrize("op", ["encap", "decap"])
def test_rate_limiter_cost(benchmark, op, case):
    """The rate limiter compiled out (``off``), in but unlimited, and limited to a rate never
    reached: the same engine calls as above (builds: benchcmd._build_gre, cached)."""
    cls = bc._build_gre(case == "off").Engine
    kbit = bc.RL_MAX_KBIT if case == "limited" else 0
    e = bc._engine("compiled", None, engine_cls=cls, rate_kbit=kbit)
    if op == "encap":
        slab = np.zeros((bc.BATCH, bc.ROW), np.uint8)
        lens = np.full(bc.BATCH, 512, np.uint32)
        out = np.zeros((bc.BATCH, 3), np.uint32)
        slab[:, HEADROOM:HEADROOM + 512] = np.frombuffer(bc._ip_packet(512), np.uint8)
        _rounds(benchmark, lambda: e.encap_slab(0, slab, lens, bc.BATCH, out), bc.BATCH)
        return
    _bench_decap(benchmark, e, 512, None)
