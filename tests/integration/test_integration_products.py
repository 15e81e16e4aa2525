"""fastpptp-server and fastpptp-client as programs, in network namespaces (issue: binaries).

Layout: a server namespace with a bridge (192.0.2.1/24); each client gets its own namespace
joined to the bridge by a veth pair (192.0.2.10+i).  Tunnel addresses: 198.51.100.1 for the
server, a pool 198.51.100.2-60 for clients.  Everything is created here and removed after.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from fastpptp.tools.demo import bulk_transfer, ping
from fastpptp.net import netlink, netns
from support.lab import PY, SERVER_IP, TUN_SERVER, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def transfer(lab, client_ns, nbytes, port):
    """TCP from the client namespace to a sink in the server namespace; SHA-256 both ends."""
    r = bulk_transfer(lab.sns, client_ns, TUN_SERVER, nbytes, timeout=30, port=port)
    return r["checksum_ok"] and r.get("rx_bytes") == nbytes


def client_gre_port(lab, i, want):
    """The client's GRE port, from its log line (a client has no status socket)."""
    m = re.search(r"GRE I/O: (\w+): ", lab.log(f"client{i}.log"))
    assert m and (want == "auto" or m.group(1) == want), lab.log(f"client{i}.log")[-2000:]
    return m.group(1)


def test_twenty_clients_ping_and_transfer(lab, gre_io):
    """Twenty MPPE-128 clients on one server, each end on the GRE port ``gre_io`` (forced):
    the server's fast port serves twenty peers (twenty next hops) on the bridge."""
    lab.start_server(gre_io=gre_io)
    clients = []
    for wave in range(4):       # 5 at a time: 20 interpreters starting at once on 2 cores
        batch = [lab.start_client(i, f"user{i}", f"pass{i}", "require-mppe-128", gre_io=gre_io)
                 for i in range(wave * 5, wave * 5 + 5)]
        for i, (p, up) in enumerate(batch, wave * 5):
            wait_until(lambda up=up: lab.ups(up), 60, f"client {i} up", p)
        clients += batch
    assert all(p.poll() is None for p, _ in clients)   # all 20 up at the same time
    addrs = {lab.ups(up)[0]["local_ip"] for _, up in clients}
    assert len(addrs) == 20
    for i in range(len(clients)):
        ns = lab.clients[i]
        assert ping(ns, TUN_SERVER, count=2, interval=0.05), f"client {i} ping"
        assert transfer(lab, ns, 256 * 1024, 6000 + i), f"client {i} transfer checksum"
    doc = lab.status()
    cli = subprocess.run(PY + ["status", "--json", "--control-socket", lab.ctl], capture_output=True,
                         text=True, timeout=30)
    assert cli.returncode == 0, cli.stderr
    by_user = {s["user"]: s for s in json.loads(cli.stdout)["sessions"]}
    assert {u: (s["remote_ip"], s["auth"], s["mppe"]) for u, s in by_user.items()} == \
        {s["user"]: (s["remote_ip"], s["auth"], s["mppe"]) for s in doc["sessions"]}
    table = subprocess.run(PY + ["status", "--control-socket", lab.ctl], capture_output=True, text=True,
                           timeout=30).stdout
    assert len(table.splitlines()) == 21 and "user7" in table
    users = sorted(s["user"] for s in doc["sessions"])
    assert users == sorted(f"user{i}" for i in range(20))
    for s in doc["sessions"]:
        assert s["auth"] == "MS-CHAPv2" and s["mppe"].startswith("128")
        assert s["rx_packets"] > 0 and s["tx_packets"] > 0
        # the client's 256 KiB transfer came in through its own session (TCP segments of at
        # most 1460 bytes, plus the two pings), and the server answered the pings through it
        assert s["rx_bytes"] >= 256 * 1024 and s["rx_packets"] >= 2 + 256 * 1024 // 1460, s
        assert s["tx_packets"] >= 2, s
    assert {s["remote_ip"] for s in doc["sessions"]} == addrs
    # the port asked for ran on both ends and carried the transfers (server: 20 x 256 KiB in)
    lab.check_server_gre_port(gre_io, min_rx=20 * 256 * 1024 // 1460, min_tx=20 * 2)
    assert json.loads(cli.stdout)["gre_io"]["mode"] == gre_io
    for i in range(len(clients)):
        client_gre_port(lab, i, gre_io)


def test_wrong_password_is_refused_and_logged(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "Xyzzy-bad-pw-42")
    assert p.wait(30) == 19          # pppd's EXIT_AUTH_TOPEER_FAILED
    assert not lab.ups(up)
    assert "authentication failed" in lab.log("server.log").lower()
    assert "Xyzzy-bad-pw-42" not in lab.log("server.log")          # secrets never logged
    assert lab.status()["sessions"] == []


def test_mppe_required_but_refused_ends_cleanly(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "pass0", "nomppe")
    assert p.wait(30) == 10          # pppd's EXIT_NEGOTIATION_FAILED
    assert not lab.ups(up)
    assert "mppe" in lab.log("server.log").lower()
    assert lab.status()["sessions"] == []


def test_sigterm_server_disconnects_every_client(lab):
    lab.start_server()
    clients = [lab.start_client(i, f"user{i}", f"pass{i}") for i in range(3)]
    for p, up in clients:
        wait_until(lambda up=up: lab.ups(up), 60, "client up", p)
    lab.server.send_signal(signal.SIGTERM)
    assert lab.server.wait(15) == 0
    for i, (p, _up) in enumerate(clients):
        p.wait(15)
        log = lab.log(f"client{i}.log").lower()
        assert "cleared" in log or "closed" in log or "terminat" in log


def test_killed_client_detected_by_echo_and_address_reused(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "pass0")
    wait_until(lambda: lab.ups(up), 60, "client up", p)
    addr = lab.ups(up)[0]["local_ip"]
    p.kill()
    p.wait()
    wait_until(lambda: lab.status()["sessions"] == [], 20, "session reaped by LCP echo failure")
    p2, up2 = lab.start_client(1, "user1", "pass1")
    wait_until(lambda: lab.ups(up2), 60, "second client up", p2)
    assert lab.ups(up2)[0]["local_ip"] == addr


def test_persist_reconnects_after_server_restart(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "pass0", "persist", "holdoff", "1", "maxfail", "0")
    wait_until(lambda: lab.ups(up), 60, "client up", p)
    lab.server.send_signal(signal.SIGTERM)
    lab.server.wait(15)
    lab.start_server()
    wait_until(lambda: len(lab.ups(up)) >= 2, 60, "client up again", p)
    assert p.poll() is None


def test_sighup_adds_user_without_dropping_sessions(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "pass0")
    wait_until(lambda: lab.ups(up), 60, "client up", p)
    with open(os.path.join(lab.tmp, "chap-secrets"), "a") as f:
        f.write("newbie * newpass *\n")
    lab.server.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    p2, up2 = lab.start_client(1, "newbie", "newpass")
    wait_until(lambda: lab.ups(up2), 60, "new user up", p2)
    assert p.poll() is None
    assert sorted(s["user"] for s in lab.status()["sessions"]) == ["newbie", "user0"]
    assert ping(lab.clients[0], TUN_SERVER, count=1)


def test_static_address_from_chap_secrets(lab):
    lab.start_server()
    p, up = lab.start_client(0, "static", "staticpw")
    wait_until(lambda: lab.ups(up), 60, "client up", p)
    assert lab.ups(up)[0]["local_ip"] == "198.51.100.77"


def _ping6(ns, dst, ifname, timeout=3.0):
    """One ICMPv6 echo to a link-local address from inside ``ns`` (the kernel fills the checksum)."""
    import struct
    s = netns.open_socket(ns, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        s.settimeout(timeout)
        ifindex = netns.run_in(ns, socket.if_nametoindex, ifname)
        s.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x1234, 1) + b"fastpptp", (dst, 0, 0, ifindex))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data, _ = s.recvfrom(2048)
            if data[0] == 129 and data[4:6] == b"\x12\x34":
                return True
    except OSError:
        return False
    finally:
        s.close()
    return False


def test_ipv6cp_link_local_crosses_the_tunnel(lab, gre_io):
    lab.write("options", "name fastpptp-test\nrequire-mschap-v2\nrequire-mppe-128\n+ipv6\n")
    lab.start_server(gre_io=gre_io)
    p, up = lab.start_client(0, "user0", "pass0", "+ipv6", gre_io=gre_io)
    wait_until(lambda: lab.ups(up), 60, "client up", p)
    def peer_ll():
        for a in netlink.list_addresses("fpic0", netns=lab.clients[0]):
            if a.family == 6 and a.local.startswith("fe80::") and a.peer:
                return str(a.peer)
        return None
    remote = wait_until(peer_ll, 10, "IPv6CP link-local addresses on the client TUN", p)
    assert _ping6(lab.clients[0], remote, "fpic0")
    lab.check_server_gre_port(gre_io)
    client_gre_port(lab, 0, gre_io)


def test_client_routes_applied_and_restored(lab):
    lab.start_server()
    ns = lab.client_ns(0)
    netlink.add_route("0.0.0.0/0", gateway=SERVER_IP, netns=ns)
    p, up = lab.start_client(0, "user0", "pass0", "replacedefaultroute", "--route", "203.0.113.0/24")
    wait_until(lambda: lab.ups(up), 60, "client up", p)

    def routes():
        return {(r.dst, r.gateway, r.ifname) for r in netlink.list_routes(netns=ns)}
    during = routes()
    assert any(d in ("0.0.0.0/0", "default") and dev == "fpic0" for d, _, dev in during), during
    assert ("192.0.2.1/32", None, f"fpic0x{lab.tag}"[:15]) in during or any(
        d == "192.0.2.1/32" for d, _, _ in during), during          # GRE/TCP path pinned
    assert any(d == "203.0.113.0/24" and dev == "fpic0" for d, _, dev in during), during
    assert ping(ns, TUN_SERVER, count=1)
    p.send_signal(signal.SIGTERM)
    assert p.wait(15) == 0
    after = routes()
    assert any(d in ("0.0.0.0/0", "default") and gw == SERVER_IP for d, gw, _ in after), after
    assert not any(d == "192.0.2.1/32" for d, _, _ in after), after
