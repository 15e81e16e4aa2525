"""What a NAS puts in an Access-Request for each PPP authentication method, and what it reads
from the Access-Accept / Access-Reject (RFC 2865 §5, RFC 2548 §2).

Sans-I/O: attribute lists in, :class:`AccessReply` out.  The MS-CHAP attributes carry the
peer's PPP fields unchanged (RFC 2548 §2.3): the NAS neither checks nor computes a response;
it relays the server's MS-CHAP2-Success / MS-CHAP-Error to the peer verbatim.

Direction of the MPPE keys (RFC 2548 §2.4.2/§2.4.3): MS-MPPE-Send-Key is the key the *NAS*
sends with (the peer's receive key), MS-MPPE-Recv-Key the key the NAS receives with.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastpptp.errors import LocalProtocolError
from fastpptp.radius.dictionary import VENDOR_MICROSOFT, Attr, Code, MsAttr
from fastpptp.radius.packet import (
    Attribute, Packet, RadiusDecodeError, decrypt_mppe_key, decrypt_ms_chap_mppe_keys, text_value,
)

__all__ = [
    "pap_attributes", "chap_attributes", "mschap1_attributes", "mschap2_attributes",
    "AccessReply", "parse_access_reply", "FRAMED_IP_FROM_POOL", "FRAMED_IP_PEER_CHOOSES",
]

# RFC 2865 §5.8: 0xFFFFFFFE = the NAS picks from its pool, 0xFFFFFFFF = the user may choose
FRAMED_IP_FROM_POOL = ipaddress.IPv4Address("255.255.255.254")
FRAMED_IP_PEER_CHOOSES = ipaddress.IPv4Address("255.255.255.255")

_MS = VENDOR_MICROSOFT


def _user(user: bytes) -> Attribute:
    if not user:
        raise LocalProtocolError("empty User-Name")
    return Attribute(Attr.USER_NAME, user)


def pap_attributes(user: bytes, password: bytes) -> list[Attribute]:
    """RFC 2865 §5.2: the password in clear here; hidden by encode_request."""
    return [_user(user), Attribute(Attr.USER_PASSWORD, password)]


def chap_attributes(user: bytes, ident: int, challenge: bytes, response: bytes) -> list[Attribute]:
    """RFC 2865 §5.3/§5.40: CHAP-Password = CHAP Ident | 16-octet MD5 response, and the
    challenge always in CHAP-Challenge (never reused as the Request Authenticator)."""
    if len(response) != 16 or not challenge:
        raise LocalProtocolError("CHAP-MD5 response is 16 octets, challenge non-empty")
    return [_user(user), Attribute(Attr.CHAP_PASSWORD, bytes([ident]) + response),
            Attribute(Attr.CHAP_CHALLENGE, challenge)]


def mschap1_attributes(user: bytes, ident: int, challenge: bytes, lm_response: bytes,
                       nt_response: bytes, use_nt: bool = True) -> list[Attribute]:
    """RFC 2548 §2.3.1/§2.3.2: MS-CHAP-Challenge (8) and MS-CHAP-Response = Ident | Flags |
    LM-Response (24) | NT-Response (24); Flags 1 = use the NT-Response."""
    if len(challenge) != 8 or len(lm_response) != 24 or len(nt_response) != 24:
        raise LocalProtocolError("MS-CHAPv1: 8-octet challenge, 24-octet responses")
    value = bytes([ident, 1 if use_nt else 0]) + lm_response + nt_response
    return [_user(user), Attribute(MsAttr.MS_CHAP_CHALLENGE, challenge, _MS),
            Attribute(MsAttr.MS_CHAP_RESPONSE, value, _MS)]


def mschap2_attributes(user: bytes, ident: int, auth_challenge: bytes, peer_challenge: bytes,
                       nt_response: bytes, flags: int = 0) -> list[Attribute]:
    """RFC 2548 §2.3.1/§2.3.2: MS-CHAP-Challenge (16) and MS-CHAP2-Response = Ident | Flags |
    Peer-Challenge (16) | Reserved (8) | Response (24); User-Name is the name the peer sent."""
    if len(auth_challenge) != 16 or len(peer_challenge) != 16 or len(nt_response) != 24:
        raise LocalProtocolError("MS-CHAPv2: 16-octet challenges, 24-octet response")
    value = bytes([ident, flags]) + peer_challenge + bytes(8) + nt_response
    return [_user(user), Attribute(MsAttr.MS_CHAP_CHALLENGE, auth_challenge, _MS),
            Attribute(MsAttr.MS_CHAP2_RESPONSE, value, _MS)]


@dataclass(frozen=True)
class AccessReply:
    """The parts of an Access-Accept / -Reject a PPTP server acts on (RFC 2865 §5,
    RFC 2869 §5.16, RFC 2548 §2).  Absent attributes are None / empty."""
    accepted: bool
    framed_ip_address: ipaddress.IPv4Address | None = None
    framed_ip_netmask: ipaddress.IPv4Address | None = None
    framed_routes: tuple[str, ...] = ()
    framed_mtu: int | None = None
    session_timeout: int | None = None
    idle_timeout: int | None = None
    acct_interim_interval: int | None = None
    classes: tuple[bytes, ...] = ()          # echoed in every Accounting-Request
    reply_messages: tuple[str, ...] = ()
    filter_ids: tuple[str, ...] = ()
    # MS-CHAP: the value after the Ident octet, verbatim ("S=..." / "E=691 R=0 ...")
    ms_chap2_success: bytes | None = None
    ms_chap_error: bytes | None = None
    mppe_send_key: bytes | None = None       # the NAS's send key (decrypted)
    mppe_recv_key: bytes | None = None       # the NAS's receive key (decrypted)
    ms_chap_lm_key: bytes | None = None      # MS-CHAPv1 MS-CHAP-MPPE-Keys (decrypted)
    ms_chap_nt_key: bytes | None = None
    mppe_encryption_policy: int | None = None   # MppeEncryptionPolicy
    mppe_encryption_types: int | None = None    # MppeEncryptionTypes bits
    primary_dns: ipaddress.IPv4Address | None = None
    secondary_dns: ipaddress.IPv4Address | None = None
    primary_nbns: ipaddress.IPv4Address | None = None
    secondary_nbns: ipaddress.IPv4Address | None = None


def _after_ident(value: bytes | None, name: str) -> bytes | None:
    if value is None:
        return None
    if len(value) < 1:
        raise RadiusDecodeError(f"{name} without its Ident octet")
    return value[1:]


def parse_access_reply(reply: Packet, secret: bytes, request_authenticator: bytes) -> AccessReply:
    """Read an Access-Accept or Access-Reject (a verified one: see verify_response).

    ``secret`` and ``request_authenticator`` decrypt the MPPE keys.  Raises
    RadiusDecodeError for a value of the wrong length.  From an Access-Reject only what
    RFC 2865 §4.3 and RFC 2548 §2.1.5 allow is read (Reply-Message, MS-CHAP-Error): a server
    that leaves the user's reply attributes in a Reject grants nothing by it."""
    if reply.code not in (Code.ACCESS_ACCEPT, Code.ACCESS_REJECT):
        raise LocalProtocolError(f"{reply.code!r} is not an Access-Accept/Reject")
    if reply.code == Code.ACCESS_REJECT:
        return AccessReply(
            accepted=False,
            reply_messages=tuple(text_value(v) for v in reply.get_all(Attr.REPLY_MESSAGE)),
            ms_chap_error=_after_ident(reply.get(MsAttr.MS_CHAP_ERROR, _MS), "MS-CHAP-Error"))
    send = reply.get(MsAttr.MS_MPPE_SEND_KEY, _MS)
    recv = reply.get(MsAttr.MS_MPPE_RECV_KEY, _MS)
    v1keys = reply.get(MsAttr.MS_CHAP_MPPE_KEYS, _MS)
    lm_key = nt_key = None
    if v1keys is not None:
        lm_key, nt_key = decrypt_ms_chap_mppe_keys(v1keys, secret, request_authenticator)
    return AccessReply(
        accepted=reply.code == Code.ACCESS_ACCEPT,
        framed_ip_address=reply.get_ipv4(Attr.FRAMED_IP_ADDRESS),
        framed_ip_netmask=reply.get_ipv4(Attr.FRAMED_IP_NETMASK),
        framed_routes=tuple(text_value(v) for v in reply.get_all(Attr.FRAMED_ROUTE)),
        framed_mtu=reply.get_int(Attr.FRAMED_MTU),
        session_timeout=reply.get_int(Attr.SESSION_TIMEOUT),
        idle_timeout=reply.get_int(Attr.IDLE_TIMEOUT),
        acct_interim_interval=reply.get_int(Attr.ACCT_INTERIM_INTERVAL),
        classes=tuple(reply.get_all(Attr.CLASS)),
        reply_messages=tuple(text_value(v) for v in reply.get_all(Attr.REPLY_MESSAGE)),
        filter_ids=tuple(text_value(v) for v in reply.get_all(Attr.FILTER_ID)),
        ms_chap2_success=_after_ident(reply.get(MsAttr.MS_CHAP2_SUCCESS, _MS), "MS-CHAP2-Success"),
        ms_chap_error=_after_ident(reply.get(MsAttr.MS_CHAP_ERROR, _MS), "MS-CHAP-Error"),
        mppe_send_key=None if send is None else decrypt_mppe_key(send, secret, request_authenticator),
        mppe_recv_key=None if recv is None else decrypt_mppe_key(recv, secret, request_authenticator),
        ms_chap_lm_key=lm_key,
        ms_chap_nt_key=nt_key,
        mppe_encryption_policy=reply.get_int(MsAttr.MS_MPPE_ENCRYPTION_POLICY, _MS),
        mppe_encryption_types=reply.get_int(MsAttr.MS_MPPE_ENCRYPTION_TYPES, _MS),
        primary_dns=reply.get_ipv4(MsAttr.MS_PRIMARY_DNS_SERVER, _MS),
        secondary_dns=reply.get_ipv4(MsAttr.MS_SECONDARY_DNS_SERVER, _MS),
        primary_nbns=reply.get_ipv4(MsAttr.MS_PRIMARY_NBNS_SERVER, _MS),
        secondary_nbns=reply.get_ipv4(MsAttr.MS_SECONDARY_NBNS_SERVER, _MS),
    )
