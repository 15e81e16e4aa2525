"""The Access-Accept's Framed-MTU and Framed-Route as a PPTP server applies them to a session's
own interface (``--per-session-interfaces``).  Pure: values in, decisions out; the server makes
the netlink calls.

* Framed-MTU (RFC 2865 §5.12): as pppd's radius plugin, the interface MTU becomes
  ``min(its MTU, Framed-MTU)`` -- RADIUS may lower the MTU, never raise it above what the
  tunnel carries (:func:`session_mtu`).  LCP still negotiates the MRU; this is the kernel's
  side, so what the kernel routes into the session is never bigger.
* Framed-Route (RFC 2865 §5.22): ``prefix[/bits] gateway metric ...``, as accel-ppp installs
  it: a route to ``prefix`` through the session's interface; gateway 0.0.0.0 (or none) = the
  user's own address (§5.22: "the IP address of the user SHOULD be used"), which on a
  point-to-point interface is just the interface; the first metric is the route's priority
  (:func:`parse_framed_route`).  A prefix without ``/bits`` is one host (/32).  A default route
  (``/0``) is refused: one user's reply never takes over the NAS's own default route.

With the shared TUN neither applies: the engine finds a session by its peer's address only, so a
prefix routed into the shared TUN would reach no one (the server logs that and goes on).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["FramedRoute", "parse_framed_route", "session_mtu", "MIN_MTU"]

#: the least MTU an IPv4 interface may have (RFC 791: every host takes 68-octet datagrams)
MIN_MTU = 68
_MAX_MTU = 65535


@dataclass(frozen=True)
class FramedRoute:
    """One Framed-Route: ``destination`` through the session's interface, via ``gateway``
    (None: the user's address, i.e. straight into the point-to-point link), ``metric`` the
    route priority (None: the kernel's default)."""
    destination: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None = None
    metric: int | None = None


def parse_framed_route(text: str) -> FramedRoute:
    """``prefix[/bits] [gateway [metric ...]]`` -> FramedRoute; ValueError for anything else
    (not IPv4, host bits set, a /0, a metric that is no 32-bit number)."""
    words = text.split()
    if not words:
        raise ValueError("empty Framed-Route")
    try:
        dst = ipaddress.IPv4Network(words[0] if "/" in words[0] else words[0] + "/32", strict=True)
    except ValueError as exc:
        raise ValueError(f"Framed-Route destination {words[0][:40]!r}: {exc}") from None
    if dst.prefixlen == 0:
        raise ValueError("Framed-Route to 0.0.0.0/0 refused: it would replace the NAS's default route")
    gateway: ipaddress.IPv4Address | None = None
    if len(words) > 1:
        try:
            gateway = ipaddress.IPv4Address(words[1])
        except ValueError:
            raise ValueError(f"Framed-Route gateway {words[1][:40]!r} is no IPv4 address") from None
        if int(gateway) == 0:
            gateway = None
    metric: int | None = None
    if len(words) > 2:
        if not words[2].isdigit() or int(words[2]) >= 1 << 32:
            raise ValueError(f"Framed-Route metric {words[2][:20]!r} is no 32-bit number")
        metric = int(words[2])
    return FramedRoute(dst, gateway, metric)


def session_mtu(interface_mtu: int, framed_mtu: int | None) -> int | None:
    """The MTU to set on the session's interface, or None to leave ``interface_mtu``:
    ``min(interface_mtu, framed_mtu)`` as pppd's radius plugin.  ValueError for a Framed-MTU
    an interface cannot have (below MIN_MTU; RFC 2865 §5.12 allows 64)."""
    if framed_mtu is None or framed_mtu >= interface_mtu:
        return None
    if not MIN_MTU <= framed_mtu <= _MAX_MTU:
        raise ValueError(f"Framed-MTU {framed_mtu} is below the IPv4 minimum {MIN_MTU}")
    return framed_mtu
