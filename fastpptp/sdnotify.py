"""systemd's service notification protocol (sd_notify(3)), without libsystemd.

The protocol is one datagram per notification: newline-separated ``KEY=VALUE`` assignments sent
over an ``AF_UNIX`` ``SOCK_DGRAM`` socket to the address systemd puts in ``$NOTIFY_SOCKET``
(a file system path, or an abstract-namespace name written with a leading ``@`` that stands for
the NUL byte).  What the products send:

* ``READY=1`` once the service does its job (the server: its listener accepts; the client: the
  tunnel carries traffic), with ``STATUS=`` -- Type=notify units count as started only then;
* ``STATUS=...`` whenever the one-line status changes (the server: its session count);
* ``RELOADING=1`` + ``MONOTONIC_USEC=`` before a reload (SIGHUP), ``READY=1`` after it;
* ``STOPPING=1`` when a stop begins (SIGTERM);
* ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` from the asyncio event loop while
  ``WatchdogSec=`` is set: a loop that stops turning stops pinging, and systemd restarts us.
  ``$WATCHDOG_PID``, when set, names the process meant; any other process does not ping
  (sd_watchdog_enabled(3)).

Without ``$NOTIFY_SOCKET`` (not started by systemd, or Type= is not notify) every call is a
no-op.  A notification that cannot be delivered is logged and dropped: it never takes the
service down.  ``unset_environment`` removes the variables, so the processes we start (ip-up,
ip-down) do not talk to systemd in our name (sd_notify's ``unset_environment`` argument).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger("fastpptp.sdnotify")

ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
SEND_TIMEOUT = 1.0      # seconds a notification may wait on a full socket before it is dropped


def watchdog_usec(environ: MutableMapping[str, str], pid: int) -> int | None:
    """The watchdog timeout in microseconds meant for process ``pid``, or None when there is
    none: ``WATCHDOG_USEC`` unset, not a positive integer, or ``WATCHDOG_PID`` names another
    process (sd_watchdog_enabled(3))."""
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number: no watchdog pings", raw)
        return None
    if usec <= 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            log.warning("WATCHDOG_PID=%r is not a number: no watchdog pings", owner)
            return None
    return usec


class Notifier:
    """Notifications to the service manager at ``address`` (``$NOTIFY_SOCKET``'s form: "/path"
    or "@abstract"); None makes every method a no-op.  ``watchdog_usec``: the watchdog timeout
    (None: no pings).  Use from one thread, the event loop's."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec if address is not None else None
        self._sock: socket.socket | None = None
        self._status: str | None = None
        self._ping: asyncio.TimerHandle | None = None
        self.sent = 0               # notifications delivered (for tests and debugging)

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None, *,
                 unset_environment: bool = False, pid: int | None = None) -> Notifier:
        """The notifier systemd asked for in the environment (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        address: str | None = env.get("NOTIFY_SOCKET") or None
        if address is not None and address[0] not in "/@":
            # systemd 253+ may also hand out vsock: addresses (VMs); we are a host service
            log.warning("NOTIFY_SOCKET=%r: only path and @abstract sockets are supported; "
                        "not notifying", address)
            address = None
        usec = watchdog_usec(env, os.getpid() if pid is None else pid)
        if unset_environment:
            for name in ENV_VARS:
                env.pop(name, None)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the timeout, as sd_watchdog_enabled(3)
        recommends (None: no watchdog)."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    # ------------------------------------------------------------------ the datagram
    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it was delivered."""
        if self.address is None or not assignments:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(SEND_TIMEOUT)
            self._sock.sendto("\n".join(assignments).encode("utf-8", "replace"), target)
        except OSError as exc:
            log.warning("notification to %s failed: %s", self.address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: startup (or a reload) is finished."""
        return self.notify("READY=1", *self._status_assignment(status))

    def reloading(self) -> bool:
        """RELOADING=1 (with the MONOTONIC_USEC= systemd 253+ wants); send ready() when done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: a stop has begun."""
        return self.notify("STOPPING=1", *self._status_assignment(status))

    def status(self, text: str) -> bool:
        """STATUS=text, only when it differs from the last one sent."""
        assignment = self._status_assignment(text)
        return bool(assignment) and self.notify(*assignment)

    def _status_assignment(self, text: str | None) -> list[str]:
        if text is None or self.address is None:
            return []
        text = " ".join(text.splitlines())      # one assignment per line: keep it one line
        if text == self._status:
            return []
        self._status = text
        return [f"STATUS={text}"]

    # ------------------------------------------------------------------ watchdog
    def watchdog(self) -> bool:
        """WATCHDOG=1: we are alive."""
        return self.notify("WATCHDOG=1")

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ping every :attr:`watchdog_interval` from ``loop`` until :meth:`stop_watchdog`
        (nothing without a watchdog)."""
        interval = self.watchdog_interval
        if interval is None or self._ping is not None:
            return

        def tick() -> None:
            self.watchdog()
            self._ping = loop.call_later(interval, tick)
        self._ping = loop.call_later(interval, tick)

    def stop_watchdog(self) -> None:
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None

    def close(self) -> None:
        """Stop pinging and close the socket (a later notification opens a new one)."""
        self.stop_watchdog()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
