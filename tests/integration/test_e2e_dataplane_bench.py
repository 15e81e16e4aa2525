"""The tunnel benchmark (fastpptp.tools.benchtunnel): report arithmetic, and a short real run."""
from __future__ import annotations

import shutil

import pytest

from fastpptp.tools import benchtunnel


def fake_result() -> dict:
    def m(g):
        return {"gbps": g, "samples": [g]}

    return {
        "seconds": 5, "rounds": 1, "tun_mtu": 1400, "udp_payload": 1372, "cpus": 2,
        "tests": ["tcp1", "tcp4"],
        "skipped": {"fastpptp-mppe128-raw": "RuntimeError: boom"},
        "paths": {
            "openvpn": {"tcp1": m(0.5), "tcp4": m(0.6), "udp1400": m(0.4)},
            "veth": {"tcp1": m(10.0), "tcp4": m(12.0), "udp1400": m(2.0)},
            "fastpptp-raw": {"tcp1": m(1.5), "tcp4": {"error": "x"}, "udp1400": m(0.8)},
        },
    }


def test_ratios():
    r = fake_result()
    benchtunnel._ratios(r)
    assert r["ratios"]["fastpptp-raw"]["tcp1"] == {"vs_veth": 0.15, "vs_openvpn": 3.0}
    assert "tcp4" not in r["ratios"]["fastpptp-raw"]  # an errored test has no ratio
    assert r["ratios"]["openvpn"]["tcp4"]["vs_veth"] == pytest.approx(0.05)
    assert "vs_openvpn" not in r["ratios"]["openvpn"]["tcp1"]
    assert r["targets"] == []  # targets compare fast ports with raw; none measured here


def test_table_lists_paths_in_order_with_errors_and_skips():
    r = fake_result()
    benchtunnel._ratios(r)
    lines = benchtunnel.format_table(r).splitlines()
    body = [ln.split()[0] for ln in lines[2:5]]
    assert body == ["veth", "fastpptp-raw", "openvpn"]
    fast = lines[3]
    assert "1.500" in fast and "3.00" in fast and "error" in fast
    assert lines[-1] == "skipped fastpptp-mppe128-raw: RuntimeError: boom"


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_short_real_run_through_veth_and_fastpptp_raw():
    assert shutil.which("iperf3") or benchtunnel.ensure_tools(["iperf3"]) == {}
    r = benchtunnel.run_bench(seconds=1, paths=("veth", "fastpptp-raw"), rounds=1)
    assert r["skipped"] == {}, r["skipped"]
    for path in ("veth", "fastpptp-raw"):
        for test in benchtunnel.TESTS:
            assert r["paths"][path][test]["gbps"] > 0.01, (path, test, r["paths"][path])
    for side in ("counters_a", "counters_b"):
        c = r["paths"]["fastpptp-raw"]["counters"][side[-1]]
        assert c["drop_malformed"] == 0 and c["drop_unknown_call"] == 0, c
    assert r["paths"]["fastpptp-raw"]["counters"]["a"]["tx_packets"] > 1000
    assert 0 < r["ratios"]["fastpptp-raw"]["tcp1"]["vs_veth"] < 1.5
    assert benchtunnel.format_table(r).count("\n") >= 3
