"""Blocking netlink calls made from inside the event loop.

pyroute2 (0.8 and later) drives its synchronous ``IPRoute`` with asyncio internally: it picks
up the *running* loop of the calling thread and then fails with "This event loop is already
running".  The products call :mod:`fastpptp.net.netlink` from loop callbacks (start-up, NCP up
and down, undo lists), so they import :data:`netlink` from here instead: the same functions,
each run in a short-lived worker thread that the loop thread waits for.  A thread starts in
its creator's network namespace, so the call sees the same interfaces.  Netlink requests take
well under a millisecond; blocking the loop that long is acceptable and keeps call sites
synchronous.  Outside a running loop the call is made directly.
"""
from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any, Callable

from ..net import netlink as _netlink

CALL_TIMEOUT = 10.0   # seconds; a netlink request that takes longer is a kernel/pyroute2 hang


def run_blocking(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``, off the event loop's thread when one is running there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:   # re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netlink-{getattr(fn, '__name__', 'call')}", daemon=True)
    t.start()
    t.join(CALL_TIMEOUT)
    if t.is_alive():
        raise TimeoutError(f"netlink call {getattr(fn, '__name__', fn)} did not finish in {CALL_TIMEOUT} s")
    if "error" in box:
        raise box["error"]
    return box.get("result")


class _OffLoop:
    """Attribute access like the wrapped module; functions come back wrapped."""

    def __init__(self, module) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._module, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            return run_blocking(attr, *args, **kwargs)
        return call


netlink = _OffLoop(_netlink)
