"""External verification of the sans-I/O authenticators (issue 11, the RADIUS contract):
VerifyRequest out, VerifyResult in, the pending state, late and dead verdicts, keys and the
MS-CHAPv2 authenticator response passed through, reply attributes reaching IPCP."""
import random
from ipaddress import IPv4Address

import pytest

from fastpptp.crypto import mschap
from fastpptp.ppp.auth.base import (
    FRAMED_IP_FROM_POOL, FRAMED_IP_PEER_CHOOSES, AuthFailed, AuthSucceeded, AuthTimers,
    ReplyAttributes, VerifyRequest, VerifyResult,
)
from fastpptp.ppp.auth.chap import (
    ChapAuthenticator, ChapCode, ChapPeer, ChapValuePacket, decode_chap,
    mschapv2_response_value, parse_ms_failure,
)
from fastpptp.ppp.auth.local import LocalVerifier
from fastpptp.ppp.auth.pap import PapAuthenticator, PapCode, PapPeer, decode_pap
from fastpptp.ppp.auth.policy import AuthPolicy
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.ppp.constants import AuthMethod, Protocol
from fastpptp.ppp.ipcp import IpcpConfig
from fastpptp.ppp.lcp import LcpConfig
from fastpptp.shaping import RateLimit
from fastpptp.ppp.link import (
    MPPE_NOT_NEGOTIATED, Authenticated, AuthenticationFailed, LinkConfig, LinkDown, MppeUp,
    NetworkUp, PPPLink, VerifyPeer,
)

PAP, MD5, V1, V2 = (AuthMethod.PAP, AuthMethod.CHAP_MD5, AuthMethod.MSCHAP_V1,
                    AuthMethod.MSCHAP_V2)
METHODS = [PAP, MD5, V1, V2]
USERS = {"u": "pw"}
TIMERS = AuthTimers(restart=3, max_transmits=10, wait=60, verify_timeout=10)
LOCAL = LocalVerifier(StaticBackend(USERS))


def machines(method, password="pw", retries=0, backend=None, timers=TIMERS):
    """An authenticator (external unless ``backend``) and a peer, both started."""
    if method is PAP:
        auth = PapAuthenticator(backend, random.Random(1), timers, server_name="srv")
        peer = PapPeer("u", password, random.Random(2), timers)
    else:
        auth = ChapAuthenticator(method, backend, random.Random(1), "srv", timers, retries=retries)
        peer = ChapPeer(method, "u", password, random.Random(2), timers)
    auth.start(0.0)
    peer.start(0.0)
    return auth, peer


def shuttle(auth, peer, now=0.0):
    """Frames both ways until quiet; returns what the authenticator sent."""
    sent = []
    for _ in range(6):
        fa, fp = auth.frames_to_send(), peer.frames_to_send()
        if not fa and not fp:
            break
        sent += fa
        for _, f in fa:
            peer.receive(f, now)
        for _, f in fp:
            auth.receive(f, now)
    return sent


def drain(m):
    out = []
    while (ev := m.next_event()) is not None:
        out.append(ev)
    return out


def pending_request(method, **kw):
    auth, peer = machines(method, **kw)
    shuttle(auth, peer)
    (req,) = drain(auth)
    assert isinstance(req, VerifyRequest) and auth.pending is req
    return auth, peer, req


def verdict_code(frames):
    ((proto, payload),) = frames
    return decode_pap(payload).code if proto == Protocol.PAP else decode_chap(payload).code


# --------------------------------------------------------------------------- the request

@pytest.mark.parametrize("method", METHODS)
def test_request_carries_the_credentials_and_nothing_is_answered(method):
    auth, peer, req = pending_request(method)
    assert (req.method, req.user, req.name, req.server_name) == (method, "u", b"u", "srv")
    assert auth.frames_to_send() == [] and not auth.finished
    if method is PAP:
        assert (req.password, req.challenge, req.response) == (b"pw", b"", b"")
        assert "b'pw'" not in repr(req)                   # the password stays out of repr
    else:
        assert req.challenge == auth.challenge and req.identifier == auth.identifier
        assert len(req.response) == (16 if method is MD5 else 49)
        assert req.password == b""


@pytest.mark.parametrize("method", METHODS)
def test_local_verdict_given_later_is_what_the_sync_authenticator_sends(method):
    """External + LocalVerifier later == the synchronous path, byte for byte."""
    sync, sync_peer = machines(method, backend=StaticBackend(USERS))
    sync_sent = shuttle(sync, sync_peer)
    auth, peer, req = pending_request(method)
    auth.verified(req, LOCAL.verify(req), 1.0)
    sent = auth.frames_to_send()
    assert sent == sync_sent[-1:]                    # the same Ack / Success packet
    for _, f in sent:
        peer.receive(f, 1.0)
    (ev,) = drain(auth)
    assert isinstance(ev, AuthSucceeded) and ev.user == "u"
    assert isinstance(drain(peer)[0], AuthSucceeded)     # MS-CHAPv2: S= checked by the peer
    if method in (V1, V2):
        assert (ev.result.mppe_send_key, ev.result.mppe_recv_key) == (
            sync.result.mppe_send_key, sync.result.mppe_recv_key)
        assert ev.result.mppe_send_key == peer.result.mppe_recv_key


@pytest.mark.parametrize("method,failure_text", [
    (PAP, "Login incorrect"), (MD5, "Access denied"),
    (V1, "E=691 R=0 C={c} V=0"), (V2, "E=691 R=0 C={c} V=3 M=Access denied")])
def test_rejection_gives_the_usual_failure(method, failure_text):
    auth, peer, req = pending_request(method, password="wrong")
    auth.verified(req, LOCAL.verify(req), 1.0)
    ((_, f),) = auth.frames_to_send()
    msg = (decode_pap(f) if method is PAP else decode_chap(f)).message.decode()
    assert msg == failure_text.format(c=req.challenge.hex().upper())
    (ev,) = drain(auth)
    assert isinstance(ev, AuthFailed) and "wrong" in ev.reason


# --------------------------------------------------------------------------- pending state

@pytest.mark.parametrize("method", METHODS)
def test_retransmits_while_pending_are_not_verified_twice(method):
    auth, peer, req = pending_request(method)
    # the peer's own retransmission (PAP) or the same Response again (CHAP)
    if method is PAP:
        peer.handle_timer(3.0)
        frames = peer.frames_to_send()
    else:
        frames = [(Protocol.CHAP, peer._last_response)]
    assert frames
    for _, f in frames:
        auth.receive(f, 3.0)
    assert auth.ignored_while_pending == 1
    assert auth.frames_to_send() == [] and drain(auth) == []
    # the Challenge is not retransmitted while the verdict is pending
    auth.handle_timer(3.5)
    assert auth.frames_to_send() == []
    auth.verified(req, LOCAL.verify(req), 4.0)
    assert verdict_code(auth.frames_to_send()) in (PapCode.AUTHENTICATE_ACK, ChapCode.SUCCESS)
    assert [type(e) for e in drain(auth)] == [AuthSucceeded]


@pytest.mark.parametrize("method", METHODS)
def test_verify_timeout_fails_cleanly_and_the_late_verdict_is_dropped(method):
    auth, peer, req = pending_request(method)
    assert auth.get_timer() == 10.0                      # verify_timeout, not the 60 s wait
    auth.handle_timer(9.9)
    assert auth.frames_to_send() == [] and drain(auth) == []
    auth.handle_timer(10.0)
    assert verdict_code(auth.frames_to_send()) in (PapCode.AUTHENTICATE_NAK, ChapCode.FAILURE)
    (ev,) = drain(auth)
    assert isinstance(ev, AuthFailed) and "verifier" in ev.reason
    auth.verified(req, LOCAL.verify(req), 11.0)          # the verdict, too late
    assert auth.late_verdicts == 1
    assert auth.frames_to_send() == [] and drain(auth) == [] and not auth.succeeded


def test_timeout_never_offers_an_mschap_retry():
    auth, peer, req = pending_request(V2, retries=2)
    auth.handle_timer(10.0)
    ((_, f),) = auth.frames_to_send()
    assert parse_ms_failure(decode_chap(f).message.decode()).retry is False
    assert isinstance(drain(auth)[0], AuthFailed)


@pytest.mark.parametrize("method", METHODS)
def test_second_verdict_for_the_same_request_is_dropped(method):
    auth, peer, req = pending_request(method)
    auth.verified(req, LOCAL.verify(req), 1.0)
    auth.frames_to_send()
    auth.verified(req, VerifyResult(False), 1.1)
    assert auth.late_verdicts == 1 and auth.frames_to_send() == []
    assert [type(e) for e in drain(auth)] == [AuthSucceeded]


def test_verdict_for_the_old_identifier_after_an_mschap_retry_is_dropped():
    auth, peer, first = pending_request(V2, password="wrong", retries=1)
    auth.verified(first, LOCAL.verify(first), 1.0)       # Failure R=1, a new challenge
    ((_, f),) = auth.frames_to_send()
    failure = parse_ms_failure(decode_chap(f).message.decode())
    assert failure.retry and failure.challenge == auth.challenge
    # the peer retries (RFC 2759 §6): the new challenge, the Failure's Identifier + 1
    value = mschapv2_response_value(failure.challenge, bytes(16), b"u", "pw")
    auth.receive(ChapValuePacket(ChapCode.RESPONSE, (first.identifier + 1) & 0xFF, value,
                                 b"u").encode(), 1.5)
    (second,) = drain(auth)
    assert isinstance(second, VerifyRequest)
    assert second.identifier == (first.identifier + 1) & 0xFF
    assert second.challenge != first.challenge
    auth.verified(first, VerifyResult(True, authenticator_response="S=" + "0" * 40), 2.0)
    assert auth.late_verdicts == 1 and auth.frames_to_send() == [] and drain(auth) == []
    assert auth.pending is second


def test_a_request_of_equal_fields_is_not_the_pending_one():
    """Verdicts answer the very request object (identity), not a look-alike."""
    auth, peer, req = pending_request(MD5)
    twin = VerifyRequest(req.method, req.user, req.identifier, req.challenge, req.response,
                         server_name=req.server_name, name=req.name)
    auth.verified(twin, VerifyResult(True), 1.0)
    assert auth.late_verdicts == 1 and auth.pending is req


def test_the_verifiers_reject_reason_reaches_the_event():
    auth, peer, req = pending_request(MD5)
    auth.verified(req, VerifyResult(False, reason="RADIUS Access-Reject"), 1.0)
    (ev,) = drain(auth)
    assert isinstance(ev, AuthFailed) and ev.reason == "RADIUS Access-Reject"


# --------------------------------------------------------------------------- passed through

def test_mschapv2_authenticator_response_and_keys_come_from_the_verifier():
    auth, peer, req = pending_request(V2)
    s = "S=" + "AB" * 20
    send, recv = bytes(range(16)), bytes(range(16, 32))
    auth.verified(req, VerifyResult(True, "u", authenticator_response=s, mppe_send_key=send,
                                    mppe_recv_key=recv,
                                    attributes=ReplyAttributes(session_timeout=60)), 1.0)
    ((_, f),) = auth.frames_to_send()
    assert decode_chap(f).message == f"{s} M=Access granted".encode()   # S= verbatim
    (ev,) = drain(auth)
    assert (ev.result.mppe_send_key, ev.result.mppe_recv_key) == (send, recv)
    assert ev.result.attributes.session_timeout == 60
    assert ev.result.nt_response == req.response[24:48]
    assert ev.result.peer_challenge == req.response[:16]


def test_mschapv2_success_without_m_when_the_peer_sets_the_flags_octet():
    auth = ChapAuthenticator(V2, None, random.Random(1), "srv", TIMERS)
    auth.start(0.0)
    auth.frames_to_send()
    value = mschapv2_response_value(auth.challenge, bytes(16), b"u", "pw")[:48] + b"\x01"
    auth.receive(ChapValuePacket(ChapCode.RESPONSE, auth.identifier, value, b"u").encode(), 0.1)
    (req,) = drain(auth)
    s = mschap.generate_authenticator_response("pw", value[24:48], bytes(16), auth.challenge, b"u")
    auth.verified(req, VerifyResult(True, authenticator_response=s, message="Welcome"), 0.2)
    ((_, f),) = auth.frames_to_send()
    assert decode_chap(f).message == s.encode()


def test_mschapv2_accept_without_authenticator_response_is_a_failure():
    auth, peer, req = pending_request(V2)
    auth.verified(req, VerifyResult(True, mppe_send_key=bytes(16), mppe_recv_key=bytes(16)), 1.0)
    assert verdict_code(auth.frames_to_send()) == ChapCode.FAILURE
    (ev,) = drain(auth)
    assert isinstance(ev, AuthFailed) and "authenticator response" in ev.reason


@pytest.mark.parametrize("theirs,expected", [
    ("E=649 R=1 C=00112233445566778899AABBCCDDEEFF V=3 M=No dial-in permission",
     "E=649 R=0 C={c} V=3 M=No dial-in permission"),
    ("E=691 R=0", "E=691 R=0 C={c} V=3"),
    ("garbage", "E=691 R=0 C={c} V=3"),
])
def test_mschap_error_maps_to_our_failure_packet(theirs, expected):
    """The verifier's E= and M= reach the peer; R=, C=, V= follow our policy and challenge."""
    auth, peer, req = pending_request(V2)
    auth.verified(req, VerifyResult(False, failure_message=theirs), 1.0)
    ((_, f),) = auth.frames_to_send()
    assert decode_chap(f).message.decode() == expected.format(c=req.challenge.hex().upper())
    peer.receive(f, 1.0)
    (ev,) = drain(peer)
    assert isinstance(ev, AuthFailed) and ev.message == expected.format(
        c=req.challenge.hex().upper())


@pytest.mark.parametrize("method,reply", [(PAP, "Welcome"), (MD5, "Welcome")])
def test_success_and_failure_texts_from_the_verifier(method, reply):
    auth, peer, req = pending_request(method)
    auth.verified(req, VerifyResult(True, message=reply), 1.0)
    ((_, f),) = auth.frames_to_send()
    assert (decode_pap(f) if method is PAP else decode_chap(f)).message == reply.encode()
    auth2, _, req2 = pending_request(method)
    auth2.verified(req2, VerifyResult(False, failure_message="Account expired"), 1.0)
    ((_, f2),) = auth2.frames_to_send()
    assert (decode_pap(f2) if method is PAP else decode_chap(f2)).message == b"Account expired"


# --------------------------------------------------------------------------- the link

SERVER_IP, POOL_IP, CLIENT_WANTS = "198.51.100.1", "198.51.100.2", "198.51.100.77"


def server_link(options="auth require-mschap-v2 require-mppe-128", **kw):
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=0), policy=AuthPolicy.from_options(options),
                     ipcp=IpcpConfig(local_address=SERVER_IP, peer_address=POOL_IP),
                     name="pptpd", dns=("192.0.2.53",), auth_timers=TIMERS, **kw)
    return PPPLink(cfg, "server", None, random.Random(1), external_verifier=True)


def client_link(options="noauth require-mppe-128", local_address=None):
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=0), policy=AuthPolicy.from_options(options),
                     ipcp=IpcpConfig(request_dns=True, local_address=local_address),
                     user="u", password="pw", remotename="pptpd")
    return PPPLink(cfg, "client", None, random.Random(2))


class Pair:
    def __init__(self, server, client):
        self.s, self.c = server, client
        self.events = {id(server): [], id(client): []}
        client.lower_up(0.0)
        server.lower_up(0.0)
        self.run()

    def run(self, now=0.0):
        for _ in range(60):
            moved = False
            for src, dst in ((self.s, self.c), (self.c, self.s)):
                for proto, payload in src.frames_to_send():
                    moved = True
                    dst.receive(proto, payload, now)
            for link in (self.s, self.c):
                self.events[id(link)].extend(link.events())
            if not moved:
                return

    def of(self, link, kind):
        return [e for e in self.events[id(link)] if isinstance(e, kind)]


def test_link_pending_verdict_then_mppe_with_the_verifiers_keys():
    p = Pair(server_link(), client_link())
    (vp,) = p.of(p.s, VerifyPeer)
    assert p.of(p.c, Authenticated) == [] and p.s.phase.value == "Authenticate"
    local = LOCAL.verify(vp.request)
    p.s.verified(vp.request, local, 0.5)
    p.run(0.5)
    (auth,) = p.of(p.s, Authenticated)
    assert auth.user == "u" and auth.direction == "peer"
    (mppe,) = p.of(p.s, MppeUp)
    assert (mppe.send_key, mppe.recv_key) == (local.mppe_send_key, local.mppe_recv_key)
    (cm,) = p.of(p.c, MppeUp)
    assert (cm.send_key, cm.recv_key) == (mppe.recv_key, mppe.send_key)
    assert [e.family for e in p.of(p.c, NetworkUp)] == [4]


def test_link_verdict_after_the_link_went_down_is_dropped():
    p = Pair(server_link(), client_link())
    (vp,) = p.of(p.s, VerifyPeer)
    p.s.lower_down(1.0)
    assert [type(e) for e in p.s.events()] == [LinkDown]
    p.s.frames_to_send()
    p.s.verified(vp.request, LOCAL.verify(vp.request), 2.0)
    assert p.s.counters["verdict_dropped"] == 1
    assert p.s.frames_to_send() == [] and p.s.events() == []


def test_link_verify_timeout_closes_the_link_with_a_failure():
    p = Pair(server_link(), client_link())
    assert p.s.get_timer() == 10.0
    p.s.handle_timer(10.0)
    p.run(10.0)
    (failed,) = p.of(p.s, AuthenticationFailed)
    assert "verifier" in failed.reason
    (cf,) = p.of(p.c, AuthenticationFailed)
    assert "E=691" in cf.reason


def test_link_accept_without_keys_when_mppe_is_required_closes_the_link():
    p = Pair(server_link(), client_link())
    (vp,) = p.of(p.s, VerifyPeer)
    local = LOCAL.verify(vp.request)
    p.s.verified(vp.request, VerifyResult(True, authenticator_response=local.authenticator_response),
                 0.5)
    p.run(0.5)
    assert p.s.down_reason == MPPE_NOT_NEGOTIATED


@pytest.mark.parametrize("framed,may_choose,client_wants,expected", [
    (IPv4Address("203.0.113.9"), False, None, "203.0.113.9"),      # the verifier's address
    (FRAMED_IP_FROM_POOL, False, None, POOL_IP),                    # 255.255.255.254: pool
    (None, False, None, POOL_IP),
    (FRAMED_IP_PEER_CHOOSES, True, CLIENT_WANTS, CLIENT_WANTS),     # the peer's own
    (FRAMED_IP_PEER_CHOOSES, False, CLIENT_WANTS, POOL_IP),         # policy says no: pool
])
def test_link_framed_ip_address(framed, may_choose, client_wants, expected):
    p = Pair(server_link("auth require-mschap-v2 nomppe", peer_may_choose_address=may_choose),
             client_link("noauth nomppe", local_address=client_wants))
    (vp,) = p.of(p.s, VerifyPeer)
    local = LOCAL.verify(vp.request)
    attrs = ReplyAttributes(framed_ip=framed, dns=(IPv4Address("192.0.2.99"),),
                            rate_limit=RateLimit(1000, 500), idle_timeout=300)
    p.s.verified(vp.request, VerifyResult(True, authenticator_response=local.authenticator_response,
                                          attributes=attrs), 0.5)
    p.run(0.5)
    (auth,) = p.of(p.s, Authenticated)
    assert auth.attributes == attrs and p.s.peer_attributes == attrs
    (up,) = p.of(p.c, NetworkUp)
    assert str(up.local) == expected
    assert [str(d) for d in up.dns] == ["192.0.2.99"]           # the verifier's name server
