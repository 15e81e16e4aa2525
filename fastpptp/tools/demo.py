"""``fastpptp demo``: a server and a client in two network namespaces, traffic, a summary.

1. Two namespaces joined by a veth pair (fastpptp.tools.netrig): the server in A at
   192.0.2.1, the client in B at 192.0.2.2 (documentation addresses, never routed from the
   root namespace).
2. ``fastpptp-server`` in one (pptpd.conf + options + chap-secrets written to a temp dir:
   MS-CHAPv2 required, MPPE-128 required), ``fastpptp-client`` in the other.
3. Once the client reports the tunnel up: ICMP echo across the tunnel (RTT), then a bulk TCP
   transfer whose SHA-256 is checked on the far side (throughput).
4. A summary from both ends (negotiated options, addresses, RTT, throughput, counters), then
   everything is torn down — also on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

from ..net import netns
from .netrig import ADDR_A as SERVER_ADDR, ADDR_B as CLIENT_ADDR, two_namespaces

TUN_SERVER, TUN_POOL = "198.51.100.1", "198.51.100.2-9"
BULK_PORT = 5001


class DemoError(RuntimeError):
    pass


def _wait(cond, timeout: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        for p in procs:
            if p.poll() is not None:
                raise DemoError(f"{what}: process {p.args[3] if len(p.args) > 3 else p.pid} exited "
                                f"with {p.returncode}")
        time.sleep(0.05)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ping(ns: str, dst: str, count: int = 5, interval: float = 0.2, timeout: float = 2.0) -> list[float]:
    """ICMP echo from inside ``ns``; returns RTTs in ms of the replies received."""
    sock = netns.open_socket(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    rtts = []
    ident = os.getpid() & 0xFFFF
    try:
        sock.settimeout(timeout)
        for seq in range(count):
            payload = struct.pack("!d", time.monotonic()) + b"fastpptp-demo" * 4
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            pkt = struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, seq) + payload
            sent = time.monotonic()
            sock.sendto(pkt, (dst, 0))
            end = sent + timeout
            while time.monotonic() < end:
                try:
                    data, _ = sock.recvfrom(2048)
                except socket.timeout:
                    break
                ihl = (data[0] & 0x0F) * 4
                typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if typ == 0 and rid == ident and rseq == seq:
                    rtts.append((time.monotonic() - sent) * 1000)
                    break
            time.sleep(interval)
    finally:
        sock.close()
    return rtts


def bulk_transfer(server_ns: str, client_ns: str, dst: str, nbytes: int, timeout: float = 60.0,
                  port: int = BULK_PORT) -> dict:
    """Send ``nbytes`` over TCP through the tunnel; both ends hash what they saw."""
    lsock = netns.open_socket(server_ns, socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((dst, port))
    lsock.listen(1)
    lsock.settimeout(timeout)
    result: dict = {}

    def receiver():
        try:
            conn, _ = lsock.accept()
            conn.settimeout(timeout)
            h = hashlib.sha256()
            got = 0
            while True:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                got += len(chunk)
            conn.close()
            result["rx_bytes"], result["rx_sha256"] = got, h.hexdigest()
        except OSError as exc:
            result["rx_error"] = str(exc)

    t = threading.Thread(target=receiver, daemon=True)
    t.start()
    csock = netns.open_socket(client_ns, socket.AF_INET, socket.SOCK_STREAM)
    csock.settimeout(timeout)
    block = secrets.token_bytes(1 << 16)
    h = hashlib.sha256()
    start = time.monotonic()
    try:
        csock.connect((dst, port))
        sent = 0
        while sent < nbytes:
            chunk = block[: min(len(block), nbytes - sent)]
            csock.sendall(chunk)
            h.update(chunk)
            sent += len(chunk)
        csock.shutdown(socket.SHUT_WR)
        t.join(timeout)
    finally:
        csock.close()
        lsock.close()
    elapsed = time.monotonic() - start
    result.update(tx_bytes=sent, tx_sha256=h.hexdigest(), seconds=elapsed,
                  gbit_s=sent * 8 / elapsed / 1e9 if elapsed > 0 else 0.0)
    result["checksum_ok"] = result.get("rx_sha256") == result["tx_sha256"]
    return result


def run_demo(json_out: bool = False, nbytes: int = 32 * 1024 * 1024) -> int:
    if os.geteuid() != 0:
        print("fastpptp demo: needs root (network namespaces, TUN, raw GRE sockets)", file=sys.stderr)
        return 1
    rig_cm = contextlib.ExitStack()  # the namespaces and the processes in them
    tmp = tempfile.mkdtemp(prefix="fastpptp-demo-")
    summary: dict = {"ok": False}
    main_pid = os.getpid()

    def on_sigterm(*_):
        # pyroute2 forks helpers that inherit this handler: only the demo itself cleans up
        if os.getpid() != main_pid:
            os._exit(0)
        raise KeyboardInterrupt()

    old_term = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        say = (lambda *a: None) if json_out else (lambda *a: print(*a, flush=True))
        # the server gets time to hang up the call when stopped
        rig = rig_cm.enter_context(two_namespaces(prefix="fpdemo-", grace=10))
        sns, cns = rig.a, rig.b
        say(f"fastpptp demo: namespaces {sns} (server {SERVER_ADDR}) and {cns} (client {CLIENT_ADDR})")

        password = secrets.token_urlsafe(12)
        files = {
            "pptpd.conf": f"option {tmp}/pptpd-options\nlocalip {TUN_SERVER}\nremoteip {TUN_POOL}\n"
                          f"connections 8\nlisten {SERVER_ADDR}\n",
            "pptpd-options": "name fastpptp-demo\nrefuse-pap\nrefuse-chap\nrefuse-mschap\n"
                             "require-mschap-v2\nrequire-mppe-128\nms-dns 192.0.2.53\n"
                             "lcp-echo-interval 10\nlcp-echo-failure 3\n",
            "chap-secrets": f'# client server secret addresses\ndemo fastpptp-demo "{password}" *\n',
            "password": password + "\n",
        }
        for name, text in files.items():
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o600)
        ctl = os.path.join(tmp, "server.sock")
        up_file = os.path.join(tmp, "client-up.json")
        py = [sys.executable, "-m", "fastpptp"]
        rig.spawn_logged(sns, py + ["server", "-c", f"{tmp}/pptpd.conf", "--secrets", f"{tmp}/chap-secrets",
                                    "-f", "--control-socket", ctl, "--interface", "fpdemo0"],
                         os.path.join(tmp, "server.log"))
        _wait(lambda: os.path.exists(ctl), 20, "the server's control socket", rig.procs)
        t0 = time.monotonic()
        rig.spawn_logged(cns, py + ["client", SERVER_ADDR, "--user", "demo", "--password-file",
                                    f"{tmp}/password", "--up-file", up_file, "--interface", "fpdemo1",
                                    "require-mppe-128", "refuse-eap", "remotename", "fastpptp-demo"],
                         os.path.join(tmp, "client.log"))
        _wait(lambda: os.path.exists(up_file) and os.path.getsize(up_file) > 0, 30, "the tunnel", rig.procs)
        setup_s = time.monotonic() - t0
        with open(up_file) as f:
            client_info = json.loads(f.readline())
        say(f"tunnel up in {setup_s:.2f} s: client {client_info.get('local_ip')} <-> server "
            f"{client_info.get('remote_ip')}, {client_info.get('auth')}, MPPE {client_info.get('mppe')}")
        rtts = ping(cns, TUN_SERVER, count=5)
        say(f"ping {TUN_SERVER} through the tunnel: {len(rtts)}/5 replies" +
            (f", rtt min/avg/max {min(rtts):.2f}/{sum(rtts) / len(rtts):.2f}/{max(rtts):.2f} ms" if rtts else ""))
        bulk = bulk_transfer(sns, cns, TUN_SERVER, nbytes)
        say(f"bulk TCP {bulk['tx_bytes'] / 1e6:.1f} MB in {bulk['seconds']:.2f} s = {bulk['gbit_s']:.3f} Gbit/s, "
            f"SHA-256 {'matches' if bulk['checksum_ok'] else 'MISMATCH'}")
        from ..status import query_status
        status = query_status(ctl)
        sessions = status.get("sessions", [])
        summary = {
            "ok": bool(rtts) and bulk["checksum_ok"] and len(sessions) == 1,
            "tunnel_setup_s": round(setup_s, 3), "client": client_info,
            "ping": {"sent": 5, "received": len(rtts),
                     "rtt_ms": {"min": min(rtts), "avg": sum(rtts) / len(rtts), "max": max(rtts)} if rtts else None},
            "bulk": bulk, "server_sessions": sessions,
        }
        if not json_out:
            for s in sessions:
                drops = {k: v for k, v in s.get("drops", {}).items() if v}
                say(f"server session: user {s.get('user')} peer {s.get('peer')} {s.get('auth')} MPPE {s.get('mppe')} "
                    f"{s.get('local_ip')} <-> {s.get('remote_ip')}; rx {s.get('rx_packets')} pkts "
                    f"{s.get('rx_bytes')} B, tx {s.get('tx_packets')} pkts {s.get('tx_bytes')} B, drops {drops or 'none'}")
            say("demo " + ("OK" if summary["ok"] else "FAILED"))
    except (DemoError, OSError) as exc:
        summary["error"] = str(exc)
        print(f"fastpptp demo: {exc}", file=sys.stderr)
        for name in ("server.log", "client.log"):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    tail = f.read()[-3000:]
                print(f"--- {name} (last lines) ---\n{tail}", file=sys.stderr)
    except KeyboardInterrupt:
        summary["error"] = "interrupted"
        print("fastpptp demo: interrupted, cleaning up", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        with contextlib.suppress(Exception):
            rig_cm.close()  # client then server stopped by PID, namespaces removed
        if json_out:
            print(json.dumps(summary, indent=2, default=str))
        with contextlib.suppress(Exception):
            for name in os.listdir(tmp):
                os.unlink(os.path.join(tmp, name))
            os.rmdir(tmp)
    return 0 if summary.get("ok") else 1
