"""Our client and server in one process (see test_inprocess.py for the rig): how calls that
end half-way give back what they took, the first packet after IPCP, and the resource error
of an exhausted pool (issue 10)."""
from __future__ import annotations

import asyncio
import socket

import pytest

from fastpptp.aio.session import CallSession
from fastpptp.client import AttemptOutcome, Client, ClientConfig
from fastpptp.config import parse_ppp_options
from fastpptp.ppp.auth.secrets import CallableBackend
from fastpptp.ppp.constants import Protocol
from fastpptp.pptp import messages as m
from fastpptp.pptp.control import CallCleared
from fastpptp.server import Server, ServerConfig
from support.inproc import FakeTun, recv_packet, udp_packet
from support.inproc import free_port

pytestmark = pytest.mark.netns

USERS = {"alice": "correct horse"}
POOL = tuple(f"198.51.100.{i}" for i in range(10, 15))
OPTS = "require-mschap-v2 require-mppe-128"




async def until(cond, timeout=10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def make_server(tmp_path, port, remote_ips=POOL, **kw) -> Server:
    return Server(ServerConfig(listen="127.0.0.1", port=port, local_ips=("198.51.100.1",),
                               remote_ips=remote_ips, rate_limit=100,
                               ppp=parse_ppp_options(OPTS + " name testsrv lcp-echo-interval 0"),
                               control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None),
                  auth_backend=CallableBackend(lambda user, srv: USERS.get(user)),
                  tun_factory=FakeTun, configure_network=False, **kw)


def make_client(port, tuns: list[FakeTun]) -> Client:
    def tun(name):
        tuns.append(FakeTun(name))
        return tuns[-1]
    return Client(ClientConfig(server="127.0.0.1", port=port, user="alice", password=USERS["alice"],
                               ppp=parse_ppp_options("require-mppe-128 remotename testsrv"),
                               local_address="127.0.0.2", ip_up=None, ip_down=None),
                  tun_factory=tun, configure_network=False)


@pytest.fixture
def deaf_client_ipcp(monkeypatch):
    """Our client ignores IPCP: the server's IPCP starts (an address is taken) and never
    comes up."""
    on_frame = CallSession.on_frame

    def patched(self, protocol, payload):
        if self.link.role == "client" and protocol == Protocol.IPCP:
            return
        on_frame(self, protocol, payload)
    monkeypatch.setattr(CallSession, "on_frame", patched)


@pytest.mark.parametrize("how", ["tcp-reset", "call-clear-request", "client-cancelled"])
def test_calls_dropped_after_ipcp_started_leak_no_pool_address(loopback_ns, tmp_path,
                                                                 deaf_client_ipcp, how):
    async def main():
        port = free_port()
        server = make_server(tmp_path, port)
        await server.start()
        try:
            for _ in range(3):
                client = make_client(port, [])
                task = asyncio.ensure_future(client.run())
                assert await until(lambda: any(s.link.ipcp is not None
                                               for s in server.sessions.values()))
                assert len(server.pool) == 4
                (stream,) = server._streams
                (session,) = server.sessions.values()
                if how == "tcp-reset":
                    assert stream.transport is not None
                    stream.transport.abort()
                elif how == "call-clear-request":
                    stream.data_received(m.CCRQ(call_id=session.info.peer_call_id).encode())
                else:
                    task.cancel()
                assert await until(lambda: not server.sessions)
                client.stop()
                await asyncio.gather(task, return_exceptions=True)
                assert await until(lambda: not server._streams)
            return len(server.pool), server.pool.in_use, dict(server.stats.teardowns)
        finally:
            await server.stop("test over")

    free, in_use, teardowns = asyncio.run(main())
    assert (free, in_use) == (5, frozenset())
    # typed where the call ended: the control connection's end clears its calls with General
    # Error (the carrier went), the peer's Call-Clear-Request is the peer's
    want = {"tcp-reset": "control_connection_lost", "call-clear-request": "peer_call_clear"}.get(how)
    if want is not None:
        assert teardowns == {want: 3}, teardowns


def test_first_packet_after_ipcp_up_is_delivered(loopback_ns, tmp_path):
    # issue 10: drop_not_ready for the first packet in ~97 % of sessions
    async def main():
        port = free_port()
        server_tuns: list[FakeTun] = []

        def server_tun(name):
            server_tuns.append(FakeTun(name))
            return server_tuns[-1]
        server = make_server(tmp_path, port)
        server._tun_factory = server_tun
        await server.start()
        results = []
        try:
            for _ in range(3):
                tuns: list[FakeTun] = []
                client = make_client(port, tuns)
                task = asyncio.ensure_future(client.run())
                await asyncio.wait_for(client.up.wait(), 20)
                s = client.session.info
                first = udp_packet(s.local_ip, s.remote_ip, b"first packet")
                tuns[0].peer.send(first)           # the moment the client sees IPCP Opened
                got = await recv_packet(server_tuns[0])
                (doc,) = server.snapshot()["sessions"]
                results.append((got == first, doc["drops"].get("not_ready", 0)))
                client.stop()
                await asyncio.wait_for(task, 15)
                assert await until(lambda: not server.sessions)
        finally:
            await server.stop("test over")
        return results

    assert asyncio.run(main()) == [(True, 0)] * 3


def test_status_snapshot_has_engine_totals(loopback_ns, tmp_path):
    async def main():
        server = make_server(tmp_path, free_port())
        await server.start()
        try:
            return server.snapshot()
        finally:
            await server.stop("test over")

    snap = asyncio.run(main())
    assert snap["sessions"] == [] and isinstance(snap["totals"], dict)
    assert all(isinstance(v, int) for v in snap["totals"].values())


def _recorded_clears(monkeypatch) -> list[CallCleared]:
    seen: list[CallCleared] = []
    on_control_event = AttemptOutcome.on_control_event

    def record(self, ev):
        if isinstance(ev, CallCleared):
            seen.append(ev)
        on_control_event(self, ev)
    monkeypatch.setattr(AttemptOutcome, "on_control_event", record)
    return seen


@pytest.mark.parametrize("source", ["pool-exhausted", "assign-address-none"])
def test_no_address_for_the_peer_is_a_resource_error(loopback_ns, tmp_path, monkeypatch, source):
    # The peer authenticated but there is no address for it (the pool is empty, or an
    # assign_address override has none): Call-Disconnect-Notify General Error / No-Resource
    # (RFC 2637 §2.13, §2.16), not Admin Shutdown.  (Not refused at the Outgoing-Call-Request:
    # a user with a static address in chap-secrets still gets in with the pool empty.)
    seen = _recorded_clears(monkeypatch)

    async def main():
        port = free_port()
        if source == "pool-exhausted":
            server = make_server(tmp_path, port, remote_ips=POOL[:1])
        else:
            server = make_server(tmp_path, port, assign_address=lambda user: None)
        await server.start()
        try:
            first = None
            if source == "pool-exhausted":
                first = make_client(port, [])
                t1 = asyncio.ensure_future(first.run())
                await asyncio.wait_for(first.up.wait(), 20)
            rc = await asyncio.wait_for(make_client(port, []).run(), 20)
            if first is not None:
                first.stop()
                await asyncio.wait_for(t1, 15)
            return rc
        finally:
            await server.stop("test over")

    rc = asyncio.run(main())
    assert rc != 0
    cleared = [c for c in seen if c.by_peer]
    assert cleared and cleared[0].established
    assert (cleared[0].result, cleared[0].error) == (m.CallDisconnectResult.GENERAL_ERROR,
                                                     m.GeneralErrorCode.NO_RESOURCE)


def test_listen_backlog_is_raised(loopback_ns, tmp_path):
    # a connect storm of 500 clients overflowed the backlog of 100 (connects took up to 14 s)
    import subprocess

    async def main():
        port = free_port()
        server = make_server(tmp_path, port)
        await server.start()
        try:
            out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                                 text=True, check=True).stdout.split()
            return int(out[2])                 # a listener's Send-Q is its backlog
        finally:
            await server.stop("test over")

    assert asyncio.run(main()) >= min(socket.SOMAXCONN, 1024)


def test_calls_per_source_are_capped(loopback_ns, tmp_path):
    async def main():
        port = free_port()
        server = Server(ServerConfig(listen="127.0.0.1", port=port, local_ips=("198.51.100.1",),
                                     remote_ips=POOL, rate_limit=100, calls_per_source=1,
                                     ppp=parse_ppp_options(OPTS + " name testsrv lcp-echo-interval 0"),
                                     control_socket=str(tmp_path / "ctl.sock"), ip_up=None,
                                     ip_down=None),
                        auth_backend=CallableBackend(lambda user, srv: USERS.get(user)),
                        tun_factory=FakeTun, configure_network=False)
        await server.start()
        try:
            first = make_client(port, [])
            t1 = asyncio.ensure_future(first.run())
            await asyncio.wait_for(first.up.wait(), 20)
            second = make_client(port, [])
            rc = await asyncio.wait_for(second.run(), 20)
            reason = second.exit_reason
            first.stop()
            await asyncio.wait_for(t1, 15)
            return rc, reason
        finally:
            await server.stop("test over")

    rc, reason = asyncio.run(main())
    assert rc == 8 and "refused" in (reason or "")       # pppd EXIT_CONNECT_FAILED
