"""IPCP: the IPv4 Control Protocol (RFC 1332) with RFC 1877 name-server options.

Options:

====  =========================  ==================================================
type  option                     what we do
====  =========================  ==================================================
3     IP-Address                 request ours (0.0.0.0 = "please assign"); the peer's:
                                 server Naks anything but the assigned address (as
                                 pppd does: the client asks 0.0.0.0, is Nak'd to the
                                 pool address); client Acks the server's own address
129   Primary-DNS-Address        client: request if `request_dns` (usepeerdns), take
131   Secondary-DNS-Address      the server's Nak; server: Nak with ours, or Reject if
130   Primary-NBNS-Address       we have none
132   Secondary-NBNS-Address
1     IP-Addresses (obsolete)    Configure-Reject
2     IP-Compression-Protocol    Configure-Reject (no Van Jacobson compression)
====  =========================  ==================================================
"""
from __future__ import annotations

import dataclasses
import random
from ipaddress import IPv4Address
from typing import Callable

from .constants import Protocol
from .fsm import FSM, FsmConfig, OptionVerdict, ack, nak, reject
from .packet import Option

__all__ = ["IPCP", "IpcpConfig", "IpcpResult", "OPT_IP_ADDRESSES", "OPT_IP_COMPRESSION",
           "OPT_IP_ADDRESS", "OPT_PRIMARY_DNS", "OPT_PRIMARY_NBNS", "OPT_SECONDARY_DNS",
           "OPT_SECONDARY_NBNS"]

OPT_IP_ADDRESSES = 1
OPT_IP_COMPRESSION = 2
OPT_IP_ADDRESS = 3
OPT_PRIMARY_DNS = 129
OPT_PRIMARY_NBNS = 130
OPT_SECONDARY_DNS = 131
OPT_SECONDARY_NBNS = 132

_ZERO = IPv4Address(0)
_DNS_OPTS = (OPT_PRIMARY_DNS, OPT_SECONDARY_DNS)
_NBNS_OPTS = (OPT_PRIMARY_NBNS, OPT_SECONDARY_NBNS)


def _addr(value: IPv4Address | str | None) -> IPv4Address | None:
    return None if value is None else IPv4Address(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class IpcpConfig(FsmConfig):
    """IPCP settings for one side.

    local_address:  our tunnel address. Server: fixed (e.g. 198.51.100.1), always requested.
                    Client: the address we wish for, or None to request 0.0.0.0 and let the
                    server assign one.
    peer_address:   the address the peer must use. Server: the one assigned to this peer
                    (pool or per-user static); a peer asking 0.0.0.0 or anything else is
                    Nak'd with it, and a peer not asking at all is Nak'd to add it.
                    Client: None (accept the server's own address as it states it).
    assign_peer_address: optional callback(requested) -> address, consulted when
                    `peer_address` is None and the peer asks for `requested` (0.0.0.0
                    included, and 0.0.0.0 when the peer names no address: the answer is
                    Nak'd to it to add); return None to refuse (the option is rejected). It is
                    called for every Configure-Request, so it must be idempotent (return
                    the same lease for the same session).
    accept_local_address: client: take the address the server Naks us with (pppd
                    ipcp-accept-local); False = insist on `local_address`.
    request_dns:    client: ask for Primary/Secondary DNS (pppd usepeerdns).
    request_nbns:   client: ask for Primary/Secondary NBNS (WINS).
    dns, nbns:      server: up to two addresses each to hand out when the peer asks (in
                    order primary, secondary); empty = reject the peer's request.
    """

    local_address: IPv4Address | str | None = None
    peer_address: IPv4Address | str | None = None
    assign_peer_address: Callable[[IPv4Address], IPv4Address | None] | None = None
    accept_local_address: bool = True
    request_dns: bool = False
    request_nbns: bool = False
    dns: tuple[IPv4Address | str, ...] = ()
    nbns: tuple[IPv4Address | str, ...] = ()


@dataclasses.dataclass(frozen=True)
class IpcpResult:
    """What IPCP agreed, carried by ThisLayerUp.

    local:  our tunnel address (acked by the peer).
    remote: the peer's tunnel address (acked by us); None if the peer did not state one.
    dns:    name servers agreed on this link, primary first: for a client those the
            server gave us, for a server those we gave the peer.
    nbns:   the same for NetBIOS name servers (WINS).
    """

    local: IPv4Address | None
    remote: IPv4Address | None
    dns: tuple[IPv4Address, ...] = ()
    nbns: tuple[IPv4Address, ...] = ()


def _opt(t: int, a: IPv4Address) -> Option:
    return Option(t, a.packed)


class IPCP(FSM):
    protocol = Protocol.IPCP
    name = "IPCP"
    option_names = {
        OPT_IP_ADDRESSES: "addrs", OPT_IP_COMPRESSION: "compress", OPT_IP_ADDRESS: "addr",
        OPT_PRIMARY_DNS: "ms-dns1", OPT_PRIMARY_NBNS: "ms-wins1", OPT_SECONDARY_DNS: "ms-dns3",
        OPT_SECONDARY_NBNS: "ms-wins3",
    }

    def __init__(self, config: IpcpConfig, rng: random.Random):
        super().__init__(config, rng)
        self.config: IpcpConfig = config
        self._dns = tuple(IPv4Address(a) for a in config.dns[:2])
        self._nbns = tuple(IPv4Address(a) for a in config.nbns[:2])
        self._peer_agreed: dict[int, IPv4Address] = {}
        self._our_acked: dict[int, IPv4Address] = {}
        self.reset_negotiation()

    # ---- our request --------------------------------------------------------------------

    def reset_negotiation(self) -> None:
        cfg = self.config
        self._want: dict[int, IPv4Address] = {
            OPT_IP_ADDRESS: _addr(cfg.local_address) or _ZERO}
        if cfg.request_dns:
            self._want[OPT_PRIMARY_DNS] = _ZERO
            self._want[OPT_SECONDARY_DNS] = _ZERO
        if cfg.request_nbns:
            self._want[OPT_PRIMARY_NBNS] = _ZERO
            self._want[OPT_SECONDARY_NBNS] = _ZERO
        self._our_acked = {}

    def request_options(self) -> list[Option]:
        return [_opt(t, a) for t, a in self._want.items()]

    def ack_received(self, options: list[Option]) -> None:
        self._our_acked = {o.type: IPv4Address(o.value) for o in options if len(o.value) == 4}

    def nak_received(self, options: list[Option], now: float) -> bool:
        for o in options:
            if len(o.value) != 4 or o.type not in self._want:
                continue                     # hints for options we did not ask for
            suggested = IPv4Address(o.value)
            if o.type == OPT_IP_ADDRESS:
                if suggested != _ZERO and (self.config.accept_local_address
                                           or self.config.local_address is None):
                    self._want[OPT_IP_ADDRESS] = suggested
            else:
                self._want[o.type] = suggested
        return True

    def reject_received(self, options: list[Option], now: float) -> bool:
        for o in options:
            self._want.pop(o.type, None)
            if o.type == OPT_IP_ADDRESS and self.config.local_address is None:
                self.defer_close("peer rejected IP-Address and we have no address")
        return True

    # ---- the peer's request -------------------------------------------------------------

    def _assigned_peer(self, requested: IPv4Address) -> IPv4Address | None:
        cfg = self.config
        if cfg.peer_address is not None:
            return IPv4Address(cfg.peer_address)
        if cfg.assign_peer_address is not None:
            return cfg.assign_peer_address(requested)
        # Client side: accept any real address the server states for itself.
        return requested if requested != _ZERO else None

    def check_request(self, options: list[Option], now: float) -> list[OptionVerdict]:
        out: list[OptionVerdict] = []
        seen: set[int] = set()
        for o in options:
            if o.type in seen or o.type in (OPT_IP_ADDRESSES, OPT_IP_COMPRESSION) \
                    or len(o.value) != 4:
                out.append(reject(o))
                continue
            seen.add(o.type)
            asked = IPv4Address(o.value)
            if o.type == OPT_IP_ADDRESS:
                assigned = self._assigned_peer(asked)
                local = self._want.get(OPT_IP_ADDRESS)
                if assigned is None or assigned == _ZERO:
                    out.append(reject(o))
                elif asked == assigned and asked != local:
                    out.append(ack(o))
                else:
                    out.append(nak(o, _opt(OPT_IP_ADDRESS, assigned)))
            elif o.type in _DNS_OPTS or o.type in _NBNS_OPTS:
                ours = self._dns if o.type in _DNS_OPTS else self._nbns
                idx = 0 if o.type in (OPT_PRIMARY_DNS, OPT_PRIMARY_NBNS) else 1
                if idx >= len(ours):
                    out.append(reject(o))
                elif asked == ours[idx]:
                    out.append(ack(o))
                else:
                    out.append(nak(o, _opt(o.type, ours[idx])))
            else:
                out.append(reject(o))
        if OPT_IP_ADDRESS not in seen:
            # RFC 1661 §5.3: Nak may list an option the peer did not include, to ask for it
            # (a server that lets the peer choose asks its callback, as for 0.0.0.0).
            cfg = self.config
            wanted = (IPv4Address(cfg.peer_address) if cfg.peer_address is not None
                      else cfg.assign_peer_address(_ZERO) if cfg.assign_peer_address is not None
                      else None)
            if wanted is not None and wanted != _ZERO:
                out.append(nak(None, _opt(OPT_IP_ADDRESS, wanted)))
        return out

    def request_acked(self, options: list[Option]) -> None:
        self._peer_agreed = {o.type: IPv4Address(o.value) for o in options}

    def up_failure(self) -> str | None:
        local = self._our_acked.get(OPT_IP_ADDRESS)
        if local is None or local == _ZERO:
            return "could not determine local IP address"     # as pppd says
        return None

    def result(self) -> IpcpResult:
        ours, theirs = self._our_acked, self._peer_agreed

        def servers(types: tuple[int, int]) -> tuple[IPv4Address, ...]:
            # Ours if we asked for them (client), else what we gave the peer (server).
            src = ours if any(t in ours for t in types) else theirs
            return tuple(src[t] for t in types if t in src and src[t] != _ZERO)

        dns, nbns = servers(_DNS_OPTS), servers(_NBNS_OPTS)
        return IpcpResult(local=ours.get(OPT_IP_ADDRESS), remote=theirs.get(OPT_IP_ADDRESS),
                          dns=dns, nbns=nbns)
