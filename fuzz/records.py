"""The byte format every structured target reads: a header then a stream of records.

A fuzz input is ``header bytes`` followed by records ``tag, length, payload`` (tag and length
one octet each; lengths above 250 use ``0xFF`` then two octets).  Targets decode it with
:class:`Reader`, which never raises: past the end every read returns zeros or ``b""`` and
``done`` is true, so any byte string is a valid input.  Seeds are written with
:class:`Writer` in the same format, so libFuzzer's mutations (bit flips, splices, inserted
records, changed lengths) act on whole protocol frames: structure-aware with a generic engine.
"""
from __future__ import annotations

import struct


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            self.pos += 1
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def u32(self) -> int:
        return self.u16() << 16 | self.u16()

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def chunk(self) -> bytes:
        n = self.byte()
        if n == 0xFF:
            n = self.u16()
        return self.take(n)


class Writer:
    def __init__(self, header: bytes = b"") -> None:
        self.buf = bytearray(header)

    def byte(self, b: int) -> "Writer":
        self.buf.append(b & 0xFF)
        return self

    def u16(self, v: int) -> "Writer":
        self.buf += struct.pack("!H", v & 0xFFFF)
        return self

    def u32(self, v: int) -> "Writer":
        self.buf += struct.pack("!I", v & 0xFFFFFFFF)
        return self

    def chunk(self, data: bytes) -> "Writer":
        if len(data) >= 0xFF:
            self.buf.append(0xFF)
            self.buf += struct.pack("!H", min(len(data), 0xFFFF))
            self.buf += data[:0xFFFF]
        else:
            self.buf.append(len(data))
            self.buf += data
        return self

    def record(self, tag: int, data: bytes) -> "Writer":
        return self.byte(tag).chunk(data)

    def bytes(self) -> bytes:
        return bytes(self.buf)


class FuzzFailure(AssertionError):
    """An invariant broke: a real finding (the runner saves the input)."""


def check(cond: object, what: str) -> None:
    if not cond:
        raise FuzzFailure(what)
