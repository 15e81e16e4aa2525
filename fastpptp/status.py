"""The server's local control socket and ``fastpptp status``.

Protocol: one request line (``status``) on a Unix stream socket, one JSON document back.
The socket is created mode 0600 (it shows user names and addresses).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Callable

log = logging.getLogger("fastpptp.status")

DEFAULT_CONTROL_SOCKET = "/run/fastpptp/fastpptp-server.sock"
MAX_REQUEST = 256


class StatusServer:
    def __init__(self, path: str, snapshot: Callable[[], dict]):
        self.path = path
        self._snapshot = snapshot
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        finally:
            os.umask(old)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            cmd = line[:MAX_REQUEST].decode(errors="replace").strip()
            if cmd in ("status", ""):
                body = self._snapshot()
            else:
                body = {"error": f"unknown request {cmd[:40]!r}"}
            writer.write(json.dumps(body).encode() + b"\n")
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("status request failed")
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def query_status(path: str = DEFAULT_CONTROL_SOCKET, timeout: float = 5.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(b"status\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if sum(map(len, chunks)) > 64 * 1024 * 1024:
                raise ValueError("status reply too large")
    return json.loads(b"".join(chunks))


def format_status(doc: dict) -> str:
    rows = [("USER", "PEER", "IFACE", "LOCAL", "REMOTE", "AUTH", "MPPE", "UPTIME", "RX PKTS", "TX PKTS",
             "DROPS")]
    for s in doc.get("sessions", []):
        rows.append((str(s.get("user") or "-"), str(s.get("peer")), str(s.get("interface") or "-"),
                     str(s.get("local_ip") or "-"),
                     str(s.get("remote_ip") or "-"), str(s.get("auth") or "-"), str(s.get("mppe") or "none"),
                     f"{s.get('uptime_s', 0):.0f}s", str(s.get("rx_packets", 0)), str(s.get("tx_packets", 0)),
                     str(sum(s.get("drops", {}).values()))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
