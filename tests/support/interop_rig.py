"""Interop rig: fastpptp against real pppd 2.4.9 / pptp-linux 1.10 / pptpd 1.4.0 in QEMU VMs.

The VMs come from the shared harness ``pptp-vm`` (see ``paths.INTEROP / "README.md"``).  This
module only drives it:

1. :func:`prepare` runs ``pptp-vm prepare`` (idempotent, ~5 s with a current cache); a failure
   there is the one reason to skip (no qemu / no accelerator / no packages).
2. :class:`InteropNet` makes one private namespace per test module with ``pptp-vm netns up``
   (name carries our pid), and removes it with ``netns down`` at the end.  The harness puts the
   bridge ``br0`` with 192.0.2.1/24 in it; nothing is routed from the root namespace.
3. :class:`VmRun` starts ``pptp-vm server|client --netns NAME ...`` as a subprocess, streams its
   stdout into a log file and a marker table (``PPTP-VM: NAME k=v ...``, ``PPTP-VM-HOST:
   SUMMARY ...``), and offers bounded waits on markers and on the exit status.
4. :class:`Product` runs ``python -m fastpptp server|client`` inside the same namespace (setns
   between fork and exec, so the PID we hold is the product's own).
5. Traffic helpers open sockets *inside* the namespace (``netns.open_socket``): an HTTP/1.0
   fetch that hashes the body, a one-file HTTP server for the VM's ``wget``, a TCP trigger
   for the VM-side teardown waiter.
6. :func:`tshark_problems` lists what Wireshark's dissectors flag as malformed / expert errors
   in the frames *we* sent.

Every wait is bounded; every process is signalled by its PID; the namespace is always removed.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from fastpptp.net import netns
from fastpptp.tools.proc import stop_process
from support import paths

PPTP_VM = str(paths.INTEROP / "pptp-vm")
PY = [sys.executable, "-m", "fastpptp"]

HOST_ADDR = "192.0.2.1"          # br0 in the harness namespace: where our side lives
SERVER_VM_ADDR = "192.0.2.10"    # pptpd VM
CLIENT_VM_ADDR = "192.0.2.20"    # pptp-linux VM
TUN_SERVER = "198.51.100.1"      # server end of the tunnel (pptpd localip / our localip)
TUN_POOL = "198.51.100.2-9"

# Markers are searched for anywhere in a console line, not only at its start: the guest's
# serial console interleaves writers, and pppd's log_write() sends a line's text and its
# "\n" in two write() calls, so a marker echoed between them lands glued to pppd's line.
# Seen in CI: "...ip-down finished (pid 234), status = 0x0PPTP-VM: PPPD-EXIT rc=5 ...".
_MARK = re.compile(r"PPTP-VM: (\S+)\s*(.*)$")
_HOST = re.compile(r"PPTP-VM-HOST: (\S+)\s*(.*)$")
_KV = re.compile(r"(\S+?)=(\S*)")
MAX_LINES = 200_000              # bound on what we keep of a VM console in memory

_counter = itertools.count()


def unique(prefix: str) -> str:
    """A name unique on this machine while we run: prefix + pid + counter."""
    return f"{prefix}{os.getpid()}x{next(_counter)}"


def parse_console_line(line: str) -> tuple[str, str, str]:
    """Classify one line of ``pptp-vm`` output: ("marker", NAME, payload) for a guest
    ``PPTP-VM:`` marker, ("host", KIND, payload) for a harness ``PPTP-VM-HOST:`` line, else
    ("", "", "")."""
    m = _MARK.search(line)
    if m:
        return "marker", m.group(1), m.group(2)
    m = _HOST.search(line)
    if m:
        return "host", m.group(1), m.group(2)
    return "", "", ""


def parse_kv(text: str) -> dict[str, str]:
    """``a=1 b=x`` -> {"a": "1", "b": "x"} (the harness's marker payloads)."""
    return dict(_KV.findall(text))


def wait_for(cond: Callable[[], object], timeout: float, what: str,
             procs: Sequence[subprocess.Popen] = (), interval: float = 0.05):
    """Poll ``cond`` until truthy (returned); AssertionError after ``timeout`` s or when one
    of ``procs`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        for p in procs:
            if p.poll() is not None:
                v = cond()
                if v:
                    return v
                raise AssertionError(f"{what}: process {p.pid} exited with {p.returncode}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _pdeathsig() -> None:
    """Child side: die with the test process (the harness then kills its qemu the same way)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


def kill_pid(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 15.0) -> int | None:
    """Signal ``proc`` by PID, wait ``grace`` s, then SIGKILL; returns its exit status."""
    return stop_process(proc, sig, grace, kill_wait=10)


# ----------------------------------------------------------------------------- harness
def prepare(timeout: float = 600) -> tuple[bool, str]:
    """``pptp-vm prepare``: (ok, last lines of its output)."""
    if os.geteuid() != 0:
        return False, "pptp-vm needs root"
    if not os.path.exists(PPTP_VM):
        return False, f"{PPTP_VM} not found"
    try:
        p = subprocess.run([sys.executable, PPTP_VM, "prepare"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"pptp-vm prepare did not finish in {timeout:.0f} s"
    out = (p.stdout + p.stderr).strip().splitlines()
    return p.returncode == 0, "\n".join(out[-15:])


@contextlib.contextmanager
def prepared_net(*, tshark: bool = False):
    """The module fixture of the interop tests: the harness prepared (VM image, packages),
    else the test is skipped with the reason printed; then an :class:`InteropNet`."""
    import pytest
    assert os.path.exists(PPTP_VM), f"the interop harness is missing: {PPTP_VM}"
    ok, out = prepare()
    if not ok:
        reason = "pptp-vm prepare failed (qemu, an accelerator or packages unavailable): " + out[-400:]
        print(reason)
        pytest.skip(reason)
    if tshark:
        assert have_tshark(), "pptp-vm prepare installs tshark; it is missing"
    with InteropNet() as n:
        yield n


class InteropNet:
    """The harness namespace (bridge br0, 192.0.2.1/24), created and removed by us."""

    def __init__(self, name: str | None = None):
        self.name = name or unique("fpio")

    def __enter__(self) -> "InteropNet":
        p = subprocess.run([sys.executable, PPTP_VM, "netns", "up", "--netns", self.name],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"pptp-vm netns up failed: {p.stdout}{p.stderr}")
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run([sys.executable, PPTP_VM, "netns", "down", "--netns", self.name],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


class VmRun:
    """One ``pptp-vm server|client`` run, its console parsed as it streams."""

    def __init__(self, role: str, net: InteropNet, args: Sequence[str], log_path: str):
        self.role = role
        self.log_path = log_path
        self.argv = [sys.executable, PPTP_VM, role, "--netns", net.name, *args]
        self.lines: list[str] = []
        self.markers: list[tuple[str, str, float]] = []   # (name, payload, monotonic time)
        self.host: list[tuple[str, str]] = []
        self._cond = threading.Condition()
        self._log = open(log_path, "w")
        self._log.write("$ " + " ".join(self.argv) + "\n")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self._log.write(f"{time.monotonic() - self.t0:8.3f} {line}\n")
            self._log.flush()
            with self._cond:
                if len(self.lines) < MAX_LINES:
                    self.lines.append(line)
                kind, name, payload = parse_console_line(line)
                if kind == "marker":
                    self.markers.append((name, payload, time.monotonic()))
                elif kind == "host":
                    self.host.append((name, payload))
                self._cond.notify_all()
        self.proc.wait()
        with self._cond:
            self._log.close()
            self._cond.notify_all()

    # -------------------------------------------------------------- markers
    def marker(self, name: str) -> dict[str, str] | None:
        with self._cond:
            for n, payload, _ in self.markers:
                if n == name:
                    return parse_kv(payload)
        return None

    def all_markers(self, name: str) -> list[str]:
        with self._cond:
            return [payload for n, payload, _ in self.markers if n == name]

    def marker_time(self, name: str) -> float | None:
        with self._cond:
            return next((t for n, _, t in self.markers if n == name), None)

    def wait_marker(self, name: str, timeout: float, fail_on: Sequence[str] = ("DONE",)) -> dict[str, str]:
        """Block until marker ``name`` appears; AssertionError (with the console tail) on
        timeout, when the harness exits, or when one of ``fail_on`` shows up first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                names = [n for n, _, _ in self.markers]
                if name in names:
                    return parse_kv(self.markers[names.index(name)][1])
                bad = [n for n in fail_on if n in names]
                left = deadline - time.monotonic()
                if bad or left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    why = f"{bad[0]} came first" if bad else ("timeout" if left <= 0 else
                                                            f"harness exited {self.proc.returncode}")
                    raise AssertionError(f"{self.role} VM: no {name} marker ({why}); console tail:\n"
                                         + self.tail())
                self._cond.wait(min(left, 0.5))

    def wait_line(self, pattern: str, timeout: float) -> re.Match:
        """First console line matching ``pattern`` (regex search), bounded wait."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{self.role} VM: no line matching {pattern!r}; tail:\n"
                                         + self.tail())
                self._cond.wait(min(left, 0.5))

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        with self._cond:
            return sum(1 for line in self.lines if rx.search(line))

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def tail(self, n: int = 60) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])

    @property
    def summary(self) -> dict[str, str]:
        """The harness's ``SUMMARY`` line (auth=, mppe=, rc=, times), {} before the end."""
        with self._cond:
            for kind, payload in self.host:
                if kind == "SUMMARY":
                    return parse_kv(payload)
        return {}

    # -------------------------------------------------------------- exit
    def wait(self, timeout: float) -> int:
        """The harness's exit status (the VM's DONE rc); stops it after ``timeout`` s."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.role} VM still running after {timeout} s; tail:\n"
                                 + self.tail()) from None
        self._reader.join(10)
        return self.proc.returncode

    def stop(self) -> None:
        """SIGTERM the harness by PID (it powers off qemu, stops tshark, deletes its tap)."""
        kill_pid(self.proc, signal.SIGTERM, grace=20)
        self._reader.join(10)


# ----------------------------------------------------------------------------- our products
class Product:
    """``python -m fastpptp server|client ...`` inside namespace ``ns``."""

    def __init__(self, ns: str, args: Sequence[str], log_path: str):
        self.log_path = log_path
        self.argv = PY + list(args)
        with open(log_path, "wb") as logf:
            logf.write(("$ " + " ".join(self.argv) + "\n").encode())
            logf.flush()
            self.proc = netns.popen(ns, self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, sig: int = signal.SIGTERM, grace: float = 15.0) -> int | None:
        return kill_pid(self.proc, sig, grace)

    @property
    def pid(self) -> int:
        return self.proc.pid


def write(dirpath: str, name: str, text: str, mode: int = 0o600) -> str:
    path = os.path.join(dirpath, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


class OurServer(Product):
    """fastpptp server listening on 192.0.2.1 with a pptpd.conf + options + chap-secrets."""

    def __init__(self, ns: str, tmp: str, options: Sequence[str], users: dict[str, str],
                 extra: Sequence[str] = (), name: str = "fastpptp"):
        self.tmp = tmp
        self.ctl = os.path.join(tmp, "server.sock")
        opts = write(tmp, "server-options", "\n".join([f"name {name}", *options]) + "\n")
        conf = write(tmp, "pptpd.conf", f"option {opts}\nlocalip {TUN_SERVER}\nremoteip {TUN_POOL}\n"
                                        f"connections 8\nlisten {HOST_ADDR}\n")
        secrets = write(tmp, "chap-secrets", "".join(f'{u} * "{p}" *\n' for u, p in users.items()))
        super().__init__(ns, ["server", "-c", conf, "--secrets", secrets, "-f", "--control-socket", self.ctl,
                              "--interface", "fpio0", "--ip-up", "", "--ip-down", "", *extra],
                         os.path.join(tmp, "server.log"))
        wait_for(lambda: os.path.exists(self.ctl), 20, "our server's control socket", [self.proc])

    def status(self) -> dict:
        """What ``fastpptp status --json`` prints (same socket, same document)."""
        from fastpptp.status import query_status
        return query_status(self.ctl)

    def status_cli(self) -> dict:
        p = subprocess.run(PY + ["status", "--json", "--control-socket", self.ctl], capture_output=True,
                           text=True, timeout=20)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)


class OurClient(Product):
    """fastpptp client (pppd-style trailing options) with an --up-file."""

    def __init__(self, ns: str, tmp: str, server: str, user: str, password: str,
                 options: Sequence[str] = (), extra: Sequence[str] = (), interface: str = "fpio1"):
        self.up_file = os.path.join(tmp, "client-up.json")
        self.interface = interface
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.up_file)
        pw = write(tmp, "client-password", password + "\n")
        super().__init__(ns, ["client", server, "--user", user, "--password-file", pw, "--up-file",
                              self.up_file, "--interface", interface, *extra, *options],
                         os.path.join(tmp, "client.log"))

    def ups(self) -> list[dict]:
        if not os.path.exists(self.up_file):
            return []
        with open(self.up_file) as f:
            return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------- traffic
def http_get(ns: str, host: str, port: int, path: str, timeout: float = 60.0,
             limit: int = 64 << 20) -> tuple[int, int, str]:
    """HTTP/1.0 GET from inside ``ns``: (status, body length, body SHA-256)."""
    s = netns.open_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    try:
        s.settimeout(min(timeout, 20))
        s.connect((host, port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk or len(head) > 65536:
                raise AssertionError(f"bad HTTP answer from {host}:{port}: {head[:200]!r}")
            head += chunk
        head, body = head.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        h, n = hashlib.sha256(body), len(body)
        while n <= limit:
            if time.monotonic() > deadline:
                raise AssertionError(f"HTTP GET {host}:{port}{path}: not done after {timeout} s ({n} bytes)")
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        return status, n, h.hexdigest()
    finally:
        s.close()


class FileServer:
    """A one-path HTTP/1.0 server inside ``ns`` (0.0.0.0:port) for the VM's ``wget``."""

    def __init__(self, ns: str, port: int, data: bytes, max_requests: int = 4, timeout: float = 120):
        self.data = data
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.served = 0
        self.seconds: float | None = None    # accept -> the client's close, last request
        self.sock = netns.open_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.listen(4)
        self.sock.settimeout(1.0)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + timeout
        self._max = max_requests
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while not self._stop.is_set() and self.served < self._max and time.monotonic() < self._deadline:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                conn.settimeout(60)
                req = b""
                while b"\r\n\r\n" not in req and len(req) < 8192:
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    req += chunk
                t0 = time.monotonic()
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(self.data) + self.data)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(4096):       # the client closes once it has every byte
                    pass
                self.seconds = time.monotonic() - t0
                self.served += 1
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)
        self.sock.close()


def tcp_trigger(ns: str, host: str, port: int, timeout: float = 10.0) -> None:
    """Connect to ``host:port`` from ``ns``, say ``go``, close (the VM's ``nc -l`` then ends)."""
    deadline = time.monotonic() + timeout
    while True:
        s = netns.open_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(3)
            s.connect((host, port))
            s.sendall(b"go\n")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
        finally:
            s.close()


def link_exists(ns: str, ifname: str) -> bool:
    from pyroute2 import IPRoute
    with netns.entered(ns):
        with IPRoute() as ipr:
            return bool(ipr.link_lookup(ifname=ifname))


def routes_to(ns: str, addr: str) -> list[str]:
    """Destinations of routes in ``ns``'s main table that equal ``addr``/32."""
    from pyroute2 import IPRoute
    with netns.entered(ns):
        with IPRoute() as ipr:
            out = []
            for r in ipr.get_routes(family=socket.AF_INET):
                dst = r.get_attr("RTA_DST")
                if dst == addr and r["dst_len"] == 32:
                    out.append(f"{dst}/32")
            return out


# ----------------------------------------------------------------------------- VM-side scripts
# Started at boot on the VM: 2 MiB of random data, its digest on the console, busybox httpd.
VM_FILE_BG = ("dd if=/dev/urandom of=/tmp/f bs=1k count=2048 2>/dev/null; "
              "echo \"VMFILE $(sha256sum /tmp/f)\"; httpd -p 8080 -h /tmp")
VM_FILE_RE = r"VMFILE ([0-9a-f]{64})\s+/tmp/f"


def vm_fetch_cmd(port: int) -> str:
    """VM command: fetch our file through the tunnel and print its digest."""
    return f"echo \"OURFILE $(wget -q -O - http://$PPP_REMOTE:{port}/g | sha256sum)\""


OUR_FILE_RE = r"OURFILE ([0-9a-f]{64})"


def vm_waiter_cmd(port: int, then: str = "", limit_s: int = 90) -> str:
    """VM command that holds the VM's command list until we connect to ``port`` through the
    tunnel (then runs ``then``, e.g. kill pppd) or until the PPP interface is gone (our side
    tore the link down).  Prints ``WAITER go`` / ``WAITER linkgone``; always exits 0."""
    n = limit_s * 10
    return ("(nc -l -p %d >/dev/null 2>&1; touch /tmp/go) & i=0; "
            "while [ ! -e /tmp/go ] && [ -e /sys/class/net/$PPP_IFACE ] && [ $i -lt %d ]; "
            "do sleep 0.1; i=$((i+1)); done; "
            "if [ -e /tmp/go ]; then echo 'WAITER go'; %s else echo 'WAITER linkgone'; fi; true"
            % (port, n, (then + ";") if then else ""))


# ----------------------------------------------------------------------------- captures
def tshark(args: Sequence[str], timeout: float = 60) -> str:
    p = subprocess.run(["tshark", "-n", *args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"tshark {' '.join(args)} failed: {p.stderr[-2000:]}")
    return p.stdout


def tshark_count(pcap: str, display_filter: str) -> int:
    out = tshark(["-r", pcap, "-Y", display_filter, "-T", "fields", "-e", "frame.number"])
    return len([ln for ln in out.splitlines() if ln.strip()])


def tshark_problems(pcap: str, src: str) -> list[str]:
    """Frames from ``src`` that Wireshark's dissectors call malformed or flag with an expert
    error, restricted to PPTP/GRE/PPP (the protocols we generate)."""
    flt = (f"ip.src=={src} && (pptp || gre || ppp) && "
           "(_ws.malformed || _ws.expert.severity==error)")
    # The tunnelled TCP's own sequence analysis (a retransmission overlapping earlier data is
    # an expert *error* in TCP reassembly) says nothing about our encapsulation: switch it off.
    out = tshark(["-o", "tcp.analyze_sequence_numbers:FALSE", "-o", "tcp.desegment_tcp_streams:FALSE",
                  "-r", pcap, "-Y", flt])
    return [ln for ln in out.splitlines() if ln.strip()]


def have_tshark() -> bool:
    return shutil.which("tshark") is not None


PPTP_NAMES = {1: "SCCRQ", 2: "SCCRP", 3: "StopCCRQ", 4: "StopCCRP", 5: "EchoRQ", 6: "EchoRP", 7: "OCRQ",
              8: "OCRP", 9: "ICRQ", 10: "ICRP", 11: "ICCN", 12: "CCRQ", 13: "CDN", 14: "WEN", 15: "SLI"}


def teardown_sequence(pcap: str, since_epoch: float) -> list[tuple[str, str]]:
    """(source address, event) for the teardown: LCP Terminate-Request/Ack, PPTP control
    messages other than echo, TCP FIN/RST on port 1723, from ``since_epoch`` on."""
    flt = (f"frame.time_epoch >= {since_epoch:.3f} && ((lcp && (ppp.code==5 || ppp.code==6)) || "
           "(pptp && pptp.control_message_type != 5 && pptp.control_message_type != 6) || "
           "(tcp.port==1723 && (tcp.flags.fin==1 || tcp.flags.reset==1)))")
    out = tshark(["-r", pcap, "-Y", flt, "-T", "fields", "-E", "separator=|", "-e", "ip.src", "-e", "ppp.code",
                  "-e", "pptp.control_message_type", "-e", "tcp.flags.fin", "-e", "tcp.flags.reset", "-e", "lcp"])
    seq = []
    for line in out.splitlines():
        if not line.strip():
            continue
        src, code, pptp_type, fin, rst = (line.split("|") + [""] * 6)[:5]
        if pptp_type:
            for t in pptp_type.split(","):
                seq.append((src, PPTP_NAMES.get(int(t), t)))
        elif code:
            seq.append((src, {"5": "LCP-TermReq", "6": "LCP-TermAck"}.get(code.split(",")[0], code)))
        elif rst in ("1", "True"):
            seq.append((src, "TCP-RST"))
        elif fin in ("1", "True"):
            seq.append((src, "TCP-FIN"))
    return seq


# ----------------------------------------------------------------------------- bench sessions
# The load generator's packets go to each session's own tunnel address and come back through
# the server (fastpptp/tools/loadgen.py, module doc 3.), so the pptpd VM must forward IPv4 as
# any concentrator does.  Forwarding a packet back out of the ppp link it came in on makes
# the kernel send an ICMP redirect (RFC 792; its ppp address is on-link for the peer): off,
# as on a concentrator, so that nothing but our own packets comes back down the tunnels.
VM_FORWARD_BG = ("echo 1 > /proc/sys/net/ipv4/ip_forward; "
                 "echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects; "
                 "echo 0 > /proc/sys/net/ipv4/conf/default/send_redirects")
# One source address per load-generator client, added to br0 inside the harness namespace
# by ``bench sessions --add-addresses br0`` (as /32s, removed afterwards); on-link for the VM.
BENCH_SOURCES = "192.0.2.64/28"


def bench_sessions(ns: str, server: str, args: Sequence[str], log_path: str,
                   timeout: float) -> tuple[int, dict | None, str]:
    """``fastpptp bench sessions SERVER --json ARGS`` inside ``ns``: (exit status, the JSON
    summary or None, its stderr: the progress lines).  Stopped by PID after ``timeout`` s."""
    argv = PY + ["bench", "sessions", server, "--json", *args]
    with open(log_path, "w") as logf:
        logf.write("$ " + " ".join(argv) + "\n")
        logf.flush()
        proc = netns.popen(ns, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=logf, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_pid(proc, signal.SIGTERM, grace=10)
            raise AssertionError(f"bench sessions still running after {timeout} s; see {log_path}") from None
    with open(log_path, errors="replace") as f:
        err = f.read()
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else None), err
