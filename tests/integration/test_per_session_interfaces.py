"""fastpptp-server --per-session-interfaces: one ppp<unit> interface per call, like pppd.

Two levels:
* in process (fake TUNs, loopback in a private namespace): unit allocation and reuse, each
  call's packets on its own TUN, the engine's TUN table, "interface" in the status document;
* as programs in namespaces (tests/test_integration_products.py's lab): real TUN devices
  ppp0..ppp2 with ``local peer remote`` addressing in the server namespace, pings through
  each, an interface gone when its client hangs up and its unit reused by the next client.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket

import pytest

from fastpptp.client import Client, ClientConfig
from fastpptp.config import parse_ppp_options
from fastpptp.tools.demo import ping
from fastpptp.net import netlink
from fastpptp.ppp.auth.secrets import CallableBackend
from fastpptp.server import Server, ServerConfig
from support.inproc import FakeTun, recv_packet, udp_packet
from support.lab import TUN_SERVER, wait_until

pytestmark = pytest.mark.netns

USERS = {f"u{i}": f"pw{i}" for i in range(4)}


# --------------------------------------------------------------------------- in process
async def _per_session_in_process(tmp_path, impl):
    made: dict[str, list[FakeTun]] = {}

    def server_tun(name):
        t = FakeTun(name)
        made.setdefault(name, []).append(t)
        return t

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    events = []
    server = Server(ServerConfig(listen="127.0.0.1", port=port, local_ips=("198.51.100.1",),
                                 remote_ips=tuple(f"198.51.100.{i}" for i in range(2, 8)),
                                 ppp=parse_ppp_options("require-mschap-v2 require-mppe-128 name testsrv "
                                                       "lcp-echo-interval 0"),
                                 control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None,
                                 per_session_interfaces=True, impl=impl),
                    auth_backend=CallableBackend(lambda user, srv: USERS.get(user)),
                    on_event=lambda kind, info: events.append((kind, info)),
                    tun_factory=server_tun, configure_network=False)
    await server.start()
    clients: dict[int, tuple[Client, asyncio.Future, FakeTun]] = {}

    async def connect(i, source):
        holder = {}

        def client_tun(name):
            holder["tun"] = FakeTun(name)
            return holder["tun"]
        c = Client(ClientConfig(server="127.0.0.1", port=port, user=f"u{i}", password=f"pw{i}",
                                ppp=parse_ppp_options("require-mppe-128 remotename testsrv"),
                                local_address=source, ip_up=None, ip_down=None),
                   tun_factory=client_tun, configure_network=False)
        task = asyncio.ensure_future(c.run())
        await asyncio.wait({task, asyncio.ensure_future(c.up.wait())}, timeout=20,
                           return_when=asyncio.FIRST_COMPLETED)
        assert c.up.is_set(), f"client {i} did not come up"
        clients[i] = (c, task, holder["tun"])
        return c

    async def hang_up(i):
        c, task, _ = clients.pop(i)
        c.stop()
        assert await asyncio.wait_for(task, 15) == 0

    r = {}
    try:
        await connect(0, "127.0.0.2")
        await connect(1, "127.0.0.3")
        doc = server.snapshot()["sessions"]
        r["ifaces"] = sorted((s["user"], s["interface"]) for s in doc)
        r["engine_tuns"] = len(server.engine.tuns())
        # each call's packets come out of its own TUN, and go back in through it
        r["data"] = []
        for i, name in ((0, "ppp0"), (1, "ppp1")):
            c, _, ctun = clients[i]
            me = c.session.info.local_ip
            up = udp_packet(me, "198.51.100.1", b"from u%d" % i)
            ctun.peer.send(up)
            got = await recv_packet(made[name][-1])
            down = udp_packet("198.51.100.1", me, b"to u%d" % i)
            made[name][-1].peer.send(down)
            r["data"].append((got == up, await recv_packet(ctun) == down))
        await hang_up(0)
        await asyncio.sleep(0.1)                # ip-down (none) done: the interface is released
        r["after_hangup"] = (sorted(s["interface"] for s in server.snapshot()["sessions"]),
                             len(server.engine.tuns()))
        try:
            made["ppp0"][-1].peer.send(b"x")
            r["ppp0_closed"] = False
        except OSError:
            r["ppp0_closed"] = True                 # the engine's end of it was closed
        await connect(2, "127.0.0.4")
        r["reused"] = sorted((s["user"], s["interface"]) for s in server.snapshot()["sessions"])
        r["made"] = {k: len(v) for k, v in made.items()}
        r["down_iface"] = [info.get("interface") for kind, info in events if kind == "down"]
    finally:
        for i in list(clients):
            await hang_up(i)
        await server.stop("test over")
    r["after_stop"] = len(server.engine.tuns())
    return r


@pytest.mark.parametrize("impl", ["compiled", "reference"])
def test_units_per_call_in_process(loopback_ns, tmp_path, impl):
    r = asyncio.run(_per_session_in_process(tmp_path, impl))
    assert r["ifaces"] == [("u0", "ppp0"), ("u1", "ppp1")]
    assert r["engine_tuns"] == 2
    assert r["data"] == [(True, True), (True, True)]
    assert r["after_hangup"] == (["ppp1"], 1)
    assert r["ppp0_closed"]
    assert r["reused"] == [("u1", "ppp1"), ("u2", "ppp0")]     # lowest free unit again
    assert r["made"] == {"ppp0": 2, "ppp1": 1}
    assert r["down_iface"][:1] == ["ppp0"]
    assert r["after_stop"] == 0


@pytest.mark.parametrize("interface,expect", [
    ("fpptp0", "ppp%d"), ("ppp", "ppp%d"), ("vpn0", "vpn%d"), ("tun-%d-x", "tun-%d-x"), ("7", "ppp%d"),
    ("a%s%d", "a%s%d"),
])
def test_unit_pattern_from_interface(interface, expect):
    s = Server(ServerConfig(interface=interface, per_session_interfaces=True))
    assert s._units.pattern == expect


# --------------------------------------------------------------------------- as programs
def _server_ifaces(lab):
    """{name: (local, peer)} of the ppp* interfaces in the server namespace."""
    out = {}
    for link in netlink.list_links(netns=lab.sns):
        if link.name.startswith("ppp"):
            addrs = [a for a in netlink.list_addresses(link.name, family=4, netns=lab.sns)]
            out[link.name] = (addrs[0].local, addrs[0].peer) if addrs else (None, None)
    return out


def _hook(lab, name):
    """A pppd-style hook that logs "<name> <interface> <local> <remote> <interface exists>"."""
    out = os.path.join(lab.tmp, "hooks.log")
    path = lab.write(name, "#!/bin/sh\n"
                           f"if ip link show dev \"$1\" >/dev/null 2>&1; then e=yes; else e=no; fi\n"
                           f"echo \"{name} $1 $4 $5 $e\" >> {out}\n")
    os.chmod(path, 0o755)
    return path, out


def _hook_lines(out):
    if not os.path.exists(out):
        return []
    with open(out) as f:
        return [line.split() for line in f if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["compiled", "reference"])
def test_three_clients_get_ppp0_to_ppp2_and_units_are_reused(lab, impl):
    ip_up, hooks = _hook(lab, "ip-up")
    ip_down, _ = _hook(lab, "ip-down")
    lab.start_server("--per-session-interfaces", "--interface", "ppp", "--ip-up", ip_up,
                     "--ip-down", ip_down, "--impl", impl)
    clients = {}
    for i in range(3):
        clients[i] = lab.start_client(i, f"user{i}", f"pass{i}")
        # one at a time, so that client i gets unit i
        wait_until(lambda i=i: lab.ups(clients[i][1]), 60, f"client {i} up", clients[i][0])
    addrs = {i: lab.ups(up)[0]["local_ip"] for i, (_, up) in clients.items()}
    for i in range(3):
        assert ping(lab.clients[i], TUN_SERVER, count=2, interval=0.05), f"client {i} ping"
    ifaces = _server_ifaces(lab)
    assert ifaces == {f"ppp{i}": (TUN_SERVER, addrs[i]) for i in range(3)}
    for i in range(3):
        link = netlink.get_link(f"ppp{i}", netns=lab.sns)
        assert link.up and link.kind == "tun" and link.mtu == 1400
    doc = lab.status()
    assert sorted((s["user"], s["interface"], s["remote_ip"]) for s in doc["sessions"]) == [
        (f"user{i}", f"ppp{i}", addrs[i]) for i in range(3)]
    # the server reaches each client through its own interface
    routes = {r.dst: r.ifname for r in netlink.list_routes(netns=lab.sns)}
    for i in range(3):
        assert routes.get(f"{addrs[i]}/32", routes.get(addrs[i])) == f"ppp{i}", routes

    wait_until(lambda: len(_hook_lines(hooks)) >= 3, 10, "three ip-up hooks")
    assert sorted(_hook_lines(hooks)) == [
        ["ip-up", f"ppp{i}", TUN_SERVER, addrs[i], "yes"] for i in range(3)]

    # client 1 hangs up: ppp1 goes (after ip-down, which still sees it), the others stay
    p1 = clients[1][0]
    p1.send_signal(signal.SIGTERM)
    assert p1.wait(15) == 0
    wait_until(lambda: "ppp1" not in _server_ifaces(lab), 15, "ppp1 removed")
    assert _hook_lines(hooks)[3:] == [["ip-down", "ppp1", TUN_SERVER, addrs[1], "yes"]]
    assert set(_server_ifaces(lab)) == {"ppp0", "ppp2"}
    assert ping(lab.clients[0], TUN_SERVER, count=1) and ping(lab.clients[2], TUN_SERVER, count=1)

    # the next client reuses unit 1
    p3, up3 = lab.start_client(3, "user3", "pass3")
    wait_until(lambda: lab.ups(up3), 60, "client 3 up", p3)
    addr3 = lab.ups(up3)[0]["local_ip"]
    assert ping(lab.clients[3], TUN_SERVER, count=2, interval=0.05)
    ifaces = _server_ifaces(lab)
    assert ifaces["ppp1"] == (TUN_SERVER, addr3)
    assert set(ifaces) == {"ppp0", "ppp1", "ppp2"}
    assert {s["user"]: s["interface"] for s in lab.status()["sessions"]} == {
        "user0": "ppp0", "user2": "ppp2", "user3": "ppp1"}
    lab.server.send_signal(signal.SIGTERM)
    assert lab.server.wait(15) == 0
    assert _server_ifaces(lab) == {}                    # every interface gone with the server
