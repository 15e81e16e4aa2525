"""MS-CHAP / MS-CHAPv2 / RFC 3079 key derivation against the project's TEST-VECTORS.md §1-5
(the shared material beside the repository; the vectors are transcribed into this file)."""
import pytest
from Crypto.Cipher import ARC4

from fastpptp.crypto import mschap as m


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def rc4(key: bytes, data: bytes) -> bytes:
    return ARC4.new(key).encrypt(data)


# §1 RFC 2759 §9.2
USER = b"User"
PASSWORD = "clientPass"
AUTH_CHAL = h("5B 5D 7C 7D 7B 3F 2F 3E 3C 2C 60 21 32 26 26 28")
PEER_CHAL = h("21 40 23 24 25 5E 26 2A 28 29 5F 2B 3A 33 7C 7E")
NT_RESPONSE = h("82 30 9E CD 8D 70 8B 5E A0 8F AA 39 81 CD 83 54 42 33 11 4A 3D 85 D6 DF")
AUTH_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"
TEST_MESSAGE = b"test message"


def test_rfc2759_hash_example():
    assert m.challenge_hash(PEER_CHAL, AUTH_CHAL, USER) == h("D0 2E 43 86 BC E9 12 26")
    pw_hash = m.nt_password_hash(PASSWORD)
    assert pw_hash == h("44 EB BA 8D 53 12 B8 D6 11 47 44 11 F5 69 89 AE")
    assert m.generate_nt_response(AUTH_CHAL, PEER_CHAL, USER, PASSWORD) == NT_RESPONSE
    assert m.hash_nt_password_hash(pw_hash) == h("41 C0 0C 58 4B D2 D9 1C 40 17 A2 A1 2F A5 9F 3F")
    assert m.generate_authenticator_response(
        PASSWORD, NT_RESPONSE, PEER_CHAL, AUTH_CHAL, USER) == AUTH_RESPONSE


@pytest.mark.parametrize("name", [b"DOMAIN\\User", b"A\\B\\User", "DOMAIN\\User"])
def test_challenge_hash_strips_domain(name):
    assert m.challenge_hash(PEER_CHAL, AUTH_CHAL, name) == h("D0 2E 43 86 BC E9 12 26")
    assert m.generate_nt_response(AUTH_CHAL, PEER_CHAL, name, PASSWORD) == NT_RESPONSE


def test_check_authenticator_response():
    args = (PASSWORD, NT_RESPONSE, PEER_CHAL, AUTH_CHAL, USER)
    assert m.check_authenticator_response(*args, AUTH_RESPONSE)
    assert m.check_authenticator_response(*args, AUTH_RESPONSE.lower().replace("s=", "S="))
    assert m.check_authenticator_response(*args, AUTH_RESPONSE.encode())
    assert not m.check_authenticator_response(*args, AUTH_RESPONSE[:-1] + "7")
    assert not m.check_authenticator_response(*args, AUTH_RESPONSE[:-1])
    assert not m.check_authenticator_response(*args, "s=" + AUTH_RESPONSE[2:])
    assert not m.check_authenticator_response(*args, "S=" + "\u00e9" * 40)
    assert not m.check_authenticator_response("wrong", *args[1:], AUTH_RESPONSE)


# §2 RFC 2759 §9.3
@pytest.mark.parametrize("k7, k8", [
    ("FC 15 6A F7 ED CD 6C", "FD 0B 5B 5E 7F 6E 34 D9"),
    ("0E DD E3 33 7D 42 7F", "0E 6E 79 67 37 EA 08 FE"),
    ("4E AC 00 00 00 00 00", "4F 57 01 01 01 01 01 01"),
])
def test_des_key_generation(k7, k8):
    assert m.des_key_from_7(h(k7)) == h(k8)


def test_des_key_parity_is_odd():
    for v in range(256):
        for b in m.des_key_from_7(bytes([v]) * 7):
            assert bin(b).count("1") % 2 == 1


def test_mypw_hash():
    assert m.nt_password_hash("MyPw") == h("FC 15 6A F7 ED CD 6C 0E DD E3 33 7D 42 7F 4E AC")


# §3 RFC 2433 Appendix B.2
V1_CHAL = h("10 2D B5 DF 08 5D 30 41")


def test_rfc2433_hash_example():
    assert m.lm_password_hash("MyPw") == h("75 BA 30 19 8E 6D 19 75 AA D3 B4 35 B5 14 04 EE")
    assert m.lm_challenge_response(V1_CHAL, "MyPw") == h(
        "91 88 1D 01 52 AB 0C 33 C5 24 13 5E C2 4A 95 EE 64 E2 3C DC 2D 33 34 7D")
    assert m.nt_challenge_response(V1_CHAL, "MyPw") == h(
        "4E 9D 3C 8F 9C FD 38 5D 5B F4 D3 24 67 91 95 6C A4 C3 51 AB 40 9A 3D 61")


def test_lm_password_truncates_to_14():
    assert m.lm_password_hash("abcdefghijklmnXYZ") == m.lm_password_hash("ABCDEFGHIJKLMN")


# §4 RFC 3079 §3.5
SERVER_SEND_128 = h("8B 7C DC 14 9B 99 3A 1B A1 18 CB 15 3F 56 DC CB")
CLIENT_SEND_128 = h("D5 F0 E9 52 1E 3E A9 58 96 45 E8 60 51 C8 22 26")


def test_rfc3079_master_and_start_keys():
    phh = m.hash_nt_password_hash(m.nt_password_hash(PASSWORD))
    master = m.get_master_key(phh, NT_RESPONSE)
    assert master == h("FD EC E3 71 7A 8C 83 8C B3 88 E5 27 AE 3C DD 31")
    assert m.get_asymmetric_start_key(master, 16, True, True) == SERVER_SEND_128
    assert m.get_asymmetric_start_key(master, 16, False, False) == SERVER_SEND_128
    assert m.get_asymmetric_start_key(master, 16, True, False) == CLIENT_SEND_128
    assert m.get_asymmetric_start_key(master, 16, False, True) == CLIENT_SEND_128
    assert m.get_asymmetric_start_key(master, 8, True, True) == SERVER_SEND_128[:8]


def test_mppe_keys_mschapv2_both_roles():
    assert m.mppe_keys_mschapv2(PASSWORD, NT_RESPONSE, True) == (SERVER_SEND_128, CLIENT_SEND_128)
    assert m.mppe_keys_mschapv2(PASSWORD, NT_RESPONSE, False) == (CLIENT_SEND_128, SERVER_SEND_128)
    assert m.mppe_keys_mschapv2(PASSWORD, NT_RESPONSE, False, key_len=8) == (
        h("D5 F0 E9 52 1E 3E A9 58"), h("8B 7C DC 14 9B 99 3A 1B"))


@pytest.mark.parametrize("bits, start, session, cipher", [
    (128, SERVER_SEND_128, "40 5C B2 24 7A 79 56 E6 E2 11 00 7A E2 7B 22 D4",
     "81 84 83 17 DF 68 84 62 72 FB 5A BE"),
    (40, SERVER_SEND_128[:8], "D1 26 9E C4 9F A6 2E 3E", "92 91 37 91 7E 58 03 D6 68 D7 58 98"),
    (56, SERVER_SEND_128[:8], "D1 5C 00 C4 9F A6 2E 3E", "3F 10 68 33 FA 44 8D A8 42 BC 57 B8"),
    # A 16-octet start key is cut to the strength's key length.
    (40, SERVER_SEND_128, "D1 26 9E C4 9F A6 2E 3E", "92 91 37 91 7E 58 03 D6 68 D7 58 98"),
])
def test_rfc3079_session_keys(bits, start, session, cipher):
    key = m.initial_session_key(start, bits)
    assert key == h(session)
    assert rc4(key, TEST_MESSAGE) == h(cipher)


def test_get_new_key_from_sha_128():
    assert m.get_new_key_from_sha(SERVER_SEND_128, SERVER_SEND_128, 16) == h(
        "40 5C B2 24 7A 79 56 E6 E2 11 00 7A E2 7B 22 D4")


# §5 RFC 3079 §2.5 (MS-CHAPv1 keys)
def test_rfc3079_mschapv1_keys():
    lm = m.lm_password_hash(PASSWORD)
    assert lm == h("76 A1 52 93 60 96 D7 83 0E 23 90 22 74 04 AF D2")
    assert m.get_new_key_from_sha(lm[:8], lm[:8], 8) == h("D8 08 01 53 8C EC 4A 08")
    start8 = m.mppe_keys_mschapv1(PASSWORD, V1_CHAL, 8, lm_keys=True)
    assert start8 == lm[:8]
    k40 = m.initial_session_key(start8, 40)
    k56 = m.initial_session_key(start8, 56)
    assert k40 == h("D1 26 9E 53 8C EC 4A 08")
    assert k56 == h("D1 08 01 53 8C EC 4A 08")
    assert rc4(k40, TEST_MESSAGE) == h("09 72 E7 60 39 E5 10 79 85 56 76 42")
    assert rc4(k56, TEST_MESSAGE) == h("1C C6 BF 0B BD 3D 9B 21 CF 87 7A 6B")
    start16 = m.mppe_keys_mschapv1(PASSWORD, V1_CHAL, 16)
    assert start16 == h("A8 94 78 50 CF C0 AC C1 D1 78 9F B6 2D DC DD B0")
    k128 = m.initial_session_key(start16, 128)
    assert k128 == h("59 D1 59 BC 09 F7 6F 1D A2 A8 6A 28 FF EC 0B 1E")
    assert rc4(k128, TEST_MESSAGE) == h("FA E9 06 88 F9 85 F3 13 C7 D3 67 C3")


def test_mschapv1_8_octet_default_is_pppd_style():
    # pppd mppe_set_keys(): the 40-bit key is the first 8 octets of the SHA-1 start key.
    assert m.mppe_keys_mschapv1(PASSWORD, V1_CHAL, 8) == h("A8 94 78 50 CF C0 AC C1")


@pytest.mark.parametrize("call", [
    lambda: m.challenge_hash(PEER_CHAL[:15], AUTH_CHAL, USER),
    lambda: m.challenge_response(b"\x00" * 7, b"\x00" * 16),
    lambda: m.hash_nt_password_hash(b"\x00" * 15),
    lambda: m.get_master_key(b"\x00" * 16, b"\x00" * 23),
    lambda: m.get_asymmetric_start_key(b"\x00" * 16, 12, True, True),
    lambda: m.initial_session_key(b"\x00" * 16, 64),
    lambda: m.initial_session_key(b"\x00" * 7, 40),
    lambda: m.nt_password_hash("x" * 257),
])
def test_bad_lengths_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_des_key_from_7_keeps_all_56_bits():
    from hypothesis import given, settings, strategies as st

    @given(st.binary(min_size=7, max_size=7))
    @settings(max_examples=300, deadline=None)
    def check(k7):
        k8 = m.des_key_from_7(k7)
        bits = 0
        for b in k8:
            bits = (bits << 7) | (b >> 1)
        assert bits.to_bytes(7, "big") == k7

    check()


def test_mppe_keys_are_prefixes_across_key_lengths():
    # pppd derives 16 octets and Linux uses the first 8 for 40-bit: same as key_len=8.
    for is_server in (False, True):
        k16 = m.mppe_keys_mschapv2(PASSWORD, NT_RESPONSE, is_server, 16)
        k8 = m.mppe_keys_mschapv2(PASSWORD, NT_RESPONSE, is_server, 8)
        assert (k16[0][:8], k16[1][:8]) == k8
    assert m.mppe_keys_mschapv1(PASSWORD, V1_CHAL, 16)[:8] == m.mppe_keys_mschapv1(
        PASSWORD, V1_CHAL, 8)
