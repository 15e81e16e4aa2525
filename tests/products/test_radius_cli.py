"""fastpptp-server's RADIUS configuration: the --radius-* flags, pppd's radius.so options in
the options file (plugin radius.so / radattr.so, radius-config-file, avpair), and the flags
over the files -> ServerConfig.radius."""
from __future__ import annotations

import pytest

from fastpptp.cli import build_server_config, server_parser
from fastpptp.config import ConfigError, parse_ppp_options
from fastpptp.radius.client import RadiusServer


def _config(tmp_path, *argv: str, options: str = ""):
    opt = tmp_path / "options"
    opt.write_text(options)
    args = server_parser().parse_args(["-c", "", "--remoteip", "198.51.100.2-3", "-o", str(opt),
                                       "--secrets", str(tmp_path / "chap-secrets"), *argv])
    config, _ = build_server_config(args)
    return config


def test_no_radius_without_flags_or_plugin(tmp_path):
    assert _config(tmp_path).radius is None


def test_radius_flags(tmp_path):
    r = _config(tmp_path, "--radius-server", "192.0.2.1,one", "--radius-server", "192.0.2.2:11812,two",
                "--radius-acct-server", "192.0.2.1,one", "--radius-timeout", "1.5", "--radius-retries", "2",
                "--nas-identifier", "vpn-a", "--nas-ip-address", "192.0.2.100", "--radius-bind",
                "192.0.2.100", "--radius-order", "radius,local", "--acct-interim-interval", "300").radius
    assert r is not None
    assert r.auth_servers == (RadiusServer(("192.0.2.1", 1812), b"one"),
                              RadiusServer(("192.0.2.2", 11812), b"two"))
    assert r.acct_servers == (RadiusServer(("192.0.2.1", 1813), b"one"),)
    assert (r.policy.timeout, r.policy.tries) == (1.5, 2)
    assert (r.nas_identifier, r.nas_ip_address, r.bind_address) == ("vpn-a", "192.0.2.100", "192.0.2.100")
    assert (r.auth_order, r.acct_interim_interval) == ("radius,local", 300)


@pytest.mark.parametrize("argv", [
    ["--radius-server", "192.0.2.1"],                       # no secret
    ["--radius-order", "local,radius"],
])
def test_bad_radius_flags_are_config_errors(tmp_path, argv):
    with pytest.raises(ConfigError):
        _config(tmp_path, *argv)


def test_accounting_alone_keeps_local_logins(tmp_path):
    """--radius-acct-server without --radius-server: chap-secrets checks the logins and
    RADIUS accounts them (Acct-Authentic Local)."""
    r = _config(tmp_path, "--radius-acct-server", "192.0.2.1,s", "--nas-identifier", "vpn-b",
                "--acct-interim-interval", "120").radius
    assert r is not None and not r.authenticates and r.auth_servers == ()
    assert r.acct_servers == (RadiusServer(("192.0.2.1", 1813), b"s"),)
    assert (r.nas_identifier, r.acct_interim_interval) == ("vpn-b", 120)


def test_radius_so_options_file_and_flags_over_it(tmp_path):
    (tmp_path / "radiusclient.conf").write_text(
        "authserver 192.0.2.5\nacctserver 192.0.2.5\nservers servers\nradius_timeout 5\n"
        "radius_retries 4\nnas-identifier from-file\n")
    (tmp_path / "servers").write_text("192.0.2.5 file-secret\n")
    options = (f"plugin /usr/lib/pppd/2.4.9/radius.so\nplugin radattr.so\n"
               f"radius-config-file {tmp_path}/radiusclient.conf\navpair NAS-Port-Id=vpn\n")
    r = _config(tmp_path, options=options).radius
    assert r is not None
    assert r.auth_servers == (RadiusServer(("192.0.2.5", 1812), b"file-secret"),)
    assert r.acct_servers == (RadiusServer(("192.0.2.5", 1813), b"file-secret"),)
    assert (r.policy.timeout, r.policy.tries, r.nas_identifier) == (5.0, 4, "from-file")
    assert r.avpairs == (("NAS-Port-Id", "vpn"),) and r.radattr_dir == "/var/run"
    r = _config(tmp_path, "--radius-server", "192.0.2.9,flag", "--radius-timeout", "1",
                "--nas-identifier", "from-flag", options=options).radius
    assert r is not None and r.auth_servers == (RadiusServer(("192.0.2.9", 1812), b"flag"),)
    assert (r.policy.timeout, r.policy.tries, r.nas_identifier) == (1.0, 4, "from-flag")
    assert r.acct_servers == (RadiusServer(("192.0.2.5", 1813), b"file-secret"),)
    with pytest.raises(ConfigError, match="unknown attribute"):
        _config(tmp_path, options=options + "avpair Bogus-Attr=1\n")


def test_pppd_plugin_options_parse():
    o = parse_ppp_options("plugin radius.so\nplugin /usr/lib/pppd/2.4.9/radattr.so\nplugin rp-pppoe.so\n"
                          "radius-config-file /etc/radiusclient/radiusclient.conf\n"
                          "avpair Session-Timeout=60\navpair Cisco-AVPair=ip:a=b\nmap-to-ifname\n")
    assert o.plugins == ("radius.so", "radattr.so")
    assert o.radius_config_file == "/etc/radiusclient/radiusclient.conf"
    assert o.avpairs == ("Session-Timeout=60", "Cisco-AVPair=ip:a=b")
    assert "plugin rp-pppoe.so" in o.ignored and "map-to-ifname" in o.ignored
    with pytest.raises(ConfigError):
        parse_ppp_options("avpair novalue\n")
