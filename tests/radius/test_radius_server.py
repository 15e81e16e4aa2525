"""fastpptp-server authenticating through a real FreeRADIUS 3 (issue 11), our client against
our server in one process (FakeTun socketpairs as TUNs, as tests/integration/test_inprocess.py),
everything inside a fresh network namespace: FreeRADIUS on its loopback, the PPTP server on
127.0.0.1, clients from 127.0.0.2/.3.

Shown: PAP, CHAP-MD5, MS-CHAPv1 and MS-CHAPv2 + MPPE-128 with the keys from RADIUS and
traffic both ways; a wrong password refused with E=691 (client exit 19) and logged;
Framed-IP-Address, Session-Timeout and Mikrotik-Rate-Limit applied; failover when the first
server stops; with no server answering new logins fail cleanly while a live session keeps
passing traffic; a pptpd + radius.so configuration (options file, radiusclient.conf, servers
file) working unchanged.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

import pytest

from fastpptp.cli import build_server_config, server_parser
from fastpptp.client import Client, ClientConfig
from fastpptp.config import parse_ppp_options
from fastpptp.net import netns
from fastpptp.radius.client import ClientPolicy, RadiusServer
from fastpptp.radius.settings import RadiusSettings
from fastpptp.server import Server, ServerConfig
from fastpptp.shaping import RateLimit, RateSource
from support.freeradius import FreeRadius, RadiusUser, freeradius_missing
from support.inproc import FakeTun, recv_packet, udp_packet
from support.inproc import free_port
from fastpptp.tools.netrig import namespace as lo_namespace

pytestmark = [pytest.mark.slow, pytest.mark.netns]

SECRET = "radius-e2e-s3cret"
USERS = [
    RadiusUser("carol", "Carol-pw-2548", {
        "Framed-IP-Address": "198.51.100.77",
        "Session-Timeout": "3600",
        "Mikrotik-Rate-Limit": "512k/2M",
        "Class": "plan-carol",
        "MS-Primary-DNS-Server": "192.0.2.53",      # our options name none: only RADIUS does
    }),
    RadiusUser("dave", "dave-pw"),
    RadiusUser("brief", "brief-pw", {"Session-Timeout": "2"}),
    # MS-MPPE-Encryption-Types 2: 40-bit only (FreeRADIUS's mschap keeps a reply's own)
    RadiusUser("weak", "weak-pw", {"MS-MPPE-Encryption-Types": "2"}),
]
PASSWORDS = {u.name: u.password for u in USERS}
FAST = ClientPolicy(timeout=0.4, tries=2, dead_time=30.0)


@pytest.fixture(scope="module")
def radius_ns():
    """A namespace with lo up, entered for the module, FreeRADIUS running inside it."""
    reason = freeradius_missing()
    if reason is not None:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with lo_namespace("fprad") as name, netns.entered(name), FreeRadius(USERS, secret=SECRET) as fr:
        yield fr


@pytest.fixture(autouse=True)
def _recording(engines):
    """Every test here sees the engines' calls (tests/conftest.py ``engines``)."""
    return engines




def _settings(*servers: FreeRadius, **kw) -> RadiusSettings:
    return RadiusSettings(auth_servers=tuple(RadiusServer(fr.auth_address, SECRET.encode())
                                             for fr in servers),
                          policy=FAST, nas_identifier="fastpptp-e2e", **kw)


class Rig:
    """One in-process server and its clients; ``events`` the server's on_event calls."""

    def __init__(self, tmp_path, server_opts: str, radius: RadiusSettings | None,
                 config: ServerConfig | None = None, **overrides):
        self.tmp_path = tmp_path
        self.tuns: dict[str, FakeTun] = {}
        self.events: list[tuple[str, dict]] = []
        self.port = free_port()
        self.config = config or ServerConfig(
            listen="127.0.0.1", port=self.port, local_ips=("198.51.100.1",),
            remote_ips=("198.51.100.2", "198.51.100.3"),
            ppp=parse_ppp_options(server_opts + " name testsrv lcp-echo-interval 0"),
            secrets_file=str(tmp_path / "no-chap-secrets"),
            control_socket=str(tmp_path / "ctl.sock"), ip_up=None, ip_down=None, radius=radius)
        self.config = dataclasses.replace(self.config, listen="127.0.0.1", port=self.port,
                                          control_socket=str(tmp_path / "ctl.sock"),
                                          ip_up=None, ip_down=None, **overrides)
        self.server = Server(self.config, on_event=lambda k, i: self.events.append((k, i)),
                             tun_factory=self._tun("server"), configure_network=False)
        self.tasks: list[tuple[Client, asyncio.Future]] = []

    def _tun(self, key):
        def make(name):
            self.tuns[key] = FakeTun(name)
            return self.tuns[key]
        return make

    async def start(self):
        await self.server.start()

    def client(self, user, password, opts="", source="127.0.0.2", key=None):
        c = Client(ClientConfig(server="127.0.0.1", port=self.port, user=user, password=password,
                                ppp=parse_ppp_options(opts + " remotename testsrv"),
                                local_address=source, ip_up=None, ip_down=None),
                   tun_factory=self._tun(key or user), configure_network=False)
        task = asyncio.ensure_future(c.run())
        self.tasks.append((c, task))
        return c, task

    @staticmethod
    async def wait_up(client, task, timeout=20.0) -> bool:
        await asyncio.wait({task, asyncio.ensure_future(client.up.wait())}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        return client.up.is_set()

    async def ping_both_ways(self, user, client_ip, tag=b"") -> tuple[bool, bool]:
        up = udp_packet(client_ip, "198.51.100.1", b"up through RADIUS MPPE " + tag)
        self.tuns[user].peer.send(up)
        c2s = await recv_packet(self.tuns["server"]) == up
        down = udp_packet("198.51.100.1", client_ip, b"down" * 300 + tag)
        self.tuns["server"].peer.send(down)
        s2c = await recv_packet(self.tuns[user]) == down
        return c2s, s2c

    async def close(self):
        for c, t in self.tasks:
            if not t.done():
                c.stop()
                try:
                    await asyncio.wait_for(t, 15)
                except asyncio.TimeoutError:
                    t.cancel()
        await self.server.stop("test over")


@pytest.mark.parametrize("server_opts,client_opts,auth,mppe", [
    ("require-pap", "", "PAP", None),
    ("require-chap", "", "CHAP-MD5", None),
    ("require-mschap require-mppe-128", "require-mppe-128", "MS-CHAP", "128 stateless"),
    ("require-mschap-v2 require-mppe-128", "require-mppe-128", "MS-CHAPv2", "128 stateless"),
], ids=["pap", "chap-md5", "mschapv1-mppe128", "mschapv2-mppe128"])
def test_login_through_freeradius_with_reply_attributes_and_traffic(radius_ns, tmp_path, engines,
                                                                    server_opts, client_opts, auth, mppe):
    async def main():
        rig = Rig(tmp_path, server_opts, _settings(radius_ns))
        await rig.start()
        try:
            c, t = rig.client("carol", PASSWORDS["carol"], client_opts + " usepeerdns")
            r = {"up": await rig.wait_up(c, t)}
            if r["up"]:
                r["client"] = (c.session.info.auth, c.session.info.mppe, c.session.info.local_ip)
                r["dns"] = c.session.info.dns
                (s,) = rig.server.sessions.values()
                r["engine_rate"] = engines.of(s.call_id)
                r["session"] = (s.info.user, s.info.remote_ip, s.info.rate, s.info.rate_source,
                                s.attributes.session_timeout, s.attributes.classes)
                r["traffic"] = await rig.ping_both_ways("carol", "198.51.100.77")
                r["counters"] = dict(rig.server.radius_verifier.counters)
            return r
        finally:
            await rig.close()

    r = asyncio.run(main())
    assert r["up"], "tunnel did not come up through FreeRADIUS"
    assert r["client"] == (auth, mppe, "198.51.100.77")       # Framed-IP-Address applied
    assert tuple(r["dns"]) == ("192.0.2.53",)                  # MS-Primary-DNS-Server applied
    assert r["session"] == ("carol", "198.51.100.77", RateLimit(2000, 512), RateSource.RADIUS,
                            3600, (b"plan-carol",))
    # MPPE: the keys came from RADIUS; a swapped direction would garble both ways
    assert r["traffic"] == (True, True)
    assert r["engine_rate"] == [(2000, 512)]        # tx (towards the client) = RouterOS's tx
    assert r["counters"]["accepts"] == 1 and r["counters"]["requests"] == 1


def test_wrong_password_is_refused_with_e691_and_logged(radius_ns, tmp_path, caplog):
    caplog.set_level(logging.INFO)

    async def main():
        rig = Rig(tmp_path, "require-mschap-v2 require-mppe-128", _settings(radius_ns))
        await rig.start()
        try:
            c, t = rig.client("carol", "not-her-password", "require-mppe-128")
            up = await rig.wait_up(c, t)
            rc = await asyncio.wait_for(t, 20)
            return up, rc, c.exit_reason, rig.events, dict(rig.server.radius_verifier.counters)
        finally:
            await rig.close()

    up, rc, reason, events, counters = asyncio.run(main())
    assert not up and rc == 19
    assert "e=691" in (reason or "").lower()
    assert [i["user"] for k, i in events if k == "auth-failed"] == ["carol"]
    assert counters["rejects"] == 1
    assert "'carol' rejected by RADIUS server" in caplog.text


def test_session_timeout_from_radius_ends_the_session(radius_ns, tmp_path):
    async def main():
        rig = Rig(tmp_path, "require-mschap-v2 require-mppe-128", _settings(radius_ns))
        await rig.start()
        try:
            c, t = rig.client("brief", PASSWORDS["brief"], "require-mppe-128")
            up = await rig.wait_up(c, t)
            loop = asyncio.get_running_loop()
            started = loop.time()
            down = [i for k, i in rig.events if k == "down"]
            while not down and loop.time() - started < 10:
                await asyncio.sleep(0.1)
                down = [i for k, i in rig.events if k == "down"]
            return up, loop.time() - started, down
        finally:
            await rig.close()

    up, elapsed, down = asyncio.run(main())
    assert up
    assert down and down[0]["reason"] == "session timeout"
    assert 1.0 <= elapsed <= 4.0


def test_failover_when_the_first_server_stops_and_clean_failure_when_none_answers(radius_ns, tmp_path):
    """Two FreeRADIUS servers: dave logs in through the first; it is stopped; carol gets in
    through the second (failover); the second is stopped too: a new login fails cleanly
    (E=691, exit 19) and the live sessions keep passing traffic meanwhile."""
    with FreeRadius(USERS, secret=SECRET) as first, FreeRadius(USERS, secret=SECRET) as second:
        async def main():
            rig = Rig(tmp_path, "require-mschap-v2 require-mppe-128", _settings(first, second))
            await rig.start()
            r = {}
            try:
                client = rig.server._radius_driver.client
                d, dt = rig.client("dave", PASSWORDS["dave"], "require-mppe-128")
                r["dave_up"] = await rig.wait_up(d, dt)
                r["dave_ip"] = d.session.info.local_ip
                first.stop()
                c, ct = rig.client("carol", PASSWORDS["carol"], "require-mppe-128", source="127.0.0.3")
                r["carol_up"] = await rig.wait_up(c, ct)
                r["failovers"] = client.counters["tx_failovers"]
                r["first_alive"] = client.server_alive(0, asyncio.get_running_loop().time())
                second.stop()
                e, et = rig.client("dave", PASSWORDS["dave"], "require-mppe-128", source="127.0.0.4",
                                   key="dave-again")
                # the live session passes traffic while the login waits for a dead RADIUS
                r["live_traffic"] = await rig.ping_both_ways("carol", "198.51.100.77", b"during")
                r["third_rc"] = await asyncio.wait_for(et, 20)
                r["third_reason"] = e.exit_reason
                r["after"] = await rig.ping_both_ways("carol", "198.51.100.77", b"after")
                r["dave_after"] = await rig.ping_both_ways("dave", r["dave_ip"], b"dave")
                r["no_response"] = rig.server.radius_verifier.counters["no_response"]
                r["users"] = sorted(s.info.user for s in rig.server.sessions.values())
                return r
            finally:
                await rig.close()

        r = asyncio.run(main())
    assert r["dave_up"] and r["carol_up"]
    assert r["failovers"] >= 1 and not r["first_alive"]
    assert r["live_traffic"] == (True, True)
    assert r["third_rc"] == 19 and "e=691" in (r["third_reason"] or "").lower()
    assert r["after"] == (True, True) and r["dave_after"] == (True, True)
    assert r["no_response"] == 1
    assert r["users"] == ["carol", "dave"]


def test_pptpd_with_radius_so_configuration_works_unchanged(radius_ns, tmp_path):
    """A pptpd + pppd radius.so installation's files, as they are: pptpd.conf naming the
    options file, which loads radius.so and radattr.so and names a radiusclient.conf, whose
    servers file holds the secret and whose dictionary is radiusclient's."""
    etc = tmp_path / "etc"
    (etc / "radiusclient").mkdir(parents=True)
    (etc / "pptpd.conf").write_text(
        f"option {etc}/ppp-pptpd-options\nlocalip 198.51.100.1\nremoteip 198.51.100.2-3\n")
    (etc / "ppp-pptpd-options").write_text(
        "name pptpd\nrefuse-pap\nrefuse-chap\nrefuse-mschap\nrequire-mschap-v2\n"
        "require-mppe-128\nms-dns 192.0.2.53\nproxyarp\nnodefaultroute\nlock\nnobsdcomp\n"
        "lcp-echo-interval 0\n"
        "plugin /usr/lib/pppd/2.4.9/radius.so\nplugin radattr.so\n"
        f"radius-config-file {etc}/radiusclient/radiusclient.conf\n"
        "avpair NAS-Port-Id=pptp-e2e\n")
    host, port = radius_ns.auth_address
    (etc / "radiusclient" / "radiusclient.conf").write_text(
        "# radiusclient configuration file (Debian's, trimmed)\n"
        "auth_order\tradius,local\nlogin_tries\t4\nlogin_timeout\t60\nnologin /etc/nologin\n"
        "issue\t/etc/radiusclient/issue\n"
        f"authserver \t{host}:{port}\n"
        f"acctserver \t{host}:{radius_ns.acct_port}\n"
        "servers\t\t" + f"{etc}/radiusclient/servers\n"
        f"dictionary \t{etc}/radiusclient/dictionary\n"
        "login_radius\t/usr/sbin/login.radius\nseqfile\t\t/var/run/radius.seq\n"
        "mapfile\t\t/etc/radiusclient/port-id-map\ndefault_realm\n"
        "radius_timeout\t1\nradius_retries\t2\nbindaddr *\nlogin_local\t/bin/login\n")
    (etc / "radiusclient" / "servers").write_text(
        "# Make sure that this file is mode 600 (readable only to owner)!\n"
        f"#Server Name or Client/Server pair\t\tKey\n{host}\t{SECRET}\n")
    (etc / "radiusclient" / "dictionary").write_text(
        "ATTRIBUTE\tUser-Name\t1\tstring\nATTRIBUTE\tNAS-Port-Id\t87\tstring\n"
        "ATTRIBUTE\tAscend-Data-Filter\t242\tabinary\n"
        "$INCLUDE /etc/radiusclient/dictionary.microsoft\n")

    args = server_parser().parse_args(["-c", str(etc / "pptpd.conf"), "--secrets",
                                       str(tmp_path / "chap-secrets")])
    config, _ = build_server_config(args)
    assert config.radius is not None
    assert [s.address for s in config.radius.auth_servers] == [radius_ns.auth_address]
    assert config.radius.policy.timeout == 1.0 and config.radius.policy.tries == 2
    assert config.radius.auth_order == "radius"         # pppd's radius.so ignores auth_order
    assert config.radius.radattr_dir == "/var/run"

    async def main():
        rig = Rig(tmp_path, "", None, config=config)
        await rig.start()
        try:
            c, t = rig.client("carol", PASSWORDS["carol"], "require-mppe-128")
            up = await rig.wait_up(c, t)
            info = (c.session.info.auth, c.session.info.mppe) if up else None
            traffic = await rig.ping_both_ways("carol", "198.51.100.77") if up else None
            return up, info, traffic
        finally:
            await rig.close()

    up, info, traffic = asyncio.run(main())
    assert up and info == ("MS-CHAPv2", "128 stateless") and traffic == (True, True)
    assert "NAS-Port-Id = \"pptp-e2e\"" in radius_ns.log()


def test_radattr_file_for_ip_up_with_per_session_interfaces(radius_ns, tmp_path):
    """radattr.so: the Access-Accept's attributes in <dir>/radattr.ppp0 while the session is
    up (written before ip-up), without key material; removed when it ends."""
    radattr = tmp_path / "run"
    radattr.mkdir()

    async def main():
        rig = Rig(tmp_path, "require-mschap-v2 require-mppe-128",
                  _settings(radius_ns, radattr_dir=str(radattr)), per_session_interfaces=True)
        await rig.start()
        try:
            c, t = rig.client("carol", PASSWORDS["carol"], "require-mppe-128")
            up = await rig.wait_up(c, t)
            files = sorted(p.name for p in radattr.iterdir())
            text = (radattr / "radattr.ppp0").read_text() if files else ""
            c.stop()
            await asyncio.wait_for(t, 15)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while any(radattr.iterdir()) and loop.time() < deadline:
                await asyncio.sleep(0.05)
            return up, files, text, sorted(p.name for p in radattr.iterdir())
        finally:
            await rig.close()

    up, files, text, after = asyncio.run(main())
    assert up and files == ["radattr.ppp0"]
    lines = text.splitlines()
    assert "Framed-IP-Address 198.51.100.77" in lines
    assert "Session-Timeout 3600" in lines
    assert "Mikrotik-Rate-Limit 512k/2M" in lines
    assert any(line.startswith("MS-CHAP2-Success ") for line in lines)
    assert not any("MPPE-Send-Key" in line or "MPPE-Recv-Key" in line for line in lines)
    assert after == []


@pytest.mark.parametrize("server_opts,client_ok,mppe", [
    ("require-mschap-v2 require-mppe", True, "40 stateless"),       # narrowed to RADIUS's types
    ("require-mschap-v2 require-mppe-128", False, None),          # no common strength: refused
], ids=["narrowed-to-40", "refused-128-only"])
def test_mppe_encryption_types_from_radius_against_our_policy(radius_ns, tmp_path, server_opts,
                                                              client_ok, mppe):
    async def main():
        rig = Rig(tmp_path, server_opts, _settings(radius_ns))
        await rig.start()
        try:
            c, t = rig.client("weak", PASSWORDS["weak"], "require-mppe")
            up = await rig.wait_up(c, t)
            info = c.session.info.mppe if up else None
            traffic = await rig.ping_both_ways("weak", "198.51.100.2") if up else None
            rc = None if up else await asyncio.wait_for(t, 20)
            return up, info, traffic, rc, dict(rig.server.radius_verifier.counters)
        finally:
            await rig.close()

    up, info, traffic, rc, counters = asyncio.run(main())
    assert up == client_ok
    if client_ok:
        assert info == mppe and traffic == (True, True)
    else:
        assert rc == 19 and counters["policy_rejects"] == 1


class _Silent(asyncio.DatagramProtocol):
    """A RADIUS server that never answers; counts what it got."""

    def __init__(self):
        self.got = 0

    def datagram_received(self, data, addr):
        self.got += 1


def test_a_silent_radius_server_holds_up_no_other_login(radius_ns, tmp_path):
    """With the only RADIUS server silent, dave's login waits for it (2 tries 2 s apart)
    while erin, whom chap-secrets knows (``local,radius``), negotiates LCP, MS-CHAPv2, MPPE and
    IPCP and passes traffic meanwhile; then dave is refused cleanly (E=691)."""
    (tmp_path / "no-chap-secrets").write_text('erin testsrv "erin-local-pw" *\n')

    async def main():
        loop = asyncio.get_running_loop()
        silent = _Silent()
        transport, _ = await loop.create_datagram_endpoint(lambda: silent, local_addr=("127.0.0.1", 0))
        radius = RadiusSettings(auth_servers=(RadiusServer(transport.get_extra_info("sockname")[:2],
                                                           SECRET.encode()),),
                                policy=ClientPolicy(timeout=2.0, tries=2), nas_identifier="silent",
                                auth_order="local,radius")
        rig = Rig(tmp_path, "require-mschap-v2 require-mppe-128", radius)
        await rig.start()
        r = {}
        try:
            d, dt = rig.client("dave", PASSWORDS["dave"], "require-mppe-128")
            await asyncio.sleep(0.3)
            began = loop.time()
            e, et = rig.client("erin", "erin-local-pw", "require-mppe-128", source="127.0.0.3")
            r["erin_up"] = await rig.wait_up(e, et, timeout=3.0)
            r["erin_took"] = loop.time() - began
            r["dave_pending"] = not dt.done() and not d.up.is_set()
            r["traffic"] = await rig.ping_both_ways("erin", e.session.info.local_ip) if r["erin_up"] else None
            r["dave_rc"] = await asyncio.wait_for(dt, 20)
            r["dave_reason"] = d.exit_reason
            r["dave_took"] = loop.time() - began
            r["radius_got"] = silent.got
            r["counters"] = dict(rig.server.radius_verifier.counters)
            r["erin_alive"] = not et.done()
            return r
        finally:
            await rig.close()
            transport.close()

    r = asyncio.run(main())
    assert r["erin_up"] and r["erin_took"] < 2.5, r
    assert r["dave_pending"]                      # still waiting for RADIUS when erin was up
    assert r["traffic"] == (True, True)
    assert r["dave_rc"] == 19 and "e=691" in (r["dave_reason"] or "").lower()
    assert r["radius_got"] == 2                   # dave's Access-Request, sent twice
    assert r["counters"]["no_response"] == 1 and r["counters"]["local"] == 1
    assert r["erin_alive"]
