"""Links, addresses and routes through rtnetlink (pyroute2), behind a handful of typed functions.

The product never shells out to ``ip``.  Every function takes ``netns=`` (a name under
/var/run/netns, see :mod:`fastpptp.net.netns`); ``None`` means the caller's own namespace.
Each call opens one rtnetlink socket in that namespace and closes it again: these are set-up
time operations, a few per tunnel, never on the packet path.

Addresses are ``ipaddress`` strings; prefixes are written as CIDR (``"192.0.2.1/24"``).

Point-to-point links (TUN, PPP): the kernel's ``IFA_LOCAL`` is our address and ``IFA_ADDRESS``
is the *peer* (``ip addr add 198.51.100.1 peer 198.51.100.2 dev tun0``).  On broadcast links
without a peer both carry the local address.  :class:`Address` exposes ``local`` and ``peer``
so callers never have to remember which attribute is which.

Errors: every rtnetlink failure is a :class:`NetlinkError` (an ``OSError`` with the kernel's
errno); the common ones have subclasses: :class:`LinkNotFoundError` (ENODEV),
:class:`AlreadyExistsError` (EEXIST), :class:`NotFoundError` (ESRCH/EADDRNOTAVAIL/ENOENT:
the address or route to delete is not there), :class:`NoRouteError` (ENETUNREACH/EHOSTUNREACH
from a route lookup).
"""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as _PrNetlinkError

from fastpptp.net import netns as _netns

__all__ = [
    "NetlinkError",
    "LinkNotFoundError",
    "AlreadyExistsError",
    "NotFoundError",
    "NoRouteError",
    "Link",
    "Address",
    "Route",
    "get_link",
    "link_exists",
    "list_links",
    "create_veth",
    "delete_link",
    "move_link",
    "set_link_up",
    "set_link_down",
    "set_mtu",
    "set_txqueuelen",
    "add_address",
    "delete_address",
    "list_addresses",
    "add_route",
    "delete_route",
    "list_routes",
    "route_to",
    "get_default_route",
    "replace_default_route",
    "restore_default_route",
    "pin_host_route",
]

IFF_UP = 0x1
IFA_F_NODAD = 0x02
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
IFNAMSIZ = 16


class NetlinkError(OSError):
    """An rtnetlink request failed; ``errno`` is the kernel's answer."""


class LinkNotFoundError(NetlinkError):
    """No interface with that name (ENODEV)."""


class AlreadyExistsError(NetlinkError):
    """The link, address or route already exists (EEXIST)."""


class NotFoundError(NetlinkError):
    """The address or route to delete is not there."""


class NoRouteError(NetlinkError):
    """No route to the destination (route lookup)."""


_ERRNO_CLASS = {
    errno.ENODEV: LinkNotFoundError,
    errno.EEXIST: AlreadyExistsError,
    errno.ESRCH: NotFoundError,
    errno.EADDRNOTAVAIL: NotFoundError,
    errno.ENOENT: NotFoundError,
    errno.ENETUNREACH: NoRouteError,
    errno.EHOSTUNREACH: NoRouteError,
}


def _error(code: int, what: str) -> NetlinkError:
    cls = _ERRNO_CLASS.get(code, NetlinkError)
    return cls(code, f"{what}: {os.strerror(code)}")


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mtu: int
    txqueuelen: int
    up: bool  # administratively up (IFF_UP)
    operstate: str  # "UP", "DOWN", "UNKNOWN" (TUN/PPP with a reader), ...
    kind: str | None  # "veth", "tun", None for lo / physical
    mac: str | None


@dataclass(frozen=True)
class Address:
    family: int  # 4 or 6
    local: str
    prefixlen: int
    peer: str | None  # point-to-point peer (IFA_ADDRESS when it differs from IFA_LOCAL)
    ifindex: int

    @property
    def cidr(self) -> str:
        return f"{self.local}/{self.prefixlen}"


@dataclass(frozen=True)
class Route:
    """A route from the table, or the answer of a route lookup (:func:`route_to`)."""

    family: int
    dst: str  # CIDR; "0.0.0.0/0" / "::/0" for the default route
    gateway: str | None
    ifindex: int | None
    ifname: str | None
    prefsrc: str | None
    metric: int | None
    table: int

    @property
    def is_default(self) -> bool:
        return ipaddress.ip_network(self.dst).prefixlen == 0


# --------------------------------------------------------------------------- plumbing


@contextlib.contextmanager
def _ipr(netns: str | None) -> Iterator[IPRoute]:
    if netns is None:
        ipr = IPRoute()
    else:
        if not _netns.exists(netns):
            raise _netns.NetnsNotFoundError(errno.ENOENT, f"network namespace {netns!r} not found")
        ipr = IPRoute(netns=netns, flags=0)  # flags=0: never create the namespace implicitly
    try:
        yield ipr
    finally:
        ipr.close()


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    try:
        yield
    except _PrNetlinkError as exc:
        raise _error(exc.code, what) from None


def _index(ipr: IPRoute, name: str) -> int:
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        raise LinkNotFoundError(errno.ENODEV, f"no such interface: {name!r}")
    return idx[0]


def _check_ifname(name: str) -> None:
    if not name or len(name) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid interface name: {name!r}")


def _family(addr: str) -> int:
    return ipaddress.ip_address(addr).version


def _af(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def _link_from_msg(msg) -> Link:
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        mtu=msg.get_attr("IFLA_MTU"),
        txqueuelen=msg.get_attr("IFLA_TXQLEN"),
        up=bool(msg["flags"] & IFF_UP),
        operstate=msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN",
        kind=kind,
        mac=msg.get_attr("IFLA_ADDRESS"),
    )


# --------------------------------------------------------------------------- links


def get_link(name: str, *, netns: str | None = None) -> Link:
    with _ipr(netns) as ipr, _translate(f"get link {name}"):
        msgs = ipr.get_links(_index(ipr, name))
        return _link_from_msg(msgs[0])


def link_exists(name: str, *, netns: str | None = None) -> bool:
    with _ipr(netns) as ipr:
        return bool(ipr.link_lookup(ifname=name))


def list_links(*, netns: str | None = None) -> list[Link]:
    with _ipr(netns) as ipr, _translate("list links"):
        return sorted((_link_from_msg(m) for m in ipr.get_links()), key=lambda link: link.index)


def create_veth(
    name: str, peer: str, *, netns: str | None = None, peer_netns: str | None = None,
    mtu: int | None = None,
) -> None:
    """Create a veth pair ``name``/``peer`` in ``netns``; optionally move ``peer`` to
    ``peer_netns`` at once.  Both ends stay down."""
    _check_ifname(name)
    _check_ifname(peer)
    with _ipr(netns) as ipr, _translate(f"create veth {name}/{peer}"):
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer})
        if mtu is not None:
            for end in (name, peer):
                ipr.link("set", index=_index(ipr, end), mtu=mtu)
        if peer_netns is not None:
            _move(ipr, peer, peer_netns)


def _move(ipr: IPRoute, name: str, target: str) -> None:
    fd = _netns.open_fd(target)
    try:
        ipr.link("set", index=_index(ipr, name), net_ns_fd=fd)
    finally:
        os.close(fd)


def move_link(name: str, target_netns: str, *, netns: str | None = None) -> None:
    """Move interface ``name`` from ``netns`` into ``target_netns`` (it arrives down)."""
    with _ipr(netns) as ipr, _translate(f"move {name} to {target_netns}"):
        _move(ipr, name, target_netns)


def delete_link(name: str, *, netns: str | None = None, missing_ok: bool = False) -> None:
    """Delete an interface (for veth, both ends go)."""
    with _ipr(netns) as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            if missing_ok:
                return
            raise LinkNotFoundError(errno.ENODEV, f"no such interface: {name!r}")
        with _translate(f"delete link {name}"):
            ipr.link("del", index=idx[0])


def set_link_up(name: str, *, netns: str | None = None) -> None:
    with _ipr(netns) as ipr, _translate(f"set {name} up"):
        ipr.link("set", index=_index(ipr, name), state="up")


def set_link_down(name: str, *, netns: str | None = None) -> None:
    with _ipr(netns) as ipr, _translate(f"set {name} down"):
        ipr.link("set", index=_index(ipr, name), state="down")


def set_mtu(name: str, mtu: int, *, netns: str | None = None) -> None:
    if not 68 <= mtu <= 65535:
        raise ValueError(f"MTU out of range: {mtu}")
    with _ipr(netns) as ipr, _translate(f"set {name} mtu {mtu}"):
        ipr.link("set", index=_index(ipr, name), mtu=mtu)


def set_txqueuelen(name: str, qlen: int, *, netns: str | None = None) -> None:
    """Transmit queue length (``ip link set NAME txqueuelen N``).  On a TUN this is the
    packet ring the reader drains: a longer one rides out a reader that is briefly slow."""
    if not 1 <= qlen <= 1 << 20:
        raise ValueError(f"txqueuelen out of range: {qlen}")
    with _ipr(netns) as ipr, _translate(f"set {name} txqueuelen {qlen}"):
        ipr.link("set", index=_index(ipr, name), txqlen=qlen)


# --------------------------------------------------------------------------- addresses


def _addr_args(cidr: str, peer: str | None) -> tuple[int, dict]:
    iface = ipaddress.ip_interface(cidr)
    local = str(iface.ip)
    if "/" not in cidr and peer is not None:
        prefixlen = iface.max_prefixlen  # a point-to-point address is a host address
    else:
        prefixlen = iface.network.prefixlen
    args: dict = {"prefixlen": prefixlen, "family": _af(iface.version)}
    if peer is not None:
        peer_ip = ipaddress.ip_address(peer)
        if peer_ip.version != iface.version:
            raise ValueError(f"peer {peer} is not the family of {cidr}")
        # RFC-less kernel convention: on a point-to-point link IFA_ADDRESS is the peer.
        args.update(local=local, address=str(peer_ip))
    elif iface.version == 4:
        args.update(local=local, address=local)
    else:
        args.update(address=local)
    return iface.version, args


def add_address(
    name: str, cidr: str, *, peer: str | None = None, nodad: bool = False,
    netns: str | None = None,
) -> None:
    """Add ``cidr`` (``"192.0.2.1/24"``, ``"2001:db8::1/64"``) to ``name``.

    With ``peer``, a point-to-point address (``ip addr add LOCAL peer PEER``); a bare address
    with a peer is taken as /32 (/128).  ``nodad`` skips IPv6 duplicate address detection
    (right for TUN/PPP links where there is no one to collide with).

    IPv6 with a peer: the kernel adds the route to the peer only if the link is already up,
    so bring the link up first (IPv4 does not care).
    """
    version, args = _addr_args(cidr, peer)
    if nodad and version == 6:
        args["flags"] = IFA_F_NODAD
    with _ipr(netns) as ipr, _translate(f"add address {cidr} to {name}"):
        ipr.addr("add", index=_index(ipr, name), **args)


def delete_address(
    name: str, cidr: str, *, peer: str | None = None, netns: str | None = None,
    missing_ok: bool = False,
) -> None:
    _, args = _addr_args(cidr, peer)
    with _ipr(netns) as ipr:
        try:
            with _translate(f"delete address {cidr} from {name}"):
                ipr.addr("del", index=_index(ipr, name), **args)
        except NotFoundError:
            if not missing_ok:
                raise


def list_addresses(
    name: str | None = None, *, family: int | None = None, netns: str | None = None
) -> list[Address]:
    """Addresses of ``name`` (all interfaces when None); ``family`` 4, 6 or None for both."""
    out: list[Address] = []
    with _ipr(netns) as ipr, _translate("list addresses"):
        kw = {}
        if name is not None:
            kw["index"] = _index(ipr, name)
        if family is not None:
            kw["family"] = _af(family)
        for msg in ipr.get_addr(**kw):
            fam = 4 if msg["family"] == socket.AF_INET else 6
            local = msg.get_attr("IFA_LOCAL")
            address = msg.get_attr("IFA_ADDRESS")
            peer = None
            if local is None:
                local = address
            elif address is not None and address != local:
                peer = address
            out.append(Address(fam, local, msg["prefixlen"], peer, msg["index"]))
    return out


# --------------------------------------------------------------------------- routes


def _route_from_msg(msg, names: dict[int, str]) -> Route:
    fam = 4 if msg["family"] == socket.AF_INET else 6
    dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if fam == 4 else "::")
    oif = msg.get_attr("RTA_OIF")
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    return Route(
        family=fam,
        dst=f"{dst}/{msg['dst_len']}",
        gateway=msg.get_attr("RTA_GATEWAY"),
        ifindex=oif,
        ifname=names.get(oif) if oif is not None else None,
        prefsrc=msg.get_attr("RTA_PREFSRC"),
        metric=msg.get_attr("RTA_PRIORITY"),
        table=table,
    )


def _names(ipr: IPRoute) -> dict[int, str]:
    return {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}


def _route_args(
    ipr: IPRoute, dst: str, gateway: str | None, dev: str | None, metric: int | None,
    src: str | None, table: int,
) -> dict:
    net = ipaddress.ip_network(dst, strict=True)
    args: dict = {
        "family": _af(net.version),
        "dst": str(net.network_address),
        "dst_len": net.prefixlen,
        "table": table,
    }
    if gateway is not None:
        if _family(gateway) != net.version:
            raise ValueError(f"gateway {gateway} is not the family of {dst}")
        args["gateway"] = gateway
    if dev is not None:
        args["oif"] = _index(ipr, dev)
    if metric is not None:
        args["priority"] = metric
    if src is not None:
        args["prefsrc"] = src
    return args


def add_route(
    dst: str, *, gateway: str | None = None, dev: str | None = None, metric: int | None = None,
    src: str | None = None, table: int = RT_TABLE_MAIN, replace: bool = False,
    netns: str | None = None,
) -> None:
    """Add a route to ``dst`` (CIDR; ``"0.0.0.0/0"`` is the default route) via ``gateway``
    and/or out of ``dev``.  ``replace`` overwrites a route with the same key."""
    if gateway is None and dev is None:
        raise ValueError("a route needs a gateway or a device")
    with _ipr(netns) as ipr, _translate(f"add route {dst}"):
        args = _route_args(ipr, dst, gateway, dev, metric, src, table)
        if gateway is None:
            args["scope"] = RT_SCOPE_LINK
        args.update(proto=RTPROT_STATIC, type=RTN_UNICAST)
        ipr.route("replace" if replace else "add", **args)


def delete_route(
    dst: str, *, gateway: str | None = None, dev: str | None = None, metric: int | None = None,
    table: int = RT_TABLE_MAIN, netns: str | None = None, missing_ok: bool = False,
) -> None:
    with _ipr(netns) as ipr:
        try:
            with _translate(f"delete route {dst}"):
                args = _route_args(ipr, dst, gateway, dev, metric, None, table)
                # like `ip route del`: scope "nowhere" matches a route of any scope
                args["scope"] = RT_SCOPE_NOWHERE
                ipr.route("del", **args)
        except (NotFoundError, LinkNotFoundError):
            if not missing_ok:
                raise


def list_routes(
    family: int = 4, *, table: int = RT_TABLE_MAIN, netns: str | None = None
) -> list[Route]:
    with _ipr(netns) as ipr, _translate("list routes"):
        names = _names(ipr)
        out = []
        for msg in ipr.get_routes(family=_af(family)):
            r = _route_from_msg(msg, names)
            if r.table == table and msg["type"] == RTN_UNICAST:
                out.append(r)
        return out


def route_to(addr: str, *, netns: str | None = None) -> Route:
    """Ask the kernel which route a packet to ``addr`` takes (``ip route get``)."""
    version = _family(addr)
    with _ipr(netns) as ipr, _translate(f"route to {addr}"):
        msgs = ipr.route("get", family=_af(version), dst=addr)
        if not msgs:
            raise NoRouteError(errno.ENETUNREACH, f"route to {addr}: no answer")
        r = _route_from_msg(msgs[0], _names(ipr))
        # The answer names the destination itself as a host route.
        return r


def get_default_route(family: int = 4, *, netns: str | None = None) -> Route | None:
    """The main table's default route with the lowest metric, or None."""
    defaults = [r for r in list_routes(family, netns=netns) if r.is_default]
    if not defaults:
        return None
    return min(defaults, key=lambda r: r.metric or 0)


def replace_default_route(
    *, dev: str | None = None, gateway: str | None = None, family: int = 4,
    netns: str | None = None,
) -> Route | None:
    """Point the default route at ``dev``/``gateway`` (pppd's ``replacedefaultroute``).

    Returns the default route it replaced (or None) for :func:`restore_default_route`.
    """
    previous = get_default_route(family, netns=netns)
    dst = "0.0.0.0/0" if family == 4 else "::/0"
    metric = previous.metric if previous is not None else None
    add_route(dst, gateway=gateway, dev=dev, metric=metric, replace=True, netns=netns)
    return previous


def restore_default_route(
    previous: Route | None, *, dev: str | None = None, family: int = 4,
    netns: str | None = None,
) -> None:
    """Undo :func:`replace_default_route`: put ``previous`` back, or remove our default
    route out of ``dev`` when there was none.  Safe if ``dev`` has disappeared meanwhile."""
    dst = "0.0.0.0/0" if family == 4 else "::/0"
    if previous is not None:
        add_route(
            dst, gateway=previous.gateway, dev=previous.ifname, metric=previous.metric,
            replace=True, netns=netns,
        )
    elif dev is not None:
        delete_route(dst, dev=dev, netns=netns, missing_ok=True)


def pin_host_route(addr: str, *, netns: str | None = None) -> Route | None:
    """Add a host route to ``addr`` along the path it takes now, so that a default route
    through the tunnel does not swallow the tunnel's own GRE/TCP traffic to the server.

    Returns the route added (delete it with ``delete_route(r.dst, gateway=r.gateway,
    dev=r.ifname)``), or None when ``addr`` is one of our own addresses.
    """
    current = route_to(addr, netns=netns)
    if current.ifname in (None, "lo"):
        return None
    host = f"{addr}/{32 if _family(addr) == 4 else 128}"
    add_route(host, gateway=current.gateway, dev=current.ifname, replace=True, netns=netns)
    return Route(
        family=current.family, dst=host, gateway=current.gateway, ifindex=current.ifindex,
        ifname=current.ifname, prefsrc=current.prefsrc, metric=None, table=RT_TABLE_MAIN,
    )
