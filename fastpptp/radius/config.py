"""RADIUS configuration the pppd way and fastpptp's: a :class:`RadiusSettings` from

* pppd's ``radius.so`` plugin: ``plugin radius.so`` in the options file pptpd names, with
  ``radius-config-file FILE`` (default ``/etc/radiusclient/radiusclient.conf``) and
  ``avpair ATTR=VALUE`` options.  radiusclient.conf is read as the plugin's bundled
  radiusclient reads it: ``authserver`` / ``acctserver`` (``host[:port]``, several
  separated by commas or blanks, or repeated lines), ``servers`` (a file of ``host secret``
  lines), ``dictionary`` (read, and ignored: ours has every attribute a PPTP NAS uses),
  ``radius_timeout``, ``radius_retries``, ``radius_deadtime``, ``nas-identifier``,
  ``nas-ip``/``nas_ip_address``, ``bindaddr``; options of the login program (``auth_order``,
  ``login_tries``, ``issue``, ``seqfile``...) are read and ignored, as pppd ignores them;
* fastpptp's flags: ``--radius-server ADDR[:PORT],SECRET`` (:func:`parse_server_spec`).

Nothing here opens a socket or a file: files come through ``read_file(path)``, and a host
name in ``authserver`` through ``resolve(host)`` (the caller's; it gives the numeric address
the client matches answers by).
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .client import ClientPolicy, RadiusServer
from .dictionary import ValueType, attribute_by_name
from .packet import Attribute
from .settings import RadiusSettings

__all__ = [
    "AUTH_PORT", "ACCT_PORT", "DEFAULT_RADIUSCLIENT_CONF", "RadiusConfigError",
    "RadiusClientConf", "parse_radiusclient_conf", "parse_servers_file", "parse_server_spec",
    "parse_avpair", "avpair_attribute", "settings_from_radiusclient", "settings_from_pppd",
    "numeric_only", "RADATTR_DIR",
]

log = logging.getLogger("fastpptp.radius")

AUTH_PORT = 1812            # RFC 2865 §3
ACCT_PORT = 1813            # RFC 2866 §3
DEFAULT_RADIUSCLIENT_CONF = "/etc/radiusclient/radiusclient.conf"   # pppd radius.so's default

ReadFile = Callable[[str], str]
Resolve = Callable[[str], str]


class RadiusConfigError(ValueError):
    """A RADIUS configuration value or file is wrong: says where and why."""


@dataclass(frozen=True)
class RadiusClientConf:
    """What radiusclient.conf says that a NAS uses (servers as written: host, port or None)."""
    path: str
    authservers: tuple[tuple[str, int | None, str | None], ...] = ()
    acctservers: tuple[tuple[str, int | None, str | None], ...] = ()
    servers_file: str | None = None
    dictionary: str | None = None
    timeout: float | None = None
    retries: int | None = None
    deadtime: float | None = None
    nas_identifier: str | None = None
    nas_ip_address: str | None = None
    bindaddr: str | None = None
    ignored: tuple[str, ...] = field(default=())


def _split_host_port(text: str, where: str) -> tuple[str, int | None, str | None]:
    """``host``, ``host:port``, ``host:port:secret`` (freeradius-client), ``[v6]:port``."""
    secret: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise RadiusConfigError(f"{where}: unbalanced '[' in {text!r}")
        rest = rest[1:] if rest.startswith(":") else rest
        port_text, _, secret_text = rest.partition(":")
        secret = secret_text or None
    elif text.count(":") > 2:                   # a bare IPv6 address
        host, port_text = text, ""
    else:
        host, _, rest = text.partition(":")
        port_text, _, secret_text = rest.partition(":")
        secret = secret_text or None
    port: int | None = None
    if port_text:
        try:
            port = int(port_text)
        except ValueError:
            raise RadiusConfigError(f"{where}: port {port_text!r} is not a number") from None
        if not 0 < port < 65536:
            raise RadiusConfigError(f"{where}: port {port} out of range")
    if not host:
        raise RadiusConfigError(f"{where}: no host in {text!r}")
    return host, port, secret


def numeric_only(host: str) -> str:
    """The default ``resolve``: numeric addresses only."""
    return str(ipaddress.ip_address(host))


def _numeric(host: str, where: str, resolve: Resolve) -> str:
    """The numeric address of ``host`` (the client matches answers by source address)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return str(ipaddress.ip_address(resolve(host)))
    except (OSError, ValueError) as exc:
        raise RadiusConfigError(f"{where}: cannot resolve {host!r}: {exc}") from None


def parse_server_spec(text: str, default_port: int, resolve: Resolve = numeric_only) -> RadiusServer:
    """``ADDR[:PORT],SECRET`` (``[v6]:PORT,SECRET`` for IPv6) -> RadiusServer."""
    addr, sep, secret = text.partition(",")
    if not sep or not secret:
        raise RadiusConfigError(f"RADIUS server {text.split(',')[0]!r}: give ADDR[:PORT],SECRET")
    host, port, _ = _split_host_port(addr.strip(), "RADIUS server")
    return RadiusServer((_numeric(host, "RADIUS server", resolve), port or default_port), secret.encode())


def _lines(text: str) -> Iterable[tuple[int, list[str]]]:
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            yield lineno, line.split()


def parse_radiusclient_conf(text: str, path: str = DEFAULT_RADIUSCLIENT_CONF) -> RadiusClientConf:
    """Parse radiusclient.conf (``option value`` lines, ``#`` comments)."""
    values: dict[str, Any] = {}      # RadiusClientConf's fields by name (checked on construction)
    auth: list[tuple[str, int | None, str | None]] = []
    acct: list[tuple[str, int | None, str | None]] = []
    ignored: list[str] = []
    for lineno, words in _lines(text):
        key, args = words[0].lower(), words[1:]
        where = f"{path}:{lineno}"
        if key in ("authserver", "acctserver"):
            specs = [s for a in args for s in a.split(",") if s]
            if not specs:
                raise RadiusConfigError(f"{where}: {key} needs a server")
            (auth if key == "authserver" else acct).extend(_split_host_port(s, where) for s in specs)
            continue
        if not args:
            ignored.append(key)
            continue
        value = args[0]
        try:
            if key == "servers":
                values["servers_file"] = value
            elif key == "dictionary":
                values["dictionary"] = value
            elif key == "radius_timeout":
                values["timeout"] = float(value)
            elif key == "radius_retries":
                values["retries"] = int(value)
            elif key == "radius_deadtime":
                values["deadtime"] = float(value)
            elif key in ("nas-identifier", "nas_identifier"):
                values["nas_identifier"] = " ".join(args)
            elif key in ("nas-ip", "nas_ip", "nas-ip-address", "nas_ip_address"):
                values["nas_ip_address"] = str(ipaddress.ip_address(value))
            elif key == "bindaddr":
                values["bindaddr"] = None if value == "*" else str(ipaddress.ip_address(value))
            else:
                ignored.append(key)     # the login program's options (auth_order, issue...)
        except ValueError:
            raise RadiusConfigError(f"{where}: bad value {value!r} for {key}") from None
    return RadiusClientConf(path, tuple(auth), tuple(acct), ignored=tuple(dict.fromkeys(ignored)),
                            **values)


def parse_servers_file(text: str, path: str = "servers") -> dict[str, str]:
    """radiusclient's ``servers`` file: ``host[:port] secret`` per line -> host -> secret."""
    out: dict[str, str] = {}
    for lineno, words in _lines(text):
        if len(words) < 2:
            raise RadiusConfigError(f"{path}:{lineno}: expected 'host secret'")
        out[words[0]] = words[1]
    return out


def _secret_for(host: str, port: int | None, secrets: dict[str, str], where: str,
                resolve: Resolve) -> str:
    """The secret of ``host`` as radiusclient's rc_find_server finds it: the servers file's
    name, with or without the port, or any entry that is the same address."""
    for key in ((f"{host}:{port}" if port else None), host):
        if key is not None and key in secrets:
            return secrets[key]
    numeric = _numeric(host, where, resolve)
    for key, secret in secrets.items():
        name = key.rsplit(":", 1)[0] if key.count(":") == 1 else key
        try:
            if _numeric(name, where, resolve) == numeric:
                return secret
        except RadiusConfigError:
            continue
    raise RadiusConfigError(f"{where}: no secret for {host} in the servers file")


def _read_dictionary(path: str, read_file: ReadFile, depth: int = 0) -> None:
    """radiusclient's dictionary: read (with ``$INCLUDE``s) and ignored -- ours names every
    attribute a PPTP NAS uses; attributes it lacks are only logged.  Never fails."""
    try:
        text = read_file(path)
    except OSError as exc:
        log.info("RADIUS dictionary %s not read (%s): using fastpptp's own", path, exc.strerror)
        return
    unknown = []
    for _, words in _lines(text):
        if words[0] == "$INCLUDE" and len(words) > 1 and depth < 8:
            inc = words[1] if words[1].startswith("/") else path.rsplit("/", 1)[0] + "/" + words[1]
            _read_dictionary(inc, read_file, depth + 1)
        elif words[0] == "ATTRIBUTE" and len(words) > 1 and attribute_by_name(words[1]) is None:
            unknown.append(words[1])
    if unknown:
        log.debug("RADIUS dictionary %s: %d attributes fastpptp does not use", path, len(unknown))


def settings_from_radiusclient(conf: RadiusClientConf, read_file: ReadFile, *,
                               resolve: Resolve = numeric_only,
                               avpairs: Iterable[tuple[str, str]] = (),
                               radattr_dir: str | None = None) -> RadiusSettings:
    """RadiusSettings from a parsed radiusclient.conf, reading its ``servers`` file (paths
    relative to the conf's directory, as radiusclient resolves them) and its dictionary."""
    if not conf.authservers:
        raise RadiusConfigError(f"{conf.path}: no authserver")
    base = conf.path.rsplit("/", 1)[0] if "/" in conf.path else "."

    def relative(p: str) -> str:
        return p if p.startswith("/") else f"{base}/{p}"

    secrets: dict[str, str] = {}
    if conf.servers_file is not None:
        path = relative(conf.servers_file)
        try:
            secrets = parse_servers_file(read_file(path), path)
        except OSError as exc:
            raise RadiusConfigError(f"{conf.path}: cannot read servers file {path}: "
                                    f"{exc.strerror}") from None
    if conf.dictionary is not None:
        _read_dictionary(relative(conf.dictionary), read_file)
    def servers(specs: Iterable[tuple[str, int | None, str | None]], port: int) -> tuple[RadiusServer, ...]:
        out = []
        for host, p, inline in specs:
            secret = inline if inline is not None else _secret_for(host, p, secrets, conf.path, resolve)
            out.append(RadiusServer((_numeric(host, conf.path, resolve), p or port), secret.encode()))
        return tuple(out)

    defaults = ClientPolicy()
    policy = ClientPolicy(
        timeout=conf.timeout if conf.timeout is not None else defaults.timeout,
        # radiusclient's radius_retries counts sends per server, like our tries
        tries=max(1, conf.retries) if conf.retries is not None else defaults.tries,
        dead_time=conf.deadtime if conf.deadtime is not None else defaults.dead_time)
    return RadiusSettings(
        auth_servers=servers(conf.authservers, AUTH_PORT),
        acct_servers=servers(conf.acctservers, ACCT_PORT),
        policy=policy, nas_identifier=conf.nas_identifier, nas_ip_address=conf.nas_ip_address,
        bind_address=conf.bindaddr, avpairs=tuple(avpairs), radattr_dir=radattr_dir)


RADATTR_DIR = "/var/run"       # radattr.so writes /var/run/radattr.<ifname>


def settings_from_pppd(plugins: Iterable[str], radius_config_file: str | None,
                       avpairs: Iterable[str], read_file: ReadFile, *,
                       resolve: Resolve = numeric_only) -> RadiusSettings | None:
    """pppd's way: with ``plugin radius.so`` the radiusclient.conf ``radius-config-file``
    names (default /etc/radiusclient/radiusclient.conf) and the ``avpair`` options; None
    without the plugin.  ``plugin radattr.so``: radattr files in /var/run."""
    plugins = set(plugins)
    if "radius.so" not in plugins:
        return None
    path = radius_config_file or DEFAULT_RADIUSCLIENT_CONF
    try:
        text = read_file(path)
    except OSError as exc:
        raise RadiusConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return settings_from_radiusclient(
        parse_radiusclient_conf(text, path), read_file, resolve=resolve,
        avpairs=[parse_avpair(a) for a in avpairs],
        radattr_dir=RADATTR_DIR if "radattr.so" in plugins else None)


def parse_avpair(text: str) -> tuple[str, str]:
    """pppd radius.so's ``avpair ATTR=VALUE`` -> (name, value), checked against the
    dictionary (an unknown name or a bad value raises RadiusConfigError)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise RadiusConfigError(f"avpair {text!r}: expected ATTR=VALUE")
    pair = name.strip(), value.strip()
    avpair_attribute(*pair)
    return pair


def avpair_attribute(name: str, value: str) -> Attribute:
    """The Attribute an avpair adds to every Access-Request."""
    found = attribute_by_name(name)
    if found is None:
        raise RadiusConfigError(f"avpair: unknown attribute {name!r}")
    vendor, type_, vt = found
    try:
        if vt is ValueType.INTEGER:
            data = int(value, 0).to_bytes(4, "big")
        elif vt is ValueType.IPADDR:
            data = ipaddress.IPv4Address(value).packed
        elif vt is ValueType.OCTETS and value.lower().startswith("0x"):
            data = bytes.fromhex(value[2:])
        else:
            data = value.encode()
    except (ValueError, OverflowError):
        raise RadiusConfigError(f"avpair {name}: bad value {value!r}") from None
    if not data or len(data) > 247:
        raise RadiusConfigError(f"avpair {name}: value of {len(data)} octets")
    return Attribute(type_, data, vendor)
