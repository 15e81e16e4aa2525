"""The products' lab: ``python -m fastpptp server`` in one namespace behind a bridge, and
clients, each in a namespace of its own with a veth on that bridge (the ``lab`` fixture in
tests/integration/conftest.py makes one per test and removes every namespace afterwards)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from fastpptp.tools.netrig import spawn_logged
from fastpptp.net import netlink, netns
from fastpptp.tools.proc import stop_process

SERVER_IP, TUN_SERVER = "192.0.2.1", "198.51.100.1"
PY = [sys.executable, "-m", "fastpptp"]

# The GRE ports the data tests run on, each forced (``--gre-io MODE``): a fast port that
# cannot run fails the test instead of falling back to raw unseen (issue 9).
GRE_IO_FORCED = ("raw", "packet", "xdp")
GRE_IO_FAST = ("packet", "xdp")


def check_gre_port(want: str, mode: str | None, counters: dict, min_rx: int = 1, min_tx: int = 1,
                   what: str = "") -> None:
    """The GRE port that ran is ``want`` (``auto``: any), and it carried the traffic: at
    least ``min_rx`` received and ``min_tx`` sent -- for a fast port through its own ring,
    not the raw socket it keeps as slow path (rx/tx_slowpath count those, within
    rx/tx_packets)."""
    info = f"{what} GRE port {mode!r}, counters {counters}"
    if want != "auto":
        assert mode == want, info
    rx, tx = counters.get("rx_packets", 0), counters.get("tx_packets", 0)
    if mode in GRE_IO_FAST:
        rx -= counters.get("rx_slowpath", 0)
        tx -= counters.get("tx_slowpath", 0)
    assert rx >= min_rx and tx >= min_tx, info


def wait_until(cond, timeout, what, proc=None):
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

    def start_server(self, *extra, gre_io: str = "auto"):
        if os.path.exists(self.ctl):
            os.unlink(self.ctl)
        self.server = spawn_logged(self.sns, PY + ["server", "-c", f"{self.tmp}/pptpd.conf", "--secrets",
                                                   f"{self.tmp}/chap-secrets", "-f", "--control-socket", self.ctl,
                                                   "--interface", "fpisrv0", "--ip-up", "", "--ip-down", "",
                                                   "--rate-limit", "100", "--gre-io", gre_io, *extra],
                                   os.path.join(self.tmp, "server.log"))
        self.procs.append(self.server)
        wait_until(lambda: os.path.exists(self.ctl), 20, "server control socket", self.server)

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

    def start_client(self, i, user, password, *extra, gre_io: str = "auto"):
        ns = self.client_ns(i)
        up = os.path.join(self.tmp, f"up{i}.json")
        pw = self.write(f"pw{i}", password + "\n")
        if "nomppe" not in extra and "require-mppe-128" not in extra:
            extra = ("require-mppe-128",) + extra   # the server requires it; pppd needs it said
        p = spawn_logged(ns, PY + ["client", SERVER_IP, "--user", user, "--password-file", pw, "--up-file", up,
                                   "--interface", f"fpic{i}", "--gre-io", gre_io, "remotename",
                                   "fastpptp-test", *extra],
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

    def check_server_gre_port(self, want: str, min_rx: int = 1, min_tx: int = 1) -> dict:
        """The server's ``status --json`` ``gre_io``: mode ``want`` and its counters moved."""
        doc = self.status()["gre_io"]
        check_gre_port(want, doc.get("mode"), doc.get("counters", {}), min_rx, min_tx, "server")
        return doc

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
