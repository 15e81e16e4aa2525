"""PPPLink owns the peer's pool address from allocation: every way the link ends releases
it exactly once (issue 10: addresses leaked when a call ended after IPCP started but before
IPCP was up)."""
from __future__ import annotations

import random

from fastpptp.config import AddressPool, client_link_config, parse_ppp_options, server_link_config
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.ppp.constants import Protocol
from fastpptp.ppp.link import NO_PEER_ADDRESS, LinkDown, NetworkUp, Phase, PPPLink

USERS = {"alice": "alice-secret"}
POOL = [f"198.51.100.{i}" for i in range(10, 15)]


class CountingPool:
    """An AddressPool that records every allocation and release."""

    def __init__(self, addresses):
        self.pool = AddressPool(addresses)
        self.given: list[str] = []
        self.released: list[str] = []

    def assign(self, user: str) -> str | None:
        addr = self.pool.allocate()
        if addr is not None:
            self.given.append(addr)
        return addr

    def release(self, addr: str) -> None:
        self.released.append(addr)
        self.pool.release(addr)


def pair(pool: CountingPool, mppe: bool = True) -> tuple[PPPLink, PPPLink]:
    policy = "require-mschap-v2 require-mppe-128" if mppe else "require-mschap-v2 nomppe"
    s = PPPLink(server_link_config(parse_ppp_options(policy + " lcp-echo-interval 0"),
                                   local_ip="198.51.100.1", assign_address=pool.assign,
                                   release_address=pool.release),
                "server", StaticBackend(USERS), random.Random(1))
    c = PPPLink(client_link_config(parse_ppp_options(("require-mppe-128" if mppe else "nomppe")
                                                     + " lcp-echo-interval 0"),
                                   user="alice", password=USERS["alice"]),
                "client", None, random.Random(2))
    return s, c


def shuttle(s: PPPLink, c: PPPLink, now: float, *, client_deaf_to_ipcp: bool = False,
            rounds: int = 60) -> None:
    """Frames both ways until quiet; ``client_deaf_to_ipcp``: the client vanishes at the
    server's first IPCP frame (nothing more from or to it)."""
    gone = False
    for _ in range(rounds):
        fs, fc = s.frames_to_send(), c.frames_to_send()
        if not fs and not fc:
            return
        for proto, payload in fs:
            if client_deaf_to_ipcp and proto == Protocol.IPCP:
                gone = True
            if not gone:
                c.receive(proto, payload, now)
        if not gone:
            for proto, payload in fc:
                s.receive(proto, payload, now)


def ipcp_started_not_up(pool: CountingPool) -> tuple[PPPLink, PPPLink]:
    s, c = pair(pool)
    given, released = len(pool.given), len(pool.released)
    c.lower_up(0.0)
    s.lower_up(0.0)
    shuttle(s, c, 0.0, client_deaf_to_ipcp=True)
    assert s.phase is Phase.NETWORK and s.ipcp is not None
    assert not [e for e in s.events() if isinstance(e, NetworkUp)]
    assert (len(pool.given), len(pool.released)) == (given + 1, released)
    return s, c


def test_lower_down_after_ipcp_started_releases_once():
    # TCP reset, Call-Clear-Request alone, a client cancelling mid-connect: the owner of the
    # call takes the link's lower layer down (CallSession.abort does)
    pool = CountingPool(POOL)
    for _ in range(3):
        s, _ = ipcp_started_not_up(pool)
        s.lower_down(1.0)
        s.lower_down(1.5)                        # twice: still one release
        assert [type(e) for e in s.events()][-1:] == [LinkDown]
    assert pool.released == pool.given and len(pool.pool) == 5


def test_client_vanishing_at_the_first_ipcp_frame_releases_once():
    pool = CountingPool(POOL)
    s, _ = ipcp_started_not_up(pool)
    now = 0.0
    while s.phase is not Phase.DEAD and now < 120.0:
        now += 1.0
        t = s.get_timer()
        if t is not None and t <= now:
            s.handle_timer(now)
        s.frames_to_send()                       # into the void
    assert s.phase is Phase.DEAD
    assert pool.released == pool.given and len(pool.pool) == 5


def test_lcp_renegotiation_gives_back_the_first_address():
    # The peer restarts LCP after IPCP started: auth runs again and a new address is
    # assigned -- the first one must not be lost meanwhile.
    pool = CountingPool(POOL)
    s, _ = ipcp_started_not_up(pool)
    _, c2 = pair(pool)
    c2.lower_up(2.0)
    shuttle(s, c2, 2.0)
    assert [e for e in s.events() if isinstance(e, NetworkUp)]
    assert len(pool.given) == 2 and pool.released == pool.given[:1]
    assert pool.pool.in_use == {pool.given[1]}
    s.lower_down(3.0)
    assert pool.released == pool.given and len(pool.pool) == 5


def test_full_session_releases_once():
    pool = CountingPool(POOL)
    s, c = pair(pool)
    c.lower_up(0.0)
    s.lower_up(0.0)
    shuttle(s, c, 0.0)
    assert [e for e in s.events() if isinstance(e, NetworkUp)]
    c.close(0.0, "bye")
    shuttle(s, c, 0.0)
    for t in (3.1, 6.2):
        for link in (s, c):
            if (d := link.get_timer()) is not None and d <= t:
                link.handle_timer(t)
        shuttle(s, c, t)
    assert s.phase is Phase.DEAD
    s.lower_down(7.0)
    assert pool.released == pool.given and len(pool.given) == 1


def test_pool_exhausted_is_the_named_reason():
    pool = CountingPool([])
    s, c = pair(pool)
    c.lower_up(0.0)
    s.lower_up(0.0)
    shuttle(s, c, 0.0)
    assert s.down_reason == NO_PEER_ADDRESS
