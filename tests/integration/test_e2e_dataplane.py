"""End to end: two namespaces joined by veth, `python3 -m fastpptp.tools.statictunnel` in each, real
packets through TUN -> engine -> raw GRE -> veth -> raw GRE -> engine -> TUN.

    ns A  198.51.100.1 (tun) ==GRE call 0x0100/0x0200== 198.51.100.2 (tun)  ns B
          192.0.2.1 (veth) ---------------------------- 192.0.2.2 (veth)

The UDP flood carries a sequence number and a CRC-32 per datagram, sent from a socket opened
inside A to one inside B (this process, fastpptp.net.netns.open_socket), paced and bounded in
time.  With A->B GRE impaired (loss, reorder, duplicate; by the rig's seeded user-space relay,
since this kernel has no sch_netem) the engine must still hand B's TUN every surviving
datagram exactly once, intact and in order, and its counters must match what the relay did.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import struct
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass, field

import pytest

from fastpptp.tools import statictunnel
from fastpptp.dataplane import load_engine
from fastpptp.net import netns
from support.lab import check_gre_port
from support.netnsrig import (Impairment, NsPair, impaired_namespaces, kill_process, run_in,
                      two_namespaces)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
TUN_A, TUN_B = "198.51.100.1", "198.51.100.2"
TUN6_A, TUN6_B = "2001:db8:100::1", "2001:db8:100::2"
CALL_A, CALL_B = 0x0100, 0x0200
UDP_PORT, TCP_PORT = 40001, 40002
SO_RCVBUFFORCE = 33  # not exported by the socket module
HDR = struct.Struct("!II")  # sequence number, payload length; CRC-32 trails the datagram


def _engine_available(impl: str) -> str | None:
    try:
        load_engine(impl)
        from fastpptp.net import rawgre, tun  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


@dataclass
class Tunnel:
    rig: NsPair
    tmp: str
    stats: dict[str, dict] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def path(self, side: str) -> str:
        return os.path.join(self.tmp, f"{side}.json")

    def snapshot(self, side: str) -> dict:
        """Counters of one end now (SIGUSR1), the engine keeps running."""
        return statictunnel.snapshot(self.procs[side], self.path(side))


@contextlib.contextmanager
def static_tunnel(rig: NsPair, tmp, *, mppe_key: str | None = None,
                  impl: str | tuple[str, str] = "compiled",
                  offload: bool = True, ipv6: bool = False, extra: tuple[str, ...] = (),
                  gre_io: str = "auto"):
    """statictunnel in A and in B (call IDs crossed); counters in .stats['a'|'b'] after exit.

    ``impl`` is one engine for both ends or an (A, B) pair.  ``gre_io``: both ends' GRE port
    (``--gre-io``); the port's mode and counters are in the stats ('gre_io', 'gre_port')."""
    impls = {"a": impl, "b": impl} if isinstance(impl, str) else dict(zip("ab", impl, strict=True))
    for which in set(impls.values()):
        reason = _engine_available(which)
        if reason:
            pytest.fail(f"engine/TUN/raw GRE modules not importable: {reason}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    os.makedirs(tmp, exist_ok=True)
    tun = Tunnel(rig, str(tmp))
    ends = {
        "a": (rig.a, rig.addr_a, rig.addr_b, CALL_A, CALL_B, TUN_A, TUN_B),
        "b": (rig.b, rig.addr_b, rig.addr_a, CALL_B, CALL_A, TUN_B, TUN_A),
    }
    procs = tun.procs
    try:
        for side, (ns, local, peer, cid, pcid, taddr, tpeer) in ends.items():
            # A long TUN queue: on a busy machine the engine's thread can be off the CPU
            # for tens of ms, and a full TUN ring drops the sender's datagrams silently
            # (tun tx_dropped) before the tunnel ever sees them.
            more = ("--txqueuelen", "20000", "--gre-io", gre_io) + tuple(extra)
            if ipv6:
                a6, p6 = (TUN6_A, TUN6_B) if side == "a" else (TUN6_B, TUN6_A)
                more += ("--tun-addr6", a6, "--tun-peer6", p6)
            argv = statictunnel.command(
                local=local, peer=peer, call_id=cid, peer_call_id=pcid, tun_addr=taddr,
                tun_peer=tpeer, mppe_key=mppe_key, impl=impls[side], offload=offload,
                stats_json=tun.path(side), extra=more)
            procs[side] = rig.spawn(ns, argv, env=env)  # killed by the rig whatever happens
        for p in procs.values():
            statictunnel.wait_ready(p, timeout=15)
        yield tun
    finally:
        for side, p in procs.items():
            path = os.path.join(tun.tmp, f"{side}.json")
            try:
                tun.stats[side] = statictunnel.stop(p, path)
            except Exception:
                kill_process(p)
                err = p.stderr.read().decode(errors="replace") if p.stderr else ""
                tun.stats[side] = {"error": err}


def check_gre_ports(tun: Tunnel, gre_io: str, min_packets: int) -> None:
    """Both ends ran on the GRE port asked for, and it carried the A -> B data (at least
    ``min_packets`` sent by A and received by B) and B's acknowledgements back."""
    a, b = tun.stats["a"], tun.stats["b"]
    check_gre_port(gre_io, a.get("gre_io"), a.get("gre_port", {}), 1, min_packets, "end a")
    check_gre_port(gre_io, b.get("gre_io"), b.get("gre_port", {}), min_packets, 1, "end b")


# ------------------------------------------------------------------------------ UDP flood


def make_datagram(seq: int, rng: random.Random) -> bytes:
    size = rng.randrange(16, 1200)
    body = HDR.pack(seq, size) + rng.randbytes(size)
    return body + struct.pack("!I", zlib.crc32(body))


def check_datagram(data: bytes) -> int | None:
    """The sequence number, or None if the datagram is damaged."""
    if len(data) < HDR.size + 4:
        return None
    body, crc = data[:-4], struct.unpack("!I", data[-4:])[0]
    if zlib.crc32(body) != crc:
        return None
    seq, size = HDR.unpack_from(body)
    if size != len(body) - HDR.size:
        return None
    return seq


@dataclass
class FloodResult:
    sent: int
    seqs: list[int]
    corrupted: int
    send_errors: int
    elapsed: float
    rcvbuf_errors: int  # datagrams B's kernel dropped because the receiver fell behind
    drops: str = ""  # kernel drop counters of both namespaces, for failure messages


def snmp(ns: str, proto: str = "Udp") -> dict[str, int]:
    """One protocol's counters from the namespace's /proc/net/snmp (Udp RcvbufErrors tells
    a slow receiver, SndbufErrors a sender whose datagram the TUN queue dropped)."""
    lines = [ln.split() for ln in run_in(ns, ["cat", "/proc/net/snmp"]).stdout.splitlines()
             if ln.startswith(proto + ":")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))


def tun_tx_dropped(ns: str, dev: str = "tun0") -> int:
    """Packets the kernel dropped on the TUN's transmit queue (before the engine read them)."""
    import json as _json
    for link in _json.loads(run_in(ns, ["ip", "-s", "-j", "link", "show", "dev", dev]).stdout):
        return int(link["stats64"]["tx"]["dropped"])
    return 0


def kernel_drops(rig: NsPair) -> str:
    """Where the kernel dropped packets around the tunnel (for failure messages)."""
    out = []
    for ns in (rig.a, rig.b):
        ip = snmp(ns, "Ip")
        udp = snmp(ns, "Udp")
        links = run_in(ns, ["ip", "-s", "-s", "-j", "link", "show"]).stdout
        out.append(f"{ns}: Ip {{InDiscards {ip['InDiscards']}, InHdrErrors {ip['InHdrErrors']}, "
                   f"InAddrErrors {ip['InAddrErrors']}, OutDiscards {ip['OutDiscards']}}} "
                   f"Udp {udp} links {links}")
    return "\n".join(out)


def udp_flood(rig: NsPair, count: int, rate: float, time_limit: float,
              family: int = 4) -> FloodResult:
    """Send ``count`` datagrams A -> B through the tunnel at ~``rate``/s; receive in B.

    The receiving thread only queues what it reads (checked afterwards), so it keeps up.
    The sender keeps at most ``WINDOW`` datagrams beyond the highest sequence number B has
    seen: if the machine starves an engine thread, the sender waits instead of overflowing
    A's TUN ring (a silent drop before the tunnel, which would fail the test for nothing)."""
    af, src, dst = ((socket.AF_INET, TUN_A, TUN_B) if family == 4
                    else (socket.AF_INET6, TUN6_A, TUN6_B))
    rx = netns.open_socket(rig.b, af, socket.SOCK_DGRAM)
    tx = netns.open_socket(rig.a, af, socket.SOCK_DGRAM)
    received: list[bytes] = []
    highest = [-1]  # highest sequence number B has received (a glance, not a check)
    done = threading.Event()
    try:
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        rx.bind((dst, UDP_PORT))
        rx.settimeout(0.2)
        tx.bind((src, 0))

        def receive():
            quiet_since = None
            deadline = time.monotonic() + time_limit + 5
            recv = rx.recv
            while time.monotonic() < deadline:
                try:
                    data = recv(2048)
                    received.append(data)
                    if len(data) >= 4:
                        seq = int.from_bytes(data[:4], "big")
                        if seq > highest[0]:
                            highest[0] = seq
                    quiet_since = None
                except socket.timeout:
                    if done.is_set():
                        if quiet_since is None:
                            quiet_since = time.monotonic()
                        elif time.monotonic() - quiet_since > 1.0:
                            return

        t = threading.Thread(target=receive, name="udp-rx")
        t.start()
        rng = random.Random(2637)
        payloads = [make_datagram(i, rng) for i in range(count)]
        send_errors = 0
        start = time.monotonic()
        burst = 32
        for i in range(0, count, burst):
            while i - highest[0] > WINDOW:  # flow control (see above), bounded in time
                if time.monotonic() - start > time_limit:
                    raise AssertionError(f"flood stalled at {i}, B has up to {highest[0]}")
                time.sleep(0.0005)
            for p in payloads[i:i + burst]:
                try:
                    tx.sendto(p, (dst, UDP_PORT))
                except OSError:  # ENOBUFS from a full TUN queue: counted, not retried
                    send_errors += 1
            ahead = (i + burst) / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
            if time.monotonic() - start > time_limit:
                raise AssertionError(f"sender exceeded {time_limit}s at {i} datagrams")
        elapsed = time.monotonic() - start
        done.set()
        t.join(time_limit + 10)
        assert not t.is_alive()
        seqs = [check_datagram(d) for d in received]
        corrupted = sum(1 for q in seqs if q is None)
        rcvbuf_errors = snmp(rig.b).get("RcvbufErrors", 0)
        return FloodResult(count, [q for q in seqs if q is not None], corrupted, send_errors,
                           elapsed, rcvbuf_errors, kernel_drops(rig))
    finally:
        done.set()
        rx.close()
        tx.close()


# ------------------------------------------------------------------------------ TCP transfer


def tcp_transfer(rig: NsPair, nbytes: int, time_limit: float,
                 family: int = 4) -> tuple[str, str, float]:
    """Send ``nbytes`` pseudo-random bytes A -> B over TCP; (sent sha256, received sha256, s)."""
    af, dst = (socket.AF_INET, TUN_B) if family == 4 else (socket.AF_INET6, TUN6_B)
    srv = netns.open_socket(rig.b, af, socket.SOCK_STREAM)
    cli = netns.open_socket(rig.a, af, socket.SOCK_STREAM)
    got = {}
    try:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((dst, TCP_PORT))
        srv.listen(1)
        srv.settimeout(time_limit)

        def serve():
            conn, _ = srv.accept()
            conn.settimeout(time_limit)
            h = hashlib.sha256()
            n = 0
            with conn:
                while True:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        break
                    h.update(chunk)
                    n += len(chunk)
            got["sha"], got["n"] = h.hexdigest(), n

        t = threading.Thread(target=serve, name="tcp-rx")
        t.start()
        data = random.Random(1723).randbytes(nbytes)
        start = time.monotonic()
        cli.settimeout(time_limit)
        cli.connect((dst, TCP_PORT))
        cli.sendall(data)
        cli.shutdown(socket.SHUT_WR)
        t.join(time_limit)
        elapsed = time.monotonic() - start
        assert not t.is_alive(), "TCP receiver did not finish in time"
        assert got["n"] == nbytes
        return hashlib.sha256(data).hexdigest(), got["sha"], elapsed
    finally:
        cli.close()
        srv.close()


# ------------------------------------------------------------------------------ tests

N_PACKETS = 100_000
WINDOW = 4096  # datagrams in flight at most (the TUN ring is 20 000)
RATE = 25_000.0  # datagrams/s: a 100 000-datagram flood takes ~4 s
LOSSY_RATE = 15_000.0  # through the user-space impairment relay


def assert_in_order_and_unique(seqs: list[int]) -> None:
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(seqs, seqs[1:], strict=False)) if b <= a]
    assert not bad, f"{len(bad)} out-of-order/duplicate deliveries, first {bad[:5]}"


def run_clean(tmp_path, impl, n: int, rate: float, tcp_bytes: int, gre_io: str = "auto", **kw):
    with two_namespaces() as rig:
        with static_tunnel(rig, tmp_path, impl=impl, gre_io=gre_io, **kw) as tun:
            r = udp_flood(rig, n, rate, time_limit=n / rate + 20)
            sent_sha, got_sha, _ = tcp_transfer(rig, tcp_bytes, time_limit=60)
        a, b = tun.stats["a"], tun.stats["b"]
    assert "error" not in a and "error" not in b, (a, b)
    sa, sb = a["session"], b["session"]
    info = (f"flood: {len(r.seqs)}/{n} delivered in {r.elapsed:.1f}s, receiver overruns "
            f"{r.rcvbuf_errors}; A {sa}; B {sb}\n{r.drops}")
    assert r.corrupted == 0, info
    assert_in_order_and_unique(r.seqs)
    assert r.send_errors == 0 and r.rcvbuf_errors == 0, info
    # a clean veth between two engines: nothing may go missing
    assert len(r.seqs) == n, info
    assert sent_sha == got_sha
    assert sa["tx_packets"] >= n and sb["rx_packets"] >= n, info
    assert sb["lost"] == 0 and sb["drop_duplicate"] == 0 and sb["drop_malformed"] == 0, info
    assert sa["drop_queue_full"] == 0 and sb["drop_queue_full"] == 0, info
    assert sb["drop_mppe"] == 0 and sa["drop_mppe"] == 0, info
    # the TUNs carry virtio_net_hdr (TSO/GRO super-packets) exactly when asked and supported
    for end, which in ((a, impl if isinstance(impl, str) else impl[0]),
                       (b, impl if isinstance(impl, str) else impl[1])):
        want = kw.get("offload", True) and load_engine(which).supports_vnet_hdr
        assert end["offload"] == bool(want) and (end["vnet_hdr_len"] > 0) == bool(want), end
    # B acknowledges what A sent (RFC 2637 §4.4): ack-only packets or piggybacked acks
    assert sb["tx_acks"] > 0 or sb["tx_packets"] > 0, info
    check_gre_ports(tun, gre_io, min_packets=n // 2)
    return sa, sb


def run_lossy(tmp_path, impl: str, n: int, rate: float, tcp_bytes: int,
              loss=2.0, reorder=10.0, dup=1.0, gre_io: str = "auto"):
    """A->B GRE data impaired by the rig's relay (seeded), which counts what it did.  The
    relay bridges frames between the veths in M, so each end's GRE arrives on its own veth
    (va in A, vb in B): the interface the fast ports attach to (route to the peer)."""
    imp = Impairment(loss=loss, duplicate=dup, reorder=reorder, seed=1661)
    os.makedirs(tmp_path, exist_ok=True)
    with impaired_namespaces(imp, str(tmp_path)) as rig:
        with static_tunnel(rig, tmp_path, impl=impl, gre_io=gre_io) as tun:
            r = udp_flood(rig, n, rate, time_limit=n / rate + 20)
            time.sleep(0.3)  # past the reorder timeout: every gap is settled
            relay = rig.relay.snapshot()
            sb = tun.snapshot("b")["session"]
            a_tun_drops = tun_tx_dropped(rig.a)
            sent_sha, got_sha, _ = tcp_transfer(rig, tcp_bytes, time_limit=60)
        final_b = tun.stats["b"]
    assert "error" not in final_b, final_b
    info = (f"flood: {len(r.seqs)}/{n} delivered in {r.elapsed:.1f}s, receiver overruns "
            f"{r.rcvbuf_errors}; A TUN tx drops {a_tun_drops}; B {sb}; relay {relay}\n{r.drops}")
    assert r.corrupted == 0, info
    assert r.send_errors == 0 and r.rcvbuf_errors == 0 and relay["send_errors"] == 0, info
    # what the relay did is what we asked for
    assert relay["gre_data"] >= n, info
    assert 0.6 * loss / 100 * n <= relay["dropped"] <= 1.4 * loss / 100 * n, info
    assert 0.6 * dup / 100 * n <= relay["duplicated"] <= 1.4 * dup / 100 * n, info
    assert 0.6 * reorder / 100 * n <= relay["held"] <= 1.4 * reorder / 100 * n, info
    # the reorder buffer delivers in order, and duplicates never reach the TUN
    assert_in_order_and_unique(r.seqs)
    missing = n - len(r.seqs)
    slack = 5  # the TUN's own few packets (IPv6 link-local chatter) ride the same session
    # Packets lost on the way: those the relay dropped on purpose, plus those the kernel
    # dropped before the (Python) relay could read them when the machine is overloaded.
    gone = relay["dropped"] + relay["input_drops_a"]
    assert abs(sb["lost"] - gone) <= slack, info      # every gap counted exactly once
    # nothing lost but what was dropped on the way, or never entered the tunnel (A's TUN
    # queue overflowing while A's engine thread was starved: the kernel counts those)
    assert gone - slack <= missing <= gone + a_tun_drops + slack, info
    assert abs(sb["drop_duplicate"] - relay["duplicated"]) <= slack, info
    assert sb["reordered"] >= relay["held"] - slack, info  # each held one leaves a gap
    assert sb["drop_too_old"] <= slack and sb["drop_malformed"] == 0, info
    assert sent_sha == got_sha  # TCP through loss + reordering, intact
    check_gre_ports(tun, gre_io, min_packets=n // 2)
    return sb, relay


def test_clean_tunnel_udp_flood_and_tcp(tmp_path, gre_io):
    run_clean(tmp_path, "compiled", N_PACKETS, RATE, 16 << 20, gre_io=gre_io)


def test_clean_tunnel_without_offload(tmp_path):
    """Plain TUNs (no virtio_net_hdr): one packet per read and write."""
    run_clean(tmp_path, "compiled", 20_000, RATE, 8 << 20, offload=False)


def test_lossy_reordering_link_udp_flood_and_tcp(tmp_path, gre_io):
    run_lossy(tmp_path, "compiled", N_PACKETS, LOSSY_RATE, 4 << 20, gre_io=gre_io)


def test_mppe128_tunnel_udp_and_tcp(tmp_path, gre_io):
    run_clean(tmp_path, "compiled", 20_000, RATE, 8 << 20,
              mppe_key="00112233445566778899aabbccddeeff", gre_io=gre_io)


def test_ipv6_through_the_tunnel(tmp_path, gre_io):
    """IPv6 (PPP protocol 0x0057) rides the same session: UDP with checksums, then TCP."""
    with two_namespaces() as rig:
        with static_tunnel(rig, tmp_path, ipv6=True, gre_io=gre_io) as tun:
            r = udp_flood(rig, 5000, 10_000.0, time_limit=20, family=6)
            sent_sha, got_sha, _ = tcp_transfer(rig, 4 << 20, time_limit=30, family=6)
        sb = tun.stats["b"]["session"]
    info = f"{len(r.seqs)}/5000 delivered; B {sb}"
    assert r.corrupted == 0 and r.send_errors == 0 and r.rcvbuf_errors == 0, info
    assert_in_order_and_unique(r.seqs)
    assert len(r.seqs) == 5000, info
    assert sent_sha == got_sha
    assert sb["rx_packets"] >= 5000 and sb["lost"] == 0 and sb["drop_malformed"] == 0, info
    check_gre_ports(tun, gre_io, min_packets=2500)


def test_reference_engine_clean_and_lossy(tmp_path):
    """The pure-Python twin through the same rig, at the rate it can carry."""
    run_clean(tmp_path / "clean", "reference", 3000, 1500.0, 1 << 20)
    run_lossy(tmp_path / "lossy", "reference", 5000, 1500.0, 256 << 10)


@pytest.mark.parametrize("impls", [("compiled", "reference"), ("reference", "compiled")],
                         ids=["compiled-to-reference", "reference-to-compiled"])
def test_compiled_and_reference_interoperate_with_mppe(tmp_path, impls):
    """The twins on the two ends of one tunnel, stateless MPPE-128 on: the wire formats,
    sequence/ack handling and MPPE of each are what the other expects."""
    run_clean(tmp_path, impls, 2000, 1500.0, 1 << 20,
              mppe_key="0123456789abcdef0123456789abcdef")
