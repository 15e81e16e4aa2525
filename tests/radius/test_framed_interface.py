"""The Access-Accept's Framed-MTU and Framed-Route applied to a session's own interface
(``--per-session-interfaces``), end to end: a real FreeRADIUS 3 sends them, our in-process
server gives the call a real TUN device (ppp0) in a fresh network namespace, and the kernel
there routes the Framed-Route's prefix through the tunnel to our client (a FakeTun).

Shown: ppp0's MTU is min(ours, Framed-MTU); the Framed-Route's prefix is routed through ppp0
with its metric; a packet the namespace's kernel sends to an address in that prefix comes out
at the client; the route goes with the interface when the call ends; a Framed-Route that cannot
be applied (a default route) is logged and left out while the session comes up.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket

import pytest

from fastpptp.client import Client, ClientConfig
from fastpptp.config import parse_ppp_options
from fastpptp.net import netlink, netns
from fastpptp.radius.client import ClientPolicy, RadiusServer
from fastpptp.radius.settings import RadiusSettings
from fastpptp.server import Server, ServerConfig
from support.freeradius import FreeRadius, RadiusUser, freeradius_missing
from support.inproc import FakeTun, free_port
from fastpptp.tools.netrig import namespace as lo_namespace

pytestmark = [pytest.mark.slow, pytest.mark.netns]

SECRET = "framed-s3cret"
USERS = [
    RadiusUser("erin", "Erin-pw-5.22", {
        "Framed-MTU": "1300",
        "Framed-Route": "203.0.113.0/24 0.0.0.0 7",
    }),
    # a default route is never taken from a user's reply; the session still comes up
    RadiusUser("frank", "frank-pw", {"Framed-Route": "0.0.0.0/0 0.0.0.0 1"}),
]
PASSWORDS = {u.name: u.password for u in USERS}


@pytest.fixture(scope="module")
def framed_ns():
    """A namespace with lo up, FreeRADIUS (USERS) on its 127.0.0.1."""
    reason = freeradius_missing()
    if reason is not None:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TUN devices)")
    with lo_namespace("fpfrm") as name, FreeRadius(USERS, secret=SECRET, netns=name) as fr:
        yield name, fr


async def nl(fn, *args):
    """A netlink query off the loop (pyroute2 runs its own event loop): the executor's
    thread is made by the loop's, inside the test's namespace."""
    return await asyncio.to_thread(fn, *args)


def _udp_dst(packet: bytes) -> tuple[str, bytes] | None:
    """(destination, UDP payload) of an IPv4 UDP packet, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    ihl = (packet[0] & 0x0F) * 4
    return socket.inet_ntoa(packet[16:20]), packet[ihl + 8:]


async def _run(tmp_path, fr: FreeRadius, user: str):
    port = free_port()
    server = Server(ServerConfig(
        listen="127.0.0.1", port=port, local_ips=("198.51.100.1",),
        remote_ips=("198.51.100.2", "198.51.100.3"),
        ppp=parse_ppp_options("require-mschap-v2 require-mppe-128 name testsrv lcp-echo-interval 0"),
        secrets_file=str(tmp_path / "no-chap-secrets"), control_socket=str(tmp_path / "ctl.sock"),
        ip_up=None, ip_down=None, per_session_interfaces=True,
        radius=RadiusSettings(auth_servers=(RadiusServer(fr.auth_address, SECRET.encode()),),
                              policy=ClientPolicy(timeout=0.5, tries=2), nas_identifier="framed-e2e")),
        configure_network=True)                      # real TUNs, addressed and routed by us
    await server.start()
    tuns: dict[str, FakeTun] = {}

    def client_tun(name):
        tuns["client"] = FakeTun(name)
        return tuns["client"]

    client = Client(ClientConfig(server="127.0.0.1", port=port, user=user, password=PASSWORDS[user],
                                 ppp=parse_ppp_options("require-mppe-128 remotename testsrv"),
                                 local_address="127.0.0.2", ip_up=None, ip_down=None),
                    tun_factory=client_tun, configure_network=False)
    task = asyncio.ensure_future(client.run())
    r: dict = {}
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait({task, asyncio.ensure_future(client.up.wait())}, timeout=20,
                           return_when=asyncio.FIRST_COMPLETED)
        r["up"] = client.up.is_set()
        if not r["up"]:
            return r
        # the interface is configured off the loop: wait for its address (then the routes)
        deadline = loop.time() + 5
        while loop.time() < deadline and not any(
                a.local == "198.51.100.1" for a in await nl(netlink.list_addresses, "ppp0")):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        r["mtu"] = (await nl(netlink.get_link, "ppp0")).mtu
        r["routes"] = {(x.dst, x.ifname, x.gateway, x.metric) for x in await nl(netlink.list_routes)
                       if x.ifname == "ppp0"}
        r["default"] = [x.ifname for x in await nl(netlink.list_routes) if x.is_default]
        if user != "erin":
            return r
        # the namespace's kernel sends to an address in the Framed-Route: out at our client
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"via Framed-Route", ("203.0.113.5", 9))
        got = None
        deadline = loop.time() + 5
        while got is None and loop.time() < deadline:
            try:
                pkt = tuns["client"].peer.recv(65536)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            got = _udp_dst(pkt)
        r["delivered"] = got
        return r
    finally:
        try:
            if not task.done():
                client.stop()
                r["rc"] = await asyncio.wait_for(task, 15)
            deadline = loop.time() + 5
            while loop.time() < deadline and await nl(netlink.link_exists, "ppp0"):
                await asyncio.sleep(0.05)
            r["after"] = [x.dst for x in await nl(netlink.list_routes) if x.dst == "203.0.113.0/24"]
        finally:
            await server.stop("test over")


def test_framed_mtu_and_route_on_the_sessions_interface(framed_ns, tmp_path):
    name, fr = framed_ns
    with netns.entered(name):
        r = asyncio.run(_run(tmp_path, fr, "erin"))
    assert r["up"], "tunnel did not come up through FreeRADIUS"
    assert r["mtu"] == 1300                                   # min(1400, Framed-MTU 1300)
    assert ("203.0.113.0/24", "ppp0", None, 7) in r["routes"], r["routes"]
    assert r["delivered"] == ("203.0.113.5", b"via Framed-Route")
    assert r["rc"] == 0
    assert r["after"] == []                                   # gone with ppp0


def test_a_default_route_from_radius_is_refused_and_the_session_lives(framed_ns, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="fastpptp")
    name, fr = framed_ns
    with netns.entered(name):
        r = asyncio.run(_run(tmp_path, fr, "frank"))
    assert r["up"] and r["rc"] == 0
    assert r["default"] == []                                 # no default route appeared
    assert r["mtu"] == 1400                                   # no Framed-MTU: ours
    assert "0.0.0.0/0 refused" in caplog.text
