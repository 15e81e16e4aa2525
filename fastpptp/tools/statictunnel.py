"""One static PPTP data-plane session, no control connection: the end-to-end test and benchmark
runner.

    python3 -m fastpptp.tools.statictunnel --local 192.0.2.1 --peer 192.0.2.2 \\
        --call-id 1 --peer-call-id 2 --tun-addr 198.51.100.1 --tun-peer 198.51.100.2 \\
        [--mppe-key HEX[:HEX]] [--mtu 1400] [--impl compiled|reference] [--no-offload] \\
        [--stats-json FILE] [--tun-name NAME] [--tun-addr6 A6 --tun-peer6 B6]
        [--rate-limit DOWN/UP] [--rate-limit-burst BYTES] [--rate-limit-queue N]
        [--rx-coalesce-us US]

Run one in each of two namespaces (call IDs crossed) and they carry IP between their TUNs as
two PPTP peers would after IPCP (and CCP, with a key) opened, with no control connection:

1. open a TUN (fastpptp.net.tun) and the raw GRE socket (fastpptp.net.rawgre) bound to --local;
2. give the TUN its point-to-point address (--tun-addr peer --tun-peer), MTU, bring it up
   (fastpptp.net.netlink);
3. make the engine (fastpptp.dataplane), add the one session, ACFC/PFC as pppd negotiates them,
   the route to --tun-peer, MPPE if a key was given, the rate limit if one was given
   (``set_rate_limit``: DOWN is what we send to the peer, UP what we receive from it, as a
   server maps accel-ppp's ``down/up``), ``set_data(True, True)``, ``start``;
4. print ``READY tun=NAME`` on stdout and wait for SIGTERM/SIGINT, discarding any PPP control
   frame the peer sends (there is no LCP here to answer it); SIGUSR1 writes a counters
   snapshot (``"final": false``) to --stats-json while the engine keeps running;
5. stop the engine and write ``{"session": counters, "totals": totals, ...}`` as JSON to
   --stats-json (or stdout), exit 0.

An MPPE key is one hex string used both ways, or SEND:RECV (then the peer gets RECV:SEND).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import select
import signal
import sys
import time

from fastpptp.net import netlink
from fastpptp.net.greport import GRE_IO_MODES

EXIT_USAGE = 2
EXIT_SETUP = 1


def _hexkey(text: str) -> tuple[bytes, bytes]:
    parts = text.split(":")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError("MPPE key is HEX or SENDHEX:RECVHEX")
    try:
        keys = [bytes.fromhex(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError("MPPE key must be hexadecimal") from None
    for k in keys:
        if len(k) not in (8, 16):
            raise argparse.ArgumentTypeError("MPPE key must be 8 (40/56-bit) or 16 (128-bit) bytes")
    send = keys[0]
    recv = keys[1] if len(keys) == 2 else keys[0]
    if len(send) != len(recv):
        raise argparse.ArgumentTypeError("MPPE send and receive keys differ in length")
    return send, recv


def _call_id(text: str) -> int:
    v = int(text, 0)
    if not 0 <= v <= 0xFFFF:
        raise argparse.ArgumentTypeError("call ID is 16 bits (RFC 2637 §2.7)")
    return v


def _rate(text: str) -> tuple[int, int]:
    """``DOWN/UP`` or ``RATE`` (both ways), kbit/s; 0 = unlimited."""
    parts = text.split("/")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError("rate limit is KBIT or DOWN/UP in kbit/s") from None
    if len(vals) not in (1, 2) or any(v < 0 for v in vals):
        raise argparse.ArgumentTypeError("rate limit is KBIT or DOWN/UP in kbit/s")
    return (vals[0], vals[-1])


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


def _ipv6(text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv6 address: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m fastpptp.tools.statictunnel",
        description="one static PPTP GRE/PPP session between two hosts, no control plane")
    p.add_argument("--local", required=True, type=_ipv4, help="our address for GRE")
    p.add_argument("--peer", required=True, type=_ipv4, help="the peer's address for GRE")
    p.add_argument("--call-id", required=True, type=_call_id, help="our call ID")
    p.add_argument("--peer-call-id", required=True, type=_call_id, help="the peer's call ID")
    p.add_argument("--tun-addr", required=True, type=_ipv4, help="our tunnel address")
    p.add_argument("--tun-peer", required=True, type=_ipv4, help="the peer's tunnel address")
    p.add_argument("--tun-addr6", type=_ipv6, help="our tunnel IPv6 address (optional)")
    p.add_argument("--tun-peer6", type=_ipv6, help="the peer's tunnel IPv6 address")
    p.add_argument("--tun-name", default="", help="TUN name (kernel picks tunN if empty)")
    p.add_argument("--mppe-key", type=_hexkey, help="HEX or SEND:RECV; enables stateless MPPE")
    p.add_argument("--mppe-stateful", action="store_true", help="stateful MPPE (RFC 3078 §3)")
    p.add_argument("--mtu", type=int, default=1400, help="TUN MTU and PPP MTU (default 1400)")
    p.add_argument("--impl", choices=("compiled", "reference"), default="compiled")
    p.add_argument("--no-offload", action="store_true", help="no virtio_net_hdr/TSO/GRO on the TUN")
    p.add_argument("--no-acfc", action="store_true", help="send FF 03 (ACFC not negotiated)")
    p.add_argument("--no-pfc", action="store_true", help="2-byte protocol (PFC not negotiated)")
    p.add_argument("--txqueuelen", type=int, default=None,
                   help="TUN transmit queue (packets the engine has not read yet)")
    p.add_argument("--reorder-timeout", type=float, default=None, help="seconds (engine default)")
    p.add_argument("--batch", type=int, default=None, help="engine batch (engine default)")
    p.add_argument("--rate-limit", type=_rate, default=None, metavar="DOWN/UP",
                   help="kbit/s: DOWN what we send to the peer, UP what we receive (0: none)")
    p.add_argument("--rate-limit-burst", type=int, default=0,
                   help="token bucket size in bytes (0: the engine's automatic burst)")
    p.add_argument("--rate-limit-queue", type=int, default=None,
                   help="packets held per direction over the limit (0: drop at once)")
    p.add_argument("--rx-coalesce-us", type=int, default=None,
                   help="receive coalescing after a busy GRE burst, microseconds "
                        "(EngineConfig.rx_coalesce_us; 0: off)")
    p.add_argument("--gre-io", choices=GRE_IO_MODES, default="auto",
                   help="GRE port: xdp, packet, raw, or auto (fastest available; logged)")
    p.add_argument("--stats-json", help="write counters here at exit (default: stdout)")
    return p


class _Signals:
    """SIGTERM/SIGINT stop, SIGUSR1 asks for a counters snapshot; a pipe wakes the loop."""

    def __init__(self) -> None:
        self.stop = 0
        self.snapshot = False
        self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, self.handler)

    def handler(self, signum, _frame) -> None:
        if signum == signal.SIGUSR1:
            self.snapshot = True
        else:
            self.stop = signum
        try:
            os.write(self.wfd, b"x")
        except OSError:
            pass

    def drain(self) -> None:
        try:
            while os.read(self.rfd, 64):
                pass
        except BlockingIOError:
            pass


def _write_stats(path: str | None, result: dict) -> None:
    text = json.dumps(result, indent=1, sort_keys=True)
    if not path:
        print(text, flush=True)
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)  # readers never see half a file


def run(args: argparse.Namespace) -> int:
    from fastpptp.dataplane import EngineConfig, load_engine
    from fastpptp.net import tun as tunmod
    from fastpptp.net.greport import open_gre_io

    if not 576 <= args.mtu <= 65535 - 64:
        print("statictunnel: --mtu out of range", file=sys.stderr)
        return EXIT_USAGE
    sigs = _Signals()

    cfg_kw = {"mtu": args.mtu, "offload": not args.no_offload}
    if args.reorder_timeout is not None:
        cfg_kw["reorder_timeout"] = args.reorder_timeout
    if args.batch is not None:
        cfg_kw["batch"] = args.batch
    if args.rate_limit_queue is not None:
        cfg_kw["rate_limit_queue"] = args.rate_limit_queue
    if args.rx_coalesce_us is not None:
        cfg_kw["rx_coalesce_us"] = args.rx_coalesce_us
    cfg = EngineConfig(**cfg_kw)
    Engine = load_engine(args.impl)

    # A TUN opened with IFF_VNET_HDR prefixes every packet with a virtio_net_hdr; only an
    # engine that says it parses one (class attribute ``supports_vnet_hdr``) may get such a
    # TUN, otherwise the headers would be taken for IP.
    offload = not args.no_offload and bool(getattr(Engine, "supports_vnet_hdr", False))
    dev = tunmod.open_tun(args.tun_name, vnet_hdr=offload, offload=offload)
    gre = None
    eng = None
    started = False
    snapshots = 0
    discarded_control = 0

    def stats(final: bool) -> dict:
        return {
            "call_id": args.call_id,
            "session": dict(eng.counters(args.call_id)),
            "totals": dict(eng.totals()),
            "discarded_control": discarded_control,
            "impl": args.impl,
            "mppe": args.mppe_key is not None,
            "offload": offload,
            "vnet_hdr_len": getattr(dev, "vnet_hdr_len", 0),
            "tun_offloads": bool(getattr(dev, "offloads_enabled", False)),
            "gre_io": gre.mode if gre is not None else None,
            "gre_port": gre.counters() if gre is not None else {},   # valid until gre.close()
            "snapshot": snapshots,
            "final": final,
            "time": time.time(),
        }

    try:
        gre = open_gre_io(args.gre_io, local=args.local, peer=args.peer, batch=cfg.batch,
                          rcvbuf=cfg.rcvbuf, sndbuf=cfg.sndbuf)
        gre.peer_up(args.peer)
        # the reference engine (benchmark baseline) does its own socket calls on a raw socket
        port = gre.port if args.impl == "compiled" or gre.mode != "raw" else gre.raw.fileno()
        netlink.set_mtu(dev.name, args.mtu)
        if args.txqueuelen is not None:
            netlink.set_txqueuelen(dev.name, args.txqueuelen)
        netlink.add_address(dev.name, args.tun_addr, peer=args.tun_peer)
        netlink.set_link_up(dev.name)
        if args.tun_addr6:
            # After the link is up: the kernel makes the IPv6 route to the peer only then.
            # No DAD: nobody else is on a point-to-point link, and a tentative address
            # could not be used for the first second.
            netlink.add_address(dev.name, args.tun_addr6, peer=args.tun_peer6, nodad=True)

        eng = Engine(cfg)
        cid = args.call_id
        eng.add_session(cid, args.peer_call_id, args.peer, tun=0)
        eng.set_ppp(cid, tx_acfc=not args.no_acfc, tx_pfc=not args.no_pfc, mtu=args.mtu)
        eng.add_route(cid, args.tun_peer)
        if args.tun_peer6:
            eng.add_route(cid, args.tun_peer6)
        if args.mppe_key is not None:
            send, recv = args.mppe_key
            bits = 128 if len(send) == 16 else 40
            eng.set_mppe(cid, send, recv, bits, args.mppe_stateful)
        if args.rate_limit is not None:
            down, up = args.rate_limit
            eng.set_rate_limit(cid, down, up, args.rate_limit_burst)
        eng.set_data(cid, True, True)
        if offload:
            eng.start([dev.fd], port, vnet_hdr_len=dev.vnet_hdr_len)
        else:
            eng.start([dev.fd], port)
        started = True
        print(f"READY tun={dev.name}", flush=True)

        ctl = eng.control_fd
        while not sigs.stop:
            ready, _, _ = select.select([sigs.rfd, ctl], [], [], 1.0)
            if sigs.rfd in ready:
                sigs.drain()
            if ctl in ready:
                # No LCP/CCP runs here: drain and count what the peer sends (echoes...)
                discarded_control += len(eng.recv_control(256))
            if sigs.snapshot and not sigs.stop:
                sigs.snapshot = False
                snapshots += 1
                _write_stats(args.stats_json, stats(final=False))
    finally:
        if started:
            eng.stop()
        result = stats(final=True) if eng is not None else None
        if gre is not None:
            gre.close()
        dev.close()
        if result is not None:
            _write_stats(args.stats_json, result)
    return 0


# ----------------------------------------------------------------------- launching (tests, bench)


def command(
    *, local: str, peer: str, call_id: int, peer_call_id: int, tun_addr: str, tun_peer: str,
    mppe_key: str | None = None, mtu: int = 1400, impl: str = "compiled", offload: bool = True,
    stats_json: str | None = None, tun_name: str = "", extra: tuple[str, ...] = (),
) -> list[str]:
    """The argv that runs this module with these settings (``sys.executable -m ...``)."""
    argv = [sys.executable, "-m", "fastpptp.tools.statictunnel", "--local", local, "--peer", peer,
            "--call-id", str(call_id), "--peer-call-id", str(peer_call_id),
            "--tun-addr", tun_addr, "--tun-peer", tun_peer, "--mtu", str(mtu), "--impl", impl]
    if mppe_key:
        argv += ["--mppe-key", mppe_key]
    if not offload:
        argv.append("--no-offload")
    if stats_json:
        argv += ["--stats-json", stats_json]
    if tun_name:
        argv += ["--tun-name", tun_name]
    return argv + list(extra)


def wait_ready(proc, timeout: float = 10.0) -> str:
    """Read ``proc``'s stdout (a pipe) until its READY line; return the TUN name.

    Raises RuntimeError with its stderr if it exits first, TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"statictunnel not ready after {timeout}s")
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                proc.wait(timeout=5)
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"statictunnel exited ({proc.returncode}): {err.strip()}")
            buf += chunk
            for line in buf.split(b"\n"):
                if line.startswith(b"READY tun="):
                    return line[len(b"READY tun="):].decode().strip()


def snapshot(proc, stats_json: str, timeout: float = 5.0) -> dict:
    """SIGUSR1 ``proc`` and return the counters snapshot it writes (engine keeps running)."""
    try:
        with open(stats_json) as f:
            before = json.load(f).get("snapshot", 0)
    except (FileNotFoundError, ValueError):
        before = 0
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(stats_json) as f:
                doc = json.load(f)
            if doc.get("snapshot", 0) > before:
                return doc
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)
    raise TimeoutError(f"no counters snapshot in {stats_json} after {timeout}s")


def stop(proc, stats_json: str, timeout: float = 10.0) -> dict:
    """SIGTERM ``proc`` (by its PID), wait, and return the counters it wrote to ``stats_json``."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except Exception:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        raise
    with open(stats_json) as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.tun_addr6) != bool(args.tun_peer6):
        parser.error("--tun-addr6 and --tun-peer6 go together")
    try:
        return run(args)
    except (OSError, ImportError, ValueError) as exc:
        print(f"statictunnel: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
