"""In-process clients of an in-process server (tests/integration): two users, each from its
own loopback source address, so a test can select sessions by user, address or peer."""
from __future__ import annotations

import asyncio

from fastpptp.client import Client, ClientConfig
from fastpptp.config import parse_ppp_options
from fastpptp.server import Server
from fastpptp.status import SessionMatch
from support.inproc import FakeTun, free_port  # noqa: F401 (the tests import it from here too)

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
SOURCES = {"alice": "127.0.0.2", "bob": "127.0.0.3"}
#: what the servers these peers log in to ask for (name testsrv: the peers' remotename)
SERVER_PPP = "require-mschap-v2 require-mppe-128 name testsrv lcp-echo-interval 0"


class Peer:
    """One client of the in-process server, connected and up (FakeTun, no network changes)."""

    def __init__(self, user: str):
        self.user = user
        self.tuns: list[FakeTun] = []

    async def connect(self, server: Server) -> "Peer":
        def tun(name):
            self.tuns.append(FakeTun(name))
            return self.tuns[-1]
        self.client = Client(ClientConfig(server="127.0.0.1", port=server.config.port, user=self.user,
                                          password=PASSWORDS[self.user],
                                          ppp=parse_ppp_options("require-mppe-128 remotename testsrv"),
                                          local_address=SOURCES[self.user], ip_up=None, ip_down=None),
                             tun_factory=tun, configure_network=False)
        self.task = asyncio.ensure_future(self.client.run())
        up = asyncio.ensure_future(self.client.up.wait())
        await asyncio.wait({self.task, up}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        up.cancel()
        assert self.client.up.is_set(), f"{self.user}: tunnel did not come up"
        (self.session,) = server.find_sessions(SessionMatch(user=self.user))
        return self

    @property
    def sid(self) -> str:
        return self.session.info.session_id

    @property
    def ip(self) -> str:
        return str(self.session.info.remote_ip)

    async def ended(self, timeout: float = 10.0) -> int:
        return await asyncio.wait_for(asyncio.shield(self.task), timeout)

    async def close(self) -> None:
        if not self.task.done():
            self.client.stop()
            await asyncio.wait_for(self.task, 15)
