"""Least privilege: after start-up keep only the capabilities the products need, and
optionally run as an unprivileged user (issue 10).

Theory of operation (Linux capabilities(7)):

1. :meth:`Privileges.limit`, before start-up, while the process has one thread: the bounding
   set is cleared of every capability but the kept ones (``CAP_NET_ADMIN``, ``CAP_NET_RAW``;
   ``CAP_BPF`` too once a BPF-based GRE port exists: :func:`server_capabilities`), the
   permitted and effective sets are cut to the kept ones plus what start-up still needs
   (``CAP_NET_BIND_SERVICE`` for a port below 1024, ``CAP_SETUID``/``CAP_SETGID`` to switch
   user, ``CAP_DAC_READ_SEARCH`` when the files re-read on SIGHUP need it, 3), and
   ``no_new_privs`` is set.  Capabilities, the bounding set and ``no_new_privs`` are
   per-thread on Linux and inherited by new threads: every thread start-up makes (the
   engine's I/O thread, executor and metrics threads) starts with this set, never with all
   of root's.
2. :meth:`Privileges.drop`, when start-up has ended (the server: after the TCP listener, the
   TUN, the raw GRE socket and the control socket exist; the client: before its first
   attempt, since every attempt opens its own TUN and GRE socket): with a user,
   ``PR_SET_KEEPCAPS`` then ``setgroups``/``setresgid``/``setresuid``.  glibc applies set*id
   to every thread; the kernel then clears the capabilities of every thread but the calling
   one (only it has keepcaps), so the other threads run as the user with none (without a
   user they keep 1's set: at most ``CAP_NET_BIND_SERVICE``/``CAP_DAC_READ_SEARCH`` more
   than the kept ones, no way to reach another thread's sets from here).  Then the
   calling thread's sets become the kept ones exactly, and the kept ones are raised in the
   ambient set, so ip-up/ip-down scripts (run by this thread) get ``CAP_NET_ADMIN`` and
   ``CAP_NET_RAW`` and nothing else -- as the user with ``--user``, as uid 0 without it
   (uid 0 gets at most the bounding set across execve).  pppd runs its scripts as root
   with every capability: a script that needs more (writing files the user cannot, setuid
   helpers: ``no_new_privs`` stops them) must change.  One log line says what was kept.
3. Files re-read on SIGHUP (chap-secrets, the pppd options file): when the user (or uid 0
   without ``CAP_DAC_OVERRIDE``) can read them by their mode, nothing is kept for them.
   Otherwise (pppd's default: ``/etc/ppp/chap-secrets`` root 0600) ``CAP_DAC_READ_SEARCH``
   stays in the permitted set only, and :meth:`Privileges.file_access` raises it into the
   effective set of the loop thread just for the re-read.  A compromised process could
   raise it too (read any file): make the files readable by the group given with
   ``--group`` (``chgrp fastpptp /etc/ppp/chap-secrets; chmod 0640``) and it is not kept.
   ``@FILE`` secrets are read when a user logs in, without it: they must be readable by
   the user.  The control socket keeps its owner (root) and mode 0600; it admits uid 0 and
   the uid the server had when it made the socket (status.py), so root's ``fastpptp
   sessions`` works and the unprivileged user's other processes do not get in.

Before any of it the constructor refuses a user who could not go on after the switch:
modules are imported lazily, so the Python installation and fastpptp must be readable by
the user, and when TUN devices are opened after start-up (the client, per-session
interfaces) so must ``/dev/net/tun`` (``CAP_NET_ADMIN`` creates the interface; opening the
file is a plain permission check).

Done with ctypes (``prctl``, ``capget``/``capset`` of glibc): five stable syscalls.  The
bindings considered: python-prctl (PyPI 1.8.1, 2020; a C extension built against libcap)
and libcap-ng's SWIG module (python3-cap-ng, Debian only, not on PyPI, so not declarable in
pyproject.toml); neither is per-process either (capset is per-thread, 1 handles that), and
both would add a dependency for these calls.  :class:`CapSys` is the one place they are
made; tests give :class:`Privileges` a fake.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import encodings
import errno
import grp
import importlib.util
import logging
import os
import pwd
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

log = logging.getLogger("fastpptp.privs")

# linux/capability.h
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_NET_BIND_SERVICE = 10
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_IPC_LOCK = 14
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

CAP_NAMES = {CAP_DAC_OVERRIDE: "dac_override", CAP_DAC_READ_SEARCH: "dac_read_search",
             CAP_SETGID: "setgid", CAP_SETUID: "setuid", CAP_SETPCAP: "setpcap",
             CAP_NET_BIND_SERVICE: "net_bind_service", CAP_NET_ADMIN: "net_admin",
             CAP_NET_RAW: "net_raw", CAP_PERFMON: "perfmon", CAP_BPF: "bpf",
             CAP_IPC_LOCK: "ipc_lock", CAP_SYS_ADMIN: "sys_admin"}

#: What opening a BPF-based GRE port (``--gre-io xdp|packet``, fastpptp/net/greport.py)
#: takes: CAP_BPF (programs, maps, links), CAP_PERFMON (the verifier refuses the programs'
#: pointer arithmetic "for !root" without it), CAP_IPC_LOCK (the AF_XDP UMEM is locked
#: memory; without it the per-user RLIMIT_MEMLOCK budget refuses it).  Attaching also takes
#: CAP_NET_ADMIN, which both products keep anyway.
BPF_PORT_CAPS = (CAP_BPF, CAP_PERFMON, CAP_IPC_LOCK)

# linux/prctl.h
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(Exception):
    """A privilege change the kernel refused, or a user/group that does not exist."""


def mask(caps: Iterable[int]) -> int:
    m = 0
    for c in caps:
        m |= 1 << c
    return m


def cap_list(m: int) -> list[int]:
    return [c for c in range(64) if m >> c & 1]


def cap_names(m: int) -> str:
    """``net_admin,net_raw`` (``none`` for the empty set)."""
    return ",".join(CAP_NAMES.get(c, f"cap{c}") for c in cap_list(m)) or "none"


def server_capabilities() -> frozenset[int]:
    """What the server needs after start-up: ``CAP_NET_ADMIN`` (per-session TUN devices,
    netlink routes and addresses, SO_*BUFFORCE), ``CAP_NET_RAW`` (raw GRE sockets).  A
    BPF-based GRE port needs :data:`BPF_PORT_CAPS` only while it is opened, at start-up: its
    maps are then updated through fds already held, which takes no capability."""
    return frozenset({CAP_NET_ADMIN, CAP_NET_RAW})


def client_capabilities(*, bpf_port: bool = False) -> frozenset[int]:
    """The client: every attempt opens a TUN (``CAP_NET_ADMIN``, also its routes) and a GRE
    port: the raw socket (``CAP_NET_RAW``) and, with ``bpf_port`` (``--gre-io`` not raw),
    an XDP or packet port (:data:`BPF_PORT_CAPS`), kept since a reconnect opens it again."""
    return frozenset({CAP_NET_ADMIN, CAP_NET_RAW} | (set(BPF_PORT_CAPS) if bpf_port else set()))


@dataclasses.dataclass(frozen=True)
class CapSets:
    """One thread's capability sets, as bit masks."""

    effective: int
    permitted: int
    inheritable: int


@dataclasses.dataclass(frozen=True)
class RunAs:
    """``--user`` / ``--group`` as given (names or numbers); None: keep the current one."""

    user: str | None = None
    group: str | None = None


@dataclasses.dataclass(frozen=True)
class Identity:
    """A resolved :class:`RunAs`: whom to become."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    @classmethod
    def resolve(cls, run_as: RunAs) -> "Identity | None":
        """Look the names up now (before any change: NSS may need files we lose later).
        Only ``--group``: the group changes, the uid stays."""
        if run_as.user is None and run_as.group is None:
            return None
        if run_as.user is not None:
            try:
                pw = pwd.getpwnam(run_as.user) if not run_as.user.isdigit() else pwd.getpwuid(int(run_as.user))
            except KeyError:
                raise PrivilegeError(f"no such user: {run_as.user}") from None
            name, uid, gid = pw.pw_name, pw.pw_uid, pw.pw_gid
        else:
            name, uid, gid = "", os.geteuid(), os.getegid()
        if run_as.group is not None:
            try:
                gr = grp.getgrnam(run_as.group) if not run_as.group.isdigit() else grp.getgrgid(int(run_as.group))
            except KeyError:
                raise PrivilegeError(f"no such group: {run_as.group}") from None
            gid = gr.gr_gid
        groups: tuple[int, ...] = (gid,)
        if name:                       # the user's supplementary groups, as login(1) would
            groups = tuple(dict.fromkeys([gid, *os.getgrouplist(name, gid)]))
        return cls(name or str(uid), uid, gid, groups)


TUN_DEVICE = "/dev/net/tun"


def readable_by(path: str, uid: int, groups: Iterable[int], *, write: bool = False) -> bool:
    """Whether ``uid`` with ``groups`` may read (and with ``write``, also write) ``path`` by
    its mode bits alone (no capabilities: uid 0 included): search on every directory above
    it, read (write) on the file.  False for a file that is missing (it may appear later,
    as root's)."""
    gids = set(groups)
    want = stat.S_IROTH | (stat.S_IWOTH if write else 0)

    def allowed(st: os.stat_result, bits: int) -> bool:   # bits: the "other" r/w/x bits
        if st.st_uid == uid:
            shift = 6
        elif st.st_gid in gids:
            shift = 3
        else:
            shift = 0
        return st.st_mode >> shift & bits == bits

    try:
        full = os.path.abspath(path)
        st = os.stat(full)
        parent = os.path.dirname(full)
        while True:
            if not allowed(os.stat(parent), stat.S_IXOTH):
                return False
            up = os.path.dirname(parent)
            if up == parent:
                break
            parent = up
    except OSError:
        return False
    return allowed(st, want)


def code_files() -> list[str]:
    """Files the user must be able to read after the switch: modules are imported lazily
    (fastpptp's own, codecs such as utf-16-le for MS-CHAP), so the standard library, this
    package and pyroute2 must be readable -- a Python under root's 0700 home is not."""
    files = [os.__file__, encodings.__file__, __file__]
    spec = importlib.util.find_spec("pyroute2")
    if spec is not None and spec.origin:
        files.append(spec.origin)
    return [f for f in files if f]


class CapSys(Protocol):
    """The calls :class:`Privileges` makes (the real ones: :class:`LinuxCapSys`)."""

    def capget(self) -> CapSets: ...

    def capset(self, sets: CapSets) -> None: ...

    def bounding_drop(self, cap: int) -> None: ...

    def bounding_has(self, cap: int) -> bool: ...

    def last_cap(self) -> int: ...

    def set_no_new_privs(self) -> None: ...

    def set_keepcaps(self, on: bool) -> None: ...

    def ambient_raise(self, cap: int) -> None: ...

    def switch_user(self, ident: Identity) -> None: ...

    def euid(self) -> int: ...


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class LinuxCapSys:
    """prctl(2), capget/capset(2) (version 3: two 32-bit words per set) through glibc.  All
    of them act on the calling thread only; set*id go through glibc, which applies them to
    every thread of the process."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                                     ctypes.c_ulong]
        self._libc.prctl.restype = ctypes.c_int

    def _prctl(self, op: int, a: int = 0, b: int = 0, c: int = 0, d: int = 0) -> int:
        r = int(self._libc.prctl(op, a, b, c, d))
        if r < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"prctl({op}): {os.strerror(e)}")
        return r

    def capget(self) -> CapSets:
        hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        if self._libc.capget(ctypes.byref(hdr), data) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"capget: {os.strerror(e)}")
        return CapSets(data[0].effective | data[1].effective << 32,
                       data[0].permitted | data[1].permitted << 32,
                       data[0].inheritable | data[1].inheritable << 32)

    def capset(self, sets: CapSets) -> None:
        hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        for i in (0, 1):
            shift = 32 * i
            data[i].effective = sets.effective >> shift & 0xFFFFFFFF
            data[i].permitted = sets.permitted >> shift & 0xFFFFFFFF
            data[i].inheritable = sets.inheritable >> shift & 0xFFFFFFFF
        if self._libc.capset(ctypes.byref(hdr), data) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"capset: {os.strerror(e)}")

    def bounding_drop(self, cap: int) -> None:
        self._prctl(PR_CAPBSET_DROP, cap)

    def bounding_has(self, cap: int) -> bool:
        return self._prctl(PR_CAPBSET_READ, cap) == 1

    def last_cap(self) -> int:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                return int(f.read())
        except (OSError, ValueError):
            return 40

    def set_no_new_privs(self) -> None:
        self._prctl(PR_SET_NO_NEW_PRIVS, 1)

    def set_keepcaps(self, on: bool) -> None:
        self._prctl(PR_SET_KEEPCAPS, 1 if on else 0)

    def ambient_raise(self, cap: int) -> None:
        self._prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)

    def switch_user(self, ident: Identity) -> None:
        os.setgroups(list(ident.groups))
        os.setresgid(ident.gid, ident.gid, ident.gid)
        os.setresuid(ident.uid, ident.uid, ident.uid)

    def euid(self) -> int:
        return os.geteuid()


class Privileges:
    """The two steps of the module docstring for one process: :meth:`limit` before
    start-up, :meth:`drop` after it, :meth:`file_access` around SIGHUP re-reads."""

    def __init__(self, keep: Iterable[int], *, run_as: RunAs | None = None,
                 startup: Iterable[int] = (), reread: Sequence[str] = (),
                 sys: CapSys | None = None, check_code: bool = True, open_tun_later: bool = False):
        """``check_code``: refuse a user who could not read the Python installation or
        fastpptp (:func:`code_files`); only tests that never switch for real turn it off.
        ``open_tun_later``: TUN devices are opened after the drop (the client's attempts, the
        server's per-session interfaces): refuse a user who may not open /dev/net/tun
        (CAP_NET_ADMIN lets one create the interface, not open the file)."""
        self.keep = mask(keep)
        self.identity = Identity.resolve(run_as or RunAs())
        self._sys: CapSys = sys if sys is not None else LinuxCapSys()
        self.reread = tuple(p for p in reread if p)
        ident = self.identity
        if ident is not None and check_code:
            hidden = [f for f in code_files() if not readable_by(f, ident.uid, ident.groups)]
            if hidden:
                raise PrivilegeError(
                    f"user {ident.name} cannot read {hidden[0]}: Python and fastpptp load modules "
                    f"after start-up, so they must be installed where the user can read them "
                    f"(not under /root), or run without --user")
        if ident is not None and open_tun_later and not readable_by(TUN_DEVICE, ident.uid, ident.groups,
                                                                    write=True):
            raise PrivilegeError(
                f"user {ident.name} cannot open {TUN_DEVICE}, and TUN devices are opened after "
                f"start-up: give the user (or --group) read-write access to it (most "
                f"distributions make it 0666), or run without --user")
        uid = ident.uid if ident is not None else self._sys.euid()
        groups = ident.groups if ident is not None else tuple(os.getgroups()) + (os.getegid(),)
        #: CAP_DAC_READ_SEARCH kept (permitted only) for the re-read files
        self.unreadable = tuple(p for p in self.reread if not readable_by(p, uid, groups))
        self.file_cap = mask([CAP_DAC_READ_SEARCH]) if self.unreadable else 0
        extra = mask(startup) | self.file_cap
        if ident is not None:
            extra |= mask([CAP_SETUID, CAP_SETGID])
        self.startup = extra
        self.limited = False
        self.dropped = False

    @classmethod
    def for_server(cls, *, port: int, files: Sequence[str | None], run_as: RunAs | None = None,
                   per_session_interfaces: bool = False, bpf_port: bool = False,
                   sys: CapSys | None = None, check_code: bool = True) -> "Privileges":
        """The server's plan: bind ``port`` during start-up, re-read ``files`` on SIGHUP, open
        a TUN per session with ``per_session_interfaces``."""
        startup = [CAP_NET_BIND_SERVICE] if port < 1024 else []
        if bpf_port:
            # opening the XDP/packet port, and CAP_SYS_ADMIN to name the XDP program already
            # attached to the interface (BPF_PROG_GET_FD_BY_ID: a stale one of ours is
            # replaced, someone else's left alone): start-up only
            startup += [*BPF_PORT_CAPS, CAP_SYS_ADMIN]
        return cls(server_capabilities(), run_as=run_as, startup=startup,
                   reread=[f for f in files if f], sys=sys, check_code=check_code,
                   open_tun_later=per_session_interfaces)

    @classmethod
    def for_client(cls, *, run_as: RunAs | None = None, bpf_port: bool = False,
                   sys: CapSys | None = None, check_code: bool = True) -> "Privileges":
        """The client's plan: every attempt opens a TUN and a GRE port."""
        return cls(client_capabilities(bpf_port=bpf_port), run_as=run_as, sys=sys, check_code=check_code,
                   open_tun_later=True)

    # ------------------------------------------------------------------ step 1
    def limit(self) -> None:
        """Before start-up: bounding set = the kept capabilities, permitted = effective = kept
        + start-up's, inheritable = kept, no_new_privs.  Without privileges (not root, no
        capabilities) nothing is taken away that is not already gone; ``--user`` then fails."""
        cur = self._sys.capget()
        if self.identity is not None and not cur.effective & mask([CAP_SETUID]):
            raise PrivilegeError("--user/--group needs root (CAP_SETUID, CAP_SETGID)")
        if cur.effective & mask([CAP_SETPCAP]):
            for cap in range(self._sys.last_cap() + 1):
                if not self.keep >> cap & 1 and self._sys.bounding_has(cap):
                    self._sys.bounding_drop(cap)
        want = (self.keep | self.startup) & cur.permitted
        try:
            self._sys.capset(CapSets(effective=want, permitted=want, inheritable=self.keep & want))
            self._sys.set_no_new_privs()
        except OSError as exc:
            raise PrivilegeError(f"cannot limit capabilities: {exc}") from exc
        self.limited = True

    # ------------------------------------------------------------------ step 2
    def drop(self) -> str:
        """After start-up: become the user (if any), keep only :attr:`keep` (+
        ``CAP_DAC_READ_SEARCH`` permitted-only when a re-read file needs it), raise the kept
        ones in the ambient set for the hook scripts.  Returns the line it logged."""
        if not self.limited:
            self.limit()
        ident = self.identity
        try:
            if ident is not None:
                self._sys.set_keepcaps(True)
                self._sys.switch_user(ident)
                self._sys.set_keepcaps(False)
            have = self._sys.capget().permitted
            keep = self.keep & have
            self._sys.capset(CapSets(effective=keep, permitted=keep | (self.file_cap & have),
                                     inheritable=keep))
        except OSError as exc:
            raise PrivilegeError(f"cannot drop privileges: {exc}") from exc
        ambient = True
        for cap in cap_list(keep):
            try:
                self._sys.ambient_raise(cap)
            except OSError as exc:             # EINVAL: a kernel before 4.3, no ambient set
                if exc.errno != errno.EINVAL:
                    raise PrivilegeError(f"cannot raise ambient {cap_names(1 << cap)}: {exc}") from exc
                ambient = False
        self.dropped = True
        if self.file_cap and not have & self.file_cap:
            log.warning("no CAP_DAC_READ_SEARCH to keep: %s cannot be re-read on SIGHUP (make it "
                        "readable by uid %d)", ", ".join(self.unreadable), self._sys.euid())
            self.file_cap = 0
        line = self.describe(keep, ambient=ambient)
        log.info("%s", line)
        return line

    def describe(self, keep: int, *, ambient: bool = True) -> str:
        ident = self.identity
        who = (f"user {ident.name} (uid {ident.uid}, gid {ident.gid})" if ident is not None
               else f"uid {self._sys.euid()}")
        text = (f"least privilege: running as {who}, capabilities kept: {cap_names(keep)}"
                f"{' (also ambient, for ip-up/ip-down)' if ambient and keep else ''}; "
                f"bounding set {cap_names(self.keep)}; no_new_privs")
        if self.file_cap:
            text += ("; dac_read_search permitted only, raised for SIGHUP re-reads of "
                     + ", ".join(self.unreadable))
        return text

    # ------------------------------------------------------------------ step 3
    @contextlib.contextmanager
    def file_access(self) -> Iterator[None]:
        """``CAP_DAC_READ_SEARCH`` effective in this thread for the block, when it was kept
        for the re-read files; otherwise nothing."""
        if not (self.dropped and self.file_cap):
            yield
            return
        cur = self._sys.capget()
        self._sys.capset(dataclasses.replace(cur, effective=cur.effective | self.file_cap))
        try:
            yield
        finally:
            self._sys.capset(dataclasses.replace(cur, effective=cur.effective & ~self.file_cap))

    def around(self, fn: Callable[[], None]) -> Callable[[], None]:
        """``fn`` run inside :meth:`file_access` (the SIGHUP handler)."""
        def run() -> None:
            with self.file_access():
                fn()
        return run
