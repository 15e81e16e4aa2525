"""Run the fuzz targets: ``python3 -m fuzz.run [--seconds S | --runs N] [--engine E] [TARGET...]``.

Each target runs in a child process of its own (the compiled engine may crash: the child
dies, the parent reports it and the input is kept), one after the other.  Engine ``atheris``
(coverage-guided libFuzzer, the default when atheris imports) keeps its corpus in
``fuzz/corpus/TARGET`` (seeded from the target's ``seeds()``) and writes failing inputs to
``fuzz/artifacts/TARGET/``; engine ``builtin`` (fuzz/mutator.py) mutates the seeds at random,
deterministically, and saves failures in the same place.  Both are git-ignored.

At the end a table: target, engine, inputs run, seconds, inputs/s, result.  Exit status 1
when any target failed.  ``--replay FILE...`` runs saved inputs through a target once.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import logging
import os
import pathlib
import random
import re
import subprocess
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS = ("control", "link", "gre", "radius")


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _load(name: str):
    return importlib.import_module(f"fuzz.targets.{name}")


def _save(target: str, data: bytes, kind: str) -> pathlib.Path:
    d = HERE / "artifacts" / target
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{kind}-{hashlib.sha1(data).hexdigest()}"
    p.write_bytes(data)
    return p


# --------------------------------------------------------------------------- child side

def _child_builtin(name: str, seconds: float, runs: int, seed: int, count_file: str) -> int:
    from .mutator import mutate
    target = _load(name)
    corpus = list(target.seeds())
    cdir = HERE / "corpus" / name
    if cdir.is_dir():
        corpus += [p.read_bytes() for p in sorted(cdir.iterdir())[:2000] if p.is_file()]
    rng = random.Random(seed)
    cur_dir = HERE / "artifacts" / name
    cur_dir.mkdir(parents=True, exist_ok=True)
    # the input being run, for the parent to keep if this process dies (a crash, not a raise)
    cur = os.open(cur_dir / ".current", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    end = time.monotonic() + seconds if seconds else None
    done = 0
    queue = list(corpus)
    while True:
        if runs and done >= runs:
            break
        if end is not None and (done & 63) == 0 and time.monotonic() >= end:
            break
        data = queue.pop() if queue else mutate(rng.choice(corpus), corpus, rng)
        os.ftruncate(cur, 0)
        os.pwrite(cur, data, 0)
        try:
            target.one_input(data)
        except Exception:
            traceback.print_exc()
            path = _save(name, data, "failure")
            print(f"FAILURE {name}: input saved as {path}", file=sys.stderr)
            _write_count(count_file, done + 1)
            os.close(cur)
            os.unlink(cur_dir / ".current")
            return 1
        done += 1
        if (done & 1023) == 0:
            _write_count(count_file, done)
    os.close(cur)
    os.unlink(cur_dir / ".current")
    _write_count(count_file, done)
    return 0


def _write_count(path: str, n: int) -> None:
    if path:
        pathlib.Path(path).write_text(str(n))


def _child_atheris(name: str, seconds: float, runs: int, count_file: str) -> int:
    import atheris
    with atheris.instrument_imports(include=["fastpptp", "fuzz"]):
        target = _load(name)
    cdir = HERE / "corpus" / name
    cdir.mkdir(parents=True, exist_ok=True)
    for data in target.seeds():
        (cdir / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)
    art = HERE / "artifacts" / name
    art.mkdir(parents=True, exist_ok=True)
    one = target.one_input
    count = [0]

    def test_one(data: bytes) -> None:
        count[0] += 1
        if (count[0] & 4095) == 0:
            _write_count(count_file, count[0])
        one(data)

    args = [sys.argv[0], str(cdir), f"-artifact_prefix={art}/", "-rss_limit_mb=2048",
            "-timeout=20", "-max_len=4096", "-print_final_stats=1"]
    if seconds:
        args.append(f"-max_total_time={int(seconds)}")
    if runs:
        args.append(f"-runs={runs}")
    atheris.Setup(args, test_one)
    atheris.Fuzz()
    return 0


# --------------------------------------------------------------------------- parent side

def _run_child(name: str, engine: str, seconds: float, runs: int, seed: int) -> dict:
    count_file = HERE / "artifacts" / f".count-{name}-{os.getpid()}"
    count_file.parent.mkdir(parents=True, exist_ok=True)
    count_file.write_text("0")
    cmd = [sys.executable, "-m", "fuzz.run", "--child", name, "--engine", engine,
           "--seconds", str(seconds), "--runs", str(runs), "--seed", str(seed),
           "--count-file", str(count_file)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.monotonic() - t0
    inputs = int(count_file.read_text() or 0)
    count_file.unlink()
    m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    if m:
        inputs = max(inputs, int(m[-1]))
    result = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    if proc.returncode != 0:
        cur = HERE / "artifacts" / name / ".current"
        if cur.exists():              # the builtin child died without saving: keep the input
            print(f"{name}: crashing input saved as {_save(name, cur.read_bytes(), 'crash')}")
            cur.unlink()
        tail = "\n".join(proc.stderr.strip().splitlines()[-40:])
        print(f"--- {name} failed; the end of its output:\n{tail}\n---", flush=True)
    return {"target": name, "engine": engine, "inputs": inputs, "seconds": elapsed,
            "result": result, "rc": proc.returncode}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m fuzz.run", description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 120)),
                    help="time per target (FUZZ_SECONDS, default 120)")
    ap.add_argument("--runs", type=int, default=0, help="inputs per target (0: no limit)")
    ap.add_argument("--engine", choices=("atheris", "builtin"),
                    default="atheris" if _have_atheris() else "builtin")
    ap.add_argument("--seed", type=int, default=1, help="builtin engine: random seed")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs once")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--count-file", default="", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    logging.disable(logging.CRITICAL)         # the protocol cores log every peer mistake
    if a.child:
        if a.engine == "atheris":
            return _child_atheris(a.child, a.seconds, a.runs, a.count_file)
        return _child_builtin(a.child, a.seconds, a.runs, a.seed, a.count_file)
    targets = a.targets or list(TARGETS)
    for t in targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t!r} (targets: {', '.join(TARGETS)})")
    if a.replay:
        [t] = targets
        target = _load(t)
        for f in a.replay:
            target.one_input(pathlib.Path(f).read_bytes())
            print(f"{f}: ok")
        return 0
    rows = []
    for t in targets:
        print(f"fuzzing {t} ({a.engine}, {f'{a.seconds:g} s' if a.seconds else ''}"
              f"{f' {a.runs} inputs' if a.runs else ''})...", flush=True)
        rows.append(_run_child(t, a.engine, a.seconds, a.runs, a.seed))
    total = sum(r["inputs"] for r in rows)
    print(f"\n{'target':<8} {'engine':<8} {'inputs':>11} {'seconds':>8} {'inputs/s':>9}  result")
    for r in rows:
        rate = r["inputs"] / r["seconds"] if r["seconds"] else 0
        print(f"{r['target']:<8} {r['engine']:<8} {r['inputs']:>11} {r['seconds']:>8.1f} "
              f"{rate:>9.0f}  {r['result']}")
    failed = [r["target"] for r in rows if r["rc"]]
    print(f"total: {total} inputs, {len(failed)} failing target(s)"
          f"{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
