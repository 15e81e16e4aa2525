"""MPPE (RFC 3078) behaviour, run on the pure-Python twin and on the compiled _mppe.

Vectors: TEST-VECTORS.md §6 (derived, Linux semantics) and the RFC 3079 "test message"
ciphertexts; SHA-1 against hashlib, RC4 against pycryptodome.
"""
import hashlib
import os

import pytest
from Crypto.Cipher import ARC4
from hypothesis import given, settings, strategies as st

from fastpptp import _mppe
from fastpptp.crypto import mppe, mschap
from fastpptp.crypto.mppe import (MppeDiscarding, MppeNeedReset, MppeNotEncrypted,
                                  MppeNotFlushed, MppeTooOld, MppeTruncated)


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


SERVER_SEND_128 = h("8B 7C DC 14 9B 99 3A 1B A1 18 CB 15 3F 56 DC CB")
IP = b"\x00\x21"


class Impl:
    def __init__(self, name):
        self.name = name

    def enc(self, key, bits, stateful):
        if self.name == "python":
            return mppe.MppeEncryptor(key, bits, stateful)
        return _mppe.Mppe(key, bits, stateful)

    def dec(self, key, bits, stateful):
        if self.name == "python":
            return mppe.MppeDecryptor(key, bits, stateful)
        return _mppe.Mppe(key, bits, stateful)

    def pair(self, bits=128, stateful=False, key=SERVER_SEND_128):
        return self.enc(key, bits, stateful), self.dec(key, bits, stateful)


@pytest.fixture(params=["python", "compiled"])
def impl(request):
    return Impl(request.param)


# --- primitives ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4096])
def test_sha1_matches_hashlib(n):
    data = bytes((i * 7 + n) & 0xFF for i in range(n))
    assert _mppe.sha1(data) == hashlib.sha1(data).digest()


@given(st.binary(max_size=600))
@settings(max_examples=200, deadline=None)
def test_sha1_matches_hashlib_random(data):
    assert _mppe.sha1(data) == hashlib.sha1(data).digest()


@given(st.binary(min_size=1, max_size=256), st.binary(max_size=2000))
@settings(max_examples=200, deadline=None)
def test_rc4_matches_pycryptodome(key, data):
    assert _mppe.rc4(key, data) == ARC4.new(key).encrypt(data)


@pytest.mark.parametrize("key, cipher", [
    ("40 5C B2 24 7A 79 56 E6 E2 11 00 7A E2 7B 22 D4", "81 84 83 17 DF 68 84 62 72 FB 5A BE"),
    ("D1 26 9E C4 9F A6 2E 3E", "92 91 37 91 7E 58 03 D6 68 D7 58 98"),
    ("D1 5C 00 C4 9F A6 2E 3E", "3F 10 68 33 FA 44 8D A8 42 BC 57 B8"),
    ("59 D1 59 BC 09 F7 6F 1D A2 A8 6A 28 FF EC 0B 1E", "FA E9 06 88 F9 85 F3 13 C7 D3 67 C3"),
])
def test_rc4_rfc3079_test_message(key, cipher):
    assert _mppe.rc4(h(key), b"test message") == h(cipher)


def test_rc4_rejects_bad_key():
    with pytest.raises(ValueError):
        _mppe.rc4(b"", b"x")


# --- TEST-VECTORS.md §6 ---------------------------------------------------------------------

SECTION6 = [
    ("726F10500E2B54135B1B74D7682F0471", "9000 7058224E931B78D7B615FA441831"),
    ("2805BC7869BEC825573A7803E95A3ACD", "9001 353C954CD545CE3127AE68F6EAF7"),
    ("58128C36CABD54968139FD94B5883D4A", "9002 CCD944BE42CDEB32B13AD672958A"),
]


def test_stateless_128_vectors(impl):
    enc, dec = impl.pair()
    for session, wire in SECTION6:
        pkt = enc.encrypt(IP + b"test message")
        assert pkt == h(wire)
        assert enc.session_key == h(session)
        assert dec.decrypt(pkt) == IP + b"test message"
        assert dec.session_key == h(session)


@pytest.mark.parametrize("bits", [40, 56, 128])
@pytest.mark.parametrize("stateful", [False, True])
def test_initial_session_key_matches_rfc3079(impl, bits, stateful):
    key = SERVER_SEND_128[:mschap.key_length_for_bits(bits)]
    enc = impl.enc(key, bits, stateful)
    assert enc.session_key == mschap.initial_session_key(key, bits)


@pytest.mark.parametrize("bits", [40, 56, 128])
@pytest.mark.parametrize("stateful", [False, True])
def test_roundtrip_and_salt(impl, bits, stateful):
    enc, dec = impl.pair(bits, stateful)
    for i in range(300):
        data = IP + os.urandom(i % 50)
        pkt = enc.encrypt(data)
        assert len(pkt) == len(data) + 2
        assert dec.decrypt(pkt) == data
        if bits == 40:
            assert enc.session_key[:3] == b"\xd1\x26\x9e"
        elif bits == 56:
            assert enc.session_key[:1] == b"\xd1"


def test_pfc_protocol_returned_as_is(impl):
    enc, dec = impl.pair()
    assert dec.decrypt(enc.encrypt(b"\x21" + b"payload")) == b"\x21payload"


# --- stateless -------------------------------------------------------------------------------

def test_stateless_every_packet_flushed_and_rekeyed(impl):
    enc, _ = impl.pair()
    keys = set()
    for i in range(10):
        pkt = enc.encrypt(IP + b"x")
        assert pkt[0] & 0xF0 == 0x90 and ((pkt[0] & 0xF) << 8 | pkt[1]) == i
        keys.add(enc.session_key)
    assert len(keys) == 10 and enc.rekeys == 10


@pytest.mark.parametrize("skip", [1, 2, 255, 256, 1000, 2047, 2048, 3000, 4094])
def test_stateless_catch_up_over_loss(impl, skip):
    enc, dec = impl.pair()
    assert dec.decrypt(enc.encrypt(IP + b"first")) == IP + b"first"
    for _ in range(skip):
        enc.encrypt(IP + b"lost")
    rekeys = dec.rekeys
    assert dec.decrypt(enc.encrypt(IP + b"after")) == IP + b"after"
    assert dec.rekeys - rekeys == skip + 1
    assert dec.ccount == enc.ccount


def test_stateless_exactly_4095_ahead_is_accepted(impl):
    enc, dec = impl.pair()
    for _ in range(4094):
        enc.encrypt(IP)
    pkt = enc.encrypt(IP + b"far")   # ccount 4094, decryptor at 4095: 4095 ahead
    assert dec.decrypt(pkt) == IP + b"far"
    assert dec.rekeys == 4095 and dec.ccount == 4094


def test_stateless_duplicate_dropped_without_rekey(impl):
    enc, dec = impl.pair()
    pkts = [enc.encrypt(IP + bytes([i])) for i in range(5)]
    assert dec.decrypt(pkts[0]) == IP + b"\x00"
    assert dec.decrypt(pkts[2]) == IP + b"\x02"
    rekeys, ccount = dec.rekeys, dec.ccount
    for _ in range(2):                                # the same count again
        with pytest.raises(MppeTooOld):
            dec.decrypt(pkts[2])
    assert (dec.rekeys, dec.ccount) == (rekeys, ccount)
    assert dec.decrypt(pkts[3]) == IP + b"\x03"


def test_stateless_behind_is_taken_as_a_wrap(impl):
    """A count behind ours is, mod 4096, far ahead: taken as a loss (4095 rekeys), never
    as a late packet.  The engine's GRE window drops late frames before MPPE sees them."""
    enc, dec = impl.pair()
    pkts = [enc.encrypt(IP + bytes([i])) for i in range(3)]
    assert dec.decrypt(pkts[1]) == IP + b"\x01"
    rekeys = dec.rekeys
    assert dec.decrypt(pkts[0]) != IP + b"\x00"      # 4095 ahead: keys moved on
    assert dec.rekeys - rekeys == 4095 and dec.ccount == 0


@pytest.mark.parametrize("lost", [2048, 2049, 3000, 4094])
def test_stateless_loss_of_2048_to_4095_recovers(impl, lost):
    """The UDP-flood defect: 2048+ packets lost in a row used to leave every later packet
    "too old" (a stuck session).  The GRE window has dropped late frames before MPPE, so
    a count 2049..4095 ahead is a loss: one rekey per step, then delivery resumes (4094
    lost: the next packet is 4095 ahead, the most there is)."""
    enc, dec = impl.pair()
    assert dec.decrypt(enc.encrypt(IP)) == IP        # decryptor at 0
    for _ in range(lost):
        enc.encrypt(IP + b"lost")
    rekeys = dec.rekeys
    for i in range(5):
        data = IP + b"after" + bytes([i])
        assert dec.decrypt(enc.encrypt(data)) == data
    assert dec.rekeys - rekeys == lost + 5
    assert dec.ccount == enc.ccount


def test_stateless_loss_of_4096_is_a_duplicate_count_then_garbage(impl):
    """4096 lost: the next packet carries the count we hold (dropped as too old, no rekey);
    the keys are now one generation behind for good, and what follows decrypts to garbage
    (the engine turns that into EV_MPPE_LOST_SYNC: test_mppe_lost_sync.py)."""
    enc, dec = impl.pair()
    assert dec.decrypt(enc.encrypt(IP)) == IP        # decryptor at 0
    for _ in range(4095):
        enc.encrypt(IP + b"lost")
    with pytest.raises(MppeTooOld):
        dec.decrypt(enc.encrypt(IP + b"same count"))
    assert dec.rekeys == 1 and dec.ccount == 0
    assert dec.decrypt(enc.encrypt(IP + b"next")) != IP + b"next"


def test_stateless_wraps_at_4096(impl):
    enc, dec = impl.pair()
    for i in range(4200):
        pkt = enc.encrypt(IP + i.to_bytes(2, "big"))
        if i % 7 == 0 or i > 4090:
            assert dec.decrypt(pkt) == IP + i.to_bytes(2, "big")
    assert enc.ccount == 4199 % 4096


# --- sanity checks (state untouched) ---------------------------------------------------------

@pytest.mark.parametrize("stateful", [False, True])
def test_header_sanity(impl, stateful):
    enc, dec = impl.pair(stateful=stateful)
    good = enc.encrypt(IP + b"abc")
    for bad, err in [
        (b"", MppeTruncated), (good[:2], MppeTruncated),
        (bytes([good[0] & ~0x10]) + good[1:], MppeNotEncrypted),
        (bytes([good[0] | 0x20]) + good[1:], MppeNotEncrypted),
    ]:
        with pytest.raises(err):
            dec.decrypt(bad)
    if not stateful:
        with pytest.raises(MppeNotFlushed):
            dec.decrypt(bytes([good[0] & ~0x80]) + good[1:])
    assert dec.decrypt(good) == IP + b"abc"


def test_encrypt_needs_data(impl):
    enc, _ = impl.pair()
    with pytest.raises(ValueError):
        enc.encrypt(b"")


@pytest.mark.parametrize("bits, key", [(64, SERVER_SEND_128), (128, b"short"), (40, b"1234567")])
def test_bad_construction(impl, bits, key):
    with pytest.raises(ValueError):
        impl.enc(key, bits, False)


# --- stateful --------------------------------------------------------------------------------

def test_stateful_rekeys_only_on_flag_packets(impl):
    enc, dec = impl.pair(stateful=True)
    for i in range(600):
        key_before = enc.session_key
        pkt = enc.encrypt(IP + b"%d" % i)
        flag = (i & 0xFF) == 0xFF
        assert bool(pkt[0] & 0x80) == flag, i          # A only on flag packets
        assert (enc.session_key != key_before) == flag
        assert dec.decrypt(pkt) == IP + b"%d" % i
    assert enc.rekeys == 2 and dec.rekeys == 2


def test_stateful_flag_packet_without_a_rejected(impl):
    enc, dec = impl.pair(stateful=True)
    for _ in range(255):
        dec.decrypt(enc.encrypt(IP))
    flag = enc.encrypt(IP + b"flag")
    with pytest.raises(MppeNotFlushed):
        dec.decrypt(bytes([flag[0] & ~0x80]) + flag[1:])
    assert dec.decrypt(flag) == IP + b"flag"


def test_stateful_long_run_wraps(impl):
    enc, dec = impl.pair(stateful=True)
    for i in range(4400):
        data = IP + i.to_bytes(2, "big")
        assert dec.decrypt(enc.encrypt(data)) == data
    assert enc.rekeys == 17


def test_stateful_loss_reset_and_resync(impl):
    enc, dec = impl.pair(stateful=True)
    for _ in range(10):
        dec.decrypt(enc.encrypt(IP))
    enc.encrypt(IP + b"lost")
    with pytest.raises(MppeNeedReset):
        dec.decrypt(enc.encrypt(IP + b"gap"))
    assert dec.discard
    for _ in range(3):
        with pytest.raises(MppeDiscarding):
            dec.decrypt(enc.encrypt(IP + b"still"))
    enc.request_flush()      # peer's CCP Reset-Request reached the encryptor
    enc.request_flush()      # a retransmitted one: still a single rekey
    rekeys = enc.rekeys
    pkt = enc.encrypt(IP + b"resync")
    assert pkt[0] & 0x80 and enc.rekeys == rekeys + 1
    assert dec.decrypt(pkt) == IP + b"resync"
    assert not dec.discard
    nxt = enc.encrypt(IP + b"next")
    assert not nxt[0] & 0x80
    assert dec.decrypt(nxt) == IP + b"next"


@pytest.mark.parametrize("good, lost, waiting", [
    (254, 1, 0),       # the flag packet (0xFF) itself is lost
    (254, 1, 3),
    (250, 3, 10),      # loss before a flag packet; the flag packet (A) resyncs
    (100, 700, 5),     # several flag packets missed
    (255, 0, 3),       # no loss: control
    (3000, 1500, 2),   # resync across the 4096 wrap
    (10, 4000, 1),
])
def test_stateful_resync_across_flag_packets(impl, good, lost, waiting):
    enc, dec = impl.pair(stateful=True)
    for _ in range(good):
        dec.decrypt(enc.encrypt(IP))
    for _ in range(lost):
        enc.encrypt(IP + b"lost")
    in_sync = lost == 0
    for k in range(waiting):
        pkt = enc.encrypt(IP + b"w")
        if in_sync or pkt[0] & 0x80:
            # A packet: resyncs (the gap may be revealed by the flag packet itself).
            assert dec.decrypt(pkt) == IP + b"w"
            in_sync = True
        elif k == 0:
            with pytest.raises(MppeNeedReset):
                dec.decrypt(pkt)
        else:
            with pytest.raises(MppeDiscarding):
                dec.decrypt(pkt)
    enc.request_flush()
    for i in range(300):
        data = IP + b"ok%d" % i
        assert dec.decrypt(enc.encrypt(data)) == data
    assert not dec.discard


def test_stateful_gap_revealed_by_flag_packet_resyncs_at_once(impl):
    # Linux drops such a packet and asks for a reset; the A packet carries all we need.
    enc, dec = impl.pair(stateful=True)
    for _ in range(254):
        dec.decrypt(enc.encrypt(IP))
    enc.encrypt(IP + b"lost 0xFE")
    flag = enc.encrypt(IP + b"flag 0xFF")
    assert flag[0] & 0x80
    assert dec.decrypt(flag) == IP + b"flag 0xFF"
    assert dec.decrypt(enc.encrypt(IP + b"r")) == IP + b"r"


def test_stateless_request_flush_is_harmless(impl):
    enc, dec = impl.pair()
    enc.request_flush()
    assert dec.decrypt(enc.encrypt(IP + b"a")) == IP + b"a"
    assert enc.rekeys == 1


@pytest.mark.parametrize("bits", [40, 56, 128])
def test_stateless_matches_spec_built_from_mschap_primitives(impl, bits):
    """RFC 3078 §7.3 rekey spelled out with mschap functions and pycryptodome's ARC4."""
    klen = mschap.key_length_for_bits(bits)
    start = SERVER_SEND_128[:klen]
    session = mschap.initial_session_key(start, bits)
    enc = impl.enc(SERVER_SEND_128, bits, False)
    for count in range(5):
        interim = mschap.get_new_key_from_sha(start, session, klen)
        session = mschap.reduce_session_key(ARC4.new(interim).encrypt(interim), bits)
        data = IP + b"packet %d" % count
        assert enc.encrypt(data) == bytes((0x90, count)) + ARC4.new(session).encrypt(data)
