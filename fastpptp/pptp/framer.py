"""TCP stream framer for the PPTP control connection (RFC 2637 §1.4).

TCP delivers the control channel as a byte stream: one read may hold half a message or
several.  ``PptpFramer.feed(data)`` appends; iterating (or ``next_message()``) yields every
complete message and leaves a partial one buffered.

Every message carries its own Length, Magic Cookie and Control Message Type, so the framer
checks each as soon as the octets have arrived (a peer that sends a bogus Length is caught
after 2 octets, not after it has made us wait for 64 KiB).  Any failure is final: the stream
is out of sync, RFC 2637 §1.4 says the control connection must be closed, and every further
call raises ``FramerBroken``.
"""
from __future__ import annotations

import struct
from typing import Iterator, NoReturn

from .errors import BadLength, BadMagicCookie, FramerBroken, PptpDecodeError
from .messages import HEADER_SIZE, MAGIC_COOKIE, Message, decode, peek_header

__all__ = ["PptpFramer", "DEFAULT_MAX_LENGTH", "DEFAULT_MAX_BUFFER"]

DEFAULT_MAX_LENGTH = 512        # largest message is 220 (ICRQ); anything above is garbage
DEFAULT_MAX_BUFFER = 64 * 1024  # bound on octets fed but not yet consumed

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class PptpFramer:
    """Split a control-connection byte stream into ``Message`` objects."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH,
                 max_buffer: int = DEFAULT_MAX_BUFFER):
        self.max_length = max_length
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self._error: PptpDecodeError | None = None

    @property
    def pending(self) -> int:
        """Octets of an incomplete message held back (non-zero = peer stopped mid-message)."""
        return len(self._buf)

    @property
    def broken(self) -> bool:
        return self._error is not None

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            raise FramerBroken("framer failed earlier; close the connection") from self._error
        self._buf += data
        if len(self._buf) > self.max_buffer:
            self._fail(BadLength(f"{len(self._buf)} octets buffered without being consumed"))

    def next_message(self) -> Message | None:
        """The next complete message, or None until more octets are fed."""
        if self._error is not None:
            raise FramerBroken("framer failed earlier; close the connection") from self._error
        buf = self._buf
        if len(buf) >= 2:
            (length,) = _U16.unpack_from(buf)
            if length < HEADER_SIZE or length > self.max_length:
                self._fail(BadLength(f"Length field {length}"))
        if len(buf) >= 8:
            (cookie,) = _U32.unpack_from(buf, 4)
            if cookie != MAGIC_COOKIE:
                self._fail(BadMagicCookie(f"magic cookie 0x{cookie:08X}"))
        if len(buf) < HEADER_SIZE:
            return None
        try:
            length = peek_header(buf)[0]
            if len(buf) < length:
                return None
            msg = decode(bytes(buf[:length]))
        except PptpDecodeError as exc:
            self._fail(exc)
        del buf[:length]
        return msg

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self.next_message()
            if msg is None:
                return
            yield msg

    def _fail(self, exc: PptpDecodeError) -> NoReturn:
        self._error = exc
        self._buf.clear()
        raise exc
