"""Named network namespaces, `ip netns`-compatible, through pyroute2.

A named namespace is a bind mount of ``/proc/<pid>/ns/net`` on ``/var/run/netns/NAME``, which
is exactly what ``ip netns add NAME`` makes, so ``ip netns exec NAME ...`` and these functions
see the same namespaces.

Entering a namespace (``setns(2)`` with ``CLONE_NEWNET``) changes the *calling thread* only;
threads started afterwards from that thread inherit it.  :func:`entered` restores the thread's
previous namespace on exit, even when the body raises, so a socket or TUN opened inside stays
bound to the namespace it was created in while the thread carries on where it was.

Errors are typed: :class:`NetnsExistsError`, :class:`NetnsNotFoundError`, all
:class:`NetnsError` (an ``OSError``, with ``errno`` set where the kernel gave one).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import TypeVar

from pyroute2 import netns as _pr_netns

NETNS_RUN_DIR = "/var/run/netns"
_CLONE_NEWNET = 0x40000000
# `ip netns` accepts any file name; we keep to a portable subset so names are safe in paths
# and in interface-name-derived strings.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

T = TypeVar("T")

__all__ = [
    "NETNS_RUN_DIR",
    "NetnsError",
    "NetnsExistsError",
    "NetnsNotFoundError",
    "create",
    "remove",
    "exists",
    "list_namespaces",
    "path",
    "open_fd",
    "entered",
    "run_in",
    "open_socket",
    "popen",
]


class NetnsError(OSError):
    """A namespace operation failed."""


class NetnsExistsError(NetnsError):
    """create() of a name that already exists."""


class NetnsNotFoundError(NetnsError):
    """The named namespace does not exist."""


_libc: ctypes.CDLL | None = None


def _get_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return _libc


def _setns(fd: int) -> None:
    if _get_libc().setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, f"setns: {os.strerror(err)}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise ValueError(f"invalid network namespace name: {name!r}")


def path(name: str) -> str:
    """The bind-mount path of ``name`` (what ``ip netns`` uses)."""
    _check_name(name)
    return os.path.join(NETNS_RUN_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def list_namespaces() -> list[str]:
    """Names under /var/run/netns, sorted."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def create(name: str) -> None:
    """Create the named namespace (like ``ip netns add``); it starts with ``lo`` down."""
    if exists(name):
        raise NetnsExistsError(errno.EEXIST, f"network namespace {name!r} exists")
    try:
        _pr_netns.create(name)
    except OSError as exc:
        raise NetnsError(exc.errno or errno.EIO, f"create netns {name!r}: {exc}") from exc
    if not exists(name):  # pyroute2 creates it in a child process: verify the result
        raise NetnsError(errno.EIO, f"create netns {name!r}: mount point missing")


def remove(name: str, *, missing_ok: bool = False) -> None:
    """Delete the named namespace (like ``ip netns del``).

    The namespace itself lives on while a process or an fd still holds it; its interfaces
    (veth ends, TUNs) disappear when the last holder goes.
    """
    if not exists(name):
        if missing_ok:
            return
        raise NetnsNotFoundError(errno.ENOENT, f"network namespace {name!r} not found")
    try:
        _pr_netns.remove(name)
    except OSError as exc:
        raise NetnsError(exc.errno or errno.EIO, f"remove netns {name!r}: {exc}") from exc


def open_fd(name: str) -> int:
    """Open the namespace file (O_RDONLY|O_CLOEXEC); the caller closes the fd."""
    try:
        return os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetnsNotFoundError(errno.ENOENT, f"network namespace {name!r} not found") from exc


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside ``name``; restore the old namespace after."""
    target = open_fd(name)
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            # If this fails the thread is stranded in the wrong namespace: let it raise.
            _setns(saved)
    finally:
        os.close(saved)
        os.close(target)


def run_in(name: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Call ``fn(*args, **kwargs)`` with this thread inside ``name`` and return its result."""
    with entered(name):
        return fn(*args, **kwargs)


def open_socket(
    name: str, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM, proto: int = 0
) -> socket.socket:
    """A socket created inside ``name`` (it stays bound to that namespace)."""
    with entered(name):
        return socket.socket(family, type, proto)


def popen(name: str, argv: list[str], **kwargs) -> subprocess.Popen:
    """Start ``argv`` inside ``name`` (like ``ip netns exec``, without ``ip``).

    The child enters the namespace between fork and exec; the returned Popen's pid is the
    command's own, so it can be signalled by PID.
    """
    fd = open_fd(name)
    _get_libc()  # load libc before fork: the child only calls into it

    def enter() -> None:  # runs in the child only
        _setns(fd)

    try:
        return subprocess.Popen(argv, preexec_fn=enter, pass_fds=(fd,), **kwargs)
    finally:
        os.close(fd)
