"""Target ``gre``: GRE/PPP decapsulation of both engine twins side by side (differential):
the compiled ``fastpptp._gre`` and the reference ``fastpptp._gre_ref`` get the same input
and must deliver the same packets, send the same frames, queue the same control frames and
end with the same counters -- with MPPE off, stateless, stateful or mixed, through
``process()`` and through ``decap_slab``.

The compiled engine runs in this process, which the runner starts as a child: a crash
(SIGSEGV, abort) kills only the child; libFuzzer (or the runner, for the builtin engine)
keeps the input.

Header: octet 0 = MPPE mode (bits 0-1: off / stateless / stateful / tx-stateful), ACFC
(bit 2), PFC (bit 3), reorder depth (bits 4-5: 4, 64, 5, 1), flow control (bit 6), slab
mode (bit 7: decap_slab, which reads the real clock; reorder time-out 10 s and ``process``
at the input's start time, so no timer fires and the twins see the same time); octet 1 = the
sequence-number base of the peer's frames (near 0, the 2^31 and 2^32 wraps).
Records: 0 a raw GRE frame from the peer's address (or, octet odd, a stranger's);
1 the peer engine encapsulates k packets of a size (real frames, MPPE-encrypted when on),
kept for delivery; 2 deliver kept frame i, perhaps with one octet changed; 3 time passes
(octet / 100 s); 4 deliver the kept frames not yet delivered, in a window-sized shuffle,
one batch; 5 a packet from our TUN; 6 a raw datagram (not even IPv4); 7 the peer sends an
LCP frame (control path).

Invariants: outputs equal after every step; counters and totals equal at the end; the
control queue never holds more than ``control_queue`` frames; every packet delivered to
TUN arrived from the peer (no packet out of nothing: delivered <= datagrams given).
"""
from __future__ import annotations

import random
import struct
import time

import numpy as np

from fastpptp.dataplane import HEADROOM, EngineConfig, load_engine

from .. import captures  # noqa: F401  (puts tests/ on sys.path for support.packets)
from ..records import Reader, Writer, check
from support.packets import PEER, dgram, ipv4, tcp_syn  # noqa: E402

NAME = "gre"
CID, PCID = 7, 0x99
T_IN, T_PEER = "198.51.100.1", "198.51.100.2"
STRANGER = "203.0.113.9"
KEY_A, KEY_B = bytes(range(16)), bytes(range(16, 32))
DEPTHS = (4, 64, 5, 1)
BASES = (0, 1, 0x7FFFFFF0, 0xFFFFFFF0)
CONTROL_QUEUE = 8

Compiled = load_engine("compiled")
Reference = load_engine("reference")


def _engines(h: int) -> list:
    mppe = h & 3
    slab = bool(h & 0x80)
    depth = DEPTHS[h >> 4 & 3]
    # depth 5 runs with a reorder pool of 3 frames: both twins refuse the same frames
    # (drop_no_room) when the engine-wide pool is empty
    cfg = EngineConfig(reorder_depth=depth, flow_control=bool(h & 0x40),
                       reorder_timeout=10.0 if slab else 0.05, ack_delay=0.02,
                       control_queue=CONTROL_QUEUE, reorder_pool=3 if depth == 5 else 0)
    out = []
    for E in (Compiled, Reference):
        e = E(cfg)
        e.add_session(CID, PCID, PEER, peer_rwin=4)
        e.add_session(CID + 1, PCID + 1, STRANGER, tun=1)
        e.add_route(CID, T_PEER)
        for c in (CID, CID + 1):
            e.set_ppp(c, tx_acfc=bool(h & 4), tx_pfc=bool(h & 8), mtu=1400)
            e.set_data(c, True, True)
        if mppe:
            e.set_mppe(CID, KEY_A, KEY_B, 128, mppe in (2, 3), rx_stateful=mppe == 2)
        out.append(e)
    return out


def _peer(h: int):
    mppe = h & 3
    p = Reference(EngineConfig(ack_delay=0.0))
    p.add_session(PCID, CID, "192.0.2.1")
    p.set_ppp(PCID, tx_acfc=bool(h & 4), tx_pfc=bool(h & 8), mtu=1400)
    p.set_data(PCID, True, True)
    if mppe:
        p.set_mppe(PCID, KEY_B, KEY_A, 128, mppe == 2, rx_stateful=mppe in (2, 3))
    return p


def _rebase(frame: bytes, base: int) -> bytes:
    if len(frame) < 12 or not frame[0] & 0x10:
        return frame
    seq = (struct.unpack_from("!I", frame, 8)[0] + base) & 0xFFFFFFFF
    return frame[:8] + struct.pack("!I", seq) + frame[12:]


def _slab(e, datagrams: list[bytes]) -> list[tuple[int, bytes]]:
    rows = len(datagrams) + 70
    width = HEADROOM + max(len(d) for d in datagrams) + 64
    slab = np.zeros((rows, max(width, 1600)), np.uint8)
    lens = np.zeros(rows, np.uint32)
    for r, d in enumerate(datagrams):
        slab[r, HEADROOM:HEADROOM + len(d)] = np.frombuffer(d, np.uint8)
        lens[r] = len(d)
    o_tun = np.zeros(rows, np.int32)
    o_off = np.zeros(rows, np.int64)
    o_len = np.zeros(rows, np.uint32)
    m = e.decap_slab(slab, lens, len(datagrams), o_tun, o_off, o_len)
    flat = slab.reshape(-1)
    return [(int(o_tun[j]), flat[o_off[j]:o_off[j] + o_len[j]].tobytes()) for j in range(m)]


def one_input(data: bytes) -> None:
    r = Reader(data)
    h = r.byte()
    base = BASES[r.byte() & 3]
    slab = bool(h & 0x80)
    engines = _engines(h)
    peer = _peer(h)
    rng = random.Random(h)
    kept: list[bytes] = []
    cursor = 0
    now = time.monotonic() if slab else 0.0
    given = delivered = 0
    steps = 0
    try:
        while not r.done and steps < 120:
            steps += 1
            tag = r.byte() & 7
            gre_in: list[bytes] = []
            tun_in: list[tuple[int, bytes]] = []
            if tag == 0:
                src = r.byte()
                gre_in.append(dgram(r.chunk(), src=STRANGER if src & 1 else PEER))
            elif tag == 1:
                k, size = 1 + (r.byte() & 7), r.byte() * 4
                pkts = [(0, ipv4(T_PEER, T_IN, bytes([i]) * size)) for i in range(k)]
                out = peer.process(now if not slab else 0.0, tun_in=pkts)
                kept += [_rebase(f, base) for _, f in out.gre_out]
            elif tag == 2:
                i, pos, val = r.byte(), r.byte(), r.byte()
                if kept:
                    d = bytearray(dgram(kept[i % len(kept)]))
                    if val:
                        d[20 + pos % max(1, len(d) - 20)] ^= val
                    gre_in.append(bytes(d))
            elif tag == 3:
                if not slab:
                    now += r.byte() / 100
                else:
                    r.byte()
            elif tag == 4:
                batch = kept[cursor:]
                cursor = len(kept)
                w = 1 + (r.byte() & 7)
                for j in range(0, len(batch), w):
                    part = batch[j:j + w]
                    rng.shuffle(part)
                    batch[j:j + w] = part
                gre_in += [dgram(f) for f in batch]
            elif tag == 5:
                size, syn = r.byte(), r.byte()
                pkt = tcp_syn(T_IN, T_PEER, 1460) if syn & 1 else ipv4(T_IN, T_PEER, b"t" * size)
                tun_in.append((syn >> 1 & 1, pkt))
            elif tag == 6:
                gre_in.append(r.chunk())
            else:
                peer.send_control(PCID, 0xC021, r.chunk() or b"\x09\x01\x00\x08\x00\x00\x00\x00")
                kept += [_rebase(f, base) for _, f in peer.process(0.0).gre_out]
            given += len(gre_in)
            if slab:
                if gre_in:
                    outs = [_slab(e, gre_in) for e in engines]
                    check(outs[0] == outs[1], f"decap_slab delivered differently: {outs}")
                    delivered += len(outs[0])
                # the clock of the start: timers the slab calls set (on the real clock,
                # >= start) never fire here, so both twins see the same time
                res = [e.process(now, tun_in=tun_in) for e in engines]
            else:
                res = [e.process(now, tun_in=tun_in, gre_in=gre_in) for e in engines]
            check(res[0].tun_out == res[1].tun_out,
                  f"twins delivered differently: {res[0].tun_out} vs {res[1].tun_out}")
            check(res[0].gre_out == res[1].gre_out, "twins sent different GRE frames")
            delivered += len(res[0].tun_out)
            ctl = [e.recv_control(64) for e in engines]
            check(ctl[0] == ctl[1], f"control frames differ: {ctl}")
            check(len(ctl[0]) <= CONTROL_QUEUE, f"{len(ctl[0])} control frames queued")
            if not slab:
                d0, d1 = engines[0].next_deadline(), engines[1].next_deadline()
                check((d0 is None) == (d1 is None) and (d0 is None or abs(d0 - d1) < 1e-6),
                      f"deadlines differ: {d0} {d1}")
        # packets come only from datagrams (a frame carries one packet)
        check(delivered <= given, f"{delivered} packets delivered from {given} datagrams")
        for c in (CID, CID + 1):
            c0, c1 = engines[0].counters(c), engines[1].counters(c)
            check(c0 == c1, f"counters of call {c} differ: "
                  f"{ {k: (c0.get(k), c1.get(k)) for k in set(c0) | set(c1) if c0.get(k) != c1.get(k)} }")
        t0, t1 = engines[0].totals(), engines[1].totals()
        check(t0 == t1, f"totals differ: "
              f"{ {k: (t0.get(k), t1.get(k)) for k in set(t0) | set(t1) if t0.get(k) != t1.get(k)} }")
    finally:
        for e in (*engines, peer):
            e.close()


# --------------------------------------------------------------------------- seeds

def seeds() -> list[bytes]:
    out = []
    captured = captures.gre_payloads()
    for h in (0x00, 0x0C, 0x01, 0x02, 0x03, 0x41, 0x10, 0x20, 0x30, 0x81, 0x80, 0xA2, 0xB0):
        for base in (0, 3):
            w = Writer(bytes([h, base]))
            w.byte(1).byte(7).byte(20).byte(1).byte(3).byte(200)
            w.byte(4).byte(3)
            w.byte(2).byte(1).byte(0).byte(0).byte(2).byte(5).byte(30).byte(0x40)
            w.byte(7).chunk(b"\x09\x01\x00\x08\x00\x00\x00\x00")
            w.byte(5).byte(40).byte(0).byte(5).byte(0).byte(1)
            w.byte(1).byte(7).byte(1).byte(4).byte(7).byte(3).byte(10)
            w.byte(1).byte(2).byte(100).byte(2).byte(8).byte(0).byte(0).byte(4).byte(0)
            w.byte(3).byte(50).byte(3).byte(200)
            out.append(w.bytes())
    for h in (0x02, 0x82, 0x03, 0x01, 0x42):     # in order: the stateful happy path too
        w = Writer(bytes([h, 0]))
        for k in range(6):
            w.byte(1).byte(k).byte(10 + 20 * k).byte(4).byte(0).byte(3).byte(2)
        w.byte(5).byte(60).byte(0).byte(7).chunk(b"\x09\x01\x00\x08\x00\x00\x00\x00")
        w.byte(4).byte(0).byte(3).byte(30)
        out.append(w.bytes())
    for i in range(0, len(captured), 12):
        w = Writer(bytes([0x0C, 0]))
        for g in captured[i:i + 12]:
            w.byte(0).byte(0).chunk(g)
        w.byte(3).byte(20).byte(6).chunk(b"\x45\x00\x00")
        out.append(w.bytes())
    return out
