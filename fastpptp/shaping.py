"""Per-session rate limits: the value, its text form, and where a session's limit came from.

A rate is written as accel-ppp writes it (chap-secrets' RATE column, ``accel-cmd shaper``):
``1000`` (1000 kbit/s each way) or ``down/up`` (``2000/512``: 2000 kbit/s towards the client,
512 kbit/s from it), kbit/s = 1000 bit/s, ``0`` = unlimited in that direction.  The parser is
strict: digits only (no sign, no unit suffix, no white space), at most one ``/``, each number at
most :data:`MAX_KBIT`.

On the server ``down`` is what the engine sends to the peer (its ``tx_kbit``) and ``up`` what it
receives from the peer (``rx_kbit``): ``engine.set_rate_limit(call_id, tx_kbit=down,
rx_kbit=up)`` (docs/DESIGN.md, "Engine API").

Pure: no I/O, importable from ``ppp/`` (chap-secrets' parser uses it).
"""
from __future__ import annotations

import dataclasses
import enum
import re
from typing import Protocol, runtime_checkable

#: The largest rate accepted, kbit/s (100 Gbit/s): far above what one PPTP session carries,
#: small enough that every engine counter of bits per second stays in 64 bits.
MAX_KBIT = 100_000_000

_RATE = re.compile(r"([0-9]{1,9})(?:/([0-9]{1,9}))?")


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """A session's limit in kbit/s each way; 0 = unlimited in that direction."""

    down_kbit: int      # towards the client (server: engine tx)
    up_kbit: int        # from the client (server: engine rx)

    def __post_init__(self) -> None:
        for name, v in (("down_kbit", self.down_kbit), ("up_kbit", self.up_kbit)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"RateLimit.{name} must be an int, not {type(v).__name__}")
            if not 0 <= v <= MAX_KBIT:
                raise ValueError(f"RateLimit.{name} must be 0..{MAX_KBIT} kbit/s, not {v}")

    @property
    def unlimited(self) -> bool:
        return self.down_kbit == 0 and self.up_kbit == 0

    def __str__(self) -> str:
        """The text :func:`parse_rate` reads back (``down/up``; ``0/0`` = unlimited)."""
        return f"{self.down_kbit}/{self.up_kbit}"

    def to_json(self) -> dict[str, int]:
        return {"down_kbit": self.down_kbit, "up_kbit": self.up_kbit}


UNLIMITED = RateLimit(0, 0)


def parse_rate(text: str) -> RateLimit:
    """``"1000"`` -> RateLimit(1000, 1000); ``"2000/512"`` -> RateLimit(2000, 512).

    Raises ValueError (with the offending text) for anything else: empty, signs, spaces,
    units, a third number, a missing number on either side of ``/``, a rate above MAX_KBIT."""
    if not isinstance(text, str):
        raise TypeError(f"a rate is text, not {type(text).__name__}")
    m = _RATE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad rate {text[:40]!r}: expected kbit/s as N or DOWN/UP (e.g. 1000 or 2000/512)")
    down = int(m.group(1))
    up = int(m.group(2)) if m.group(2) is not None else down
    for v in (down, up):
        if v > MAX_KBIT:
            raise ValueError(f"bad rate {text!r}: {v} kbit/s is above the maximum {MAX_KBIT}")
    return RateLimit(down, up)


class RateSource(enum.Enum):
    """Where a session's current limit came from (shown in ``fastpptp sessions``).  A SIGHUP
    re-reads chap-secrets and re-evaluates AUTH and DEFAULT limits; ADMIN (``fastpptp
    rate-limit``) and RADIUS (Access-Accept, CoA) limits stay until their source changes them."""

    AUTH = "auth"           # the auth backend: chap-secrets' RATE column, the embedding callback
    DEFAULT = "default"     # ServerConfig.default_rate_limit (--default-rate-limit)
    ADMIN = "admin"         # changed live over the control socket (fastpptp rate-limit)
    RADIUS = "radius"       # RADIUS reply attributes / CoA


@runtime_checkable
class RateLimitBackend(Protocol):
    """An auth backend that also knows per-user rate limits: ``rate_limit(user, server_name)``
    -> RateLimit or None (no per-user limit: the server's default applies).  The server asks
    right after the user authenticated, and again for live sessions after a SIGHUP."""

    def rate_limit(self, user: str, server_name: str = "*") -> RateLimit | None: ...
