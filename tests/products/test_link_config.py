"""pppd options -> the PPP link's LinkConfig (fastpptp.config.server_link_config /
client_link_config): one row per option family, each compared with the whole expected
LinkConfig, so an option that leaks into the wrong field fails too."""
from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import pytest

from fastpptp.config import client_link_config, parse_ppp_options, server_link_config
from fastpptp.ppp.auth.base import AuthTimers
from fastpptp.ppp.auth.policy import AuthPolicy
from fastpptp.ppp.constants import AuthMethod
from fastpptp.ppp.ipcp import IpcpConfig
from fastpptp.ppp.ipv6cp import Ipv6cpConfig
from fastpptp.ppp.lcp import LcpConfig
from fastpptp.ppp.link import LinkConfig

SERVER_IP = "198.51.100.1"
SERVER_IPCP = IpcpConfig(local_address=IPv4Address(SERVER_IP))
# What a server gets from an empty options file: auth implied, pptpd's name, defaults.
SERVER = LinkConfig(ipcp=SERVER_IPCP, policy=AuthPolicy.from_options("auth"), name="pptpd")
CLIENT = LinkConfig()


@pytest.mark.parametrize("options,changes", [
    ("", {}),
    ("noauth", {"policy": AuthPolicy.from_options("noauth")}),
    # an MPPE requirement alone does not count as saying auth/noauth: auth still implied
    ("require-mppe-128", {"policy": AuthPolicy.from_options("auth require-mppe-128")}),
    ("require-mschap-v2 require-mppe-128",
     {"policy": AuthPolicy.from_options("require-mschap-v2 require-mppe-128")}),
    ("+pap", {"policy": AuthPolicy.from_options("+pap")}),
    ("name vpn.example remotename office", {"name": "vpn.example", "remotename": "office"}),
    (":198.51.100.9", {"ipcp": dataclasses.replace(SERVER_IPCP,
                                                   peer_address=IPv4Address("198.51.100.9"))}),
    ("ms-dns 192.0.2.53 ms-dns 192.0.2.54 ms-wins 192.0.2.137",
     {"dns": (IPv4Address("192.0.2.53"), IPv4Address("192.0.2.54")),
      "nbns": (IPv4Address("192.0.2.137"),)}),
    # 0 is a value, not "unset": lcp-echo-failure 0 disables the echo check
    ("mru 1300 lcp-echo-interval 10 lcp-echo-failure 0",
     {"lcp": LcpConfig(mru=1300, echo_interval=10, echo_failure=0)}),
    ("lcp-echo-interval 0", {"lcp": LcpConfig(echo_interval=0)}),
    ("lcp-restart 2 lcp-max-configure 5 lcp-max-failure 3 lcp-max-terminate 1",
     {"lcp": LcpConfig(restart_timer=2, max_configure=5, max_failure=3, max_terminate=1)}),
    ("ipcp-restart 4 ipcp-max-configure 7",
     {"ipcp": dataclasses.replace(SERVER_IPCP, restart_timer=4, max_configure=7)}),
    ("chap-restart 5 chap-max-challenge 3", {"auth_timers": AuthTimers(restart=5, max_transmits=3)}),
    ("pap-restart 6 pap-max-authreq 2", {"auth_timers": AuthTimers(restart=6, max_transmits=2)}),
    # CHAP's knobs win over PAP's (one AuthTimers serves whichever method LCP agrees)
    ("pap-restart 6 chap-restart 5", {"auth_timers": AuthTimers(restart=5)}),
    ("+ipv6", {"ipv6cp": Ipv6cpConfig()}),
    ("ipv6 noipv6", {}),
    # client-side options leave a server alone
    ("usepeerdns user alice password s3cret 198.51.100.7:", {}),
])
def test_server_link_config(options, changes):
    got = server_link_config(parse_ppp_options(options), local_ip=SERVER_IP)
    assert got == dataclasses.replace(SERVER, **changes)


def test_server_link_config_passes_the_address_callbacks():
    def assign(user: str) -> str | None:
        return None

    released: list[str] = []
    got = server_link_config(parse_ppp_options(""), local_ip=IPv4Address(SERVER_IP),
                             assign_address=assign, release_address=released.append)
    assert got == dataclasses.replace(SERVER, assign_address=assign,
                                      release_address=released.append)


@pytest.mark.parametrize("options,kwargs,changes", [
    ("", {}, {}),
    # a client authenticates only if told to
    ("auth require-mschap-v2", {}, {"policy": AuthPolicy.from_options("auth require-mschap-v2")}),
    ("require-mppe-128 refuse-pap refuse-chap", {},
     {"policy": AuthPolicy.from_options("require-mppe-128 refuse-pap refuse-chap")}),
    ("usepeerdns", {}, {"ipcp": IpcpConfig(request_dns=True)}),
    ("198.51.100.7:", {}, {"ipcp": IpcpConfig(local_address=IPv4Address("198.51.100.7"))}),
    ("user alice password s3cret", {}, {"user": "alice", "password": "s3cret"}),
    # the command line's credentials win over the options file's
    ("user alice password s3cret", {"user": "bob", "password": "pw"},
     {"user": "bob", "password": "pw"}),
    ("user alice password s3cret", {"user": None, "password": ""},
     {"user": "alice", "password": "s3cret"}),
    ("name laptop remotename pptpd", {}, {"name": "laptop", "remotename": "pptpd"}),
    ("mru 1400 lcp-echo-failure 2", {}, {"lcp": LcpConfig(mru=1400, echo_failure=2)}),
    ("ipcp-max-configure 3", {}, {"ipcp": IpcpConfig(max_configure=3)}),
    ("chap-max-challenge 4", {}, {"auth_timers": AuthTimers(max_transmits=4)}),
    ("ipv6", {}, {"ipv6cp": Ipv6cpConfig()}),
    # server-side options leave a client alone (no pool, no DNS to hand out)
    ("ms-dns 192.0.2.53 ms-wins 192.0.2.137 :198.51.100.9", {}, {}),
])
def test_client_link_config(options, kwargs, changes):
    got = client_link_config(parse_ppp_options(options), **kwargs)
    assert got == dataclasses.replace(CLIENT, **changes)


def test_link_config_is_what_the_link_authenticates_with():
    cfg = server_link_config(parse_ppp_options("require-mppe-128"), local_ip=SERVER_IP)
    assert cfg.policy.auth_require == (AuthMethod.MSCHAP_V2, AuthMethod.MSCHAP_V1)
    assert cfg.policy.mppe.required and cfg.policy.mppe.bits == frozenset({128})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]  # frozen: the point of the test
