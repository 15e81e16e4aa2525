"""The ``packet`` GRE port (fastpptp/_port_packet.pyx, fastpptp/net/packetport.py) in network
namespaces joined by a veth: A 198.51.100.1 (the port) <-> B 198.51.100.2 (a raw GRE
socket, an AF_PACKET injector, the kernel's own stack).

What is shown: frames from ``send_batch`` reach B with a correct IPv4 header; GRE sent to A
comes out of ``recv_batch`` and *not* also out of the kernel (no raw-socket copy, no
IpInUnknownProtos, no ICMP protocol-unreachable); ping, TCP 1723 and non-PPTP GRE keep
working; fragments come in through the slow path; no nexthop -> slow path, counted; a burst
larger than the ring is counted as ring-full; the cBPF filter agrees with the TCX drop
program on what is PPTP GRE for us (same frame table).  Every test runs on both receive
rings, TPACKET_V2 (the default) and TPACKET_V3 (the ``ring`` fixture); a lone frame is
handed over at once on V2 (no block retire timer to wait for).
"""
from __future__ import annotations

import contextlib
import select
import socket
import struct
import time

import pytest

from fastpptp.net import netlink, netns
from fastpptp.net.packetport import open_packet_port, packet_unavailable_reason
from fastpptp.tools.netrig import run_in, wait_for
from support.grerig import (ADDR_A, ADDR_B, OTHER, drain, gre_pair, icmp_echo, ifindex,
                            ip_checksum, pptp_gre, raw_gre_socket, snmp)

pytestmark = pytest.mark.netns

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0


def _gre_io_missing() -> str | None:
    try:
        from fastpptp._port_packet import PacketPort  # noqa: F401
    except ImportError as exc:
        return f"compiled port missing (make build): {exc}"
    with gre_pair(prefix="packetq") as rig, netns.entered(rig.a):
        return packet_unavailable_reason(rig.veth_a)


@pytest.fixture(autouse=True, scope="module")
def _need_packet_port():
    reason = _gre_io_missing()
    if reason:
        pytest.skip(reason)


RING = {"tpacket_version": 2}


@pytest.fixture(autouse=True, params=[2, 3], ids=["tpacket_v2", "tpacket_v3"])
def ring(request):
    """The receive ring version every port of the test opens with."""
    RING["tpacket_version"] = request.param
    yield request.param
    RING["tpacket_version"] = 2


@contextlib.contextmanager
def port_in_a(rig, *, raw=True, drop=True, track=False, **kw):
    """A PacketPort on A's veth (slow path: a raw GRE socket in A unless ``raw`` is False)."""
    kw.setdefault("tpacket_version", RING["tpacket_version"])
    rs = raw_gre_socket(rig.a) if raw else None
    with netns.entered(rig.a):
        port = open_packet_port(rig.veth_a, [ADDR_A], rs, drop=drop, track=track, **kw)
    try:
        yield port, rs
    finally:
        port.close()
        if rs is not None:
            rs.close()


def mac_of(ns: str, dev: str) -> str:
    return netlink.get_link(dev, netns=ns).mac


def recv_until(port, want: int, timeout: float = 3.0, max: int = 64) -> list[bytes]:
    """recv_batch until ``want`` datagrams came or ``timeout`` (bounded)."""
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        got = port.recv_batch(max)
        out += got
        if not got:
            select.select(port.poll_fds(), [], [], 0.01)
    return out


def recv_raw(s: socket.socket, want: int, timeout: float = 3.0) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        select.select([s], [], [], 0.02)
        out += drain(s)
    return out


def ipv4(payload: bytes, *, src: str = ADDR_B, dst: str = ADDR_A, proto: int = 47,
         frag: int = 0, ihl: int = 5, ident: int = 1, csum: bool = True) -> bytes:
    opts = b"\x01" * ((ihl - 5) * 4)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, frag, 64,
                      proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + opts
    if csum:
        c = ip_checksum(hdr)
        hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + payload


def eth(dst_mac: str, src_mac: str, payload: bytes, ethertype: int = 0x0800) -> bytes:
    return (bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
            + struct.pack("!H", ethertype) + payload)


def injector(rig) -> socket.socket:
    s = netns.open_socket(rig.b, socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((rig.veth_b, 0))
    return s


# ------------------------------------------------------------------------------ pure


def test_gre_filter_shape():
    from fastpptp._port_packet import gre_filter
    prog = gre_filter(["198.51.100.1", "198.51.100.7"])
    assert prog[-1] == (0x06, 0, 0, 0)                       # ret #0: drop
    assert prog[-2][0] == 0x06 and prog[-2][3] > 0           # ret #snap: accept
    cmp = [p for p in prog if p[0] == 0x15 and p[3] in (0xC6336401, 0xC6336407)]
    assert len(cmp) == 2
    for i, (code, jt, jf, _k) in enumerate(prog):
        if code & 0x07 == 0x05:
            assert i + 1 + jt < len(prog) and i + 1 + jf < len(prog)
    none = gre_filter([])
    assert all(p[3] not in (0xC6336401,) for p in none)
    assert none[-1] == (0x06, 0, 0, 0)
    with pytest.raises(ValueError):
        gre_filter([f"198.18.{i // 250}.{i % 250}" for i in range(201)])
    with pytest.raises(ValueError):
        gre_filter(["2001:db8::1"])


# ------------------------------------------------------------------------------ transmit


def test_send_batch_arrives_with_a_correct_ipv4_header():
    with gre_pair(prefix="packet") as rig, port_in_a(rig) as (port, _rs):
        rb = raw_gre_socket(rig.b)
        port.set_nexthop(ADDR_B, mac_of(rig.b, rig.veth_b), ADDR_A, 1500)
        frames = [pptp_gre(seq=i, payload=bytes([i]) * (40 + i)) for i in range(20)]
        port.send_batch([(f, ADDR_B) for f in frames])
        got = recv_raw(rb, 20)
        assert len(got) == 20
        ids = []
        for pkt, gre in zip(got, frames, strict=True):
            hdr = pkt[:20]
            ver_ihl, _tos, tot, ident, frag, ttl, proto, _c, src, dst = struct.unpack(
                "!BBHHHBBH4s4s", hdr)
            assert ver_ihl == 0x45 and tot == 20 + len(gre) == len(pkt)
            assert frag == 0x4000 and ttl == 64 and proto == 47           # DF, TTL 64, GRE
            assert socket.inet_ntoa(src) == ADDR_A and socket.inet_ntoa(dst) == ADDR_B
            assert ip_checksum(hdr) == 0
            assert pkt[20:] == gre
            ids.append(ident)
        assert ids == [(ids[0] + i) & 0xFFFF for i in range(20)]
        c = port.counters()
        assert c["tx_packets"] == 20 and c["tx_slowpath"] == 0 and c["tx_errors"] == 0
        rb.close()


def test_no_nexthop_goes_slow_path_and_is_counted():
    with gre_pair(prefix="packet") as rig:
        rb = raw_gre_socket(rig.b)
        with port_in_a(rig) as (port, _rs):
            port.send_batch([(pptp_gre(seq=i), ADDR_B) for i in range(5)])
            got = recv_raw(rb, 5)
            assert len(got) == 5 and all(p[20:] == pptp_gre(seq=i) for i, p in enumerate(got))
            c = port.counters()
            assert c["tx_slowpath"] == 5 and c["tx_packets"] == 5
            # larger than the entry's MTU: slow path too (the kernel fragments it)
            port.set_nexthop(ADDR_B, mac_of(rig.b, rig.veth_b), ADDR_A, 600)
            big = pptp_gre(payload=b"B" * 1000)
            port.send_batch([(big, ADDR_B), (pptp_gre(), ADDR_B)])
            got = recv_raw(rb, 2)
            assert sorted(len(p) for p in got) == sorted([20 + len(big), 20 + len(pptp_gre())])
            c = port.counters()
            assert c["tx_slowpath"] == 6 and c["tx_packets"] == 7
            assert port.clear_nexthop(ADDR_B) and not port.clear_nexthop(ADDR_B)
        with port_in_a(rig, raw=False) as (port, _):
            port.send_batch([(pptp_gre(), ADDR_B)])           # nowhere to go: an error, counted
            assert port.counters()["tx_errors"] == 1
        rb.close()


def test_nexthop_table_set_clear_many():
    with gre_pair(prefix="packet") as rig, port_in_a(rig, raw=False, nexthops=64) as (port, _):
        for round_ in range(5):          # churn: tombstones must not fill the table
            for i in range(64):
                port.set_nexthop(f"198.18.0.{i + 1}", "02:00:00:00:00:01", ADDR_A, 1500 - round_)
            assert len(port.nexthops()) == 64
            for i in range(64):
                assert port.clear_nexthop(f"198.18.0.{i + 1}")
            assert port.nexthops() == {}
        port.set_nexthop("198.18.0.1", "02:00:00:00:00:01", ADDR_A, 1400)
        assert port.nexthops() == {"198.18.0.1": ("02:00:00:00:00:01", ADDR_A, 1400)}
        with pytest.raises(OverflowError):
            for i in range(200):
                port.set_nexthop(f"198.18.1.{i + 1}", "02:00:00:00:00:02", ADDR_A, 1500)
        with pytest.raises(ValueError):
            port.set_nexthop("198.18.0.1", "02:00:00:00:00", ADDR_A, 1500)


# ------------------------------------------------------------------------------ receive


def test_gre_to_us_comes_from_the_ring_and_the_kernel_never_sees_it():
    with gre_pair(prefix="packet") as rig, port_in_a(rig) as (port, rs):
        rb = raw_gre_socket(rig.b)
        ip0, icmp0 = snmp(rig.a), snmp(rig.a, "Icmp")
        frames = [pptp_gre(seq=i, payload=bytes([i]) * 30) for i in range(40)]
        for f in frames:
            rb.sendto(f, (ADDR_A, 0))
        got = recv_until(port, 40)
        assert [g[20:] for g in got] == frames                 # in order, IPv4 header in front
        assert all(socket.inet_ntoa(g[12:16]) == ADDR_B for g in got)
        time.sleep(0.1)
        assert drain(rs) == []                                 # no duplicate through the kernel
        ip1, icmp1 = snmp(rig.a), snmp(rig.a, "Icmp")
        assert ip1["InUnknownProtos"] == ip0["InUnknownProtos"]
        assert icmp1["OutDestUnreachs"] == icmp0["OutDestUnreachs"]
        c = port.counters()
        assert c["rx_packets"] == 40 and c["rx_slowpath"] == 0 and c["rx_ring_full"] == 0
        rb.close()


def test_without_the_drop_program_the_kernel_also_answers():
    """Why the TCX program is there: the ring alone leaves the kernel's GRE handling on."""
    with gre_pair(prefix="packet") as rig, port_in_a(rig, raw=False, drop=False) as (port, _):
        rb = raw_gre_socket(rig.b)
        ip0 = snmp(rig.a)
        for i in range(5):
            rb.sendto(pptp_gre(seq=i), (ADDR_A, 0))
        assert len(recv_until(port, 5)) == 5
        wait_for(lambda: snmp(rig.a)["InUnknownProtos"] >= ip0["InUnknownProtos"] + 5, 3,
                 what="the kernel counting the GRE as unknown protocol")
        rb.close()


def test_a_lone_frame_is_handed_over_at_once_on_v2(ring):
    # V3 would hold it in an unfilled block until the retire timer (here 1 s) fires;
    # V2 marks the frame ours and wakes the socket as it lands
    with gre_pair(prefix="packet") as rig, port_in_a(rig, raw=False, retire_ms=1000) as (port, _):
        rb = raw_gre_socket(rig.b)
        for i in range(3):
            t0 = time.monotonic()
            rb.sendto(pptp_gre(seq=i), (ADDR_A, 0))
            readable = select.select(port.poll_fds(), [], [], 3.0)[0]
            waited = time.monotonic() - t0
            got = port.recv_batch(8)
            assert [g[20:] for g in got] == [pptp_gre(seq=i)]
            if ring == 2:
                assert readable and waited < 0.2, waited
            time.sleep(0.05)
        rb.close()


def test_partial_block_walks_and_releases_across_bursts():
    with gre_pair(prefix="packet") as rig, port_in_a(rig, raw=False) as (port, _):
        rb = raw_gre_socket(rig.b)
        for round_ in range(3):
            frames = [pptp_gre(seq=round_ * 100 + i) for i in range(50)]
            for f in frames:
                rb.sendto(f, (ADDR_A, 0))
            got = recv_until(port, 50, max=7)
            assert [g[20:] for g in got] == frames
        assert port.counters()["rx_packets"] == 150
        rb.close()


def test_other_traffic_keeps_working_ping_tcp_1723_and_non_pptp_gre():
    with gre_pair(prefix="packet") as rig, port_in_a(rig) as (port, rs):
        assert icmp_echo(rig.b, ADDR_A, count=2) == 2
        assert icmp_echo(rig.a, ADDR_B, count=2) == 2
        srv = netns.open_socket(rig.a, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind((ADDR_A, 1723))
        srv.listen(1)
        cli = netns.open_socket(rig.b, socket.AF_INET, socket.SOCK_STREAM)
        cli.settimeout(3)
        cli.connect((ADDR_A, 1723))
        srv.settimeout(3)
        conn, _ = srv.accept()
        conn.settimeout(3)
        cli.sendall(b"start-control-connection-request")
        assert conn.recv(100) == b"start-control-connection-request"
        conn.sendall(b"reply")
        assert cli.recv(100) == b"reply"
        for s in (conn, cli, srv):
            s.close()
        # GRE version 0 (plain GRE, not PPTP): the kernel delivers it, the ring ignores it
        rb = raw_gre_socket(rig.b)
        plain = struct.pack("!HH", 0, 0x0800) + b"\x45" + b"\0" * 27
        rb.sendto(plain, (ADDR_A, 0))
        got = recv_raw(rs, 1)
        assert [g[20:] for g in got] == [plain]
        assert port.recv_batch() == []               # the ring did not take it
        assert port.counters()["rx_packets"] == 0
        rb.close()


def test_fragmented_gre_comes_in_through_the_slow_path():
    with gre_pair(prefix="packet", mtu=1000) as rig, port_in_a(rig) as (port, _rs):
        rb = raw_gre_socket(rig.b)
        rb.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        big = pptp_gre(seq=9, payload=b"F" * 2500)                # 3 fragments on MTU 1000
        rb.sendto(big, (ADDR_A, 0))
        got = recv_until(port, 1)
        assert len(got) == 1 and got[0][20:] == big                # reassembled by the kernel
        c = port.counters()
        assert c["rx_slowpath"] == 1 and c["rx_packets"] == 1
        rb.close()


def test_ring_full_is_counted_not_lost_silently():
    # 2 blocks of 16 KiB hold a few dozen 300-byte frames; send far more, read nothing
    with gre_pair(prefix="packet") as rig, port_in_a(rig, raw=False, block_size=16384,
                                                       block_nr=2, frame_size=2048) as (port, _):
        rb = raw_gre_socket(rig.b)
        sent = 400
        for i in range(sent):
            rb.sendto(pptp_gre(seq=i, payload=b"R" * 300), (ADDR_A, 0))
            if i % 50 == 49:
                time.sleep(0.005)           # stay below the veth backlog: lose only in the ring
        time.sleep(0.05)
        got = recv_until(port, sent, timeout=1.0)
        c = port.counters()
        assert c["rx_ring_full"] > 0
        assert len(got) + c["rx_ring_full"] == sent, (len(got), c)
        assert port.ring_stats()["packets"] == sent
        # the ring unfreezes once drained: the next frames come through again
        for i in range(10):
            rb.sendto(pptp_gre(seq=1000 + i), (ADDR_A, 0))
        assert [g[20:] for g in recv_until(port, 10)] == [pptp_gre(seq=1000 + i) for i in range(10)]
        rb.close()


def test_set_local_addrs_follows_an_address_change():
    with gre_pair(prefix="packet") as rig, port_in_a(rig, raw=False) as (port, _):
        netlink.add_address(rig.veth_a, "198.51.100.11/24", netns=rig.a)
        rb = raw_gre_socket(rig.b)
        rb.sendto(pptp_gre(seq=1), ("198.51.100.11", 0))
        time.sleep(0.05)
        assert port.recv_batch() == []
        port.set_local_addrs([ADDR_A, "198.51.100.11"])
        assert port.owned[0].addrs() == sorted([ADDR_A, "198.51.100.11"])
        rb.sendto(pptp_gre(seq=2), ("198.51.100.11", 0))
        got = recv_until(port, 1)
        assert [g[20:] for g in got] == [pptp_gre(seq=2)]
        rb.close()


def _filter_table(mac_a: str, mac_b: str):
    g = pptp_gre()

    def f(payload, **kw):
        return eth(mac_a, mac_b, ipv4(payload, **kw))

    plain = f(g)
    vlan = plain[:12] + b"\x81\x00\x00\x05" + plain[12:]         # TCI: VLAN 5
    prio = plain[:12] + b"\x81\x00\xa0\x00" + plain[12:]         # TCI: PCP 5, VLAN 0
    return [
        ("PPTP GRE to us", f(g), True),
        ("PPTP GRE ack only (no sequence number)", f(pptp_gre(seq=None, payload=b"")), True),
        ("PPTP GRE with IP options (IHL 7)", f(g, ihl=7), True),
        ("DF set", f(g, frag=0x4000), True),
        ("to an address not ours", f(g, dst=OTHER), False),
        ("TCP", f(b"\0" * 20, proto=6), False),
        ("first fragment (MF)", f(g, frag=0x2000), False),
        ("later fragment (offset)", f(g, frag=0x0010), False),
        ("GRE version 0", f(pptp_gre(version=0)), False),
        ("GRE v1, not PPP", f(pptp_gre(proto=0x0800)), False),
        ("IPv6 EtherType", eth(mac_a, mac_b, ipv4(g), 0x86DD), False),
        ("802.1Q tagged, VLAN 5 (a VLAN interface's)", vlan, False),
        ("priority-tagged (VLAN 0, processed as untagged)", prio, True),
        ("truncated in the GRE header", f(g)[:36], False),
        ("another host's MAC (PACKET_OTHERHOST)", eth("02:00:00:00:00:77", mac_b, ipv4(g)), False),
        ("bad IPv4 header checksum", f(g, csum=False), False),
    ]


def test_ring_takes_exactly_pptp_gre_for_us():
    """The frame table of the TCX program's own test (tests/net/test_bpf.py), injected on
    the wire: what the ring hands out is what the drop program drops (checksum aside, which
    only the port checks, and counts)."""
    with gre_pair(prefix="packet") as rig, port_in_a(rig, raw=False) as (port, _):
        inj = injector(rig)
        table = _filter_table(mac_of(rig.a, rig.veth_a), mac_of(rig.b, rig.veth_b))
        for what, frame, ours in table:
            before = port.counters()
            inj.send(frame)
            got = recv_until(port, 1, timeout=0.3 if not ours else 3)
            assert (len(got) == 1) == ours, what
            if ours:
                assert got[0] == frame[18 if frame[12:14] == b"\x81\x00" else 14:], what
            if what.startswith("bad IPv4"):
                assert port.counters()["rx_not_ours"] == before["rx_not_ours"] + 1
        inj.close()


def test_describe_and_fds(ring):
    with gre_pair(prefix="packet") as rig, port_in_a(rig) as (port, rs):
        d = port.describe()
        assert f"TPACKET_V{ring}" in d and "raw IPPROTO_GRE" in d and "TCX" in d
        assert len(port.poll_fds()) == 2 and port.poll_fds()[1] == rs.fileno()
        assert port.kind == "packet" and port.tx_cap == 128


def test_unavailable_reasons():
    with gre_pair(prefix="packet") as rig, netns.entered(rig.a):
        assert packet_unavailable_reason(rig.veth_a) is None
        assert packet_unavailable_reason(ifindex(rig.a, rig.veth_a)) is None
        assert "not Ethernet" in packet_unavailable_reason("lo")
        assert "nosuch" in packet_unavailable_reason("nosuch0")
        assert packet_unavailable_reason(None) is not None


def test_gre_arriving_on_another_interface_comes_through_the_slow_path():
    """D (203.0.113.2) reaches A's port address 198.51.100.1 over a second link (A's
    203.0.113.1): the ring on the first link never sees it, the raw socket does."""
    with gre_pair(prefix="packet") as rig, port_in_a(rig) as (port, _rs):
        d = f"packetd{rig.a[len('packeta'):]}"
        netns.create(d)
        try:
            netlink.set_link_up("lo", netns=d)
            netlink.create_veth("pko0", "pko1", netns=rig.a, peer_netns=d)
            netlink.add_address("pko0", "203.0.113.1/24", netns=rig.a)
            netlink.add_address("pko1", "203.0.113.2/24", netns=d)
            netlink.set_link_up("pko0", netns=rig.a)
            netlink.set_link_up("pko1", netns=d)
            netlink.add_route("198.51.100.0/24", gateway="203.0.113.1", netns=d)
            rd = raw_gre_socket(d)
            frames = [pptp_gre(seq=i) for i in range(3)]
            for f in frames:
                rd.sendto(f, (ADDR_A, 0))
            got = recv_until(port, 3)
            assert [g[20:] for g in got] == frames
            assert all(socket.inet_ntoa(g[12:16]) == "203.0.113.2" for g in got)
            c = port.counters()
            assert c["rx_slowpath"] == 3 and c["rx_packets"] == 3
            rd.close()
        finally:
            netns.remove(d, missing_ok=True)


@pytest.mark.parametrize("drop,expect", [
    ("-bpf,-sys_admin", "TCX ingress drop program unavailable"),
    ("-net_raw", "AF_PACKET needs CAP_NET_RAW"),
])
def test_unavailable_without_capabilities(drop, expect):
    """What ``--gre-io auto`` hears when the capabilities are not there (setpriv drops
    them from the bounding set, so the child root process never has them)."""
    import shutil
    import sys
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    repo = __file__.rsplit("/tests/", 1)[0]
    with gre_pair(prefix="packet") as rig:
        code = ("from fastpptp.net.packetport import packet_unavailable_reason as r; "
                f"print(r({rig.veth_a!r}))")
        res = run_in(rig.a, ["setpriv", f"--bounding-set={drop}", sys.executable, "-c", code],
                     timeout=30, cwd=repo)
        assert expect in res.stdout, (res.stdout, res.stderr)


def test_jumbo_frames_both_ways_and_a_ring_too_small_for_the_mtu_is_refused():
    with gre_pair(prefix="packet", mtu=9000) as rig, port_in_a(rig) as (port, _rs):
        rb = raw_gre_socket(rig.b)
        big = pptp_gre(seq=5, payload=b"J" * 8000)
        rb.sendto(big, (ADDR_A, 0))
        got = recv_until(port, 1)
        assert [g[20:] for g in got] == [big] and port.counters()["rx_slowpath"] == 0
        port.set_nexthop(ADDR_B, mac_of(rig.b, rig.veth_b), ADDR_A, 9000)
        port.send_batch([(big, ADDR_B)])
        assert [g[20:] for g in recv_raw(rb, 1)] == [big]
        assert port.counters()["tx_slowpath"] == 0
        rb.close()
        small = {"block_size": 8192} if RING["tpacket_version"] == 3 else {"frame_size": 8192}
        with netns.entered(rig.a), pytest.raises(ValueError, match="too small for MTU 9000"):
            open_packet_port(rig.veth_a, [ADDR_A], None, track=False,
                             tpacket_version=RING["tpacket_version"], **small)
