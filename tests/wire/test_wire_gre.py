"""Enhanced GRE header codec (RFC 2637 §4.1) with the kernel's validation."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from fastpptp import gre
from fastpptp.gre import (GreBadFlags, GreBadLength, GreBadProtocol, GreBadVersion,
                          GreDecodeError, GreHeader, GreTruncated)
from fastpptp.errors import DecodeError


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# TEST-VECTORS §10 ([MS-PTPT] §4 example values)
VECTORS = [
    (GreHeader(0xFAEA, 12, seq=15, ack=15), h("30 81 88 0B 00 0C FA EA 00 00 00 0F 00 00 00 0F")),
    (GreHeader(0xFAEA, 12, seq=15), h("30 01 88 0B 00 0C FA EA 00 00 00 0F")),
    (GreHeader(0xFAEA, 0, ack=15), h("20 81 88 0B 00 00 FA EA 00 00 00 0F")),
]


@pytest.mark.parametrize("header,wire", VECTORS)
def test_vectors(header, wire):
    assert header.encode() == wire
    assert header.size == len(wire)
    packet = wire + bytes(header.payload_length)
    assert GreHeader.decode(packet) == header
    assert gre.decode_packet(packet) == (header, bytes(header.payload_length))


def test_ack_only():
    hdr = GreHeader.decode(h("20 81 88 0B 00 00 00 00 12 34 56 78"))
    assert hdr.is_ack_only and hdr.seq is None and hdr.ack == 0x12345678
    assert not VECTORS[0][0].is_ack_only
    assert hdr.flags == 0x2081


def test_scapy_suite_capture():
    # TEST-VECTORS §10: IPv4 + GRE v1 + LCP Configure-Request (seq 0, call 0x9BF5, no ack)
    datagram = h("4500003c18324000402f0e5a0a0000020a000006 3001880b001c9bf500000000"
                 " ff03c021010100180206000000000304c2270506fbb8831007020802")
    hdr, ppp = gre.decode_packet(datagram[20:])
    assert hdr == GreHeader(0x9BF5, 0x1C, seq=0)
    assert ppp[:4] == h("ff03c021") and len(ppp) == 0x1C
    assert hdr.encode() + ppp == datagram[20:]


def test_trailing_octets_tolerated_and_sliced_off():
    wire = VECTORS[1][1] + b"x" * 12 + b"PAD"
    hdr, payload = gre.decode_packet(wire)
    assert payload == b"x" * 12


def test_encode_packet():
    assert gre.encode_packet(7, b"\xff\x03\xc0\x21", seq=1, ack=None) == \
        h("30 01 88 0B 00 04 00 07 00 00 00 01 ff 03 c0 21")


BASE = VECTORS[0][1] + bytes(12)


def _flip(word: int) -> bytes:
    return word.to_bytes(2, "big") + BASE[2:]


@pytest.mark.parametrize("wire,error", [
    (b"", GreTruncated),
    (BASE[:7], GreTruncated),
    (h("30 81 88 0B 00 00 FA EA 00 00 00 0F 00 00"), GreTruncated),   # ack cut short
    (h("30 81 88 0B 00 00 FA EA"), GreTruncated),       # seq announced, absent
    (_flip(0x3080), GreBadVersion),                 # version 0 (plain GRE)
    (_flip(0x3082), GreBadVersion),
    (BASE[:2] + h("0800") + BASE[4:], GreBadProtocol),
    (_flip(0x1081), GreBadFlags),                   # K clear
    (_flip(0xB081), GreBadFlags),                   # C set
    (_flip(0x7081), GreBadFlags),                   # R set
    (_flip(0x3881), GreBadFlags),                   # s (strict source route) set
    (_flip(0x3181), GreBadFlags),                   # recursion 1
    (_flip(0x30C1), GreBadFlags),                   # a reserved flag bit
    (VECTORS[0][1] + bytes(11), GreBadLength),      # payload shorter than Payload Length
    (h("20 81 88 0B 00 04 FA EA 00 00 00 0F") + bytes(4), GreBadLength),  # payload, no seq
])
def test_validation(wire, error):
    with pytest.raises(error) as info:
        GreHeader.decode(wire)
    assert isinstance(info.value, GreDecodeError) and isinstance(info.value, DecodeError)


def test_encode_refuses_payload_without_seq():
    with pytest.raises(ValueError):
        GreHeader(1, 10).encode()
    with pytest.raises(ValueError):
        GreHeader(1 << 16, 0, seq=1).encode()


opt32 = st.none() | st.integers(0, 0xFFFFFFFF)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), opt32, opt32)
def test_hypothesis_round_trip(call_id, length, seq, ack):
    if seq is None:
        length = 0
    hdr = GreHeader(call_id, length, seq, ack)
    wire = hdr.encode() + bytes(length)
    assert GreHeader.decode(wire) == hdr
    assert GreHeader.decode(wire).encode() == wire[:hdr.size]


@given(st.binary(max_size=40))
def test_hypothesis_garbage_only_raises_decode_error(blob):
    try:
        hdr = GreHeader.decode(blob)
    except GreDecodeError:
        return
    assert hdr.encode() == blob[:hdr.size]
