"""fastpptp/radius/config.py: radiusclient.conf, its servers file and dictionary, pppd's
avpair, and the ADDR[:PORT],SECRET flag syntax -> RadiusSettings."""
from __future__ import annotations

import pytest

from fastpptp.radius.client import RadiusServer
from fastpptp.radius.config import (
    RadiusConfigError, avpair_attribute, parse_avpair, parse_radiusclient_conf, parse_server_spec,
    parse_servers_file, settings_from_pppd, settings_from_radiusclient,
)
from fastpptp.radius.dictionary import VENDOR_CISCO, Attr

DEBIAN_CONF = """\
# General settings
auth_order\tradius,local
login_tries\t4
login_timeout\t60
nologin /etc/nologin
issue\t/etc/radiusclient/issue
authserver \t192.0.2.10:1645, 192.0.2.11
acctserver \t192.0.2.10:1646
authserver \tradius.example
servers\t\tservers
dictionary \t/etc/radiusclient/dictionary
login_radius\t/usr/sbin/login.radius
seqfile\t\t/var/run/radius.seq
mapfile\t\t/etc/radiusclient/port-id-map
default_realm
radius_timeout\t10
radius_retries\t3
radius_deadtime\t60
nas-identifier fastpptp-nas
bindaddr *
login_local\t/bin/login
"""
SERVERS = """\
# Make sure that this file is mode 600 (readable only to owner)!
#Server Name or Client/Server pair\t\tKey
192.0.2.10\t\tfirst-secret
192.0.2.11:1812\tsecond-secret
radius.example\tthird-secret
"""


def _files(extra: dict[str, str] | None = None):
    files = {"/etc/radiusclient/radiusclient.conf": DEBIAN_CONF,
             "/etc/radiusclient/servers": SERVERS, **(extra or {})}

    def read(path: str) -> str:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path]
    return read


def _resolve(host: str) -> str:
    return {"radius.example": "192.0.2.12"}[host]


def test_debian_radiusclient_conf_becomes_settings():
    conf = parse_radiusclient_conf(DEBIAN_CONF, "/etc/radiusclient/radiusclient.conf")
    assert conf.authservers == (("192.0.2.10", 1645, None), ("192.0.2.11", None, None),
                                ("radius.example", None, None))
    assert "auth_order" in conf.ignored and "login_tries" in conf.ignored
    s = settings_from_radiusclient(conf, _files(), resolve=_resolve)
    assert s.auth_servers == (RadiusServer(("192.0.2.10", 1645), b"first-secret"),
                              RadiusServer(("192.0.2.11", 1812), b"second-secret"),
                              RadiusServer(("192.0.2.12", 1812), b"third-secret"))
    assert s.acct_servers == (RadiusServer(("192.0.2.10", 1646), b"first-secret"),)
    assert (s.policy.timeout, s.policy.tries, s.policy.dead_time) == (10.0, 3, 60.0)
    assert s.nas_identifier == "fastpptp-nas" and s.bind_address is None
    assert s.auth_order == "radius"          # radius.so ignores the login program's auth_order


def test_a_missing_dictionary_is_no_error_and_a_missing_secret_is():
    conf = parse_radiusclient_conf(DEBIAN_CONF, "/etc/radiusclient/radiusclient.conf")
    settings_from_radiusclient(conf, _files(), resolve=_resolve)      # no dictionary file: fine
    conf = parse_radiusclient_conf("authserver 192.0.2.99\nservers servers\n",
                                   "/etc/radiusclient/radiusclient.conf")
    with pytest.raises(RadiusConfigError, match="no secret for 192.0.2.99"):
        settings_from_radiusclient(conf, _files())
    with pytest.raises(RadiusConfigError, match="no authserver"):
        settings_from_radiusclient(parse_radiusclient_conf("servers servers\n", "/x/r.conf"), _files())


def test_dictionary_with_includes_and_unknown_types_is_read():
    read = _files({"/etc/radiusclient/dictionary": "ATTRIBUTE Foo-Bar 200 abinary\n$INCLUDE sub\n",
                   "/etc/radiusclient/sub": "VENDOR Microsoft 311\nATTRIBUTE MS-CHAP-Challenge 11 string\n"})
    conf = parse_radiusclient_conf(DEBIAN_CONF, "/etc/radiusclient/radiusclient.conf")
    assert settings_from_radiusclient(conf, read, resolve=_resolve).auth_servers


@pytest.mark.parametrize("text,error", [
    ("radius_timeout soon\n", "bad value"), ("authserver 192.0.2.1:http\n", "not a number"),
    ("authserver\n", "needs a server"), ("bindaddr here\n", "bad value"),
])
def test_bad_radiusclient_lines_say_where(text, error):
    with pytest.raises(RadiusConfigError, match=f"r.conf:1: .*{error}"):
        parse_radiusclient_conf(text, "/x/r.conf")


def test_servers_file_and_server_specs():
    assert parse_servers_file(SERVERS)["192.0.2.11:1812"] == "second-secret"
    with pytest.raises(RadiusConfigError):
        parse_servers_file("lonely-host\n")
    assert parse_server_spec("192.0.2.1,s3c", 1812) == RadiusServer(("192.0.2.1", 1812), b"s3c")
    assert parse_server_spec("192.0.2.1:1645,a,b", 1812) == RadiusServer(("192.0.2.1", 1645), b"a,b")
    assert parse_server_spec("[2001:db8::1]:11812,s", 1812).address == ("2001:db8::1", 11812)
    for bad in ("192.0.2.1", "192.0.2.1,", "radius.example,s", "192.0.2.1:99999,s"):
        with pytest.raises(RadiusConfigError):
            parse_server_spec(bad, 1812)


def test_avpairs():
    assert parse_avpair("NAS-Port-Id=pptp0") == ("NAS-Port-Id", "pptp0")
    assert avpair_attribute("Service-Type", "2").value == (2).to_bytes(4, "big")
    assert avpair_attribute("NAS-IP-Address", "192.0.2.7").value == bytes([192, 0, 2, 7])
    assert avpair_attribute("cisco-avpair", "a=b") == (1, b"a=b", VENDOR_CISCO)
    assert avpair_attribute("Class", "0x0102").value == b"\x01\x02"
    assert avpair_attribute("Filter-Id", "x").type == Attr.FILTER_ID
    for bad in ("No-Such-Attribute=1", "Service-Type=framed", "=x", "NAS-IP-Address=nope"):
        with pytest.raises(RadiusConfigError):
            parse_avpair(bad)


def test_settings_from_pppd_options():
    read = _files()
    assert settings_from_pppd(["radattr.so"], None, [], read) is None
    s = settings_from_pppd(["radius.so", "radattr.so"], None, ["NAS-Port-Id=vpn"], read, resolve=_resolve)
    assert s is not None and s.avpairs == (("NAS-Port-Id", "vpn"),) and s.radattr_dir == "/var/run"
    with pytest.raises(RadiusConfigError, match="cannot read"):
        settings_from_pppd(["radius.so"], "/nowhere/radiusclient.conf", [], read)
