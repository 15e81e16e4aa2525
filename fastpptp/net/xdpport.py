"""Setting up the AF_XDP GRE port (fastpptp/_port_xdp.pyx) on one interface.

    port = open_xdp_port("eth0", ["198.51.100.2"], raw_gre_socket, batch=64)
    port.set_nexthop("203.0.113.9", "02:00:00:00:00:01")    # from the neighbour table
    ... engine uses port (GrePort contract) ...
    port.close()                                             # program detached, UMEM freed

``open_xdp_port`` does, in order (each step undone if a later one fails):

1. reads the interface (netlink): index, MAC, MTU, receive-queue count;
2. looks at what XDP program is already attached (netlink IFLA_XDP, names by id): none -> go
   on; one of ours (``fastpptp_*``) attached the legacy netlink way, i.e. left by an older
   run that could not detach it -> detached and replaced; one of ours held by a live BPF link
   (another fastpptp process) or anyone else's -> :class:`XdpUnavailable`, left untouched;
3. creates the address map (our local IPv4 addresses) and the XSKMAP, loads
   ``xdp_gre_redirect`` (fastpptp/net/bpf.py);
4. opens the port: one AF_XDP socket (copy mode) per receive queue, UMEM and rings, and puts
   each socket in the XSKMAP under its queue id;
5. attaches the program through a BPF link, native (driver) mode where the driver has it,
   generic otherwise (``mode``), so it goes away with the process, also after SIGKILL.

``xdp_unavailable_reason`` answers "could ``open_xdp_port`` work here?" without changing
anything, for ``--gre-io auto`` to pick another port with a one-line reason.
"""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import bpf

__all__ = ["XdpUnavailable", "LinkFacts", "open_xdp_port", "xdp_unavailable_reason",
           "xdp_facility_reason",
           "link_facts", "check_xdp_hook", "AF_XDP"]

AF_XDP = 44
XDP_HEADROOM = 256      # the kernel's headroom in front of a received frame (copy mode)
MAX_FRAME = 4096        # the largest AF_XDP chunk we use
MAX_QUEUES = 15         # _port_xdp.MAX_QUEUES
BIND_BUSY_WAIT = 3.0    # seconds to wait for a queue an old socket still holds

# capability bits (linux/capability.h)
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21
CAP_BPF = 39


class XdpUnavailable(OSError):
    """The XDP port cannot run here; ``str()`` says why in one line."""


@dataclass(frozen=True)
class LinkFacts:
    ifindex: int
    ifname: str
    mac: bytes
    mtu: int
    rx_queues: int


def _ifindex(ifname_or_index: str | int) -> int:
    if isinstance(ifname_or_index, int):
        return ifname_or_index
    try:
        return socket.if_nametoindex(ifname_or_index)
    except OSError:
        raise XdpUnavailable(errno.ENODEV, f"no interface {ifname_or_index!r}") from None


def link_facts(ifname_or_index: str | int) -> LinkFacts:
    """Index, name, MAC, MTU and receive-queue count of an interface (calling thread's
    namespace), from RTM_GETLINK."""
    from pyroute2 import IPRoute
    idx = _ifindex(ifname_or_index)
    with contextlib.closing(IPRoute()) as ipr:
        msgs = ipr.get_links(idx)
    if not msgs:
        raise XdpUnavailable(errno.ENODEV, f"no interface with index {idx}")
    m = msgs[0]
    mac = m.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00"
    return LinkFacts(idx, m.get_attr("IFLA_IFNAME") or str(idx),
                     bytes.fromhex(mac.replace(":", "")), int(m.get_attr("IFLA_MTU") or 1500),
                     int(m.get_attr("IFLA_NUM_RX_QUEUES") or 1))


def _cap_eff() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _caps_missing() -> str | None:
    eff = _cap_eff()

    def has(cap: int) -> bool:
        return bool(eff >> cap & 1)

    missing = []
    if not (has(CAP_BPF) or has(CAP_SYS_ADMIN)):
        missing.append("CAP_BPF")
    if not has(CAP_NET_ADMIN):
        missing.append("CAP_NET_ADMIN")
    if not has(CAP_NET_RAW):
        missing.append("CAP_NET_RAW")
    return f"no {', '.join(missing)}" if missing else None


def check_xdp_hook(ifindex: int, *, replace_stale: bool) -> str | None:
    """What is attached at the XDP hook of ``ifindex``: None if it is free (after removing a
    stale program of ours when ``replace_stale``), else the reason we may not take it."""
    for mode, info in bpf.iter_xdp_programs(ifindex):
        if info is None:
            continue      # detached while we looked
        if not info.ours:
            return (f"XDP program {info.name or '(unnamed)'!r} (id {info.id}) of someone else "
                    f"is attached to ifindex {ifindex}: left untouched")
        holder = bpf.xdp_link_holding(info.id)
        if holder is not None:
            return (f"our XDP program {info.name} (id {info.id}) on ifindex {ifindex} is held "
                    f"by BPF link {holder.id}: another fastpptp process runs there")
        if replace_stale:
            try:
                bpf.xdp_detach_legacy(ifindex, mode)
            except bpf.BpfError as exc:
                return f"could not detach stale XDP program {info.name} (id {info.id}): {exc}"
    return None


def xdp_facility_reason() -> str | None:
    """None if this process and kernel can run an XDP port at all (capabilities, AF_XDP,
    bpf() maps), else why not.  Interface-independent."""
    if os.uname().machine != "x86_64":
        return f"bpf() syscall number not known for {os.uname().machine}"
    caps = _caps_missing()
    if caps:
        return caps
    try:
        socket.socket(AF_XDP, socket.SOCK_RAW, 0).close()
    except OSError as exc:
        return f"no AF_XDP sockets in this kernel ({exc.strerror})"
    try:
        bpf.map_create(bpf.BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "fastpptp_probe").close()
    except OSError as exc:
        return f"bpf() cannot create an XSKMAP ({exc.strerror})"
    return None


def xdp_unavailable_reason(ifname_or_index: str | int, local_addrs: Iterable[str] = ()) -> str | None:
    """None if ``open_xdp_port`` can work on this interface, else one line saying why not
    (missing capabilities, no AF_XDP or bpf(), MTU too large for a frame, someone else's
    XDP program attached, ...).  Changes nothing."""
    reason = xdp_facility_reason()
    if reason:
        return reason
    for a in local_addrs:
        try:
            ipaddress.IPv4Address(a)
        except ValueError:
            return f"local address {a!r} is not IPv4"
    try:
        facts = link_facts(ifname_or_index)
    except OSError as exc:
        return str(exc)
    if facts.mtu + 14 + XDP_HEADROOM > MAX_FRAME:
        return f"MTU {facts.mtu} of {facts.ifname} does not fit a {MAX_FRAME}-byte AF_XDP frame"
    return check_xdp_hook(facts.ifindex, replace_stale=False)


class _Detach:
    """Owned by the port: BPF_LINK_DETACH at close, even if a fork kept a copy of the fd."""

    def __init__(self, link: bpf.BpfLink) -> None:
        self.link = link

    def close(self) -> None:
        self.link.detach()


def open_xdp_port(ifname_or_index: str | int, local_addrs: Iterable[str], raw_socket: Any,
                  batch: int = 64, *, mode: str = "auto", frames: int = 4096,
                  src: str | None = None, queues: int | None = None) -> Any:
    """The AF_XDP GRE port on one interface (module doc).  ``raw_socket``: the kernel's raw
    IPPROTO_GRE socket, the slow path (stays the caller's); ``mode``: "auto" (native, else
    generic), "native" or "generic"; ``src``: our source address (default: the first of
    ``local_addrs``).  XdpUnavailable (with the reason) or OSError on failure."""
    from fastpptp._greport import RawPort
    from fastpptp._port_xdp import XdpPort

    if mode not in ("auto", "native", "generic"):
        raise ValueError(f"mode {mode!r}: auto, native or generic")
    addrs = [str(ipaddress.IPv4Address(a)) for a in local_addrs]
    if not addrs:
        raise ValueError("no local IPv4 address")
    facts = link_facts(ifname_or_index)
    reason = check_xdp_hook(facts.ifindex, replace_stale=True)
    if reason:
        raise XdpUnavailable(errno.EBUSY, reason)
    nq = min(queues or facts.rx_queues, MAX_QUEUES)
    with contextlib.ExitStack() as undo:
        addr_map = bpf.create_addr_map(addrs)
        undo.callback(addr_map.close)
        xsks = bpf.map_create(bpf.BPF_MAP_TYPE_XSKMAP, 4, 4, max(nq, 1), bpf.MAP_NAME_XSKS)
        undo.callback(xsks.close)
        prog = bpf.load_xdp_gre_redirect(addr_map, xsks)
        undo.callback(prog.close)
        slow = RawPort(raw_socket, batch)
        deadline = time.monotonic() + BIND_BUSY_WAIT
        while True:
            try:
                port = XdpPort(facts.ifindex, slow, mac=facts.mac, src=src or addrs[0],
                               mtu=facts.mtu, queues=nq, frames=frames, batch=batch)
                break
            except OSError as exc:
                # a queue's previous AF_XDP socket (e.g. of a run just killed) lets go of it
                # from a kernel work item, shortly after its close: EBUSY until then
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)
        undo.callback(port.close)
        for qid, fd in port.xsk_fds():
            xsks.update(struct.pack("<I", qid), struct.pack("<I", fd))
        link = _attach(facts.ifindex, prog, mode)
        for obj in (addr_map, xsks, prog):
            port.own(obj)
        port.own(_Detach(link))
        native = bpf.xdp_query(facts.ifindex).mode == bpf.XDP_ATTACHED_DRV
        port.attach_note = (f" ({facts.ifname}), {'native' if native else 'generic'} XDP "
                            f"{bpf.PROG_NAME_XDP_GRE} id {prog.info().id}")
        undo.pop_all()
    return port


def _attach(ifindex: int, prog: bpf.BpfProg, mode: str) -> bpf.BpfLink:
    if mode in ("auto", "native"):
        try:
            return bpf.link_create(prog, ifindex, bpf.BPF_XDP, bpf.XDP_FLAGS_DRV_MODE)
        except bpf.BpfError as exc:
            if mode == "native" or exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
    return bpf.link_create(prog, ifindex, bpf.BPF_XDP, bpf.XDP_FLAGS_SKB_MODE)
