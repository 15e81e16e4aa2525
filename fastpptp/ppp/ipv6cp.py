"""IPV6CP: the IPv6 Control Protocol (RFC 5072).

Options: Interface-Identifier (1, 8 octets) is negotiated -- ours random and non-zero, the
peer's Nak'd with a fresh value if zero or equal to ours (§4.1); IPv6-Compression-Protocol
(2) and anything else is Configure-Rejected.  The link-local addresses are fe80::/64 plus
each interface identifier (§5).
"""
from __future__ import annotations

import dataclasses
import random
import struct
from ipaddress import IPv6Address

from .constants import Protocol
from .fsm import FSM, FsmConfig, OptionVerdict, ack, nak, reject
from .packet import Option

__all__ = ["IPV6CP", "Ipv6cpConfig", "Ipv6cpResult", "OPT_INTERFACE_ID",
           "OPT_IPV6_COMPRESSION", "link_local"]

OPT_INTERFACE_ID = 1
OPT_IPV6_COMPRESSION = 2
_MASK64 = (1 << 64) - 1


def link_local(interface_id: int) -> IPv6Address:
    """fe80::/64 + the 64-bit interface identifier (RFC 5072 §5)."""
    return IPv6Address((0xFE80 << 112) | (interface_id & _MASK64))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ipv6cpConfig(FsmConfig):
    """interface_id: our identifier to request; None = random non-zero (RFC 5072 §4.1)."""

    interface_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Ipv6cpResult:
    """local_id / peer_id: the agreed 64-bit interface identifiers (None if not negotiated);
    local_link_local / peer_link_local: the fe80:: addresses they give."""

    local_id: int | None
    peer_id: int | None

    @property
    def local_link_local(self) -> IPv6Address | None:
        return None if self.local_id is None else link_local(self.local_id)

    @property
    def peer_link_local(self) -> IPv6Address | None:
        return None if self.peer_id is None else link_local(self.peer_id)


def _opt(iid: int) -> Option:
    return Option(OPT_INTERFACE_ID, struct.pack("!Q", iid))


class IPV6CP(FSM):
    protocol = Protocol.IPV6CP
    name = "IPV6CP"
    option_names = {OPT_INTERFACE_ID: "addr", OPT_IPV6_COMPRESSION: "compress"}

    def __init__(self, config: Ipv6cpConfig, rng: random.Random):
        super().__init__(config, rng)
        self.config: Ipv6cpConfig = config
        self._want: int | None = None
        self._acked: int | None = None
        self._peer: int | None = None
        self.reset_negotiation()

    def _random_id(self, avoid: tuple[int | None, ...] = ()) -> int:
        while True:
            iid = self.rng.getrandbits(64)
            if iid and iid not in avoid:
                return iid

    def reset_negotiation(self) -> None:
        cfg = self.config.interface_id
        self._want = cfg if cfg else self._random_id()
        self._acked = None

    def request_options(self) -> list[Option]:
        return [] if self._want is None else [_opt(self._want)]

    def ack_received(self, options: list[Option]) -> None:
        self._acked = self._want if options else None

    def nak_received(self, options: list[Option], now: float) -> bool:
        for o in options:
            if o.type == OPT_INTERFACE_ID and len(o.value) == 8 and self._want is not None:
                suggested = struct.unpack("!Q", o.value)[0]
                # §4.1: use the suggestion if acceptable, else pick another random one.
                self._want = suggested if suggested and suggested != self._peer \
                    else self._random_id((self._want, self._peer))
        return True

    def reject_received(self, options: list[Option], now: float) -> bool:
        if any(o.type == OPT_INTERFACE_ID for o in options):
            self._want = None
        return True

    def check_request(self, options: list[Option], now: float) -> list[OptionVerdict]:
        out: list[OptionVerdict] = []
        seen = False
        for o in options:
            if o.type == OPT_INTERFACE_ID and len(o.value) == 8 and not seen:
                seen = True
                iid = struct.unpack("!Q", o.value)[0]
                if iid == 0 or iid == self._want:
                    # §4.1: zero or a collision with ours -> Nak with a fresh unique value.
                    out.append(nak(o, _opt(self._random_id((self._want, iid)))))
                else:
                    out.append(ack(o))
            else:
                out.append(reject(o))        # IPv6-Compression-Protocol, unknown, malformed
        return out

    def request_acked(self, options: list[Option]) -> None:
        self._peer = next((struct.unpack("!Q", o.value)[0] for o in options
                           if o.type == OPT_INTERFACE_ID), None)

    def result(self) -> Ipv6cpResult:
        return Ipv6cpResult(self._acked, self._peer)
