"""PAP (RFC 1334) codec and both machines, fake clock."""
import random

import pytest

from fastpptp.ppp.auth.base import AuthFailed, AuthSucceeded, AuthTimers, AuthUsageError
from fastpptp.ppp.auth.pap import (
    PapAuthenticator, PapCode, PapPeer, PapReply, PapRequest, decode_pap,
)
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.ppp.constants import AuthMethod, Protocol
from support.ppp_pair import pump

# From tests/data/captures/pap.pcap (pppd 2.4.9 both sides).
CAPTURED_REQUEST = bytes.fromhex("0101001d0866617374707074700f66617374707074702d736563726574")
CAPTURED_ACK = bytes.fromhex("0201000d084c6f67696e206f6b")


def drain(m):
    out = []
    while (e := m.next_event()) is not None:
        out.append(e)
    return out


def test_codec_matches_capture():
    req = decode_pap(CAPTURED_REQUEST)
    assert req == PapRequest(1, b"fastpptp", b"fastpptp-secret")
    assert req.encode() == CAPTURED_REQUEST
    ack = decode_pap(CAPTURED_ACK)
    assert ack == PapReply(PapCode.AUTHENTICATE_ACK, 1, b"Login ok")
    assert ack.encode() == CAPTURED_ACK
    assert "fastpptp-secret" not in repr(req)


def test_padding_after_length_is_ignored():
    assert decode_pap(CAPTURED_ACK + b"\0\0").message == b"Login ok"


@pytest.mark.parametrize("raw", [
    b"", b"\x01\x01\x00", b"\x01\x01\x00\x03", b"\x01\x01\x00\x09abc",
    b"\x01\x01\x00\x04", b"\x01\x01\x00\x06\x05a", b"\x01\x01\x00\x07\x01a\x05",
    b"\x02\x01\x00\x06\x05a", b"\x09\x01\x00\x04",
])
def test_decode_errors_are_typed(raw):
    from fastpptp.ppp.auth.base import AuthDecodeError
    with pytest.raises(AuthDecodeError):
        decode_pap(raw)


class FixedRng(random.Random):
    def __init__(self, ident):
        super().__init__(0)
        self.ident = ident

    def randrange(self, *a):
        return self.ident


def test_server_replays_captured_request():
    auth = PapAuthenticator(StaticBackend({"fastpptp": "fastpptp-secret"}))
    auth.start(0.0)
    auth.receive(CAPTURED_REQUEST, 0.1)
    assert auth.frames_to_send() == [(Protocol.PAP, CAPTURED_ACK)]
    (ev,) = drain(auth)
    assert isinstance(ev, AuthSucceeded) and ev.user == "fastpptp"
    assert ev.method is AuthMethod.PAP


def test_client_sends_captured_request():
    peer = PapPeer("fastpptp", "fastpptp-secret", FixedRng(1))
    peer.start(0.0)
    assert peer.frames_to_send() == [(Protocol.PAP, CAPTURED_REQUEST)]
    peer.receive(CAPTURED_ACK, 0.2)
    (ev,) = drain(peer)
    assert isinstance(ev, AuthSucceeded) and ev.result.message == "Login ok"


def pair(password="pw", users=None):
    peer = PapPeer("u", password, random.Random(3), AuthTimers(restart=3, max_transmits=3))
    auth = PapAuthenticator(StaticBackend(users or {"u": "pw"}))
    auth.start(0.0)
    peer.start(0.0)
    return peer, auth


def test_pair_success():
    peer, auth = pair()
    pump(peer, auth, 0.0)
    assert isinstance(drain(peer)[0], AuthSucceeded)
    assert isinstance(drain(auth)[0], AuthSucceeded)
    assert peer.get_timer() is None and auth.get_timer() is None


def test_wrong_password_nak_login_incorrect():
    peer, auth = pair(password="bad")
    pump(peer, auth, 0.0)
    (pe,) = drain(peer)
    (ae,) = drain(auth)
    assert isinstance(pe, AuthFailed) and pe.message == "Login incorrect"
    assert isinstance(ae, AuthFailed) and ae.user == "u" and "bad" not in ae.reason


def test_peer_retransmits_then_gives_up():
    peer, auth = pair()
    first = peer.frames_to_send()
    assert peer.get_timer() == 3.0
    peer.handle_timer(2.9)
    assert peer.frames_to_send() == []
    peer.handle_timer(3.0)
    assert peer.frames_to_send() == first               # same Identifier and content
    peer.handle_timer(6.0)
    assert len(peer.frames_to_send()) == 1
    peer.handle_timer(9.0)                              # 3 transmits done -> give up
    (ev,) = drain(peer)
    assert isinstance(ev, AuthFailed) and "no response" in ev.reason
    assert peer.get_timer() is None


def test_lost_ack_is_answered_again():
    peer, auth = pair()
    (req,) = peer.frames_to_send()
    auth.receive(req[1], 0.0)
    auth.frames_to_send()                                # the Ack is lost
    peer.handle_timer(3.0)
    (req2,) = peer.frames_to_send()
    auth.receive(req2[1], 3.0)
    (ack,) = auth.frames_to_send()
    peer.receive(ack[1], 3.0)
    assert isinstance(drain(peer)[0], AuthSucceeded)
    assert len(drain(auth)) == 1                         # one event only


def test_authenticator_wait_timeout():
    auth = PapAuthenticator(StaticBackend({}), timers=AuthTimers(wait=30))
    auth.start(10.0)
    assert auth.get_timer() == 40.0
    auth.handle_timer(40.0)
    (ev,) = drain(auth)
    assert isinstance(ev, AuthFailed) and "in time" in ev.reason


def test_wrong_identifier_and_garbage_are_dropped():
    peer, _ = pair()
    (req,) = peer.frames_to_send()
    ident = req[1][1]
    peer.receive(PapReply(PapCode.AUTHENTICATE_ACK, (ident + 1) % 256, b"x").encode(), 0)
    peer.receive(b"\x02", 0)
    assert drain(peer) == [] and peer.discarded == 1 and peer.malformed == 1


def test_start_twice_is_local_error():
    peer, _ = pair()
    with pytest.raises(AuthUsageError):
        peer.start(0.0)
