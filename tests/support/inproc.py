"""Products run in-process: a TUN fake the engine reads and writes as it would a TUN (a
SOCK_SEQPACKET socketpair), and the IPv4/UDP packets the tests push through it."""
from __future__ import annotations

import asyncio
import socket
import struct


class FakeTun:
    """A TUN stand-in: the engine owns ``fd``; the test reads/writes ``peer``."""

    def __init__(self, name):
        self.name = name or "fake"
        self._engine_end, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.fd = self._engine_end.fileno()
        self.vnet_hdr_len = 0
        self.peer.setblocking(False)

    def close(self):
        self._engine_end.close()
        self.peer.close()


def udp_packet(src: str, dst: str, payload: bytes, sport=40000, dport=9) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:] + udp


async def recv_packet(tun: FakeTun, timeout=5.0) -> bytes:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            return tun.peer.recv(65536)
        except BlockingIOError:
            await asyncio.sleep(0.01)
    raise AssertionError("no packet came out of the tunnel")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_up(client, task, timeout=20.0) -> bool:
    """True once an in-process ``Client`` is up; False when its task ended or ``timeout``."""
    await asyncio.wait({task, asyncio.ensure_future(client.up.wait())}, timeout=timeout,
                       return_when=asyncio.FIRST_COMPLETED)
    return client.up.is_set()
