"""Whatever a peer sends, in whatever state and however it is split, the control connection
never raises: it answers, ignores or closes -- and closes at most once."""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from fastpptp.pptp import messages as m
from fastpptp.pptp.control import (CallCleared, CallEstablished, CallRequested, ControlClosed,
                                   ControlConfig, ControlConnection, Role)
from fastpptp.pptp.framer import PptpFramer

small = st.sampled_from([0, 1, 2, 3, 7, 0xFFFF])
msgs = st.one_of(
    st.builds(m.SCCRQ, protocol_version=st.sampled_from([0x0100, 0x0200, 0])),
    st.builds(m.SCCRP, result_code=st.sampled_from([0, 1, 2, 5])),
    st.builds(m.StopCCRQ, reason=st.sampled_from([1, 2, 3, 9])),
    st.builds(m.StopCCRP, result_code=st.sampled_from([0, 1, 2])),
    st.builds(m.EchoRequest, identifier=small),
    st.builds(m.EchoReply, identifier=small),
    st.builds(m.OCRQ, call_id=small, packet_recv_window_size=small),
    st.builds(m.OCRP, call_id=small, peer_call_id=small, result_code=st.sampled_from([0, 1, 4])),
    st.builds(m.ICRQ, call_id=small),
    st.builds(m.ICRP, call_id=small, peer_call_id=small),
    st.builds(m.ICCN, peer_call_id=small),
    st.builds(m.CCRQ, call_id=small),
    st.builds(m.CDN, call_id=small, result_code=st.sampled_from([1, 3, 4])),
    st.builds(m.WEN, peer_call_id=small),
    st.builds(m.SLI, peer_call_id=small, send_accm=st.integers(0, 0xFFFFFFFF)),
).map(lambda x: x.encode())
chunk = st.one_of(msgs, msgs, msgs, st.binary(max_size=20))
actions = st.lists(st.tuples(st.sampled_from(["data", "data", "data", "tick", "place", "clear",
                                              "stop", "sli", "eof", "ocrp", "ocrp"]),
                             chunk, st.floats(0, 40)), max_size=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([Role.PNS, Role.PAC]), st.booleans(), actions, st.integers(0, 2**32))
def test_never_raises(role, handshake, steps, seed):
    rng = random.Random(seed)
    conn = ControlConnection(role, ControlConfig(echo_interval=10, echo_timeout=5), 0.0, rng)
    if role is Role.PNS:
        conn.start(0.0)
    if handshake:            # most steps then hit the established state
        conn.receive_data((m.SCCRP() if role is Role.PNS else m.SCCRQ()).encode(), 0.0)
    now, closed, established = 0.0, 0, set()
    for kind, data, dt in steps:
        now += dt
        if kind == "data":
            cut = rng.randrange(len(data) + 1)
            conn.receive_data(data[:cut], now) if cut else None
            conn.receive_data(data[cut:], now) if data[cut:] else None
        elif kind == "tick":
            conn.handle_timer(now)
        elif kind == "eof":
            conn.receive_data(b"", now)
        elif kind == "place" and role is Role.PNS and conn.state.value == "established":
            conn.place_call(now)
        elif kind == "clear" and established:
            conn.clear_call(rng.choice(sorted(established)), "fuzz", now=now)
        elif kind == "sli" and conn.calls():
            call_id = next(iter(conn.calls()))
            if conn.calls()[call_id].value == "established":
                conn.set_link_info(call_id, 0, 0, now=now)
        elif kind == "ocrp":     # a reply that matches one of our pending calls
            waiting = [c for c, st_ in conn.calls().items() if st_.value == "wait-reply"]
            if waiting:
                reply = m.OCRP(call_id=rng.choice([0, 1, 2]), peer_call_id=waiting[0],
                               result_code=rng.choice([0, 1, 1, 1, 7]))
                conn.receive_data(reply.encode(), now)
            else:
                conn.receive_data(m.OCRQ(call_id=rng.choice([0, 1, 2])).encode(), now)
        elif kind == "stop":
            conn.stop("fuzz", now)
        while (ev := conn.next_event()) is not None:
            if isinstance(ev, ControlClosed):
                closed += 1
            elif isinstance(ev, CallRequested) and rng.random() < 0.7:
                if rng.random() < 0.8:
                    conn.accept_call(ev, now=now)
                else:
                    conn.reject_call(ev, now=now)
            elif isinstance(ev, CallEstablished):
                established.add(ev.call_id)
            elif isinstance(ev, CallCleared):
                established.discard(ev.call_id)
        out = conn.data_to_send()
        framer = PptpFramer()
        framer.feed(out)
        assert sum(1 for _ in framer) >= 0 and framer.pending == 0   # we send whole messages
    assert closed <= 1
    if closed:
        assert conn.closed and conn.get_timer() is None and conn.calls() == {}
