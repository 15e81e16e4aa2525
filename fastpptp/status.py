"""The server's local control socket: ``fastpptp sessions``, ``terminate`` and ``rate-limit``.

Protocol: a Unix stream socket; the client sends one request line, the server answers one
JSON document and closes.  A request is a JSON object with ``cmd``:

* ``{"cmd": "sessions"}`` -> ``{"sessions": [...]}`` (the old plain line ``status`` still works);
* ``{"cmd": "terminate", "match": {"user": "alice"}, "soft": false}`` -> ``{"matched": N,
  "sessions": [session IDs]}``; ``match`` holds exactly one selector of :class:`SessionMatch`;
* ``{"cmd": "rate-limit", "session": ID, "rate": "2000/512"}`` -> ``{"matched": 0 | 1, ...}``;
* anything else -> ``{"error": "..."}``.

Who may talk to it: the socket file is created mode 0600 whatever the process umask, and each
connecting peer's credentials (``SO_PEERCRED``, taken by the kernel at connect time) are
checked: uid 0 or the server's own effective uid, anyone else gets ``{"error": "permission
denied"}`` and is logged.  The file mode alone would do on a sane system; the check also holds
when the directory or the mode were loosened by hand.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import struct
from typing import Any, Callable, Protocol

from .shaping import RateLimit, parse_rate

log = logging.getLogger("fastpptp.status")

DEFAULT_CONTROL_SOCKET = "/run/fastpptp/fastpptp-server.sock"
MAX_REQUEST = 4096
MAX_REPLY = 64 * 1024 * 1024
REQUEST_TIMEOUT = 5.0
_UCRED = struct.Struct("3i")            # struct ucred: pid, uid, gid


@dataclasses.dataclass(frozen=True)
class SessionMatch:
    """Which sessions a command (or a RADIUS Disconnect-Request) means: exactly one of
    ``user`` (the authenticated name), ``ip`` (the client's tunnel address), ``session``
    (the session ID), ``peer`` (the client's public address, RADIUS Calling-Station-Id) or
    ``all``."""

    user: str | None = None
    ip: str | None = None
    session: str | None = None
    peer: str | None = None
    all: bool = False

    def __post_init__(self) -> None:
        given = [v for v in (self.user, self.ip, self.session, self.peer) if v is not None]
        if len(given) + (1 if self.all else 0) != 1:
            raise ValueError("give exactly one of user, ip, session, peer, all")
        if any(not isinstance(v, str) or not v for v in given):
            raise ValueError("a selector is a non-empty string")

    def matches(self, *, session_id: str, user: str | None, ip: str | None, peer: str) -> bool:
        if self.all:
            return True
        if self.session is not None:
            return session_id == self.session
        if self.user is not None:
            return user == self.user
        if self.ip is not None:
            return ip == self.ip
        return peer == self.peer

    def to_json(self) -> dict[str, str | bool]:
        if self.all:
            return {"all": True}
        return {k: v for k, v in (("user", self.user), ("ip", self.ip), ("session", self.session),
                                  ("peer", self.peer)) if v is not None}

    @classmethod
    def from_json(cls, doc: object) -> "SessionMatch":
        if not isinstance(doc, dict) or not set(doc) <= {"user", "ip", "session", "peer", "all"}:
            raise ValueError("match: an object with one of user, ip, session, peer, all")
        if doc.get("all") not in (None, True):
            raise ValueError("match: all must be true")
        return cls(user=doc.get("user"), ip=doc.get("ip"), session=doc.get("session"),
                   peer=doc.get("peer"), all=doc.get("all") is True)

    def __str__(self) -> str:
        return "all" if self.all else " ".join(f"{k} {v}" for k, v in self.to_json().items())


class ControlHandler(Protocol):
    """The commands the control socket passes on (``fastpptp.server.Server`` has them)."""

    def terminate(self, match: SessionMatch, *, soft: bool = False,
                  reason: str = "administratively terminated") -> list[str]: ...

    def limit_session(self, session_id: str, rate: RateLimit) -> bool: ...


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


class StatusServer:
    """The control socket of a running server (see the module docstring)."""

    def __init__(self, path: str, snapshot: Callable[[], dict[str, Any]],
                 control: ControlHandler | None = None):
        self.path = path
        self._snapshot = snapshot
        self._control = control         # None: sessions only (terminate/rate-limit refused)
        self._server: asyncio.base_events.Server | None = None
        self.allowed_uids = frozenset({0, os.geteuid()})

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)              # no window in which the file is wider than 0600
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else -1
            # the request is read (bounded) even from a refused peer: closing a Unix socket
            # with unread data resets it, and the peer would not see why it was refused
            try:
                line: bytes | None = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
            except ValueError:                 # longer than MAX_REQUEST
                line = None
            body: dict[str, Any]
            if uid not in self.allowed_uids:
                log.warning("control socket: refused a client with uid %d", uid)
                body = {"error": "permission denied"}
            elif line is None:
                body = {"error": f"request longer than {MAX_REQUEST} bytes"}
            else:
                body = self.handle(line)
            writer.write(json.dumps(body).encode() + b"\n")
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("control request failed")
        finally:
            writer.close()

    def handle(self, line: bytes) -> dict[str, Any]:
        """One request line -> the reply document (never raises for a bad request)."""
        text = line.decode(errors="replace").strip()
        if text in ("", "status", "sessions"):          # the plain-line form of older clients
            return self._snapshot()
        try:
            req = json.loads(text)
        except ValueError:
            return {"error": f"unknown request {text[:40]!r}"}
        if not isinstance(req, dict):
            return {"error": "a request is a JSON object"}
        cmd = req.get("cmd")
        try:
            if cmd == "sessions":
                return self._snapshot()
            if cmd in ("terminate", "rate-limit") and self._control is None:
                return {"error": f"{cmd} is not available on this socket"}
            if cmd == "terminate" and self._control is not None:
                match = SessionMatch.from_json(req.get("match"))
                soft = req.get("soft", False)
                if not isinstance(soft, bool):
                    raise ValueError("soft must be true or false")
                ids = self._control.terminate(match, soft=soft)
                log.info("control: terminate %s%s: %d session(s)", match, " (soft)" if soft else "", len(ids))
                return {"matched": len(ids), "sessions": ids}
            if cmd == "rate-limit" and self._control is not None:
                sid, rate_text = req.get("session"), req.get("rate")
                if not isinstance(sid, str) or not isinstance(rate_text, str):
                    raise ValueError("rate-limit needs session and rate (strings)")
                rate = parse_rate(rate_text)
                found = self._control.limit_session(sid, rate)
                return {"matched": 1 if found else 0, "session": sid, "rate": rate.to_json()}
        except (ValueError, TypeError) as exc:
            return {"error": str(exc)}
        return {"error": f"unknown command {str(cmd)[:40]!r}"}

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except PermissionError:     # dropped privileges (fastpptp.privs): the next start unlinks it
            log.debug("control socket %s left behind (no write access to its directory)", self.path)


# ----------------------------------------------------------------------------- client side
def control_request(request: dict[str, Any], path: str = DEFAULT_CONTROL_SOCKET,
                    timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to a running server's control socket and return its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        size = 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY:
                raise ValueError("control socket reply too large")
    doc = json.loads(b"".join(chunks))
    if not isinstance(doc, dict):
        raise ValueError("control socket reply is not a JSON object")
    return doc


def query_status(path: str = DEFAULT_CONTROL_SOCKET, timeout: float = 5.0) -> dict[str, Any]:
    return control_request({"cmd": "sessions"}, path, timeout)


def _rate_text(rate: object) -> str:
    if not isinstance(rate, dict):
        return "-"
    down, up = rate.get("down_kbit", 0), rate.get("up_kbit", 0)
    return "unlimited" if not down and not up else f"{down}/{up}"


def format_status(doc: dict[str, Any]) -> str:
    rows = [("USER", "PEER", "IFACE", "LOCAL", "REMOTE", "AUTH", "MPPE", "RATE", "UPTIME",
             "RX PKTS", "TX PKTS", "DROPS", "SESSION")]
    for s in doc.get("sessions", []):
        rows.append((str(s.get("user") or "-"), str(s.get("peer")),
                     str(s.get("interface") or "-"), str(s.get("local_ip") or "-"),
                     str(s.get("remote_ip") or "-"), str(s.get("auth") or "-"), str(s.get("mppe") or "none"),
                     _rate_text(s.get("rate")),
                     f"{s.get('uptime_s', 0):.0f}s", str(s.get("rx_packets", 0)), str(s.get("tx_packets", 0)),
                     str(sum(s.get("drops", {}).values())), str(s.get("session_id") or "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
