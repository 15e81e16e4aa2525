"""Least privilege (issue 10) end to end: ``fastpptp server --user nobody`` and ``fastpptp
client --run-as-user nobody`` in the products lab keep exactly CAP_NET_ADMIN + CAP_NET_RAW
(the server also CAP_DAC_READ_SEARCH, permitted only, for the root-only chap-secrets), run as
nobody in every thread, and still bring sessions up, pass traffic, reload on SIGHUP, answer
root's ``fastpptp sessions`` and tear down cleanly."""
from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

import support.lab
from fastpptp.net import netlink
from support.lab import PY, TUN_SERVER, wait_until
from fastpptp.tools.demo import ping

pytestmark = pytest.mark.netns

NET = (1 << 12) | (1 << 13)               # CAP_NET_ADMIN | CAP_NET_RAW
DAC_READ_SEARCH = 1 << 2
NOBODY = pwd.getpwnam("nobody")


def _hidden_dir(path: str) -> str | None:
    """The top directory above ``path`` that others may not search into, plus its next
    component (``/root/.pyenv`` for a pyenv Python under root's 0700 home), or None."""
    parts = os.path.realpath(path).split("/")[1:]
    for i in range(len(parts)):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return os.path.join(d, parts[i])
    return None


def readable_python() -> list[str]:
    """The command prefix that runs ``python -m fastpptp`` so that nobody can read the Python
    installation and open /dev/net/tun after the drop, in a private mount namespace, without
    changing either for the rest of the machine: when the installation lies under a directory
    only root may enter (this machine's pyenv under /root), a tmpfs over the closed one shows
    that one directory; when /dev/net/tun is root's 0600 (this container), a 0666 node of the
    same device is bound over it, as most distributions ship it.  Empty when neither is needed."""
    # a venv's own prefix may be open while the interpreter it was made from (its stdlib:
    # sys.base_prefix) lies under root's home: both must be readable
    hidden_dirs = sorted({h for h in (_hidden_dir(sys.prefix), _hidden_dir(sys.base_prefix)) if h})
    tun_closed = os.stat("/dev/net/tun").st_mode & 0o006 != 0o006
    if not hidden_dirs and not tun_closed:
        return []
    steps = ["set -e"]
    for hidden in hidden_dirs:
        steps += ['d=$(mktemp -d /tmp/fpprivs-py.XXXXXX)', f'mount --bind {hidden} "$d"',
                  f"mount -t tmpfs -o mode=0755 fpprivs {os.path.dirname(hidden)}", f"mkdir -p {hidden}",
                  f'mount --bind "$d" {hidden}', 'umount "$d"', 'rmdir "$d"']
    if tun_closed:
        st = os.stat("/dev/net/tun")
        steps += ['t=$(mktemp -d /tmp/fpprivs-tun.XXXXXX)', 'mount -t tmpfs fpprivs "$t"',
                  f'mknod -m 0666 "$t/tun" c {os.major(st.st_rdev)} {os.minor(st.st_rdev)}',
                  'mount --bind "$t/tun" /dev/net/tun', 'umount -l "$t"', 'rmdir "$t"']
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            "; ".join(steps) + '; exec "$@"', "sh"]


@pytest.fixture
def lab_py(monkeypatch):
    """The lab's ``python -m fastpptp`` with :func:`readable_python` in front."""
    cmd = readable_python() + PY
    monkeypatch.setattr(support.lab, "PY", cmd)
    return cmd


def proc_status(pid: int, tid: int | None = None) -> dict[str, str]:
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    with open(path) as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


def caps(doc: dict[str, str], field: str) -> int:
    return int(doc[field], 16)


def uids(doc: dict[str, str]) -> set[int]:
    return {int(x) for x in doc["Uid"].split()}


def wait_dropped(lab, name="server.log", proc=None):
    wait_until(lambda: "least privilege: running as user nobody" in lab.log(name), 20,
               "privileges dropped", proc if proc is not None else lab.server)


@pytest.fixture
def shared_dir():
    """A directory nobody may write (up files, hook output) -- the lab's is root's 0700."""
    d = tempfile.mkdtemp(prefix="fpprivs", dir="/tmp")
    os.chmod(d, 0o1777)
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


def read_ups(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_server_as_nobody_session_reload_teardown(lab, lab_py):
    secrets = os.path.join(lab.tmp, "chap-secrets")
    os.chmod(secrets, 0o600)                           # root's, as /etc/ppp/chap-secrets
    lab.start_server("--user", "nobody")
    wait_dropped(lab)
    pid = lab.server.pid
    st = proc_status(pid)
    assert uids(st) == {NOBODY.pw_uid}
    assert {int(x) for x in st["Gid"].split()} == {NOBODY.pw_gid}
    assert caps(st, "CapEff") == NET
    assert caps(st, "CapPrm") == NET | DAC_READ_SEARCH    # raised only around SIGHUP re-reads
    assert caps(st, "CapInh") == NET
    assert caps(st, "CapAmb") == NET                      # what ip-up/ip-down get
    assert caps(st, "CapBnd") == NET
    assert st["NoNewPrivs"].strip() == "1"
    tasks = os.listdir(f"/proc/{pid}/task")
    assert len(tasks) > 1                                 # the engine's I/O thread at least
    for tid in tasks:                                     # capabilities are per thread
        t = proc_status(pid, int(tid))
        assert uids(t) == {NOBODY.pw_uid}, tid
        assert caps(t, "CapEff") & ~NET == 0 and caps(t, "CapBnd") == NET, (tid, t["CapEff"])
        assert caps(t, "CapPrm") & ~(NET | DAC_READ_SEARCH) == 0, tid
    # the control socket and the secrets keep root's ownership and modes
    ctl = os.stat(lab.ctl)
    assert ctl.st_uid == 0 and stat.S_IMODE(ctl.st_mode) == 0o600
    sec = os.stat(secrets)
    assert sec.st_uid == 0 and stat.S_IMODE(sec.st_mode) == 0o600

    p, up = lab.start_client(0, "user0", "pass0")
    wait_until(lambda: lab.ups(up), 60, "client up", p)
    assert ping(lab.clients[0], TUN_SERVER, count=2)
    # root's fastpptp sessions over the control socket of a server that runs as nobody
    cli = subprocess.run(PY + ["sessions", "--json", "--control-socket", lab.ctl], capture_output=True,
                         text=True, timeout=30)
    assert cli.returncode == 0, cli.stderr
    assert [s["user"] for s in json.loads(cli.stdout)["sessions"]] == ["user0"]
    # nobody itself is not let in (the server's uid at start-up was root's)
    nobody = ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups"]
    as_nobody = subprocess.run(readable_python() + nobody + PY + ["sessions", "--control-socket", lab.ctl],
                               capture_output=True, text=True, timeout=30)
    assert as_nobody.returncode == 1 and "permission denied" in as_nobody.stderr.lower(), as_nobody.stderr

    # SIGHUP: the root-only chap-secrets is re-read (CAP_DAC_READ_SEARCH raised just for it)
    with open(secrets, "a") as f:
        f.write("newbie * newpass *\n")
    lab.server.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded secrets and options" in lab.log("server.log"), 10, "reload", lab.server)
    assert "reload of" not in lab.log("server.log")
    assert caps(proc_status(pid), "CapEff") == NET        # lowered again
    p2, up2 = lab.start_client(1, "newbie", "newpass")
    wait_until(lambda: lab.ups(up2), 60, "new user up", p2)
    assert p.poll() is None
    assert sorted(s["user"] for s in lab.status()["sessions"]) == ["newbie", "user0"]
    assert ping(lab.clients[1], TUN_SERVER, count=1)

    # teardown: every call cleared, the exit status clean, the shared TUN gone
    lab.server.send_signal(signal.SIGTERM)
    assert lab.server.wait(20) == 0
    for proc in (p, p2):
        proc.wait(20)
    assert "least privilege" in lab.log("server.log")
    assert "Traceback" not in lab.log("server.log")
    assert "fpisrv0" not in {link.name for link in netlink.list_links(netns=lab.sns)}


def test_per_session_tun_and_hooks_as_nobody_and_client_as_nobody(lab, lab_py, shared_dir):
    """After the drop the server still opens a TUN per session (CAP_NET_ADMIN) and runs ip-up
    as nobody with the ambient CAP_NET_ADMIN/CAP_NET_RAW; the client runs as nobody too."""
    hook = os.path.join(shared_dir, "ip-up")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\n"
                f"{{ id -u; grep -E '^Cap(Eff|Amb)' /proc/self/status; echo \"$1\"; }} > {shared_dir}/hook.out\n")
    os.chmod(hook, 0o755)
    lab.start_server("--user", "nobody", "--per-session-interfaces", "--ip-up", hook)
    wait_dropped(lab)
    up = os.path.join(shared_dir, "up.json")
    p, _ = lab.start_client(0, "user0", "pass0", "--run-as-user", "nobody", "--up-file", up)
    wait_dropped(lab, "client0.log", p)
    cst = proc_status(p.pid)
    assert uids(cst) == {NOBODY.pw_uid}
    # --gre-io auto (the default): every attempt may open an XDP/packet port again, so the
    # client also keeps CAP_BPF, CAP_PERFMON and CAP_IPC_LOCK (fastpptp.privs.BPF_PORT_CAPS)
    from fastpptp.privs import BPF_PORT_CAPS
    client_caps = NET | sum(1 << c for c in BPF_PORT_CAPS)
    assert caps(cst, "CapEff") == client_caps and caps(cst, "CapPrm") == client_caps
    assert caps(cst, "CapBnd") == client_caps
    wait_until(lambda: read_ups(up), 60, "client up", p)
    assert ping(lab.clients[0], TUN_SERVER, count=2)
    names = {link.name for link in netlink.list_links(netns=lab.sns)}
    assert "fpisrv0" in names       # per-session unit 0 (prefix --interface), opened as nobody
    out = os.path.join(shared_dir, "hook.out")
    wait_until(lambda: os.path.exists(out) and open(out).read().count("\n") >= 4, 20, "ip-up ran")
    lines = open(out).read().split("\n")
    assert int(lines[0]) == NOBODY.pw_uid
    hook_caps = dict(line.split(":\t") for line in lines[1:3])
    assert int(hook_caps["CapEff"], 16) == NET and int(hook_caps["CapAmb"], 16) == NET
    assert lines[3] == "fpisrv0"
    # the client (as nobody) ends its session cleanly, the server removes the TUN
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    wait_until(lambda: lab.status()["sessions"] == [], 20, "session gone", lab.server)
    wait_until(lambda: "fpisrv0" not in {link.name for link in netlink.list_links(netns=lab.sns)}, 20,
               "fpisrv0 removed", lab.server)
    time.sleep(0.2)
    assert lab.server.poll() is None
