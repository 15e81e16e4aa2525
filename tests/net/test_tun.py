"""fastpptp.net.tun: TUN devices with IFF_VNET_HDR + TSO offloads, against the real kernel.

The netns tests create their own namespace (name includes the pid), and run each scenario in
a child process inside it (`ip netns exec NS python3 tests/test_tun.py SCENARIO`): the child
prints one JSON line of findings which the test asserts on.  A scenario plays the remote TCP
peer itself, through the TUN: it answers the SYN of a local socket, ACKs what it reads, and
sends data back as GRO super-packets.  Addresses are 192.0.2.0/24 and 2001:db8::/32, which
exist only inside the namespace; nothing is routed from the root namespace.
"""
from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastpptp.net import tun

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent                      # tests/support, for the scenarios run as a script
REPO = TESTS.parent


# -- no root needed ---------------------------------------------------------------------------

def _ioc(direction: int, nr: int, size: int = 4) -> int:
    return (direction << 30) | (size << 16) | (ord("T") << 8) | nr


def test_ioctl_numbers_match_if_tun_h():
    assert tun.TUNSETIFF == _ioc(1, 202)
    assert tun.TUNGETFEATURES == _ioc(2, 207)
    assert tun.TUNSETOFFLOAD == _ioc(1, 208)
    assert tun.TUNGETIFF == _ioc(2, 210)
    assert tun.TUNGETVNETHDRSZ == _ioc(2, 215)
    assert tun.TUNSETVNETHDRSZ == _ioc(1, 216)


def test_vnet_hdr_len_agrees_with_the_offload_module():
    from fastpptp import _offload_ref
    assert tun.VNET_HDR_LEN == _offload_ref.VNET_HDR_LEN == 12


@pytest.mark.parametrize("name", ["x" * 16, "a/b", "a\0b", " lead"])
def test_bad_names_rejected_before_any_syscall(name):
    with pytest.raises(ValueError):
        tun.open_tun(name)


# -- scenarios (run inside the namespace, in a child process) -------------------------------

def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


def _configure(name: str, version: int, mtu: int = 1500) -> tuple[str, str]:
    """Point-to-point addresses on the TUN; returns (our address, the peer's)."""
    _sh("ip", "link", "set", "dev", name, "mtu", str(mtu), "up")
    if version == 4:
        local, peer = "192.0.2.1", "192.0.2.2"
        _sh("ip", "addr", "add", local, "peer", peer, "dev", name)
    else:
        local, peer = "2001:db8::1", "2001:db8::2"
        _sh("ip", "-6", "addr", "add", local, "peer", peer, "dev", name, "nodad")
    return local, peer


def _read_ready(dev, timeout: float) -> list[tuple[bytes, bytes]]:
    """All packets queued on the TUN after waiting up to `timeout` for the first (max 256)."""
    r, _, _ = select.select([dev.fd], [], [], timeout)
    out = []
    while r and len(out) < 256:
        try:
            out.append(dev.read_packet())
        except BlockingIOError:
            break
    return out


def _tcp_info(pkt: bytes):
    """(l3 length, TCP header dict) of an IPv4/IPv6 TCP packet, or None."""
    from support.offload import l3_len
    version = pkt[0] >> 4
    if version == 4 and pkt[9] == 6:
        l3 = l3_len(pkt)
    elif version == 6 and pkt[6] == 6:
        l3 = 40
    else:
        return None
    sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", pkt[l3:l3 + 14])
    return l3, {"sport": sport, "dport": dport, "seq": seq, "ack": ack, "flags": flags,
                "payload": pkt[l3 + (off >> 4) * 4:]}


def scenario_open() -> dict:
    found = {}
    with tun.open_tun("fpo0") as dev:
        found["offload"] = [dev.name, dev.vnet_hdr_len, dev.offloads_enabled, dev.offload_flags,
                            dev.fallback_reason]
        import fcntl
        buf = fcntl.ioctl(dev.fd, tun.TUNGETVNETHDRSZ, struct.pack("i", 0))
        found["kernel_vnet_hdr_sz"] = struct.unpack("i", buf)[0]
        buf = fcntl.ioctl(dev.fd, tun.TUNGETIFF, bytes(40))
        found["ifr_flags"] = struct.unpack("16sH22x", buf)[1]
        found["nonblocking"] = not os.get_blocking(dev.fd)
        try:
            dev.read()
            found["empty_read"] = "data?"
        except BlockingIOError:
            found["empty_read"] = "EAGAIN"
        found["exists_while_open"] = Path(f"/sys/class/net/{dev.name}").exists()
    found["closed_removes"] = not Path("/sys/class/net/fpo0").exists()
    with tun.open_tun(None, vnet_hdr=False) as dev:
        found["plain"] = [dev.name, dev.vnet_hdr_len, dev.offloads_enabled]
    with tun.open_tun("fpo1", offload=False) as dev:
        found["hdr_only"] = [dev.vnet_hdr_len, dev.offloads_enabled]
    q1 = tun.open_tun("fpo2", multi_queue=True)
    q2 = tun.open_tun("fpo2", multi_queue=True)
    found["multi_queue"] = [q1.name, q2.name, q1.fd != q2.fd, q2.offloads_enabled]
    q1.close()
    q2.close()
    q2.close()                                          # idempotent
    return found


def scenario_fallback() -> dict:
    import errno
    import fcntl
    import logging
    real = fcntl.ioctl
    records = []

    def refusing_ioctl(fd, request, arg=0, *rest):
        if request == tun.TUNSETOFFLOAD:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, request, arg, *rest)

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging.getLogger("fastpptp.net.tun").addHandler(Keep())
    fcntl.ioctl = refusing_ioctl
    try:
        with tun.open_tun("fpo3") as dev:
            import fcntl as f2
            buf = real(dev.fd, tun.TUNGETIFF, bytes(40))
            return {"dev": [dev.name, dev.vnet_hdr_len, dev.offloads_enabled, dev.offload_flags],
                    "reason": dev.fallback_reason, "log": records,
                    "ifr_flags": struct.unpack("16sH22x", buf)[1], "f2": f2 is fcntl}
    finally:
        fcntl.ioctl = real


def scenario_tso(version: int) -> dict:
    """A local TCP socket sends 2 MB to a 'peer' played through the TUN: count super-packets."""
    from fastpptp import _offload as off
    from fastpptp import _offload_ref as ref
    from support.offload import check_packet, tcp_packet

    total = 2 << 20
    data = bytes((i * 31 + 7) & 0xFF for i in range(total))
    dev = tun.open_tun("fpo4")
    assert dev.offloads_enabled, dev.fallback_reason
    local, peer = _configure(dev.name, version)
    fam = socket.AF_INET if version == 4 else socket.AF_INET6
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((peer, 5001))
    deadline = time.monotonic() + 20
    syn = None
    while syn is None and time.monotonic() < deadline:
        for _vh, pkt in _read_ready(dev, 0.5):
            info = _tcp_info(pkt)
            if info and info[1]["dport"] == 5001 and info[1]["flags"] & 0x02:
                syn = info[1]
    assert syn is not None, "no SYN came out of the TUN"
    cport, isn, peer_isn = syn["sport"], syn["seq"], 7_000_000
    kw = dict(src=peer, dst=local, sport=5001, dport=cport)
    # MSS 1460, NOP, window scale 7: the 65535 window below means ~8 MB
    synack = tcp_packet(version, seq=peer_isn, ack=isn + 1, flags=0x12, window=65535,
                        opts=bytes([2, 4, 0x05, 0xB4, 1, 3, 3, 7]), **kw)
    dev.write_packet(synack)
    select.select([], [s], [], 5)
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0, "connect failed"

    sent = 0
    got = bytearray()
    nxt = isn + 1
    reads, supers, samples, seg_ok = 0, 0, [], True
    max_read = 0
    while len(got) < total and time.monotonic() < deadline:
        while sent < total:
            try:
                sent += s.send(data[sent:sent + 262144])
            except BlockingIOError:
                break
        for raw_vh, pkt in _read_ready(dev, 0.2):
            reads += 1
            info = _tcp_info(pkt)
            if not info or info[1]["dport"] != 5001:
                continue
            vh = ref.unpack_vnet_hdr(raw_vh)
            max_read = max(max_read, len(pkt))
            if vh.gso_type != ref.VIRTIO_NET_HDR_GSO_NONE:
                supers += 1
                if len(samples) < 3:
                    samples.append(list(vh) + [len(pkt)])
            # what the engine does: cut to 1400-byte IP packets, each one fully valid
            segs = off.segment(pkt, raw_vh, 1400)
            for seg in segs:
                try:
                    check_packet(seg)
                except AssertionError:
                    seg_ok = False
                seg_ok &= len(seg) <= 1400
                f = _tcp_info(seg)[1]
                if f["seq"] == nxt and f["payload"]:
                    got += f["payload"]
                    nxt = (nxt + len(f["payload"])) & 0xFFFFFFFF
        ack = tcp_packet(version, seq=peer_isn + 1, ack=nxt, flags=0x10, window=65535, **kw)
        dev.write_packet(ack)

    # GRO direction: the peer sends 40 x 1000 bytes as one coalesced super-packet
    back = bytes((i * 13) & 0xFF for i in range(40000))
    segs = [tcp_packet(version, back[k:k + 1000], seq=peer_isn + 1 + k, ack=nxt, window=65535,
                       ip_id=100 + k // 1000, flags=0x18 if k == 39000 else 0x10, **kw)
            for k in range(0, 40000, 1000)]
    [(gro_vh, gro_pkt)] = off.coalesce(segs)
    written = dev.write_packet(gro_pkt, gro_vh)
    s.setblocking(True)
    s.settimeout(5)
    received = bytearray()
    try:
        while len(received) < len(back):
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    except OSError:
        pass
    s.close()
    dev.close()
    return {"reads": reads, "supers": supers, "samples": samples, "max_read": max_read,
            "stream_ok": bytes(got) == data[:len(got)], "got": len(got), "total": total,
            "segments_ok": seg_ok, "gro_written": written, "gro_len": len(gro_pkt),
            "gro_vh": list(ref.unpack_vnet_hdr(gro_vh)), "gro_received_ok": received == back}


def scenario_forward(version: int) -> dict:
    """Router case (the PPTP server): a GRO super-packet written to one TUN is forwarded by
    the kernel out of a second TUN.  Without offloads there, the kernel must segment it in
    software from our NEEDS_CSUM partial checksum; with offloads it hands it on whole."""
    from fastpptp import _offload as off
    from fastpptp import _offload_ref as ref
    from support.offload import check_packet, tcp_packet

    fam = "ipv4" if version == 4 else "ipv6"
    key = "ip_forward" if version == 4 else "conf/all/forwarding"
    Path(f"/proc/sys/net/{fam}/{key}").write_text("1")
    inner = tun.open_tun("fpo6")
    _configure(inner.name, version)                      # peer 192.0.2.2 / 2001:db8::2
    found = {}
    for mode, kw in (("plain", {"vnet_hdr": False}), ("offload", {})):
        outer = tun.open_tun("fpo7", **kw)
        _sh("ip", "link", "set", "dev", outer.name, "mtu", "1500", "up")
        if version == 4:
            src, dst = "192.0.2.2", "203.0.113.2"
            _sh("ip", "addr", "add", "203.0.113.1", "peer", dst, "dev", outer.name)
        else:
            src, dst = "2001:db8::2", "2001:db8:2::2"
            _sh("ip", "-6", "addr", "add", "2001:db8:2::1", "peer", dst, "dev", outer.name,
                "nodad")
        time.sleep(0.05)                                 # let the routes settle
        data = bytes((i * 7 + 3) & 0xFF for i in range(53 * 1200 + 500))   # ~64 KB
        segs = [tcp_packet(version, data[k:k + 1200], seq=10_000 + k, ip_id=50 + k // 1200,
                           src=src, dst=dst, flags=0x18 if k + 1200 >= len(data) else 0x10)
                for k in range(0, len(data), 1200)]
        [(vh, sup)] = off.coalesce(segs)
        inner.write_packet(sup, vh)
        got, packets, ok, deadline = bytearray(), 0, True, time.monotonic() + 5
        while len(got) < len(data) and time.monotonic() < deadline:
            for raw_vh, pkt in _read_ready(outer, 0.5):
                info = _tcp_info(pkt)
                if not info or info[1]["sport"] != 40000:
                    continue
                pieces = off.segment(pkt, raw_vh, 1500) if outer.vnet_hdr_len else [pkt]
                packets += 1
                if outer.vnet_hdr_len:
                    # the forwarded super-packet's partial sum (TTL changed on the way),
                    # completed as a NIC would, must verify
                    try:
                        check_packet(off.complete_csum(pkt, raw_vh))
                    except AssertionError:
                        ok = False
                    found.setdefault("offload_vh", list(ref.unpack_vnet_hdr(raw_vh)))
                for piece in pieces:
                    try:
                        if not outer.vnet_hdr_len:
                            check_packet(piece)          # the kernel's own checksums
                    except AssertionError:
                        ok = False
                    got += _tcp_info(piece)[1]["payload"]
        found[mode] = {"ok": ok and bytes(got) == data, "reads": packets, "bytes": len(got),
                       "segs": len(segs)}
        outer.close()
    inner.close()
    return found


def scenario_rate(seconds: float = 1.5) -> dict:
    """TCP socket -> TUN -> this (Python) reader for `seconds`, with offloads (each read cut
    into 1400-byte IP packets by the compiled segmenter) and without (one packet per read)."""
    from fastpptp import _offload as off
    from support.offload import tcp_packet

    found = {}
    for mode in ("offload", "plain"):
        offload = mode == "offload"
        dev = tun.open_tun("fpo8", vnet_hdr=offload, offload=offload)
        local, peer = _configure(dev.name, 4)
        # a long queue: our peer does no SACK, so TUN queue drops would stall the transfer
        _sh("ip", "link", "set", "dev", dev.name, "txqueuelen", "20000")
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((peer, 5001))
        syn, deadline = None, time.monotonic() + 5
        while syn is None and time.monotonic() < deadline:
            for _vh, pkt in _read_ready(dev, 0.5):
                info = _tcp_info(pkt)
                if info and info[1]["flags"] & 0x02:
                    syn = info[1]
        kw = dict(src=peer, dst=local, sport=5001, dport=syn["sport"])
        dev.write_packet(tcp_packet(4, seq=1, ack=syn["seq"] + 1, flags=0x12, window=65535,
                                    opts=bytes([2, 4, 0x05, 0xB4, 1, 3, 3, 9]), **kw))
        select.select([], [s], [], 5)
        chunk = bytes(1 << 20)
        nxt, got, reads, out_pkts = syn["seq"] + 1, 0, 0, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            try:
                while True:
                    s.send(chunk)
            except BlockingIOError:
                pass
            for vh, pkt in _read_ready(dev, 0.1):
                reads += 1
                out_pkts += len(off.segment(pkt, vh, 1400)) if offload else 1
                info = _tcp_info(pkt)
                if info and info[1]["seq"] == nxt:
                    got += len(info[1]["payload"])
                    nxt = (nxt + len(info[1]["payload"])) & 0xFFFFFFFF
            dev.write_packet(tcp_packet(4, seq=2, ack=nxt, flags=0x10, window=65535, **kw))
        dt = time.perf_counter() - t0
        s.close()
        dev.close()
        found[mode] = {"gbit_s": round(got * 8 / dt / 1e9, 3), "reads": reads,
                       "bytes_per_read": got // max(reads, 1), "ip_packets": out_pkts}
    return found


SCENARIOS = {"open": scenario_open, "fallback": scenario_fallback,
             "tso4": lambda: scenario_tso(4), "tso6": lambda: scenario_tso(6),
             "forward4": lambda: scenario_forward(4), "forward6": lambda: scenario_forward(6),
             "rate": scenario_rate}


# -- the netns tests ----------------------------------------------------------------------------

@pytest.fixture
def netns_name():
    name = f"fpoff{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True, capture_output=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def run_scenario(ns: str, which: str) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}")
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(HERE / "test_tun.py"),
                           which], capture_output=True, text=True, timeout=60, env=env,
                          cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.netns
def test_open_tun_with_offloads_in_a_namespace(netns_name):
    r = run_scenario(netns_name, "open")
    name, hdr_len, enabled, flags, reason = r["offload"]
    assert (name, hdr_len, enabled, reason) == ("fpo0", 12, True, "")
    want = tun.TUN_F_CSUM | tun.TUN_F_TSO4 | tun.TUN_F_TSO6
    assert flags & want == want
    assert r["kernel_vnet_hdr_sz"] == 12
    assert r["ifr_flags"] & (tun.IFF_TUN | tun.IFF_NO_PI | tun.IFF_VNET_HDR) == \
        tun.IFF_TUN | tun.IFF_NO_PI | tun.IFF_VNET_HDR
    assert r["nonblocking"] and r["empty_read"] == "EAGAIN"
    assert r["exists_while_open"] and r["closed_removes"]
    assert r["plain"][0].startswith("tun") and r["plain"][1:] == [0, False]
    assert r["hdr_only"] == [12, False]
    assert r["multi_queue"] == ["fpo2", "fpo2", True, True]


@pytest.mark.netns
def test_falls_back_to_plain_tun_when_offloads_refused(netns_name):
    r = run_scenario(netns_name, "fallback")
    assert r["dev"] == ["fpo3", 0, False, 0]
    assert "TUNSETOFFLOAD" in r["reason"]
    assert any("falling back" in m for m in r["log"])
    assert not r["ifr_flags"] & tun.IFF_VNET_HDR                  # really reopened without it


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.parametrize("version", [4, 6])
def test_tcp_transfer_reads_super_packets_and_accepts_gro_writes(netns_name, version):
    r = run_scenario(netns_name, f"tso{version}")
    assert r["got"] == r["total"] and r["stream_ok"] and r["segments_ok"]
    assert r["supers"] > 0 and r["max_read"] > 1500, r              # super-packets > MTU
    # fewer reads than 1400-byte packets carried: offload saved syscalls
    assert r["reads"] < r["total"] // 1360
    l3 = 20 if version == 4 else 40
    gso = 1 if version == 4 else 4
    for flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, _nb, length in r["samples"]:
        assert flags & 1 and gso_type & 0x7F == gso                 # NEEDS_CSUM, TCPV4/6
        assert csum_start == l3 and csum_offset == 16
        assert 0 < gso_size <= 1460 and length > 1500
        assert hdr_len >= l3 + 20 or hdr_len == 0
    # our GRO super-packet went into the kernel in one write and reached the socket intact
    assert r["gro_written"] == r["gro_len"] == l3 + 20 + 40000
    assert r["gro_vh"][:6] == [1, gso, l3 + 20, 1000, l3, 16]
    assert r["gro_received_ok"]


@pytest.mark.netns
@pytest.mark.parametrize("version", [4, 6])
def test_forwarded_gro_super_packet_is_segmented_by_the_kernel(netns_name, version):
    r = run_scenario(netns_name, f"forward{version}")
    # out of a plain TUN: software GSO from our partial checksum, one valid packet each
    assert r["plain"]["ok"], r
    assert r["plain"]["reads"] == r["plain"]["segs"] == 54
    # out of an offloading TUN: the super-packet travels whole (our segment() then cuts it)
    assert r["offload"]["ok"], r
    assert r["offload"]["reads"] < r["offload"]["segs"]
    assert r["offload_vh"][:2] == [1, 1 if version == 4 else 4]    # NEEDS_CSUM, TCPV4/6


@pytest.mark.netns
@pytest.mark.slow
def test_offload_reads_carry_many_packets_per_syscall(netns_name, record_property):
    r = run_scenario(netns_name, "rate")
    record_property("tun_rate", r)
    print(f"\nTUN -> Python reader, 1.5 s each: {r}")
    assert r["offload"]["bytes_per_read"] > 16 * 1024                 # super-packets
    assert r["plain"]["bytes_per_read"] <= 1500                        # one MTU packet a read
    assert r["offload"]["ip_packets"] > 10 * r["offload"]["reads"]


if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]]()))
