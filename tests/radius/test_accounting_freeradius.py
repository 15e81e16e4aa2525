"""RADIUS accounting of fastpptp-server against a real FreeRADIUS (tests/support/freeradius.py):
our client and our server in one process inside a fresh network namespace (FakeTun
socketpairs as TUNs, as tests/integration/test_inprocess_verifier.py), FreeRADIUS in the same
namespace writing its ``detail`` files, which the tests read back.

* a chap-secrets login (Acct-Authentic Local) with accounting configured: Accounting-On at
  start, Start, Interim-Updates on time, the Stop's octet and packet counts equal to the
  session's counters, Accounting-Off at the clean stop;
* a login through a verifier (RADIUS's place): the Access-Accept's Class echoed and its
  Acct-Interim-Interval used; ended by ``Server.terminate``: Admin-Reset;
* an accounting server that never answers: retransmits with Acct-Delay-Time, then given up,
  and the live session keeps passing traffic.
"""
from __future__ import annotations

import asyncio
import os

import pytest

from fastpptp.client import Client, ClientConfig
from fastpptp.config import parse_ppp_options
from fastpptp.net import netns
from fastpptp.ppp.auth.base import ReplyAttributes, VerifyRequest, VerifyResult
from fastpptp.ppp.auth.local import LocalVerifier
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.radius.client import ClientPolicy, RadiusServer
from fastpptp.radius.dictionary import AcctStatusType, Attr
from fastpptp.radius.packet import decode_packet
from fastpptp.radius.settings import RadiusSettings
from fastpptp.server import Server, ServerConfig
from fastpptp.status import SessionMatch
from support.inproc import FakeTun, recv_packet, udp_packet
from support.inproc import free_port

pytestmark = [pytest.mark.netns, pytest.mark.slow]

# alice as FreeRADIUS knows her too (conftest.USERS): whichever checks the login, it succeeds
USERS = {"alice": "Alice-pw-2865"}
SERVER_OPTS = "require-mschap-v2 require-mppe-128 name testsrv lcp-echo-interval 0"
CLIENT_OPTS = "require-mppe-128 remotename testsrv"


FAST = ClientPolicy(timeout=0.5, tries=2)


def settings(fr, nas_id, *, acct=None, interval=1, policy=FAST):
    """Accounting only: the logins are checked locally (chap-secrets, or a test's verifier),
    so what is accounted does not depend on FreeRADIUS's authorize reply."""
    secret = fr.secret.encode()
    return RadiusSettings(auth_servers=(),
                          acct_servers=(acct or RadiusServer(fr.acct_address, secret),),
                          policy=policy, nas_identifier=nas_id, acct_interim_interval=interval,
                          acct_interim_floor=1)




async def start_server(tmp_path, radius, events, tuns, verifier=None):
    def make(name):
        tuns["server"] = FakeTun(name)
        return tuns["server"]

    server = Server(ServerConfig(listen="127.0.0.1", port=free_port(), local_ips=("198.51.100.1",),
                                 remote_ips=("198.51.100.2", "198.51.100.3"), ppp=parse_ppp_options(SERVER_OPTS),
                                 control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None,
                                 radius=radius),
                    auth_backend=StaticBackend(USERS), verifier=verifier,
                    on_event=lambda kind, info: events.append((kind, info)),
                    tun_factory=make, configure_network=False)
    await server.start()
    return server


def make_client(server, tuns):
    def make(name):
        tuns["alice"] = FakeTun(name)
        return tuns["alice"]

    return Client(ClientConfig(server="127.0.0.1", port=server.config.port, user="alice",
                               password=USERS["alice"], ppp=parse_ppp_options(CLIENT_OPTS),
                               local_address="127.0.0.2", ip_up=None, ip_down=None),
                  tun_factory=make, configure_network=False)


async def wait_up(client, task, timeout=20.0) -> bool:
    await asyncio.wait({task, asyncio.ensure_future(client.up.wait())}, timeout=timeout,
                       return_when=asyncio.FIRST_COMPLETED)
    return client.up.is_set()


async def exchange(tuns, n, size):
    """``n`` packets each way through the tunnel; True when all arrived intact."""
    ok = True
    for k in range(n):
        up = udp_packet("198.51.100.2", "198.51.100.1", bytes([k]) * size)
        tuns["alice"].peer.send(up)
        ok &= await recv_packet(tuns["server"]) == up
        down = udp_packet("198.51.100.1", "198.51.100.2", bytes([k]) * (2 * size))
        tuns["server"].peer.send(down)
        ok &= await recv_packet(tuns["alice"]) == down
    return ok


async def wait_for(predicate, timeout):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return predicate()


def detail_text(fr):
    """Every detail file of the FreeRADIUS, as written."""
    return "".join(p.read_text(errors="replace") for p in sorted((fr.dir / "radacct").glob("*/detail-*")))


def of(records, nas_id, status=None, session=None):
    return [r for r in records if r.get("NAS-Identifier") == nas_id
            and (status is None or r.get("Acct-Status-Type") == status)
            and (session is None or r.get("Acct-Session-Id") == session)]


def test_local_login_is_accounted_start_interims_stop_with_the_sessions_counters(radius_ns, tmp_path):
    fr = radius_ns
    nas_id = f"acct-local-{os.getpid()}"

    async def main():
        events, tuns = [], {}
        server = await start_server(tmp_path, settings(fr, nas_id), events, tuns)
        client = make_client(server, tuns)
        task = asyncio.ensure_future(client.run())
        r = {}
        try:
            r["up"] = await wait_up(client, task)
            assert r["up"], "tunnel did not come up"
            (doc,) = server.snapshot()["sessions"]
            r["doc"] = doc
            r["traffic"] = await exchange(tuns, 20, 300)
            await asyncio.sleep(1.5)
            r["traffic"] &= await exchange(tuns, 10, 600)
            await asyncio.sleep(1.2)
            client.stop()
            r["rc"] = await asyncio.wait_for(task, 15)
            await wait_for(lambda: any(k == "down" for k, _ in events), 5)
            r["down"] = next(i for k, i in events if k == "down")
        finally:
            if not task.done():
                client.stop()
                await asyncio.wait_for(task, 15)
            await server.stop("test over")
        return r

    with netns.entered(fr.netns):
        r = asyncio.run(main())
    assert r["traffic"] and r["rc"] == 0
    sid, down = r["doc"]["session_id"], r["down"]
    recs = fr.wait_detail(lambda rec: bool(of([rec], nas_id, "Accounting-Off")))
    assert len(of(recs, nas_id, "Accounting-On")) == 1 and len(of(recs, nas_id, "Accounting-Off")) == 1
    mine = of(recs, nas_id, session=sid)
    kinds = [rec["Acct-Status-Type"] for rec in mine]
    assert kinds[0] == "Start" and kinds[-1] == "Stop" and kinds.count("Stop") == 1
    interims = [rec for rec in mine if rec["Acct-Status-Type"] == "Interim-Update"]
    # the session lived ~3 s with a 1 s interval: interims at 1, 2 (and maybe 3) s
    assert len(interims) >= 2, kinds
    start, stop = mine[0], mine[-1]
    # on time: each Interim-Update's Event-Timestamp is its Acct-Session-Time after the
    # Start's, and the session times are 1, 2, ... seconds
    assert [int(i["Acct-Session-Time"]) for i in interims] == list(range(1, len(interims) + 1))
    t0 = int(start["Timestamp"])
    for n, i in enumerate(interims, 1):
        assert abs(int(i["Timestamp"]) - t0 - n) <= 1, (n, i["Timestamp"], t0)
    # counters grow between interims; the Stop's are exactly the session's final ones
    assert int(interims[0]["Acct-Input-Octets"]) < int(interims[-1]["Acct-Input-Octets"])
    assert int(stop["Acct-Input-Octets"]) == down["rx_bytes"] > 20 * 300
    assert int(stop["Acct-Output-Octets"]) == down["tx_bytes"] > 20 * 600
    assert int(stop["Acct-Input-Packets"]) == down["rx_packets"] >= 30
    assert int(stop["Acct-Output-Packets"]) == down["tx_packets"] >= 30
    assert stop["Acct-Input-Gigawords"] == stop["Acct-Output-Gigawords"] == "0"
    assert stop["Acct-Terminate-Cause"] == "User-Request"       # the client hung up (LCP Terminate)
    assert 2 <= int(stop["Acct-Session-Time"]) <= 5
    for rec in (start, stop):
        assert rec["User-Name"] == "alice" and rec["Acct-Authentic"] == "Local"
        assert rec["NAS-Port"] == str(r["doc"]["call_id"]) and rec["NAS-Port-Type"] == "Virtual"
        assert rec["Service-Type"] == "Framed-User" and rec["Framed-Protocol"] == "PPP"
        assert rec["Calling-Station-Id"] == "127.0.0.2" and rec["Called-Station-Id"] == "127.0.0.1"
        assert rec["Framed-IP-Address"] == "198.51.100.2"


class ClassVerifier:
    """The local secrets, accepted with the reply attributes of an Access-Accept."""

    def __init__(self, attributes):
        self.local = LocalVerifier(StaticBackend(USERS))
        self.attributes = attributes

    async def __call__(self, request: VerifyRequest) -> VerifyResult:
        await asyncio.sleep(0.05)
        result = self.local.verify(request)
        return VerifyResult(**{**vars(result), "attributes": self.attributes})


def test_reply_class_is_echoed_reply_interval_used_and_terminate_is_admin_reset(radius_ns, tmp_path):
    fr = radius_ns
    nas_id = f"acct-class-{os.getpid()}"
    reply = ReplyAttributes(classes=(b"gold-plan", b"\x00\xffbin"), acct_interim_interval=1)

    async def main():
        events, tuns = [], {}
        # nothing configured: the interims come from the reply
        server = await start_server(tmp_path, settings(fr, nas_id, interval=0), events, tuns,
                                    verifier=ClassVerifier(reply))
        client = make_client(server, tuns)
        task = asyncio.ensure_future(client.run())
        try:
            assert await wait_up(client, task), "tunnel did not come up"
            (doc,) = server.snapshot()["sessions"]
            await asyncio.sleep(1.4)
            ended = server.terminate(SessionMatch(session=doc["session_id"]))
            rc = await asyncio.wait_for(task, 15)
            return doc, ended, rc
        finally:
            if not task.done():
                client.stop()
                await asyncio.wait_for(task, 15)
            await server.stop("test over")

    with netns.entered(fr.netns):
        doc, ended, rc = asyncio.run(main())
    sid = doc["session_id"]
    assert ended == [sid]
    recs = fr.wait_detail(lambda rec: bool(of([rec], nas_id, "Stop", sid)))
    mine = of(recs, nas_id, session=sid)
    assert [rec["Acct-Status-Type"] for rec in mine][:2] == ["Start", "Interim-Update"]
    stop = mine[-1]
    assert stop["Acct-Status-Type"] == "Stop" and stop["Acct-Terminate-Cause"] == "Admin-Reset"
    for rec in mine:
        # (a record read as a dict keeps the last Class; FreeRADIUS writes octets as hex)
        assert rec["Class"] == "0x00ff62696e" and rec["Acct-Authentic"] == "RADIUS"
    # every record carries both Class values, verbatim and in order
    blocks = [b for b in detail_text(fr).split("\n\n") if f'Acct-Session-Id = "{sid}"' in b]
    assert len(blocks) == len(mine)
    for block in blocks:
        classes = [line.split(" = ", 1)[1] for line in block.splitlines() if line.strip().startswith("Class =")]
        assert classes in (["0x676f6c642d706c616e", "0x00ff62696e"], ["gold-plan", "0x00ff62696e"]), block


class Silent(asyncio.DatagramProtocol):
    """An accounting server that never answers: keeps every datagram with its arrival time."""

    def __init__(self):
        self.got = []

    def datagram_received(self, data, addr):
        self.got.append((asyncio.get_running_loop().time(), decode_packet(data)))


def test_unanswered_accounting_server_retransmits_then_gives_up_and_the_session_lives(radius_ns, tmp_path):
    fr = radius_ns
    nas_id = f"acct-silent-{os.getpid()}"

    async def main():
        loop = asyncio.get_running_loop()
        silent = Silent()
        transport, _ = await loop.create_datagram_endpoint(lambda: silent, local_addr=("127.0.0.1", 0))
        acct = RadiusServer(transport.get_extra_info("sockname")[:2], b"nobody-answers")
        events, tuns = [], {}
        server = await start_server(tmp_path, settings(fr, nas_id, acct=acct, interval=0,
                                                       policy=ClientPolicy(timeout=1.0, tries=3)),
                                    events, tuns)
        accountant = server.accounting
        client = make_client(server, tuns)
        task = asyncio.ensure_future(client.run())
        r = {}
        try:
            assert await wait_up(client, task), "tunnel did not come up"
            (doc,) = server.snapshot()["sessions"]
            r["sid"] = doc["session_id"]
            # Accounting-On and the Start: each sent 3 times, 1 s apart, then given up
            r["gave_up"] = await wait_for(lambda: accountant.counters["no_response"] >= 2, 8)
            r["traffic"] = await exchange(tuns, 10, 500)          # the session is unaffected
            r["sessions"] = len(server.snapshot()["sessions"])
            client.stop()
            r["rc"] = await asyncio.wait_for(task, 15)
            began = loop.time()
            await server.stop("test over")
            r["stop_took"] = loop.time() - began
            r["counters"] = accountant.counters
        finally:
            if not task.done():
                client.stop()
                await asyncio.wait_for(task, 15)
            await server.stop("test over")
            transport.close()
        r["got"] = silent.got
        return r

    with netns.entered(fr.netns):
        r = asyncio.run(main())
    assert r["gave_up"] and r["traffic"] and r["sessions"] == 1 and r["rc"] == 0
    starts = [(t, p) for t, p in r["got"] if p.get_int(Attr.ACCT_STATUS_TYPE) == AcctStatusType.START]
    assert [p.get_text(Attr.ACCT_SESSION_ID) for _, p in starts] == [r["sid"]] * 3
    # RFC 2866 §5.2: the first send has no Acct-Delay-Time, the resends how long it waited
    assert [p.get_int(Attr.ACCT_DELAY_TIME) for _, p in starts] == [None, 1, 2]
    assert len({p.identifier for _, p in starts}) == 3                 # re-encoded, new Identifier
    assert starts[2][0] - starts[0][0] == pytest.approx(2.0, abs=0.3)
    statuses = [p.get_int(Attr.ACCT_STATUS_TYPE) for _, p in r["got"]]
    assert statuses.count(AcctStatusType.ACCOUNTING_ON) == 3
    assert statuses.count(AcctStatusType.STOP) == 3              # the Stop too, then given up
    # stop() waits one retransmission cycle (3 s) in all; the Off goes out at least once
    assert 1 <= statuses.count(AcctStatusType.ACCOUNTING_OFF) <= 3
    assert r["counters"]["no_response"] >= 3 and r["counters"]["answered"] == 0
    assert r["stop_took"] < 3.0 + 2.5               # (+ the server's own wait for the TCP goodbyes)


@pytest.mark.parametrize("how,cause", [
    ("tcp-reset", "Lost-Carrier"),            # the control connection vanished: no PPP goodbye
    ("server-stop", "Admin-Reboot"),          # SIGTERM with the session up
])
def test_a_session_ended_abnormally_still_gets_its_stop(radius_ns, tmp_path, how, cause):
    fr = radius_ns
    nas_id = f"acct-{how}-{os.getpid()}"

    async def main():
        events, tuns = [], {}
        server = await start_server(tmp_path, settings(fr, nas_id, interval=0), events, tuns)
        client = make_client(server, tuns)
        task = asyncio.ensure_future(client.run())
        try:
            assert await wait_up(client, task), "tunnel did not come up"
            (doc,) = server.snapshot()["sessions"]
            traffic = await exchange(tuns, 5, 200)
            if how == "tcp-reset":
                (stream,) = server._streams
                stream.transport.abort()
                await wait_for(lambda: any(k == "down" for k, _ in events), 5)
            else:
                await server.stop("SIGTERM")
            down = next(i for k, i in events if k == "down")
            return doc, traffic, down
        finally:
            client.stop()
            await asyncio.gather(task, return_exceptions=True)
            await server.stop("test over")

    with netns.entered(fr.netns):
        doc, traffic, down = asyncio.run(main())
    assert traffic
    recs = fr.wait_detail(lambda rec: bool(of([rec], nas_id, "Accounting-Off")))
    mine = of(recs, nas_id, session=doc["session_id"])
    assert [rec["Acct-Status-Type"] for rec in mine] == ["Start", "Stop"]
    stop = mine[-1]
    assert stop["Acct-Terminate-Cause"] == cause, down["reason"]
    assert int(stop["Acct-Input-Octets"]) == down["rx_bytes"] > 0
    assert int(stop["Acct-Output-Octets"]) == down["tx_bytes"] > 0
    # the Accounting-Off follows the session's Stop
    ours = of(recs, nas_id)
    assert [rec["Acct-Status-Type"] for rec in ours][-2:] == ["Stop", "Accounting-Off"]
