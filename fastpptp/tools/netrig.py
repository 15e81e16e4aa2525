"""Two network namespaces joined by a veth pair: the rig of the demo, the tunnel benchmark and
the tests.

    with two_namespaces(prefix="fpbench-") as rig:  # A 192.0.2.1/24 <-veth-> B 192.0.2.2/24
        srv = rig.spawn(rig.b, ["iperf3", "-s", "-1"])
        r = rig.run(rig.a, ["iperf3", "-c", rig.addr_b, "-J"], timeout=30, check=False)
        rig.stop(srv)

1. Names: namespaces ``{prefix}a{suffix}`` and ``{prefix}b{suffix}``, veth ends ``va…``/``vb…``;
   the suffix is the pid plus a per-process counter, so parallel runs, and several rigs in
   one process, never meet.
2. Each namespace gets ``lo`` up.  The veth pair lives entirely inside the two namespaces
   (made in A, its peer moved to B at once): A 192.0.2.1/24, B 192.0.2.2/24, nothing routed
   to or from the root namespace.
3. Processes started through the rig run inside a namespace (fastpptp.net.netns.popen: the
   child enters it between fork and exec, so the PID is the command's own); the rig keeps
   them and stops them by PID, never by name.
4. On exit, also when the body raises or on Ctrl-C: every process still kept is stopped
   (SIGTERM, ``grace`` seconds, then SIGKILL; newest first), the veth ends are deleted and
   the namespaces removed.

Namespaces and links are made with fastpptp.net (the products' own code); nothing here runs
``ip``.  ``rig_lifetime`` is the set-up/clean-up frame on its own, for other topologies
(the tests' impairing bridge puts a third namespace between A and B).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..net import netlink, netns
from .proc import stop_process

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


def kill_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                 grace: float = 5.0) -> int | None:
    """Signal ``proc`` by its PID, wait up to ``grace`` s, then SIGKILL; returns the status."""
    return stop_process(proc, sig, grace)


def close_pipes(proc: subprocess.Popen[Any]) -> None:
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


def spawn_logged(ns: str, argv: Sequence[str], log_path: str, **kw: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` inside ``ns``, stdout and stderr to ``log_path``, stdin from /dev/null,
    in a session of its own (a Ctrl-C on our terminal reaches us, and we stop it)."""
    with open(log_path, "wb") as logf:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        return netns.popen(ns, list(argv), stdout=logf, stderr=subprocess.STDOUT, **kw)


def run_in(ns: str, argv: Sequence[str], timeout: float = 30, check: bool = True,
           **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``ns`` to completion, output captured as text.

    Bounded by ``timeout`` (then killed by PID and TimeoutExpired raised; so on any other
    exception while waiting); with ``check``, CalledProcessError on a non-zero status."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    kw.setdefault("errors", "replace")
    proc = netns.popen(ns, list(argv), **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_process(proc)
        close_pipes(proc)
        raise
    done = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if check:
        done.check_returncode()
    return done


@dataclass
class NsPair:
    """Two namespaces joined by one veth pair, and the processes started in them."""

    a: str
    b: str
    veth_a: str
    veth_b: str
    addr_a: str = ADDR_A
    addr_b: str = ADDR_B
    grace: float = 5.0  # seconds between SIGTERM and SIGKILL when the rig closes
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def spawn(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``ns`` (pipes for stdout/stderr unless ``kw`` says otherwise);
        it is stopped by PID when the rig closes."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        proc = netns.popen(ns, list(argv), **kw)
        self.procs.append(proc)
        return proc

    def spawn_logged(self, ns: str, argv: Sequence[str], log_path: str,
                     **kw: Any) -> subprocess.Popen[bytes]:
        """spawn_logged() kept by the rig."""
        proc = spawn_logged(ns, argv, log_path, **kw)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30, check: bool = True,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_in(ns, argv, timeout=timeout, check=check, **kw)

    def stop(self, proc: subprocess.Popen[Any], grace: float | None = None) -> int | None:
        """Stop one of ours by PID now (SIGTERM, then SIGKILL), close its pipes, forget it."""
        status = kill_process(proc, grace=self.grace if grace is None else grace)
        close_pipes(proc)
        with contextlib.suppress(ValueError):
            self.procs.remove(proc)
        return status

    def kill_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)

    def peer_of(self, ns: str) -> str:
        return self.addr_b if ns == self.a else self.addr_a


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
def rig_lifetime(rig: NsPair, *more: str) -> Iterator[NsPair]:
    """Create ``rig.a``, ``rig.b`` and the namespaces ``more``, each with ``lo`` up; on exit
    stop the rig's processes by PID, delete its veth ends, remove every namespace made."""
    created: list[str] = []
    try:
        for ns in (rig.a, rig.b, *more):
            netns.create(ns)
            created.append(ns)
            netlink.set_link_up("lo", netns=ns)
        yield rig
    finally:
        try:
            rig.kill_all()
        finally:
            for ns, dev in ((rig.a, rig.veth_a), (rig.b, rig.veth_b)):
                if ns in created:
                    with contextlib.suppress(Exception):
                        netlink.delete_link(dev, netns=ns, missing_ok=True)
            for ns in created:
                netns.remove(ns, missing_ok=True)


@contextlib.contextmanager
def two_namespaces(mtu: int | None = None, prefix: str = "fpt", grace: float = 5.0, *,
                   addr_a: str = ADDR_A, addr_b: str = ADDR_B) -> Iterator[NsPair]:
    """Namespaces A and B, veth between them (A 192.0.2.1/24, B 192.0.2.2/24 unless
    ``addr_a``/``addr_b`` say otherwise), lo up.

    Always cleaned up: processes stopped by PID (``grace`` s before SIGKILL), then both
    namespaces removed (the veth pair with them)."""
    sfx = unique_suffix()
    # interface names are at most 15 bytes: keep the tail of the suffix
    rig = NsPair(f"{prefix}a{sfx}", f"{prefix}b{sfx}", f"va{sfx[-12:]}", f"vb{sfx[-12:]}",
                 addr_a=addr_a, addr_b=addr_b, grace=grace)
    with rig_lifetime(rig):
        netlink.create_veth(rig.veth_a, rig.veth_b, netns=rig.a, peer_netns=rig.b, mtu=mtu)
        netlink.add_address(rig.veth_a, f"{rig.addr_a}/{PREFIX}", netns=rig.a)
        netlink.add_address(rig.veth_b, f"{rig.addr_b}/{PREFIX}", netns=rig.b)
        netlink.set_link_up(rig.veth_a, netns=rig.a)
        netlink.set_link_up(rig.veth_b, netns=rig.b)
        yield rig
