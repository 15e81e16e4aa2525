"""An engine class that records ``set_rate_limit`` calls around either real twin.

The server loads its engine with ``fastpptp.dataplane.load_engine``; a test patches that to
:func:`recording_loader` and reads :data:`RATE_CALLS` afterwards.  The calls are forwarded to
the real engine when it has the method (the shaper's token buckets), so the same test checks
the wiring before and after the engine grows it."""
from __future__ import annotations

from typing import Any, Callable


class RecordingEngines:
    """``load_engine`` replacement: every engine made through it shares ``calls``, a list of
    ``(call_id, tx_kbit, rx_kbit)`` in the order the server made them."""

    def __init__(self, real_loader: Callable[[str], Any]):
        self._real_loader = real_loader
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, impl: str = "compiled") -> Any:
        real_cls = self._real_loader(impl)
        calls = self.calls

        class Engine:
            supports_vnet_hdr = real_cls.supports_vnet_hdr

            def __init__(self, config: Any = None):
                self._real = real_cls(config)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._real, name)

            def set_rate_limit(self, call_id: int, tx_kbit: int, rx_kbit: int, burst_bytes: int = 0) -> None:
                calls.append((call_id, tx_kbit, rx_kbit))
                real = getattr(self._real, "set_rate_limit", None)
                if real is not None:
                    real(call_id, tx_kbit, rx_kbit, burst_bytes)

        return Engine

    def of(self, call_id: int) -> list[tuple[int, int]]:
        """The (tx_kbit, rx_kbit) pairs set on one call, in order."""
        return [(tx, rx) for cid, tx, rx in self.calls if cid == call_id]
