"""Enhanced GRE header codec (RFC 2637 §4.1), pure Python.

Wire layout (network byte order)::

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   |C|R|K|S|s|Recur|A| Flags | Ver |         Protocol Type         |
   |    Key (HW) Payload Length    |       Key (LW) Call ID        |
   |                 Sequence Number (Optional)                    |
   |               Acknowledgment Number (Optional)                |

PPTP fixes most of it: C=0, R=0, K=1, s=0, Recur=0, Flags=0, Ver=1, Protocol 0x880B.  S
says a Sequence Number (and a payload) follows; A says an Acknowledgment Number follows.  An
*ack-only* packet has S=0, A=1 and no payload; its ack sits where the sequence number would be.

Validation is the Linux kernel's (drivers/net/ppp/pptp.c ``pptp_rcv`` and the GRE demux):
K=1, version 1, protocol 0x880B, C=R=0, no recursion/strict-route/reserved flag bits, and a
Payload Length that fits in what follows.  We are stricter than the kernel on one point the
kernel also drops later: a packet with a payload but no sequence number (S=0) is refused.
Trailing octets after the payload are tolerated (``decode_packet`` slices them off), as the
kernel does.  The Call ID in the key is the *receiver's* call ID (the peer call ID from the
sender's point of view).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import DecodeError

__all__ = [
    "GRE_PROTOCOL_PPP", "GRE_VERSION", "GreHeader", "decode_packet", "GreDecodeError",
    "GreTruncated", "GreBadVersion", "GreBadProtocol", "GreBadFlags", "GreBadLength",
    "FLAG_C", "FLAG_R", "FLAG_K", "FLAG_S", "FLAG_STRICT", "RECUR_MASK", "FLAG_A",
    "RESERVED_FLAGS_MASK", "VERSION_MASK", "MIN_HEADER", "MAX_HEADER",
]

GRE_PROTOCOL_PPP = 0x880B
GRE_VERSION = 1

# First 16-bit word of the header.
FLAG_C = 0x8000            # checksum present: never in PPTP
FLAG_R = 0x4000            # routing present: never in PPTP
FLAG_K = 0x2000            # key present: always in PPTP (Payload Length + Call ID)
FLAG_S = 0x1000            # sequence number present
FLAG_STRICT = 0x0800       # strict source route: 0
RECUR_MASK = 0x0700        # recursion control: 0
FLAG_A = 0x0080            # acknowledgment number present
RESERVED_FLAGS_MASK = 0x0078
VERSION_MASK = 0x0007
_MUST_BE_ZERO = FLAG_C | FLAG_R | FLAG_STRICT | RECUR_MASK | RESERVED_FLAGS_MASK

MIN_HEADER = 8
MAX_HEADER = 16

_BASE = struct.Struct(">HHHH")     # flags/version, protocol, payload length, call ID
_U32 = struct.Struct(">I")


class GreDecodeError(DecodeError):
    """Not an acceptable PPTP Enhanced GRE packet (the data plane counts it as malformed)."""


class GreTruncated(GreDecodeError):
    """Fewer octets than the flags announce."""


class GreBadVersion(GreDecodeError):
    """GRE version is not 1 (Enhanced GRE)."""


class GreBadProtocol(GreDecodeError):
    """Protocol Type is not 0x880B (PPP)."""


class GreBadFlags(GreDecodeError):
    """K clear, or C/R/s/Recur/reserved flag bits set."""


class GreBadLength(GreDecodeError):
    """Payload Length does not fit what follows the header, or a payload without S."""


@dataclass(frozen=True)
class GreHeader:
    """One Enhanced GRE header.  ``seq``/``ack`` are None when absent (S=0 / A=0)."""

    call_id: int
    payload_length: int = 0
    seq: int | None = None
    ack: int | None = None

    @property
    def size(self) -> int:
        return MIN_HEADER + (4 if self.seq is not None else 0) + (4 if self.ack is not None else 0)

    @property
    def flags(self) -> int:
        """The first 16-bit word as sent."""
        word = FLAG_K | GRE_VERSION
        if self.seq is not None:
            word |= FLAG_S
        if self.ack is not None:
            word |= FLAG_A
        return word

    @property
    def is_ack_only(self) -> bool:
        return self.seq is None and self.ack is not None

    def encode(self) -> bytes:
        if self.seq is None and self.payload_length:
            raise ValueError("a GRE packet with a payload needs a sequence number (S=1)")
        try:
            out = _BASE.pack(self.flags, GRE_PROTOCOL_PPP, self.payload_length, self.call_id)
            if self.seq is not None:
                out += _U32.pack(self.seq)
            if self.ack is not None:
                out += _U32.pack(self.ack)
        except struct.error as exc:
            raise ValueError(f"cannot encode GRE header: {exc}") from None
        return out

    @classmethod
    def decode(cls, data: bytes) -> "GreHeader":
        """Decode and validate the header at the start of ``data`` (header + payload + any
        trailing octets)."""
        if len(data) < MIN_HEADER:
            raise GreTruncated(f"{len(data)} octets, GRE header needs {MIN_HEADER}")
        word, protocol, payload_length, call_id = _BASE.unpack_from(data)
        if word & VERSION_MASK != GRE_VERSION:
            raise GreBadVersion(f"GRE version {word & VERSION_MASK}")
        if protocol != GRE_PROTOCOL_PPP:
            raise GreBadProtocol(f"GRE protocol 0x{protocol:04X}")
        if not word & FLAG_K or word & _MUST_BE_ZERO:
            raise GreBadFlags(f"GRE flags 0x{word:04X}")
        offset = MIN_HEADER
        seq = ack = None
        if word & FLAG_S:
            if len(data) < offset + 4:
                raise GreTruncated("sequence number announced but missing")
            (seq,) = _U32.unpack_from(data, offset)
            offset += 4
        if word & FLAG_A:
            if len(data) < offset + 4:
                raise GreTruncated("acknowledgment number announced but missing")
            (ack,) = _U32.unpack_from(data, offset)
            offset += 4
        if seq is None and payload_length:
            raise GreBadLength(f"payload length {payload_length} without a sequence number")
        if offset + payload_length > len(data):
            raise GreBadLength(
                f"payload length {payload_length}, only {len(data) - offset} octets follow")
        return cls(call_id=call_id, payload_length=payload_length, seq=seq, ack=ack)


def decode_packet(data: bytes) -> tuple[GreHeader, bytes]:
    """Decode a GRE packet into (header, PPP frame); trailing octets are dropped."""
    header = GreHeader.decode(data)
    start = header.size
    return header, bytes(data[start:start + header.payload_length])


def encode_packet(call_id: int, ppp_frame: bytes, seq: int | None = None,
                  ack: int | None = None) -> bytes:
    """GRE header + ``ppp_frame`` (``seq`` is required when the frame is not empty)."""
    return GreHeader(call_id, len(ppp_frame), seq, ack).encode() + ppp_frame


__all__.append("encode_packet")
