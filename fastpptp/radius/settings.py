"""What a server's RADIUS use is configured with: one frozen value the products and the RADIUS
parts (authentication, accounting, Dynamic Authorization) share.

It comes from fastpptp's own flags or the embedding API, or from a pppd options file naming
``plugin radius.so`` with a radiusclient.conf (``radius-config-file``); either way the result is
a :class:`RadiusSettings`.  Nothing here opens a socket.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from .client import ClientPolicy, RadiusServer

#: how logins are checked when RADIUS is configured: "radius" only (pppd radius.so's default),
#: or RADIUS first and chap-secrets when no RADIUS server answers ("radius,local"), or
#: chap-secrets first and RADIUS for users it does not know ("local,radius")
AuthOrder = Literal["radius", "radius,local", "local,radius"]

DAE_PORT = 3799          # RFC 5176 §3.2 (Disconnect/CoA on the NAS)


@dataclass(frozen=True)
class DaeSettings:
    """The Dynamic Authorization listener (RFC 5176): where it listens, the shared secret, and
    which clients may send requests (accel-ppp's ``dae-server`` plus ``--dae-allowed``;
    empty: the addresses of the configured RADIUS servers).

    ``require_message_authenticator``: drop requests without one (BlastRADIUS hardening; off
    by default: a Disconnect/CoA request is already signed as a whole by its Request
    Authenticator, and radclient adds none unless asked); ``require_event_timestamp``: drop
    requests without Event-Timestamp; ``event_timestamp_window``: seconds an Event-Timestamp
    may be off our clock (RFC 5176 §4.2; 300, as FreeRADIUS)."""

    listen: tuple[str, int]
    secret: bytes = field(repr=False)
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    require_message_authenticator: bool = False
    require_event_timestamp: bool = False
    event_timestamp_window: int = 300


@dataclass(frozen=True)
class RadiusSettings:
    """Servers, client policy and the NAS's own attributes.

    ``auth_servers``/``acct_servers``: tried in order, with failover (``policy``); either
    may be empty (no RADIUS authentication: :attr:`authenticates` is False -- e.g. only a
    ``dae`` listener, as accel-ppp allows), but not all three of them and ``dae``;
    ``nas_identifier``/``nas_ip_address``: sent in every request (RFC 2865 §5.4, §5.32: at
    least one of the two); ``bind_address``: the local address of the RADIUS socket;
    ``acct_interim_interval``: seconds between Interim-Updates when the Access-Accept names
    none (0: none); ``avpairs``: extra attributes for every Access-Request (pppd's ``avpair``);
    ``radattr_dir``: where radattr.so-style ``radattr.<ifname>`` files go (None: not written).
    """

    auth_servers: tuple[RadiusServer, ...]
    acct_servers: tuple[RadiusServer, ...] = ()
    policy: ClientPolicy = ClientPolicy()
    nas_identifier: str | None = None
    nas_ip_address: str | None = None
    bind_address: str | None = None
    acct_interim_interval: int = 0
    auth_order: AuthOrder = "radius"
    avpairs: tuple[tuple[str, str], ...] = ()
    dae: DaeSettings | None = None
    radattr_dir: str | None = None
    # the least Interim-Update interval, seconds (RFC 2869 §5.16, pppd's radius plugin: 60;
    # lower only for tests)
    acct_interim_floor: int = 60

    def __post_init__(self) -> None:
        if not self.auth_servers and not self.acct_servers and self.dae is None:
            raise ValueError("RADIUS needs an authentication or accounting server, or a DAE listener")
        if self.acct_interim_interval < 0:
            raise ValueError("acct_interim_interval must be >= 0")
        if self.acct_interim_floor < 1:
            raise ValueError("acct_interim_floor must be >= 1")

    @property
    def authenticates(self) -> bool:
        """Logins are checked through RADIUS (there is an authentication server)."""
        return bool(self.auth_servers)
