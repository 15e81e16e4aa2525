"""asyncio UDP driver of the sans-I/O :class:`~fastpptp.radius.client.RadiusClient`.

One unconnected datagram socket for every server (the source address of an answer says
which server it is from; the core matches it), one re-armable timer on the core's next
deadline, the loop's monotonic clock as ``now``.  After every input (a datagram, the timer,
a new request) the driver flushes the core's datagrams, resolves the futures of finished
transactions and re-arms the timer, so one server that stops answering holds up nothing but
its own transactions' futures.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable

from fastpptp.aio.driver import DeadlineTimer
from fastpptp.errors import LocalProtocolError, RemoteProtocolError
from fastpptp.radius.client import NoResponse, RadiusClient, Response
from fastpptp.radius.dictionary import Code
from fastpptp.radius.packet import Attribute

__all__ = ["RadiusDriver", "RadiusNoResponse"]

log = logging.getLogger(__name__)


class RadiusNoResponse(RemoteProtocolError):
    """No RADIUS server answered the request (every server tried its ``tries`` times)."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, driver: RadiusDriver) -> None:
        self._driver = driver

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # IPv6 peers come as (host, port, flowinfo, scope_id): the core keys on (host, port)
        self._driver._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a stopped server: its retransmits and failover cover it
        log.debug("radius: socket error %s", exc)


class RadiusDriver:
    """``await driver.request(code, attributes)`` -> the verified :class:`Response`."""

    def __init__(self, client: RadiusClient, *, bind_address: str | None = None) -> None:
        self.client = client
        self._bind_address = bind_address
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: DeadlineTimer | None = None
        self._futures: dict[int, asyncio.Future[Response]] = {}

    async def start(self) -> None:
        if self._transport is not None:
            raise LocalProtocolError("RadiusDriver started twice")
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.client.servers[0].address[0] else socket.AF_INET
        local = (self._bind_address or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=local,
                                                           family=family)
        self._transport = transport
        self._timer = DeadlineTimer(loop, self._on_timer)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for fut in self._futures.values():
            if not fut.done():
                fut.cancel()
        self._futures.clear()

    @property
    def local_address(self) -> tuple[str, int]:
        if self._transport is None:
            raise LocalProtocolError("RadiusDriver not started")
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    async def request(self, code: Code, attributes: Iterable[Attribute]) -> Response:
        """Send a request and wait for its verified response; raises RadiusNoResponse."""
        if self._transport is None:
            raise LocalProtocolError("RadiusDriver not started")
        loop = asyncio.get_running_loop()
        handle = self.client.send(code, attributes, loop.time())
        fut: asyncio.Future[Response] = loop.create_future()
        self._futures[handle] = fut
        self._flush()
        try:
            return await fut
        finally:
            if self._futures.pop(handle, None) is not None:
                self.client.cancel(handle)       # cancelled by our caller

    # --- inputs -----------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, source: tuple[str, int]) -> None:
        if self._timer is None:
            return
        self.client.receive_datagram(data, source, asyncio.get_running_loop().time())
        self._flush()

    def _on_timer(self, now: float) -> None:
        self.client.handle_timer(now)
        self._flush()

    def _flush(self) -> None:
        if self._transport is None or self._timer is None:
            return
        for address, datagram in self.client.datagrams_to_send():
            self._transport.sendto(datagram, address)
        while (ev := self.client.next_event()) is not None:
            fut = self._futures.pop(ev.handle, None)
            if fut is None or fut.done():
                continue
            if isinstance(ev, Response):
                fut.set_result(ev)
            elif isinstance(ev, NoResponse):
                fut.set_exception(RadiusNoResponse("no RADIUS server answered"))
        self._timer.arm(self.client.get_timer())
