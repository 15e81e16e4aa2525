"""IPCP (RFC 1332) with RFC 1877 DNS/NBNS: server and client roles, pairs, edge cases."""
from __future__ import annotations

import random
from ipaddress import IPv4Address as A

import pytest

from support.ppp_pair import pump
from fastpptp.ppp.constants import Code, Protocol
from fastpptp.ppp.fsm import State, ThisLayerUp
from fastpptp.ppp.ipcp import IPCP, IpcpConfig, IpcpResult
from fastpptp.ppp.packet import Option, Packet, encode_options

SRV = dict(local_address="198.51.100.1", peer_address="198.51.100.2")


def mk(seed=1, **kw) -> IPCP:
    return IPCP(IpcpConfig(**kw), random.Random(seed))


def start(*ps):
    for p in ps:
        p.open(0.0)
        p.up(0.0)
    return [Packet.decode(p.frames_to_send()[0][1]) for p in ps] if len(ps) == 1 else None


def result(p) -> IpcpResult:
    return next(e.result for e in p.events() if isinstance(e, ThisLayerUp))


def reply_to(p, *opts, ident=0x11) -> Packet:
    p.receive(Packet(Code.CONFIGURE_REQUEST, ident, encode_options(opts)).encode(), 1.0)
    (out,) = p.frames_to_send()
    assert out[0] == Protocol.IPCP
    return Packet.decode(out[1])


def addr(a: str, t=3) -> Option:
    return Option(t, A(a).packed)


def test_pair_with_dns_converges():
    s = mk(1, **SRV, dns=("192.0.2.53", "192.0.2.54"), nbns=("192.0.2.137",))
    c = mk(2, request_dns=True, request_nbns=True)
    start(s, c)
    rounds = pump(s, c)
    # one Reject (secondary NBNS unknown), one Nak (addresses), one Ack: 3 round trips
    assert rounds <= 6 and s.state is c.state is State.Opened
    rs, rc = result(s), result(c)
    assert rc == IpcpResult(A("198.51.100.2"), A("198.51.100.1"),
                            (A("192.0.2.53"), A("192.0.2.54")), (A("192.0.2.137"),))
    assert rs == IpcpResult(A("198.51.100.1"), A("198.51.100.2"),
                            (A("192.0.2.53"), A("192.0.2.54")), (A("192.0.2.137"),))


def test_server_naks_wrong_address_and_acks_assigned():
    s = mk(**SRV)
    start(s)
    nak = reply_to(s, addr("203.0.113.9"))
    assert nak.code == Code.CONFIGURE_NAK and nak.options() == [addr("198.51.100.2")]
    ack = reply_to(s, addr("198.51.100.2"), ident=0x12)
    assert ack.code == Code.CONFIGURE_ACK


def test_server_asks_peer_to_include_address():
    s = mk(**SRV)
    start(s)
    nak = reply_to(s)
    assert nak.code == Code.CONFIGURE_NAK and nak.options() == [addr("198.51.100.2")]


def test_server_rejects_dns_when_it_has_none_and_rejects_vj_and_old_addresses():
    s = mk(**SRV)
    start(s)
    vj = Option(2, bytes.fromhex("002d0f01"))
    old = Option(1, bytes(8))
    rej = reply_to(s, addr("198.51.100.2"), vj, old, addr("0.0.0.0", 129), addr("0.0.0.0", 130))
    assert rej.code == Code.CONFIGURE_REJECT
    assert rej.options() == [vj, old, addr("0.0.0.0", 129), addr("0.0.0.0", 130)]


def test_server_naks_dns_with_its_own():
    s = mk(**SRV, dns=("192.0.2.53",))
    start(s)
    nak = reply_to(s, addr("198.51.100.2"), addr("0.0.0.0", 129), addr("0.0.0.0", 131))
    # secondary unknown -> rejected (Reject wins over Nak in one reply, RFC 1661 §5.4)
    assert nak.code == Code.CONFIGURE_REJECT and nak.options() == [addr("0.0.0.0", 131)]
    nak = reply_to(s, addr("198.51.100.2"), addr("0.0.0.0", 129), ident=0x13)
    assert nak.code == Code.CONFIGURE_NAK and nak.options() == [addr("192.0.2.53", 129)]


def test_assign_callback_used_when_no_static_address():
    seen = []

    def pool(requested):
        seen.append(requested)
        return A("198.51.100.7")

    s = mk(local_address="198.51.100.1", assign_peer_address=pool)
    start(s)
    nak = reply_to(s, addr("0.0.0.0"))
    assert nak.options() == [addr("198.51.100.7")] and seen == [A("0.0.0.0")]


def test_client_rejects_server_asking_for_an_address_and_acks_its_own():
    c = mk()
    start(c)
    assert reply_to(c, addr("0.0.0.0")).code == Code.CONFIGURE_REJECT
    assert reply_to(c, addr("198.51.100.1"), ident=2).code == Code.CONFIGURE_ACK


def test_client_insisting_on_its_address():
    c = mk(2, local_address="198.51.100.5", accept_local_address=False)
    (req,) = start(c)
    c.receive(Packet(Code.CONFIGURE_NAK, req.identifier,
                     encode_options([addr("198.51.100.2")])).encode(), 1.0)
    again = Packet.decode(c.frames_to_send()[0][1])
    assert again.options() == [addr("198.51.100.5")]


def test_client_without_address_fails_if_server_rejects_ip_address():
    c = mk()
    (req,) = start(c)
    c.receive(Packet(Code.CONFIGURE_REJECT, req.identifier, req.data).encode(), 1.0)
    assert c.state is State.Closing


def test_acked_zero_address_is_not_up():
    c = mk()
    (req,) = start(c)
    c.receive(Packet(Code.CONFIGURE_ACK, req.identifier, req.data).encode(), 1.0)
    c.receive(Packet(Code.CONFIGURE_REQUEST, 9, addr("198.51.100.1").encode()).encode(), 1.0)
    out = [Packet.decode(i).code for _, i in c.frames_to_send()]
    assert out == [Code.CONFIGURE_ACK, Code.TERMINATE_REQUEST]
    assert c.state is State.Closing
    assert not any(isinstance(e, ThisLayerUp) for e in c.events())
    assert b"local IP address" in c._term_reason


@pytest.mark.parametrize("value", [b"", b"\x01\x02\x03", bytes(5)])
def test_bad_address_length_rejected(value):
    s = mk(**SRV)
    start(s)
    rej = reply_to(s, Option(3, value))
    assert rej.code == Code.CONFIGURE_REJECT


def test_windows_like_client_with_dns_and_wins_requests():
    """Synthetic Windows request: address, DNS and WINS primary/secondary, all 0.0.0.0."""
    s = mk(**SRV, dns=("192.0.2.53",))
    (ours,) = start(s)
    z = "0.0.0.0"
    win = [addr(z), addr(z, 129), addr(z, 130), addr(z, 131), addr(z, 132)]
    rej = reply_to(s, *win, ident=1)
    assert rej.code == Code.CONFIGURE_REJECT and rej.options() == win[2:]
    nak = reply_to(s, *win[:2], ident=2)
    assert nak.code == Code.CONFIGURE_NAK
    assert nak.options() == [addr("198.51.100.2"), addr("192.0.2.53", 129)]
    assert reply_to(s, *nak.options(), ident=3).code == Code.CONFIGURE_ACK
    s.receive(Packet(Code.CONFIGURE_ACK, ours.identifier, ours.data).encode(), 1.0)
    assert result(s) == IpcpResult(A("198.51.100.1"), A("198.51.100.2"), (A("192.0.2.53"),))
