"""A server that closes the control connection as soon as it accepts it (what fastpptp's
admission control does when it refuses): the client's attempt fails as CONNECT_FAILED and,
with persist, is retried -- it used to die with a LocalProtocolError traceback (start() on
a connection the EOF had already closed; found by tests/integration/test_floods.py)."""
from __future__ import annotations

import asyncio
import socket

import pytest

from fastpptp.client import Client, ClientConfig, FailureKind
from fastpptp.config import parse_ppp_options

pytestmark = [pytest.mark.netns]


def test_closed_at_once_is_a_failed_attempt(loopback_ns):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    lsock.setblocking(False)
    accepted = []

    async def main() -> int:
        loop = asyncio.get_running_loop()

        async def refuse() -> None:
            while True:
                conn, _ = await loop.sock_accept(lsock)
                accepted.append(1)
                conn.close()                 # before the client's SCCRQ

        server = asyncio.ensure_future(refuse())
        c = Client(ClientConfig(server="127.0.0.1", port=port, user="u", password="p",
                                ppp=parse_ppp_options("persist maxfail 3 holdoff 0"), ip_up=None,
                                ip_down=None, connect_timeout=5))
        try:
            return await asyncio.wait_for(c.run(), 30)
        finally:
            server.cancel()
            assert c.failure in (FailureKind.CONNECT_FAILED, FailureKind.HANGUP), c.failure

    try:
        status = asyncio.run(main())
    finally:
        lsock.close()
    assert len(accepted) == 3                    # tried maxfail times, then gave up
    assert status in (FailureKind.CONNECT_FAILED.value, FailureKind.HANGUP.value)
