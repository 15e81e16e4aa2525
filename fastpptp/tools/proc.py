"""Stopping a child process we started: by its PID, politely first.

Used by the demo, the benchmarks and the tests, which only ever signal processes they started
themselves (never by name).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int = signal.SIGTERM,
                 grace: float = 5.0, kill_wait: float = 5.0) -> int | None:
    """Send ``sig`` to ``proc``, wait up to ``grace`` s, then SIGKILL and wait ``kill_wait`` s.

    Returns the exit status (None only if even SIGKILL did not reap it in time)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(kill_wait)
    return proc.returncode
