"""PPTP control message codec (RFC 2637 §2): exact bytes, sizes, round trips, typed errors."""
from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, strategies as st

from fastpptp.pptp import messages as m
from fastpptp.errors import DecodeError, RemoteProtocolError
from fastpptp.pptp.errors import (BadLength, BadMagicCookie, BadMessageType, TruncatedMessage,
                                  UnknownControlMessageType)


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def z(n: int) -> str:
    return "00" * n


# Android mtpd's table, indexed by Control Message Type 1..15 (TEST-VECTORS §9).
SIZES = [156, 156, 16, 16, 16, 20, 168, 32, 220, 24, 28, 16, 148, 40, 24]


def test_sizes_match_rfc():
    assert [m.MESSAGE_CLASSES[t].SIZE for t in range(1, 16)] == SIZES
    assert set(m.MESSAGE_CLASSES) == set(range(1, 16))


MICROSOFT = "4D6963726F736F6674" + z(55)

# (message object, exact wire bytes).  The first block is TEST-VECTORS §9 ([MS-PTPT] §4
# example values serialised per RFC 2637); the rest are hand-serialised from RFC 2637 §2.
VECTORS = [
    (m.SCCRQ(framing_capabilities=1, bearer_capabilities=1, vendor_string="Microsoft"),
     h("009C 0001 1A2B3C4D 0001 0000 0100 0000 00000001 00000001 0000 0000") + bytes(64)
     + h(MICROSOFT)),
    (m.SCCRP(result_code=1, framing_capabilities=1, bearer_capabilities=1,
             vendor_string=b"Microsoft"),
     h("009C 0001 1A2B3C4D 0002 0000 0100 01 00 00000001 00000001 0000 0000") + bytes(64)
     + h(MICROSOFT)),
    (m.OCRQ(call_id=0xFAEA, call_serial_number=1, minimum_bps=300, maximum_bps=100000000,
            bearer_type=3, framing_type=3, packet_recv_window_size=64,
            subaddress=h("E3572A57E0A2BD41B826F1454106F261")),
     h("00A8 0001 1A2B3C4D 0007 0000 FAEA 0001 0000012C 05F5E100 00000003 00000003 0040 0000"
       " 0000 0000") + bytes(64) + h("E3572A57E0A2BD41B826F1454106F261" + z(48))),
    (m.OCRP(call_id=0xE40A, peer_call_id=0xFAEA, result_code=1, connect_speed=0x00512502,
            packet_recv_window_size=0x4000),
     h("0020 0001 1A2B3C4D 0008 0000 E40A FAEA 01 00 0000 00512502 4000 0000 00000000")),
    (m.CallClearRequest(call_id=0xFAEA),
     h("0010 0001 1A2B3C4D 000C 0000 FAEA 0000")),
    (m.CDN(call_id=0xE40A, result_code=0),
     h("0094 0001 1A2B3C4D 000D 0000 E40A 00 00 0000 0000") + bytes(128)),
    (m.StopCCRQ(reason=1), h("0010 0001 1A2B3C4D 0003 0000 01 00 0000")),
    (m.StopCCRP(result_code=1), h("0010 0001 1A2B3C4D 0004 0000 01 00 0000")),
    (m.EchoRequest(identifier=0x01020304), h("0010 0001 1A2B3C4D 0005 0000 01020304")),
    (m.EchoReply(identifier=0x01020304, result_code=2, error_code=6),
     h("0014 0001 1A2B3C4D 0006 0000 01020304 02 06 0000")),
    (m.ICRQ(call_id=0x1234, call_serial_number=7, call_bearer_type=2,
            physical_channel_id=0xA0B0C0D0, dialed_number="5551234", dialing_number=b"42",
            subaddress=b"sub"),
     h("00DC 0001 1A2B3C4D 0009 0000 1234 0007 00000002 A0B0C0D0 0007 0002")
     + b"5551234" + bytes(57) + b"42" + bytes(62) + b"sub" + bytes(61)),
    (m.ICRP(call_id=0x1234, peer_call_id=0x5678, result_code=3, packet_recv_window_size=64,
            packet_transmit_delay=10),
     h("0018 0001 1A2B3C4D 000A 0000 1234 5678 03 00 0040 000A 0000")),
    (m.ICCN(peer_call_id=0x1234, connect_speed=64000, packet_recv_window_size=16,
            packet_transmit_delay=0, framing_type=1),
     h("001C 0001 1A2B3C4D 000B 0000 1234 0000 0000FA00 0010 0000 00000001")),
    (m.WanErrorNotify(peer_call_id=9, crc_errors=1, framing_errors=2, hardware_overruns=3,
                      buffer_overruns=4, timeout_errors=5, alignment_errors=6),
     h("0028 0001 1A2B3C4D 000E 0000 0009 0000 00000001 00000002 00000003 00000004 00000005"
       " 00000006")),
    (m.SetLinkInfo(peer_call_id=0x0000, send_accm=0xFFFFFFFF, receive_accm=0x000A0000),
     h("0018 0001 1A2B3C4D 000F 0000 0000 0000 FFFFFFFF 000A0000")),
]


@pytest.mark.parametrize("msg,wire", VECTORS, ids=[type(v[0]).__name__ for v in VECTORS])
def test_byte_exact(msg, wire):
    assert len(wire) == type(msg).SIZE
    assert msg.encode() == wire
    decoded = m.decode(wire)
    assert decoded == msg
    assert type(decoded) is type(msg)
    assert decoded.encode() == wire


def test_every_type_has_a_vector():
    assert {type(v[0]).TYPE for v in VECTORS} == set(range(1, 16))


def test_codes_become_enums_when_listed_and_ints_otherwise():
    msg = m.decode(h("0020 0001 1A2B3C4D 0008 0000 0001 0002 07 05 0000 00000000 0000 0000"
                     " 00000000"))
    assert msg.result_code is m.OutgoingCallResult.DO_NOT_ACCEPT
    assert msg.error_code is m.GeneralErrorCode.BAD_CALL_ID
    # Windows/Android answer with Result Code 0: must decode as the plain int 0
    zero = m.decode(h("0010 0001 1A2B3C4D 0004 0000 00 00 0000"))
    assert zero.result_code == 0 and not isinstance(zero.result_code, m.StopCtrlConnResult)
    odd = m.decode(h("0010 0001 1A2B3C4D 0004 0000 C8 FF 0000"))
    assert (odd.result_code, odd.error_code) == (200, 255)
    assert odd.encode() == h("0010 0001 1A2B3C4D 0004 0000 C8 FF 0000")


def test_rfc_code_values():
    assert m.CallDisconnectResult.ADMIN_SHUTDOWN == 3 and m.CallDisconnectResult.REQUEST == 4
    assert m.StartCtrlConnResult.BAD_PROTOCOL_VERSION == 5
    assert m.StopCtrlConnReason.STOP_LOCAL_SHUTDOWN == 3
    assert m.IncomingCallResult.DO_NOT_ACCEPT == 3
    assert m.GeneralErrorCode.PAC_ERROR == 6
    assert m.FramingCapabilities.SYNCHRONOUS == 2 and m.BearerCapabilities.DIGITAL == 2


def test_strings_trimmed_and_garbage_after_nul_round_trips():
    host = b"pns\x00\xde\xad\xbe\xef" + bytes(56)
    vendor = b"vendor-without-nul".ljust(64, b"X")        # a full field, no NUL at all
    wire = (h("009C 0001 1A2B3C4D 0001 0000 0100 0000 00000003 00000003 FFFF 0001")
            + host + vendor)
    msg = m.decode(wire)
    assert msg.host_name == b"pns"
    assert msg.vendor_string == vendor
    assert msg.encode() == wire
    # a changed value is NUL-padded; unchanged fields keep their original octets
    changed = dataclasses.replace(msg, host_name=b"other")
    assert changed.encode()[12 + 16:12 + 16 + 64] == b"other" + bytes(59)
    assert changed.encode()[-64:] == vendor
    assert dataclasses.replace(msg, maximum_channels=1).encode()[12 + 16:12 + 80] == host


def test_reserved_fields_are_kept():
    wire = h("0010 0001 1A2B3C4D 000C BEEF FAEA 1234")
    msg = m.decode(wire)
    assert (msg.reserved0, msg.reserved1) == (0xBEEF, 0x1234)
    assert msg.encode() == wire


def test_phone_number_length_defaults_to_string_length():
    msg = m.OCRQ(call_id=1, phone_number=b"12345")
    assert struct.unpack_from(">H", msg.encode(), 12 + 24)[0] == 5
    assert m.decode(msg.encode()).phone_number_length == 5
    explicit = m.OCRQ(call_id=1, phone_number=b"12345", phone_number_length=0)
    assert m.decode(explicit.encode()).phone_number_length == 0


def test_describe_lists_every_field():
    line = m.OCRP(call_id=5, peer_call_id=6).describe()
    assert line.startswith("OutgoingCallReply ")
    for name in ("call_id=5", "peer_call_id=6", "result_code=1(CONNECTED)", "connect_speed=0"):
        assert name in line


def test_bad_construction_is_a_value_error():
    with pytest.raises(ValueError):
        m.SCCRQ(host_name=b"x" * 65)
    with pytest.raises(ValueError):
        m.EchoRequest(identifier=1 << 32).encode()


GOOD = m.EchoRequest(identifier=7).encode()


@pytest.mark.parametrize("wire,error", [
    (b"", TruncatedMessage),
    (GOOD[:11], TruncatedMessage),
    (GOOD[:15], TruncatedMessage),                            # shorter than its Length says
    (GOOD + b"\0", BadLength),                                # longer than its Length says
    (h("0011") + GOOD[2:] + b"\0", BadLength),                # wrong Length for Echo-Request
    (GOOD[:4] + h("1A2B3C4E") + GOOD[8:], BadMagicCookie),
    (GOOD[:2] + h("0002") + GOOD[4:], BadMessageType),
    (GOOD[:8] + h("0010") + GOOD[10:], UnknownControlMessageType),
    (GOOD[:8] + h("0000") + GOOD[10:], UnknownControlMessageType),
])
def test_decode_errors_are_typed(wire, error):
    with pytest.raises(error) as info:
        m.decode(wire)
    assert isinstance(info.value, DecodeError) and isinstance(info.value, RemoteProtocolError)


u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u8 = st.integers(0, 0xFF)


def _strategy_for(cls):
    fields = {"reserved0": u16}
    for name, code in cls.LAYOUT:
        if code.endswith("s"):
            fields[name] = st.binary(max_size=int(code[:-1])).map(lambda b: b.replace(b"\0", b"."))
        else:
            fields[name] = {"B": u8, "H": u16, "I": u32}[code]
    return st.builds(cls, **fields)


@given(st.sampled_from(sorted(m.MESSAGE_CLASSES)).flatmap(
    lambda t: _strategy_for(m.MESSAGE_CLASSES[t])))
def test_hypothesis_object_round_trip(msg):
    wire = msg.encode()
    assert len(wire) == msg.SIZE
    again = m.decode(wire)
    assert again == msg
    assert again.encode() == wire


@given(st.sampled_from(sorted(m.MESSAGE_CLASSES)), st.data())
def test_hypothesis_any_body_bytes_round_trip(ctrl_type, data):
    cls = m.MESSAGE_CLASSES[ctrl_type]
    body = data.draw(st.binary(min_size=cls.SIZE - 12, max_size=cls.SIZE - 12))
    reserved0 = data.draw(u16)
    wire = m.HEADER.pack(cls.SIZE, 1, m.MAGIC_COOKIE, ctrl_type, reserved0) + body
    assert m.decode(wire).encode() == wire


@given(st.binary(max_size=300))
def test_hypothesis_garbage_only_raises_decode_error(blob):
    try:
        m.decode(blob)
    except DecodeError:
        pass
