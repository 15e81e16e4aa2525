"""Back-pressure from the GRE port to the TUN reads (issue 9), both twins.

With stateless MPPE a frame encrypted and then thrown away by a full port spends a
coherency count the peer must follow; the I/O loop must instead stop reading the TUNs while
the port has no room (``tx_room`` 0: ``tx_full``, ``tun_paused``) so that the kernel's TUN
queue drops before encryption, and resume when the port drains.

The fake port is a RawPort over an AF_UNIX datagram socketpair whose far end the test does
not read at first: its small send buffer fills exactly as a real socket's does (EAGAIN, then
poll(2) not writable until the far end reads).  The fake TUN is a SEQPACKET socketpair whose
test end sends without blocking: what its buffer does not take is the TUN queue's drop.
"""
from __future__ import annotations

import socket
import time

import pytest

from fastpptp._greport import RawPort
from fastpptp.crypto.mppe import MppeDecryptor, parse_header
from fastpptp.dataplane import EngineConfig
from support.packets import PEER, parse_gre, udp_packet

CID, PCID = 7, 0x99
KEY = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")
T_PEER = "198.51.100.2"


def wait_for(cond, limit=5.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def drain(sock, out, limit=0.3):
    """Read the far end of the fake port until it has been quiet for ``limit`` s."""
    sock.settimeout(limit)
    try:
        while True:
            out.append(sock.recv(65535))
    except (socket.timeout, BlockingIOError):
        pass


# rows: payload bytes per TUN packet, SO_SNDBUF of the port's socket, packets offered.
# A socket port's tx_room trusts poll(2): writable means room for a batch, which holds when
# the send buffer is a few batches deep (an AF_UNIX socket is writable with 3/4 of it free,
# an inet one with 1/2; the engine asks 4 MB): 64 frames of ~2.5 kB truesize fit in 3/4 of
# the doubled 128 kB.
ROWS = [
    pytest.param(1200, 128 << 10, 3000, id="1200B-128k"),
    pytest.param(200, 64 << 10, 4000, id="200B-64k"),
]


@pytest.mark.parametrize("size,sndbuf,offered", ROWS)
def test_full_port_pauses_tun_reads_and_keeps_mppe_in_step(Engine, size, sndbuf, offered):
    tun_eng, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    gre_eng, gre = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    gre_eng.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    gre.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    tun.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    tun.setblocking(False)
    port = RawPort(gre_eng, 64)
    e = Engine(EngineConfig())
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    e.set_mppe(CID, KEY, KEY, 128, False)
    got: list[bytes] = []
    try:
        e.start([tun_eng.fileno()], port, vnet_hdr_len=0)
        pkts = [udp_packet(dst=T_PEER, body=b"%06d" % i + bytes(size)) for i in range(offered)]
        accepted = 0
        for p in pkts:
            try:
                tun.send(p)
                accepted += 1
            except BlockingIOError:        # the TUN queue is full: dropped before encryption
                break
            if accepted % 256 == 0:
                time.sleep(0.002)          # let the loop run into the full port meanwhile
        # the far end is not read: the port fills and the loop stops reading the TUN
        assert wait_for(lambda: e.port_counters()["tun_paused"] >= 1), e.port_counters()
        pc = e.port_counters()
        assert pc["tx_full"] >= 1
        sent_paused, loops0 = e.counters(CID)["tx_packets"], e.loops
        time.sleep(0.2)
        # paused: nothing more read from the TUN, and no busy loop on the readable TUN (the
        # TUN is out of the epoll set; the port is asked every millisecond)
        assert e.counters(CID)["tx_packets"] == sent_paused
        assert e.loops - loops0 <= 400, e.loops - loops0
        # the far end reads: the port has room again, the loop resumes, the TUN drains
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end:
            drain(gre, got, 0.05)
            c = e.counters(CID)
            pc = e.port_counters()
            if c["tx_packets"] >= accepted:
                break
        drain(gre, got, 0.3)
        c = e.counters(CID)
        pc = e.port_counters()
    finally:
        e.stop()
        e.close()
        for s in (tun_eng, tun, gre_eng, gre):
            s.close()
    # every packet the TUN queue took was read, encrypted and sent (tx_packets) ...
    assert c["tx_packets"] == accepted, (c, pc)
    # ... and a frame is thrown away after encryption only at the port's first fill (a raw
    # socket shows it can fill only by refusing a frame once; from then on tx_room asks
    # poll(2)), at most one port batch (tx_cap)
    assert pc["tx_ring_full"] <= port.tx_cap, pc
    frames = [parse_gre(f) for f in got]
    data = [g for g in frames if g["seq"] is not None]
    assert len(data) + pc["tx_ring_full"] == accepted, (len(data), pc)
    # the peer's view: GRE sequence numbers and MPPE coherency counts advance together, and
    # every frame decrypts to the packet sent, in order
    dec = MppeDecryptor(KEY, 128, False)
    prev = None
    delivered = []
    for g in data:
        if prev is not None:
            dec.add_lost(g["seq"] - prev - 1)
        prev = g["seq"]
        body = g["payload"][4:]                    # FF 03 00 FD, then the MPPE header
        _, ccount = parse_header(body)
        assert ccount == g["seq"] & 0xFFF          # one count per data frame, from 0
        plain = dec.decrypt(body)
        assert plain[:2] == b"\x00\x21"
        delivered.append(plain[2:])
    assert delivered == [p for p in pkts[:accepted] if p in set(delivered)]
    assert len(delivered) == accepted - pc["tx_ring_full"]
