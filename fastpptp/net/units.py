"""Per-session interface units (``--per-session-interfaces``): pppd's ``ppp0``, ``ppp1``, ...

A :class:`UnitTable` hands out the lowest free unit whose name is not taken, opens the device
through a caller-given ``open_device(name)`` and remembers the unit until :meth:`release`.  It
does no I/O itself: the caller passes the names the system already has (a real pppd's
``ppp0`` stays untouched -- TUNSETIFF on an existing persistent TUN would attach to it) and the
opener, which answers None when the name turned out to be busy (created meanwhile), so the
next unit is tried.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeVar

__all__ = ["IFNAMSIZ", "MAX_UNITS", "UnitError", "UnitTable", "unit_pattern"]

MAX_UNITS = 256             # the engine's TUN table size (MAX_TUN)
IFNAMSIZ = 16               # <linux/if.h>, including the terminating NUL

T = TypeVar("T")


class UnitError(OSError):
    """No unit can be given: every unit in use, or the names would not fit IFNAMSIZ."""


def unit_pattern(interface: str, shared_default: str) -> str:
    """``interface`` as a unit pattern: "ppp%d" for the shared interface's default name
    (``shared_default``) or an empty one (pppd's names), "vpn%d" from "vpn" or "vpn0", or an
    explicit pattern containing "%d" as given."""
    if "%d" in interface:
        return interface
    if not interface or interface == shared_default:
        return "ppp%d"
    return (interface.rstrip("0123456789") or "ppp") + "%d"


class UnitTable:
    """Units 0..``size``-1 of one name ``pattern`` (the first "%d" is the unit)."""

    def __init__(self, pattern: str, size: int = MAX_UNITS) -> None:
        if "%d" not in pattern:
            raise ValueError(f"unit pattern {pattern!r} has no %d")
        self.pattern, self.size = pattern, size
        self._in_use: set[int] = set()

    def name(self, unit: int) -> str:
        return self.pattern.replace("%d", str(unit), 1)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    def allocate(self, open_device: Callable[[str], T | None],
                 taken: Collection[str] = ()) -> tuple[int, str, T]:
        """Open the lowest free unit whose name is not in ``taken`` and claim it: returns
        (unit, name, device).  ``open_device(name)`` returns None if the name is busy (the next
        unit is tried); an exception from it propagates with the unit left free.  Raises
        :class:`UnitError` if a name is too long for IFNAMSIZ or no unit is left."""
        for unit in range(self.size):
            if unit in self._in_use:
                continue
            name = self.name(unit)
            if len(name.encode()) >= IFNAMSIZ:
                raise UnitError(f"interface name {name!r} longer than IFNAMSIZ")
            if name in taken:
                continue
            dev = open_device(name)
            if dev is None:
                continue
            self._in_use.add(unit)
            return unit, name, dev
        raise UnitError(f"no free interface unit ({self.size} in use or taken)")

    def release(self, unit: int) -> None:
        """The unit is free again (releasing a free unit is a no-op)."""
        self._in_use.discard(unit)
