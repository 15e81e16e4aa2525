"""Connect/disconnect churn against ``fastpptp server`` (issue 10), at CI size: 300 cycles
after a 100-cycle warm-up, 30 % ending without a goodbye (killed, TCP reset, GRE just
stopping), through ``fastpptp bench sessions --churn`` in the load rig's two namespaces
(fastpptp/tools/loadrig.py).  The 10 000-cycle figure is in docs/RELIABILITY.md.

Nothing may be left behind: no session, route, link (TUN) or fd more than before, RSS
within 10 % of its level after the warm-up (the first sessions grow the heap once), and the
pool -- exactly one address per concurrent client -- never runs dry (a leaked address would
fail a later cycle)."""
from __future__ import annotations

import pytest

from fastpptp.tools.loadrig import load_lab

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(150)]

SLOTS = 20
WARMUP = 100
CYCLES = 300


@pytest.mark.parametrize("gre_io", ["raw", "auto"])
def test_churn_leaves_nothing_behind(tmp_path, gre_io):
    """On ``auto`` (an XDP or packet port on the rig's veth) the server's RSS is only
    reported, not bounded: it grows ~75 kB per cycle there (2026-12-04: 101 -> 124 MB over 300
    cycles, flat on raw), an open defect of issue 9 named in its closing note."""
    with load_lab(str(tmp_path), SLOTS) as lab:
        lab.start_server("--rate-limit", "1000", "--gre-io", gre_io, echo=(1, 3))
        warm = lab.churn(WARMUP, "--unclean", "0.3", "--quiet", timeout=60)
        assert warm["status"] == 0, warm["stderr"]
        lab.samples.clear()
        res = lab.churn(CYCLES, "--unclean", "0.3", "--quiet", timeout=90)
    c = res["summary"]["churn"]
    before, after = res["before"], res["after"]
    print(f"churn: {c}\nbefore {before}\nafter  {after}")
    assert res["status"] == 0, res["stderr"]
    assert c["cycles"] == CYCLES and c["failed"] == 0 and c["dropped_after_up"] == {}
    assert set(c["endings"]) == {"clean", "killed", "rst", "silent"}, c["endings"]
    assert after["sessions"] == 0
    assert (after["fds"], after["routes"], after["links"]) == \
        (before["fds"], before["routes"], before["links"])
    if gre_io == "raw":
        assert after["rss_kb"] <= before["rss_kb"] * 1.10, (before, after)
