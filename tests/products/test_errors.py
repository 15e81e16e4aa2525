"""One error hierarchy (fastpptp.errors): every layer's errors are caught by the base classes.

The peer's faults of every layer (PPTP control messages, GRE, PPP framing and LCP/NCP
packets, PAP/CHAP, MPPE) are ``RemoteProtocolError``s; our bugs and API misuse are
``LocalProtocolError``s; no module defines a second class with a base class's name.
"""
from __future__ import annotations

import ast
import pathlib
import random

import pytest

import fastpptp
from fastpptp import errors, gre
from fastpptp.crypto.mppe import MppeDecryptor, MppeError
from fastpptp.errors import DecodeError, LocalProtocolError, ProtocolError, RemoteProtocolError
from fastpptp.ppp import frame
from fastpptp.ppp.auth.base import AuthDecodeError, AuthError, AuthUsageError, AuthTimers
from fastpptp.ppp.auth.chap import decode_chap
from fastpptp.ppp.auth.pap import PapPeer, decode_pap
from fastpptp.ppp.packet import Option, Packet
from fastpptp.pptp import messages
from fastpptp.pptp.control import ControlConfig, ControlConnection, Role
from fastpptp.pptp.errors import FramerBroken, PptpDecodeError
from fastpptp.pptp.framer import PptpFramer


def _pptp_decode() -> None:
    messages.decode(b"\x00\x10\x00\x01\xde\xad\xbe\xef" + bytes(8))   # bad magic cookie


def _gre_decode() -> None:
    gre.decode_packet(b"\x30")                                         # truncated header


def _ppp_frame_decode() -> None:
    frame.decode(b"")


def _ppp_packet_decode() -> None:
    Packet.decode(b"\x01\x01\x00\x09abc")                              # Length > received


def _pap_decode() -> None:
    decode_pap(b"\x01\x01\x00")


def _chap_decode() -> None:
    decode_chap(b"\x01\x01\x00\x04")                                   # Challenge without Value-Size


def _mppe_truncated() -> None:
    MppeDecryptor(bytes(16), 128, stateful=False).decrypt(b"\x90")


def _mppe_not_encrypted() -> None:
    MppeDecryptor(bytes(16), 128, stateful=False).decrypt(b"\x80\x01abc")   # D bit clear


PEER_FAULTS = {
    "pptp-decode": (_pptp_decode, PptpDecodeError),
    "gre-decode": (_gre_decode, gre.GreDecodeError),
    "ppp-frame-decode": (_ppp_frame_decode, frame.PppFrameError),
    "ppp-packet-decode": (_ppp_packet_decode, DecodeError),
    "pap-decode": (_pap_decode, AuthDecodeError),
    "chap-decode": (_chap_decode, AuthDecodeError),
    "mppe-truncated": (_mppe_truncated, MppeError),
    "mppe-not-encrypted": (_mppe_not_encrypted, MppeError),
}


@pytest.mark.parametrize("name", sorted(PEER_FAULTS))
def test_peer_faults_are_remote_protocol_errors(name):
    trigger, specific = PEER_FAULTS[name]
    try:
        trigger()
    except errors.RemoteProtocolError as exc:
        assert isinstance(exc, specific), type(exc)
        assert not isinstance(exc, LocalProtocolError)
        assert isinstance(exc, ProtocolError)
    else:
        pytest.fail(f"{name}: nothing raised")


def _framer_broken() -> None:
    f = PptpFramer()
    with pytest.raises(PptpDecodeError):
        f.feed(b"\x00\x10\x00\x01\xde\xad\xbe\xef" + bytes(8))
        f.next_message()
    f.next_message()                                                   # reading on is our bug


def _pac_starts() -> None:
    ControlConnection(Role.PAC, ControlConfig(), 0.0, random.Random(1)).start(0.0)


def _ppp_packet_too_long() -> None:
    Packet(1, 1, bytes(0x10000)).encode()


def _ppp_option_too_long() -> None:
    Option(3, bytes(254)).encode()


def _pap_started_twice() -> None:
    peer = PapPeer("user", "password", random.Random(1), AuthTimers())
    peer.start(0.0)
    peer.start(0.0)


OUR_BUGS = {
    "pptp-framer-broken": (_framer_broken, FramerBroken),
    "pptp-control-misuse": (_pac_starts, LocalProtocolError),
    "ppp-packet-encode": (_ppp_packet_too_long, LocalProtocolError),
    "ppp-option-encode": (_ppp_option_too_long, LocalProtocolError),
    "auth-misuse": (_pap_started_twice, AuthUsageError),
}


@pytest.mark.parametrize("name", sorted(OUR_BUGS))
def test_our_bugs_are_local_protocol_errors(name):
    trigger, specific = OUR_BUGS[name]
    try:
        trigger()
    except errors.LocalProtocolError as exc:
        assert isinstance(exc, specific), type(exc)
        assert not isinstance(exc, RemoteProtocolError)
    else:
        pytest.fail(f"{name}: nothing raised")


def test_auth_errors_are_both_auth_errors_and_base_errors():
    assert issubclass(AuthDecodeError, AuthError) and issubclass(AuthDecodeError, DecodeError)
    assert issubclass(AuthUsageError, AuthError) and issubclass(AuthUsageError, LocalProtocolError)
    assert issubclass(DecodeError, ValueError) and issubclass(MppeError, ValueError)


def test_no_module_redefines_a_base_error_name():
    bases = set(errors.__all__)
    root = pathlib.Path(fastpptp.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name in bases:
                offenders.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    assert offenders == []
