"""TUN devices with virtio-net offloads (IFF_VNET_HDR, TUNSETOFFLOAD).

Why: a plain TUN costs one read()/write() syscall per packet.  With IFF_VNET_HDR and
TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN [| TUN_F_USO4 | TUN_F_USO6])
the kernel hands us TCP (and UDP GSO) super-packets of up to 64 KB per read, each preceded by a
struct virtio_net_hdr, and accepts such super-packets on write; the engine cuts/glues them with
fastpptp._offload (tso_segment / gro_coalesce).

Wire format of every read/write on a device opened with vnet_hdr:
    [virtio_net_hdr, vnet_hdr_len = 12 bytes, host byte order][IP packet]
We ask for the 12-byte header (TUNSETVNETHDRSZ) -- see fastpptp/_offload.pxd for why.

Fallbacks, each logged once at WARNING and visible on the returned TunDevice:
* the kernel refuses TUNSETOFFLOAD (or TUNSETVNETHDRSZ): the device is reopened without
  IFF_VNET_HDR -> one packet per read, no header (vnet_hdr_len 0, offloads_enabled False);
* USO flags unknown to an older kernel (< 6.2, EINVAL): retried without them.

Bringing the link up, addresses and MTU are fastpptp.net.netlink's job.  The ioctl numbers and
flags below come from include/uapi/linux/if_tun.h.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

TUN_PATH = "/dev/net/tun"
IFNAMSIZ = 16

# _IOW('T', nr, int) / _IOR('T', nr, unsigned int)
TUNSETIFF = 0x400454CA
TUNGETFEATURES = 0x800454CF
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNGETVNETHDRSZ = 0x800454D7
TUNSETVNETHDRSZ = 0x400454D8

# ifreq.ifr_flags
IFF_TUN = 0x0001
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

# TUNSETOFFLOAD argument
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40

VNET_HDR_LEN = 12            # struct virtio_net_hdr_mrg_rxbuf; == fastpptp._offload VNET_HDR_LEN
# A TUN read never exceeds the device's gso_max_size (64 KB; an IPv6 super-packet can be
# 65536 bytes, one more than IPv4's total length allows) plus the header.  A smaller buffer
# would silently truncate the packet.
MAX_READ = 65536 + VNET_HDR_LEN

# Tried in order; the first the kernel accepts wins.
OFFLOAD_SETS = (
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6,
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
)

_IFREQ = struct.Struct("16sH22x")     # struct ifreq: ifr_name, ifr_flags, padding to 40 bytes


class TunError(OSError):
    """Opening or configuring the TUN failed (errno set from the kernel)."""


class TunLike(Protocol):
    """A TUN device as the products use it: :class:`TunDevice`, or what a ``tun_factory``
    makes (tests: a socketpair stand-in).  ``vnet_hdr_len``: 12 when every read/write carries
    a virtio_net_hdr, else 0 (the engine is told which)."""

    @property
    def fd(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def vnet_hdr_len(self) -> int: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class TunDevice:
    """An open TUN queue.  `fd` is non-blocking and close-on-exec.

    vnet_hdr_len: 12 when every read/write carries a virtio_net_hdr, 0 otherwise.
    offloads_enabled: the kernel accepted TUNSETOFFLOAD (super-packets on read).
    offload_flags: the TUN_F_* set it accepted (0 when none).
    fallback_reason: why offloads are off although they were asked for, else "".
    """

    fd: int
    name: str
    vnet_hdr_len: int
    offloads_enabled: bool
    offload_flags: int = 0
    multi_queue: bool = False
    fallback_reason: str = ""
    _closed: bool = field(default=False, repr=False)

    def fileno(self) -> int:
        return self.fd

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the queue (idempotent); the last queue closed removes a non-persistent TUN."""
        if not self._closed:
            self._closed = True
            os.close(self.fd)

    def read(self, bufsize: int = MAX_READ) -> bytes:
        """One read: [vnet_hdr] + IP packet.  BlockingIOError when nothing is queued."""
        return os.read(self.fd, bufsize)

    def write(self, data: bytes) -> int:
        """One write: [vnet_hdr] + IP packet (the header is required when vnet_hdr_len)."""
        return os.write(self.fd, data)

    def read_packet(self) -> tuple[bytes, bytes]:
        """(vnet_hdr bytes or b"", IP packet); BlockingIOError when nothing is queued."""
        data = os.read(self.fd, MAX_READ)
        if len(data) < self.vnet_hdr_len:
            raise TunError(errno.EIO, f"short TUN read of {len(data)} bytes")
        return data[:self.vnet_hdr_len], data[self.vnet_hdr_len:]

    def write_packet(self, packet: bytes, vnet_hdr: bytes = b"") -> int:
        """Write one IP packet; a zero (GSO_NONE) header is supplied if none is given."""
        if self.vnet_hdr_len:
            if not vnet_hdr:
                vnet_hdr = bytes(self.vnet_hdr_len)
            if len(vnet_hdr) != self.vnet_hdr_len:
                raise ValueError(f"vnet_hdr must be {self.vnet_hdr_len} bytes")
            return os.write(self.fd, vnet_hdr + packet) - self.vnet_hdr_len
        if vnet_hdr:
            raise ValueError("this TUN has no vnet header")
        return os.write(self.fd, packet)

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_name(name: str | None) -> bytes:
    raw = (name or "").encode()
    if len(raw) >= IFNAMSIZ or b"/" in raw or b"\0" in raw or raw.strip() != raw:
        raise ValueError(f"invalid TUN name {name!r} (at most {IFNAMSIZ - 1} bytes)")
    return raw


def _open_queue(name: bytes, flags: int) -> tuple[int, str]:
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name, flags))
    except OSError as e:
        os.close(fd)
        raise TunError(e.errno, f"TUNSETIFF {name.decode() or '(auto)'}: {e.strerror}") from None
    return fd, _IFREQ.unpack(res)[0].rstrip(b"\0").decode()


def _enable_offloads(fd: int) -> tuple[int, str]:
    """TUNSETVNETHDRSZ(12) then the first TUNSETOFFLOAD set accepted: (flags, "") or (0, why)."""
    try:
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
    except OSError as e:
        return 0, f"TUNSETVNETHDRSZ({VNET_HDR_LEN}): {e.strerror}"
    why = ""
    for flags in OFFLOAD_SETS:
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, flags)
            return flags, ""
        except OSError as e:
            why = f"TUNSETOFFLOAD(0x{flags:x}): {e.strerror}"
            if e.errno != errno.EINVAL:
                break
    return 0, why


def open_tun(name: str | None, *, vnet_hdr: bool = True, offload: bool = True,
             multi_queue: bool = False) -> TunDevice:
    """Create (or attach a queue to, with multi_queue) the TUN `name` ("" / None: tunN).

    IFF_TUN | IFF_NO_PI, plus IFF_VNET_HDR when vnet_hdr, plus IFF_MULTI_QUEUE.  With
    offload (requires vnet_hdr) the 12-byte header and TSO/CSUM offloads are enabled; if the
    kernel refuses them the device is reopened without a vnet header and a warning says so.
    vnet_hdr without offload gives a 12-byte header on every packet but no super-packets.
    """
    raw = _check_name(name)
    base = IFF_TUN | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0)
    if not vnet_hdr:
        fd, ifname = _open_queue(raw, base)
        return TunDevice(fd, ifname, 0, False, multi_queue=multi_queue)

    fd, ifname = _open_queue(raw, base | IFF_VNET_HDR)
    flags, why = 0, ""
    if offload:
        flags, why = _enable_offloads(fd)
        if flags:
            return TunDevice(fd, ifname, VNET_HDR_LEN, True, flags, multi_queue)
    else:
        try:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            return TunDevice(fd, ifname, VNET_HDR_LEN, False, 0, multi_queue)
        except OSError as e:
            why = f"TUNSETVNETHDRSZ({VNET_HDR_LEN}): {e.strerror}"

    # Fallback: one packet per read, no header.  IFF_VNET_HDR cannot be cleared on this fd,
    # so open a fresh queue; closing the old one first lets a non-persistent device go away.
    log.warning("TUN %s: offloads refused (%s); falling back to one packet per read without "
                "a vnet header", ifname, why)
    os.close(fd)
    fd, ifname = _open_queue(ifname.encode(), base)
    return TunDevice(fd, ifname, 0, False, 0, multi_queue, fallback_reason=why)


def features() -> int:
    """TUNGETFEATURES: the IFF_* flags this kernel's TUN driver supports."""
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    try:
        buf = fcntl.ioctl(fd, TUNGETFEATURES, struct.pack("I", 0))
        return struct.unpack("I", buf)[0]
    finally:
        os.close(fd)
