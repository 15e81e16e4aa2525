"""Unit tests of the product glue that needs no network: rate limits, hooks, status socket, CLI."""
import asyncio
import os
import stat

import pytest

from fastpptp import cli
from fastpptp.config import ConfigError
from fastpptp.hooks import hook_env, run_hook
from fastpptp.server import RateLimiter
from fastpptp.status import StatusServer, format_status, query_status


def test_rate_limiter_sliding_window():
    rl = RateLimiter(3, 10.0)
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
