"""Framed-IP-Address 255.255.255.255 ("the user may choose", RFC 2865 §5.8) through the whole
server (issue 11): our client asks IPCP for its own address; with pppd's
``ipcp-accept-remote`` the server gives it that address, and a second client asking for the
same one gets a pool address instead (the shared TUN routes by address: two sessions with
one address would take each other's engine and host route).  Without ipcp-accept-remote
(pppd's default) the peer gets a pool address.

The RADIUS server is a fake verifier (the embedding API RADIUS plugs into) answering
Access-Accept with Framed-IP-Address 255.255.255.255; the wire side of that attribute is
tested against FreeRADIUS in test_freeradius.py.  Set-up as tests/integration/
test_inprocess_verifier.py: a fresh network namespace, FakeTun socketpairs as TUNs.
"""
from __future__ import annotations

import asyncio

import pytest

from fastpptp.client import Client, ClientConfig
from fastpptp.config import parse_ppp_options
from fastpptp.net import netns
from fastpptp.ppp.auth.base import FRAMED_IP_PEER_CHOOSES, ReplyAttributes, VerifyRequest, VerifyResult
from fastpptp.ppp.auth.local import LocalVerifier
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.server import Server, ServerConfig
from support.inproc import FakeTun, free_port, recv_packet, udp_packet
from support.inproc import wait_up
from fastpptp.tools.netrig import namespace as lo_namespace

pytestmark = pytest.mark.netns

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
CHOSEN = "203.0.113.50"
POOL = ("198.51.100.2", "198.51.100.3")


@pytest.fixture
def peer_ns():
    with lo_namespace("peeraddr") as name, netns.entered(name):
        yield name


class PeerChoosesVerifier:
    """Access-Accept with Framed-IP-Address 255.255.255.255 for a right password."""

    def __init__(self):
        self.local = LocalVerifier(StaticBackend(USERS))

    async def __call__(self, request: VerifyRequest) -> VerifyResult:
        await asyncio.sleep(0.05)                 # a remote AAA server's round trip
        r = self.local.verify(request)
        if not r.accepted:
            return r
        return VerifyResult(**{**vars(r), "attributes": ReplyAttributes(framed_ip=FRAMED_IP_PEER_CHOOSES)})


async def start_server(tmp_path, opts, tuns):
    def make(name):
        tuns["server"] = FakeTun(name)
        return tuns["server"]

    port = free_port()
    server = Server(ServerConfig(listen="127.0.0.1", port=port, local_ips=("198.51.100.1",),
                                 remote_ips=POOL,
                                 ppp=parse_ppp_options(opts + " require-mschap-v2 require-mppe-128"
                                                       " name testsrv lcp-echo-interval 0"),
                                 control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None),
                    auth_backend=StaticBackend({}), verifier=PeerChoosesVerifier(),
                    tun_factory=make, configure_network=False)
    await server.start()
    return server, port


def make_client(port, user, wants, tuns, source):
    def make(name):
        tuns[user] = FakeTun(name)
        return tuns[user]

    return Client(ClientConfig(server="127.0.0.1", port=port, user=user, password=USERS[user],
                               ppp=parse_ppp_options(f"{wants}: require-mppe-128 remotename testsrv"),
                               local_address=source, ip_up=None, ip_down=None),
                  tun_factory=make, configure_network=False)


async def both_ask_for(tmp_path, opts):
    """alice then bob, both asking for CHOSEN: (their addresses, the server's sessions, and
    whether a packet to each address reached the right client through the shared TUN)."""
    tuns: dict = {}
    server, port = await start_server(tmp_path, opts, tuns)
    clients = [make_client(port, "alice", CHOSEN, tuns, "127.0.0.2"),
               make_client(port, "bob", CHOSEN, tuns, "127.0.0.3")]
    tasks = []
    try:
        ups = []
        for c in clients:                        # one after the other: alice holds CHOSEN first
            tasks.append(asyncio.ensure_future(c.run()))
            ups.append(await wait_up(c, tasks[-1]))
        addrs = [c.session.info.local_ip if up else None for c, up in zip(clients, ups, strict=True)]
        sessions = sorted((s["user"], s["remote_ip"]) for s in server.snapshot()["sessions"])
        routed = []
        for user, addr in zip(("alice", "bob"), addrs, strict=True):
            if addr is None:
                routed.append(False)
                continue
            down = udp_packet("198.51.100.1", addr, f"to {user}".encode())
            tuns["server"].peer.send(down)
            routed.append(await recv_packet(tuns[user]) == down)
        return addrs, sessions, routed
    finally:
        for c, t in zip(clients, tasks, strict=False):
            if not t.done():
                c.stop()
                await asyncio.wait_for(t, 15)
        await server.stop("test over")


def test_radius_255_with_ipcp_accept_remote_the_peer_chooses_once(peer_ns, tmp_path):
    addrs, sessions, routed = asyncio.run(both_ask_for(tmp_path, "ipcp-accept-remote"))
    assert addrs == [CHOSEN, POOL[0]]            # bob's request for alice's address: Nak'd
    assert sessions == [("alice", CHOSEN), ("bob", POOL[0])]
    assert routed == [True, True]                # each address reaches its own session


def test_radius_255_without_ipcp_accept_remote_gives_pool_addresses(peer_ns, tmp_path):
    addrs, sessions, routed = asyncio.run(both_ask_for(tmp_path, ""))
    assert addrs == list(POOL)
    assert sessions == [("alice", POOL[0]), ("bob", POOL[1])]
    assert routed == [True, True]


def test_a_peer_may_not_choose_an_address_this_host_has_or_reaches_directly(peer_ns, tmp_path):
    """With the server configuring the network: the kernel's route to a peer-chosen address
    decides (fastpptp.config.peer_route_problem): one of ours or on a LAN -- the gateway, a
    neighbour -- is refused (its host route over the tunnel would take that traffic); one
    reached through the gateway is fine.  A veth pair, 192.0.2.1/24 on one end, and a default
    route via 192.0.2.254, inside the test's own namespace (removed with it)."""
    import ipaddress
    import subprocess

    for cmd in (["link", "add", "peerv0", "type", "veth", "peer", "name", "peerv1"],
                ["addr", "add", "192.0.2.1/24", "dev", "peerv0"], ["link", "set", "peerv1", "up"],
                ["link", "set", "peerv0", "up"],
                ["route", "add", "default", "via", "192.0.2.254"]):
        subprocess.run(["ip", "-n", peer_ns, *cmd], check=True)
    server = Server(ServerConfig(local_ips=("198.51.100.1",), remote_ips=POOL, secrets_file=None,
                                 control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None),
                    auth_backend=StaticBackend(USERS), configure_network=True)

    def allowed(addr: str) -> bool:
        return server._peer_address_allowed("alice", ipaddress.IPv4Address(addr))

    assert not allowed("192.0.2.1")          # this host's own address
    assert not allowed("192.0.2.254")        # the gateway, on the LAN
    assert not allowed("192.0.2.7")          # a neighbour on the LAN
    assert allowed(CHOSEN)                   # through the gateway: the peer's host route wins


def test_peer_route_problem():
    from fastpptp.config import peer_route_problem
    assert "this host" in peer_route_problem(None, "lo", ["fpptp0"])
    assert "directly on eth0" in peer_route_problem(None, "eth0", ["fpptp0"])
    assert peer_route_problem("192.0.2.254", "eth0", ["fpptp0"]) is None
    assert peer_route_problem(None, "fpptp0", ["fpptp0"]) is None     # over our own TUN
