"""Differential tests: compiled _mppe against the pure-Python crypto.mppe.

Hypothesis draws a key, a strength, a mode and a script of events on a lossy, reordering,
duplicating, corrupting link (plus CCP Reset-Requests and junk); both implementations run
the same script and must produce byte-identical packets, plaintexts and the same errors.
The encryptor of one and the decryptor of the other are also paired (cross interop).
"""
from hypothesis import given, settings, strategies as st

from fastpptp import _mppe
from fastpptp.crypto import mppe

SEND = st.tuples(
    st.just("send"),
    st.binary(min_size=1, max_size=40),
    st.sampled_from(["deliver"] * 6 + ["drop", "dup", "hold", "flipbits"]),
    st.integers(0, 255),
)
EVENT = st.one_of(
    SEND, SEND, SEND, SEND,
    st.tuples(st.just("flush")),
    st.tuples(st.just("release")),
    st.tuples(st.just("burst_lost"), st.integers(1, 700)),
    st.tuples(st.just("junk"), st.binary(max_size=8)),
)


def _run(enc, dec, script, auto_reset):
    """Play ``script``; return the transcript of every observable result."""
    log = []
    held = []

    def deliver(pkt):
        try:
            out = dec.decrypt(pkt)
            log.append(("ok", out))
        except mppe.MppeError as e:
            log.append(("err", type(e).__name__))
            if auto_reset and isinstance(e, mppe.MppeNeedReset):
                enc.request_flush()   # our CCP Reset-Request reached the peer

    for ev in script:
        kind = ev[0]
        if kind == "send":
            _, data, fate, mask = ev
            pkt = enc.encrypt(data)
            log.append(("pkt", pkt))
            if fate == "deliver":
                deliver(pkt)
            elif fate == "dup":
                deliver(pkt)
                deliver(pkt)
            elif fate == "hold":
                held.append(pkt)
            elif fate == "flipbits":
                deliver(bytes([pkt[0] ^ (mask & 0xF0)]) + pkt[1:])
        elif kind == "flush":
            enc.request_flush()
        elif kind == "release":
            for pkt in held:
                deliver(pkt)
            held.clear()
        elif kind == "burst_lost":
            for _ in range(ev[1]):
                enc.encrypt(b"\x00\x21")
        elif kind == "junk":
            deliver(ev[1])
    log.append(("state", enc.ccount, dec.ccount, bool(dec.discard), enc.session_key,
                dec.session_key, enc.rekeys, dec.rekeys))
    return log


@given(key=st.binary(min_size=16, max_size=16), bits=st.sampled_from([40, 56, 128]),
       stateful=st.booleans(), auto_reset=st.booleans(),
       script=st.lists(EVENT, max_size=60))
@settings(max_examples=300, deadline=None)
def test_compiled_matches_python(key, bits, stateful, auto_reset, script):
    py = _run(mppe.MppeEncryptor(key, bits, stateful), mppe.MppeDecryptor(key, bits, stateful),
              script, auto_reset)
    c = _run(_mppe.Mppe(key, bits, stateful), _mppe.Mppe(key, bits, stateful),
             script, auto_reset)
    assert c == py


@given(key=st.binary(min_size=16, max_size=16), bits=st.sampled_from([40, 56, 128]),
       stateful=st.booleans(), script=st.lists(EVENT, max_size=40))
@settings(max_examples=150, deadline=None)
def test_cross_pairs_match(key, bits, stateful, script):
    py = _run(mppe.MppeEncryptor(key, bits, stateful), mppe.MppeDecryptor(key, bits, stateful),
              script, True)
    c_to_py = _run(_mppe.Mppe(key, bits, stateful), mppe.MppeDecryptor(key, bits, stateful),
                   script, True)
    py_to_c = _run(mppe.MppeEncryptor(key, bits, stateful), _mppe.Mppe(key, bits, stateful),
                   script, True)
    assert c_to_py == py == py_to_c


@given(key=st.binary(min_size=16, max_size=16), stateful=st.booleans(),
       junk=st.lists(st.binary(max_size=6), max_size=30))
@settings(max_examples=200, deadline=None)
def test_junk_same_errors_and_state(key, stateful, junk):
    a, b = mppe.MppeDecryptor(key, 128, stateful), _mppe.Mppe(key, 128, stateful)
    for pkt in junk:
        ra = rb = None
        try:
            ra = a.decrypt(pkt)
        except mppe.MppeError as e:
            ra = type(e)
        try:
            rb = b.decrypt(pkt)
        except mppe.MppeError as e:
            rb = type(e)
        assert ra == rb
        assert (a.ccount, a.discard, a.session_key) == (b.ccount, b.discard, b.session_key)


@given(st.lists(st.integers(0, 4095), max_size=50))
@settings(max_examples=100, deadline=None)
def test_stateless_arbitrary_counts_never_desync(skips):
    """Whatever the loss pattern (up to 4094 lost in a row: the next packet is at most 4095
    counts ahead), every delivered packet decrypts."""
    key = bytes(range(16))
    enc, dec = mppe.MppeEncryptor(key, 128, False), _mppe.Mppe(key, 128, False)
    for n in skips:
        for _ in range(n % 4095):
            enc.encrypt(b"\x00\x21")
        data = b"\x00\x21" + n.to_bytes(2, "big")
        assert dec.decrypt(enc.encrypt(data)) == data
