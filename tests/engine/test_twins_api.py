"""The twins' contract: the compiled engine (fastpptp._gre) and its pure-Python reference
(fastpptp._gre_ref) have the same public API (names, parameters, defaults), refuse the same
bad arguments with the same exception, and count the same limits the same way.

The set-up calls share their checks (fastpptp/engine_args.py); the slab calls check their
arrays on each side (C typed memoryviews / the reference's mirror).  Every case of the tables
below runs on both twins.
"""
from __future__ import annotations

import inspect
import ipaddress
import os
import socket
import struct

import numpy as np
import pytest

from fastpptp.dataplane import (HEADROOM, MAX_TUN, TXQ_DEPTH, TXQ_SLOT, EngineConfig,
                                load_engine)

CID, PCID = 7, 0x99
PEER, LOCAL = "192.0.2.2", "192.0.2.1"
T_IN, T_PEER = "198.51.100.1", "198.51.100.2"
KEY16, KEY8 = bytes(range(16)), bytes(range(8))


def _udp(size: int, dst: str = T_PEER, src: str = T_IN) -> bytes:
    """An IPv4/UDP packet of exactly ``size`` bytes."""
    body = b"u" * (size - 28)
    udp = struct.pack("!HHHH", 1000, 2000, 8 + len(body), 0) + body
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + udp


def _ack_from_peer(ack: int) -> bytes:
    """IPv4 + GRE ack-only packet (S=0, A=1) the peer sends to our call."""
    g = struct.pack("!BBHHHI", 0x20, 0x81, 0x880B, 0, CID, ack)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(g), 0, 0, 64, 47, 0,
                       ipaddress.IPv4Address(PEER).packed,
                       ipaddress.IPv4Address(LOCAL).packed) + g


def _ppp_protocol(frame: bytes) -> int:
    """PPP protocol of a GRE frame we sent (FF 03, 2-byte protocol: no ACFC/PFC set)."""
    hl = 16 if frame[1] & 0x80 else 12
    assert frame[hl:hl + 2] == b"\xff\x03"
    return struct.unpack_from("!H", frame, hl + 2)[0]


def make(Engine, **cfg):
    e = Engine(EngineConfig(**cfg))
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    return e


# ------------------------------------------------------------------ the API itself
def _public(obj) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_public_names_match():
    c, r = load_engine("compiled")(EngineConfig()), load_engine("reference")(EngineConfig())
    try:
        assert _public(c) == _public(r)
        assert _public(c.process(0.0)) == _public(r.process(0.0)) == {"tun_out", "gre_out"}
    finally:
        c.close()
        r.close()


def test_signatures_match():
    C, R = load_engine("compiled"), load_engine("reference")
    names = sorted(n for n in _public(C) if callable(getattr(C, n)))
    assert "add_session" in names and "decap_slab" in names
    for n in names:
        sc, sr = inspect.signature(getattr(C, n)), inspect.signature(getattr(R, n))
        got = [(p.name, p.kind, p.default) for p in sc.parameters.values()]
        want = [(p.name, p.kind, p.default) for p in sr.parameters.values()]
        assert got == want, n
    # the constructor: a cdef class's __init__ is a slot; embedsignature wrote it in the doc
    init = inspect.signature(R.__init__)
    bare = init.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                    for p in list(init.parameters.values())[1:]])
    assert C.__doc__.splitlines()[0] == f"Engine{bare}"
    for n in sorted(_public(C) - set(names)):            # constants and properties
        if isinstance(getattr(C, n), (int, bool)):
            assert getattr(C, n) == getattr(R, n), n


def test_config_must_be_an_engine_config(Engine):
    assert Engine().config == EngineConfig()
    with pytest.raises(TypeError):
        Engine({"batch": 8})


def test_config_is_read_only(Engine):
    e = Engine(EngineConfig(batch=8))
    assert e.config.batch == 8
    with pytest.raises(AttributeError):
        e.config = EngineConfig()


# ------------------------------------------------------------------ set-up calls: one table
_BAD_CALLS = [
    # (id, call on an engine holding session CID, expected exception)
    ("add_session duplicate", lambda e: e.add_session(CID, 1, PEER), ValueError),
    ("add_session call_id 17 bits", lambda e: e.add_session(0x10000, 1, PEER), ValueError),
    ("add_session call_id negative", lambda e: e.add_session(-1, 1, PEER), ValueError),
    ("add_session call_id huge", lambda e: e.add_session(2 ** 40, 1, PEER), ValueError),
    ("add_session call_id float", lambda e: e.add_session(8.0, 1, PEER), TypeError),
    ("add_session call_id str", lambda e: e.add_session("8", 1, PEER), TypeError),
    ("add_session peer_call_id 17 bits", lambda e: e.add_session(8, 0x10000, PEER), ValueError),
    ("add_session peer IPv6", lambda e: e.add_session(8, 1, "2001:db8::1"), ValueError),
    ("add_session peer garbage", lambda e: e.add_session(8, 1, "192.0.2"), ValueError),
    ("add_session tun 256", lambda e: e.add_session(8, 1, PEER, tun=MAX_TUN), ValueError),
    ("add_session tun negative", lambda e: e.add_session(8, 1, PEER, tun=-1), ValueError),
    ("add_session tun float", lambda e: e.add_session(8, 1, PEER, tun=1.0), TypeError),
    ("add_session peer_rwin 17 bits", lambda e: e.add_session(8, 1, PEER, peer_rwin=0x10000), ValueError),
    ("add_session peer_rwin negative", lambda e: e.add_session(8, 1, PEER, peer_rwin=-1), ValueError),
    ("add_session peer_rwin huge", lambda e: e.add_session(8, 1, PEER, peer_rwin=2 ** 40), ValueError),
    ("add_session peer_rwin float", lambda e: e.add_session(8, 1, PEER, peer_rwin=1.5), TypeError),
    ("add_session peer_ppd 17 bits", lambda e: e.add_session(8, 1, PEER, peer_ppd=0x10000), ValueError),
    ("set_peer_call unknown", lambda e: e.set_peer_call(8, 1), KeyError),
    ("set_peer_call call_id huge", lambda e: e.set_peer_call(2 ** 40, 1), KeyError),
    ("set_peer_call peer 17 bits", lambda e: e.set_peer_call(CID, 0x10000), ValueError),
    ("set_peer_call peer_rwin 17 bits", lambda e: e.set_peer_call(CID, 1, peer_rwin=0x10000), ValueError),
    ("set_peer_call peer_ppd negative", lambda e: e.set_peer_call(CID, 1, peer_ppd=-1), ValueError),
    ("remove_session unknown", lambda e: e.remove_session(8), KeyError),
    ("remove_session negative", lambda e: e.remove_session(-1), KeyError),
    ("remove_session huge", lambda e: e.remove_session(2 ** 40), KeyError),
    ("remove_session str", lambda e: e.remove_session("7"), TypeError),
    ("remove_session float", lambda e: e.remove_session(7.0), TypeError),
    ("set_ppp mtu small", lambda e: e.set_ppp(CID, tx_acfc=True, tx_pfc=True, mtu=63), ValueError),
    ("set_ppp mtu big", lambda e: e.set_ppp(CID, tx_acfc=True, tx_pfc=True, mtu=65536), ValueError),
    ("set_ppp mtu float", lambda e: e.set_ppp(CID, tx_acfc=True, tx_pfc=True, mtu=1400.0), TypeError),
    ("set_ppp unknown", lambda e: e.set_ppp(8, tx_acfc=True, tx_pfc=True, mtu=1400), KeyError),
    ("set_data unknown", lambda e: e.set_data(8, True, True), KeyError),
    ("set_data float", lambda e: e.set_data(7.5, True, True), TypeError),
    ("add_route garbage", lambda e: e.add_route(CID, "198.51.100"), ValueError),
    ("add_route unknown", lambda e: e.add_route(8, T_PEER), KeyError),
    ("remove_route garbage", lambda e: e.remove_route("nope"), ValueError),
    ("set_mppe bits 64", lambda e: e.set_mppe(CID, KEY16, KEY16, 64, False), ValueError),
    ("set_mppe bits str", lambda e: e.set_mppe(CID, KEY16, KEY16, "128", False), TypeError),
    ("set_mppe short send key", lambda e: e.set_mppe(CID, KEY8, KEY16, 128, False), ValueError),
    ("set_mppe short recv key", lambda e: e.set_mppe(CID, KEY16, KEY8, 128, False), ValueError),
    ("set_mppe short 40-bit key", lambda e: e.set_mppe(CID, KEY8[:7], KEY8, 40, False), ValueError),
    ("set_mppe int key", lambda e: e.set_mppe(CID, 16, KEY16, 128, False), TypeError),
    ("set_mppe unknown", lambda e: e.set_mppe(8, KEY16, KEY16, 128, False), KeyError),
    ("clear_mppe unknown", lambda e: e.clear_mppe(8), KeyError),
    ("mppe_reset unknown", lambda e: e.mppe_reset(8), KeyError),
    ("send_control protocol 0", lambda e: e.send_control(CID, 0, b""), ValueError),
    ("send_control protocol 17 bits", lambda e: e.send_control(CID, 0x10000, b""), ValueError),
    ("send_control protocol float", lambda e: e.send_control(CID, 49185.0, b""), TypeError),
    ("send_control int payload", lambda e: e.send_control(CID, 0xC021, 4), TypeError),
    ("send_control above MTU and MRU", lambda e: e.send_control(CID, 0xC021, bytes(1501)), ValueError),
    ("send_control unknown", lambda e: e.send_control(8, 0xC021, b""), KeyError),
    ("recv_control None", lambda e: e.recv_control(None), TypeError),
    ("recv_control float", lambda e: e.recv_control(2.0), TypeError),
    ("counters unknown", lambda e: e.counters(8), KeyError),
    ("counters huge", lambda e: e.counters(2 ** 40), KeyError),
    ("add_tun negative", lambda e: e.add_tun(-1, vnet_hdr_len=0), ValueError),
    ("add_tun float", lambda e: e.add_tun(1.0, vnet_hdr_len=0), TypeError),
    ("remove_tun 256", lambda e: e.remove_tun(MAX_TUN), ValueError),
    ("remove_tun negative", lambda e: e.remove_tun(-1), ValueError),
    ("remove_tun free", lambda e: e.remove_tun(3), KeyError),
    ("remove_tun str", lambda e: e.remove_tun("3"), TypeError),
]


@pytest.mark.parametrize("call, exc", [c[1:] for c in _BAD_CALLS], ids=[c[0] for c in _BAD_CALLS])
def test_bad_set_up_calls_raise_the_same(Engine, call, exc):
    e = make(Engine)
    before = e.counters(CID)
    with pytest.raises(exc):
        call(e)
    assert e.counters(CID) == before
    assert list(e.totals().values()) == [0] * len(e.totals())
    e.close()


def test_bad_send_control_length_limits(Engine):
    # the MTU may exceed the MRU, but a frame must still fit a queue slot (MRU + 32)
    e = make(Engine, mru=1000)
    e.set_ppp(CID, tx_acfc=False, tx_pfc=False, mtu=1400)
    e.send_control(CID, 0x8021, bytes(1032))
    with pytest.raises(ValueError):
        e.send_control(CID, 0x8021, bytes(1033))
    assert len(e.process(0.0).gre_out) == 1


def test_set_mppe_with_one_bad_key_changes_nothing(Engine):
    """Both keys are checked first: a short receive key must not leave the send side
    encrypting (the reference used to set it before failing on the receive side)."""
    e = make(Engine)
    with pytest.raises(ValueError):
        e.set_mppe(CID, KEY16, KEY8, 128, False)
    out = e.process(0.0, tun_in=[(0, _udp(100))]).gre_out
    assert len(out) == 1 and _ppp_protocol(out[0][1]) == 0x0021      # still plaintext IPv4


def test_set_mppe_uses_the_first_key_octets_on_both():
    outs = []
    for impl in ("compiled", "reference"):
        e = make(load_engine(impl))
        e.set_mppe(CID, KEY16 + b"tail", KEY16 + b"more", 128, False)
        outs.append(e.process(0.0, tun_in=[(0, _udp(100))]).gre_out)
        e2 = make(load_engine(impl))
        e2.set_mppe(CID, KEY16, KEY16, 128, False)
        assert e2.process(0.0, tun_in=[(0, _udp(100))]).gre_out == outs[-1]
    assert outs[0] == outs[1] and _ppp_protocol(outs[0][0][1]) == 0x00FD


@pytest.mark.parametrize("rwin, ppd", [(0, 0), (1, 0), (0xFFFF, 0xFFFF)])
def test_window_limits_accepted(Engine, rwin, ppd):
    e = Engine(EngineConfig())
    e.add_session(CID, PCID, PEER, peer_rwin=rwin, peer_ppd=ppd)
    e.set_peer_call(CID, PCID, peer_rwin=rwin, peer_ppd=ppd)
    e.add_session(CID + 1, PCID, PEER, tun=MAX_TUN - 1)
    assert e.counters(CID)["tx_packets"] == 0


def test_start_argument_checks(Engine):
    e = Engine(EngineConfig())
    r, w = os.pipe()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError):
            e.start([], r)                                    # not a socket
        with pytest.raises(ValueError):
            e.start([-1], a.fileno(), vnet_hdr_len=0)
        with pytest.raises(ValueError):
            e.start([a.fileno()] * (MAX_TUN + 1), a.fileno(), vnet_hdr_len=0)
        with pytest.raises(ValueError):
            e.start([r], a.fileno(), vnet_hdr_len=[0, 0])     # one length per TUN
        with pytest.raises(ValueError):
            e.add_tun(r, vnet_hdr_len=5)                      # not a virtio_net_hdr length
        with pytest.raises(TypeError):
            e.add_tun(r, vnet_hdr_len=10.0)
        assert e.tuns() == {}
        e.close()
        with pytest.raises(RuntimeError):
            e.start([], a.fileno())                           # closed
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


def test_close_is_the_same(Engine):
    e = make(Engine)
    assert e.control_fd >= 0
    e.close()
    e.close()
    assert e.control_fd == -1
    e.add_session(8, 1, PEER)                                 # the tables stay usable
    e.send_control(CID, 0xC021, b"\x09\x01\x00\x08abcd")
    assert len(e.process(0.0).gre_out) == 1
    assert e.recv_control() == []


# ------------------------------------------------------------------ flow-control queue limit
@pytest.mark.parametrize("size, held", [(TXQ_SLOT, True), (TXQ_SLOT + 1, False), (9000, False)])
def test_flow_control_slot_limit(Engine, size, held):
    """While the peer's window is closed, packets wait in a queue of TXQ_DEPTH slots of
    TXQ_SLOT bytes; a larger packet is dropped and counted drop_window_full (as a full
    queue is), on both twins."""
    e = Engine(EngineConfig(flow_control=True))
    e.add_session(CID, PCID, PEER, peer_rwin=1)
    e.set_data(CID, True, True)
    assert len(e.process(0.0, tun_in=[(0, _udp(100))]).gre_out) == 1      # window now full
    assert e.process(0.001, tun_in=[(0, _udp(size)), (0, _udp(60))]).gre_out == []
    c = e.counters(CID)
    assert c["drop_window_full"] == (0 if held else 1)
    out = e.process(0.002, gre_in=[_ack_from_peer(0)]).gre_out                # window opens
    out += e.process(0.003, gre_in=[_ack_from_peer(1)]).gre_out
    out += e.process(0.004, gre_in=[_ack_from_peer(2)]).gre_out
    sent = [len(f) for _, f in out if f[0] & 0x10]                           # data (S=1)
    assert sent == ([size + 16, 60 + 16] if held else [60 + 16])
    assert e.counters(CID)["tx_packets"] == (3 if held else 2)


def test_flow_control_queue_depth(Engine):
    e = Engine(EngineConfig(flow_control=True))
    e.add_session(CID, PCID, PEER, peer_rwin=1)
    e.set_data(CID, True, True)
    e.process(0.0, tun_in=[(0, _udp(100))])
    e.process(0.001, tun_in=[(0, _udp(100))] * (TXQ_DEPTH + 3))
    assert e.counters(CID)["drop_window_full"] == 3


def test_flow_control_drops_are_the_same_on_both():
    def run(impl):
        e = load_engine(impl)(EngineConfig(flow_control=True))
        e.add_session(CID, PCID, PEER, peer_rwin=2)
        e.set_data(CID, True, True)
        outs = []
        for i, size in enumerate([100, 100, 3000, 1500, TXQ_SLOT + 1, TXQ_SLOT, 40]):
            outs.append(e.process(i * 0.001, tun_in=[(0, _udp(size))]).gre_out)
        for k in range(6):
            outs.append(e.process(0.01 + k * 0.001, gre_in=[_ack_from_peer(k)]).gre_out)
        return outs, e.counters(CID)
    assert run("compiled") == run("reference")


# ------------------------------------------------------------------ slab calls
def _encap_args(rows=4, width=256):
    return (np.zeros((rows, width), np.uint8), np.zeros(rows, np.uint32), rows,
            np.zeros((rows, 3), np.uint32))


def _decap_args(rows=4, width=256):
    return (np.zeros((rows, width), np.uint8), np.zeros(rows, np.uint32), rows,
            np.zeros(rows, np.int32), np.zeros(rows, np.int64), np.zeros(rows, np.uint32))


def _ro(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _with(args, i, v):
    args = list(args)
    args[i] = v(args[i]) if callable(v) else v
    return args


_BAD_SLABS = [
    # (id, encap_slab or decap_slab, which argument, replacement, expected exception)
    ("slab dtype", 0, lambda a: a.astype(np.int64), ValueError),
    ("slab ndim", 0, lambda a: a.reshape(-1), ValueError),
    ("slab not contiguous", 0, lambda a: np.zeros((4, 512), np.uint8)[:, ::2], ValueError),
    ("slab read-only", 0, _ro, ValueError),
    ("slab None", 0, None, TypeError),
    ("slab list", 0, [[0] * 256] * 4, TypeError),
    ("lens dtype", 1, lambda a: a.astype(np.int32), ValueError),
    ("lens None", 1, None, TypeError),
    ("n negative", 2, -1, ValueError),
    ("n above rows", 2, 5, ValueError),
    ("n str", 2, "1", TypeError),
    ("lens above row", 1, lambda a: np.full(4, 256 - HEADROOM + 1, np.uint32), ValueError),
    ("lens wrap-around", 1, lambda a: np.full(4, 0xFFFFFFFF, np.uint32), ValueError),
]
_BAD_ENCAP = _BAD_SLABS + [
    ("out_dst two columns", 3, lambda a: np.zeros((4, 2), np.uint32), ValueError),
    ("out_dst short", 3, lambda a: np.zeros((3, 3), np.uint32), ValueError),
    ("out_dst None", 3, None, TypeError),
]
_BAD_DECAP = _BAD_SLABS + [
    ("out_off dtype", 4, lambda a: a.astype(np.int32), ValueError),
    ("out_len short", 5, lambda a: np.zeros(3, np.uint32), ValueError),
    ("out_tun None", 3, None, TypeError),
]


@pytest.mark.parametrize("i, v, exc", [c[1:] for c in _BAD_ENCAP], ids=[c[0] for c in _BAD_ENCAP])
def test_bad_encap_slab_raises_the_same(Engine, i, v, exc):
    e = make(Engine)
    with pytest.raises(exc):
        e.encap_slab(0, *_with(_encap_args(), i, v))
    assert e.encap_slab(0, *_encap_args()) == 0                 # four empty rows: malformed
    assert e.totals()["drop_malformed"] == 4


@pytest.mark.parametrize("i, v, exc", [c[1:] for c in _BAD_DECAP], ids=[c[0] for c in _BAD_DECAP])
def test_bad_decap_slab_raises_the_same(Engine, i, v, exc):
    e = make(Engine)
    with pytest.raises(exc):
        e.decap_slab(*_with(_decap_args(), i, v))
    assert e.decap_slab(*_decap_args()) == 0
    assert e.totals()["drop_malformed"] == 4


def test_slab_rows_above_65535_bytes_are_malformed(Engine):
    """Like process(): nothing above the largest IPv4 datagram goes through (the compiled
    engine used to write a truncated GRE length, the reference raised OverflowError)."""
    e = make(Engine)
    width = HEADROOM + 65536 + 64
    slab, lens, _, out_dst = _encap_args(rows=2, width=width)
    small = _udp(100)
    slab[0, HEADROOM:HEADROOM + 100] = np.frombuffer(small, np.uint8)
    lens[:] = [100, 65536]
    assert e.encap_slab(0, slab, lens, 2, out_dst) == 1
    assert out_dst[1].tolist() == [0, 0, 0]
    assert e.totals()["drop_malformed"] == 1 and e.counters(CID)["tx_packets"] == 1
    d = _decap_args(rows=2, width=width)
    d[1][:] = [65536, 65536]
    assert e.decap_slab(*d) == 0
    assert e.totals()["drop_malformed"] == 3


# ------------------------------------------------------------------ process(): what each item may be
_PROCESS_CASES = [
    # (id, process arguments, expected exception or None, totals.drop_malformed after)
    ("now None", ((None,), {}), TypeError, 0),
    ("now str", (("1",), {}), TypeError, 0),
    ("now int", ((1,), {}), None, 0),
    ("now huge", ((2 ** 2000,), {}), OverflowError, 0),
    ("tun huge", ((0.0,), {"tun_in": [(2 ** 40, b"x")]}), OverflowError, 0),
    ("tun str", ((0.0,), {"tun_in": [("0", b"x")]}), TypeError, 0),
    ("tun float", ((0.0,), {"tun_in": [(0.0, b"x")]}), None, 1),
    ("packet int", ((0.0,), {"tun_in": [(0, 5)]}), None, 1),       # bytes(5): five zeros
    ("datagram int", ((0.0,), {"gre_in": [5]}), None, 1),
    ("datagram str", ((0.0,), {"gre_in": ["ab"]}), TypeError, 0),
    ("datagram huge", ((0.0,), {"gre_in": [bytes(65536)]}), None, 1),
    ("packet huge", ((0.0,), {"tun_in": [(0, bytes(65536))]}), None, 1),
]


@pytest.mark.parametrize("args, exc, malformed", [c[1:] for c in _PROCESS_CASES],
                         ids=[c[0] for c in _PROCESS_CASES])
def test_process_items_the_same(Engine, args, exc, malformed):
    e = make(Engine)
    if exc is None:
        e.process(*args[0], **args[1])
    else:
        with pytest.raises(exc):
            e.process(*args[0], **args[1])
    assert e.totals()["drop_malformed"] == malformed


def test_encap_slab_tun_converted_the_same(Engine):
    e = make(Engine)
    with pytest.raises(TypeError):
        e.encap_slab("0", *_encap_args())
    with pytest.raises(OverflowError):
        e.encap_slab(2 ** 40, *_encap_args())


def _from_peer(frame: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(frame), 0, 0, 64, 47, 0,
                       ipaddress.IPv4Address(PEER).packed,
                       ipaddress.IPv4Address(LOCAL).packed) + frame


def test_decap_slab_delivers_the_same_packets():
    """Same packets, in the same order, to the same TUN (the offsets may differ: the compiled
    twin leaves an in-order packet where it was decrypted, the reference copies it to the
    row's HEADROOM; both are inside the row the contract names)."""
    peer = load_engine("reference")(EngineConfig())
    peer.add_session(PCID, CID, LOCAL)
    peer.set_data(PCID, True, True)
    pkts = [_udp(60 + 7 * i, dst=T_IN, src=T_PEER) for i in range(8)]
    frames = [_from_peer(f) for _, f in peer.process(0.0, tun_in=[(0, p) for p in pkts]).gre_out]
    order = [0, 2, 3, 1, 5, 4, 7, 6]                  # reordered: some come from spare rows
    got = []
    for impl in ("compiled", "reference"):
        e = make(load_engine(impl))
        rows = len(order) + EngineConfig().reorder_depth
        slab = np.zeros((rows, 256), np.uint8)
        lens = np.zeros(rows, np.uint32)
        for r, k in enumerate(order):
            slab[r, HEADROOM:HEADROOM + len(frames[k])] = np.frombuffer(frames[k], np.uint8)
            lens[r] = len(frames[k])
        o_tun, o_off, o_len = (np.zeros(rows, np.int32), np.zeros(rows, np.int64),
                               np.zeros(rows, np.uint32))
        m = e.decap_slab(slab, lens, len(order), o_tun, o_off, o_len)
        flat = slab.reshape(-1)
        got.append(([(int(o_tun[j]), flat[o_off[j]:o_off[j] + o_len[j]].tobytes())
                     for j in range(m)], e.counters(CID)))
    assert got[0] == got[1]
    assert [p for _, p in got[0][0]] == pkts
