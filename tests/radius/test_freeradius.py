"""Our RADIUS client (fastpptp.radius) against a real FreeRADIUS 3 (tests/support/freeradius.py):
PAP, CHAP-MD5, MS-CHAPv1, MS-CHAPv2 with MPPE keys, rejects, reply attributes, accounting into
the detail file, failover from a silent server, forged responses dropped and counted, the
Message-Authenticator on every request and required on every response, and the rig inside a
network namespace."""
import asyncio
import hashlib
import ipaddress
import os
import socket
import time

import pytest

from fastpptp.crypto import mschap
from fastpptp.net import netns
from fastpptp.radius import auth
from fastpptp.radius.aio import RadiusDriver, RadiusNoResponse
from fastpptp.radius.client import ClientPolicy, RadiusClient, RadiusServer
from fastpptp.radius.dictionary import (
    AcctStatusType, AcctTerminateCause, Attr, Code, MppeEncryptionPolicy, NasPortType,
)
from fastpptp.radius.packet import Attribute, Packet, decode_packet, encode_request, encode_response
from fastpptp.tools.netrig import two_namespaces
from support.freeradius import FreeRadius, RadiusUser, freeradius_missing

pytestmark = pytest.mark.slow

NAS = [Attribute(Attr.NAS_IDENTIFIER, b"fastpptp-test"),
       Attribute(Attr.NAS_IP_ADDRESS, bytes([127, 0, 0, 1])),
       Attribute(Attr.NAS_PORT_TYPE, NasPortType.VIRTUAL.to_bytes(4, "big"))]
FAST = ClientPolicy(timeout=0.5, tries=2, dead_time=30.0)


def _user(fr, name):
    return next(u for u in fr.users if u.name == name)


def _i(v):
    return int(v).to_bytes(4, "big")


async def _ask(servers, code, attrs, policy=FAST):
    """One request through the asyncio driver; returns (Response, client counters)."""
    driver = RadiusDriver(RadiusClient(servers, policy))
    await driver.start()
    try:
        resp = await driver.request(code, attrs)
        return resp, driver.client.counters
    finally:
        driver.close()


def _auth_server(fr):
    return RadiusServer(fr.auth_address, fr.secret.encode())


def _access(fr, attrs):
    resp, counters = asyncio.run(_ask([_auth_server(fr)], Code.ACCESS_REQUEST, attrs + NAS))
    # required by our policy; FreeRADIUS signs every Access-* response
    assert resp.packet.has(Attr.MESSAGE_AUTHENTICATOR)
    assert counters["rx_forged"] == 0 and counters["rx_no_message_authenticator"] == 0
    return resp, resp.access_reply()


def test_pap_accept_with_reply_attributes(freeradius):
    alice = _user(freeradius, "alice")
    _, reply = _access(freeradius, auth.pap_attributes(b"alice", alice.password.encode()))
    assert reply.accepted
    assert reply.framed_ip_address == ipaddress.IPv4Address("203.0.113.7")
    assert reply.framed_ip_netmask == ipaddress.IPv4Address("255.255.255.255")
    assert reply.framed_routes == ("198.51.100.0/24 0.0.0.0 1",)
    assert reply.session_timeout == 3600
    assert reply.idle_timeout == 600
    assert reply.acct_interim_interval == 60
    assert reply.framed_mtu == 1400
    assert reply.classes == (b"gold-plan",)
    assert reply.primary_dns == ipaddress.IPv4Address("192.0.2.53")
    assert reply.secondary_dns == ipaddress.IPv4Address("192.0.2.54")


def test_pap_wrong_password_is_rejected(freeradius):
    resp, reply = _access(freeradius, auth.pap_attributes(b"alice", b"not-the-password"))
    assert resp.packet.code == Code.ACCESS_REJECT and not reply.accepted
    assert reply.framed_ip_address is None


def test_chap_md5(freeradius):
    alice = _user(freeradius, "alice")
    challenge = os.urandom(16)
    ident = 0x42
    response = hashlib.md5(bytes([ident]) + alice.password.encode() + challenge).digest()
    _, reply = _access(freeradius, auth.chap_attributes(b"alice", ident, challenge, response))
    assert reply.accepted and reply.session_timeout == 3600
    bad = hashlib.md5(bytes([ident]) + b"wrong" + challenge).digest()
    _, reply = _access(freeradius, auth.chap_attributes(b"alice", ident, challenge, bad))
    assert not reply.accepted


def test_mschap_v1_keys(freeradius):
    bob = _user(freeradius, "bob")
    challenge = os.urandom(8)
    nt = mschap.nt_challenge_response(challenge, bob.password)
    _, reply = _access(freeradius, auth.mschap1_attributes(b"bob", 7, challenge, bytes(24), nt))
    assert reply.accepted
    # RFC 2548 §2.4.1 NT-Key; FreeRADIUS (like Windows IAS) sends the NT password hash hash,
    # from which RFC 3079 §2.4 derives the 128-bit start key
    assert reply.ms_chap_nt_key == mschap.hash_nt_password_hash(mschap.nt_password_hash(bob.password))
    assert reply.mppe_encryption_policy in (MppeEncryptionPolicy.ALLOWED, MppeEncryptionPolicy.REQUIRED)
    wrong = mschap.nt_challenge_response(challenge, "wrong")
    _, reply = _access(freeradius, auth.mschap1_attributes(b"bob", 8, challenge, bytes(24), wrong))
    assert not reply.accepted
    assert reply.ms_chap_error is not None and reply.ms_chap_error.startswith(b"E=691")


def test_mschap_v2_success_and_mppe_keys(freeradius):
    alice = _user(freeradius, "alice")
    auth_challenge, peer_challenge = os.urandom(16), os.urandom(16)
    nt = mschap.generate_nt_response(auth_challenge, peer_challenge, b"alice", alice.password)
    resp, reply = _access(freeradius, auth.mschap2_attributes(b"alice", 9, auth_challenge,
                                                              peer_challenge, nt))
    assert reply.accepted
    expected = mschap.generate_authenticator_response(alice.password, nt, peer_challenge,
                                                      auth_challenge, b"alice")
    assert reply.ms_chap2_success == expected.encode()          # relayed to the peer verbatim
    assert mschap.check_authenticator_response(alice.password, nt, peer_challenge, auth_challenge,
                                               b"alice", reply.ms_chap2_success)
    # RFC 3079 keys of the server side (the NAS): Send-Key is what the NAS sends with
    send, recv = mschap.mppe_keys_mschapv2(alice.password, nt, is_server=True)
    assert (reply.mppe_send_key, reply.mppe_recv_key) == (send, recv)
    assert reply.framed_ip_address == ipaddress.IPv4Address("203.0.113.7")


def test_mschap_v2_wrong_password_gives_e691(freeradius):
    auth_challenge, peer_challenge = os.urandom(16), os.urandom(16)
    nt = mschap.generate_nt_response(auth_challenge, peer_challenge, b"alice", "not-it")
    resp, reply = _access(freeradius, auth.mschap2_attributes(b"alice", 10, auth_challenge,
                                                              peer_challenge, nt))
    assert resp.packet.code == Code.ACCESS_REJECT
    assert reply.ms_chap_error is not None and reply.ms_chap_error.startswith(b"E=691")
    assert reply.mppe_send_key is None and reply.ms_chap2_success is None


def test_accounting_start_interim_stop_reach_the_detail_file(freeradius):
    server = RadiusServer(freeradius.acct_address, freeradius.secret.encode())
    session_id = f"fastpptp-{os.getpid()}-{time.monotonic_ns()}".encode()
    common = NAS + [Attribute(Attr.USER_NAME, b"alice"), Attribute(Attr.ACCT_SESSION_ID, session_id),
                    Attribute(Attr.NAS_PORT, _i(3)), Attribute(Attr.CLASS, b"gold-plan"),
                    Attribute(Attr.FRAMED_IP_ADDRESS, bytes([203, 0, 113, 7])),
                    Attribute(Attr.CALLING_STATION_ID, b"192.0.2.2")]
    steps = [
        [Attribute(Attr.ACCT_STATUS_TYPE, _i(AcctStatusType.START))],
        [Attribute(Attr.ACCT_STATUS_TYPE, _i(AcctStatusType.INTERIM_UPDATE)),
         Attribute(Attr.ACCT_INPUT_OCTETS, _i(1000)), Attribute(Attr.ACCT_OUTPUT_OCTETS, _i(2000)),
         Attribute(Attr.ACCT_SESSION_TIME, _i(60))],
        [Attribute(Attr.ACCT_STATUS_TYPE, _i(AcctStatusType.STOP)),
         Attribute(Attr.ACCT_INPUT_OCTETS, _i(123456)), Attribute(Attr.ACCT_INPUT_GIGAWORDS, _i(1)),
         Attribute(Attr.ACCT_OUTPUT_OCTETS, _i(654321)), Attribute(Attr.ACCT_SESSION_TIME, _i(125)),
         Attribute(Attr.ACCT_TERMINATE_CAUSE, _i(AcctTerminateCause.USER_REQUEST))],
    ]
    for extra in steps:
        resp, _ = asyncio.run(_ask([server], Code.ACCOUNTING_REQUEST, common + extra))
        assert resp.packet.code == Code.ACCOUNTING_RESPONSE
    sid = session_id.decode()
    recs = freeradius.wait_detail(lambda r: r.get("Acct-Session-Id") == sid and
                                  r.get("Acct-Status-Type") == "Stop")
    mine = [r for r in recs if r.get("Acct-Session-Id") == sid]
    assert [r["Acct-Status-Type"] for r in mine] == ["Start", "Interim-Update", "Stop"]
    stop = mine[-1]
    assert stop["Acct-Input-Octets"] == "123456" and stop["Acct-Input-Gigawords"] == "1"
    assert stop["Acct-Output-Octets"] == "654321" and stop["Acct-Session-Time"] == "125"
    assert stop["Acct-Terminate-Cause"] == "User-Request"
    assert stop["Class"] in ("gold-plan", "0x676f6c642d706c616e")
    assert stop["NAS-Port-Type"] == "Virtual" and stop["Framed-IP-Address"] == "203.0.113.7"
    assert mine[1]["Acct-Input-Octets"] == "1000"


class _DropFirst(asyncio.DatagramProtocol):
    """Relays to FreeRADIUS, but loses the first request (a lost datagram on the way)."""

    def __init__(self, upstream):
        self.upstream, self.client_addr, self.seen = upstream, None, 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if addr == self.upstream:
            self.transport.sendto(data, self.client_addr)
            return
        self.client_addr, self.seen = addr, self.seen + 1
        if self.seen > 1:
            self.transport.sendto(data, self.upstream)


def test_accounting_retransmit_reaches_the_server_with_acct_delay_time(freeradius):
    session_id = f"delay-{os.getpid()}-{time.monotonic_ns()}"

    async def run():
        loop = asyncio.get_running_loop()
        transport, relay = await loop.create_datagram_endpoint(
            lambda: _DropFirst(freeradius.acct_address), local_addr=("127.0.0.1", 0))
        try:
            server = RadiusServer(transport.get_extra_info("sockname"), freeradius.secret.encode())
            resp, counters = await _ask([server], Code.ACCOUNTING_REQUEST, NAS + [
                Attribute(Attr.ACCT_STATUS_TYPE, _i(AcctStatusType.START)),
                Attribute(Attr.ACCT_SESSION_ID, session_id.encode())], ClientPolicy(timeout=1.0, tries=3))
            return resp, counters, relay.seen
        finally:
            transport.close()

    resp, counters, seen = asyncio.run(run())
    assert resp.packet.code == Code.ACCOUNTING_RESPONSE and seen == 2 and counters["tx_retransmits"] == 1
    recs = freeradius.wait_detail(lambda r: r.get("Acct-Session-Id") == session_id)
    [rec] = [r for r in recs if r.get("Acct-Session-Id") == session_id]
    assert rec["Acct-Delay-Time"] == "1"       # RFC 2866 §5.2: the retransmit says how late it is


def test_failover_from_a_silent_server(freeradius):
    alice = _user(freeradius, "alice")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        servers = [RadiusServer(silent.getsockname(), freeradius.secret.encode()), _auth_server(freeradius)]

        async def run():
            driver = RadiusDriver(RadiusClient(servers, ClientPolicy(timeout=0.2, tries=2, dead_time=60)))
            await driver.start()
            try:
                attrs = auth.pap_attributes(b"alice", alice.password.encode()) + NAS
                first = await driver.request(Code.ACCESS_REQUEST, attrs)
                # the silent one is now dead: the next request goes straight to the second
                second = await driver.request(Code.ACCESS_REQUEST, attrs)
                return first, second, dict(driver.client.counters)
            finally:
                driver.close()

        first, second, counters = asyncio.run(run())
        silent.setblocking(False)
        got = 0
        while True:
            try:
                silent.recv(4096)
                got += 1
            except BlockingIOError:
                break
    assert first.server == 1 and second.server == 1
    assert first.packet.code == Code.ACCESS_ACCEPT == second.packet.code
    assert got == 2                                   # tried twice, then failed over
    assert counters["tx_failovers"] == 1 and counters["servers_marked_dead"] == 1


def test_no_server_answering_fails_cleanly():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        servers = [RadiusServer(silent.getsockname(), b"x")]
        with pytest.raises(RadiusNoResponse):
            asyncio.run(_ask(servers, Code.ACCESS_REQUEST, auth.pap_attributes(b"a", b"b"),
                             ClientPolicy(timeout=0.1, tries=2)))


class _Forger(asyncio.DatagramProtocol):
    """Relays our requests to FreeRADIUS, but first answers each with a forged Access-Accept
    signed with a wrong secret (what an attacker without the secret can do)."""

    def __init__(self, upstream, secret):
        self.upstream, self.secret = upstream, secret
        self.client_addr = None
        self.relay = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if addr == self.upstream:
            self.transport.sendto(data, self.client_addr)
            return
        self.client_addr = addr
        req = decode_packet(data)
        forged = Packet(Code.ACCESS_ACCEPT, req.identifier,
                        attributes=[Attribute(Attr.FRAMED_IP_ADDRESS, bytes([198, 51, 100, 66]))])
        self.transport.sendto(encode_response(forged, b"guessed-secret", req.authenticator), addr)
        self.transport.sendto(data, self.upstream)


def test_forged_response_is_dropped_and_counted(freeradius):
    async def run():
        loop = asyncio.get_running_loop()
        transport, forger = await loop.create_datagram_endpoint(
            lambda: _Forger(freeradius.auth_address, freeradius.secret.encode()),
            local_addr=("127.0.0.1", 0))
        try:
            proxy = transport.get_extra_info("sockname")
            # FreeRADIUS's client network is 127/8 and the proxy relays from 127.0.0.1
            return await _ask([RadiusServer(proxy, freeradius.secret.encode())], Code.ACCESS_REQUEST,
                              auth.pap_attributes(b"alice", b"wrong-password") + NAS)
        finally:
            transport.close()

    resp, counters = asyncio.run(run())
    # the forged Accept came first and was dropped; the genuine Reject was taken
    assert resp.packet.code == Code.ACCESS_REJECT
    assert counters["rx_forged"] == 1 and counters["rx_responses"] == 1


def test_request_without_message_authenticator_is_ignored_by_the_server(freeradius):
    """FreeRADIUS is configured to require it (clients.conf): every answer in this module
    proves ours carry one; this one, without, gets no answer."""
    alice = _user(freeradius, "alice")
    pkt = Packet(Code.ACCESS_REQUEST, 1, attributes=auth.pap_attributes(b"alice", alice.password.encode()))
    wire, _ = encode_request(pkt, freeradius.secret.encode(), with_message_authenticator=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(wire, freeradius.auth_address)
        with pytest.raises(socket.timeout):
            s.recv(4096)
        wire, _ = encode_request(pkt, freeradius.secret.encode())
        s.sendto(wire, freeradius.auth_address)
        assert decode_packet(s.recv(4096)).code == Code.ACCESS_ACCEPT


def test_unsigned_responses_of_an_unpatched_server_are_refused(freeradius):
    """A FreeRADIUS that does not sign its Access-Accept (3.2.1's default, before the
    BlastRADIUS fix): our default policy drops each answer and counts it, so the login fails
    cleanly; only an explicit require_message_authenticator=False takes them."""
    alice = _user(freeradius, "alice")
    attrs = auth.pap_attributes(b"alice", alice.password.encode()) + NAS
    with FreeRadius(freeradius.users, secret=freeradius.secret, sign_responses=False) as unsigned:
        server = RadiusServer(unsigned.auth_address, unsigned.secret.encode())

        async def strict():
            driver = RadiusDriver(RadiusClient([server], ClientPolicy(timeout=0.3, tries=2)))
            await driver.start()
            try:
                with pytest.raises(RadiusNoResponse):
                    await driver.request(Code.ACCESS_REQUEST, attrs)
                return dict(driver.client.counters)
            finally:
                driver.close()

        counters = asyncio.run(strict())
        assert counters["rx_no_message_authenticator"] == 2 and counters["rx_responses"] == 0
        resp, _ = asyncio.run(_ask([server], Code.ACCESS_REQUEST, attrs,
                                   ClientPolicy(timeout=0.3, tries=2, require_message_authenticator=False)))
        assert resp.packet.code == Code.ACCESS_ACCEPT and not resp.packet.has(Attr.MESSAGE_AUTHENTICATOR)


def test_many_logins_at_once_through_one_socket(freeradius):
    """100 concurrent MS-CHAPv2 logins share the driver's socket and identifier space."""
    alice = _user(freeradius, "alice")

    async def run():
        driver = RadiusDriver(RadiusClient([_auth_server(freeradius)], ClientPolicy(timeout=2.0, tries=3)))
        await driver.start()
        try:
            jobs = []
            for k in range(100):
                ac, pc = os.urandom(16), os.urandom(16)
                pw = alice.password if k % 4 else "wrong"
                nt = mschap.generate_nt_response(ac, pc, b"alice", pw)
                jobs.append((pw, nt, driver.request(Code.ACCESS_REQUEST,
                                                    auth.mschap2_attributes(b"alice", k & 0xFF, ac, pc, nt) + NAS)))
            results = await asyncio.gather(*(j for _, _, j in jobs))
            return [(pw, nt, r) for (pw, nt, _), r in zip(jobs, results, strict=True)]
        finally:
            driver.close()

    for pw, nt, resp in asyncio.run(run()):
        reply = resp.access_reply()
        assert reply.accepted == (pw != "wrong")
        if reply.accepted:
            assert reply.mppe_send_key == mschap.mppe_keys_mschapv2(pw, nt, is_server=True)[0]


@pytest.mark.netns
def test_freeradius_in_a_network_namespace():
    """The rig runs FreeRADIUS inside a namespace (as the products' tests will): server in B,
    our client in A, across the veth."""
    reason = freeradius_missing()
    if reason is not None:
        pytest.skip(reason)
    with two_namespaces(prefix="fprad") as rig:
        users = [RadiusUser("carol", "carol-pw", {"Framed-IP-Address": "203.0.113.9"})]
        with FreeRadius(users, secret="ns-secret", address=rig.addr_b, client_network="192.0.2.0/24",
                        netns=rig.b) as fr:
            assert fr.auth_address == (rig.addr_b, 1812)
            with netns.entered(rig.a):
                resp, _ = asyncio.run(_ask([RadiusServer(fr.auth_address, b"ns-secret")], Code.ACCESS_REQUEST,
                                           auth.pap_attributes(b"carol", b"carol-pw")))
                acct, _ = asyncio.run(_ask([RadiusServer(fr.acct_address, b"ns-secret")], Code.ACCOUNTING_REQUEST,
                                           [Attribute(Attr.ACCT_STATUS_TYPE, _i(AcctStatusType.ACCOUNTING_ON)),
                                            Attribute(Attr.NAS_IDENTIFIER, b"ns-nas")]))
            assert resp.access_reply().framed_ip_address == ipaddress.IPv4Address("203.0.113.9")
            assert acct.packet.code == Code.ACCOUNTING_RESPONSE
            recs = fr.wait_detail(lambda r: r.get("NAS-Identifier") == "ns-nas")
            assert any(r.get("Acct-Status-Type") == "Accounting-On" for r in recs)
