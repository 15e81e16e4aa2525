"""Dynamic Authorization (RFC 5176) on a live in-process server, driven by FreeRADIUS's own
``radclient`` (freeradius-utils): Disconnect-Request ends a session cleanly, CoA-Request
changes its Session-Timeout and its rate limit live, a wrong secret is ignored.

Our server and real clients run in one process in a fresh namespace (loopback only), as in
test_session_control.py: loopback TCP and raw GRE, FakeTun "TUNs", the engine class wrapped
(support/recording_engine.py) so the test sees every ``set_rate_limit``.  The DAE listener
is on 127.0.0.1:3799 (the RFC 5176 port: the namespace is ours), configured standalone
(no RADIUS authentication: the users are local)."""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import socket

import pytest

from fastpptp.config import parse_ppp_options
from fastpptp.ppp.auth.secrets import CallableBackend
from fastpptp.radius.settings import DAE_PORT, DaeSettings, RadiusSettings
from fastpptp.server import Server, ServerConfig
from fastpptp.status import SessionMatch
from fastpptp.teardown import Teardown
from support.inproc import FakeTun, recv_packet, udp_packet
from support.peers import PASSWORDS, SERVER_PPP, Peer, free_port

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(shutil.which("radclient") is None, reason="radclient (freeradius-utils) missing")]

SECRET = "dae-Sh4red"


async def start_server(tmp_path, **dae_options) -> Server:
    dae = DaeSettings(listen=("127.0.0.1", DAE_PORT), secret=SECRET.encode(),
                      allowed=(ipaddress.ip_network("127.0.0.1/32"),), **dae_options)
    server = Server(ServerConfig(listen="127.0.0.1", port=free_port(), local_ips=("198.51.100.1",),
                                 remote_ips=("198.51.100.2", "198.51.100.3"), ppp=parse_ppp_options(SERVER_PPP),
                                 control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None,
                                 radius=RadiusSettings(auth_servers=(), nas_identifier="fastpptp-test", dae=dae)),
                    auth_backend=CallableBackend(lambda user, server: PASSWORDS.get(user)),
                    tun_factory=FakeTun, configure_network=False)
    await server.start()
    return server


@contextlib.asynccontextmanager
async def alice_up(tmp_path, **dae_options):
    """A server with the DAE listener and alice's tunnel up; both ended afterwards."""
    server = await start_server(tmp_path, **dae_options)
    try:
        alice = await Peer("alice").connect(server)
        try:
            yield server, alice
        finally:
            await alice.close()
    finally:
        await server.stop("test over")


async def radclient(command: str, attributes: str, secret: str = SECRET, retries: int = 3) -> tuple[int, str]:
    """``echo ATTRIBUTES | radclient -x 127.0.0.1:3799 COMMAND SECRET``: (exit status, output)."""
    proc = await asyncio.create_subprocess_exec(
        "radclient", "-x", "-r", str(retries), "-t", "1", f"127.0.0.1:{DAE_PORT}", command, secret,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(attributes.encode()), 30)
    return proc.returncode or 0, out.decode(errors="replace")


def test_disconnect_ends_the_session_cleanly(loopback_ns, tmp_path, engines):
    async def main():
        server = await start_server(tmp_path)
        alice, bob = Peer("alice"), Peer("bob")
        try:
            await alice.connect(server)
            await bob.connect(server)
            rc, out = await radclient("disconnect", f'Acct-Session-Id = "{alice.sid}"\n'
                                                    'NAS-Identifier = "fastpptp-test"\n')
            client_rc = await alice.ended()
            pkt = udp_packet(bob.session.info.remote_ip, "198.51.100.1", b"bob still here")
            bob.tuns[0].peer.send(pkt)
            bob_ok = await recv_packet(server._tun) == pkt
            # nothing left to match: NAK with Error-Cause Session-Context-Not-Found
            rc_nak, out_nak = await radclient("disconnect", f'Acct-Session-Id = "{alice.sid}"\n')
            assert server.dae is not None
            return {"rc": rc, "out": out, "client_rc": client_rc, "reason": alice.client.exit_reason,
                    "server_cause": alice.session.info.cause,
                    "live": [s.info.user for s in server.find_sessions(SessionMatch(all=True))],
                    "bob_ok": bob_ok, "rc_nak": rc_nak, "out_nak": out_nak,
                    "counters": dict(server.dae.core.counters)}
        finally:
            await alice.close()
            await bob.close()
            await server.stop("test over")

    r = asyncio.run(main())
    assert r["rc"] == 0 and "Disconnect-ACK" in r["out"], r["out"]
    # the client saw the server end the tunnel (EXIT_HANGUP, not 19 = auth refused): our LCP
    # Terminate-Request with the reason, then Call-Disconnect-Notify
    assert r["client_rc"] == 16, r["reason"]
    assert "peer terminated: administratively terminated" in r["reason"] and "Call-Disconnect-Notify" in r["reason"]
    assert r["server_cause"] is Teardown.DISCONNECT_REQUEST      # accounted Admin-Reset
    assert r["live"] == ["bob"] and r["bob_ok"]
    assert "Disconnect-NAK" in r["out_nak"] and "Session-Context-Not-Found" in r["out_nak"], r["out_nak"]
    assert r["counters"]["tx_disconnect_ack"] == 1 and r["counters"]["tx_disconnect_nak"] == 1
    assert r["counters"]["sessions_disconnected"] == 1


def test_coa_session_timeout_takes_effect(loopback_ns, tmp_path, engines):
    async def main():
        async with alice_up(tmp_path) as (server, alice):
            loop = asyncio.get_running_loop()
            rc, out = await radclient("coa", 'User-Name = "alice"\nSession-Timeout = 2\n')
            sent = loop.time()
            client_rc = await alice.ended(10)
            return {"rc": rc, "out": out, "after": loop.time() - sent, "client_rc": client_rc,
                    "reason": alice.client.exit_reason, "server_reason": alice.session.info.reason,
                    "server_cause": alice.session.info.cause}

    r = asyncio.run(main())
    assert r["rc"] == 0 and "CoA-ACK" in r["out"], r["out"]
    assert 1.5 <= r["after"] <= 4.0, r
    assert r["server_reason"] == "session timeout" and r["server_cause"] is Teardown.SESSION_TIMEOUT
    assert r["client_rc"] == 16 and "session timeout" in r["reason"], r["reason"]


def test_coa_idle_timeout_takes_effect_and_zero_lifts_a_limit(loopback_ns, tmp_path, engines):
    async def main():
        async with alice_up(tmp_path) as (server, alice):
            loop = asyncio.get_running_loop()
            # a Session-Timeout set, then lifted (0): it must not fire
            rc_set, _ = await radclient("coa", 'User-Name = "alice"\nSession-Timeout = 1\n')
            rc_lift, _ = await radclient("coa", 'User-Name = "alice"\nSession-Timeout = 0\n')
            await asyncio.sleep(1.5)
            alive = not alice.task.done()
            rc, out = await radclient("coa", 'User-Name = "alice"\nIdle-Timeout = 1\n')
            sent = loop.time()
            client_rc = await alice.ended(10)
            return {"rcs": (rc_set, rc_lift, rc), "out": out, "alive": alive, "after": loop.time() - sent,
                    "client_rc": client_rc, "server_reason": alice.session.info.reason,
                    "server_cause": alice.session.info.cause}

    r = asyncio.run(main())
    assert r["rcs"] == (0, 0, 0) and "CoA-ACK" in r["out"], r["out"]
    assert r["alive"]
    assert 0.9 <= r["after"] <= 3.0, r
    assert r["server_reason"] == "idle timeout" and r["client_rc"] == 16
    assert r["server_cause"] is Teardown.IDLE_TIMEOUT


def test_coa_rate_limit_reaches_the_engine(loopback_ns, tmp_path, engines):
    async def main():
        async with alice_up(tmp_path) as (server, alice):
            before = engines.of(alice.session.call_id)
            rc, out = await radclient("coa", f'Acct-Session-Id = "{alice.sid}"\n'
                                             'Mikrotik-Rate-Limit = "512k/2M"\n')
            after = engines.of(alice.session.call_id)
            doc = {s["user"]: (s["rate"], s["rate_source"]) for s in server.snapshot()["sessions"]}
            # a garbled rate: NAK Invalid-Attribute-Value, the limit stays
            rc_bad, out_bad = await radclient("coa", f'Acct-Session-Id = "{alice.sid}"\n'
                                                     'Mikrotik-Rate-Limit = "fast"\n')
            return {"rc": rc, "out": out, "before": before, "after": after, "doc": doc, "out_bad": out_bad,
                    "final": engines.of(alice.session.call_id), "alive": not alice.task.done()}

    r = asyncio.run(main())
    assert r["rc"] == 0 and "CoA-ACK" in r["out"], r["out"]
    assert r["before"] == []                                    # no limit until the CoA
    assert r["after"] == [(2000, 512)]                          # tx (down) 2M, rx (up) 512k
    assert r["doc"]["alice"] == ({"down_kbit": 2000, "up_kbit": 512}, "radius")
    assert "CoA-NAK" in r["out_bad"] and "Invalid-Attribute-Value" in r["out_bad"], r["out_bad"]
    assert r["final"] == [(2000, 512)] and r["alive"]


def test_wrong_secret_is_ignored(loopback_ns, tmp_path, engines):
    async def main():
        async with alice_up(tmp_path) as (server, alice):
            rc, out = await radclient("disconnect", 'User-Name = "alice"\n', secret="not-the-secret", retries=1)
            await asyncio.sleep(0.3)
            assert server.dae is not None
            result = {"rc": rc, "out": out, "alive": not alice.task.done() and not alice.session.closed,
                      "counters": dict(server.dae.core.counters)}
        # the listener went with the server: its port is free again
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", DAE_PORT))
        result["closed"] = server.dae is None
        return result

    r = asyncio.run(main())
    assert r["closed"]
    assert r["rc"] != 0 and "No reply" in r["out"], r["out"]
    assert r["alive"]
    assert r["counters"]["rx_bad_authenticator"] >= 1
    assert r["counters"]["tx_disconnect_ack"] == r["counters"]["tx_disconnect_nak"] == 0


def test_required_message_authenticator(loopback_ns, tmp_path, engines):
    """--dae-require-message-authenticator: radclient's request without one goes unanswered;
    with one (``Message-Authenticator = 0x00``: radclient computes it) it is acted on."""
    async def main():
        async with alice_up(tmp_path, require_message_authenticator=True) as (server, alice):
            rc_without, out_without = await radclient("coa", 'User-Name = "alice"\nIdle-Timeout = 600\n', retries=1)
            rc_with, out_with = await radclient("coa", 'User-Name = "alice"\nIdle-Timeout = 600\n'
                                                       "Message-Authenticator = 0x00\n")
            assert server.dae is not None
            return {"without": (rc_without, out_without), "with": (rc_with, out_with),
                    "counters": dict(server.dae.core.counters), "alive": not alice.task.done()}

    r = asyncio.run(main())
    assert r["without"][0] != 0 and "No reply" in r["without"][1], r["without"][1]
    assert r["with"][0] == 0 and "CoA-ACK" in r["with"][1], r["with"][1]
    assert r["counters"]["rx_no_message_authenticator"] >= 1 and r["counters"]["sessions_changed"] == 1
    assert r["alive"]
