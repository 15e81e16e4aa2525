"""fastpptp.radius.auth: the Access-Request attributes of each PPP method (RFC 2865 §5.2/§5.3,
RFC 2548 §2.3) and the reading of Access-Accept / -Reject."""
import ipaddress
import struct

import pytest

from fastpptp.crypto import mschap
from fastpptp.errors import LocalProtocolError
from fastpptp.radius import auth
from fastpptp.radius.dictionary import VENDOR_MICROSOFT, Attr, Code, MsAttr
from fastpptp.radius.packet import Attribute, Packet, RadiusDecodeError, encrypt_ms_chap_mppe_keys

MS = VENDOR_MICROSOFT
# RFC 2759 §9.2 (../shared/TEST-VECTORS.md §1)
USER = b"User"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")


def test_mschap2_response_layout_rfc2548_2_3_2():
    attrs = auth.mschap2_attributes(USER, 1, AUTH_CHALLENGE, PEER_CHALLENGE, NT_RESPONSE)
    assert attrs[0] == Attribute(Attr.USER_NAME, USER)
    assert attrs[1] == Attribute(MsAttr.MS_CHAP_CHALLENGE, AUTH_CHALLENGE, MS)
    value = attrs[2].value
    assert (attrs[2].type, attrs[2].vendor, len(value)) == (MsAttr.MS_CHAP2_RESPONSE, MS, 50)
    # Ident | Flags | Peer-Challenge | Reserved (8) | Response: the PPP Response's Value verbatim
    assert value == b"\x01\x00" + PEER_CHALLENGE + bytes(8) + NT_RESPONSE
    assert mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, "clientPass") == value[26:]


def test_mschap1_response_layout():
    ch = bytes(range(8))
    [_, c, r] = auth.mschap1_attributes(USER, 9, ch, bytes(24), b"\x11" * 24)
    assert c.value == ch and r.value == b"\x09\x01" + bytes(24) + b"\x11" * 24
    with pytest.raises(LocalProtocolError):
        auth.mschap1_attributes(USER, 9, bytes(16), bytes(24), bytes(24))


def test_chap_and_pap_attributes():
    [_, pw, ch] = auth.chap_attributes(b"u", 0x42, b"c" * 16, b"r" * 16)
    assert pw == Attribute(Attr.CHAP_PASSWORD, b"\x42" + b"r" * 16)
    assert ch == Attribute(Attr.CHAP_CHALLENGE, b"c" * 16)
    assert auth.pap_attributes(b"u", b"p")[1] == Attribute(Attr.USER_PASSWORD, b"p")
    with pytest.raises(LocalProtocolError):
        auth.pap_attributes(b"", b"p")
    with pytest.raises(LocalProtocolError):
        auth.chap_attributes(b"u", 1, b"c", b"short")


def _i(v):
    return struct.pack("!I", v)


ACCEPT_ATTRS = [
    Attribute(Attr.FRAMED_IP_ADDRESS, bytes([203, 0, 113, 7])),
    Attribute(Attr.SESSION_TIMEOUT, _i(3600)), Attribute(Attr.IDLE_TIMEOUT, _i(600)),
    Attribute(Attr.ACCT_INTERIM_INTERVAL, _i(300)), Attribute(Attr.FRAMED_MTU, _i(1400)),
    Attribute(Attr.CLASS, b"c1"), Attribute(Attr.CLASS, b"c2"),
    Attribute(Attr.FRAMED_ROUTE, b"10.0.0.0/8 0.0.0.0 1"),
    Attribute(MsAttr.MS_MPPE_ENCRYPTION_POLICY, _i(2), MS),
    Attribute(MsAttr.MS_MPPE_ENCRYPTION_TYPES, _i(4), MS),
    Attribute(MsAttr.MS_PRIMARY_NBNS_SERVER, bytes([192, 0, 2, 1]), MS),
]


def test_accept_is_read():
    ra = bytes(16)
    keys = encrypt_ms_chap_mppe_keys(b"L" * 8, b"N" * 16, b"s", ra)
    pkt = Packet(Code.ACCESS_ACCEPT, 1, attributes=ACCEPT_ATTRS + [Attribute(MsAttr.MS_CHAP_MPPE_KEYS, keys, MS)])
    r = auth.parse_access_reply(pkt, b"s", ra)
    assert r.accepted and r.framed_ip_address == ipaddress.IPv4Address("203.0.113.7")
    assert (r.session_timeout, r.idle_timeout, r.acct_interim_interval, r.framed_mtu) == (3600, 600, 300, 1400)
    assert r.classes == (b"c1", b"c2") and r.framed_routes == ("10.0.0.0/8 0.0.0.0 1",)
    assert (r.mppe_encryption_policy, r.mppe_encryption_types) == (2, 4)
    assert r.primary_nbns == ipaddress.IPv4Address("192.0.2.1")
    assert (r.ms_chap_lm_key, r.ms_chap_nt_key) == (b"L" * 8, b"N" * 16)


def test_reject_grants_nothing_but_says_why():
    pkt = Packet(Code.ACCESS_REJECT, 1, attributes=ACCEPT_ATTRS + [
        Attribute(MsAttr.MS_CHAP_ERROR, b"\x07E=691 R=0 C=00 V=3", MS), Attribute(Attr.REPLY_MESSAGE, b"no")])
    r = auth.parse_access_reply(pkt, b"s", bytes(16))
    assert not r.accepted and r.ms_chap_error == b"E=691 R=0 C=00 V=3" and r.reply_messages == ("no",)
    assert r.framed_ip_address is None and r.session_timeout is None and r.classes == ()


def test_bad_values_raise_decode_error():
    for attrs in ([Attribute(MsAttr.MS_CHAP2_SUCCESS, b"", MS)],
                  [Attribute(MsAttr.MS_MPPE_SEND_KEY, b"\x80\x00" + bytes(15), MS)],
                  [Attribute(MsAttr.MS_CHAP_MPPE_KEYS, bytes(16), MS)]):
        with pytest.raises(RadiusDecodeError):
            auth.parse_access_reply(Packet(Code.ACCESS_ACCEPT, 1, attributes=attrs), b"s", bytes(16))
    with pytest.raises(LocalProtocolError):
        auth.parse_access_reply(Packet(Code.ACCOUNTING_RESPONSE, 1), b"s", bytes(16))
