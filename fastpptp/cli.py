"""Command lines: ``fastpptp-server``, ``fastpptp-client`` and the ``fastpptp`` umbrella.

argv -> typed config -> run.  No protocol logic lives here.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import logging.handlers
import os
import sys

from .config import ConfigError, PppOptions, parse_ppp_options, parse_pptpd_conf, expand_ip_list
from .net.greport import GRE_IO_MODES
from .pptp.messages import PPTP_PORT
from .shaping import RateLimit, parse_rate

log = logging.getLogger("fastpptp")


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def setup_logging(level: str = "info", syslog: bool = False, logfile: str | None = None,
                  name: str = "fastpptp") -> None:
    root = logging.getLogger()
    root.handlers.clear()
    if syslog and os.path.exists("/dev/log"):
        handler: logging.Handler = logging.handlers.SysLogHandler(
            address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter(f"{name}[%(process)d]: %(message)s"))
    elif logfile:
        handler = logging.FileHandler(logfile)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def rate_arg(text: str) -> RateLimit:
    """argparse type of a RATE (``1000`` or ``down/up`` kbit/s, ``0`` = unlimited)."""
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _warn_options(opts: PppOptions) -> None:
    for name in opts.ignored:
        log.warning("pppd option '%s' is not implemented by fastpptp and has no effect", name)
    for name in opts.unknown:
        log.warning("unknown pppd option '%s' ignored", name)


# ----------------------------------------------------------------------------- server
def server_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastpptp-server",
        description="PPTP server (PAC), a drop-in for pptpd + pppd. Reads pptpd.conf, the pppd "
                    "options file it names, and chap-secrets.")
    p.add_argument("-c", "--conf", default=None,
                   help="pptpd.conf to read (default /etc/pptpd.conf if it exists)")
    p.add_argument("-o", "--option", dest="option_file", help="pppd options file (overrides pptpd.conf's 'option')")
    p.add_argument("--secrets", default="/etc/ppp/chap-secrets", help="pppd chap-secrets file")
    p.add_argument("-l", "--listen", help="address to listen on (pptpd.conf 'listen'; default all)")
    p.add_argument("--port", type=int, default=PPTP_PORT)
    p.add_argument("--localip", help="server tunnel address(es), pptpd syntax")
    p.add_argument("--remoteip", help="client address pool, pptpd syntax (e.g. 198.51.100.2-9)")
    p.add_argument("--connections", type=int, help="maximum simultaneous calls")
    p.add_argument("--ppp", action="append", default=[], metavar="OPTION",
                   help="extra pppd option (repeatable), e.g. --ppp require-mppe-128 --ppp 'ms-dns 192.0.2.53'")
    p.add_argument("--name", help="our PPP name (pppd 'name')")
    p.add_argument("--ms-dns", action="append", default=[], help="DNS server offered to clients")
    p.add_argument("--ms-wins", action="append", default=[], help="WINS server offered to clients")
    p.add_argument("--mtu", type=int)
    p.add_argument("--mru", type=int)
    p.add_argument("--lcp-echo-interval", type=int)
    p.add_argument("--lcp-echo-failure", type=int)
    p.add_argument("--pptp-echo-interval", type=float, default=60.0,
                   help="seconds of control-connection idle before a PPTP Echo-Request")
    p.add_argument("--interface", default="fpptp0",
                   help="the shared TUN device (one device for all sessions); with "
                        "--per-session-interfaces the name prefix (default ppp: ppp0, ppp1, ...)")
    p.add_argument("--per-session-interfaces", action="store_true",
                   help="one ppp0, ppp1, ... TUN device per session, like pppd")
    p.add_argument("--ip-up", default="/etc/ppp/ip-up")
    p.add_argument("--ip-down", default="/etc/ppp/ip-down")
    p.add_argument("--rate-limit", type=int, default=20,
                   help="new control connections allowed per source address per 10 s")
    p.add_argument("--default-rate-limit", type=rate_arg, default=None, metavar="RATE",
                   help="bandwidth limit of every session without a per-user one (chap-secrets' "
                        "RATE column): kbit/s as N (both ways) or DOWN/UP, e.g. 2000/512; 0 = unlimited")
    p.add_argument("--max-auth-failures", type=int, default=5,
                   help="failed logins per source address per 5 min before it is refused")
    p.add_argument("--control-socket", default=None,
                   help="control socket path (fastpptp sessions/terminate/rate-limit; root only)")
    p.add_argument("--metrics-listen", metavar="ADDR:PORT", type=_listen_arg, default=None,
                   help="serve Prometheus metrics at http://ADDR:PORT/metrics (off by default; "
                        "e.g. 127.0.0.1:9723, [::1]:9723)")
    p.add_argument("--dae-server", metavar="ADDR[:PORT],SECRET", type=dae_server_arg, default=None,
                   help="answer RADIUS Disconnect/CoA requests (RFC 5176) on ADDR:PORT (port 3799 "
                        "by default; IPv6 as [ADDR]:PORT) signed with SECRET, as accel-ppp's dae-server")
    p.add_argument("--dae-allowed", metavar="CIDR", type=_network_arg, action="append", default=[],
                   help="a network Disconnect/CoA requests may come from (repeatable; default: the "
                        "RADIUS servers' addresses)")
    p.add_argument("--dae-require-message-authenticator", action="store_true",
                   help="drop Disconnect/CoA requests without a Message-Authenticator")
    p.add_argument("--metrics-per-session", action="store_true",
                   help="also per-session series labelled by session and user. WARNING: one series "
                        "set per session: cardinality grows with the sessions and users")
    p.add_argument("--impl", choices=("compiled", "reference"), default="compiled",
                   help=argparse.SUPPRESS)
    p.add_argument("--no-offload", action="store_true", help="do not use TUN offloads (TSO/GRO)")
    p.add_argument("--flow-control", action="store_true",
                   help="honour the peers' Packet Receive Window (RFC 2637 sliding window, for old "
                        "PNSs; Windows and Linux peers do not need it)")
    p.add_argument("--gre-io", choices=GRE_IO_MODES, default="auto",
                   help="how the data plane sends and receives GRE: xdp (AF_XDP socket + our XDP program), "
                        "packet (AF_PACKET ring + a TCX ingress drop), raw (the kernel's raw GRE socket, "
                        "portable); auto (default) takes the fastest that works here and logs why")
    p.add_argument("--user", default=None, metavar="NAME",
                   help="after start-up run as this user (e.g. nobody or a dedicated fastpptp user), "
                        "keeping only CAP_NET_ADMIN and CAP_NET_RAW")
    p.add_argument("--group", default=None, metavar="NAME",
                   help="after start-up run as this group (default: the user's); make chap-secrets "
                        "readable by it (0640) and SIGHUP re-reads it without CAP_DAC_READ_SEARCH")
    p.add_argument("--keep-privileges", action="store_true",
                   help="keep every capability of root after start-up (like pppd; default: only "
                        "CAP_NET_ADMIN and CAP_NET_RAW)")
    r = p.add_argument_group(
        "RADIUS", "authenticate through RADIUS (as pppd's radius.so; its 'plugin radius.so' + "
                  "radiusclient.conf in the options file work unchanged; these flags override them)")
    r.add_argument("--radius-server", action="append", default=[], metavar="ADDR[:PORT],SECRET",
                   help="RADIUS authentication server (repeatable: failover in order; port 1812)")
    r.add_argument("--radius-acct-server", action="append", default=[], metavar="ADDR[:PORT],SECRET",
                   help="RADIUS accounting server (repeatable; port 1813)")
    r.add_argument("--radius-timeout", type=float, default=None, metavar="SECONDS",
                   help="seconds between sends to one server (default 3)")
    r.add_argument("--radius-retries", type=int, default=None, metavar="N",
                   help="sends to one server before failing over (default 3)")
    r.add_argument("--nas-identifier", default=None, help="NAS-Identifier sent to RADIUS")
    r.add_argument("--nas-ip-address", default=None, help="NAS-IP-Address sent to RADIUS")
    r.add_argument("--radius-bind", default=None, metavar="ADDR",
                   help="local address of the RADIUS client socket")
    r.add_argument("--radius-order", default=None, choices=("radius", "radius,local", "local,radius"),
                   help="radius: RADIUS only (default, as radius.so); radius,local: chap-secrets "
                        "when no RADIUS server answers; local,radius: chap-secrets' users locally, "
                        "everyone else through RADIUS")
    r.add_argument("--acct-interim-interval", type=int, default=None, metavar="SECONDS",
                   help="Interim-Update period when the Access-Accept names none (0: none)")
    p.add_argument("-f", "--foreground", action="store_true", help="do not detach (pptpd -f)")
    p.add_argument("-d", "--debug", action="store_true", help="debug logging")
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))
    p.add_argument("--syslog", action="store_true", help="log to syslog (daemon facility)")
    p.add_argument("--logfile")
    return p


def _listen_arg(text: str) -> str:
    from .metrics import parse_listen
    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def dae_server_arg(text: str) -> tuple[tuple[str, int], bytes]:
    """argparse type of ``--dae-server ADDR[:PORT],SECRET`` -> ((address, port), secret)."""
    from .radius.settings import DAE_PORT
    where, sep, secret = text.partition(",")
    if not sep or not secret:
        raise argparse.ArgumentTypeError(f"{where!r}: expected ADDR[:PORT],SECRET")
    host, port = where, DAE_PORT
    if where.startswith("["):                       # [v6]:port or [v6]
        host, _, rest = where[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise argparse.ArgumentTypeError(f"bad address {where!r}")
            port = _port(rest[1:])
    elif where.count(":") == 1:
        host, _, p = where.partition(":")
        port = _port(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad address {host!r}: a numeric IPv4 or IPv6 address") from None
    return (host, port), secret.encode()


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"bad port {text!r}")
    return int(text)


def _network_arg(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _with_dae(radius, args: argparse.Namespace):
    """``--dae-server``/``--dae-allowed`` into the RADIUS settings (standalone when there are
    none: DAE needs no RADIUS authentication); ``radius`` unchanged when no listener is asked for."""
    import dataclasses
    from .radius.settings import DaeSettings, RadiusSettings
    if args.dae_server is None:
        if args.dae_allowed:
            raise ConfigError("<command line>", 0, "--dae-allowed without --dae-server")
        return radius
    listen, secret = args.dae_server
    allowed = tuple(args.dae_allowed)
    if not allowed and (radius is None or not (radius.auth_servers or radius.acct_servers)):
        raise ConfigError("<command line>", 0, "--dae-server needs --dae-allowed (no RADIUS servers to allow)")
    dae = DaeSettings(listen=listen, secret=secret, allowed=allowed,
                      require_message_authenticator=args.dae_require_message_authenticator)
    if radius is None:
        return RadiusSettings(auth_servers=(), dae=dae)
    return dataclasses.replace(radius, dae=dae)


def build_server_config(args: argparse.Namespace):
    from .server import ServerConfig
    conf_path = args.conf or ("/etc/pptpd.conf" if os.path.exists("/etc/pptpd.conf") and args.conf is None else None)
    pptpd = parse_pptpd_conf(_read(conf_path), conf_path) if conf_path else parse_pptpd_conf("")
    opt_path = args.option_file or pptpd.option
    opts = PppOptions()
    if opt_path:
        try:
            opts = parse_ppp_options(_read(opt_path), opt_path, read_file=_read)
        except OSError as exc:
            raise ConfigError(opt_path, 0, f"cannot read: {exc.strerror}") from None
    extra = list(args.ppp)
    for flag, name in (("name", "name"), ("mtu", "mtu"), ("mru", "mru"),
                       ("lcp_echo_interval", "lcp-echo-interval"), ("lcp_echo_failure", "lcp-echo-failure")):
        v = getattr(args, flag)
        if v is not None:
            extra.append(f"{name} {v}")
    extra += [f"ms-dns {d}" for d in args.ms_dns] + [f"ms-wins {d}" for d in args.ms_wins]
    if extra:
        opts = parse_ppp_options("\n".join(extra), "<command line>", base=opts, read_file=_read)
    localip = expand_ip_list(args.localip) if args.localip else list(pptpd.localip)
    remoteip = expand_ip_list(args.remoteip) if args.remoteip else list(pptpd.remoteip)
    if not localip:
        localip = ["198.51.100.1"]
    if not remoteip:
        raise ConfigError(conf_path or "<command line>", 0, "no client addresses: set remoteip")
    level = args.log_level or ("debug" if (args.debug or pptpd.debug or opts.debug) else "info")
    return ServerConfig(
        listen=args.listen or pptpd.listen or "0.0.0.0", port=args.port,
        local_ips=tuple(localip), remote_ips=tuple(remoteip),
        connections=args.connections or pptpd.connections, ppp=opts,
        secrets_file=args.secrets, interface=args.interface,
        per_session_interfaces=args.per_session_interfaces,
        ip_up=args.ip_up, ip_down=args.ip_down, rate_limit=args.rate_limit,
        max_auth_failures=args.max_auth_failures,
        control_socket=args.control_socket or None, impl=args.impl, offload=not args.no_offload,
        pptp_echo_interval=args.pptp_echo_interval, log_level=level,
        option_file=opt_path, flow_control=args.flow_control, gre_io=args.gre_io,
        metrics_listen=args.metrics_listen, metrics_per_session=args.metrics_per_session,
        default_rate_limit=args.default_rate_limit,
        radius=_with_dae(build_radius_settings(args, opts), args),
    ), (args.syslog, args.logfile or opts.logfile)


def _resolve(host: str) -> str:
    """A RADIUS server's host name -> its address (once, at start-up)."""
    import socket
    return str(socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0])


def build_radius_settings(args: argparse.Namespace, opts: PppOptions):
    """RadiusSettings from pppd's radius.so configuration (the options file) with the
    --radius-* flags over it; None when neither names a RADIUS server."""
    import dataclasses
    from .radius.client import ClientPolicy
    from .radius.config import (ACCT_PORT, AUTH_PORT, RadiusConfigError, parse_server_spec,
                                settings_from_pppd)
    from .radius.settings import RadiusSettings
    where = "<command line>"
    try:
        base = settings_from_pppd(opts.plugins, opts.radius_config_file, opts.avpairs, _read,
                                  resolve=_resolve)
        auth = tuple(parse_server_spec(s, AUTH_PORT, _resolve) for s in args.radius_server)
        acct = tuple(parse_server_spec(s, ACCT_PORT, _resolve) for s in args.radius_acct_server)
        if base is None and not auth:
            if args.radius_order:
                raise RadiusConfigError("--radius-order needs --radius-server (or plugin radius.so)")
            if not acct:
                return None
        # --radius-acct-server alone: logins checked locally (chap-secrets), accounted by RADIUS
        settings = base if base is not None else RadiusSettings(auth_servers=auth, acct_servers=acct)
        policy = settings.policy
        policy = ClientPolicy(
            timeout=args.radius_timeout if args.radius_timeout is not None else policy.timeout,
            tries=args.radius_retries if args.radius_retries is not None else policy.tries,
            dead_time=policy.dead_time,
            require_message_authenticator=policy.require_message_authenticator)
        changes: dict[str, object] = {"policy": policy}
        for flag, name in (("nas_identifier", "nas_identifier"), ("nas_ip_address", "nas_ip_address"),
                           ("radius_bind", "bind_address"), ("radius_order", "auth_order"),
                           ("acct_interim_interval", "acct_interim_interval")):
            value = getattr(args, flag)
            if value is not None:
                changes[name] = value
        if auth:
            changes["auth_servers"] = auth
        if acct:
            changes["acct_servers"] = acct
        return dataclasses.replace(settings, **changes)
    except (RadiusConfigError, ValueError) as exc:
        raise ConfigError(where, 0, str(exc)) from None


def _configure(prog: str, build, args):
    """argv -> config, logging set up and unimplemented options warned about; None on a bad config."""
    try:
        config, (syslog, logfile) = build(args)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None
    setup_logging(config.log_level, syslog=syslog, logfile=logfile, name=prog)
    _warn_options(config.ppp)
    return config


def _control_command(args: argparse.Namespace) -> int:
    """``sessions`` / ``terminate`` / ``rate-limit``: one request to the control socket.
    Exit status 0, or 1 when the server is unreachable, refuses, or nothing matched."""
    from .status import DEFAULT_CONTROL_SOCKET, SessionMatch, control_request, format_status
    if args.cmd == "terminate":
        try:
            match = SessionMatch(user=args.user, ip=args.ip, session=args.session, peer=args.peer,
                                 all=args.all)
        except ValueError as exc:
            print(f"fastpptp terminate: {exc}", file=sys.stderr)
            return 2
        request: dict[str, object] = {"cmd": "terminate", "match": match.to_json(), "soft": args.soft}
    elif args.cmd == "rate-limit":
        request = {"cmd": "rate-limit", "session": args.session, "rate": str(args.rate)}
    else:
        request = {"cmd": "sessions"}
    try:
        doc = control_request(request, args.control_socket or DEFAULT_CONTROL_SOCKET)
    except (OSError, ValueError) as exc:
        print(f"fastpptp {args.cmd}: cannot reach the server's control socket: {exc}", file=sys.stderr)
        return 1
    if "error" in doc:
        print(f"fastpptp {args.cmd}: {doc['error']}", file=sys.stderr)
        return 1
    if args.cmd == "terminate":
        n = int(doc.get("matched", 0))
        print(f"{n} session(s) terminated{' (soft)' if args.soft else ''}")
        return 0 if n else 1
    if args.cmd == "rate-limit":
        if not doc.get("matched"):
            print(f"fastpptp rate-limit: no session {args.session}", file=sys.stderr)
            return 1
        print(f"session {args.session}: rate limit {'unlimited' if args.rate.unlimited else args.rate} kbit/s")
        return 0
    print(json.dumps(doc, indent=2) if args.json else format_status(doc))
    return 0


def server_main(argv: list[str] | None = None) -> int:
    args = server_parser().parse_args(argv)
    config = _configure("fastpptp-server", build_server_config, args)
    if config is None:
        return 2
    from .privs import PrivilegeError, Privileges, RunAs
    privileges = None
    if not args.keep_privileges:
        try:
            privileges = Privileges.for_server(port=config.port,
                                               files=[config.secrets_file, config.option_file],
                                               run_as=RunAs(args.user, args.group),
                                               per_session_interfaces=config.per_session_interfaces,
                                               bpf_port=config.gre_io != "raw")
        except PrivilegeError as exc:
            print(f"fastpptp-server: {exc}", file=sys.stderr)
            return 2
    elif args.user or args.group:
        print("fastpptp-server: --user/--group and --keep-privileges exclude each other", file=sys.stderr)
        return 2
    if not args.foreground:
        _daemonize()
    from .server import run_server
    return run_server(config, privileges=privileges)


def _daemonize() -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)


# ----------------------------------------------------------------------------- client
def client_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastpptp-client",
        description="PPTP client (PNS), a drop-in for pptp + pppd. Trailing words are pppd options "
                    "(require-mppe-128 defaultroute persist maxfail 0 usepeerdns file FILE ...).")
    p.add_argument("server", help="PPTP server address or host name")
    p.add_argument("pppd_options", nargs="*", help="pppd options, as pppd takes them")
    p.add_argument("-u", "--user", help="user name (pppd 'user')")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-p", "--password", help="password (visible in ps; prefer --password-file)")
    g.add_argument("--password-file", help="file whose first line is the password")
    p.add_argument("--port", type=int, default=PPTP_PORT)
    p.add_argument("--route", action="append", default=[], metavar="NET",
                   help="route NET through the tunnel (split tunnel; repeatable)")
    p.add_argument("--interface", default=None, help="TUN device name (default pptpN)")
    p.add_argument("--pptp-echo-interval", type=float, default=60.0)
    p.add_argument("--impl", choices=("compiled", "reference"), default="compiled", help=argparse.SUPPRESS)
    p.add_argument("--no-offload", action="store_true")
    p.add_argument("--flow-control", action="store_true",
                   help="honour the server's Packet Receive Window (RFC 2637 sliding window, old PACs)")
    p.add_argument("--gre-io", choices=GRE_IO_MODES, default="auto",
                   help="how the data plane sends and receives GRE: xdp (AF_XDP socket + our XDP program), "
                        "packet (AF_PACKET ring + a TCX ingress drop), raw (the kernel's raw GRE socket, "
                        "portable); auto (default) takes the fastest that works here and logs why")
    p.add_argument("--local-address", help="source address for TCP and GRE (pptp --localbind)")
    p.add_argument("--up-file", help="write a JSON line here when the tunnel is up (for scripts/tests)")
    p.add_argument("--run-as-user", default=None, metavar="NAME",
                   help="run as this user from the start, keeping only CAP_NET_ADMIN and CAP_NET_RAW "
                        "(--user is the PPP user name)")
    p.add_argument("--run-as-group", default=None, metavar="NAME",
                   help="run as this group (default: the user's)")
    p.add_argument("--keep-privileges", action="store_true",
                   help="keep every capability of root (like pppd; default: only CAP_NET_ADMIN and "
                        "CAP_NET_RAW)")
    p.add_argument("-d", "--debug", action="store_true")
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))
    p.add_argument("--syslog", action="store_true")
    p.add_argument("--logfile")
    return p


def build_client_config(args: argparse.Namespace):
    from .client import ClientConfig
    opts = parse_ppp_options("\n".join(args.pppd_options), "<command line>", read_file=_read)
    password = args.password
    if args.password_file:
        try:
            password = _read(args.password_file).splitlines()[0] if _read(args.password_file) else ""
        except OSError as exc:
            raise ConfigError(args.password_file, 0, f"cannot read: {exc.strerror}") from None
    password = password if password is not None else opts.password
    user = args.user or opts.user
    if not user:
        raise ConfigError("<command line>", 0, "no user name: give --user (or pppd 'user')")
    if password is None:
        raise ConfigError("<command line>", 0, "no password: give --password-file or --password")
    level = args.log_level or ("debug" if (args.debug or opts.debug) else "info")
    return ClientConfig(server=args.server, port=args.port, user=user, password=password, ppp=opts,
                        routes=tuple(args.route), interface=args.interface, impl=args.impl,
                        offload=not args.no_offload, pptp_echo_interval=args.pptp_echo_interval,
                        up_file=args.up_file, log_level=level, flow_control=args.flow_control,
                        local_address=args.local_address, gre_io=args.gre_io), (args.syslog, args.logfile or opts.logfile)


def client_main(argv: list[str] | None = None) -> int:
    args = client_parser().parse_intermixed_args(argv)
    config = _configure("fastpptp-client", build_client_config, args)
    if config is None:
        return 2
    from .privs import PrivilegeError, Privileges, RunAs
    privileges = None
    if not args.keep_privileges:
        try:
            privileges = Privileges.for_client(run_as=RunAs(args.run_as_user, args.run_as_group),
                                               bpf_port=config.gre_io != "raw")
        except PrivilegeError as exc:
            print(f"fastpptp-client: {exc}", file=sys.stderr)
            return 2
    elif args.run_as_user or args.run_as_group:
        print("fastpptp-client: --run-as-user/--run-as-group and --keep-privileges exclude each other",
              file=sys.stderr)
        return 2
    from .client import run_client
    return run_client(config, privileges=privileges)


# ----------------------------------------------------------------------------- bench sessions
def _add_sessions_bench_args(b: argparse.ArgumentParser) -> None:
    g = b.add_argument_group("bench sessions (fastpptp/tools/loadgen.py)")
    g.add_argument("server", nargs="?", help="PPTP server to load")
    g.add_argument("--clients", type=int, default=1, help="number of PPTP clients (sessions)")
    g.add_argument("--rate", type=float, default=0.0, metavar="R/s",
                   help="new sessions per second (default: all at once)")
    g.add_argument("--duration", type=float, default=10.0, metavar="S",
                   help="seconds of traffic after the last session came up or failed")
    g.add_argument("--traffic", default="0", metavar="PPS|Mbit/s",
                   help="per session, e.g. 10 (packets/s) or 2Mbit/s: UDP to the session's own tunnel "
                        "address, which the server routes back (it must forward IPv4)")
    g.add_argument("--packet-size", type=int, default=256, help="IP packet size of the traffic")
    g.add_argument("--auth", choices=("pap", "chap", "mschap", "mschapv2"), default="mschapv2")
    g.add_argument("--mppe", choices=("none", "40", "128"), default="128")
    g.add_argument("--source-range", metavar="CIDR", help="one source address per client from here")
    g.add_argument("--add-addresses", metavar="IFACE",
                   help="add the source addresses to IFACE (/32) for the run, remove them after; "
                        "the server should route the range via this host (not ARP for each)")
    g.add_argument("--user-template", default="user%d")
    g.add_argument("--password-template", default="pass%d")
    g.add_argument("--first-index", type=int, default=0, help="the %%d of the first client")
    g.add_argument("--port", type=int, default=PPTP_PORT)
    g.add_argument("--setup-timeout", type=float, default=60.0, help="seconds a session has to come up")
    g.add_argument("--plot", metavar="FILE.png", help="chart: sessions up over time, throughput (matplotlib)")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    g.add_argument("--churn", type=int, default=0, metavar="N",
                   help="connect/disconnect N sessions in all, CLIENTS at a time (no traffic)")
    g.add_argument("--hold", type=float, default=0.0, metavar="S", help="churn: seconds each session stays up")
    g.add_argument("--unclean", type=float, default=0.0, metavar="SHARE",
                   help="churn: share ending without a goodbye (killed / TCP reset / GRE just stopping)")
    g.add_argument("--churn-limit", type=float, default=3600.0, metavar="S", help="churn: wall-clock bound")
    g.add_argument("--impl", choices=("compiled", "reference"), default="compiled", help=argparse.SUPPRESS)


def _sessions_bench(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .tools.loadgen import LoadConfig, parse_traffic, run_sessions_bench
    if not args.server:
        p.error("bench sessions: SERVER is required")
    try:
        traffic = parse_traffic(args.traffic, args.packet_size)
    except ValueError as exc:
        p.error(str(exc))
    cfg = LoadConfig(server=args.server, clients=args.clients, rate=args.rate, duration=args.duration,
                     traffic=traffic, auth=args.auth, mppe=args.mppe, source_range=args.source_range,
                     add_addresses=args.add_addresses, user_template=args.user_template,
                     password_template=args.password_template, first_index=args.first_index,
                     port=args.port, setup_timeout=args.setup_timeout, impl=args.impl,
                     progress=not args.quiet, churn=args.churn, hold=args.hold, unclean=args.unclean,
                     churn_limit=args.churn_limit)
    return run_sessions_bench(cfg, json_out=args.json, plot=args.plot)


# ----------------------------------------------------------------------------- umbrella
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="fastpptp", description="fastpptp: PPTP server, client, demo and benchmarks")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("server", help="run the server (same flags as fastpptp-server)", add_help=False)
    sub.add_parser("client", help="run the client (same flags as fastpptp-client)", add_help=False)
    d = sub.add_parser("demo", help="server + client in two network namespaces, traffic, summary")
    d.add_argument("--json", action="store_true")
    d.add_argument("--bytes", type=int, default=32 * 1024 * 1024, help="bulk transfer size")
    s = sub.add_parser("sessions", aliases=["status"], help="sessions of a running server")
    s.add_argument("--json", action="store_true")
    s.add_argument("--control-socket", default=None)
    t = sub.add_parser("terminate", help="end sessions of a running server (like accel-cmd terminate)",
                       description="Each matching session gets an LCP Terminate-Request and "
                                   "Call-Disconnect-Notify; its address returns to the pool. Exit "
                                   "status 1 when no session matched.")
    sel = t.add_mutually_exclusive_group(required=True)
    sel.add_argument("--user", help="the authenticated user name")
    sel.add_argument("--ip", help="the client's tunnel address")
    sel.add_argument("--session", help="the session ID (fastpptp sessions)")
    sel.add_argument("--peer", help="the client's public address")
    sel.add_argument("--all", action="store_true", help="every session")
    t.add_argument("--soft", action="store_true",
                   help="graceful: wait for the client's LCP Terminate-Ack before clearing the call "
                        "(default: clear the call at once)")
    t.add_argument("--control-socket", default=None)
    r = sub.add_parser("rate-limit", help="change a live session's bandwidth limit")
    r.add_argument("session", metavar="SESSION", help="the session ID (fastpptp sessions)")
    r.add_argument("rate", metavar="RATE", type=rate_arg,
                   help="kbit/s: N (both ways) or DOWN/UP, e.g. 2000/512; 0 = unlimited")
    r.add_argument("--control-socket", default=None)
    b = sub.add_parser("bench", help="benchmarks; 'bench sessions SERVER --clients N': the PPTP load generator")
    b.add_argument("what", choices=("dataplane", "tunnel", "sessions"))
    b.add_argument("--json", action="store_true")
    _add_sessions_bench_args(b)
    g = b.add_argument_group("bench tunnel (fastpptp/tools/benchtunnel.py; --json, --plot as above)")
    g.add_argument("--time", type=int, default=5, help="seconds per iperf3 test (1..60)")
    g.add_argument("--rounds", type=int, default=3, help="rounds, paths interleaved; the median (1..9)")
    g.add_argument("--only", metavar="PATH,...", help="veth, fastpptp-{raw,packet,xdp}, "
                   "fastpptp-mppe128-{raw,packet,xdp}, openvpn")
    g.add_argument("--gre-io", dest="gre_io_modes", metavar="MODE,...",
                   help="only the fastpptp paths on these GRE ports (raw,packet,xdp)")
    g.add_argument("--cpu-profile", action="store_true",
                   help="perf record -a during each tcp1 test: where the CPU goes per Gbit/s (needs perf)")
    if argv and argv[0] == "server":
        return server_main(argv[1:])
    if argv and argv[0] == "client":
        return client_main(argv[1:])
    args = p.parse_args(argv)
    if args.cmd in ("sessions", "status", "terminate", "rate-limit"):
        return _control_command(args)
    if args.cmd == "demo":
        from .tools.demo import run_demo
        return run_demo(json_out=args.json, nbytes=args.bytes)
    if args.cmd == "bench":
        if args.what == "sessions":
            return _sessions_bench(p, args)
        if args.what == "dataplane":
            from .tools.benchcmd import run_dataplane_bench
            return run_dataplane_bench(json=args.json)
        from .tools.benchtunnel import parse_options, run_tunnel_bench
        try:
            seconds, rounds, paths = parse_options(args)
        except ValueError as exc:
            p.error(f"bench tunnel: {exc}")
        return run_tunnel_bench(json=args.json, seconds=seconds, paths=paths, rounds=rounds, plot=args.plot,
                                cpu_profile=args.cpu_profile)
    return 2


if __name__ == "__main__":
    sys.exit(main())
