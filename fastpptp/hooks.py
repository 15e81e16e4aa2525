"""pppd-compatible ip-up / ip-down hook scripts.

pppd runs ``/etc/ppp/ip-up`` with six arguments — interface, tty device, speed, local address,
remote address, ipparam — and an environment describing the link (pppd(8), "SCRIPTS").  Router
scripts written for pppd key off exactly these, so fastpptp passes the same ones.  PPTP has no
tty; like pptpd's pppd (which runs on a pty) we pass the interface name there and speed 0.
"""
from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger("fastpptp.hooks")

HOOK_TIMEOUT = 30.0


def hook_env(*, ifname: str, local: str, remote: str, peer: str | None, ipparam: str | None,
             linkname: str | None = None, dns: tuple = (), connect_time: int | None = None,
             bytes_sent: int | None = None, bytes_rcvd: int | None = None) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "IFNAME": ifname, "DEVICE": ifname, "IPLOCAL": local, "IPREMOTE": remote,
        "SPEED": "0", "ORIG_UID": str(os.getuid()), "PPPLOGNAME": "root",
        "PPPD_PID": str(os.getpid()),
    }
    if peer:
        env["PEERNAME"] = peer
    if linkname:
        env["LINKNAME"] = linkname
    if ipparam:
        env["IPPARAM"] = ipparam
    for i, d in enumerate(dns[:2], 1):
        env[f"DNS{i}"] = str(d)
    if dns:
        env["USEPEERDNS"] = "1"
    if connect_time is not None:
        env["CONNECT_TIME"] = str(connect_time)
    if bytes_sent is not None:
        env["BYTES_SENT"] = str(bytes_sent)
    if bytes_rcvd is not None:
        env["BYTES_RCVD"] = str(bytes_rcvd)
    return env


async def run_hook(script: str | None, *, ifname: str, local: str, remote: str,
                   ipparam: str | None = None, **env_kw) -> int | None:
    """Run one hook script if it exists and is executable; returns its exit status."""
    if not script or not os.path.isfile(script) or not os.access(script, os.X_OK):
        return None
    args = [script, ifname, ifname, "0", local, remote, ipparam or ""]
    env = hook_env(ifname=ifname, local=local, remote=remote, ipparam=ipparam, **env_kw)
    try:
        proc = await asyncio.create_subprocess_exec(*args, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        log.warning("hook %s could not start: %s", script, exc)
        return None
    try:
        _, err = await asyncio.wait_for(proc.communicate(), HOOK_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("hook %s killed after %.0f s", script, HOOK_TIMEOUT)
        return None
    if proc.returncode:
        log.warning("hook %s exited %d: %s", script, proc.returncode,
                    err.decode(errors="replace").strip()[:200])
    return proc.returncode
