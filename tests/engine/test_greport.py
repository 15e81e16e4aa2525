"""The GRE port contract (fastpptp/_greport.pxd) as the engine uses it: RawPort on its own
(batch receive/send, IP_RECVERR error queue) and both engines running on a port object."""
from __future__ import annotations

import os
import socket
import time

import pytest

from support.loopns import private_netns, raw_gre as _raw
from support.packets import gre, parse_gre, ppp, udp_packet
from fastpptp._greport import PORT_COUNTER_NAMES, GrePort, RawPort
from fastpptp.dataplane import EngineConfig

T_PEER = "198.51.100.2"
GRE_V1 = bytes([0x30, 0x01, 0x88, 0x0B, 0, 4, 0, 7, 0, 0, 0, 1]) + b"abcd"


@pytest.mark.netns
def test_raw_port_batches_both_ways_and_counts(request):
    netns, name = private_netns(request, "fpt-port")
    a, b = _raw(netns, name, "127.0.0.2"), _raw(netns, name, "127.0.0.3")
    try:
        pa, pb = RawPort(a, 8), RawPort(b, 8)
        assert pa.kind == "raw" and pa.poll_fds() == [a.fileno()] and "raw" in pa.describe()
        assert list(pa.counters()) == list(PORT_COUNTER_NAMES)
        pa.send_batch([(GRE_V1, "127.0.0.3")] * 20)     # more than one tx_cap (16): two flushes
        got, t_end = [], time.monotonic() + 5
        while len(got) < 20 and time.monotonic() < t_end:
            got += pb.recv_batch(8)                      # at most the port's batch per call
            time.sleep(0.01)
        assert len(got) == 20
        assert all(d[20:] == GRE_V1 and d[9] == 47 and d[12:16] == socket.inet_aton("127.0.0.2")
                   for d in got)
        assert pa.counters()["tx_packets"] == 20 and pa.counters()["tx_batches"] == 2
        assert pb.counters()["rx_packets"] == 20 and pb.counters()["rx_batches"] >= 3
    finally:
        a.close()
        b.close()


@pytest.mark.netns
def test_raw_port_reads_icmp_errors_from_the_error_queue(request):
    """Unconnected, with IP_RECVERR: the kernel's protocol-unreachable about a frame to a
    peer with no GRE listener lands in the socket's error queue; the port reads and counts
    it (an unread error queue would keep epoll reporting EPOLLERR: a busy loop)."""
    netns, name = private_netns(request, "fpt-port")
    a = _raw(netns, name, "127.0.0.2")
    try:
        pa = RawPort(a, 8)
        pa.send_batch([(GRE_V1, "127.0.0.9")] * 3)      # nobody listens for GRE on .9
        t_end = time.monotonic() + 5
        while pa.counters()["icmp_errors"] < 1 and time.monotonic() < t_end:
            pa.recv_batch()
            time.sleep(0.02)
        assert pa.counters()["icmp_errors"] >= 1
        assert pa.counters()["tx_packets"] == 3
        import select
        ep = select.epoll()
        ep.register(a.fileno(), select.EPOLLIN)
        pa.recv_batch()
        assert ep.poll(0.1) == [], "error queue left unread"
        ep.close()
    finally:
        a.close()


def test_raw_port_refuses_what_is_not_a_socket():
    r, w = os.pipe()
    try:
        with pytest.raises(OSError):
            RawPort(r)
        with pytest.raises(ValueError):
            RawPort(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), 0)
    finally:
        os.close(r)
        os.close(w)


def test_base_port_is_inert():
    p = GrePort()
    assert p.recv_batch() == [] and p.poll_fds() == [] and p.kind == "none"


@pytest.mark.netns
def test_engine_runs_on_a_port_object(Engine, request):
    """Both engines take a GrePort: GRE goes out through it (tx counted by the port), GRE
    from the peer comes in through it and reaches the TUN; the port is the caller's and is
    released by stop()."""
    netns, name = private_netns(request, "fpt-port")
    ga, gb = _raw(netns, name, "127.0.0.2"), _raw(netns, name, "127.0.0.3")
    ta, tb = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    port = RawPort(ga, 16)
    a = Engine(EngineConfig())
    a.add_session(1, 2, "127.0.0.3")
    a.set_data(1, True, True)
    gb.settimeout(5)
    tb.settimeout(5)
    try:
        a.start([ta.fileno()], port, vnet_hdr_len=0)
        assert a.gre_port is port
        for i in range(10):
            tb.send(udp_packet(dst=T_PEER, body=b"out%d" % i))
        out = []
        while len(out) < 10:
            d = gb.recv(65535)
            g = parse_gre(d[20:])
            if g["call_id"] == 2 and g.get("payload"):
                out.append(g)
        # and back: the peer's GRE (call ID 1, seq 1..5) reaches our TUN
        for seq in range(1, 6):
            gb.sendto(gre(1, seq=seq, payload=ppp(0x21, udp_packet(dst=T_PEER, body=b"in%d" % seq))),
                      ("127.0.0.2", 0))
        back = [tb.recv(65535) for _ in range(5)]
        assert all(b"in%d" % (k + 1) in back[k] for k in range(5))
        pc = a.port_counters()
        assert pc["tx_packets"] >= 10 and pc["rx_packets"] >= 5
    finally:
        a.stop()
        for s in (ga, gb, ta, tb):
            s.close()
    assert a.gre_port is None and a.port_counters() == {}
