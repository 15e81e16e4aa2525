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
import types
from typing import TYPE_CHECKING, Any, Callable, ParamSpec, TypeVar

from ..net import netlink as _netlink

CALL_TIMEOUT = 10.0   # seconds; a netlink request that takes longer is a kernel/pyroute2 hang


P = ParamSpec("P")
T = TypeVar("T")


def run_blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``, off the event loop's thread when one is running there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn(*args, **kwargs))
        except BaseException as exc:   # re-raised in the caller's thread
            error.append(exc)

    t = threading.Thread(target=target, name=f"netlink-{getattr(fn, '__name__', 'call')}", daemon=True)
    t.start()
    t.join(CALL_TIMEOUT)
    if t.is_alive():
        raise TimeoutError(f"netlink call {getattr(fn, '__name__', fn)} did not finish in {CALL_TIMEOUT} s")
    if error:
        raise error[0]
    return result[0]


class _OffLoop:
    """Attribute access like the wrapped module; functions come back wrapped."""

    def __init__(self, module: types.ModuleType) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:   # whatever the module holds under that name
        attr = getattr(self._module, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return run_blocking(attr, *args, **kwargs)
        return call


if TYPE_CHECKING:
    # The wrapper keeps every function's signature (functools.wraps, same arguments, same
    # result): type-check the callers against the real module.
    from ..net import netlink as netlink
else:
    netlink = _OffLoop(_netlink)
