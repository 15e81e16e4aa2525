"""asyncio UDP listener of the Dynamic Authorization core (:mod:`fastpptp.radius.dae`).

One datagram socket on the configured address (port 3799 by default, RFC 5176 §3.2); each
datagram goes through :meth:`DaeCore.handle` on the loop with the loop's clock and the wall
clock, and the answer, if any, goes back to the sender.  The core only starts actions
(``Server.terminate`` schedules the teardown, a CoA changes timers and the engine's limit),
so the loop never waits here.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time

from fastpptp.radius.dae import DaeCore

__all__ = ["DaeListener"]

log = logging.getLogger("fastpptp.radius.dae")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, listener: DaeListener) -> None:
        self._listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._listener._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dae: socket error %s", exc)


class DaeListener:
    """``await listener.start()``; ``listener.close()``."""

    def __init__(self, core: DaeCore, listen: tuple[str, int]) -> None:
        self.core = core
        self.listen = listen
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(host, port),
                                                           family=family)
        self._transport = transport
        log.info("Dynamic Authorization (RFC 5176) listening on %s port %d", *self.local_address)

    @property
    def local_address(self) -> tuple[str, int]:
        if self._transport is None:
            raise RuntimeError("DaeListener not started")
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is None:
            return
        source = (str(addr[0]), int(addr[1]))
        try:
            answer = self.core.handle(data, source, asyncio.get_running_loop().time(), time.time())
        except Exception:         # our bug: this request goes unanswered, the listener lives on
            log.exception("dae: request from %s failed", source[0])
            return
        if answer is not None:
            self._transport.sendto(answer, addr)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
