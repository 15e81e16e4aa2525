"""Session control on a live in-process server: ``terminate`` by each selector (hard and
soft), rate limits from the auth backend, the default, the control socket and a SIGHUP
re-read of chap-secrets, and the control socket's permissions.

Our server and real clients run in one process, over loopback TCP and raw GRE in a fresh
namespace, with FakeTun "TUNs" (see test_inprocess.py for the arrangement).  The engine class
is wrapped (support/recording_engine.py) so the test sees every ``set_rate_limit`` the server
makes."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import stat
import tempfile

import pytest

from fastpptp import cli
from fastpptp.config import parse_ppp_options
from fastpptp.ppp.auth.secrets import CallableBackend, UserSecret
from fastpptp.server import HARD_TERMINATE_GRACE, SOFT_TERMINATE_LIMIT, Server, ServerConfig
from fastpptp.shaping import RateLimit
from fastpptp.status import SessionMatch, control_request
from fastpptp.teardown import Teardown
from support.inproc import FakeTun, recv_packet, udp_packet
from support.peers import PASSWORDS, SERVER_PPP, SOURCES, Peer, free_port

pytestmark = pytest.mark.netns



async def start_server(ctl_path: str, **config) -> Server:
    auth_backend = config.pop("auth_backend", None)
    server = Server(ServerConfig(listen="127.0.0.1", port=free_port(), local_ips=("198.51.100.1",),
                                 remote_ips=("198.51.100.2", "198.51.100.3"), ppp=parse_ppp_options(SERVER_PPP),
                                 control_socket=ctl_path, ip_up=None, ip_down=None, **config),
                    auth_backend=auth_backend, tun_factory=FakeTun, configure_network=False)
    await server.start()
    return server


async def wait_for(cond, timeout: float = 5.0, step: float = 0.02) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def cli_main(*argv: str) -> int:
    """The ``fastpptp`` command, run in a thread (it blocks on the control socket)."""
    return await asyncio.to_thread(cli.main, list(argv))


def _alice_bob_backend() -> CallableBackend:
    return CallableBackend(lambda user, server: PASSWORDS.get(user))


# ----------------------------------------------------------------------------- terminate

@pytest.mark.parametrize("selector", ["user", "ip", "session", "peer", "all"])
def test_terminate_by_each_selector(loopback_ns, tmp_path, engines, capsys, caplog, selector):
    caplog.set_level(logging.INFO, logger="fastpptp")
    ctl = str(tmp_path / "ctl.sock")

    async def main():
        server = await start_server(ctl, auth_backend=_alice_bob_backend())
        alice, bob = Peer("alice"), Peer("bob")
        try:
            await alice.connect(server)
            await bob.connect(server)
            value = {"user": "alice", "ip": alice.ip, "session": alice.session.info.session_id,
                     "peer": SOURCES["alice"], "all": None}[selector]
            doc = await asyncio.to_thread(control_request, {"cmd": "sessions"}, ctl)
            ids = {s["user"]: s["session_id"] for s in doc["sessions"]}
            args = ["terminate", f"--{selector}"] + ([value] if value is not None else [])
            rc = await cli_main(*args, "--control-socket", ctl)
            ended = [alice] if selector != "all" else [alice, bob]
            rcs = [await p.ended() for p in ended]
            gone = await wait_for(lambda: not server.find_sessions(SessionMatch(all=True)) if selector == "all"
                                  else [s.info.user for s in server.sessions.values()] == ["bob"])
            result = {
                "rc": rc, "ids": ids, "client_rcs": rcs, "gone": gone,
                "reasons": [p.client.exit_reason for p in ended],
                "causes": [p.session.info.cause for p in ended],        # the server's sessions
                "pool_in_use": set(server.pool.in_use), "alice_ip": alice.ip, "bob_ip": bob.ip,
                "bob_up": bob.client.up.is_set() and not bob.task.done(),
            }
            if selector != "all":        # the other session still carries traffic
                pkt = udp_packet(bob.ip, "198.51.100.1", b"still here")
                bob.tuns[0].peer.send(pkt)
                result["bob_traffic"] = await recv_packet(server._tun) == pkt
            return result
        finally:
            await alice.close()
            await bob.close()
            await server.stop("test over")

    r = asyncio.run(main())
    out = capsys.readouterr().out
    assert r["rc"] == 0
    assert out.strip() == f"{2 if selector == 'all' else 1} session(s) terminated"
    assert len(r["ids"]["alice"]) == 16 and r["ids"]["alice"] != r["ids"]["bob"]
    assert r["gone"]
    # the client saw the server end the tunnel (pppd's EXIT_HANGUP): our LCP Terminate-Request
    # with the reason, then Call-Disconnect-Notify
    assert r["client_rcs"] == [16] * len(r["client_rcs"])
    assert all("peer terminated: administratively terminated" in (why or "") and "Call-Disconnect-Notify" in why
               for why in r["reasons"]), r["reasons"]
    assert r["causes"] == [Teardown.ADMIN] * len(r["causes"])        # accounted Admin-Reset
    # the address went back to the pool; the other session is untouched
    assert r["alice_ip"] not in r["pool_in_use"]
    if selector == "all":
        assert r["pool_in_use"] == set()
    else:
        assert r["pool_in_use"] == {r["bob_ip"]} and r["bob_up"] and r["bob_traffic"]
    # the counters of the ended session were logged
    down = [m for m in caplog.messages if "down (administratively terminated)" in m]
    assert down and all(" rx " in m and " tx " in m for m in down), caplog.messages


def test_terminate_nothing_matched_is_an_error(loopback_ns, tmp_path, engines, capsys):
    ctl = str(tmp_path / "ctl.sock")

    async def main():
        server = await start_server(ctl, auth_backend=_alice_bob_backend())
        alice = Peer("alice")
        try:
            await alice.connect(server)
            rcs = [await cli_main("terminate", "--user", "mallory", "--control-socket", ctl),
                   await cli_main("terminate", "--ip", "198.51.100.9", "--control-socket", ctl),
                   await cli_main("terminate", "--session", "0" * 16, "--control-socket", ctl)]
            return rcs, len(server.find_sessions(SessionMatch(all=True))), alice.task.done()
        finally:
            await alice.close()
            await server.stop("test over")

    rcs, live, alice_done = asyncio.run(main())
    assert rcs == [1, 1, 1]
    assert capsys.readouterr().out.count("0 session(s) terminated") == 3
    assert (live, alice_done) == (1, False)


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_terminate_hard_does_not_wait_soft_does(loopback_ns, tmp_path, engines, soft):
    """Against a client that stopped answering PPP: hard clears the call at once, soft keeps
    retransmitting LCP Terminate-Request until the LCP terminate timer runs out.  Either way
    the client gets Call-Disconnect-Notify and the address returns to the pool."""
    ctl = str(tmp_path / "ctl.sock")

    async def main():
        server = await start_server(ctl, auth_backend=_alice_bob_backend())
        alice = Peer("alice")
        try:
            await alice.connect(server)
            s = alice.session
            alice.client.session.hub.unregister(alice.client.session.call_id)   # deaf to PPP
            loop = asyncio.get_running_loop()

            async def closed_at() -> float:
                await s.closed_event.wait()
                return loop.time()
            watch = asyncio.ensure_future(closed_at())
            t0 = loop.time()
            ids = server.terminate(SessionMatch(user="alice"), soft=soft)
            await asyncio.sleep(HARD_TERMINATE_GRACE + 0.4)
            closed_early = s.closed
            closed = await wait_for(lambda: s.closed, SOFT_TERMINATE_LIMIT + 2)
            took = await watch - t0
            rc = await alice.ended()
            return ids, closed_early, closed, took, rc, alice.ip in server.pool.in_use, s.info.session_id
        finally:
            await alice.close()
            await server.stop("test over")

    ids, closed_early, closed, took, rc, ip_in_use, sid = asyncio.run(main())
    assert ids == [sid] and closed and not ip_in_use
    assert rc == 16                  # the client ended on Call-Disconnect-Notify
    if soft:
        assert not closed_early and took > 2.0      # LCP Terminate-Requests were repeated
    else:
        assert closed_early and took < HARD_TERMINATE_GRACE + 0.3


# ----------------------------------------------------------------------------- rate limits

def test_rate_limits_from_auth_callback_default_and_live_change(loopback_ns, tmp_path, engines, capsys):
    ctl = str(tmp_path / "ctl.sock")
    answers = {"alice": UserSecret("alice-pw", rate="2000/512"), "bob": "bob-pw"}

    async def main():
        server = await start_server(ctl, auth_backend=CallableBackend(lambda u, s: answers.get(u)),
                                    default_rate_limit=RateLimit(5000, 4000))
        alice, bob = Peer("alice"), Peer("bob")
        try:
            await alice.connect(server)
            await bob.connect(server)
            a, b = alice.session.call_id, bob.session.call_id
            at_up = (engines.of(a), engines.of(b))
            doc = await asyncio.to_thread(control_request, {"cmd": "sessions"}, ctl)
            shown = {s["user"]: (s["rate"], s["rate_source"]) for s in doc["sessions"]}
            sid = alice.session.info.session_id
            reply = await asyncio.to_thread(control_request,
                                            {"cmd": "rate-limit", "session": sid, "rate": "100/50"}, ctl)
            after_socket = engines.of(a)[-1]
            rc_cli = await cli_main("rate-limit", sid, "0", "--control-socket", ctl)
            after_cli = engines.of(a)[-1]
            rc_unknown = await cli_main("rate-limit", "f" * 16, "64", "--control-socket", ctl)
            bad = await asyncio.to_thread(control_request,
                                          {"cmd": "rate-limit", "session": sid, "rate": "fast"}, ctl)
            doc = await asyncio.to_thread(control_request, {"cmd": "sessions"}, ctl)
            final = {s["user"]: (s["rate"], s["rate_source"]) for s in doc["sessions"]}
            # traffic still flows both ways on the changed session
            pkt = udp_packet(alice.ip, "198.51.100.1", b"after the change")
            alice.tuns[0].peer.send(pkt)
            flows = await recv_packet(server._tun) == pkt
            return at_up, shown, reply, after_socket, rc_cli, after_cli, rc_unknown, bad, final, flows
        finally:
            await alice.close()
            await bob.close()
            await server.stop("test over")

    at_up, shown, reply, after_socket, rc_cli, after_cli, rc_unknown, bad, final, flows = asyncio.run(main())
    # network up: alice's limit from the auth callback's answer, bob's the default; tx = down
    assert at_up == ([(2000, 512)], [(5000, 4000)])
    assert shown == {"alice": ({"down_kbit": 2000, "up_kbit": 512}, "auth"),
                     "bob": ({"down_kbit": 5000, "up_kbit": 4000}, "default")}
    assert reply["matched"] == 1 and after_socket == (100, 50)
    assert (rc_cli, after_cli) == (0, (0, 0))
    assert rc_unknown == 1 and "bad rate" in bad["error"]
    assert final["alice"] == ({"down_kbit": 0, "up_kbit": 0}, "admin") and final["bob"] == shown["bob"]
    assert flows
    out = capsys.readouterr()
    assert "rate limit unlimited" in out.out and "no session" in out.err


def test_sighup_applies_changed_chap_secrets_rates(loopback_ns, tmp_path, engines):
    ctl = str(tmp_path / "ctl.sock")
    secrets = tmp_path / "chap-secrets"
    secrets.write_text('alice testsrv "alice-pw" * 1000\nbob * bob-pw *\n')

    async def main():
        server = await start_server(ctl, secrets_file=str(secrets))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, server.reload)      # as run_server wires it
        alice, bob = Peer("alice"), Peer("bob")
        try:
            await alice.connect(server)
            await bob.connect(server)
            a, b = alice.session.call_id, bob.session.call_id
            steps = [(engines.of(a), engines.of(b))]

            async def hup(text):
                secrets.write_text(text)
                n = len(engines.calls)
                os.kill(os.getpid(), signal.SIGHUP)
                await wait_for(lambda: len(engines.calls) > n, 3)
                await asyncio.sleep(0.1)
                steps.append((engines.of(a), engines.of(b)))

            await hup("alice testsrv alice-pw * 3000/700\nbob * bob-pw * 64\n")
            server.limit_session(alice.session.info.session_id, RateLimit(10, 10))     # admin: kept
            await hup("alice testsrv alice-pw * 4000\nbob * bob-pw\n")
            infos = {p.user: (p.session.info.rate, p.session.info.rate_source) for p in (alice, bob)}
            return steps, infos, [p.task.done() for p in (alice, bob)]
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            await alice.close()
            await bob.close()
            await server.stop("test over")

    steps, infos, done = asyncio.run(main())
    assert steps[0] == ([(1000, 1000)], [])           # bob has no limit: the engine is not asked
    assert steps[1] == ([(1000, 1000), (3000, 700)], [(64, 64)])
    # alice's live (admin) limit survives the reload; bob's entry lost its rate: unlimited again
    assert steps[2] == ([(1000, 1000), (3000, 700), (10, 10)], [(64, 64), (0, 0)])
    assert infos["alice"][0] == RateLimit(10, 10) and infos["alice"][1].value == "admin"
    assert infos["bob"] == (None, None)
    assert done == [False, False]                      # the sessions lived through both reloads


# ----------------------------------------------------------------------------- permissions

NOBODY = 65534


def probe_as_nobody(path: str) -> dict:
    """Connect to the control socket from a forked child running as uid/gid 65534 and ask for
    the sessions: {"connect": "EACCES"} or {"reply": <the server's answer>}."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # child: no asyncio, no engine, only a socket
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                try:
                    s.connect(path)
                except PermissionError:
                    result: dict = {"connect": "EACCES"}
                else:
                    s.sendall(b'{"cmd": "sessions"}\n')
                    result = {"reply": json.loads(s.makefile().readline())}
            os.write(w, json.dumps(result).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "probe child failed"
    return json.loads(b"".join(chunks))


def test_control_socket_is_root_only(loopback_ns, engines):
    base = tempfile.mkdtemp(prefix="fpctl", dir="/tmp")
    os.chmod(base, 0o755)                       # a directory anyone may search
    ctl = os.path.join(base, "ctl.sock")

    async def main():
        old = os.umask(0)                        # a careless umask must not widen the socket
        try:
            server = await start_server(ctl, auth_backend=_alice_bob_backend())
        finally:
            os.umask(old)
        try:
            mode = stat.S_IMODE(os.stat(ctl).st_mode)
            as_root = await asyncio.to_thread(control_request, {"cmd": "sessions"}, ctl)
            by_mode = await asyncio.to_thread(probe_as_nobody, ctl)
            os.chmod(ctl, 0o666)                 # loosened by hand: SO_PEERCRED still refuses
            by_cred = await asyncio.to_thread(probe_as_nobody, ctl)
            return mode, as_root, by_mode, by_cred
        finally:
            await server.stop("test over")

    try:
        mode, as_root, by_mode, by_cred = asyncio.run(main())
    finally:
        import shutil
        shutil.rmtree(base, ignore_errors=True)
    assert mode == 0o600
    assert as_root["sessions"] == []
    assert set(as_root) == {"sessions", "totals", "gre_io"}
    assert all(isinstance(v, int) for v in as_root["totals"].values())
    gio = as_root["gre_io"]                 # which GRE port runs, why, and its counters
    assert gio["mode"] in ("xdp", "packet", "raw") and gio["why"] and gio["port"]
    assert gio["counters"] and all(isinstance(v, int) for v in gio["counters"].values())
    assert by_mode == {"connect": "EACCES"}
    assert by_cred == {"reply": {"error": "permission denied"}}
