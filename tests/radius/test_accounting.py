"""fastpptp.radius.accounting: the Accounting-Request attributes of Start, Interim-Update, Stop,
Accounting-On/-Off (RFC 2866 §5, RFC 2869 §5.1/§5.2 gigawords), the Acct-Terminate-Cause of
each typed end cause, the interim interval and the bound on outstanding requests."""
import ipaddress
import struct

import pytest

from fastpptp.radius.accounting import (
    AccountingBacklog, AcctAuthentic, AcctSession, Nas, RequestKind, Usage, accounting_off_attributes,
    accounting_on_attributes, interim_attributes, interim_interval, start_attributes, stop_attributes,
    TERMINATE_CAUSES, terminate_cause,
)
from fastpptp.radius.dictionary import AcctStatusType, AcctTerminateCause, Attr, Code
from fastpptp.radius.packet import Packet, decode_packet, encode_request
from fastpptp.server import Server
from fastpptp.teardown import Teardown

C = AcctTerminateCause
NAS = Nas("fastpptp-nas", ipaddress.IPv4Address("192.0.2.1"))
SESSION = AcctSession(
    session_id="0123456789abcdef", nas_port=0x4D2, calling_station="203.0.113.9", user="alice",
    called_station="192.0.2.1", framed_ip=ipaddress.IPv4Address("198.51.100.2"), port_id="ppp3",
    classes=(b"gold-plan", bytes(range(0, 40))), authentic=AcctAuthentic.RADIUS)
TS = 1_800_000_000


def _wire(attrs):
    """Through the codec and back: the lists are valid RADIUS (lengths, integer sizes)."""
    wire, _ = encode_request(Packet(Code.ACCOUNTING_REQUEST, 7, attributes=attrs), b"secret")
    return decode_packet(wire)


def _u32(p, attr):
    return p.get_int(attr)


def test_start_names_the_session():
    p = _wire(start_attributes(NAS, SESSION, timestamp=TS))
    assert _u32(p, Attr.ACCT_STATUS_TYPE) == AcctStatusType.START
    assert p.get_text(Attr.ACCT_SESSION_ID) == "0123456789abcdef"
    assert p.get_text(Attr.USER_NAME) == "alice"
    assert p.get_ipv4(Attr.NAS_IP_ADDRESS) == ipaddress.IPv4Address("192.0.2.1")
    assert p.get_text(Attr.NAS_IDENTIFIER) == "fastpptp-nas"
    assert _u32(p, Attr.NAS_PORT) == 0x4D2                      # our call ID
    assert _u32(p, Attr.NAS_PORT_TYPE) == 5                     # Virtual
    assert p.get_text(Attr.NAS_PORT_ID) == "ppp3"
    assert _u32(p, Attr.SERVICE_TYPE) == 2                      # Framed
    assert _u32(p, Attr.FRAMED_PROTOCOL) == 1                   # PPP
    assert p.get_text(Attr.CALLING_STATION_ID) == "203.0.113.9"
    assert p.get_text(Attr.CALLED_STATION_ID) == "192.0.2.1"
    assert p.get_ipv4(Attr.FRAMED_IP_ADDRESS) == ipaddress.IPv4Address("198.51.100.2")
    assert _u32(p, Attr.ACCT_AUTHENTIC) == 1                    # RADIUS
    assert _u32(p, Attr.EVENT_TIMESTAMP) == TS
    # a Start has no usage and no cause; Acct-Delay-Time is the client's (on retransmits)
    for absent in (Attr.ACCT_INPUT_OCTETS, Attr.ACCT_SESSION_TIME, Attr.ACCT_TERMINATE_CAUSE,
                   Attr.ACCT_DELAY_TIME):
        assert not p.has(absent)


def test_unknown_user_address_and_interface_are_left_out():
    bare = AcctSession(session_id="s", nas_port=1, calling_station="203.0.113.9")
    p = _wire(start_attributes(Nas("n"), bare, timestamp=TS))
    for absent in (Attr.USER_NAME, Attr.FRAMED_IP_ADDRESS, Attr.NAS_PORT_ID, Attr.CALLED_STATION_ID,
                   Attr.CLASS, Attr.NAS_IP_ADDRESS):
        assert not p.has(absent)
    assert _u32(p, Attr.ACCT_AUTHENTIC) == AcctAuthentic.LOCAL


def test_nas_needs_an_identifier_or_an_address_and_ipv6_has_its_own_attribute():
    with pytest.raises(ValueError):
        Nas()
    v6 = Nas(ip_address=ipaddress.IPv6Address("2001:db8::1")).attributes()
    assert [(a.type, a.value) for a in v6] == [(Attr.NAS_IPV6_ADDRESS,
                                                 ipaddress.IPv6Address("2001:db8::1").packed)]


@pytest.mark.parametrize("octets,low,gigawords", [
    (0, 0, 0),
    (1500, 1500, 0),
    ((1 << 32) - 1, (1 << 32) - 1, 0),       # the last value before the first wrap
    (1 << 32, 0, 1),                         # RFC 2869 §5.1: one wrap
    (5 * (1 << 32) + 7, 7, 5),
])
def test_octets_and_gigawords_rfc2869(octets, low, gigawords):
    usage = Usage(input_octets=octets, output_octets=octets * 3)
    p = _wire(interim_attributes(NAS, SESSION, usage, session_time=10, timestamp=TS))
    assert (_u32(p, Attr.ACCT_INPUT_OCTETS), _u32(p, Attr.ACCT_INPUT_GIGAWORDS)) == (low, gigawords)
    total_out = _u32(p, Attr.ACCT_OUTPUT_GIGAWORDS) * (1 << 32) + _u32(p, Attr.ACCT_OUTPUT_OCTETS)
    assert total_out == octets * 3


def test_input_is_what_the_user_sent_the_engines_rx():
    usage = Usage.from_engine({"rx_bytes": 100, "tx_bytes": 2000, "rx_packets": 3, "tx_packets": 4,
                               "drop_rate_limit": 9})
    assert usage == Usage(input_octets=100, output_octets=2000, input_packets=3, output_packets=4)
    p = _wire(interim_attributes(NAS, SESSION, usage, session_time=61, timestamp=TS))
    assert _u32(p, Attr.ACCT_STATUS_TYPE) == AcctStatusType.INTERIM_UPDATE
    assert [_u32(p, a) for a in (Attr.ACCT_INPUT_OCTETS, Attr.ACCT_OUTPUT_OCTETS, Attr.ACCT_INPUT_PACKETS,
                                 Attr.ACCT_OUTPUT_PACKETS, Attr.ACCT_SESSION_TIME)] == [100, 2000, 3, 4, 61]
    assert Usage.from_engine({}) == Usage()


def test_packet_counts_wrap_at_32_bits():
    p = _wire(interim_attributes(NAS, SESSION, Usage(input_packets=(1 << 32) + 2), session_time=1,
                                 timestamp=TS))
    assert _u32(p, Attr.ACCT_INPUT_PACKETS) == 2


def test_stop_carries_the_final_counters_and_the_cause():
    p = _wire(stop_attributes(NAS, SESSION, Usage(10, 20, 1, 2), session_time=3600,
                              cause=C.SESSION_TIMEOUT, timestamp=TS))
    assert _u32(p, Attr.ACCT_STATUS_TYPE) == AcctStatusType.STOP
    assert _u32(p, Attr.ACCT_TERMINATE_CAUSE) == C.SESSION_TIMEOUT
    assert _u32(p, Attr.ACCT_SESSION_TIME) == 3600
    assert (_u32(p, Attr.ACCT_INPUT_OCTETS), _u32(p, Attr.ACCT_OUTPUT_OCTETS)) == (10, 20)
    assert p.get_text(Attr.ACCT_SESSION_ID) == SESSION.session_id


@pytest.mark.parametrize("build", [
    lambda: start_attributes(NAS, SESSION, timestamp=TS),
    lambda: interim_attributes(NAS, SESSION, Usage(), session_time=0, timestamp=TS),
    lambda: stop_attributes(NAS, SESSION, Usage(), session_time=0, cause=C.USER_REQUEST, timestamp=TS),
], ids=["start", "interim", "stop"])
def test_class_values_are_echoed_verbatim_in_every_record(build):
    # RFC 2865 §5.25: sent unmodified, every one, in their order
    assert _wire(build()).get_all(Attr.CLASS) == [b"gold-plan", bytes(range(0, 40))]


def test_accounting_on_and_off_name_the_nas_only():
    for build, status in ((accounting_on_attributes, AcctStatusType.ACCOUNTING_ON),
                          (accounting_off_attributes, AcctStatusType.ACCOUNTING_OFF)):
        p = _wire(build(NAS, "feedfacecafebeef", timestamp=TS))
        assert _u32(p, Attr.ACCT_STATUS_TYPE) == status
        assert p.get_text(Attr.ACCT_SESSION_ID) == "feedfacecafebeef"
        assert p.get_text(Attr.NAS_IDENTIFIER) == "fastpptp-nas"
        assert _u32(p, Attr.EVENT_TIMESTAMP) == TS
        for absent in (Attr.USER_NAME, Attr.NAS_PORT, Attr.ACCT_INPUT_OCTETS, Attr.CLASS):
            assert not p.has(absent)


# --- Acct-Terminate-Cause ----------------------------------------------------------------------

T = Teardown
#: the specification of terminate_cause: every Teardown cause with its Acct-Terminate-Cause
CAUSE_TABLE = [
    # the peer hung up: its LCP Terminate-Request (whatever its text says), its PPTP
    # Call-Clear-Request
    (T.PEER_TERMINATE, C.USER_REQUEST),
    (T.PEER_CALL_CLEAR, C.USER_REQUEST),
    # the verifier's limits (aio/session.py)
    (T.SESSION_TIMEOUT, C.SESSION_TIMEOUT),
    (T.IDLE_TIMEOUT, C.IDLE_TIMEOUT),
    # carrier lost: TCP gone, PPTP or LCP echo unanswered, stateless MPPE out of step
    (T.CONTROL_LOST, C.LOST_CARRIER),
    (T.ECHO_TIMEOUT, C.LOST_CARRIER),
    (T.MPPE_LOST_SYNC, C.LOST_CARRIER),
    # the operator: `fastpptp terminate`, the embedding API, a RADIUS Disconnect-Request
    (T.ADMIN, C.ADMIN_RESET),
    (T.DISCONNECT_REQUEST, C.ADMIN_RESET),
    (T.SHUTDOWN, C.ADMIN_REBOOT),
    # failures
    (T.AUTH_FAILED, C.USER_ERROR),
    (T.NEGOTIATION_FAILED, C.SERVICE_UNAVAILABLE),
    (T.LOOPBACK, C.PORT_ERROR),
    (T.INTERNAL_ERROR, C.NAS_ERROR),
    # the NAS ended it for a reason not listed
    (T.LOCAL_CLOSE, C.NAS_REQUEST),
    (T.NO_ADDRESS, C.NAS_REQUEST),
]


@pytest.mark.parametrize("cause,acct", CAUSE_TABLE)
def test_terminate_cause_table(cause, acct):
    assert terminate_cause(cause) is acct


def test_terminate_cause_table_lists_every_teardown_cause():
    # the table above is the specification: a new cause must be given its Acct-Terminate-Cause
    listed = [c for c, _ in CAUSE_TABLE]
    assert len(listed) == len(set(listed)) and set(listed) == set(Teardown) == set(TERMINATE_CAUSES)


@pytest.mark.parametrize("cause", list(Teardown))
def test_a_server_shutting_down_reboots_every_session(cause):
    # SIGTERM, SIGINT, stop(): Admin-Reboot, whatever ended the session meanwhile
    assert terminate_cause(cause, shutdown=True) is C.ADMIN_REBOOT


# --- Acct-Interim-Interval -----------------------------------------------------------------------

@pytest.mark.parametrize("reply,configured,floor,interval", [
    (None, 0, 60, 0),          # none anywhere: no interims
    (None, 300, 60, 300),      # the configured one
    (600, 300, 60, 600),       # the Access-Accept's wins
    (0, 300, 60, 300),         # a zero in the reply names none
    (10, 0, 60, 60),           # RFC 2869 §5.16 / pppd: at least 60
    (None, 5, 60, 60),
    (1, 0, 1, 1),              # a lower floor (tests)
    (None, 2, 1, 2),
])
def test_interim_interval(reply, configured, floor, interval):
    assert interim_interval(reply, configured, floor) == interval


# --- the backlog -----------------------------------------------------------------------------------

START, INTERIM, STOP, ON, OFF = RequestKind.START, RequestKind.INTERIM, RequestKind.STOP, RequestKind.ON, RequestKind.OFF


def test_backlog_a_newer_record_supersedes_the_sessions_unanswered_interim():
    b = AccountingBacklog(10)
    start = b.admit(START, "a").key
    first = b.admit(INTERIM, "a").key
    other = b.admit(INTERIM, "b").key
    second = b.admit(INTERIM, "a")
    assert second.cancel == (first,) and second.key is not None
    stop = b.admit(STOP, "a")
    assert stop.cancel == (second.key,)              # the Stop carries the final counters
    assert b.kinds() == [START, INTERIM, STOP] and b.counters["interim_superseded"] == 2
    assert start is not None and other is not None


@pytest.mark.parametrize("outstanding,new,sent,dropped,counter", [
    # full: the oldest Interim-Update goes first, whatever comes
    ([START, INTERIM, INTERIM], STOP, True, 1, "interim_dropped"),
    ([START, INTERIM, INTERIM], START, True, 1, "interim_dropped"),
    ([INTERIM, START, START], INTERIM, True, 0, "interim_dropped"),
    # no interim left: a new interim is not sent; a new Start replaces the oldest Start
    ([START, STOP, START], INTERIM, False, None, "interim_dropped"),
    ([STOP, START, START], START, True, 1, "start_dropped"),
    # a Stop, Accounting-On/-Off are never given up: admitted over the limit
    ([START, STOP, START], STOP, True, None, "over_limit"),
    ([STOP, STOP, ON], OFF, True, None, "over_limit"),
    ([STOP, STOP, STOP], START, True, None, "over_limit"),
])
def test_backlog_over_the_limit(outstanding, new, sent, dropped, counter):
    b = AccountingBacklog(3)
    keys = [b.admit(kind, f"s{n}").key for n, kind in enumerate(outstanding)]
    a = b.admit(new, "new")
    assert (a.key is not None) == sent
    assert a.cancel == (() if dropped is None else (keys[dropped],))
    assert b.counters[counter] == 1 and sum(b.counters.values()) == 1
    assert RequestKind.STOP not in [outstanding[keys.index(k)] for k in a.cancel]


def test_backlog_done_frees_a_place_and_the_limit_is_checked():
    b = AccountingBacklog(1)
    k = b.admit(STOP, "a").key
    b.done(k)
    b.done(k)                              # twice: harmless
    assert len(b) == 0 and b.admit(INTERIM, "b").key is not None
    with pytest.raises(ValueError):
        AccountingBacklog(0)


def test_every_record_fits_one_packet_with_many_classes():
    many = AcctSession(session_id="s" * 16, nas_port=65535, calling_station="2001:db8::1" * 3, user="u" * 253,
                       classes=tuple(bytes([n]) * 253 for n in range(8)))
    wire, _ = encode_request(Packet(Code.ACCOUNTING_REQUEST, 1, attributes=stop_attributes(
        NAS, many, Usage(1, 2, 3, 4), session_time=1, cause=C.USER_REQUEST, timestamp=TS)), b"k")
    assert len(wire) <= 4096 and struct.unpack_from("!H", wire, 2)[0] == len(wire)


def test_acct_session_id_is_unique_across_restarts():
    """Acct-Session-Id is the session ID: 64 bits from the system's CSPRNG (no counter that
    starts again with the process), so two runs of the server never reuse one."""
    import random

    from fastpptp.server import ServerConfig

    def ids(n):
        server = Server(ServerConfig(control_socket=None), configure_network=False)
        assert isinstance(server._rng, random.SystemRandom)     # os.urandom, not a seed
        return [server._new_session_id() for _ in range(n)]
    first, second = ids(500), ids(500)          # two "runs"
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in first + second)
    assert len(set(first) | set(second)) == 1000
