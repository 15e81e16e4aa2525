"""Benchmarks: compiled vs reference TSO segmentation and GRO coalescing.

    python3 -m pytest -q tests/test_offload_bench.py --benchmark-only

"compiled-nogil-x10" runs the cdef path the engine calls 10 times per round (preallocated slab
rows with headroom, no Python objects): divide its time by 10.  "compiled" and "reference" go
through the Python wrappers (list of bytes).
Each benchmark also checks its result, so a fast wrong answer fails.
"""
import pytest

from fastpptp import _offload_ref as ref
from support.offload import check_packet, compiled, super_packet, tcp_fields, tcp_packet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=[4, 6])
def super64k(request):
    version = request.param
    payload = bytes(i & 0xFF for i in range(65535 - (40 if version == 4 else 60)))
    pkt, vh = super_packet(version, payload, 1448)
    return version, payload, pkt, vh


@pytest.mark.parametrize("which", ["compiled-nogil-x10", "compiled", "reference"])
def test_bench_segment_64k_into_1400(benchmark, super64k, which):
    version, payload, pkt, vh = super64k
    benchmark.group = f"tso-ipv{version}-64KB-to-1400"
    if which == "compiled-nogil-x10":
        nseg = benchmark(compiled.bench_segment, pkt, vh, 1400, 10)
        assert nseg == 49
        return
    mod = compiled if which == "compiled" else ref
    segs = benchmark(mod.segment, pkt, vh, 1400)
    assert len(segs) == 49 and b"".join(tcp_fields(s)["payload"] for s in segs) == payload
    check_packet(segs[-1])


@pytest.mark.parametrize("which", ["compiled-nogil-x10", "compiled", "reference"])
def test_bench_coalesce_45_segments(benchmark, which):
    segs = [tcp_packet(4, bytes(1448), seq=1000 + 1448 * k, ip_id=k) for k in range(45)]
    benchmark.group = "gro-ipv4-45x1448"
    if which == "compiled-nogil-x10":
        assert benchmark(compiled.bench_coalesce, segs, 10) == 1
        return
    mod = compiled if which == "compiled" else ref
    [(vh, pkt)] = benchmark(mod.coalesce, segs)
    assert ref.unpack_vnet_hdr(vh).gso_size == 1448 and len(pkt) == 40 + 45 * 1448
