"""Replay the pptp-linux/pppd client side of the real sessions in
tests/data/captures/*.pcap into a *server* PPPLink.

pppd's server chose its CHAP Identifier and Challenge at random; we inject the captured ones
through the rng (the test hook), so the captured client Response must verify against the
capture's credentials fastpptp / fastpptp-secret.  The client's Configure-Acks answer pppd's
requests, not ours (Identifiers and Magic-Numbers differ), so each one is replaced by an Ack
of the request our server actually sent -- everything else the client said is fed verbatim,
and what our server answers to it is compared with what pppd answered, byte for byte.
Finally the client's MPPE-128 datagrams are decrypted with the keys our link derived.
"""
import random
from ipaddress import IPv4Address

import pytest

from fastpptp import gre
from fastpptp.crypto import mppe
from fastpptp.ppp import frame as pppframe
from fastpptp.ppp.auth.policy import AuthPolicy
from fastpptp.ppp.auth.secrets import SecretsFile, SecretsFileBackend
from fastpptp.ppp.constants import AuthMethod, Code, Protocol
from fastpptp.ppp.ipcp import IpcpConfig
from fastpptp.ppp.lcp import LcpConfig
from fastpptp.ppp.link import (
    Authenticated, LcpOpened, LinkConfig, LinkDown, MppeUp, NetworkDown, NetworkUp, Phase,
    PPPLink,
)
from support.paths import CAPTURES
from support.pcap import read_pcap

SERVER, CLIENT = "192.0.2.10", "192.0.2.20"

SCENARIOS = {
    "pap.pcap": ("auth require-pap", AuthMethod.PAP),
    "chap-md5.pcap": ("auth require-chap", AuthMethod.CHAP_MD5),
    "mschapv2-nompe.pcap": ("auth require-mschap-v2 nomppe", AuthMethod.MSCHAP_V2),
    "mschapv2-mppe128.pcap": ("auth require-mschap-v2 require-mppe-128", AuthMethod.MSCHAP_V2),
    "server-shutdown.pcap": ("auth require-mschap-v2 require-mppe-128", AuthMethod.MSCHAP_V2),
}
CONTROL = (Protocol.LCP, Protocol.PAP, Protocol.CHAP, Protocol.CCP, Protocol.IPCP)


def ppp_frames(path):
    out = []
    for f in read_pcap(path):
        if f.proto != 47 or not f.gre_bytes:
            continue
        _, ppp = gre.decode_packet(f.gre_bytes)
        if not ppp:
            continue                        # GRE ack-only
        proto, info = pppframe.decode(ppp)
        out.append((f.ip_src, proto, info))
    return out


class CapturedChallengeRng(random.Random):
    """Identifiers and 16-octet challenges as pppd drew them in the capture."""

    def __init__(self, ident, challenge):
        super().__init__(1)
        self.ident, self.challenge = ident, challenge

    def randrange(self, *a):
        return self.ident

    def randbytes(self, n):
        return self.challenge if self.challenge and n == len(self.challenge) \
            else super().randbytes(n)


def pppd_like_server(name, frames):
    options, _ = SCENARIOS[name]
    chal = next((i for s, p, i in frames if s == SERVER and p == Protocol.CHAP and i[0] == 1),
                None)
    ident = chal[1] if chal else 1
    challenge = chal[5:5 + chal[4]] if chal else b""
    cfg = LinkConfig(
        lcp=LcpConfig(mru=None, echo_interval=0),      # pppd asked for no MRU here
        policy=AuthPolicy.from_options(options), name="pptpd",
        ipcp=IpcpConfig(local_address="198.51.100.1", peer_address="198.51.100.2"))
    backend = SecretsFileBackend(
        SecretsFile.from_text('fastpptp pptpd "fastpptp-secret" *\n'), server_name="pptpd")
    return PPPLink(cfg, "server", backend, CapturedChallengeRng(ident, challenge))


def pppd_reply(frames, index, proto, codes):
    """pppd's first answer (one of ``codes``, same Identifier) to the client's frame at
    ``index``."""
    ident = frames[index][2][1]
    for src, p, info in frames[index + 1:]:
        if src == SERVER and p == proto and info[0] in codes and info[1] == ident:
            return info
    return None


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_replay_client_into_server_link(name):
    path = CAPTURES / name
    frames = ppp_frames(path)
    link = pppd_like_server(name, frames)
    link.lower_up(0.0)
    sent = {p: [] for p in CONTROL}                 # our requests, per protocol
    events = []
    compared = 0
    encrypted = []

    def collect():
        for p, info in link.frames_to_send():
            sent.setdefault(p, []).append(info)
        events.extend(link.events())

    collect()
    now = 0.0
    for i, (src, proto, info) in enumerate(frames):
        if src != CLIENT:
            continue
        now += 0.01
        if proto == Protocol.COMPRESSED:
            encrypted.append(info)
            continue
        if proto not in CONTROL:
            continue
        if proto in (Protocol.LCP, Protocol.CCP, Protocol.IPCP) and info[0] == Code.CONFIGURE_ACK:
            ours = [r for r in sent[proto] if r[0] == Code.CONFIGURE_REQUEST]
            assert ours, f"client acked a {proto:#x} request we never sent"
            info = bytes([Code.CONFIGURE_ACK]) + ours[-1][1:]
        before = {p: len(v) for p, v in sent.items()}
        link.receive(proto, info, now)
        collect()
        new = [(p, r) for p, v in sent.items() for r in v[before.get(p, 0):]]
        # Our answer to a client Configure-Request / auth request must be pppd's, byte for
        # byte (Identifiers echo the client's, so they match too).
        if proto in (Protocol.LCP, Protocol.CCP, Protocol.IPCP) and \
                info[0] == Code.CONFIGURE_REQUEST:
            ours = [r for p, r in new if p == proto and r[0] in (2, 3, 4)]
            theirs = pppd_reply(frames, i, proto, (2, 3, 4))
            assert ours and theirs and ours[0] == theirs, (proto, ours, theirs)
            compared += 1
        elif proto in (Protocol.PAP, Protocol.CHAP):
            ours = [r for p, r in new if p == proto]
            theirs = pppd_reply(frames, i, proto, (2, 3) if proto == Protocol.PAP else (3, 4))
            assert ours == [theirs]                 # "Login ok" / "S=... M=Access granted"
            compared += 1
        elif proto == Protocol.LCP and info[0] == Code.TERMINATE_REQUEST:
            ours = [r for p, r in new if p == Protocol.LCP]
            assert ours and ours[0][0] == Code.TERMINATE_ACK and ours[0][1] == info[1]

    _, method = SCENARIOS[name]
    assert compared >= 4
    kinds = [type(e) for e in events]
    assert kinds[:2] == [LcpOpened, Authenticated]
    (auth,) = [e for e in events if isinstance(e, Authenticated)]
    assert (auth.user, auth.method) == ("fastpptp", method)
    (up,) = [e for e in events if isinstance(e, NetworkUp)]
    assert (up.local, up.remote) == (IPv4Address("198.51.100.1"), IPv4Address("198.51.100.2"))
    mppe_up = [e for e in events if isinstance(e, MppeUp)]
    if "mppe" in SCENARIOS[name][0].replace("nomppe", ""):
        (mu,) = mppe_up
        assert kinds.index(MppeUp) < kinds.index(NetworkUp)
        assert (mu.bits, mu.tx_stateful, mu.rx_stateful, mu.mode) == (128, False, False, "stateless")
        # our server's receive key decrypts what the real client sent
        dec = mppe.MppeDecryptor(mu.recv_key, 128, stateful=False)
        assert encrypted
        for pkt in encrypted:
            plain = dec.decrypt(pkt)
            assert plain[:2] == b"\x00\x21" and plain[2] >> 4 == 4
    else:
        assert not mppe_up and not encrypted
    if name != "server-shutdown.pcap":              # the client terminated: we go down
        assert NetworkDown in kinds
        for _ in range(5):
            t = link.get_timer()
            if t is None:
                break
            link.handle_timer(t)
            collect()
        (down,) = [e for e in events if isinstance(e, LinkDown)]
        assert down.reason.startswith("peer terminated")
        assert link.phase is Phase.DEAD


class CapturedPeerRng(random.Random):
    """Identifiers = the client's captured PAP Identifier; 16 random octets = the captured
    MS-CHAPv2 Peer-Challenge (the test hook for the client side)."""

    def __init__(self, ident, peer_challenge):
        super().__init__(2)
        self.ident, self.peer_challenge = ident, peer_challenge

    def randrange(self, *a):
        return self.ident

    def randbytes(self, n):
        return self.peer_challenge if self.peer_challenge and n == 16 \
            else super().randbytes(n)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_replay_server_into_client_link(name):
    """The pptpd/pppd *server* side of each capture fed to a client PPPLink: our Response
    (with the captured Peer-Challenge injected) and our answers to pppd's requests must be
    what pptp-linux/pppd sent, and the server's MPPE datagrams must decrypt."""
    path = CAPTURES / name
    frames = ppp_frames(path)
    options, method = SCENARIOS[name]
    mppe_on = "require-mppe" in options
    resp = next((i for s, p, i in frames if s == CLIENT and p in (Protocol.CHAP, Protocol.PAP)
                 and i[0] in (1, 2)), None)
    peer_challenge = resp[5:21] if method is AuthMethod.MSCHAP_V2 else b""
    cfg = LinkConfig(lcp=LcpConfig(mru=None, echo_interval=0),
                     policy=AuthPolicy.from_options(
                         "noauth " + ("require-mppe-128" if mppe_on else "nomppe")),
                     user="fastpptp", password="fastpptp-secret", remotename="pptpd")
    link = PPPLink(cfg, "client", None, CapturedPeerRng(resp[1], peer_challenge))
    link.lower_up(0.0)
    sent = {p: [] for p in CONTROL}
    events, encrypted, compared = [], [], 0

    def collect():
        for p, info in link.frames_to_send():
            sent.setdefault(p, []).append(info)
        events.extend(link.events())

    collect()
    for i, (src, proto, info) in enumerate(frames):
        if src != SERVER:
            continue
        if proto == Protocol.COMPRESSED:
            encrypted.append(info)
            continue
        if proto not in CONTROL:
            continue
        if proto in (Protocol.LCP, Protocol.CCP, Protocol.IPCP) and info[0] in (2, 3, 4):
            ours = [r for r in sent[proto] if r[0] == Code.CONFIGURE_REQUEST]
            assert ours, f"pppd answered a {proto:#x} request we never sent"
            if info[0] == Code.CONFIGURE_ACK:
                info = bytes([Code.CONFIGURE_ACK]) + ours[-1][1:]
            else:                                  # Nak/Reject: pppd's options, our id
                info = info[:1] + ours[-1][1:2] + info[2:]
        before = {p: len(v) for p, v in sent.items()}
        link.receive(proto, info, 1.0 + i / 100)
        collect()
        new = [(p, r) for p, v in sent.items() for r in v[before.get(p, 0):]]
        if proto in (Protocol.LCP, Protocol.CCP, Protocol.IPCP) and \
                info[0] == Code.CONFIGURE_REQUEST:
            ours = [r for p, r in new if p == proto and r[0] in (2, 3, 4)]
            ident = info[1]
            theirs = next(r for s, p, r in frames[i + 1:]
                          if s == CLIENT and p == proto and r[0] in (2, 3, 4) and r[1] == ident)
            assert ours and ours[0] == theirs, (proto, ours, theirs)
            compared += 1
        elif proto == Protocol.CHAP and info[0] == 1:
            assert [r for p, r in new if p == proto] == [resp]   # byte-identical Response
            compared += 1
    if method is AuthMethod.PAP:
        assert sent[Protocol.PAP][0] == resp                     # byte-identical request
        compared += 1
    assert compared >= 3
    kinds = [type(e) for e in events]
    (auth,) = [e for e in events if isinstance(e, Authenticated)]
    assert (auth.user, auth.method, auth.direction) == ("fastpptp", method, "self")
    (up,) = [e for e in events if isinstance(e, NetworkUp)]
    assert (up.local, up.remote) == (IPv4Address("198.51.100.2"), IPv4Address("198.51.100.1"))
    if mppe_on:
        (mu,) = [e for e in events if isinstance(e, MppeUp)]
        assert kinds.index(MppeUp) < kinds.index(NetworkUp)
        dec = mppe.MppeDecryptor(mu.recv_key, 128, stateful=False)
        assert encrypted
        for pkt in encrypted:
            plain = dec.decrypt(pkt)
            assert plain[:2] == b"\x00\x21" and plain[2] >> 4 == 4
    else:
        assert MppeUp not in kinds and not encrypted
