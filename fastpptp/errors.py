"""The one error hierarchy of fastpptp's protocol code (PPTP, GRE, PPP, PAP/CHAP, MPPE).

Two families, as in h11, so that a caller can tell whose fault an error is:

* :class:`LocalProtocolError`: *our* bug or API misuse (an event illegal in the current
  state, ``place_call`` before the control connection is up, a machine started twice).
  Not recoverable by talking to the peer; fix the caller.
* :class:`RemoteProtocolError`: the *peer* broke its protocol.  Recoverable: counted,
  logged and answered as the RFC says (drop the packet, Code-Reject, close the call ...).
  :class:`DecodeError` is the commonest kind: bytes that do not decode as the wire format
  they claim to be.  Codecs raise nothing else (never ``IndexError``/``struct.error``).

Every module-specific error derives from one of these three (``PptpDecodeError``,
``GreDecodeError``, ``PppFrameError``, the ``ppp.packet`` length errors, ``AuthDecodeError``,
``MppeError`` ...), so ``except RemoteProtocolError`` around any layer catches them all.
This module imports nothing, so the sans-I/O cores (``pptp/``, ``ppp/``, ``crypto/``) may
import it.
"""
from __future__ import annotations

__all__ = ["ProtocolError", "LocalProtocolError", "RemoteProtocolError", "DecodeError"]


class ProtocolError(Exception):
    """Root of the errors raised by fastpptp's sans-I/O protocol code."""


class LocalProtocolError(ProtocolError):
    """We (the caller of the sans-I/O object) did something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class DecodeError(RemoteProtocolError, ValueError):
    """Bytes that do not decode as the wire format they claim to be."""
