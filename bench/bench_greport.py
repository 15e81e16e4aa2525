"""Micro-benchmark of the GRE transport alone: GrePort sender -> GrePort receiver across a veth.

    sudo .venv/bin/python bench/bench_greport.py                   # raw:raw xdp:xdp raw:xdp xdp:raw
    sudo .venv/bin/python bench/bench_greport.py --pairs xdp:xdp,raw:raw --count 500000 --json

Each pair runs a sender in namespace A (198.51.100.1) and a receiver in B (198.51.100.2), two
processes pinned to different CPUs when there are two, each driving its port through the four
nogil methods the engine uses (fastpptp._greport.port_blast / port_sink: tx_add x tx_cap +
tx_flush; epoll + rx_burst + rx_release).  Frames are PPTP GRE v1 of ``--size`` bytes (GRE
header + payload).  Reported per pair: packets/s sent and received, loss, and CPU per packet
(user + system of each process over its loop, from getrusage; the kernel's softirq work for
the veth runs mostly in the sender's context and is charged there).  Machine-wide softirq
seconds over the run are given too (other load on the machine shows up there).

Bounded: ``--count`` packets and ``--seconds`` per pair; the rig (namespaces, processes by PID)
is always cleaned up.  ``run_pair()`` / ``run()`` are the functions an integrator calls.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

ADDR_A = "198.51.100.1"
ADDR_B = "198.51.100.2"
PAIRS = ("raw:raw", "xdp:xdp", "raw:xdp", "xdp:raw")


def gre_frame(size: int) -> bytes:
    """PPTP GRE v1 (K=1, S=1, protocol 0x880B, RFC 2637 §4.1) of ``size`` bytes in all."""
    payload = b"\xff\x03\x00\x21" + b"\xa5" * max(0, size - 16)
    return struct.pack("!HHHHI", 0x3001, 0x880B, len(payload), 0x4242, 1) + payload


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _softirq_s() -> float:
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[7]) / os.sysconf("SC_CLK_TCK")


def _open_port(mode: str, dev: str, local: str, batch: int, frames: int, xdp_mode: str) -> Any:
    from fastpptp._greport import RawPort
    from fastpptp.net.rawgre import open_gre_socket
    raw = open_gre_socket()
    if mode == "raw":
        port = RawPort(raw, batch)
    else:
        from fastpptp.net.xdpport import open_xdp_port
        port = open_xdp_port(dev, [local], raw, batch, frames=frames or None, mode=xdp_mode)
    return port, raw


def worker(argv: list[str]) -> int:
    """One side, inside its namespace: prints "ready" once the port is open, then one JSON
    line with the results."""
    from fastpptp._greport import port_blast, port_sink
    p = argparse.ArgumentParser()
    p.add_argument("--role", choices=("send", "recv"), required=True)
    p.add_argument("--mode", choices=("raw", "xdp"), required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--cpu", type=int, default=-1)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--size", type=int, default=1400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--peer-mac", default="")
    p.add_argument("--frames", type=int, default=0)
    p.add_argument("--xdp-mode", default="auto")
    a = p.parse_args(argv)
    if a.cpu >= 0:
        os.sched_setaffinity(0, {a.cpu})
    local, peer = (ADDR_A, ADDR_B) if a.role == "send" else (ADDR_B, ADDR_A)
    port, raw = _open_port(a.mode, a.dev, local, a.batch, a.frames, a.xdp_mode)
    try:
        if a.role == "send" and a.mode == "xdp":
            port.set_nexthop(peer, bytes.fromhex(a.peer_mac))
        print("ready", flush=True)
        if a.role == "recv":
            c0 = _cpu()
            got = port_sink(port, a.count, a.seconds + 5, idle=1.0)
            cpu = _cpu() - c0
            out = {"packets": got["received"], "bytes": got["bytes"], "seconds": got["wall"],
                   "cpu_s": cpu}
        else:
            sys.stdin.readline()          # "go": the receiver is ready
            c0 = _cpu()
            sent = port_blast(port, gre_frame(a.size), peer, a.count, a.seconds)
            cpu = _cpu() - c0
            out = {"packets": sent["offered"], "seconds": sent["wall"], "cpu_s": cpu}
        out["counters"] = port.counters()
        out["port"] = port.describe()
        print(json.dumps(out), flush=True)
    finally:
        port.close()
        raw.close()
    return 0


def _mac(ns: str, dev: str) -> str:
    from fastpptp.net import netns
    from fastpptp.net.xdpport import link_facts
    with netns.entered(ns):
        return link_facts(dev).mac.hex()


def run_pair(send_mode: str, recv_mode: str, *, count: int = 200_000, seconds: float = 5.0,
             size: int = 1400, batch: int = 64, frames: int = 0,
             xdp_mode: str = "auto") -> dict[str, Any]:
    """One sender -> receiver run in fresh namespaces; the result dict (see module doc)."""
    from fastpptp.net import netlink
    from fastpptp.tools.netrig import NsPair, kill_process, rig_lifetime, unique_suffix

    sfx = unique_suffix()
    rig = NsPair(f"xdpbena{sfx}", f"xdpbenb{sfx}", f"ba{sfx[-12:]}", f"bb{sfx[-12:]}",
                 addr_a=ADDR_A, addr_b=ADDR_B, grace=3.0)
    cpus = sorted(os.sched_getaffinity(0))
    cpu_s, cpu_r = (cpus[0], cpus[1]) if len(cpus) >= 2 else (-1, -1)
    common = ["--count", str(count), "--seconds", str(seconds), "--size", str(size),
              "--batch", str(batch), "--frames", str(frames), "--xdp-mode", xdp_mode]
    me = [sys.executable, os.path.abspath(__file__), "worker"]
    with rig_lifetime(rig):
        netlink.create_veth(rig.veth_a, rig.veth_b, netns=rig.a, peer_netns=rig.b)
        netlink.add_address(rig.veth_a, f"{ADDR_A}/24", netns=rig.a)
        netlink.add_address(rig.veth_b, f"{ADDR_B}/24", netns=rig.b)
        netlink.set_link_up(rig.veth_a, netns=rig.a)
        netlink.set_link_up(rig.veth_b, netns=rig.b)
        mac_b = _mac(rig.b, rig.veth_b)
        recv = rig.spawn(rig.b, [*me, "--role", "recv", "--mode", recv_mode, "--dev", rig.veth_b,
                                 "--cpu", str(cpu_r), *common],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if recv.stdout.readline().strip() != "ready":
                raise RuntimeError(f"receiver failed: {recv.stderr.read()}")
            send = rig.spawn(rig.a, [*me, "--role", "send", "--mode", send_mode, "--dev",
                                     rig.veth_a, "--cpu", str(cpu_s), "--peer-mac", mac_b, *common],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
            if send.stdout.readline().strip() != "ready":
                raise RuntimeError(f"sender failed: {send.stderr.read()}")
            if send_mode == "raw":
                # prime ARP so the raw sender's first packets are not queued on resolution
                rig.run(rig.a, [sys.executable, "-c",
                                "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                                f"s.sendto(b'x',('{ADDR_B}',9))"], timeout=10)
                time.sleep(0.2)
            irq0 = _softirq_s()
            send.stdin.write("go\n")
            send.stdin.flush()
            s_out, s_err = send.communicate(timeout=seconds + 30)
            r_out, r_err = recv.communicate(timeout=seconds + 30)
            irq = _softirq_s() - irq0
        finally:
            for proc in list(rig.procs):
                if proc.poll() is None:
                    kill_process(proc)
        if send.returncode or recv.returncode:
            raise RuntimeError(f"worker failed: {s_err}{r_err}")
        sr = json.loads(s_out.strip().splitlines()[-1])
        rr = json.loads(r_out.strip().splitlines()[-1])
    sent, got = sr["packets"], rr["packets"]
    return {
        "pair": f"{send_mode}:{recv_mode}", "size": size, "batch": batch,
        "sent": sent, "received": got, "loss_pct": 100.0 * (sent - got) / sent if sent else 0.0,
        "send_pps": sent / sr["seconds"] if sr["seconds"] else 0.0,
        "recv_pps": got / rr["seconds"] if rr["seconds"] else 0.0,
        "send_us_per_pkt": 1e6 * sr["cpu_s"] / sent if sent else 0.0,
        "recv_us_per_pkt": 1e6 * rr["cpu_s"] / got if got else 0.0,
        "machine_softirq_s": irq,
        "sender": sr, "receiver": rr,
    }


def run(pairs: tuple[str, ...] | list[str] = PAIRS, **kw: Any) -> list[dict[str, Any]]:
    out = []
    for p in pairs:
        s_mode, r_mode = p.split(":")
        out.append(run_pair(s_mode, r_mode, **kw))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        return worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", default=",".join(PAIRS), help="sender:receiver modes, raw or xdp")
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--size", type=int, default=1400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--frames", type=int, default=0,
                   help="UMEM frames per AF_XDP socket (0: xdpport.default_frames)")
    p.add_argument("--xdp-mode", choices=("auto", "native", "generic"), default="auto")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.count < 1 or a.count > 50_000_000 or a.seconds <= 0 or a.seconds > 120:
        p.error("--count 1..50M, --seconds up to 120")
    results = run(a.pairs.split(","), count=a.count, seconds=a.seconds, size=a.size, batch=a.batch,
                  frames=a.frames, xdp_mode=a.xdp_mode)
    if a.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'sender:receiver':16} {'sent/s':>10} {'recv/s':>10} {'loss':>6} "
          f"{'send us/pkt':>12} {'recv us/pkt':>12} {'softirq s':>10}")
    for r in results:
        print(f"{r['pair']:16} {r['send_pps']:10.0f} {r['recv_pps']:10.0f} {r['loss_pct']:5.1f}% "
              f"{r['send_us_per_pkt']:12.2f} {r['recv_us_per_pkt']:12.2f} "
              f"{r['machine_softirq_s']:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
