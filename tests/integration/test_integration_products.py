"""fastpptp-server and fastpptp-client as programs, in network namespaces (issue: binaries).

Layout: a server namespace with a bridge (192.0.2.1/24); each client gets its own namespace
joined to the bridge by a veth pair (192.0.2.10+i).  Tunnel addresses: 198.51.100.1 for the
server, a pool 198.51.100.2-60 for clients.  Everything is created here and removed after.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from fastpptp.demo import _spawn, bulk_transfer, ping
from fastpptp.net import netlink, netns
from fastpptp.proc import stop_process

pytestmark = [pytest.mark.netns, pytest.mark.slow]

SERVER_IP, TUN_SERVER = "192.0.2.1", "198.51.100.1"
PY = [sys.executable, "-m", "fastpptp"]


def _wait(cond, timeout, what, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Lab:
    def __init__(self, tmp, tag):
        self.tmp, self.tag = tmp, tag
        self.sns = f"fpi-s-{tag}"
        self.clients: dict[int, str] = {}
        self.procs: list[subprocess.Popen] = []
        self.server: subprocess.Popen | None = None
        self.ctl = os.path.join(tmp, "ctl.sock")

    def setup(self):
        netns.create(self.sns)
        netlink.set_link_up("lo", netns=self.sns)
        with netns.entered(self.sns):
            from pyroute2 import IPRoute
            with IPRoute() as ipr:
                ipr.link("add", ifname="fpbr", kind="bridge")
        netlink.add_address("fpbr", f"{SERVER_IP}/24", netns=self.sns)
        netlink.set_link_up("fpbr", netns=self.sns)
        self.write("chap-secrets", "".join(f"user{i} * pass{i} *\n" for i in range(25)) +
                   "static * staticpw 198.51.100.77\n")
        self.write("options", "name fastpptp-test\nrequire-mschap-v2\nrequire-mppe-128\n"
                              "ms-dns 192.0.2.53\nlcp-echo-interval 1\nlcp-echo-failure 3\n")
        self.write("pptpd.conf", f"option {self.tmp}/options\nlocalip {TUN_SERVER}\n"
                                 f"remoteip 198.51.100.2-60\nconnections 40\nlisten {SERVER_IP}\n")

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_server(self, *extra):
        if os.path.exists(self.ctl):
            os.unlink(self.ctl)
        self.server = _spawn(self.sns, PY + ["server", "-c", f"{self.tmp}/pptpd.conf", "--secrets",
                                             f"{self.tmp}/chap-secrets", "-f", "--control-socket", self.ctl,
                                             "--interface", "fpisrv0", "--ip-up", "", "--ip-down", "",
                                             "--rate-limit", "100", *extra],
                             os.path.join(self.tmp, "server.log"))
        self.procs.append(self.server)
        _wait(lambda: os.path.exists(self.ctl), 20, "server control socket", self.server)

    def client_ns(self, i):
        if i not in self.clients:
            ns = f"fpi-c{i}-{self.tag}"
            netns.create(ns)
            a, b = f"fpib{i}x{self.tag}"[:15], f"fpic{i}x{self.tag}"[:15]
            netlink.create_veth(a, b, netns=self.sns, peer_netns=ns)
            with netns.entered(self.sns):
                from pyroute2 import IPRoute
                with IPRoute() as ipr:
                    ipr.link("set", index=ipr.link_lookup(ifname=a)[0],
                             master=ipr.link_lookup(ifname="fpbr")[0])
            netlink.set_link_up(a, netns=self.sns)
            netlink.set_link_up("lo", netns=ns)
            netlink.add_address(b, f"192.0.2.{10 + i}/24", netns=ns)
            netlink.set_link_up(b, netns=ns)
            self.clients[i] = ns
        return self.clients[i]

    def start_client(self, i, user, password, *extra):
        ns = self.client_ns(i)
        up = os.path.join(self.tmp, f"up{i}.json")
        pw = self.write(f"pw{i}", password + "\n")
        if "nomppe" not in extra and "require-mppe-128" not in extra:
            extra = ("require-mppe-128",) + extra   # the server requires it; pppd needs it said
        p = _spawn(ns, PY + ["client", SERVER_IP, "--user", user, "--password-file", pw, "--up-file", up,
                             "--interface", f"fpic{i}", "remotename", "fastpptp-test", *extra],
                   os.path.join(self.tmp, f"client{i}.log"))
        self.procs.append(p)
        return p, up

    def ups(self, up_file):
        if not os.path.exists(up_file):
            return []
        with open(up_file) as f:
            return [json.loads(line) for line in f if line.strip()]

    def status(self):
        from fastpptp.status import query_status
        return query_status(self.ctl)

    def log(self, name):
        path = os.path.join(self.tmp, name)
        return open(path, errors="replace").read() if os.path.exists(path) else ""

    def teardown(self):
        for p in reversed(self.procs):
            stop_process(p, grace=10)
        for ns in list(self.clients.values()) + [self.sns]:
            try:
                netns.remove(ns, missing_ok=True)
            except Exception:
                pass


@pytest.fixture
def lab(tmp_path):
    lab = Lab(str(tmp_path), f"{os.getpid() % 10000}")
    lab.setup()
    try:
        yield lab
    finally:
        lab.teardown()
        print("--- server.log ---\n" + lab.log("server.log")[-4000:])


def transfer(lab, client_ns, nbytes, port):
    """TCP from the client namespace to a sink in the server namespace; SHA-256 both ends."""
    r = bulk_transfer(lab.sns, client_ns, TUN_SERVER, nbytes, timeout=30, port=port)
    return r["checksum_ok"] and r.get("rx_bytes") == nbytes


def test_twenty_clients_ping_and_transfer(lab):
    lab.start_server()
    clients = []
    for wave in range(4):       # 5 at a time: 20 interpreters starting at once on 2 cores
        batch = [lab.start_client(i, f"user{i}", f"pass{i}", "require-mppe-128")
                 for i in range(wave * 5, wave * 5 + 5)]
        for i, (p, up) in enumerate(batch, wave * 5):
            _wait(lambda: lab.ups(up), 60, f"client {i} up", p)
        clients += batch
    assert all(p.poll() is None for p, _ in clients)   # all 20 up at the same time
    addrs = {lab.ups(up)[0]["local_ip"] for _, up in clients}
    assert len(addrs) == 20
    for i, (p, up) in enumerate(clients):
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
    assert {s["remote_ip"] for s in doc["sessions"]} == addrs


def test_wrong_password_is_refused_and_logged(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "Xyzzy-bad-pw-42")
    assert p.wait(30) != 0
    assert not lab.ups(up)
    assert "authentication failed" in lab.log("server.log").lower()
    assert "Xyzzy-bad-pw-42" not in lab.log("server.log")          # secrets never logged
    assert lab.status()["sessions"] == []


def test_mppe_required_but_refused_ends_cleanly(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "pass0", "nomppe")
    assert p.wait(30) != 0
    assert not lab.ups(up)
    assert "mppe" in lab.log("server.log").lower()
    assert lab.status()["sessions"] == []


def test_sigterm_server_disconnects_every_client(lab):
    lab.start_server()
    clients = [lab.start_client(i, f"user{i}", f"pass{i}") for i in range(3)]
    for p, up in clients:
        _wait(lambda: lab.ups(up), 60, "client up", p)
    lab.server.send_signal(signal.SIGTERM)
    assert lab.server.wait(15) == 0
    for i, (p, up) in enumerate(clients):
        p.wait(15)
        log = lab.log(f"client{i}.log").lower()
        assert "cleared" in log or "closed" in log or "terminat" in log


def test_killed_client_detected_by_echo_and_address_reused(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "pass0")
    _wait(lambda: lab.ups(up), 60, "client up", p)
    addr = lab.ups(up)[0]["local_ip"]
    p.kill()
    p.wait()
    _wait(lambda: lab.status()["sessions"] == [], 20, "session reaped by LCP echo failure")
    p2, up2 = lab.start_client(1, "user1", "pass1")
    _wait(lambda: lab.ups(up2), 60, "second client up", p2)
    assert lab.ups(up2)[0]["local_ip"] == addr


def test_persist_reconnects_after_server_restart(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "pass0", "persist", "holdoff", "1", "maxfail", "0")
    _wait(lambda: lab.ups(up), 60, "client up", p)
    lab.server.send_signal(signal.SIGTERM)
    lab.server.wait(15)
    lab.start_server()
    _wait(lambda: len(lab.ups(up)) >= 2, 60, "client up again", p)
    assert p.poll() is None


def test_sighup_adds_user_without_dropping_sessions(lab):
    lab.start_server()
    p, up = lab.start_client(0, "user0", "pass0")
    _wait(lambda: lab.ups(up), 60, "client up", p)
    with open(os.path.join(lab.tmp, "chap-secrets"), "a") as f:
        f.write("newbie * newpass *\n")
    lab.server.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    p2, up2 = lab.start_client(1, "newbie", "newpass")
    _wait(lambda: lab.ups(up2), 60, "new user up", p2)
    assert p.poll() is None
    assert sorted(s["user"] for s in lab.status()["sessions"]) == ["newbie", "user0"]
    assert ping(lab.clients[0], TUN_SERVER, count=1)


def test_static_address_from_chap_secrets(lab):
    lab.start_server()
    p, up = lab.start_client(0, "static", "staticpw")
    _wait(lambda: lab.ups(up), 60, "client up", p)
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


def test_ipv6cp_link_local_crosses_the_tunnel(lab):
    lab.write("options", "name fastpptp-test\nrequire-mschap-v2\nrequire-mppe-128\n+ipv6\n")
    lab.start_server()
    p, up = lab.start_client(0, "user0", "pass0", "+ipv6")
    _wait(lambda: lab.ups(up), 60, "client up", p)
    def peer_ll():
        for a in netlink.list_addresses("fpic0", netns=lab.clients[0]):
            if a.family == 6 and a.local.startswith("fe80::") and a.peer:
                return str(a.peer)
        return None
    remote = _wait(peer_ll, 10, "IPv6CP link-local addresses on the client TUN", p)
    assert _ping6(lab.clients[0], remote, "fpic0")


def test_client_routes_applied_and_restored(lab):
    lab.start_server()
    ns = lab.client_ns(0)
    netlink.add_route("0.0.0.0/0", gateway=SERVER_IP, netns=ns)
    p, up = lab.start_client(0, "user0", "pass0", "replacedefaultroute", "--route", "203.0.113.0/24")
    _wait(lambda: lab.ups(up), 60, "client up", p)

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
