"""Packets for the TUN offload twins (fastpptp._offload and its reference _offload_ref):
an independent, deliberately naive builder and checker (RFC 1071 sums the obvious way), and
``IMPLS``, the two implementations by name (the ``impl`` fixture in tests/engine/conftest.py).

Importing this skips the importing test module when the compiled module is not built.
"""
import ipaddress
import struct

import pytest

from fastpptp import _offload_ref as ref

compiled = pytest.importorskip("fastpptp._offload", reason="build with setup.py build_ext")

IMPLS = {"compiled": compiled, "reference": ref}

NEEDS_CSUM = ref.VIRTIO_NET_HDR_F_NEEDS_CSUM
GSO_NONE = ref.VIRTIO_NET_HDR_GSO_NONE
GSO_TCPV4 = ref.VIRTIO_NET_HDR_GSO_TCPV4
GSO_TCPV6 = ref.VIRTIO_NET_HDR_GSO_TCPV6
GSO_UDP_L4 = ref.VIRTIO_NET_HDR_GSO_UDP_L4
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


# -- an independent packet builder and checker ---------------------------------------------

def inet_sum(data) -> int:
    """RFC 1071 the slow, obvious way: big-endian words, end-around carry, folded."""
    data = bytes(data)
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def pseudo(version, src, dst, proto, length) -> bytes:
    if version == 4:
        return src + dst + bytes([0, proto]) + struct.pack("!H", length)
    return src + dst + struct.pack("!I3xB", length, proto)


ADDR = {4: ("192.0.2.1", "192.0.2.2"), 6: ("2001:db8::1", "2001:db8::2")}


def ip_packet(version, proto, l4, *, src=None, dst=None, ip_id=7, df=True, tos=0, ttl=64,
              options=b"", ext=b"", ext_nh=None, flow=0):
    """IPv4/IPv6 header + l4 (whose checksum must already be filled in by the caller)."""
    s = ipaddress.ip_address(src or ADDR[version][0]).packed
    d = ipaddress.ip_address(dst or ADDR[version][1]).packed
    if version == 4:
        ihl = 20 + len(options)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl // 4, tos, ihl + len(l4), ip_id,
                          0x4000 if df else 0, ttl, proto, 0, s, d) + options
        return hdr[:10] + struct.pack("!H", 0xFFFF ^ inet_sum(hdr)) + hdr[12:] + l4
    first_nh = ext_nh if ext else proto
    hdr = struct.pack("!IHBB16s16s", 0x60000000 | (tos << 20) | flow, len(ext) + len(l4),
                      first_nh, ttl, s, d)
    return hdr + ext + l4


def tcp_packet(version=4, payload=b"", *, seq=1000, ack=5000, flags=ACK, sport=40000,
               dport=5001, window=502, opts=b"", partial=False, **ip):
    """A TCP segment with a correct checksum, or with the CHECKSUM_PARTIAL pseudo-header
    sum (what the kernel hands a NEEDS_CSUM reader) when partial=True."""
    src = ipaddress.ip_address(ip.get("src") or ADDR[version][0]).packed
    dst = ipaddress.ip_address(ip.get("dst") or ADDR[version][1]).packed
    thl = 20 + len(opts)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (thl // 4) << 4, flags, window,
                      0, 0) + opts + payload
    ph = pseudo(version, src, dst, 6, len(tcp))
    check = inet_sum(ph) if partial else 0xFFFF ^ inet_sum(ph + tcp)
    tcp = tcp[:16] + struct.pack("!H", check) + tcp[18:]
    return ip_packet(version, 6, tcp, **ip)


def udp_packet(version=4, payload=b"", *, sport=53000, dport=53, partial=False, **ip):
    src = ipaddress.ip_address(ip.get("src") or ADDR[version][0]).packed
    dst = ipaddress.ip_address(ip.get("dst") or ADDR[version][1]).packed
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ph = pseudo(version, src, dst, 17, len(udp))
    check = inet_sum(ph) if partial else (0xFFFF ^ inet_sum(ph + udp)) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", check) + udp[8:]
    return ip_packet(version, 17, udp, **ip)


def l3_len(pkt) -> int:
    if pkt[0] >> 4 == 4:
        return (pkt[0] & 15) * 4
    nh, off = pkt[6], 40
    while nh in (0, 60):
        nh, off = pkt[off], off + (pkt[off + 1] + 1) * 8
    return off


def check_packet(pkt, proto=6):
    """Assert IP lengths and header checksum, and the L4 checksum, are all valid."""
    version = pkt[0] >> 4
    l3 = l3_len(pkt)
    if version == 4:
        assert struct.unpack("!H", pkt[2:4])[0] == len(pkt)
        assert inet_sum(pkt[:l3]) == 0xFFFF, "IPv4 header checksum"
        src, dst = pkt[12:16], pkt[16:20]
    else:
        assert struct.unpack("!H", pkt[4:6])[0] == len(pkt) - 40
        src, dst = pkt[8:24], pkt[24:40]
    assert inet_sum(pseudo(version, src, dst, proto, len(pkt) - l3) + pkt[l3:]) == 0xFFFF, \
        "L4 checksum"


def tcp_fields(pkt):
    l3 = l3_len(pkt)
    sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", pkt[l3:l3 + 14])
    return {"seq": seq, "ack": ack, "flags": flags, "payload": pkt[l3 + (off >> 4) * 4:],
            "id": struct.unpack("!H", pkt[4:6])[0] if pkt[0] >> 4 == 4 else None}


def super_packet(version, payload, gso_size, *, flags=ACK | PSH, ecn=False, **kw):
    """What a TSO read from the TUN looks like: partial csum + GSO vnet_hdr."""
    pkt = tcp_packet(version, payload, flags=flags, partial=True, **kw)
    l3 = l3_len(pkt)
    thl = (pkt[l3 + 12] >> 4) * 4
    gso = (GSO_TCPV4 if version == 4 else GSO_TCPV6) | (ref.VIRTIO_NET_HDR_GSO_ECN if ecn else 0)
    return pkt, ref.pack_vnet_hdr(NEEDS_CSUM, gso, l3 + thl, gso_size, l3, 16)


def flow(version, sizes, *, seq=1000, ip_id=100, last_flags=ACK | PSH, **kw):
    pkts, off = [], 0
    for k, n in enumerate(sizes):
        flags = last_flags if k == len(sizes) - 1 else ACK
        payload = bytes((off + i) & 0xFF for i in range(n))
        pkts.append(tcp_packet(version, payload, seq=(seq + off) & 0xFFFFFFFF, flags=flags,
                               ip_id=(ip_id + k) & 0xFFFF, **kw))
        off += n
    return pkts
