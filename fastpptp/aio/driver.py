"""asyncio glue for the sans-I/O protocol objects.

Every protocol core in fastpptp (PPTP control connection, PPP link) exposes the same shape:
inputs take ``now``; outputs are pulled (``data_to_send``/``frames_to_send``, ``next_event``);
time is a deadline (``get_timer``) fired by ``handle_timer(now)``.  This module holds the one
adapter pattern for that shape: after every input, *pump* — flush output, dispatch events,
re-arm one timer.  ``now`` is always ``loop.time()`` (monotonic).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, cast

from ..pptp.control import ControlConnection, Event

log = logging.getLogger("fastpptp.aio")


class DeadlineTimer:
    """One re-armable timer per protocol object: fires ``callback(now)`` at a deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[float], None]):
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._deadline: float | None = None

    def arm(self, deadline: float | None) -> None:
        if deadline == self._deadline and (self._handle is not None or deadline is None):
            return
        self.cancel()
        if deadline is None:
            return
        self._deadline = deadline
        self._handle = self._loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._deadline = None

    def _fire(self) -> None:
        self._handle = None
        self._deadline = None
        try:
            self._callback(self._loop.time())
        except Exception:  # a bug in a core must not kill the loop or other sessions
            log.exception("timer callback failed")


class ControlStream(asyncio.Protocol):
    """Drives a sans-I/O PPTP :class:`~fastpptp.pptp.control.ControlConnection` over TCP.

    ``on_event(ev)`` receives each protocol event; ``on_lost(exc)`` is called once when the
    TCP connection ends (``exc`` None: an orderly close); ``on_made(stream)`` when it is
    made.  Bytes the core wants to send are written after every input.
    """

    def __init__(self, conn: ControlConnection, on_event: Callable[[Event], None],
                 on_lost: Callable[[Exception | None], None],
                 on_made: Callable[["ControlStream"], None] | None = None):
        self.conn = conn
        self._on_event = on_event
        self._on_lost = on_lost
        self._on_made = on_made
        self.transport: asyncio.Transport | None = None
        # (host, port) for TCP over IPv4 (more items over IPv6); None until connected
        self.peername: tuple[Any, ...] | None = None
        self._loop = asyncio.get_running_loop()
        self._timer = DeadlineTimer(self._loop, self._on_timer)
        self._closed = False

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # create_connection / create_server hand a TCP protocol a stream (write/close) transport
        self.transport = cast(asyncio.Transport, transport)
        self.peername = transport.get_extra_info("peername")
        if self._on_made is not None:
            self._on_made(self)
        self.pump()

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data, self._loop.time())
        self.pump()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        # Tell the core first: a PNS waiting for Call-Disconnect-Notify after its
        # Call-Clear-Request takes pptpd's TCP close as the call's end (pptpd never sends CDN).
        self._closed = True
        self._timer.cancel()
        try:
            self.conn.connection_lost(self._loop.time())
            while (ev := self.conn.next_event()) is not None:
                self._on_event(ev)
        except Exception:
            log.exception("control connection: error while closing")
        self._on_lost(exc)

    # pumping ----------------------------------------------------------------------------
    def pump(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        while True:
            ev = self.conn.next_event()
            if ev is None:
                break
            self._on_event(ev)
        # events may have queued more output (e.g. accept_call)
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        if not self._closed:
            self._timer.arm(self.conn.get_timer())

    def _on_timer(self, now: float) -> None:
        self.conn.handle_timer(now)
        self.pump()

    def close(self) -> None:
        self._timer.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
