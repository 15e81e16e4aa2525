"""RADIUS accounting on the event loop: the server's :class:`Accountant`.

Flow:

1. ``await start()``: the RADIUS driver's UDP socket (``RadiusSettings.acct_servers``, its
   ``policy`` and ``bind_address``), then Accounting-On.
2. ``session_up(session, counters, interval=)``: the session's network came up: Start, and an
   Interim-Update every ``interval`` seconds (0: none), timed from the Start (``loop.call_at``:
   no drift), with the counters read from the engine at that moment.
3. ``session_closed(session_id, final_counters, cause)``: Stop with the final counters and the
   Acct-Terminate-Cause; however the session ended (the server calls it from every teardown).
4. ``await stop()``: waits for the outstanding requests -- the Stops of the sessions the
   shutdown ended --, sends Accounting-Off and waits for it, at most ``stop_wait`` in all
   (the Off is sent at least once), then gives up what is left and closes.

Every request is a task awaiting :meth:`RadiusDriver.request`: the RADIUS client core
retransmits it with Acct-Delay-Time and fails over (bounded by ``ClientPolicy``), and the
loop never waits for it -- neither the data plane (the engine's own thread) nor any session.
:class:`~fastpptp.radius.accounting.AccountingBacklog` bounds the outstanding requests
(superseded or dropped ones are cancelled, which cancels their RADIUS transaction).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ..radius.accounting import (
    AccountingBacklog, AcctSession, Nas, RequestKind, Usage,
    accounting_off_attributes, accounting_on_attributes, interim_attributes, start_attributes,
    stop_attributes,
)
from ..radius.aio import RadiusDriver, RadiusNoResponse
from ..radius.client import RadiusClient, Response
from ..radius.dictionary import AcctTerminateCause, Code
from ..radius.packet import Attribute
from ..radius.settings import RadiusSettings

__all__ = ["Accountant", "AccountingDriver", "COUNTERS", "BACKLOG_LIMIT", "STOP_WAIT_MAX"]

log = logging.getLogger("fastpptp.accounting")

#: requests outstanding at once before Interim-Updates (then Starts) are given up
BACKLOG_LIMIT = 1024
#: the longest ``stop()`` waits for the last Stops and the Accounting-Off
STOP_WAIT_MAX = 10.0

#: the accountant's counters (besides the backlog's, BACKLOG_COUNTERS), each with its meaning
COUNTERS: dict[str, str] = {
    "requests": "Accounting-Requests handed to the RADIUS client",
    "answered": "Accounting-Requests an Accounting-Response answered",
    "no_response": "Accounting-Requests no server answered (given up after the retries)",
    "interim_skipped": "Interim-Updates not sent: the session's counters were unavailable",
}


class AccountingDriver(Protocol):
    """What the accountant needs of :class:`~fastpptp.radius.aio.RadiusDriver`."""

    async def start(self) -> None: ...

    async def request(self, code: Code, attributes: Iterable[Attribute]) -> Response: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class _Session:
    acct: AcctSession
    up_at: float                                   # loop time of the Start
    interval: int
    counters: Callable[[], Mapping[str, int]]
    interims: int = 0
    timer: asyncio.TimerHandle | None = None


class Accountant:
    """Start / Interim-Update / Stop of each session and Accounting-On/-Off of the NAS.

    ``nas_session_id``: the Acct-Session-Id of the Accounting-On and -Off (this run of the
    server); ``stop_wait``: the longest :meth:`stop` waits (for the Stops and the Off);
    ``wall_clock``: the clock of Event-Timestamp."""

    def __init__(self, nas: Nas, driver: AccountingDriver, *, nas_session_id: str,
                 backlog_limit: int = BACKLOG_LIMIT, stop_wait: float = STOP_WAIT_MAX,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.nas = nas
        self.driver = driver
        self.nas_session_id = nas_session_id
        self.backlog = AccountingBacklog(backlog_limit)
        self.stop_wait = stop_wait
        self._wall_clock = wall_clock
        self._counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._sessions: dict[str, _Session] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False

    @classmethod
    def from_settings(cls, settings: RadiusSettings, nas: Nas, *, nas_session_id: str,
                      backlog_limit: int = BACKLOG_LIMIT) -> Accountant:
        """An accountant over ``settings.acct_servers`` (a RadiusClient of its own, so the
        authentication servers' Identifiers and dead marks are not shared).  ``stop`` waits
        at most one full retransmission cycle, and never more than STOP_WAIT_MAX."""
        if not settings.acct_servers:
            raise ValueError("no accounting servers configured")
        policy = settings.policy
        driver = RadiusDriver(RadiusClient(settings.acct_servers, policy),
                              bind_address=settings.bind_address)
        cycle = policy.timeout * policy.tries * len(settings.acct_servers)
        return cls(nas, driver, nas_session_id=nas_session_id, backlog_limit=backlog_limit,
                   stop_wait=min(cycle, STOP_WAIT_MAX))

    @property
    def counters(self) -> dict[str, int]:
        """The accountant's counters (COUNTERS) and the backlog's (BACKLOG_COUNTERS)."""
        return {**self._counters, **self.backlog.counters}

    @property
    def outstanding(self) -> int:
        return len(self._tasks)

    @property
    def sessions(self) -> list[str]:
        """The session IDs accounted now (Start sent, Stop not yet)."""
        return list(self._sessions)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.driver.start()
        self._send(RequestKind.ON, self.nas_session_id,
                   accounting_on_attributes(self.nas, self.nas_session_id, timestamp=self._now()))

    async def stop(self) -> None:
        """The outstanding requests (the shutdown's Stops) first, then Accounting-Off (sent at
        least once), all within ``stop_wait``; what is left then is given up."""
        if self._stopped or self._loop is None:
            return
        self._stopped = True
        for s in self._sessions.values():      # sessions the server did not close: no Stop
            if s.timer is not None:
                s.timer.cancel()
        deadline = self._loop.time() + self.stop_wait
        await self._drain(deadline)
        self._send(RequestKind.OFF, self.nas_session_id,
                   accounting_off_attributes(self.nas, self.nas_session_id, timestamp=self._now()))
        await asyncio.sleep(0)          # the Off goes out at least once, however late it is
        await self._drain(deadline)
        left = len(self._tasks)
        for task in list(self._tasks.values()):
            task.cancel()
        if left:
            log.warning("accounting: %d requests still unanswered at shutdown, given up", left)
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self.driver.close()

    # --- sessions -------------------------------------------------------------------------------

    def session_up(self, session: AcctSession, counters: Callable[[], Mapping[str, int]], *,
                   interval: int) -> None:
        """Start, and Interim-Updates every ``interval`` seconds (0: none) from now on;
        ``counters()`` reads the session's live engine counters (may raise once it is gone)."""
        if self._loop is None or self._stopped or session.session_id in self._sessions:
            return
        rec = _Session(session, self._loop.time(), interval, counters)
        self._sessions[session.session_id] = rec
        self._send(RequestKind.START, session.session_id,
                   start_attributes(self.nas, session, timestamp=self._now()))
        self._arm(rec)
        log.debug("accounting: session %s started (interim every %s s)", session.session_id,
                  interval or "-")

    def session_closed(self, session_id: str, final_counters: Mapping[str, int],
                       cause: AcctTerminateCause) -> None:
        """Stop with the session's final counters (a session without a Start: nothing)."""
        rec = self._sessions.pop(session_id, None)
        if rec is None or self._loop is None:
            return
        if rec.timer is not None:
            rec.timer.cancel()
        session_time = int(self._loop.time() - rec.up_at)
        self._send(RequestKind.STOP, session_id,
                   stop_attributes(self.nas, rec.acct, Usage.from_engine(final_counters),
                                   session_time=session_time, cause=cause, timestamp=self._now()))
        log.debug("accounting: session %s stopped (%s, %d s)", session_id, cause.name, session_time)

    def _arm(self, rec: _Session) -> None:
        if rec.interval <= 0 or self._loop is None:
            return
        rec.interims += 1
        due = rec.up_at + rec.interims * rec.interval
        now = self._loop.time()
        if due <= now:                  # the loop was held up: skip, never catch up in a burst
            rec.interims = int((now - rec.up_at) // rec.interval) + 1
            due = rec.up_at + rec.interims * rec.interval
        rec.timer = self._loop.call_at(due, self._interim, rec)

    def _interim(self, rec: _Session) -> None:
        if self._loop is None or self._sessions.get(rec.acct.session_id) is not rec:
            return
        try:
            usage = Usage.from_engine(rec.counters())
        except Exception as exc:       # the call is leaving the engine: its Stop follows
            self._counters["interim_skipped"] += 1
            log.debug("accounting: session %s: no counters for the interim: %s", rec.acct.session_id, exc)
        else:
            session_time = int(self._loop.time() - rec.up_at)
            self._send(RequestKind.INTERIM, rec.acct.session_id,
                       interim_attributes(self.nas, rec.acct, usage, session_time=session_time,
                                          timestamp=self._now()))
        self._arm(rec)

    # --- requests -------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._wall_clock())

    def _send(self, kind: RequestKind, session_id: str, attributes: list[Attribute]) -> None:
        if self._loop is None:
            return
        admission = self.backlog.admit(kind, session_id)
        for key in admission.cancel:
            task = self._tasks.pop(key, None)
            if task is not None:
                task.cancel()
        if admission.key is None:
            log.warning("accounting: %s of session %s not sent: %d requests outstanding",
                        kind.name, session_id, len(self.backlog))
            return
        self._counters["requests"] += 1
        self._tasks[admission.key] = self._loop.create_task(
            self._request(admission.key, kind, session_id, attributes))

    async def _request(self, key: int, kind: RequestKind, session_id: str,
                       attributes: list[Attribute]) -> None:
        try:
            await self.driver.request(Code.ACCOUNTING_REQUEST, attributes)
        except RadiusNoResponse:
            self._counters["no_response"] += 1
            log.warning("accounting: %s of session %s: no RADIUS server answered, given up",
                        kind.name, session_id)
        except asyncio.CancelledError:
            raise
        except Exception:              # our bug: logged, never the loop's or a session's end
            log.exception("accounting: %s of session %s failed", kind.name, session_id)
        else:
            self._counters["answered"] += 1
        finally:
            self.backlog.done(key)
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]

    async def _drain(self, deadline: float) -> bool:
        """Wait until no request is outstanding (True) or ``deadline`` passes (False)."""
        loop = asyncio.get_running_loop()
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(list(self._tasks.values()), timeout=left)
        return True
