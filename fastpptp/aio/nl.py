"""Netlink calls from asyncio code.

pyroute2's synchronous IPRoute drives an asyncio loop of its own, which fails with "This
event loop is already running" when it is called from a callback of a running loop.  The
products therefore make every netlink call through one worker thread; each call takes a few
milliseconds, so waiting for it in place keeps the order of operations simple.
"""
from __future__ import annotations

import concurrent.futures

_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastpptp-netlink")
TIMEOUT = 15.0


def nl(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` (a fastpptp.net.netlink function) on the netlink thread."""
    return _POOL.submit(fn, *args, **kwargs).result(TIMEOUT)
