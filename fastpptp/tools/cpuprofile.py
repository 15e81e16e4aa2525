"""Where the CPU goes during a tunnel benchmark: ``perf record -a -g`` samples, by category.

Used by ``fastpptp bench tunnel --cpu-profile`` (fastpptp.tools.benchtunnel) to show, per GRE
port, how the machine's CPU is split between the GRE transport (the part a fast port changes)
and everything else a TCP byte costs on its way through the tunnel (iperf3 and its TCP, the
TUN device, the engine's checksums, ...).  On a small machine where iperf3, TCP, TUN and both
tunnel ends share the CPUs, the throughput is bounded by *all* of that work (Amdahl): a port
whose transport costs nothing can only speed the whole up by busy / (busy - transport).

Three parts:

1. ``classify(comm, frames)``: sans-I/O; one sample's callchain (symbol names, leaf first,
   as ``perf script`` prints them) -> one of CATEGORIES;
2. ``parse_script(text)`` / ``breakdown(text)``: the text of ``perf script -F
   comm,pid,tid,ip,sym`` (``-F comm,tid,ip,sym`` is read too) -> samples -> counts per
   category, the total, and the top leaves of what stayed unclassified;
3. ``Recorder``: ``perf record -a -g -F 499 -o FILE -- sleep S`` in a thread of its own
   (started after a delay, bounded in time, killed by PID on error, FILE removed), then
   ``perf script`` and ``breakdown``.  Never raises for perf being absent or refused
   (perf_event_paranoid, no CAP_PERFMON): the result is ``{"error": reason}``.

How a sample is classified (the rules in order; first match wins):

* the callchain is cut at a hardware interrupt's entry (``asm_sysvec_*``,
  ``asm_common_interrupt``): what was interrupted is not the work being sampled;
* ``foreign``: a process outside the bench (when the bench's own PIDs are given), with the
  softirqs its own ``local_bh_enable`` runs (its packets: another tunnel, when someone else
  runs one), but not the interrupts it suffers;
* softirq work (frames leafward of ``handle_softirqs``) is classified by what it does:
  the veth backlog / NAPI, AF_PACKET's tpacket_rcv, the XDP/TC programs and AF_XDP are the
  GRE transport; TCP timers are TCP.  When the softirq's own frames say nothing (the sample
  landed on ``handle_softirqs`` itself, where interrupts are re-enabled: a cpu-clock sample
  pending while they were off is taken there), a softirq run from ``local_bh_enable`` is
  charged to the code that raised it (a GRE send: its veth backlog), and one run on an
  interrupt's exit is ``irq_unattributed``, like an interrupt's own work;
* idle: the idle task in its idle loop;
* ``tracing``: someone else's BPF tracing program (kprobe/fentry) on the send path;
* perf itself is ``foreign``;
* then by process and kernel path: iperf3 (all of it: its code and its TCP in the kernel),
  TUN write (and the inner receive stack it drives: IP, TCP, the ACK it sends back), TUN
  read, the GRE transport's syscalls (raw socket, AF_PACKET, AF_XDP), and the engine's
  userspace by Cython module: the GRE port's ring code (``_greport``, ``_port_*``), the
  checksums, the rest of the compiled engine, libc memcpy, epoll/poll/scheduling; the rest
  is ``other``.
"""
from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FREQ = 499               # Hz per CPU: odd, so not in step with the kernel's timers
# the categories, in report order, with what each means (docs/BENCHMARKS.md)
CATEGORIES: dict[str, str] = {
    "gre_transport": "GRE transport (kernel: raw socket / AF_PACKET / AF_XDP, TC/XDP programs, veth)",
    "port_user": "GRE port ring code (userspace)",
    "tun_read": "TUN read",
    "tun_write": "TUN write (+ the inner receive stack it drives)",
    "iperf3_tcp": "iperf3 + its TCP (kernel)",
    "engine_checksum": "engine checksums",
    "engine_other": "engine, other compiled code",
    "memcpy": "memcpy (userspace)",
    "poll_sched": "epoll / poll / scheduling",
    "irq_unattributed": "interrupt / softirq entry, handler unknown",
    "other": "other",
    "tracing": "BPF tracing programs of others (kprobe/fentry on the send path)",
    "foreign": "outside the bench (other processes, perf itself)",
    "idle": "idle",
}
# busy = every other category: the CPU the bench's own work took
NOT_BUSY = ("idle", "foreign", "tracing")
TRANSPORT = "gre_transport"

# hardware interrupt entries: frames past them belong to the interrupted code
_IRQ_ENTRY = ("asm_sysvec_", "asm_common_interrupt", "asm_spurious_interrupt")
_SOFTIRQ = frozenset(("handle_softirqs", "__do_softirq"))
_IDLE = frozenset(("do_idle", "cpu_startup_entry", "cpuidle_enter", "cpuidle_enter_state",
                   "default_idle", "default_enter_idle", "default_idle_call", "pv_native_safe_halt",
                   "native_safe_halt", "arch_cpu_idle", "acpi_safe_halt", "acpi_idle_enter",
                   "intel_idle", "mwait_idle", "poll_idle", "cpu_idle_poll"))
# the TUN device; the engine's only read()/writev() are on it, so their syscall entry and
# libc wrappers are its too
_TUN_WRITE = frozenset(("tun_get_user", "tun_chr_write_iter", "tun_sendmsg", "do_writev", "vfs_writev",
                        "__GI___writev", "__writev", "writev"))
_TUN_READ = frozenset(("tun_do_read", "tun_chr_read_iter", "tun_recvmsg", "tun_ring_recv", "ksys_read",
                       "vfs_read", "read", "__libc_read", "__GI___libc_read"))
# the GRE transport in the kernel: each port's syscalls and receive hooks (and _VETH)
_GRE = frozenset((
    # raw IPPROTO_GRE socket (fastpptp/net/rawgre.py)
    "raw_sendmsg", "raw_recvmsg", "raw_rcv", "raw_local_deliver", "raw_v4_input",
    # the batch syscalls (and their libc wrappers) the raw and AF_PACKET ports send and
    # receive with; sendto is AF_XDP's TX kick
    "__sys_sendmmsg", "__x64_sys_sendmmsg", "__sys_recvmmsg", "do_recvmmsg", "__x64_sys_recvmmsg",
    "__sendmmsg", "sendmmsg", "__recvmmsg", "recvmmsg", "__libc_sendto", "__sendto",
    # AF_PACKET TPACKET_V3 rings (fastpptp/net/packetport.py): send, the ring's receive hook
    "packet_sendmsg", "tpacket_snd", "packet_snd", "packet_recvmsg", "tpacket_rcv", "packet_rcv",
    "packet_direct_xmit", "tpacket_destruct_skb",
    # AF_XDP (fastpptp/net/xdpport.py): generic (copy-mode) TX, the redirect to the socket
    "xsk_sendmsg", "__xsk_sendmsg", "xsk_generic_xmit", "__xsk_generic_xmit", "xsk_recvmsg",
    "xsk_rcv", "__xsk_rcv", "__xsk_rcv_zc", "__xsk_map_redirect", "__xsk_map_flush",
    "xsk_destruct_skb", "xdp_do_redirect", "xdp_do_flush",
    # a BPF program's helpers (tc, socket filter, XDP: fastpptp's are the only ones on the
    # packet path) seen without the program's own frame, which the unwinder skips
    "bpf_skb_load_helper_8", "bpf_skb_load_helper_16", "bpf_skb_load_helper_32",
    "bpf_prog_run_pin_on_cpu",
))
# the veth between the ends: its backlog / NAPI carries the outer GRE packets, and the
# bench's ping and side flow (a TCP flow under it is the side flow: see _softirq_work)
_VETH = frozenset(("veth_xmit", "veth_poll", "veth_xdp_rcv", "veth_xdp_rcv_skb", "veth_xdp_rcv_one",
                   "process_backlog"))
# BPF tracing programs of someone else's (kprobe/fentry) on the send path: CPU this machine
# spends per packet that is not the tunnel's (seen on raw_sendmsg and udp_send_skb); the
# program's frame is skipped by the unwinder, so its helpers show under the traced function
_TRACING = frozenset(("__bpf_prog_enter", "__bpf_prog_exit", "__bpf_prog_enter_recur",
                      "__bpf_prog_exit_recur", "__bpf_prog_enter_sleepable", "bpf_probe_read_kernel",
                      "bpf_probe_read_user", "bpf_probe_read_kernel_str", "bpf_get_current_pid_tgid",
                      "bpf_get_current_task", "bpf_get_current_comm", "bpf_get_current_uid_gid",
                      "bpf_ktime_get_ns", "bpf_perf_event_output", "bpf_ringbuf_output",
                      "bpf_ringbuf_reserve", "bpf_ringbuf_submit", "trace_call_bpf",
                      "kprobe_ftrace_handler", "kprobe_perf_func"))
_POLL_SCHED = frozenset(("do_epoll_wait", "__x64_sys_epoll_wait", "__x64_sys_epoll_pwait", "ep_poll",
                         "do_sys_poll", "__x64_sys_poll", "__x64_sys_ppoll", "do_select",
                         "__x64_sys_pselect6", "__x64_sys_select", "schedule", "__schedule",
                         "schedule_idle", "schedule_hrtimeout_range", "finish_task_switch",
                         "finish_task_switch.isra.0", "futex_wait", "__x64_sys_futex",
                         "__x64_sys_nanosleep", "__x64_sys_clock_nanosleep", "__x64_sys_sched_yield",
                         "epoll_wait", "epoll_wait@plt", "__epoll_wait_nocancel"))
_PROFILER_COMMS = frozenset(("perf", "perf-exec"))
# a Cython function: __pyx_<kind>_<len>fastpptp_<len><module>_...
_PYX = re.compile(r"^__pyx_[a-z0-9]+_8fastpptp_(\d+)(\w+)$")
_PORT_MODULES = ("_greport", "_port_")
# glibc's memcpy/memmove variants (the kernel's own copies belong to their syscall)
_MEMCPY = re.compile(r"^(__(memmove|memcpy|mempcpy)_\w+|(memcpy|memmove)@plt)$")
_TCP = re.compile(r"^(tcp_|__tcp_|inet_csk_)")


def _is_gre_frame(name: str) -> bool:
    """A frame of one of the GRE ports (not the veth)."""
    return name in _GRE or (name.startswith("bpf_prog_") and "fastpptp" in name)


def _is_tracing(work: Sequence[str]) -> bool:
    """A tracing program's work: its helpers, or bpf_ktime_get_ns (a tail call to
    ktime_get_mono_fast_ns) right under a send function, which never calls it itself."""
    if any(f in _TRACING for f in work):
        return not any(_is_gre_frame(f) and f.startswith("bpf_prog_") for f in work)
    return any(f == "ktime_get_mono_fast_ns" and ("sendmsg" in nxt or "send_skb" in nxt)
               for f, nxt in zip(work, work[1:], strict=False))


def pyx_module(name: str) -> str | None:
    """The fastpptp Cython module of a symbol (``_offload``, ``_port_packet``, ...), or None."""
    m = _PYX.match(name)
    if not m:
        return None
    n, rest = int(m.group(1)), m.group(2)
    return rest[:n] if len(rest) > n else None


def _softirq_work(soft: Sequence[str]) -> str | None:
    """The category of a softirq's own frames, None when they do not tell."""
    if any(_is_gre_frame(f) for f in soft):
        return TRANSPORT
    if any(_TCP.match(f) for f in soft):
        # the inner TCP's timers (delayed ACK, pacing, retransmit); or, under the veth's
        # backlog, the side flow's TCP (the GRE never meets TCP in the kernel: the inner
        # packets enter through tun_get_user, in process context)
        return "iperf3_tcp"
    if any(f in _VETH for f in soft):
        return TRANSPORT
    return None


def _engine_user(leaf: str) -> str | None:
    mod = pyx_module(leaf)
    if mod is not None:
        if mod.startswith(_PORT_MODULES):
            return "port_user"
        if "csum" in leaf or "checksum" in leaf:
            return "engine_checksum"
        return "engine_other"
    if leaf.startswith("__Pyx_"):     # Cython's runtime helpers, compiled into each module
        return "engine_other"
    if _MEMCPY.match(leaf):
        return "memcpy"
    return None


def classify(comm: str, frames: Sequence[str], *, foreign: bool = False) -> str:
    """One of CATEGORIES for a sample: ``comm`` of its thread, ``frames`` its callchain's
    symbol names, leaf first.  ``foreign``: the process is not one of the bench's (the caller
    knows the PIDs): all of its samples are ``foreign`` but for the interrupts it suffers
    (and the softirqs run on their exit), classified by what they do."""
    cut = next((i for i, f in enumerate(frames) if f.startswith(_IRQ_ENTRY)), None)
    work = frames if cut is None else frames[:cut]
    interrupted = cut is not None
    if foreign and not interrupted:
        # its own work, and the softirqs its local_bh_enable runs (its own packets, mostly)
        return "foreign"
    s = next((i for i, f in enumerate(work) if f in _SOFTIRQ), None)
    if s is not None:
        got = _softirq_work(work[:s])
        if got is not None:
            return got
        if interrupted or comm.startswith("ksoftirqd/"):
            return "irq_unattributed"
        work = work[s + 1:]            # run by local_bh_enable: charged to what raised it
    elif interrupted:
        # a hardware interrupt's own work (the timer, the sample taken on its way out)
        return "irq_unattributed"
    if any(f in _IDLE for f in work):
        return "idle"
    if _is_tracing(work):
        return "tracing"
    if comm in _PROFILER_COMMS:
        return "foreign"
    if comm == "iperf3":
        return "iperf3_tcp"
    if any(f in _TUN_WRITE for f in work):
        return "tun_write"
    if any(f in _TUN_READ for f in work):
        return "tun_read"
    if any(_is_gre_frame(f) or f in _VETH for f in work):
        return TRANSPORT
    if work:
        got = _engine_user(work[0])
        if got is not None:
            return got
    if any(f in _POLL_SCHED for f in work):
        return "poll_sched"
    return "other"


# --------------------------------------------------------------------------- perf script text


@dataclass(frozen=True)
class Sample:
    comm: str
    pid: int | None          # None when perf script printed only the tid
    tid: int
    frames: tuple[str, ...]  # symbol names, leaf first ("[unknown]" when perf has none)


def _header(line: str) -> tuple[str, int | None, int] | None:
    """``comm pid/tid`` or ``comm tid`` (comm may hold spaces) -> (comm, pid, tid)."""
    head, _, last = line.strip().rpartition(" ")
    if not head:
        return None
    pid_s, slash, tid_s = last.partition("/")
    try:
        if slash:
            return head.strip(), int(pid_s), int(tid_s)
        return head.strip(), None, int(pid_s)
    except ValueError:
        return None


def parse_script(text: str) -> Iterable[Sample]:
    """The samples of ``perf script -F comm,[pid,]tid,ip,sym`` output: a header line, then one
    indented ``ADDR SYMBOL`` line per frame, leaf first; samples separated by blank lines.
    Lines that fit neither are skipped (perf's warnings)."""
    head: tuple[str, int | None, int] | None = None
    frames: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            if head is not None:
                yield Sample(head[0], head[1], head[2], tuple(frames))
            head, frames = None, []
        elif line[0] in " \t":
            if head is not None:
                addr, _, sym = line.strip().partition(" ")
                frames.append(sym.strip() or "[unknown]")
        else:
            if head is not None:
                yield Sample(head[0], head[1], head[2], tuple(frames))
            head, frames = _header(line), []
    if head is not None:
        yield Sample(head[0], head[1], head[2], tuple(frames))


def classify_samples(text: str, own_pids: Iterable[int] | None = None,
                     kthreads: Iterable[int] | None = None) -> Iterator[tuple[Sample, str]]:
    """Each sample of ``perf script`` text with its category.

    ``own_pids``: the bench's processes (the tunnel ends, iperf3's client and servers); when
    given, the samples of any other user process are ``foreign`` (see classify).  Kernel
    threads (``kthreads``, PIDs) and the idle task (PID 0) are never foreign."""
    own = None if own_pids is None else set(own_pids)
    kth = set(kthreads or ())
    for smp in parse_script(text):
        not_ours = (own is not None and smp.pid is not None and smp.pid != 0
                    and smp.pid not in own and smp.pid not in kth)
        yield smp, classify(smp.comm, smp.frames, foreign=not_ours)


def breakdown(text: str, own_pids: Iterable[int] | None = None,
              kthreads: Iterable[int] | None = None, top: int = 8) -> dict[str, Any]:
    """Counts per category of the samples in ``perf script`` text (``own_pids``, ``kthreads``:
    see classify_samples).  Returns {"samples": total, "counts": {category: n} (every
    category, summing to the total), "other_top": [[leaf symbol, n], ...] (what stayed
    ``other``, most first), "foreign_top": [["comm/pid", n], ...]}."""
    counts = dict.fromkeys(CATEGORIES, 0)
    other: collections.Counter[str] = collections.Counter()
    foreign: collections.Counter[str] = collections.Counter()
    total = 0
    for smp, cat in classify_samples(text, own_pids, kthreads):
        counts[cat] += 1
        total += 1
        if cat == "other":
            other[smp.frames[0] if smp.frames else "[no callchain]"] += 1
        elif cat == "foreign":
            foreign[smp.comm if smp.pid is None else f"{smp.comm}/{smp.pid}"] += 1
    return {"samples": total, "counts": counts,
            "other_top": [[k, v] for k, v in other.most_common(top)],
            "foreign_top": [[k, v] for k, v in foreign.most_common(top)]}


# --------------------------------------------------------------------------- the arithmetic


def rates(bd: Mapping[str, Any], gbps: float | None, ncpus: int) -> dict[str, Any]:
    """``bd`` (a breakdown) with the figures that matter: ``share`` of all samples per
    category (all CPUs: 1.0 is the whole machine), and with ``gbps`` delivered meanwhile,
    ``cpu_per_gbps`` per category -- percent of one CPU per delivered Gbit/s, share x ncpus
    x 100 / gbps -- ``busy_per_gbps`` (all but NOT_BUSY) and ``transport_per_gbps``."""
    out = dict(bd)
    total = bd["samples"]
    if not total:
        return out
    share = {k: v / total for k, v in bd["counts"].items()}
    out["share"] = {k: round(v, 4) for k, v in share.items()}
    out["cpus"] = ncpus
    busy = sum(v for k, v in share.items() if k not in NOT_BUSY)
    out["busy_share"] = round(busy, 4)
    if gbps:
        out["gbps"] = round(gbps, 4)
        per = {k: v * ncpus * 100 / gbps for k, v in share.items()}
        out["cpu_per_gbps"] = {k: round(v, 2) for k, v in per.items()}
        out["busy_per_gbps"] = round(busy * ncpus * 100 / gbps, 2)
        out["transport_per_gbps"] = round(per[TRANSPORT], 2)
    return out


def median_profile(profiles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several rounds' profiles (each from ``rates``) -> one: counts and samples summed (they
    still add up), share / cpu_per_gbps / busy / transport the per-round median, ``per_round``
    the rounds themselves.  {"error": first reason} when no round has a profile."""
    ok = [p for p in profiles if p.get("samples")]
    if not ok:
        why = next((p["error"] for p in profiles if "error" in p), "no samples")
        return {"error": why, "per_round": list(profiles)}
    out: dict[str, Any] = {"rounds": len(ok), "samples": sum(p["samples"] for p in ok),
                           "counts": {k: sum(p["counts"].get(k, 0) for p in ok) for k in CATEGORIES}}
    for key in ("share", "cpu_per_gbps"):
        got = [p[key] for p in ok if key in p]
        if got:
            out[key] = {k: round(statistics.median(g.get(k, 0.0) for g in got), 4) for k in CATEGORIES}
    for key in ("busy_share", "busy_per_gbps", "transport_per_gbps", "gbps"):
        vals = [p[key] for p in ok if key in p]
        if vals:
            out[key] = round(statistics.median(vals), 4)
    out["cpus"] = ok[0].get("cpus")
    top: collections.Counter[str] = collections.Counter()
    for p in ok:
        top.update({k: v for k, v in p.get("other_top", [])})
    out["other_top"] = [[k, v] for k, v in top.most_common(8)]
    out["per_round"] = list(profiles)
    return out


def amdahl(base: Mapping[str, Any], fast: Mapping[str, Any], need: float = 1.8) -> dict[str, Any] | None:
    """What the CPU profiles say about a fast port's TCP speed-up over ``base`` (raw), when
    the machine is CPU-bound (every CPU busy with the bench), from CPU-% per Gbit/s:

    * ``ratio_cpu_bound`` = busy(base) / busy(fast): the ratio if both filled the machine;
    * ``ceiling_free_transport`` = busy(base) / (busy(fast) - transport(fast)): even if the
      fast port's GRE transport cost nothing;
    * ``nontransport``: N = busy - transport of each, what is left of a Gbit/s when the
      transport is taken out (iperf3, TCP, TUN, the engine: about the same work on both);
    * ``nontransport_needed``: the N that (N + T_base) / (N + T_fast) = ``need`` asks for,
      N = (T_base - need T_fast) / (need - 1); none >= 0 means no N can reach it (the
      transport's difference alone is too small).
    None when either lacks the per-Gbit/s figures."""
    try:
        bb, tb = float(base["busy_per_gbps"]), float(base["transport_per_gbps"])
        bf, tf = float(fast["busy_per_gbps"]), float(fast["transport_per_gbps"])
    except (KeyError, TypeError, ValueError):
        return None
    if bf <= 0 or bb <= 0 or need <= 1:
        return None
    n_needed = (tb - need * tf) / (need - 1)
    return {
        "need": need,
        "busy_per_gbps": {"base": bb, "fast": bf},
        "transport_per_gbps": {"base": tb, "fast": tf},
        "transport_share_of_busy": {"base": round(tb / bb, 3), "fast": round(tf / bf, 3)},
        "ratio_cpu_bound": round(bb / bf, 3),
        "ceiling_free_transport": round(bb / (bf - tf), 3) if bf > tf else None,
        "nontransport": {"base": round(bb - tb, 2), "fast": round(bf - tf, 2)},
        "nontransport_needed": round(n_needed, 2) if n_needed >= 0 else None,
    }


# --------------------------------------------------------------------------- running perf


def _processes() -> tuple[set[int], dict[int, int]]:
    """(PIDs of the kernel threads, {pid: ppid} of the others) now, from /proc/PID/stat
    (PF_KTHREAD in its flags, include/linux/sched.h)."""
    kthreads, parent = set(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            flags, ppid = int(fields[6]), int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
        if flags & 0x00200000:
            kthreads.add(int(name))
        else:
            parent[int(name)] = ppid
    return kthreads, parent


def descendants(root: int, parent: Mapping[int, int], prune: Iterable[int] = ()) -> set[int]:
    """The PIDs under ``root`` in a {pid: ppid} map (``root`` itself not included), leaving
    out the subtrees of ``prune``."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, ppid in parent.items():
        children[ppid].append(pid)
    out, todo, skip = set(), [root], set(prune)
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in skip and c not in out:
                out.add(c)
                todo.append(c)
    return out


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:                       # perf's own verdict, e.g. about perf_event_paranoid
        if ln.lower().startswith(("error", "perf_event_open", "access to performance monitoring")):
            return ln[:300]
    return (lines[-1] if lines else "")[:300]


class Recorder:
    """``perf record -a -g -F freq`` for ``seconds``, starting ``delay`` s after start(), in a
    thread; finish() waits for it and returns the breakdown ({"error": reason} when perf is
    missing, refused or found nothing).  At most one perf process, bounded by ``seconds`` +
    ``grace``; on a timeout or an error its process group (ours, by its PID) is killed.

    ``own_pids`` (the tunnel ends): when given, the processes this one started that are
    alive at the end of the recording (iperf3's client and servers, the tunnels) are the
    bench's too, and every other user process is ``foreign``: this process itself (the
    bench's ping and bookkeeping), perf, whatever else runs on the machine."""

    def __init__(self, seconds: float, *, delay: float = 0.0, freq: int = FREQ,
                 own_pids: Iterable[int] | None = None, perf: str = "perf", grace: float = 20.0) -> None:
        self.seconds, self.delay, self.freq, self.grace = seconds, delay, freq, grace
        self.own_pids = None if own_pids is None else set(own_pids)
        self.perf = shutil.which(perf)
        self._tmp = tempfile.mkdtemp(prefix="fpprof")
        self.data = os.path.join(self._tmp, "perf.data")
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-perf", daemon=True)
        self._error: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._kthreads: set[int] = set()

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def _run(self) -> None:
        if self.perf is None:
            self._error = "perf is not installed (Debian package linux-perf)"
            return
        if self._cancel.wait(self.delay):
            self._error = "cancelled"
            return
        argv = [self.perf, "record", "-a", "-g", "-F", str(self.freq), "-q", "--no-buildid",
                "--no-buildid-cache", "-o", self.data, "--", "sleep", f"{self.seconds:g}"]
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
        except OSError as exc:
            self._error = f"perf record: {exc}"
            return
        self._proc = p
        if self._cancel.is_set():          # cancel() came between the wait and Popen
            self._killpg(p)
        try:
            if self.own_pids is not None:
                # who is the bench's, taken while the recording ends (iperf3's client exits
                # soon after; perf and its sleep are not the bench's)
                self._cancel.wait(self.seconds)
                _, parent = _processes()
                self.own_pids |= descendants(os.getpid(), parent, prune=(p.pid,))
            _, err = p.communicate(timeout=self.seconds + self.grace)
        except subprocess.TimeoutExpired:
            self._killpg(p)
            self._error = f"perf record did not finish in {self.seconds + self.grace:g} s"
            return
        except BaseException:
            self._killpg(p)
            raise
        self._kthreads = _processes()[0]
        if self._cancel.is_set():
            self._error = "cancelled"
        elif p.returncode != 0:
            self._error = f"perf record failed (rc {p.returncode}): {_last_error(err) or 'no message'}"
        elif not os.path.exists(self.data):
            self._error = "perf record wrote no data"

    @staticmethod
    def _killpg(p: subprocess.Popen[str]) -> None:
        """perf and its ``sleep``: the session we started for it, by perf's PID."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)

    def cancel(self) -> None:
        """Stop now (the caller is failing): no recording, or perf killed; finish() still
        has to be called to clean up."""
        self._cancel.set()
        p = self._proc
        if p is not None and p.poll() is None:
            self._killpg(p)

    def finish(self) -> dict[str, Any]:
        """Wait for the recording (bounded), read it with ``perf script``, classify; the
        data file is removed in every case."""
        try:
            if self._thread.ident is None:
                return {"error": "perf record was not started"}
            self._thread.join(self.delay + self.seconds + self.grace + 10)
            if self._thread.is_alive():
                return {"error": "perf record thread did not finish"}
            if self._error is not None:
                return {"error": self._error}
            assert self.perf is not None
            try:
                r = subprocess.run([self.perf, "script", "-i", self.data, "-F", "comm,pid,tid,ip,sym"],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   errors="replace", timeout=120, start_new_session=True)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return {"error": f"perf script: {exc}"}
            if r.returncode != 0:
                return {"error": f"perf script failed (rc {r.returncode}): {_last_error(r.stderr)}"}
            bd = breakdown(r.stdout, own_pids=self.own_pids, kthreads=self._kthreads)
            if not bd["samples"]:
                return {"error": "perf recorded no samples"}
            bd["seconds"], bd["freq"] = self.seconds, self.freq
            return bd
        finally:
            self.cancel()
            shutil.rmtree(self._tmp, ignore_errors=True)


def record(seconds: float, own_pids: Iterable[int] | None = None, perf: str = "perf") -> dict[str, Any]:
    """Blocking: the system-wide breakdown of the next ``seconds`` (see Recorder)."""
    return Recorder(seconds, own_pids=own_pids, perf=perf).start().finish()
