"""The RADIUS attributes that name a session's rate limit, read once for authentication
(Access-Accept, :mod:`fastpptp.radius.verifier`) and Dynamic Authorization (CoA,
:mod:`fastpptp.radius.dae`).  Pure: text or attributes in, :class:`~fastpptp.shaping.RateLimit`
out.

The attributes, in precedence order (the first kind present decides):
  1. ``Mikrotik-Rate-Limit`` (vendor 14988, type 8): :func:`parse_mikrotik_rate_limit`.
  2. ``Cisco-AVPair`` (vendor 9, type 1) ``rate-limit`` pairs: :func:`parse_cisco_rate_limit`.
  3. ``Filter-Id`` as accel-ppp's shaper reads it (its default ``attr=Filter-Id``):
     :func:`parse_filter_id_rate`.  A Filter-Id is also what names a firewall filter, so a
     Filter-Id that is not shaped like a rate is not a rate (None), never an error.

Strict: a Mikrotik or Cisco rate attribute, or a Filter-Id shaped like a rate, whose value does
not parse or is above :data:`~fastpptp.shaping.MAX_KBIT` raises ValueError.  The caller decides
what that means: a CoA-Request is NAKed (407 Invalid-Attribute-Value), an Access-Accept's bad
rate is ignored (no limit) and counted.  A non-zero rate never rounds down to 0 (= unlimited):
bit/s are rounded *up* to kbit/s (1500 bit/s -> 2 kbit/s).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable

from fastpptp.radius.dictionary import VENDOR_CISCO, VENDOR_MIKROTIK, Attr, CiscoAttr, MikrotikAttr
from fastpptp.radius.packet import Attribute, text_value
from fastpptp.shaping import MAX_KBIT, RateLimit

__all__ = [
    "parse_mikrotik_rate_limit", "parse_cisco_rate_limit", "parse_filter_id_rate",
    "is_rate_avpair", "rate_limit_from_attributes",
]

_UNIT = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_BITS = re.compile(r"([0-9]{1,12})([kKmMgG]?)")


def _bits_to_kbit(text: str, what: str) -> int:
    """``N[k|M|G]`` bit/s (1000-based) -> kbit/s, rounded up."""
    m = _BITS.fullmatch(text)
    if m is None:
        raise ValueError(f"bad {what} rate {text[:40]!r}")
    kbit = math.ceil(int(m.group(1)) * _UNIT[m.group(2).lower()] / 1000)
    if kbit > MAX_KBIT:
        raise ValueError(f"{what} rate {text!r} is above {MAX_KBIT} kbit/s")
    return kbit


def parse_mikrotik_rate_limit(text: str) -> RateLimit:
    """``Mikrotik-Rate-Limit``: ``rx-rate[/tx-rate] [rx-burst-rate[/tx-burst-rate] ...]`` in
    bit/s with an optional ``k``/``M``/``G`` suffix (1000-based, integers); only the first field
    counts (bursts are the engine's own).  The rates are RouterOS's, seen from the NAS: rx is
    what it receives from the client (our ``up``), tx what it sends to the client (``down``);
    a lone rate is both.  ``0`` = unlimited.  ValueError for anything else (empty, ``fast``,
    ``1.5M``, ``1M/``, a third rate, above MAX_KBIT)."""
    fields = text.split()
    if not fields:
        raise ValueError("empty Mikrotik-Rate-Limit")
    rx, sep, tx = fields[0].partition("/")
    up = _bits_to_kbit(rx, "Mikrotik-Rate-Limit")
    down = _bits_to_kbit(tx, "Mikrotik-Rate-Limit") if sep else up
    return RateLimit(down_kbit=down, up_kbit=up)


# an AV-pair's ``name=`` (``lcp:interface-config#1=``); accel-ppp finds "rate-limit" anywhere
_AVPAIR_NAME = re.compile(r"[^\s=]+=")


def _rate_limit_words(pair: str) -> list[str] | None:
    """The words of a ``[name=]rate-limit ...`` AV-pair, or None for any other pair."""
    m = _AVPAIR_NAME.match(pair)
    words = (pair[m.end():] if m is not None else pair).split()
    return words if words and words[0].lower() == "rate-limit" else None


def is_rate_avpair(pair: str) -> bool:
    """Whether a Cisco-AVPair's value is a ``rate-limit`` pair (parsed or not)."""
    return _rate_limit_words(pair) is not None


def parse_cisco_rate_limit(avpairs: Iterable[str]) -> RateLimit | None:
    """The ``rate-limit`` Cisco-AVPairs, as Cisco IOS and accel-ppp read them:
    ``lcp:interface-config#1=rate-limit output [access-group [rate-limit] ACL] BPS NORMAL MAX
    conform-action ...``.  ``output`` is towards the client (``down``), ``input`` from it
    (``up``); BPS in bit/s; a direction not given is unlimited; an ``access-group`` is skipped
    (accel-ppp applies the rate to the session, so do we).  Any ``name=`` before ``rate-limit``
    is accepted.  None when no pair is a rate-limit; ValueError for a rate-limit pair that
    does not parse (no or unknown direction, no or a bad BPS)."""
    down = up = None
    for pair in avpairs:
        words = _rate_limit_words(pair)
        if words is None:
            continue
        direction = words[1].lower() if len(words) > 1 else ""
        if direction not in ("input", "output"):
            raise ValueError(f"bad Cisco-AVPair rate-limit {pair[:60]!r}: input or output?")
        rest = words[2:]
        if rest and rest[0].lower() == "access-group":
            rest = rest[1:]
            if rest and rest[0].lower() == "rate-limit":
                rest = rest[1:]
            rest = rest[1:]                     # the ACL
        if not rest:
            raise ValueError(f"bad Cisco-AVPair rate-limit {pair[:60]!r}: no rate")
        kbit = _bits_to_kbit(rest[0], "Cisco-AVPair rate-limit")
        if direction == "output":
            down = kbit
        else:
            up = kbit
    if down is None and up is None:
        return None
    return RateLimit(down_kbit=down or 0, up_kbit=up or 0)


# accel-ppp's shaper: N[k|m] kbit/s ('k' = kbit/s, 'M' = Mbit/s), '/', '\' or ':' between
_FILTER_ID = re.compile(r"\s*([0-9]{1,12})\s*([kKmM]?)\s*(?:[/\\:]\s*([0-9]{1,12})\s*([kKmM]?))?\s*")
_FILTER_UNIT = {"": 1, "k": 1, "m": 1000}


def parse_filter_id_rate(text: str) -> RateLimit | None:
    """``Filter-Id`` as accel-ppp's shaper reads it: ``down/up`` (or one rate both ways) in
    kbit/s, an optional ``k`` (kbit/s) or ``M`` (Mbit/s) suffix, ``/``, ``\\`` or ``:``
    between, blanks around (``1000``, ``2000/512``, ``10M\\2M``, ``1000:500``).  ``0`` =
    unlimited.  None for a Filter-Id that is not shaped like a rate (a firewall filter's
    name, empty); ValueError for one that is but is above MAX_KBIT."""
    m = _FILTER_ID.fullmatch(text)
    if m is None:
        return None
    down = int(m.group(1)) * _FILTER_UNIT[m.group(2).lower()]
    up = int(m.group(3)) * _FILTER_UNIT[m.group(4).lower()] if m.group(3) is not None else down
    for v in (down, up):
        if v > MAX_KBIT:
            raise ValueError(f"Filter-Id rate {text[:40]!r}: {v} kbit/s is above {MAX_KBIT}")
    return RateLimit(down_kbit=down, up_kbit=up)


def rate_limit_from_attributes(attributes: Iterable[Attribute]) -> RateLimit | None:
    """A session's rate limit from Access-Accept or CoA-Request attributes: the first
    Mikrotik-Rate-Limit, else the Cisco-AVPair ``rate-limit`` pairs, else the first Filter-Id
    that is a rate (module docstring).  None when none names a rate; ValueError when the
    deciding attribute's value does not parse."""
    attrs = list(attributes)
    for a in attrs:
        if a.vendor == VENDOR_MIKROTIK and a.type == MikrotikAttr.MIKROTIK_RATE_LIMIT:
            return parse_mikrotik_rate_limit(text_value(a.value))
    cisco = parse_cisco_rate_limit(text_value(a.value) for a in attrs
                                   if a.vendor == VENDOR_CISCO and a.type == CiscoAttr.CISCO_AVPAIR)
    if cisco is not None:
        return cisco
    for a in attrs:
        if a.vendor == 0 and a.type == Attr.FILTER_ID:
            rate = parse_filter_id_rate(text_value(a.value))
            if rate is not None:
                return rate
    return None
