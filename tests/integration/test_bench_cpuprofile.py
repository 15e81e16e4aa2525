"""``fastpptp bench tunnel --cpu-profile`` for real: perf records during each path's tcp1 test.

``--only fastpptp-raw,fastpptp-packet --time 2 --rounds 1 --cpu-profile --json`` through the
CLI: each path's profile has samples, its categories add up to the total, the GRE transport
took some CPU on both ports, and the packet port gets its Amdahl line against raw.  When perf
is absent or refused (perf_event_paranoid, no CAP_PERFMON) the bench must still finish and say
why: the test then skips with that reason.  No throughput is asserted.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from fastpptp.tools import cpuprofile as cp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _profile_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "fpprof*")))


def _perf_usable() -> str | None:
    """Why perf cannot record system-wide here, or None."""
    if shutil.which("perf") is None:
        return "perf is not installed (Debian package linux-perf)"
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        paranoid = int(f.read())
    if os.geteuid() != 0 and paranoid > 0:
        return f"not root and kernel.perf_event_paranoid = {paranoid}"
    return None


@pytest.mark.timeout(60)
def test_recorder_for_real():
    why = _perf_usable()
    if why:
        pytest.skip(why)
    before = _profile_dirs()
    got = cp.record(0.5, own_pids=[])
    assert "error" not in got, got
    assert got["samples"] > 100 and sum(got["counts"].values()) == got["samples"]
    assert got["counts"]["idle"] + got["counts"]["foreign"] > 0
    # cancelled while perf runs: perf killed by PID, at once, its data removed
    rec = cp.Recorder(20.0, own_pids=[]).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    rec.cancel()
    assert rec.finish() == {"error": "cancelled"}
    assert time.monotonic() - t0 < 10
    assert _profile_dirs() <= before


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_cpu_profile_raw_and_packet():
    before = _profile_dirs()
    argv = [sys.executable, "-m", "fastpptp.cli", "bench", "tunnel", "--only", "fastpptp-raw,fastpptp-packet",
            "--time", "2", "--rounds", "1", "--cpu-profile", "--json"]
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=140,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    print(r.stderr[-3000:])
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    print(f"took {time.monotonic() - t0:.1f}s; skipped: {doc['skipped']}; cpu_profile: "
          f"{json.dumps(doc.get('cpu_profile'))}")
    assert _profile_dirs() <= before                     # perf's data removed
    assert "fastpptp-raw" in doc["paths"], doc["skipped"]
    cpr = doc["cpu_profile"]
    assert cpr["test"] == "tcp1"
    if not cpr["available"]:
        assert cpr["reason"]
        pytest.skip(f"perf cannot profile here: {cpr['reason']}")

    ran = ["fastpptp-raw"]
    if "fastpptp-packet" in doc["skipped"]:
        why = doc["skipped"]["fastpptp-packet"]
        assert "--gre-io packet" in why and "cannot run" in why, why
    else:
        ran.append("fastpptp-packet")
    for path in ran:
        prof = doc["paths"][path]["tcp1"]["cpu_profile"]
        assert "error" not in prof, prof
        # 2 CPUs x 499 Hz over at least half a second
        assert prof["samples"] > 200, prof
        assert set(prof["counts"]) == set(cp.CATEGORIES)
        assert sum(prof["counts"].values()) == prof["samples"]
        assert prof["counts"]["gre_transport"] > 0 and prof["cpu_per_gbps"]["gre_transport"] > 0
        assert prof["counts"]["iperf3_tcp"] > 0 and prof["counts"]["tun_write"] > 0
        assert prof["busy_per_gbps"] >= prof["transport_per_gbps"] > 0
        assert prof["rounds"] == 1 and len(prof["per_round"]) == 1
        rnd = prof["per_round"][0]
        assert sum(rnd["counts"].values()) == rnd["samples"] == prof["samples"]
        assert sum(rnd["share"].values()) == pytest.approx(1.0, abs=0.01)
        assert prof["gbps"] == pytest.approx(doc["paths"][path]["tcp1"]["gbps"], rel=1e-3)
    if "fastpptp-packet" not in ran:
        pytest.skip("the packet port cannot run here: " + doc["skipped"]["fastpptp-packet"])
    (a,) = cpr["amdahl"]
    assert (a["path"], a["base"], a["need"]) == ("fastpptp-packet", "fastpptp-raw", 1.8)
    assert a["ratio_cpu_bound"] > 0 and a["measured_ratio"] > 0
    assert a["ceiling_free_transport"] is None or a["ceiling_free_transport"] > a["ratio_cpu_bound"]
