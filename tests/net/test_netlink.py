"""fastpptp.net.netlink and fastpptp.net.netns inside fresh namespaces (`ip` is the oracle)."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess

import pytest

from fastpptp.net import netlink, netns
from support.netnsrig import namespace, run_in, two_namespaces, unique_suffix

pytestmark = pytest.mark.netns


def ip_json(ns: str, *args: str):
    return json.loads(run_in(ns, ["ip", "-j", *args]).stdout or "[]")


def ns_inode_of_thread() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


# ------------------------------------------------------------------------------ netns


def test_netns_create_list_remove_and_ip_sees_it():
    name = f"fptn{unique_suffix()}"
    netns.create(name)
    try:
        assert netns.exists(name)
        assert name in netns.list_namespaces()
        assert netns.path(name) == f"/var/run/netns/{name}"
        # `ip netns exec` works on it: a fresh namespace holds only lo
        links = ip_json(name, "link", "show")
        assert [link["ifname"] for link in links] == ["lo"]
        with pytest.raises(netns.NetnsExistsError):
            netns.create(name)
    finally:
        netns.remove(name)
    assert not netns.exists(name)
    with pytest.raises(netns.NetnsNotFoundError) as ei:
        netns.remove(name)
    assert ei.value.errno == errno.ENOENT
    netns.remove(name, missing_ok=True)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x" * 65, "sp ace"])
def test_netns_rejects_bad_names(bad):
    with pytest.raises(ValueError):
        netns.path(bad)


def test_entered_switches_this_thread_and_restores_even_on_error():
    before = ns_inode_of_thread()
    with namespace() as ns:
        target = os.stat(netns.path(ns)).st_ino
        with netns.entered(ns):
            assert ns_inode_of_thread() == target
        assert ns_inode_of_thread() == before
        with pytest.raises(RuntimeError):
            with netns.entered(ns):
                raise RuntimeError("boom")
        assert ns_inode_of_thread() == before
        assert netns.run_in(ns, ns_inode_of_thread) == target
    with pytest.raises(netns.NetnsNotFoundError):
        with netns.entered(ns):
            pass


def test_open_socket_is_bound_to_the_namespace():
    with two_namespaces() as rig:
        s = netns.open_socket(rig.b, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((rig.addr_b, 0))
            r = netns.open_socket(rig.a, socket.AF_INET, socket.SOCK_DGRAM)
            try:
                r.bind((rig.addr_a, 0))
                r.settimeout(5)
                s.sendto(b"hello", r.getsockname())
                data, src = r.recvfrom(100)
                assert data == b"hello" and src[0] == rig.addr_b
            finally:
                r.close()
        finally:
            s.close()
        # an address that exists only inside B (the root namespace may itself use 192.0.2.x)
        netlink.add_address("lo", "203.0.113.77/32", netns=rig.b)
        inside = netns.open_socket(rig.b, socket.AF_INET, socket.SOCK_DGRAM)
        inside.bind(("203.0.113.77", 0))
        inside.close()
        here = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(OSError):
            here.bind(("203.0.113.77", 0))
        here.close()


# ------------------------------------------------------------------------------ links


def test_veth_create_move_up_down_mtu():
    with namespace() as ns1, namespace() as ns2:
        netlink.create_veth("vx0", "vx1", netns=ns1)
        names = [link.name for link in netlink.list_links(netns=ns1)]
        assert "vx0" in names and "vx1" in names
        link = netlink.get_link("vx0", netns=ns1)
        assert link.kind == "veth" and not link.up and link.mtu == 1500
        netlink.move_link("vx1", ns2, netns=ns1)
        assert not netlink.link_exists("vx1", netns=ns1)
        assert netlink.link_exists("vx1", netns=ns2)
        netlink.set_mtu("vx0", 1400, netns=ns1)
        netlink.set_txqueuelen("vx0", 4321, netns=ns1)
        netlink.set_link_up("vx0", netns=ns1)
        link = netlink.get_link("vx0", netns=ns1)
        assert link.up and link.mtu == 1400 and link.txqueuelen == 4321
        shown = ip_json(ns1, "link", "show", "dev", "vx0")[0]
        assert shown["mtu"] == 1400 and "UP" in shown["flags"] and shown["txqlen"] == 4321
        with pytest.raises(ValueError):
            netlink.set_txqueuelen("vx0", 0, netns=ns1)
        netlink.set_link_down("vx0", netns=ns1)
        assert not netlink.get_link("vx0", netns=ns1).up
        netlink.delete_link("vx0", netns=ns1)
        assert not netlink.link_exists("vx1", netns=ns2)  # a veth goes as a pair
        netlink.delete_link("vx0", netns=ns1, missing_ok=True)


def test_create_veth_with_peer_in_other_namespace_and_mtu():
    with namespace() as ns1, namespace() as ns2:
        netlink.create_veth("vy0", "vy1", netns=ns1, peer_netns=ns2, mtu=9000)
        assert netlink.get_link("vy0", netns=ns1).mtu == 9000
        assert netlink.get_link("vy1", netns=ns2).mtu == 9000


def test_link_errors_are_typed():
    with namespace() as ns:
        with pytest.raises(netlink.LinkNotFoundError) as ei:
            netlink.set_link_up("nope0", netns=ns)
        assert ei.value.errno == errno.ENODEV
        with pytest.raises(netlink.LinkNotFoundError):
            netlink.get_link("nope0", netns=ns)
        with pytest.raises(netlink.LinkNotFoundError):
            netlink.delete_link("nope0", netns=ns)
        netlink.create_veth("vz0", "vz1", netns=ns)
        with pytest.raises(netlink.AlreadyExistsError):
            netlink.create_veth("vz0", "vz2", netns=ns)
        with pytest.raises(ValueError):
            netlink.create_veth("x" * 16, "vz3", netns=ns)
        with pytest.raises(ValueError):
            netlink.set_mtu("vz0", 20, netns=ns)
    with pytest.raises(netns.NetnsNotFoundError):
        netlink.list_links(netns=ns)  # gone: never re-created implicitly
    assert not netns.exists(ns)


# ------------------------------------------------------------------------------ addresses


def test_addresses_ipv4_ipv6_and_point_to_point_peer():
    with namespace() as ns:
        netlink.create_veth("va0", "va1", netns=ns)
        netlink.set_link_up("va0", netns=ns)
        netlink.add_address("va0", "192.0.2.1/24", netns=ns)
        netlink.add_address("va0", "198.51.100.1", peer="198.51.100.2", netns=ns)
        netlink.add_address("va0", "2001:db8::1/64", nodad=True, netns=ns)
        netlink.add_address("va0", "2001:db8:1::1", peer="2001:db8:1::2", nodad=True, netns=ns)

        got = {(a.local, a.prefixlen, a.peer) for a in netlink.list_addresses("va0", netns=ns)}
        assert ("192.0.2.1", 24, None) in got
        assert ("198.51.100.1", 32, "198.51.100.2") in got
        assert ("2001:db8::1", 64, None) in got
        assert ("2001:db8:1::1", 128, "2001:db8:1::2") in got
        v4 = netlink.list_addresses("va0", family=4, netns=ns)
        assert {a.family for a in v4} == {4} and len(v4) == 2

        # oracle: iproute2 shows the peer as "address" and ours as "local"
        info = ip_json(ns, "addr", "show", "dev", "va0")[0]["addr_info"]
        p2p = [a for a in info if a.get("address") == "198.51.100.2"]
        assert p2p and p2p[0]["local"] == "198.51.100.1" and p2p[0]["prefixlen"] == 32
        # the peer is reachable via a connected host route
        r = netlink.route_to("198.51.100.2", netns=ns)
        assert r.ifname == "va0" and r.gateway is None and r.prefsrc == "198.51.100.1"
        r6 = netlink.route_to("2001:db8:1::2", netns=ns)  # link was up: peer route exists
        assert r6.family == 6 and r6.ifname == "va0" and r6.gateway is None

        with pytest.raises(netlink.AlreadyExistsError):
            netlink.add_address("va0", "192.0.2.1/24", netns=ns)
        netlink.delete_address("va0", "198.51.100.1", peer="198.51.100.2", netns=ns)
        netlink.delete_address("va0", "2001:db8::1/64", netns=ns)
        left = {a.local for a in netlink.list_addresses("va0", netns=ns)}
        assert "198.51.100.1" not in left and "2001:db8::1" not in left and "192.0.2.1" in left
        with pytest.raises(netlink.NotFoundError):
            netlink.delete_address("va0", "198.51.100.1", peer="198.51.100.2", netns=ns)
        netlink.delete_address("va0", "198.51.100.1", peer="198.51.100.2", netns=ns,
                               missing_ok=True)
        with pytest.raises(ValueError):
            netlink.add_address("va0", "192.0.2.9/24", peer="2001:db8::9", netns=ns)


# ------------------------------------------------------------------------------ routes


def test_routes_host_route_via_gateway_lookup_and_delete():
    with two_namespaces() as rig:
        ns = rig.a
        netlink.add_route("203.0.113.7/32", gateway=rig.addr_b, netns=ns)
        r = netlink.route_to("203.0.113.7", netns=ns)
        assert (r.gateway, r.ifname, r.prefsrc) == (rig.addr_b, rig.veth_a, rig.addr_a)
        routes = {x.dst: x for x in netlink.list_routes(netns=ns)}
        assert routes["203.0.113.7/32"].gateway == rig.addr_b
        assert routes["192.0.2.0/24"].gateway is None  # connected
        shown = ip_json(ns, "route", "show", "203.0.113.7")
        assert shown and shown[0]["gateway"] == rig.addr_b
        netlink.add_route("203.0.113.64/26", dev=rig.veth_a, metric=7, netns=ns)
        r = netlink.route_to("203.0.113.70", netns=ns)
        assert r.ifname == rig.veth_a and r.gateway is None
        with pytest.raises(netlink.AlreadyExistsError):
            netlink.add_route("203.0.113.7/32", gateway=rig.addr_b, netns=ns)
        netlink.delete_route("203.0.113.7/32", gateway=rig.addr_b, netns=ns)
        netlink.delete_route("203.0.113.64/26", dev=rig.veth_a, metric=7, netns=ns)
        with pytest.raises(netlink.NoRouteError):
            netlink.route_to("203.0.113.7", netns=ns)
        with pytest.raises(netlink.NotFoundError):
            netlink.delete_route("203.0.113.7/32", gateway=rig.addr_b, netns=ns)
        netlink.delete_route("203.0.113.7/32", netns=ns, missing_ok=True)
        with pytest.raises(ValueError):
            netlink.add_route("203.0.113.0/24", netns=ns)  # neither gateway nor device
        with pytest.raises(ValueError):
            netlink.add_route("203.0.113.1/24", dev=rig.veth_a, netns=ns)  # host bits set


def test_default_route_replace_and_restore_and_pinned_host_route():
    with two_namespaces() as rig:
        ns = rig.a
        assert netlink.get_default_route(netns=ns) is None
        netlink.add_route("0.0.0.0/0", gateway=rig.addr_b, netns=ns)
        original = netlink.get_default_route(netns=ns)
        assert original is not None and original.is_default
        assert (original.gateway, original.ifname) == (rig.addr_b, rig.veth_a)

        # a "tunnel" link with a point-to-point address
        netlink.create_veth("tun9", "tun9p", netns=ns)
        netlink.set_link_up("tun9", netns=ns)
        netlink.set_link_up("tun9p", netns=ns)
        netlink.add_address("tun9", "198.51.100.2", peer="198.51.100.1", netns=ns)

        # the client pins its route to the server before the default moves into the tunnel
        pinned = netlink.pin_host_route("203.0.113.10", netns=ns)
        assert pinned is not None and pinned.dst == "203.0.113.10/32"
        assert pinned.gateway == rig.addr_b and pinned.ifname == rig.veth_a

        previous = netlink.replace_default_route(dev="tun9", netns=ns)
        assert previous == original
        now = netlink.get_default_route(netns=ns)
        assert now.ifname == "tun9" and now.gateway is None
        assert len([r for r in netlink.list_routes(netns=ns) if r.is_default]) == 1
        assert netlink.route_to("8.8.8.8", netns=ns).ifname == "tun9"
        assert netlink.route_to("203.0.113.10", netns=ns).ifname == rig.veth_a

        netlink.restore_default_route(previous, dev="tun9", netns=ns)
        restored = netlink.get_default_route(netns=ns)
        assert (restored.gateway, restored.ifname) == (rig.addr_b, rig.veth_a)
        netlink.delete_route(pinned.dst, gateway=pinned.gateway, dev=pinned.ifname, netns=ns)

        # no default route before: restore just removes ours
        netlink.delete_route("0.0.0.0/0", gateway=rig.addr_b, netns=ns)
        assert netlink.replace_default_route(dev="tun9", netns=ns) is None
        assert netlink.get_default_route(netns=ns).ifname == "tun9"
        netlink.restore_default_route(None, dev="tun9", netns=ns)
        assert netlink.get_default_route(netns=ns) is None
        assert netlink.pin_host_route(rig.addr_a, netns=ns) is None  # local address


def test_ipv6_route_and_lookup():
    with namespace() as ns:
        netlink.create_veth("v6a", "v6b", netns=ns)
        netlink.set_link_up("v6a", netns=ns)
        netlink.set_link_up("v6b", netns=ns)
        netlink.add_address("v6a", "2001:db8:5::1/64", nodad=True, netns=ns)
        netlink.add_route("2001:db8:6::/48", gateway="2001:db8:5::2", netns=ns)
        r = netlink.route_to("2001:db8:6::1", netns=ns)
        assert r.family == 6 and r.gateway == "2001:db8:5::2" and r.ifname == "v6a"
        assert "2001:db8:6::/48" in {x.dst for x in netlink.list_routes(6, netns=ns)}
        netlink.delete_route("2001:db8:6::/48", gateway="2001:db8:5::2", netns=ns)


def test_popen_runs_the_command_inside_the_namespace():
    with namespace() as ns:
        proc = netns.popen(ns, ["readlink", "/proc/self/ns/net"], stdout=subprocess.PIPE,
                           text=True)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert out.strip() == f"net:[{os.stat(netns.path(ns)).st_ino}]"


def test_rig_two_namespaces_cleans_up_even_on_failure():
    from support import netnsrig
    with pytest.raises(RuntimeError):
        with two_namespaces() as rig:
            names = (rig.a, rig.b)
            proc = rig.spawn(rig.a, ["sleep", "30"])
            assert netlink.get_link(rig.veth_a, netns=rig.a).up
            raise RuntimeError("test body failed")
    assert proc.returncode is not None  # killed by PID
    assert not any(netns.exists(n) for n in names)
    assert netnsrig.wait_for(lambda: 42, timeout=1) == 42
    with pytest.raises(TimeoutError):
        netnsrig.wait_for(lambda: None, timeout=0.1, interval=0.01)
    assert isinstance(netnsrig.netem_supported(), bool)
