"""The GRE port's fallback and recovery (issue 9), with fastpptp-server as a program in the
products lab (tests/support/lab.py: the server's GRE arrives on the bridge ``fpbr``, where
the fast ports attach):

* without CAP_BPF (and CAP_SYS_ADMIN, which also grants bpf()) -- dropped from the bounding
  set with ``setpriv`` before exec, so the server starts as root without them --
  ``--gre-io auto`` falls back, says which port runs and why in its log and in
  ``status --json``, and a tunnel carries traffic;
* the same server with ``--gre-io xdp`` or ``--gre-io packet`` forced refuses to start: a
  clear one-line reason, a non-zero exit, no traceback;
* a server killed with SIGKILL while its fast port runs leaves nothing that stops the next
  one: the next start gets the same fast port and exactly one program of ours is attached
  (XDP: the interface's IFLA_XDP; packet: the TCX ingress hook); and an XDP program of ours
  that an older run attached the legacy netlink way (which outlives the process) is
  replaced at the next start, not stacked or refused.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

import support.lab
from fastpptp.net import bpf, netns
from fastpptp.tools.demo import bulk_transfer, ping
from fastpptp.tools.netrig import spawn_logged
from support.lab import PY, TUN_SERVER, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

CAP_SYS_ADMIN, CAP_BPF = 21, 39
BRIDGE = "fpbr"                       # the lab server's interface (support/lab.py)
GRE_IO_LINE = re.compile(r"GRE I/O: (\w+): (.*)$", re.M)


@pytest.fixture
def no_bpf(monkeypatch):
    """The lab's server runs without CAP_BPF and CAP_SYS_ADMIN (its clients keep them)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot drop capabilities before exec")
    cmd = [setpriv, "--bounding-set", "-bpf,-sys_admin", "--"] + PY
    monkeypatch.setattr(support.lab, "PY", cmd)
    return cmd


def cap_eff(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    raise AssertionError(f"no CapEff for {pid}")


def gre_io_line(log: str) -> tuple[str, str]:
    """(mode, rest) of the log line that says which GRE port runs and why."""
    m = GRE_IO_LINE.search(log)
    assert m, "no 'GRE I/O:' line in the log:\n" + log[-3000:]
    return m.group(1), m.group(2)


def client_up(lab, i=0):
    p, up = lab.start_client(i, f"user{i}", f"pass{i}")
    wait_until(lambda: lab.ups(up), 60, f"client {i} up", p)
    return p, up


def traffic(lab, i=0, nbytes=256 * 1024, port=6100):
    ns = lab.clients[i]
    assert ping(ns, TUN_SERVER, count=3, interval=0.05), f"client {i}: ping through the tunnel"
    r = bulk_transfer(lab.sns, ns, TUN_SERVER, nbytes, timeout=30, port=port)
    assert r["checksum_ok"] and r.get("rx_bytes") == nbytes, r


def our_programs(ns: str, ifname: str = BRIDGE) -> dict[str, list[str]]:
    """Our (``fastpptp_*``) BPF programs on ``ifname`` in ``ns``: at its XDP hook (what
    ``ip -j link show`` reports as ``xdp``, by id and name through bpf()) and at its TCX
    ingress hook."""
    out = subprocess.run(["ip", "netns", "exec", ns, "ip", "-j", "-d", "link", "show", "dev", ifname],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    (link,) = json.loads(out)
    with netns.entered(ns):
        ifindex = link["ifindex"]
        xdp = [info.name for _, info in bpf.iter_xdp_programs(ifindex) if info is not None and info.ours]
        tcx = [p.name for p in bpf.tcx_programs(ifindex) if p.ours]
    # iproute2's view agrees with netlink's (one "xdp" object per attached program)
    ip_xdp = link.get("xdp", {})
    ids = [ip_xdp["prog"]["id"]] if "prog" in ip_xdp else [a["prog"]["id"] for a in ip_xdp.get("attached", [])]
    assert len(ids) >= len(xdp), (ip_xdp, xdp)
    return {"xdp": xdp, "tcx": tcx}


def test_auto_without_cap_bpf_falls_back_says_why_and_carries_traffic(lab, no_bpf):
    lab.start_server()                      # --gre-io auto (the default)
    eff = cap_eff(lab.server.pid)
    assert not eff >> CAP_BPF & 1 and not eff >> CAP_SYS_ADMIN & 1, hex(eff)
    mode, why = gre_io_line(lab.log("server.log"))
    # both fast ports need bpf() (the XDP program; packet's TCX ingress drop): raw runs, and
    # the line says why each fast port could not
    assert mode in ("packet", "raw"), (mode, why)
    assert "auto" in why and "xdp: no CAP_BPF" in why, why
    if mode == "raw":
        assert "packet:" in why and "CAP_BPF" in why, why
    doc = lab.status()["gre_io"]
    assert doc["mode"] == mode and doc["why"] in why, (doc, why)
    assert not our_programs(lab.sns)["xdp"] and not our_programs(lab.sns)["tcx"]
    support.lab.PY = PY                     # the client keeps its capabilities (auto: xdp)
    client_up(lab)
    traffic(lab)
    lab.check_server_gre_port(mode, min_rx=100, min_tx=10)


@pytest.mark.parametrize("forced", ["xdp", "packet"])
def test_forced_fast_port_without_cap_bpf_refuses_to_start(lab, no_bpf, forced):
    log_path = os.path.join(lab.tmp, "server.log")
    p = spawn_logged(lab.sns, support.lab.PY + [
        "server", "-c", f"{lab.tmp}/pptpd.conf", "--secrets", f"{lab.tmp}/chap-secrets", "-f",
        "--control-socket", lab.ctl, "--interface", "fpisrv0", "--ip-up", "", "--ip-down", "",
        "--gre-io", forced], log_path)
    lab.procs.append(p)
    rc = p.wait(30)
    log = lab.log("server.log")
    assert rc != 0, log
    assert f"--gre-io {forced} cannot run" in log and "CAP_BPF" in log, log
    assert "Traceback" not in log, log
    assert not os.path.exists(lab.ctl)
    assert our_programs(lab.sns) == {"xdp": [], "tcx": []}


@pytest.mark.parametrize("fast", ["xdp", "packet"])
def test_sigkilled_fast_server_leaves_nothing_in_the_way(lab, fast):
    lab.start_server(gre_io=fast)
    p, _ = client_up(lab)
    traffic(lab)
    lab.check_server_gre_port(fast, min_rx=100, min_tx=10)
    hook = "xdp" if fast == "xdp" else "tcx"
    assert len(our_programs(lab.sns)[hook]) == 1
    lab.server.send_signal(signal.SIGKILL)
    lab.server.wait(10)
    p.kill()                                # its session died with the server
    p.wait(10)
    lab.start_server(gre_io=fast)
    mode, why = gre_io_line(lab.log("server.log"))
    assert mode == fast, why
    progs = our_programs(lab.sns)
    assert len(progs[hook]) == 1, progs     # the new run's, nothing left over or stacked
    client_up(lab, 1)
    traffic(lab, 1, port=6101)
    lab.check_server_gre_port(fast, min_rx=100, min_tx=10)


def test_stale_legacy_xdp_program_of_ours_is_replaced_at_start(lab):
    """What an older run could leave: our program attached with netlink IFLA_XDP_FD (not a
    BPF link), so it outlives the process."""
    with netns.entered(lab.sns):
        ifindex = socket.if_nametoindex(BRIDGE)
        with bpf.create_addr_map(["192.0.2.1"]) as m, \
                bpf.map_create(bpf.BPF_MAP_TYPE_XSKMAP, 4, 4, 1, bpf.MAP_NAME_XSKS) as x, \
                bpf.load_xdp_gre_redirect(m, x) as stale:
            stale_id = stale.info().id
            bpf.xdp_attach_legacy(ifindex, stale, bpf.XDP_FLAGS_SKB_MODE)
        assert bpf.xdp_query(ifindex).prog_ids() == [stale_id]     # outlives our fds
    try:
        lab.start_server(gre_io="xdp")
        mode, why = gre_io_line(lab.log("server.log"))
        assert mode == "xdp", why
        with netns.entered(lab.sns):
            ids = bpf.xdp_query(ifindex).prog_ids()
        assert len(ids) == 1 and ids != [stale_id], (ids, stale_id)
        assert len(our_programs(lab.sns)["xdp"]) == 1
        client_up(lab)
        traffic(lab)
        lab.check_server_gre_port("xdp", min_rx=100, min_tx=10)
    finally:
        with netns.entered(lab.sns):               # if the server did not replace it
            if stale_id in bpf.xdp_query(ifindex).prog_ids():
                bpf.xdp_detach_legacy(ifindex, bpf.XDP_ATTACHED_SKB)
