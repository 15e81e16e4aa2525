"""RFC 1661 §4 automaton: the full state transition table, timers, counters, identifiers.

The automaton is exercised through LCP (the richest subclass) with keepalive off, on a fake
clock; every (state, event) cell of the RFC table is executed and its actions observed on
the wire (frames) and on the event queue.
"""
from __future__ import annotations

import random

import pytest

from fastpptp.ppp.constants import Code, Protocol
from fastpptp.ppp.fsm import (TRANSITIONS, Event, State, ThisLayerDown, ThisLayerFinished,
                              ThisLayerStarted, ThisLayerUp)
from fastpptp.ppp.lcp import LCP, LcpConfig
from fastpptp.errors import LocalProtocolError
from fastpptp.ppp.packet import Option, Packet, encode_options
from support.ppp_pair import codes, pump

S = State
# RFC 1661 §4.1, retyped here independently of fastpptp/ppp/fsm.py, one row per event,
# columns in state order 0..9 (Initial .. Opened).
EXPECTED = {
    "Up":   ["2", "irc,scr/6", "-", "-", "-", "-", "-", "-", "-", "-"],
    "Down": ["-", "-", "0", "tls/1", "0", "1", "1", "1", "1", "tld/1"],
    "Open": ["tls/1", "1", "irc,scr/6", "3", "5", "5", "6", "7", "8", "9"],
    "Close": ["0", "tlf/0", "2", "2", "4", "4", "irc,str/4", "irc,str/4", "irc,str/4",
              "tld,irc,str/4"],
    "TO+":  ["-", "-", "-", "-", "str/4", "str/5", "scr/6", "scr/6", "scr/8", "-"],
    "TO-":  ["-", "-", "-", "-", "tlf/2", "tlf/3", "tlf/3", "tlf/3", "tlf/3", "-"],
    "RCR+": ["-", "-", "sta/2", "irc,scr,sca/8", "4", "5", "sca/8", "sca,tlu/9", "sca/8",
             "tld,scr,sca/8"],
    "RCR-": ["-", "-", "sta/2", "irc,scr,scn/6", "4", "5", "scn/6", "scn/7", "scn/6",
             "tld,scr,scn/6"],
    "RCA":  ["-", "-", "sta/2", "sta/3", "4", "5", "irc/7", "scr/6", "irc,tlu/9", "tld,scr/6"],
    "RCN":  ["-", "-", "sta/2", "sta/3", "4", "5", "irc,scr/6", "scr/6", "irc,scr/8",
             "tld,scr/6"],
    "RTR":  ["-", "-", "sta/2", "sta/3", "sta/4", "sta/5", "sta/6", "sta/6", "sta/6",
             "tld,zrc,sta/5"],
    "RTA":  ["-", "-", "2", "3", "tlf/2", "tlf/3", "6", "6", "8", "tld,scr/6"],
    "RUC":  ["-", "-", "scj/2", "scj/3", "scj/4", "scj/5", "scj/6", "scj/7", "scj/8", "scj/9"],
    "RXJ+": ["-", "-", "2", "3", "4", "5", "6", "6", "8", "9"],
    "RXJ-": ["-", "-", "tlf/2", "tlf/3", "tlf/2", "tlf/3", "tlf/3", "tlf/3", "tlf/3",
             "tld,irc,str/5"],
    "RXR":  ["-", "-", "2", "3", "4", "5", "6", "7", "8", "ser/9"],
}
CELLS = [(ev, State(col)) for ev in EXPECTED for col in range(10)]

ACTION_FRAME = {"scr": Code.CONFIGURE_REQUEST, "sca": Code.CONFIGURE_ACK,
                "scn": Code.CONFIGURE_NAK, "str": Code.TERMINATE_REQUEST,
                "sta": Code.TERMINATE_ACK, "scj": Code.CODE_REJECT, "ser": Code.ECHO_REPLY}
ACTION_EVENT = {"tlu": ThisLayerUp, "tld": ThisLayerDown, "tls": ThisLayerStarted,
                "tlf": ThisLayerFinished}

MAGIC = 0x11223344


def parse_cell(cell: str):
    if cell == "-":
        return None
    acts, _, nxt = cell.rpartition("/") if "/" in cell else ("", "", cell)
    return (tuple(acts.split(",")) if acts else ()), State(int(nxt))


def quiet_lcp(seed: int = 7, **kw) -> LCP:
    kw.setdefault("echo_interval", 0)
    return LCP(LcpConfig(**kw), random.Random(seed))


def test_parsed_table_matches_rfc_retyped():
    for ev_name, row in EXPECTED.items():
        ev = next(e for e in Event if e.value == ev_name)
        for col, cell in enumerate(row):
            assert TRANSITIONS[(State(col), ev)] == parse_cell(cell), (ev_name, col)
    assert len(TRANSITIONS) == 160


def _fire(lcp: LCP, ev_name: str):
    req_opts = [Option(5, MAGIC.to_bytes(4, "big"))]
    req = Packet(Code.CONFIGURE_REQUEST, 0x31, encode_options(req_opts))
    ctx = {
        "RCR+": dict(pkt=req, reply=Packet(Code.CONFIGURE_ACK, 0x31, req.data),
                     options=req_opts),
        "RCR-": dict(pkt=req, reply=Packet(Code.CONFIGURE_NAK, 0x31, req.data),
                     options=req_opts),
        "RCA": dict(pkt=Packet(Code.CONFIGURE_ACK, 0x40, b"")),
        "RCN": dict(pkt=Packet(Code.CONFIGURE_NAK, 0x40, b"")),
        "RTR": dict(pkt=Packet(Code.TERMINATE_REQUEST, 0x41, b"")),
        "RTA": dict(pkt=Packet(Code.TERMINATE_ACK, 0x42, b"")),
        "RUC": dict(pkt=Packet(0x55, 0x43, b"zz")),
        "RXJ+": dict(pkt=Packet(Code.CODE_REJECT, 0x44, bytes([12, 1, 0, 4]))),
        "RXJ-": dict(pkt=Packet(Code.CODE_REJECT, 0x45, bytes([1, 1, 0, 4])), reason="rej"),
        "RXR": dict(pkt=Packet(Code.ECHO_REQUEST, 0x46, b"\0\0\0\0ping")),
    }
    if ev_name == "Up":
        lcp.up(1.0)
    elif ev_name == "Down":
        lcp.down(1.0)
    elif ev_name == "Open":
        lcp.open(1.0)
    elif ev_name == "Close":
        lcp.close(1.0, "bye")
    else:
        ev = next(e for e in Event if e.value == ev_name)
        lcp._event(ev, 1.0, **ctx.get(ev_name, {}))


@pytest.mark.parametrize("ev_name,state", CELLS, ids=[f"{e}-{s.name}" for e, s in CELLS])
def test_transition_cell(ev_name, state):
    lcp = quiet_lcp()
    lcp._state = state
    lcp._restart_count = 1
    cell = parse_cell(EXPECTED[ev_name][state])
    if cell is None:
        if ev_name in ("Up", "TO+", "TO-"):
            with pytest.raises(LocalProtocolError):
                _fire(lcp, ev_name)
        else:
            _fire(lcp, ev_name)           # Down before Up is ignored; packets are dropped
            assert lcp.counters["rx_wrong_state"] + lcp.counters["ignored_down"] == 1
        assert lcp.state is state
        assert lcp.frames_to_send() == [] and lcp.events() == []
        return
    actions, new_state = cell
    _fire(lcp, ev_name)
    assert lcp.state is new_state
    frames = codes(lcp.frames_to_send())
    assert frames == [ACTION_FRAME[a] for a in actions if a in ACTION_FRAME]
    events = [type(e) for e in lcp.events()]
    assert events == [ACTION_EVENT[a] for a in actions if a in ACTION_EVENT]
    # irc loads Max-Terminate before str, Max-Configure otherwise; scr/str consume one.
    if "irc" in actions:
        full = 2 if "str" in actions else 10
        sent = sum(a in ("scr", "str") for a in actions)
        assert lcp._restart_count == full - sent
    if "zrc" in actions:
        assert lcp._restart_count == 0
    if new_state in (S.Closing, S.Stopping, S.ReqSent, S.AckRcvd, S.AckSent):
        if {"scr", "str", "zrc"} & set(actions):
            assert lcp.get_timer() == pytest.approx(4.0)       # now (1.0) + 3 s
    else:
        assert lcp.get_timer() is None


# ---- timers and counters ---------------------------------------------------------------

def test_configure_request_retransmitted_max_configure_times_then_stopped():
    lcp = quiet_lcp()
    lcp.open(0.0)
    lcp.up(0.0)
    sent = []
    now = 0.0
    for _ in range(20):
        sent += [Packet.decode(i) for _, i in lcp.frames_to_send()]
        t = lcp.get_timer()
        if t is None:
            break
        assert t == pytest.approx(now + 3.0)
        now = t
        lcp.handle_timer(now)
    assert [p.code for p in sent] == [Code.CONFIGURE_REQUEST] * 10     # Max-Configure
    assert len({(p.identifier, p.data) for p in sent}) == 1            # same id on retransmit
    assert lcp.state is S.Stopped
    assert now == pytest.approx(30.0)
    ev = lcp.events()
    assert isinstance(ev[-1], ThisLayerFinished) and "Max-Configure" in ev[-1].reason


def test_timer_not_due_does_nothing():
    lcp = quiet_lcp()
    lcp.open(0.0)
    lcp.up(0.0)
    lcp.frames_to_send()
    lcp.handle_timer(2.9)
    assert lcp.frames_to_send() == [] and lcp.state is S.ReqSent


def opened_pair(**kw):
    a, b = quiet_lcp(1, **kw), quiet_lcp(2, **kw)
    for p in (a, b):
        p.open(0.0)
        p.up(0.0)
    pump(a, b)
    assert a.state is b.state is S.Opened
    a.events(), b.events()
    return a, b


def test_close_sends_terminate_max_terminate_times_then_closed():
    a, _ = opened_pair()
    a.close(10.0, "User request")
    first = Packet.decode(a.frames_to_send()[0][1])
    assert first.code == Code.TERMINATE_REQUEST and first.data == b"User request"
    assert [type(e) for e in a.events()] == [ThisLayerDown]
    a.handle_timer(13.0)
    again = Packet.decode(a.frames_to_send()[0][1])
    assert again == first                                   # retransmission, same id
    a.handle_timer(16.0)
    assert a.frames_to_send() == [] and a.state is S.Closed
    assert [type(e) for e in a.events()] == [ThisLayerFinished]


def test_peer_terminate_in_opened_goes_stopping_then_stopped_after_one_period():
    a, b = opened_pair()
    b.close(5.0, "bye")
    pump(a, b, 5.0)
    assert a.state is S.Stopping and b.state is S.Closed
    ev = a.events()
    assert isinstance(ev[0], ThisLayerDown) and "bye" in ev[0].reason
    assert a.get_timer() == pytest.approx(8.0)              # zrc: one restart period
    a.handle_timer(8.0)
    assert a.state is S.Stopped and a.frames_to_send() == []
    assert [type(e) for e in a.events()] == [ThisLayerFinished]


def test_max_failure_turns_nak_into_reject():
    lcp = quiet_lcp()
    lcp.open(0.0)
    lcp.up(0.0)
    lcp.frames_to_send()
    bad = encode_options([Option(1, (64).to_bytes(2, "big"))])      # MRU 64 < 128: Nak
    answers = []
    for i in range(7):
        lcp.receive(Packet(Code.CONFIGURE_REQUEST, i, bad).encode(), 1.0)
        answers += codes(lcp.frames_to_send())
    assert answers == [Code.CONFIGURE_NAK] * 5 + [Code.CONFIGURE_REJECT] * 2


def test_pair_converges_with_crossed_requests_in_two_round_trips():
    a, b = quiet_lcp(1), quiet_lcp(2)
    for p in (a, b):
        p.open(0.0)
        p.up(0.0)
    rounds = pump(a, b)
    assert rounds <= 2
    assert a.state is b.state is S.Opened


def test_renegotiation_from_opened_on_new_configure_request():
    a, b = opened_pair()
    b._event(Event.Down, 1.0)          # b restarts (lower layer bounce)
    b.up(1.0)
    pump(a, b, 1.0)
    assert a.state is b.state is S.Opened
    assert [type(e) for e in a.events()] == [ThisLayerDown, ThisLayerUp]


def test_ack_with_wrong_identifier_or_options_is_discarded():
    lcp = quiet_lcp()
    lcp.open(0.0)
    lcp.up(0.0)
    req = Packet.decode(lcp.frames_to_send()[0][1])
    lcp.receive(Packet(Code.CONFIGURE_ACK, (req.identifier + 1) & 0xFF, req.data).encode(), 1)
    lcp.receive(Packet(Code.CONFIGURE_ACK, req.identifier, req.data[:-2]).encode(), 1)
    assert lcp.state is S.ReqSent and lcp.counters["rx_bad_reply"] == 2
    lcp.receive(Packet(Code.CONFIGURE_ACK, req.identifier, req.data).encode(), 1)
    assert lcp.state is S.AckRcvd
    # a duplicate of the same Ack is no longer valid
    lcp.receive(Packet(Code.CONFIGURE_ACK, req.identifier, req.data).encode(), 1)
    assert lcp.state is S.AckRcvd and lcp.counters["rx_bad_reply"] == 3


def test_reject_must_be_a_subset_of_our_request():
    lcp = quiet_lcp()
    lcp.open(0.0)
    lcp.up(0.0)
    req = Packet.decode(lcp.frames_to_send()[0][1])
    alien = encode_options([Option(17, b"\x05\xdc")])
    lcp.receive(Packet(Code.CONFIGURE_REJECT, req.identifier, alien).encode(), 1)
    assert lcp.counters["rx_bad_reply"] == 1 and lcp.frames_to_send() == []
    pfc = encode_options([Option(7)])
    lcp.receive(Packet(Code.CONFIGURE_REJECT, req.identifier, pfc).encode(), 1)
    new = Packet.decode(lcp.frames_to_send()[0][1])
    assert new.identifier != req.identifier
    assert 7 not in [o.type for o in new.options()] and 8 in [o.type for o in new.options()]


def test_configure_ack_in_closed_answered_with_terminate_ack():
    lcp = quiet_lcp()
    lcp.up(0.0)
    assert lcp.state is S.Closed
    lcp.receive(Packet(Code.CONFIGURE_ACK, 9, b"").encode(), 0)
    assert codes(lcp.frames_to_send()) == [Code.TERMINATE_ACK]


def test_packets_before_up_are_dropped():
    lcp = quiet_lcp()
    lcp.receive(Packet(Code.CONFIGURE_REQUEST, 1, b"").encode(), 0)
    assert lcp.frames_to_send() == [] and lcp.counters["rx_not_up"] == 1


@pytest.mark.parametrize("raw", [b"", b"\x01\x01\x00", b"\x01\x01\x00\x03",
                                 b"\x01\x01\x00\x09\x05\x06\x00\x00",
                                 b"\x01\x01\x00\x06\x05\x01", b"\x01\x01\x00\x07\x05\x06\x00"])
def test_malformed_packets_are_counted_not_raised(raw):
    lcp = quiet_lcp()
    lcp.open(0.0)
    lcp.up(0.0)
    lcp.frames_to_send()
    lcp.receive(raw, 1.0)
    assert lcp.counters["rx_malformed"] == 1 and lcp.frames_to_send() == []
    assert lcp.state is S.ReqSent


def test_unknown_code_is_code_rejected_within_peer_mru():
    a, b = opened_pair(mru=None)
    big = Packet(0x42, 7, bytes(3000)).encode()
    a.receive(big, 1.0)
    (proto, info), = a.frames_to_send()
    rej = Packet.decode(info)
    assert proto == Protocol.LCP and rej.code == Code.CODE_REJECT
    assert len(info) == 1500 and rej.data == big[:1496]


def test_code_reject_of_configure_request_is_catastrophic():
    a, _ = opened_pair()
    a.receive(Packet(Code.CODE_REJECT, 3, bytes([1, 1, 0, 4])).encode(), 1.0)
    assert a.state is S.Stopping
    assert codes(a.frames_to_send()) == [Code.TERMINATE_REQUEST]


def test_code_reject_of_identification_is_permitted():
    a, _ = opened_pair()
    a.receive(Packet(Code.CODE_REJECT, 3, bytes([12, 1, 0, 8, 0, 0, 0, 0])).encode(), 1.0)
    assert a.state is S.Opened and a.frames_to_send() == []


# ---- robustness ------------------------------------------------------------------------

def _lossy_converge(a, b, seed: int, loss: float, limit: float = 120.0) -> float:
    """Two automata through a lossy link on a fake clock; return the time both are Opened."""
    rng = random.Random(seed)
    now = 0.0
    for p in (a, b):
        p.open(now)
        p.up(now)
    for _ in range(2000):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for _, info in src.frames_to_send():
                moved = True
                if rng.random() >= loss:
                    dst.receive(info, now)
        if a.state is b.state is S.Opened and not moved:
            return now
        if not moved:
            deadlines = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
            if not deadlines:
                break
            now = min(deadlines)
            assert now <= limit
            a.handle_timer(now)
            b.handle_timer(now)
    raise AssertionError(f"no convergence: {a.state.name} {b.state.name}")


@pytest.mark.parametrize("seed", range(8))
def test_pair_converges_through_a_lossy_link(seed):
    a, b = quiet_lcp(seed), quiet_lcp(seed + 100)
    t = _lossy_converge(a, b, seed, loss=0.3)
    assert t <= 60.0
    # a lost Ack can make one side renegotiate from Opened (tld, scr, sca): use the last Up
    ra = [e.result for e in a.events() if isinstance(e, ThisLayerUp)][-1]
    rb = [e.result for e in b.events() if isinstance(e, ThisLayerUp)][-1]
    assert ra.local_magic == rb.peer_magic and rb.local_magic == ra.peer_magic


from hypothesis import given, settings, strategies as st  # noqa: E402

from fastpptp.ppp.ccp import CCP, CcpConfig  # noqa: E402
from fastpptp.ppp.ipcp import IPCP, IpcpConfig  # noqa: E402
from fastpptp.ppp.ipv6cp import IPV6CP, Ipv6cpConfig  # noqa: E402
from fastpptp.ppp.constants import AuthMethod  # noqa: E402

_FACTORIES = [
    lambda: quiet_lcp(3, auth_require=(AuthMethod.MSCHAP_V2,), echo_interval=5.0),
    lambda: IPCP(IpcpConfig(local_address="198.51.100.1", peer_address="198.51.100.2",
                            dns=("192.0.2.53",)), random.Random(3)),
    lambda: IPV6CP(Ipv6cpConfig(), random.Random(3)),
    lambda: CCP(CcpConfig(mppe_bits=(128, 40)), random.Random(3)),
]

_packet = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda c, i, opts: Packet(c, i, b"".join(
        bytes((t, len(v) + 2)) + v for t, v in opts)).encode(),
        st.integers(1, 16), st.integers(0, 255),
        st.lists(st.tuples(st.integers(0, 140), st.binary(max_size=10)), max_size=5)),
)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3), st.lists(st.tuples(st.sampled_from(
    ["pkt", "pkt", "pkt", "timer", "open", "close", "down", "up"]), _packet), max_size=30))
def test_random_input_never_breaks_the_automaton(which, steps):
    p = _FACTORIES[which]()
    p.open(0.0)
    p.up(0.0)
    now = 0.0
    for kind, raw in steps:
        now += 0.5
        if kind == "pkt":
            p.receive(raw, now)
        elif kind == "timer":
            t = p.get_timer()
            if t is not None:
                now = max(now, t)
                p.handle_timer(now)
        elif kind == "open":
            p.open(now)
        elif kind == "close":
            p.close(now, "x")
        elif kind == "down":
            p.down(now)
        elif kind == "up" and p.state in (S.Initial, S.Starting):
            p.up(now)
        for proto, info in p.frames_to_send():
            assert proto == p.protocol
            out = Packet.decode(info)           # everything we send is well-formed
            if out.code <= Code.CONFIGURE_REJECT:
                out.options()
            assert len(info) <= 1500
        p.events()
        assert isinstance(p.state, State)
        t = p.get_timer()
        assert t is None or isinstance(t, float)
        if p.state not in (S.Closing, S.Stopping, S.ReqSent, S.AckRcvd, S.AckSent):
            assert p._timer is None          # the restart timer runs only where §4 says
