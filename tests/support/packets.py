"""Packet builders shared by the engine tests (tests/engine/); no tests of its own."""
from __future__ import annotations

import ipaddress
import struct

from fastpptp.tools.flood import gre as flood_gre
from fastpptp.tools.flood import ip_checksum as csum

PEER = "192.0.2.2"
LOCAL = "192.0.2.1"


def ipv4(src: str, dst: str, payload: bytes, proto: int = 17, ident: int = 0, frag: int = 0) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0,
                    ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(src: str, dst: str, payload: bytes, nh: int = 17) -> bytes:
    return (struct.pack("!IHBB", 0x60000000, len(payload), nh, 64)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload)


def udp_packet(dst: str = "198.51.100.2", src: str = "198.51.100.1", body: bytes = b"hello") -> bytes:
    return ipv4(src, dst, struct.pack("!HHHH", 1000, 2000, 8 + len(body), 0) + body)


def tcp_syn(src: str, dst: str, mss: int, pad_nop: bool = False) -> bytes:
    opts = (b"\x01" if pad_nop else b"") + struct.pack("!BBH", 2, 4, mss)
    opts += b"\x00" * (-len(opts) % 4)
    doff = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, doff << 4, 0x02, 65535, 0, 0) + opts
    pseudo = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
              + struct.pack("!BBH", 0, 6, len(tcp)))
    c = csum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    return ipv4(src, dst, tcp, proto=6)


def tcp_ok(pkt: bytes) -> bool:
    ihl = (pkt[0] & 15) * 4
    tcp = pkt[ihl:]
    pseudo = pkt[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    return csum(pseudo + tcp) == 0


def tcp_mss(pkt: bytes) -> int:
    ihl = (pkt[0] & 15) * 4
    t = pkt[ihl:]
    i = 20
    while i < (t[12] >> 4) * 4:
        if t[i] == 1:
            i += 1
            continue
        if t[i] == 2:
            return struct.unpack("!H", t[i + 2:i + 4])[0]
        i += t[i + 1]
    raise AssertionError("no MSS")


def gre(call_id: int, seq: int | None = None, ack: int | None = None, payload: bytes = b"",
        plen: int | None = None, flags0: int | None = None, flags1: int | None = None,
        proto: int = 0x880B) -> bytes:
    """Enhanced GRE (tools/flood.gre), with the two flag octets overridable (bad input)."""
    h = bytearray(flood_gre(call_id, payload, seq, ack, proto=proto, length=plen))
    if flags0 is not None:
        h[0] = flags0
    if flags1 is not None:
        h[1] = flags1
    return bytes(h)


def dgram(gre_bytes: bytes, src: str = PEER, dst: str = LOCAL, proto: int = 47, frag: int = 0) -> bytes:
    """What a raw IPPROTO_GRE socket returns: IPv4 header + GRE."""
    return ipv4(src, dst, gre_bytes, proto=proto, frag=frag)


def ppp(proto: int, info: bytes, acfc: bool = False, pfc: bool = False) -> bytes:
    h = b"" if acfc else b"\xff\x03"
    h += bytes([proto]) if pfc and proto < 0x100 else struct.pack("!H", proto)
    return h + info


def data_in(call_id: int, seq: int, ip: bytes, ack: int | None = None, **kw) -> bytes:
    return dgram(gre(call_id, seq=seq, ack=ack, payload=ppp(0x21, ip)), **kw)


def parse_gre(frame: bytes) -> dict:
    f0, f1, proto, plen, cid = struct.unpack("!BBHHH", frame[:8])
    o = 8
    seq = ack = None
    if f0 & 0x10:
        seq = struct.unpack("!I", frame[o:o + 4])[0]
        o += 4
    if f1 & 0x80:
        ack = struct.unpack("!I", frame[o:o + 4])[0]
        o += 4
    assert proto == 0x880B and f1 & 0x7F == 1 and f0 & 0xEF == 0x20
    assert plen == len(frame) - o
    return {"call_id": cid, "seq": seq, "ack": ack, "payload": frame[o:]}


def tcp_segment(src: str, dst: str, seq: int, payload: bytes, ack: int = 1, flags: int = 0x10,
                ident: int = 0, partial: bool = False) -> bytes:
    """IPv4 (DF) + TCP segment with valid checksums; ``partial``: the TCP checksum field holds
    the folded pseudo-header sum instead (what a TUN hands over with VIRTIO_NET_HDR_F_NEEDS_CSUM)."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, seq, ack, 5 << 4, flags, 502, 0, 0) + payload
    pseudo = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
              + struct.pack("!BBH", 0, 6, len(tcp)))
    if partial:
        s = sum(struct.unpack("!6H", pseudo))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        c = s
    else:
        c = csum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    return ipv4(src, dst, tcp, proto=6, ident=ident, frag=0x4000)


def vnet(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0) -> bytes:
    """virtio_net_hdr_mrg_rxbuf (12 bytes, host = little endian)."""
    return struct.pack("<BBHHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, 0)
