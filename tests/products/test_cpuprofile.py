"""fastpptp.tools.cpuprofile: perf callchains -> where a tunnel benchmark's CPU goes.

The classifier on real samples (tests/data/perf-script-bench-tunnel.txt, cut from ``perf
record -a -g`` captures of ``bench tunnel`` on the raw, AF_PACKET and AF_XDP ports), each
sample's category asserted; the parser on perf's two header forms; the per-Gbit/s and Amdahl
arithmetic; the median over rounds; the runner when perf is absent; the bench's report of it.
"""
from __future__ import annotations

import os

import pytest

from fastpptp.tools import benchtunnel as bt
from fastpptp.tools import cpuprofile as cp
from support.paths import DATA

FIXTURE = (DATA / "perf-script-bench-tunnel.txt").read_text()
# the bench's processes in the three captures (raw, packet, xdp): the tunnel ends and the
# iperf3s; kdamond.0, ksoftirqd/0, /1
OWN = {20021, 20022, 20071, 20072, 23552, 23553, 20030, 20032, 20033, 20086, 20087, 23567, 23578}
KTHREADS = {81, 14, 24}

# the fixture's samples in order: (category, why)
EXPECTED = [
    ("foreign", "the bench's own python (PID 19999), not a tunnel end"),
    ("gre_transport", "raw: raw_recvmsg copying the GRE packet out"),
    ("gre_transport", "raw: raw_recvmsg's queue lock"),
    ("tun_write", "the inner TCP receive driven by tun_get_user"),
    ("iperf3_tcp", "iperf3 client: tcp_sendmsg"),
    ("iperf3_tcp", "iperf3 server: tcp_recvmsg"),
    ("idle", "halt"),
    ("idle", "switching to the idle task"),
    ("engine_other", "_gre: Engine.prefetch_call"),
    ("memcpy", "glibc memmove in the engine"),
    ("poll_sched", "epoll_wait"),
    ("irq_unattributed", "handle_softirqs on an interrupt's exit, over raw_recvmsg"),
    ("engine_checksum", "_offload.csum_partial"),
    ("port_user", "_greport: RawPort.rx_burst"),
    ("tracing", "bpf_ktime_get_ns of a kprobe/fentry program on raw_sendmsg"),
    ("tun_read", "tun_do_read"),
    ("other", "memcmp"),
    ("gre_transport", "packet: tpacket_rcv in the sender's softirq"),
    ("gre_transport", "packet: tpacket_rcv's timestamp"),
    ("engine_checksum", "_offload.csum_partial"),
    ("iperf3_tcp", "iperf3 client"),
    ("tun_write", "tun_get_user copying from the iovec"),
    ("tun_read", "tun_do_read"),
    ("poll_sched", "scheduled out in epoll_wait"),
    ("port_user", "_port_packet: PacketPort.rx_burst"),
    ("engine_other", "_offload.mss_clamp_mtu"),
    ("other", "kdamond.0, a kernel thread, is not foreign"),
    ("foreign", "the bench's own python (PID 20049)"),
    ("iperf3_tcp", "iperf3 UDP client"),
    ("tun_write", "ip_rcv under tun_get_user"),
    ("gre_transport", "xdp: __xsk_map_redirect in veth's NAPI"),
    ("gre_transport", "xdp: __xsk_map_flush waking the socket"),
    ("irq_unattributed", "handle_softirqs on an interrupt's exit, over writev"),
    ("port_user", "_port_xdp: XdpPort.rx_burst"),
    ("foreign", "a page fault of the bench's own python"),
    ("tracing", "bpf_ktime_get_ns of a tracing program on udp_send_skb (in iperf3)"),
    ("irq_unattributed", "handle_softirqs on an interrupt's exit, over the idle loop: not idle"),
    ("gre_transport", "handle_softirqs run by local_bh_enable in raw_sendmsg: charged to the send"),
    ("iperf3_tcp", "TCP pacing timer (hrtimer softirq) on an idle CPU"),
    ("irq_unattributed", "an interrupt's exit to user mode"),
    ("other", "ksoftirqd's thread loop, no softirq under it"),
    ("foreign", "perf-exec: the profiler"),
    ("poll_sched", "epoll_wait's sleep"),
    ("iperf3_tcp", "TCP pacing timer in a softirq over iperf3"),
    ("gre_transport", "packet: the TC program on the receiving veth"),
    ("irq_unattributed", "ksoftirqd: handle_softirqs with nothing under it"),
    ("poll_sched", "packet_poll from epoll"),
    ("iperf3_tcp", "TCP pacing timer: tun_net_xmit"),
    ("poll_sched", "xsk_poll from epoll"),
    ("gre_transport", "xdp: the XDP program on the receiving veth"),
    ("foreign", "perf's sleep"),
    ("gre_transport", "xdp: AF_XDP generic transmit (sendto kick)"),
    ("gre_transport", "xdp: TX completion, xsk_destruct_skb"),
    ("gre_transport", "packet: packet_sendmsg"),
    ("gre_transport", "packet: handle_softirqs run by local_bh_enable in packet_sendmsg"),
    ("gre_transport", "raw: veth_xmit under raw_sendmsg"),
    ("gre_transport", "raw: raw_local_deliver in the sender's softirq"),
    ("tracing", "bpf_probe_read_kernel of a tracing program on raw_sendmsg"),
    ("iperf3_tcp", "the side flow's TCP under the veth backlog"),
    ("gre_transport", "packet: sendmmsg whose kernel frames the unwinder lost"),
    ("tun_write", "writev's syscall entry"),
    ("tun_read", "read's syscall entry"),
    ("poll_sched", "epoll_wait in libc"),
]


def test_fixture_samples_classified_exactly():
    got = list(cp.classify_samples(FIXTURE, own_pids=OWN, kthreads=KTHREADS))
    assert len(got) == len(EXPECTED)
    wrong = [(i, smp.comm, smp.pid, smp.frames[:4], cat, want, why)
             for i, ((smp, cat), (want, why)) in enumerate(zip(got, EXPECTED, strict=True)) if cat != want]
    assert wrong == []
    # every category the bench reports is met by the fixture; and each port's transport
    assert {c for c, _ in EXPECTED} == set(cp.CATEGORIES)
    gre = [smp.frames for smp, cat in got if cat == "gre_transport"]
    for marks in (("raw_sendmsg", "raw_recvmsg"), ("tpacket_rcv", "packet_sendmsg"), ("xsk_sendmsg", "__xsk_map_redirect")):
        assert any(set(marks) & set(f) for f in gre), marks


def test_without_pids_only_the_profiler_is_foreign():
    cats = [cat for _, cat in cp.classify_samples(FIXTURE)]
    foreign = [i for i, c in enumerate(cats) if c == "foreign"]
    assert foreign == [41]                                # perf-exec
    assert cats[0] == cats[27] == cats[34] == "other"     # python, unknown ownership
    assert cats[50] == "other"                            # "sleep" is not perf's by name


def test_breakdown_counts_sum_to_the_total():
    bd = cp.breakdown(FIXTURE, own_pids=OWN, kthreads=KTHREADS)
    assert bd["samples"] == len(EXPECTED)
    assert set(bd["counts"]) == set(cp.CATEGORIES)
    assert sum(bd["counts"].values()) == bd["samples"]
    assert bd["counts"]["gre_transport"] == sum(1 for c, _ in EXPECTED if c == "gre_transport")
    assert dict(map(tuple, bd["other_top"])) == {"__memcmp_evex_movbe": 1, "damon_pa_batch_lock": 1,
                                                 "smpboot_thread_fn": 1}
    assert dict(map(tuple, bd["foreign_top"])) == {"python/19999": 1, "python/20049": 1, "python/23532": 1,
                                                   "perf-exec/20036": 1, "sleep/23572": 1}


def test_iperf3_by_pid_when_pids_are_given():
    cats = [cat for smp, cat in cp.classify_samples(FIXTURE, own_pids=OWN - {20033}, kthreads=KTHREADS)]
    assert cats[4] == "foreign"                 # someone else's iperf3
    assert cats[5] == "iperf3_tcp"


def test_descendants():
    parent = {10: 1, 11: 10, 12: 11, 13: 10, 14: 13, 20: 1}
    assert cp.descendants(10, parent) == {11, 12, 13, 14}
    assert cp.descendants(10, parent, prune=(13,)) == {11, 12}
    assert cp.descendants(99, parent) == set()


def test_rules_on_built_chains():
    # a softirq on an interrupt's exit does the veth backlog's GRE over a TUN read: the
    # interrupted read is not the work
    chain = ("raw_local_deliver", "ip_local_deliver_finish", "process_backlog", "__napi_poll", "net_rx_action",
             "handle_softirqs", "__irq_exit_rcu", "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt",
             "_copy_to_iter", "tun_do_read", "tun_chr_read_iter", "vfs_read")
    assert cp.classify("python", chain) == "gre_transport"
    assert cp.classify("python", chain, foreign=True) == "gre_transport"   # whoever was interrupted
    # a softirq run by local_bh_enable in another process's send is its own traffic
    bh = ("raw_local_deliver", "process_backlog", "net_rx_action", "handle_softirqs", "do_softirq.part.0",
          "__local_bh_enable_ip", "__dev_queue_xmit", "ip_output", "raw_sendmsg", "__sys_sendmmsg")
    assert cp.classify("python", bh) == "gre_transport"
    assert cp.classify("python", bh, foreign=True) == "foreign"
    # ... the same without the softirq: the interrupt itself
    assert cp.classify("python", chain[6:]) == "irq_unattributed"
    # TCP timers in a softirq; a Cython runtime helper; no callchain
    assert cp.classify("swapper", ("tcp_delack_timer", "call_timer_fn", "run_timer_softirq",
                                   "handle_softirqs", "__irq_exit_rcu", "asm_sysvec_apic_timer_interrupt",
                                   "pv_native_safe_halt", "do_idle")) == "iperf3_tcp"
    assert cp.classify("python", ("__Pyx_PyObject_Call",)) == "engine_other"
    assert cp.classify("python", ()) == "other"
    assert cp.pyx_module("__pyx_f_8fastpptp_12_port_packet_10PacketPort_rx_burst") == "_port_packet"
    assert cp.pyx_module("__pyx_f_8fastpptp_8_offload_csum_partial") == "_offload"
    assert cp.pyx_module("__pyx_f_8fastpptp_99_x") is None and cp.pyx_module("csum_partial") is None


def test_parser_header_forms_and_noise():
    text = ("perf: some warning line\n"
            "\n"
            "Web Content 4242 \n"            # -F comm,tid; a comm with a space
            "\t    7f00 memcpy@plt\n"
            "\tffffffff81000130 \n"          # a frame without a symbol
            "\n"
            "swapper     0/0     \n"
            "\n"
            "python 10/11\n"
            "\t 1234 __pyx_f_8fastpptp_8_offload_csum_partial\n")
    s = list(cp.parse_script(text))
    assert [(x.comm, x.pid, x.tid) for x in s] == [("Web Content", None, 4242), ("swapper", 0, 0), ("python", 10, 11)]
    assert s[0].frames == ("memcpy@plt", "[unknown]") and s[1].frames == ()
    assert s[2].frames == ("__pyx_f_8fastpptp_8_offload_csum_partial",)
    assert cp.breakdown(text)["counts"]["engine_checksum"] == 1


def test_rates_per_gbps():
    bd = {"samples": 100, "counts": dict(dict.fromkeys(cp.CATEGORIES, 0), gre_transport=50, idle=20,
                                         foreign=5, iperf3_tcp=25)}
    r = cp.rates(bd, 2.0, 2)
    assert r["share"]["gre_transport"] == 0.5 and r["busy_share"] == 0.75
    # share x ncpus x 100 / gbps: half of 2 CPUs for 2 Gbit/s = 50 % of one CPU per Gbit/s
    assert r["cpu_per_gbps"]["gre_transport"] == 50.0 and r["cpu_per_gbps"]["iperf3_tcp"] == 25.0
    assert r["busy_per_gbps"] == 75.0 and r["transport_per_gbps"] == 50.0
    assert "cpu_per_gbps" not in cp.rates(bd, None, 2) and cp.rates({"samples": 0, "counts": {}}, 1.0, 2) == \
        {"samples": 0, "counts": {}}


def test_amdahl_arithmetic():
    base = {"busy_per_gbps": 40.0, "transport_per_gbps": 24.0}
    fast = {"busy_per_gbps": 30.0, "transport_per_gbps": 12.0}
    a = cp.amdahl(base, fast, 1.8)
    assert a["ratio_cpu_bound"] == 1.333                     # 40 / 30
    assert a["ceiling_free_transport"] == 2.222              # 40 / (30 - 12)
    assert a["nontransport"] == {"base": 16.0, "fast": 18.0}
    # (N + 24) / (N + 12) = 1.8  <=>  N = (24 - 1.8 x 12) / 0.8 = 3
    assert a["nontransport_needed"] == 3.0
    assert (3.0 + 24.0) / (3.0 + 12.0) == pytest.approx(1.8)
    assert a["transport_share_of_busy"] == {"base": 0.6, "fast": 0.4}
    # the transport's difference alone cannot give 1.8x: 20 < 1.8 x 15
    assert cp.amdahl(base | {"transport_per_gbps": 20.0}, fast | {"transport_per_gbps": 15.0})[
        "nontransport_needed"] is None
    assert cp.amdahl(base, {"error": "x"}) is None


def test_median_profile():
    def prof(g, gre, n=100):
        return cp.rates({"samples": n, "counts": dict(dict.fromkeys(cp.CATEGORIES, 0), gre_transport=gre,
                                                       idle=n - gre), "other_top": [["x", 1]]}, g, 2)
    m = cp.median_profile([prof(2.0, 40), {"error": "perf record failed"}, prof(4.0, 60), prof(3.0, 50)])
    assert m["rounds"] == 3 and m["samples"] == 300 and m["counts"]["gre_transport"] == 150
    assert sum(m["counts"].values()) == m["samples"]
    assert m["share"]["gre_transport"] == 0.5 and m["gbps"] == 3.0
    assert m["cpu_per_gbps"]["gre_transport"] == pytest.approx(100 * 0.5 * 2 / 3.0, abs=0.01)
    assert m["other_top"] == [["x", 3]] and len(m["per_round"]) == 4
    assert cp.median_profile([{"error": "no perf"}])["error"] == "no perf"


def test_recorder_without_perf_says_why():
    rec = cp.Recorder(0.5, perf="fastpptp-no-such-perf")
    tmp = rec._tmp
    assert rec.start().finish() == {"error": "perf is not installed (Debian package linux-perf)"}
    assert not os.path.exists(tmp)                      # the data's directory is gone
    assert cp.Recorder(0.5).finish() == {"error": "perf record was not started"}


def test_recorder_cancelled_in_its_delay():
    rec = cp.Recorder(0.5, delay=30.0, perf="true").start()
    rec.cancel()
    assert rec.finish() == {"error": "cancelled"}       # at once, not after the delay


def test_recorder_when_perf_record_fails():
    # a "perf" that exits 1 at once, as perf does when perf_event_paranoid refuses it
    rec = cp.Recorder(0.5, perf="false")
    tmp = rec._tmp
    got = rec.start().finish()
    assert got["error"].startswith("perf record failed (rc 1)"), got
    assert not os.path.exists(tmp)


def _bench_result(profile: dict | None) -> dict:
    def path(g, busy, tr):
        prof = cp.rates({"samples": 1000, "counts": dict(dict.fromkeys(cp.CATEGORIES, 0),
                                                          gre_transport=round(1000 * tr * g / 200),
                                                          iperf3_tcp=round(1000 * (busy - tr) * g / 200))}, g, 2)
        prof["counts"]["idle"] = 1000 - sum(prof["counts"].values())
        prof = cp.rates(prof, g, 2)
        return {"tcp1": {"gbps": g, "samples": [g], "cpu_profile": cp.median_profile([prof])}}
    r = {"seconds": 2, "rounds": 1, "tun_mtu": 1400, "udp_payload": bt.UDP_LEN, "cpus": 2, "tests": ["tcp1"],
         "load_average": [0.1], "skipped": {},
         "paths": {"fastpptp-raw": path(4.0, 40.0, 24.0), "fastpptp-packet": path(5.0, 30.0, 12.0)}}
    if profile is not None:
        r["cpu_profile"] = profile
    bt._ratios(r)
    bt._cpu_amdahl(r)
    return r


def test_bench_report_of_the_profile():
    r = _bench_result({"test": "tcp1"})
    cpr = r["cpu_profile"]
    assert cpr["available"] is True and len(cpr["amdahl"]) == 1
    a = cpr["amdahl"][0]
    assert (a["path"], a["base"], a["measured_ratio"]) == ("fastpptp-packet", "fastpptp-raw", 1.25)
    assert a["ratio_cpu_bound"] == 1.333 and a["nontransport_needed"] == 3.0
    text = bt.format_table(r)
    assert "cpu profile (tcp1;" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("fastpptp-packet") and "1000" in ln)
    assert row.split()[1:5] == ["5.00", "1000", "30.0", "12.0"]      # Gbit/s, samples, busy, GRE
    assert "amdahl fastpptp-packet vs fastpptp-raw" in text and "= 2.22x" in text
    assert "needs the rest <= 3.0 %/Gbit/s" in text
    assert "NOTE" not in text
    prof = r["paths"]["fastpptp-raw"]["tcp1"]["cpu_profile"]
    prof["share"]["foreign"] = 0.2
    prof["per_round"][0]["foreign_top"] = [["python/4242", 200]]
    assert "NOTE: 20% of the machine went to other processes (not quiet: python/4242 200)" in bt.format_table(r)

    none = _bench_result({"test": "tcp1"})
    for e in none["paths"].values():
        e["tcp1"]["cpu_profile"] = cp.median_profile([{"error": "perf is not installed (Debian package linux-perf)"}])
    bt._cpu_amdahl(none)
    assert none["cpu_profile"]["available"] is False and none["cpu_profile"]["amdahl"] == []
    assert "cpu profile: not available: perf is not installed" in bt.format_table(none)
    assert "cpu profile" not in bt.format_table(_bench_result(None))         # not asked for


def test_profile_window_inside_the_test():
    for seconds in (1, 2, 5, 60):
        delay, dur = bt.profile_window(seconds)
        assert 0 < delay <= 1.0 and dur >= 0.5
        if seconds >= 2:
            assert delay + dur + 0.3 <= seconds - 0.25 * min(seconds, 4) + 1e-9
