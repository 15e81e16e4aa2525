"""fastpptp.net.nexthop: the decision table (pure), then the queries and the tracker in
namespaces: on-link peer (ARP kicked by the tracker), a peer behind a gateway (a third
namespace routing) gets the gateway's MAC, a neighbour change, a route moving the peer to
another interface, an MTU change, remove_peer.  ``ip`` is only used to set up and to change
the kernel's tables under the tracker's feet."""
from __future__ import annotations

import contextlib
import select
import socket
import struct
import time

import pytest

from fastpptp.net import netlink, netns
from fastpptp.net.nexthop import (ARPHRD_ETHER, NUD_FAILED, NUD_INCOMPLETE, NUD_PERMANENT,
                                  NUD_REACHABLE, NUD_STALE, RTN_LOCAL, RTN_UNICAST, LinkInfo,
                                  NeighInfo, Nexthop, NexthopTracker, RouteInfo, RtEvent, Rtnl,
                                  SlowPath, affected_by_neigh, affected_by_route, decide,
                                  nexthop_address, parse_rtnl_events, query_link, query_neigh,
                                  query_route, resolve, use_neighbour)
from fastpptp.tools.netrig import NsPair, rig_lifetime, run_in, unique_suffix, wait_for
from support.grerig import ADDR_A, ADDR_B, drain, gre_pair, pptp_gre, raw_gre_socket

IF = 3
MAC = "02:00:00:00:00:0b"
GW_MAC = "02:00:00:00:00:fe"
LINK = LinkInfo(IF, 1500, "02:00:00:00:00:0a", ARPHRD_ETHER, True)
ONLINK = RouteInfo(RTN_UNICAST, IF, None, "198.51.100.1")
VIA_GW = RouteInfo(RTN_UNICAST, IF, "198.51.100.254", "198.51.100.1")
PEER = "198.51.100.2"
FAR = "203.0.113.2"


def neigh(dst=PEER, mac=MAC, state=NUD_REACHABLE, ifindex=IF):
    return NeighInfo(ifindex, dst, mac, state)


DECIDE_TABLE = [
    # (what, peer, route, link, neigh, local, expected: Nexthop fields or slow reason prefix)
    ("on-link, reachable", PEER, ONLINK, LINK, neigh(), None, (PEER, MAC, "198.51.100.1", 1500)),
    ("on-link, stale is still a MAC", PEER, ONLINK, LINK, neigh(state=NUD_STALE), None,
     (PEER, MAC, "198.51.100.1", 1500)),
    ("permanent: static, never NTF_USEd", PEER, ONLINK, LINK, neigh(state=NUD_PERMANENT), None,
     (PEER, MAC, "198.51.100.1", 1500, True)),
    ("forced local source", PEER, ONLINK, LINK, neigh(), "198.51.100.9",
     (PEER, MAC, "198.51.100.9", 1500)),
    ("behind a gateway: the gateway's MAC", FAR, VIA_GW, LINK,
     neigh("198.51.100.254", GW_MAC), None, ("198.51.100.254", GW_MAC, "198.51.100.1", 1500)),
    ("route MTU below the link's", PEER, RouteInfo(RTN_UNICAST, IF, None, "198.51.100.1", 1400),
     LINK, neigh(), None, (PEER, MAC, "198.51.100.1", 1400)),
    ("MAC upper case from somewhere", PEER, ONLINK, LINK, neigh(mac=MAC.upper()), None,
     (PEER, MAC, "198.51.100.1", 1500)),
    ("no route", PEER, None, LINK, None, None, "no route"),
    ("our own address", PEER, RouteInfo(RTN_LOCAL, 1, None, PEER), LINK, None, None,
     "local destination"),
    ("other interface", PEER, RouteInfo(RTN_UNICAST, 7, None, "198.51.100.1"), LINK, neigh(),
     None, "routed via ifindex 7"),
    ("interface gone", PEER, ONLINK, None, neigh(), None, "interface 3 gone"),
    ("not Ethernet", PEER, ONLINK, LinkInfo(IF, 1500, None, 65534, True), neigh(), None,
     "interface 3 is not Ethernet"),
    ("interface down", PEER, ONLINK, LinkInfo(IF, 1500, "02:00:00:00:00:0a", 1, False),
     neigh(), None, "interface 3 down"),
    ("no source address", PEER, RouteInfo(RTN_UNICAST, IF, None, None), LINK, neigh(), None,
     "no source address"),
    ("no neighbour entry", PEER, ONLINK, LINK, None, None, "no neighbour entry for 198.51.100.2"),
    ("neighbour incomplete", PEER, ONLINK, LINK, neigh(mac=None, state=NUD_INCOMPLETE), None,
     "neighbour 198.51.100.2 unresolved"),
    ("neighbour failed", PEER, ONLINK, LINK, neigh(state=NUD_FAILED), None,
     "neighbour 198.51.100.2 unresolved"),
    ("gateway unresolved", FAR, VIA_GW, LINK, None, None, "no neighbour entry for 198.51.100.254"),
    ("neighbour answer for another address", FAR, VIA_GW, LINK, neigh(FAR), None,
     "neighbour answer for 203.0.113.2"),
]


@pytest.mark.parametrize("what,peer,route,link,nb,local,expected", DECIDE_TABLE,
                         ids=[row[0] for row in DECIDE_TABLE])
def test_decide_table(what, peer, route, link, nb, local, expected):
    d = decide(peer, IF, route, link, nb, local)
    if isinstance(expected, tuple):
        assert d == Nexthop(peer, *expected), what
    else:
        assert isinstance(d, SlowPath) and d.reason.startswith(expected), (what, d)
        assert d.peer == peer


def test_slow_decisions_name_the_next_hop_to_wait_for():
    assert decide(FAR, IF, VIA_GW, LINK, None).via == "198.51.100.254"
    # ask the kernel to resolve when it is not doing so already
    assert decide(PEER, IF, ONLINK, LINK, None).kick
    assert decide(PEER, IF, ONLINK, LINK, neigh(mac=None, state=NUD_FAILED)).kick
    assert not decide(PEER, IF, ONLINK, LINK, neigh(mac=None, state=NUD_INCOMPLETE)).kick
    assert not decide(PEER, IF, None, LINK, None).kick
    assert decide(PEER, IF, None, LINK, None).via is None
    assert nexthop_address(FAR, VIA_GW) == "198.51.100.254"
    assert nexthop_address(PEER, ONLINK) == PEER


def test_affected_by_neigh():
    ds = {PEER: decide(PEER, IF, ONLINK, LINK, neigh()),
          FAR: decide(FAR, IF, VIA_GW, LINK, None),
          "203.0.113.3": decide("203.0.113.3", IF, VIA_GW, LINK, neigh("198.51.100.254", GW_MAC))}
    assert sorted(affected_by_neigh(ds, IF, "198.51.100.254", IF)) == [FAR, "203.0.113.3"]
    assert affected_by_neigh(ds, IF, PEER, IF) == [PEER]
    assert affected_by_neigh(ds, IF, PEER, IF + 1) == []


# ------------------------------------------------------------------------------ namespaces


class FakeTable:
    """A nexthop table with the port's interface (the tracker's only dependency)."""

    def __init__(self):
        self.entries: dict[str, tuple[str, str, int]] = {}
        self.calls = 0

    def set_nexthop(self, peer, mac, src, mtu):
        self.calls += 1
        self.entries[peer] = (mac, src, mtu)

    def clear_nexthop(self, peer):
        return self.entries.pop(peer, None) is not None


@contextlib.contextmanager
def tracker_in(ns: str, dev: str, table=None, refresh: float = 0.5):
    table = table if table is not None else FakeTable()
    with netns.entered(ns):
        t = NexthopTracker(table, socket.if_nametoindex(dev), refresh=refresh).start()
    try:
        yield t, table
    finally:
        t.close()


def mac_of(ns, dev):
    return netlink.get_link(dev, netns=ns).mac


@pytest.mark.netns
def test_on_link_peer_is_resolved_by_the_tracker_kick():
    with gre_pair(prefix="packetn") as rig, tracker_in(rig.a, rig.veth_a) as (t, table):
        d = t.add_peer(ADDR_B)          # nothing sent yet: no neighbour entry
        assert isinstance(d, SlowPath) and d.via == ADDR_B
        mac_b = mac_of(rig.b, rig.veth_b)
        wait_for(lambda: table.entries.get(ADDR_B) == (mac_b, ADDR_A, 1500), 5,
                 what="the neighbour resolved by NTF_USE and picked up from the event")
        assert isinstance(t.decision(ADDR_B), Nexthop)


@pytest.mark.netns
def test_neighbour_change_route_change_mtu_change_and_removal():
    with gre_pair(prefix="packetn") as rig, tracker_in(rig.a, rig.veth_a) as (t, table):
        t.add_peer(ADDR_B)
        mac_b = mac_of(rig.b, rig.veth_b)
        wait_for(lambda: table.entries.get(ADDR_B, ("",))[0] == mac_b, 5, what="resolved")
        # the peer's MAC changes (what a gratuitous ARP does to the kernel's table)
        run_in(rig.a, ["ip", "neigh", "replace", ADDR_B, "lladdr", "02:00:00:00:00:99", "dev",
                       rig.veth_a, "nud", "permanent"])
        wait_for(lambda: table.entries.get(ADDR_B, ("",))[0] == "02:00:00:00:00:99", 3,
                 what="the neighbour change")
        # the link MTU changes
        netlink.set_mtu(rig.veth_a, 1400, netns=rig.a)
        wait_for(lambda: table.entries.get(ADDR_B, ("", "", 0))[2] == 1400, 3, what="the MTU")
        # a route with its own MTU metric (what a path MTU exception also shows in route get)
        run_in(rig.a, ["ip", "route", "add", f"{ADDR_B}/32", "dev", rig.veth_a, "mtu", "1300"])
        wait_for(lambda: table.entries.get(ADDR_B, ("", "", 0))[2] == 1300, 3,
                 what="the route MTU")
        run_in(rig.a, ["ip", "route", "del", f"{ADDR_B}/32"])
        wait_for(lambda: table.entries.get(ADDR_B, ("", "", 0))[2] == 1400, 3,
                 what="the link MTU again")
        # a more specific route moves the peer to another interface: slow path
        netlink.create_veth("pkx0", "pkx1", netns=rig.a)      # this kernel has no dummy
        netlink.set_link_up("pkx1", netns=rig.a)
        netlink.set_link_up("pkx0", netns=rig.a)
        run_in(rig.a, ["ip", "route", "add", f"{ADDR_B}/32", "dev", "pkx0"])
        wait_for(lambda: ADDR_B not in table.entries, 3, what="the route change")
        d = t.decision(ADDR_B)
        assert isinstance(d, SlowPath) and d.reason.startswith("routed via"), d
        run_in(rig.a, ["ip", "route", "del", f"{ADDR_B}/32"])
        wait_for(lambda: ADDR_B in table.entries, 3, what="the route back")
        # the neighbour entry goes away: slow until the kernel has it again
        run_in(rig.a, ["ip", "neigh", "del", ADDR_B, "dev", rig.veth_a])
        wait_for(lambda: table.entries.get(ADDR_B, ("",))[0] == mac_b, 5,
                 what="re-resolved to the real MAC after the entry was deleted")
        t.add_peer(ADDR_B)                 # a second call from the same address
        t.remove_peer(ADDR_B)
        assert table.entries.get(ADDR_B, ("",))[0] == mac_b      # one call still up
        t.remove_peer(ADDR_B)
        assert ADDR_B not in table.entries and t.decision(ADDR_B) is None
        t.remove_peer(ADDR_B)              # unknown: nothing
        assert t.events > 0


@contextlib.contextmanager
def routed_rig():
    """A 198.51.100.1/24 -- R (198.51.100.254 | 203.0.113.254, forwarding) -- C 203.0.113.2/24.
    A routes 203.0.113.0/24 via R; C's default route is R."""
    sfx = unique_suffix()
    rig = NsPair(f"packeta{sfx}", f"packetc{sfx}", f"pa{sfx[-12:]}", f"pc{sfx[-12:]}",
                 addr_a="198.51.100.1", addr_b="203.0.113.2", grace=3.0)
    r = f"packetr{sfx}"
    ra, rc = f"ra{sfx[-12:]}", f"rc{sfx[-12:]}"
    with rig_lifetime(rig, r):
        netlink.create_veth(rig.veth_a, ra, netns=rig.a, peer_netns=r)
        netlink.create_veth(rig.veth_b, rc, netns=rig.b, peer_netns=r)
        netlink.add_address(rig.veth_a, "198.51.100.1/24", netns=rig.a)
        netlink.add_address(ra, "198.51.100.254/24", netns=r)
        netlink.add_address(rc, "203.0.113.254/24", netns=r)
        netlink.add_address(rig.veth_b, "203.0.113.2/24", netns=rig.b)
        for ns, dev in ((rig.a, rig.veth_a), (r, ra), (r, rc), (rig.b, rig.veth_b)):
            netlink.set_link_up(dev, netns=ns)
        run_in(r, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        netlink.add_route("203.0.113.0/24", gateway="198.51.100.254", netns=rig.a)
        netlink.add_route("0.0.0.0/0", gateway="203.0.113.254", netns=rig.b)
        yield rig, r, ra


@pytest.mark.netns
def test_peer_behind_a_gateway_gets_the_gateways_mac_and_frames_arrive():
    from fastpptp.net.packetport import open_packet_port, packet_unavailable_reason
    with routed_rig() as (rig, r, ra):
        gw_mac = mac_of(r, ra)
        with netns.entered(rig.a):
            with Rtnl() as rtnl:
                d = resolve(rtnl, FAR, socket.if_nametoindex(rig.veth_a))
        assert isinstance(d, SlowPath) and d.via == "198.51.100.254"
        with netns.entered(rig.a):
            reason = packet_unavailable_reason(rig.veth_a)
            if reason:
                pytest.skip(reason)
            port = open_packet_port(rig.veth_a, ["198.51.100.1"], None, refresh=0.5)
        try:
            port.tracker.add_peer(FAR)
            wait_for(lambda: port.nexthops().get(FAR) == (gw_mac, "198.51.100.1", 1500), 5,
                     what="the gateway's MAC for the far peer")
            d = port.tracker.decision(FAR)
            assert isinstance(d, Nexthop) and d.via == "198.51.100.254"
            rc_sock = raw_gre_socket(rig.b)
            frames = [pptp_gre(seq=i) for i in range(10)]
            port.send_batch([(f, FAR) for f in frames])
            got: list[bytes] = []
            deadline = time.monotonic() + 3
            while len(got) < 10 and time.monotonic() < deadline:
                select.select([rc_sock], [], [], 0.05)
                got += drain(rc_sock)
            assert [g[20:] for g in got] == frames
            ttl, src = got[0][8], socket.inet_ntoa(got[0][12:16])
            assert ttl == 63 and src == "198.51.100.1"          # one router on the way
            assert struct.unpack("!H", got[0][6:8])[0] & 0x4000   # DF
            assert port.counters()["tx_slowpath"] == 0
            rc_sock.close()
        finally:
            port.close()


def _nlmsg(typ: int, body: bytes) -> bytes:
    msg = struct.pack("=IHHII", 16 + len(body), typ, 0, 0, 0) + body
    return msg + b"\0" * (-len(msg) % 4)


def _rta(typ: int, data: bytes) -> bytes:
    a = struct.pack("=HH", 4 + len(data), typ) + data
    return a + b"\0" * (-len(a) % 4)


def test_parse_rtnl_events():
    neigh_v4 = struct.pack("=BBHiHBB", socket.AF_INET, 0, 0, 3, NUD_REACHABLE, 0, 1)
    neigh_v4 += _rta(2, b"\x02" * 6) + _rta(1, socket.inet_aton(PEER))     # NDA_LLADDR, NDA_DST
    neigh_v6 = struct.pack("=BBHiHBB", socket.AF_INET6, 0, 0, 3, 0, 0, 1) + _rta(1, b"\x20" * 16)
    route = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 254, 4, 0, 1, 0)   # rtmsg
    link = struct.pack("=BBHiII", 0, 0, 1, 7, 0, 0)
    data = (_nlmsg(28, neigh_v4) + _nlmsg(29, neigh_v6) + _nlmsg(24, route) + _nlmsg(16, link)
            + _nlmsg(20, b"\0" * 8))                                     # RTM_NEWADDR: ignored
    evs = parse_rtnl_events(data)
    assert evs == [RtEvent("neigh", socket.AF_INET, 3, PEER), RtEvent("neigh", socket.AF_INET6, 3),
                   RtEvent("route", socket.AF_INET, 0), RtEvent("link", 0, 7)]
    # truncated / lying lengths: nothing read past the end, no exception
    for cut in range(len(data)):
        parse_rtnl_events(data[:cut])
    bad_attr = neigh_v4[:12] + struct.pack("=HH", 200, 1) + b"\0" * 4
    assert parse_rtnl_events(_nlmsg(28, bad_attr)) == [RtEvent("neigh", socket.AF_INET, 3)]
    assert parse_rtnl_events(struct.pack("=IHHII", 8, 28, 0, 0, 0)) == []
    # a route's prefix (RTA_DST + rtm_dst_len); a default route has no RTA_DST
    host = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 254, 4, 0, 1, 0) \
        + _rta(1, socket.inet_aton("198.18.0.7"))
    default = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 4, 0, 1, 0)
    assert parse_rtnl_events(_nlmsg(24, host) + _nlmsg(25, default)) == [
        RtEvent("route", socket.AF_INET, 0, "198.18.0.7/32"),
        RtEvent("route", socket.AF_INET, 0, "0.0.0.0/0")]


def test_affected_by_route():
    """Only a route that covers a peer or its gateway re-resolves it: a server's per-session
    /32 routes to the clients' tunnel addresses concern no peer (issue 9, churn)."""
    decisions = {PEER: Nexthop(PEER, PEER, MAC, "198.51.100.1", 1500),
                 FAR: Nexthop(FAR, "198.51.100.254", GW_MAC, "198.51.100.1", 1500)}
    peers = list(decisions)
    assert affected_by_route(decisions, peers, "198.18.0.7/32") == []
    assert affected_by_route(decisions, peers, f"{FAR}/32") == [FAR]
    assert affected_by_route(decisions, peers, "198.51.100.0/24") == peers     # FAR's gateway
    assert affected_by_route(decisions, peers, "0.0.0.0/0") == peers
    assert affected_by_route(decisions, peers, None) == peers


@pytest.mark.netns
def test_rtnl_queries_leave_nothing_unread():
    """Every request reads up to its acknowledgement: after many queries (found and not
    found) the socket holds nothing (pyroute2's IPRoute kept one unread message per request,
    the churn RSS growth of issue 9), and the answers match the kernel's."""
    with gre_pair(prefix="packetn") as rig, netns.entered(rig.a), Rtnl() as rtnl:
        idx = socket.if_nametoindex(rig.veth_a)
        run_in(rig.a, ["ip", "neigh", "replace", ADDR_B, "lladdr", MAC, "dev", rig.veth_a,
                       "nud", "permanent"])
        for _ in range(200):
            r = query_route(rtnl, ADDR_B)
            link = query_link(rtnl, idx)
            nb = query_neigh(rtnl, idx, ADDR_B)
            assert query_neigh(rtnl, idx, "198.51.100.99") is None
            assert query_route(rtnl, "203.0.113.9") is None             # no route there
            use_neighbour(rtnl, idx, "198.51.100.98")                   # ARPs, answered by ack
        assert r == RouteInfo(RTN_UNICAST, idx, None, ADDR_A)
        assert link is not None and (link.index, link.mac, link.mtu, link.up) == \
            (idx, mac_of(rig.a, rig.veth_a), 1500, True)
        assert nb == NeighInfo(idx, ADDR_B, MAC, NUD_PERMANENT)
        assert query_link(rtnl, 99999) is None
        rtnl._s.setblocking(False)
        with pytest.raises(BlockingIOError):          # nothing left unread
            rtnl._s.recv(1 << 16)


@pytest.mark.netns
def test_unanswered_peer_stays_slow_and_turns_fast_when_it_appears():
    """Nobody has 198.51.100.77 yet: ARP fails, the peer stays on the slow path and the
    tracker keeps asking the kernel; once B takes the address, the next try resolves it."""
    late = "198.51.100.77"
    with gre_pair(prefix="packetn") as rig, tracker_in(rig.a, rig.veth_a, refresh=0.3) as (t, table):
        d = t.add_peer(late)
        assert isinstance(d, SlowPath) and d.kick
        wait_for(lambda: "state 0x20" in getattr(t.decision(late), "reason", ""), 10,
                 what="ARP for the absent peer to fail (NUD_FAILED)")
        assert late not in table.entries
        netlink.add_address(rig.veth_b, f"{late}/24", netns=rig.b)
        wait_for(lambda: table.entries.get(late, ("",))[0] == mac_of(rig.b, rig.veth_b), 10,
                 what="the peer resolved once it answers")


@pytest.mark.netns
def test_per_session_routes_leave_peers_behind_a_gateway_alone(tmp_path):
    """A server's peers mostly sit behind one gateway, and each session adds and removes a /32
    route to its client's tunnel address.  Those route events re-resolve no peer: they used
    to re-resolve every peer each (N x N netlink queries through pyroute2, the tracker's
    thread busy for minutes and the server's RSS growing ~2 MB/s with 200 sessions on the
    fast GRE ports, issue 9)."""
    n = 100
    peers = [f"203.0.113.{10 + i}" for i in range(n)]
    with routed_rig() as (rig, r, ra):
        gw_mac = mac_of(r, ra)
        # a static gateway entry: no neighbour events of its own while we count
        run_in(rig.a, ["ip", "neigh", "replace", "198.51.100.254", "lladdr", gw_mac, "dev",
                       rig.veth_a, "nud", "permanent"])
        run_in(rig.a, ["ip", "tuntap", "add", "memtun0", "mode", "tun"])      # a session's
        run_in(rig.a, ["ip", "link", "set", "memtun0", "up"])
        with tracker_in(rig.a, rig.veth_a, refresh=60.0) as (t, table):
            # its thread has a name /proc shows (which thread burns CPU or grows an arena)
            assert t._thread is not None
            with open(f"/proc/self/task/{t._thread.native_id}/comm") as f:
                assert f.read().strip() == "fp-nexthop"
            for p in peers:
                t.add_peer(p)
            assert all(table.entries.get(p, ("",))[0] == gw_mac for p in peers)
            time.sleep(0.3)                 # the link events of the set-up, handled
            ev0, res0, calls0 = t.events, t.resolutions, table.calls
            cmds = "".join(f"route add 198.18.0.{i}/32 dev memtun0\n" for i in range(1, n + 1))
            cmds += "".join(f"route del 198.18.0.{i}/32 dev memtun0\n" for i in range(1, n + 1))
            (tmp_path / "routes").write_text(cmds)
            run_in(rig.a, ["ip", "-batch", str(tmp_path / "routes")])
            wait_for(lambda: t.events - ev0 >= 2 * n, 10, what="the route events seen")
            t.refresh_all()                 # a round trip through the tracker's thread
            assert t.resolutions - res0 == n, "route events re-resolved peers"
            assert table.calls - calls0 == n
