"""`fastpptp bench tunnel` per GRE port (fastpptp.tools.benchtunnel, issue 9 "Shown by").

The report arithmetic (path selection, ratios vs raw, targets, checks' verdicts, table,
chart) on made-up results; then a short real run, ``--time 1 --rounds 1``, of raw and every
fast port: each fast path that ran must have run on its own port (``gre_io`` of both ends),
with the receiving kernels flat, the ping and the TCP flow outside the tunnel working; one
that did not run must say why, and only "this port cannot run here" (greport's reason) is
taken as the facility being absent.  Throughput is not asserted, beyond being non-zero.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from fastpptp.tools import benchtunnel as bt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _kernel(unknown=0, unreach=0, inrecv=1000):
    d = dict.fromkeys((*bt.SNMP_FLAT, *bt.SNMP_INFO), 0)
    d.update(IpInUnknownProtos=unknown, IcmpOutDestUnreachs=unreach, IcmpMsgOutType3=unreach,
             IpInReceives=inrecv)
    return {"a": dict(d), "b": dict(d)}


def _checks(**kw):
    return {"kernel": _kernel(**kw), "ping": {"sent": 10, "received": 10, "loss": 0.0},
            "side_flow": {"gbps": 0.02, "rate": bt.SIDE_RATE}}


def fake_result() -> dict:
    def t(g, cpu=100.0):
        return {"gbps": g, "cpu": cpu, "cpu_per_gbps": cpu / g, "samples": [g]}

    def u(pps):
        return {"gbps": pps * bt.UDP_LEN * 8 / 1e9, "pps": pps, "samples": [pps]}

    return {
        "seconds": 5, "rounds": 3, "tun_mtu": 1400, "udp_payload": bt.UDP_LEN, "cpus": 2,
        "tests": list(bt.TESTS), "load_average": [1.0, 1.0, 1.0], "time": "2026-12-04 21:00:00 UTC",
        "skipped": {"fastpptp-packet": "--gre-io packet on a: statictunnel: GreIoError: "
                                       "--gre-io packet cannot run: packet: no CAP_BPF"},
        "paths": {
            "veth": {"tcp1": t(16.0), "udp1400": u(164000)},
            "fastpptp-raw": {"tcp1": t(1.5, 150), "udp1400": u(50000), "gre_io": {"a": "raw", "b": "raw"},
                             "checks": bt._sum_checks([_checks(unknown=9000, unreach=6)], kernel_required=False)},
            "fastpptp-xdp": {"tcp1": t(3.0, 120), "udp1400": u(70000), "gre_io": {"a": "xdp", "b": "xdp"},
                             "gre_port": {"a": {"rx_packets": 5, "tx_packets": 7}, "b": {}},
                             "checks": bt._sum_checks([_checks(), _checks()])},
            "fastpptp-mppe128-raw": {"tcp1": t(1.0), "udp1400": {"error": "x"}},
            "fastpptp-mppe128-xdp": {"tcp1": t(1.4), "udp1400": u(40000)},
            "openvpn": {"tcp1": t(0.5), "udp1400": u(39000)},
        },
    }


def test_select_paths():
    assert bt.select_paths() == bt.PATHS
    assert bt.select_paths(gre_io="raw,xdp") == ("veth", "fastpptp-raw", "fastpptp-xdp", "fastpptp-mppe128-raw",
                                                  "fastpptp-mppe128-xdp", "openvpn")
    assert bt.select_paths("openvpn,fastpptp-raw,fastpptp-xdp", "xdp") == ("fastpptp-xdp", "openvpn")
    for only, modes in (("fastpptp", None), (None, "auto"), ("fastpptp-raw", "xdp")):
        with pytest.raises(ValueError):
            bt.select_paths(only, modes)
    assert bt.path_kind("fastpptp-mppe128-packet") == (True, "packet")
    assert bt.path_kind("fastpptp-xdp") == (False, "xdp") and bt.path_kind("openvpn") is None


def test_cli_options(capsys):
    from fastpptp import cli
    for argv in (["--only", "fastpptp"], ["--gre-io", "auto"], ["--time", "0"], ["--rounds", "10"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(["bench", "tunnel", *argv])
        assert exc.value.code == 2
        assert "bench tunnel:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bt.main(["--only", "fastpptp-raw", "--gre-io", "xdp"])      # nothing left to run


def test_reason_of_a_port_that_cannot_run(tmp_path):
    log = tmp_path / "st-a.log"
    log.write_text("some warning\nstatictunnel: GreIoError: --gre-io xdp cannot run: xdp: no CAP_BPF\n\n")
    assert bt._last_line(str(log)) == "statictunnel: GreIoError: --gre-io xdp cannot run: xdp: no CAP_BPF"
    log.write_text("Traceback (most recent call last):\n  ...\nTypeError: boom\n")
    assert bt._last_line(str(log)) == "TypeError: boom"
    assert bt._last_line(str(tmp_path / "missing.log")) == ""


def test_ratios_vs_raw_and_targets():
    r = fake_result()
    bt._ratios(r)
    x = r["ratios"]["fastpptp-xdp"]
    assert x["tcp1"] == {"vs_raw": 2.0, "vs_veth": 0.188, "vs_openvpn": 6.0}
    assert x["udp1400"]["vs_raw"] == 1.4                        # on delivered packets/s
    assert "vs_raw" not in r["ratios"]["fastpptp-raw"]["tcp1"]
    assert r["ratios"]["fastpptp-mppe128-xdp"]["tcp1"]["vs_raw"] == 1.4   # vs MPPE on raw
    assert "udp1400" not in r["ratios"].get("fastpptp-mppe128-raw", {})
    got = {(t["path"], t["test"], t["base"]): t for t in r["targets"]}
    assert got[("fastpptp-xdp", "tcp1", "fastpptp-raw")]["met"] is True
    assert got[("fastpptp-xdp", "udp1400", "fastpptp-raw")]["met"] is False
    assert got[("fastpptp-mppe128-xdp", "tcp1", "fastpptp-mppe128-raw")]["ratio"] == 1.4
    assert got[("fastpptp-xdp", "tcp1", "openvpn")] == {
        "what": bt.TARGETS[3][0], "path": "fastpptp-xdp", "base": "openvpn", "test": "tcp1",
        "need": 5.0, "ratio": 6.0, "met": True}
    pk = got[("fastpptp-packet", "tcp1", "fastpptp-raw")]
    assert pk["ratio"] is None and pk["met"] is False and "no CAP_BPF" in pk["why"]
    assert not any(t["path"] == "fastpptp-mppe128-packet" for t in r["targets"])  # not asked for


def test_check_verdicts():
    assert bt.check_verdicts(_checks()) == {"kernel_flat": True, "ping_ok": True, "side_flow_ok": True}
    assert not bt.check_verdicts(_checks(unknown=1))["kernel_flat"]
    assert not bt.check_verdicts(_checks(unreach=1))["kernel_flat"]
    c = _checks()
    c["ping"] = {"sent": 10, "received": 7, "loss": 0.3}
    c["side_flow"] = {"error": "iperf3 server did not start"}
    assert bt.check_verdicts(c) == {"kernel_flat": True, "ping_ok": False, "side_flow_ok": False}
    assert bt.check_verdicts({})["kernel_flat"] is False          # nothing read is not "flat"
    fast = bt._sum_checks([_checks(), _checks(unknown=3)])
    assert fast["ok"] is False and fast["kernel"]["b"]["IpInUnknownProtos"] == 3
    assert fast["ping"] == {"sent": 20, "received": 20, "loss": 0.0} and fast["tests"] == 2
    raw = bt._sum_checks([_checks(unknown=3)], kernel_required=False)
    assert raw["ok"] is True and raw["verdicts"]["kernel_flat"] is False


def test_snmp_delta_counts_missing_icmpmsg_as_zero():
    before = {"IpInUnknownProtos": 5, "IcmpOutDestUnreachs": 1, "IpInReceives": 10}
    after = {"IpInUnknownProtos": 5, "IcmpOutDestUnreachs": 1, "IcmpMsgOutType3": 2, "IpInReceives": 30}
    d = bt.snmp_delta(before, after)
    assert d["IpInUnknownProtos"] == 0 and d["IcmpMsgOutType3"] == 2 and d["IpInReceives"] == 20


def test_table_and_plot(tmp_path):
    r = fake_result()
    bt._ratios(r)
    text = bt.format_table(r)
    lines = text.splitlines()
    body = [ln.split()[0] for ln in lines[2:8]]
    assert body == ["veth", "fastpptp-raw", "fastpptp-xdp", "fastpptp-mppe128-raw", "fastpptp-mppe128-xdp",
                    "openvpn"]
    assert "2.00" in lines[4] and "6.00" in lines[4] and "70.000" in lines[4]
    assert "error" in lines[5]
    assert "fastpptp-xdp GRE port (xdp/xdp) a: rx_packets=5 tx_packets=7" in text
    assert "fastpptp-xdp checks: OK: kernel FLAT" in text
    assert "fastpptp-raw checks: OK: kernel moved (raw: reported, not required)" in text
    assert "skipped fastpptp-packet: --gre-io packet on a:" in text
    assert "target fastpptp-xdp TCP 1 stream, no MPPE: fast port vs raw >= 1.8x: 2.00x -> MET" in text
    pytest.importorskip("matplotlib", reason="the plot extra (pip install 'fastpptp[plot]') is not installed")
    png = tmp_path / "t.png"
    bt.write_plot(r, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_short_run_raw_and_fast_ports(tmp_path):
    """``--time 1 --rounds 1`` of raw and both fast ports, through the CLI module."""
    png = tmp_path / "bench.png"
    argv = [sys.executable, "-m", "fastpptp.tools.benchtunnel", "--json", "--time", "1", "--rounds", "1",
            "--only", "fastpptp-raw,fastpptp-packet,fastpptp-xdp", "--plot", str(png)]
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=110,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    took = time.monotonic() - t0
    print(r.stderr[-3000:])
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    print(f"took {took:.1f}s; skipped: {doc['skipped']}")
    assert took < 60
    for key in ("paths", "skipped", "ratios", "targets", "tests", "rounds", "seconds", "load_average"):
        assert key in doc, key
    assert doc["tests"] == ["tcp1", "udp1400"] and doc["rounds"] == 1

    raw = doc["paths"]["fastpptp-raw"]
    assert raw["gre_io"] == {"a": "raw", "b": "raw"}
    assert raw["tcp1"]["gbps"] > 0.01 and raw["udp1400"]["pps"] > 100
    assert raw["tcp1"]["cpu"] > 0 and raw["tcp1"]["cpu_per_gbps"] > 0
    assert raw["gre_port"]["b"]["rx_packets"] > 1000 and raw["gre_port"]["a"]["tx_packets"] > 1000
    for side in ("a", "b"):
        c = raw["counters"][side]
        assert c["drop_malformed"] == 0 and c["drop_unknown_call"] == 0, c
    assert raw["checks"]["verdicts"]["ping_ok"] and raw["checks"]["verdicts"]["side_flow_ok"], raw["checks"]
    assert raw["checks"]["kernel_flat_required"] is False

    ran = []
    for mode in bt.FAST_MODES:
        path = f"fastpptp-{mode}"
        if path in doc["skipped"]:
            why = doc["skipped"][path]
            assert path not in doc["paths"]                       # never measured in its place
            # only greport's "this port cannot run here" is the facility being absent;
            # anything else (a crash, another mode running) is a failure of the port
            assert f"--gre-io {mode}" in why and "cannot run" in why, why
            continue
        ran.append(mode)
        e = doc["paths"][path]
        assert e["gre_io"] == {"a": mode, "b": mode}, e.get("gre_io")
        assert e["tcp1"]["gbps"] > 0.01 and e["udp1400"]["pps"] > 100, e
        # the port itself carried the tunnel, not its slow path
        assert e["gre_port"]["b"]["rx_packets"] > 1000, e["gre_port"]
        assert e["gre_port"]["a"]["tx_packets"] > 1000, e["gre_port"]
        ck = e["checks"]
        assert ck["kernel_flat_required"] is True and ck["tests"] == 2
        assert ck["verdicts"] == {"kernel_flat": True, "ping_ok": True, "side_flow_ok": True}, ck
        assert ck["ok"] is True
        for test in ("tcp1", "udp1400"):
            assert "vs_raw" in doc["ratios"][path][test]
        assert any(t["path"] == path and t["ratio"] is not None for t in doc["targets"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not ran:
        pytest.skip("no fast GRE port can run here: " + "; ".join(doc["skipped"].values()))
