"""statictunnel's command line (no root needed): what the e2e tests and the bench launch."""
from __future__ import annotations

import argparse

import pytest

from fastpptp.tools import statictunnel

BASE = ["--local", "192.0.2.1", "--peer", "192.0.2.2", "--call-id", "0x100",
        "--peer-call-id", "512", "--tun-addr", "198.51.100.1", "--tun-peer", "198.51.100.2"]


def parse(*extra: str) -> argparse.Namespace:
    return statictunnel.build_parser().parse_args(BASE + list(extra))


def test_defaults_and_call_ids():
    a = parse()
    assert (a.call_id, a.peer_call_id) == (0x100, 512)
    assert a.mtu == 1400 and a.impl == "compiled" and not a.no_offload
    assert a.mppe_key is None and a.stats_json is None and a.tun_addr6 is None


@pytest.mark.parametrize("key,expect", [
    ("00112233445566778899aabbccddeeff", (bytes.fromhex("00112233445566778899aabbccddeeff"),) * 2),
    ("0011223344556677:8899aabbccddeeff",
     (bytes.fromhex("0011223344556677"), bytes.fromhex("8899aabbccddeeff"))),
])
def test_mppe_key_forms(key, expect):
    assert parse("--mppe-key", key).mppe_key == expect


@pytest.mark.parametrize("bad", [
    ["--mppe-key", "zz"], ["--mppe-key", "0011"], ["--mppe-key", "a:b:c"],
    ["--mppe-key", "0011223344556677:00112233445566778899aabbccddeeff"],
    ["--call-id", "65536"], ["--call-id", "-1"], ["--tun-addr", "2001:db8::1"],
    ["--impl", "fast"], ["--tun-addr6", "198.51.100.9"],
])
def test_bad_arguments_are_usage_errors(bad, capsys):
    with pytest.raises(SystemExit) as ei:
        parse(*bad)
    assert ei.value.code == 2


def test_ipv6_addresses_go_together():
    with pytest.raises(SystemExit) as ei:
        statictunnel.main(BASE + ["--tun-addr6", "2001:db8::1"])
    assert ei.value.code == 2


def test_command_round_trips_through_the_parser():
    argv = statictunnel.command(
        local="192.0.2.2", peer="192.0.2.1", call_id=7, peer_call_id=9, tun_addr="198.51.100.2",
        tun_peer="198.51.100.1", mppe_key="00" * 16, mtu=1300, impl="reference", offload=False,
        stats_json="/tmp/x.json", tun_name="tunx", extra=("--no-pfc",))
    assert argv[1:3] == ["-m", "fastpptp.tools.statictunnel"]
    a = statictunnel.build_parser().parse_args(argv[3:])
    assert (a.local, a.peer, a.call_id, a.peer_call_id) == ("192.0.2.2", "192.0.2.1", 7, 9)
    assert (a.tun_addr, a.tun_peer, a.mtu, a.impl) == ("198.51.100.2", "198.51.100.1", 1300,
                                                        "reference")
    assert a.no_offload and a.no_pfc and not a.no_acfc
    assert a.mppe_key == (bytes(16), bytes(16))
    assert (a.stats_json, a.tun_name) == ("/tmp/x.json", "tunx")


@pytest.mark.parametrize("text,expect", [("20000/5000", (20000, 5000)), ("1000", (1000, 1000)),
                                         ("0/300", (0, 300))])
def test_rate_limit_forms(text, expect):
    """DOWN/UP in kbit/s: DOWN is what this end sends to the peer (set_rate_limit's tx)."""
    a = parse("--rate-limit", text, "--rate-limit-queue", "0", "--rate-limit-burst", "9000")
    assert (a.rate_limit, a.rate_limit_queue, a.rate_limit_burst) == (expect, 0, 9000)
    assert parse().rate_limit is None


@pytest.mark.parametrize("bad", ["1/2/3", "-5", "fast", "10/", ""])
def test_bad_rate_limits_are_usage_errors(bad):
    with pytest.raises(SystemExit) as ei:
        parse("--rate-limit", bad)
    assert ei.value.code == 2
