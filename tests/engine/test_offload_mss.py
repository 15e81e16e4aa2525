"""TCP MSS clamping (mss_clamp / mss_clamp_mtu) on both implementations.

Tunnel MSS = PPP MTU - 40 (IPv4) / - 60 (IPv6).  The TCP checksum is updated incrementally
(RFC 1624) and checked here with an independent full recomputation.
"""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpptp import _offload_ref as ref
from support.offload import (ACK, SYN, check_packet, compiled, inet_sum, pseudo, tcp_packet,
                             udp_packet)

MSS_1460 = bytes([2, 4, 0x05, 0xB4])


def mss_values(pkt):
    """Every MSS option value of the TCP header, walking options the obvious way."""
    l3 = (pkt[0] & 15) * 4 if pkt[0] >> 4 == 4 else 40
    if pkt[0] >> 4 == 6 and pkt[6] == 0:
        l3 += (pkt[41] + 1) * 8
    end = l3 + (pkt[l3 + 12] >> 4) * 4
    i, out = l3 + 20, []
    while i < end and pkt[i] != 0:
        if pkt[i] == 1:
            i += 1
            continue
        if i + 1 >= end or pkt[i + 1] < 2:
            break
        if pkt[i] == 2 and i + 4 <= end:
            out.append(struct.unpack("!H", pkt[i + 2:i + 4])[0])
        i += pkt[i + 1]
    return out


SYN_OPTS = MSS_1460 + bytes([4, 2, 1, 3, 3, 7]) + bytes([8, 10]) + bytes(8)   # MSS SACK WS TS

CLAMP_CASES = [
    # name, packet, mss, changed, MSS after
    ("SYN v4", tcp_packet(4, flags=SYN, opts=SYN_OPTS), 1360, True, [1360]),
    ("SYN-ACK v4", tcp_packet(4, flags=SYN | ACK, opts=SYN_OPTS), 1360, True, [1360]),
    ("SYN v6", tcp_packet(6, flags=SYN, opts=MSS_1460), 1340, True, [1340]),
    ("SYN v6 hop-by-hop", tcp_packet(6, flags=SYN, opts=MSS_1460, ext=bytes([6, 0, 1, 4, 0, 0, 0, 0]),
                                     ext_nh=0), 1340, True, [1340]),
    ("MSS at an odd offset", tcp_packet(4, flags=SYN, opts=bytes([1]) + MSS_1460 + bytes([1, 1, 0])),
     1360, True, [1360]),
    ("MSS after timestamps", tcp_packet(4, flags=SYN, opts=bytes([1, 1, 8, 10]) + bytes(8) + MSS_1460),
     1000, True, [1000]),
    ("two MSS options", tcp_packet(4, flags=SYN, opts=MSS_1460 + MSS_1460), 1200, True, [1200, 1200]),
    ("SYN with payload", tcp_packet(4, b"data", flags=SYN, opts=MSS_1460), 1360, True, [1360]),
    ("non-SYN untouched", tcp_packet(4, flags=ACK, opts=MSS_1460), 1360, False, [1460]),
    ("already smaller", tcp_packet(4, flags=SYN, opts=bytes([2, 4, 0x04, 0x00])), 1360, False, [1024]),
    ("equal", tcp_packet(4, flags=SYN, opts=bytes([2, 4, 0x05, 0x50])), 1360, False, [1360]),
    ("no MSS option", tcp_packet(4, flags=SYN, opts=bytes([1, 1, 4, 2])), 1360, False, []),
    ("after End of Option List", tcp_packet(4, flags=SYN, opts=bytes([0, 0, 0, 0]) + MSS_1460),
     1360, False, []),
    ("bad MSS length", tcp_packet(4, flags=SYN, opts=bytes([2, 3, 5, 0xB4])), 1360, False, None),
]


@pytest.mark.parametrize("name,pkt,mss,changed,after", CLAMP_CASES, ids=[c[0] for c in CLAMP_CASES])
def test_clamp_table(impl, name, pkt, mss, changed, after):
    out = impl.clamp(pkt, mss)
    assert (out != pkt) == changed
    assert len(out) == len(pkt)
    check_packet(out)
    if after is not None:
        assert mss_values(out) == after
    assert impl.clamp(out, mss) == out                               # idempotent


def test_clamp_mtu_uses_per_family_overhead(impl):
    v4 = tcp_packet(4, flags=SYN, opts=MSS_1460)
    v6 = tcp_packet(6, flags=SYN, opts=MSS_1460)
    assert mss_values(impl.clamp_mtu(v4, 1400)) == [1360]
    assert mss_values(impl.clamp_mtu(v6, 1400)) == [1340]
    assert impl.clamp_mtu(v4, 40) == v4                              # nonsense MTU: no-op
    check_packet(impl.clamp_mtu(v6, 1400))


UNTOUCHED = [
    ("UDP", udp_packet(4, MSS_1460 * 4)),
    ("IPv4 non-first fragment", (lambda p: p[:6] + b"\x00\x10" + p[8:])(
        tcp_packet(4, flags=SYN, opts=MSS_1460))),
    ("option length runs past header", tcp_packet(4, flags=SYN, opts=bytes([1, 1, 8, 40]))),
    ("option length 0", tcp_packet(4, flags=SYN, opts=bytes([3, 0]) + MSS_1460 + bytes(2))),
    ("option length 1", tcp_packet(4, flags=SYN, opts=bytes([3, 1]) + MSS_1460 + bytes(2))),
    ("truncated inside the MSS option", tcp_packet(4, flags=SYN, opts=MSS_1460)[:42]),
    ("truncated TCP header", tcp_packet(4, flags=SYN, opts=MSS_1460)[:30]),
    ("truncated IPv6", tcp_packet(6, flags=SYN, opts=MSS_1460)[:39]),
    ("bad data offset", (lambda p: p[:32] + b"\x30" + p[33:])(tcp_packet(4, flags=SYN, opts=MSS_1460))),
    ("empty", b""),
    ("not IP", b"\x10" * 64),
]


@pytest.mark.parametrize("name,pkt", UNTOUCHED, ids=[c[0] for c in UNTOUCHED])
def test_clamp_leaves_alone_and_never_reads_past_the_end(impl, name, pkt):
    assert impl.clamp(pkt, 536) == pkt


def test_truncated_header_still_clamps_a_complete_mss_option(impl):
    # data offset claims 40 bytes of header, only the MSS option made it: clamp what is there
    pkt = tcp_packet(4, flags=SYN, opts=MSS_1460 + bytes([1] * 16))[:44]
    out = impl.clamp(pkt, 1000)
    assert out[40:44] == bytes([2, 4, 0x03, 0xE8])


def _capture_syns():
    try:
        from support.pcap import capture_files, read_pcap
        files = capture_files()
    except Exception:                                   # captures not present: no vectors
        return []
    return [(f"{path.name}#{fr.number}", fr.ip_datagram) for path in files
            for fr in read_pcap(path) if fr.proto == 6 and fr.tcp_flags & SYN]


CAPTURE_SYNS = _capture_syns()


def test_capture_has_real_syns():
    assert len(CAPTURE_SYNS) >= 2, "expected SYN and SYN-ACK in the interop captures"


@pytest.mark.parametrize("name,pkt", CAPTURE_SYNS, ids=[c[0] for c in CAPTURE_SYNS])
def test_clamp_real_linux_syns_from_the_captures(impl, name, pkt):
    # Linux SYNs: MSS 1460, SACK_PERM, timestamps, window scale (see INDEX.md).  Frames sent by
    # the capturing host carry the partial (pseudo-header) sum of TX checksum offload: put a
    # real checksum in first, the way the NIC did on the wire.
    assert mss_values(pkt) == [1460]
    l3 = (pkt[0] & 15) * 4
    body = pkt[l3:l3 + 16] + b"\0\0" + pkt[l3 + 18:]
    check = 0xFFFF ^ inet_sum(pseudo(4, pkt[12:16], pkt[16:20], 6, len(body)) + body)
    pkt = pkt[:l3 + 16] + struct.pack("!H", check) + pkt[l3 + 18:]
    check_packet(pkt)
    out = impl.clamp_mtu(pkt, 1400)
    assert mss_values(out) == [1360]
    check_packet(out)
    diff = [i for i in range(len(pkt)) if pkt[i] != out[i]]
    assert diff and all(i in (36, 37, 42, 43) for i in diff)    # TCP checksum + MSS value only


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([4, 6]), st.lists(st.sampled_from([
    bytes([1]), MSS_1460, bytes([2, 4, 0xFF, 0xFF]), bytes([2, 4, 0, 1]), bytes([4, 2]),
    bytes([3, 3, 7]), bytes([8, 10]) + bytes(8)]), max_size=6),
    st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 2 ** 32 - 1))
def test_differential_clamp_keeps_checksum_valid(version, opts, mss, sport, seq):
    opts = b"".join(opts)[:40]
    opts += bytes(-len(opts) % 4)
    pkt = tcp_packet(version, flags=SYN, opts=opts, sport=sport, seq=seq)
    out = compiled.clamp(pkt, mss)
    assert out == ref.clamp(pkt, mss)
    check_packet(out)
    assert all(v <= mss for v in mss_values(out)) or out == pkt


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 0xFFFF))
def test_differential_clamp_garbage(data, mss):
    assert compiled.clamp(data, mss) == ref.clamp(data, mss)
    assert compiled.clamp_mtu(data, mss) == ref.clamp_mtu(data, mss)
