"""IPV6CP (RFC 5072): interface identifiers, collisions, compression rejected."""
from __future__ import annotations

import random
import struct
from ipaddress import IPv6Address

from support.ppp_pair import pump
from fastpptp.ppp.constants import Code
from fastpptp.ppp.fsm import State, ThisLayerUp
from fastpptp.ppp.ipv6cp import IPV6CP, Ipv6cpConfig, link_local
from fastpptp.ppp.packet import Option, Packet, encode_options


def mk(seed, **kw):
    return IPV6CP(Ipv6cpConfig(**kw), random.Random(seed))


def result(p):
    return next(e.result for e in p.events() if isinstance(e, ThisLayerUp))


def iid(v: int) -> Option:
    return Option(1, struct.pack("!Q", v))


def test_pair_converges_with_random_nonzero_distinct_ids():
    a, b = mk(1), mk(2)
    for p in (a, b):
        p.open(0.0)
        p.up(0.0)
    assert pump(a, b) <= 2 and a.state is b.state is State.Opened
    ra, rb = result(a), result(b)
    assert ra.local_id == rb.peer_id and rb.local_id == ra.peer_id
    assert ra.local_id and rb.local_id and ra.local_id != rb.local_id
    assert ra.local_link_local == IPv6Address((0xFE80 << 112) | ra.local_id)


def test_collision_resolved_in_a_pair():
    a, b = mk(1, interface_id=0x1234), mk(2, interface_id=0x1234)
    for p in (a, b):
        p.open(0.0)
        p.up(0.0)
    pump(a, b)
    ra, rb = result(a), result(b)
    assert a.state is b.state is State.Opened
    assert ra.local_id != ra.peer_id and ra.local_id == rb.peer_id


def test_zero_and_colliding_ids_are_nakked_compression_rejected():
    a = mk(1, interface_id=0x42)
    a.open(0.0)
    a.up(0.0)
    a.frames_to_send()
    for bad in (0, 0x42):
        a.receive(Packet(Code.CONFIGURE_REQUEST, 5, encode_options([iid(bad)])).encode(), 1)
        nak = Packet.decode(a.frames_to_send()[0][1])
        (o,) = nak.options()
        assert nak.code == Code.CONFIGURE_NAK and struct.unpack("!Q", o.value)[0] not in (0, 0x42)
    comp = Option(2, b"\x00\x4f\x00\x0f")
    a.receive(Packet(Code.CONFIGURE_REQUEST, 6, encode_options([iid(7), comp])).encode(), 1)
    rej = Packet.decode(a.frames_to_send()[0][1])
    assert rej.code == Code.CONFIGURE_REJECT and rej.options() == [comp]


def test_link_local():
    assert link_local(0x0200_5EFF_FE00_5301) == IPv6Address("fe80::200:5eff:fe00:5301")
