"""The systemd units in contrib/: parsed as INI and held to what the products do (Type=notify
with the notifications fastpptp.sdnotify sends, reload = SIGHUP, a command line our own
parsers accept, the capabilities and the device the data plane needs), then, where systemd is
installed, ``systemd-analyze verify`` (which must not complain about any line of ours)."""
from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import tomllib

import pytest

from fastpptp.cli import client_parser, server_parser
from fastpptp.status import DEFAULT_CONTROL_SOCKET
from support import paths

CONTRIB = paths.REPO / "contrib"
UNITS = ("fastpptp-server.service", "fastpptp-client@.service")


class UnitFile(configparser.ConfigParser):
    """systemd's syntax: INI with repeatable keys (the last wins for the ones we read), no
    interpolation, case-sensitive keys."""

    def __init__(self) -> None:
        super().__init__(strict=False, interpolation=None, comment_prefixes=("#", ";"),
                         empty_lines_in_values=False)

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def _unit(name: str) -> UnitFile:
    p = UnitFile()
    p.read(CONTRIB / name, encoding="utf-8")
    return p


def _scripts() -> dict[str, str]:
    with open(paths.REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


@pytest.mark.parametrize("name", UNITS)
def test_notify_service_basics(name):
    u = _unit(name)
    assert set(u.sections()) == {"Unit", "Service", "Install"}
    s = u["Service"]
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert int(s["WatchdogSec"].rstrip("s")) >= 10       # pings every half of it from the loop
    assert s["Restart"] == "on-failure"
    assert "network-online.target" in u["Unit"]["After"] and "network-online.target" in u["Unit"]["Wants"]
    assert u["Install"]["WantedBy"] == "multi-user.target"
    # the data plane: TUN devices, addresses and routes; the raw GRE socket
    caps = set(s["CapabilityBoundingSet"].split())
    assert {"CAP_NET_ADMIN", "CAP_NET_RAW"} <= caps
    assert set(s["AmbientCapabilities"].split()) <= caps
    assert s["DeviceAllow"] == "/dev/net/tun rw"
    assert s.get("PrivateDevices", "no") == "no"           # it would hide /dev/net/tun
    families = set(s["RestrictAddressFamilies"].split())
    assert {"AF_INET", "AF_UNIX", "AF_NETLINK"} <= families  # TCP+GRE, notify+status, pyroute2
    assert s["NoNewPrivileges"] == "yes"


def test_server_unit_runs_our_command_in_the_foreground_and_reloads_with_sighup():
    s = _unit("fastpptp-server.service")["Service"]
    argv = shlex.split(s["ExecStart"])
    assert os.path.basename(argv[0]) == "fastpptp-server" and "fastpptp-server" in _scripts()
    args = server_parser().parse_args(argv[1:])
    assert args.foreground          # -f: the process systemd started is the one that notifies
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "CAP_NET_BIND_SERVICE" in s["CapabilityBoundingSet"].split()      # port 1723
    # the status socket's directory is the unit's runtime directory
    assert os.path.dirname(DEFAULT_CONTROL_SOCKET) == "/run/" + s["RuntimeDirectory"]


def test_client_unit_instance_names_its_files():
    s = _unit("fastpptp-client@.service")["Service"]
    assert s["EnvironmentFile"] == "/etc/fastpptp/client/%i.conf"
    assert s["LoadCredential"] == "password:/etc/fastpptp/client/%i.password"
    argv = shlex.split(s["ExecStart"])
    assert os.path.basename(argv[0]) == "fastpptp-client" and "fastpptp-client" in _scripts()
    # as systemd expands it for an instance "office" with SERVER= and ARGS= from its .conf
    words = {"$SERVER": ["vpn.example.net"], "$ARGS": ["--route", "203.0.113.0/24"]}
    expanded = [w for a in argv[1:] for w in words.get(a, [a.replace("${CREDENTIALS_DIRECTORY}", "/run/c")
                                                            .replace("%i", "office")])]
    args = client_parser().parse_intermixed_args(expanded)
    assert args.server == "vpn.example.net" and args.route == ["203.0.113.0/24"]
    assert args.password_file == "/run/c/password"
    assert args.pppd_options == ["file", "/etc/fastpptp/client/office.options"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify(tmp_path, name):
    # verify wants ExecStart= to exist: point it at stand-ins (the commands are checked above)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for prog in _scripts():
        (bindir / prog).symlink_to(shutil.which("true") or "/bin/true")
    text = (CONTRIB / name).read_text().replace("/usr/local/bin/", f"{bindir}/")
    unit = tmp_path / name.replace("@.", "@office.")      # an instance of the template
    unit.write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60)
    ours = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and ours == [], done.stdout + done.stderr
