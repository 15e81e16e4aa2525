"""CHAP-MD5, MS-CHAPv1 and MS-CHAPv2 (RFC 1994/2433/2759): codecs, vectors, both roles,
fake clock, and the real pppd exchanges from the interop captures."""
import random

import pytest

from fastpptp.crypto import mschap
from fastpptp.ppp.auth.base import AuthDecodeError, AuthFailed, AuthSucceeded, AuthTimers
from fastpptp.ppp.auth.chap import (
    ChapAuthenticator, ChapCode, ChapPeer, ChapStatusPacket, ChapValuePacket, MsFailure,
    chap_md5_response, decode_chap, mschapv1_response_value, parse_ms_failure,
    parse_mschapv2_success,
)
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.ppp.constants import AuthMethod, Protocol
from support.ppp_pair import pump

V2, V1, MD5 = AuthMethod.MSCHAP_V2, AuthMethod.MSCHAP_V1, AuthMethod.CHAP_MD5
H = bytes.fromhex
CREDS = {"fastpptp": "fastpptp-secret"}

# pppd 2.4.9 server <-> pptp-linux/pppd client, tests/data/captures/*.pcap
CAPTURED = {
    "chap-md5": dict(method=MD5, ident=0x93, challenge=H("6cd4194185df4206d7fe04a657760139"),
                     challenge_pkt=H("0193001a106cd4194185df4206d7fe04a6577601397070747064"),
                     response_pkt=H("0293001d109abeba5e01cc7382d319fed4b0ad15656661737470707470"),
                     success_pkt=H("03930012416363657373206772616e746564")),
    "mschapv2-mppe128": dict(
        method=V2, ident=0x3a, challenge=H("6074222e47045a99b81a9588aad057b7"),
        challenge_pkt=H("013a001a106074222e47045a99b81a9588aad057b77070747064"),
        response_pkt=H("023a003e3193c3387715e58148208c3d415716078b0000000000000000290f1f746a"
                       "feb7c2cfb23516087cad89e5c67ba98a3662cb006661737470707470"),
        success_pkt=H("033a003f533d44334139314641464143363634333638333937443944444339454242"
                      "304232363139313631454646204d3d416363657373206772616e746564")),
    "mschapv2-nompe": dict(
        method=V2, ident=0x1a, challenge=H("af03f11f5262b4c595b62f92e57f8447"),
        challenge_pkt=H("011a001a10af03f11f5262b4c595b62f92e57f84477070747064"),
        response_pkt=H("021a003e319d0e334b37feaa4ff1067b946707bb550000000000000000948f5c700f"
                       "4e100eb87951dec80654c2daa99523ca5e311a006661737470707470"),
        success_pkt=H("031a003f533d43314131413538414438413031443339394243424534423943383933"
                      "344444443436423631463041204d3d416363657373206772616e746564")),
    "server-shutdown": dict(
        method=V2, ident=0x7e, challenge=H("b480cbbe8a77cb875d863d87aadf6887"),
        challenge_pkt=H("017e001a10b480cbbe8a77cb875d863d87aadf68877070747064"),
        response_pkt=H("027e003e3141723788aab37f37ba1a19091b446f480000000000000000a9664cd42a"
                       "d45cea9d848be6755d6a6701a08f3fc8d26c66006661737470707470"),
        success_pkt=H("037e003f533d35433946463339443336433034303635464235373935343334334442"
                      "384431344630453238413437204d3d416363657373206772616e746564")),
}


class ScriptedRng(random.Random):
    """An rng whose identifiers and random octets are given: the test hook that injects a
    captured challenge (or an RFC vector's peer challenge)."""

    def __init__(self, ident=0, blobs=()):
        super().__init__(7)
        self.ident = ident
        self.blobs = list(blobs)

    def randrange(self, *a):
        return self.ident

    def randbytes(self, n):
        if self.blobs:
            b = self.blobs.pop(0)
            assert len(b) == n
            return b
        return super().randbytes(n)


def drain(m):
    out = []
    while (e := m.next_event()) is not None:
        out.append(e)
    return out


# --------------------------------------------------------------------------- codec/vectors

def test_codec_round_trips_captured_packets():
    for cap in CAPTURED.values():
        for key in ("challenge_pkt", "response_pkt", "success_pkt"):
            pkt = decode_chap(cap[key])
            assert pkt.encode() == cap[key]
        ch = decode_chap(cap["challenge_pkt"])
        assert ch == ChapValuePacket(ChapCode.CHALLENGE, cap["ident"], cap["challenge"],
                                     b"pptpd")


@pytest.mark.parametrize("raw", [
    b"", b"\x01\x01\x00", b"\x01\x01\x00\x02", b"\x01\x01\x00\x08abc",
    b"\x01\x01\x00\x04", b"\x02\x01\x00\x05\x00", b"\x02\x01\x00\x07\x05ab",
    b"\x07\x01\x00\x04",
])
def test_decode_errors_are_typed(raw):
    with pytest.raises(AuthDecodeError):
        decode_chap(raw)


@pytest.mark.parametrize("secret,expected", [
    (b"MyPw", "8f028814450d66d94c72331ef455a172"),     # TEST-VECTORS §7
    (b"sepp", "d39bfaf5d6855a948c8c81a85947502c"),
])
def test_chap_md5_vectors(secret, expected):
    assert chap_md5_response(1, secret, H("102DB5DF085D3041")).hex() == expected


def test_mschapv1_response_value_vector():
    # TEST-VECTORS §3, pppd style (LM zeroed, UseNT = 1)
    value = mschapv1_response_value(H("102DB5DF085D3041"), "MyPw")
    assert value == bytes(24) + H("4E9D3C8F9CFD385D5BF4D3246791956CA4C351AB409A3D61") + b"\x01"


RFC2759_AUTH_CHALLENGE = H("5B5D7C7D7B3F2F3E3C2C602132262628")
RFC2759_PEER_CHALLENGE = H("21402324255E262A28295F2B3A337C7E")
RFC2759_RESPONSE_WIRE = H(
    "0201003A3121402324255E262A28295F2B3A337C7E0000000000000000"
    "82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF0055736572")
RFC2759_S = "S=407A5589115FD0D6209F510FE9C04566932CDA56"


def test_mschapv2_peer_builds_rfc2759_response_on_the_wire():
    # TEST-VECTORS §1 derived wire example (58 octets)
    peer = ChapPeer(V2, "User", "clientPass", ScriptedRng(blobs=[RFC2759_PEER_CHALLENGE]))
    peer.start(0.0)
    peer.receive(ChapValuePacket(ChapCode.CHALLENGE, 1, RFC2759_AUTH_CHALLENGE,
                                 b"srv").encode(), 0.0)
    assert peer.frames_to_send() == [(Protocol.CHAP, RFC2759_RESPONSE_WIRE)]
    assert len(RFC2759_RESPONSE_WIRE) == 58
    peer.receive(ChapStatusPacket(ChapCode.SUCCESS, 1,
                                  (RFC2759_S + " M=Access granted").encode()).encode(), 0.1)
    (ev,) = drain(peer)
    assert isinstance(ev, AuthSucceeded)
    assert ev.result.nt_response == H("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
    # RFC 3079 §3.5: the client receives with the server's send key (Magic3)
    assert ev.result.mppe_recv_key == H("8B7CDC149B993A1BA118CB153F56DCCB")
    assert ev.result.mppe_send_key == H("D5F0E9521E3EA9589645E86051C82226")


def test_mschapv2_authenticator_verifies_rfc2759_response():
    auth = ChapAuthenticator(V2, StaticBackend({"User": "clientPass"}),
                             ScriptedRng(1, [RFC2759_AUTH_CHALLENGE]), name="srv")
    auth.start(0.0)
    auth.frames_to_send()
    auth.receive(RFC2759_RESPONSE_WIRE, 0.1)
    ((proto, success),) = auth.frames_to_send()
    assert success == ChapStatusPacket(ChapCode.SUCCESS, 1,
                                       (RFC2759_S + " M=Access granted").encode()).encode()
    (ev,) = drain(auth)
    assert ev.result.mppe_send_key == H("8B7CDC149B993A1BA118CB153F56DCCB")
    assert ev.result.mppe_recv_key == H("D5F0E9521E3EA9589645E86051C82226")
    assert "clientPass" not in repr(ev)


@pytest.mark.parametrize("message,s,text", [
    (RFC2759_S + " M=Access granted", RFC2759_S, "Access granted"),
    (RFC2759_S + "M=Welcome", RFC2759_S, "Welcome"),           # Windows Server 2019
    (RFC2759_S, RFC2759_S, ""),
    ("M=hello", None, "M=hello"),
])
def test_parse_success(message, s, text):
    assert parse_mschapv2_success(message) == (s, text)


@pytest.mark.parametrize("message,expected", [
    ("E=691 R=0 C=00112233445566778899AABBCCDDEEFF V=3 M=Access denied",
     MsFailure(691, False, H("00112233445566778899AABBCCDDEEFF"), 3, "Access denied")),
    ("E=691 R=1 C=0011223344556677 V=0", MsFailure(691, True, H("0011223344556677"), 0, "")),
    ("E=648 R=0 V=3", MsFailure(648, False, None, 3, "")),
    ("garbage", MsFailure()),
    ("E=x R=1 C=zz V=3 M=a b c", MsFailure(None, True, None, 3, "a b c")),
])
def test_parse_failure(message, expected):
    assert parse_ms_failure(message) == expected


# --------------------------------------------------------------------------- captures

@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_server_verifies_captured_pppd_client_response(name):
    cap = CAPTURED[name]
    auth = ChapAuthenticator(cap["method"], StaticBackend(CREDS),
                             ScriptedRng(cap["ident"], [cap["challenge"]]), name="pptpd")
    auth.start(0.0)
    assert auth.frames_to_send() == [(Protocol.CHAP, cap["challenge_pkt"])]
    auth.receive(cap["response_pkt"], 0.1)
    # Our Success is byte-identical to pppd's ("S=... M=Access granted" / "Access granted")
    assert auth.frames_to_send() == [(Protocol.CHAP, cap["success_pkt"])]
    (ev,) = drain(auth)
    assert isinstance(ev, AuthSucceeded) and ev.user == "fastpptp"


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_client_accepts_captured_pppd_server_success(name):
    cap = CAPTURED[name]
    value = decode_chap(cap["response_pkt"]).value
    peer = ChapPeer(cap["method"], "fastpptp", "fastpptp-secret",
                    ScriptedRng(blobs=[value[:16]] if cap["method"] is V2 else []))
    peer.start(0.0)
    peer.receive(cap["challenge_pkt"], 0.0)
    assert peer.frames_to_send() == [(Protocol.CHAP, cap["response_pkt"])]
    peer.receive(cap["success_pkt"], 0.1)
    (ev,) = drain(peer)
    assert isinstance(ev, AuthSucceeded)


def test_captured_response_fails_with_wrong_secret():
    cap = CAPTURED["mschapv2-mppe128"]
    auth = ChapAuthenticator(V2, StaticBackend({"fastpptp": "nope"}),
                             ScriptedRng(cap["ident"], [cap["challenge"]]), name="pptpd")
    auth.start(0.0)
    auth.frames_to_send()
    auth.receive(cap["response_pkt"], 0.1)
    ((_, failure),) = auth.frames_to_send()
    pkt = decode_chap(failure)
    assert pkt.code == ChapCode.FAILURE and pkt.identifier == cap["ident"]
    assert pkt.message == (b"E=691 R=0 C=" + cap["challenge"].hex().upper().encode()
                           + b" V=3 M=Access denied")
    (ev,) = drain(auth)
    assert isinstance(ev, AuthFailed) and ev.user == "fastpptp"


# --------------------------------------------------------------------------- pairs

def make_pair(method, password="pw", users=None, retries=0, timers=None):
    t = timers or AuthTimers(restart=3, max_transmits=3, wait=60)
    auth = ChapAuthenticator(method, StaticBackend(users or {"u": "pw"}), random.Random(1),
                             "srv", t, retries=retries)
    peer = ChapPeer(method, "u", password, random.Random(2), t)
    peer.start(0.0)
    auth.start(0.0)
    return peer, auth


@pytest.mark.parametrize("method", [MD5, V1, V2])
def test_pair_success_agrees_on_keys(method):
    peer, auth = make_pair(method)
    pump(peer, auth, 0.0)
    (pe,), (ae,) = drain(peer), drain(auth)
    assert isinstance(pe, AuthSucceeded) and isinstance(ae, AuthSucceeded)
    assert pe.method is ae.method is method
    assert ae.user == "u"
    if method is not MD5:
        assert pe.result.mppe_send_key == ae.result.mppe_recv_key
        assert pe.result.mppe_recv_key == ae.result.mppe_send_key
        assert len(pe.result.mppe_send_key) == 16
        assert pe.result.password_hash == mschap.nt_password_hash("pw")
    assert peer.get_timer() is None and auth.get_timer() is None


@pytest.mark.parametrize("method,msg", [
    (MD5, "Access denied"),
    (V1, "E=691 R=0 C={} V=0"),
    (V2, "E=691 R=0 C={} V=3 M=Access denied"),
])
def test_pair_wrong_password(method, msg):
    peer, auth = make_pair(method, password="wrong")
    pump(peer, auth, 0.0)
    (pe,), (ae,) = drain(peer), drain(auth)
    assert isinstance(pe, AuthFailed) and isinstance(ae, AuthFailed)
    assert pe.message == msg.format(auth.challenge.hex().upper())
    assert ae.message == pe.message
    if method is not MD5:
        assert "E=691" in pe.reason
    assert "bad password" in ae.reason and ae.user == "u"


def test_unknown_user():
    peer, auth = make_pair(V2, users={"other": "pw"})
    pump(peer, auth, 0.0)
    (ae,) = drain(auth)
    assert isinstance(ae, AuthFailed) and ae.reason == "unknown user"


def test_mschapv2_authenticator_response_mismatch_fails_client():
    peer, auth = make_pair(V2)
    for _, f in auth.frames_to_send():
        peer.receive(f, 0.0)
    ((_, resp),) = peer.frames_to_send()
    ident = resp[1]
    bogus = "S=" + "0" * 40 + " M=Access granted"
    peer.receive(ChapStatusPacket(ChapCode.SUCCESS, ident, bogus.encode()).encode(), 0.1)
    (ev,) = drain(peer)
    assert isinstance(ev, AuthFailed) and "authenticator response mismatch" in ev.reason
    peer.receive(ChapStatusPacket(ChapCode.SUCCESS, ident, b"Access granted").encode(), 0.2)
    assert drain(peer) == []


def test_mschapv2_success_without_s_fails_client():
    peer, auth = make_pair(V2)
    for _, f in auth.frames_to_send():
        peer.receive(f, 0.0)
    ((_, resp),) = peer.frames_to_send()
    peer.receive(ChapStatusPacket(ChapCode.SUCCESS, resp[1], b"Access granted").encode(), 0)
    (ev,) = drain(peer)
    assert isinstance(ev, AuthFailed) and "without authenticator response" in ev.reason


def test_windows_2019_success_without_space():
    peer, auth = make_pair(V2)
    for _, f in auth.frames_to_send():
        peer.receive(f, 0.0)
    ((_, resp),) = peer.frames_to_send()
    auth.receive(resp, 0.0)
    ((_, ok),) = auth.frames_to_send()
    msg = decode_chap(ok).message.replace(b" M=", b"M=")
    peer.receive(ChapStatusPacket(ChapCode.SUCCESS, ok[1], msg).encode(), 0.0)
    (ev,) = drain(peer)
    assert isinstance(ev, AuthSucceeded) and ev.result.message == "Access granted"


@pytest.mark.parametrize("method", [MD5, V2])
def test_challenge_retransmission_and_give_up(method):
    peer, auth = make_pair(method)
    (c1,) = auth.frames_to_send()
    assert auth.get_timer() == 3.0
    auth.handle_timer(3.0)
    (c2,) = auth.frames_to_send()
    assert c1 == c2                                     # same Identifier and Value
    auth.handle_timer(6.0)
    assert len(auth.frames_to_send()) == 1
    auth.handle_timer(9.0)
    (ev,) = drain(auth)
    assert isinstance(ev, AuthFailed) and "3 Challenges" in ev.reason


def test_peer_answers_retransmitted_challenge_identically():
    peer, auth = make_pair(V2)
    (c,) = auth.frames_to_send()
    peer.receive(c[1], 0.0)
    peer.receive(c[1], 3.0)
    r1, r2 = peer.frames_to_send()
    assert r1 == r2                                     # same Peer-Challenge


def test_lost_success_is_repeated():
    peer, auth = make_pair(V2)
    (c,) = auth.frames_to_send()
    peer.receive(c[1], 0.0)
    (r,) = peer.frames_to_send()
    auth.receive(r[1], 0.0)
    auth.frames_to_send()                               # Success lost
    auth.receive(r[1], 1.0)                             # peer resends (e.g. after rechallenge)
    ((_, ok),) = auth.frames_to_send()
    peer.receive(ok, 1.0)
    assert isinstance(drain(peer)[0], AuthSucceeded)
    assert len(drain(auth)) == 1


def test_stale_identifier_is_discarded():
    peer, auth = make_pair(MD5)
    (c,) = auth.frames_to_send()
    peer.receive(c[1], 0.0)
    (r,) = peer.frames_to_send()
    bad = bytearray(r[1])
    bad[1] = (bad[1] + 1) & 0xFF
    auth.receive(bytes(bad), 0.0)
    assert auth.frames_to_send() == [] and auth.discarded == 1 and drain(auth) == []


def test_peer_wait_timeout():
    peer = ChapPeer(V2, "u", "pw", random.Random(), AuthTimers(wait=30))
    peer.start(5.0)
    assert peer.get_timer() == 35.0
    peer.handle_timer(35.0)
    (ev,) = drain(peer)
    assert isinstance(ev, AuthFailed) and "in time" in ev.reason


def test_mschapv2_retry_policy_r1():
    # Server allows one retry: first Response wrong -> Failure R=1 with a new C=; the
    # retried Response (Identifier + 1, new challenge) succeeds.
    auth = ChapAuthenticator(V2, StaticBackend({"u": "pw"}), random.Random(5), "srv",
                             retries=1)
    auth.start(0.0)
    (c,) = auth.frames_to_send()
    bad = ChapPeer(V2, "u", "nope", random.Random(6))
    bad.start(0.0)
    bad.receive(c[1], 0.0)
    (r,) = bad.frames_to_send()
    auth.receive(r[1], 0.0)
    ((_, fail),) = auth.frames_to_send()
    f = parse_ms_failure(decode_chap(fail).message.decode())
    assert f.retry and f.error == 691 and f.version == 3 and len(f.challenge) == 16
    assert f.challenge != decode_chap(c[1]).value
    assert drain(auth) == []                            # not over yet
    good = ChapPeer(V2, "u", "pw", random.Random(7))
    good.start(0.0)
    ident = (decode_chap(fail).identifier + 1) & 0xFF
    good.receive(ChapValuePacket(ChapCode.CHALLENGE, ident, f.challenge, b"srv").encode(), 1)
    (r2,) = good.frames_to_send()
    auth.receive(r2[1], 1.0)
    ((_, ok),) = auth.frames_to_send()
    assert decode_chap(ok).code == ChapCode.SUCCESS
    assert isinstance(drain(auth)[0], AuthSucceeded)


def test_mschapv2_retries_exhausted_r0():
    # One retry allowed: the first Failure says R=1, the second R=0 and ends it.
    auth = ChapAuthenticator(V2, StaticBackend({"u": "pw"}), random.Random(5), "srv",
                             retries=1)
    auth.start(0.0)
    (c,) = auth.frames_to_send()
    ident, challenge = c[1][1], decode_chap(c[1]).value
    failures = []
    for attempt in range(2):
        bad = ChapPeer(V2, "u", "nope", random.Random(attempt))
        bad.start(0.0)
        bad.receive(ChapValuePacket(ChapCode.CHALLENGE, ident, challenge, b"srv").encode(), 0)
        (r,) = bad.frames_to_send()
        auth.receive(r[1], 0.0)
        ((_, fail),) = auth.frames_to_send()
        f = parse_ms_failure(decode_chap(fail).message.decode())
        failures.append(f.retry)
        bad.receive(fail, 0.0)
        (pe,) = drain(bad)                          # our client never retries itself
        assert isinstance(pe, AuthFailed)
        ident, challenge = (decode_chap(fail).identifier + 1) & 0xFF, f.challenge
    assert failures == [True, False]
    (ae,) = drain(auth)
    assert isinstance(ae, AuthFailed)


@pytest.mark.parametrize("method", [MD5, V2])
def test_domain_prefixed_name_falls_back_to_bare_user(method):
    auth = ChapAuthenticator(method, StaticBackend({"alice": "pw"}), random.Random(1), "srv")
    peer = ChapPeer(method, "CORP\\alice", "pw", random.Random(2))
    auth.start(0.0)
    peer.start(0.0)
    pump(peer, auth, 0.0)
    (ae,), (pe,) = drain(auth), drain(peer)
    assert isinstance(ae, AuthSucceeded) and ae.user == "alice"
    assert isinstance(pe, AuthSucceeded)


def test_domain_prefixed_name_exact_entry_wins():
    backend = StaticBackend({"CORP\\alice": "pw1", "alice": "pw2"})
    auth = ChapAuthenticator(V2, backend, random.Random(1), "srv")
    peer = ChapPeer(V2, "CORP\\alice", "pw1", random.Random(2))
    auth.start(0.0)
    peer.start(0.0)
    pump(peer, auth, 0.0)
    (ae,) = drain(auth)
    assert isinstance(ae, AuthSucceeded) and ae.user == "CORP\\alice"
