"""A CallSession whose engine raises EV_MPPE_LOST_SYNC (stateless MPPE keys out of step for
good) ends: LCP Terminate to the peer, the session closed with the link's reason, the pool
address released once, Acct-Terminate-Cause Lost-Carrier.  A trimmed copy of the rig of
test_session.py (test modules cannot import each other)."""
from __future__ import annotations

import asyncio
import os
import random

from fastpptp.aio.session import CallSession, EngineHub
from fastpptp.config import AddressPool, client_link_config, parse_ppp_options, server_link_config
from fastpptp.ppp.auth.secrets import StaticBackend
from fastpptp.ppp.constants import EV_MPPE_LOST_SYNC, Code, Protocol
from fastpptp.ppp.link import MPPE_LOST_SYNC, PPPLink
from fastpptp.radius.accounting import AcctTerminateCause, terminate_cause
from fastpptp.teardown import Teardown

USERS = {"alice": "alice-secret"}


class Engine:
    """The SessionEngine calls a CallSession makes, recorded; frames kept for the peer."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self.ops: list[tuple] = []
        self.sent: list[tuple[int, bytes]] = []

    control_fd = property(lambda self: self._r)

    def recv_control(self, max: int = 64):
        return []

    def send_control(self, call_id, protocol, payload):
        self.sent.append((protocol, payload))

    def __getattr__(self, name):                      # add_session, set_mppe, add_route...
        return lambda *a, **kw: self.ops.append((name, *a))

    def counters(self, call_id):
        return {}

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


def test_lost_sync_event_ends_the_session():
    async def main():
        loop = asyncio.get_running_loop()
        pool = AddressPool(["198.51.100.10", "198.51.100.11"])
        released: list[str] = []

        def release(addr: str) -> None:
            released.append(addr)
            pool.release(addr)
        engine = Engine()
        hub = EngineHub(engine, loop)
        policy = parse_ppp_options("require-mschap-v2 require-mppe-128 lcp-echo-interval 0")
        link = PPPLink(server_link_config(policy, local_ip="198.51.100.1",
                                          assign_address=lambda user: pool.allocate(),
                                          release_address=release),
                       "server", StaticBackend(USERS), random.Random(1))
        closed: list[str] = []
        session = CallSession(hub, link, call_id=0x1234, peer_call_id=7, peer_addr="192.0.2.9",
                              on_closed=lambda s, reason: closed.append(reason))
        client = PPPLink(client_link_config(parse_ppp_options("require-mppe-128 "
                                                              "lcp-echo-interval 0"),
                                            user="alice", password=USERS["alice"]),
                         "client", None, random.Random(2))
        to_client: list[tuple[int, bytes]] = []

        def shuttle() -> None:
            for _ in range(60):
                out, engine.sent = engine.sent, []
                to_client.extend(out)
                back = client.frames_to_send()
                if not out and not back:
                    return
                for proto, payload in out:
                    client.receive(proto, payload, loop.time())
                for proto, payload in back + client.frames_to_send():
                    session.on_frame(proto, payload)

        client.lower_up(loop.time())
        session.start()
        shuttle()
        assert session.info.up and len(pool) == 1
        session.on_frame(EV_MPPE_LOST_SYNC, b"")          # what the engine queues
        shuttle()
        terms = [p for proto, p in to_client if proto == Protocol.LCP
                 and p[0] == Code.TERMINATE_REQUEST]
        assert terms and MPPE_LOST_SYNC.encode() in terms[0]
        for _ in range(3):
            await asyncio.sleep(0)
        result = (session.closed, closed, released, len(pool), link.counters["mppe_lost_sync"],
                  session.info.cause)
        session.abort("again")                           # idempotent
        hub.close()
        engine.close()
        return result

    is_closed, closed, released, free, counted, cause = asyncio.run(main())
    assert is_closed and closed == [MPPE_LOST_SYNC]
    assert released == ["198.51.100.10"] and free == 2 and counted == 1
    assert cause is Teardown.MPPE_LOST_SYNC
    assert terminate_cause(cause) is AcctTerminateCause.LOST_CARRIER
