"""Property tests: decoders raise only typed DecodeErrors; machines and the link never
raise on arbitrary peer input, and garbage from a peer never authenticates it nor brings
MPPE or a network protocol up; the secrets parser raises only SecretsSyntaxError."""
import random

from hypothesis import given, settings, strategies as st

from fastpptp.ppp.auth.base import AuthDecodeError
from fastpptp.ppp.auth.chap import (
    ChapAuthenticator, ChapPeer, decode_chap, parse_ms_failure, parse_mschapv2_success,
)
from fastpptp.ppp.auth.pap import PapAuthenticator, PapPeer, decode_pap
from fastpptp.ppp.auth.policy import AuthPolicy
from fastpptp.ppp.auth.secrets import SecretsSyntaxError, StaticBackend, parse_secrets
from fastpptp.ppp.constants import AuthMethod, Protocol
from fastpptp.ppp.ipcp import IpcpConfig
from fastpptp.ppp.lcp import LcpConfig
from fastpptp.ppp.link import Authenticated, LinkConfig, MppeUp, NetworkUp, Phase, PPPLink

packets = st.binary(max_size=80) | st.builds(
    lambda code, ident, body: bytes([code, ident]) + (4 + len(body)).to_bytes(2, "big") + body,
    st.integers(1, 5), st.integers(0, 255), st.binary(max_size=70))


@settings(deadline=None)
@given(packets)
def test_decoders_raise_only_decode_error(raw):
    for decode in (decode_chap, decode_pap):
        try:
            decode(raw)
        except AuthDecodeError:
            pass


@given(st.text(max_size=120))
def test_ms_message_parsers_total(text):
    parse_ms_failure(text)
    s, _ = parse_mschapv2_success(text)
    assert s is None or len(s) == 42


@given(st.lists(packets, max_size=6))
@settings(max_examples=60, deadline=None)
def test_machines_survive_garbage(frames):
    backend = StaticBackend({"u": "pw"})
    machines = [PapPeer("u", "pw", random.Random(1)), PapAuthenticator(backend)]
    for m in AuthMethod.CHAP_MD5, AuthMethod.MSCHAP_V1, AuthMethod.MSCHAP_V2:
        machines += [ChapPeer(m, "u", "pw", random.Random(2)),
                     ChapAuthenticator(m, backend, random.Random(3), "srv")]
    for mach in machines:
        mach.start(0.0)
        for i, f in enumerate(frames):
            mach.receive(f, float(i))
        mach.frames_to_send()
        while mach.next_event() is not None:
            pass


@given(st.text(alphabet=st.sampled_from(list("ab *#'\"\\\n\tx0-!.1/")), max_size=80))
def test_secrets_parser_raises_only_syntax_error(text):
    try:
        parse_secrets(text, "f")
    except SecretsSyntaxError as exc:
        assert exc.filename == "f" and exc.line >= 1


GRANTS = (Authenticated, MppeUp, NetworkUp)     # what only a genuine, authenticated peer may get


def _link(role):
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=0),
                     policy=AuthPolicy.from_options(
                         "auth require-mschap-v2" if role == "server" else "noauth"),
                     ipcp=IpcpConfig(local_address="198.51.100.1",
                                     peer_address="198.51.100.2"),
                     user="u", password="pw")
    return PPPLink(cfg, role, StaticBackend({"u": "pw"}), random.Random(4))


def _server_awaiting_auth():
    """A server link whose LCP a genuine client opened (phase Authenticate, Challenge queued);
    the client is then dropped, so what comes next is the attacker's."""
    server, client = _link("server"), _link("client")
    server.lower_up(0.0)
    client.lower_up(0.0)
    for _ in range(20):
        for proto, payload in server.frames_to_send():
            client.receive(proto, payload, 0.0)
        for proto, payload in client.frames_to_send():
            server.receive(proto, payload, 0.0)
            if server.phase is Phase.AUTHENTICATE:
                return server
    raise AssertionError(f"LCP did not open with a genuine client: {server.phase}")


def _assert_nothing_granted(link, events):
    granted = [e for e in events if isinstance(e, GRANTS)]
    assert not granted, (link.role, granted)
    assert link.phase is not Phase.NETWORK, link.role


@given(st.lists(st.tuples(st.sampled_from([Protocol.LCP, Protocol.CHAP, Protocol.PAP,
                                           Protocol.CCP, Protocol.IPCP, Protocol.IPV6CP,
                                           0x8207, Protocol.IPV4]), packets), max_size=8))
@settings(max_examples=60, deadline=None)
def test_link_survives_garbage(frames):
    links = []
    for role in ("server", "client"):
        link = _link(role)
        link.lower_up(0.0)
        links.append(link)
    links.append(_server_awaiting_auth())       # garbage as the answer to our Challenge
    for link in links:
        events = link.events()
        for i, (proto, payload) in enumerate(frames):
            link.receive(proto, payload, float(i))
            events += link.events()
        link.handle_timer(100.0)
        link.frames_to_send()
        events += link.events()
        _assert_nothing_granted(link, events)
