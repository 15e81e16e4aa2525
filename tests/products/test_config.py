"""pptpd.conf / pppd options parsing and the address pool."""
import pytest

from fastpptp.config import (AddressPool, ConfigError, expand_ip_list,
                             parse_ppp_options, parse_pptpd_conf)

DEBIAN_PPTPD_OPTIONS = """
# Debian's /etc/ppp/pptpd-options, trimmed
name pptpd
refuse-pap
refuse-chap
refuse-mschap
require-mschap-v2
require-mppe-128
ms-dns 192.0.2.53
ms-wins 192.0.2.54
proxyarp
nodefaultroute
lock
nobsdcomp
novj
novjccomp
nologfd
lcp-echo-interval 30
lcp-echo-failure 4
mtu 1400
mru 1400
"""


def test_debian_pptpd_options():
    o = parse_ppp_options(DEBIAN_PPTPD_OPTIONS, "pptpd-options")
    assert o.name == "pptpd"
    assert o.auth_flags == ("refuse-pap", "refuse-chap", "refuse-mschap", "require-mschap-v2",
                            "require-mppe-128")
    assert o.ms_dns == ("192.0.2.53",) and o.ms_wins == ("192.0.2.54",)
    assert (o.mtu, o.mru, o.lcp_echo_interval, o.lcp_echo_failure) == (1400, 1400, 30, 4)
    assert o.ignored == ("proxyarp",)      # we do not proxy-ARP: the caller warns once
    assert o.unknown == ()


@pytest.mark.parametrize("text,reason", [
    ("mtu", "needs an argument"),
    ("mtu big", "needs a number"),
    ("mtu 10", "out of range"),
    ("ms-dns 300.1.1.1", "not an IPv4 address"),
    ('name "unterminated', "cannot parse"),
    ("file /x", "cannot include"),
])
def test_bad_options_say_where_and_why(text, reason):
    with pytest.raises(ConfigError) as ei:
        parse_ppp_options("debug\n" + text, "opts")
    assert reason in str(ei.value)
    assert str(ei.value).startswith("opts:")


def test_quoting_comments_includes_and_unknowns():
    files = {"/inc": "usepeerdns\nremotename \"my server\" # hi\n"}
    o = parse_ppp_options("user 'DOM\\\\alice'\nfile /inc\npersist maxfail 0 holdoff 5\nfrobnicate\n"
                          "198.51.100.1:198.51.100.2\nbsdcomp 9,15\n", "o", read_file=files.__getitem__)
    assert o.remotename == "my server" and o.usepeerdns and o.persist
    assert (o.maxfail, o.holdoff) == (0, 5)
    assert o.local_ip == "198.51.100.1" and o.remote_ip == "198.51.100.2"
    assert o.unknown == ("frobnicate",) and o.ignored == ("bsdcomp",)


def test_ip_lists_like_pptpd():
    assert expand_ip_list("192.0.2.10-12,192.0.2.30") == ["192.0.2.10", "192.0.2.11", "192.0.2.12",
                                                          "192.0.2.30"]
    assert expand_ip_list("198.51.100.250-198.51.101.1")[-1] == "198.51.101.1"
    for bad in ("192.0.2.9-3", "192.0.2.1-300", "192.0.2", "10.0.0.0-11.0.0.0"):
        with pytest.raises(ConfigError):
            expand_ip_list(bad)


def test_pptpd_conf():
    c = parse_pptpd_conf("option /etc/ppp/pptpd-options\n# c\nlogwtmp\nlisten 192.0.2.1\n"
                         "localip 198.51.100.1\nremoteip 198.51.100.2-9\nconnections 20\n", "p.conf")
    assert c.option == "/etc/ppp/pptpd-options" and c.listen == "192.0.2.1"
    assert c.localip == ("198.51.100.1",) and len(c.remoteip) == 8 and c.connections == 20
    assert "logwtmp" in c.ignored
    with pytest.raises(ConfigError, match="p.conf:2: unknown pptpd.conf keyword 'bogus'"):
        parse_pptpd_conf("debug\nbogus 1\n", "p.conf")


def test_address_pool_statics_and_reuse():
    pool = AddressPool(expand_ip_list("198.51.100.2-4"))
    a = pool.allocate()
    assert a == "198.51.100.2"
    assert pool.allocate("198.51.100.3") == "198.51.100.3"   # static from chap-secrets
    assert pool.allocate("198.51.100.3") is None              # never twice
    assert pool.allocate() == "198.51.100.4"
    assert pool.allocate() is None
    pool.release(a)
    assert pool.allocate() == a
    assert pool.allocate("203.0.113.7") == "203.0.113.7"      # statics may lie outside the pool
    pool.release("203.0.113.7")
    assert "203.0.113.7" not in pool.in_use and pool.allocate() is None


def test_prefer_mppe_stateful_is_an_mppe_switch():
    """fastpptp's one MPPE option of its own reaches the policy like pppd's switches."""
    from fastpptp.ppp.auth.policy import AuthPolicy
    o = parse_ppp_options("require-mschap-v2\nrequire-mppe-128\nprefer-mppe-stateful\n", "opts")
    assert o.auth_flags[-1] == "prefer-mppe-stateful" and o.unknown == () and o.ignored == ()
    mppe = AuthPolicy.from_options(o.auth_flags).mppe
    assert (mppe.required, mppe.stateful, mppe.prefer_stateful) == (True, True, True)
