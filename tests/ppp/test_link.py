"""PPPLink: RFC 1661 §3 phases, a client and a server wired back to back (fake clock)."""
import random
import struct
from ipaddress import IPv4Address

import pytest

from fastpptp.crypto import mschap
from fastpptp.ppp.auth.policy import AuthPolicy
from fastpptp.ppp.auth.secrets import SecretsFile, SecretsFileBackend, StaticBackend
from fastpptp.ppp.constants import AuthMethod, Code, Protocol
from fastpptp.ppp.ipcp import IpcpConfig
from fastpptp.ppp.ipv6cp import Ipv6cpConfig
from fastpptp.ppp.lcp import LcpConfig
from fastpptp.ppp.link import (
    EV_MPPE_LOST_SYNC, EV_MPPE_RESET_NEEDED, MPPE_LOST_SYNC, MPPE_NOT_NEGOTIATED,
    AuthenticationFailed, Authenticated, LinkConfig, LinkDown, MppeReset, MppeUp, NetworkDown, NetworkUp, Phase, PPPLink,
)
from fastpptp.ppp.packet import Option, Packet
from fastpptp.radius.accounting import AcctTerminateCause, terminate_cause
from fastpptp.teardown import Teardown

SERVER_IP, CLIENT_IP = "198.51.100.1", "198.51.100.2"
USERS = {"fastpptp": "fastpptp-secret"}


def server_link(options="auth require-mschap-v2 require-mppe-128", users=USERS, seed=1,
                **kw):
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=0), policy=AuthPolicy.from_options(options),
                     ipcp=IpcpConfig(local_address=SERVER_IP, peer_address=CLIENT_IP),
                     name="pptpd", dns=("192.0.2.53",), **kw)
    return PPPLink(cfg, "server", StaticBackend(users), random.Random(seed))


def client_link(options="noauth require-mppe-128", password="fastpptp-secret", seed=2,
                **kw):
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=0), policy=AuthPolicy.from_options(options),
                     ipcp=IpcpConfig(request_dns=True), user="fastpptp", password=password,
                     remotename="pptpd", **kw)
    return PPPLink(cfg, "client", None, random.Random(seed))


class Wire:
    """Back-to-back fake link: frames go across in order; records everything."""

    def __init__(self, a, b, now=0.0):
        self.a, self.b, self.now = a, b, now
        self.log = []                     # (sender, protocol, payload)
        self.events = {id(a): [], id(b): []}

    def run(self, rounds=50, drop=None):
        for _ in range(rounds):
            moved = False
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                for proto, payload in src.frames_to_send():
                    moved = True
                    self.log.append((src, proto, payload))
                    if drop is None or not drop(src, proto, payload):
                        dst.receive(proto, payload, self.now)
            for link in (self.a, self.b):
                self.events[id(link)].extend(link.events())
            if not moved:
                return

    def advance(self, dt):
        self.now += dt
        for link in (self.a, self.b):
            t = link.get_timer()
            if t is not None and t <= self.now:
                link.handle_timer(self.now)
        self.run()

    def of(self, link, kind):
        return [e for e in self.events[id(link)] if isinstance(e, kind)]


def connect(server, client):
    w = Wire(client, server)
    client.lower_up(0.0)
    server.lower_up(0.0)
    w.run()
    return w


def kinds(w, link):
    return [type(e).__name__ for e in w.events[id(link)]]


# --------------------------------------------------------------------------- pairs

def test_mschapv2_mppe128_stateless_pair():
    s, c = server_link(), client_link()
    w = connect(s, c)
    assert s.phase is Phase.NETWORK and c.phase is Phase.NETWORK
    assert kinds(w, s) == ["LcpOpened", "Authenticated", "MppeUp", "NetworkUp"]
    assert kinds(w, c) == ["LcpOpened", "Authenticated", "MppeUp", "NetworkUp"]
    (sa,), (ca,) = w.of(s, Authenticated), w.of(c, Authenticated)
    assert (sa.user, sa.method, sa.direction) == ("fastpptp", AuthMethod.MSCHAP_V2, "peer")
    assert (ca.user, ca.direction) == ("fastpptp", "self")
    (sm,), (cm,) = w.of(s, MppeUp), w.of(c, MppeUp)
    assert (sm.bits, sm.mode, cm.bits, cm.mode) == (128, "stateless", 128, "stateless")
    assert cm.send_key == sm.recv_key and cm.recv_key == sm.send_key
    assert len(cm.send_key) == 16 and cm.send_key != cm.recv_key
    assert "send_key" not in repr(sm) or sm.send_key.hex() not in repr(sm)
    (sn,), (cn,) = w.of(s, NetworkUp), w.of(c, NetworkUp)
    assert (sn.family, sn.local, sn.remote) == (4, IPv4Address(SERVER_IP), IPv4Address(CLIENT_IP))
    assert (cn.local, cn.remote) == (IPv4Address(CLIENT_IP), IPv4Address(SERVER_IP))
    assert cn.dns == (IPv4Address("192.0.2.53"),)
    # Neither side sent IPCP before its CCP was Opened (IP never flows unencrypted)
    for link in (s, c):
        protos = [p for src, p, _ in w.log if src is link]
        assert Protocol.IPCP in protos, link.role
        ccp_acks = [i for i, (src, p, pl) in enumerate(w.log)
                    if p == Protocol.CCP and pl[0] == Code.CONFIGURE_ACK]
        assert len(ccp_acks) == 2
        assert [i for i, (src, p, _) in enumerate(w.log)
                if src is link and p == Protocol.IPCP][0] > max(ccp_acks)


def test_mppe_keys_match_rfc3079_from_the_auth_exchange():
    s, c = server_link(), client_link()
    w = connect(s, c)
    nt = s.auth_result.nt_response
    send, recv = mschap.mppe_keys_mschapv2("fastpptp-secret", nt, is_server=True)
    (sm,) = w.of(s, MppeUp)
    assert (sm.send_key, sm.recv_key) == (send, recv)


def test_mschapv2_without_mppe():
    s = server_link("auth require-mschap-v2 nomppe")
    c = client_link("noauth nomppe")
    w = connect(s, c)
    assert kinds(w, s) == ["LcpOpened", "Authenticated", "NetworkUp"]
    assert kinds(w, c) == ["LcpOpened", "Authenticated", "NetworkUp"]
    assert Protocol.CCP not in {p for _, p, _ in w.log}


@pytest.mark.parametrize("opt,method", [("require-chap", AuthMethod.CHAP_MD5),
                                        ("require-pap", AuthMethod.PAP),
                                        ("require-mschap", AuthMethod.MSCHAP_V1)])
def test_other_methods_pair(opt, method):
    s = server_link(f"auth {opt}")
    c = client_link("noauth")
    w = connect(s, c)
    (sa,) = w.of(s, Authenticated)
    assert sa.method is method
    assert w.of(s, NetworkUp)[0].remote == IPv4Address(CLIENT_IP)
    assert w.of(c, NetworkUp)[0].local == IPv4Address(CLIENT_IP)


def test_mschapv1_mppe40():
    s = server_link("auth require-mschap require-mppe-40")
    c = client_link("noauth require-mppe")
    w = connect(s, c)
    (sm,), (cm,) = w.of(s, MppeUp), w.of(c, MppeUp)
    assert sm.bits == cm.bits == 40 and len(sm.send_key) == 8
    assert sm.send_key == cm.recv_key


def test_wrong_password_server_side_events_and_messages():
    s, c = server_link(), client_link(password="wrong")
    w = connect(s, c)
    (sf,), (cf,) = w.of(s, AuthenticationFailed), w.of(c, AuthenticationFailed)
    assert sf.user == "fastpptp" and sf.method is AuthMethod.MSCHAP_V2
    assert "E=691" in cf.reason and cf.direction == "self"
    # the wire carried the MS format Failure, then LCP Terminate
    failures = [p for _, proto, p in w.log if proto == Protocol.CHAP and p[0] == 4]
    assert len(failures) == 1 and b"E=691 R=0 C=" in failures[0]
    assert failures[0].endswith(b" V=3 M=Access denied")
    w.advance(3.1)
    w.advance(3.1)
    (sd,), (cd,) = w.of(s, LinkDown), w.of(c, LinkDown)
    assert sd.reason.startswith("Authentication failed")
    assert "E=691" in cd.reason or "Authentication failed" in cd.reason
    assert sd.cause is cd.cause is Teardown.AUTH_FAILED
    assert s.phase is Phase.DEAD and c.phase is Phase.DEAD
    assert not w.of(s, NetworkUp) and not w.of(s, MppeUp)


def test_authenticator_response_mismatch_fails_client():
    # A server that has a different secret but (wrongly) says Success cannot be built
    # honestly; tamper the Success on the wire instead.
    s, c = server_link(), client_link()
    w = Wire(c, s)

    def tamper(src, proto, payload):
        if src is s and proto == Protocol.CHAP and payload[0] == 3:
            bad = payload[:6] + (b"0" if payload[6:7] != b"0" else b"1") + payload[7:]
            c.receive(proto, bad, w.now)
            return True
        return False

    c.lower_up(0.0)
    s.lower_up(0.0)
    w.run(drop=tamper)
    w.events[id(c)].extend(c.events())
    (cf,) = w.of(c, AuthenticationFailed)
    assert "authenticator response mismatch" in cf.reason
    assert not w.of(c, MppeUp) and not w.of(c, NetworkUp)
    (cd,) = w.of(c, LinkDown)                  # the server acked our Terminate-Request
    assert cd.reason.startswith("Failed to authenticate ourselves to peer")
    assert cd.cause is Teardown.AUTH_FAILED


def test_mppe_required_client_only_accepts_mschap():
    # client requires MPPE: it only accepts MS-CHAP, so LCP Naks CHAP-MD5 towards
    # MS-CHAPv2; a server that allows only CHAP-MD5 then gives up.
    s = server_link("auth require-chap")
    c = client_link("noauth require-mppe-128")
    w = connect(s, c)
    w.advance(3.1)
    (sd,) = w.of(s, LinkDown)
    assert "refused to authenticate" in sd.reason
    assert sd.cause is Teardown.NEGOTIATION_FAILED           # LCP closed itself: no common method
    assert not w.of(c, Authenticated) and not w.of(c, NetworkUp)


def test_mppe_required_but_no_mschap_authentication():
    # The server does not authenticate us at all: no MS-CHAP, so no MPPE keys.
    s = server_link("noauth")
    c = client_link("noauth require-mppe-128")
    w = connect(s, c)
    w.advance(3.1)
    (cd,) = w.of(c, LinkDown)
    assert cd.reason == MPPE_NOT_NEGOTIATED and cd.cause is Teardown.NEGOTIATION_FAILED
    assert not w.of(c, NetworkUp) and not w.of(s, NetworkUp)


def test_mppe_required_server_client_refuses_mppe():
    s = server_link()                                   # require-mppe-128
    c = client_link("noauth nomppe")
    w = connect(s, c)
    for _ in range(6):
        w.advance(3.1)
    (sd,) = w.of(s, LinkDown)
    assert sd.reason == MPPE_NOT_NEGOTIATED and sd.cause is Teardown.NEGOTIATION_FAILED
    assert not w.of(s, NetworkUp)


def test_mppe_optional_server_and_mppe_client():
    s = server_link("auth require-mschap-v2 require-mppe-128")
    # a client allowing but not requiring MPPE gets it
    from fastpptp.ppp.auth.policy import MppePolicy
    pol = AuthPolicy(mppe=MppePolicy(allowed=True, required=False, bits=frozenset({128})))
    c = PPPLink(LinkConfig(lcp=LcpConfig(echo_interval=0), policy=pol, user="fastpptp",
                           password="fastpptp-secret"), "client", None, random.Random(5))
    w = connect(s, c)
    assert w.of(c, MppeUp) and w.of(c, NetworkUp)


def test_ccp_reset_request_both_ways():
    s, c = server_link("auth require-mschap-v2 require-mppe-128 mppe-stateful"), \
        client_link("noauth require-mppe-128 mppe-stateful")
    w = connect(s, c)
    c.engine_event(EV_MPPE_RESET_NEEDED, w.now)
    w.run()
    assert w.of(s, MppeReset)
    sent = [p for src, proto, p in w.log if src is c and proto == Protocol.CCP]
    assert sent[-1][0] == Code.RESET_REQUEST
    acks = [p for src, proto, p in w.log if src is s and proto == Protocol.CCP]
    assert acks[-1][0] == Code.RESET_ACK


# EV_MPPE_LOST_SYNC (the engine: stateless MPPE keys out of step for good, >= 4096 packets
# lost) ends the link cleanly: LCP Terminate, LinkDown with the reason, the peer told.
def test_lost_sync_terminates_the_link_with_its_reason():
    s, c = server_link(), client_link()
    w = connect(s, c)
    assert s.phase is Phase.NETWORK and c.mppe is not None
    c.engine_event(EV_MPPE_LOST_SYNC, w.now)
    assert c.counters["mppe_lost_sync"] == 1
    assert c.down_reason == MPPE_LOST_SYNC and c.down_cause is Teardown.MPPE_LOST_SYNC
    w.run()
    terms = [p for src, proto, p in w.log if src is c and proto == Protocol.LCP
             and p[0] == Code.TERMINATE_REQUEST]
    assert terms and MPPE_LOST_SYNC.encode() in terms[0]
    assert w.of(c, NetworkDown) and w.of(s, NetworkDown)
    # a second event (the engine raises one per run) changes nothing
    c.engine_event(EV_MPPE_LOST_SYNC, w.now)
    w.advance(3.1)
    (cd,) = w.of(c, LinkDown)
    assert cd.reason == MPPE_LOST_SYNC and cd.cause is Teardown.MPPE_LOST_SYNC
    (sd,) = w.of(s, LinkDown)
    assert MPPE_LOST_SYNC in sd.reason           # "peer terminated: ..." with our text
    assert sd.cause is Teardown.PEER_TERMINATE   # typed by the RFC 1661 event, not the text
    assert s.phase is Phase.DEAD and c.phase is Phase.DEAD
    assert c.counters["mppe_lost_sync"] == 2


def test_lost_sync_on_the_server_side_too():
    s, c = server_link(), client_link()
    w = connect(s, c)
    s.engine_event(EV_MPPE_LOST_SYNC, w.now)
    w.advance(3.1)
    (sd,) = w.of(s, LinkDown)
    assert sd.reason == MPPE_LOST_SYNC and sd.cause is Teardown.MPPE_LOST_SYNC


def test_lost_sync_without_mppe_is_only_counted():
    pol = AuthPolicy.from_options("noauth nomppe")
    c = PPPLink(LinkConfig(lcp=LcpConfig(echo_interval=0), policy=pol), "client", None,
                random.Random(3))
    c.lower_up(0.0)
    c.engine_event(EV_MPPE_LOST_SYNC, 0.0)
    assert c.counters["mppe_lost_sync"] == 1 and c.down_reason is None and c.down_cause is None
    assert c.phase is Phase.ESTABLISH


def test_accounting_calls_it_a_lost_carrier():
    """RFC 2866 §5.10: the tunnel stopped carrying data, as with unanswered echoes."""
    assert terminate_cause(Teardown.MPPE_LOST_SYNC) is AcctTerminateCause.LOST_CARRIER
    assert terminate_cause(Teardown.ECHO_TIMEOUT) is AcctTerminateCause.LOST_CARRIER


def test_client_close_terminates_both():
    s, c = server_link(), client_link()
    w = connect(s, c)
    c.close(w.now, "User request")
    w.run()
    assert w.of(s, NetworkDown) and w.of(c, NetworkDown)
    w.advance(3.1)
    (cd,) = w.of(c, LinkDown)
    assert cd.reason == "User request" and cd.cause is Teardown.LOCAL_CLOSE     # close()'s default
    (sd,) = w.of(s, LinkDown)
    assert "User request" in sd.reason and sd.cause is Teardown.PEER_TERMINATE
    assert s.phase is Phase.DEAD and c.phase is Phase.DEAD


def test_down_reason_has_the_peers_terminate_text_at_once():
    """pptpd closes TCP as soon as its pppd exits, before our LCP's Stopping time-out emits
    LinkDown: the session reads link.down_reason to keep pppd's reason in its log."""
    s, c = server_link(), client_link()
    w = connect(s, c)
    assert c.down_reason is None and c.down_cause is None
    s.close(w.now, "MPPE required but peer negotiation failed", Teardown.NEGOTIATION_FAILED)
    w.run()
    assert not w.of(c, LinkDown)                        # still Stopping
    assert c.down_reason == "peer terminated: MPPE required but peer negotiation failed"
    # the peer's words are its own: what we know is that it sent a Terminate-Request
    assert c.down_cause is Teardown.PEER_TERMINATE and s.down_cause is Teardown.NEGOTIATION_FAILED


def test_lcp_echo_failure_brings_link_down():
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=5, echo_failure=2),
                     policy=AuthPolicy.from_options("noauth"),
                     ipcp=IpcpConfig(local_address=SERVER_IP, peer_address=CLIENT_IP))
    s = PPPLink(cfg, "server", StaticBackend({}), random.Random(1))
    c = client_link("noauth")
    w = connect(s, c)
    assert w.of(s, NetworkUp)
    w.a = w.b = None                                    # cut the wire: nothing answers
    t = 0.0
    for _ in range(40):
        t = s.get_timer() or t + 1
        s.handle_timer(t)
        s.frames_to_send()
        if s.phase is Phase.DEAD:
            break
    ev = [e for e in s.events() if isinstance(e, LinkDown)]
    assert ev and "not responding" in ev[0].reason
    assert ev[0].cause is Teardown.ECHO_TIMEOUT


def test_static_address_from_secrets_file():
    secrets = SecretsFile.from_text("fastpptp pptpd fastpptp-secret 198.51.100.77\n")
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=0),
                     policy=AuthPolicy.from_options("auth require-mschap-v2"),
                     ipcp=IpcpConfig(local_address=SERVER_IP), name="pptpd")
    s = PPPLink(cfg, "server", SecretsFileBackend(secrets, server_name="pptpd"),
                random.Random(3))
    c = client_link("noauth")
    w = connect(s, c)
    assert w.of(c, NetworkUp)[0].local == IPv4Address("198.51.100.77")


def test_assign_address_callback():
    seen = []

    def assign(user):
        seen.append(user)
        return "203.0.113.9"

    s = server_link("auth require-mschap-v2", assign_address=assign)
    c = client_link("noauth")
    w = connect(s, c)
    assert seen == ["fastpptp"]
    assert w.of(s, NetworkUp)[0].remote == IPv4Address("203.0.113.9")


def test_client_password_from_backend():
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=0), policy=AuthPolicy.from_options("noauth"),
                     user="fastpptp", remotename="pptpd")
    backend = SecretsFileBackend(SecretsFile.from_text("fastpptp pptpd fastpptp-secret\n"))
    c = PPPLink(cfg, "client", backend, random.Random(9))
    s = server_link("auth require-mschap-v2")
    w = connect(s, c)
    assert w.of(s, Authenticated) and w.of(c, NetworkUp)


def test_ipv6cp_pair():
    s = server_link("auth require-mschap-v2", ipv6cp=Ipv6cpConfig())
    c = client_link("noauth", ipv6cp=Ipv6cpConfig())
    w = connect(s, c)
    fams = sorted(e.family for e in w.of(s, NetworkUp))
    assert fams == [4, 6]
    (c6,) = [e for e in w.of(c, NetworkUp) if e.family == 6]
    (s6,) = [e for e in w.of(s, NetworkUp) if e.family == 6]
    assert c6.local == s6.remote and str(c6.local).startswith("fe80::")


def test_ipv6cp_disabled_is_protocol_rejected():
    s = server_link("auth require-mschap-v2")
    c = client_link("noauth", ipv6cp=Ipv6cpConfig())
    w = connect(s, c)
    rejects = [p for src, proto, p in w.log if src is s and proto == Protocol.LCP
               and p[0] == Code.PROTOCOL_REJECT]
    assert rejects and struct.unpack("!H", rejects[0][4:6])[0] == Protocol.IPV6CP
    assert [e.family for e in w.of(c, NetworkUp)] == [4]


def test_unknown_protocol_is_protocol_rejected_and_phases_filter():
    s = server_link()
    # Establish phase: anything but LCP is dropped silently
    s.lower_up(0.0)
    s.receive(Protocol.IPCP, b"\x01\x01\x00\x04", 0.0)
    s.receive(Protocol.CHAP, b"\x02\x01\x00\x04", 0.0)
    assert s.counters["discard_establish"] == 2
    assert all(p == Protocol.LCP for p, _ in s.frames_to_send())
    s2, c2 = server_link(), client_link()
    w = connect(s2, c2)
    s2.receive(0x8207, b"\x01\x01\x00\x04", w.now)        # an NCP we do not know
    ((proto, payload),) = s2.frames_to_send()
    assert proto == Protocol.LCP and payload[0] == Code.PROTOCOL_REJECT
    assert payload[4:6] == b"\x82\x07"
    s2.receive(Protocol.IPV4, b"\x45" + bytes(19), w.now)  # data: the engine's, dropped
    assert s2.frames_to_send() == [] and s2.counters["discard_data"] == 1


def test_ncp_frames_dropped_during_authenticate():
    s = server_link()
    c = client_link()
    w = Wire(c, s)
    c.lower_up(0.0)
    s.lower_up(0.0)
    # run until the server has sent its Challenge but hold the client's Response
    w.run(drop=lambda src, proto, p: proto == Protocol.CHAP)
    assert s.phase is Phase.AUTHENTICATE
    s.receive(Protocol.IPCP, Packet(Code.CONFIGURE_REQUEST, 9,
                                    Option(3, bytes(4)).encode()).encode(), w.now)
    assert s.counters["discard_authenticate"] == 1 and s.ipcp is None


def test_eap_request_is_naked_towards_mschapv2():
    # A server (Windows RRAS style) asks the client for EAP: the client Naks MS-CHAPv2,
    # and the link then completes MS-CHAPv2 end to end.
    c = client_link("noauth require-mppe-128")
    c.lower_up(0.0)
    c.frames_to_send()
    eap = Packet(Code.CONFIGURE_REQUEST, 1,
                 Option(3, b"\xc2\x27").encode() + Option(5, b"\x12\x34\x56\x78").encode())
    c.receive(Protocol.LCP, eap.encode(), 0.0)
    (nak,) = [p for proto, p in c.frames_to_send() if p[0] == Code.CONFIGURE_NAK]
    assert Option(3, b"\xc2\x23\x81").encode() in nak
    # and against a full server that starts with EAP-first policy, it negotiates v2:
    s = server_link()
    s.lcp._want_auth = AuthMethod.EAP                    # as if the server preferred EAP
    s.lcp._auth_tried = [AuthMethod.EAP]
    c2 = client_link("noauth require-mppe-128")
    w = connect(s, c2)
    (sa,) = w.of(s, Authenticated)
    assert sa.method is AuthMethod.MSCHAP_V2
    assert w.of(c2, MppeUp) and w.of(c2, NetworkUp)


def test_server_auth_timeout_brings_link_down():
    from fastpptp.ppp.auth.base import AuthTimers
    s = server_link(auth_timers=AuthTimers(restart=3, max_transmits=2, wait=30))
    c = client_link()
    w = Wire(c, s)
    c.lower_up(0.0)
    s.lower_up(0.0)

    def drop_chap(src, proto, p):
        return proto == Protocol.CHAP

    w.run(drop=drop_chap)
    for _ in range(10):
        w.now += 3.1
        for link in (c, s):
            t = link.get_timer()
            if t is not None and t <= w.now:
                link.handle_timer(w.now)
        w.run(drop=drop_chap)
    (sf,) = w.of(s, AuthenticationFailed)
    assert "Challenges" in sf.reason
    (sd,) = w.of(s, LinkDown)
    assert sd.cause is Teardown.AUTH_FAILED


# --------------------------------------------------------------------------- from pppd options

def test_for_server_and_for_client_from_pppd_options():
    from fastpptp.config import client_link_config, parse_ppp_options, server_link_config
    sopts = parse_ppp_options("name pptpd\nrequire-mschap-v2\nrequire-mppe-128\n"
                              "ms-dns 192.0.2.53\nlcp-echo-interval 0\n")
    copts = parse_ppp_options("noauth\nrequire-mppe-128\nusepeerdns\nremotename pptpd\n"
                              "lcp-echo-interval 0\n")
    given, released = [], []

    def assign(user):
        given.append(user)
        return "198.51.100.5"

    scfg = server_link_config(sopts, local_ip=SERVER_IP, assign_address=assign,
                              release_address=released.append)
    assert scfg.policy.auth_require == (AuthMethod.MSCHAP_V2,) and scfg.name == "pptpd"
    ccfg = client_link_config(copts, user="fastpptp", password="fastpptp-secret")
    assert ccfg.ipcp.request_dns and ccfg.remotename == "pptpd"
    s = PPPLink(scfg, "server", StaticBackend(USERS), random.Random(1))
    c = PPPLink(ccfg, "client", None, random.Random(2))
    w = connect(s, c)
    (cn,) = w.of(c, NetworkUp)
    assert cn.local == IPv4Address("198.51.100.5")
    assert cn.dns == (IPv4Address("192.0.2.53"),)
    assert w.of(c, MppeUp)
    c.close(w.now, "bye")
    w.run()
    w.advance(3.1)
    assert w.of(s, LinkDown) and released == ["198.51.100.5"] and given == ["fastpptp"]


def test_for_server_implies_auth():
    from fastpptp.config import parse_ppp_options, server_link_config
    cfg = server_link_config(parse_ppp_options("require-mppe-128\n"), local_ip=SERVER_IP)
    assert cfg.policy.auth_required
    assert cfg.policy.auth_require == (AuthMethod.MSCHAP_V2, AuthMethod.MSCHAP_V1)
    open_cfg = server_link_config(parse_ppp_options("noauth\n"), local_ip=SERVER_IP)
    assert not open_cfg.policy.auth_required


def test_server_without_an_address_for_the_peer_closes():
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=0),
                     policy=AuthPolicy.from_options("auth require-mschap-v2"),
                     ipcp=IpcpConfig(local_address=SERVER_IP), name="pptpd",
                     assign_address=lambda user: None)          # pool exhausted
    s = PPPLink(cfg, "server", StaticBackend(USERS), random.Random(1))
    c = client_link("noauth")
    w = connect(s, c)
    w.advance(3.1)
    (sd,) = w.of(s, LinkDown)
    assert sd.reason == "no IP address available for the peer" and sd.cause is Teardown.NO_ADDRESS
    assert not w.of(c, NetworkUp)


def test_mutual_authentication_both_directions_mschapv2_mppe():
    # pppd "auth" on both ends: each side authenticates the other with MS-CHAPv2.
    s = server_link(users={"fastpptp": "fastpptp-secret"}, user="pptpd",
                    password="server-secret")
    ccfg = LinkConfig(lcp=LcpConfig(echo_interval=0),
                      policy=AuthPolicy.from_options("auth require-mschap-v2 require-mppe-128"),
                      user="fastpptp", password="fastpptp-secret", name="fastpptp",
                      remotename="pptpd")
    c = PPPLink(ccfg, "client", StaticBackend({"pptpd": "server-secret"}), random.Random(8))
    w = connect(s, c)
    assert sorted(e.direction for e in w.of(s, Authenticated)) == ["peer", "self"]
    assert sorted(e.direction for e in w.of(c, Authenticated)) == ["peer", "self"]
    (sm,), (cm,) = w.of(s, MppeUp), w.of(c, MppeUp)
    assert sm.send_key == cm.recv_key and sm.recv_key == cm.send_key
    assert w.of(s, NetworkUp) and w.of(c, NetworkUp)


def test_link_can_come_up_again_after_link_down():
    s, c = server_link(), client_link()
    w = connect(s, c)
    c.close(w.now, "again")
    w.run()
    w.advance(3.1)
    assert s.phase is Phase.DEAD and c.phase is Phase.DEAD
    for link in (s, c):
        w.events[id(link)].clear()
    c.lower_up(w.now)
    s.lower_up(w.now)
    w.run()
    assert kinds(w, s) == ["LcpOpened", "Authenticated", "MppeUp", "NetworkUp"]


def test_lower_down_ends_the_link_without_terminate():
    s, c = server_link(), client_link()
    w = connect(s, c)
    s.lower_down(w.now)
    assert [p for p, _ in s.frames_to_send()] == []
    evs = s.events()
    assert [type(e).__name__ for e in evs] == ["NetworkDown", "LinkDown"]
    assert evs[-1].reason == "lower layer down" and s.phase is Phase.DEAD
    assert evs[-1].cause is None              # no cause of its own: the owner's applies


def test_lcp_renegotiation_restarts_authentication_and_network():
    # RFC 1661 §3.7 / §4 (Opened + RCR): the peer renegotiates LCP mid-session; the
    # network layers go down, authentication runs again, then the network comes back.
    s, c = server_link(), client_link()
    w = connect(s, c)
    req = Packet(Code.CONFIGURE_REQUEST, 77, Option(5, b"\x0a\x0b\x0c\x0d").encode())
    s.receive(Protocol.LCP, req.encode(), w.now)      # as if the client renegotiated
    w.run()
    assert w.of(s, NetworkDown) and w.of(c, NetworkDown)
    assert [type(e).__name__ for e in w.events[id(s)]].count("Authenticated") == 2
    assert [type(e).__name__ for e in w.events[id(s)]].count("NetworkUp") == 2
    assert s.phase is Phase.NETWORK and c.phase is Phase.NETWORK
    (k1, k2) = w.of(s, MppeUp)
    assert k1.send_key != k2.send_key                   # fresh challenge, fresh keys
