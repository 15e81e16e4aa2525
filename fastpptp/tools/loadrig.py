"""The load generator's rig: ``fastpptp server`` in one namespace, ``fastpptp bench sessions``
in another, and the server's memory and CPU watched while the load runs.

    python3 -m fastpptp.tools.loadrig --clients 1000 --workdir /tmp/lg -- --traffic 2 --duration 10

1. Two fresh namespaces joined by one veth (fastpptp.tools.netrig): the server's end
   198.18.255.1/24, the client's end 198.18.255.2/24; the load generator adds one source
   address per client from 198.19.0.0/16 (``--add-addresses``) and removes them.  The server
   reaches that range through a route via 198.18.255.2, not on-link: on-link it would need
   one ARP entry per client, and the kernel's neighbour table is shared by every namespace
   (gc_thresh3 = 1024 by default): past it SYN-ACKs wait in "neighbor table overflow" and
   connects take 30 s or fail.  Everything is in 198.18.0.0/15, the benchmarking range
   (RFC 2544), and nothing is routed to or from the root namespace.
2. The server's pool: 198.18.0.2 onwards, one address per client (``localip 198.18.0.1``),
   ``connections`` = clients; users ``user0..`` / ``pass0..`` in its chap-secrets;
   MS-CHAPv2 and MPPE-128 required; IPv4 forwarding on in its namespace (the load
   generator's packets go to the client's own tunnel address and come back through it).
3. While ``bench sessions`` runs, the server's VmRSS and CPU time are sampled from
   /proc/PID (``server_rss_kb`` before, peak, ``server_cpu_s``); the load generator's JSON
   summary gets a ``server`` section with them.
4. ``--churn N`` (``bench sessions --churn``): before and after the churn, the server's
   resources (``server_resources``: RSS, open fds, IPv4 routes and links in its namespace,
   sessions listed, pool addresses free) and RSS/fds sampled while it runs; the server's
   LCP echo is 1 s x 3 so that the ``silent`` endings are reaped in seconds.
5. Bounded: the load generator has ``timeout`` seconds; on exit every process is stopped by
   PID and both namespaces are removed (netrig.rig_lifetime).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..net import netlink
from .netrig import NsPair, rig_lifetime, unique_suffix, wait_for

SERVER_ADDR = "198.18.255.1"
CLIENT_ADDR = "198.18.255.2"
SOURCE_RANGE = "198.19.0.0/16"
TUN_LOCAL = "198.18.0.1"
POOL_FIRST = 0xC6120002               # 198.18.0.2
PY = [sys.executable, "-m", "fastpptp"]
STATUS_IDLE = 10.0


def pool_spec(n: int) -> str:
    """pptpd ``remoteip`` for ``n`` addresses from 198.18.0.2."""
    last = POOL_FIRST + n - 1
    return f"198.18.0.2-{(last >> 24) & 255}.{(last >> 16) & 255}.{(last >> 8) & 255}.{last & 255}"


def proc_status(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM...), 0 when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class LoadLab:
    rig: NsPair
    workdir: str
    clients: int
    server: subprocess.Popen[bytes] | None = None
    samples: list[dict[str, float]] = field(default_factory=list)

    @property
    def server_ns(self) -> str:
        return self.rig.a

    @property
    def client_ns(self) -> str:
        return self.rig.b

    @property
    def client_if(self) -> str:
        return self.rig.veth_b

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def write(self, name: str, text: str) -> str:
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def start_server(self, *extra: str, connections: int | None = None,
                     echo: tuple[int, int] = (10, 6)) -> subprocess.Popen[bytes]:
        n = self.clients
        self.write("chap-secrets", "".join(f"user{i} * pass{i} *\n" for i in range(n)))
        self.write("options", "name fastpptp-load\nrequire-mschap-v2\nrequire-mppe-128\n"
                              f"lcp-echo-interval {echo[0]}\nlcp-echo-failure {echo[1]}\n")
        self.write("pptpd.conf", f"option {self.path('options')}\nlocalip {TUN_LOCAL}\n"
                                 f"remoteip {pool_spec(n)}\nconnections {connections or n}\n"
                                 f"listen {SERVER_ADDR}\n")
        ctl = self.path("ctl.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ctl)
        self.server = self.rig.spawn_logged(
            self.server_ns, PY + ["server", "-c", self.path("pptpd.conf"), "--secrets",
                                  self.path("chap-secrets"), "-f", "--control-socket", ctl,
                                  "--interface", "fplsrv0", "--ip-up", "", "--ip-down", "",
                                  "--log-level", "warning", *extra],
            self.path("server.log"))
        server = self.server
        wait_for(lambda: os.path.exists(ctl) or server.poll() is not None, 30, 0.05, "server control socket")
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}: {self.log('server.log')[-2000:]}")
        return server

    def log(self, name: str) -> str:
        try:
            with open(self.path(name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def server_resources(self) -> dict[str, int]:
        """What a leak would show: the server's RSS (kB) and open fds, the IPv4 routes and
        links of its namespace, the sessions it lists and its free pool addresses."""
        from ..status import query_status
        assert self.server is not None
        pid = self.server.pid
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            fds = -1
        try:
            doc = query_status(self.path("ctl.sock"), timeout=10.0)
            sessions = len(doc.get("sessions", []))
        except Exception:
            sessions = -1
        return {"rss_kb": proc_status(pid, "VmRSS"), "fds": fds,
                "routes": len(netlink.list_routes(4, netns=self.server_ns)),
                "links": len(netlink.list_links(netns=self.server_ns)), "sessions": sessions}

    def churn(self, cycles: int, *args: str, timeout: float = 3600.0) -> dict[str, Any]:
        """``bench sessions --churn cycles`` with the server's resources before, sampled,
        and after (once it lists no session, at most 90 s later)."""
        from ..status import query_status
        before = self.server_resources()
        status, summary, err = self.bench("--churn", str(cycles), "--churn-limit", str(timeout),
                                          *args, timeout=timeout + 120)

        def idle() -> bool:
            try:
                return not query_status(self.path("ctl.sock"), timeout=10.0)["sessions"]
            except Exception:
                return False
        t0 = time.monotonic()
        while not idle() and time.monotonic() - t0 < 90:
            time.sleep(0.5)
        after = self.server_resources()
        return {"status": status, "summary": summary, "stderr": err[-4000:], "before": before,
                "after": after, "rss_samples_kb": [int(x["rss_kb"]) for x in self.samples]}

    _last_listed = 0

    def _listed(self, best: int, peers: set[str]) -> tuple[int, set[str]]:
        """The most up sessions `fastpptp sessions` listed so far, and their peers then."""
        from ..status import query_status
        try:
            doc = query_status(self.path("ctl.sock"), timeout=10.0)
        except Exception:        # busy or going away: the next poll asks again
            return best, peers
        up = [s for s in doc.get("sessions", []) if s.get("local_ip")]
        self._last_listed = len(up)
        if len(up) > best:
            return len(up), {str(s.get("peer")) for s in up}
        return best, peers

    def _netstat(self, ns: str) -> dict[str, int]:
        """Listen-queue overflows and SYN retransmits of ``ns`` (/proc/net/netstat TcpExt)."""
        text = self.rig.run(ns, ["cat", "/proc/net/netstat"], check=False).stdout
        rows = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")]
        if len(rows) < 2:
            return {}
        got = dict(zip(rows[0][1:], (int(v) for v in rows[1][1:]), strict=False))
        return {k: got.get(k, 0) for k in ("ListenOverflows", "ListenDrops", "TCPSynRetrans",
                                           "TCPReqQFullDrop", "TCPReqQFullDoCookies")}

    def bench(self, *args: str, timeout: float = 300.0) -> tuple[int, dict[str, Any] | None, str]:
        """Run ``fastpptp bench sessions`` in the client namespace (``--json``), sampling the
        server meanwhile; returns (exit status, summary with a ``server`` section, stderr)."""
        assert self.server is not None
        pid = self.server.pid
        rss0, cpu0 = proc_status(pid, "VmRSS"), proc_cpu(pid)
        argv = PY + ["bench", "sessions", SERVER_ADDR, "--clients", str(self.clients),
                     "--source-range", SOURCE_RANGE, "--add-addresses", self.client_if, "--json",
                     *args]
        out_path, err_path = self.path("bench.json"), self.path("bench.err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = self.rig.spawn(self.client_ns, argv, stdout=out, stderr=err)
            deadline = time.monotonic() + timeout
            t0 = time.monotonic()
            peers: set[str] = set()
            listed = 0
            full: list[tuple[float, float]] = []     # (time, server CPU) while all N are listed
            next_status = t0 + 1.0
            try:
                while proc.poll() is None and time.monotonic() < deadline:
                    self.samples.append({"t": time.monotonic() - t0, "rss_kb": proc_status(pid, "VmRSS"),
                                         "cpu_s": proc_cpu(pid) - cpu0})
                    if time.monotonic() >= next_status:
                        # what the server lists: once a second until all are up, then every
                        # STATUS_IDLE s (a listing of 1 000 sessions costs the server CPU too)
                        listed, peers = self._listed(listed, peers)
                        next_status = time.monotonic() + (STATUS_IDLE if full else 1.0)
                        if self._last_listed == self.clients:
                            full.append((time.monotonic(), proc_cpu(pid)))
                    time.sleep(0.25)
            finally:
                status = self.rig.stop(proc) if proc.poll() is None else proc.returncode
        # the interval up to the last poll that listed all N may hold the start of the
        # teardown: left out when there are enough polls without it
        idle = full[:-1] if len(full) >= 3 else full
        text = self.log("bench.json").strip()
        summary: dict[str, Any] | None = json.loads(text) if text else None
        if summary is not None:
            peak = max((s["rss_kb"] for s in self.samples), default=rss0)
            up = summary.get("up", 0)
            summary["server"] = {
                "pid": pid, "rss_kb_before": rss0, "rss_kb_peak": peak,
                "rss_kb_after": proc_status(pid, "VmRSS"),
                "rss_kb_per_session": (peak - rss0) / up if up else None,
                "cpu_s": proc_cpu(pid) - cpu0,
                "sessions_listed_peak": listed,
                # server CPU share while every session was up (with --traffic 0: the idle
                # cost of N sessions, their LCP echoes and one status listing per STATUS_IDLE
                # s); None if that lasted < 2 polls
                "cpu_share_all_up": ((idle[-1][1] - idle[0][1]) / (idle[-1][0] - idle[0][0])
                                     if len(idle) > 1 else None),
                "all_up_listed_s": (idle[-1][0] - idle[0][0]) if len(idle) > 1 else 0.0,
                # server CPU from the start of the load until all N were listed, per session
                # (set-up cost; an upper bound: the status polls, echoes and traffic count too)
                "cpu_ms_per_session_setup": ((full[0][1] - cpu0) * 1000 / self.clients) if full else None,
                "tcp_server": self._netstat(self.server_ns),
                "tcp_client": self._netstat(self.client_ns),
                "distinct_peers_at_peak": len(peers),
                "log_tail": self.log("server.log")[-4000:],
            }
        return int(status if status is not None else -1), summary, self.log("bench.err")


@contextlib.contextmanager
def load_lab(workdir: str, clients: int) -> Iterator[LoadLab]:
    """The two namespaces and their veth (module doc, 1.); removed on exit."""
    sfx = unique_suffix()
    rig = NsPair(f"fplgs{sfx}", f"fplgc{sfx}", f"lgs{sfx[-11:]}", f"lgc{sfx[-11:]}",
                 addr_a=SERVER_ADDR, addr_b=CLIENT_ADDR)
    with rig_lifetime(rig):
        netlink.create_veth(rig.veth_a, rig.veth_b, netns=rig.a, peer_netns=rig.b)
        netlink.add_address(rig.veth_a, f"{SERVER_ADDR}/24", netns=rig.a)
        netlink.add_address(rig.veth_b, f"{CLIENT_ADDR}/24", netns=rig.b)
        netlink.set_link_up(rig.veth_a, netns=rig.a)
        netlink.set_link_up(rig.veth_b, netns=rig.b)
        # forwarding for the echoed traffic; no ICMP redirects for it (the server forwards
        # each packet back out of the interface it came in on)
        rig.run(rig.a, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                        "net.ipv4.conf.default.send_redirects=0"])
        netlink.add_route(SOURCE_RANGE, gateway=CLIENT_ADDR, netns=rig.a)
        yield LoadLab(rig, workdir, clients)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m fastpptp.tools.loadrig",
                                description="fastpptp server + bench sessions in two namespaces")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--workdir", required=True)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--server-arg", action="append", default=[], help="extra fastpptp server flag")
    p.add_argument("--churn", type=int, default=0, metavar="N",
                   help="connect/disconnect N sessions, --clients at a time; report server resources")
    p.add_argument("bench_args", nargs="*", help="after --: more bench sessions flags")
    a = p.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    if a.churn:
        with load_lab(a.workdir, a.clients) as lab:
            lab.start_server("--rate-limit", "1000", *a.server_arg, echo=(1, 3))
            res = lab.churn(a.churn, *a.bench_args, timeout=a.timeout)
        with open(os.path.join(a.workdir, "churn.json"), "w") as f:
            json.dump(res, f, indent=1)
        from .loadgen import format_summary
        if res["summary"] is None:
            print(f"no summary (exit {res['status']}): {res['stderr']}", file=sys.stderr)
            return 1
        print(format_summary(res["summary"]))
        rss = res["rss_samples_kb"]
        print(f"server before: {res['before']}\nserver after:  {res['after']}\n"
              f"server RSS while churning: min {min(rss, default=0)} max {max(rss, default=0)} kB "
              f"({len(rss)} samples)")
        return int(res["status"])
    with load_lab(a.workdir, a.clients) as lab:
        lab.start_server(*a.server_arg)
        status, summary, err = lab.bench(*a.bench_args, timeout=a.timeout)
    sys.stderr.write(err)
    if summary is None:
        print(f"bench sessions produced no summary (exit {status})", file=sys.stderr)
        return 1
    with open(os.path.join(a.workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    from .loadgen import format_summary
    print(format_summary(summary))
    srv = summary["server"]
    share = srv["cpu_share_all_up"]
    per = srv["rss_kb_per_session"]
    print(f"server: RSS {srv['rss_kb_before']} kB before, {srv['rss_kb_peak']} kB peak, "
          f"{'-' if per is None else f'{per:.1f}'} kB per session; CPU {srv['cpu_s']:.2f} s during the run, "
          f"{'-' if share is None else f'{share:.1%}'} of a core while all {a.clients} were up "
          f"({srv['all_up_listed_s']:.0f} s)")
    if srv["cpu_ms_per_session_setup"] is not None:
        print(f"server set-up CPU: {srv['cpu_ms_per_session_setup']:.2f} ms per session (until all were listed)")
    print(f"TCP: server {srv['tcp_server']}; client {srv['tcp_client']}")
    return status


if __name__ == "__main__":
    sys.exit(main())
