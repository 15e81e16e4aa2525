"""A small reader for the classic libpcap files under tests/data/captures.

Test helper, standard library only.  Handles the classic format (both byte orders, micro- and
nanosecond magic), link types Ethernet (1, with 802.1Q tags), raw IPv4 (101/228) and Linux
cooked (113); IPv4 only (the captures have IPv6 disabled).

    from support.pcap import read_pcap, tcp_streams, CAPTURES   # tests/ is on pytest's pythonpath
    frames = read_pcap(CAPTURES / "pap.pcap")
    for f in frames:
        f.number, f.time, f.ip_src, f.ip_dst, f.proto       # proto: 6 TCP, 47 GRE, None: no IPv4
        f.sport, f.dport, f.tcp_seq, f.tcp_flags, f.tcp_payload   # TCP frames (payload may be b"")
        f.gre_bytes                                            # GRE frames: GRE header + PPP
    streams = tcp_streams(frames)   # {(src, sport, dst, dport): [(frame number, bytes), ...]}

``tcp_streams`` reassembles each direction of each TCP connection by sequence number
(retransmitted or overlapping segments are deduplicated), which is what a PPTP control
channel needs before it goes through the framer.
"""
from __future__ import annotations

import pathlib
import struct
from dataclasses import dataclass

from support.paths import CAPTURES

__all__ = ["Frame", "PcapError", "read_pcap", "tcp_streams", "CAPTURES", "capture_files",
           "PROTO_TCP", "PROTO_GRE"]

PROTO_TCP = 6
PROTO_GRE = 47

_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = (101, 228)
LINKTYPE_LINUX_SLL = 113


class PcapError(ValueError):
    pass


@dataclass(frozen=True)
class Frame:
    number: int                 # 1-based, as tshark numbers frames
    time: float                 # seconds since the epoch
    data: bytes                 # the captured link-layer bytes
    ip_src: str | None = None
    ip_dst: str | None = None
    proto: int | None = None    # IPv4 protocol number, None if the frame is not IPv4
    ip_payload: bytes = b""     # bytes after the IPv4 header (bounded by Total Length)
    ip_datagram: bytes = b""    # IPv4 header + payload, what a raw socket would return
    sport: int | None = None
    dport: int | None = None
    tcp_seq: int | None = None
    tcp_flags: int | None = None
    tcp_payload: bytes | None = None    # None unless TCP

    @property
    def gre_bytes(self) -> bytes | None:
        """GRE header + payload for an IPv4/GRE frame, else None."""
        return self.ip_payload if self.proto == PROTO_GRE else None

    @property
    def is_tcp(self) -> bool:
        return self.proto == PROTO_TCP


def _ipv4_str(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def _parse_ipv4(number: int, ts: float, data: bytes, offset: int) -> Frame:
    ip = data[offset:]
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return Frame(number, ts, data)
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from(">H", ip, 2)[0]
    if ihl < 20 or total < ihl or total > len(ip):
        raise PcapError(f"frame {number}: bad IPv4 header lengths")
    datagram = ip[:total]
    payload = datagram[ihl:]
    common = dict(ip_src=_ipv4_str(ip[12:16]), ip_dst=_ipv4_str(ip[16:20]), proto=ip[9],
                  ip_payload=payload, ip_datagram=datagram)
    if ip[9] == PROTO_TCP:
        if len(payload) < 20:
            raise PcapError(f"frame {number}: truncated TCP header")
        sport, dport, seq = struct.unpack_from(">HHI", payload)
        doff = (payload[12] >> 4) * 4
        if doff < 20 or doff > len(payload):
            raise PcapError(f"frame {number}: bad TCP data offset")
        return Frame(number, ts, data, sport=sport, dport=dport, tcp_seq=seq,
                     tcp_flags=payload[13], tcp_payload=payload[doff:], **common)
    return Frame(number, ts, data, **common)


def read_pcap(path) -> list[Frame]:
    raw = pathlib.Path(path).read_bytes()
    if len(raw) < 24 or raw[:4] not in _MAGICS:
        raise PcapError(f"{path}: not a classic pcap file")
    endian, scale = _MAGICS[raw[:4]]
    linktype = struct.unpack_from(endian + "I", raw, 20)[0]
    frames = []
    offset = 24
    record = struct.Struct(endian + "IIII")
    while offset < len(raw):
        if offset + 16 > len(raw):
            raise PcapError(f"{path}: truncated record header")
        sec, frac, incl, _orig = record.unpack_from(raw, offset)
        offset += 16
        data = raw[offset:offset + incl]
        if len(data) != incl:
            raise PcapError(f"{path}: truncated record")
        offset += incl
        number = len(frames) + 1
        ts = sec + frac * scale
        if linktype == LINKTYPE_ETHERNET:
            pos, ethertype = 12, None
            while pos + 2 <= len(data):
                ethertype = struct.unpack_from(">H", data, pos)[0]
                if ethertype in (0x8100, 0x88A8):
                    pos += 4
                    continue
                pos += 2
                break
            frames.append(_parse_ipv4(number, ts, data, pos) if ethertype == 0x0800
                          else Frame(number, ts, data))
        elif linktype in LINKTYPE_RAW:
            frames.append(_parse_ipv4(number, ts, data, 0))
        elif linktype == LINKTYPE_LINUX_SLL:
            ethertype = struct.unpack_from(">H", data, 14)[0] if len(data) >= 16 else None
            frames.append(_parse_ipv4(number, ts, data, 16) if ethertype == 0x0800
                          else Frame(number, ts, data))
        else:
            raise PcapError(f"{path}: unsupported link type {linktype}")
    return frames


def tcp_streams(frames: list[Frame]) -> dict[tuple, list[tuple[int, bytes]]]:
    """Per direction (src, sport, dst, dport): the in-order, deduplicated payload segments,
    each tagged with the number of the frame that carried it."""
    out: dict[tuple, list[tuple[int, bytes]]] = {}
    next_seq: dict[tuple, int] = {}
    for f in frames:
        if not f.is_tcp:
            continue
        key = (f.ip_src, f.sport, f.ip_dst, f.dport)
        syn = bool(f.tcp_flags & 0x02)
        if syn:
            next_seq[key] = (f.tcp_seq + 1) & 0xFFFFFFFF
            continue
        if not f.tcp_payload:
            continue
        expected = next_seq.get(key, f.tcp_seq)
        skip = (expected - f.tcp_seq) & 0xFFFFFFFF
        if skip >= 0x80000000:
            raise PcapError(f"frame {f.number}: gap in TCP stream {key} (segment missing)")
        data = f.tcp_payload[skip:]
        if not data:
            continue                         # pure retransmission
        out.setdefault(key, []).append((f.number, data))
        next_seq[key] = (f.tcp_seq + len(f.tcp_payload)) & 0xFFFFFFFF
    return out


def gre_ppp(gre: bytes) -> tuple[int, bytes] | None:
    """(PPP protocol, information field) of an Enhanced-GRE frame (RFC 2637 §4.1): the GRE
    header skipped by its S and A bits, Payload Length honoured, ACFC/PFC undone; None for an
    ack-only or truncated frame."""
    if len(gre) < 8:
        return None
    hlen = 8 + (4 if gre[0] & 0x10 else 0) + (4 if gre[1] & 0x80 else 0)
    plen = struct.unpack_from("!H", gre, 4)[0]
    ppp = gre[hlen:hlen + plen]
    if ppp[:2] == b"\xff\x03":
        ppp = ppp[2:]
    if not ppp:
        return None
    if ppp[0] & 1:
        return ppp[0], bytes(ppp[1:])
    if len(ppp) < 2:
        return None
    return struct.unpack_from("!H", ppp)[0], bytes(ppp[2:])


def ppp_frames(frames: list[Frame]) -> list[tuple[Frame, int, bytes]]:
    """(frame, PPP protocol, information field) for each GRE/PPP frame of a capture."""
    out = []
    for f in frames:
        g = f.gre_bytes
        got = gre_ppp(g) if g else None
        if got is not None:
            out.append((f, *got))
    return out


def capture_files() -> list[pathlib.Path]:
    return sorted(CAPTURES.glob("*.pcap"))
