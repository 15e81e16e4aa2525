"""The fast paths of the compiled _mppe against plain definitions.

_mppe.pyx hashes the rekey input as two pre-laid-out SHA-1 blocks (no sha1_update/final),
compresses them with the SHA extensions where the CPU has them (SHA-NI) or else an unrolled
portable compression -- both are run here, the ``sha_impl`` fixture switching between them
(SHA-NI only where CPUID reports it) -- and runs the RC4 key schedule as 256 written-out
rounds on the key repeated to 256 octets (fixed-size copies for 8 and 16 octets, a doubling
copy otherwise).  Each is checked here on random keys against hashlib, a textbook RC4 key
schedule written below, and pycryptodome; the rekey chain is checked against the
pure-Python twin across thousands of rekeys.
"""
import hashlib
import os
import random

import pytest
from Crypto.Cipher import ARC4
from hypothesis import HealthCheck, given, settings, strategies as st

from fastpptp import _mppe
from fastpptp.crypto import mppe

PAD1 = b"\x00" * 40          # RFC 3078 §7.3 SHApad1
PAD2 = b"\xf2" * 40          # RFC 3078 §7.3 SHApad2


def textbook_ksa(key: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    return bytes(s)


# --- GetNewKeyFromSHA: the two-block SHA-1 ------------------------------------------------

HAVE_SHA_NI = _mppe._sha_ni()
SHA_IMPLS = ["portable", "sha-ni"] if HAVE_SHA_NI else ["portable"]


@pytest.fixture(params=SHA_IMPLS)
def sha_impl(request):
    assert _mppe._sha_ni(request.param == "sha-ni") == (request.param == "sha-ni")
    yield request.param
    _mppe._sha_ni(True)
    assert _mppe._sha_ni() == HAVE_SHA_NI


@pytest.mark.parametrize("bits", [40, 56, 128])
@given(data=st.data())
# sha_impl only selects the compression for the whole test; nothing to reset per example.
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_get_new_key_matches_hashlib(sha_impl, bits, data):
    n = 16 if bits == 128 else 8
    start = data.draw(st.binary(min_size=n, max_size=n))
    session = data.draw(st.binary(min_size=n, max_size=n))
    want = hashlib.sha1(start + PAD1 + session + PAD2).digest()
    assert _mppe._get_new_key(start, session, bits) == want


@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x80, 0x01])
@pytest.mark.parametrize("n, bits", [(8, 40), (16, 128)])
def test_get_new_key_extreme_octets(sha_impl, fill, n, bits):
    # All-zero / all-one words exercise the constant-padding words and carries.
    start = session = bytes([fill]) * n
    want = hashlib.sha1(start + PAD1 + session + PAD2).digest()
    assert _mppe._get_new_key(start, session, bits) == want


def test_get_new_key_rejects_wrong_lengths():
    with pytest.raises(ValueError):
        _mppe._get_new_key(b"\x00" * 8, b"\x00" * 8, 128)
    with pytest.raises(ValueError):
        _mppe._get_new_key(b"\x00" * 16, b"\x00" * 8, 128)
    with pytest.raises(ValueError):
        _mppe._get_new_key(b"\x00" * 8, b"\x00" * 8, 64)


def test_sha1_compression_on_many_blocks(sha_impl):
    # The streaming sha1_update/final path shares the unrolled compression.
    rnd = random.Random(3079)
    for n in (64, 128, 640, 4096 + 7):
        data = rnd.randbytes(n)
        assert _mppe.sha1(data) == hashlib.sha1(data).digest()


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_sha1_both_compressions_agree(data):
    try:
        for on in (False, True):
            _mppe._sha_ni(on)
            assert _mppe.sha1(data) == hashlib.sha1(data).digest()
    finally:
        _mppe._sha_ni(True)


# --- RC4 key schedule ---------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 100, 255, 256])
def test_ksa_matches_textbook_for_every_path(n):
    rnd = random.Random(n)
    for _ in range(20):
        key = rnd.randbytes(n)
        assert _mppe._rc4_sbox(key) == textbook_ksa(key)


@given(st.binary(min_size=1, max_size=256))
@settings(max_examples=300, deadline=None)
def test_ksa_matches_textbook_random(key):
    assert _mppe._rc4_sbox(key) == textbook_ksa(key)


@pytest.mark.parametrize("n", [8, 16])
def test_ksa_patch_case(n):
    # The swap lands on S[i + 1] (the look-ahead the schedule patches) for about one key in
    # 256 rounds: make sure these 200 keys hit that case, and agree.
    rnd = random.Random(1000 + n)
    hits = 0
    for _ in range(200):
        key = rnd.randbytes(n)
        s, j = list(range(256)), 0
        for i in range(255):
            j = (j + s[i] + key[i % n]) & 0xFF
            hits += j == i + 1
            s[i], s[j] = s[j], s[i]
        assert _mppe._rc4_sbox(key) == textbook_ksa(key)
    assert hits > 0


@given(st.sampled_from([8, 16]), st.data())
@settings(max_examples=150, deadline=None)
def test_rc4_mppe_key_lengths_match_pycryptodome(n, data):
    key = data.draw(st.binary(min_size=n, max_size=n))
    plain = data.draw(st.binary(max_size=1500))
    assert _mppe.rc4(key, plain) == ARC4.new(key).encrypt(plain)


# --- the whole rekey chain ------------------------------------------------------------------

@pytest.mark.parametrize("bits", [40, 56, 128])
def test_stateless_rekey_chain_matches_python_twin(sha_impl, bits):
    n = 16 if bits == 128 else 8
    rnd = random.Random(bits)
    for _ in range(3):
        key = rnd.randbytes(n)
        fast = _mppe.Mppe(key, bits, False)
        slow = mppe.MppeEncryptor(key, bits, False)
        assert fast.session_key == slow.session_key
        for count in range(600):
            data = rnd.randbytes(rnd.randrange(1, 40))
            assert fast.encrypt(data) == slow.encrypt(data), count
            assert fast.session_key == slow.session_key


@pytest.mark.parametrize("bits", [40, 56, 128])
def test_stateless_decrypt_far_ahead_matches(bits):
    # A decryptor 4095 counts behind (the most a stateless receiver catches up over)
    # rekeys 4095 times for one packet.
    n = 16 if bits == 128 else 8
    key = os.urandom(n)
    enc = _mppe.Mppe(key, bits, False)
    dec_fast = _mppe.Mppe(key, bits, False)
    dec_slow = mppe.MppeDecryptor(key, bits, False)
    for _ in range(4094):
        enc.encrypt(b"\x00\x21x")
    pkt = enc.encrypt(b"\x00\x21" + b"payload")
    assert dec_fast.decrypt(pkt) == dec_slow.decrypt(pkt) == b"\x00\x21payload"
    assert dec_fast.session_key == dec_slow.session_key
    assert dec_fast.rekeys == 4095
