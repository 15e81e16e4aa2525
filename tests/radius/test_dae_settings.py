"""``--dae-server ADDR[:PORT],SECRET`` / ``--dae-allowed CIDR`` into ``ServerConfig.radius.dae``,
and the RadiusSettings a DAE listener may stand in alone."""
from __future__ import annotations

import ipaddress

import pytest

from fastpptp import cli
from fastpptp.config import ConfigError
from fastpptp.radius.client import RadiusServer
from fastpptp.radius.settings import DAE_PORT, DaeSettings, RadiusSettings


def build(*flags: str):
    args = cli.server_parser().parse_args(["-c", "/dev/null", "--remoteip", "198.51.100.2-9", *flags])
    config, _ = cli.build_server_config(args)
    return config


@pytest.mark.parametrize("text,listen,secret", [
    ("192.0.2.1,s3cret", ("192.0.2.1", DAE_PORT), b"s3cret"),
    ("192.0.2.1:1700,a,b", ("192.0.2.1", 1700), b"a,b"),
    ("[2001:db8::1]:3799,x", ("2001:db8::1", 3799), b"x"),
    ("[2001:db8::1],x", ("2001:db8::1", DAE_PORT), b"x"),
    ("2001:db8::1,x", ("2001:db8::1", DAE_PORT), b"x"),
])
def test_dae_server_flag(text, listen, secret):
    config = build("--dae-server", text, "--dae-allowed", "192.0.2.10", "--dae-allowed", "2001:db8::/64")
    dae = config.radius.dae
    assert (dae.listen, dae.secret) == (listen, secret)
    assert dae.allowed == (ipaddress.ip_network("192.0.2.10/32"), ipaddress.ip_network("2001:db8::/64"))
    assert not dae.require_message_authenticator
    assert config.radius.auth_servers == () and not config.radius.authenticates
    assert secret.decode() not in repr(config.radius)


@pytest.mark.parametrize("text", ["192.0.2.1", "192.0.2.1,", "nas.example,x", "192.0.2.1:0,x",
                                  "192.0.2.1:http,x", "[2001:db8::1]x,y"])
def test_dae_server_flag_rejects(text, capsys):
    with pytest.raises(SystemExit):
        build("--dae-server", text, "--dae-allowed", "192.0.2.10")
    assert "--dae-server" in capsys.readouterr().err


def test_dae_needs_allowed_clients_without_radius_servers():
    with pytest.raises(ConfigError, match="--dae-allowed"):
        build("--dae-server", "192.0.2.1,x")
    with pytest.raises(ConfigError, match="without --dae-server"):
        build("--dae-allowed", "192.0.2.10")


def test_require_message_authenticator_flag_and_no_dae():
    config = build("--dae-server", "192.0.2.1,x", "--dae-allowed", "192.0.2.0/24",
                   "--dae-require-message-authenticator")
    assert config.radius.dae.require_message_authenticator
    assert build().radius is None


def test_radius_settings_need_something():
    with pytest.raises(ValueError):
        RadiusSettings(auth_servers=())
    dae = DaeSettings(listen=("127.0.0.1", DAE_PORT), secret=b"x")
    assert not RadiusSettings(auth_servers=(), dae=dae).authenticates
    assert RadiusSettings(auth_servers=(RadiusServer(("192.0.2.5", 1812), b"s"),)).authenticates
