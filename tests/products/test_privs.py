"""fastpptp.privs (issue 10, least privilege): the plan and its order of calls on a fake
kernel, the mode-bit checks, the command-line flags, and the real syscalls in a child process
(capabilities are per thread, so the test process itself is never touched)."""
from __future__ import annotations

import errno
import json
import os
import pwd
import subprocess
import sys
import tempfile
import textwrap

import pytest

from fastpptp import privs
from fastpptp.cli import client_parser, server_parser
from fastpptp.privs import (CAP_BPF, CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, CAP_NET_RAW,
                            CAP_SETGID, CAP_SETPCAP, CAP_SETUID, CapSets, Identity, PrivilegeError,
                            Privileges, RunAs, mask, readable_by)

NET = mask([CAP_NET_ADMIN, CAP_NET_RAW])
ALL = (1 << 41) - 1
NOBODY = pwd.getpwnam("nobody")


class FakeKernel:
    """The calling thread's credentials, with the kernel's rules that matter here: capset
    never adds to permitted, a uid change from root clears effective (and permitted and
    ambient unless keepcaps), ambient needs permitted and inheritable."""

    def __init__(self, caps: int = ALL, uid: int = 0):
        self.sets = CapSets(caps, caps, 0)
        self.bounding = ALL
        self.uid = uid
        self.gid = uid
        self.groups: tuple[int, ...] = ()
        self.nnp = False
        self.keepcaps = False
        self.ambient = 0
        self.ambient_supported = True
        self.calls: list[str] = []

    def capget(self) -> CapSets:
        return self.sets

    def capset(self, sets: CapSets) -> None:
        self.calls.append(f"capset {sets.effective:x}/{sets.permitted:x}/{sets.inheritable:x}")
        if sets.permitted & ~self.sets.permitted or sets.effective & ~sets.permitted:
            raise OSError(errno.EPERM, "capset")
        self.sets = sets
        self.ambient &= sets.permitted & sets.inheritable

    def bounding_drop(self, cap: int) -> None:
        assert self.sets.effective >> CAP_SETPCAP & 1
        self.bounding &= ~(1 << cap)

    def bounding_has(self, cap: int) -> bool:
        return bool(self.bounding >> cap & 1)

    def last_cap(self) -> int:
        return 40

    def set_no_new_privs(self) -> None:
        self.calls.append("nnp")
        self.nnp = True

    def set_keepcaps(self, on: bool) -> None:
        self.calls.append(f"keepcaps {int(on)}")
        self.keepcaps = on

    def ambient_raise(self, cap: int) -> None:
        if not self.ambient_supported:
            raise OSError(errno.EINVAL, "prctl")
        assert (self.sets.permitted & self.sets.inheritable) >> cap & 1
        self.ambient |= 1 << cap

    def switch_user(self, ident: Identity) -> None:
        self.calls.append(f"switch {ident.uid}")
        if not self.sets.effective & mask([CAP_SETUID, CAP_SETGID]) == mask([CAP_SETUID, CAP_SETGID]):
            raise OSError(errno.EPERM, "setresuid")
        self.groups, self.gid, self.uid = ident.groups, ident.gid, ident.uid
        permitted = self.sets.permitted if self.keepcaps else 0
        self.sets = CapSets(0, permitted, self.sets.inheritable)
        self.ambient = 0

    def euid(self) -> int:
        return self.uid


@pytest.fixture
def open_dir():
    """A directory anyone may enter (pytest's own tmp directories are root's 0700)."""
    d = tempfile.mkdtemp(prefix="fpprivs", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


def make_file(d: str, name: str, mode: int, uid: int = 0, gid: int = 0) -> str:
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write("x\n")
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


def test_capability_sets_of_the_products():
    assert privs.server_capabilities() == {CAP_NET_ADMIN, CAP_NET_RAW}
    assert privs.client_capabilities() == {CAP_NET_ADMIN, CAP_NET_RAW}
    assert privs.client_capabilities(bpf_port=True) == {CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF,
                                                        privs.CAP_PERFMON, privs.CAP_IPC_LOCK}
    assert privs.cap_names(NET) == "net_admin,net_raw" and privs.cap_names(0) == "none"


def test_limit_as_root_clears_the_bounding_set_and_keeps_what_start_up_needs():
    k = FakeKernel()
    p = Privileges.for_server(port=723, files=[], sys=k, check_code=False)    # below 1024
    p.limit()
    assert k.bounding == NET
    assert k.sets == CapSets(NET | mask([CAP_NET_BIND_SERVICE]), NET | mask([CAP_NET_BIND_SERVICE]), NET)
    assert k.nnp
    line = p.drop()
    assert k.sets == CapSets(NET, NET, NET) and k.ambient == NET and k.uid == 0
    assert k.bounding == NET
    assert line == ("least privilege: running as uid 0, capabilities kept: net_admin,net_raw (also ambient, "
                    "for ip-up/ip-down); bounding set net_admin,net_raw; no_new_privs")


def test_pptp_port_needs_no_bind_service_and_the_bpf_port_caps_last_only_through_start_up():
    k = FakeKernel()
    p = Privileges.for_server(port=1723, files=[], bpf_port=True, sys=k, check_code=False)
    p.limit()
    startup = NET | mask([CAP_BPF, privs.CAP_PERFMON, privs.CAP_IPC_LOCK, privs.CAP_SYS_ADMIN])
    assert k.sets == CapSets(startup, startup, NET) and k.bounding == NET
    p.drop()
    assert k.sets == CapSets(NET, NET, NET)


def test_drop_to_a_user_keeps_caps_across_the_switch_then_exactly_the_kept_ones():
    k = FakeKernel()
    p = Privileges.for_server(port=1723, files=[], run_as=RunAs("nobody"), sys=k, check_code=False)
    p.limit()
    startup = NET | mask([CAP_SETUID, CAP_SETGID])
    assert k.sets.permitted == startup
    p.drop()
    assert (k.uid, k.gid) == (NOBODY.pw_uid, NOBODY.pw_gid) and NOBODY.pw_gid in k.groups
    assert k.sets == CapSets(NET, NET, NET) and k.ambient == NET and not k.keepcaps
    order = [c.split()[0] for c in k.calls]
    assert order == ["capset", "nnp", "keepcaps", "switch", "keepcaps", "capset"]
    assert "running as user nobody (uid 65534, gid 65534)" in p.describe(NET)


def test_group_alone_and_numbers():
    ident = Identity.resolve(RunAs(group="nogroup"))
    assert ident is not None and ident.gid == NOBODY.pw_gid and ident.uid == os.geteuid()
    ident = Identity.resolve(RunAs(user=str(NOBODY.pw_uid)))
    assert ident is not None and ident.name == "nobody"
    assert Identity.resolve(RunAs()) is None
    with pytest.raises(PrivilegeError, match="no such user"):
        Identity.resolve(RunAs("fastpptp-no-such-user"))
    with pytest.raises(PrivilegeError, match="no such group"):
        Identity.resolve(RunAs("nobody", "fastpptp-no-such-group"))


def test_a_user_switch_needs_root():
    k = FakeKernel(caps=NET, uid=1000)
    p = Privileges.for_server(port=1723, files=[], run_as=RunAs("nobody"), sys=k, check_code=False)
    with pytest.raises(PrivilegeError, match="needs root"):
        p.limit()


def test_unprivileged_process_loses_nothing_it_does_not_have():
    k = FakeKernel(caps=0, uid=1000)
    p = Privileges.for_client(sys=k, check_code=False)
    p.drop()
    assert k.sets == CapSets(0, 0, 0) and k.bounding == ALL      # no CAP_SETPCAP: bounding untouched
    assert k.nnp


def test_kernel_without_ambient_set_is_not_fatal():
    k = FakeKernel()
    k.ambient_supported = False
    line = Privileges.for_client(sys=k, check_code=False).drop()
    assert k.sets.effective == NET and "ambient" not in line


def test_root_only_secrets_keep_dac_read_search_permitted_only(open_dir):
    secrets = make_file(open_dir, "chap-secrets", 0o600)
    k = FakeKernel()
    p = Privileges.for_server(port=1723, files=[secrets, None], run_as=RunAs("nobody"), sys=k,
                              check_code=False)
    assert p.unreadable == (secrets,)
    p.drop()
    dac = mask([CAP_DAC_READ_SEARCH])
    assert k.sets == CapSets(NET, NET | dac, NET) and k.ambient == NET    # never ambient
    with p.file_access():
        assert k.sets.effective == NET | dac
    assert k.sets.effective == NET
    ran = []
    p.around(lambda: ran.append(k.sets.effective))()
    assert ran == [NET | dac] and k.sets.effective == NET
    assert p.describe(NET).endswith(f"dac_read_search permitted only, raised for SIGHUP re-reads of {secrets}")


def test_secrets_readable_by_the_group_need_nothing(open_dir):
    secrets = make_file(open_dir, "chap-secrets", 0o640, gid=NOBODY.pw_gid)
    k = FakeKernel()
    p = Privileges.for_server(port=1723, files=[secrets], run_as=RunAs("nobody"), sys=k, check_code=False)
    assert p.unreadable == ()
    p.drop()
    assert k.sets == CapSets(NET, NET, NET)
    with p.file_access():
        assert k.sets.effective == NET


def test_unreadable_secrets_without_the_capability_to_keep_are_warned_about(open_dir, caplog):
    """systemd's User= with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW: nothing to keep."""
    secrets = make_file(open_dir, "chap-secrets", 0o600)
    k = FakeKernel(caps=NET, uid=NOBODY.pw_uid)
    p = Privileges.for_server(port=1723, files=[secrets], sys=k, check_code=False)
    line = p.drop()
    assert k.sets == CapSets(NET, NET, NET) and "dac_read_search" not in line
    assert f"{secrets} cannot be re-read on SIGHUP" in caplog.text
    with p.file_access():
        assert k.sets.effective == NET


def test_root_without_user_reads_its_own_0600_files(open_dir):
    secrets = make_file(open_dir, "chap-secrets", 0o600)
    assert Privileges.for_server(port=1723, files=[secrets], sys=FakeKernel(), check_code=False).unreadable == ()


@pytest.mark.parametrize("mode,owner,group,uid,groups,write,expect", [
    (0o600, 0, 0, 0, (), False, True),          # the owner (uid 0 here, as any other)
    (0o600, 0, 0, 5, (), False, False),
    (0o640, 0, 7, 5, (7,), False, True),        # the group
    (0o640, 0, 7, 5, (8,), False, False),
    (0o604, 0, 7, 5, (7,), False, False),       # group bits decide for a member, as the kernel's
    (0o604, 0, 7, 5, (8,), False, True),        # other
    (0o644, 0, 0, 0, (), True, True),
    (0o644, 1, 1, 5, (1,), True, False),
    (0o666, 1, 1, 5, (), True, True),
])
def test_readable_by_mode_bits(open_dir, mode, owner, group, uid, groups, write, expect):
    path = make_file(open_dir, "f", mode, uid=owner, gid=group)
    assert readable_by(path, uid, groups, write=write) is expect


def test_readable_by_needs_search_on_every_directory(open_dir):
    inner = os.path.join(open_dir, "inner")
    os.mkdir(inner, 0o700)
    try:
        path = make_file(inner, "f", 0o644)
        assert readable_by(path, 0, ())
        assert not readable_by(path, NOBODY.pw_uid, (NOBODY.pw_gid,))
        os.chmod(inner, 0o711)
        assert readable_by(path, NOBODY.pw_uid, (NOBODY.pw_gid,))
        os.unlink(path)
    finally:
        os.rmdir(inner)
    assert not readable_by(os.path.join(open_dir, "missing"), 0, ())


def test_refuses_a_user_who_cannot_read_the_installation_or_open_the_tun(open_dir, monkeypatch):
    hidden = [f for f in privs.code_files() if not readable_by(f, NOBODY.pw_uid, (NOBODY.pw_gid,))]
    assert os.__file__ in privs.code_files() and privs.__file__ in privs.code_files()
    if hidden:                              # e.g. a Python under root's 0700 home (this machine)
        with pytest.raises(PrivilegeError, match="cannot read"):
            Privileges.for_server(port=1723, files=[], run_as=RunAs("nobody"), sys=FakeKernel())
    else:
        Privileges.for_server(port=1723, files=[], run_as=RunAs("nobody"), sys=FakeKernel())
    monkeypatch.setattr(privs, "TUN_DEVICE", make_file(open_dir, "tun", 0o600))
    with pytest.raises(PrivilegeError, match="cannot open"):
        Privileges.for_client(run_as=RunAs("nobody"), sys=FakeKernel(), check_code=False)
    with pytest.raises(PrivilegeError, match="cannot open"):
        Privileges.for_server(port=1723, files=[], run_as=RunAs("nobody"), per_session_interfaces=True,
                              sys=FakeKernel(), check_code=False)
    # the shared TUN is opened before the drop: no need then
    Privileges.for_server(port=1723, files=[], run_as=RunAs("nobody"), sys=FakeKernel(), check_code=False)
    os.chmod(privs.TUN_DEVICE, 0o666)
    Privileges.for_client(run_as=RunAs("nobody"), sys=FakeKernel(), check_code=False)


def test_command_line_flags(tmp_path):
    args = server_parser().parse_args(["--user", "nobody", "--group", "nogroup"])
    assert (args.user, args.group, args.keep_privileges) == ("nobody", "nogroup", False)
    assert server_parser().parse_args(["--keep-privileges"]).keep_privileges
    c = client_parser().parse_intermixed_args(["192.0.2.1", "-u", "alice", "--run-as-user", "nobody",
                                               "--run-as-group", "nogroup", "persist"])
    assert (c.user, c.run_as_user, c.run_as_group) == ("alice", "nobody", "nogroup")   # -u: the PPP name
    conf = tmp_path / "pptpd.conf"
    conf.write_text("")
    base = ["-c", str(conf), "--remoteip", "198.51.100.2-9", "--secrets", str(tmp_path / "none"), "-f",
            "--log-level", "error"]
    for extra, message in ((["--user", "nobody", "--keep-privileges"], "exclude each other"),
                           (["--user", "fastpptp-no-such-user"], "no such user")):
        # a child process: server_main sets up the root logger
        r = subprocess.run([sys.executable, "-m", "fastpptp", "server", *base, *extra], capture_output=True,
                           text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(privs.__file__)))
        assert r.returncode == 2 and message in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "fastpptp", "client", "192.0.2.1", "-u", "alice", "-p", "x",
                        "--run-as-user", "nobody", "--keep-privileges"], capture_output=True, text=True,
                       timeout=60, cwd=os.path.dirname(os.path.dirname(privs.__file__)))
    assert r.returncode == 2 and "exclude each other" in r.stderr, r.stderr


CHILD = textwrap.dedent("""
    import json, os, sys, threading
    from fastpptp.privs import Privileges, RunAs
    user, secret = sys.argv[1] or None, sys.argv[2]
    p = Privileges.for_server(port=723, files=[secret], run_as=RunAs(user), check_code=False)
    p.limit()
    ev = threading.Event()
    t = threading.Thread(target=ev.wait, daemon=True)
    t.start()                               # started during start-up, as the engine's I/O thread
    p.drop()
    def status(path):
        with open(path) as f:
            return dict(l.split(":\\t", 1) for l in f.read().splitlines() if ":\\t" in l)
    out = {"tasks": {tid: status(f"/proc/self/task/{tid}/status") for tid in os.listdir("/proc/self/task")},
           "main": str(threading.get_native_id())}
    try:
        open(secret).read()
        out["plain_read"] = True
    except PermissionError:
        out["plain_read"] = False
    with p.file_access():
        out["raised_read"] = open(secret).read()
    import subprocess
    out["exec"] = subprocess.run(["cat", "/proc/self/status"], capture_output=True,
                                 text=True).stdout
    print(json.dumps(out))
""")


def run_child(user: str, secret: str) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, user, secret], capture_output=True, text=True, timeout=60,
                       cwd=os.path.dirname(os.path.dirname(privs.__file__)))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def hexcap(doc: dict, field: str) -> int:
    return int(doc[field], 16)


def test_real_drop_to_nobody_in_a_child(open_dir):
    secret = make_file(open_dir, "chap-secrets", 0o600)
    out = run_child("nobody", secret)
    main = out["tasks"][out["main"]]
    dac = mask([CAP_DAC_READ_SEARCH])
    assert main["Uid"].split() == [str(NOBODY.pw_uid)] * 4
    assert (hexcap(main, "CapEff"), hexcap(main, "CapPrm"), hexcap(main, "CapInh"), hexcap(main, "CapBnd"),
            hexcap(main, "CapAmb")) == (NET, NET | dac, NET, NET, NET)
    assert main["NoNewPrivs"].strip() == "1"
    others = [t for tid, t in out["tasks"].items() if tid != out["main"]]
    assert others
    for t in others:                        # the set*id broadcast left them nothing
        assert t["Uid"].split() == [str(NOBODY.pw_uid)] * 4
        assert hexcap(t, "CapEff") == hexcap(t, "CapPrm") == 0 and hexcap(t, "CapBnd") == NET
    assert out["plain_read"] is False and out["raised_read"] == "x\n"
    child = dict(line.split(":\t", 1) for line in out["exec"].splitlines() if ":\t" in line)
    assert hexcap(child, "CapEff") == NET and hexcap(child, "CapAmb") == NET    # what a hook gets


def test_real_drop_as_root_in_a_child(open_dir):
    secret = make_file(open_dir, "chap-secrets", 0o600)
    out = run_child("", secret)
    main = out["tasks"][out["main"]]
    assert main["Uid"].split() == ["0"] * 4
    assert (hexcap(main, "CapEff"), hexcap(main, "CapPrm"), hexcap(main, "CapBnd")) == (NET, NET, NET)
    bind = mask([CAP_NET_BIND_SERVICE])
    for tid, t in out["tasks"].items():    # start-up's threads: start-up's set, never all of root's
        if tid != out["main"]:
            assert hexcap(t, "CapEff") == NET | bind and hexcap(t, "CapBnd") == NET
    assert out["plain_read"] is True                      # root's own 0600 file
    child = dict(line.split(":\t", 1) for line in out["exec"].splitlines() if ":\t" in line)
    assert hexcap(child, "CapEff") == NET                 # uid 0 across execve: the bounding set
