"""Stateless MPPE across long losses, in the engine (both twins).

The defect (UDP flood benchmark): after 2048+ packets lost in a row the receiver took every
later coherency count as "late" and dropped it, and once the peer's count wrapped past ours
every packet decrypted to garbage while LCP echoes (never encrypted) kept the session up: a
stuck session.  Now a loss of up to 4095 is caught up with (one rekey per count); a longer
one is followed too when the GRE receive window gave that many sequence numbers up (issue 9:
a UDP flood through an MPPE tunnel lost 4096+ in a row at the receiver's window jump and the
session went down), up to MPPE_MAX_WRAPS whole wraps.  Past that, or when the count jumped
without a GRE loss to show for it, the engine sees inner protocols MPPE never carries, drops
them (``drop_mppe``) and queues EV_MPPE_LOST_SYNC once, so the PPP link closes
(tests/ppp/test_link_mppe_lost_sync.py).
"""
from __future__ import annotations

import pathlib
import re

import pytest

import fastpptp
from fastpptp import dataplane
from fastpptp.crypto.mppe import MppeEncryptor
from fastpptp.dataplane import EV_MPPE_LOST_SYNC, MPPE_LOST_SYNC_RUN, EngineConfig
from fastpptp.ppp import constants
from support.packets import dgram, gre, ppp, udp_packet

CID, PCID = 7, 0x99
KEY_S = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")   # ours (we send)
KEY_R = bytes.fromhex("405CB2247A7956E6E211007AE27B22D4")   # the peer's (we receive)
T_IN = "198.51.100.1"


def make(Engine, stateful=False):
    e = Engine(EngineConfig())
    e.add_session(CID, PCID, "203.0.113.7")
    e.set_data(CID, True, True)
    e.set_mppe(CID, KEY_S, KEY_R, 128, stateful)
    return e


def ip(i):
    return udp_packet(dst=T_IN, src="198.51.100.2", body=b"p%05d" % i)


class Peer:
    """The peer's sending side: GRE sequence numbers and a stateless MPPE encryptor."""

    def __init__(self, key=KEY_R):
        self.enc = MppeEncryptor(key, 128, False)
        self.seq = 0

    def frame(self, i, inner=None):
        payload = ppp(0xFD, self.enc.encrypt(b"\x00\x21" + ip(i) if inner is None else inner))
        f = dgram(gre(CID, seq=self.seq, payload=payload), src="203.0.113.7")
        self.seq += 1
        return f

    def lose(self, n, gre=True):
        """``n`` frames encrypted and lost; ``gre=False``: counts spent without GRE sequence
        numbers (keys out of step with nothing the receive window can see)."""
        for _ in range(n):
            self.enc.encrypt(b"\x00\x21lost")
        if gre:
            self.seq += n


def events(e):
    return [c for c in e.recv_control() if c[1] == EV_MPPE_LOST_SYNC]


def test_constants_shared_and_pinned():
    assert dataplane.EV_MPPE_LOST_SYNC is constants.EV_MPPE_LOST_SYNC == 0x10002
    assert constants.EV_MPPE_LOST_SYNC > constants.ENGINE_EVENT_BASE
    gre_c = pytest.importorskip("fastpptp._gre", reason="compiled engine not built")
    assert gre_c.COMPILED_EV_MPPE_LOST_SYNC == constants.EV_MPPE_LOST_SYNC
    # the compiled run length comes from _mppe.pxd; _gre refuses to import if it differs
    assert MPPE_LOST_SYNC_RUN == 32
    root = pathlib.Path(fastpptp.__file__).parent
    literal = re.compile(r"\b0x0*10002\b|\b65538\b", re.IGNORECASE)
    offenders = [f"{p.relative_to(root)}:{n}" for ext in ("*.py", "*.pyx", "*.pxd")
                 for p in root.rglob(ext) if p.name != "constants.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
    assert offenders == []


# 4093: with the frame the GRE window refuses after the jump, 4094 lost; the next is 4095
# counts ahead, the most there is
@pytest.mark.parametrize("lost", [2048, 3000, 4093])
def test_stateless_loss_up_to_4095_recovers(Engine, lost):
    e, peer = make(Engine), Peer()
    out = e.process(0.0, gre_in=[peer.frame(i) for i in range(3)])
    assert [p for _, p in out.tun_out] == [ip(i) for i in range(3)]
    peer.lose(lost)
    # the GRE window refuses the first frame after a jump until a second confirms the new
    # region: that one is one more MPPE loss, still within 4095
    after = [peer.frame(100 + i) for i in range(10)]
    out = e.process(1.0, gre_in=after)
    got = [p for _, p in out.tun_out]
    assert got and got == [ip(100 + i) for i in range(10 - len(got), 10)]
    assert len(got) >= 9
    c = e.counters(CID)
    assert c["rx_packets"] == 3 + len(got)
    assert c["drop_mppe"] == 0 and c["drop_malformed"] == 0
    assert events(e) == []
    e.close()


# 4095 + the refused frame: exactly one wrap (the count alone says 0 ahead: a duplicate)
@pytest.mark.parametrize("lost", [4095, 5000, 12952, 16 * 4096 - 2])
def test_stateless_loss_beyond_4095_followed_through_the_gre_loss(Engine, lost):
    e, peer = make(Engine), Peer()
    e.process(0.0, gre_in=[peer.frame(i) for i in range(3)])
    peer.lose(lost)
    out = e.process(1.0, gre_in=[peer.frame(100 + i) for i in range(10)])
    got = [p for _, p in out.tun_out]
    assert got == [ip(100 + i) for i in range(1, 10)]     # the first: refused by the jump
    c = e.counters(CID)
    assert c["drop_mppe"] == 0 and c["drop_malformed"] == 0 and c["drop_seq_jump"] == 1
    assert c["lost"] == lost + 1
    assert events(e) == []
    e.close()


def test_stateless_loss_beyond_the_wraps_followed_raises_lost_sync(Engine):
    """More than MPPE_MAX_WRAPS (16) whole wraps: not followed (each costs 4096 rekeys on the
    I/O thread): lost sync, as before."""
    e, peer = make(Engine), Peer()
    e.process(0.0, gre_in=[peer.frame(i) for i in range(3)])
    peer.lose(17 * 4096 + 5)
    out = e.process(1.0, gre_in=[peer.frame(100 + i) for i in range(3 * MPPE_LOST_SYNC_RUN)])
    assert out.tun_out == []
    assert [x for x in e.recv_control() if x[1] == EV_MPPE_LOST_SYNC] == [(CID, EV_MPPE_LOST_SYNC, b"")]
    e.close()


def test_stateless_count_jump_without_gre_loss_raises_lost_sync_once(Engine):
    e, peer = make(Engine), Peer()
    e.process(0.0, gre_in=[peer.frame(i) for i in range(3)])
    assert e.counters(CID)["rx_packets"] == 3
    peer.lose(5000, gre=False)
    n = 3 * MPPE_LOST_SYNC_RUN
    out = e.process(1.0, gre_in=[peer.frame(100 + i) for i in range(n)])
    assert out.tun_out == []                       # nothing decrypted with stale keys
    c = e.counters(CID)
    assert c["rx_packets"] == 3
    ctl = e.recv_control()
    assert [x for x in ctl if x[1] == EV_MPPE_LOST_SYNC] == [(CID, EV_MPPE_LOST_SYNC, b"")]
    # garbage never reaches the link as LCP/NCP/CCP: only in-range protocols may pass,
    # and none at all once lost sync is declared
    assert all(0x21 <= p <= 0xFA for _, p, _ in ctl if p < 0x10000)
    ev_at = [x[1] for x in ctl].index(EV_MPPE_LOST_SYNC)
    assert ev_at == len(ctl) - 1
    assert c["drop_mppe"] + c["drop_malformed"] + len(ctl) - 1 == n       # no GRE jump
    # after the event, all of it is drop_mppe
    assert c["drop_mppe"] >= n - MPPE_LOST_SYNC_RUN
    # more garbage: still counted, no second event
    e.process(2.0, gre_in=[peer.frame(500 + i) for i in range(n)])
    assert events(e) == [] and e.counters(CID)["rx_packets"] == 3
    e.close()


def test_good_frame_resets_the_run(Engine):
    """Runs one short of MPPE_LOST_SYNC_RUN of frames whose inner protocol MPPE never
    carries (LCP, encrypted by the peer's right keys: RC4 hides nothing from the test), each
    ended by a good IP frame: every bad one is drop_mppe, no event; then a full run raises it."""
    e, peer = make(Engine), Peer()
    lcp = b"\xc0\x21\x09\x01\x00\x08abcd"          # an Echo-Request inside MPPE
    for rnd in range(3):
        frames = [peer.frame(0, inner=lcp) for _ in range(MPPE_LOST_SYNC_RUN - 1)]
        frames.append(peer.frame(rnd))
        out = e.process(float(rnd), gre_in=frames)
        assert [p for _, p in out.tun_out] == [ip(rnd)]
    c = e.counters(CID)
    assert c["drop_mppe"] == 3 * (MPPE_LOST_SYNC_RUN - 1) and c["rx_packets"] == 3
    assert e.recv_control() == []                  # never handed to the link as LCP
    e.process(5.0, gre_in=[peer.frame(0, inner=lcp) for _ in range(MPPE_LOST_SYNC_RUN)])
    assert e.recv_control() == [(CID, EV_MPPE_LOST_SYNC, b"")]
    # the keys were never lost here: a good frame ends the run and is delivered
    out = e.process(6.0, gre_in=[peer.frame(9)])
    assert [p for _, p in out.tun_out] == [ip(9)]
    e.close()


def test_stateful_inner_control_protocol_dropped_without_event(Engine):
    """Stateful MPPE resyncs with CCP Reset-Request: no lost-sync run, but an inner
    protocol outside 0x0021..0x00FA is still never a control frame."""
    e = make(Engine, stateful=True)
    enc = MppeEncryptor(KEY_R, 128, True)
    lcp = b"\xc0\x21\x09\x01\x00\x08abcd"
    frames = [dgram(gre(CID, seq=i, payload=ppp(0xFD, enc.encrypt(lcp))), src="203.0.113.7")
              for i in range(2 * MPPE_LOST_SYNC_RUN)]
    e.process(0.0, gre_in=frames)
    assert e.recv_control() == []
    assert e.counters(CID)["drop_mppe"] == 2 * MPPE_LOST_SYNC_RUN
    e.close()
