"""PPTP control-channel stream framer: partial and coalesced reads, and each error."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from fastpptp.pptp import messages as m
from fastpptp.pptp.errors import (BadLength, BadMagicCookie, BadMessageType, FramerBroken,
                                  UnknownControlMessageType)
from fastpptp.pptp.framer import PptpFramer

STREAM_MSGS = [
    m.SCCRQ(host_name=b"pns", vendor_string=b"fastpptp"),
    m.OCRQ(call_id=0x1234, packet_recv_window_size=64),
    m.EchoRequest(identifier=1),
    m.ICRQ(call_id=3, dialed_number=b"555"),
    m.SetLinkInfo(peer_call_id=0),
    m.CallClearRequest(call_id=0x1234),
]
STREAM = b"".join(x.encode() for x in STREAM_MSGS)


def test_coalesced_read_yields_every_message():
    framer = PptpFramer()
    framer.feed(STREAM)
    assert list(framer) == STREAM_MSGS
    assert framer.pending == 0


def test_byte_at_a_time():
    framer = PptpFramer()
    out = []
    for i in range(len(STREAM)):
        framer.feed(STREAM[i:i + 1])
        out.extend(framer)
    assert out == STREAM_MSGS


def test_partial_message_is_held_and_reported_pending():
    framer = PptpFramer()
    framer.feed(STREAM[:100])
    assert framer.next_message() is None
    assert framer.pending == 100
    framer.feed(STREAM[100:156])
    assert framer.next_message() == STREAM_MSGS[0]
    assert framer.pending == 0


@given(st.lists(st.integers(1, len(STREAM)), max_size=20))
def test_any_split_gives_the_same_messages(cuts):
    framer = PptpFramer()
    out, last = [], 0
    for cut in sorted(set(cuts)) + [len(STREAM)]:
        framer.feed(STREAM[last:cut])
        last = cut
        out.extend(framer)
    assert out == STREAM_MSGS


ECHO = m.EchoRequest(identifier=9).encode()


@pytest.mark.parametrize("prefix,error", [
    (b"\x00\x0b", BadLength),                    # Length below 12: caught after 2 octets
    (b"\x02\x01", BadLength),                    # Length above the maximum (513)
    (b"\xff\xff", BadLength),
    (ECHO[:4] + b"\xde\xad\xbe\xef", BadMagicCookie),   # caught after 8 octets
    (ECHO[:2] + b"\x00\x02" + ECHO[4:12], BadMessageType),
    (ECHO[:8] + b"\x00\x63" + ECHO[10:12], UnknownControlMessageType),
    (b"\x00\x11" + ECHO[2:12], BadLength),       # 17 is not the size of Echo-Request
])
def test_errors_are_detected_early_and_break_the_framer(prefix, error):
    framer = PptpFramer()
    framer.feed(prefix)
    with pytest.raises(error):
        framer.next_message()
    assert framer.broken
    with pytest.raises(FramerBroken):
        framer.next_message()
    with pytest.raises(FramerBroken):
        framer.feed(ECHO)


def test_good_message_then_garbage():
    framer = PptpFramer()
    framer.feed(ECHO + b"\x00\x10\x00\x01GARBAGE!")
    it = iter(framer)
    assert next(it) == m.EchoRequest(identifier=9)
    with pytest.raises(BadMagicCookie):
        next(it)


def test_buffer_is_bounded():
    framer = PptpFramer(max_buffer=1024)
    with pytest.raises(BadLength):
        framer.feed(ECHO * 100)
    assert framer.broken


def test_max_length_is_settable():
    framer = PptpFramer(max_length=100)
    framer.feed(STREAM_MSGS[0].encode()[:2])      # Length 156 > 100
    with pytest.raises(BadLength):
        framer.next_message()
