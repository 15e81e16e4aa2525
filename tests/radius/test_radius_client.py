"""fastpptp.radius.client, sans-I/O: identifiers, retransmission, failover and back,
Acct-Delay-Time, forged and unsigned responses dropped and counted -- with the clock as an
argument and fake servers made of our own codec (tests/radius/test_freeradius.py does the same
against a real FreeRADIUS)."""
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastpptp.errors import LocalProtocolError
from fastpptp.radius import auth
from fastpptp.radius.client import (
    COUNTERS, DROP_REASONS, LATENCY_BUCKETS, SERVER_COUNTERS, ClientPolicy, NoResponse, RadiusClient, RadiusServer,
    Response, ServerCounters,
)
from fastpptp.radius.dictionary import VENDOR_MICROSOFT, Attr, Code, MsAttr
from fastpptp.radius.packet import (
    Attribute, Packet, decode_packet, encode_response, encrypt_mppe_key, unhide_password, verify_request,
)

A = ("192.0.2.10", 1812)
B = ("192.0.2.11", 1812)
SERVERS = [RadiusServer(A, b"secret-a"), RadiusServer(B, b"secret-b")]
POLICY = ClientPolicy(timeout=3.0, tries=3, dead_time=30.0)
PAP = auth.pap_attributes(b"alice", b"pw")


def _answer(client, dest, wire, code=Code.ACCESS_ACCEPT, attrs=(), secret=None, now=0.0, signed=True):
    """Answer ``wire`` as the server at ``dest`` would (with its secret unless told)."""
    server = next(s for s in client.servers if s.address == dest)
    req = decode_packet(wire)
    resp = encode_response(Packet(code, req.identifier, attributes=list(attrs)),
                           secret if secret is not None else server.secret, req.authenticator,
                           with_message_authenticator=signed)
    client.receive_datagram(resp, dest, now)
    return req


def test_counters_are_documented():
    assert set(RadiusClient(SERVERS).counters) == set(COUNTERS)


def test_request_and_response():
    c = RadiusClient(SERVERS, POLICY)
    h = c.send(Code.ACCESS_REQUEST, PAP, now=100.0)
    [(dest, wire)] = c.datagrams_to_send()
    assert dest == A and c.get_timer() == 103.0
    req = decode_packet(wire)
    verify_request(wire, req, b"secret-a", require_message_authenticator=True)
    assert unhide_password(req.get(Attr.USER_PASSWORD), b"secret-a", req.authenticator) == b"pw"
    _answer(c, A, wire, now=100.5)
    ev = c.next_event()
    assert isinstance(ev, Response) and ev.handle == h and ev.server == 0
    assert ev.request_authenticator == req.authenticator and ev.access_reply().accepted
    assert c.next_event() is None and c.get_timer() is None and c.outstanding == 0


def test_retransmits_identical_then_fails_over_and_comes_back():
    c = RadiusClient(SERVERS, POLICY)
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    [(_, first)] = c.datagrams_to_send()
    c.handle_timer(2.9)
    assert c.datagrams_to_send() == []                      # not yet
    for t in (3.0, 6.0):
        c.handle_timer(t)
        assert c.datagrams_to_send() == [(A, first)]        # RFC 2865 §3: same ID, same bytes
    c.handle_timer(9.0)                                     # 3 tries on A: fail over to B
    [(dest, wire)] = c.datagrams_to_send()
    assert dest == B and wire != first
    verify_request(wire, decode_packet(wire), b"secret-b", require_message_authenticator=True)
    assert not c.server_alive(0, 9.0) and c.server_alive(1, 9.0)
    assert c.counters["tx_failovers"] == 1 and c.counters["tx_retransmits"] == 2
    _answer(c, B, wire, now=9.1)
    assert c.next_event().server == 1
    # A is dead: the next request goes to B first ...
    c.send(Code.ACCESS_REQUEST, PAP, now=10.0)
    [(dest, wire)] = c.datagrams_to_send()
    assert dest == B
    _answer(c, B, wire, now=10.1)
    c.next_event()
    # ... and after dead_time back to the primary
    c.send(Code.ACCESS_REQUEST, PAP, now=39.0)
    [(dest, _)] = c.datagrams_to_send()
    assert dest == A


def test_late_answer_from_the_first_server_is_still_taken():
    c = RadiusClient(SERVERS, ClientPolicy(timeout=1.0, tries=1))
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    [(_, wire_a)] = c.datagrams_to_send()
    c.handle_timer(1.0)
    [(dest, _)] = c.datagrams_to_send()
    assert dest == B
    _answer(c, A, wire_a, now=1.5)                          # A answers after all
    ev = c.next_event()
    assert isinstance(ev, Response) and ev.server == 0 and c.server_alive(0, 1.5)
    assert c.outstanding == 0


def test_no_server_answers():
    c = RadiusClient(SERVERS, ClientPolicy(timeout=1.0, tries=2))
    h = c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    sent = []
    for t in range(0, 5):
        c.handle_timer(float(t))
        sent += c.datagrams_to_send()
    assert [d for d, _ in sent] == [A, A, B, B]
    assert c.next_event() == NoResponse(h)
    assert c.counters["no_response"] == 1 and c.counters["servers_marked_dead"] == 2
    assert c.get_timer() is None
    # with every server dead a new request is still tried, the longest-dead first
    c.send(Code.ACCESS_REQUEST, PAP, now=5.0)
    [(dest, _)] = c.datagrams_to_send()
    assert dest == A


def test_accounting_retransmits_carry_acct_delay_time_and_new_identifiers():
    c = RadiusClient(SERVERS[:1], ClientPolicy(timeout=2.0, tries=3))
    attrs = [Attribute(Attr.ACCT_STATUS_TYPE, struct.pack("!I", 1)), Attribute(Attr.ACCT_SESSION_ID, b"s1")]
    c.send(Code.ACCOUNTING_REQUEST, attrs, now=50.0)
    wires = []
    for t in (50.0, 52.0, 54.0):
        c.handle_timer(t)
        wires += [w for _, w in c.datagrams_to_send()]
    pkts = [decode_packet(w) for w in wires]
    assert [p.get_int(Attr.ACCT_DELAY_TIME) for p in pkts] == [None, 2, 4]   # RFC 2866 §5.2
    assert len({p.identifier for p in pkts}) == 3
    for w, p in zip(wires, pkts, strict=True):
        verify_request(w, p, b"secret-a", require_message_authenticator=True)
    # an answer to the first attempt still ends the transaction
    _answer(c, A, wires[0], code=Code.ACCOUNTING_RESPONSE, now=55.0)
    assert isinstance(c.next_event(), Response) and c.outstanding == 0


def test_caller_acct_delay_time_is_the_base():
    c = RadiusClient(SERVERS[:1], ClientPolicy(timeout=2.0, tries=2))
    attrs = [Attribute(Attr.ACCT_STATUS_TYPE, struct.pack("!I", 2)), Attribute(Attr.ACCT_DELAY_TIME, struct.pack("!I", 10))]
    c.send(Code.ACCOUNTING_REQUEST, attrs, now=0.0)
    c.handle_timer(2.0)
    delays = [decode_packet(w).get_int(Attr.ACCT_DELAY_TIME) for _, w in c.datagrams_to_send()]
    assert delays == [10, 12]


def test_forged_response_is_dropped_and_the_genuine_one_taken():
    c = RadiusClient(SERVERS[:1], POLICY)
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    [(_, wire)] = c.datagrams_to_send()
    _answer(c, A, wire, secret=b"guessed", now=0.1)
    assert c.next_event() is None and c.counters["rx_forged"] == 1 and c.outstanding == 1
    _answer(c, A, wire, code=Code.ACCESS_REJECT, now=0.2)
    ev = c.next_event()
    assert ev.packet.code == Code.ACCESS_REJECT and c.counters["rx_responses"] == 1


def test_unsigned_access_response_is_dropped_unless_allowed():
    c = RadiusClient(SERVERS[:1], POLICY)
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    [(_, wire)] = c.datagrams_to_send()
    _answer(c, A, wire, signed=False)
    assert c.next_event() is None and c.counters["rx_no_message_authenticator"] == 1
    lax = RadiusClient(SERVERS[:1], ClientPolicy(require_message_authenticator=False))
    lax.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    [(_, wire)] = lax.datagrams_to_send()
    _answer(lax, A, wire, signed=False)
    assert isinstance(lax.next_event(), Response)


def test_unsigned_accounting_response_is_accepted():
    """RFC 3579 requires the Message-Authenticator on Access-* only; FreeRADIUS does not sign
    Accounting-Responses, whose Response Authenticator already covers the whole packet."""
    c = RadiusClient(SERVERS[:1], POLICY)
    c.send(Code.ACCOUNTING_REQUEST, [Attribute(Attr.ACCT_STATUS_TYPE, struct.pack("!I", 1))], now=0.0)
    [(_, wire)] = c.datagrams_to_send()
    _answer(c, A, wire, code=Code.ACCOUNTING_RESPONSE, signed=False)
    assert isinstance(c.next_event(), Response)


def test_wrong_code_unknown_source_unexpected_and_malformed_are_counted():
    c = RadiusClient(SERVERS[:1], POLICY)
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    [(_, wire)] = c.datagrams_to_send()
    _answer(c, A, wire, code=Code.ACCOUNTING_RESPONSE)
    assert c.counters["rx_bad_code"] == 1
    c.receive_datagram(wire, ("198.51.100.9", 1812), 0.1)
    assert c.counters["rx_unknown_source"] == 1
    c.receive_datagram(b"\x02\x01\x00", A, 0.1)
    assert c.counters["rx_malformed"] == 1
    req = decode_packet(wire)
    stray = encode_response(Packet(Code.ACCESS_ACCEPT, (req.identifier + 1) & 0xFF), b"secret-a", bytes(16))
    c.receive_datagram(stray, A, 0.1)
    assert c.counters["rx_unexpected"] == 1
    assert c.next_event() is None and c.outstanding == 1
    # a duplicate of an answer already taken is unexpected too
    _answer(c, A, wire)
    assert isinstance(c.next_event(), Response)
    _answer(c, A, wire)
    assert c.counters["rx_unexpected"] == 2


def test_identifiers_are_unique_per_server_and_waiters_get_freed_ones():
    c = RadiusClient(SERVERS[:1], POLICY)
    handles = [c.send(Code.ACCESS_REQUEST, PAP, now=0.0) for _ in range(257)]
    out = c.datagrams_to_send()
    assert len(out) == 256 and len({decode_packet(w).identifier for _, w in out}) == 256
    assert c.outstanding == 257
    _answer(c, A, out[0][1], now=1.0)                       # frees one identifier
    assert c.next_event().handle == handles[0]
    [(_, late)] = c.datagrams_to_send()                     # the 257th goes out now
    assert decode_packet(late).identifier == decode_packet(out[0][1]).identifier
    _answer(c, A, late, now=1.1)
    assert c.next_event().handle == handles[256]


def test_cancel_forgets_the_transaction():
    c = RadiusClient(SERVERS[:1], POLICY)
    h = c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    [(_, wire)] = c.datagrams_to_send()
    c.cancel(h)
    assert c.get_timer() is None and c.outstanding == 0
    _answer(c, A, wire)
    assert c.next_event() is None and c.counters["rx_unexpected"] == 1


def test_access_reply_decrypts_the_keys_of_its_own_attempt():
    c = RadiusClient(SERVERS, ClientPolicy(timeout=1.0, tries=1))
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    c.datagrams_to_send()
    c.handle_timer(1.0)
    [(dest, wire)] = c.datagrams_to_send()
    req = decode_packet(wire)
    send_key, recv_key = bytes(range(16)), bytes(range(16, 32))
    ms = VENDOR_MICROSOFT
    attrs = [Attribute(MsAttr.MS_MPPE_SEND_KEY, encrypt_mppe_key(send_key, b"secret-b", req.authenticator, b"\x80\x01"), ms),
             Attribute(MsAttr.MS_MPPE_RECV_KEY, encrypt_mppe_key(recv_key, b"secret-b", req.authenticator, b"\x80\x02"), ms),
             Attribute(MsAttr.MS_CHAP2_SUCCESS, b"\x05S=" + b"A" * 40, ms),
             Attribute(Attr.FRAMED_IP_ADDRESS, bytes([255, 255, 255, 254]))]
    _answer(c, dest, wire, attrs=attrs)
    reply = c.next_event().access_reply()
    assert (reply.mppe_send_key, reply.mppe_recv_key) == (send_key, recv_key)
    assert reply.ms_chap2_success == b"S=" + b"A" * 40
    assert reply.framed_ip_address == auth.FRAMED_IP_FROM_POOL


def test_misuse_is_a_local_error():
    c = RadiusClient(SERVERS, POLICY)
    with pytest.raises(LocalProtocolError):
        c.send(Code.ACCESS_ACCEPT, PAP, now=0.0)
    with pytest.raises(ValueError):
        RadiusClient([])
    with pytest.raises(ValueError):
        ClientPolicy(tries=0)


@given(st.binary(max_size=200), st.sampled_from([A, B, ("203.0.113.1", 1)]))
def test_any_datagram_is_counted_never_raised(data, source):
    c = RadiusClient(SERVERS, POLICY)
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    before = sum(c.counters.values())
    c.receive_datagram(data, source, 0.1)
    assert sum(c.counters.values()) == before + 1 and c.outstanding == 1


# --------------------------------------------------------------------------- per-server counters
def test_server_counters_are_documented():
    sc = RadiusClient(SERVERS).server_counters
    assert len(sc) == len(SERVERS)
    fields = {"requests", "retransmits", "responses", "timeouts"}
    assert fields == set(SERVER_COUNTERS)
    assert all(set(s.dropped) == set(DROP_REASONS) for s in sc)
    assert all(len(s.latency_buckets) == len(LATENCY_BUCKETS) + 1 for s in sc)
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_latency_of_an_answer_lands_in_its_bucket():
    c = RadiusClient(SERVERS, POLICY)
    c.send(Code.ACCESS_REQUEST, PAP, now=50.0)
    [(_, wire)] = c.datagrams_to_send()
    _answer(c, A, wire, now=50.12)
    a, b = c.server_counters
    assert (a.requests, a.retransmits, a.responses, a.timeouts) == (1, 0, 1, 0)
    assert a.latency_sum == pytest.approx(0.12)
    want = [0] * (len(LATENCY_BUCKETS) + 1)
    want[LATENCY_BUCKETS.index(0.25)] = 1            # 0.1 < 0.12 <= 0.25
    assert a.latency_buckets == want
    assert b == ServerCounters()                     # the other server saw nothing


def test_latency_bounds_and_overflow_buckets():
    sc = ServerCounters()
    sc.answered(0.005)                               # exactly a bound: in that bound's bucket
    sc.answered(0.0)
    sc.answered(7.0)                                 # above the last bound
    assert sc.latency_buckets[0] == 2 and sc.latency_buckets[-1] == 1
    assert sc.responses == sum(sc.latency_buckets) == 3


def test_timeout_and_failover_counted_on_the_server_that_did_not_answer():
    c = RadiusClient(SERVERS, POLICY)
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    c.datagrams_to_send()
    for t in (3.0, 6.0, 9.0):                        # two resends to A, then A's tries are up
        c.handle_timer(t)
    [_, _, (dest, wire)] = c.datagrams_to_send()
    assert dest == B
    # B answers 0.3 s after its send (9.0): the latency counts from B's send, not the first
    _answer(c, B, wire, now=9.3)
    a, b = c.server_counters
    assert (a.requests, a.retransmits, a.responses, a.timeouts) == (1, 2, 0, 1)
    assert (b.requests, b.retransmits, b.responses, b.timeouts) == (1, 0, 1, 0)
    assert b.latency_sum == pytest.approx(0.3)
    assert b.latency_buckets[LATENCY_BUCKETS.index(0.5)] == 1
    assert c.counters["tx_failovers"] == 1


def test_latency_of_a_resent_access_request_counts_from_the_last_send():
    c = RadiusClient(SERVERS, POLICY)
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    [(_, wire)] = c.datagrams_to_send()
    c.handle_timer(3.0)                              # resent byte for byte, same Identifier
    [(_, again)] = c.datagrams_to_send()
    assert again == wire
    _answer(c, A, wire, now=3.04)
    a = c.server_counters[0]
    assert (a.requests, a.retransmits, a.responses) == (1, 1, 1)
    assert a.latency_sum == pytest.approx(0.04)


def test_no_response_counts_a_timeout_on_every_server():
    c = RadiusClient(SERVERS, ClientPolicy(timeout=1.0, tries=1, dead_time=30.0))
    h = c.send(Code.ACCOUNTING_REQUEST, [], now=0.0)
    c.handle_timer(1.0)
    c.handle_timer(2.0)
    assert c.next_event() == NoResponse(h)
    assert [s.timeouts for s in c.server_counters] == [1, 1]
    assert [s.requests for s in c.server_counters] == [1, 1]


def test_dropped_datagrams_counted_per_server_by_reason():
    c = RadiusClient(SERVERS, POLICY)
    c.send(Code.ACCESS_REQUEST, PAP, now=0.0)
    [(_, wire)] = c.datagrams_to_send()
    c.receive_datagram(b"\x02\x00", B, 0.1)                          # malformed, from B
    _answer(c, A, wire, secret=b"wrong", now=0.1)                    # forged
    _answer(c, A, wire, signed=False, now=0.1)                       # no Message-Authenticator
    _answer(c, A, wire, code=Code.ACCOUNTING_RESPONSE, now=0.1)      # signed, wrong code
    _answer(c, A, wire, now=0.2)                                     # the genuine answer
    _answer(c, A, wire, now=0.3)                                     # a duplicate: unexpected
    a, b = c.server_counters
    assert a.dropped == {"malformed": 0, "unexpected": 1, "forged": 1,
                         "no_message_authenticator": 1, "bad_code": 1}
    assert b.dropped == {**dict.fromkeys(DROP_REASONS, 0), "malformed": 1}
    assert a.responses == 1
    c.receive_datagram(b"\x02\x00", ("192.0.2.99", 1812), 0.4)      # no server: global only
    assert c.counters["rx_unknown_source"] == 1
