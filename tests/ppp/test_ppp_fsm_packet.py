"""LCP/NCP packet and option codec (RFC 1661 §5, §6): exact lengths, typed errors."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from fastpptp.errors import DecodeError, RemoteProtocolError
from fastpptp.ppp.packet import (OptionLengthError, Option, Packet, PacketLengthError,
                                 PacketTooShort, decode_options, encode_options)

# pppd's LCP Configure-Request from captures/chap-md5.pcap frame 14
PPPD_CONFREQ = bytes.fromhex("0101001402060000000005060444368a07020802")


def test_decode_pppd_configure_request():
    p = Packet.decode(PPPD_CONFREQ)
    assert (p.code, p.identifier) == (1, 1)
    assert p.options() == [Option(2, bytes(4)), Option(5, bytes.fromhex("0444368a")),
                           Option(7), Option(8)]
    assert p.encode() == PPPD_CONFREQ


def test_padding_after_length_is_ignored():
    p = Packet.decode(PPPD_CONFREQ + b"\x00\x00\xff")
    assert p.encode() == PPPD_CONFREQ


@pytest.mark.parametrize("raw,exc", [
    (b"", PacketTooShort), (b"\x01\x01\x00", PacketTooShort),
    (b"\x01\x01\x00\x03", PacketTooShort), (b"\x01\x01\x00\x00", PacketTooShort),
    (b"\x01\x01\x00\x05", PacketLengthError), (PPPD_CONFREQ[:-1], PacketLengthError),
])
def test_bad_packet_lengths(raw, exc):
    with pytest.raises(exc):
        Packet.decode(raw)


@pytest.mark.parametrize("data", [b"\x05", b"\x05\x00", b"\x05\x01", b"\x05\x06\x00\x00",
                                  b"\x07\x02\x08"])
def test_bad_option_lengths(data):
    with pytest.raises(OptionLengthError):
        decode_options(data)


def test_error_hierarchy():
    assert issubclass(OptionLengthError, DecodeError)
    assert issubclass(DecodeError, RemoteProtocolError)
    assert issubclass(DecodeError, ValueError)


def test_zero_length_value_options():
    assert decode_options(b"\x07\x02\x08\x02") == [Option(7), Option(8)]
    assert encode_options([Option(7), Option(8)]) == b"\x07\x02\x08\x02"


@given(st.integers(0, 255), st.integers(0, 255),
       st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=8))
def test_roundtrip(code, ident, opts):
    options = [Option(t, v) for t, v in opts]
    pkt = Packet(code, ident, encode_options(options))
    again = Packet.decode(pkt.encode())
    assert again == pkt and again.options() == options


@given(st.binary(max_size=64))
def test_decoders_raise_only_decode_error(raw):
    try:
        Packet.decode(raw).options()
    except DecodeError:
        pass
