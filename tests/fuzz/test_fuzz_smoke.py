"""CI smoke run of every fuzz target (fuzz/): a few thousand inputs each with the built-in
mutator, each target in a child process of its own (as `make fuzz` runs them), so a target
that no longer runs, an invariant that fails near the seeds, or a crash of the compiled
engine fails CI.  About 15 s in all; the long runs are `make fuzz`."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from fuzz.run import TARGETS

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNS = {"control": 3000, "link": 3000, "gre": 1500, "radius": 3000}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_clean(target):
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.run", target, "--engine", "builtin",
         "--runs", str(RUNS[target]), "--seconds", "40", "--seed", "7"],
        cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = re.search(rf"^{target}\s+builtin\s+(\d+)\s", proc.stdout, re.M)
    assert row is not None, proc.stdout
    # every input ran (the time cap is only a guard against a very slow machine)
    assert int(row.group(1)) >= RUNS[target] // 2, proc.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_seeds_pass_and_are_structured(target):
    """The seeds (real captures, our own encoders) run clean in-process and are not empty."""
    from fuzz.run import _load
    t = _load(target)
    seeds = t.seeds()
    assert len(seeds) >= 4
    for s in seeds:
        t.one_input(s)
