"""PPP framing inside GRE (RFC 1661 §2, §6.5, §6.6; RFC 1662 §3.1).

A PPP frame carried by PPTP has no HDLC flags, escaping or FCS: it is

    [Address 0xFF, Control 0x03]  Protocol (1 or 2 octets)  Information

* Address/Control are omitted when the peer agreed to ACFC (RFC 1661 §6.6) -- but never on
  LCP packets, so that LCP is always recognisable (same section).
* The Protocol field is sent as 1 octet when the peer agreed to PFC and the value is below
  0x100 (RFC 1661 §6.5).  On receive the form tells itself: protocol numbers have an even
  first octet and an odd last octet (RFC 1661 §2), so the field is 1 octet iff its first
  octet is odd.  Receivers accept both forms whatever was negotiated (RFC 1661 §6.5/§6.6:
  "MUST accept" uncompressed frames; being lenient about compressed ones costs nothing).
"""
from __future__ import annotations

from ..errors import DecodeError
from .constants import Protocol

__all__ = ["ADDRESS", "CONTROL", "PppFrameError", "encode", "decode", "header"]

ADDRESS = 0xFF
CONTROL = 0x03
_AC = bytes((ADDRESS, CONTROL))


class PppFrameError(DecodeError):
    """A PPP frame with a missing or malformed Protocol field."""


def header(protocol: int, acfc: bool = False, pfc: bool = False) -> bytes:
    """The octets in front of the information field."""
    if not 0 <= protocol <= 0xFFFF or not protocol & 1 or (protocol >> 8) & 1:
        raise ValueError(f"0x{protocol:04X} is not a valid PPP protocol number")
    is_lcp = protocol == Protocol.LCP
    out = b"" if acfc and not is_lcp else _AC
    if pfc and protocol < 0x100:
        return out + bytes((protocol,))
    return out + protocol.to_bytes(2, "big")


def encode(protocol: int, info: bytes, acfc: bool = False, pfc: bool = False) -> bytes:
    """Frame ``info`` as ``protocol``; ``acfc``/``pfc`` say what the peer agreed to receive."""
    return header(protocol, acfc, pfc) + bytes(info)


def decode(frame: bytes) -> tuple[int, bytes]:
    """(protocol, information field) of a PPP frame with or without FF 03 and PFC."""
    frame = bytes(frame)
    offset = 2 if frame[:2] == _AC else 0
    if len(frame) <= offset:
        raise PppFrameError("PPP frame without a protocol field")
    first = frame[offset]
    if first & 1:                       # compressed: 1-octet protocol 0x00XX
        return first, frame[offset + 1:]
    if len(frame) < offset + 2:
        raise PppFrameError("PPP frame truncated inside the protocol field")
    second = frame[offset + 1]
    if not second & 1:
        raise PppFrameError(f"PPP protocol 0x{first:02X}{second:02X} has an even last octet")
    return (first << 8) | second, frame[offset + 2:]
