"""Engine semantics, run on both twins (compiled fastpptp._gre and fastpptp._gre_ref).

Sans-I/O: everything goes through ``process(now, tun_in, gre_in)`` with a fake clock.
"""
from __future__ import annotations

import os
import struct

import pytest

from support.packets import (PEER, data_in, dgram, gre, ipv6, parse_gre, ppp, tcp_mss,
                            tcp_ok, tcp_syn, udp_packet)
from fastpptp.dataplane import (EV_MPPE_RESET_NEEDED, EngineConfig, EngineUnavailable,
                                load_engine)

CID, PCID = 7, 0x99
T_IN = "198.51.100.1"      # tunnel-side address of the peer / ours
T_PEER = "198.51.100.2"


def make(Engine, **cfg):
    e = Engine(EngineConfig(**cfg))
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    return e


def peer_of(Engine, **cfg):
    """The other end of the call: its call ID is our peer call ID and vice versa."""
    e = Engine(EngineConfig(**cfg))
    e.add_session(PCID, CID, "192.0.2.1")
    e.set_data(PCID, True, True)
    return e


def pkt(i=0, dst=T_PEER):
    return udp_packet(dst=dst, body=b"p%05d" % i)


# ------------------------------------------------------------------ dataplane selection
def test_load_engine_names():
    assert load_engine("reference").__module__ == "fastpptp._gre_ref"
    assert load_engine("compiled").__module__ == "fastpptp._gre"
    with pytest.raises(ValueError):
        load_engine("fast")


def test_missing_compiled_engine_is_a_clear_import_error(monkeypatch):
    import importlib
    import fastpptp.dataplane as dp
    real = importlib.import_module

    def fake(name, *a):
        if name == "fastpptp._gre":
            raise ImportError("No module named 'fastpptp._gre'")
        return real(name, *a)

    monkeypatch.setattr(dp.importlib, "import_module", fake)
    with pytest.raises(EngineUnavailable, match="build_ext") as ei:
        dp.load_engine("compiled")
    assert isinstance(ei.value, ImportError)
    with pytest.raises(EngineUnavailable):
        dp.Engine  # noqa: B018  (module __getattr__)


def test_config_validation():
    with pytest.raises(ValueError):
        EngineConfig(ack_delay=0.5)
    with pytest.raises(ValueError):
        EngineConfig(batch=0)


# ------------------------------------------------------------------ encapsulation
def test_encap_exact_bytes(Engine):
    e = make(Engine)
    ip = pkt()
    out = e.process(1.0, tun_in=[(0, ip)])
    assert out.tun_out == []
    assert out.gre_out == [(PEER, bytes.fromhex("3001880b") + struct.pack("!HHI", 4 + len(ip), PCID, 0)
                            + b"\xff\x03\x00\x21" + ip)]
    out = e.process(1.0, tun_in=[(0, ip)])
    assert parse_gre(out.gre_out[0][1])["seq"] == 1
    c = e.counters(CID)
    assert c["tx_packets"] == 2 and c["tx_bytes"] == 2 * len(ip)


@pytest.mark.parametrize("acfc,pfc,hdr", [(False, False, "ff030021"), (True, False, "0021"),
                                          (False, True, "ff0321"), (True, True, "21")])
def test_encap_acfc_pfc(Engine, acfc, pfc, hdr):
    e = make(Engine)
    e.set_ppp(CID, tx_acfc=acfc, tx_pfc=pfc, mtu=1400)
    ip = pkt()
    g = parse_gre(e.process(0.0, tun_in=[(0, ip)]).gre_out[0][1])
    assert g["payload"] == bytes.fromhex(hdr) + ip


def test_ipv6_encap_and_pfc(Engine):
    e = make(Engine)
    e.set_ppp(CID, tx_acfc=True, tx_pfc=True, mtu=1400)
    ip = ipv6("2001:db8::1", "2001:db8::2", b"x" * 20)
    g = parse_gre(e.process(0.0, tun_in=[(0, ip)]).gre_out[0][1])
    assert g["payload"] == b"\x57" + ip


def test_control_frames_lcp_always_full_header(Engine):
    e = make(Engine)
    e.set_ppp(CID, tx_acfc=True, tx_pfc=True, mtu=1400)
    e.send_control(CID, 0xC021, b"\x09\x01\x00\x08abcd")
    e.send_control(CID, 0x8021, b"\x01\x01\x00\x04")
    out = e.process(0.0)
    frames = [parse_gre(f) for _, f in out.gre_out]
    assert [f["seq"] for f in frames] == [0, 1]
    assert frames[0]["payload"] == b"\xff\x03\xc0\x21\x09\x01\x00\x08abcd"
    assert frames[1]["payload"] == b"\x80\x21\x01\x01\x00\x04"       # ACFC applies, PFC cannot
    assert e.counters(CID)["tx_control"] == 2


def test_data_not_ready_until_set_data(Engine):
    e = Engine(EngineConfig())
    e.add_session(CID, PCID, PEER)
    out = e.process(0.0, tun_in=[(0, pkt())], gre_in=[data_in(CID, 0, pkt(dst=T_IN))])
    assert out.gre_out == [] and out.tun_out == []
    assert e.counters(CID)["drop_not_ready"] == 2
    e.set_data(CID, True, False)
    out = e.process(0.0, tun_in=[(0, pkt()), (0, ipv6("2001:db8::1", "2001:db8::2", b"z" * 8))])
    assert len(out.gre_out) == 1 and e.counters(CID)["drop_not_ready"] == 3


def test_routes_pick_session_among_many(Engine):
    e = Engine(EngineConfig())
    for cid in range(1, 201):
        e.add_session(cid, 1000 + cid, f"192.0.2.{cid}" if cid < 255 else PEER)
        e.set_data(cid, True, True)
        e.add_route(cid, f"10.{cid // 256}.{cid % 256}.9")
    e.add_route(150, "2001:db8::150")
    out = e.process(0.0, tun_in=[(0, pkt(dst="10.0.42.9")), (0, pkt(dst="10.0.150.9")),
                                 (0, ipv6("2001:db8::1", "2001:db8::150", b"q" * 8)),
                                 (0, pkt(dst="10.9.9.9"))])
    got = [(a, parse_gre(f)["call_id"]) for a, f in out.gre_out]
    assert got == [("192.0.2.42", 1042), ("192.0.2.150", 1150), ("192.0.2.150", 1150)]
    assert e.totals()["drop_no_route"] == 1
    e.remove_route("10.0.42.9")
    e.remove_session(150)
    out = e.process(0.0, tun_in=[(0, pkt(dst="10.0.42.9")), (0, pkt(dst="10.0.150.9"))])
    assert out.gre_out == [] and e.totals()["drop_no_route"] == 3
    # the remaining routes still resolve after deletions (hash chains intact)
    out = e.process(0.0, tun_in=[(0, pkt(dst=f"10.0.{c}.9")) for c in range(1, 201)])
    assert len(out.gre_out) == 198


def test_single_session_tun_needs_no_route(Engine):
    e = make(Engine)
    assert len(e.process(0.0, tun_in=[(0, pkt(dst="203.0.113.77"))]).gre_out) == 1
    e.add_session(8, 9, "192.0.2.3", tun=0)
    e.process(0.0, tun_in=[(0, pkt(dst="203.0.113.77"))])
    assert e.totals()["drop_no_route"] == 1
    e.set_data(8, True, True)
    e.remove_session(CID)                       # one left on TUN 0: it takes everything again
    out = e.process(0.0, tun_in=[(0, pkt(dst="203.0.113.77"))])
    assert [(a, parse_gre(f)["call_id"]) for a, f in out.gre_out] == [("192.0.2.3", 9)]


def test_mss_clamp_both_directions(Engine):
    e = make(Engine)
    e.set_ppp(CID, tx_acfc=False, tx_pfc=False, mtu=1400)
    for nop in (False, True):
        syn = tcp_syn(T_IN, T_PEER, 1460, pad_nop=nop)
        g = parse_gre(e.process(0.0, tun_in=[(0, syn)]).gre_out[0][1])
        ip = g["payload"][4:]
        assert tcp_mss(ip) == 1360 and tcp_ok(ip)
    small = tcp_syn(T_IN, T_PEER, 1200)
    assert parse_gre(e.process(0.0, tun_in=[(0, small)]).gre_out[0][1])["payload"][4:] == small
    out = e.process(0.0, gre_in=[data_in(CID, 0, tcp_syn(T_PEER, T_IN, 1460))])
    assert tcp_mss(out.tun_out[0][1]) == 1360 and tcp_ok(out.tun_out[0][1])
    e2 = make(Engine, clamp_mss=False)
    syn = tcp_syn(T_IN, T_PEER, 1460)
    assert parse_gre(e2.process(0.0, tun_in=[(0, syn)]).gre_out[0][1])["payload"][4:] == syn


# ------------------------------------------------------------------ decapsulation
@pytest.mark.parametrize("first", [0, 1, 0xFFFFFFFE])
def test_decap_first_seq_accepted(Engine, first):
    e = make(Engine)
    ips = [pkt(i, dst=T_IN) for i in range(4)]
    out = e.process(0.0, gre_in=[data_in(CID, (first + i) & 0xFFFFFFFF, ip) for i, ip in enumerate(ips)])
    assert out.tun_out == [(0, ip) for ip in ips]
    c = e.counters(CID)
    assert c["rx_packets"] == 4 and c["rx_bytes"] == sum(map(len, ips)) and c["lost"] == 0


@pytest.mark.parametrize("acfc,pfc", [(False, False), (True, False), (False, True), (True, True)])
def test_decap_accepts_acfc_pfc_frames(Engine, acfc, pfc):
    e = make(Engine)
    ip = pkt(dst=T_IN)
    out = e.process(0.0, gre_in=[dgram(gre(CID, seq=0, payload=ppp(0x21, ip, acfc, pfc)))])
    assert out.tun_out == [(0, ip)]


def test_ack_piggyback_only_when_changed(Engine):
    e = make(Engine)
    e.process(0.0, gre_in=[data_in(CID, 5, pkt(dst=T_IN))])
    frames = [parse_gre(f) for _, f in e.process(0.001, tun_in=[(0, pkt()), (0, pkt())]).gre_out]
    assert [(f["seq"], f["ack"]) for f in frames] == [(0, 5), (1, None)]
    # the ack went with data: no ack-only later
    assert e.process(1.0).gre_out == [] and e.counters(CID)["tx_acks"] == 0


def test_ack_only_after_delay_one_per_batch(Engine):
    e = make(Engine, ack_delay=0.02)
    out = e.process(0.0, gre_in=[data_in(CID, i, pkt(i, dst=T_IN)) for i in range(32)])
    assert out.gre_out == [] and len(out.tun_out) == 32
    assert e.next_deadline() == pytest.approx(0.02)
    assert e.process(0.019).gre_out == []
    out = e.process(0.021)
    assert out.gre_out == [(PEER, bytes.fromhex("2081880b0000") + struct.pack("!HI", PCID, 31))]
    assert e.counters(CID)["tx_acks"] == 1
    assert e.process(0.5).gre_out == [] and e.next_deadline() is None


def test_ack_only_received_updates_ack_and_drops_nothing(Engine):
    e = make(Engine)
    for _ in range(3):
        e.process(0.0, tun_in=[(0, pkt())])
    e.process(0.0, gre_in=[dgram(gre(CID, ack=2))])
    c = e.counters(CID)
    assert c["drop_malformed"] == 0 and c["rx_packets"] == 0


def test_reorder_delivers_in_order(Engine):
    e = make(Engine)
    ips = [pkt(i, dst=T_IN) for i in range(6)]
    order = [0, 2, 1, 5, 3, 4]
    out = e.process(0.0, gre_in=[data_in(CID, i, ips[i]) for i in order])
    assert [ip for _, ip in out.tun_out] == ips
    c = e.counters(CID)
    assert c["reordered"] == 2 and c["lost"] == 0 and e.next_deadline() == pytest.approx(0.02)


def test_gap_times_out_then_lost(Engine):
    e = make(Engine, reorder_timeout=0.1)
    ips = [pkt(i, dst=T_IN) for i in range(5)]
    out = e.process(0.0, gre_in=[data_in(CID, i, ips[i]) for i in (0, 2, 3)])
    assert [ip for _, ip in out.tun_out] == [ips[0]]
    assert e.process(0.09).tun_out == []
    out = e.process(0.1)
    assert [ip for _, ip in out.tun_out] == [ips[2], ips[3]]
    c = e.counters(CID)
    assert c["lost"] == 1 and c["drop_reorder_timeout"] == 1
    # the late packet is too old now; a re-sent delivered one is a duplicate
    e.process(0.2, gre_in=[data_in(CID, 1, ips[1]), data_in(CID, 2, ips[2])])
    c = e.counters(CID)
    assert c["drop_too_old"] == 1 and c["drop_duplicate"] == 1


def test_far_ahead_forces_gaps_lost(Engine):
    e = make(Engine, reorder_depth=8)
    out = e.process(0.0, gre_in=[data_in(CID, 0, pkt(0, dst=T_IN)), data_in(CID, 3, pkt(3, dst=T_IN)),
                                 data_in(CID, 20, pkt(20, dst=T_IN))])
    assert [ip for _, ip in out.tun_out] == [pkt(0, dst=T_IN), pkt(3, dst=T_IN)]
    c = e.counters(CID)
    assert c["lost"] == 11 and c["drop_reorder_timeout"] == 0        # 1, 2 and 4..12
    out = e.process(0.0, gre_in=[data_in(CID, i, pkt(i, dst=T_IN)) for i in range(13, 20)])
    assert [ip for _, ip in out.tun_out] == [pkt(i, dst=T_IN) for i in range(13, 21)]
    assert e.counters(CID)["lost"] == 11


def test_duplicates_buffered_and_delivered(Engine):
    e = make(Engine)
    d0, d2 = data_in(CID, 0, pkt(0, dst=T_IN)), data_in(CID, 2, pkt(2, dst=T_IN))
    out = e.process(0.0, gre_in=[d0, d0, d2, d2])
    assert len(out.tun_out) == 1
    assert e.counters(CID)["drop_duplicate"] == 2


def test_wraparound(Engine):
    e = make(Engine)
    base = 0xFFFFFFFD
    seqs = [(base + i) & 0xFFFFFFFF for i in range(6)]
    order = [0, 1, 3, 2, 5, 4]
    out = e.process(0.0, gre_in=[data_in(CID, seqs[i], pkt(i, dst=T_IN)) for i in order])
    assert [ip for _, ip in out.tun_out] == [pkt(i, dst=T_IN) for i in range(6)]
    e.process(0.0, gre_in=[data_in(CID, seqs[1], pkt(1, dst=T_IN))])
    c = e.counters(CID)
    assert c["drop_duplicate"] == 1 and c["lost"] == 0
    out = e.process(0.001, tun_in=[(0, pkt())])
    assert parse_gre(out.gre_out[0][1])["ack"] == seqs[5]


def test_send_seq_wraps(Engine):
    e = make(Engine)
    out = None
    for _ in range(3):
        out = e.process(0.0, tun_in=[(0, pkt())])
    assert parse_gre(out.gre_out[0][1])["seq"] == 2


def test_lcp_echo_bypasses_order(Engine):
    e = make(Engine)
    echo = ppp(0xC021, b"\x09\x07\x00\x08\x00\x00\x00\x00")
    e.process(0.0, gre_in=[data_in(CID, 10, pkt(dst=T_IN))])
    # behind the window: still delivered
    e.process(0.0, gre_in=[dgram(gre(CID, seq=3, payload=echo))])
    # ahead of a gap: delivered now, and counted delivered when the gap fills
    e.process(0.0, gre_in=[dgram(gre(CID, seq=12, payload=echo))])
    ctl = e.recv_control()
    assert ctl == [(CID, 0xC021, echo[4:])] * 2
    out = e.process(0.0, gre_in=[data_in(CID, 11, pkt(dst=T_IN))])
    assert len(out.tun_out) == 1
    c = e.counters(CID)
    assert c["lost"] == 0 and c["drop_too_old"] == 0 and c["rx_control"] == 2
    e.process(0.0, gre_in=[dgram(gre(CID, seq=12, payload=ppp(0xC021, b"\x01\x01\x00\x04")))])
    assert e.counters(CID)["drop_duplicate"] == 1


def test_control_queue_and_eventfd(Engine):
    e = make(Engine, control_queue=4)
    fd = e.control_fd
    assert e.recv_control() == []
    frames = [dgram(gre(CID, seq=i, payload=ppp(0x8021, bytes([1, i, 0, 4])))) for i in range(6)]
    e.process(0.0, gre_in=frames)
    assert os.read(fd, 8)                           # readable
    got = e.recv_control(3)
    assert got == [(CID, 0x8021, bytes([1, i, 0, 4])) for i in range(3)]
    assert e.recv_control() == [(CID, 0x8021, bytes([1, 3, 0, 4]))]
    c = e.counters(CID)
    assert c["drop_queue_full"] == 2 and c["rx_control"] == 4
    with pytest.raises(BlockingIOError):
        os.read(fd, 8)                              # drained -> not readable


def test_compressed_datagram_without_mppe_goes_to_control(Engine):
    e = make(Engine)
    e.process(0.0, gre_in=[dgram(gre(CID, seq=0, payload=ppp(0xFD, b"\x90\x00abc")))])
    assert e.recv_control() == [(CID, 0xFD, b"\x90\x00abc")]


# ------------------------------------------------------------------ malformed input
def _bad_frames():
    """name -> (maker(seq) -> datagram, where it is counted).  PPP-level bad frames carry a
    real sequence number (they use up one, like any frame the peer sends)."""
    ok_gre = gre(CID, seq=0, payload=ppp(0x21, pkt(dst=T_IN)))
    good = dgram(ok_gre)

    def fixed(b):
        return lambda seq: b

    def seqd(payload):
        return lambda seq: dgram(gre(CID, seq=seq, payload=payload))

    return {
        "empty": (fixed(b""), "totals"),
        "short ip": (fixed(good[:19]), "totals"),
        "ipv6 version": (fixed(bytes([0x65]) + good[1:]), "totals"),
        "ihl 4": (fixed(bytes([0x44]) + good[1:]), "totals"),
        "ihl beyond": (fixed(bytes([0x4F]) + good[1:]), "totals"),
        "total length beyond": (fixed(good[:2] + struct.pack("!H", len(good) + 1) + good[4:]), "totals"),
        "not gre": (fixed(dgram(ok_gre, proto=17)), "totals"),
        "fragment MF": (fixed(dgram(ok_gre, frag=0x2000)), "totals"),
        "fragment offset": (fixed(dgram(ok_gre, frag=0x0010)), "totals"),
        "gre too short": (fixed(dgram(ok_gre[:7])), "totals"),
        "gre no key": (fixed(dgram(gre(CID, seq=0, payload=b"x", flags0=0x10))), "totals"),
        "gre checksum bit": (fixed(dgram(gre(CID, seq=0, payload=b"x", flags0=0xB0))), "totals"),
        "gre routing bit": (fixed(dgram(gre(CID, seq=0, payload=b"x", flags0=0x70))), "totals"),
        "gre strict route": (fixed(dgram(gre(CID, seq=0, payload=b"x", flags0=0x38))), "totals"),
        "gre recursion": (fixed(dgram(gre(CID, seq=0, payload=b"x", flags0=0x31))), "totals"),
        "gre version 0": (fixed(dgram(gre(CID, seq=0, payload=b"x", flags1=0x00))), "totals"),
        "gre flags": (fixed(dgram(gre(CID, seq=0, payload=b"x", flags1=0x09))), "totals"),
        "gre proto": (fixed(dgram(gre(CID, seq=0, payload=b"x", proto=0x0800))), "totals"),
        "payload length beyond": (fixed(dgram(gre(CID, seq=0, payload=b"abc", plen=4))), "totals"),
        "truncated seq": (fixed(dgram(gre(CID, seq=0)[:10])), "totals"),
        "unknown call": (fixed(dgram(gre(CID + 1, seq=0, payload=b"\xff\x03\x00\x21"))), "unknown"),
        "wrong source": (fixed(dgram(ok_gre, src="192.0.2.99")), "source"),
        "payload without seq": (fixed(dgram(gre(CID, payload=b"\xff\x03\xc0\x21"))), "session"),
        "seq with empty payload": (fixed(dgram(gre(CID, seq=0))), "session"),
        "frame above MRU": (fixed(dgram(gre(CID, seq=0, payload=ppp(0x21, b"\x45" + b"\0" * 1700)))), "session"),
        "bad ppp protocol even": (seqd(b"\xff\x03\x00\x20abc"), "session-seq"),
        "ppp header only": (seqd(b"\xff\x03"), "session-seq"),
        "ipv4 too short": (seqd(ppp(0x21, b"\x45" + b"\0" * 10)), "session-seq"),
        "ipv4 proto, v6 packet": (seqd(ppp(0x21, ipv6("::1", "::2", b"x"))), "session-seq"),
        "ipv6 too short": (seqd(ppp(0x57, b"\x60" + b"\0" * 20)), "session-seq"),
    }


@pytest.mark.parametrize("name", list(_bad_frames()))
def test_malformed_dropped_and_counted_good_untouched(Engine, name):
    make_bad, where = _bad_frames()[name]
    e = make(Engine)
    good = [pkt(i, dst=T_IN) for i in range(4)]
    plan = ["g", "b", "g", "b", "b", "g", "g"]
    stream, seq, gi = [], 0, 0
    for kind in plan:
        if kind == "g":
            stream.append(data_in(CID, seq, good[gi]))
            gi += 1
            seq += 1
        else:
            stream.append(make_bad(seq))
            seq += where == "session-seq"
    out = e.process(0.0, gre_in=stream)
    assert [ip for _, ip in out.tun_out] == good
    c, t = e.counters(CID), e.totals()
    key = {"totals": ("t", "drop_malformed"), "unknown": ("t", "drop_unknown_call"),
           "source": ("c", "drop_wrong_source"), "session": ("c", "drop_malformed"),
           "session-seq": ("c", "drop_malformed")}[where]
    assert (t if key[0] == "t" else c)[key[1]] == 3
    assert c["rx_packets"] == 4 and c["lost"] == 0 and e.recv_control() == []


def test_malformed_tun_packets(Engine):
    e = make(Engine)
    out = e.process(0.0, tun_in=[(0, b""), (0, b"\x45" + b"\0" * 10), (0, b"\x60" * 30), (0, b"\x10" * 40),
                                 (0, pkt())])
    assert len(out.gre_out) == 1 and e.totals()["drop_malformed"] == 4


def test_api_errors(Engine):
    e = make(Engine)
    with pytest.raises(ValueError):
        e.add_session(CID, 1, PEER)
    with pytest.raises(ValueError):
        e.add_session(9, 1, "2001:db8::1")
    with pytest.raises(ValueError):
        e.add_session(70000, 1, PEER)
    with pytest.raises(KeyError):
        e.counters(12)
    with pytest.raises(KeyError):
        e.send_control(12, 0xC021, b"")
    with pytest.raises(KeyError):
        e.set_data(12, True, True)
    with pytest.raises(ValueError):
        e.set_ppp(CID, tx_acfc=True, tx_pfc=True, mtu=10)
    e.remove_session(CID)
    with pytest.raises(KeyError):
        e.remove_session(CID)


def test_remove_session_cancels_queued_control(Engine):
    e = make(Engine)
    e.send_control(CID, 0xC021, b"\x05\x01\x00\x04")
    e.remove_session(CID)
    e.add_session(CID, PCID, PEER)
    assert e.process(0.0).gre_out == []


# ------------------------------------------------------------------ flow control (opt-in)
def test_default_never_holds_data_for_the_window(Engine):
    e = Engine(EngineConfig())
    e.add_session(CID, PCID, PEER, peer_rwin=2)
    e.set_data(CID, True, True)
    out = e.process(0.0, tun_in=[(0, pkt(i)) for i in range(10)])
    assert len(out.gre_out) == 10


def test_flow_control_window_and_ack_timeout(Engine):
    e = Engine(EngineConfig(flow_control=True))
    e.add_session(CID, PCID, PEER, peer_rwin=3)
    e.set_data(CID, True, True)
    out = e.process(0.0, tun_in=[(0, pkt(i)) for i in range(5)])
    assert [parse_gre(f)["seq"] for _, f in out.gre_out] == [0, 1, 2]
    # the peer acks 1: two more may go
    out = e.process(0.05, gre_in=[dgram(gre(CID, ack=1))])
    assert [parse_gre(f)["seq"] for _, f in out.gre_out] == [3, 4]
    # the queue is bounded
    e.process(0.06, tun_in=[(0, pkt(i)) for i in range(70)])
    assert e.counters(CID)["drop_window_full"] == 70 - 64
    # no ack within the time-out: the window is declared lost and data flows again
    dl = e.next_deadline()
    assert dl is not None and dl <= 0.05 + 10
    out = e.process(dl)
    assert len(out.gre_out) >= 1


# ------------------------------------------------------------------ MPPE in the packet path
KEY_S = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")
KEY_R = bytes.fromhex("405CB2247A7956E6E211007AE27B22D4")


def test_mppe_stateless_vector(Engine):
    """TEST-VECTORS.md §6: first three stateless MPPE-128 packets of 00 21 "test message"."""
    e = make(Engine)
    e.set_mppe(CID, KEY_S, KEY_R, 128, False)
    e.set_ppp(CID, tx_acfc=True, tx_pfc=False, mtu=1400)
    body = b"test message"
    # the engine encrypts IP packets: compare the MPPE layer of a known plaintext instead
    from fastpptp.crypto.mppe import MppeDecryptor
    dec = MppeDecryptor(KEY_S, 128, False)
    ip = pkt(dst=T_PEER)
    for i in range(3):
        g = parse_gre(e.process(0.0, tun_in=[(0, ip)]).gre_out[0][1])
        assert g["payload"][:2] == b"\x00\xfd"
        assert g["payload"][2:4] == bytes([0x90, i])
        assert dec.decrypt(g["payload"][2:]) == b"\x00\x21" + ip
    del body


def test_mppe_roundtrip_between_twins_and_plaintext_refused(Engine):
    a = make(Engine)
    b = peer_of(load_engine("reference"))
    a.set_mppe(CID, KEY_S, KEY_R, 128, False)
    b.set_mppe(PCID, KEY_R, KEY_S, 128, False)
    ips = [pkt(i, dst=T_IN) for i in range(5)]
    frames = [f for _, f in b.process(0.0, tun_in=[(0, ip) for ip in ips]).gre_out]
    out = a.process(0.0, gre_in=[dgram(f) for f in frames[:2]] + [dgram(frames[3]), dgram(frames[2]),
                                                                   dgram(frames[4])])
    assert [ip for _, ip in out.tun_out] == ips
    a.process(0.0, gre_in=[data_in(CID, 5, pkt(dst=T_IN))])
    assert a.counters(CID)["drop_mppe"] == 1


def test_mppe_stateful_loss_raises_reset_event(Engine):
    a = make(Engine)
    b = peer_of(load_engine("reference"))
    a.set_mppe(CID, KEY_S, KEY_R, 128, True)
    b.set_mppe(PCID, KEY_R, KEY_S, 128, True)
    frames = [f for _, f in b.process(0.0, tun_in=[(0, pkt(i, dst=T_IN)) for i in range(4)]).gre_out]
    out = a.process(0.0, gre_in=[dgram(frames[0])])
    assert len(out.tun_out) == 1
    # frame 1 is lost on the way; frame 2 arrives after the reorder time-out
    a.process(0.0, gre_in=[dgram(frames[2])])
    out = a.process(1.0, gre_in=[dgram(frames[3])])
    assert out.tun_out == []
    assert a.recv_control() == [(CID, EV_MPPE_RESET_NEEDED, b"")]
    assert a.counters(CID)["drop_mppe"] == 2
    # the peer got our CCP Reset-Request: its next packet is flushed and decrypts
    b.mppe_reset(PCID)
    f = b.process(1.0, tun_in=[(0, pkt(9, dst=T_IN))]).gre_out[0][1]
    assert a.process(1.0, gre_in=[dgram(f)]).tun_out == [(0, pkt(9, dst=T_IN))]


def test_mppe_modes_per_direction(Engine):
    """CCP negotiates each direction's mode on its own (RFC 1962 §1): we send stateless and
    receive stateful; the peer (the reference twin) the other way round."""
    a = make(Engine)
    b = peer_of(load_engine("reference"))
    a.set_mppe(CID, KEY_S, KEY_R, 128, False, rx_stateful=True)
    b.set_mppe(PCID, KEY_R, KEY_S, 128, True, rx_stateful=False)
    for e, cid in ((a, CID), (b, PCID)):
        e.set_ppp(cid, tx_acfc=True, tx_pfc=False, mtu=1400)     # payload = 00 fd + MPPE
    a_ips = [pkt(i) for i in range(4)]
    a_frames = [f for _, f in a.process(0.0, tun_in=[(0, ip) for ip in a_ips]).gre_out]
    # stateless: every packet has the flushed (A) bit; stateful: only E after the first
    assert [parse_gre(f)["payload"][2] & 0xF0 for f in a_frames] == [0x90] * 4
    b_ips = [pkt(i, dst=T_IN) for i in range(4)]
    b_frames = [f for _, f in b.process(0.0, tun_in=[(0, ip) for ip in b_ips]).gre_out]
    assert [parse_gre(f)["payload"][2] & 0xF0 for f in b_frames] == [0x10] * 4
    to_b = lambda f: dgram(f, src="192.0.2.1", dst=PEER)   # noqa: E731  (b's peer is 192.0.2.1)
    assert [ip for _, ip in b.process(0.0, gre_in=[to_b(f) for f in a_frames]).tun_out] == a_ips
    # a stateless receiver skips a lost packet without help: no Reset-Request from b
    more = [f for _, f in a.process(0.0, tun_in=[(0, pkt(i)) for i in (10, 11)]).gre_out]
    assert b.process(0.0, gre_in=[to_b(more[1])]).tun_out == []     # GRE gap: held
    assert b.process(1.0).tun_out == [(0, pkt(11))]                  # reorder time-out
    assert b.recv_control() == []
    # a's stateful receiver decrypts in order, and asks for a reset when one is lost
    out = a.process(0.0, gre_in=[dgram(f) for f in b_frames[:2]] + [dgram(b_frames[3])])
    assert [ip for _, ip in out.tun_out] == b_ips[:2]
    a.process(1.0)
    assert a.recv_control() == [(CID, EV_MPPE_RESET_NEEDED, b"")]
    b.mppe_reset(PCID)
    f = b.process(1.0, tun_in=[(0, pkt(9, dst=T_IN))]).gre_out[0][1]
    assert parse_gre(f)["payload"][2] & 0x80            # flushed after the Reset-Request
    assert a.process(1.0, gre_in=[dgram(f)]).tun_out == [(0, pkt(9, dst=T_IN))]


def test_send_control_queue_is_bounded(Engine):
    e = make(Engine, control_queue=3)
    for i in range(5):
        e.send_control(CID, 0x8021, bytes([1, i, 0, 4]))
    assert len(e.process(0.0).gre_out) == 3
    assert e.counters(CID)["drop_queue_full"] == 2
    with pytest.raises(ValueError):
        e.send_control(CID, 0x8021, b"x" * 2000)


def test_oversized_inputs_are_counted(Engine):
    e = make(Engine)
    e.process(0.0, tun_in=[(0, b"\x45" + bytes(70000))], gre_in=[b"\x45" + bytes(70000)])
    assert e.totals()["drop_malformed"] == 2


@pytest.mark.parametrize("acfc", [False, True])
@pytest.mark.parametrize("pfc", [False, True])
def test_frames_match_the_sans_io_codecs(Engine, acfc, pfc):
    """What the engine sends is what fastpptp.gre + fastpptp.ppp.frame encode (independent
    codecs of RFC 2637 §4.1 and RFC 1661/1662 framing)."""
    from fastpptp import gre as grecodec
    from fastpptp.ppp import frame as pppframe
    e = make(Engine)
    e.set_ppp(CID, tx_acfc=acfc, tx_pfc=pfc, mtu=1400)
    e.process(0.0, gre_in=[data_in(CID, 0xFFFFFFFF, pkt(dst=T_IN))])
    ip, ip6 = pkt(), ipv6("2001:db8::1", "2001:db8::2", b"six")
    e.send_control(CID, 0xC021, b"\x09\x01\x00\x08\x01\x02\x03\x04")
    e.send_control(CID, 0x8021, b"\x01\x02\x00\x04")
    out = e.process(0.001, tun_in=[(0, ip), (0, ip6)])
    want = [grecodec.encode_packet(PCID, pppframe.encode(0xC021, b"\x09\x01\x00\x08\x01\x02\x03\x04", acfc, pfc), 0, 0xFFFFFFFF),
            grecodec.encode_packet(PCID, pppframe.encode(0x8021, b"\x01\x02\x00\x04", acfc, pfc), 1),
            grecodec.encode_packet(PCID, pppframe.encode(0x21, ip, acfc, pfc), 2),
            grecodec.encode_packet(PCID, pppframe.encode(0x57, ip6, acfc, pfc), 3)]
    assert [f for _, f in out.gre_out] == want
    for f in want:
        hdr, frame = grecodec.decode_packet(f)
        assert hdr.call_id == PCID and pppframe.decode(frame)[0] in (0xC021, 0x8021, 0x21, 0x57)


def test_flow_control_adaptive_ack_timeout(Engine):
    """RFC 2637 Appendix A: the ack time-out follows the measured round trip; on a time-out
    the window halves and the time-out doubles."""
    e = Engine(EngineConfig(flow_control=True))
    e.add_session(CID, PCID, PEER, peer_rwin=4)
    e.set_data(CID, True, True)
    seqs = lambda out: [parse_gre(f)["seq"] for _, f in out.gre_out]  # noqa: E731
    assert seqs(e.process(0.0, tun_in=[(0, pkt(i)) for i in range(10)])) == [0, 1, 2, 3]
    assert e.next_deadline() == pytest.approx(1.0)          # initial time-out: 1 s
    # ack of seq 0 after 0.2 s: SRTT 0.2, DEV 0.1 -> ATO 0.6; one more may go
    assert seqs(e.process(0.2, gre_in=[dgram(gre(CID, ack=0))])) == [4]
    assert e.next_deadline() == pytest.approx(0.8)
    # silence: time-out -> outstanding taken as lost, window 4 -> 2, ATO 0.6 -> 1.2
    assert seqs(e.process(0.8)) == [5, 6]
    assert e.next_deadline() == pytest.approx(2.0)
    # acks open it again by one per ack, up to the peer's window
    assert seqs(e.process(0.9, gre_in=[dgram(gre(CID, ack=6))])) == [7, 8, 9]
    assert e.counters(CID)["drop_window_full"] == 0 and e.counters(CID)["tx_packets"] == 10
