"""Interop: decrypt the MPPE traffic of a real pppd/pptpd session (Linux ppp_mppe).

tests/data/captures/mschapv2-mppe128.pcap holds an MS-CHAPv2 login (credentials
fastpptp / fastpptp-secret) followed by MPPE-128 stateless pings.  From the CHAP exchange we
rederive NT-Response, the authenticator response and both MPPE start keys, then decrypt
every 0x00FD frame with the pure-Python and the compiled MPPE.
"""
import struct

import pytest

from fastpptp import _mppe
from fastpptp.crypto import mppe, mschap
from support.paths import CAPTURES
from support.pcap import ppp_frames, read_pcap

CAPTURE = CAPTURES / "mschapv2-mppe128.pcap"
SERVER = "192.0.2.10"
PASSWORD = "fastpptp-secret"


def _ppp_frames(path):
    """(source IPv4, PPP protocol, information field) for each GRE/PPP frame of a pcap."""
    return [(f.ip_src, proto, info) for f, proto, info in ppp_frames(read_pcap(path))]


def _session():
    frames = list(_ppp_frames(CAPTURE))
    challenge = response = name = success = None
    encrypted = []
    for src, proto, info in frames:
        if proto == 0xC223:
            code = info[0]
            if code == 1:
                challenge = info[5:5 + info[4]]
            elif code == 2:
                response = info[5:5 + info[4]]
                name = info[5 + info[4]:struct.unpack("!H", info[2:4])[0]]
            elif code == 3:
                success = info[4:struct.unpack("!H", info[2:4])[0]]
        elif proto == 0x00FD:
            encrypted.append((src, info))
    return challenge, response, name, success, encrypted


def test_capture_mschapv2_login_math():
    challenge, response, name, success, _ = _session()
    assert name == b"fastpptp" and len(challenge) == 16 and len(response) == 49
    peer_challenge, nt_response = response[:16], response[24:48]
    assert mschap.generate_nt_response(challenge, peer_challenge, name, PASSWORD) == nt_response
    auth = mschap.generate_authenticator_response(
        PASSWORD, nt_response, peer_challenge, challenge, name)
    assert success.startswith(auth.encode())
    assert mschap.check_authenticator_response(
        PASSWORD, nt_response, peer_challenge, challenge, name, success[:42])


@pytest.mark.parametrize("impl", ["python", "compiled"])
def test_capture_decrypt_mppe128_stateless(impl):
    challenge, response, name, _, encrypted = _session()
    nt_response = response[24:48]
    server_send, server_recv = mschap.mppe_keys_mschapv2(PASSWORD, nt_response, True)
    client_send, client_recv = mschap.mppe_keys_mschapv2(PASSWORD, nt_response, False)
    assert (server_send, server_recv) == (client_recv, client_send)

    def make(key):
        if impl == "python":
            return mppe.MppeDecryptor(key, 128, stateful=False)
        return _mppe.Mppe(key, 128, False)

    # What the server sends, the client receives with its receive key, and vice versa.
    rx = {SERVER: make(client_recv), "192.0.2.20": make(server_recv)}
    assert len(encrypted) == 6
    plain = []
    for src, info in encrypted:
        flags, ccount = mppe.parse_header(info)
        assert flags == 0x90  # A | D: stateless
        out = rx[src].decrypt(info)
        assert out[:2] == b"\x00\x21"  # IPv4 inside
        ip = out[2:]
        assert ip[0] >> 4 == 4 and struct.unpack("!H", ip[2:4])[0] == len(ip)
        plain.append((src, ccount, ip))
    # Pings: the client (198.51.100.2) sends Echo Requests, the server answers.
    icmp_types = [ip[(ip[0] & 0xF) * 4] for _, _, ip in plain]
    assert sorted(icmp_types) == [0, 0, 0, 8, 8, 8]
    assert [c for s, c, _ in plain if s == SERVER] == [0, 1, 2]
