"""fastpptp.net.nexthop at a concentrator's scale (issue 10, "first packets" on the fast GRE
ports): 1 000 peers behind one gateway, each session adding a /32 route on the TUN.

The tracker's thread holds the GIL while it parses and decides, so its cost per session is
the server's event loop's loss: at 1 000 sessions it spent 3.7 s on the route events alone
(affected_by_route built ipaddress objects per peer and event: N x N) and re-resolved every
peer with 3 netlink round trips on each neighbour event of the gateway.  The event loop then
handled PPP frames seconds late; an IPCP Configure-Request the server's timer repeated
reached clients already Opened, which renegotiated (RFC 1661 Opened + RCR: tld) and dropped
their first packets as not ready.  These tests bound that cost; ``ip`` only sets up and
changes the kernel's tables under the tracker's feet."""
from __future__ import annotations

import contextlib
import socket
import time

import pytest

from fastpptp.net import netns
from fastpptp.net.nexthop import Nexthop, NexthopTracker, affected_by_route
from fastpptp.tools.netrig import run_in, unique_suffix, wait_for

N = 1000
GW = "198.18.255.2"
GW_MAC = "02:00:00:00:00:02"
GW_MAC2 = "02:00:00:00:00:03"
PEERS = [f"198.19.{i // 250}.{i % 250 + 1}" for i in range(N)]
TUNNEL = [f"198.18.{i // 250}.{i % 250 + 2}" for i in range(N)]   # the sessions' /32 routes


class Table:
    """The port's nexthop table as the tracker sees it (set/clear), counted."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str, int]] = {}
        self.calls = 0

    def set_nexthop(self, peer: str, mac: str, src: str, mtu: int) -> bool:
        self.calls += 1
        self.entries[peer] = (mac, src, mtu)
        return True

    def clear_nexthop(self, peer: str) -> None:
        self.calls += 1
        self.entries.pop(peer, None)


def test_route_events_cost_little_with_a_thousand_peers():
    """One event per session's /32 route: string compares, not N ipaddress objects each
    (1 000 x 1 000 took 3.7 s; the budget is far below, the new cost ~20 ms)."""
    decisions = {p: Nexthop(p, GW, GW_MAC, "198.18.255.1", 1500) for p in PEERS}
    t0 = time.process_time()
    hit = [affected_by_route(decisions, PEERS, f"{a}/32") for a in TUNNEL]
    spent = time.process_time() - t0
    assert hit == [[]] * N
    assert spent < 0.5, f"{spent:.2f} s for {N} route events"
    # the answers of the slow rule (prefixes other than /32) are unchanged
    assert affected_by_route(decisions, PEERS, f"{PEERS[7]}/32") == [PEERS[7]]
    assert affected_by_route(decisions, PEERS, f"{GW}/32") == PEERS
    assert affected_by_route(decisions, PEERS, "198.19.1.0/24") == PEERS[250:500]
    assert affected_by_route(decisions, PEERS, "198.18.255.0/24") == PEERS      # the gateway's
    assert affected_by_route(decisions, PEERS, "198.18.0.0/24") == []      # TUN side


@contextlib.contextmanager
def gateway_ns():
    """One namespace: veth fsa (198.18.255.1/24, the port's) whose peer end holds nothing,
    198.19.0.0/16 via 198.18.255.2 with a REACHABLE neighbour entry, and a TUN for the
    sessions' routes."""
    ns = f"firstnh{unique_suffix()}"
    netns.create(ns)
    try:
        for cmd in (["ip", "link", "add", "fsa", "type", "veth", "peer", "name", "fsb"],
                    ["ip", "link", "set", "fsa", "up"], ["ip", "link", "set", "fsb", "up"],
                    ["ip", "addr", "add", "198.18.255.1/24", "dev", "fsa"],
                    ["ip", "route", "add", "198.19.0.0/16", "via", GW],
                    ["ip", "neigh", "replace", GW, "lladdr", GW_MAC, "dev", "fsa", "nud", "reachable"],
                    ["ip", "tuntap", "add", "fstun0", "mode", "tun"],
                    ["ip", "link", "set", "fstun0", "up"]):
            run_in(ns, cmd)
        yield ns
    finally:
        netns.remove(ns, missing_ok=True)


def thread_cpu(t: NexthopTracker) -> float:
    assert t._thread is not None and t._thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(t._thread.ident))


@pytest.mark.netns
@pytest.mark.timeout(120)
def test_a_thousand_sessions_cost_the_tracker_little(tmp_path):
    """1 000 peers behind one gateway: the sessions' /32 routes (added and removed) cost the
    tracker's thread well under a second and re-resolve nobody; a change of the gateway's
    MAC re-decides all 1 000 with one link and one neighbour query (it was 3 000 queries)."""
    with gateway_ns() as ns:
        with netns.entered(ns):
            table = Table()
            t = NexthopTracker(table, socket.if_nametoindex("fsa"), refresh=60.0)
        try:
            for p in PEERS:
                t.add_peer(p)
            assert all(table.entries[p][0] == GW_MAC for p in PEERS)
            time.sleep(0.3)                     # the set-up's events, handled
            cpu0, ev0, res0 = thread_cpu(t), t.events, t.resolutions
            cmds = "".join(f"route add {a}/32 dev fstun0\n" for a in TUNNEL)
            cmds += "".join(f"route del {a}/32 dev fstun0\n" for a in TUNNEL)
            (tmp_path / "routes").write_text(cmds)
            run_in(ns, ["ip", "-batch", str(tmp_path / "routes")])
            wait_for(lambda: t.events - ev0 >= 2 * N, 20, what="the route events seen")
            t.refresh_all()                     # a round trip through the tracker's thread
            spent = thread_cpu(t) - cpu0
            print(f"{2 * N} route events: tracker CPU {spent:.3f} s")
            assert t.resolutions - res0 == N, "route events re-resolved peers"
            assert spent < 1.0, f"tracker thread CPU {spent:.2f} s for {2 * N} route events"

            # the gateway's MAC changes: every peer follows, the kernel asked twice
            q = t._q
            asked: list[int] = []
            real = q.request

            def counted(typ, body, flags=0):
                asked.append(typ)
                return real(typ, body, flags)
            q.request = counted
            run_in(ns, ["ip", "neigh", "replace", GW, "lladdr", GW_MAC2, "dev", "fsa", "nud", "reachable"])
            wait_for(lambda: all(table.entries[p][0] == GW_MAC2 for p in PEERS), 10,
                     what="every peer on the gateway's new MAC")
            print(f"gateway MAC change: {len(asked)} netlink requests for {N} peers")
            assert len(asked) <= 4, asked
        finally:
            t.close()
