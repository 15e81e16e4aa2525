"""PPP framing inside GRE: FF 03 / ACFC and 1- or 2-octet protocol / PFC (RFC 1661 §6.5, §6.6)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from fastpptp.ppp import frame
from fastpptp.ppp.constants import Protocol
from fastpptp.errors import DecodeError


@pytest.mark.parametrize("protocol,info,acfc,pfc,wire", [
    (Protocol.IPV4, b"IP", False, False, b"\xff\x03\x00\x21IP"),
    (Protocol.IPV4, b"IP", True, False, b"\x00\x21IP"),
    (Protocol.IPV4, b"IP", False, True, b"\xff\x03\x21IP"),
    (Protocol.IPV4, b"IP", True, True, b"\x21IP"),
    (Protocol.COMPRESSED, b"\x90\x00", True, True, b"\xfd\x90\x00"),
    (Protocol.IPCP, b"\x01", True, True, b"\x80\x21\x01"),          # >= 0x100: never 1 octet
    (Protocol.LCP, b"\x01", True, True, b"\xff\x03\xc0\x21\x01"),   # LCP keeps FF 03
    (Protocol.CHAP, b"", False, False, b"\xff\x03\xc2\x23"),
])
def test_encode_decode(protocol, info, acfc, pfc, wire):
    assert frame.encode(protocol, info, acfc=acfc, pfc=pfc) == wire
    assert frame.decode(wire) == (protocol, info)


def test_capture_lcp_configure_request():
    wire = bytes.fromhex("ff03c021010100180206000000000304c2270506fbb8831007020802")
    proto, info = frame.decode(wire)
    assert proto == Protocol.LCP and info[:2] == b"\x01\x01"


@pytest.mark.parametrize("wire", [b"", b"\xff\x03", b"\x80", b"\xff\x03\x80", b"\x80\x20x"])
def test_malformed(wire):
    with pytest.raises(frame.PppFrameError) as info:
        frame.decode(wire)
    assert isinstance(info.value, DecodeError)


@pytest.mark.parametrize("protocol", [0x0020, 0x0121, 0x10000, -1])
def test_encode_rejects_invalid_protocol_numbers(protocol):
    with pytest.raises(ValueError):
        frame.encode(protocol, b"")


protocols = st.integers(0, 0xFFFF).filter(lambda p: p & 1 and not (p >> 8) & 1)


@given(protocols, st.binary(max_size=64), st.booleans(), st.booleans())
def test_hypothesis_round_trip(protocol, info, acfc, pfc):
    wire = frame.encode(protocol, info, acfc=acfc, pfc=pfc)
    assert frame.decode(wire) == (protocol, info)
    assert len(wire) == len(info) + (0 if acfc and protocol != Protocol.LCP else 2) \
        + (1 if pfc and protocol < 0x100 else 2)
