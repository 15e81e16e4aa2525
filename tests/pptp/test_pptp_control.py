"""Sans-I/O PPTP control connection: PNS and PAC back to back through a fake link and clock."""
from __future__ import annotations

import random

import pytest

from fastpptp.pptp import messages as m
from fastpptp.pptp.control import (CallCleared, CallEstablished, CallIdAllocator,
                                   CallIdsExhausted, CallRequested, CallState, ControlClosed,
                                   ControlConfig, ControlConnected, ControlConnection,
                                   EchoTimeout, LinkInfo, Role, State, WanError)
from fastpptp.errors import LocalProtocolError
from fastpptp.pptp.framer import PptpFramer


class Pair:
    """A PNS and a PAC wired back to back; counts round trips."""

    def __init__(self, pns_cfg=None, pac_cfg=None, now=100.0, accept=True):
        self.now = now
        self.pns = ControlConnection(Role.PNS, pns_cfg or ControlConfig(host_name="pns"), now,
                                     random.Random(1))
        self.pac = ControlConnection(Role.PAC, pac_cfg or ControlConfig(host_name="pac"), now,
                                     random.Random(2))
        self.ev = {"pns": [], "pac": []}
        self.wire = {"pns": [], "pac": []}      # decoded messages each side sent
        self.accept = accept
        self.flights = 0

    def _collect(self, name, conn):
        while (ev := conn.next_event()) is not None:
            self.ev[name].append(ev)
            if name == "pac" and isinstance(ev, CallRequested) and self.accept:
                conn.accept_call(ev, now=self.now)

    def run(self, max_flights=20):
        for _ in range(max_flights):
            self._collect("pns", self.pns)
            self._collect("pac", self.pac)
            a, b = self.pns.data_to_send(), self.pac.data_to_send()
            if not a and not b:
                return
            self.flights += 1
            for src, dst, data in (("pns", self.pac, a), ("pac", self.pns, b)):
                if data:
                    f = PptpFramer()
                    f.feed(data)
                    self.wire[src].extend(f)
                    dst.receive_data(data, self.now)
        raise AssertionError("link did not go quiet")

    def advance(self, seconds):
        self.now += seconds
        for conn in (self.pns, self.pac):
            t = conn.get_timer()
            if t is not None and t <= self.now:
                conn.handle_timer(self.now)
        self.run()

    def of(self, name, cls):
        return [e for e in self.ev[name] if isinstance(e, cls)]

    def established(self):
        self.pns.start(self.now)
        self.run()
        call_id = self.pns.place_call(self.now)
        self.run()
        return call_id


def test_call_established_in_two_round_trips():
    p = Pair()
    p.pns.start(p.now)
    p.run()
    assert p.flights == 2                       # SCCRQ, SCCRP
    (up,) = p.of("pns", ControlConnected)
    assert up.peer_host_name == b"pac" and up.protocol_version == 0x0100
    assert p.of("pac", ControlConnected)[0].peer_vendor == b"fastpptp"
    call_id = p.pns.place_call(p.now)
    p.run()
    assert p.flights == 4                       # OCRQ, OCRP
    (pns_call,) = p.of("pns", CallEstablished)
    (pac_call,) = p.of("pac", CallEstablished)
    assert pns_call.call_id == call_id == pac_call.peer_call_id
    assert pns_call.peer_call_id == pac_call.call_id
    assert pns_call.peer_rwin == pac_call.peer_rwin == 64
    assert pns_call.connect_speed == 10_000_000
    assert [type(x) for x in p.wire["pns"]] == [m.SCCRQ, m.OCRQ]
    assert [type(x) for x in p.wire["pac"]] == [m.SCCRP, m.OCRP]
    assert p.pns.state is p.pac.state is State.ESTABLISHED


def test_call_request_carries_the_ocrq_fields():
    p = Pair(accept=False)
    p.pns.start(p.now)
    p.run()
    p.pns.place_call(p.now, phone_number="555", recv_window=3, processing_delay=7,
                     minimum_bps=300, maximum_bps=9600)
    p.run()
    (req,) = p.of("pac", CallRequested)
    assert (req.peer_rwin, req.peer_ppd, req.minimum_bps, req.maximum_bps) == (3, 7, 300, 9600)
    assert req.phone_number == b"555" and req.bearer_type == m.BearerType.ANY
    call_id = p.pac.accept_call(req, 0x4242, now=p.now, recv_window=16)
    p.run()
    assert call_id == 0x4242
    (est,) = p.of("pns", CallEstablished)
    assert est.peer_call_id == 0x4242 and est.peer_rwin == 16
    with pytest.raises(LocalProtocolError):
        p.pac.accept_call(req, now=p.now)      # already answered


def test_several_calls_and_pns_clear():
    p = Pair()
    ids = [p.established()] + [p.pns.place_call(p.now) for _ in range(2)]
    p.run()
    assert len(set(ids)) == 3
    assert len(p.of("pns", CallEstablished)) == 3
    p.pns.clear_call(ids[1], "user hung up", now=p.now)
    p.run()
    (pac_cleared,) = p.of("pac", CallCleared)
    (pns_cleared,) = p.of("pns", CallCleared)
    assert pac_cleared.peer_call_id == ids[1] and pac_cleared.by_peer
    assert pns_cleared.call_id == ids[1] and pns_cleared.result == m.CallDisconnectResult.REQUEST
    assert set(p.pns.calls()) == {ids[0], ids[2]}
    assert isinstance(p.wire["pac"][-1], m.CDN)


def test_pac_clear_sends_cdn_with_statistics():
    p = Pair()
    call_id = p.established()
    pac_call = p.of("pac", CallEstablished)[0].call_id
    p.pac.clear_call(pac_call, "admin", now=p.now, stats=b"rx 10 tx 20")
    p.run()
    cdn = p.wire["pac"][-1]
    assert isinstance(cdn, m.CDN) and cdn.result_code == m.CallDisconnectResult.ADMIN_SHUTDOWN
    assert cdn.call_statistics == b"rx 10 tx 20"
    (cleared,) = p.of("pns", CallCleared)
    assert cleared.call_id == call_id and cleared.stats == b"rx 10 tx 20" and cleared.by_peer
    assert p.of("pac", CallCleared)[0].by_peer is False


def test_tcp_close_after_call_clear_request_ends_the_call():
    # pptpd answers Call-Clear-Request by closing TCP, without CDN
    p = Pair()
    call_id = p.established()
    p.pns.clear_call(call_id, now=p.now)
    p.pns.data_to_send()                       # the CCRQ went out; the PAC "closes TCP"
    p.pns.receive_data(b"", p.now + 0.1)
    evs = p.pns.events()
    assert isinstance(evs[0], CallCleared) and evs[0].call_id == call_id
    assert evs[0].result == m.CallDisconnectResult.REQUEST and evs[0].established
    assert "TCP closed after Call-Clear-Request" in evs[0].reason
    assert isinstance(evs[-1], ControlClosed) and evs[-1].by_peer
    assert p.pns.get_timer() is None


def test_stop_clears_calls_and_closes_both_sides():
    p = Pair()
    p.established()
    p.pns.stop("stopped by user", p.now)
    p.run()
    assert [type(x) for x in p.wire["pns"][-2:]] == [m.CCRQ, m.StopCCRQ]
    assert isinstance(p.wire["pac"][-1], m.StopCCRP)
    assert isinstance(p.ev["pns"][-1], ControlClosed) and not p.ev["pns"][-1].by_peer
    assert isinstance(p.ev["pac"][-1], ControlClosed) and p.ev["pac"][-1].by_peer
    assert len(p.of("pns", CallCleared)) == len(p.of("pac", CallCleared)) == 1
    assert p.pns.closed and p.pac.closed


def test_pac_stop_sends_cdn_then_stopccrq_like_pptpd():
    p = Pair()
    call_id = p.established()
    p.pac.stop(m.StopCtrlConnReason.STOP_LOCAL_SHUTDOWN, p.now)
    p.run()
    assert [type(x) for x in p.wire["pac"][-2:]] == [m.CDN, m.StopCCRQ]
    assert isinstance(p.wire["pns"][-1], m.StopCCRP)
    assert p.wire["pac"][-1].reason == m.StopCtrlConnReason.STOP_LOCAL_SHUTDOWN
    assert p.wire["pac"][-2].result_code == m.CallDisconnectResult.ADMIN_SHUTDOWN
    (cleared,) = p.of("pns", CallCleared)
    assert cleared.call_id == call_id
    assert p.pns.closed and p.pac.closed


def test_stop_reply_timeout():
    p = Pair()
    p.established()
    p.pns.stop("bye", p.now)
    p.pns.data_to_send()                       # lost: the PAC never answers
    assert p.pns.get_timer() == p.now + 10
    p.pns.handle_timer(p.now + 10)
    assert p.pns.events()[-1] == ControlClosed("timeout: no Stop-Control-Connection-Reply")


# --- timeouts -----------------------------------------------------------------------------

def test_pac_cuts_off_a_silent_peer():
    pac = ControlConnection(Role.PAC, ControlConfig(setup_timeout=15), 0.0, random.Random(0))
    assert pac.get_timer() == 15
    pac.handle_timer(14.9)
    assert pac.next_event() is None
    pac.handle_timer(15)
    ev = pac.next_event()
    assert isinstance(ev, ControlClosed) and "no Start-Control-Connection-Request" in ev.reason
    assert pac.get_timer() is None


def test_pns_gives_up_without_sccrp():
    pns = ControlConnection(Role.PNS, ControlConfig(), 0.0, random.Random(0))
    assert pns.get_timer() is None
    pns.start(1.0)
    assert pns.get_timer() == 31.0
    pns.handle_timer(31.0)
    assert "no Start-Control-Connection-Reply" in pns.next_event().reason


def test_peer_stopping_mid_message_is_cut_off():
    pac = ControlConnection(Role.PAC, ControlConfig(setup_timeout=20), 0.0, random.Random(0))
    sccrq = m.SCCRQ().encode()
    pac.receive_data(sccrq, 1.0)
    assert pac.state is State.ESTABLISHED
    pac.receive_data(m.EchoRequest(identifier=1).encode()[:5], 2.0)
    assert pac.get_timer() == 22.0
    pac.receive_data(b"\x01", 3.0)            # trickling does not extend the deadline
    assert pac.get_timer() == 22.0
    pac.handle_timer(22.0)
    evs = pac.events()
    assert isinstance(evs[-1], ControlClosed) and "middle of a control message" in evs[-1].reason


def test_timeouts_configured_off_never_fire():
    # setup_timeout / echo_timeout 0 turn those timers off; handle_timer used to compare the
    # clock with None (TypeError) for a stalled half message or an unanswered echo.
    pac = ControlConnection(Role.PAC, ControlConfig(setup_timeout=0, echo_interval=5,
                                                    echo_timeout=0), 0.0, random.Random(0))
    pac.receive_data(m.SCCRQ().encode(), 1.0)
    pac.data_to_send()
    pac.handle_timer(6.0)                      # idle: sends the Echo-Request
    assert isinstance(m.decode(pac.data_to_send()), m.EchoRequest)
    pac.receive_data(m.EchoRequest(identifier=1).encode()[:5], 7.0)
    pac.handle_timer(1000.0)                   # half a message and no Echo-Reply, for ever
    assert pac.state is State.ESTABLISHED and pac.get_timer() is None
    assert not [e for e in pac.events() if isinstance(e, ControlClosed)]


def test_no_ocrp_clears_the_call():
    p = Pair(accept=False)
    p.pns.start(p.now)
    p.run()
    call_id = p.pns.place_call(p.now)
    p.pns.data_to_send()                       # OCRQ lost
    p.now += 30
    p.pns.handle_timer(p.now)
    (cleared,) = [e for e in p.pns.events() if isinstance(e, CallCleared)]
    assert cleared.call_id == call_id and not cleared.established
    assert cleared.result == m.OutgoingCallResult.TIME_OUT
    assert m.decode(p.pns.data_to_send()) == m.CCRQ(call_id=call_id)


def test_owner_that_never_answers_a_call_request():
    p = Pair(accept=False)
    p.pns.start(p.now)
    p.run()
    p.pns.place_call(p.now)
    p.run()
    (req,) = p.of("pac", CallRequested)
    p.advance(30)
    (cleared,) = p.of("pns", CallCleared)
    assert cleared.result == m.OutgoingCallResult.TIME_OUT and not cleared.established
    # answering late is a race, not a bug: no exception, no bytes, the call is reported dead
    assert p.pac.accept_call(req, 0x99, now=p.now) == 0x99
    assert p.pac.data_to_send() == b""
    late = p.pac.next_event()
    assert isinstance(late, CallCleared) and late.call_id == 0x99 and not late.established
    with pytest.raises(LocalProtocolError):
        p.pac.accept_call(req, now=p.now)      # but answering twice is our bug


def test_clear_request_before_the_owner_accepts():
    pac = pac_up()
    pac.receive_data(m.OCRQ(call_id=5).encode() + m.CCRQ(call_id=5).encode(), 1.0)
    (req,) = pac.events()
    assert pac.accept_call(req, 77, now=1.0) == 77
    out = PptpFramer()
    out.feed(pac.data_to_send())
    assert [type(x) for x in out] == [m.OCRP, m.CDN]
    est, cleared = pac.events()
    assert isinstance(est, CallEstablished) and isinstance(cleared, CallCleared)
    assert cleared.call_id == 77 and cleared.by_peer and pac.calls() == {}


def test_accept_after_the_connection_closed_in_the_same_read():
    pac = pac_up()
    pac.receive_data(m.OCRQ(call_id=5).encode() + b"\xff" * 16, 1.0)   # then garbage
    req, closed = pac.events()
    assert isinstance(req, CallRequested) and isinstance(closed, ControlClosed)
    pac.accept_call(req, 12, now=1.0)
    assert isinstance(pac.next_event(), CallCleared)
    assert pac.data_to_send() == b""


def test_no_cdn_after_clear_request_times_out():
    p = Pair()
    call_id = p.established()
    p.pns.clear_call(call_id, now=p.now)
    p.pns.data_to_send()
    p.pns.handle_timer(p.now + 10)
    (cleared,) = [e for e in p.pns.events() if isinstance(e, CallCleared)]
    assert "no Call-Disconnect-Notify" in cleared.reason
    assert p.pns.state is State.ESTABLISHED


# --- keepalive ----------------------------------------------------------------------------

def test_keepalive_echo_and_reply():
    p = Pair()
    p.established()
    assert p.pns.get_timer() == p.now + 60
    p.advance(60)                              # both idle 60 s: both send Echo-Request
    assert isinstance(p.wire["pns"][-1], (m.EchoRequest, m.EchoReply))
    assert any(isinstance(x, m.EchoRequest) for x in p.wire["pns"])
    assert any(isinstance(x, m.EchoReply) for x in p.wire["pac"])
    assert not p.of("pns", EchoTimeout)
    p.advance(59)
    assert p.pns.state is State.ESTABLISHED


def test_echo_timeout_closes():
    pns = ControlConnection(Role.PNS, ControlConfig(echo_interval=5, echo_timeout=3), 0.0,
                            random.Random(0))
    pns.start(0.0)
    pns.receive_data(m.SCCRP().encode(), 0.5)
    pns.data_to_send()
    assert pns.get_timer() == 5.5
    pns.handle_timer(5.5)
    echo = m.decode(pns.data_to_send())
    assert isinstance(echo, m.EchoRequest)
    assert pns.get_timer() == 8.5
    pns.receive_data(m.EchoReply(identifier=echo.identifier ^ 1).encode(), 6.0)  # wrong id
    pns.handle_timer(8.5)
    evs = pns.events()
    assert any(isinstance(e, EchoTimeout) for e in evs)
    assert isinstance(evs[-1], ControlClosed) and evs[-1].reason == "echo timeout"


def test_echo_reply_with_result_zero_counts():
    pns = ControlConnection(Role.PNS, ControlConfig(echo_interval=5, echo_timeout=3), 0.0,
                            random.Random(0))
    pns.start(0.0)
    pns.receive_data(m.SCCRP(result_code=0).encode(), 0.0)   # Windows/Android: 0 = success
    assert pns.state is State.ESTABLISHED
    pns.data_to_send()
    pns.handle_timer(5.0)
    echo = m.decode(pns.data_to_send())
    pns.receive_data(m.EchoReply(identifier=echo.identifier, result_code=0).encode(), 6.0)
    assert pns.get_timer() == 11.0
    pns.handle_timer(8.0)
    assert pns.state is State.ESTABLISHED


def test_keepalive_can_be_disabled():
    pns = ControlConnection(Role.PNS, ControlConfig(echo_interval=None), 0.0, random.Random(0))
    pns.start(0.0)
    pns.receive_data(m.SCCRP().encode(), 0.0)
    assert pns.get_timer() is None


def test_echo_request_answered():
    p = Pair()
    p.established()
    p.pns.receive_data(m.EchoRequest(identifier=0xCAFE).encode(), p.now)
    assert m.decode(p.pns.data_to_send()) == m.EchoReply(identifier=0xCAFE)


# --- wrong state, odd peers ---------------------------------------------------------------

def pac_up():
    pac = ControlConnection(Role.PAC, ControlConfig(), 0.0, random.Random(0))
    pac.receive_data(m.SCCRQ(host_name=b"").encode(), 0.0)   # empty host name is fine
    out = m.decode(pac.data_to_send())
    assert isinstance(out, m.SCCRP) and out.result_code == 1
    assert pac.next_event().peer_host_name == b""
    return pac


def test_ocrq_before_sccrq_gets_not_connected():
    pac = ControlConnection(Role.PAC, ControlConfig(), 0.0, random.Random(0))
    pac.receive_data(m.OCRQ(call_id=7).encode(), 0.0)
    reply = m.decode(pac.data_to_send())
    assert reply == m.OCRP(call_id=0, peer_call_id=7, result_code=2, error_code=1)
    assert pac.state is State.WAIT_CTL_REQUEST


def test_other_message_before_sccrq_closes():
    pac = ControlConnection(Role.PAC, ControlConfig(), 0.0, random.Random(0))
    pac.receive_data(m.CCRQ(call_id=7).encode(), 0.0)
    ev = pac.next_event()
    assert isinstance(ev, ControlClosed) and "unexpected CallClearRequest" in ev.reason


def test_bad_protocol_version_refused():
    pac = ControlConnection(Role.PAC, ControlConfig(), 0.0, random.Random(0))
    pac.receive_data(m.SCCRQ(protocol_version=0x0200).encode(), 0.0)
    reply = m.decode(pac.data_to_send())
    assert reply.result_code == m.StartCtrlConnResult.BAD_PROTOCOL_VERSION
    assert isinstance(pac.next_event(), ControlClosed)


def test_second_sccrq_gets_already_exists():
    pac = pac_up()
    pac.receive_data(m.SCCRQ().encode(), 1.0)
    reply = m.decode(pac.data_to_send())
    assert reply.result_code == m.StartCtrlConnResult.ALREADY_EXISTS
    assert pac.state is State.ESTABLISHED and pac.stats["wrong_state"] == 1


def test_sccrp_refused_closes_pns():
    pns = ControlConnection(Role.PNS, ControlConfig(), 0.0, random.Random(0))
    pns.start(0.0)
    pns.receive_data(m.SCCRP(result_code=4).encode(), 0.0)
    ev = pns.next_event()
    assert isinstance(ev, ControlClosed) and "result 4" in ev.reason


def test_incoming_call_request_refused():
    pac = pac_up()
    pac.receive_data(m.ICRQ(call_id=33, dialed_number=b"1").encode(), 1.0)
    assert m.decode(pac.data_to_send()) == m.ICRP(call_id=0, peer_call_id=33, result_code=3)
    pac.receive_data(m.ICCN(peer_call_id=33).encode(), 1.0)
    assert pac.next_event() is None and pac.state is State.ESTABLISHED


@pytest.mark.parametrize("msg", [
    m.OCRP(peer_call_id=1), m.CDN(call_id=1), m.CCRQ(call_id=99), m.StopCCRP(),
    m.EchoReply(identifier=5), m.ICRP(), m.WEN(peer_call_id=1), m.SLI(peer_call_id=77),
    m.SCCRP(),
])
def test_unexpected_messages_when_established_are_ignored(msg):
    pac = pac_up()
    pac.receive_data(msg.encode(), 1.0)
    assert pac.next_event() is None
    assert pac.state is State.ESTABLISHED
    assert pac.stats["wrong_state"] == 1


def test_garbage_closes_with_typed_error():
    pac = pac_up()
    pac.receive_data(b"\x00\x10\x00\x01\xde\xad\xbe\xef" + bytes(8), 1.0)
    ev = pac.next_event()
    assert isinstance(ev, ControlClosed) and ev.by_peer and ev.error is not None
    pac.receive_data(m.EchoRequest().encode(), 2.0)   # ignored after close, no exception
    assert pac.data_to_send() == b""


def test_peer_stopccrq_answered_and_calls_cleared():
    p = Pair()
    call_id = p.established()
    p.pns.receive_data(m.StopCCRQ(reason=3).encode(), p.now)
    assert m.decode(p.pns.data_to_send()) == m.StopCCRP(result_code=1)
    evs = p.pns.events()
    assert isinstance(evs[0], CallCleared) and evs[0].call_id == call_id
    assert isinstance(evs[1], ControlClosed) and "stop_local_shutdown" in evs[1].reason


def test_peer_call_id_zero_and_cdn_from_pptpd():
    # pptpd: OCRP Call ID 0 for every call; a CDN then names call 0
    pns = ControlConnection(Role.PNS, ControlConfig(), 0.0, random.Random(0))
    pns.start(0.0)
    pns.receive_data(m.SCCRP(framing_capabilities=0, bearer_capabilities=0).encode(), 0.1)
    a = pns.place_call(0.2)
    b = pns.place_call(0.2)
    pns.receive_data(m.OCRP(call_id=0, peer_call_id=a).encode()
                     + m.OCRP(call_id=0, peer_call_id=b, result_code=0).encode(), 0.3)
    ests = [e for e in pns.events() if isinstance(e, CallEstablished)]
    assert [(e.call_id, e.peer_call_id) for e in ests] == [(a, 0), (b, 0)]
    pns.clear_call(b, now=0.4)
    pns.receive_data(m.CDN(call_id=0, result_code=4).encode(), 0.5)
    (cleared,) = pns.events()
    assert cleared.call_id == b                # the one we asked to clear
    assert pns.calls() == {a: CallState.ESTABLISHED}


def test_ocrp_refusal_is_a_cleared_call():
    pns = ControlConnection(Role.PNS, ControlConfig(), 0.0, random.Random(0))
    pns.start(0.0)
    pns.receive_data(m.SCCRP().encode(), 0.0)
    pns.events()
    a = pns.place_call(0.0)
    pns.receive_data(m.OCRP(call_id=5, peer_call_id=a, result_code=4).encode(), 0.1)
    (cleared,) = pns.events()
    assert cleared == CallCleared(a, 5, 4, 0, 0, b"", cleared.reason, True, False)
    assert pns.calls() == {}


def test_set_link_info_both_ways_any_accm():
    p = Pair()
    call_id = p.established()
    pac_id = p.of("pac", CallEstablished)[0].call_id
    p.pns.set_link_info(call_id, 0x000A0000, 0x12345678, now=p.now)
    p.run()
    assert p.of("pac", LinkInfo) == [LinkInfo(pac_id, 0x000A0000, 0x12345678)]
    p.pac.set_link_info(pac_id, 0, 0, now=p.now)
    p.run()
    assert p.of("pns", LinkInfo) == [LinkInfo(call_id, 0, 0)]


def test_wan_error_notify():
    p = Pair()
    call_id = p.established()
    p.pns.receive_data(m.WEN(peer_call_id=call_id, crc_errors=3, alignment_errors=1).encode(),
                       p.now)
    assert p.pns.next_event() == WanError(call_id, 3, 0, 0, 0, 0, 1)


def test_max_calls_refused_with_no_resource():
    p = Pair(pac_cfg=ControlConfig(max_calls=1))
    p.established()
    p.pns.place_call(p.now)
    p.run()
    refused = p.wire["pac"][-1]
    assert refused.result_code == 2 and refused.error_code == m.GeneralErrorCode.NO_RESOURCE
    assert len(p.of("pns", CallCleared)) == 1


def test_misuse_is_a_local_protocol_error():
    pns = ControlConnection(Role.PNS, ControlConfig(), 0.0, random.Random(0))
    with pytest.raises(LocalProtocolError):
        pns.place_call(0.0)
    pac = pac_up()
    with pytest.raises(LocalProtocolError):
        pac.start(0.0)
    with pytest.raises(LocalProtocolError):
        pac.place_call(0.0)
    with pytest.raises(LocalProtocolError):
        pac.set_link_info(1234)
    pac.clear_call(1234, "unknown call: no-op")


# --- call ID allocator ---------------------------------------------------------------------

def test_allocator_unique_random_nonzero():
    alloc = CallIdAllocator(random.Random(5))
    ids = [alloc.allocate(0.0) for _ in range(2000)]
    assert len(set(ids)) == 2000 and 0 not in ids
    assert ids[:5] != sorted(ids[:5]) or ids[:5] != list(range(ids[0], ids[0] + 5))
    other = CallIdAllocator(random.Random(6))
    assert [other.allocate(0.0) for _ in range(5)] != ids[:5]


def test_allocator_quarantine():
    class Fixed:
        def __init__(self, values):
            self.values = list(values)

        def randrange(self, a, b):
            return self.values.pop(0) if self.values else 7

    alloc = CallIdAllocator(Fixed([7]), quarantine=60.0)
    assert alloc.allocate(0.0) == 7
    alloc.release(7, 10.0)
    assert not alloc.available(7, 69.9)
    alloc._rng = Fixed([7, 7, 8])
    assert alloc.allocate(50.0) == 8           # 7 still in quarantine
    assert alloc.available(7, 70.0)
    alloc._rng = Fixed([7])
    assert alloc.allocate(70.0) == 7


def test_allocator_exhaustion_is_bounded():
    class Same:
        def randrange(self, a, b):
            return 1

    alloc = CallIdAllocator(Same(), tries=4, first=1, last=200)
    assert sorted(alloc.allocate(0.0) for _ in range(200)) == list(range(1, 201))
    with pytest.raises(CallIdsExhausted):
        alloc.allocate(0.0)
    alloc.release(150, 0.0)
    with pytest.raises(CallIdsExhausted):      # quarantined, not free yet
        alloc.allocate(59.0)
    assert alloc.allocate(60.0) == 150


def test_shared_allocator_releases_only_what_the_connection_took():
    shared = CallIdAllocator(random.Random(3))
    p = Pair()
    p.pac = ControlConnection(Role.PAC, ControlConfig(), p.now, random.Random(2), shared)
    p.accept = False
    p.pns.start(p.now)
    p.run()
    p.pns.place_call(p.now)
    p.pns.place_call(p.now)
    p.run()
    r1, r2 = p.of("pac", CallRequested)
    own = p.pac.accept_call(r1, now=p.now)             # from the shared allocator
    explicit = shared.allocate(p.now)                  # the owner's own
    p.pac.accept_call(r2, explicit, now=p.now)
    assert len(shared) == 2
    p.pac.stop("shutdown", p.now)
    assert len(shared) == 1 and not shared.available(own, p.now)
    shared.release(explicit, p.now)
    assert len(shared) == 0


def test_timer_fired_a_hair_early_still_acts():
    # asyncio runs a call_at handle up to its clock resolution before the deadline
    pac = ControlConnection(Role.PAC, ControlConfig(setup_timeout=15), 0.0, random.Random(0))
    pac.handle_timer(pac.get_timer() - 1e-9)
    assert isinstance(pac.next_event(), ControlClosed)


def test_pns_clears_a_call_before_the_reply():
    p = Pair(accept=False)
    p.pns.start(p.now)
    p.run()
    call_id = p.pns.place_call(p.now)
    p.pns.clear_call(call_id, "changed my mind", now=p.now)
    p.run()                                    # the PAC sees OCRQ and CCRQ in one read
    (req,) = p.of("pac", CallRequested)
    p.pac.accept_call(req, 0x1111, now=p.now)  # OCRP then CDN at once
    p.run()
    assert not p.of("pns", CallEstablished)
    (cleared,) = p.of("pns", CallCleared)
    assert cleared.call_id == call_id and cleared.peer_call_id == 0x1111 and cleared.by_peer
    assert p.pns.calls() == {} and p.pns.stats["wrong_state"] == 0
