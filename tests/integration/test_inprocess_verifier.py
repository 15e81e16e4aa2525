"""Our client and our server in one process, the server checking logins through an async
verifier (``Server(verifier=...)``, the embedding API RADIUS plugs into; issue 11).

The test verifier checks with the local secret code (LocalVerifier) but answers after a
delay, as a remote AAA server would; the event loop keeps running meanwhile.  Set-up as in
test_inprocess.py: a fresh network namespace, the server on 127.0.0.1, clients on 127.0.0.2
and 127.0.0.3, FakeTun socketpairs as TUNs.
"""
from __future__ import annotations

import asyncio
from ipaddress import IPv4Address

import pytest

from fastpptp.client import Client, ClientConfig
from fastpptp.config import parse_ppp_options
from fastpptp.ppp.auth.base import ReplyAttributes, VerifyRequest, VerifyResult
from fastpptp.ppp.auth.local import LocalVerifier
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.server import Server, ServerConfig
from fastpptp.shaping import RateLimit, RateSource
from support.inproc import FakeTun, recv_packet, udp_packet
from support.inproc import free_port
from support.inproc import wait_up

pytestmark = pytest.mark.netns

USERS = {"alice": "correct horse", "bob": "battery staple", "slow": "never mind"}
DELAY = 0.2


class DelayedVerifier:
    """The local secrets, answered after ``delay``; user "slow" never gets an answer."""

    def __init__(self, delay: float = DELAY, attributes: ReplyAttributes | None = None):
        self.local = LocalVerifier(StaticBackend(USERS))
        self.delay = delay
        self.attributes = attributes
        self.requests: list[VerifyRequest] = []

    async def __call__(self, request: VerifyRequest) -> VerifyResult:
        self.requests.append(request)
        if request.user == "slow":
            await asyncio.Event().wait()          # a AAA server that never answers
        await asyncio.sleep(self.delay)
        result = self.local.verify(request)
        if result.accepted and self.attributes is not None:
            return VerifyResult(**{**vars(result), "attributes": self.attributes})
        return result




async def start_server(tmp_path, server_opts, verifier, events, tuns, verify_timeout=None):
    def make(name):
        tuns["server"] = FakeTun(name)
        return tuns["server"]

    port = free_port()
    server = Server(ServerConfig(listen="127.0.0.1", port=port, local_ips=("198.51.100.1",),
                                 remote_ips=("198.51.100.2", "198.51.100.3"),
                                 ppp=parse_ppp_options(server_opts + " name testsrv lcp-echo-interval 0"),
                                 control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None),
                    auth_backend=StaticBackend({}),          # secrets unused: the verifier decides
                    verifier=verifier, verify_timeout=verify_timeout,
                    on_event=lambda kind, info: events.append((kind, info)),
                    tun_factory=make, configure_network=False)
    await server.start()
    return server, port


def make_client(port, user, password, client_opts, tuns, source="127.0.0.2"):
    def make(name):
        tuns[user] = FakeTun(name)
        return tuns[user]

    return Client(ClientConfig(server="127.0.0.1", port=port, user=user, password=password,
                               ppp=parse_ppp_options(client_opts + " remotename testsrv"),
                               local_address=source, ip_up=None, ip_down=None),
                  tun_factory=make, configure_network=False)


async def stop_client(client, task) -> int:
    if not task.done():
        client.stop()
    return await asyncio.wait_for(task, 15)


@pytest.mark.parametrize("server_opts,client_opts,auth,mppe", [
    ("require-pap", "", "PAP", None),
    ("require-chap", "", "CHAP-MD5", None),
    ("require-mschap require-mppe-128", "require-mppe-128", "MS-CHAP", "128 stateless"),
    ("require-mschap-v2 require-mppe-128", "require-mppe-128", "MS-CHAPv2", "128 stateless"),
], ids=["pap", "chap-md5", "mschapv1-mppe128", "mschapv2-mppe128"])
def test_login_through_a_slow_async_verifier(loopback_ns, tmp_path, server_opts, client_opts,
                                            auth, mppe):
    async def main():
        events, tuns = [], {}
        verifier = DelayedVerifier()
        server, port = await start_server(tmp_path, server_opts, verifier, events, tuns)
        client = make_client(port, "alice", USERS["alice"], client_opts, tuns)
        task = asyncio.ensure_future(client.run())
        try:
            r = {"up": await wait_up(client, task)}
            if r["up"]:
                s = client.session.info
                r["client_info"] = (s.auth, s.mppe, s.local_ip)
                r["server_sessions"] = server.snapshot()["sessions"]
                up = udp_packet("198.51.100.2", "198.51.100.1", b"ping through verified MPPE")
                tuns["alice"].peer.send(up)
                r["c2s"] = await recv_packet(tuns["server"]) == up
                down = udp_packet("198.51.100.1", "198.51.100.2", b"pong" * 300)
                tuns["server"].peer.send(down)
                r["s2c"] = await recv_packet(tuns["alice"]) == down
            r["rc"] = await stop_client(client, task)
            r["requests"] = list(verifier.requests)
            return r
        finally:
            if not task.done():
                await stop_client(client, task)
            await server.stop("test over")

    r = asyncio.run(main())
    assert r["up"], "tunnel did not come up"
    assert r["client_info"] == (auth, mppe, "198.51.100.2")
    (s,) = r["server_sessions"]
    assert (s["user"], s["auth"], s["mppe"]) == ("alice", auth, mppe)
    assert r["c2s"] and r["s2c"], "IP packets did not cross both engines (MPPE keys from the verifier)"
    assert r["rc"] == 0
    (req,) = r["requests"]                       # verified once, whatever the peer repeated
    assert (req.user, req.method.label) == ("alice", auth)


def test_wrong_password_through_the_verifier_is_refused_with_e691(loopback_ns, tmp_path):
    async def main():
        events, tuns = [], {}
        server, port = await start_server(tmp_path, "require-mschap-v2 require-mppe-128",
                                          DelayedVerifier(), events, tuns)
        client = make_client(port, "alice", "wrong", "require-mppe-128", tuns)
        task = asyncio.ensure_future(client.run())
        try:
            up = await wait_up(client, task)
            rc = await stop_client(client, task)
            return up, rc, client.exit_reason, events, server.snapshot()["sessions"]
        finally:
            await server.stop("test over")

    up, rc, reason, events, sessions = asyncio.run(main())
    assert not up and rc == 19
    assert "e=691" in (reason or "").lower()
    assert [k for k, _ in events][:1] == ["auth-failed"]
    assert sessions == []


def test_verifier_that_never_answers_fails_cleanly_while_another_login_succeeds(loopback_ns,
                                                                                 tmp_path):
    async def main():
        events, tuns = [], {}
        server, port = await start_server(tmp_path, "require-mschap-v2 require-mppe-128",
                                          DelayedVerifier(), events, tuns, verify_timeout=2.0)
        loop = asyncio.get_running_loop()
        slow = make_client(port, "slow", USERS["slow"], "require-mppe-128", tuns)
        slow_task = asyncio.ensure_future(slow.run())
        await asyncio.sleep(0.3)                 # the slow login is pending now
        bob = make_client(port, "bob", USERS["bob"], "require-mppe-128", tuns, source="127.0.0.3")
        bob_task = asyncio.ensure_future(bob.run())
        try:
            bob_up = await wait_up(bob, bob_task)
            bob_up_at = loop.time()
            slow_done_before_bob = slow_task.done()
            slow_rc = await asyncio.wait_for(slow_task, 20)
            slow_done_at = loop.time()
            sessions = server.snapshot()["sessions"]
            bob_rc = await stop_client(bob, bob_task)
            return (bob_up, slow_done_before_bob, bob_up_at < slow_done_at, slow_rc, slow.exit_reason,
                    [s["user"] for s in sessions], bob_rc, events)
        finally:
            for c, t in ((slow, slow_task), (bob, bob_task)):
                if not t.done():
                    await stop_client(c, t)
            await server.stop("test over")

    bob_up, slow_first, bob_before_slow, slow_rc, slow_reason, users, bob_rc, events = \
        asyncio.run(main())
    assert bob_up and not slow_first and bob_before_slow   # bob got in while slow was pending
    assert slow_rc == 19 and "e=691" in (slow_reason or "").lower()
    assert users == ["bob"] and bob_rc == 0
    failed = [i for k, i in events if k == "auth-failed"]
    assert [i["user"] for i in failed] == ["slow"]


def test_reply_attributes_address_rate_limit_and_session_timeout(loopback_ns, tmp_path):
    attrs = ReplyAttributes(framed_ip=IPv4Address("203.0.113.9"), session_timeout=1,
                            rate_limit=RateLimit(2000, 1000), dns=(IPv4Address("192.0.2.53"),))

    async def main():
        events, tuns = [], {}
        server, port = await start_server(tmp_path, "require-mschap-v2 require-mppe-128",
                                          DelayedVerifier(attributes=attrs), events, tuns)
        client = make_client(port, "alice", USERS["alice"], "require-mppe-128 usepeerdns", tuns)
        task = asyncio.ensure_future(client.run())
        try:
            up = await wait_up(client, task)
            info = client.session.info
            (session,) = server.sessions.values()
            kept = (session.attributes, session.rate_limit)
            shaped = (session.info.rate, session.info.rate_source)
            await asyncio.wait_for(session.closed_event.wait(), 5)   # Session-Timeout: 1 s
            rc = await asyncio.wait_for(task, 15)
            return up, info.local_ip, info.dns, kept, shaped, session.info.reason, rc, events
        finally:
            if not task.done():
                await stop_client(client, task)
            await server.stop("test over")

    up, ip, dns, kept, shaped, reason, rc, events = asyncio.run(main())
    assert up and ip == "203.0.113.9" and dns == ("192.0.2.53",)
    assert kept == (attrs, RateLimit(2000, 1000))
    assert shaped == (RateLimit(2000, 1000), RateSource.RADIUS)   # the verifier's limit is the session's
    assert "session timeout" in reason
    downs = [i for k, i in events if k == "down"]
    assert len(downs) == 1 and "session timeout" in downs[0]["reason"]
    assert downs[0]["cause"] == "session_timeout"               # the typed cause beside the text
    assert rc != 19                               # the client was logged in, then hung up on


def test_idle_timeout_from_the_verifier_ends_an_idle_session(loopback_ns, tmp_path):
    async def main():
        events, tuns = [], {}
        server, port = await start_server(tmp_path, "require-pap", DelayedVerifier(
            attributes=ReplyAttributes(idle_timeout=1)), events, tuns)
        client = make_client(port, "alice", USERS["alice"], "", tuns)
        task = asyncio.ensure_future(client.run())
        loop = asyncio.get_running_loop()
        try:
            up = await wait_up(client, task)
            (session,) = server.sessions.values()
            # traffic keeps it alive past its idle timeout ...
            for _ in range(8):
                tuns["alice"].peer.send(udp_packet("198.51.100.2", "198.51.100.1", b"busy"))
                quiet_from = loop.time()           # the last data packet
                await asyncio.sleep(0.2)
            alive = not session.closed
            # ... silence ends it
            await asyncio.wait_for(session.closed_event.wait(), 5)
            return up, alive, loop.time() - quiet_from, session.info.reason
        finally:
            await stop_client(client, task)
            await server.stop("test over")

    up, alive, quiet_for, reason = asyncio.run(main())
    assert up and alive
    # idle for the timeout (1 s) after the last packet, noticed within a check period (0.25 s)
    assert 0.95 <= quiet_for < 3.0 and "idle timeout" in reason
