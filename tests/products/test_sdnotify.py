"""systemd's notification protocol (fastpptp.sdnotify) against a test socket standing in for
the service manager: a bound AF_UNIX datagram socket, by path in a temporary directory or by an
abstract name; then the products' use of it: READY only once the listener accepts, STATUS with
the session count, RELOADING/READY around SIGHUP, STOPPING on stop and on SIGTERM, WATCHDOG=1
at the interval WATCHDOG_USEC sets (and not for another WATCHDOG_PID)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from fastpptp.sdnotify import Notifier, watchdog_usec
from fastpptp.tools.netrig import namespace
from fastpptp.tools.proc import stop_process
from fastpptp.net import netns
from support import paths
from support.inproc import free_port


class Manager:
    """The service manager's end: a datagram socket bound at ``address`` ("/path" or "@name")."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def recv(self, timeout: float = 5.0) -> dict[str, str] | None:
        """The next notification as a dict of its assignments (None: nothing in ``timeout``)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except (socket.timeout, BlockingIOError):
            return None
        return dict(line.split("=", 1) for line in data.decode().split("\n"))

    def until(self, key: str, timeout: float = 10.0) -> list[dict[str, str]]:
        """Every notification up to and including the first that has ``key``."""
        got: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg is not None:
                got.append(msg)
                if key in msg:
                    return got
        raise AssertionError(f"no {key} within {timeout} s; got {got}")

    def close(self) -> None:
        self.sock.close()


def _abstract_name() -> str:
    return f"@fastpptp-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["path", "abstract"])
def manager(request, tmp_path):
    m = Manager(str(tmp_path / "notify.sock") if request.param == "path" else _abstract_name())
    yield m
    m.close()


# ---------------------------------------------------------------------------- the protocol
def test_no_notify_socket_is_a_no_op():
    env = {"WATCHDOG_USEC": "100000"}
    n = Notifier.from_env(env)
    assert not n.enabled and n.watchdog_interval is None
    assert not n.ready("x") and not n.status("y") and not n.stopping() and not n.watchdog()
    assert n._sock is None                      # not even a socket was made

    async def run() -> None:
        n.start_watchdog(asyncio.get_running_loop())
        await asyncio.sleep(0.2)
    asyncio.run(run())
    assert n.sent == 0


def test_ready_status_stopping_reach_the_socket(manager):
    n = Notifier.from_env({"NOTIFY_SOCKET": manager.address})
    assert n.enabled
    assert n.ready("0 sessions")
    assert manager.recv() == {"READY": "1", "STATUS": "0 sessions"}
    assert n.status("1 session")
    assert not n.status("1 session")            # unchanged: not sent again
    assert n.status("two\nlines")                # one assignment per line: flattened
    assert n.stopping("stopping: SIGTERM")
    assert n.watchdog()
    assert [manager.recv(), manager.recv(), manager.recv(), manager.recv()] == [
        {"STATUS": "1 session"}, {"STATUS": "two lines"},
        {"STOPPING": "1", "STATUS": "stopping: SIGTERM"}, {"WATCHDOG": "1"}]
    assert n.reloading()
    msg = manager.recv()
    assert msg is not None and msg["RELOADING"] == "1"
    assert abs(int(msg["MONOTONIC_USEC"]) - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 5_000_000
    assert manager.recv(0.05) is None
    n.close()


def test_undeliverable_notifications_are_dropped_not_raised(tmp_path, caplog):
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.enabled and not n.ready() and n.sent == 0
    assert "notification to" in caplog.text
    other = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})   # systemd 253+ in VMs: not ours
    assert not other.enabled and not other.ready()


def test_unset_environment_removes_the_variables(manager):
    env = {"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid()),
           "PATH": "/bin"}
    n = Notifier.from_env(env, unset_environment=True)
    assert env == {"PATH": "/bin"}              # our children (ip-up/ip-down) do not inherit them
    assert n.enabled and n.watchdog_interval == 0.5


@pytest.mark.parametrize("env,expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "200000"}, 200000),
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4242"}, 200000),     # it is us
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4243"}, None),       # another process's
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "me"}, None),
], ids=["unset", "set", "pid-match", "pid-mismatch", "zero", "negative", "garbage", "pid-garbage"])
def test_watchdog_environment(env, expected):
    assert watchdog_usec(env, 4242) == expected


def _pings(manager: Manager, env: dict[str, str], seconds: float) -> tuple[Notifier, list[float]]:
    n = Notifier.from_env({"NOTIFY_SOCKET": manager.address, **env})
    times: list[float] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                if manager.sock.recv(64) == b"WATCHDOG=1":
                    times.append(loop.time())
        manager.sock.setblocking(False)
        loop.add_reader(manager.sock.fileno(), readable)
        n.start_watchdog(loop)
        await asyncio.sleep(seconds)
        n.stop_watchdog()
        await asyncio.sleep(0.1)
        loop.remove_reader(manager.sock.fileno())
    asyncio.run(run())
    return n, times


def test_watchdog_pings_at_half_the_timeout(manager):
    # WATCHDOG_USEC 0.2 s: a ping every 0.1 s from the event loop, for 1 s
    n, times = _pings(manager, {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 1.0)
    assert n.watchdog_interval == pytest.approx(0.1)
    assert 5 <= len(times) <= 10, times          # 10 on an idle machine; a loaded one lags, never leads
    # received times: a ping's delivery may lag a little (the machine is shared), the pace not
    gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
    assert min(gaps) >= 0.05, gaps
    assert 0.095 <= (times[-1] - times[0]) / len(gaps) <= 0.2, gaps
    assert n.sent == len(times)                  # and none after stop_watchdog


def test_no_pings_for_another_watchdog_pid(manager):
    n, times = _pings(manager, {"WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid() + 1)}, 0.5)
    assert n.enabled and n.watchdog_interval is None and times == []


# ---------------------------------------------------------------------------- the products
class ProbingNotifier(Notifier):
    """Sends what a Notifier sends; on READY=1 it first records whether the listener at
    ``port`` accepts a TCP connection at that moment (the kernel completes the handshake
    from the listen backlog, whatever the event loop is doing)."""

    def __init__(self, address: str, port: int):
        super().__init__(address)
        self.port = port
        self.accepting_at_ready: list[bool] = []

    def notify(self, *assignments: str) -> bool:
        if "READY=1" in assignments:
            with socket.socket() as probe:
                probe.settimeout(2.0)
                self.accepting_at_ready.append(probe.connect_ex(("127.0.0.1", self.port)) == 0)
        return super().notify(*assignments)




@pytest.mark.netns
@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_server_ready_after_listening_reload_and_stopping(tmp_path, kind):
    from fastpptp.config import parse_ppp_options
    from fastpptp.ppp.auth.secrets import CallableBackend
    from fastpptp.server import Server, ServerConfig
    from support.inproc import FakeTun

    port = free_port()

    async def main(manager: Manager) -> tuple[list[dict[str, str]], ...]:
        notifier = ProbingNotifier(manager.address, port)
        server = Server(ServerConfig(listen="127.0.0.1", port=port, remote_ips=("198.51.100.2",),
                                     ppp=parse_ppp_options("require-mschap-v2"),
                                     control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None),
                        auth_backend=CallableBackend(lambda u, s: None), tun_factory=FakeTun,
                        configure_network=False, notifier=notifier)
        before = manager.recv(0.05)
        await server.start()
        started = manager.until("READY")
        server.reload()                                   # what SIGHUP runs
        reload = [manager.recv(1.0), manager.recv(1.0)]
        await server.stop("test over")
        stopped = [manager.recv(1.0)]
        assert before is None and notifier.accepting_at_ready == [True, True]
        return started, reload, stopped

    # the abstract namespace is per network namespace: bind ours after entering the test's
    with namespace("fpsd") as ns, netns.entered(ns):
        manager = Manager(str(tmp_path / "n.sock") if kind == "path" else _abstract_name())
        try:
            started, reload, stopped = asyncio.run(main(manager))
        finally:
            manager.close()
    assert started == [{"READY": "1", "STATUS": f"0 sessions, listening on 127.0.0.1:{port}"}]
    assert reload[0] is not None and reload[0]["RELOADING"] == "1" and "MONOTONIC_USEC" in reload[0]
    assert reload[1] == {"READY": "1"}                  # STATUS unchanged: not repeated
    assert stopped == [{"STOPPING": "1", "STATUS": "stopping: test over"}]


@pytest.mark.netns
def test_status_counts_sessions_and_client_is_ready_when_the_tunnel_is_up(tmp_path):
    """Server and client in one process (as tests/integration/test_inprocess.py runs them),
    each with its own manager socket."""
    from fastpptp.client import Client, ClientConfig
    from fastpptp.config import parse_ppp_options
    from fastpptp.ppp.auth.secrets import CallableBackend
    from fastpptp.server import Server, ServerConfig
    from support.inproc import FakeTun

    async def main(srv: Manager, cli: Manager) -> tuple[list[dict[str, str]], ...]:
        port = free_port()
        server = Server(ServerConfig(listen="127.0.0.1", port=port, local_ips=("198.51.100.1",),
                                     remote_ips=("198.51.100.2",),
                                     ppp=parse_ppp_options("require-mschap-v2 name testsrv lcp-echo-interval 0"),
                                     control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None),
                        auth_backend=CallableBackend(lambda u, s: {"alice": "pw"}.get(u)),
                        tun_factory=FakeTun, configure_network=False,
                        notifier=Notifier.from_env({"NOTIFY_SOCKET": srv.address}))
        await server.start()
        client = Client(ClientConfig(server="127.0.0.1", port=port, user="alice", password="pw",
                                     ppp=parse_ppp_options("remotename testsrv"), local_address="127.0.0.2",
                                     ip_up=None, ip_down=None),
                        tun_factory=FakeTun, configure_network=False,
                        notifier=Notifier.from_env({"NOTIFY_SOCKET": cli.address}))
        task = asyncio.ensure_future(client.run())
        try:
            await asyncio.wait_for(client.up.wait(), 20)
            server_up = srv.until("STATUS", 5) + srv.until("STATUS", 5)
            client_up = cli.until("READY", 5)
            client.stop()
            assert await asyncio.wait_for(task, 15) == 0
            server_down = srv.until("STATUS", 5)
            client_down = cli.until("STOPPING", 5)
        finally:
            if not task.done():
                client.stop()
                await asyncio.wait_for(task, 15)
            await server.stop("test over")
        return server_up, server_down, client_up, client_down

    with namespace("fpsd") as ns, netns.entered(ns):
        srv, cli = Manager(str(tmp_path / "srv.sock")), Manager(_abstract_name())
        try:
            server_up, server_down, client_up, client_down = asyncio.run(main(srv, cli))
        finally:
            srv.close()
            cli.close()
    listening = server_up[0]["STATUS"].split(", ", 1)[1]
    assert server_up == [{"READY": "1", "STATUS": f"0 sessions, {listening}"},
                         {"STATUS": f"1 session, {listening}"}]
    assert server_down == [{"STATUS": f"0 sessions, {listening}"}]
    assert client_up == [{"STATUS": "connecting to 127.0.0.1"},
                         {"READY": "1", "STATUS": "tunnel up: fake 198.51.100.2 -> 198.51.100.1 via 127.0.0.1"}]
    assert client_down == [{"STOPPING": "1", "STATUS": "stopping"}]


@pytest.mark.netns
def test_server_process_notifies_and_stops_on_sigterm(tmp_path):
    """``fastpptp server -f`` as the unit starts it, with $NOTIFY_SOCKET and $WATCHDOG_USEC:
    READY once port 1723's stand-in accepts, pings, SIGHUP = reload, SIGTERM = STOPPING, exit 0."""
    manager = Manager(str(tmp_path / "notify.sock"))    # a path: reachable from any namespace
    env = {**os.environ, "NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "400000",
           "PYTHONPATH": str(paths.REPO)}
    env.pop("WATCHDOG_PID", None)
    argv = [sys.executable, "-m", "fastpptp", "server", "-f", "--conf", "/dev/null",
            "--listen", "127.0.0.1", "--port", "1723", "--localip", "198.51.100.1",
            "--remoteip", "198.51.100.2-3", "--secrets", str(tmp_path / "chap-secrets"),
            "--control-socket", str(tmp_path / "ctl.sock"), "--interface", "fpsd0",
            "--ip-up", "", "--ip-down", ""]
    try:
        with namespace("fpsd") as ns:
            with open(tmp_path / "server.log", "wb") as log:
                proc = netns.popen(ns, argv, env=env, cwd=str(paths.REPO), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log)
            try:
                ready = manager.until("READY", 30)[-1]
                with netns.entered(ns), socket.create_connection(("127.0.0.1", 1723), timeout=2):
                    pass
                pings = [manager.recv(1.0) for _ in range(3)]
                proc.send_signal(signal.SIGHUP)
                reload = manager.until("READY", 5)
                proc.send_signal(signal.SIGTERM)
                stopping = manager.until("STOPPING", 10)
                rc = proc.wait(15)
            finally:
                stop_process(proc, signal.SIGTERM, 5)
    finally:
        manager.close()
        print((tmp_path / "server.log").read_text(errors="replace")[-3000:])
    assert ready == {"READY": "1", "STATUS": "0 sessions, listening on 127.0.0.1:1723"}
    assert pings == [{"WATCHDOG": "1"}] * 3
    assert [m for m in reload if "WATCHDOG" not in m][0]["RELOADING"] == "1"
    assert reload[-1] == {"READY": "1"}
    assert stopping[-1] == {"STOPPING": "1", "STATUS": "stopping: SIGTERM"}
    assert rc == 0
