"""I/O mode: the engine's own thread on a fake TUN (SOCK_SEQPACKET socketpair) and a fake GRE
socket (SOCK_DGRAM socketpair), and on real raw GRE sockets inside a private namespace."""
from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time
import tracemalloc

import pytest

from support.loopns import private_netns as _netns, raw_gre as _raw
from support.packets import PEER, data_in, dgram, gre, parse_gre, ppp, udp_packet
from fastpptp.dataplane import EngineConfig, load_engine

CID, PCID = 7, 0x99
T_IN, T_PEER = "198.51.100.1", "198.51.100.2"




def started(Engine, fakes, **cfg):
    e = Engine(EngineConfig(**cfg))
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno())
    return e


def test_io_forwards_both_ways_in_order(Engine, fakes):
    e = started(Engine, fakes)
    try:
        n = 2000
        out_pkts = [udp_packet(dst=T_PEER, body=b"o%06d" % i) for i in range(n)]
        in_pkts = [udp_packet(dst=T_IN, body=b"i%06d" % i) for i in range(n)]
        got_gre, got_tun = [], []
        for i in range(n):
            fakes.tun.send(out_pkts[i])
            fakes.gre.send(data_in(CID, i, in_pkts[i]))
            if i % 64 == 63:                       # keep the socket buffers from filling
                while len(got_gre) < i - 200:
                    got_gre.append(fakes.gre.recv(65535))
                while len(got_tun) < i - 200:
                    got_tun.append(fakes.tun.recv(65535))
        while len(got_tun) < n:
            got_tun.append(fakes.tun.recv(65535))
        while len(got_gre) < n:
            f = fakes.gre.recv(65535)
            if parse_gre(f)["seq"] is not None:        # skip ack-only packets
                got_gre.append(f)
        data = [parse_gre(f) for f in got_gre if parse_gre(f)["seq"] is not None][:n]
        assert [g["payload"][4:] for g in data] == out_pkts
        assert [g["seq"] for g in data] == list(range(n))
        assert got_tun == in_pkts
        c = e.counters(CID)
        assert c["rx_packets"] == n and c["tx_packets"] == n
    finally:
        e.stop()


def test_io_control_both_ways_and_ack_only(Engine, fakes):
    e = started(Engine, fakes, ack_delay=0.01)
    try:
        e.send_control(CID, 0xC021, b"\x09\x01\x00\x08abcd")
        g = parse_gre(fakes.gre.recv(65535))
        assert g["payload"] == b"\xff\x03\xc0\x21\x09\x01\x00\x08abcd" and g["seq"] == 0
        fakes.gre.send(dgram(gre(CID, seq=0, payload=ppp(0x8021, b"\x01\x01\x00\x04"))))
        r, _, _ = select.select([e.control_fd], [], [], 5)
        assert r, "control fd never became readable"
        assert e.recv_control() == [(CID, 0x8021, b"\x01\x01\x00\x04")]
        # nothing carries the pending ack: an ack-only follows within ack_delay
        g = parse_gre(fakes.gre.recv(65535))
        assert g["seq"] is None and g["ack"] == 0 and g["payload"] == b""
        assert e.counters(CID)["tx_acks"] == 1
    finally:
        e.stop()


def test_io_reorder_timeout_fires_without_traffic(Engine, fakes):
    e = started(Engine, fakes, reorder_timeout=0.05)
    try:
        p = [udp_packet(dst=T_IN, body=b"%d" % i) for i in range(3)]
        fakes.gre.send(data_in(CID, 0, p[0]))
        fakes.gre.send(data_in(CID, 2, p[2]))
        assert fakes.tun.recv(65535) == p[0]
        t0 = time.monotonic()
        assert fakes.tun.recv(65535) == p[2]         # released by the timer alone
        assert time.monotonic() - t0 < 2
        assert e.counters(CID)["lost"] == 1
    finally:
        e.stop()


def test_io_session_changes_while_running(Engine, fakes):
    e = started(Engine, fakes)
    try:
        for k in range(50):
            cid = 100 + k
            e.add_session(cid, 200 + k, "192.0.2.%d" % (10 + k), tun=1)
            e.add_route(cid, "10.1.0.%d" % k)
            fakes.tun.send(udp_packet(dst=T_PEER))
            e.remove_session(cid)
        for _ in range(50):
            assert parse_gre(fakes.gre.recv(65535))["call_id"] == PCID
        with pytest.raises(RuntimeError):
            e.process(0.0)
    finally:
        e.stop()
    e.stop()                                        # idempotent


# ------------------------------------------------------------------ real raw GRE sockets


@pytest.mark.netns
def test_raw_gre_ping_pong_allocates_no_python_objects(request):
    """Two compiled engines pass packets round a ring (TUN of A <-> TUN of B is one
    socketpair; A -> B over real raw GRE on loopback in a private namespace) while the test
    sleeps: 100 000 packets forwarded, and Python's allocated block count stays flat."""
    netns, name = _netns(request)
    Compiled = load_engine("compiled")
    ga, gb = _raw(netns, name, "127.0.0.2"), _raw(netns, name, "127.0.0.3")
    tx, ty = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a, b = Compiled(EngineConfig()), Compiled(EngineConfig())
    a.add_session(1, 2, "127.0.0.3")
    b.add_session(2, 1, "127.0.0.2")
    for e, c in ((a, 1), (b, 2)):
        e.set_data(c, True, True)
    for i in range(32):                              # 32 packets circulate
        ty.send(udp_packet(dst=T_PEER, body=b"ring%03d" % i))
    try:
        tracemalloc.start()
        a.start([tx.fileno()], ga.fileno())
        b.start([ty.fileno()], gb.fileno())
        time.sleep(0.2)                              # warm up: threads, first allocations
        blocks0 = sys.getallocatedblocks()
        tracemalloc.reset_peak()
        cur0, _ = tracemalloc.get_traced_memory()
        rx0 = b.counters(2)["rx_packets"]
        deadline = time.monotonic() + 60
        while b.counters(2)["rx_packets"] - rx0 < 100_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        forwarded = b.counters(2)["rx_packets"] - rx0
        cur1, peak = tracemalloc.get_traced_memory()
        blocks1 = sys.getallocatedblocks()
    finally:
        a.stop()
        b.stop()
        tracemalloc.stop()
        for s in (ga, gb, tx, ty):
            s.close()
    assert forwarded >= 100_000
    # the polling loop above allocates a little (dicts from counters()); nothing per packet
    assert blocks1 - blocks0 < 200
    assert peak - cur0 < 64 * 1024
    assert a.counters(1)["tx_packets"] >= forwarded and a.totals()["icmp_errors"] == 0


@pytest.mark.netns
def test_raw_gre_icmp_errors_counted_loop_survives(Engine, request):
    """A peer that does not listen: the kernel answers protocol-unreachable, the (connected)
    raw socket reports ENOPROTOOPT on a later call; counted, and the loop keeps forwarding."""
    netns, name = _netns(request)
    ga = _raw(netns, name, "127.0.0.2", peer="127.0.0.9")
    gb = _raw(netns, name, "127.0.0.3")
    t0a, t0b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    t1a, t1b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a = Engine(EngineConfig())
    a.add_session(1, 2, "127.0.0.9", tun=0)            # nobody there
    a.add_session(3, 4, "127.0.0.3", tun=1)            # gb listens
    for c in (1, 3):
        a.set_data(c, True, True)
    gb.settimeout(5)
    try:
        a.start([t0a.fileno(), t1a.fileno()], ga.fileno())
        for i in range(20):
            t0b.send(udp_packet(dst=T_PEER))
            time.sleep(0.005)
            t1b.send(udp_packet(dst=T_PEER, body=b"ok%d" % i))
        got = 0
        while got < 20:
            d = gb.recv(65535)
            if d[20:] and parse_gre(d[20:])["call_id"] == 4:
                got += 1
        t_end = time.monotonic() + 5
        while a.totals()["icmp_errors"] == 0 and time.monotonic() < t_end:
            t0b.send(udp_packet(dst=T_PEER))
            time.sleep(0.01)
    finally:
        a.stop()
        for s in (ga, gb, t0a, t0b, t1a, t1b):
            s.close()
    assert got == 20
    assert a.totals()["icmp_errors"] >= 1


# ------------------------------------------------------------------ TUN offloads (virtio_net_hdr)
def test_io_tso_super_packet_is_segmented_to_the_mtu(Engine, fakes):
    from support.packets import tcp_ok, tcp_segment, vnet
    e = Engine(EngineConfig())
    e.add_session(CID, PCID, PEER)
    e.set_ppp(CID, tx_acfc=False, tx_pfc=False, mtu=1400)
    e.set_data(CID, True, True)
    e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno(), vnet_hdr_len=12)
    try:
        data = bytes(i * 7 & 0xFF for i in range(5000))
        sp = tcp_segment(T_IN, T_PEER, 1000, data, partial=True)
        fakes.tun.send(vnet(flags=1, gso_type=1, hdr_len=40, gso_size=1460, csum_start=20,
                            csum_offset=16) + sp)
        # a small plain packet after it, with a zero header
        fakes.tun.send(vnet() + udp_packet(dst=T_PEER))
        frames = [parse_gre(fakes.gre.recv(65535)) for _ in range(5)]
        ips = [f["payload"][4:] for f in frames]
        assert [len(ip) for ip in ips[:4]] == [1400, 1400, 1400, 40 + 5000 - 3 * 1360]
        assert all(len(ip) <= 1400 and tcp_ok(ip) for ip in ips[:4])
        assert b"".join(ip[40:] for ip in ips[:4]) == data
        assert [struct.unpack("!I", ip[24:28])[0] for ip in ips[:4]] == [1000 + 1360 * k for k in range(4)]
        assert ips[4] == udp_packet(dst=T_PEER)
        assert [f["seq"] for f in frames] == list(range(5))
    finally:
        e.stop()


def test_io_gro_coalesces_in_order_segments(Engine, fakes):
    from support.packets import tcp_segment
    e = Engine(EngineConfig())
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    segs = [tcp_segment(T_PEER, T_IN, 5000 + 1000 * k, bytes([k]) * 1000, ident=k) for k in range(4)]
    for k, sg in enumerate(segs):
        fakes.gre.send(data_in(CID, k, sg))
    fakes.gre.send(data_in(CID, 4, udp_packet(dst=T_IN)))
    e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno(), vnet_hdr_len=12)
    try:
        m = fakes.tun.recv(65535)
        flags, gso_type, hdr_len, gso_size, cs, co, _ = struct.unpack("<BBHHHHH", m[:12])
        ip = m[12:]
        assert (gso_type, gso_size, cs, co) == (1, 1000, 20, 16) and flags & 1
        assert len(ip) == 40 + 4000 and ip[40:] == b"".join(bytes([k]) * 1000 for k in range(4))
        m = fakes.tun.recv(65535)
        assert m == bytes(12) + udp_packet(dst=T_IN)
        assert e.counters(CID)["rx_packets"] == 5
    finally:
        e.stop()


def test_io_vnet_without_offload_writes_one_by_one(Engine, fakes):
    from support.packets import tcp_segment
    e = Engine(EngineConfig(offload=False))
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    segs = [tcp_segment(T_PEER, T_IN, 5000 + 100 * k, b"x" * 100, ident=k) for k in range(3)]
    for k, sg in enumerate(segs):
        fakes.gre.send(data_in(CID, k, sg))
    e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno(), vnet_hdr_len=12)
    try:
        assert [fakes.tun.recv(65535) for _ in range(3)] == [bytes(12) + sg for sg in segs]
    finally:
        e.stop()


@pytest.mark.netns
def test_real_tun_offloads_against_the_kernel(Engine, request):
    """A real TUN with IFF_VNET_HDR + TSO/CSUM offloads: the kernel's TCP super-packets leave
    as MTU-sized GRE frames with correct checksums and a clamped MSS, and GRO-coalesced
    writes of the peer's segments are accepted by the kernel's TCP."""
    from support.packets import tcp_ok, tcp_segment
    from fastpptp.net import tun as tunmod
    netns, name = _netns(request)
    with netns.entered(name):
        dev = tunmod.open_tun("fpte0", vnet_hdr=True, offload=True)
        assert os.system("ip addr add 198.51.100.1 peer 198.51.100.2 dev fpte0 && "
                         "ip link set fpte0 mtu 1400 up") == 0
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ga = _raw(netns, name, "127.0.0.2")
    gb = _raw(netns, name, "127.0.0.3")
    gb.settimeout(5)
    e = Engine(EngineConfig())
    e.add_session(1, 2, "127.0.0.3")
    e.set_ppp(1, tx_acfc=False, tx_pfc=False, mtu=1400)
    e.set_data(1, True, True)

    def recv_ip():
        """Next data frame from the engine: the IP packet inside (skips ack-only)."""
        while True:
            d = gb.recv(65535)
            g = parse_gre(d[(d[0] & 15) * 4:])
            if g["seq"] is not None and g["payload"][:4] == b"\xff\x03\x00\x21":
                return g["payload"][4:]                # (IPv6 router solicitations skipped)

    peer_seq = [0]

    def to_engine(ip):
        gb.sendto(gre(1, seq=peer_seq[0], payload=ppp(0x21, ip)), ("127.0.0.2", 0))
        peer_seq[0] += 1

    try:
        assert e.start([dev.fd], ga.fileno()) is None
        cli.setblocking(False)
        with pytest.raises(BlockingIOError):
            cli.connect(("198.51.100.2", 5201))
        syn = recv_ip()
        sport, _, cseq = struct.unpack("!HHI", syn[20:28])
        assert syn[33] & 0x02 and tcp_ok(syn)
        from support.packets import tcp_mss
        assert tcp_mss(syn) <= 1360                   # clamped (or already small)
        # SYN-ACK from the "server": MSS 1360, window 65535
        opts = struct.pack("!BBH", 2, 4, 1360)
        tcp = struct.pack("!HHIIBBHHH", 5201, sport, 777, cseq + 1, 6 << 4, 0x12, 65535, 0, 0) + opts
        from support.packets import csum
        ps = bytes([198, 51, 100, 2, 198, 51, 100, 1]) + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", csum(ps + tcp)) + tcp[18:]
        to_engine(ipv4_pkt("198.51.100.2", "198.51.100.1", tcp))
        t_end = time.monotonic() + 5
        while True:                                    # handshake done?
            _, w, _ = select.select([], [cli], [], 0.1)
            if w or time.monotonic() > t_end:
                break
        assert cli.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        data = bytes(i * 13 & 0xFF for i in range(12000))
        cli.setblocking(True)
        cli.sendall(data)
        got = {}
        while sum(len(v) for v in got.values()) < len(data):
            ip = recv_ip()
            assert len(ip) <= 1400 and tcp_ok(ip)
            seq = struct.unpack("!I", ip[24:28])[0]
            if len(ip) > 40 + (ip[32] >> 4) * 4 - 20:
                got[seq] = ip[20 + (ip[32] >> 4) * 4:]
        assert b"".join(got[k] for k in sorted(got)) == data
        # the other way: 4 segments from the server, coalesced into one TUN write
        srv_data = [bytes([65 + k]) * 1000 for k in range(4)]
        for k, chunk in enumerate(srv_data):
            seg = tcp_segment("198.51.100.2", "198.51.100.1", 778 + 1000 * k, chunk,
                              ack=cseq + 1 + len(data), ident=k)
            to_engine(_retarget(seg, 5201, sport))
        cli.settimeout(5)
        rx = b""
        while len(rx) < 4000:
            rx += cli.recv(65536)
        assert rx == b"".join(srv_data)
        assert e.counters(1)["rx_packets"] >= 5
    finally:
        e.stop()
        cli.close()
        dev.close()
        ga.close()
        gb.close()


def ipv4_pkt(src, dst, tcp):
    from support.packets import ipv4
    return ipv4(src, dst, tcp, proto=6, frag=0x4000)


def _retarget(pkt, sport, dport):
    """Rewrite the TCP ports of an IPv4/TCP packet and fix its checksum."""
    from support.packets import csum
    ihl = (pkt[0] & 15) * 4
    tcp = bytearray(pkt[ihl:])
    tcp[0:4] = struct.pack("!HH", sport, dport)
    tcp[16:18] = b"\0\0"
    ps = pkt[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    tcp[16:18] = struct.pack("!H", csum(ps + bytes(tcp)))
    return pkt[:ihl] + bytes(tcp)


def test_io_tun_eof_does_not_spin(Engine, fakes):
    e = started(Engine, fakes)
    try:
        fakes.tun.close()                               # the far end of the fake TUN goes away
        time.sleep(0.3)
        t0 = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - t0 < 0.25          # the loop sleeps, it does not spin
        for i in range(2):                              # the TUN write fails; the loop goes on
            fakes.gre.send(data_in(CID, i, udp_packet(dst=T_IN)))
            t_end = time.monotonic() + 5
            while e.counters(CID)["rx_packets"] == i and time.monotonic() < t_end:
                time.sleep(0.01)
        assert e.counters(CID)["rx_packets"] == 2
    finally:
        e.stop()
