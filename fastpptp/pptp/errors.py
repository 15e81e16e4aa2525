"""Error types of the PPTP control plane (RFC 2637).

Each derives from the one hierarchy of :mod:`fastpptp.errors`: the decode errors from
``DecodeError`` (a ``RemoteProtocolError``: bad bytes are the peer's fault), ``FramerBroken``
from ``LocalProtocolError`` (reading on after a failure is our bug).  Catch the base classes
from :mod:`fastpptp.errors`; this module re-defines none of them.
"""
from __future__ import annotations

from ..errors import DecodeError, LocalProtocolError

__all__ = [
    "PptpDecodeError", "TruncatedMessage", "BadLength", "BadMagicCookie", "BadMessageType",
    "UnknownControlMessageType", "FramerBroken",
]


# --- PPTP control messages (RFC 2637 §1.4, §2) --------------------------------------------

class PptpDecodeError(DecodeError):
    """A PPTP control message could not be decoded."""


class TruncatedMessage(PptpDecodeError):
    """Fewer bytes than the 12-octet header, or than the header's Length field announces."""


class BadLength(PptpDecodeError):
    """The Length field is impossible (below 12, above the framer's maximum, or not the
    exact size RFC 2637 §2 gives for this Control Message Type)."""


class BadMagicCookie(PptpDecodeError):
    """Magic Cookie is not 0x1A2B3C4D (RFC 2637 §1.4: the connection must be closed)."""


class BadMessageType(PptpDecodeError):
    """PPTP Message Type is not 1 (Control Message); 2 (Management) is never used."""


class UnknownControlMessageType(PptpDecodeError):
    """Control Message Type outside 1..15."""


class FramerBroken(LocalProtocolError):
    """The framer already failed once: the TCP connection must be closed, not read on."""
