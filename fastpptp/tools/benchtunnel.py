"""`fastpptp bench tunnel`: iperf3 through veth, fastpptp and OpenVPN, in one run.

    python3 -m fastpptp.tools.benchtunnel [--json] [--time 5] [--skip-openvpn] [--only NAME,...]

1. make two namespaces joined by a veth pair (192.0.2.1/24 <-> 192.0.2.2/24), lo up
   (fastpptp.tools.netrig); nothing is routed to or from the root namespace; each test gets
   a fresh one-shot ``iperf3 -s -1`` in B (an errored test is retried once);
2. for each path: bring the tunnel up, run iperf3 from A to B's tunnel address — TCP 1 stream,
   TCP 4 streams (-P 4), UDP with 1400-byte IP datagrams (-u -b 0 -l 1372) — each ``-t T``,
   then take the tunnel down:
   * ``veth``: no tunnel, the ceiling;
   * ``fastpptp``: ``python3 -m fastpptp.tools.statictunnel`` in each namespace (compiled engine,
     no MPPE), TUN MTU 1400;
   * ``fastpptp-mppe128``: the same with stateless MPPE-128;
   * ``openvpn``: OpenVPN 2.6 p2p over UDP, no crypto (``--cipher none --data-ciphers none
     --auth none --disable-dco``), tun devices, ``--tun-mtu 1400``;
3. with ``--rounds N`` all of it N times, paths interleaved, keeping each test's median;
4. report Gbit/s (receiver side) and the ratios to veth and to OpenVPN; ``--json`` prints one
   JSON document instead of the table, with each tunnel process's CPU use per test
   (``cpu_a``/``cpu_b``, percent of one CPU, over the iperf3 run including its set-up).

iperf3 and openvpn are Debian packages: when missing and we are root with apt-get, they are
installed (``apt-get update`` first); otherwise the paths that need them are reported as
skipped with the reason.  Every subprocess is bounded in time and killed by PID; both
namespaces are removed at the end, also on errors and Ctrl-C.
"""
from __future__ import annotations

import argparse
import contextlib
import json as jsonlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from ..net import netns
from . import statictunnel
from .netrig import ADDR_A, ADDR_B, NsPair, two_namespaces

TUN_A, TUN_B = "198.51.100.1", "198.51.100.2"
OVPN_A, OVPN_B = "203.0.113.1", "203.0.113.2"
TUN_MTU = 1400
UDP_LEN = TUN_MTU - 28  # UDP payload that makes a 1400-byte IPv4 datagram
MPPE_KEY = "000102030405060708090a0b0c0d0e0f"
TESTS = ("tcp1", "tcp4", "udp1400")
PATHS = ("veth", "fastpptp", "fastpptp-mppe128", "openvpn")
TARGET_RATIO = 2.0  # tracker: >= 2x OpenVPN single-stream TCP without MPPE
PKGS = {"iperf3": "iperf3", "openvpn": "openvpn"}
# the directory holding the fastpptp package, for the tunnels' PYTHONPATH
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _log(msg: str) -> None:
    print(f"bench-tunnel: {msg}", file=sys.stderr, flush=True)


def ensure_tools(names: list[str]) -> dict[str, str]:
    """Install missing Debian packages when we can; return {tool: why it is missing}."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        pkgs = sorted({PKGS[n] for n in missing})
        _log(f"installing {' '.join(pkgs)} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=300,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], env=env, check=True,
                           timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (subprocess.SubprocessError, OSError) as exc:
            _log(f"apt-get failed: {exc}")
    why = {}
    for n in names:
        if shutil.which(n) is None:
            why[n] = (f"{n} is not installed (Debian package {PKGS[n]}; "
                      + ("apt-get install failed)" if os.geteuid() == 0 else "run as root to install)"))
    return why


# --------------------------------------------------------------------------- namespaces


def _wait_reachable(pair: NsPair, addr: str, timeout: float) -> bool:
    """Until ``addr`` answers from A (bounded): a TCP connect to a closed port comes back as
    a RST (ECONNREFUSED) once the path carries packets both ways; iperf3's port is left
    alone so its server never sees a stray control connection."""
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = netns.open_socket(pair.a, socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((addr, 9))
            return True
        except ConnectionRefusedError:
            return True
        except OSError:
            time.sleep(0.1)
        finally:
            s.close()
    return False


# --------------------------------------------------------------------------- tunnels


@contextlib.contextmanager
def no_tunnel(pair: NsPair, tmp: str) -> Iterator[dict]:
    yield {"target": ADDR_B}


@contextlib.contextmanager
def fastpptp_tunnel(pair: NsPair, tmp: str, mppe: bool) -> Iterator[dict]:
    info: dict = {"target": TUN_B}
    env = dict(os.environ, PYTHONPATH=ROOT)
    ends = [(pair.a, ADDR_A, ADDR_B, 0x100, 0x200, TUN_A, TUN_B, "a"),
            (pair.b, ADDR_B, ADDR_A, 0x200, 0x100, TUN_B, TUN_A, "b")]
    procs = []
    for ns, local, peer, cid, pcid, ta, tp, side in ends:
        argv = statictunnel.command(local=local, peer=peer, call_id=cid, peer_call_id=pcid,
                                    tun_addr=ta, tun_peer=tp, mtu=TUN_MTU,
                                    mppe_key=MPPE_KEY if mppe else None,
                                    stats_json=os.path.join(tmp, f"st-{side}.json"))
        procs.append((pair.spawn(ns, argv, env=env), os.path.join(tmp, f"st-{side}.json"), side))
    try:
        for p, _, _ in procs:
            statictunnel.wait_ready(p, timeout=15)
        info["pids"] = {side: p.pid for p, _, side in procs}
        yield info
    finally:
        for p, path, side in procs:
            try:
                doc = statictunnel.stop(p, path)
                info[f"counters_{side}"] = doc["session"]
                info["offload"] = bool(doc.get("offload")) and doc.get("vnet_hdr_len", 0) > 0
            except Exception as exc:  # reported, the bench goes on
                info[f"counters_{side}"] = {"error": str(exc)}
            pair.stop(p)


@contextlib.contextmanager
def openvpn_tunnel(pair: NsPair, tmp: str) -> Iterator[dict]:
    common = ["openvpn", "--dev-type", "tun", "--proto", "udp", "--cipher", "none",
              "--data-ciphers", "none", "--auth", "none", "--disable-dco", "--tun-mtu",
              str(TUN_MTU), "--ping", "0", "--verb", "1", "--mute-replay-warnings"]
    procs = [
        pair.spawn(pair.a, common + ["--dev", "ovpna", "--local", ADDR_A, "--remote", ADDR_B,
                                     "--ifconfig", OVPN_A, OVPN_B]),
        pair.spawn(pair.b, common + ["--dev", "ovpnb", "--local", ADDR_B, "--remote", ADDR_A,
                                     "--ifconfig", OVPN_B, OVPN_A]),
    ]
    try:
        yield {"target": OVPN_B, "pids": {"a": procs[0].pid, "b": procs[1].pid}}
    finally:
        for p in procs:
            pair.stop(p)


# --------------------------------------------------------------------------- iperf3


def _iperf_server(pair: NsPair, timeout: float = 5.0) -> subprocess.Popen:
    """A one-test ``iperf3 -s -1`` in B, returned once it listens.  A fresh server per test:
    an iperf3 server whose client died mid-test can stay wedged and fail every later test."""
    import select as _select
    srv = pair.spawn(pair.b, ["iperf3", "-s", "-1", "--forceflush"])
    deadline = time.monotonic() + timeout
    buf = b""
    while b"listening" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or srv.poll() is not None:
            pair.stop(srv)
            raise RuntimeError(f"iperf3 server did not start: {buf[-200:]!r}")
        if _select.select([srv.stdout], [], [], min(left, 0.2))[0]:
            chunk = os.read(srv.stdout.fileno(), 4096)
            if not chunk:
                continue
            buf += chunk
    return srv


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads) from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def iperf(pair: NsPair, target: str, test: str, seconds: int,
          pids: dict[str, int] | None = None) -> dict:
    """One iperf3 test A -> ``target``; with ``pids``, also the CPU each of those tunnel
    processes used meanwhile (percent of one CPU, ``cpu_a``/``cpu_b``)."""
    pids = pids or {}
    before = {k: _cpu_seconds(v) for k, v in pids.items()}
    t0 = time.monotonic()
    out = _iperf(pair, target, test, seconds)
    wall = time.monotonic() - t0
    for k, v in pids.items():
        after = _cpu_seconds(v)
        if after is not None and before[k] is not None and wall > 0:
            out[f"cpu_{k}"] = round(100 * (after - before[k]) / wall, 1)
    return out


def _iperf(pair: NsPair, target: str, test: str, seconds: int) -> dict:
    argv = ["iperf3", "-c", target, "-t", str(seconds), "-J", "--connect-timeout", "3000"]
    if test == "tcp4":
        argv += ["-P", "4"]
    elif test == "udp1400":
        argv += ["-u", "-b", "0", "-l", str(UDP_LEN), "-w", "4M"]
    srv = _iperf_server(pair)
    try:
        r = pair.run(pair.a, argv, timeout=seconds + 20, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"iperf3 client timed out after {seconds + 20}s"}
    finally:
        pair.stop(srv)
    try:
        doc = jsonlib.loads(r.stdout)
    except ValueError:
        return {"error": (r.stderr or r.stdout).strip()[:300] or f"iperf3 rc={r.returncode}"}
    if "error" in doc:
        return {"error": doc["error"]}
    end = doc.get("end", {})
    recv = end.get("sum_received") or end.get("sum") or {}
    out = {"gbps": recv.get("bits_per_second", 0.0) / 1e9}
    if test == "udp1400":
        out["lost_percent"] = recv.get("lost_percent")
        out["sent_gbps"] = (end.get("sum_sent") or {}).get("bits_per_second", 0.0) / 1e9
    else:
        out["retransmits"] = (end.get("sum_sent") or {}).get("retransmits")
    return out


def run_bench(seconds: int = 5, paths: tuple[str, ...] = PATHS, rounds: int = 1) -> dict:
    """Measure every path ``rounds`` times (paths interleaved, so a busy moment on the
    machine hits all of them alike) and keep the median run of each test."""
    missing = ensure_tools(["iperf3", "openvpn"] if "openvpn" in paths else ["iperf3"])
    result: dict = {"seconds": seconds, "rounds": rounds, "tun_mtu": TUN_MTU,
                    "udp_payload": UDP_LEN, "cpus": os.cpu_count(), "paths": {},
                    "skipped": {}}
    if "iperf3" in missing:
        result["skipped"] = {p: missing["iperf3"] for p in paths}
        return result
    runs: dict[str, dict[str, list[dict]]] = {}
    counters: dict[str, dict] = {}
    with two_namespaces(prefix="fpbench-") as pair, tempfile.TemporaryDirectory(prefix="fpbench") as tmp:
        for rnd in range(rounds):
            for path in paths:
                if path in result["skipped"]:
                    continue
                if path == "openvpn" and "openvpn" in missing:
                    result["skipped"][path] = missing["openvpn"]
                    continue
                if path == "veth":
                    cm = no_tunnel(pair, tmp)
                elif path.startswith("fastpptp"):
                    cm = fastpptp_tunnel(pair, tmp, mppe=path.endswith("mppe128"))
                else:
                    cm = openvpn_tunnel(pair, tmp)
                _log(f"round {rnd + 1}/{rounds} {path}: starting")
                try:
                    with cm as info:
                        if not _wait_reachable(pair, info["target"], 15):
                            raise RuntimeError(f"{info['target']} unreachable through {path}")
                        for test in TESTS:
                            pids = info.get("pids")
                            m = iperf(pair, info["target"], test, seconds, pids)
                            if "error" in m:  # one retry: a busy machine, a wedged iperf3
                                _log(f"{path} {test}: {m['error']}; retrying")
                                m = iperf(pair, info["target"], test, seconds, pids)
                            runs.setdefault(path, {}).setdefault(test, []).append(m)
                            _log(f"{path} {test}: {m}")
                            time.sleep(0.3)
                    counters[path] = {k: v for k, v in info.items()
                                      if k.startswith("counters") or k == "offload"}
                except Exception as exc:
                    result["skipped"][path] = f"{type(exc).__name__}: {exc}"
    for path, tests in runs.items():
        entry: dict = {}
        for test, ms in tests.items():
            good = sorted((m for m in ms if "gbps" in m), key=lambda m: m["gbps"])
            if good:
                entry[test] = dict(good[len(good) // 2], samples=[m["gbps"] for m in ms
                                                                   if "gbps" in m])
            else:
                entry[test] = ms[-1]
        entry.update(counters.get(path, {}))
        result["paths"][path] = entry
    _ratios(result)
    return result


def _gbps(result: dict, path: str, test: str) -> float | None:
    v = result["paths"].get(path, {}).get(test, {})
    return v.get("gbps") if isinstance(v, dict) and "error" not in v else None


def _ratios(result: dict) -> None:
    ratios: dict = {}
    for path in result["paths"]:
        for test in TESTS:
            g = _gbps(result, path, test)
            if g is None:
                continue
            for base in ("veth", "openvpn"):
                b = _gbps(result, base, test)
                if b and path != base:
                    ratios.setdefault(path, {}).setdefault(test, {})[f"vs_{base}"] = g / b
    result["ratios"] = ratios
    ours, ovpn = _gbps(result, "fastpptp", "tcp1"), _gbps(result, "openvpn", "tcp1")
    result["target"] = {
        "what": "fastpptp (no MPPE) single-stream TCP >= 2x OpenVPN",
        "ratio": (ours / ovpn) if ours and ovpn else None,
        "met": bool(ours and ovpn and ours >= TARGET_RATIO * ovpn),
    }


def format_table(result: dict) -> str:
    lines = [f"iperf3 A -> B, {result['seconds']} s per test, median of {result['rounds']} "
             f"round(s), tunnel MTU {result['tun_mtu']}, {result['cpus']} CPUs "
             f"(Gbit/s at the receiver; x veth / x OpenVPN)"]
    lines.append(f"{'path':18}" + "".join(f"{t:>26}" for t in TESTS))
    for path in sorted(result["paths"], key=lambda p: PATHS.index(p) if p in PATHS else 99):
        entry = result["paths"][path]
        cells = []
        for test in TESTS:
            v = entry.get(test, {})
            if "gbps" not in v:
                cells.append(f"{'error':>26}")
                continue
            r = result["ratios"].get(path, {}).get(test, {})
            rv = f"{r['vs_veth']:.2f}" if "vs_veth" in r else "-"
            ro = f"{r['vs_openvpn']:.2f}" if "vs_openvpn" in r else "-"
            cells.append(f"{v['gbps']:8.3f} ({rv:>5} /{ro:>5})".rjust(26))
        lines.append(f"{path:18}" + "".join(cells))
    for path in ("fastpptp", "fastpptp-mppe128"):
        if "offload" in result["paths"].get(path, {}):
            on = result["paths"][path]["offload"]
            lines.append(f"{path}: TUN virtio_net_hdr offloads (TSO/GRO) "
                         f"{'on' if on else 'off (the engine does not parse vnet headers)'}")
    for path, why in result["skipped"].items():
        lines.append(f"skipped {path}: {why}")
    t = result.get("target", {})
    if t.get("ratio") is not None:
        lines.append(f"target {t['what']}: {t['ratio']:.2f}x -> {'MET' if t['met'] else 'NOT MET'}")
    return "\n".join(lines)


def run_tunnel_bench(json: bool = False, seconds: int = 5,
                     paths: tuple[str, ...] = PATHS, rounds: int = 1) -> int:
    """Entry point of `fastpptp bench tunnel`; returns the exit status."""
    if os.geteuid() != 0:
        print("bench tunnel: needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    result = run_bench(seconds, paths, rounds)
    if json:
        print(jsonlib.dumps(result, indent=1, sort_keys=True))
    else:
        print(format_table(result))
    return 0 if result["paths"] else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m fastpptp.tools.benchtunnel", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--time", type=int, default=5, help="seconds per iperf3 test (1..60)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure each path N times, interleaved; report the median (1..9)")
    p.add_argument("--only", help=f"comma list of paths out of {','.join(PATHS)}")
    args = p.parse_args(argv)
    if not 1 <= args.time <= 60:
        p.error("--time must be 1..60")
    if not 1 <= args.rounds <= 9:
        p.error("--rounds must be 1..9")
    paths = PATHS
    if args.only:
        paths = tuple(x for x in args.only.split(",") if x)
        bad = set(paths) - set(PATHS)
        if bad:
            p.error(f"unknown path(s): {', '.join(sorted(bad))}")
    return run_tunnel_bench(json=args.json, seconds=args.time, paths=paths, rounds=args.rounds)


if __name__ == "__main__":
    sys.exit(main())
