"""LCP/NCP packet and option codec (RFC 1661 §5 and §6).

Every control protocol built on the RFC 1661 automaton (LCP, IPCP, IPV6CP, CCP) carries the
same packet in the PPP Information field::

     0                   1                   2                   3
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Code      |  Identifier   |            Length             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |    Data ...
    +-+-+-+-+-+-+-+-+

and the Configure-* packets carry a list of options (TLVs)::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |    Length     |    Data ...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Length checks (RFC 1661 §5): Length counts the 4-octet header; Length < 4 or Length larger
than the received field is an error; octets after Length are padding and are ignored.
An option's Length counts its own 2-octet header; < 2 or overrunning the Data is an error.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import Iterable

from ..errors import DecodeError, LocalProtocolError

__all__ = [
    "PacketTooShort",
    "PacketLengthError", "OptionLengthError", "Packet", "Option",
    "decode_options", "encode_options", "HEADER_LEN",
]

HEADER_LEN = 4
MAX_PACKET_LEN = 0xFFFF


# The base classes (DecodeError, LocalProtocolError ...) live in fastpptp.errors.

class PacketTooShort(DecodeError):
    """Fewer than 4 octets, or the Length field says less than 4 (RFC 1661 §5)."""


class PacketLengthError(DecodeError):
    """The Length field claims more octets than were received (RFC 1661 §5)."""


class OptionLengthError(DecodeError):
    """An option Length < 2, or an option overrunning the packet (RFC 1661 §6)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Packet:
    """One LCP/NCP packet: Code, Identifier and Data (Length is derived)."""

    code: int
    identifier: int
    data: bytes = b""

    @classmethod
    def decode(cls, buf: bytes) -> "Packet":
        """Decode the Information field of an LCP/NCP frame; padding after Length is dropped."""
        if len(buf) < HEADER_LEN:
            raise PacketTooShort(f"packet of {len(buf)} octets, need at least {HEADER_LEN}")
        code, identifier, length = struct.unpack_from("!BBH", buf)
        if length < HEADER_LEN:
            raise PacketTooShort(f"Length field {length} < {HEADER_LEN}")
        if length > len(buf):
            raise PacketLengthError(f"Length field {length} > {len(buf)} octets received")
        return cls(code, identifier, bytes(buf[HEADER_LEN:length]))

    def encode(self) -> bytes:
        length = HEADER_LEN + len(self.data)
        if not (0 <= self.code <= 0xFF and 0 <= self.identifier <= 0xFF):
            raise LocalProtocolError(
                f"code {self.code} / identifier {self.identifier} out of range")
        if length > MAX_PACKET_LEN:
            raise LocalProtocolError(f"packet of {length} octets does not fit the Length field")
        return struct.pack("!BBH", self.code, self.identifier, length) + self.data

    def options(self) -> list["Option"]:
        """The Data field parsed as a list of options (Configure-* packets)."""
        return decode_options(self.data)


@dataclasses.dataclass(frozen=True, slots=True)
class Option:
    """One configuration option: Type and Value (Length is derived, RFC 1661 §6)."""

    type: int
    value: bytes = b""

    def encode(self) -> bytes:
        if not 0 <= self.type <= 0xFF or len(self.value) > 253:
            raise LocalProtocolError(
                f"option type {self.type} / {len(self.value)} octets invalid")
        return bytes((self.type, len(self.value) + 2)) + self.value

    def __repr__(self) -> str:
        return f"Option({self.type}, {self.value.hex() or '-'})"


def decode_options(data: bytes) -> list[Option]:
    """Split a Configure-* Data field into options; raise OptionLengthError on a bad Length."""
    out: list[Option] = []
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 2:
            raise OptionLengthError(f"option header truncated at offset {pos}")
        otype, olen = data[pos], data[pos + 1]
        if olen < 2:
            raise OptionLengthError(f"option {otype} Length {olen} < 2")
        if pos + olen > end:
            raise OptionLengthError(f"option {otype} Length {olen} overruns the packet")
        out.append(Option(otype, bytes(data[pos + 2:pos + olen])))
        pos += olen
    return out


def encode_options(options: Iterable[Option]) -> bytes:
    return b"".join(o.encode() for o in options)
