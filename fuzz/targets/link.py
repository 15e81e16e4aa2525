"""Target ``link``: the PPP link (fastpptp/ppp/link.py) in both roles -- LCP, PAP, CHAP,
MS-CHAPv1/v2, CCP/MPPE, IPCP, IPv6CP -- against a peer that sends plausible frame sequences.

Header octet: bit 0 the role under test (0 server, 1 client); bits 1-3 the policy (tables
below); bit 4 the mode:

* mode 0, **the attacker**: every frame the link receives comes from the input; the attacker
  does not know the secret (the link's secret is drawn at random for each process: not in
  any input).  Invariants: a server never authenticates the peer, never brings MPPE or a
  network protocol up, never reaches phase Network; a client whose policy accepts only
  MS-CHAPv2 with MPPE never reports itself authenticated (the peer cannot forge the
  authenticator response), never MppeUp, never NetworkUp; any client agrees only to methods
  its policy accepts.
* mode 1, **the honest peer with the secret, mutated mid-negotiation**: a real peer link
  (the other role, same secret) negotiates with the link under test; the input decides when
  frames cross, drops, corrupts or reorders them and injects its own.  Invariants: the link
  only goes Network after authentication, MPPE comes up before any NCP when required, and
  nothing raises.

Both modes: every step keeps the link's queues within their documented bounds
(``MAX_FRAMES``, ``MAX_EVENTS``, ``MAX_HELD_FRAMES``) and a ``LinkDown`` comes at most once
per ``lower_up``.

Records: 0 frame to the link (protocol by index, information field); 1 time passes (octet /
8 s, timers fire); 2 answer the link's last frame of a protocol with its code changed
(Configure-Ack of its own request, Echo-Reply...: the reflections an attacker gets for free);
3 lower layer events (down / close / up / MPPE reset needed); 4 mode 1: let k frames cross;
5 mode 1: drop the honest peer's next frame; 6 mode 1: corrupt the honest peer's next frame
at an offset; 7 a frame to the honest peer.
"""
from __future__ import annotations

import os
import random
from ipaddress import IPv4Address

from fastpptp.ppp.auth.policy import AuthPolicy
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.ppp.constants import EV_MPPE_RESET_NEEDED, AuthMethod, Protocol
from fastpptp.ppp.ipcp import IpcpConfig
from fastpptp.ppp.ipv6cp import Ipv6cpConfig
from fastpptp.ppp.lcp import LcpConfig
from fastpptp.ppp.link import (
    MAX_EVENTS, MAX_FRAMES, MAX_HELD_FRAMES, Authenticated, LinkConfig, LinkDown, MppeUp,
    NetworkUp, Phase, PPPLink,
)

from ..records import Reader, Writer, check

NAME = "link"
USER = "fuzzuser"
# the link's secret: unknown to every input (fresh per process); the honest peer of mode 1
# is given it, the attacker of mode 0 is not
SECRET = os.urandom(12).hex()
RECORDED = "recorded-secret"    # the secret of the seeds' transcripts (not the link's)

PROTOCOLS = (Protocol.LCP, Protocol.PAP, Protocol.CHAP, Protocol.CCP, Protocol.IPCP,
             Protocol.IPV6CP, Protocol.IPV4, Protocol.IPV6, 0x8021 + 2, 0x0021 + 0x100)
_PROTO_INDEX = {int(p): i for i, p in enumerate(PROTOCOLS)}

SERVER_POLICIES = (
    ("auth require-pap", False),
    ("auth require-chap", False),
    ("auth require-mschap", True),
    ("auth require-mschap-v2 require-mppe-128", False),
    ("auth", True),
    ("auth require-mschap-v2 require-mppe-40 require-mppe-128 mppe-stateful", True),
    ("auth require-mschap require-mschap-v2 require-mppe", False),
    ("auth require-mschap-v2", True),
)
CLIENT_POLICIES = (
    ("noauth refuse-pap refuse-chap refuse-mschap require-mppe-128", False),   # strict
    ("noauth require-mppe-128", False),
    ("noauth", True),
    ("noauth refuse-pap refuse-chap", True),
    ("noauth refuse-pap refuse-chap refuse-mschap require-mppe-128 mppe-stateful", True),
    ("noauth refuse-mschap-v2 refuse-mschap", False),
    ("noauth prefer-mppe-stateful require-mppe", False),
    ("noauth refuse-pap", False),
)
_STRICT_CLIENT = {0, 4}


def _server(policy: str, ipv6: bool, secret: str, seed: int) -> PPPLink:
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=5, echo_failure=3),
                     policy=AuthPolicy.from_options(policy),
                     ipcp=IpcpConfig(local_address="198.51.100.1", peer_address="198.51.100.2"),
                     ipv6cp=Ipv6cpConfig() if ipv6 else None, name="pptpd",
                     dns=(IPv4Address("192.0.2.53"),))
    return PPPLink(cfg, "server", StaticBackend({USER: secret}), random.Random(seed))


def _client(policy: str, ipv6: bool, secret: str, seed: int) -> PPPLink:
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=5, echo_failure=3),
                     policy=AuthPolicy.from_options(policy),
                     ipcp=IpcpConfig(request_dns=True),
                     ipv6cp=Ipv6cpConfig() if ipv6 else None, user=USER, password=secret,
                     remotename="pptpd")
    return PPPLink(cfg, "client", None, random.Random(seed))


class _Watch:
    """The ledger of one link's events, checked as they come."""

    def __init__(self, link: PPPLink, attacker: bool, strict: bool,
                 accepted: frozenset[AuthMethod]) -> None:
        self.link, self.attacker, self.strict, self.accepted = link, attacker, strict, accepted
        self.authed_peer = self.authed_self = False
        self.mppe = False
        self.downs = 0
        self.mppe_required = link.config.policy.mppe.required

    def step(self) -> None:
        link = self.link
        check(len(link._frames) <= MAX_FRAMES, f"{len(link._frames)} frames queued")
        check(len(link._events) <= MAX_EVENTS, f"{len(link._events)} events queued")
        check(len(link._held) <= MAX_HELD_FRAMES, f"{len(link._held)} NCP frames held")
        server = link.role == "server"
        for ev in link.events():
            if isinstance(ev, Authenticated):
                if ev.direction == "peer":
                    check(server and not self.attacker, f"peer authenticated: {ev}")
                    self.authed_peer = True
                else:
                    check(ev.method in self.accepted, f"agreed a refused method {ev.method}")
                    check(not (self.attacker and self.strict),
                          f"forged authenticator accepted: {ev}")
                    self.authed_self = True
            elif isinstance(ev, MppeUp):
                check(not (self.attacker and (server or self.strict)), "MppeUp for an attacker")
                check(self.authed_peer or self.authed_self, "MppeUp before authentication")
                self.mppe = True
            elif isinstance(ev, NetworkUp):
                check(not (self.attacker and (server or self.strict)),
                      f"NetworkUp for an attacker: {ev}")
                if server:
                    check(self.authed_peer, "NetworkUp before the peer authenticated")
                check(self.mppe or not self.mppe_required, "NetworkUp before MppeUp")
            elif isinstance(ev, LinkDown):
                self.downs += 1
                check(self.downs == 1, "LinkDown twice")
        if self.attacker and server:
            check(link.phase is not Phase.NETWORK, "server reached Network for an attacker")

    def restart(self) -> None:
        self.authed_peer = self.authed_self = self.mppe = False
        self.downs = 0


def _frame(r: Reader) -> tuple[int, bytes]:
    idx = r.byte()
    proto = int(PROTOCOLS[idx % len(PROTOCOLS)]) if idx < 0xF0 else r.u16()
    return proto, r.chunk()


def one_input(data: bytes) -> None:
    r = Reader(data)
    h = r.byte()
    client = bool(h & 1)
    mode = h >> 4 & 1
    pi = h >> 1 & 7
    policy, ipv6 = (CLIENT_POLICIES if client else SERVER_POLICIES)[pi]
    make, other = (_client, _server) if client else (_server, _client)
    link = make(policy, ipv6, SECRET, h)
    watch = _Watch(link, attacker=mode == 0, strict=client and pi in _STRICT_CLIENT,
                   accepted=frozenset(link.config.policy.auth_accept))
    peer = None
    if mode == 1:
        peer_policy = (SERVER_POLICIES if client else CLIENT_POLICIES)[r.byte() & 7]
        peer = other(peer_policy[0], peer_policy[1], SECRET, h + 1)
        peer.lower_up(0.0)
    now = 0.0
    link.lower_up(now)
    sent: dict[int, bytes] = {}      # the link's last frame per protocol
    to_link: list[tuple[int, bytes]] = []
    drop = corrupt = 0
    corrupt_at = 0
    steps = 0

    def collect() -> None:
        for proto, info in link.frames_to_send():
            sent[proto] = info
            if peer is not None:
                peer.receive(proto, info, now)
        if peer is not None:
            to_link.extend(peer.frames_to_send())
            peer.events()
            check(len(to_link) < 10 * MAX_FRAMES, "frames between the pair unbounded")
        watch.step()

    collect()
    while not r.done and steps < 300:
        steps += 1
        tag = r.byte() & 7
        if tag == 0:
            proto, info = _frame(r)
            link.receive(proto, info, now)
        elif tag == 1:
            now += r.byte() / 8
            for x in (link, peer):
                if x is not None:
                    t = x.get_timer()
                    if t is not None and t <= now:
                        x.handle_timer(now)
        elif tag == 2:
            idx, code = r.byte(), r.byte()
            info = sent.get(int(PROTOCOLS[idx % len(PROTOCOLS)]))
            if info:
                link.receive(int(PROTOCOLS[idx % len(PROTOCOLS)]), bytes([code]) + info[1:], now)
        elif tag == 3:
            what = r.byte() & 3
            if what == 0:
                link.lower_down(now)
            elif what == 1:
                link.close(now, "fuzz")
            elif what == 2:
                if link.phase is Phase.DEAD:       # else lower_up is a no-op
                    watch.restart()
                link.lower_up(now)
            else:
                link.engine_event(EV_MPPE_RESET_NEEDED, now)
        elif tag == 4 and peer is not None:
            for _ in range(r.byte() & 15):
                if not to_link:
                    break
                proto, info = to_link.pop(0)
                if drop:
                    drop -= 1
                    continue
                if corrupt and info:
                    corrupt -= 1
                    b = bytearray(info)
                    b[corrupt_at % len(b)] ^= 0xFF
                    info = bytes(b)
                link.receive(proto, info, now)
                collect()
        elif tag == 5:
            drop += 1
        elif tag == 6:
            corrupt += 1
            corrupt_at = r.byte()
        elif tag == 7 and peer is not None:
            proto, info = _frame(r)
            peer.receive(proto, info, now)
        collect()


# --------------------------------------------------------------------------- seeds

def _record_transcript(client_side: bool, pi: int, peer_pi: int) -> list[tuple[int, bytes]]:
    """What an honest peer sends the link under test in a real negotiation (with a secret
    that is not the link's: the seeds teach structure, not credentials)."""
    if client_side:
        link = _client(*CLIENT_POLICIES[pi], RECORDED, 7)
        peer = _server(*SERVER_POLICIES[peer_pi], RECORDED, 8)
    else:
        link = _server(*SERVER_POLICIES[pi], RECORDED, 7)
        peer = _client(*CLIENT_POLICIES[peer_pi], RECORDED, 8)
    link.lower_up(0.0)
    peer.lower_up(0.0)
    out = []
    for _ in range(40):
        a, b = link.frames_to_send(), peer.frames_to_send()
        if not a and not b:
            break
        for proto, info in a:
            peer.receive(proto, info, 0.0)
        for proto, info in b:
            out.append((proto, info))
            link.receive(proto, info, 0.0)
    return out


def _frames_record(w: Writer, frames: list[tuple[int, bytes]]) -> None:
    for proto, info in frames:
        idx = _PROTO_INDEX.get(proto)
        if idx is None:
            w.byte(0).byte(0xF0).u16(proto).chunk(info)
        else:
            w.byte(0).byte(idx).chunk(info)
        if proto == Protocol.LCP:
            w.byte(2).byte(0).byte(2)          # and Configure-Ack the link's own request


def seeds() -> list[bytes]:
    from .. import captures
    out = []
    for pi in range(8):
        for client_side in (False, True):
            h = (pi << 1) | int(client_side)
            for peer_pi in (pi, (pi + 3) % 8):
                try:
                    frames = _record_transcript(client_side, pi, peer_pi)
                except Exception:
                    continue
                w = Writer(bytes([h]))
                _frames_record(w, frames)
                w.byte(1).byte(40)
                out.append(w.bytes())
            honest = Writer(bytes([h | 0x10, pi]))
            for k in range(12):
                honest.byte(4).byte(15)
                if k == 3:
                    honest.byte(6).byte(5)
                if k == 6:
                    honest.byte(1).byte(30)
            out.append(honest.bytes())
    for _, frames in captures.ppp_frames():
        for client_side in (False, True):
            w = Writer(bytes([int(client_side) | 8]))
            _frames_record(w, [(p, i) for by_pns, p, i in frames if by_pns != client_side])
            out.append(w.bytes())
    return out
