"""A peer that chooses its own IPCP address (issue 11, Framed-IP-Address 255.255.255.255).

RFC 1332 §3.3: the peer states its address in IP-Address; a server that lets it choose
(pppd ``ipcp-accept-remote`` with RADIUS's 255.255.255.255) acks a good one and answers a
bad one with a Configure-Nak carrying a pool address.  Bad: 0.0.0.0 (the peer asks us to
choose), loopback, multicast, class E and the limited broadcast (pppd's bad_ip_adrs), our
own tunnel address, one another live session holds, one outside the user's chap-secrets
address column.  Two links sharing one AddressPool never end up with the same address.
Sans-I/O: two PPPLinks wired back to back, no sockets."""
from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from fastpptp.config import AddressPool, client_link_config, parse_ppp_options, server_link_config
from fastpptp.ppp.auth.base import (
    FRAMED_IP_FROM_POOL, FRAMED_IP_PEER_CHOOSES, ReplyAttributes, VerifyResult,
)
from fastpptp.ppp.auth.local import LocalVerifier
from fastpptp.ppp.auth.secrets import SecretsFile, StaticBackend
from fastpptp.ppp.constants import Code, Protocol
from fastpptp.ppp.ipcp import IPCP, OPT_IP_ADDRESS, IpcpConfig
from fastpptp.teardown import Teardown
from fastpptp.ppp.link import (
    NO_PEER_ADDRESS, LinkDown, NetworkUp, PPPLink, VerifyPeer, peer_address_problem,
)
from fastpptp.ppp.packet import Packet

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
LOCAL_IP = "198.51.100.1"
POOL = ["198.51.100.10", "198.51.100.11"]
CHOSEN = "203.0.113.50"
VERIFIER = LocalVerifier(StaticBackend(USERS))


class Owner:
    """What fastpptp.server.Server gives each link: one AddressPool for every session."""

    def __init__(self, addresses=POOL, allowed=None):
        self.pool = AddressPool(addresses)
        self.allowed = allowed           # user -> chap-secrets Secret (its address column)

    def assign(self, user):
        return self.pool.allocate()

    def claim(self, user, addr):
        if str(addr) == LOCAL_IP:
            return "one of our tunnel addresses"
        return None if self.pool.claim(str(addr)) else "in use by another session"

    def peer_allowed(self, user, addr):
        entry = None if self.allowed is None else self.allowed.lookup(user, "pptpd")
        return entry is None or not entry.addresses or entry.allows_address(str(addr))


def server(owner: Owner, opts="require-pap ipcp-accept-remote") -> PPPLink:
    cfg = server_link_config(parse_ppp_options(opts + " lcp-echo-interval 0"), local_ip=LOCAL_IP,
                             assign_address=owner.assign, release_address=owner.pool.release,
                             claim_address=owner.claim, peer_address_allowed=owner.peer_allowed)
    return PPPLink(cfg, "server", None, random.Random(1), external_verifier=True)


def client(user="alice", wants: str | None = CHOSEN) -> PPPLink:
    opts = (f"{wants}: " if wants else "") + "lcp-echo-interval 0"
    return PPPLink(client_link_config(parse_ppp_options(opts), user=user, password=USERS[user]),
                   "client", None, random.Random(2))


class Run:
    """The pair brought up, the verifier answering with ``framed``: what each side said."""

    def __init__(self, s: PPPLink, c: PPPLink, framed=FRAMED_IP_PEER_CHOOSES, now=0.0):
        self.sent: list[Packet] = []               # the server's IPCP packets
        self.s_events: list = []
        self.c_events: list = []
        c.lower_up(now)
        s.lower_up(now)
        for _ in range(80):
            for ev in s.events():
                if isinstance(ev, VerifyPeer):
                    r = VERIFIER.verify(ev.request)
                    s.verified(ev.request, VerifyResult(
                        r.accepted, message=r.message,
                        attributes=ReplyAttributes(framed_ip=framed)), now)
                self.s_events.append(ev)
            self.c_events += c.events()
            fs, fc = s.frames_to_send(), c.frames_to_send()
            if not fs and not fc:
                break
            for proto, payload in fs:
                if proto == Protocol.IPCP:
                    self.sent.append(Packet.decode(payload))
                c.receive(proto, payload, now)
            for proto, payload in fc:
                s.receive(proto, payload, now)
        self.s_events += s.events()
        self.c_events += c.events()

    @property
    def server_up(self) -> NetworkUp | None:
        return _up(self.s_events)

    @property
    def client_up(self) -> NetworkUp | None:
        return _up(self.c_events)

    @property
    def nak_hints(self) -> list[str]:
        return [str(IPv4Address(o.value)) for p in self.sent if p.code == Code.CONFIGURE_NAK
                for o in p.options() if o.type == OPT_IP_ADDRESS]


def _up(events) -> NetworkUp | None:
    ups = [e for e in events if isinstance(e, NetworkUp) and e.family == 4]
    return ups[-1] if ups else None


def test_a_good_address_is_acked_and_takes_nothing_from_the_pool():
    owner = Owner()
    s = server(owner)
    r = Run(s, client())
    assert r.nak_hints == []
    assert str(r.client_up.local) == CHOSEN and str(r.server_up.remote) == CHOSEN
    assert owner.pool.in_use == {CHOSEN} and len(owner.pool) == len(POOL)   # pool untouched
    s.lower_down(1.0)
    assert owner.pool.in_use == frozenset()                   # given back at Dead, once


@pytest.mark.parametrize("wants,why", [
    (None, "0.0.0.0: the peer asks us to choose"),
    ("127.0.0.5", "loopback"),
    ("224.0.0.9", "multicast"),
    ("240.0.0.1", "class E"),
    ("255.255.255.255", "limited broadcast"),
    ("0.1.2.3", "this network, 0.0.0.0/8"),
    (LOCAL_IP, "our own tunnel address"),
])
def test_a_bad_address_is_nakd_with_a_pool_address(wants, why):
    owner = Owner()
    s = server(owner)
    r = Run(s, client(wants=wants))
    assert r.nak_hints == [POOL[0]], why
    assert str(r.client_up.local) == POOL[0] and str(r.server_up.remote) == POOL[0]
    assert owner.pool.in_use == {POOL[0]}
    assert s.counters["peer_address_refused"] == (0 if wants is None else 1)  # 0.0.0.0: no refusal


def test_an_address_another_session_holds_is_nakd():
    owner = Owner()
    a = server(owner)
    assert str(Run(a, client("alice")).client_up.local) == CHOSEN
    r = Run(server(owner), client("bob"))                 # bob asks for alice's address
    assert r.nak_hints == [POOL[0]]
    assert str(r.client_up.local) == POOL[0] and str(r.server_up.remote) == POOL[0]
    assert owner.pool.in_use == {CHOSEN, POOL[0]}
    # alice leaves: her address is free again for the next one who asks
    a.lower_down(1.0)
    assert str(Run(server(owner), client("bob")).client_up.local) == CHOSEN


def test_chap_secrets_address_column_limits_the_choice():
    secrets = SecretsFile.from_text(
        'alice pptpd "alice-pw" 203.0.113.0/28 !203.0.113.5\n'
        'bob   pptpd "bob-pw"   *\n')
    owner = Owner(allowed=secrets)
    for user, wants, gets in [("alice", "203.0.113.9", "203.0.113.9"),      # in her subnet
                              ("alice", "203.0.113.5", POOL[0]),            # excluded: !addr
                              ("alice", CHOSEN, POOL[0]),                   # outside the /28
                              ("bob", CHOSEN, CHOSEN)]:                     # "*": any
        s = server(owner)
        r = Run(s, client(user, wants))
        assert str(r.client_up.local) == gets, (user, wants)
        s.lower_down(1.0)
    assert owner.pool.in_use == frozenset()


def test_without_ipcp_accept_remote_the_peer_gets_a_pool_address():
    """pppd's default: 255.255.255.255 from RADIUS, no ipcp-accept-remote -> the pool."""
    r = Run(server(Owner(), "require-pap"), client())
    assert r.nak_hints == [POOL[0]] and str(r.client_up.local) == POOL[0]


def test_refused_with_an_empty_pool_the_link_ends_no_peer_address():
    owner = Owner(addresses=[])
    s = server(owner)
    r = Run(s, client(wants="127.0.0.1"))
    assert r.client_up is None and s.down_reason == NO_PEER_ADDRESS
    assert [e for e in r.s_events if isinstance(e, LinkDown)] == [LinkDown(NO_PEER_ADDRESS, Teardown.NO_ADDRESS)]
    assert owner.pool.in_use == frozenset()


def test_the_verifiers_own_address_is_held_and_never_shared():
    """Framed-IP-Address a.b.c.d: claimed in the pool like a peer's choice; a second session
    with the same address is refused (NO_PEER_ADDRESS), given neither it nor a pool address."""
    owner = Owner()
    a = server(owner)
    r = Run(a, client("alice", wants=None), framed=IPv4Address("203.0.113.7"))
    assert str(r.client_up.local) == "203.0.113.7" and owner.pool.in_use == {"203.0.113.7"}
    b = server(owner)
    r = Run(b, client("bob", wants=None), framed=IPv4Address("203.0.113.7"))
    assert r.client_up is None and b.down_reason == NO_PEER_ADDRESS
    assert owner.pool.in_use == {"203.0.113.7"}
    a.lower_down(1.0)
    assert owner.pool.in_use == frozenset()


def test_framed_ip_from_pool_is_still_the_pool():
    r = Run(server(Owner()), client(), framed=FRAMED_IP_FROM_POOL)
    assert str(r.client_up.local) == POOL[0]


def test_many_sessions_asking_for_one_address_get_distinct_ones():
    owner = Owner(addresses=[f"198.51.100.{i}" for i in range(10, 16)])
    got = [str(Run(server(owner), client("alice" if i % 2 else "bob")).server_up.remote)
           for i in range(6)]
    assert len(set(got)) == 6 and got[0] == CHOSEN
    assert owner.pool.in_use == frozenset(got)


def test_ipcp_nak_adds_the_address_a_silent_peer_left_out():
    """RFC 1661 §5.3: a Configure-Request without IP-Address is Nak'd to add one -- also
    when the server's address comes from its assign_peer_address callback."""
    asked = []
    ipcp = IPCP(IpcpConfig(local_address=LOCAL_IP,
                           assign_peer_address=lambda a: asked.append(a) or IPv4Address(POOL[0])),
                random.Random(1))
    ipcp.open(0.0)
    ipcp.up(0.0)
    ipcp.frames_to_send()
    ipcp.receive(Packet(Code.CONFIGURE_REQUEST, 7, b"").encode(), 0.0)
    (nak,) = [Packet.decode(f) for _, f in ipcp.frames_to_send()
              if Packet.decode(f).code == Code.CONFIGURE_NAK]
    assert [(o.type, str(IPv4Address(o.value))) for o in nak.options()] == [(OPT_IP_ADDRESS, POOL[0])]
    assert asked == [IPv4Address(0)]


@pytest.mark.parametrize("addr,problem", [
    ("203.0.113.50", None), ("198.51.100.2", None),
    ("0.0.0.0", "unspecified"), ("127.0.0.1", "loopback"), ("239.1.1.1", "multicast"),
    ("255.255.255.255", "broadcast"), ("250.0.0.1", "reserved"), (LOCAL_IP, "our own"),
])
def test_peer_address_problem(addr, problem):
    got = peer_address_problem(IPv4Address(addr), IPv4Address(LOCAL_IP))
    assert (got is None) if problem is None else (problem in got)


def test_ipcp_accept_remote_is_the_pppd_option_that_turns_it_on():
    on = parse_ppp_options("ipcp-accept-remote")
    assert on.ipcp_accept_remote and "ipcp-accept-remote" not in on.ignored
    assert server_link_config(on, local_ip=LOCAL_IP).peer_may_choose_address
    assert not server_link_config(parse_ppp_options(""), local_ip=LOCAL_IP).peer_may_choose_address
