"""fastpptp.radius.packet: the RFC vectors, the shared-secret cryptography checked against
an independent transcription of the RFC formulas, and every length check."""
import hashlib
import hmac
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastpptp.errors import DecodeError, LocalProtocolError
from fastpptp.radius.dictionary import VENDOR_MICROSOFT, Attr, Code, MsAttr
from fastpptp.radius.packet import (
    Attribute, MissingMessageAuthenticator, Packet, RadiusAuthError, RadiusDecodeError, UnexpectedCode,
    decode_packet, decrypt_mppe_key, decrypt_ms_chap_mppe_keys, encode_request, encode_response,
    encrypt_mppe_key, encrypt_ms_chap_mppe_keys, hide_password, message_authenticator, unhide_password,
    verify_request, verify_response,
)

MS = VENDOR_MICROSOFT

# RFC 2865 §7.1: user "nemo", password "arctangent", secret "xyzzy5461", NAS 192.168.1.16 port 3
RFC2865_SECRET = b"xyzzy5461"
RFC2865_71_REQUEST = bytes.fromhex(
    "01000038 0f403f94 73978057 bd83d5cb 98f4227a 01066e65 6d6f0212 0dbe708d"
    "93d413ce 3196e43f 782a0aee 0406c0a8 01100506 00000003")
RFC2865_71_ACCEPT = bytes.fromhex(
    "02000026 86fe220e 7624ba2a 1005f6bf 9b55e0b2 06060000 00010f06 00000000 0e06c0a8 0103")
# RFC 2865 §7.2: user "flopsy" with CHAP (CHAP ID 22, the Request Authenticator is the challenge)
RFC2865_72_REQUEST = bytes.fromhex(
    "01010047 2aee86f0 8d0d5596 9ca5978e 0d3367a2 0108666c 6f707379 031316e9"
    "7557c316 185895f2 93ff6344 07727504 06c0a801 10050600 00001406 06000000"
    "02070600 000001")
# RFC 2865 §7.3: an Access-Challenge with Reply-Message and State
RFC2865_73_CHALLENGE = bytes.fromhex(
    "0b02004e 36f3c876 4ae8c711 57403c0c 71ff9c45 12304368 616c6c65 6e676520"
    "33323736 39343330 2e202045 6e746572 20726573 706f6e73 65206174 2070726f"
    "6d70742e 180a3332 37363934 3330")
# RFC 5997 §6.1: Status-Server with only a Message-Authenticator, same secret
RFC5997_STATUS_SERVER = bytes.fromhex(
    "0cda0026 8a54f468 6fb394c5 2866e302 185d0623 50125a66 5e2e1e84 11f3e243 822097c8 4fa3")


def test_rfc2865_7_1_access_request_decodes_and_reencodes():
    p = decode_packet(RFC2865_71_REQUEST)
    assert (p.code, p.identifier) == (Code.ACCESS_REQUEST, 0)
    assert p.get(Attr.USER_NAME) == b"nemo"
    assert unhide_password(p.get(Attr.USER_PASSWORD), RFC2865_SECRET, p.authenticator) == b"arctangent"
    assert str(p.get_ipv4(Attr.NAS_IP_ADDRESS)) == "192.168.1.16" and p.get_int(Attr.NAS_PORT) == 3
    clear = Packet(Code.ACCESS_REQUEST, 0, attributes=[
        Attribute(Attr.USER_NAME, b"nemo"), Attribute(Attr.USER_PASSWORD, b"arctangent"),
        Attribute(Attr.NAS_IP_ADDRESS, bytes([192, 168, 1, 16])), Attribute(Attr.NAS_PORT, struct.pack("!I", 3))])
    wire, auth = encode_request(clear, RFC2865_SECRET, with_message_authenticator=False,
                                authenticator=p.authenticator)
    assert (wire, auth) == (RFC2865_71_REQUEST, p.authenticator)


def test_rfc2865_7_1_access_accept_verifies():
    req = decode_packet(RFC2865_71_REQUEST)
    acc = decode_packet(RFC2865_71_ACCEPT)
    assert acc.get_int(Attr.SERVICE_TYPE) == 1 and acc.get_int(15) == 0   # Login-Service Telnet
    verify_response(RFC2865_71_ACCEPT, acc, Code.ACCESS_REQUEST, req.authenticator, RFC2865_SECRET,
                    require_message_authenticator=False)
    with pytest.raises(MissingMessageAuthenticator):   # BlastRADIUS: unsigned is not enough
        verify_response(RFC2865_71_ACCEPT, acc, Code.ACCESS_REQUEST, req.authenticator, RFC2865_SECRET,
                        require_message_authenticator=True)
    with pytest.raises(RadiusAuthError):
        verify_response(RFC2865_71_ACCEPT, acc, Code.ACCESS_REQUEST, req.authenticator, b"xyzzy5462",
                        require_message_authenticator=False)
    # the same encoder reproduces it
    assert encode_response(acc, RFC2865_SECRET, req.authenticator,
                           with_message_authenticator=False) == RFC2865_71_ACCEPT


def test_rfc2865_7_2_chap_request_and_7_3_challenge_decode():
    req = decode_packet(RFC2865_72_REQUEST)
    assert (req.code, req.identifier, req.get(Attr.USER_NAME)) == (Code.ACCESS_REQUEST, 1, b"flopsy")
    chap = req.get(Attr.CHAP_PASSWORD)
    assert (len(chap), chap[0]) == (17, 22)
    assert (req.get_int(Attr.NAS_PORT), req.get_int(Attr.SERVICE_TYPE), req.get_int(Attr.FRAMED_PROTOCOL)) == (20, 2, 1)
    ch = decode_packet(RFC2865_73_CHALLENGE)
    assert ch.code == Code.ACCESS_CHALLENGE
    assert ch.get_text(Attr.REPLY_MESSAGE) == "Challenge 32769430.  Enter response at prompt."
    assert ch.get(Attr.STATE) == b"32769430"


@pytest.mark.parametrize("wire", [RFC2865_71_REQUEST, RFC2865_71_ACCEPT, RFC2865_72_REQUEST,
                                  RFC2865_73_CHALLENGE, RFC5997_STATUS_SERVER])
def test_every_truncation_of_an_rfc_packet_is_refused(wire):
    for n in range(len(wire)):
        with pytest.raises(RadiusDecodeError):
            decode_packet(wire[:n])


def test_rfc5997_status_server_message_authenticator():
    p = decode_packet(RFC5997_STATUS_SERVER)
    assert (p.code, p.identifier) == (Code.STATUS_SERVER, 218)
    assert message_authenticator(RFC2865_SECRET, RFC5997_STATUS_SERVER, p.authenticator) == \
        p.get(Attr.MESSAGE_AUTHENTICATOR)
    verify_request(RFC5997_STATUS_SERVER, p, RFC2865_SECRET, require_message_authenticator=True)
    wire, _ = encode_request(Packet(Code.STATUS_SERVER, 218), RFC2865_SECRET, authenticator=p.authenticator)
    assert wire == RFC5997_STATUS_SERVER


# --- independent transcriptions of the formulas -------------------------------------------------

def _ref_hide(secret, ra, plain):
    out, last = b"", ra
    for i in range(0, len(plain), 16):
        b = hashlib.md5(secret + last).digest()
        c = bytes(x ^ y for x, y in zip(plain[i:i + 16], b, strict=True))
        out, last = out + c, c
    return out


@pytest.mark.parametrize("password", [b"", b"x", b"a" * 15, b"b" * 16, b"c" * 17, b"d" * 128])
def test_user_password_hiding_rfc2865_5_2(password):
    ra = bytes(range(16))
    hidden = hide_password(password, b"s3cret", ra)
    padded = password + bytes(16 - len(password) % 16 if len(password) % 16 or not password else 0)
    assert hidden == _ref_hide(b"s3cret", ra, padded)
    assert len(hidden) == max(16, (len(password) + 15) // 16 * 16)
    assert unhide_password(hidden, b"s3cret", ra) == password


def test_user_password_limits():
    with pytest.raises(LocalProtocolError):
        hide_password(b"x" * 129, b"s", bytes(16))
    for bad in (b"", b"x" * 15, b"x" * 144):
        with pytest.raises(RadiusDecodeError):
            unhide_password(bad, b"s", bytes(16))


@pytest.mark.parametrize("key", [bytes(range(16)), bytes(range(32)), b"\xaa" * 8])
def test_mppe_key_salt_encryption_rfc2548_2_4_2(key):
    ra, salt, secret = bytes(range(100, 116)), b"\x80\x01", b"radius-secret"
    value = encrypt_mppe_key(key, secret, ra, salt)
    # RFC 2548 §2.4.2: P = Key-Length | Key | pad; b(1) = MD5(S + R + A); c(i) = p(i) xor b(i)
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    first = hashlib.md5(secret + ra + salt).digest()
    assert value[:2] == salt and value[2:18] == bytes(x ^ y for x, y in zip(plain[:16], first, strict=True))
    assert value[2:] == _ref_hide(secret, ra + salt, plain)
    assert decrypt_mppe_key(value, secret, ra) == key
    try:            # a wrong secret gives garbage or a Key-Length that does not fit
        assert decrypt_mppe_key(value, b"other", ra) != key
    except RadiusDecodeError:
        pass


def test_mppe_key_decrypt_lengths():
    ra, secret = bytes(16), b"s"
    good = encrypt_mppe_key(bytes(16), secret, ra, b"\x81\x02")
    # too short, not salt + whole blocks, salt without its high bit (RFC 2548 §2.4.2: MUST be set)
    for bad in (good[:17], good + b"\x00", b"\x01\x02" + good[2:]):
        with pytest.raises(RadiusDecodeError):
            decrypt_mppe_key(bad, secret, ra)
    # a Key-Length larger than the plaintext
    forged = b"\x80\x00" + _ref_hide(secret, ra + b"\x80\x00", bytes([40]) + bytes(15))
    with pytest.raises(RadiusDecodeError):
        decrypt_mppe_key(forged, secret, ra)
    with pytest.raises(LocalProtocolError):
        encrypt_mppe_key(b"k", secret, ra, b"\x00\x01")


def test_ms_chap_mppe_keys_rfc2548_2_4_1():
    ra, secret = bytes(range(16)), b"sec"
    lm, nt = b"L" * 8, b"N" * 16
    value = encrypt_ms_chap_mppe_keys(lm, nt, secret, ra)
    assert value == _ref_hide(secret, ra, lm + nt + bytes(8))
    assert decrypt_ms_chap_mppe_keys(value, secret, ra) == (lm, nt)
    with pytest.raises(RadiusDecodeError):
        decrypt_ms_chap_mppe_keys(value[:24], secret, ra)


@pytest.mark.parametrize("code", [Code.ACCOUNTING_REQUEST, Code.DISCONNECT_REQUEST, Code.COA_REQUEST])
@pytest.mark.parametrize("with_ma", [False, True])
def test_computed_request_authenticator_rfc2866_3(code, with_ma):
    attrs = [Attribute(Attr.ACCT_STATUS_TYPE, struct.pack("!I", 1)), Attribute(Attr.ACCT_SESSION_ID, b"abc")]
    wire, auth = encode_request(Packet(code, 7, attributes=attrs), b"sec", with_message_authenticator=with_ma)
    assert wire[4:20] == auth
    assert auth == hashlib.md5(wire[:4] + bytes(16) + wire[20:] + b"sec").digest()
    p = decode_packet(wire)
    assert p.has(Attr.MESSAGE_AUTHENTICATOR) == with_ma
    verify_request(wire, p, b"sec", require_message_authenticator=with_ma)
    if with_ma:   # RFC 5176 §3.1 / RFC 3579: the MA is computed with 16 zero octets
        zeroed = bytearray(wire)
        zeroed[4:20] = bytes(16)
        ma = wire.index(bytes([80, 18])) + 2
        zeroed[ma:ma + 16] = bytes(16)
        assert hmac.new(b"sec", bytes(zeroed), "md5").digest() == p.get(Attr.MESSAGE_AUTHENTICATOR)
    with pytest.raises(RadiusAuthError):
        verify_request(wire, p, b"other", require_message_authenticator=False)
    with pytest.raises(LocalProtocolError):   # a User-Password has no place there
        encode_request(Packet(code, 1, attributes=[Attribute(Attr.USER_PASSWORD, b"x")]), b"s")


def test_access_request_message_authenticator_first_and_verifiable():
    p = Packet(Code.ACCESS_REQUEST, 3, attributes=[Attribute(Attr.USER_NAME, b"u"),
                                                   Attribute(Attr.USER_PASSWORD, b"pw")])
    wire, auth = encode_request(p, b"sec")
    d = decode_packet(wire)
    assert d.attributes[0].type == Attr.MESSAGE_AUTHENTICATOR and d.authenticator == auth
    verify_request(wire, d, b"sec", require_message_authenticator=True)
    tampered = bytearray(wire)
    tampered[-1] ^= 1
    with pytest.raises(RadiusAuthError):
        verify_request(bytes(tampered), decode_packet(bytes(tampered)), b"sec", require_message_authenticator=True)
    assert unhide_password(d.get(Attr.USER_PASSWORD), b"sec", auth) == b"pw"


@pytest.mark.parametrize("req,resp", [(Code.ACCESS_REQUEST, Code.ACCESS_ACCEPT),
                                      (Code.ACCESS_REQUEST, Code.ACCESS_REJECT),
                                      (Code.ACCESS_REQUEST, Code.ACCESS_CHALLENGE),
                                      (Code.ACCOUNTING_REQUEST, Code.ACCOUNTING_RESPONSE),
                                      (Code.DISCONNECT_REQUEST, Code.DISCONNECT_ACK),
                                      (Code.DISCONNECT_REQUEST, Code.DISCONNECT_NAK),
                                      (Code.COA_REQUEST, Code.COA_ACK), (Code.COA_REQUEST, Code.COA_NAK)])
def test_response_verification(req, resp):
    ra = bytes(range(16))
    r = Packet(resp, 9, attributes=[Attribute(Attr.REPLY_MESSAGE, b"hi")])
    wire = encode_response(r, b"sec", ra)
    d = decode_packet(wire)
    assert d.code == resp
    verify_response(wire, d, req, ra, b"sec", require_message_authenticator=True)
    verify_response(wire + b"\x00pad", d, req, ra, b"sec", require_message_authenticator=True)
    with pytest.raises(RadiusAuthError):
        verify_response(wire, d, req, bytes(16), b"sec", require_message_authenticator=True)
    other = Code.COA_ACK if req != Code.COA_REQUEST else Code.ACCESS_ACCEPT
    w2 = encode_response(Packet(other, 9), b"sec", ra)
    with pytest.raises(UnexpectedCode):
        verify_response(w2, decode_packet(w2), req, ra, b"sec", require_message_authenticator=True)
    # a bad Message-Authenticator under a Response Authenticator recomputed by a forger
    # that knows the secret only for the latter cannot happen; but a broken one is caught
    bad = bytearray(wire)
    ma = bad.index(bytes([80, 18])) + 2
    bad[ma] ^= 0xFF
    bad[4:20] = hashlib.md5(bytes(bad[:4]) + ra + bytes(bad[20:]) + b"sec").digest()
    with pytest.raises(RadiusAuthError):
        verify_response(bytes(bad), decode_packet(bytes(bad)), req, ra, b"sec", require_message_authenticator=True)
    unsigned = encode_response(r, b"sec", ra, with_message_authenticator=False)
    with pytest.raises(MissingMessageAuthenticator):
        verify_response(unsigned, decode_packet(unsigned), req, ra, b"sec", require_message_authenticator=True)


def test_vendor_attributes_round_trip():
    attrs = [Attribute(Attr.USER_NAME, b"u"),
             Attribute(MsAttr.MS_CHAP_CHALLENGE, bytes(16), MS),
             Attribute(MsAttr.MS_CHAP2_RESPONSE, bytes(50), MS),
             Attribute(MsAttr.MS_MPPE_ENCRYPTION_POLICY, struct.pack("!I", 2), MS)]
    wire = encode_response(Packet(Code.ACCESS_ACCEPT, 1, attributes=attrs), b"s", bytes(16),
                           with_message_authenticator=False)
    assert decode_packet(wire).attributes == attrs
    # RFC 2865 §5.26 layout: 26, Length, Vendor-Id, Vendor type, Vendor length, value
    assert bytes([26, 24]) + struct.pack("!I", 311) + bytes([11, 18]) in wire
    with pytest.raises(LocalProtocolError):
        encode_response(Packet(Code.ACCESS_ACCEPT, 1, attributes=[Attribute(MsAttr.MS_CHAP_ERROR, bytes(248), MS)]),
                        b"s", bytes(16))


def _packet(body, code=2, ident=1, length=None, extra=b""):
    length = 20 + len(body) if length is None else length
    return struct.pack("!BBH", code, ident, length) + bytes(16) + body + extra


MALFORMED = {
    "short header": b"\x02\x01\x00\x14" + bytes(10),
    "length below 20": _packet(b"", length=19),
    "length over 4096": _packet(b"", length=4097),
    "length past datagram": _packet(b"\x01\x03a", length=30),
    "unknown code": _packet(b"", code=99),
    "attribute length 0": _packet(b"\x01\x00"),
    "attribute length 1": _packet(b"\x01\x01"),
    "truncated attribute header": _packet(b"\x01"),
    "attribute overruns": _packet(b"\x01\x05ab"),
    "integer of 3 octets": _packet(b"\x1b\x05\x00\x00\x01"),
    "address of 5 octets": _packet(b"\x08\x07\x01\x02\x03\x04\x05"),
    "Message-Authenticator of 15": _packet(b"\x50\x11" + bytes(15)),
    "Microsoft VSA sub-length overruns": _packet(b"\x1a\x0c\x00\x00\x01\x37\x1a\x09abcd"),
    "Microsoft VSA sub-length 1": _packet(b"\x1a\x08\x00\x00\x01\x37\x1a\x01"),
    "Microsoft integer of 2 octets": _packet(b"\x1a\x0a\x00\x00\x01\x37\x07\x04\x00\x01"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_packets_raise_decode_error(name):
    with pytest.raises(RadiusDecodeError):
        decode_packet(MALFORMED[name])


def test_decode_keeps_other_vendors_raw_and_ignores_padding():
    raw_vsa = b"\x00\x00\x00\x09\xff"          # vendor 9, not in the recommended format
    p = decode_packet(_packet(b"\x1a\x07" + raw_vsa, extra=b"\x00" * 7))
    assert p.attributes == [Attribute(Attr.VENDOR_SPECIFIC, raw_vsa)]


@given(st.binary(max_size=300))
def test_decoder_raises_only_decode_error(data):
    try:
        decode_packet(data)
    except DecodeError:
        pass


@given(st.binary(min_size=0, max_size=280))
def test_decoder_on_valid_header_raises_only_decode_error(body):
    try:
        decode_packet(_packet(body))
    except DecodeError:
        pass
