"""Framed-Route / Framed-MTU as the server applies them to a session's own interface
(fastpptp/radius/framed.py; RFC 2865 §5.12, §5.22)."""
from __future__ import annotations

import ipaddress

import pytest

from fastpptp.radius.framed import FramedRoute, parse_framed_route, session_mtu

N, A = ipaddress.IPv4Network, ipaddress.IPv4Address


@pytest.mark.parametrize("text,route", [
    # FreeRADIUS / Livingston form: prefix/bits gateway metric
    ("203.0.113.0/24 0.0.0.0 1", FramedRoute(N("203.0.113.0/24"), None, 1)),
    ("203.0.113.0/24 198.51.100.2 7", FramedRoute(N("203.0.113.0/24"), A("198.51.100.2"), 7)),
    ("203.0.113.0/24 0.0.0.0 1 2 3", FramedRoute(N("203.0.113.0/24"), None, 1)),   # first metric
    ("203.0.113.0/24", FramedRoute(N("203.0.113.0/24"), None, None)),
    ("203.0.113.0/24 0.0.0.0", FramedRoute(N("203.0.113.0/24"), None, None)),
    ("192.0.2.9", FramedRoute(N("192.0.2.9/32"), None, None)),                   # a host
    ("  192.0.2.0/25\t0.0.0.0  4294967295 ", FramedRoute(N("192.0.2.0/25"), None, 2**32 - 1)),
])
def test_framed_route_forms(text, route):
    assert parse_framed_route(text) == route


@pytest.mark.parametrize("text,why", [
    ("", "empty"),
    ("0.0.0.0/0 0.0.0.0 1", "default route"),
    ("203.0.113.1/24 0.0.0.0 1", "host bits"),
    ("2001:db8::/32 :: 1", "destination"),
    ("203.0.113.0/33", "destination"),
    ("example.net/24", "destination"),
    ("203.0.113.0/24 gw 1", "gateway"),
    ("203.0.113.0/24 0.0.0.0 -1", "metric"),
    ("203.0.113.0/24 0.0.0.0 4294967296", "metric"),
])
def test_framed_route_refused(text, why):
    with pytest.raises(ValueError) as exc:
        parse_framed_route(text)
    assert why in str(exc.value).lower(), exc.value


@pytest.mark.parametrize("ours,framed,result", [
    (1400, None, None),          # no Framed-MTU: unchanged
    (1400, 1400, None),          # the same: nothing to do
    (1400, 1500, None),          # never raised above what the tunnel carries (pppd: MIN)
    (1400, 1300, 1300),
    (1400, 68, 68),
])
def test_session_mtu_is_the_smaller(ours, framed, result):
    assert session_mtu(ours, framed) == result


@pytest.mark.parametrize("framed", [0, 64, 67])
def test_session_mtu_below_the_ipv4_minimum_is_refused(framed):
    with pytest.raises(ValueError, match="minimum"):
        session_mtu(1400, framed)
