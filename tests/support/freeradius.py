"""A real FreeRADIUS 3 for the tests: a generated configuration in a temp dir, started as a
child (``freeradius -X -d <dir>``, optionally inside a network namespace) and stopped by PID.

The configuration is Debian's /etc/freeradius/3.0 copied into the temp dir with our own
``clients.conf``, ``users`` (mods-config/files/authorize) and one virtual server (PAP,
CHAP, MS-CHAP; accounting to ``detail`` files under ``<dir>/radacct``); no EAP, no inner
tunnel, no privilege drop (the copy is root's).  Every client must send a
Message-Authenticator (``require_message_authenticator = yes``), and every Access-Accept /
-Reject carries one (``sign_responses``; FreeRADIUS 3.2.1 of Debian 12 adds it only when the
post-auth section puts one in the reply).

    with FreeRadius(users=[RadiusUser("alice", "pw", reply={"Session-Timeout": "3600"})],
                    secret="s3cret") as fr:
        fr.auth_address, fr.acct_address, fr.detail_records()

``freeradius_missing()`` is the skip reason when the binary is absent (``make test``
installs Debian's ``freeradius`` and ``freeradius-utils``), else None.
"""
from __future__ import annotations

import glob
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from fastpptp.net import netns as _netns
from fastpptp.tools.proc import stop_process

SYSTEM_CONFIG = pathlib.Path("/etc/freeradius/3.0")
# the modules our virtual server uses (and what the copied policies need)
MODULES = ("always", "attr_filter", "chap", "detail", "exec", "expr", "files", "mschap", "pap",
           "preprocess", "unpack", "utf8")


def freeradius_binary() -> str | None:
    for name in ("freeradius", "radiusd"):
        path = shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None)
        if path:
            return path
    return None


def freeradius_missing() -> str | None:
    if freeradius_binary() is None:
        return "FreeRADIUS not installed (Debian: apt-get install freeradius freeradius-utils)"
    if not SYSTEM_CONFIG.is_dir():
        return f"FreeRADIUS configuration {SYSTEM_CONFIG} is absent"
    if not os.access(SYSTEM_CONFIG / "radiusd.conf", os.R_OK):
        return f"{SYSTEM_CONFIG}/radiusd.conf is not readable (needs root or the freerad group)"
    return None


@dataclass(frozen=True)
class RadiusUser:
    """One entry of the users file: Cleartext-Password and reply attributes (name -> value
    in FreeRADIUS's syntax, e.g. ``{"Framed-IP-Address": "203.0.113.7"}``)."""
    name: str
    password: str
    reply: Mapping[str, str] = field(default_factory=dict)


def free_udp_port(address: str) -> int:
    """A UDP port free on ``address`` right now (the server binds it a moment later)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _quote(value: str) -> str:
    if re.fullmatch(r"[0-9.:/]+|0x[0-9a-fA-F]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FreeRadius:
    """One FreeRADIUS server; a context manager (start on enter, stop by PID on exit)."""

    def __init__(self, users: Sequence[RadiusUser], *, secret: str = "testing123",
                 address: str = "127.0.0.1", client_network: str = "127.0.0.0/8",
                 netns: str | None = None, auth_port: int | None = None,
                 acct_port: int | None = None, sign_responses: bool = True) -> None:
        self.users = list(users)
        self.secret = secret
        self.address = address
        self.client_network = client_network
        self.netns = netns
        self.sign_responses = sign_responses
        # ports are picked in our namespace; inside another one any port is free
        self.auth_port = auth_port or (free_udp_port(address) if netns is None else 1812)
        self.acct_port = acct_port or (free_udp_port(address) if netns is None else 1813)
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="fastpptp-freeradius-"))
        self.confdir = self.dir / "raddb"
        self.log_path = self.dir / "radiusd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def auth_address(self) -> tuple[str, int]:
        return (self.address, self.auth_port)

    @property
    def acct_address(self) -> tuple[str, int]:
        return (self.address, self.acct_port)

    # --- configuration ------------------------------------------------------------------------

    def write_config(self) -> None:
        shutil.copytree(SYSTEM_CONFIG, self.confdir, symlinks=True)
        conf = self.confdir / "radiusd.conf"
        text = conf.read_text()
        subs = {
            "raddbdir": str(self.confdir), "logdir": str(self.dir / "log"),
            "radacctdir": str(self.dir / "radacct"), "run_dir": str(self.dir / "run"),
        }
        for key, value in subs.items():
            text = re.sub(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
        # run as the caller (root): the copy is not readable by freerad
        text = re.sub(r"(?m)^(\s*)(user|group)\s*=.*$", r"\1# \2 (fastpptp tests: not dropped)", text)
        # answer a Reject at once (the default waits a second: slow tests, spurious retransmits)
        text = re.sub(r"(?m)^(\s*)reject_delay\s*=.*$", r"\1reject_delay = 0", text)
        conf.write_text(text)
        for sub in ("log", "radacct", "run"):
            (self.dir / sub).mkdir()

        enabled = self.confdir / "mods-enabled"
        for link in enabled.iterdir():
            if link.name not in MODULES:
                link.unlink()
        for site in (self.confdir / "sites-enabled").iterdir():
            site.unlink()
        (self.confdir / "sites-enabled" / "fastpptp").write_text(self._site())
        (self.confdir / "clients.conf").write_text(
            "client fastpptp-tests {\n"
            f"    ipaddr = {self.client_network}\n"
            f"    secret = {_quote(self.secret)}\n"
            "    require_message_authenticator = yes\n"
            "    nas_type = other\n"
            "}\n")
        users = self.confdir / "mods-config" / "files" / "authorize"
        users.write_text("".join(self._user_entry(u) for u in self.users))

    def _site(self) -> str:
        # FreeRADIUS before 3.2.5 signs Access-Accept/-Reject only when told to: the reply's
        # Message-Authenticator placeholder is computed on encode (the BlastRADIUS advice)
        sign = "        update reply {\n            Message-Authenticator := 0x00\n        }" \
            if self.sign_responses else ""
        return f"""server fastpptp {{
    listen {{
        type = auth
        ipaddr = {self.address}
        port = {self.auth_port}
    }}
    listen {{
        type = acct
        ipaddr = {self.address}
        port = {self.acct_port}
    }}
    authorize {{
        chap
        mschap
        files
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
        Auth-Type CHAP {{
            chap
        }}
        Auth-Type MS-CHAP {{
            mschap
        }}
    }}
    preacct {{
        acct_unique
    }}
    accounting {{
        detail
    }}
    post-auth {{
{sign}
        Post-Auth-Type REJECT {{
{sign}
        }}
    }}
}}
"""

    @staticmethod
    def _user_entry(user: RadiusUser) -> str:
        head = f"{_quote(user.name)} Cleartext-Password := {_quote(user.password)}"
        if not user.reply:
            return head + "\n\n"
        items = [f"    {k} = {_quote(v)}" for k, v in user.reply.items()]
        return head + "\n" + ",\n".join(items) + "\n\n"

    # --- process ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        binary = freeradius_binary()
        if binary is None:
            raise RuntimeError("FreeRADIUS is not installed")
        self.write_config()
        argv = [binary, "-X", "-d", str(self.confdir)]
        with open(self.log_path, "wb") as logf:
            if self.netns is None:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            else:
                self.proc = _netns.popen(self.netns, argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ready to process requests" in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log()[-3000:]
        self.stop()
        raise RuntimeError(f"FreeRADIUS did not start; log tail:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> FreeRadius:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # --- accounting records -------------------------------------------------------------------

    def detail_records(self) -> list[dict[str, str]]:
        """Every record of every ``detail`` file, as attribute name -> value (quotes removed)."""
        records: list[dict[str, str]] = []
        for path in sorted(glob.glob(str(self.dir / "radacct" / "*" / "detail-*"))):
            for block in pathlib.Path(path).read_text(errors="replace").split("\n\n"):
                rec: dict[str, str] = {}
                for line in block.splitlines():
                    if line.startswith(("\t", " ")) and "=" in line:
                        k, _, v = line.strip().partition(" = ")
                        rec[k] = v.strip('"')
                if rec:
                    records.append(rec)
        return records

    def wait_detail(self, predicate: Callable[[dict[str, str]], bool],
                    timeout: float = 5.0) -> list[dict[str, str]]:
        """Wait until a detail record satisfies ``predicate(record)``; returns all records."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.detail_records()
            if any(predicate(r) for r in recs) or time.monotonic() > deadline:
                return recs
            time.sleep(0.05)
