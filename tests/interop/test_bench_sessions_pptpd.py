"""``fastpptp bench sessions`` against a real PPTP server: pptpd 1.4.0 + pppd 2.4.9 in a QEMU VM
of the shared interop harness (tests/support/interop_rig.py drives it; issue 10).

One server VM (MS-CHAPv2 + MPPE-128 required, IPv4 forwarding on, pool 198.51.100.2-9) and
N = 6 load-generator clients connecting at once from the harness namespace, each from its own
source address (192.0.2.65..70, put on br0 by ``--add-addresses`` and taken off after), with
20 packets/s each through its tunnel for a few seconds.  Checked, from both ends:

* the generator: every session up, none failed or dropped, set-up latency (p50/p99 and per
  phase) reported, MPPE 128 stateless on every session, distinct pool addresses and pptpd
  call IDs, traffic delivered through each tunnel (each session's packets came back; loss
  only before a session's first echo, the far end's route not yet in place), nothing
  foreign came down the tunnels, no send errors;
* the VM: pppd brought up N links for the user, each ``PPP-UP`` address is one the generator
  got, and pppd counted at least the generator's echoed traffic on each link;
* teardown: each pppd got our LCP Terminate-Request ("load test done") and the link went
  down, every pptpctrl ended its control connection, the VM's init saw every call end
  (``SESSION-END``, ``DONE rc=0``), and the source addresses are gone from br0.

pptpd in a TCG VM is slow (set-up ~2-3 s per session when 6 connect at once), so N stays
small; the same command drives ``fastpptp server`` with 1 000 clients (tests/integration/
test_loadgen.py).  Also here, without a VM: the shared data path's peer-call-ID map, which
pptpd's reuse of call IDs (per connection slot) exercises.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import re

import pytest

from support import interop_rig as R
from fastpptp.net import netlink
from fastpptp.tools import loadgen

N = 6                     # clients; the VM's pool (198.51.100.2-9) holds 8
USER, PASSWORD = "alice", "s3cret-Bench"
PPS, DURATION = 20, 4
UP_TIMEOUT = 60
PACKET_SIZE = 256         # bench sessions --packet-size default
EARLY_PACKETS = 4         # before pppd's ip-up: 0.2 s at PPS


@pytest.fixture(scope="module")
def net():
    with R.prepared_net() as n:
        yield n


def _sources_on_br0(ns: str) -> list[str]:
    rng = ipaddress.IPv4Network(R.BENCH_SOURCES)
    return [a.local for a in netlink.list_addresses("br0", family=4, netns=ns)
            if ipaddress.IPv4Address(a.local) in rng]


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_sessions_against_pptpd(net, tmp_path):
    vm = None
    try:
        vm = R.VmRun("server", net, ["--auth", "mschapv2", "--mppe", "require", "--user", USER,
                                     "--password", PASSWORD, "--bg", R.VM_FORWARD_BG,
                                     "--sessions", "1", "--timeout", "180", "--no-pptpd-debug"],
                     str(tmp_path / "vm.log"))
        vm.wait_marker("SERVER-READY", UP_TIMEOUT)
        rc, s, err = R.bench_sessions(
            net.name, R.SERVER_VM_ADDR,
            ["--clients", str(N), "--source-range", R.BENCH_SOURCES, "--add-addresses", "br0",
             "--user-template", USER, "--password-template", PASSWORD, "--auth", "mschapv2",
             "--mppe", "128", "--traffic", str(PPS), "--duration", str(DURATION),
             "--setup-timeout", "90"],
            str(tmp_path / "bench.log"), timeout=200)
        assert s is not None, f"no JSON summary (exit {rc}):\n{err[-3000:]}"
        print(loadgen.format_summary(s))
        assert rc == 0, loadgen.format_summary(s)

        # ---- the generator's side
        assert (s["up"], s["failed"], s["failures"], s["dropped_after_up"]) == (N, 0, {}, {}), s["failures"]
        st = s["setup"]
        assert st["time_to_all_up_s"] is not None and st["rate_per_s"] > 0
        assert 0 < st["latency_p50_s"] <= st["latency_p99_s"] <= st["latency_max_s"] < 90
        for phase in ("tcp_connect", "pptp_control", "ppp_lcp_auth_ccp_ipcp"):
            assert st["phases_s"][phase]["p50"] is not None, st["phases_s"]
        sessions = s["sessions"]
        assert [x["source"] for x in sessions] == [f"192.0.2.{65 + i}" for i in range(N)]
        assert all(x["up"] and x["mppe"] == "128 stateless" and x["setup_s"] > 0 for x in sessions), sessions
        pool = {f"198.51.100.{i}" for i in range(2, 10)}          # the VM's remoteip (R.TUN_POOL)
        locals_ = {x["local_ip"] for x in sessions}
        assert len(locals_) == N and locals_ <= pool, locals_
        # pptpd numbers calls by connection slot: distinct while the connections overlap
        assert len({x["peer_call_id"] for x in sessions}) == N, sessions
        d = s["data"]
        for x in sessions:
            # traffic through each tunnel, both ways (to the session's own address, routed
            # back by the VM); loss only before the first packet came back
            assert x["tx_packets"] >= PPS * DURATION * 0.8, x
            assert x["rx_packets"] > 0, x
            assert x["lost"] <= (x["rx_first_seq"] or 0) + 2, x
        assert d["sessions_without_traffic"] == 0
        assert d["foreign_packets"] == 0, d["foreign_kinds"]
        assert d["send_errors"] == {} and d["unmapped_frames"] == 0, d
        assert d["rtt_p50_ms"] is not None and d["aggregate_rx_mbit"] > 0

        # ---- the VM's side: pppd's links, then every call ended
        assert vm.wait(90) == 0, vm.tail()
        ups = [R.parse_kv(p) for p in vm.all_markers("PPP-UP")]
        assert len(ups) == N and all(u["peer"] == USER and u["local"] == R.TUN_SERVER for u in ups), ups
        assert {u["remote"] for u in ups} == locals_
        downs = {d["remote"]: d for d in (R.parse_kv(p) for p in vm.all_markers("PPP-DOWN"))}
        assert set(downs) == locals_, downs
        for x in sessions:
            down = downs[x["local_ip"]]
            # pppd's counters hold the echoed packets (and PPP control frames) since pppd ran
            # its ip-up (it resets them then: auth.c np_up -> reset_link_stats), which can be
            # a packet or two after the link passes traffic: our first packets go straight
            # after our IPCP is up, and the VM's kernel forwards them already
            early = EARLY_PACKETS * PACKET_SIZE
            assert int(down["bytes_rcvd"]) >= x["rx_bytes"] - early, (x, down)
            assert int(down["bytes_sent"]) >= x["rx_bytes"] - early, (x, down)
        text = vm.text()
        assert text.count("MPPE 128-bit stateless compression enabled") == N, vm.tail()
        assert len(re.findall(r'rcvd \[LCP TermReq id=0x[0-9a-f]+ "load test done"\]', text)) == N, vm.tail()
        assert text.count("LCP terminated by peer (load test done)") == N, vm.tail()
        finished = set(re.findall(r"CTRL: Client (192\.0\.2\.\d+) control connection finished", text))
        assert finished == {x["source"] for x in sessions}, finished
        assert vm.marker("SESSION-END") is not None
        assert vm.summary.get("mppe") == "128-bit-stateless", vm.summary
        assert _sources_on_br0(net.name) == []         # --add-addresses cleaned up
        assert PASSWORD not in err.split("\n", 1)[1]          # [0]: the argv we logged
    finally:
        if vm is not None and vm.proc.poll() is None:
            vm.stop()


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_sessions_pptpd_out_of_addresses(net, tmp_path):
    """pptpd with a pool of 3 takes 3 connections (pptpmanager: "Maximum of 100 connections
    reduced to 3, not enough IP addresses given") and closes further ones at once: the
    generator reports those by reason and phase, exits 1, and ends the 3 that came up."""
    vm = None
    try:
        vm = R.VmRun("server", net, ["--auth", "mschapv2", "--mppe", "require", "--user", USER,
                                     "--password", PASSWORD, "--remoteip", "198.51.100.2-4",
                                     "--sessions", "1", "--timeout", "150", "--no-pptpd-debug"],
                     str(tmp_path / "vm.log"))
        vm.wait_marker("SERVER-READY", UP_TIMEOUT)
        rc, s, err = R.bench_sessions(
            net.name, R.SERVER_VM_ADDR,
            ["--clients", "5", "--source-range", R.BENCH_SOURCES, "--add-addresses", "br0",
             "--user-template", USER, "--password-template", PASSWORD, "--duration", "1",
             "--setup-timeout", "60"],
            str(tmp_path / "bench.log"), timeout=150)
        assert s is not None, f"no JSON summary (exit {rc}):\n{err[-3000:]}"
        print(loadgen.format_summary(s))
        assert rc == 1
        assert (s["up"], s["failed"], s["dropped_after_up"]) == (3, 2, {}), s["failures"]
        assert s["failures"] == {"connect_failed: peer closed the control connection "
                                 "(before Start-Control-Connection-Reply)": 2}, s["failures"]
        assert s["setup"]["time_to_all_up_s"] is None and s["setup"]["latency_p50_s"] > 0
        assert vm.wait(90) == 0, vm.tail()
        text = vm.text()
        assert "MGR: Maximum of 100 connections reduced to 3" in text, vm.tail()
        assert len(vm.all_markers("PPP-UP")) == len(vm.all_markers("PPP-DOWN")) == 3
        up_sources = {x["source"] for x in s["sessions"] if x["up"]}
        finished = set(re.findall(r"CTRL: Client (192\.0\.2\.\d+) control connection finished", text))
        assert finished == up_sources, (finished, up_sources)
        assert _sources_on_br0(net.name) == []
    finally:
        if vm is not None and vm.proc.poll() is None:
            vm.stop()


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_sessions_churn_against_pptpd(net, tmp_path):
    """``--churn``: 3 clients connecting and disconnecting until 6 sessions have been up.
    pptpd gives a new connection the call ID of a freed slot while our previous session on
    it may still be tearing down: each cycle comes up, none fails, and pppd sees each link
    up, terminated by us and down."""
    vm = None
    try:
        vm = R.VmRun("server", net, ["--auth", "mschapv2", "--mppe", "require", "--user", USER,
                                     "--password", PASSWORD, "--sessions", "0", "--timeout", "150",
                                     "--no-pptpd-debug"], str(tmp_path / "vm.log"))
        vm.wait_marker("SERVER-READY", UP_TIMEOUT)
        rc, s, err = R.bench_sessions(
            net.name, R.SERVER_VM_ADDR,
            ["--clients", "3", "--churn", "6", "--hold", "0.5", "--churn-limit", "120",
             "--source-range", R.BENCH_SOURCES, "--add-addresses", "br0",
             "--user-template", USER, "--password-template", PASSWORD, "--setup-timeout", "60"],
            str(tmp_path / "bench.log"), timeout=170)
        assert s is not None, f"no JSON summary (exit {rc}):\n{err[-3000:]}"
        print(loadgen.format_summary(s))
        c = s["churn"]
        assert rc == 0 and c["cycles"] == 6 and c["failed"] == 0, c
        assert c["endings"] == {"clean": 6} and c["dropped_after_up"] == {}, c
        assert 0 < c["setup_p50_s"] <= c["setup_p99_s"]
        R.wait_for(lambda: vm.count(r"CTRL: Client 192\.0\.2\.\d+ control connection finished") == 6,
                   30, "pptpd: 6 control connections finished", [vm.proc])
        assert len(vm.all_markers("PPP-UP")) == len(vm.all_markers("PPP-DOWN")) == 6, vm.tail()
        assert vm.text().count("LCP terminated by peer (load test done)") == 6, vm.tail()
        assert _sources_on_br0(net.name) == []
    finally:
        if vm is not None:
            vm.stop()


# ---------------------------------------------------------------------------- no VM needed
def test_shared_datapath_peer_call_map_survives_reuse():
    """pptpd hands a freed slot's call ID out again: a late teardown of the old session must
    not unmap the new one, and a peer call ID live from another source is refused (the
    engine's output names a call only by that ID)."""
    if os.geteuid() != 0:
        pytest.skip("raw GRE sockets need root")
    loop = asyncio.new_event_loop()
    dp = loadgen.SharedDataPath(None, loop, lambda ip: None)
    try:
        assert dp.map_peer_call(0, "127.0.0.1", call_id=100) is None
        assert dp.map_peer_call(0, "127.0.0.1", call_id=100) is None        # idempotent
        assert dp.map_peer_call(0, "127.0.0.2", call_id=200) == 100         # clash: other source
        dp.unmap_peer_call(0, call_id=100)
        assert dp.map_peer_call(0, "127.0.0.2", call_id=200) is None        # slot reused
        dp.unmap_peer_call(0, call_id=100)                                  # the old one, late
        assert dp._by_peer_call[0][1] == 200
        dp.unmap_peer_call(0, call_id=200)
        assert dp._by_peer_call == {}
    finally:
        dp.close()
        loop.close()
