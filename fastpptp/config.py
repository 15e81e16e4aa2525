"""Configuration: pptpd.conf, pppd options files, and the typed settings the products run on.

fastpptp-server is a drop-in for pptpd, so it reads pptpd's own ``pptpd.conf`` and the pppd
options file it names (``option /etc/ppp/pptpd-options``); fastpptp-client reads pppd options
(``file FILE``) the way ``pppd call``/``pptp`` users write them.  Both files are parsed here into
frozen dataclasses; nothing here opens sockets.

Unknown or unimplemented pppd options are collected by name (``PppOptions.ignored``) so the
caller can warn about each once — never silently ignored.  A malformed line raises
:class:`ConfigError` carrying file, line and reason.

The pppd options are translated into the PPP link's own typed configuration here, and only
here: :func:`server_link_config` / :func:`client_link_config` give a
:class:`fastpptp.ppp.link.LinkConfig`, so the sans-I/O link never sees pppd option names.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .ppp.auth.base import AuthTimers
from .ppp.auth.policy import AuthPolicy
from .ppp.fsm import FsmConfig
from .ppp.ipcp import IpcpConfig
from .ppp.ipv6cp import Ipv6cpConfig
from .ppp.lcp import LcpConfig
from .ppp.link import LinkConfig


class ConfigError(ValueError):
    """A configuration file is wrong: says where and why."""

    def __init__(self, path: str, line: int, reason: str):
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path}:{line}: {reason}")


# pppd authentication / MPPE switches (pppd(8), pppd/chap_ms.c, pppd/ccp.c).  They are
# forwarded by name to fastpptp.ppp.auth.policy, which owns their semantics.
AUTH_FLAGS = frozenset({
    "auth", "noauth",
    "require-pap", "require-chap", "require-mschap", "require-mschap-v2", "require-eap",
    "refuse-pap", "refuse-chap", "refuse-mschap", "refuse-mschap-v2", "refuse-eap",
    "require-mppe", "require-mppe-40", "require-mppe-56", "require-mppe-128",
    "nomppe", "nomppe-40", "nomppe-56", "nomppe-128", "mppe-stateful", "nomppe-stateful",
    "prefer-mppe-stateful",      # fastpptp's own: request stateful MPPE (see policy.py)
    "+pap", "-pap", "+chap", "-chap", "+mschap", "-mschap", "+mschap-v2", "-mschap-v2",
})

# Options that are harmless on a PPTP link or already how we behave: accepted silently.
# (pppd's defaults for synchronous PPTP links make these no-ops.)
NOOP_FLAGS = frozenset({
    "lock", "nolock", "nobsdcomp", "nodeflate", "novj", "novjccomp", "nologfd", "noipdefault",
    "nodetach", "updetach", "noproxyarp", "nodefaultroute", "noipx", "passive", "silent",
    "local", "modem", "crtscts", "nocrtscts", "default-asyncmap", "hide-password",
    "show-password", "nomultilink", "nomp", "nopredictor1",
})

# Options taking one argument, with the attribute they set (None: accepted, unimplemented).
ARG_OPTIONS = {
    "name": "name", "remotename": "remotename", "user": "user", "password": "password",
    "mtu": "mtu", "mru": "mru", "lcp-echo-interval": "lcp_echo_interval",
    "lcp-echo-failure": "lcp_echo_failure", "logfile": "logfile", "ipparam": "ipparam",
    "maxfail": "maxfail", "holdoff": "holdoff", "idle": "idle",
    "ms-dns": "ms_dns", "ms-wins": "ms_wins", "file": None, "connect-delay": "connect_delay",
    "lcp-restart": "lcp_restart", "lcp-max-configure": "lcp_max_configure",
    "lcp-max-failure": "lcp_max_failure", "lcp-max-terminate": "lcp_max_terminate",
    "ipcp-restart": "ipcp_restart", "ipcp-max-configure": "ipcp_max_configure",
    "chap-restart": "chap_restart", "chap-max-challenge": "chap_max_challenge",
    "chap-interval": None, "pap-restart": "pap_restart", "pap-max-authreq": "pap_max_authreq",
    "linkname": "linkname", "unit": "unit", "asyncmap": None, "plugin": "plugins", "pty": None,
    "radius-config-file": "radius_config_file", "avpair": "avpairs",
    "bsdcomp": None, "deflate": None, "vj-max-slots": None, "mppc": None,
}
INT_OPTIONS = {
    "mtu", "mru", "lcp_echo_interval", "lcp_echo_failure", "maxfail", "holdoff", "idle",
    "lcp_restart", "lcp_max_configure", "lcp_max_failure", "lcp_max_terminate", "ipcp_restart",
    "ipcp_max_configure", "chap_restart", "chap_max_challenge", "pap_restart", "pap_max_authreq",
    "unit", "connect_delay",
}
BOOL_FLAGS = {
    "debug": ("debug", True), "defaultroute": ("defaultroute", True),
    "replacedefaultroute": ("replacedefaultroute", True), "usepeerdns": ("usepeerdns", True),
    "persist": ("persist", True), "nopersist": ("persist", False), "+ipv6": ("ipv6", True),
    "ipv6": ("ipv6", True), "noipv6": ("ipv6", False), "-ipv6": ("ipv6", False),
    "kdebug": ("debug", True),
    # server: take the peer's own IPCP address when RADIUS says Framed-IP-Address
    # 255.255.255.255 ("the user may choose"), as pppd + radius.so do with it
    "ipcp-accept-remote": ("ipcp_accept_remote", True),
}
# pppd options that change behaviour we do not implement: warned about by name.
UNSUPPORTED = frozenset({
    "callback", "mrru", "mp", "multilink",
    "endpoint", "proxyarp", "require-eap", "eap-restart", "demand", "active-filter", "pass-filter",
    "ipx", "ktune", "noaccomp", "nopcomp", "noccp", "ipcp-accept-local",
    "receive-all", "sync", "lcp-echo-adaptive", "map-to-ttyname", "map-to-ifname",
})
# pppd plugins fastpptp does itself (by file name; any directory): pppd's RADIUS client and
# radattr (fastpptp/radius/).  Any other plugin is warned about by name.
KNOWN_PLUGINS = frozenset({"radius.so", "radattr.so"})


@dataclass(frozen=True)
class PppOptions:
    """The pppd options fastpptp understands (field names follow pppd's option names)."""

    name: str | None = None
    remotename: str | None = None
    user: str | None = None
    password: str | None = None
    auth_flags: tuple[str, ...] = ()
    ms_dns: tuple[str, ...] = ()
    ms_wins: tuple[str, ...] = ()
    mtu: int | None = None
    mru: int | None = None
    lcp_echo_interval: int | None = None
    lcp_echo_failure: int | None = None
    lcp_restart: int | None = None
    lcp_max_configure: int | None = None
    lcp_max_failure: int | None = None
    lcp_max_terminate: int | None = None
    ipcp_restart: int | None = None
    ipcp_max_configure: int | None = None
    chap_restart: int | None = None
    chap_max_challenge: int | None = None
    pap_restart: int | None = None
    pap_max_authreq: int | None = None
    debug: bool = False
    logfile: str | None = None
    defaultroute: bool = False
    replacedefaultroute: bool = False
    usepeerdns: bool = False
    persist: bool = False
    maxfail: int | None = None
    holdoff: int | None = None
    idle: int | None = None
    connect_delay: int | None = None
    ipparam: str | None = None
    linkname: str | None = None
    unit: int | None = None
    ipv6: bool = False
    ipcp_accept_remote: bool = False     # server: see LinkConfig.peer_may_choose_address
    local_ip: str | None = None          # "a.b.c.d" from pppd's "a.b.c.d:" form
    remote_ip: str | None = None         # "w.x.y.z" from pppd's ":w.x.y.z" form
    plugins: tuple[str, ...] = ()        # the plugins fastpptp implements (KNOWN_PLUGINS), by file name
    radius_config_file: str | None = None   # radius.so: the radiusclient.conf to read
    avpairs: tuple[str, ...] = ()        # radius.so: "ATTR=VALUE" for every Access-Request
    ignored: tuple[str, ...] = ()        # recognised but not implemented: warn once each
    unknown: tuple[str, ...] = ()        # not pppd options we know: warn once each


# --------------------------------------------------------------------------- pppd -> the PPP link

_N = TypeVar("_N", int, float)


def server_link_config(ppp: PppOptions, *, local_ip: str | ipaddress.IPv4Address,
                       assign_address: Callable[[str], ipaddress.IPv4Address | str | None] | None = None,
                       release_address: Callable[[str], None] | None = None,
                       claim_address: Callable[[str, ipaddress.IPv4Address], str | None] | None = None,
                       peer_address_allowed: Callable[[str, ipaddress.IPv4Address], bool] | None = None,
                       ) -> LinkConfig:
    """The server's PPP link configuration from its pppd options.

    ``auth`` is implied unless ``noauth`` or a ``require-*``/``+pap``-style option says
    otherwise (a PPTP server that lets anyone in is a mistake).  ``local_ip`` is our tunnel
    address; pppd's ``:remote`` half, if given, is the peer's fixed address.
    ``assign_address(user)`` gives the peer its address (pool, static); whatever it handed
    out is given back through ``release_address(addr)`` when the link dies;
    ``claim_address(user, addr)`` reserves an address the peer or the verifier chose and
    ``peer_address_allowed(user, addr)`` says whether the user may choose it (see
    ``LinkConfig``).  pppd's ``ipcp-accept-remote`` lets the peer choose
    when RADIUS says Framed-IP-Address 255.255.255.255 (off by default, as in pppd: the
    peer then gets a pool address).  ``name`` defaults to "pptpd", the name pptpd's
    chap-secrets use for the server column."""
    flags = ppp.auth_flags
    if not any(f in ("auth", "noauth") or f.startswith(("require-", "+")) and "mppe" not in f
               for f in flags):
        flags = ("auth",) + flags
    return LinkConfig(
        lcp=_lcp_config(ppp),
        ipcp=_ipcp_config(ppp, local_address=ipaddress.IPv4Address(local_ip),
                          peer_address=_address(ppp.remote_ip)),
        ipv6cp=Ipv6cpConfig() if ppp.ipv6 else None,
        policy=AuthPolicy.from_options(flags),
        name=ppp.name or "pptpd",
        remotename=ppp.remotename or "",
        assign_address=assign_address, release_address=release_address,
        claim_address=claim_address, peer_address_allowed=peer_address_allowed,
        peer_may_choose_address=ppp.ipcp_accept_remote,
        dns=tuple(ipaddress.IPv4Address(a) for a in ppp.ms_dns),
        nbns=tuple(ipaddress.IPv4Address(a) for a in ppp.ms_wins),
        auth_timers=_auth_timers(ppp))


def client_link_config(ppp: PppOptions, *, user: str | None = None,
                       password: str | None = None) -> LinkConfig:
    """The client's PPP link configuration from its pppd options; ``user``/``password``
    (the command line's) take precedence over the options' ``user``/``password``."""
    return LinkConfig(
        lcp=_lcp_config(ppp),
        ipcp=_ipcp_config(ppp, local_address=_address(ppp.local_ip),
                          request_dns=ppp.usepeerdns),
        ipv6cp=Ipv6cpConfig() if ppp.ipv6 else None,
        policy=AuthPolicy.from_options(ppp.auth_flags),
        name=ppp.name or "",
        remotename=ppp.remotename or "",
        user=user or ppp.user or "",
        password=password or ppp.password or "",
        auth_timers=_auth_timers(ppp))


def _address(text: str | None) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(text) if text else None


def _lcp_config(ppp: PppOptions) -> LcpConfig:
    """pppd lcp-restart / lcp-max-* / mru / lcp-echo-*; unset options keep LcpConfig's
    defaults (which are pppd's, except the MRU: 1400 suits PPTP over a 1500 path)."""
    base = LcpConfig()
    return LcpConfig(
        restart_timer=_or(ppp.lcp_restart, base.restart_timer),
        max_configure=_or(ppp.lcp_max_configure, base.max_configure),
        max_failure=_or(ppp.lcp_max_failure, base.max_failure),
        max_terminate=_or(ppp.lcp_max_terminate, base.max_terminate),
        mru=ppp.mru or base.mru,
        echo_interval=_or(ppp.lcp_echo_interval, base.echo_interval),
        echo_failure=_or(ppp.lcp_echo_failure, base.echo_failure))


def _ipcp_config(ppp: PppOptions, *, local_address: ipaddress.IPv4Address | None,
                 peer_address: ipaddress.IPv4Address | None = None,
                 request_dns: bool = False) -> IpcpConfig:
    """IPCP with pppd ipcp-restart / ipcp-max-configure (pppd's only IPCP timer knobs)."""
    base = FsmConfig()
    return IpcpConfig(restart_timer=_or(ppp.ipcp_restart, base.restart_timer),
                      max_configure=_or(ppp.ipcp_max_configure, base.max_configure),
                      local_address=local_address, peer_address=peer_address,
                      request_dns=request_dns)


def _auth_timers(ppp: PppOptions) -> AuthTimers:
    """chap-restart / chap-max-challenge, else pap-restart / pap-max-authreq (one machine
    runs per direction, and pppd's defaults for both are the same)."""
    base = AuthTimers()
    restart = ppp.chap_restart or ppp.pap_restart
    tries = ppp.chap_max_challenge or ppp.pap_max_authreq
    return AuthTimers(restart=float(restart) if restart else base.restart,
                      max_transmits=tries or base.max_transmits, wait=base.wait)


def _or(value: int | None, default: _N) -> _N | int:
    """An option's value when it was given (0 included), else the default."""
    return default if value is None else value


# --------------------------------------------------------------------------- parsing

def _tokens(text: str, path: str) -> Iterator[tuple[int, str]]:
    """pppd's option-file lexer: words, '#' comments, "quoted strings" and \\ escapes."""
    for lineno, raw in enumerate(text.splitlines(), 1):
        lex = shlex.shlex(raw, posix=True)
        lex.whitespace_split = True
        lex.commenters = "#"
        lex.escapedquotes = '"'
        try:
            for tok in lex:
                yield lineno, tok
        except ValueError as exc:  # unbalanced quote
            raise ConfigError(path, lineno, f"cannot parse: {exc}") from None


def parse_ppp_options(text: str, path: str = "<options>", *, base: PppOptions | None = None,
                      read_file: Callable[[str], str] | None = None,
                      _depth: int = 0) -> PppOptions:
    """Parse a pppd options file (or ``pppd`` argv joined as text) into :class:`PppOptions`.

    ``read_file(path) -> str`` is used for ``file FILE`` includes (pppd allows nesting; we
    bound it at 8 levels)."""
    # PppOptions' fields by name, as the option tables above name them (lists while
    # collecting); Any because the field types differ per name.  PppOptions(**...) at the
    # end is where the names are checked.
    values: dict[str, Any] = dataclasses.asdict(base or PppOptions())
    for key in _LIST_FIELDS:
        values[key] = list(values[key])
    toks = list(_tokens(text, path))
    i = 0
    while i < len(toks):
        lineno, opt = toks[i]
        i += 1
        if opt in AUTH_FLAGS:
            values["auth_flags"].append(opt)
        elif opt in BOOL_FLAGS:
            flag, val = BOOL_FLAGS[opt]
            values[flag] = val
        elif opt in NOOP_FLAGS:
            pass
        elif opt in ARG_OPTIONS:
            if i >= len(toks):
                raise ConfigError(path, lineno, f"option '{opt}' needs an argument")
            arg = toks[i][1]
            i += 1
            attr = ARG_OPTIONS[opt]
            if opt == "file":
                if read_file is None or _depth >= 8:
                    raise ConfigError(path, lineno, f"cannot include '{arg}' here")
                try:
                    sub = read_file(arg)
                except OSError as exc:
                    raise ConfigError(path, lineno, f"cannot read '{arg}': {exc.strerror}") from None
                merged = parse_ppp_options(sub, arg, base=PppOptions(**_freeze(values)),
                                           read_file=read_file, _depth=_depth + 1)
                values = dataclasses.asdict(merged)
                for key in _LIST_FIELDS:
                    values[key] = list(values[key])
            elif attr is None:
                values["ignored"].append(opt)
            elif attr in ("ms_dns", "ms_wins"):
                _check_ipv4(arg, path, lineno, opt)
                values[attr].append(arg)
            elif attr == "plugins":
                plugin = arg.rsplit("/", 1)[-1]
                if plugin in KNOWN_PLUGINS:
                    values["plugins"].append(plugin)
                else:
                    values["ignored"].append(f"plugin {plugin}")
            elif attr == "avpairs":
                if "=" not in arg or arg.startswith("="):
                    raise ConfigError(path, lineno, f"avpair '{arg}': expected ATTR=VALUE")
                values["avpairs"].append(arg)
            elif attr in INT_OPTIONS:
                try:
                    values[attr] = int(arg, 0)
                except ValueError:
                    raise ConfigError(path, lineno, f"option '{opt}' needs a number, got '{arg}'") from None
                if values[attr] < 0:
                    raise ConfigError(path, lineno, f"option '{opt}' must not be negative")
            else:
                values[attr] = arg
        elif ":" in opt and _looks_like_addr_pair(opt):
            local, _, remote = opt.partition(":")
            if local:
                _check_ipv4(local, path, lineno, "local address")
                values["local_ip"] = local
            if remote:
                _check_ipv4(remote, path, lineno, "remote address")
                values["remote_ip"] = remote
        elif opt in UNSUPPORTED:
            values["ignored"].append(opt)
        else:
            values["unknown"].append(opt)
    if values["mtu"] is not None and not 64 <= values["mtu"] <= 65535:
        raise ConfigError(path, 0, f"mtu {values['mtu']} out of range 64-65535")
    if values["mru"] is not None and not 128 <= values["mru"] <= 65535:
        raise ConfigError(path, 0, f"mru {values['mru']} out of range 128-65535")
    return PppOptions(**_freeze(values))


_LIST_FIELDS = ("auth_flags", "ms_dns", "ms_wins", "plugins", "avpairs", "ignored", "unknown")


def _freeze(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(dict.fromkeys(v)) if k in ("ignored", "unknown", "plugins") else
            (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}


def _looks_like_addr_pair(tok: str) -> bool:
    local, _, remote = tok.partition(":")
    return all(part == "" or part.count(".") == 3 for part in (local, remote))


def _check_ipv4(text: str, path: str, lineno: int, what: str) -> None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise ConfigError(path, lineno, f"{what}: '{text}' is not an IPv4 address") from None


def expand_ip_list(spec: str, path: str = "<config>", lineno: int = 0) -> list[str]:
    """pptpd's address lists: ``192.0.2.10-20,192.0.2.30,198.51.100.1-198.51.100.5``.

    A range's end may be a last octet (pptpd style) or a whole address."""
    out: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "-" in part:
            start_s, end_s = part.split("-", 1)
            try:
                start = ipaddress.IPv4Address(start_s)
                if "." in end_s:
                    end = ipaddress.IPv4Address(end_s)
                else:
                    last = int(end_s)
                    if not 0 <= last <= 255:
                        raise ValueError
                    end = ipaddress.IPv4Address((int(start) & ~0xFF) | last)
            except ValueError:
                raise ConfigError(path, lineno, f"bad address range '{part}'") from None
            if end < start:
                raise ConfigError(path, lineno, f"address range '{part}' runs backwards")
            if int(end) - int(start) > 65535:
                raise ConfigError(path, lineno, f"address range '{part}' is larger than 65536")
            out.extend(str(ipaddress.IPv4Address(a)) for a in range(int(start), int(end) + 1))
        else:
            _check_ipv4(part, path, lineno, "address")
            out.append(part)
    return out


@dataclass(frozen=True)
class PptpdConfig:
    """What pptpd.conf says (pptpd.conf(5))."""

    listen: str | None = None
    localip: tuple[str, ...] = ()
    remoteip: tuple[str, ...] = ()
    connections: int = 100
    option: str | None = None
    debug: bool = False
    stimeout: int = 10
    logwtmp: bool = False
    ignored: tuple[str, ...] = ()


PPTPD_IGNORED = {"noipparam", "logwtmp", "bcrelay", "delegate", "speed", "ppp",
                 "pidfile", "vrf"}


def parse_pptpd_conf(text: str, path: str = "/etc/pptpd.conf") -> PptpdConfig:
    base = PptpdConfig()
    listen, option = base.listen, base.option
    connections, stimeout = base.connections, base.stimeout
    debug, logwtmp = base.debug, base.logwtmp
    localip: list[str] = []
    remoteip: list[str] = []
    ignored: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, arg = line.partition(" ")
        key, arg = key.strip().lower(), arg.strip()
        if key == "localip":
            localip.extend(expand_ip_list(arg, path, lineno))
        elif key == "remoteip":
            remoteip.extend(expand_ip_list(arg, path, lineno))
        elif key == "listen":
            try:
                ipaddress.ip_address(arg)
            except ValueError:
                raise ConfigError(path, lineno, f"listen: '{arg}' is not an IP address") from None
            listen = arg
        elif key in ("connections", "stimeout"):
            try:
                number = int(arg)
            except ValueError:
                raise ConfigError(path, lineno, f"{key} needs a number, got '{arg}'") from None
            if number <= 0:
                raise ConfigError(path, lineno, f"{key} must be positive")
            if key == "connections":
                connections = number
            else:
                stimeout = number
        elif key == "option":
            if not arg:
                raise ConfigError(path, lineno, "option needs a file name")
            option = arg
        elif key == "debug":
            debug = True
        elif key == "logwtmp":
            logwtmp = True
            ignored.append(key)
        elif key in PPTPD_IGNORED:
            ignored.append(key)
        else:
            raise ConfigError(path, lineno, f"unknown pptpd.conf keyword '{key}'")
    # With fewer local than remote addresses pptpd pairs them up and stops at the shorter
    # list; one local address serves every peer.
    return PptpdConfig(listen=listen, localip=tuple(localip), remoteip=tuple(remoteip),
                       connections=connections, option=option, debug=debug,
                       stimeout=stimeout, logwtmp=logwtmp,
                       ignored=tuple(dict.fromkeys(ignored)))


def peer_route_problem(gateway: str | None, ifname: str | None,
                       tunnels: Iterable[str]) -> str | None:
    """Why a peer may not choose an address, from the kernel's route to it (``ip route get``):
    the server adds a host route for every peer address (over the shared TUN), so a peer
    choosing one of this host's addresses, or one the host reaches directly on a LAN -- its
    gateway, a neighbour -- would take that traffic into its tunnel.  pppd refuses such
    addresses to peers it did not authorise (auth.c ``have_route_to``); routed through a
    gateway (the default route...) or over our own tunnels is fine.  None: no objection."""
    if ifname == "lo":
        return "an address of this host"
    if gateway is None and ifname is not None and ifname not in set(tunnels):
        return f"this host reaches it directly on {ifname}"
    return None


class AddressPool:
    """Tunnel addresses for peers: a pool (pptpd's ``remoteip``) plus per-user statics.

    Addresses are handed out lowest first and returned on release; a static address (from
    chap-secrets) is honoured even when it lies in the pool, and then it is not handed to
    anyone else meanwhile."""

    def __init__(self, addresses: Iterable[str]):
        self._free = list(dict.fromkeys(addresses))
        self._all = set(self._free)
        self._used: set[str] = set()

    def allocate(self, wanted: str | None = None) -> str | None:
        if wanted is not None:
            if wanted in self._used:
                return None
            self._used.add(wanted)
            if wanted in self._free:
                self._free.remove(wanted)
            return wanted
        while self._free:
            addr = self._free.pop(0)
            if addr not in self._used:
                self._used.add(addr)
                return addr
        return None

    def claim(self, addr: str) -> bool:
        """Reserve one given address -- a peer's own choice, a RADIUS Framed-IP-Address --
        in or out of the pool: False when a live session holds it.  Every peer address goes
        through this pool, so two sessions never share one (with the shared TUN the second
        would take over the first's engine route and host route)."""
        return self.allocate(str(ipaddress.IPv4Address(addr))) is not None

    def release(self, addr: str) -> None:
        if addr in self._used:
            self._used.discard(addr)
            if addr in self._all:
                self._free.append(addr)
                self._free.sort(key=lambda a: int(ipaddress.IPv4Address(a)))

    @property
    def in_use(self) -> frozenset[str]:
        return frozenset(self._used)

    def __len__(self) -> int:
        return len(self._free)
