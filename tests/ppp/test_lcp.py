"""LCP options, authentication-method negotiation, loopback, keepalive and LCP-only codes."""
from __future__ import annotations

import random
import struct

import pytest

from support.ppp_pair import codes, pump
from fastpptp.ppp.constants import AuthMethod, Code, Protocol
from fastpptp.ppp.fsm import State, ThisLayerDown, ThisLayerUp
from fastpptp.ppp.lcp import (LCP, EchoFailure, IdentificationReceived, LcpConfig,
                              LoopbackDetected, ProtocolRejected, TimeRemainingReceived,
                              decode_auth, encode_auth)
from fastpptp.ppp.packet import Option, Packet, encode_options

V2, V1, MD5, PAP, EAP = (AuthMethod.MSCHAP_V2, AuthMethod.MSCHAP_V1, AuthMethod.CHAP_MD5,
                         AuthMethod.PAP, AuthMethod.EAP)


def mk(seed=1, **kw) -> LCP:
    kw.setdefault("echo_interval", 0)
    return LCP(LcpConfig(**kw), random.Random(seed))


def start(*ps):
    for p in ps:
        p.open(0.0)
        p.up(0.0)


def result(p):
    return next(e.result for e in p.events() if isinstance(e, ThisLayerUp))


def confreq(*opts, ident=0x20) -> bytes:
    return Packet(Code.CONFIGURE_REQUEST, ident, encode_options(opts)).encode()


def reply_to(p, raw) -> Packet:
    p.receive(raw, 1.0)
    (out,) = p.frames_to_send()
    return Packet.decode(out[1])


def opened(server_kw=None, client_kw=None):
    s = mk(1, **{"auth_require": (V2,), **(server_kw or {})})
    c = mk(2, **(client_kw or {}))
    start(s, c)
    rounds = pump(s, c)
    assert s.state is c.state is State.Opened
    return s, c, rounds


def test_server_client_pair_converge_and_results_mirror():
    s, c, rounds = opened()
    assert rounds <= 2
    rs, rc = result(s), result(c)
    assert rs.authenticate_peer is V2 and rc.authenticate_self is V2
    assert rs.authenticate_self is None and rc.authenticate_peer is None
    assert rs.local_mru == rc.peer_mru == 1400 and rc.local_mru == rs.peer_mru == 1400
    assert rs.local_magic == rc.peer_magic != 0 and rc.local_magic == rs.peer_magic != 0
    assert rs.tx_pfc and rs.tx_acfc and rs.rx_pfc and rs.rx_acfc


def test_auth_codec():
    assert encode_auth(V2) == bytes.fromhex("c22381")
    assert encode_auth(MD5) == bytes.fromhex("c22305")
    assert encode_auth(PAP) == bytes.fromhex("c023")
    for m in AuthMethod:
        assert decode_auth(encode_auth(m)) is m
    assert decode_auth(b"\xc2\x23\x99") is None and decode_auth(b"\xc2") is None


def test_eap_request_from_windows_rras_is_nakked_to_mschapv2():
    c = mk(auth_accept=(V2, V1))
    start(c)
    c.frames_to_send()
    nak = reply_to(c, confreq(Option(3, b"\xc2\x27"), Option(5, b"\x01\x02\x03\x04")))
    assert nak.code == Code.CONFIGURE_NAK and nak.data == bytes.fromhex("0305c22381")


def test_peer_refusing_everything_rejects_auth():
    c = mk(auth_accept=())
    start(c)
    c.frames_to_send()
    rej = reply_to(c, confreq(Option(3, b"\xc2\x23\x81")))
    assert rej.code == Code.CONFIGURE_REJECT and rej.data == bytes.fromhex("0305c22381")


def test_noauth_server_requests_no_auth():
    s = mk(auth_require=())
    start(s)
    req = Packet.decode(s.frames_to_send()[0][1])
    assert 3 not in [o.type for o in req.options()]


def test_authenticator_takes_allowed_suggestion():
    s, c, _ = opened({"auth_require": (V2, V1, MD5)}, {"auth_accept": (MD5,)})
    assert result(s).authenticate_peer is MD5 and result(c).authenticate_self is MD5


def test_authenticator_moves_to_next_method_when_suggestion_not_allowed():
    s, c, _ = opened({"auth_require": (V2, V1)}, {"auth_accept": (PAP, V1)})
    assert result(s).authenticate_peer is V1


def test_no_common_auth_method_closes_with_reason():
    s = mk(1, auth_require=(V2,))
    c = mk(2, auth_accept=(PAP,))
    start(s, c)
    pump(s, c)
    assert s.state in (State.Closing, State.Closed)
    assert "refused to authenticate" in s._term_reason.decode()
    assert not any(isinstance(e, ThisLayerUp) for e in s.events())


def test_auth_option_rejected_closes():
    s = mk(auth_require=(V2,))
    start(s)
    req = Packet.decode(s.frames_to_send()[0][1])
    auth = [o for o in req.options() if o.type == 3]
    s.receive(Packet(Code.CONFIGURE_REJECT, req.identifier, encode_options(auth)).encode(), 1)
    assert s.state is State.Closing
    assert codes(s.frames_to_send()) == [Code.TERMINATE_REQUEST]


def test_small_mru_is_nakked_to_128_and_our_mru_follows_a_nak():
    p = mk()
    start(p)
    req = Packet.decode(p.frames_to_send()[0][1])
    nak = reply_to(p, confreq(Option(1, struct.pack("!H", 64))))
    assert nak.code == Code.CONFIGURE_NAK and nak.data == bytes.fromhex("01040080")
    p.receive(Packet(Code.CONFIGURE_NAK, req.identifier,
                     encode_options([Option(1, struct.pack("!H", 1300))])).encode(), 1)
    (new,) = p.frames_to_send()
    assert Option(1, struct.pack("!H", 1300)) in Packet.decode(new[1]).options()


@pytest.mark.parametrize("otype,value", [(13, b"\x06"), (17, b"\x05\xdc"),
                                         (19, b"\x01abcd"), (23, b"\x00\x01\x02"),
                                         (4, b"\xc0\x25\x00\x00\x00\x0a"), (99, b"")])
def test_unsupported_options_are_rejected_alone(otype, value):
    p = mk()
    start(p)
    p.frames_to_send()
    opts = [Option(2, bytes(4)), Option(otype, value), Option(7)]
    rej = reply_to(p, confreq(*opts))
    assert rej.code == Code.CONFIGURE_REJECT and rej.options() == [Option(otype, value)]


def test_accm_pfc_acfc_acked():
    p = mk()
    start(p)
    p.frames_to_send()
    raw = confreq(Option(2, bytes(4)), Option(7), Option(8))
    ack = reply_to(p, raw)
    assert ack.code == Code.CONFIGURE_ACK and ack.data == Packet.decode(raw).data


def test_pfc_refused_when_disabled():
    p = mk(pfc=False, acfc=False)
    start(p)
    req = Packet.decode(p.frames_to_send()[0][1])
    assert {o.type for o in req.options()} == {1, 5}
    rej = reply_to(p, confreq(Option(7), Option(8)))
    assert rej.code == Code.CONFIGURE_REJECT


def test_zero_magic_is_nakked():
    p = mk()
    start(p)
    p.frames_to_send()
    nak = reply_to(p, confreq(Option(5, bytes(4))))
    (o,) = nak.options()
    assert nak.code == Code.CONFIGURE_NAK and o.type == 5 and o.value != bytes(4)


def test_looped_back_link_is_detected():
    p = mk(max_loopback=3)
    start(p)
    events = []
    for _ in range(20):                      # a looped-back line: everything comes back
        out = p.frames_to_send()
        if not out:
            break
        for _, info in out:
            p.receive(info, 1.0)
        events += p.events()
    assert any(isinstance(e, LoopbackDetected) for e in events)
    assert p.state in (State.Closing, State.Closed, State.Stopping, State.Stopped)
    assert p._loop_count >= 3


def test_magic_collision_picks_new_magic():
    p = mk(magic_number=0x01020304)
    start(p)
    p.frames_to_send()
    nak = reply_to(p, confreq(Option(5, bytes.fromhex("01020304"))))
    assert nak.code == Code.CONFIGURE_NAK and nak.options()[0].value != bytes.fromhex("01020304")
    assert p._want_magic != 0x01020304 and p._loop_count == 1


def test_echo_reply_carries_our_magic_and_respects_peer_mru():
    s, c, _ = opened(client_kw={"mru": 200})
    res = result(s)
    magic = res.local_magic
    s.receive(Packet(Code.ECHO_REQUEST, 77, struct.pack("!I", res.peer_magic)
                     + bytes(500)).encode(), 2.0)
    (reply,) = s.frames_to_send()
    p = Packet.decode(reply[1])
    assert p.code == Code.ECHO_REPLY and p.identifier == 77
    assert len(reply[1]) == 200 and p.data[:4] == struct.pack("!I", magic)


def test_own_echo_request_is_loopback_and_not_answered():
    s, c, _ = opened()
    s.events()
    own = struct.pack("!I", s._local_magic())
    s.receive(Packet(Code.ECHO_REQUEST, 5, own).encode(), 2.0)
    assert s.frames_to_send() == []
    assert isinstance(s.next_event(), LoopbackDetected)


def test_echo_outside_opened_is_ignored_and_discard_request_silent():
    p = mk()
    start(p)
    p.frames_to_send()
    p.receive(Packet(Code.ECHO_REQUEST, 5, bytes(4)).encode(), 1.0)
    assert p.frames_to_send() == []
    s, c, _ = opened()
    s.receive(Packet(Code.DISCARD_REQUEST, 5, bytes(8)).encode(), 1.0)
    assert s.frames_to_send() == []


def test_keepalive_echo_failure_closes_link():
    s, c, _ = opened({"echo_interval": 10.0, "echo_failure": 3},
                     {"echo_interval": 0})
    # pppd-like: the first Echo-Request went out right at Opened and was answered
    assert s.counters["tx_packets"] == 3 and c.counters["tx_packets"] == 3
    assert s._echo_pending == 0 and s.get_timer() == pytest.approx(10.0)
    now, sent = 0.0, 0
    events = []
    for _ in range(10):                            # the peer goes silent
        now = s.get_timer()
        s.handle_timer(now)
        out = codes(s.frames_to_send())
        sent += out.count(Code.ECHO_REQUEST)
        events += s.events()
        if s.state is not State.Opened:
            assert out == [Code.TERMINATE_REQUEST]
            break
    assert sent == 3 and now == pytest.approx(40.0)
    assert EchoFailure(3) in events and any(isinstance(e, ThisLayerDown) for e in events)


def test_code_reject_of_echo_disables_keepalive():
    s, c, _ = opened({"echo_interval": 10.0})
    s.frames_to_send()
    s.receive(Packet(Code.CODE_REJECT, 1, bytes([9, 1, 0, 8, 0, 0, 0, 0])).encode(), 1.0)
    assert s.state is State.Opened and s.get_timer() is None


def test_protocol_reject_sent_only_when_opened_and_truncated():
    p = mk()
    start(p)
    p.frames_to_send()
    p.protocol_reject(0x8057, b"\x01\x01\x00\x04", 1.0)
    assert p.frames_to_send() == []
    s, c, _ = opened(client_kw={"mru": 300})
    s.protocol_reject(0x8057, bytes(1000), 2.0)
    (out,) = s.frames_to_send()
    pkt = Packet.decode(out[1])
    assert out[0] == Protocol.LCP and pkt.code == Code.PROTOCOL_REJECT
    assert pkt.data[:2] == b"\x80\x57" and len(out[1]) == 300


def test_protocol_reject_received():
    s, c, _ = opened()
    s.events()
    s.receive(Packet(Code.PROTOCOL_REJECT, 9, b"\x80\x57\x01\x01\x00\x04").encode(), 1.0)
    assert s.state is State.Opened and s.events() == [ProtocolRejected(0x8057)]
    s.receive(Packet(Code.PROTOCOL_REJECT, 10, b"\xc0\x21").encode(), 1.0)
    assert s.state is State.Stopping


def test_identification_and_time_remaining_reported_even_before_opened():
    p = mk()
    start(p)
    p.frames_to_send()
    p.events()
    p.receive(Packet(Code.IDENTIFICATION, 3, b"\x00\x00\x00\x00MSRASV5.20").encode(), 1.0)
    p.receive(Packet(Code.TIME_REMAINING, 4, b"\x00\x00\x00\x01\x00\x00\x00\x3cbye").encode(),
              1.0)
    assert p.events() == [IdentificationReceived(0, b"MSRASV5.20"),
                          TimeRemainingReceived(1, 60, b"bye")]
    assert p.frames_to_send() == [] and p.state is State.ReqSent


def test_windows_like_client_request_converges_after_one_reject():
    """Synthetic Windows PPTP client ConfReq: MRU 1400, magic, PFC, ACFC, Callback (CBCP),
    multilink MRRU and Endpoint-Discriminator -- the last three are rejected together."""
    s = mk(auth_require=(V2,))
    start(s)
    ours = Packet.decode(s.frames_to_send()[0][1])
    win = [Option(1, b"\x05\x78"), Option(5, bytes.fromhex("3a1f7c2e")), Option(7), Option(8),
           Option(13, b"\x06"), Option(17, b"\x06\x4e"),
           Option(19, bytes.fromhex("0170a8e3d5a5a94e1ab7fd6f8e5b7a3c5d00000000"))]
    rej = reply_to(s, confreq(*win, ident=0))
    assert rej.code == Code.CONFIGURE_REJECT and rej.options() == win[4:]
    ack = reply_to(s, confreq(*win[:4], ident=1))
    assert ack.code == Code.CONFIGURE_ACK
    s.receive(Packet(Code.CONFIGURE_ACK, ours.identifier, ours.data).encode(), 1.0)
    res = result(s)
    assert s.state is State.Opened and res.peer_mru == 1400 and res.peer_magic == 0x3A1F7C2E
