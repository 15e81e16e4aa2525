"""Pure-Python reference of fastpptp._offload: the readable spec of TUN offloads.

Same behaviour, byte for byte and error for error, as the compiled module; the differential
tests (tests/engine/test_offload*.py) hold the two together.  The contract, including the choice of
the 12-byte virtio_net_hdr, is written down in fastpptp/_offload.pxd.

Flow of a TUN read (kernel -> us -> GRE), with IFF_VNET_HDR and TSO enabled on the TUN:
  1. read() returns vnet_hdr (12 bytes) + one IP packet of up to 64 KB (a "super-packet");
  2. segment() cuts it into IP packets of at most the PPP MTU, fixing lengths, IPv4 IDs,
     TCP sequence numbers, flags and every checksum;
  3. each segment is PPP/GRE encapsulated on its own (the engine's job).
Flow of a TUN write (GRE -> us -> kernel):
  1. the engine decapsulates a batch of IP packets;
  2. coalesce() merges consecutive in-order segments of one TCP flow into one super-packet
     with a NEEDS_CSUM/GSO_TCPV4|6 vnet_hdr, so the kernel takes them in one write.
MSS clamping (clamp/clamp_mtu) rewrites the MSS option of TCP SYNs crossing the tunnel.

Byte order: IP/TCP fields are big endian; virtio_net_hdr fields are host order, i.e. little
endian on the machines we run on (x86-64, aarch64).
"""
from __future__ import annotations

import struct
from typing import NamedTuple

VNET_HDR_LEN = 12

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2

VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP = 3
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80

GRO_MAX_IP_LEN = 65535
GRO_MAX_BATCH = 256

OFFLOAD_EMALFORMED = -1
OFFLOAD_EUNSUPPORTED = -2
OFFLOAD_ETOOBIG = -3
OFFLOAD_ENOSPC = -4

ERROR_NAMES = {
    OFFLOAD_EMALFORMED: "malformed",
    OFFLOAD_EUNSUPPORTED: "unsupported",
    OFFLOAD_ETOOBIG: "too big",
    OFFLOAD_ENOSPC: "no space",
}

IPPROTO_TCP = 6
IPPROTO_UDP = 17
# IPv6 extension headers we step over: hop-by-hop options, destination options (RFC 8200
# 4.3, 4.6).  A routing header changes the pseudo-header destination and a fragment header
# makes segmentation meaningless: both are refused.
_IPV6_SKIPPABLE = (0, 60)
_IPV6_ROUTING = 43
_IPV6_FRAGMENT = 44
_IPV6_MAX_EXT = 8

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_CWR = 0x80

DEFAULT_MAX_OUT = 1024


class OffloadError(ValueError):
    """A Python wrapper got a negative OFFLOAD_E* code (the nogil API returns it instead)."""

    def __init__(self, code: int, what: str = ""):
        self.code = code
        super().__init__(f"{what or 'offload'}: {ERROR_NAMES.get(code, code)} ({code})")


class VnetHdr(NamedTuple):
    """struct virtio_net_hdr_mrg_rxbuf, host (little-endian) byte order, 12 bytes."""

    flags: int = 0
    gso_type: int = VIRTIO_NET_HDR_GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0
    num_buffers: int = 0

    def pack(self) -> bytes:
        return _VNET.pack(*self)


_VNET = struct.Struct("<BBHHHHH")
_VNET10 = struct.Struct("<BBHHHH")


def pack_vnet_hdr(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0,
                  num_buffers=0) -> bytes:
    return _VNET.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers)


def unpack_vnet_hdr(data: bytes) -> VnetHdr:
    """Decode a 12-byte (or legacy 10-byte) virtio_net_hdr."""
    if len(data) >= VNET_HDR_LEN:
        return VnetHdr(*_VNET.unpack_from(data))
    if len(data) == 10:
        return VnetHdr(*_VNET10.unpack_from(data), 0)
    raise OffloadError(OFFLOAD_EMALFORMED, f"vnet_hdr of {len(data)} bytes")


# -- Internet checksum (RFC 1071) -----------------------------------------------------------

def _be16(b, off: int) -> int:
    return (b[off] << 8) | b[off + 1]


def _put16(b: bytearray, off: int, v: int) -> None:
    b[off] = (v >> 8) & 0xFF
    b[off + 1] = v & 0xFF


def ones_sum(data, start: int = 0, end: int | None = None) -> int:
    """Unfolded sum of the big-endian 16-bit words of data[start:end] (odd tail padded)."""
    chunk = bytes(data[start:end])
    if len(chunk) & 1:
        chunk += b"\0"
    return sum(struct.unpack(f"!{len(chunk) // 2}H", chunk))


def fold(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _pseudo_sum(pkt, version: int, proto: int, l4_len: int) -> int:
    """Sum of the TCP/UDP pseudo-header (RFC 9293 3.1, RFC 8200 8.1)."""
    if version == 4:
        return ones_sum(pkt, 12, 20) + proto + l4_len
    return ones_sum(pkt, 8, 40) + (l4_len >> 16) + (l4_len & 0xFFFF) + proto


def _l4_checksum(pkt, version: int, proto: int, l3: int, end: int) -> int:
    """The checksum to store (field taken as zero) for the L4 segment pkt[l3:end]."""
    s = _pseudo_sum(pkt, version, proto, end - l3) + ones_sum(pkt, l3, end)
    return (~fold(s)) & 0xFFFF


def _ipv4_hdr_checksum(pkt: bytearray, ihl: int) -> None:
    _put16(pkt, 10, 0)
    _put16(pkt, 10, (~fold(ones_sum(pkt, 0, ihl))) & 0xFFFF)


def csum_complete(pkt: bytearray, vh: VnetHdr) -> int:
    """NEEDS_CSUM: finish the partial checksum in place.  1 written, 0 not asked, < 0 error."""
    if not vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        return 0
    start, field = vh.csum_start, vh.csum_start + vh.csum_offset
    if start >= len(pkt) or field + 2 > len(pkt):
        return OFFLOAD_EMALFORMED
    # The field already holds the folded pseudo-header sum; it is summed with the rest.
    c = (~fold(ones_sum(pkt, start))) & 0xFFFF
    _put16(pkt, field, c or 0xFFFF)
    return 1


# -- IP/L4 header parsing shared by segmentation --------------------------------------------

class _Hdrs(NamedTuple):
    version: int
    l3: int        # IP header length including IPv4 options / IPv6 extension headers
    proto: int     # IPPROTO_TCP / IPPROTO_UDP / other
    ip_len: int    # bytes of the packet that belong to the IP datagram
    l4: int        # L4 header length (0 when proto is neither TCP nor UDP)


def _parse(pkt, n: int) -> _Hdrs | int:
    """Locate the L4 header of an unfragmented IPv4/IPv6 packet, or an OFFLOAD_E* code."""
    if n < 1:
        return OFFLOAD_EMALFORMED
    version = pkt[0] >> 4
    if version == 4:
        if n < 20:
            return OFFLOAD_EMALFORMED
        l3 = (pkt[0] & 0x0F) * 4
        ip_len = _be16(pkt, 2)
        if l3 < 20 or ip_len < l3 or ip_len > n:
            return OFFLOAD_EMALFORMED
        if _be16(pkt, 6) & 0x3FFF:            # MF or a fragment offset
            return OFFLOAD_EUNSUPPORTED
        proto = pkt[9]
    elif version == 6:
        if n < 40:
            return OFFLOAD_EMALFORMED
        ip_len = 40 + _be16(pkt, 4)
        if ip_len > n:
            return OFFLOAD_EMALFORMED
        proto, l3 = pkt[6], 40
        for _ in range(_IPV6_MAX_EXT):
            if proto in _IPV6_SKIPPABLE:
                if l3 + 8 > ip_len:
                    return OFFLOAD_EMALFORMED
                proto, l3 = pkt[l3], l3 + (pkt[l3 + 1] + 1) * 8
                if l3 > ip_len:
                    return OFFLOAD_EMALFORMED
            elif proto in (_IPV6_ROUTING, _IPV6_FRAGMENT):
                return OFFLOAD_EUNSUPPORTED
            else:
                break
        else:
            return OFFLOAD_EUNSUPPORTED
    else:
        return OFFLOAD_EMALFORMED
    l4 = 0
    if proto == IPPROTO_TCP:
        if l3 + 20 > ip_len:
            return OFFLOAD_EMALFORMED
        l4 = (pkt[l3 + 12] >> 4) * 4
        if l4 < 20 or l3 + l4 > ip_len:
            return OFFLOAD_EMALFORMED
    elif proto == IPPROTO_UDP:
        if l3 + 8 > ip_len:
            return OFFLOAD_EMALFORMED
        l4 = 8
    return _Hdrs(version, l3, proto, ip_len, l4)


# -- segmentation ---------------------------------------------------------------------------

def tso_segment(pkt: bytes, vh: VnetHdr, max_ip_len: int, max_out: int,
                max_row: int) -> list[bytearray] | int:
    """The nogil tso_segment: segments (each <= max_ip_len and <= max_row) or a code."""
    n = len(pkt)
    gso = vh.gso_type & ~VIRTIO_NET_HDR_GSO_ECN
    if gso == VIRTIO_NET_HDR_GSO_NONE:
        if n <= max_ip_len:
            if max_out < 1 or n > max_row:
                return OFFLOAD_ENOSPC
            out = bytearray(pkt)
            r = csum_complete(out, vh)
            return r if r < 0 else [out]
        h = _parse(pkt, n)
        if isinstance(h, int):
            return h
        if h.proto != IPPROTO_TCP or pkt[h.l3 + 13] & (TCP_SYN | TCP_RST):
            return OFFLOAD_ETOOBIG             # the engine answers "fragmentation needed"
        seg_payload = max_ip_len - h.l3 - h.l4
    elif gso in (VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
                 VIRTIO_NET_HDR_GSO_UDP_L4):
        h = _parse(pkt, n)
        if isinstance(h, int):
            return h
        want_proto = IPPROTO_UDP if gso == VIRTIO_NET_HDR_GSO_UDP_L4 else IPPROTO_TCP
        if h.proto != want_proto or vh.gso_size == 0:
            return OFFLOAD_EMALFORMED
        if (gso == VIRTIO_NET_HDR_GSO_TCPV4 and h.version != 4) or (
                gso == VIRTIO_NET_HDR_GSO_TCPV6 and h.version != 6):
            return OFFLOAD_EMALFORMED
        if h.proto == IPPROTO_TCP and pkt[h.l3 + 13] & (TCP_SYN | TCP_RST):
            return OFFLOAD_EUNSUPPORTED
        seg_payload = min(vh.gso_size, max_ip_len - h.l3 - h.l4)
    else:
        return OFFLOAD_EUNSUPPORTED
    return _segment(pkt, h, seg_payload, max_out, max_row)


def _segment(pkt, h: _Hdrs, seg_payload: int, max_out: int, max_row: int):
    hdrs = h.l3 + h.l4
    if seg_payload <= 0:
        return OFFLOAD_ETOOBIG                  # max_ip_len cannot even hold the headers
    payload = h.ip_len - hdrs
    nseg = max(1, -(-payload // seg_payload))
    if nseg > max_out or hdrs + min(seg_payload, payload) > max_row:
        return OFFLOAD_ENOSPC
    tcp = h.proto == IPPROTO_TCP
    if h.version == 4:
        ip_id = _be16(pkt, 4)
    if tcp:
        seq0 = int.from_bytes(pkt[h.l3 + 4:h.l3 + 8], "big")
        flags0 = pkt[h.l3 + 13]
    segs = []
    for k in range(nseg):
        off = k * seg_payload
        take = min(seg_payload, payload - off)
        seg = bytearray(pkt[:hdrs])
        seg += pkt[hdrs + off:hdrs + off + take]
        seg_len = hdrs + take
        if h.version == 4:
            _put16(seg, 2, seg_len)
            _put16(seg, 4, (ip_id + k) & 0xFFFF)
            _ipv4_hdr_checksum(seg, h.l3)
        else:
            _put16(seg, 4, seg_len - 40)
        if tcp:
            seg[h.l3 + 4:h.l3 + 8] = ((seq0 + off) & 0xFFFFFFFF).to_bytes(4, "big")
            flags = flags0
            if k < nseg - 1:
                flags &= ~(TCP_FIN | TCP_PSH)   # only the last segment ends a push/stream
            if k > 0:
                flags &= ~TCP_CWR               # CWR once per window reduction (RFC 3168)
            seg[h.l3 + 13] = flags
            csum_at = h.l3 + 16
        else:
            _put16(seg, h.l3 + 4, seg_len - h.l3)
            csum_at = h.l3 + 6
        _put16(seg, csum_at, 0)
        c = _l4_checksum(seg, h.version, h.proto, h.l3, seg_len)
        if not tcp and c == 0:
            c = 0xFFFF                          # RFC 768: 0 means "no checksum"
        _put16(seg, csum_at, c)
        segs.append(seg)
    return segs


# -- GRO coalescing --------------------------------------------------------------------------

class _Seg(NamedTuple):
    version: int
    l3: int
    thl: int
    flags: int
    seq: int
    payload: int


def _gro_parse(p) -> _Seg | None:
    """A TCP segment gro_coalesce may merge (no IP options/ext headers, ACK[|PSH]) or None."""
    n = len(p)
    if n < 20:
        return None
    version = p[0] >> 4
    if version == 4:
        if p[0] & 0x0F != 5 or _be16(p, 2) != n or _be16(p, 6) & 0x3FFF or p[9] != 6:
            return None
        l3 = 20
    elif version == 6:
        if n < 40 or 40 + _be16(p, 4) != n or p[6] != 6:
            return None
        l3 = 40
    else:
        return None
    if l3 + 20 > n:
        return None
    thl = (p[l3 + 12] >> 4) * 4
    if thl < 20 or l3 + thl > n:
        return None
    flags = p[l3 + 13]
    if flags & ~(TCP_ACK | TCP_PSH) or not flags & TCP_ACK:
        return None
    seq = int.from_bytes(p[l3 + 4:l3 + 8], "big")
    return _Seg(version, l3, thl, flags, seq, n - l3 - thl)


def _checksums_ok(p, s: _Seg) -> bool:
    if s.version == 4 and fold(ones_sum(p, 0, 20)) != 0xFFFF:
        return False
    total = _pseudo_sum(p, s.version, IPPROTO_TCP, len(p) - s.l3) + ones_sum(p, s.l3)
    return fold(total) == 0xFFFF


def _same_flow(p0, s0: _Seg, p, s: _Seg, index: int) -> bool:
    if s.version != s0.version or s.thl != s0.thl:
        return False
    if s0.version == 4:
        if p[1] != p0[1] or p[8] != p0[8] or p[12:20] != p0[12:20]:
            return False                        # TOS, TTL, addresses
        if (p[6] ^ p0[6]) & 0x40:
            return False                        # DF differs
        if not p0[6] & 0x40 and _be16(p, 4) != (_be16(p0, 4) + index) & 0xFFFF:
            return False                        # IDs of non-atomic datagrams must follow
    else:
        if p[0:4] != p0[0:4] or p[7] != p0[7] or p[8:40] != p0[8:40]:
            return False                        # class, flow label, hop limit, addresses
    t, t0 = s.l3, s0.l3
    return (p[t:t + 4] == p0[t0:t0 + 4]               # ports
            and p[t + 8:t + 12] == p0[t0 + 8:t0 + 12]  # ack number
            and p[t + 14:t + 16] == p0[t0 + 14:t0 + 16]  # window
            and p[t + 20:t + s.thl] == p0[t0 + 20:t0 + s0.thl])  # option bytes


def gro_coalesce(pkts: list, dst_cap: int) -> tuple[int, VnetHdr, bytes] | int:
    """The nogil gro_coalesce: (consumed, vnet_hdr, packet) or a code."""
    if not pkts or len(pkts[0]) > dst_cap:
        return OFFLOAD_ENOSPC
    p0 = pkts[0]
    single = (1, VnetHdr(), bytes(p0))
    s0 = _gro_parse(p0)
    if s0 is None or s0.payload == 0 or not _checksums_ok(p0, s0):
        return single
    limit = min(GRO_MAX_IP_LEN, dst_cap)
    gso_size = s0.payload
    total = len(p0)
    next_seq = (s0.seq + s0.payload) & 0xFFFFFFFF
    last = s0
    parts = [p0[s0.l3 + s0.thl:]]
    psh = s0.flags & TCP_PSH
    for index in range(1, len(pkts)):
        if last.flags & TCP_PSH or last.payload < gso_size:
            break                               # a push or a short segment ends the run
        p = pkts[index]
        s = _gro_parse(p)
        if (s is None or s.payload == 0 or s.payload > gso_size or s.seq != next_seq
                or total + s.payload > limit or not _same_flow(p0, s0, p, s, index)
                or not _checksums_ok(p, s)):
            break
        parts.append(p[s.l3 + s.thl:])
        total += s.payload
        next_seq = (next_seq + s.payload) & 0xFFFFFFFF
        psh |= s.flags & TCP_PSH
        last = s
    if len(parts) == 1:
        return single
    hdrs = s0.l3 + s0.thl
    out = bytearray(p0[:hdrs])
    for part in parts:
        out += part
    if s0.version == 4:
        _put16(out, 2, total)
        _ipv4_hdr_checksum(out, 20)
    else:
        _put16(out, 4, total - 40)
    out[s0.l3 + 13] |= psh
    # CHECKSUM_PARTIAL convention: the field holds the folded (not complemented)
    # pseudo-header sum over the whole TCP length; the kernel completes or segments it.
    _put16(out, s0.l3 + 16,
           fold(_pseudo_sum(out, s0.version, IPPROTO_TCP, total - s0.l3)))
    gso_type = VIRTIO_NET_HDR_GSO_TCPV4 if s0.version == 4 else VIRTIO_NET_HDR_GSO_TCPV6
    vh = VnetHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, hdrs, gso_size, s0.l3, 16, 0)
    return len(parts), vh, bytes(out)


def _flow_key(p) -> bytes:
    """gro_group_flows' key: version, addresses, protocol [, ports]; b"" if unparseable."""
    n = len(p)
    if n >= 20 and p[0] >> 4 == 4:
        ihl = (p[0] & 0x0F) * 4
        key = bytes([4]) + bytes(p[12:20]) + bytes([p[9]])
        if (p[9] in (IPPROTO_TCP, IPPROTO_UDP) and not _be16(p, 6) & 0x3FFF
                and ihl >= 20 and n >= ihl + 4):
            key += bytes(p[ihl:ihl + 4])
        return key
    if n >= 40 and p[0] >> 4 == 6:
        key = bytes([6]) + bytes(p[8:40]) + bytes([p[6]])
        if p[6] in (IPPROTO_TCP, IPPROTO_UDP) and n >= 44:
            key += bytes(p[40:44])
        return key
    return b""


def gro_group_flows(pkts: list) -> tuple[int, list] | int:
    """The nogil gro_group_flows: (groups, reordered list) or OFFLOAD_ENOSPC."""
    if len(pkts) > GRO_MAX_BATCH:
        return OFFLOAD_ENOSPC
    groups: dict[bytes, list] = {}                 # dicts keep first-appearance order
    for p in pkts:
        groups.setdefault(_flow_key(p), []).append(p)
    return len(groups), [p for members in groups.values() for p in members]


# -- MSS clamping -----------------------------------------------------------------------------

def _csum_replace16(check: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    s = (~check & 0xFFFF) + (~old & 0xFFFF) + new
    return (~fold(s)) & 0xFFFF


def mss_clamp(pkt: bytearray, mss: int) -> int:
    """Lower the MSS option of a TCP SYN to mss, in place.  1 if changed, else 0."""
    n = len(pkt)
    if n < 1:
        return 0
    version = pkt[0] >> 4
    if version == 4:
        if n < 20:
            return 0
        tcp = (pkt[0] & 0x0F) * 4
        if tcp < 20 or pkt[9] != IPPROTO_TCP or _be16(pkt, 6) & 0x1FFF:
            return 0
    elif version == 6:
        if n < 40:
            return 0
        proto, tcp = pkt[6], 40
        for _ in range(_IPV6_MAX_EXT):
            if proto not in (0, 43, 60) or tcp + 8 > n:
                break
            proto, tcp = pkt[tcp], tcp + (pkt[tcp + 1] + 1) * 8
        if proto != IPPROTO_TCP:
            return 0
    else:
        return 0
    if tcp + 20 > n or not pkt[tcp + 13] & TCP_SYN:
        return 0
    thl = (pkt[tcp + 12] >> 4) * 4
    if thl < 20:
        return 0
    end = min(tcp + thl, n)
    i, changed = tcp + 20, 0
    while i < end:
        kind = pkt[i]
        if kind == 0:                           # End of Option List
            break
        if kind == 1:                           # No-Operation
            i += 1
            continue
        if i + 1 >= end:
            break
        olen = pkt[i + 1]
        if olen < 2 or i + olen > end:
            break
        if kind == 2 and olen == 4:
            old = _be16(pkt, i + 2)
            if old > mss:
                _put16(pkt, i + 2, mss)
                o, m = old, mss
                if (i + 2 - tcp) & 1:           # straddles checksum words: bytes swap
                    o = ((o & 0xFF) << 8) | (o >> 8)
                    m = ((m & 0xFF) << 8) | (m >> 8)
                _put16(pkt, tcp + 16, _csum_replace16(_be16(pkt, tcp + 16), o, m))
                changed = 1
        i += olen
    return changed


def mss_clamp_mtu(pkt: bytearray, mtu: int) -> int:
    """mss_clamp with the tunnel MSS: PPP MTU - 40 (IPv4) or - 60 (IPv6)."""
    if not pkt:
        return 0
    version = pkt[0] >> 4
    overhead = 40 if version == 4 else 60 if version == 6 else 0
    if overhead == 0 or mtu <= overhead:
        return 0
    return mss_clamp(pkt, mtu - overhead)


# -- Python API shared with the compiled module -----------------------------------------------

def _as_vnet(vnet_hdr) -> VnetHdr:
    return vnet_hdr if isinstance(vnet_hdr, VnetHdr) else unpack_vnet_hdr(bytes(vnet_hdr))


def complete_csum(pkt: bytes, vnet_hdr) -> bytes:
    out = bytearray(pkt)
    r = csum_complete(out, _as_vnet(vnet_hdr))
    if r < 0:
        raise OffloadError(r, "csum_complete")
    return bytes(out)


def segment(pkt: bytes, vnet_hdr, max_ip_len: int, max_out: int = DEFAULT_MAX_OUT) -> list[bytes]:
    """Segment one TUN read (vnet_hdr + IP packet) into IP packets of <= max_ip_len bytes."""
    if not 0 < max_ip_len <= 0xFFFF:
        raise ValueError("max_ip_len must be 1..65535")
    r = tso_segment(bytes(pkt), _as_vnet(vnet_hdr), max_ip_len, max_out, max_ip_len)
    if isinstance(r, int):
        raise OffloadError(r, "tso_segment")
    return [bytes(s) for s in r]


def group_flows(pkts: list[bytes]) -> list[bytes]:
    """gro_group_flows on a list: each flow's packets made consecutive, order kept per flow."""
    r = gro_group_flows([bytes(p) for p in pkts])
    if isinstance(r, int):
        raise OffloadError(r, "gro_group_flows")
    return r[1]


def coalesce(pkts: list[bytes], dst_cap: int = GRO_MAX_IP_LEN,
             group: bool = False) -> list[tuple[bytes, bytes]]:
    """Coalesce a batch of IP packets: [(vnet_hdr bytes, packet), ...] in order (after
    gro_group_flows when group=True)."""
    if group:
        pkts = group_flows(pkts)
    out = []
    i = 0
    while i < len(pkts):
        r = gro_coalesce(pkts[i:], dst_cap)
        if isinstance(r, int):
            raise OffloadError(r, "gro_coalesce")
        consumed, vh, pkt = r
        out.append((vh.pack(), pkt))
        i += consumed
    return out


def clamp(pkt: bytes, mss: int) -> bytes:
    out = bytearray(pkt)
    mss_clamp(out, mss)
    return bytes(out)


def clamp_mtu(pkt: bytes, mtu: int) -> bytes:
    out = bytearray(pkt)
    mss_clamp_mtu(out, mtu)
    return bytes(out)
