"""Unit tests of the product glue that needs no network: rate limits, hooks, status socket, CLI."""
import asyncio
import os
import stat

import pytest

from fastpptp import cli
from fastpptp.config import ConfigError
from fastpptp.hooks import hook_env, run_hook
from fastpptp.admission import SlidingWindow
from fastpptp.status import StatusServer, format_status, query_status


def test_rate_limiter_sliding_window():
    rl = SlidingWindow(3, 10.0)
    assert [rl.allow("a", t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert rl.allow("b", 3)                      # per source
    assert rl.allow("a", 10.5)                   # the first event left the window
    assert rl.count("a", 10.5) == 3


def test_hook_env_matches_pppd():
    env = hook_env(ifname="ppp0", local="198.51.100.1", remote="198.51.100.2", peer="alice",
                   ipparam="office", dns=("192.0.2.53",), bytes_sent=10, bytes_rcvd=20, connect_time=3)
    assert env["IFNAME"] == "ppp0" and env["IPLOCAL"] == "198.51.100.1" and env["IPREMOTE"] == "198.51.100.2"
    assert env["PEERNAME"] == "alice" and env["IPPARAM"] == "office" and env["DNS1"] == "192.0.2.53"
    assert (env["BYTES_SENT"], env["BYTES_RCVD"], env["CONNECT_TIME"]) == ("10", "20", "3")


def test_run_hook_passes_pppd_arguments(tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "ip-up"
    script.write_text(f'#!/bin/sh\necho "$@|$PEERNAME|$IPREMOTE" > {out}\n')
    script.chmod(0o755)
    rc = asyncio.run(run_hook(str(script), ifname="ppp0", local="198.51.100.1", remote="198.51.100.2",
                              ipparam="x", peer="bob"))
    assert rc == 0
    assert out.read_text().strip() == "ppp0 ppp0 0 198.51.100.1 198.51.100.2 x|bob|198.51.100.2"
    assert asyncio.run(run_hook(str(tmp_path / "missing"), ifname="a", local="b", remote="c")) is None


def test_status_socket_round_trip(tmp_path):
    path = str(tmp_path / "ctl.sock")
    doc = {"sessions": [{"user": "alice", "peer": "192.0.2.2", "local_ip": "198.51.100.1",
                         "remote_ip": "198.51.100.2", "auth": "MS-CHAPv2", "mppe": "128 stateless",
                         "uptime_s": 1.5, "rx_packets": 3, "tx_packets": 4, "rx_bytes": 5, "tx_bytes": 6,
                         "drops": {"malformed": 1}}]}

    async def main():
        srv = StatusServer(path, lambda: doc)
        await srv.start()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        got = await asyncio.get_running_loop().run_in_executor(None, query_status, path)
        await srv.close()
        return got

    assert asyncio.run(main()) == doc
    table = format_status(doc)
    assert "alice" in table and "128 stateless" in table and table.splitlines()[0].startswith("USER")


def test_server_cli_reads_pptpd_files(tmp_path):
    opts = tmp_path / "opts"
    opts.write_text("name srv\nrequire-mschap-v2\nrequire-mppe-128\nms-dns 192.0.2.53\nproxyarp\n")
    conf = tmp_path / "pptpd.conf"
    conf.write_text(f"option {opts}\nlocalip 198.51.100.1\nremoteip 198.51.100.2-9\nconnections 7\n")
    args = cli.server_parser().parse_args(["-c", str(conf), "--ppp", "mtu 1380", "-f"])
    config, _ = cli.build_server_config(args)
    assert config.connections == 7 and len(config.remote_ips) == 8
    assert config.ppp.name == "srv" and config.ppp.mtu == 1380 and config.ppp.ms_dns == ("192.0.2.53",)
    assert "require-mppe-128" in config.ppp.auth_flags and config.ppp.ignored == ("proxyarp",)
    conf.write_text("localip 198.51.100.1\nremoteip 198.51.100.9-2\n")
    with pytest.raises(ConfigError, match="pptpd.conf:2"):
        cli.build_server_config(cli.server_parser().parse_args(["-c", str(conf)]))


def test_client_cli_takes_pppd_words(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    args = cli.client_parser().parse_intermixed_args(["192.0.2.10", "--user", "alice", "--password-file", str(pw),
                                           "require-mppe-128", "defaultroute", "persist", "maxfail", "3",
                                           "--route", "203.0.113.0/24"])
    config, _ = cli.build_client_config(args)
    assert config.password == "s3cret" and config.user == "alice" and config.routes == ("203.0.113.0/24",)
    assert config.ppp.persist and config.ppp.maxfail == 3 and config.ppp.defaultroute
    with pytest.raises(ConfigError, match="no password"):
        cli.build_client_config(cli.client_parser().parse_args(["192.0.2.10", "--user", "a"]))


# --- client exit status: typed failure kinds, pppd's exit codes --------------------------

def test_failure_kinds_are_pppds_exit_codes():
    from fastpptp.client import FailureKind as K
    # pppd(8) EXIT STATUS / pppd.h EXIT_*
    assert {k.name: k.exit_status for k in K} == {
        "FATAL_ERROR": 1, "CONNECT_FAILED": 8, "NEGOTIATION_FAILED": 10, "PEER_AUTH_FAILED": 11, "PEER_DEAD": 15,
        "HANGUP": 16, "AUTH_TOPEER_FAILED": 19}


def _auth_failed(direction):
    from fastpptp.ppp.constants import AuthMethod
    from fastpptp.ppp.link import AuthenticationFailed
    return AuthenticationFailed("alice", AuthMethod.MSCHAP_V2, "E=691 R=0", direction)


def _outcome(*steps, network_up=False):
    from fastpptp.client import AttemptOutcome
    from fastpptp.ppp.link import AuthenticationFailed
    o = AttemptOutcome()
    for step in steps:
        if isinstance(step, AuthenticationFailed):
            o.on_auth(step)
        elif isinstance(step, str):
            o.end(step)                      # session closed / control connection lost
        else:
            o.on_control_event(step)
    o.network_up = network_up
    return o


def test_attempt_outcome_classifies_typed_events():
    from fastpptp.client import FailureKind as K
    from fastpptp.pptp.control import CallCleared, CallEstablished, ControlClosed, EchoTimeout
    est = CallEstablished(call_id=1, peer_call_id=2, peer_rwin=64, peer_ppd=0, connect_speed=0)
    cases = [
        # (what happened, network came up, kind, reason kept)
        ((est, _auth_failed("self"), "Failed to authenticate ourselves to peer: E=691", "control connection closed"),
         False, K.AUTH_TOPEER_FAILED, "Failed to authenticate ourselves to peer: E=691"),
        ((est, _auth_failed("peer"), "Authentication failed"), False, K.PEER_AUTH_FAILED, "Authentication failed"),
        ((est, "MPPE required but not negotiated"), False, K.NEGOTIATION_FAILED, "MPPE required but not negotiated"),
        ((ControlClosed("StopCCRQ from peer", by_peer=True),), False, K.CONNECT_FAILED, "StopCCRQ from peer"),
        ((CallCleared(1, 0, 3, reason="OCRP: busy", established=False),), False, K.CONNECT_FAILED,
         "call refused by the server (OCRP: busy)"),
        ((est, CallCleared(1, 2, 3, by_peer=True)), False, K.NEGOTIATION_FAILED, "call cleared by server"),
        ((est, "server cleared the call ()"), True, K.HANGUP, "server cleared the call ()"),
        ((est, EchoTimeout()), True, K.PEER_DEAD, "no Echo-Reply"),
        (("control connection closed",), False, K.CONNECT_FAILED, "control connection closed"),
    ]
    for steps, up, kind, reason in cases:
        o = _outcome(*steps, network_up=up)
        assert (o.failure, o.reason, o.done.is_set()) == (kind, reason, True), steps


def test_client_returns_the_exit_status_of_the_failure(monkeypatch):
    from fastpptp.client import AttemptFailed, Client, ClientConfig, FailureKind
    from fastpptp.config import parse_ppp_options

    def client(opts, kinds):
        c = Client(ClientConfig(server="192.0.2.1", user="alice", password="x", ppp=parse_ppp_options(opts)))
        seen = list(kinds)

        async def attempt():
            kind = seen.pop(0)
            if kind is None:                 # the tunnel came up, then we were stopped
                c.stop()
                return True
            raise AttemptFailed(f"failed: {kind.name}", kind)
        monkeypatch.setattr(c, "_attempt", attempt)
        return c, seen

    c, _ = client("", [FailureKind.AUTH_TOPEER_FAILED])
    assert asyncio.run(c.run()) == 19 and c.failure is FailureKind.AUTH_TOPEER_FAILED
    assert c.exit_reason == "failed: AUTH_TOPEER_FAILED"
    c, _ = client("", [FailureKind.NEGOTIATION_FAILED])
    assert asyncio.run(c.run()) == 10
    # persist: pppd gives up after maxfail failures with the last one's status
    c, left = client("persist maxfail 2 holdoff 0", [FailureKind.CONNECT_FAILED, FailureKind.AUTH_TOPEER_FAILED,
                                                     FailureKind.HANGUP])
    assert asyncio.run(c.run()) == 19 and left == [FailureKind.HANGUP]
    # stopped by the user (stop(), SIGTERM): a clean end
    c, _ = client("persist holdoff 0", [FailureKind.CONNECT_FAILED, None])
    assert asyncio.run(c.run()) == 0
