"""TUN offload helpers: TSO/USO segmentation, GRO coalescing, checksum completion.

Every test runs on both the compiled module and its pure-Python twin (the `impl` fixture);
the hypothesis tests additionally assert the two give identical bytes and error codes.
Checksums are verified with the independent, deliberately naive `inet_sum` of
tests/support/offload.py.
"""
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpptp import _offload_ref as ref
from support.offload import (ACK, CWR, FIN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, NEEDS_CSUM,
                             PSH, SYN, check_packet, compiled, flow, inet_sum, ip_packet,
                             super_packet, tcp_fields, tcp_packet, udp_packet)


# -- vnet_hdr --------------------------------------------------------------------------------

def test_vnet_hdr_struct_is_the_12_byte_wire_format():
    assert compiled.vnet_hdr_size() == ref.VNET_HDR_LEN == 12
    raw = ref.pack_vnet_hdr(1, 4, 60, 1440, 40, 16)
    assert raw == bytes([1, 4, 60, 0, 0xA0, 0x05, 40, 0, 16, 0, 0, 0])   # little endian
    assert ref.unpack_vnet_hdr(raw) == ref.VnetHdr(1, 4, 60, 1440, 40, 16, 0)
    assert ref.unpack_vnet_hdr(raw[:10]) == ref.VnetHdr(1, 4, 60, 1440, 40, 16, 0)
    with pytest.raises(ref.OffloadError):
        ref.unpack_vnet_hdr(raw[:7])


# -- the Internet checksum itself --------------------------------------------------------------

def _completed_by_inet_sum(data: bytes, start: int) -> bytes:
    """What csum_complete must write at data[start:start+2]: the complement of the sum of
    data[start:] (the field's own bytes included), 0 sent as 0xFFFF."""
    c = (~inet_sum(data[start:])) & 0xFFFF
    return data[:start] + struct.pack("!H", c or 0xFFFF) + data[start + 2:]


@pytest.mark.parametrize("fill", ["random", "ff", "00"])
def test_checksum_every_length_and_alignment(fill):
    # the compiled sum reads 16- and 4-byte words with 2- and 1-byte tails: every length
    # mod 16 and every start alignment, and all-0xFF data (every add carries)
    rnd = __import__("random").Random(9)
    for n in list(range(2, 80)) + [1399, 1400, 1401, 1443, 9000, 65535]:
        for start in range(0, min(n - 1, 9)):
            if fill == "random":
                data = bytes(rnd.getrandbits(8) for _ in range(n))
            else:
                data = (b"\xff" if fill == "ff" else b"\0") * n
            vh = ref.pack_vnet_hdr(NEEDS_CSUM, GSO_NONE, 0, 0, start, 0)
            assert compiled.complete_csum(data, vh) == _completed_by_inet_sum(data, start), (n, start)


# -- segmentation ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 6])
def test_tso_super_packet_split_into_mtu_sized_packets(impl, version):
    payload = bytes(range(256)) * 256                    # 65536 bytes... trimmed below
    payload = payload[:65535 - 80]
    pkt, vh = super_packet(version, payload, 1448, flags=ACK | PSH | FIN | CWR, ecn=True,
                           seq=0xFFFFF000, ip_id=0xFFFE)
    segs = impl.segment(pkt, vh, 1400)
    hdrs = (20 if version == 4 else 40) + 20
    mss = 1400 - hdrs
    assert len(segs) == -(-len(payload) // mss)
    assert all(len(s) <= 1400 for s in segs)
    assert b"".join(tcp_fields(s)["payload"] for s in segs) == payload
    for k, s in enumerate(segs):
        check_packet(s)
        f = tcp_fields(s)
        assert f["seq"] == (0xFFFFF000 + k * mss) & 0xFFFFFFFF       # wraps
        assert f["ack"] == 5000
        last, first = k == len(segs) - 1, k == 0
        assert bool(f["flags"] & FIN) == last and bool(f["flags"] & PSH) == last
        assert bool(f["flags"] & CWR) == first
        assert f["flags"] & ACK
        if version == 4:
            assert f["id"] == (0xFFFE + k) & 0xFFFF                  # wraps too


@pytest.mark.parametrize("version", [4, 6])
def test_tso_uses_gso_size_when_smaller_than_mtu(impl, version):
    payload = bytes(5000)
    pkt, vh = super_packet(version, payload, 1000)
    segs = impl.segment(pkt, vh, 1400)
    assert [len(tcp_fields(s)["payload"]) for s in segs] == [1000] * 5
    for s in segs:
        check_packet(s)


def test_tso_copies_ipv4_options_and_tcp_options(impl):
    opts = bytes([1, 1, 8, 10]) + struct.pack("!II", 123, 456)       # NOP NOP timestamps
    payload = bytes(range(200)) * 20
    pkt = tcp_packet(4, payload, opts=opts, partial=True, options=bytes([1, 1, 1, 0]))
    vh = ref.pack_vnet_hdr(NEEDS_CSUM, GSO_TCPV4, 56, 1000, 24, 16)
    segs = impl.segment(pkt, vh, 1500)
    assert len(segs) == 4
    for s in segs:
        check_packet(s)
        assert s[20:24] == bytes([1, 1, 1, 0]) and s[44:56] == opts
    assert b"".join(tcp_fields(s)["payload"] for s in segs) == payload


def test_tso_ipv6_hop_by_hop_extension_header(impl):
    hbh = bytes([6, 0, 1, 4, 0, 0, 0, 0])                             # next=TCP, PadN
    payload = bytes(range(256)) * 10
    pkt = tcp_packet(6, payload, partial=True, ext=hbh, ext_nh=0)
    vh = ref.pack_vnet_hdr(NEEDS_CSUM, GSO_TCPV6, 68, 1200, 48, 16)
    segs = impl.segment(pkt, vh, 1300)
    assert len(segs) == 3
    for s in segs:
        assert s[40:48] == hbh
        check_packet(s)


@pytest.mark.parametrize("version", [4, 6])
def test_uso_udp_segmentation(impl, version):
    payload = bytes(range(250)) * 16
    pkt = udp_packet(version, payload, partial=True)
    l3 = 20 if version == 4 else 40
    vh = ref.pack_vnet_hdr(NEEDS_CSUM, GSO_UDP_L4, l3 + 8, 1000, l3, 6)
    segs = impl.segment(pkt, vh, 1400)
    assert len(segs) == 4
    for k, s in enumerate(segs):
        check_packet(s, proto=17)
        assert s[l3 + 8:] == payload[k * 1000:(k + 1) * 1000]
        assert struct.unpack("!H", s[l3 + 4:l3 + 6])[0] == len(s) - l3


@pytest.mark.parametrize("maker,proto", [(tcp_packet, 6), (udp_packet, 17)])
@pytest.mark.parametrize("version", [4, 6])
def test_gso_none_needs_csum_is_completed(impl, maker, proto, version):
    pkt = maker(version, b"hello, tunnel!!", partial=True)
    l3 = 20 if version == 4 else 40
    vh = ref.pack_vnet_hdr(NEEDS_CSUM, GSO_NONE, 0, 0, l3, 16 if proto == 6 else 6)
    [seg] = impl.segment(pkt, vh, 1400)
    check_packet(seg, proto)
    assert seg == maker(version, b"hello, tunnel!!")      # same as a fully built packet
    assert impl.complete_csum(pkt, vh) == seg


@pytest.mark.parametrize("version", [4, 6])
def test_udp_checksum_that_computes_to_zero_is_sent_as_ffff(impl, version):
    # pick the 2 payload bytes so the one's complement sum is 0xFFFF: checksum 0 -> 0xFFFF
    base = udp_packet(version, b"\0\0", partial=True)
    l3 = 20 if version == 4 else 40
    vh = ref.pack_vnet_hdr(NEEDS_CSUM, GSO_NONE, 0, 0, l3, 6)
    word = 0xFFFF - inet_sum(base[l3:])
    pkt = base[:-2] + struct.pack("!H", word)
    [seg] = impl.segment(pkt, vh, 1400)
    assert seg[l3 + 6:l3 + 8] == b"\xff\xff"
    check_packet(seg, proto=17)
    uso = ref.pack_vnet_hdr(NEEDS_CSUM, GSO_UDP_L4, l3 + 8, 100, l3, 6)
    [seg] = impl.segment(pkt, uso, 1400)
    assert seg[l3 + 6:l3 + 8] == b"\xff\xff"


def test_gso_none_without_flags_is_copied_verbatim(impl):
    pkt = bytes(udp_packet(4, b"x" * 100))
    assert impl.segment(pkt, bytes(12), 1400) == [pkt]
    assert impl.complete_csum(pkt, bytes(12)) == pkt


def test_gso_none_oversized_tcp_is_resegmented_other_protocols_too_big(impl):
    pkt = tcp_packet(4, bytes(3000))
    segs = impl.segment(pkt, bytes(12), 1400)
    assert [len(s) for s in segs] == [1400, 1400, 320]
    for s in segs:
        check_packet(s)
    with pytest.raises(ref.OffloadError) as e:
        impl.segment(udp_packet(4, bytes(3000)), bytes(12), 1400)
    assert e.value.code == ref.OFFLOAD_ETOOBIG
    with pytest.raises(ref.OffloadError) as e:
        impl.segment(tcp_packet(4, bytes(3000), flags=SYN), bytes(12), 1400)
    assert e.value.code == ref.OFFLOAD_ETOOBIG


def _v4_gso():
    return ref.pack_vnet_hdr(NEEDS_CSUM, GSO_TCPV4, 40, 1000, 20, 16)


BAD = [
    ("truncated ip header", tcp_packet(4, bytes(3000))[:15], _v4_gso(), ref.OFFLOAD_EMALFORMED),
    ("tcp header cut", tcp_packet(4, bytes(3000))[:30], _v4_gso(), ref.OFFLOAD_EMALFORMED),
    ("total length > buffer", tcp_packet(4, bytes(3000))[:2000], _v4_gso(),
     ref.OFFLOAD_EMALFORMED),
    ("TCPV4 on an IPv6 packet", tcp_packet(6, bytes(3000)), _v4_gso(), ref.OFFLOAD_EMALFORMED),
    ("TCPV6 on an IPv4 packet", tcp_packet(4, bytes(3000)),
     ref.pack_vnet_hdr(NEEDS_CSUM, GSO_TCPV6, 40, 1000, 20, 16), ref.OFFLOAD_EMALFORMED),
    ("gso_size 0", tcp_packet(4, bytes(3000)),
     ref.pack_vnet_hdr(NEEDS_CSUM, GSO_TCPV4, 40, 0, 20, 16), ref.OFFLOAD_EMALFORMED),
    ("TCP GSO on UDP", udp_packet(4, bytes(3000)), _v4_gso(), ref.OFFLOAD_EMALFORMED),
    ("SYN in a GSO packet", tcp_packet(4, bytes(3000), flags=SYN), _v4_gso(),
     ref.OFFLOAD_EUNSUPPORTED),
    ("UFO", udp_packet(4, bytes(3000)), ref.pack_vnet_hdr(NEEDS_CSUM, 3, 28, 1000, 20, 6),
     ref.OFFLOAD_EUNSUPPORTED),
    ("IPv4 fragment", tcp_packet(4, bytes(3000))[:6] + b"\x20\x00" + tcp_packet(4, bytes(3000))[8:],
     _v4_gso(), ref.OFFLOAD_EUNSUPPORTED),
    ("IPv6 routing header", tcp_packet(6, bytes(3000), ext=bytes([6, 0, 0, 0, 0, 0, 0, 0]),
                                       ext_nh=43),
     ref.pack_vnet_hdr(NEEDS_CSUM, GSO_TCPV6, 68, 1000, 48, 16), ref.OFFLOAD_EUNSUPPORTED),
    ("csum_start beyond packet", udp_packet(4, b"abc"),
     ref.pack_vnet_hdr(NEEDS_CSUM, GSO_NONE, 0, 0, 60, 6), ref.OFFLOAD_EMALFORMED),
    ("csum field beyond packet", udp_packet(4, b"abc"),
     ref.pack_vnet_hdr(NEEDS_CSUM, GSO_NONE, 0, 0, 20, 30), ref.OFFLOAD_EMALFORMED),
    ("version 5", b"\x50" + bytes(60), _v4_gso(), ref.OFFLOAD_EMALFORMED),
    ("empty", b"", _v4_gso(), ref.OFFLOAD_EMALFORMED),
]


@pytest.mark.parametrize("name,pkt,vh,code", BAD, ids=[b[0] for b in BAD])
def test_segment_rejects_with_typed_code(impl, name, pkt, vh, code):
    with pytest.raises(ref.OffloadError) as e:
        impl.segment(pkt, vh, 1400)
    assert e.value.code == code


def test_segment_bounds_output_rows(impl):
    pkt, vh = super_packet(4, bytes(10000), 1000)
    assert len(impl.segment(pkt, vh, 1400, max_out=10)) == 10
    with pytest.raises(ref.OffloadError) as e:
        impl.segment(pkt, vh, 1400, max_out=9)
    assert e.value.code == ref.OFFLOAD_ENOSPC
    with pytest.raises(ref.OffloadError) as e:
        impl.segment(pkt, vh, 40)                            # no room for any payload
    assert e.value.code == ref.OFFLOAD_ETOOBIG


# -- GRO coalescing --------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 6])
def test_coalesce_flow_into_one_super_packet_and_back(impl, version):
    opts = bytes([1, 1, 8, 10]) + struct.pack("!II", 99, 77)
    pkts = flow(version, [1348] * 20 + [500], opts=opts, seq=0xFFFFFF00)
    [(vh_raw, sup)] = impl.coalesce(pkts)
    vh = ref.unpack_vnet_hdr(vh_raw)
    l3 = 20 if version == 4 else 40
    assert vh == ref.VnetHdr(NEEDS_CSUM, GSO_TCPV4 if version == 4 else GSO_TCPV6,
                             l3 + 32, 1348, l3, 16, 0)
    assert len(sup) == l3 + 32 + 1348 * 20 + 500
    assert tcp_fields(sup)["flags"] == ACK | PSH
    # the checksum field holds the partial (pseudo-header) sum, as the kernel expects
    check_packet(impl.complete_csum(sup, vh_raw))
    # what the kernel would do with it: segment at gso_size -> the original packets
    assert impl.segment(sup, vh_raw, 1500) == pkts


def test_coalesce_ipv4_ids_must_follow_unless_df(impl):
    pkts = flow(4, [1000] * 4, df=False)
    assert len(impl.coalesce(pkts)) == 1
    shuffled = [pkts[0], tcp_packet(4, tcp_fields(pkts[1])["payload"], seq=2000, ip_id=999,
                                    df=False)]
    assert len(impl.coalesce(shuffled)) == 2
    with_df = [pkts[0]] + [tcp_packet(4, bytes(1000), seq=2000 + 1000 * k, ip_id=5, df=True)
                           for k in range(3)]
    with_df[0] = tcp_packet(4, bytes(1000), seq=1000, ip_id=5, df=True)
    assert len(impl.coalesce(with_df)) == 1


def _corrupt(pkt, at=-1):
    b = bytearray(pkt)
    b[at] ^= 0x01
    return bytes(b)


def _merged_counts(impl, pkts):
    out = []
    for vh, p in impl.coalesce(pkts):
        h = ref.unpack_vnet_hdr(vh)
        out.append(1 if h.gso_type == GSO_NONE else -(-len(tcp_fields(p)["payload"]) // h.gso_size))
    return out


def _gro_cases():
    f = flow(4, [1000] * 4)
    return [
        ("one flow", f, [4]),
        ("seq gap", f[:2] + [tcp_packet(4, bytes(1000), seq=3001, ip_id=102)], [2, 1]),
        ("other port", f[:2] + [tcp_packet(4, bytes(1000), seq=3000, ip_id=102, sport=1)],
         [2, 1]),
        ("other ack", f[:2] + [tcp_packet(4, bytes(1000), seq=3000, ip_id=102, ack=1)], [2, 1]),
        ("other window", f[:2] + [tcp_packet(4, bytes(1000), seq=3000, ip_id=102, window=1)],
         [2, 1]),
        ("other TOS (ECN CE)", f[:2] + [tcp_packet(4, bytes(1000), seq=3000, ip_id=102, tos=3)],
         [2, 1]),
        ("other TTL", f[:2] + [tcp_packet(4, bytes(1000), seq=3000, ip_id=102, ttl=3)], [2, 1]),
        ("other option bytes", [tcp_packet(4, bytes(1000), opts=bytes([1, 1, 1, 1]))]
         + [tcp_packet(4, bytes(1000), seq=2000, ip_id=8, opts=bytes([1, 1, 1, 0]))], [1, 1]),
        ("PSH ends the run", flow(4, [1000] * 2, last_flags=ACK | PSH) + f[2:], [2, 2]),
        ("short segment ends the run", flow(4, [1000, 500, 1000]), [2, 1]),
        ("bigger segment not merged", flow(4, [500, 1000]), [1, 1]),
        ("pure ACKs", [tcp_packet(4, b"", seq=1000)] * 3, [1, 1, 1]),
        ("FIN not merged", f[:2] + [tcp_packet(4, bytes(1000), seq=3000, ip_id=102,
                                               flags=ACK | FIN)], [2, 1]),
        ("CWR not merged", [tcp_packet(4, bytes(1000), flags=ACK | CWR)] + f[1:], [1, 3]),
        ("bad TCP checksum second", [f[0], _corrupt(f[1])] + f[2:], [1, 1, 2]),
        ("bad TCP checksum first", [_corrupt(f[0])] + f[1:], [1, 3]),
        ("bad IPv4 header checksum", [f[0], _corrupt(f[1], 10)] + f[2:], [1, 1, 2]),
        ("IPv4 options", [tcp_packet(4, bytes(1000), options=bytes(4))] * 2, [1, 1]),
        ("v4 then v6", [f[0], flow(6, [1000], seq=2000)[0]], [1, 1]),
        ("UDP", [udp_packet(4, bytes(100))] * 2, [1, 1]),
        ("64 KB limit", flow(4, [1400] * 60), [46, 14]),
    ]


@pytest.mark.parametrize("name,pkts,counts", _gro_cases(), ids=[c[0] for c in _gro_cases()])
def test_coalesce_merges_only_what_it_may(impl, name, pkts, counts):
    out = impl.coalesce(pkts)
    assert _merged_counts(impl, pkts) == counts
    for vh, p in out:
        h = ref.unpack_vnet_hdr(vh)
        if h.gso_type == GSO_NONE:
            assert h == ref.VnetHdr() and p in pkts        # untouched
        else:
            assert len(p) <= 65535
            check_packet(impl.complete_csum(p, vh))
    # nothing lost, nothing reordered: resegmenting at gso_size gives back the input
    back = []
    for vh, p in out:
        back += impl.segment(p, vh, 65535) if ref.unpack_vnet_hdr(vh).gso_type else [p]
    assert back == pkts


def test_coalesce_respects_dst_cap(impl):
    pkts = flow(4, [1000] * 10)
    assert _merged_counts(impl, pkts) == [10]
    out = impl.coalesce(pkts, dst_cap=4000)
    assert [len(p) for _, p in out] == [3040, 3040, 3040, 1040]
    with pytest.raises(ref.OffloadError) as e:
        impl.coalesce(pkts, dst_cap=1000)
    assert e.value.code == ref.OFFLOAD_ENOSPC


# -- differential property tests -------------------------------------------------------------

@st.composite
def tcp_streams(draw):
    version = draw(st.sampled_from([4, 6]))
    n = draw(st.integers(1, 12))
    mss = draw(st.integers(1, 1460))
    sizes = [mss] * (n - 1) + [draw(st.integers(1, mss))]
    opts = draw(st.sampled_from([b"", bytes([1, 1, 8, 10]) + bytes(8), bytes([1, 1, 1, 0])]))
    seq = draw(st.integers(0, 2 ** 32 - 1))
    last = draw(st.sampled_from([ACK, ACK | PSH]))
    pkts = flow(version, sizes, seq=seq, opts=opts, last_flags=last,
                ip_id=draw(st.integers(0, 0xFFFF)))
    # disturb: corrupt, drop, duplicate or swap a packet, or leave the flow alone
    op = draw(st.sampled_from(["none", "none", "corrupt", "drop", "dup", "swap"]))
    i = draw(st.integers(0, len(pkts) - 1))
    if op == "corrupt":
        pkts[i] = _corrupt(pkts[i], draw(st.integers(0, len(pkts[i]) - 1)))
    elif op == "drop" and len(pkts) > 1:
        del pkts[i]
    elif op == "dup":
        pkts.insert(i, pkts[i])
    elif op == "swap" and i + 1 < len(pkts):
        pkts[i], pkts[i + 1] = pkts[i + 1], pkts[i]
    return version, pkts, op


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tcp_streams(), st.integers(200, 1500))
def test_differential_coalesce_then_segment(stream, max_ip_len):
    version, pkts, op = stream
    a = compiled.coalesce(pkts)
    assert a == ref.coalesce(pkts)
    segs = []
    for vh, p in a:
        try:
            s = compiled.segment(p, vh, max_ip_len)
        except ref.OffloadError as e:
            with pytest.raises(ref.OffloadError) as e2:
                ref.segment(p, vh, max_ip_len)
            assert e2.value.code == e.code
            continue
        assert s == ref.segment(p, vh, max_ip_len)
        segs += s
    if op == "none":
        # an undisturbed flow: one super-packet whose resegmentation carries the stream
        assert len(a) == 1 or sum(len(p) for p in pkts) > 65535
        assert b"".join(tcp_fields(s)["payload"] for s in segs) == \
            b"".join(tcp_fields(p)["payload"] for p in pkts)
        for s in segs:
            assert len(s) <= max_ip_len
            check_packet(s)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([4, 6]), st.integers(1, 60000), st.integers(1, 9000),
       st.integers(100, 9000), st.booleans())
def test_differential_tso(version, size, gso_size, max_ip_len, fin):
    payload = bytes(i * 7 & 0xFF for i in range(size))
    pkt, vh = super_packet(version, payload, gso_size, flags=ACK | (FIN if fin else PSH))
    a = compiled.segment(pkt, vh, max_ip_len, max_out=100000)
    assert a == ref.segment(pkt, vh, max_ip_len, max_out=100000)
    assert b"".join(tcp_fields(s)["payload"] for s in a) == payload
    for s in a[:3] + a[-2:]:
        check_packet(s)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(min_size=12, max_size=12), st.integers(1, 300))
def test_differential_garbage_never_crashes(data, vh, max_ip_len):
    def run(mod):
        try:
            return mod.segment(data, vh, max_ip_len)
        except ref.OffloadError as e:
            return e.code
    assert run(compiled) == run(ref)
    assert compiled.complete_csum(data, bytes(12)) == data
    pieces = [data[:k] for k in range(0, len(data), 37)] + [data]
    assert compiled.coalesce(pieces) == ref.coalesce(pieces)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([4, 6]), st.binary(max_size=300), st.integers(0, 400))
def test_differential_garbage_after_valid_headers(version, tail, cut):
    pkt = tcp_packet(version, tail)
    pkt = pkt[:cut]
    vh = ref.pack_vnet_hdr(NEEDS_CSUM, GSO_TCPV4 if version == 4 else GSO_TCPV6, 0, 50,
                           20 if version == 4 else 40, 16)

    def run(mod):
        try:
            return mod.segment(pkt, vh, 120)
        except ref.OffloadError as e:
            return e.code
    assert run(compiled) == run(ref)


# -- grouping interleaved flows --------------------------------------------------------------

def test_group_flows_lets_interleaved_streams_coalesce(impl):
    a = flow(4, [1000] * 8)
    b = flow(4, [1000] * 8, sport=40001, seq=77)
    c = flow(6, [1200] * 4)
    ping = ip_packet(4, 1, bytes(64))                                  # ICMP
    mixed = [p for k in range(8) for p in (a[k], b[k], ping)] + c
    assert len(impl.coalesce(mixed)) == 24 + 1                        # only the tail c merges
    grouped = impl.group_flows(mixed)
    assert grouped == a + b + [ping] * 8 + c
    out = impl.coalesce(mixed, group=True)
    assert _merged_counts(impl, grouped) == [8, 8] + [1] * 8 + [4]
    assert [ref.unpack_vnet_hdr(vh).gso_type for vh, _ in out] == \
        [GSO_TCPV4, GSO_TCPV4] + [GSO_NONE] * 8 + [GSO_TCPV6]


def test_group_flows_keeps_a_flows_control_segments_in_place(impl):
    data = flow(4, [1000] * 3)
    fin = tcp_packet(4, seq=4000, flags=ACK | FIN)
    other = flow(4, [500], sport=1)
    pkts = [data[0], other[0], data[1], data[2], fin]
    assert impl.group_flows(pkts) == [data[0], data[1], data[2], fin, other[0]]


def test_group_flows_bounded_batch(impl):
    with pytest.raises(ref.OffloadError) as e:
        impl.group_flows([b""] * (ref.GRO_MAX_BATCH + 1))
    assert e.value.code == ref.OFFLOAD_ENOSPC
    udp = udp_packet(4, bytes(10))
    assert impl.group_flows([b"", udp, b"\x45"]) == [b"", b"\x45", udp]   # junk: one group


_FLOWS = {v6: [flow(6 if v6 and k == 1 else 4, [300] * 60, sport=1000 + k) for k in range(3)]
          for v6 in (False, True)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(range(5)), min_size=1, max_size=60), st.booleans())
def test_differential_group_flows(choices, v6):
    flows = _FLOWS[v6]
    streams = [iter(f) for f in flows]
    noise = [udp_packet(4, bytes(10)), b"\x00" * 3]
    pkts = [next(streams[c]) if c < 3 else noise[c - 3] for c in choices]
    g = compiled.group_flows(pkts)
    assert g == ref.group_flows(pkts)
    assert compiled.coalesce(pkts, group=True) == ref.coalesce(pkts, group=True)
    # a permutation that keeps every flow's internal order
    assert sorted(g) == sorted(pkts)
    for f in flows:
        members = set(f)
        assert [p for p in g if p in members] == [p for p in pkts if p in members]
