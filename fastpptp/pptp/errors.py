"""Error types of the PPTP control plane (and the shared ``DecodeError`` root).

Two families, as in h11:

* ``DecodeError`` and its subclasses: a codec met bytes it cannot accept.  Codecs raise
  nothing else (never ``IndexError``/``struct.error``).  ``DecodeError`` is also a
  ``RemoteProtocolError``: bad bytes are the peer's fault.
* ``LocalProtocolError`` (our bug or API misuse: e.g. ``place_call`` before the control
  connection is up) vs ``RemoteProtocolError`` (the peer broke RFC 2637; recoverable, answered
  as the RFC says, counted and logged).
"""
from __future__ import annotations


class ProtocolError(Exception):
    """Root of the errors raised by fastpptp's sans-I/O protocol code."""


class LocalProtocolError(ProtocolError):
    """We (the caller of the sans-I/O object) did something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class DecodeError(RemoteProtocolError, ValueError):
    """Bytes that do not decode as the wire format they claim to be."""


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
