"""Network-namespace rig for integration tests (and the tunnel benchmark).

    with two_namespaces() as rig:          # ns A 192.0.2.1/24 <-veth-> ns B 192.0.2.2/24
        p = rig.spawn(rig.a, ["iperf3", "-s", "-1"])
        wait_for(lambda: port_open(...), timeout=5)
        rig.run(rig.b, ["ping", "-c", "1", rig.addr_a])
        with netem(rig.a, rig.veth_a, loss=2, reorder=10, delay_ms=1): ...

Everything the rig makes is named with the pid (and a counter) so parallel runs never meet;
processes it starts are killed by PID and namespaces removed on exit, also when the body
raises.  Namespaces and links are made with fastpptp.net.netlink (the product's own code);
`tc` is run as a subprocess (tests only).  Traffic never leaves the two namespaces: the veth
pair lives entirely inside them and nothing is routed from the root namespace.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from fastpptp.net import netlink, netns

T = TypeVar("T")

ADDR_A = "192.0.2.1"
ADDR_B = "192.0.2.2"
PREFIX = 24

_counter = itertools.count()


def unique_suffix() -> str:
    """pid + a per-process counter: unique on this machine while we run."""
    return f"{os.getpid()}{next(_counter)}"


def wait_for(cond: Callable[[], T], timeout: float, interval: float = 0.02,
             what: str = "condition") -> T:
    """Poll ``cond`` until it returns something truthy (returned); TimeoutError after
    ``timeout`` seconds.  Bounded in time and, through ``interval``, in count."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def kill_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 5.0) -> int:
    """Signal ``proc`` by its PID, wait up to ``grace`` s, then SIGKILL; returns the status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    return proc.returncode


def ns_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """argv run inside ``ns`` (``ip netns exec`` execs, so the PID is the command's)."""
    return ["ip", "netns", "exec", ns, *argv]


def run_in(ns: str, argv: Sequence[str], timeout: float = 30, check: bool = True,
           **kw) -> subprocess.CompletedProcess:
    """Run ``argv`` inside ``ns`` to completion (bounded by ``timeout``), capturing output."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(ns_argv(ns, argv), timeout=timeout, check=check, **kw)


@dataclass
class NsPair:
    """Two namespaces joined by one veth pair."""

    a: str
    b: str
    veth_a: str
    veth_b: str
    addr_a: str = ADDR_A
    addr_b: str = ADDR_B
    procs: list[subprocess.Popen] = field(default_factory=list)

    def spawn(self, ns: str, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start ``argv`` inside ``ns``; it is killed by PID when the rig closes."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(ns_argv(ns, argv), **kw)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30, check: bool = True,
            **kw) -> subprocess.CompletedProcess:
        return run_in(ns, argv, timeout=timeout, check=check, **kw)

    def peer_of(self, ns: str) -> str:
        return self.addr_b if ns == self.a else self.addr_a

    def kill_all(self) -> None:
        for proc in reversed(self.procs):
            kill_process(proc)
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()
        self.procs.clear()


@contextlib.contextmanager
def namespace(prefix: str = "fpt") -> Iterator[str]:
    """One fresh namespace with ``lo`` up, removed on exit."""
    name = f"{prefix}{unique_suffix()}"
    netns.create(name)
    try:
        netlink.set_link_up("lo", netns=name)
        yield name
    finally:
        netns.remove(name, missing_ok=True)


@contextlib.contextmanager
def two_namespaces(mtu: int | None = None, prefix: str = "fpt") -> Iterator[NsPair]:
    """Namespaces A and B, veth between them (A 192.0.2.1/24, B 192.0.2.2/24), lo up.

    Always cleaned up: processes killed by PID, then both namespaces removed (which destroys
    the veth pair with them)."""
    sfx = unique_suffix()
    a, b = f"{prefix}a{sfx}", f"{prefix}b{sfx}"
    # interface names are at most 15 bytes: keep the tail of the suffix
    va, vb = f"va{sfx[-12:]}", f"vb{sfx[-12:]}"
    created: list[str] = []
    rig = NsPair(a, b, va, vb)
    try:
        for ns in (a, b):
            netns.create(ns)
            created.append(ns)
            netlink.set_link_up("lo", netns=ns)
        netlink.create_veth(va, vb, netns=a, peer_netns=b, mtu=mtu)
        netlink.add_address(va, f"{ADDR_A}/{PREFIX}", netns=a)
        netlink.add_address(vb, f"{ADDR_B}/{PREFIX}", netns=b)
        netlink.set_link_up(va, netns=a)
        netlink.set_link_up(vb, netns=b)
        yield rig
    finally:
        try:
            rig.kill_all()
        finally:
            for ns in created:
                with contextlib.suppress(Exception):
                    netlink.delete_link(va if ns == a else vb, netns=ns, missing_ok=True)
                netns.remove(ns, missing_ok=True)


def tc_available() -> bool:
    return shutil.which("tc") is not None


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
