"""fastpptp/radius/verifier.py without a server: the Access-Request a login becomes, the
verdict an Access-Accept/-Reject becomes (MS-CHAP texts, MPPE keys and their direction,
reply attributes), the MPPE policy table, which rate limit an Access-Accept gives (and a bad
one ignored and counted), and the auth orders with a fake RADIUS sender."""
from __future__ import annotations

import asyncio
import ipaddress
import logging

import pytest

from fastpptp.errors import LocalProtocolError
from fastpptp.ppp.auth.base import FRAMED_IP_FROM_POOL, VerifyRequest
from fastpptp.ppp.auth.policy import MppePolicy
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.ppp.constants import AuthMethod
from fastpptp.radius.aio import RadiusNoResponse
from fastpptp.radius.auth import AccessReply
from fastpptp.radius.client import RadiusServer, Response
from fastpptp.radius.dictionary import (
    VENDOR_CISCO, VENDOR_MICROSOFT, VENDOR_MIKROTIK, Attr, CiscoAttr, Code, MikrotikAttr, MsAttr,
)
from fastpptp.radius.packet import Attribute, Packet, encrypt_mppe_key
from fastpptp.radius.settings import RadiusSettings
from fastpptp.radius.verifier import (
    NasContext, RadiusVerifier, access_request_attributes, mppe_for_session, verify_result,
)
from fastpptp.shaping import RateLimit

CTX = NasContext(call_id=4242, calling_station="192.0.2.10", called_station="198.51.100.1")
SECRET = b"unit-secret"
REQ_AUTH = bytes(range(16))
MPPE_128 = MppePolicy(allowed=True, required=True, bits=frozenset({128}))
MPPE_ANY = MppePolicy(allowed=True, required=False, bits=frozenset({40, 56, 128}))
NO_MPPE = MppePolicy()


def _i(v: int) -> bytes:
    return v.to_bytes(4, "big")


def _v2_request(user="alice", flags=0) -> VerifyRequest:
    response = bytes(range(16)) + bytes(8) + bytes(range(100, 124)) + bytes([flags])
    return VerifyRequest(AuthMethod.MSCHAP_V2, user, 7, challenge=bytes(range(50, 66)),
                         response=response, name=user.encode())


def _attrs(attrs: list[Attribute]) -> dict[tuple[int, int], bytes]:
    return {(a.vendor, a.type): a.value for a in attrs}


# --------------------------------------------------------------------------- the request

def test_mschapv2_access_request_carries_the_peer_fields_and_the_nas_attributes():
    avpair = Attribute(Attr.NAS_PORT_ID, b"pptp")
    a = _attrs(access_request_attributes(_v2_request(), CTX, nas_identifier="nas1",
                                         nas_ip_address="198.51.100.1", avpairs=(avpair,)))
    assert a[(0, Attr.USER_NAME)] == b"alice"
    assert a[(VENDOR_MICROSOFT, MsAttr.MS_CHAP_CHALLENGE)] == bytes(range(50, 66))
    # RFC 2548 §2.3.2: Ident | Flags | Peer-Challenge | Reserved | Response
    assert a[(VENDOR_MICROSOFT, MsAttr.MS_CHAP2_RESPONSE)] == (
        bytes([7, 0]) + bytes(range(16)) + bytes(8) + bytes(range(100, 124)))
    assert a[(0, Attr.NAS_PORT)] == _i(4242)
    assert a[(0, Attr.NAS_PORT_TYPE)] == _i(5)            # Virtual
    assert a[(0, Attr.SERVICE_TYPE)] == _i(2)             # Framed
    assert a[(0, Attr.FRAMED_PROTOCOL)] == _i(1)          # PPP
    assert a[(0, Attr.CALLING_STATION_ID)] == b"192.0.2.10"
    assert a[(0, Attr.CALLED_STATION_ID)] == b"198.51.100.1"
    assert a[(0, Attr.NAS_IDENTIFIER)] == b"nas1"
    assert a[(0, Attr.NAS_IP_ADDRESS)] == bytes([198, 51, 100, 1])
    assert a[(0, Attr.NAS_PORT_ID)] == b"pptp"


@pytest.mark.parametrize("request_,expected", [
    (VerifyRequest(AuthMethod.PAP, "bob", 1, password=b"pw"),
     {(0, Attr.USER_PASSWORD): b"pw"}),
    (VerifyRequest(AuthMethod.CHAP_MD5, "bob", 9, challenge=b"c" * 16, response=b"r" * 16),
     {(0, Attr.CHAP_PASSWORD): bytes([9]) + b"r" * 16, (0, Attr.CHAP_CHALLENGE): b"c" * 16}),
    (VerifyRequest(AuthMethod.MSCHAP_V1, "bob", 3, challenge=b"c" * 8,
                   response=b"L" * 24 + b"N" * 24 + b"\x01"),
     {(VENDOR_MICROSOFT, MsAttr.MS_CHAP_CHALLENGE): b"c" * 8,
      (VENDOR_MICROSOFT, MsAttr.MS_CHAP_RESPONSE): bytes([3, 1]) + b"L" * 24 + b"N" * 24}),
], ids=["pap", "chap-md5", "mschapv1"])
def test_each_method_becomes_its_attributes(request_, expected):
    a = _attrs(access_request_attributes(request_, CTX, nas_identifier="n", nas_ip_address=None))
    for key, value in expected.items():
        assert a[key] == value
    assert a[(0, Attr.USER_NAME)] == b"bob"


def test_credentials_no_request_can_carry_are_refused():
    with pytest.raises(LocalProtocolError):
        access_request_attributes(VerifyRequest(AuthMethod.PAP, "bob", 1, password=b"x" * 129),
                                  CTX, nas_identifier="n", nas_ip_address=None)
    with pytest.raises(LocalProtocolError):
        access_request_attributes(VerifyRequest(AuthMethod.MSCHAP_V2, "bob", 1, challenge=b"c" * 16,
                                                response=b"short"), CTX, nas_identifier="n",
                                  nas_ip_address=None)


# --------------------------------------------------------------------------- the verdict

def _accept(*attrs: Attribute) -> Packet:
    return Packet(Code.ACCESS_ACCEPT, 1, attributes=list(attrs))


def _mppe_attrs(send: bytes, recv: bytes, policy=1, types=4) -> list[Attribute]:
    return [
        Attribute(MsAttr.MS_MPPE_SEND_KEY, encrypt_mppe_key(send, SECRET, REQ_AUTH, b"\x80\x01"), VENDOR_MICROSOFT),
        Attribute(MsAttr.MS_MPPE_RECV_KEY, encrypt_mppe_key(recv, SECRET, REQ_AUTH, b"\x80\x02"), VENDOR_MICROSOFT),
        Attribute(MsAttr.MS_MPPE_ENCRYPTION_POLICY, _i(policy), VENDOR_MICROSOFT),
        Attribute(MsAttr.MS_MPPE_ENCRYPTION_TYPES, _i(types), VENDOR_MICROSOFT),
    ]


def _response(packet: Packet) -> Response:
    return Response(1, packet, 0, SECRET, REQ_AUTH)


def test_accept_gives_success_keys_in_the_nas_direction_and_reply_attributes():
    send, recv = b"S" * 16, b"R" * 16
    packet = _accept(
        Attribute(MsAttr.MS_CHAP2_SUCCESS, b"\x07S=" + b"A" * 40, VENDOR_MICROSOFT),
        *_mppe_attrs(send, recv),
        Attribute(Attr.FRAMED_IP_ADDRESS, bytes([203, 0, 113, 9])),
        Attribute(Attr.SESSION_TIMEOUT, _i(3600)), Attribute(Attr.IDLE_TIMEOUT, _i(600)),
        Attribute(Attr.ACCT_INTERIM_INTERVAL, _i(60)), Attribute(Attr.FRAMED_MTU, _i(1400)),
        Attribute(Attr.FRAMED_ROUTE, b"10.1.0.0/16 0.0.0.0 1"), Attribute(Attr.CLASS, b"gold"),
        Attribute(MsAttr.MS_PRIMARY_DNS_SERVER, bytes([192, 0, 2, 53]), VENDOR_MICROSOFT),
        Attribute(MsAttr.MS_SECONDARY_DNS_SERVER, bytes([192, 0, 2, 54]), VENDOR_MICROSOFT),
        Attribute(MsAttr.MS_PRIMARY_NBNS_SERVER, bytes([192, 0, 2, 55]), VENDOR_MICROSOFT),
        Attribute(MikrotikAttr.MIKROTIK_RATE_LIMIT, b"1M/4M", VENDOR_MIKROTIK))
    result, session = verify_result(_v2_request(), packet, _response(packet).access_reply(), MPPE_128)
    assert result.accepted and session is None
    assert result.authenticator_response == "S=" + "A" * 40          # verbatim, no Ident octet
    # RFC 2548 §2.4.2: MS-MPPE-Send-Key is the NAS's send key: ours to send with
    assert (result.mppe_send_key, result.mppe_recv_key) == (send, recv)
    at = result.attributes
    assert at.framed_ip == ipaddress.IPv4Address("203.0.113.9")
    assert (at.session_timeout, at.idle_timeout, at.acct_interim_interval, at.framed_mtu) == (3600, 600, 60, 1400)
    assert at.framed_routes == ("10.1.0.0/16 0.0.0.0 1",) and at.classes == (b"gold",)
    assert [str(a) for a in at.dns] == ["192.0.2.53", "192.0.2.54"]
    assert [str(a) for a in at.nbns] == ["192.0.2.55"]
    assert at.rate_limit == RateLimit(4000, 1000)                # RouterOS rx/tx: tx is the client's down


def test_mschapv1_keys_come_from_ms_chap_mppe_keys():
    from fastpptp.crypto import mschap
    from fastpptp.radius.packet import encrypt_ms_chap_mppe_keys
    pw, challenge = "v1-password", b"c" * 8
    phh = mschap.hash_nt_password_hash(mschap.nt_password_hash(pw))
    packet = _accept(Attribute(MsAttr.MS_CHAP_MPPE_KEYS,
                               encrypt_ms_chap_mppe_keys(bytes(8), phh, SECRET, REQ_AUTH), VENDOR_MICROSOFT),
                     Attribute(MsAttr.MS_MPPE_ENCRYPTION_POLICY, _i(1), VENDOR_MICROSOFT),
                     Attribute(MsAttr.MS_MPPE_ENCRYPTION_TYPES, _i(6), VENDOR_MICROSOFT))
    req = VerifyRequest(AuthMethod.MSCHAP_V1, "bob", 3, challenge=challenge,
                        response=bytes(24) + b"N" * 24 + b"\x01")
    result, _ = verify_result(req, packet, _response(packet).access_reply(), MPPE_128)
    expected = mschap.mppe_keys_mschapv1(pw, challenge, 16)      # what a local login derives
    assert result.accepted and result.mppe_send_key == result.mppe_recv_key == expected


def test_reject_maps_ms_chap_error_and_reply_message():
    reject = Packet(Code.ACCESS_REJECT, 1, attributes=[
        Attribute(MsAttr.MS_CHAP_ERROR, b"\x07E=691 R=0 C=00 V=3 M=bad", VENDOR_MICROSOFT),
        Attribute(Attr.REPLY_MESSAGE, b"Account expired")])
    reply = _response(reject).access_reply()
    result, _ = verify_result(_v2_request(), reject, reply, MPPE_128)
    assert not result.accepted and result.failure_message == "E=691 R=0 C=00 V=3 M=bad"
    assert "Account expired" in result.reason
    pap = VerifyRequest(AuthMethod.PAP, "bob", 1, password=b"x")
    result, _ = verify_result(pap, reject, reply, NO_MPPE)
    assert not result.accepted and result.failure_message == "Account expired"


def test_accept_of_mschapv2_without_success_is_refused():
    packet = _accept(*_mppe_attrs(b"S" * 16, b"R" * 16))
    result, _ = verify_result(_v2_request(), packet, _response(packet).access_reply(), MPPE_128)
    assert not result.accepted and "MS-CHAP2-Success" in result.reason


def test_pool_and_peer_choice_addresses_pass_through():
    packet = _accept(Attribute(Attr.FRAMED_IP_ADDRESS, FRAMED_IP_FROM_POOL.packed))
    pap = VerifyRequest(AuthMethod.PAP, "bob", 1, password=b"x")
    result, _ = verify_result(pap, packet, _response(packet).access_reply(), NO_MPPE)
    assert result.accepted and result.attributes.framed_ip == FRAMED_IP_FROM_POOL


# --------------------------------------------------------------------------- MPPE policy

def _reply(keys=True, policy=None, types=None, v1=False) -> AccessReply:
    return AccessReply(True, mppe_send_key=b"S" * 16 if keys and not v1 else None,
                       mppe_recv_key=b"R" * 16 if keys and not v1 else None,
                       ms_chap_nt_key=b"N" * 16 if keys and v1 else None,
                       mppe_encryption_policy=policy, mppe_encryption_types=types)


V2, V1, PAP = AuthMethod.MSCHAP_V2, AuthMethod.MSCHAP_V1, AuthMethod.PAP


@pytest.mark.parametrize("method,reply,ours,reject,keep,session_bits,session_required", [
    # RADIUS requires encryption, MPPE off here (nomppe)
    (V2, _reply(policy=2, types=4), NO_MPPE, "MPPE is off here", False, None, None),
    # RADIUS requires it, the method gives no keys
    (PAP, _reply(keys=False, policy=2), MPPE_ANY, "gives no MPPE keys", False, None, None),
    # RADIUS requires it and sent none
    (V2, _reply(keys=False, policy=2), MPPE_ANY, "sent no MPPE keys", False, None, None),
    # we require it, RADIUS sent none
    (V2, _reply(keys=False), MPPE_128, "required here", False, None, None),
    # types leave none of ours, we require: reject; neither requires: no MPPE
    (V2, _reply(types=2), MPPE_128, "no MPPE strength", False, None, None),
    (V2, _reply(policy=1, types=2), MppePolicy(True, False, frozenset({128})),
     None, False, None, None),
    # types narrow ours to the common strengths
    (V2, _reply(policy=1, types=6), MPPE_ANY, None, True, {40, 128}, False),
    # RADIUS requires, we only allow: this session requires
    (V2, _reply(policy=2, types=4), MppePolicy(True, False, frozenset({128})), None, True, {128}, True),
    # all agreed: our policy unchanged
    (V2, _reply(policy=1, types=6), MPPE_128, None, True, None, None),
    (V1, _reply(v1=True, policy=1, types=6), MPPE_128, None, True, None, None),
    # no MPPE here, RADIUS allows: no keys used
    (V2, _reply(policy=1, types=6), NO_MPPE, None, True, None, None),
], ids=["rad-required-nomppe", "rad-required-pap", "rad-required-nokeys", "we-require-nokeys",
        "no-common-we-require", "no-common-optional", "narrowed", "rad-requires-we-allow",
        "agreed-v2", "agreed-v1", "off-here"])
def test_mppe_policy_table(method, reply, ours, reject, keep, session_bits, session_required):
    why, keys, session = mppe_for_session(method, reply, ours)
    if reject is None:
        assert why is None
    else:
        assert why is not None and reject in why
    if reject is None:
        assert keys == keep
    if session_bits is None:
        assert session is None
    else:
        assert session is not None and set(session.policy.bits) == session_bits
        assert session.policy.required == session_required


# --------------------------------------------------------------------------- rate limits
# (the parsers themselves: tests/radius/test_rates.py)

def _accepted_rate(*attrs: Attribute, on_bad_rate=None):
    packet = _accept(*attrs)
    result, _ = verify_result(_pap("bob", "pw"), packet, _response(packet).access_reply(), NO_MPPE,
                              on_bad_rate=on_bad_rate)
    assert result.accepted
    return result.attributes.rate_limit


def test_rate_attribute_precedence():
    fid = Attribute(Attr.FILTER_ID, b"100/200")
    cisco = Attribute(CiscoAttr.CISCO_AVPAIR, b"x=rate-limit output 3000000 1 1", VENDOR_CISCO)
    assert _accepted_rate(fid, cisco) == RateLimit(3000, 0)
    assert _accepted_rate(fid, cisco, Attribute(MikrotikAttr.MIKROTIK_RATE_LIMIT, b"1k/5k", VENDOR_MIKROTIK)) \
        == RateLimit(5, 1)
    assert _accepted_rate(fid) == RateLimit(100, 200)
    assert _accepted_rate(Attribute(Attr.FILTER_ID, b"no-p2p")) is None


def test_a_bad_rate_attribute_leaves_the_login_without_a_limit():
    # the deciding attribute (Mikrotik) does not parse: no limit, not the Filter-Id's either
    bad = (Attribute(MikrotikAttr.MIKROTIK_RATE_LIMIT, b"fast", VENDOR_MIKROTIK), Attribute(Attr.FILTER_ID, b"1000"))
    seen: list[ValueError] = []
    assert _accepted_rate(*bad, on_bad_rate=seen.append) is None
    assert len(seen) == 1 and "fast" in str(seen[0])
    assert _accepted_rate(*bad) is None                       # no callback: ignored all the same


def test_the_verifier_counts_and_logs_a_bad_rate_attribute(caplog):
    sender = FakeSender(_accept(Attribute(CiscoAttr.CISCO_AVPAIR, b"lcp:interface-config#1=rate-limit output lots",
                                          VENDOR_CISCO)))
    with caplog.at_level(logging.WARNING, logger="fastpptp.radius"):
        result, counters = _verify(sender, "radius", _pap("radius-user", "any"))
    assert result.accepted and result.attributes.rate_limit is None
    assert counters["bad_rate_attributes"] == 1 and counters["accepts"] == 1
    assert "rate limit ignored" in caplog.text and "lots" in caplog.text
    result, counters = _verify(FakeSender(_accept(Attribute(Attr.FILTER_ID, b"2M/512"))), "radius",
                               _pap("radius-user", "any"))
    assert result.attributes.rate_limit == RateLimit(2000, 512) and counters["bad_rate_attributes"] == 0


# --------------------------------------------------------------------------- auth orders

class FakeSender:
    """The driver's interface: answers with ``answer`` or raises RadiusNoResponse."""

    def __init__(self, answer: Packet | None):
        self.answer = answer
        self.sent: list[list[Attribute]] = []

        class _C:
            servers = (RadiusServer(("192.0.2.1", 1812), SECRET),)
        self.client = _C()

    async def request(self, code, attributes):
        self.sent.append(list(attributes))
        await asyncio.sleep(0)
        if self.answer is None:
            raise RadiusNoResponse("no RADIUS server answered")
        return _response(self.answer)


LOCAL = StaticBackend({"local-user": "local-pw"})


def _verify(sender, order, request, backend=LOCAL):
    settings = RadiusSettings(auth_servers=sender.client.servers, auth_order=order,
                              avpairs=(("NAS-Port-Id", "x"),))
    v = RadiusVerifier(sender, settings, NO_MPPE, local_backend=lambda: backend, hostname="nas-host")
    verdict = asyncio.run(v.verify(request, CTX))
    return verdict.result, v.counters


def _pap(user, pw):
    return VerifyRequest(AuthMethod.PAP, user, 1, password=pw.encode())


def test_no_server_answering_is_a_clean_rejection():
    sender = FakeSender(None)
    result, counters = _verify(sender, "radius", _pap("local-user", "local-pw"))
    assert not result.accepted and result.reason == "no RADIUS server answered"
    assert counters["no_response"] == 1 and counters["local"] == 0
    a = _attrs(sender.sent[0])
    assert a[(0, Attr.NAS_IDENTIFIER)] == b"nas-host"         # neither configured: the host name
    assert a[(0, Attr.NAS_PORT_ID)] == b"x"


def test_radius_then_local_when_no_server_answers():
    result, counters = _verify(FakeSender(None), "radius,local", _pap("local-user", "local-pw"))
    assert result.accepted and counters["local"] == 1
    result, _ = _verify(FakeSender(_accept()), "radius,local", _pap("local-user", "wrong"))
    assert result.accepted                 # RADIUS answered: its verdict, not the local one


def test_local_then_radius_for_users_the_secrets_do_not_know():
    sender = FakeSender(_accept())
    result, counters = _verify(sender, "local,radius", _pap("local-user", "wrong"))
    assert not result.accepted and counters["local"] == 1 and not sender.sent
    result, counters = _verify(sender, "local,radius", _pap("radius-user", "any"))
    assert result.accepted and counters["requests"] == 1 and len(sender.sent) == 1


def test_radattr_lines_name_and_format_attributes_and_leave_keys_out():
    from fastpptp.radius.verifier import attribute_name, radattr_lines
    assert attribute_name(Attr.FRAMED_IP_ADDRESS) == "Framed-IP-Address"
    assert attribute_name(Attr.CALLING_STATION_ID) == "Calling-Station-Id"
    assert attribute_name(MsAttr.MS_PRIMARY_DNS_SERVER, VENDOR_MICROSOFT) == "MS-Primary-DNS-Server"
    assert attribute_name(CiscoAttr.CISCO_AVPAIR, VENDOR_CISCO) == "Cisco-AVPair"
    assert attribute_name(200) == "Attr-200" and attribute_name(5, 4242) == "Attr-4242-5"
    packet = _accept(Attribute(Attr.FRAMED_IP_ADDRESS, bytes([203, 0, 113, 9])),
                     Attribute(Attr.SESSION_TIMEOUT, _i(60)), Attribute(Attr.FILTER_ID, b"web"),
                     Attribute(Attr.CLASS, b"\x01\x02"), *_mppe_attrs(b"S" * 16, b"R" * 16))
    assert radattr_lines(packet) == (
        "Framed-IP-Address 203.0.113.9", "Session-Timeout 60", "Filter-Id web", "Class 0x0102",
        "MS-MPPE-Encryption-Policy 1", "MS-MPPE-Encryption-Types 4")
