"""Admission control for the server's control connections, sans-I/O.

Theory of operation: the server asks :meth:`Admission.connect` about every new TCP control
connection (TCP port 1723) before it speaks PPTP, and tells it about every admitted connection
that goes away (:meth:`Admission.disconnect`) and every failed login
(:meth:`Admission.auth_failed`).  Three limits, checked in this order (the first that holds
refuses; a refused attempt is not recorded, so it does not push its own source further out):

1. ``max_connections`` open control connections in all (counted from admitted connects to
   their disconnects) -- :attr:`Refusal.CONNECTIONS`;
2. ``max_auth_failures`` failed logins per source in the last ``lockout_window`` seconds --
   :attr:`Refusal.LOCKED_OUT` until the oldest of them leaves the window;
3. ``rate_limit`` admitted connections per source in the last ``rate_window`` seconds --
   :attr:`Refusal.RATE_LIMITED`.

At the connection limit the owner may make room (:func:`idle_victim`): a connection with no
call that has held its slot for ``IDLE_EVICT_AFTER`` seconds -- the oldest of the source that
holds the most such -- is closed for the newcomer.  Otherwise idle TCP connections and
slow-loris ones (a Start-Control-Connection-Request one octet at a time) from one host would
keep every login out for the PAC's whole 30 s wait, again and again (issue 10); a client
places its call within a round trip or two of connecting, so the grace spares one that is
only slow, and taking from the biggest holder first spares the one-connection clients.

A successful login does not forgive failures: whoever holds one valid account could otherwise
interleave a guess at another account with each good login.

Memory is bounded: a source keeps at most ``limit`` timestamps per table (enough to decide), a
source whose newest event left the window is forgotten, and each table tracks at most
``max_sources`` sources -- a new source beyond that evicts the least recently seen one (counted
in :attr:`Admission.evicted`), so a spray of source addresses cannot grow it.

The clock is an argument (``now``: monotonic seconds, never decreasing); nothing here does I/O.
"""
from __future__ import annotations

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass
from collections.abc import Iterable
from typing import TypeAlias, TypeVar

__all__ = ["IDLE_EVICT_AFTER", "Admission", "AdmissionLimits", "Admit", "Decision", "Refusal", "Refuse",
           "SlidingWindow", "idle_victim"]

T = TypeVar("T")

#: seconds a control connection without a call keeps its slot before it may be closed to admit
#: another at the connection limit (module doc)
IDLE_EVICT_AFTER = 2.0


class Refusal(enum.Enum):
    """Why a control connection was refused (the value is for the log)."""

    CONNECTIONS = "too many control connections"
    LOCKED_OUT = "too many failed logins"
    RATE_LIMITED = "connection rate limit"


@dataclass(frozen=True, slots=True)
class Admit:
    """The connection may proceed (it now counts as open until ``disconnect``)."""


@dataclass(frozen=True, slots=True)
class Refuse:
    """The connection is to be closed.  ``retry_after``: seconds until this source would pass
    the limit that refused it, were nothing else to happen (None for the connection limit,
    which depends on others, and for a limit of 0, which never clears)."""

    reason: Refusal
    retry_after: float | None = None


Decision: TypeAlias = Admit | Refuse


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_connections: int
    rate_limit: int                  # admitted connections per source per rate_window
    max_auth_failures: int           # failed logins per source per lockout_window
    rate_window: float = 10.0
    lockout_window: float = 300.0
    max_sources: int = 65536         # sources tracked per table

    def __post_init__(self) -> None:
        if min(self.max_connections, self.rate_limit, self.max_auth_failures) < 0:
            raise ValueError("admission limits must be >= 0")
        if self.rate_window <= 0 or self.lockout_window <= 0:
            raise ValueError("admission windows must be > 0 seconds")
        if self.max_sources < 1:
            raise ValueError("max_sources must be >= 1")


class SlidingWindow:
    """Per-source sliding-window counter: at most ``limit`` events per ``window`` seconds.

    Each source keeps only its newest ``limit`` timestamps (the count never needs more); the
    sources are kept least recently seen first, so expired ones are dropped from the front and,
    when ``max_sources`` are tracked, the least recently seen live one is evicted."""

    def __init__(self, limit: int, window: float, max_sources: int = 65536) -> None:
        self.limit, self.window, self.max_sources = limit, window, max_sources
        self.evicted = 0
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def _live(self, source: str, now: float) -> deque[float] | None:
        q = self._events.get(source)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._events[source]
            return None
        return q

    def count(self, source: str, now: float) -> int:
        """Events of ``source`` in the window ending at ``now`` (at most ``limit``)."""
        q = self._live(source, now)
        return len(q) if q is not None else 0

    def retry_after(self, source: str, now: float) -> float | None:
        """Seconds until ``source`` is below the limit again (0 if it is already; None with a
        limit of 0, which no source is ever below)."""
        if self.limit <= 0:
            return None
        q = self._live(source, now)
        if q is None or len(q) < self.limit:
            return 0.0
        return q[0] + self.window - now

    def add(self, source: str, now: float) -> None:
        """Record an event of ``source`` at ``now``."""
        if self.limit <= 0:
            return          # nothing to remember: every event is over the limit anyway
        q = self._live(source, now)
        if q is None:
            self._make_room(now)
            q = self._events[source] = deque(maxlen=self.limit)
        else:
            self._events.move_to_end(source)
        q.append(now)

    def allow(self, source: str, now: float) -> bool:
        """Record an event of ``source`` if it is under the limit; whether it was."""
        if self.count(source, now) >= self.limit:
            return False
        self.add(source, now)
        return True

    def _make_room(self, now: float) -> None:
        # least recently seen first: every source whose newest event left the window is at the front
        while self._events:
            oldest_source, q = next(iter(self._events.items()))
            if q and q[-1] > now - self.window:
                break
            del self._events[oldest_source]
        while len(self._events) >= self.max_sources:
            self._events.popitem(last=False)
            self.evicted += 1


class Admission:
    """Connection limit, per-source connection rate limit and failed-login lockout."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._rate = SlidingWindow(limits.rate_limit, limits.rate_window, limits.max_sources)
        self._failures = SlidingWindow(limits.max_auth_failures, limits.lockout_window, limits.max_sources)
        self._open: dict[str, int] = {}      # admitted, not yet disconnected, per source
        self._open_total = 0

    @property
    def open_connections(self) -> int:
        return self._open_total

    @property
    def evicted(self) -> int:
        """Live sources forgotten because a table was full (rate and failure tables)."""
        return self._rate.evicted + self._failures.evicted

    def tracked_sources(self) -> int:
        """Sources remembered by the rate and failure tables together (bounded by
        2 * ``max_sources``)."""
        return len(self._rate) + len(self._failures)

    def connect(self, source: str, now: float) -> Decision:
        """A new control connection from ``source``: admit it (and count it as open) or refuse."""
        if self._open_total >= self.limits.max_connections:
            return Refuse(Refusal.CONNECTIONS)
        if self._failures.count(source, now) >= self.limits.max_auth_failures:
            return Refuse(Refusal.LOCKED_OUT, self._failures.retry_after(source, now))
        if not self._rate.allow(source, now):
            return Refuse(Refusal.RATE_LIMITED, self._rate.retry_after(source, now))
        self._open[source] = self._open.get(source, 0) + 1
        self._open_total += 1
        return Admit()

    def disconnect(self, source: str) -> None:
        """An admitted connection from ``source`` is gone.  Report admitted connections only (a
        refused one was never counted); a source with none open is ignored."""
        n = self._open.get(source, 0)
        if n <= 0:
            return
        if n == 1:
            del self._open[source]
        else:
            self._open[source] = n - 1
        self._open_total -= 1

    def auth_failed(self, source: str, now: float) -> Decision:
        """A login from ``source`` failed.  Returns what its next connection would get from the
        lockout: ``Refuse(LOCKED_OUT, retry_after)`` once it has ``max_auth_failures`` in the window."""
        self._failures.add(source, now)
        if self._failures.count(source, now) >= self.limits.max_auth_failures:
            return Refuse(Refusal.LOCKED_OUT, self._failures.retry_after(source, now))
        return Admit()


def idle_victim(candidates: Iterable[tuple[str, float, T]], now: float,
                min_age: float = IDLE_EVICT_AFTER) -> T | None:
    """The connection to close to admit a new one at the connection limit, or None.

    ``candidates``: ``(source, admitted_at, key)`` of the admitted connections that carry no
    call.  Of those admitted at least ``min_age`` seconds before ``now``: the source holding
    the most (ties: the one whose oldest is older), and its oldest connection."""
    by_source: dict[str, list[tuple[float, T]]] = {}
    for source, since, key in candidates:
        if now - since >= min_age:
            by_source.setdefault(source, []).append((since, key))
    if not by_source:
        return None
    held = max(by_source.values(), key=lambda v: (len(v), -min(t for t, _ in v)))
    return min(held, key=lambda tk: tk[0])[1]
