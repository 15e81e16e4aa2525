"""The server's kernel route changes run on one worker thread off the event loop, in the
order they were made (issue 10: ~4 ms per route add blocked the loop in a connect storm)."""
from __future__ import annotations

import asyncio
import threading
import time

from fastpptp.server import Server, ServerConfig


def test_netlink_changes_run_off_the_loop_in_order():
    async def main():
        server = Server(ServerConfig(control_socket=None), configure_network=False)
        loop_thread = threading.get_ident()
        done: list[tuple[str, int]] = []

        def change(name: str, delay: float):
            def run():
                time.sleep(delay)
                done.append((name, threading.get_ident()))
            return run

        t0 = time.monotonic()
        add = server._netlink_call(change("add", 0.2))
        delete = server._netlink_call(change("delete", 0.0))
        queued_in = time.monotonic() - t0
        ticks = 0
        while not add.done():                  # the loop keeps running meanwhile
            ticks += 1
            await asyncio.sleep(0.01)
        await delete
        assert server._netlink_worker is not None
        server._netlink_worker.shutdown()
        return queued_in, ticks, done, loop_thread

    queued_in, ticks, done, loop_thread = asyncio.run(main())
    assert queued_in < 0.05 and ticks >= 5
    assert [name for name, _ in done] == ["add", "delete"]
    assert all(tid != loop_thread for _, tid in done)
