"""The tests' network-namespace rig: fastpptp.tools.netrig (two namespaces, veth, processes
stopped by PID, cleanup) plus what only tests need: tc netem, and an impairing bridge.

    with two_namespaces() as rig:          # ns A 192.0.2.1/24 <-veth-> ns B 192.0.2.2/24
        p = rig.spawn(rig.a, ["iperf3", "-s", "-1"])
        wait_for(lambda: port_open(...), timeout=5)
        rig.run(rig.b, ["ping", "-c", "1", rig.addr_a])
        with netem(rig.a, rig.veth_a, loss=2, reorder=10, delay_ms=1): ...  # if netem_supported()
    with impaired_namespaces(Impairment(loss=2, duplicate=1, reorder=10), tmpdir) as rig:
        ...   # A <-> user-space impairing bridge in a 3rd namespace <-> B; rig.relay counts

Names, addresses and cleanup are netrig's (see there): everything named with the pid and a
counter, processes killed by PID and namespaces removed on exit, also when the body raises.
`tc` is run as a subprocess (tests only).  Traffic never leaves the namespaces the rig makes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from fastpptp.net import netlink
from fastpptp.tools.netrig import (ADDR_A, ADDR_B, PREFIX, NsPair, kill_process, namespace,
                                   rig_lifetime, run_in, two_namespaces, unique_suffix,
                                   wait_for)

__all__ = ["ADDR_A", "ADDR_B", "PREFIX", "ImpairedPair", "Impairment", "NsPair", "Relay",
           "impaired_namespaces", "kill_process", "namespace", "netem", "netem_stats",
           "netem_supported", "run_in", "tc_available", "two_namespaces", "unique_suffix",
           "wait_for"]


def tc_available() -> bool:
    return shutil.which("tc") is not None


_netem_probe: bool | None = None


def netem_supported() -> bool:
    """Whether this kernel has sch_netem (probed once in a scratch namespace).  The
    development and CI kernels do not; the impairment tests use impaired_namespaces()."""
    global _netem_probe
    if _netem_probe is None:
        if not tc_available():
            _netem_probe = False
        else:
            with namespace("fptq") as ns:
                netlink.create_veth("nq0", "nq1", netns=ns)
                r = run_in(ns, ["tc", "qdisc", "add", "dev", "nq0", "root", "netem", "loss",
                                "1%"], timeout=10, check=False)
                _netem_probe = r.returncode == 0
    return _netem_probe


@contextlib.contextmanager
def netem(ns: str, dev: str, *, loss: float | None = None, reorder: float | None = None,
          duplicate: float | None = None, delay_ms: float | None = None,
          limit: int = 100000, seed: int | None = None) -> Iterator[list[str]]:
    """``tc qdisc add dev DEV root netem ...`` inside ``ns``; removed on exit.

    Percentages as numbers (2 means 2%).  netem only reorders delayed packets: with
    ``reorder`` and no ``delay_ms``, 1 ms is used (the reordered ones go out at once)."""
    args = ["limit", str(limit)]
    if reorder and not delay_ms:
        delay_ms = 1
    if delay_ms:
        args += ["delay", f"{delay_ms}ms"]
    if loss:
        args += ["loss", f"{loss}%"]
    if duplicate:
        args += ["duplicate", f"{duplicate}%"]
    if reorder:
        args += ["reorder", f"{reorder}%"]
    if seed is not None:
        args += ["seed", str(seed)]
    run_in(ns, ["tc", "qdisc", "add", "dev", dev, "root", "netem", *args], timeout=10)
    try:
        yield args
    finally:
        run_in(ns, ["tc", "qdisc", "del", "dev", dev, "root"], timeout=10, check=False)


def netem_stats(ns: str, dev: str) -> str:
    """``tc -s qdisc show dev DEV`` (for failure messages)."""
    return run_in(ns, ["tc", "-s", "qdisc", "show", "dev", dev], timeout=10, check=False).stdout


# ------------------------------------------------------------------------------ impairment
#
# This kernel may lack sch_netem ("Specified qdisc kind is unknown"), and netem's own counts
# are not per GRE data packet anyway.  The impaired rig therefore puts a third namespace M
# between A and B and bridges it in user space: AF_PACKET on both veth ends in M, every frame
# forwarded, and A->B GRE packets that carry a sequence number (S=1, RFC 2637 §4.1) dropped,
# duplicated or held back behind the next 1-3 packets with a seeded RNG.  It counts exactly
# what it did, so the test can hold the engine's counters against the truth.

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


@dataclass
class Impairment:
    loss: float = 0.0  # percent of A->B GRE data packets dropped
    duplicate: float = 0.0  # percent sent twice
    reorder: float = 0.0  # percent held back behind the next 1-3 packets
    seed: int = 2637


def _is_gre_data(frame: bytes) -> bool:
    """Ethernet + IPv4 + protocol 47 + GRE with the S (sequence present) bit."""
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
        return False
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 47 or len(frame) < 14 + ihl + 8:
        return False
    return bool(frame[14 + ihl] & 0x10)


def relay_main(argv: list[str]) -> int:
    """`python3 tests/netnsrig.py relay ...`: the bridge in M (see above)."""
    import argparse
    import json
    import random
    import select
    import socket

    p = argparse.ArgumentParser()
    p.add_argument("--a-dev", required=True)
    p.add_argument("--b-dev", required=True)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--duplicate", type=float, default=0.0)
    p.add_argument("--reorder", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=2637)
    p.add_argument("--stats", required=True)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    st = {"a_to_b": 0, "b_to_a": 0, "gre_data": 0, "dropped": 0, "duplicated": 0,
          "held": 0, "send_errors": 0, "snapshot": 0, "final": False,
          "input_drops_a": 0, "input_drops_b": 0}
    flags = {"stop": False, "dump": False}

    def on_signal(signum, _f):
        flags["dump" if signum == signal.SIGUSR1 else "stop"] = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, on_signal)

    def count_input_drops():
        # PACKET_STATISTICS (struct tpacket_stats {tp_packets, tp_drops}; reading resets it):
        # frames the kernel dropped because this Python relay fell behind.  On a loaded
        # machine that happens, and those packets are as lost to the engine as our drops.
        for side, sock in socks.items():
            raw = sock.getsockopt(263, 6, 8)   # SOL_PACKET, PACKET_STATISTICS
            st[f"input_drops_{side}"] += int.from_bytes(raw[4:8], sys.byteorder)

    def dump():
        count_input_drops()
        tmp = args.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, args.stats)

    socks = {}
    for side, dev in (("a", args.a_dev), ("b", args.b_dev)):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((dev, 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
        socks[side] = s
    by_fd = {s.fileno(): side for side, s in socks.items()}
    held: list[list] = []  # [remaining packets to wait, frame]
    p_loss, p_dup, p_reo = args.loss / 100, args.duplicate / 100, args.reorder / 100

    def send(s, frame):
        try:
            s.send(frame)
        except OSError:
            st["send_errors"] += 1

    print("READY", flush=True)
    while not flags["stop"]:
        if flags["dump"]:
            flags["dump"] = False
            st["snapshot"] += 1
            dump()
        try:
            ready, _, _ = select.select(list(by_fd), [], [], 0.002 if held else 0.2)
        except InterruptedError:
            continue
        if not ready and held:  # idle: let held packets go rather than strand them
            for _, frame in held:
                send(socks["b"], frame)
            held.clear()
        for fd in ready:
            side = by_fd[fd]
            src = socks[side]
            dst = socks["b" if side == "a" else "a"]
            for _ in range(256):
                try:
                    frame, addr = src.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own transmissions on this device
                if side == "b":
                    st["b_to_a"] += 1
                    send(dst, frame)
                    continue
                st["a_to_b"] += 1
                if not _is_gre_data(frame):
                    send(dst, frame)
                    continue
                st["gre_data"] += 1
                r = rng.random()
                if r < p_loss:
                    st["dropped"] += 1
                    continue
                if r < p_loss + p_dup:
                    st["duplicated"] += 1
                    send(dst, frame)
                    send(dst, frame)
                elif r < p_loss + p_dup + p_reo:
                    st["held"] += 1
                    held.append([rng.randint(1, 3), frame])
                    continue
                else:
                    send(dst, frame)
                # a held packet goes out behind the next 1-3 forwarded ones
                for h in held:
                    h[0] -= 1
                due = [h for h in held if h[0] <= 0]
                if due:
                    held[:] = [h for h in held if h[0] > 0]
                    for _, f in due:
                        send(dst, f)
    for _, frame in held:
        send(socks["b"], frame)
    st["final"] = True
    dump()
    return 0


@dataclass
class Relay:
    proc: subprocess.Popen
    stats_path: str

    def snapshot(self, timeout: float = 5.0) -> dict:
        import json
        before = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            with open(self.stats_path) as f:
                before = json.load(f)["snapshot"]
        os.kill(self.proc.pid, signal.SIGUSR1)

        def read():
            with contextlib.suppress(FileNotFoundError, ValueError):
                with open(self.stats_path) as f:
                    doc = json.load(f)
                if doc["snapshot"] > before:
                    return doc
            return None

        return wait_for(read, timeout, what="relay counters snapshot")


@dataclass
class ImpairedPair(NsPair):
    relay: Relay | None = None


@contextlib.contextmanager
def impaired_namespaces(imp: Impairment, stats_dir: str, prefix: str = "fpt") -> Iterator[ImpairedPair]:
    """A and B as in two_namespaces(), but joined through a user-space bridge in a third
    namespace M that impairs A->B GRE data packets as ``imp`` says.  The pair's ``relay``
    attribute gives its counters."""
    sfx = unique_suffix()
    a, m, b = f"{prefix}a{sfx}", f"{prefix}m{sfx}", f"{prefix}b{sfx}"
    tail = sfx[-11:]
    va, ma, vb, mb = f"va{tail}", f"ma{tail}", f"vb{tail}", f"mb{tail}"
    rig = ImpairedPair(a, b, va, vb)
    with rig_lifetime(rig, m):
        netlink.create_veth(ma, va, netns=m, peer_netns=a)
        netlink.create_veth(mb, vb, netns=m, peer_netns=b)
        netlink.add_address(va, f"{ADDR_A}/{PREFIX}", netns=a)
        netlink.add_address(vb, f"{ADDR_B}/{PREFIX}", netns=b)
        for ns, dev in ((a, va), (b, vb), (m, ma), (m, mb)):
            netlink.set_link_up(dev, netns=ns)
        stats = os.path.join(stats_dir, "relay.json")
        # the relay runs this file as a script: it needs the repository (fastpptp) on its path
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=repo)
        proc = rig.spawn(m, [sys.executable, os.path.abspath(__file__), "relay", "--a-dev", ma,
                             "--b-dev", mb, "--loss", str(imp.loss), "--duplicate",
                             str(imp.duplicate), "--reorder", str(imp.reorder), "--seed",
                             str(imp.seed), "--stats", stats], env=env)
        line = proc.stdout.readline()
        if line.strip() != b"READY":
            raise RuntimeError(f"relay did not start: {line!r} {proc.stderr.read()!r}")
        rig.relay = Relay(proc, stats)
        yield rig


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        sys.exit(relay_main(sys.argv[2:]))
    print("usage: netnsrig.py relay --a-dev DEV --b-dev DEV [--loss P] ... --stats FILE",
          file=sys.stderr)
    sys.exit(2)
