"""The AF_XDP GRE port (fastpptp/_port_xdp.pyx, fastpptp/net/xdpport.py) between two namespaces
joined by a veth: A 198.51.100.1 runs the port, B 198.51.100.2 is a plain peer with a raw GRE
socket (the kernel is the oracle for our Ethernet/IPv4 headers)."""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from fastpptp.net import bpf, netns
from fastpptp.net.xdpport import (XdpUnavailable, link_facts, open_xdp_port, xdp_facility_reason,
                                  xdp_unavailable_reason)
from fastpptp.tools.netrig import kill_process, wait_for
from support.grerig import (ADDR_A, ADDR_B, drain, gre_pair, icmp_echo, ip_checksum, pptp_gre,
                            raw_gre_socket, snmp)

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module", autouse=True)
def _need_xdp():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    reason = xdp_facility_reason()
    if reason:
        pytest.skip(reason)


class Rig:
    def __init__(self, pair):
        self.pair = pair
        self.raw_a = raw_gre_socket(pair.a)
        self.raw_b = raw_gre_socket(pair.b)
        with netns.entered(pair.a):
            self.ifindex_a = socket.if_nametoindex(pair.veth_a)
        with netns.entered(pair.b):
            self.mac_b = link_facts(pair.veth_b).mac
        self.port = None

    def open(self, **kw):
        with netns.entered(self.pair.a):
            self.port = open_xdp_port(self.pair.veth_a, [ADDR_A], self.raw_a, 64, **kw)
        return self.port

    def xdp(self):
        with netns.entered(self.pair.a):
            return bpf.xdp_query(self.ifindex_a)

    def recv(self, want, timeout=5.0):
        """recv_batch until ``want`` datagrams came (bounded in time)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            got += self.port.recv_batch(64)
            if len(got) < want:
                time.sleep(0.005)
        return got

    def close(self):
        if self.port is not None:
            self.port.close()
        self.raw_a.close()
        self.raw_b.close()


@pytest.fixture
def rig():
    with gre_pair() as pair:
        r = Rig(pair)
        try:
            yield r
        finally:
            r.close()


def test_send_batch_reaches_the_peer_with_a_correct_ipv4_header(rig):
    port = rig.open()
    assert port.kind == "xdp"
    assert "native XDP" in port.describe()
    assert port.set_nexthop(ADDR_B, rig.mac_b)
    assert port.nexthops() == {ADDR_B: (rig.mac_b.hex(":"), ADDR_A, 1500)}
    frames = [pptp_gre(seq=i, payload=b"P" * (i * 13 % 1400) + b"#%03d" % i) for i in range(200)]
    for k in range(0, 200, 50):
        port.send_batch([(f, ADDR_B) for f in frames[k:k + 50]])
    got = wait_for(lambda: (rig.__dict__.setdefault("b", []).extend(drain(rig.raw_b))
                            or len(rig.b) >= 200) and rig.b, timeout=5, what="200 GRE at B")
    assert len(got) == 200
    ids = []
    for i, d in enumerate(got):
        ip = d[:20]
        assert ip[0] == 0x45 and ip[8] == 64 and ip[9] == 47
        assert struct.unpack("!H", ip[6:8])[0] == 0x4000            # DF, not a fragment
        assert struct.unpack("!H", ip[2:4])[0] == len(d) == 20 + len(frames[i])
        assert ip[12:16] == socket.inet_aton(ADDR_A) and ip[16:20] == socket.inet_aton(ADDR_B)
        assert ip_checksum(ip) == 0
        assert d[20:] == frames[i]
        ids.append(struct.unpack("!H", ip[4:6])[0])
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(ids, ids[1:], strict=False))
    c = port.counters()
    assert c["tx_packets"] == 200 and c["tx_slowpath"] == 0 and c["tx_errors"] == 0


def test_peer_gre_arrives_in_recv_batch_not_in_the_kernel(rig):
    port = rig.open()
    delivered0 = snmp(rig.pair.a)["InDelivers"]
    sent = [pptp_gre(seq=i, call_id=0x1234, payload=b"x" * 100 + b"%04d" % i) for i in range(300)]
    for f in sent:
        rig.raw_b.sendto(f, (ADDR_A, 0))
    got = rig.recv(300)
    assert len(got) == 300
    assert [d[20:] for d in got] == sent
    assert all(d[12:16] == socket.inet_aton(ADDR_B) and ip_checksum(d[:20]) == 0 for d in got)
    c = port.counters()
    assert c["rx_packets"] == 300 and c["rx_slowpath"] == 0 and c["rx_not_ours"] == 0
    # the kernel of A delivered none of them (they never reached its IP layer)
    assert snmp(rig.pair.a)["InDelivers"] - delivered0 < 10


def test_tcp_1723_and_ping_keep_working(rig):
    port = rig.open()
    assert icmp_echo(rig.pair.b, ADDR_A, count=3) == 3
    lsn = netns.open_socket(rig.pair.a, socket.AF_INET, socket.SOCK_STREAM)
    lsn.bind((ADDR_A, 1723))
    lsn.listen(1)
    cli = netns.open_socket(rig.pair.b, socket.AF_INET, socket.SOCK_STREAM)
    try:
        cli.settimeout(5)
        lsn.settimeout(5)
        cli.connect((ADDR_A, 1723))
        conn, _ = lsn.accept()
        conn.settimeout(5)
        cli.sendall(b"x" * 100000)
        n = 0
        while n < 100000:
            n += len(conn.recv(65536))
        conn.sendall(b"SCCRP")
        assert cli.recv(16) == b"SCCRP"
        conn.close()
    finally:
        cli.close()
        lsn.close()
    assert port.counters()["rx_packets"] == 0


def test_non_pptp_gre_goes_to_the_kernel_and_the_slow_path(rig):
    port = rig.open()
    rig.raw_b.sendto(pptp_gre(version=0, payload=b"plain-gre"), (ADDR_A, 0))
    rig.raw_b.sendto(pptp_gre(proto=0x0800, payload=b"not-ppp"), (ADDR_A, 0))
    got = rig.recv(2)
    assert sorted(d[-9:] for d in got) == sorted([b"plain-gre", b"..not-ppp"[-9:]]) or \
        {d.endswith(b"plain-gre") or d.endswith(b"not-ppp") for d in got} == {True}
    assert len(got) == 2
    assert port.counters()["rx_slowpath"] == 2


def test_fragmented_gre_arrives_through_the_slow_path(rig):
    port = rig.open()
    big = pptp_gre(seq=9, payload=b"F" * 3000 + b"end")
    rig.raw_b.sendto(big, (ADDR_A, 0))          # > 1500: B's kernel fragments it
    got = rig.recv(1)
    assert len(got) == 1 and got[0][20:] == big
    c = port.counters()
    assert c["rx_slowpath"] == 1 and c["rx_packets"] == 1


def test_frames_above_the_mtu_or_without_nexthop_take_the_slow_path(rig):
    port = rig.open()
    port.send_batch([(pptp_gre(payload=b"no-nexthop"), ADDR_B)])
    port.set_nexthop(ADDR_B, rig.mac_b)
    big = pptp_gre(payload=b"B" * 2000 + b"big")
    port.send_batch([(big, ADDR_B), (pptp_gre(payload=b"fast"), ADDR_B)])
    assert port.clear_nexthop(ADDR_B)
    port.send_batch([(pptp_gre(payload=b"cleared"), ADDR_B)])
    seen = []
    wait_for(lambda: seen.extend(drain(rig.raw_b)) or len(seen) >= 4, timeout=5, what="4 at B")
    tails = sorted(d[-10:] for d in seen)
    assert len(seen) == 4
    assert any(d.endswith(b"no-nexthop") for d in seen) and any(d.endswith(b"cleared") for d in seen)
    assert any(d[20:] == big for d in seen) and any(d.endswith(b"fast") for d in seen), tails
    c = port.counters()
    assert c["tx_slowpath"] == 3 and c["tx_packets"] == 1


def test_close_detaches_and_the_kernel_path_is_back(rig):
    port = rig.open()
    att = rig.xdp()
    assert att.mode == bpf.XDP_ATTACHED_DRV
    with netns.entered(rig.pair.a):
        assert bpf.prog_info_by_id(att.prog_id).name == bpf.PROG_NAME_XDP_GRE
    port.close()
    port.close()                                  # idempotent
    assert not rig.xdp().attached
    assert port.recv_batch(8) == []
    rig.raw_b.sendto(pptp_gre(payload=b"kernel-again"), (ADDR_A, 0))
    got = wait_for(lambda: drain(rig.raw_a), timeout=5, what="GRE at A's raw socket")
    assert got[0].endswith(b"kernel-again")


def test_generic_mode(rig):
    port = rig.open(mode="generic")
    assert rig.xdp().mode == bpf.XDP_ATTACHED_SKB
    rig.raw_b.sendto(pptp_gre(payload=b"generic"), (ADDR_A, 0))
    got = rig.recv(1)
    assert got and got[0].endswith(b"generic") and port.counters()["rx_slowpath"] == 0


_CHILD = textwrap.dedent("""
    import socket, sys, time
    from fastpptp.net.rawgre import open_gre_socket
    from fastpptp.net.xdpport import open_xdp_port
    port = open_xdp_port(sys.argv[1], [sys.argv[2]], open_gre_socket(), 64)
    print("up", flush=True)
    time.sleep(60)
""")


def test_sigkill_of_the_owner_leaves_no_program(rig):
    p = rig.pair.spawn(rig.pair.a, [sys.executable, "-c", _CHILD, rig.pair.veth_a, ADDR_A],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline()
        assert line.strip() == b"up", p.stderr.read() if p.poll() is not None else line
        assert rig.xdp().attached
        # a second owner is refused while the first lives
        with pytest.raises(XdpUnavailable, match="another fastpptp process"):
            rig.open()
    finally:
        kill_process(p, signal.SIGKILL, grace=5)
    wait_for(lambda: not rig.xdp().attached, timeout=5, what="XDP gone after SIGKILL")
    rig.port = None
    rig.open()                                    # and the hook is ours to take again
    assert rig.xdp().attached


def test_stale_program_of_ours_attached_the_legacy_way_is_replaced(rig):
    with netns.entered(rig.pair.a):
        with bpf.create_addr_map([ADDR_A]) as m, \
                bpf.map_create(bpf.BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "fastpptp_xsks") as x, \
                bpf.load_xdp_gre_redirect(m, x) as stale:
            stale_id = stale.info().id
            bpf.xdp_attach_legacy(rig.ifindex_a, stale, bpf.XDP_FLAGS_DRV_MODE)
        # our fds are closed: the program outlives them (what an old run left behind)
        assert rig.xdp().prog_id == stale_id
        assert xdp_unavailable_reason(rig.pair.veth_a) is None
    port = rig.open()
    att = rig.xdp()
    assert att.attached and att.prog_id != stale_id
    rig.raw_b.sendto(pptp_gre(payload=b"after-replace"), (ADDR_A, 0))
    got = rig.recv(1)
    assert got and got[0].endswith(b"after-replace")
    port.close()
    assert not rig.xdp().attached


def test_someone_elses_program_is_reported_and_left_alone(rig):
    a = bpf.Asm()
    a.mov_imm(bpf.R0, bpf.XDP_PASS)
    a.exit()
    with netns.entered(rig.pair.a):
        with bpf.prog_load(bpf.BPF_PROG_TYPE_XDP, a.assemble(), "other_xdp") as other:
            other_id = other.info().id
            bpf.xdp_attach_legacy(rig.ifindex_a, other, bpf.XDP_FLAGS_SKB_MODE)
        try:
            reason = xdp_unavailable_reason(rig.pair.veth_a)
            assert reason and "other_xdp" in reason and "someone else" in reason
            with pytest.raises(XdpUnavailable, match="other_xdp"):
                open_xdp_port(rig.pair.veth_a, [ADDR_A], rig.raw_a, 64)
            assert rig.xdp().prog_id == other_id          # untouched
        finally:
            bpf.xdp_detach_legacy(rig.ifindex_a, bpf.XDP_ATTACHED_SKB)


_NOCAPS = textwrap.dedent("""
    import os
    from fastpptp.net.xdpport import xdp_facility_reason
    os.setgid(65534); os.setuid(65534)        # nobody: no capabilities left
    print(xdp_facility_reason())
""")


def test_without_capabilities_the_reason_says_so():
    r = subprocess.run([sys.executable, "-c", _NOCAPS], capture_output=True, text=True, timeout=30,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert r.returncode == 0, r.stderr
    assert "CAP_BPF" in r.stdout and "CAP_NET_ADMIN" in r.stdout


def test_multi_queue_veth_gets_a_socket_per_queue():
    with gre_pair() as pair:
        # a second, 4-queue veth pair between the same namespaces
        pair.run(pair.a, ["ip", "link", "add", "xq0", "numtxqueues", "4", "numrxqueues", "4",
                          "type", "veth", "peer", "name", "xq1", "numtxqueues", "4",
                          "numrxqueues", "4", "netns", pair.b])
        pair.run(pair.a, ["ip", "addr", "add", "203.0.113.1/24", "dev", "xq0"])
        pair.run(pair.b, ["ip", "addr", "add", "203.0.113.2/24", "dev", "xq1"])
        pair.run(pair.a, ["ip", "link", "set", "xq0", "up"])
        pair.run(pair.b, ["ip", "link", "set", "xq1", "up"])
        raw_a = raw_gre_socket(pair.a)
        raw_b = raw_gre_socket(pair.b)
        try:
            with netns.entered(pair.a):
                port = open_xdp_port("xq0", ["203.0.113.1"], raw_a, 64)
            try:
                assert port.nq == 4 and len(port.xsk_fds()) == 4
                assert len(port.poll_fds()) == 5            # 4 AF_XDP + the slow path
                # B's sockets hash to different tx queues -> different rx queues of xq0
                socks = [raw_gre_socket(pair.b) for _ in range(8)]
                try:
                    for i, s in enumerate(socks):
                        for j in range(10):
                            s.sendto(pptp_gre(seq=j, call_id=i, payload=b"q"), ("203.0.113.1", 0))
                    got = []
                    deadline = time.monotonic() + 5
                    while len(got) < 80 and time.monotonic() < deadline:
                        got += port.recv_batch(64)
                        time.sleep(0.005)
                    assert len(got) == 80
                    assert port.counters()["rx_slowpath"] == 0
                finally:
                    for s in socks:
                        s.close()
            finally:
                port.close()
        finally:
            raw_a.close()
            raw_b.close()
