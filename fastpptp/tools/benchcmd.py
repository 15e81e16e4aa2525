"""``fastpptp bench dataplane [--json]``: encapsulation/decapsulation packets per second.

Measured in one run, on one core, for 64, 512 and 1400-byte IP packets, without MPPE and with
MPPE-128 stateless (a fresh RC4 key per packet, the Windows default), for:

* ``compiled``  -- fastpptp._gre through its slab API (what the I/O thread runs per batch);
* ``reference`` -- fastpptp._gre_ref through ``process()`` (its natural, cheapest API);
* ``memcpy``    -- a Cython loop that copies the same bytes once (the floor: any data plane
                   must at least touch every byte once).

Only the engine calls are timed: refilling the decap slab with fresh, in-sequence frames
between batches is not.  Also reported: encapsulation cost with 1, 100 and 10 000 sessions
(routes hashed; packets spread over all sessions) to show the per-packet cost is flat.

Rate limiter cost (``rate_limit`` in the result): fastpptp/_gre.pyx is built twice more into a
cache directory under the temp dir, with the same compiler and flags, once as it is and once
with ``-DFASTPPTP_NO_RATE_LIMIT`` (the limiter's hooks compiled out: ``RATE_LIMIT_COMPILED``
is False in that build).  Encap and decap packets/s (no MPPE) are measured, in interleaved
rounds, for: ``off`` -- the build without the limiter, an unlimited session; ``unlimited``
-- the build with it, an unlimited session; ``limited`` -- the same build, a session limited
to RL_MAX_KBIT (1 Tbit/s, never reached here: every packet passes).  Each figure is the
median of the rounds (``best_unlimited_vs_off``: the same from each case's best round;
``spread_off``: (max - min) / median of the ``off`` rounds, the noise to compare with).
"""
from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import json as _json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fastpptp.dataplane import HEADROOM, RL_MAX_KBIT, EngineConfig, load_engine

PAYLOADS = (64, 512, 1400)
MPPE_MODES = (None, "128-stateless")
BATCH = 256
ROW = 2048
PEER = "192.0.2.2"
LOCAL = "192.0.2.1"
KEY_A = bytes(range(16))
KEY_B = bytes(range(16, 32))


def _ipv4_header(total_len: int, proto: int, src: str, dst: str) -> bytes:
    """A 20-byte IPv4 header: DF, TTL 64, checksum left 0 (nothing here verifies it)."""
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, total_len, 0, 0x4000, 64, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)


def _ip_packet(size: int, dst: str = "198.51.100.2", src: str = "198.51.100.1") -> bytes:
    body = bytes(i & 0xFF for i in range(size - 28))
    udp = struct.pack("!HHHH", 1000, 2000, 8 + len(body), 0) + body
    return _ipv4_header(size, 17, src, dst) + udp


def _engine(impl: str, mppe, *, call_id=7, peer_call_id=0x99, peer=PEER, sessions=1,
            engine_cls: Any = None, rate_kbit: int = 0):
    """An engine with ``sessions`` sessions; ``engine_cls`` overrides ``impl`` (a build of
    the rate-limit comparison), ``rate_kbit`` limits every session both ways."""
    cls = engine_cls if engine_cls is not None else load_engine(impl)
    e = cls(EngineConfig(batch=64, clamp_mss=True))
    for k in range(sessions):
        cid = (call_id + k) & 0xFFFF
        e.add_session(cid, (peer_call_id + k) & 0xFFFF, peer if sessions == 1 else f"10.{k >> 8}.{k & 255}.1",
                      tun=0)
        e.set_ppp(cid, tx_acfc=True, tx_pfc=True, mtu=1500)
        e.set_data(cid, True, True)
        if sessions > 1:
            e.add_route(cid, f"172.16.{k >> 8}.{k & 255}")
        if mppe:
            e.set_mppe(cid, KEY_A, KEY_B, 128, False)
        if rate_kbit:
            e.set_rate_limit(cid, rate_kbit, rate_kbit)
    return e


def _timeit(fn, min_time: float, count_per_call: int) -> float:
    """Packets/s of ``fn`` (which returns the seconds it spent in the measured part)."""
    fn()                                        # warm-up
    spent, n = 0.0, 0
    while spent < min_time:
        spent += fn()
        n += count_per_call
    return n / spent


# ------------------------------------------------------------------ encapsulation
def encap_compiled(payload: int, mppe, min_time=0.3, sessions: int = 1,
                   engine_cls: Any = None, rate_kbit: int = 0) -> float:
    e = _engine("compiled", mppe, sessions=sessions, engine_cls=engine_cls, rate_kbit=rate_kbit)
    slab = np.zeros((BATCH, ROW), np.uint8)
    lens = np.full(BATCH, payload, np.uint32)
    out = np.zeros((BATCH, 3), np.uint32)
    for i in range(BATCH):
        k = (i * 7919) % sessions
        dst = "198.51.100.2" if sessions == 1 else f"172.16.{k >> 8}.{k & 255}"
        slab[i, HEADROOM:HEADROOM + payload] = np.frombuffer(_ip_packet(payload, dst), np.uint8)
    plain = slab[:, HEADROOM:HEADROOM + payload].copy()

    def run():
        if mppe:                                # MPPE encrypted the packets in place
            slab[:, HEADROOM:HEADROOM + payload] = plain
        t = time.perf_counter()
        k = e.encap_slab(0, slab, lens, BATCH, out)
        t = time.perf_counter() - t
        assert k == BATCH
        return t
    return _timeit(run, min_time, BATCH)


def encap_reference(payload: int, mppe, min_time=0.3) -> float:
    e = _engine("reference", mppe)
    pkts = [(0, _ip_packet(payload))] * 32
    now = [0.0]

    def run():
        now[0] += 1e-3
        t = time.perf_counter()
        out = e.process(now[0], tun_in=pkts)
        t = time.perf_counter() - t
        assert len(out.gre_out) == 32
        return t
    return _timeit(run, min_time, 32)


# ------------------------------------------------------------------ decapsulation
def _peer_stream(payload: int, mppe, batches: int):
    """Datagrams (IPv4 + GRE + PPP) a peer would send us: [batches, BATCH, ROW] + lengths."""
    p = load_engine("compiled")(EngineConfig())
    p.add_session(0x99, 7, LOCAL)
    p.set_ppp(0x99, tx_acfc=True, tx_pfc=True, mtu=1500)
    p.set_data(0x99, True, True)
    if mppe:
        p.set_mppe(0x99, KEY_B, KEY_A, 128, False)
    slab = np.zeros((BATCH, ROW), np.uint8)
    lens = np.full(BATCH, payload, np.uint32)
    out = np.zeros((BATCH, 3), np.uint32)
    ip = np.frombuffer(_ip_packet(payload, "198.51.100.1", "198.51.100.2"), np.uint8)
    stream = np.zeros((batches, BATCH, ROW), np.uint8)
    dlen = None
    for b in range(batches):
        slab[:, HEADROOM:HEADROOM + payload] = ip
        dlen = _encap_as_datagrams(p, slab, lens, out, stream[b],
                                   np.frombuffer(ipaddress.IPv4Address(PEER).packed, np.uint8))
    return stream, dlen


def _encap_as_datagrams(p, slab, lens, out, dest, srcs) -> int:
    """Encapsulate one batch of ``slab`` with engine ``p`` and write it into ``dest``
    ([BATCH, ROW]) as the IPv4 datagrams (protocol 47, to LOCAL) a peer would send; ``srcs``
    is one source address ([4] uint8) for every row or a [BATCH, 4] array.  Returns the
    datagram length (all rows have the same one)."""
    assert p.encap_slab(0, slab, lens, BATCH, out) == BATCH
    start, flen = int(out[0, 1]), int(out[0, 2])
    assert (out[:, 1] == start).all() and (out[:, 2] == flen).all()
    dlen = 20 + flen
    dest[:, HEADROOM:HEADROOM + 20] = np.frombuffer(_ipv4_header(dlen, 47, "0.0.0.0", LOCAL), np.uint8)
    dest[:, HEADROOM + 12:HEADROOM + 16] = srcs
    dest[:, HEADROOM + 20:HEADROOM + dlen] = slab[:, start:start + flen]
    return dlen


def _peer_stream_sessions(payload: int, sessions: int, batches: int):
    """Like _peer_stream, from ``sessions`` calls at once (row i is call (i * 7919) % n)."""
    p = load_engine("compiled")(EngineConfig())
    for k in range(sessions):
        p.add_session((0x99 + k) & 0xFFFF, (7 + k) & 0xFFFF, LOCAL, tun=0)
        p.set_ppp((0x99 + k) & 0xFFFF, tx_acfc=True, tx_pfc=True, mtu=1500)
        p.set_data((0x99 + k) & 0xFFFF, True, True)
        p.add_route((0x99 + k) & 0xFFFF, f"172.17.{k >> 8}.{k & 255}")
    slab = np.zeros((BATCH, ROW), np.uint8)
    lens = np.full(BATCH, payload, np.uint32)
    out = np.zeros((BATCH, 3), np.uint32)
    ks = [(i * 7919) % sessions for i in range(BATCH)]
    ips = np.stack([np.frombuffer(_ip_packet(payload, f"172.17.{k >> 8}.{k & 255}"), np.uint8) for k in ks])
    srcs = np.array([[10, k >> 8, k & 255, 1] for k in ks], np.uint8)
    stream = np.zeros((batches, BATCH, ROW), np.uint8)
    dlen = None
    for b in range(batches):
        slab[:, HEADROOM:HEADROOM + payload] = ips
        dlen = _encap_as_datagrams(p, slab, lens, out, stream[b], srcs)
    return stream, dlen


def decap_compiled(payload: int, mppe, min_time=0.3, sessions: int = 1,
                   engine_cls: Any = None, rate_kbit: int = 0) -> float:
    batches = 24
    if sessions == 1:
        stream, dlen = _peer_stream(payload, mppe, batches)
    else:
        stream, dlen = _peer_stream_sessions(payload, sessions, batches)
    def fresh():
        return _engine("compiled", mppe, sessions=sessions, engine_cls=engine_cls,
                       rate_kbit=rate_kbit)
    e = fresh()
    slab = np.zeros((BATCH + 64, ROW), np.uint8)
    lens = np.full(BATCH + 64, dlen, np.uint32)
    o_tun = np.zeros(BATCH + 64, np.int32)
    o_off = np.zeros(BATCH + 64, np.int64)
    o_len = np.zeros(BATCH + 64, np.uint32)
    state = {"b": 0, "e": e}

    def run():
        b = state["b"]
        if b == batches:                         # stream used up: a fresh receiver
            state["e"] = fresh()
            b = 0
        state["b"] = b + 1
        slab[:BATCH] = stream[b]
        t = time.perf_counter()
        k = state["e"].decap_slab(slab, lens, BATCH, o_tun, o_off, o_len)
        t = time.perf_counter() - t
        assert k == BATCH, k
        return t
    return _timeit(run, min_time, BATCH)


def decap_reference(payload: int, mppe, min_time=0.3) -> float:
    stream, dlen = _peer_stream(payload, mppe, 4)
    frames = [stream[b, i, HEADROOM:HEADROOM + dlen].tobytes() for b in range(4) for i in range(BATCH)]
    state = {"i": 0, "e": _engine("reference", mppe)}

    def run():
        i = state["i"]
        if i + 32 > len(frames):
            state["e"] = _engine("reference", mppe)
            i = 0
        state["i"] = i + 32
        t = time.perf_counter()
        out = state["e"].process(0.0, gre_in=frames[i:i + 32])
        t = time.perf_counter() - t
        assert len(out.tun_out) == 32
        return t
    return _timeit(run, min_time, 32)


def memcpy_rate(nbytes: int, min_time=0.3) -> float:
    from fastpptp._gre import bench_memcpy
    src = np.ones((BATCH, ROW), np.uint8)
    dst = np.zeros((BATCH, ROW), np.uint8)
    lens = np.full(BATCH, nbytes, np.uint32)

    def run():
        t = time.perf_counter()
        bench_memcpy(src, dst, lens, BATCH, HEADROOM)
        return time.perf_counter() - t
    return _timeit(run, min_time, BATCH)


# ------------------------------------------------------------------ rate limiter cost
# what _gre.pyx is compiled from: its .pxd, and those it cimports (the windows' inline
# functions are compiled into it; the sink's and the port's layouts are checked at import)
_GRE_SOURCES = ("_gre.pyx", "_gre.pxd", "_sys.pxd", "_mppe.pxd", "_offload.pxd", "_greport.pxd",
                "_sink.pxd", "_rxwin.pxd", "_txwin.pxd")


def _compile_gre(out: str, no_rate_limit: bool) -> None:
    """Build fastpptp/_gre.pyx into ``out`` with setup.py's flags (and the switch).  Run in a
    fresh interpreter per variant: cythonize remembers an extension's settings for the
    rest of the process, so a second variant built in the same one would be the first."""
    import numpy
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension
    pkg = Path(__file__).resolve().parent.parent
    flags = ["-O3", "-fno-strict-aliasing", "-D_GNU_SOURCE",
             "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION"]
    ext = Extension("fastpptp._gre", [str(pkg / "_gre.pyx")],
                    include_dirs=[numpy.get_include(), str(pkg)],
                    extra_compile_args=flags + (["-DFASTPPTP_NO_RATE_LIMIT"] if no_rate_limit else []),
                    libraries=["pthread"])
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False,
                  "cdivision": True, "initializedcheck": False, "embedsignature": True}
    exts = cythonize([ext], build_dir=str(Path(out) / "c"), compiler_directives=directives,
                     quiet=True)
    dist = Distribution({"ext_modules": exts})
    cmd: Any = dist.get_command_obj("build_ext")
    cmd.build_lib = out
    cmd.build_temp = str(Path(out) / "tmp")
    cmd.inplace = False
    cmd.ensure_finalized()
    cmd.run()


def _build_gre(no_rate_limit: bool) -> ModuleType:
    """fastpptp/_gre.pyx built into a cache directory (with -DFASTPPTP_NO_RATE_LIMIT when
    asked) and loaded under its own name, beside the real fastpptp._gre (a separate shared
    object: its own globals and types)."""
    import Cython
    pkg = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(f"{Cython.__version__} {sys.version} {no_rate_limit}".encode())
    for name in _GRE_SOURCES:
        h.update((pkg / name).read_bytes())
    out = Path(tempfile.gettempdir()) / f"fastpptp-bench-gre-{h.hexdigest()[:16]}"
    found = sorted(out.glob("fastpptp/_gre*.so")) if out.is_dir() else []
    if not found:
        print(f"fastpptp bench dataplane: building _gre {'without' if no_rate_limit else 'with'} "
              f"the rate limiter into {out} (once)", file=sys.stderr, flush=True)
        code = ("import sys; from fastpptp.tools.benchcmd import _compile_gre; "
                "_compile_gre(sys.argv[1], sys.argv[2] == '1')")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(pkg.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        subprocess.run([sys.executable, "-c", code, str(out), "1" if no_rate_limit else "0"],
                       check=True, env=env, cwd=str(pkg.parent), timeout=900,
                       stdout=subprocess.DEVNULL)
        found = sorted(out.glob("fastpptp/_gre*.so"))
    spec = importlib.util.spec_from_file_location("fastpptp._gre", found[0])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if mod.RATE_LIMIT_COMPILED == no_rate_limit:
        raise RuntimeError(f"{found[0]}: RATE_LIMIT_COMPILED is {mod.RATE_LIMIT_COMPILED}")
    return mod


RL_CASES = ("off", "unlimited", "limited")


def rate_limit_cost(min_time: float = 0.3, rounds: int = 9,
                    payloads: tuple[int, ...] = PAYLOADS) -> list[dict]:
    """Packets/s of the three RL_CASES, per op and payload: the median of ``rounds``
    interleaved measurements (a busy moment of the machine hits every case alike)."""
    cls = {"off": _build_gre(True).Engine, "unlimited": _build_gre(False).Engine}
    cls["limited"] = cls["unlimited"]
    kbit = {"off": 0, "unlimited": 0, "limited": RL_MAX_KBIT}
    rows = []
    for op, fn in (("encap", encap_compiled), ("decap", decap_compiled)):
        for payload in payloads:
            got: dict[str, list[float]] = {c: [] for c in RL_CASES}
            for r in range(rounds):
                k = r % len(RL_CASES)                   # each case goes first in turn
                for case in RL_CASES[k:] + RL_CASES[:k]:
                    got[case].append(fn(payload, None, min_time, engine_cls=cls[case],
                                        rate_kbit=kbit[case]))
            med = {c: statistics.median(v) for c, v in got.items()}
            rows.append({"op": op, "payload": payload,
                         **{c: round(med[c], 1) for c in RL_CASES},
                         "unlimited_vs_off": round(med["unlimited"] / med["off"] - 1, 4),
                         "limited_vs_off": round(med["limited"] / med["off"] - 1, 4),
                         "best_unlimited_vs_off": round(max(got["unlimited"]) / max(got["off"]) - 1, 4),
                         "spread_off": round((max(got["off"]) - min(got["off"])) / med["off"], 4)})
    return rows


def collect(min_time: float = 0.3) -> dict:
    rows = []
    for op in ("encap", "decap"):
        for payload in PAYLOADS:
            for mppe in MPPE_MODES:
                if op == "encap":
                    comp = encap_compiled(payload, mppe, min_time)
                    ref = encap_reference(payload, mppe, min_time)
                    mem = memcpy_rate(payload, min_time)
                else:
                    comp = decap_compiled(payload, mppe, min_time)
                    ref = decap_reference(payload, mppe, min_time)
                    mem = memcpy_rate(payload, min_time)
                for impl, pps in (("compiled", comp), ("reference", ref), ("memcpy", mem)):
                    rows.append({"op": op, "payload": payload, "mppe": mppe, "impl": impl,
                                 "pps": round(pps, 1)})
    scaling = [{"op": op, "payload": 512, "sessions": n,
                "pps": round(fn(512, None, min_time, sessions=n), 1)}
               for op, fn in (("encap", encap_compiled), ("decap", decap_compiled))
               for n in (1, 100, 10_000)]
    return {"rows": rows, "sessions": scaling, "rate_limit": rate_limit_cost(min_time)}


def _ratios(result: dict) -> list[str]:
    by = {(r["op"], r["payload"], r["mppe"], r["impl"]): r["pps"] for r in result["rows"]}
    lines = []
    for op in ("encap", "decap"):
        for payload in PAYLOADS:
            for mppe in MPPE_MODES:
                c = by[(op, payload, mppe, "compiled")]
                lines.append(f"{op:5} {payload:5} {mppe or '-':14} compiled/reference "
                             f"{c / by[(op, payload, mppe, 'reference')]:7.1f}x   memcpy/compiled "
                             f"{by[(op, payload, mppe, 'memcpy')] / c:6.2f}x")
    return lines


def run_dataplane_bench(json: bool = False) -> int:
    try:
        result = collect()
    except ImportError as exc:
        print(f"fastpptp bench dataplane: {exc}", file=sys.stderr)
        return 1
    if json:
        print(_json.dumps(result))
        return 0
    print(f"{'op':6}{'payload':>8}  {'mppe':15}{'impl':10}{'packets/s':>14}")
    for r in result["rows"]:
        print(f"{r['op']:6}{r['payload']:8}  {r['mppe'] or '-':15}{r['impl']:10}{r['pps']:14,.0f}")
    print()
    for line in _ratios(result):
        print(line)
    print()
    for s in result["sessions"]:
        print(f"{s['op']} 512 B with {s['sessions']:6} sessions: {s['pps']:14,.0f} packets/s")
    print()
    print("rate limiter (packets/s, median of interleaved rounds; off = compiled out):")
    print(f"{'op':6}{'payload':>8}{'off':>14}{'unlimited':>14}{'limited':>14}"
          f"{'unl/off':>9}{'lim/off':>9}{'spread':>8}")
    for r in result["rate_limit"]:
        print(f"{r['op']:6}{r['payload']:8}{r['off']:14,.0f}{r['unlimited']:14,.0f}"
              f"{r['limited']:14,.0f}{r['unlimited_vs_off']:+9.1%}{r['limited_vs_off']:+9.1%}"
              f"{r['spread_off']:8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(run_dataplane_bench(json="--json" in sys.argv[1:]))
