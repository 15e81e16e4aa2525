"""Byte-level replay of pppd's LCP / CCP / IPCP frames from the reference captures.

Each pppd packet from tests/data/captures is fed to our protocol object in the
role pppd's peer had; our answer must be the bytes the peer sent in the capture, and the
negotiated values must be those pppd reached (MRU, magic, auth method, MPPE-128 stateless,
IPCP 198.51.100.x).
"""
from __future__ import annotations

import random
import struct

import pytest

from support.pcap import CAPTURES, ppp_frames, read_pcap
from fastpptp.ppp.ccp import CCP, CcpConfig, CcpResult
from fastpptp.ppp.constants import AuthMethod, Code, Protocol
from fastpptp.ppp.fsm import State, ThisLayerUp
from fastpptp.ppp.ipcp import IPCP, IpcpConfig
from fastpptp.ppp.lcp import LCP, LcpConfig
from fastpptp.ppp.packet import Packet

SERVER, CLIENT = "192.0.2.10", "192.0.2.20"


def control_frames(name: str) -> dict[int, tuple[str, int, bytes]]:
    """{frame number: (source IP, PPP protocol, information field)} for PPP control frames."""
    out = {}
    for f, proto, info in ppp_frames(read_pcap(CAPTURES / name)):
        if proto >= 0x8000:
            out[f.number] = (f.ip_src, proto, info)
    return out


def frame(frames, number, src, proto) -> bytes:
    s, p, info = frames[number]
    assert (s, p) == (src, proto), f"frame {number} is not {src} {proto:#x}"
    return info


def answers(obj, info: bytes, now: float = 1.0) -> list[bytes]:
    obj.receive(info, now)
    return [i for _, i in obj.frames_to_send()]


def started(obj):
    obj.open(0.0)
    obj.up(0.0)
    return Packet.decode(obj.frames_to_send()[0][1])


def ack_our_request(obj, req: Packet, now: float = 1.0):
    obj.receive(Packet(Code.CONFIGURE_ACK, req.identifier, req.data).encode(), now)


def lcp_up_result(obj):
    ups = [e for e in obj.events() if isinstance(e, ThisLayerUp)]
    assert obj.state is State.Opened and len(ups) == 1
    return ups[0].result


@pytest.mark.parametrize("name", ["mschapv2-mppe128.pcap", "mschapv2-nompe.pcap",
                                  "server-shutdown.pcap"])
def test_lcp_server_answers_pppd_client_like_pppd(name):
    fr = control_frames(name)
    req_no = min(n for n, (s, p, i) in fr.items() if s == CLIENT and p == Protocol.LCP)
    client_req = frame(fr, req_no, CLIENT, Protocol.LCP)
    server_ack = next(i for n, (s, p, i) in sorted(fr.items())
                      if s == SERVER and p == Protocol.LCP and i[0] == Code.CONFIGURE_ACK)
    server_req = next(i for n, (s, p, i) in sorted(fr.items())
                      if s == SERVER and p == Protocol.LCP and i[0] == Code.CONFIGURE_REQUEST)
    lcp = LCP(LcpConfig(auth_require=(AuthMethod.MSCHAP_V2,), echo_interval=0),
              random.Random(1))
    ours = started(lcp)
    # We request what pppd's server requested, bar ACCM (meaningless on PPTP) and the MRU
    # (1400, as Windows asks); the authentication option is byte-identical (c223 81).
    assert [o for o in ours.options() if o.type == 3] == \
        [o for o in Packet.decode(server_req).options() if o.type == 3]
    assert answers(lcp, client_req) == [server_ack]
    ack_our_request(lcp, ours)
    res = lcp_up_result(lcp)
    magic = struct.unpack("!I", Packet.decode(client_req).options()[1].value)[0]
    assert res.peer_magic == magic and res.peer_mru == 1500 and res.local_mru == 1400
    assert res.authenticate_peer is AuthMethod.MSCHAP_V2 and res.authenticate_self is None
    assert res.tx_pfc and res.tx_acfc and res.peer_accm == 0


@pytest.mark.parametrize("name,method,req_no,ack_no", [
    ("mschapv2-mppe128.pcap", AuthMethod.MSCHAP_V2, 15, 17),
    ("chap-md5.pcap", AuthMethod.CHAP_MD5, 15, 16),
    ("pap.pcap", AuthMethod.PAP, 15, 16),
])
def test_lcp_client_acks_pppd_server_request_byte_for_byte(name, method, req_no, ack_no):
    fr = control_frames(name)
    server_req = frame(fr, req_no, SERVER, Protocol.LCP)
    lcp = LCP(LcpConfig(echo_interval=0, auth_accept=(AuthMethod.MSCHAP_V2,
                                                      AuthMethod.CHAP_MD5, AuthMethod.PAP)),
              random.Random(2))
    ours = started(lcp)
    assert answers(lcp, server_req) == [frame(fr, ack_no, CLIENT, Protocol.LCP)]
    ack_our_request(lcp, ours)
    res = lcp_up_result(lcp)
    assert res.authenticate_self is method and res.authenticate_peer is None
    assert res.peer_magic == struct.unpack("!I", Packet.decode(server_req).options()[2].value)[0]


def test_lcp_client_refusing_pap_naks_towards_mschapv2():
    fr = control_frames("pap.pcap")
    lcp = LCP(LcpConfig(echo_interval=0), random.Random(3))     # default: no PAP
    started(lcp)
    (nak,) = answers(lcp, frame(fr, 15, SERVER, Protocol.LCP))
    p = Packet.decode(nak)
    assert p.code == Code.CONFIGURE_NAK and p.data == bytes.fromhex("0305c22381")


def test_lcp_echo_reply_and_terminate_match_capture():
    fr = control_frames("mschapv2-mppe128.pcap")
    # Our client, with pppd's client Magic-Number from frame 14, against pppd's server.
    lcp = LCP(LcpConfig(echo_interval=0, mru=None, magic_number=0x701EB6FE),
              random.Random(4))
    ours = started(lcp)
    assert answers(lcp, frame(fr, 15, SERVER, Protocol.LCP)) == \
        [frame(fr, 17, CLIENT, Protocol.LCP)]
    ack_our_request(lcp, ours)
    assert lcp.state is State.Opened
    # pppd's Echo-Request (frame 18) -> our Echo-Reply equals pppd's client reply (frame 22)
    assert answers(lcp, frame(fr, 18, SERVER, Protocol.LCP)) == \
        [frame(fr, 22, CLIENT, Protocol.LCP)]
    # the server-side view: pppd client's Terminate-Request -> Terminate-Ack (frame 51)
    srv = LCP(LcpConfig(echo_interval=0, auth_require=(AuthMethod.MSCHAP_V2,)),
              random.Random(5))
    ours = started(srv)
    answers(srv, frame(fr, 14, CLIENT, Protocol.LCP))
    ack_our_request(srv, ours)
    assert answers(srv, frame(fr, 49, CLIENT, Protocol.LCP)) == \
        [frame(fr, 51, SERVER, Protocol.LCP)]
    assert srv.state is State.Stopping


@pytest.mark.parametrize("name", ["mschapv2-mppe128.pcap", "server-shutdown.pcap"])
def test_ccp_mppe128_stateless_like_pppd(name):
    fr = control_frames(name)
    peer_req = next(i for n, (s, p, i) in sorted(fr.items())
                    if s == SERVER and p == Protocol.CCP and i[0] == Code.CONFIGURE_REQUEST)
    peer_ack = next(i for n, (s, p, i) in sorted(fr.items())
                    if s == CLIENT and p == Protocol.CCP and i[0] == Code.CONFIGURE_ACK)
    ccp = CCP(CcpConfig(), random.Random(6))          # require 128-bit, stateless
    ours = started(ccp)
    # pppd require-mppe-128 sends <mppe +H -M +S -L -D -C>; so do we.
    assert ours.data == Packet.decode(peer_req).data == bytes.fromhex("120601000040")
    assert answers(ccp, peer_req) == [peer_ack]
    ack_our_request(ccp, ours)
    assert lcp_up_result(ccp) == CcpResult(mppe_bits=128, tx_stateless=True, rx_stateless=True)


@pytest.mark.parametrize("name", ["mschapv2-mppe128.pcap", "mschapv2-nompe.pcap",
                                  "pap.pcap", "chap-md5.pcap", "server-shutdown.pcap"])
def test_ipcp_server_naks_zero_address_to_pool_address_like_pppd(name):
    fr = control_frames(name)
    ipcp_frames = [(n, s, i) for n, (s, p, i) in sorted(fr.items()) if p == Protocol.IPCP]
    client_reqs = [i for n, s, i in ipcp_frames if s == CLIENT and i[0] == 1]
    server_replies = [i for n, s, i in ipcp_frames if s == SERVER and i[0] in (2, 3)]
    server_req = next(i for n, s, i in ipcp_frames if s == SERVER and i[0] == 1)
    srv = IPCP(IpcpConfig(local_address="198.51.100.1", peer_address="198.51.100.2"),
               random.Random(7))
    ours = started(srv)
    assert ours.data == Packet.decode(server_req).data           # IP-Address 198.51.100.1
    assert [answers(srv, r)[0] for r in client_reqs] == server_replies   # Nak, then Ack
    ack_our_request(srv, ours)
    res = lcp_up_result(srv)
    assert (str(res.local), str(res.remote)) == ("198.51.100.1", "198.51.100.2")


def test_ipcp_client_takes_the_pool_address_like_pppd():
    fr = control_frames("mschapv2-mppe128.pcap")
    cli = IPCP(IpcpConfig(), random.Random(8))
    ours = started(cli)
    assert ours.data == Packet.decode(frame(fr, 31, CLIENT, Protocol.IPCP)).data   # 0.0.0.0
    assert answers(cli, frame(fr, 32, SERVER, Protocol.IPCP)) == \
        [frame(fr, 33, CLIENT, Protocol.IPCP)]
    nak = Packet.decode(frame(fr, 34, SERVER, Protocol.IPCP))
    (req2,) = answers(cli, Packet(nak.code, ours.identifier, nak.data).encode())
    again = Packet.decode(req2)
    assert again.data == Packet.decode(frame(fr, 35, CLIENT, Protocol.IPCP)).data
    ack_our_request(cli, again)
    res = lcp_up_result(cli)
    assert (str(res.local), str(res.remote)) == ("198.51.100.2", "198.51.100.1")
