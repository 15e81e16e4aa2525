"""The Dynamic Authorization core (fastpptp/radius/dae.py, RFC 5176), sans-I/O: what is dropped
(and counted), what is answered with which code and Error-Cause, what the target is asked to
do (the rate-limit attribute parsers: tests/radius/test_rates.py)."""
from __future__ import annotations

import hashlib
import ipaddress

import pytest

from fastpptp.radius.dae import (
    CISCO_AVPAIR, DISCONNECT_REASON, MIKROTIK_RATE_LIMIT, VENDOR_CISCO, VENDOR_MIKROTIK, CoaChange,
    DaeCore, DaePolicy, DaeSession, DaeTarget,
)
from fastpptp.radius.dictionary import Attr, Code, ErrorCause
from fastpptp.radius.packet import Attribute, Packet, decode_packet, encode_request, verify_response
from fastpptp.shaping import RateLimit

SECRET = b"dae-s3cret"
DAC = ("192.0.2.10", 40000)
WALL = 1_800_000_000.0
SESSIONS = [
    DaeSession("aaaa000000000001", 101, "alice", "198.51.100.2", "203.0.113.5"),
    DaeSession("bbbb000000000002", 102, "bob", "198.51.100.3", "203.0.113.6"),
    DaeSession("cccc000000000003", 103, "alice", "198.51.100.4", "203.0.113.7"),
    DaeSession("dddd000000000004", 104, None, None, "203.0.113.8"),       # not authenticated yet
]


class FakeServer:
    def __init__(self, sessions=SESSIONS, fail=False):
        self.live = list(sessions)
        self.disconnected: list[tuple[list[str], str]] = []
        self.changed: list[tuple[list[str], CoaChange]] = []
        self.fail = fail

    def disconnect(self, ids, reason):
        if self.fail:
            raise RuntimeError("engine gone")
        self.disconnected.append((list(ids), reason))

    def change(self, ids, change):
        if self.fail:
            raise RuntimeError("engine gone")
        self.changed.append((list(ids), change))

    def target(self) -> DaeTarget:
        return DaeTarget(lambda: self.live, self.disconnect, self.change)


def core(server=None, **policy) -> tuple[DaeCore, FakeServer]:
    server = server or FakeServer()
    args = {"secret": SECRET, "allowed": (ipaddress.ip_network("192.0.2.0/28"),), **policy}
    return DaeCore(DaePolicy(**args), server.target()), server


def s(t, v: str) -> Attribute:
    return Attribute(t, v.encode())


def i(t, v: int) -> Attribute:
    return Attribute(t, v.to_bytes(4, "big"))


def ip(t, v: str) -> Attribute:
    return Attribute(t, ipaddress.ip_address(v).packed)


def request(code: Code, attrs, ident=7, secret=SECRET, message_authenticator=False) -> tuple[bytes, bytes]:
    return encode_request(Packet(code, ident, attributes=list(attrs)), secret,
                          with_message_authenticator=message_authenticator)


def answer(raw: bytes | None, code: Code, req_auth: bytes) -> Packet:
    assert raw is not None, "no answer"
    pkt = decode_packet(raw)
    verify_response(raw, pkt, code, req_auth, SECRET, require_message_authenticator=True)
    return pkt


def error_cause(pkt: Packet) -> int | None:
    return pkt.get_int(Attr.ERROR_CAUSE)


# ----------------------------------------------------------------------------- dropped

def _tamper(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[-1] ^= 1
    return bytes(b)


@pytest.mark.parametrize("case,make,counter", [
    ("disallowed source", lambda: (request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")])[0],
                                   ("192.0.2.99", 1)), "rx_disallowed_source"),
    ("wrong secret", lambda: (request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")],
                                      secret=b"guess")[0], DAC), "rx_bad_authenticator"),
    ("tampered", lambda: (_tamper(request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")])[0]), DAC),
     "rx_bad_authenticator"),
    ("random authenticator (Access-Request style)",
     lambda: (bytes([40, 7, 0, 25]) + bytes(range(16)) + b"\x01\x05bob", DAC),
     "rx_bad_authenticator"),
    ("not RADIUS", lambda: (b"\x28\x01\x00", DAC), "rx_malformed"),
    ("Access-Request", lambda: (encode_request(Packet(Code.ACCESS_REQUEST, 1, attributes=[
        s(Attr.USER_NAME, "bob")]), SECRET)[0], DAC), "rx_unexpected_code"),
    ("stale Event-Timestamp", lambda: (request(Code.DISCONNECT_REQUEST, [
        s(Attr.USER_NAME, "bob"), i(Attr.EVENT_TIMESTAMP, int(WALL) - 301)])[0], DAC), "rx_stale"),
    ("future Event-Timestamp", lambda: (request(Code.DISCONNECT_REQUEST, [
        s(Attr.USER_NAME, "bob"), i(Attr.EVENT_TIMESTAMP, int(WALL) + 301)])[0], DAC), "rx_stale"),
])
def test_dropped_silently_and_counted(case, make, counter):
    c, server = core()
    data, source = make()
    assert c.handle(data, source, 0.0, WALL) is None
    assert c.counters[counter] == 1
    assert server.disconnected == [] and server.changed == []


def test_bad_message_authenticator_is_dropped():
    c, server = core()
    raw, _ = request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")], message_authenticator=True)
    # re-sign the Request Authenticator over a corrupted Message-Authenticator: only the HMAC fails
    b = bytearray(raw)
    b[20 + 2] ^= 0xFF            # the Message-Authenticator is the first attribute
    b[4:20] = bytes(16)
    b[4:20] = hashlib.md5(bytes(b) + SECRET).digest()
    assert c.handle(bytes(b), DAC, 0.0, WALL) is None
    assert c.counters["rx_bad_message_authenticator"] == 1 and server.disconnected == []


def test_message_authenticator_required_by_policy():
    c, server = core(require_message_authenticator=True)
    without, _ = request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")])
    assert c.handle(without, DAC, 0.0, WALL) is None
    assert c.counters["rx_no_message_authenticator"] == 1
    with_ma, auth = request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")], ident=8,
                            message_authenticator=True)
    assert answer(c.handle(with_ma, DAC, 0.0, WALL), Code.DISCONNECT_REQUEST, auth).code == Code.DISCONNECT_ACK


def test_event_timestamp_required_by_policy_and_accepted_in_window():
    c, _ = core(require_event_timestamp=True)
    assert c.handle(request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")])[0], DAC, 0.0, WALL) is None
    assert c.counters["rx_stale"] == 1
    raw, auth = request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob"), i(Attr.EVENT_TIMESTAMP, int(WALL) - 299)],
                        ident=9)
    assert answer(c.handle(raw, DAC, 0.0, WALL), Code.DISCONNECT_REQUEST, auth).code == Code.DISCONNECT_ACK


def test_ipv4_mapped_source_is_checked_as_ipv4():
    c, _ = core()
    assert c.allowed("::ffff:192.0.2.10") and not c.allowed("::ffff:192.0.2.99")
    assert not c.allowed("not-an-address") and not c.allowed("2001:db8::1")


def test_no_allowed_networks_drops_everything():
    c, _ = core(allowed=())
    assert c.handle(request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")])[0], DAC, 0.0, WALL) is None
    assert c.counters["rx_disallowed_source"] == 1


# ----------------------------------------------------------------------------- duplicates

def test_retransmission_gets_the_cached_answer_and_is_not_executed_again():
    c, server = core()
    raw, auth = request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")])
    first = c.handle(raw, DAC, 0.0, WALL)
    again = c.handle(raw, DAC, 1.0, WALL + 1)
    assert first == again and answer(again, Code.DISCONNECT_REQUEST, auth).code == Code.DISCONNECT_ACK
    assert server.disconnected == [(["bbbb000000000002"], DISCONNECT_REASON)]
    assert c.counters["rx_duplicates"] == 1 and c.counters["tx_disconnect_ack"] == 1


def test_new_request_reusing_the_identifier_is_executed():
    c, server = core()
    c.handle(request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")])[0], DAC, 0.0, WALL)
    c.handle(request(Code.DISCONNECT_REQUEST, [i(Attr.NAS_PORT, 101)])[0],
             DAC, 1.0, WALL)
    assert [ids for ids, _ in server.disconnected] == [["bbbb000000000002"], ["aaaa000000000001"]]
    assert c.counters["rx_duplicates"] == 0


def test_duplicate_cache_expires_and_is_bounded():
    c, server = core(duplicate_lifetime=30.0, cache_size=2)
    raw, _ = request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")])
    c.handle(raw, DAC, 0.0, WALL)
    c.handle(raw, DAC, 31.0, WALL)          # expired: a replay is executed again
    assert len(server.disconnected) == 2
    for ident in (1, 2, 3):
        c.handle(request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")], ident=ident)[0], DAC, 32.0, WALL)
    assert len(c._cache) == 2


# ----------------------------------------------------------------------------- answers

@pytest.mark.parametrize("case,attrs,ids", [
    ("Acct-Session-Id", [s(Attr.ACCT_SESSION_ID, "bbbb000000000002")], ["bbbb000000000002"]),
    ("User-Name (two sessions)", [s(Attr.USER_NAME, "alice")], ["aaaa000000000001", "cccc000000000003"]),
    ("Framed-IP-Address", [ip(Attr.FRAMED_IP_ADDRESS, "198.51.100.4")], ["cccc000000000003"]),
    ("Calling-Station-Id", [s(Attr.CALLING_STATION_ID, "203.0.113.8")], ["dddd000000000004"]),
    ("NAS-Port", [i(Attr.NAS_PORT, 102)], ["bbbb000000000002"]),
    ("User-Name and Framed-IP-Address", [s(Attr.USER_NAME, "alice"), ip(Attr.FRAMED_IP_ADDRESS, "198.51.100.2")],
     ["aaaa000000000001"]),
    ("with our NAS identity, Proxy-State, Event-Timestamp, Acct-Terminate-Cause, Service-Type Framed",
     [s(Attr.NAS_IDENTIFIER, "nas1"), ip(Attr.NAS_IP_ADDRESS, "192.0.2.1"), i(Attr.NAS_PORT, 101),
      Attribute(Attr.PROXY_STATE, b"p1"), i(Attr.EVENT_TIMESTAMP, int(WALL)), i(Attr.ACCT_TERMINATE_CAUSE, 6),
      i(Attr.SERVICE_TYPE, 2), Attribute(Attr.PROXY_STATE, b"p2")], ["aaaa000000000001"]),
])
def test_disconnect_matches(case, attrs, ids):
    c, server = core(nas_identifier="nas1", nas_addresses=frozenset({ipaddress.ip_address("192.0.2.1")}))
    raw, auth = request(Code.DISCONNECT_REQUEST, attrs)
    pkt = answer(c.handle(raw, DAC, 0.0, WALL), Code.DISCONNECT_REQUEST, auth)
    assert pkt.code == Code.DISCONNECT_ACK and pkt.identifier == 7 and error_cause(pkt) is None
    assert server.disconnected == [(ids, DISCONNECT_REASON)]
    # RFC 5176 §3.6: Proxy-State echoed, in order
    assert pkt.get_all(Attr.PROXY_STATE) == [a.value for a in attrs if a.type == Attr.PROXY_STATE]
    assert c.counters["sessions_disconnected"] == len(ids)


@pytest.mark.parametrize("case,code,attrs,cause", [
    ("nothing matches", Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "mallory")], ErrorCause.SESSION_CONTEXT_NOT_FOUND),
    ("not all match", Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob"), i(Attr.NAS_PORT, 101)],
     ErrorCause.SESSION_CONTEXT_NOT_FOUND),
    ("unauthenticated session by user", Code.DISCONNECT_REQUEST, [s(Attr.ACCT_SESSION_ID, "dddd000000000004"),
                                                                 s(Attr.USER_NAME, "")],
     ErrorCause.SESSION_CONTEXT_NOT_FOUND),
    ("NAS-Identifier mismatch", Code.DISCONNECT_REQUEST, [s(Attr.NAS_IDENTIFIER, "other"), s(Attr.USER_NAME, "bob")],
     ErrorCause.NAS_IDENTIFICATION_MISMATCH),
    ("NAS-IP-Address mismatch", Code.DISCONNECT_REQUEST, [ip(Attr.NAS_IP_ADDRESS, "192.0.2.2"),
                                                         s(Attr.USER_NAME, "bob")], ErrorCause.NAS_IDENTIFICATION_MISMATCH),
    ("NAS-IPv6-Address mismatch", Code.COA_REQUEST, [ip(Attr.NAS_IPV6_ADDRESS, "2001:db8::2"),
                                                    s(Attr.USER_NAME, "bob"), i(Attr.SESSION_TIMEOUT, 5)],
     ErrorCause.NAS_IDENTIFICATION_MISMATCH),
    ("no session identification", Code.DISCONNECT_REQUEST, [s(Attr.NAS_IDENTIFIER, "nas1")],
     ErrorCause.MISSING_ATTRIBUTE),
    ("authorization change in a Disconnect", Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob"),
                                                                      i(Attr.SESSION_TIMEOUT, 5)],
     ErrorCause.UNSUPPORTED_ATTRIBUTE),
    ("unmatchable identification (Called-Station-Id)", Code.DISCONNECT_REQUEST,
     [s(Attr.USER_NAME, "bob"), s(Attr.CALLED_STATION_ID, "192.0.2.1")], ErrorCause.UNSUPPORTED_ATTRIBUTE),
    ("unknown vendor attribute", Code.COA_REQUEST, [s(Attr.USER_NAME, "bob"), Attribute(1, b"x", 4242)],
     ErrorCause.UNSUPPORTED_ATTRIBUTE),
    ("Cisco-AVPair that is no rate", Code.COA_REQUEST,
     [s(Attr.USER_NAME, "bob"), Attribute(CISCO_AVPAIR, b"subscriber:command=reauthenticate", VENDOR_CISCO)],
     ErrorCause.UNSUPPORTED_ATTRIBUTE),
    ("Filter-Id naming a filter", Code.COA_REQUEST, [s(Attr.USER_NAME, "bob"), s(Attr.FILTER_ID, "gold")],
     ErrorCause.UNSUPPORTED_ATTRIBUTE),
    ("bad Mikrotik-Rate-Limit", Code.COA_REQUEST,
     [s(Attr.USER_NAME, "bob"), Attribute(MIKROTIK_RATE_LIMIT, b"fast", VENDOR_MIKROTIK)],
     ErrorCause.INVALID_ATTRIBUTE_VALUE),
    ("bad Cisco-AVPair rate-limit", Code.COA_REQUEST,
     [s(Attr.USER_NAME, "bob"), Attribute(CISCO_AVPAIR, b"rate-limit sideways 1000", VENDOR_CISCO)],
     ErrorCause.INVALID_ATTRIBUTE_VALUE),
    ("Filter-Id rate above the maximum", Code.COA_REQUEST,
     [s(Attr.USER_NAME, "bob"), s(Attr.FILTER_ID, "200000000")], ErrorCause.INVALID_ATTRIBUTE_VALUE),
    ("CoA changing nothing", Code.COA_REQUEST, [s(Attr.USER_NAME, "bob")], ErrorCause.MISSING_ATTRIBUTE),
    ("Service-Type Login", Code.COA_REQUEST, [s(Attr.USER_NAME, "bob"), i(Attr.SERVICE_TYPE, 1),
                                             i(Attr.SESSION_TIMEOUT, 5)], ErrorCause.UNSUPPORTED_SERVICE),
])
def test_naks(case, code, attrs, cause):
    c, server = core(nas_identifier="nas1", nas_addresses=frozenset({ipaddress.ip_address("192.0.2.1"),
                                                                     ipaddress.ip_address("2001:db8::1")}))
    raw, auth = request(code, attrs + [Attribute(Attr.PROXY_STATE, b"ps")])
    pkt = answer(c.handle(raw, DAC, 0.0, WALL), code, auth)
    assert pkt.code == (Code.DISCONNECT_NAK if code == Code.DISCONNECT_REQUEST else Code.COA_NAK)
    assert error_cause(pkt) == cause
    assert pkt.get_all(Attr.PROXY_STATE) == [b"ps"]
    assert server.disconnected == [] and server.changed == []


def test_authorize_only_is_echoed_in_the_nak():
    c, _ = core()
    raw, auth = request(Code.COA_REQUEST, [s(Attr.ACCT_SESSION_ID, "bbbb000000000002"), i(Attr.SERVICE_TYPE, 17),
                                           Attribute(Attr.STATE, b"st")])
    pkt = answer(c.handle(raw, DAC, 0.0, WALL), Code.COA_REQUEST, auth)
    assert (pkt.code, error_cause(pkt), pkt.get_int(Attr.SERVICE_TYPE)) == (Code.COA_NAK, 405, 17)


def test_unconfigured_nas_identity_accepts_any():
    c, server = core()
    raw, auth = request(Code.DISCONNECT_REQUEST, [s(Attr.NAS_IDENTIFIER, "whatever"),
                                                  ip(Attr.NAS_IP_ADDRESS, "192.0.2.77"), s(Attr.USER_NAME, "bob")])
    assert answer(c.handle(raw, DAC, 0.0, WALL), Code.DISCONNECT_REQUEST, auth).code == Code.DISCONNECT_ACK


def test_failing_action_is_a_nak_506():
    c, _ = core(FakeServer(fail=True))
    raw, auth = request(Code.DISCONNECT_REQUEST, [s(Attr.USER_NAME, "bob")])
    pkt = answer(c.handle(raw, DAC, 0.0, WALL), Code.DISCONNECT_REQUEST, auth)
    assert (pkt.code, error_cause(pkt)) == (Code.DISCONNECT_NAK, ErrorCause.RESOURCES_UNAVAILABLE)
    assert c.counters["action_errors"] == 1


@pytest.mark.parametrize("attrs,change", [
    ([i(Attr.SESSION_TIMEOUT, 30)], CoaChange(session_timeout=30)),
    ([i(Attr.IDLE_TIMEOUT, 0)], CoaChange(idle_timeout=0)),
    ([Attribute(MIKROTIK_RATE_LIMIT, b"512k/2M", VENDOR_MIKROTIK)], CoaChange(rate=RateLimit(2000, 512))),
    ([Attribute(CISCO_AVPAIR, b"lcp:interface-config#1=rate-limit output 1024000 192000 384000 "
                              b"conform-action transmit exceed-action drop", VENDOR_CISCO),
      Attribute(CISCO_AVPAIR, b"lcp:interface-config#2=rate-limit input 256000 48000 96000 "
                              b"conform-action transmit exceed-action drop", VENDOR_CISCO)],
     CoaChange(rate=RateLimit(1024, 256))),
    ([s(Attr.FILTER_ID, "4000/1000")], CoaChange(rate=RateLimit(4000, 1000))),
    ([s(Attr.FILTER_ID, "10M:2M")], CoaChange(rate=RateLimit(10000, 2000))),      # accel-ppp's forms
    # precedence: Mikrotik-Rate-Limit, else Cisco-AVPair, else Filter-Id
    ([s(Attr.FILTER_ID, "4000/1000"), Attribute(CISCO_AVPAIR, b"rate-limit output 3000000 1 1", VENDOR_CISCO),
      Attribute(MIKROTIK_RATE_LIMIT, b"1M/2M", VENDOR_MIKROTIK)], CoaChange(rate=RateLimit(2000, 1000))),
    ([s(Attr.FILTER_ID, "4000/1000"), Attribute(CISCO_AVPAIR, b"rate-limit output 3000000 1 1", VENDOR_CISCO)],
     CoaChange(rate=RateLimit(3000, 0))),
    ([i(Attr.SESSION_TIMEOUT, 60), i(Attr.IDLE_TIMEOUT, 10), s(Attr.FILTER_ID, "0")],
     CoaChange(session_timeout=60, idle_timeout=10, rate=RateLimit(0, 0))),
])
def test_coa_changes(attrs, change):
    c, server = core()
    raw, auth = request(Code.COA_REQUEST, [s(Attr.ACCT_SESSION_ID, "bbbb000000000002"), *attrs],
                        message_authenticator=True)
    pkt = answer(c.handle(raw, DAC, 0.0, WALL), Code.COA_REQUEST, auth)
    assert pkt.code == Code.COA_ACK and pkt.has(Attr.MESSAGE_AUTHENTICATOR)
    assert server.changed == [(["bbbb000000000002"], change)]
    assert c.counters["tx_coa_ack"] == 1 and c.counters["sessions_changed"] == 1


def test_coa_nothing_matches():
    c, server = core()
    raw, auth = request(Code.COA_REQUEST, [s(Attr.USER_NAME, "mallory"), i(Attr.SESSION_TIMEOUT, 5)])
    pkt = answer(c.handle(raw, DAC, 0.0, WALL), Code.COA_REQUEST, auth)
    assert (pkt.code, error_cause(pkt)) == (Code.COA_NAK, ErrorCause.SESSION_CONTEXT_NOT_FOUND)
    assert c.counters["tx_coa_nak"] == 1 and server.changed == []


def test_policy_repr_hides_the_secret():
    assert "s3cret" not in repr(DaePolicy(secret=SECRET, allowed=()))
