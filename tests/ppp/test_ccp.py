"""CCP (RFC 1962) with the MPPE option (RFC 3078 §2): key lengths, stateless, failures,
Reset-Request/Ack."""
from __future__ import annotations

import random

import pytest

from support.ppp_pair import codes, pump
from fastpptp.ppp.ccp import (CCP, MPPE_C, MPPE_H, MPPE_L, MPPE_M, MPPE_S, CcpConfig,
                              CcpResult, MppeFailed, ResetAcked, ResetRequested,
                              describe_mppe, mppe_option)
from fastpptp.ppp.constants import Code, Protocol
from fastpptp.ppp.fsm import State, ThisLayerUp
from fastpptp.ppp.packet import Option, Packet, encode_options


def mk(seed=1, **kw) -> CCP:
    return CCP(CcpConfig(**kw), random.Random(seed))


def start(p) -> Packet:
    p.open(0.0)
    p.up(0.0)
    return Packet.decode(p.frames_to_send()[0][1])


def pair(akw=None, bkw=None):
    a, b = mk(1, **(akw or {})), mk(2, **(bkw or {}))
    for p in (a, b):
        p.open(0.0)
        p.up(0.0)
    rounds = pump(a, b)
    return a, b, rounds


def up_result(p):
    return next((e.result for e in p.events() if isinstance(e, ThisLayerUp)), None)


def reply_to(p, *opts, ident=0x31) -> Packet:
    p.receive(Packet(Code.CONFIGURE_REQUEST, ident, encode_options(opts)).encode(), 1.0)
    (out,) = p.frames_to_send()
    assert out[0] == Protocol.CCP
    return Packet.decode(out[1])


def test_bit_layout_matches_pppd_and_rfc3078():
    assert describe_mppe(MPPE_H | MPPE_S) == "<mppe +H -M +S -L -D -C>"
    assert mppe_option(MPPE_H | MPPE_S).encode() == bytes.fromhex("120601000040")
    assert (MPPE_M, MPPE_L, MPPE_C) == (0x80, 0x20, 0x01)


def test_pair_default_is_128_stateless_in_one_round_trip():
    a, b, rounds = pair()
    assert rounds <= 2 and a.state is b.state is State.Opened
    assert up_result(a) == up_result(b) == CcpResult(128, True)


def test_pair_settles_on_common_key_length():
    a, b, _ = pair({"mppe_bits": (128, 40)}, {"mppe_bits": (40,)})
    assert a.state is b.state is State.Opened
    assert up_result(a) == up_result(b) == CcpResult(40, True)


def test_several_lengths_nakked_to_strongest_and_stateful_to_stateless():
    p = mk(mppe_bits=(128, 40))
    start(p)
    nak = reply_to(p, mppe_option(MPPE_H | MPPE_S | MPPE_L))
    assert nak.code == Code.CONFIGURE_NAK and nak.options() == [mppe_option(MPPE_H | MPPE_S)]
    nak = reply_to(p, mppe_option(MPPE_S | MPPE_C), ident=2)     # stateful + MPPC
    assert nak.options() == [mppe_option(MPPE_H | MPPE_S)]
    nak = reply_to(p, mppe_option(MPPE_H | MPPE_M), ident=3)     # 56-bit not allowed
    assert nak.options() == [mppe_option(MPPE_H | MPPE_S)]
    assert reply_to(p, mppe_option(MPPE_H | MPPE_S), ident=4).code == Code.CONFIGURE_ACK


def test_stateful_accepted_when_allowed():
    p = mk(mppe_stateful=True)
    req = start(p)
    assert reply_to(p, mppe_option(MPPE_S)).code == Code.CONFIGURE_ACK
    p.receive(Packet(Code.CONFIGURE_NAK, req.identifier,
                     mppe_option(MPPE_S).encode()).encode(), 1.0)
    again = Packet.decode(p.frames_to_send()[0][1])
    assert again.options() == [mppe_option(MPPE_S)]
    p.receive(Packet(Code.CONFIGURE_ACK, again.identifier, again.data).encode(), 1.0)
    assert p.state is State.Opened and up_result(p) == CcpResult(128, False, False)


def test_peer_demanding_stateful_fails_when_not_allowed():
    p = mk()
    req = start(p)
    p.receive(Packet(Code.CONFIGURE_NAK, req.identifier,
                     mppe_option(MPPE_S).encode()).encode(), 1.0)
    ev = p.events()
    assert any(isinstance(e, MppeFailed) and "stateful" in e.reason for e in ev)
    assert p.state is State.Closing
    assert codes(p.frames_to_send()) == [Code.TERMINATE_REQUEST]


@pytest.mark.parametrize("opt", [Option(26, b"\x78\x00"), Option(21, b"\x2f"),
                                 Option(1, b""), Option(2, b""), Option(18, b"\x00\x00\x40")])
def test_other_compressors_and_malformed_mppe_rejected(opt):
    p = mk()
    start(p)
    rej = reply_to(p, opt, mppe_option(MPPE_H | MPPE_S))
    assert rej.code == Code.CONFIGURE_REJECT and rej.options() == [opt]


def test_peer_rejecting_mppe_is_fatal_when_required():
    p = mk()
    req = start(p)
    p.receive(Packet(Code.CONFIGURE_REJECT, req.identifier, req.data).encode(), 1.0)
    ev = p.events()
    assert [e for e in ev if isinstance(e, MppeFailed)] == \
        [MppeFailed("MPPE required but the peer rejected it")]
    assert p.state is State.Closing


def test_no_common_key_length_is_fatal():
    p = mk(mppe_bits=(128,))
    req = start(p)
    p.receive(Packet(Code.CONFIGURE_NAK, req.identifier,
                     mppe_option(MPPE_H | MPPE_L).encode()).encode(), 1.0)
    assert any(isinstance(e, MppeFailed) for e in p.events())


def test_peer_without_mppe_is_asked_then_failed_after_max_failure():
    p = mk()
    req = start(p)
    p.receive(Packet(Code.CONFIGURE_ACK, req.identifier, req.data).encode(), 1.0)
    p.frames_to_send()
    answers = []
    for i in range(6):
        p.receive(Packet(Code.CONFIGURE_REQUEST, i, b"").encode(), 1.0)
        answers.append(codes(p.frames_to_send()))
    assert answers[:5] == [[Code.CONFIGURE_NAK]] * 5
    assert answers[5] == [Code.CONFIGURE_ACK, Code.TERMINATE_REQUEST]
    assert any(isinstance(e, MppeFailed) for e in p.events())
    assert p.state is State.Closing


def test_not_required_and_rejected_opens_without_mppe():
    a, b, _ = pair({"mppe_required": False}, {"mppe_bits": (), "mppe_required": False})
    assert a.state is b.state is State.Opened
    assert up_result(a) == CcpResult(0, True)
    assert not any(isinstance(e, MppeFailed) for e in a.events())


def test_ccp_protocol_rejected_or_timing_out_reports_mppe_failure():
    p = mk()
    start(p)
    p.protocol_rejected(1.0)
    assert p.state is State.Stopped
    assert any(isinstance(e, MppeFailed) for e in p.events())
    q = mk()
    start(q)
    for _ in range(12):
        t = q.get_timer()
        if t is None:
            break
        q.handle_timer(t)
    assert q.state is State.Stopped and any(isinstance(e, MppeFailed) for e in q.events())


def test_administrative_close_is_not_an_mppe_failure():
    a, b, _ = pair()
    a.close(1.0, "User request")
    pump(a, b, 1.0)
    a.down(2.0)
    assert not any(isinstance(e, MppeFailed) for e in a.events())


def test_peer_terminating_ccp_with_required_mppe_is_fatal():
    a, b, _ = pair()
    a.events()
    b.close(1.0, "bye")
    pump(a, b, 1.0)
    assert any(isinstance(e, MppeFailed) for e in a.events())


def test_reset_request_and_ack():
    a, b, _ = pair()
    a.events(), b.events()
    a.send_reset_request(3.0)
    (out,) = a.frames_to_send()
    req = Packet.decode(out[1])
    assert out[0] == Protocol.CCP and req.code == Code.RESET_REQUEST
    b.receive(out[1], 3.0)
    assert b.events() == [ResetRequested(req.identifier)]
    (ack,) = b.frames_to_send()
    assert Packet.decode(ack[1]) == Packet(Code.RESET_ACK, req.identifier, b"")
    a.receive(ack[1], 3.1)
    assert a.events() == [ResetAcked(req.identifier)]
    a.receive(ack[1], 3.2)                              # duplicate: no second event
    assert a.events() == []


def test_reset_request_outside_opened_is_not_sent_or_answered():
    p = mk()
    start(p)
    p.send_reset_request(1.0)
    assert p.frames_to_send() == []
    p.receive(Packet(Code.RESET_REQUEST, 1, b"").encode(), 1.0)
    assert p.frames_to_send() == [] and p.counters["rx_wrong_state"] == 1
    assert not any(isinstance(e, ResetRequested) for e in p.events())


def test_config_validates_key_lengths():
    with pytest.raises(ValueError):
        CcpConfig(mppe_bits=(64,))


@pytest.mark.parametrize("bits", [MPPE_H | MPPE_S | MPPE_L | MPPE_C, MPPE_S | MPPE_L,
                                  MPPE_H | MPPE_S | MPPE_L | MPPE_M])
def test_windows_like_offer_is_nakked_to_128_stateless_and_converges(bits):
    """Windows offers several key lengths (and MPPC); we Nak to <mppe +H +S>, it complies."""
    p = mk()
    ours = start(p)
    nak = reply_to(p, mppe_option(bits), ident=0)
    assert nak.code == Code.CONFIGURE_NAK and nak.options() == [mppe_option(MPPE_H | MPPE_S)]
    assert reply_to(p, *nak.options(), ident=1).code == Code.CONFIGURE_ACK
    p.receive(Packet(Code.CONFIGURE_ACK, ours.identifier, ours.data).encode(), 1.0)
    assert up_result(p) == CcpResult(128, True)


def test_unanswered_reset_request_is_resent_with_same_identifier():
    a, b, _ = pair()
    a.send_reset_request(5.0)
    first = a.frames_to_send()
    a.send_reset_request(5.1)                       # one outstanding at a time
    assert a.frames_to_send() == [] and a.get_timer() == pytest.approx(6.0)
    a.handle_timer(6.0)
    assert a.frames_to_send() == first
    b.receive(first[0][1], 6.0)
    a.receive(b.frames_to_send()[0][1], 6.1)
    assert a.get_timer() is None
    a.send_reset_request(7.0)
    assert codes(a.frames_to_send()) == [Code.RESET_REQUEST]
    for t in range(8, 30):
        a.handle_timer(float(t))
    resent = codes(a.frames_to_send())
    assert resent == [Code.RESET_REQUEST] * 9 and a.get_timer() is None   # Max-Configure


# ---- prefer-mppe-stateful: requesting stateful mode, per-direction modes --------------------

def test_prefer_stateful_requests_stateful_both_ways_with_an_allowing_peer():
    """Our request goes without H; the peer (like pppd with mppe-stateful) takes our Nak
    towards stateful for its own request, so both directions run stateful."""
    a, b, _ = pair({"mppe_prefer_stateful": True}, {"mppe_stateful": True})
    assert a.state is b.state is State.Opened
    assert up_result(a) == up_result(b) == CcpResult(128, False, False)


def test_prefer_stateful_first_request_and_nak_then_ack_of_a_repeated_stateless_request():
    p = mk(mppe_prefer_stateful=True)
    ours = start(p)
    assert ours.options() == [mppe_option(MPPE_S)]                   # H clear: stateful
    nak = reply_to(p, mppe_option(MPPE_H | MPPE_S))
    assert nak.code == Code.CONFIGURE_NAK and nak.options() == [mppe_option(MPPE_S)]
    # a peer that wants to receive stateless after all says so again: we agree
    assert reply_to(p, mppe_option(MPPE_H | MPPE_S), ident=2).code == Code.CONFIGURE_ACK
    p.receive(Packet(Code.CONFIGURE_ACK, ours.identifier, ours.data).encode(), 1.0)
    # mixed modes: we send stateless (its request), we receive stateful (ours)
    r = up_result(p)
    assert p.state is State.Opened and r == CcpResult(128, True, False)
    assert r.tx_stateless and r.rx_stateful and not r.tx_stateful


def test_prefer_stateful_falls_back_to_stateless_when_the_peer_rejects_it():
    """pppd without mppe-stateful Configure-Rejects the whole MPPE option of a stateful
    request (ccp.c ccp_reqci): ask again stateless instead of giving up MPPE."""
    p = mk(mppe_prefer_stateful=True)
    ours = start(p)
    p.receive(Packet(Code.CONFIGURE_REJECT, ours.identifier, ours.data).encode(), 1.0)
    again = Packet.decode(p.frames_to_send()[0][1])
    assert again.code == Code.CONFIGURE_REQUEST and again.options() == [mppe_option(MPPE_H | MPPE_S)]
    assert p.counters["mppe_stateful_rejected"] == 1
    assert not any(isinstance(e, MppeFailed) for e in p.events())
    # it refused stateful: we no longer suggest it for the peer's direction either
    assert reply_to(p, mppe_option(MPPE_H | MPPE_S), ident=7).code == Code.CONFIGURE_ACK
    p.receive(Packet(Code.CONFIGURE_ACK, again.identifier, again.data).encode(), 1.0)
    assert up_result(p) == CcpResult(128, True, True)
    # a second Reject (of the stateless request) is a real refusal of MPPE
    q = mk(mppe_prefer_stateful=True)
    req = start(q)
    q.receive(Packet(Code.CONFIGURE_REJECT, req.identifier, req.data).encode(), 1.0)
    req = Packet.decode(q.frames_to_send()[0][1])
    q.receive(Packet(Code.CONFIGURE_REJECT, req.identifier, req.data).encode(), 1.0)
    assert any(isinstance(e, MppeFailed) for e in q.events())


def test_prefer_stateful_against_a_refusing_peer_fails_like_pppd():
    """Our CCP without mppe-stateful, like pppd, will not take a Nak towards stateful."""
    a, b, _ = pair({"mppe_prefer_stateful": True}, {})
    assert any(isinstance(e, MppeFailed) for e in b.events())


def test_key_length_must_match_both_ways_though_modes_may_differ():
    p = mk(mppe_bits=(128, 40), mppe_stateful=True)
    ours = start(p)
    assert reply_to(p, mppe_option(MPPE_H | MPPE_L)).code == Code.CONFIGURE_ACK   # we send 40
    p.receive(Packet(Code.CONFIGURE_NAK, ours.identifier,
                     mppe_option(MPPE_S).encode()).encode(), 1.0)                    # stateful 128
    again = Packet.decode(p.frames_to_send()[0][1])
    p.receive(Packet(Code.CONFIGURE_ACK, again.identifier, again.data).encode(), 1.0)
    assert any(isinstance(e, MppeFailed) and "differs by direction" in e.reason
               for e in p.events())
