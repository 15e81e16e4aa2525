"""RADIUS packet codec and the shared-secret cryptography (RFC 2865, 2866, 2548, 3579, 5176).

Sans-I/O, bytes in and bytes out; nothing here opens a socket or reads a clock.

Theory of operation
  1. A :class:`Packet` holds the code, identifier, authenticator and an ordered list of
     :class:`Attribute` (type, value, vendor).  Vendor-Specific attributes (RFC 2865 §5.26)
     are split into their sub-attributes on decode and packed again on encode, so a
     Microsoft attribute is ``Attribute(MsAttr.MS_CHAP2_SUCCESS, value, VENDOR_MICROSOFT)``.
  2. :func:`encode_request` builds a request's wire form: the User-Password is hidden
     (RFC 2865 §5.2) with the Request Authenticator, a Message-Authenticator (RFC 3579 §3.2)
     is added first and computed, then the Request Authenticator itself: random for an
     Access-Request / Status-Server (RFC 2865 §3), MD5 over the packet with 16 zero octets in
     its place and the secret appended for Accounting (RFC 2866 §3) and Disconnect/CoA
     (RFC 5176 §2.3) requests.
  3. :func:`decode_packet` checks every length (header, Length field, each attribute and
     sub-attribute, the fixed sizes of integers and addresses) and raises
     :class:`RadiusDecodeError` (a :class:`~fastpptp.errors.DecodeError`) for anything else.
  4. :func:`verify_response` checks a response against the request it answers: the Response
     Authenticator (RFC 2865 §3), the Message-Authenticator (RFC 3579 §3.2, computed with the
     Request Authenticator) and, when required (BlastRADIUS, CVE-2024-3596), its presence.
  5. Reply secrets are decrypted with the Request Authenticator of the request:
     :func:`decrypt_mppe_key` (MS-MPPE-Send/Recv-Key, RFC 2548 §2.4.2/§2.4.3 salt
     encryption) and :func:`decrypt_ms_chap_mppe_keys` (RFC 2548 §2.4.1, the User-Password
     hiding of a 32-octet LM-Key | NT-Key | padding).

Secrets and passwords are never logged or put in exception messages.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from fastpptp.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from fastpptp.radius.dictionary import (
    ATTRIBUTE_TYPES, MS_ATTRIBUTE_TYPES, REQUEST_CODES, RESPONSE_CODES, VENDOR_MICROSOFT,
    Attr, Code, ValueType,
)

__all__ = [
    "Attribute", "Packet", "RadiusDecodeError", "RadiusAuthError", "MissingMessageAuthenticator",
    "BadMessageAuthenticator", "UnexpectedCode", "HEADER_LEN", "MAX_PACKET_LEN",
    "MAX_VALUE_LEN", "encode_request", "encode_response", "decode_packet", "verify_response",
    "verify_request", "hide_password", "unhide_password", "encrypt_mppe_key",
    "decrypt_mppe_key", "decrypt_ms_chap_mppe_keys", "encrypt_ms_chap_mppe_keys",
    "message_authenticator", "new_authenticator", "int_value", "ipv4_value", "text_value",
]

HEADER_LEN = 20          # Code, Identifier, Length (2), Authenticator (16)
MAX_PACKET_LEN = 4096    # RFC 2865 §3
MAX_VALUE_LEN = 253      # RFC 2865 §5: Length is one octet and counts Type and Length
MAX_PASSWORD_LEN = 128   # RFC 2865 §5.2
_HEADER = struct.Struct("!BBH16s")
_ZERO16 = bytes(16)


class RadiusDecodeError(DecodeError):
    """Bytes that are not a well-formed RADIUS packet or attribute value."""


class RadiusAuthError(RemoteProtocolError):
    """A packet whose authenticator or Message-Authenticator does not check out (a forged
    packet, or a wrong shared secret)."""


class MissingMessageAuthenticator(RadiusAuthError):
    """A response (or request) without the Message-Authenticator our policy requires."""


class BadMessageAuthenticator(RadiusAuthError):
    """A Message-Authenticator that does not verify (RFC 3579 §3.2)."""


class UnexpectedCode(RadiusAuthError):
    """A correctly signed response whose code does not answer the request."""


class Attribute(NamedTuple):
    """One attribute.  ``vendor`` 0 is the standard space; else the Vendor-Id and ``type``
    is the vendor type (RFC 2865 §5.26's recommended format)."""
    type: int
    value: bytes
    vendor: int = 0


@dataclass
class Packet:
    """A RADIUS packet (RFC 2865 §3).  ``attributes`` keeps the wire order; a
    User-Password is kept in clear here and hidden only on the wire."""
    code: Code
    identifier: int
    authenticator: bytes = _ZERO16
    attributes: list[Attribute] = field(default_factory=list)

    def get(self, type_: int, vendor: int = 0) -> bytes | None:
        """The first value of an attribute, or None."""
        for a in self.attributes:
            if a.type == type_ and a.vendor == vendor:
                return a.value
        return None

    def get_all(self, type_: int, vendor: int = 0) -> list[bytes]:
        return [a.value for a in self.attributes if a.type == type_ and a.vendor == vendor]

    def has(self, type_: int, vendor: int = 0) -> bool:
        return self.get(type_, vendor) is not None

    def get_int(self, type_: int, vendor: int = 0) -> int | None:
        v = self.get(type_, vendor)
        return None if v is None else int_value(v)

    def get_ipv4(self, type_: int, vendor: int = 0) -> ipaddress.IPv4Address | None:
        v = self.get(type_, vendor)
        return None if v is None else ipv4_value(v)

    def get_text(self, type_: int, vendor: int = 0) -> str | None:
        v = self.get(type_, vendor)
        return None if v is None else text_value(v)


# --- value helpers ---------------------------------------------------------------------------

def int_value(v: bytes) -> int:
    """RFC 2865 §5 "integer": exactly 4 octets, big-endian."""
    if len(v) != 4:
        raise RadiusDecodeError(f"integer attribute of {len(v)} octets (4 expected)")
    return int.from_bytes(v, "big")


def ipv4_value(v: bytes) -> ipaddress.IPv4Address:
    """RFC 2865 §5 "address": exactly 4 octets."""
    if len(v) != 4:
        raise RadiusDecodeError(f"address attribute of {len(v)} octets (4 expected)")
    return ipaddress.IPv4Address(v)


def text_value(v: bytes) -> str:
    """RFC 2865 §5 "text": UTF-8 (undecodable octets are replaced, never raised)."""
    return v.decode("utf-8", errors="replace")


def new_authenticator() -> bytes:
    """RFC 2865 §3: an unpredictable, unique 16-octet Request Authenticator."""
    return secrets.token_bytes(16)


def _md5(*parts: bytes) -> bytes:
    return hashlib.md5(b"".join(parts)).digest()


# --- attribute encoding ----------------------------------------------------------------------

def _expected_len(vt: ValueType | None) -> int | None:
    if vt in (ValueType.INTEGER, ValueType.IPADDR):
        return 4
    if vt is ValueType.IFID:
        return 8
    return None


def _check_value(type_: int, vendor: int, value: bytes, error: type[Exception]) -> None:
    table = ATTRIBUTE_TYPES if vendor == 0 else MS_ATTRIBUTE_TYPES if vendor == VENDOR_MICROSOFT else {}
    want = _expected_len(table.get(type_))
    if want is not None and len(value) != want:
        raise error(f"attribute {vendor}:{type_} has {len(value)} octets ({want} expected)")


def _encode_attributes(attrs: Iterable[Attribute]) -> bytes:
    out = bytearray()
    for a in attrs:
        if not 0 < a.type < 256:
            raise LocalProtocolError(f"attribute type {a.type} out of range")
        _check_value(a.type, a.vendor, a.value, LocalProtocolError)
        if a.vendor:
            # RFC 2865 §5.26: Type 26, Length, Vendor-Id (4), Vendor type, Vendor length, value
            if len(a.value) > MAX_VALUE_LEN - 6:
                raise LocalProtocolError(f"vendor attribute {a.vendor}:{a.type} too long")
            out += struct.pack("!BBIBB", Attr.VENDOR_SPECIFIC, len(a.value) + 8, a.vendor,
                               a.type, len(a.value) + 2)
        else:
            if len(a.value) > MAX_VALUE_LEN:
                raise LocalProtocolError(f"attribute {a.type} too long ({len(a.value)} octets)")
            out += struct.pack("!BB", a.type, len(a.value) + 2)
        out += a.value
    return bytes(out)


def _decode_vsa(data: bytes) -> list[Attribute] | None:
    """Split a Vendor-Specific value into sub-attributes; None if it is not in the RFC 2865
    §5.26 recommended format (kept raw then, except for Microsoft's, which must be)."""
    if len(data) < 4:
        return None
    vendor = int.from_bytes(data[:4], "big")
    out: list[Attribute] = []
    pos = 4
    while pos < len(data):
        if len(data) - pos < 2:
            return None
        vtype, vlen = data[pos], data[pos + 1]
        # sub-type 0 is not a vendor attribute we could encode back (types are 1..255)
        if vlen < 2 or vtype == 0 or pos + vlen > len(data):
            return None
        out.append(Attribute(vtype, data[pos + 2:pos + vlen], vendor))
        pos += vlen
    return out if out else None


def _decode_attributes(data: bytes) -> list[Attribute]:
    attrs: list[Attribute] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            raise RadiusDecodeError("truncated attribute header")
        type_, length = data[pos], data[pos + 1]
        if length < 2:
            raise RadiusDecodeError(f"attribute {type_} with Length {length} (< 2)")
        if type_ == 0:      # reserved (RFC 6929 §2.1; RFC 2865 types are 1..255)
            raise RadiusDecodeError("attribute type 0")
        if pos + length > len(data):
            raise RadiusDecodeError(f"attribute {type_} overruns the packet")
        value = data[pos + 2:pos + length]
        pos += length
        if type_ == Attr.VENDOR_SPECIFIC:
            subs = _decode_vsa(value)
            if subs is None:
                if len(value) >= 4 and int.from_bytes(value[:4], "big") == VENDOR_MICROSOFT:
                    raise RadiusDecodeError("malformed Microsoft vendor attribute")
                attrs.append(Attribute(type_, value))
                continue
            for sub in subs:
                _check_value(sub.type, sub.vendor, sub.value, RadiusDecodeError)
            attrs.extend(subs)
            continue
        _check_value(type_, 0, value, RadiusDecodeError)
        if type_ == Attr.MESSAGE_AUTHENTICATOR and length != 18:
            raise RadiusDecodeError(f"Message-Authenticator of Length {length} (18 expected)")
        attrs.append(Attribute(type_, value))
    return attrs


# --- packets ---------------------------------------------------------------------------------

def decode_packet(data: bytes) -> Packet:
    """Decode one datagram.  Octets past the Length field are padding (RFC 2865 §3)."""
    if len(data) < HEADER_LEN:
        raise RadiusDecodeError(f"datagram of {len(data)} octets is shorter than the header")
    code, ident, length, auth = _HEADER.unpack_from(data)
    if length < HEADER_LEN or length > MAX_PACKET_LEN:
        raise RadiusDecodeError(f"Length field {length} out of range")
    if length > len(data):
        raise RadiusDecodeError(f"Length field {length} exceeds the datagram ({len(data)})")
    try:
        code = Code(code)
    except ValueError:
        raise RadiusDecodeError(f"unknown code {code}") from None
    return Packet(code, ident, auth, _decode_attributes(data[HEADER_LEN:length]))


def message_authenticator(secret: bytes, raw: bytes, authenticator: bytes) -> bytes:
    """RFC 3579 §3.2: HMAC-MD5 over the packet with ``authenticator`` in the Authenticator
    field and the Message-Authenticator value zeroed."""
    buf = bytearray(raw)
    buf[4:20] = authenticator
    pos = HEADER_LEN
    while pos + 2 <= len(buf):
        t, ln = buf[pos], buf[pos + 1]
        if ln < 2:
            break
        if t == Attr.MESSAGE_AUTHENTICATOR and ln == 18:
            buf[pos + 2:pos + 18] = _ZERO16
        pos += ln
    return hmac.new(secret, bytes(buf), hashlib.md5).digest()


def _find_message_authenticator(raw: bytes) -> int | None:
    """Offset of the Message-Authenticator value in a decoded-valid packet, or None."""
    pos = HEADER_LEN
    while pos + 2 <= len(raw):
        t, ln = raw[pos], raw[pos + 1]
        if t == Attr.MESSAGE_AUTHENTICATOR and ln == 18:
            return pos + 2
        if ln < 2:
            return None
        pos += ln
    return None


def _assemble(code: int, ident: int, auth: bytes, body: bytes) -> bytearray:
    length = HEADER_LEN + len(body)
    if length > MAX_PACKET_LEN:
        raise LocalProtocolError(f"packet of {length} octets exceeds {MAX_PACKET_LEN}")
    return bytearray(_HEADER.pack(code, ident, length, auth) + body)


def encode_request(packet: Packet, secret: bytes, *, with_message_authenticator: bool = True,
                   authenticator: bytes | None = None) -> tuple[bytes, bytes]:
    """Encode a request; returns (wire bytes, Request Authenticator).

    Access-Request / Status-Server: ``authenticator`` (default: a fresh random one) is the
    Request Authenticator and hides the User-Password.  Accounting / Disconnect / CoA
    requests: the Request Authenticator is computed (RFC 2866 §3, RFC 5176 §2.3).  Any
    Message-Authenticator in ``packet.attributes`` is replaced by a computed one, first."""
    if packet.code not in REQUEST_CODES:
        raise LocalProtocolError(f"{packet.code!r} is not a request")
    if not 0 <= packet.identifier < 256:
        raise LocalProtocolError(f"identifier {packet.identifier} out of range")
    random_auth = packet.code in (Code.ACCESS_REQUEST, Code.STATUS_SERVER)
    if random_auth:
        auth = new_authenticator() if authenticator is None else authenticator
        if len(auth) != 16:
            raise LocalProtocolError("Request Authenticator must be 16 octets")
    else:
        auth = _ZERO16
    attrs = [a for a in packet.attributes if not (a.type == Attr.MESSAGE_AUTHENTICATOR and a.vendor == 0)]
    if random_auth:
        attrs = [Attribute(Attr.USER_PASSWORD, hide_password(a.value, secret, auth))
                 if a.type == Attr.USER_PASSWORD and a.vendor == 0 else a for a in attrs]
    elif any(a.type == Attr.USER_PASSWORD and a.vendor == 0 for a in attrs):
        raise LocalProtocolError("User-Password belongs only in an Access-Request")
    if with_message_authenticator or packet.code == Code.STATUS_SERVER:  # RFC 5997 §3: MUST
        attrs.insert(0, Attribute(Attr.MESSAGE_AUTHENTICATOR, _ZERO16))
    buf = _assemble(packet.code, packet.identifier, auth, _encode_attributes(attrs))
    ma = _find_message_authenticator(bytes(buf))
    if ma is not None:
        # computed with the authenticator field as it is now: random, or zeros (RFC 5176 §3.1)
        buf[ma:ma + 16] = message_authenticator(secret, bytes(buf), auth)
    if not random_auth:
        auth = _md5(bytes(buf), secret)
        buf[4:20] = auth
    return bytes(buf), auth


def encode_response(packet: Packet, secret: bytes, request_authenticator: bytes, *,
                    with_message_authenticator: bool = True) -> bytes:
    """Encode a response (RFC 2865 §3 Response Authenticator) to the request whose
    authenticator is given; used by our Dynamic Authorization listener and by test servers."""
    if packet.code in REQUEST_CODES:
        raise LocalProtocolError(f"{packet.code!r} is not a response")
    attrs = [a for a in packet.attributes if not (a.type == Attr.MESSAGE_AUTHENTICATOR and a.vendor == 0)]
    if with_message_authenticator:
        attrs.insert(0, Attribute(Attr.MESSAGE_AUTHENTICATOR, _ZERO16))
    buf = _assemble(packet.code, packet.identifier, request_authenticator, _encode_attributes(attrs))
    ma = _find_message_authenticator(bytes(buf))
    if ma is not None:
        buf[ma:ma + 16] = message_authenticator(secret, bytes(buf), request_authenticator)
    buf[4:20] = _md5(bytes(buf), secret)
    return bytes(buf)


def verify_response(raw: bytes, response: Packet, request_code: Code, request_authenticator: bytes,
                    secret: bytes, *, require_message_authenticator: bool) -> None:
    """Check a decoded response against its request; raises :class:`RadiusAuthError`.

    ``raw`` is the datagram ``response`` was decoded from (padding past Length ignored)."""
    length = int.from_bytes(raw[2:4], "big")
    raw = raw[:length]
    expected = _md5(raw[:4], request_authenticator, raw[HEADER_LEN:], secret)
    if not hmac.compare_digest(expected, raw[4:20]):
        raise RadiusAuthError("bad Response Authenticator")
    _check_message_authenticator(raw, secret, request_authenticator, "response",
                                 require=require_message_authenticator)
    if response.code not in RESPONSE_CODES.get(request_code, frozenset()):
        raise UnexpectedCode(f"{response.code!r} does not answer {request_code!r}")


def verify_request(raw: bytes, request: Packet, secret: bytes, *,
                   require_message_authenticator: bool) -> None:
    """Check a received Accounting / Disconnect / CoA request's computed Request
    Authenticator (RFC 2866 §3, RFC 5176 §3.5) and its Message-Authenticator; an
    Access-Request can only have its Message-Authenticator checked."""
    length = int.from_bytes(raw[2:4], "big")
    raw = raw[:length]
    computed = request.code not in (Code.ACCESS_REQUEST, Code.STATUS_SERVER)
    if computed:
        expected = _md5(raw[:4], _ZERO16, raw[HEADER_LEN:], secret)
        if not hmac.compare_digest(expected, raw[4:20]):
            raise RadiusAuthError("bad Request Authenticator")
    _check_message_authenticator(raw, secret, _ZERO16 if computed else raw[4:20], "request",
                                 require=require_message_authenticator)


def _check_message_authenticator(raw: bytes, secret: bytes, authenticator: bytes, what: str, *,
                                 require: bool) -> None:
    """RFC 3579 §3.2: a Message-Authenticator present must verify (HMAC-MD5 over the packet
    with the attribute zeroed and ``authenticator`` in the header); absent, it is an error
    only when ``require`` (BlastRADIUS: required on Access responses)."""
    ma = _find_message_authenticator(raw)
    if ma is None:
        if require:
            raise MissingMessageAuthenticator(f"{what} without Message-Authenticator")
        return
    if not hmac.compare_digest(message_authenticator(secret, raw, authenticator), raw[ma:ma + 16]):
        raise BadMessageAuthenticator("bad Message-Authenticator")


# --- hiding and salt encryption ---------------------------------------------------------------

def _xor_chain(secret: bytes, first: bytes, data: bytes, *, encrypt: bool) -> bytes:
    """RFC 2865 §5.2 / RFC 2548 §2.4.2: b(1) = MD5(S + first), c(i) = p(i) xor b(i),
    b(i) = MD5(S + c(i-1)); the chain always runs on the ciphertext."""
    out = bytearray()
    last = first
    for i in range(0, len(data), 16):
        block = data[i:i + 16]
        b = _md5(secret, last)
        res = bytes(x ^ y for x, y in zip(block, b, strict=True))
        out += res
        last = res if encrypt else block
    return bytes(out)


def hide_password(password: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """RFC 2865 §5.2 User-Password hiding (zero-padded to a multiple of 16, at most 128)."""
    if len(password) > MAX_PASSWORD_LEN:
        raise LocalProtocolError(f"User-Password longer than {MAX_PASSWORD_LEN} octets")
    pad = 16 if not password else -len(password) % 16   # an empty password is one zero block
    padded = password + bytes(pad)
    return _xor_chain(secret, request_authenticator, padded, encrypt=True)


def unhide_password(hidden: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """Inverse of :func:`hide_password` (trailing zero padding removed)."""
    if not hidden or len(hidden) % 16 or len(hidden) > MAX_PASSWORD_LEN:
        raise RadiusDecodeError(f"User-Password of {len(hidden)} octets")
    return _xor_chain(secret, request_authenticator, hidden, encrypt=False).rstrip(b"\x00")


def encrypt_mppe_key(key: bytes, secret: bytes, request_authenticator: bytes, salt: bytes) -> bytes:
    """RFC 2548 §2.4.2: Salt (2 octets, high bit set) | encrypted(Key-Length | Key | padding)."""
    if len(salt) != 2 or not salt[0] & 0x80:
        raise LocalProtocolError("salt must be 2 octets with the high bit set")
    if len(key) > 239:
        raise LocalProtocolError("MPPE key too long")
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    return salt + _xor_chain(secret, request_authenticator + salt, plain, encrypt=True)


def decrypt_mppe_key(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """RFC 2548 §2.4.2/§2.4.3: the key of an MS-MPPE-Send-Key / MS-MPPE-Recv-Key value."""
    if len(value) < 18 or (len(value) - 2) % 16:
        raise RadiusDecodeError(f"MPPE key attribute of {len(value)} octets")
    salt = value[:2]
    if not salt[0] & 0x80:
        raise RadiusDecodeError("MPPE key salt without its high bit set")
    plain = _xor_chain(secret, request_authenticator + salt, value[2:], encrypt=False)
    if plain[0] > len(plain) - 1:
        raise RadiusDecodeError("MPPE Key-Length exceeds the decrypted value")
    return plain[1:1 + plain[0]]


def encrypt_ms_chap_mppe_keys(lm_key: bytes, nt_key: bytes, secret: bytes,
                              request_authenticator: bytes) -> bytes:
    """RFC 2548 §2.4.1 MS-CHAP-MPPE-Keys: LM-Key (8) | NT-Key (16) | 8 zero octets, hidden
    as a User-Password."""
    if len(lm_key) != 8 or len(nt_key) != 16:
        raise LocalProtocolError("LM-Key is 8 octets and NT-Key 16")
    return _xor_chain(secret, request_authenticator, lm_key + nt_key + bytes(8), encrypt=True)


def decrypt_ms_chap_mppe_keys(value: bytes, secret: bytes,
                              request_authenticator: bytes) -> tuple[bytes, bytes]:
    """RFC 2548 §2.4.1: (LM-Key, NT-Key) of an MS-CHAP-MPPE-Keys value (32 octets)."""
    if len(value) != 32:
        raise RadiusDecodeError(f"MS-CHAP-MPPE-Keys of {len(value)} octets (32 expected)")
    plain = _xor_chain(secret, request_authenticator, value, encrypt=False)
    return plain[:8], plain[8:24]

