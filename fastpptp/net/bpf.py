"""eBPF without a compiler: the ``bpf(2)`` syscall through ctypes, a tiny assembler, and the two
programs the fast GRE ports need.

1. ``Asm``: eBPF instructions (Documentation/bpf/standardization/instruction-set.rst) emitted
   one call per instruction, jumps by label, ``assemble()`` resolves them to 8-byte
   little-endian words.  No clang anywhere: the programs are a few dozen instructions.
2. Objects: ``BpfMap`` (HASH of our local IPv4 addresses, XSKMAP of AF_XDP sockets),
   ``BpfProg`` (loaded with the verifier log returned in :class:`BpfVerifierError`) and
   ``BpfLink``.  Each owns one fd; ``close()`` releases it.  bpf() fds are O_CLOEXEC.
3. Attachment only through BPF links (``BPF_LINK_CREATE``): XDP (attach type ``BPF_XDP``,
   native/generic chosen by flags) and TCX ingress (``BPF_TCX_INGRESS``, kernel >= 6.6).  A
   link lives exactly as long as its last fd: when the process exits, also by SIGKILL, the
   kernel detaches the program.  Nothing is pinned.
4. Ownership: every program and map we load is named ``fastpptp_*`` (BPF object names are at
   most 15 characters).  What is attached to an interface is read back (XDP: netlink
   IFLA_XDP through pyroute2; TCX: ``BPF_PROG_QUERY``) and each program's name fetched by id
   (``BPF_OBJ_GET_INFO_BY_FD``), so a stale program of ours, attached the legacy netlink way
   by an older run, is recognised and removed, and someone else's is never touched.

The two programs match the same thing, "PPTP GRE for us" (RFC 2637 §4.1, RFC 791):
Ethernet type IPv4, IPv4 version 4 with IHL >= 5, protocol 47, not a fragment (MF = 0 and
fragment offset = 0: fragments go on to the kernel, which reassembles them for the raw-socket
slow path), GRE version 1 with protocol type 0x880B, destination address in the HASH map of
our local addresses.

* ``gre_drop`` (TCX ingress, name ``fastpptp_tcxgre``): drops the match (TC_ACT_SHOT),
  everything else goes on (TC_ACT_UNSPEC: the next TCX program, then the stack).  It exists
  for the AF_PACKET port: packet taps run *before* tc ingress, so the ring has already seen
  the frame, and the kernel must not also process it (it would answer ICMP
  protocol-unreachable when no raw GRE socket is open, or duplicate it into the raw socket).
* ``xdp_gre_redirect`` (XDP, name ``fastpptp_xdpgre``): redirects the match to the AF_XDP
  socket of the receive queue (``bpf_redirect_map(xsks, rx_queue_index, XDP_PASS)``: a queue
  without a socket passes to the stack), everything else XDP_PASS.

Frames with an 802.1Q tag are not matched (they go to the kernel): attach to the VLAN
interface instead, where tc and the stack see them untagged.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Asm", "BpfError", "BpfVerifierError", "BpfMap", "BpfProg", "BpfLink", "ProgInfo",
    "XdpAttachment", "GreIngressDrop",
    "bpf", "map_create", "prog_load", "link_create", "prog_info", "prog_info_by_id",
    "prog_fd_by_id", "prog_query", "prog_test_run", "xdp_query", "xdp_attach_legacy",
    "xdp_detach_legacy", "is_ours", "gre_drop_insns", "xdp_gre_redirect_insns",
    "attach_gre_ingress_drop", "addr_key", "OUR_PREFIX",
    "BPF_MAP_TYPE_HASH", "BPF_MAP_TYPE_XSKMAP", "BPF_PROG_TYPE_SCHED_CLS", "BPF_PROG_TYPE_XDP",
    "BPF_XDP", "BPF_TCX_INGRESS", "XDP_FLAGS_SKB_MODE", "XDP_FLAGS_DRV_MODE",
    "XDP_FLAGS_UPDATE_IF_NOEXIST", "TC_ACT_UNSPEC", "TC_ACT_OK", "TC_ACT_SHOT", "XDP_PASS",
    "XDP_DROP", "XDP_REDIRECT", "PROG_NAME_GRE_DROP", "PROG_NAME_XDP_GRE",
]

OUR_PREFIX = "fastpptp_"
PROG_NAME_GRE_DROP = "fastpptp_tcxgre"   # gre_drop (15 characters: the kernel's limit)
PROG_NAME_XDP_GRE = "fastpptp_xdpgre"    # xdp_gre_redirect
MAP_NAME_ADDRS = "fastpptp_addrs"
MAP_NAME_XSKS = "fastpptp_xsks"
ADDR_MAP_MAX = 256                       # local IPv4 addresses one program matches, at most

SYS_bpf = 321                            # x86_64 (asm/unistd_64.h)

# enum bpf_cmd (include/uapi/linux/bpf.h)
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_LINK_CREATE = 28
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_LINK_DETACH = 34
# enum bpf_link_type
BPF_LINK_TYPE_XDP = 6
BPF_LINK_TYPE_TCX = 11

# enum bpf_map_type / bpf_prog_type / bpf_attach_type
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_XSKMAP = 17
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_XDP = 6
BPF_XDP = 37
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47

# map update flags
BPF_ANY = 0
# XDP attach flags (include/uapi/linux/if_link.h)
XDP_FLAGS_UPDATE_IF_NOEXIST = 1
XDP_FLAGS_SKB_MODE = 2
XDP_FLAGS_DRV_MODE = 4
XDP_FLAGS_HW_MODE = 8
# IFLA_XDP_ATTACHED values
XDP_ATTACHED_NONE, XDP_ATTACHED_DRV, XDP_ATTACHED_SKB, XDP_ATTACHED_HW, XDP_ATTACHED_MULTI = range(5)

# return codes
TC_ACT_UNSPEC = -1     # TCX_NEXT: the next TCX program decides, or the stack if none
TC_ACT_OK = 0
TC_ACT_SHOT = 2
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)

# helper ids (enum bpf_func_id)
FN_map_lookup_elem = 1
FN_redirect_map = 51

# context field offsets: struct __sk_buff and struct xdp_md
SKB_LEN = 0
SKB_VLAN_PRESENT = 20
SKB_DATA = 76
SKB_DATA_END = 80
XDP_MD_DATA = 0
XDP_MD_DATA_END = 4
XDP_MD_RX_QUEUE_INDEX = 16

_ATTR_SIZE = 128       # every bpf_attr we build fits; the kernel zero-extends what we omit
_LOG_SIZE = 1 << 20

# ------------------------------------------------------------------------------ syscall


class BpfError(OSError):
    """A bpf() call failed (``errno`` set)."""


class BpfVerifierError(BpfError):
    """BPF_PROG_LOAD refused the program; ``log`` is the verifier's explanation."""

    def __init__(self, err: int, msg: str, log: str) -> None:
        super().__init__(err, f"{msg}\n--- verifier log ---\n{log.strip()}")
        self.log = log


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    """``bpf(cmd, attr, sizeof attr)``; the result (an fd for the creating commands), or
    BpfError naming ``what``."""
    while True:
        r = _libc.syscall(ctypes.c_long(SYS_bpf), ctypes.c_int(cmd), attr,
                          ctypes.c_uint(len(attr)))
        if r >= 0:
            return int(r)
        e = ctypes.get_errno()
        if e != errno.EINTR and e != errno.EAGAIN:
            raise BpfError(e, f"bpf({what}): {os.strerror(e)}")


def _attr(*fields: tuple[int, str, int]) -> ctypes.Array[ctypes.c_char]:
    """A zeroed bpf_attr with ``(offset, struct format, value)`` fields packed in."""
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    for off, fmt, val in fields:
        struct.pack_into("<" + fmt, buf, off, val)
    return buf


def _addr(buf: ctypes.Array[ctypes.c_char] | None) -> int:
    return 0 if buf is None else ctypes.addressof(buf)


def _name16(name: str) -> bytes:
    raw = name.encode()
    if len(raw) > 15 or not all(c.isalnum() or c in "_." for c in name):
        raise ValueError(f"BPF object name {name!r}: at most 15 of [A-Za-z0-9_.]")
    return raw


# ------------------------------------------------------------------------------ assembler

# instruction classes, sizes, modes, operations (instruction-set.rst §3-§5)
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
IMM, MEM = 0x00, 0x60
K, X = 0x00, 0x08
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0)
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0)
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
BPF_PSEUDO_MAP_FD = 1


class Asm:
    """An eBPF program, one method per instruction; jumps name a label.

        a = Asm()
        a.ldx(W, R2, R1, 76)             # r2 = *(u32 *)(r1 + 76)
        a.jmp_imm(JNE, R2, 0, "out")     # if r2 != 0 goto out
        a.label("out"); a.mov_imm(R0, 0); a.exit()
        a.assemble()                     # bytes, 8 per instruction
    """

    def __init__(self) -> None:
        # (opcode, dst, src, off or label, imm)
        self.insns: list[tuple[int, int, int, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.insns)

    def _emit(self, op: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> None:
        self.insns.append((op, dst, src, off, imm))

    def label(self, name: str) -> None:
        if name in self.labels:
            raise ValueError(f"label {name!r} defined twice")
        self.labels[name] = len(self.insns)

    # ALU64
    def mov_imm(self, dst: int, imm: int) -> None:
        self._emit(ALU64 | MOV | K, dst, 0, 0, imm)

    def mov_reg(self, dst: int, src: int) -> None:
        self._emit(ALU64 | MOV | X, dst, src)

    def alu_imm(self, op: int, dst: int, imm: int) -> None:
        self._emit(ALU64 | op | K, dst, 0, 0, imm)

    def alu_reg(self, op: int, dst: int, src: int) -> None:
        self._emit(ALU64 | op | X, dst, src)

    # memory
    def ldx(self, size: int, dst: int, src: int, off: int) -> None:
        """dst = *(size *)(src + off)"""
        self._emit(LDX | MEM | size, dst, src, off)

    def stx(self, size: int, dst: int, off: int, src: int) -> None:
        """*(size *)(dst + off) = src"""
        self._emit(STX | MEM | size, dst, src, off)

    def st_imm(self, size: int, dst: int, off: int, imm: int) -> None:
        """*(size *)(dst + off) = imm"""
        self._emit(ST | MEM | size, dst, 0, off, imm)

    def ld_map_fd(self, dst: int, map_fd: int) -> None:
        """dst = the map whose fd is ``map_fd`` (a 16-byte wide load the loader resolves)."""
        self._emit(LD | DW | IMM, dst, BPF_PSEUDO_MAP_FD, 0, map_fd)
        self._emit(0, 0, 0, 0, 0)

    # jumps
    def ja(self, target: str) -> None:
        self._emit(JMP | JA, 0, 0, target)

    def jmp_imm(self, op: int, dst: int, imm: int, target: str) -> None:
        self._emit(JMP | op | K, dst, 0, target, imm)

    def jmp_reg(self, op: int, dst: int, src: int, target: str) -> None:
        self._emit(JMP | op | X, dst, src, target)

    def call(self, helper: int) -> None:
        self._emit(JMP | CALL, 0, 0, 0, helper)

    def exit(self) -> None:
        self._emit(JMP | EXIT)

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (op, dst, src, off, imm) in enumerate(self.insns):
            if isinstance(off, str):
                if off not in self.labels:
                    raise ValueError(f"jump to undefined label {off!r}")
                off = self.labels[off] - pc - 1
            if not -0x8000 <= off <= 0x7fff:
                raise ValueError(f"jump offset {off} at {pc} out of range")
            out += struct.pack("<BBhi", op, (src << 4) | dst, off, imm)
        return bytes(out)


# ------------------------------------------------------------------------------ objects


class _Fd:
    """One bpf() fd, closed once."""

    fd: int

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        if self.fd < 0:
            raise ValueError("closed")
        return self.fd

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class BpfMap(_Fd):
    """A BPF map: ``update``/``delete``/``lookup`` with bytes keys and values."""

    def __init__(self, fd: int, name: str, key_size: int, value_size: int) -> None:
        super().__init__(fd)
        self.name = name
        self.key_size = key_size
        self.value_size = value_size

    def _kv(self, key: bytes, value: bytes | None = None) -> tuple[ctypes.Array[ctypes.c_char], ...]:
        if len(key) != self.key_size or (value is not None and len(value) != self.value_size):
            raise ValueError(f"map {self.name}: key/value size {self.key_size}/{self.value_size}")
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value if value is not None else self.value_size,
                                        self.value_size)
        return k, v

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        k, v = self._kv(key, value)
        bpf(BPF_MAP_UPDATE_ELEM, _attr((0, "I", self.fileno()), (8, "Q", _addr(k)),
                                       (16, "Q", _addr(v)), (24, "Q", flags)), f"update {self.name}")

    def delete(self, key: bytes, missing_ok: bool = True) -> None:
        k, _ = self._kv(key)
        try:
            bpf(BPF_MAP_DELETE_ELEM, _attr((0, "I", self.fileno()), (8, "Q", _addr(k))),
                f"delete from {self.name}")
        except BpfError as exc:
            if not (missing_ok and exc.errno == errno.ENOENT):
                raise

    def lookup(self, key: bytes) -> bytes | None:
        k, v = self._kv(key)
        try:
            bpf(BPF_MAP_LOOKUP_ELEM, _attr((0, "I", self.fileno()), (8, "Q", _addr(k)),
                                           (16, "Q", _addr(v))), f"lookup in {self.name}")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return v.raw

    def keys(self) -> list[bytes]:
        out: list[bytes] = []
        cur: ctypes.Array[ctypes.c_char] | None = None
        nxt = ctypes.create_string_buffer(self.key_size)
        for _ in range(1 << 20):     # bounded: a map holds fewer entries than this
            try:
                bpf(BPF_MAP_GET_NEXT_KEY, _attr((0, "I", self.fileno()), (8, "Q", _addr(cur)),
                                                (16, "Q", _addr(nxt))), f"keys of {self.name}")
            except BpfError as exc:
                if exc.errno == errno.ENOENT:
                    break
                raise
            out.append(nxt.raw)
            cur = ctypes.create_string_buffer(nxt.raw, self.key_size)
        return out


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, name: str,
               flags: int = 0) -> BpfMap:
    raw = _name16(name)
    a = _attr((0, "I", map_type), (4, "I", key_size), (8, "I", value_size),
              (12, "I", max_entries), (16, "I", flags))
    ctypes.memmove(ctypes.addressof(a) + 28, raw, len(raw))
    return BpfMap(bpf(BPF_MAP_CREATE, a, f"create map {name}"), name, key_size, value_size)


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    name: str
    tag: str          # hex of the 8-byte program tag (bpftool's "tag")

    @property
    def ours(self) -> bool:
        return is_ours(self.name)


def is_ours(name: str) -> bool:
    return name.startswith(OUR_PREFIX)


class BpfProg(_Fd):
    """A loaded program."""

    def __init__(self, fd: int, name: str, prog_type: int) -> None:
        super().__init__(fd)
        self.name = name
        self.prog_type = prog_type

    def info(self) -> ProgInfo:
        return prog_info(self.fileno())


def prog_load(prog_type: int, insns: bytes, name: str, *, license: str = "GPL",
              expected_attach_type: int = 0) -> BpfProg:
    """BPF_PROG_LOAD; on refusal BpfVerifierError with the verifier log (level 1)."""
    raw = _name16(name)
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    log = ctypes.create_string_buffer(_LOG_SIZE)

    def attempt(log_level: int) -> int:
        a = _attr((0, "I", prog_type), (4, "I", len(insns) // 8), (8, "Q", _addr(code)),
                  (16, "Q", _addr(lic)), (24, "I", log_level),
                  (28, "I", _LOG_SIZE if log_level else 0), (32, "Q", _addr(log) if log_level else 0),
                  (68, "I", expected_attach_type))
        ctypes.memmove(ctypes.addressof(a) + 48, raw, len(raw))
        return bpf(BPF_PROG_LOAD, a, f"load program {name}")

    try:
        fd = attempt(0)     # no log on the good path: the verifier runs faster without
    except BpfError as exc:
        if exc.errno not in (errno.EACCES, errno.EINVAL):
            raise
        try:
            fd = attempt(1)
        except BpfError as exc2:
            raise BpfVerifierError(exc2.errno or exc.errno or 0, str(exc2),
                                   log.value.decode(errors="replace")) from None
    return BpfProg(fd, name, prog_type)


class BpfLink(_Fd):
    """A BPF link: the attachment lives as long as this fd (and its copies in children)."""

    def __init__(self, fd: int, what: str) -> None:
        super().__init__(fd)
        self.what = what

    def detach(self) -> None:
        """Detach now (BPF_LINK_DETACH), even while other copies of the fd live; then close."""
        if self.fd >= 0:
            with contextlib.suppress(BpfError):
                bpf(BPF_LINK_DETACH, _attr((0, "I", self.fd)), f"detach {self.what}")
        self.close()


def link_create(prog: BpfProg | int, ifindex: int, attach_type: int, flags: int = 0) -> BpfLink:
    """BPF_LINK_CREATE on interface ``ifindex`` (of the calling thread's namespace).  For
    BPF_XDP, ``flags`` chooses the mode (XDP_FLAGS_DRV_MODE / XDP_FLAGS_SKB_MODE; 0 = native
    if the driver has it); for TCX, 0 appends after the programs already there."""
    pfd = prog if isinstance(prog, int) else prog.fileno()
    a = _attr((0, "I", pfd), (4, "I", ifindex), (8, "I", attach_type), (12, "I", flags))
    return BpfLink(bpf(BPF_LINK_CREATE, a, f"link attach type {attach_type} on ifindex {ifindex}"),
                   f"attach type {attach_type} ifindex {ifindex}")


def prog_info(fd: int) -> ProgInfo:
    """BPF_OBJ_GET_INFO_BY_FD on a program fd (struct bpf_prog_info: type, id, tag, name)."""
    info = ctypes.create_string_buffer(256)
    bpf(BPF_OBJ_GET_INFO_BY_FD, _attr((0, "I", fd), (4, "I", len(info)), (8, "Q", _addr(info))),
        "program info")
    ptype, pid = struct.unpack_from("<II", info, 0)
    tag = info.raw[8:16].hex()
    name = info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    return ProgInfo(pid, ptype, name, tag)


def prog_fd_by_id(prog_id: int) -> int:
    return bpf(BPF_PROG_GET_FD_BY_ID, _attr((0, "I", prog_id)), f"program id {prog_id}")


def prog_info_by_id(prog_id: int) -> ProgInfo:
    fd = prog_fd_by_id(prog_id)
    try:
        return prog_info(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ProgQuery:
    prog_ids: list[int]
    link_ids: list[int]     # 0 where the program was attached without a link
    revision: int


def prog_query(ifindex: int, attach_type: int, max_progs: int = 64) -> ProgQuery:
    """BPF_PROG_QUERY of a TCX hook (attach type BPF_TCX_INGRESS/EGRESS) on ``ifindex``."""
    ids = (ctypes.c_uint32 * max_progs)()
    links = (ctypes.c_uint32 * max_progs)()
    a = _attr((0, "I", ifindex), (4, "I", attach_type), (16, "Q", ctypes.addressof(ids)),
              (24, "I", max_progs), (40, "Q", ctypes.addressof(links)))
    bpf(BPF_PROG_QUERY, a, f"query attach type {attach_type} on ifindex {ifindex}")
    cnt = min(struct.unpack_from("<I", a, 24)[0], max_progs)
    rev = struct.unpack_from("<Q", a, 56)[0]
    return ProgQuery(list(ids[:cnt]), list(links[:cnt]), rev)


def prog_test_run(prog: BpfProg | int, data: bytes, repeat: int = 1) -> int:
    """BPF_PROG_TEST_RUN: the program's return value on one packet (an Ethernet frame)."""
    pfd = prog if isinstance(prog, int) else prog.fileno()
    din = ctypes.create_string_buffer(data, len(data))
    dout = ctypes.create_string_buffer(len(data) + 512)
    a = _attr((0, "I", pfd), (8, "I", len(data)), (12, "I", len(dout)), (16, "Q", _addr(din)),
              (24, "Q", _addr(dout)), (32, "I", repeat))
    bpf(BPF_PROG_TEST_RUN, a, "test run")
    return int(struct.unpack_from("<i", a, 4)[0])


@dataclass(frozen=True)
class LinkInfo:
    id: int
    type: int         # BPF_LINK_TYPE_*
    prog_id: int
    ifindex: int      # XDP and TCX links: the interface (of the link's namespace)


def link_ids(limit: int = 1 << 16) -> list[int]:
    """Every BPF link id on the machine (BPF_LINK_GET_NEXT_ID), bounded by ``limit``."""
    out: list[int] = []
    cur = 0
    for _ in range(limit):
        a = _attr((0, "I", cur))
        try:
            bpf(BPF_LINK_GET_NEXT_ID, a, "next link id")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                break
            raise
        cur = struct.unpack_from("<I", a, 4)[0]
        out.append(cur)
    return out


def link_info_by_id(link_id: int) -> LinkInfo:
    fd = bpf(BPF_LINK_GET_FD_BY_ID, _attr((0, "I", link_id)), f"link id {link_id}")
    try:
        info = ctypes.create_string_buffer(128)
        bpf(BPF_OBJ_GET_INFO_BY_FD, _attr((0, "I", fd), (4, "I", len(info)),
                                          (8, "Q", _addr(info))), "link info")
    finally:
        os.close(fd)
    ltype, lid, pid = struct.unpack_from("<III", info, 0)
    ifindex = struct.unpack_from("<I", info, 16)[0] if ltype in (BPF_LINK_TYPE_XDP, BPF_LINK_TYPE_TCX) else 0
    return LinkInfo(lid, ltype, pid, ifindex)


def xdp_link_holding(prog_id: int) -> LinkInfo | None:
    """The XDP BPF link that attached ``prog_id``, if a link did (a live process, or a pinned
    link), else None (attached the legacy netlink way: it outlived whoever attached it)."""
    for lid in link_ids():
        with contextlib.suppress(BpfError):      # gone meanwhile
            li = link_info_by_id(lid)
            if li.type == BPF_LINK_TYPE_XDP and li.prog_id == prog_id:
                return li
    return None


# ------------------------------------------------------------------------------ XDP via netlink


@dataclass(frozen=True)
class XdpAttachment:
    """What netlink IFLA_XDP says is attached to an interface."""

    mode: int                 # XDP_ATTACHED_*
    prog_id: int              # 0 when nothing (or several: see drv/skb)
    drv_prog_id: int = 0
    skb_prog_id: int = 0

    @property
    def attached(self) -> bool:
        return self.mode != XDP_ATTACHED_NONE

    def prog_ids(self) -> list[int]:
        ids = {self.prog_id, self.drv_prog_id, self.skb_prog_id} - {0}
        return sorted(ids)


def _ipr() -> Any:
    from pyroute2 import IPRoute
    return IPRoute()


def xdp_query(ifindex: int) -> XdpAttachment:
    """IFLA_XDP of ``ifindex`` in the calling thread's namespace (RTM_GETLINK)."""
    with contextlib.closing(_ipr()) as ipr:
        msgs = ipr.get_links(ifindex)
    if not msgs:
        raise BpfError(errno.ENODEV, f"no interface with index {ifindex}")
    xdp = msgs[0].get_attr("IFLA_XDP")
    if xdp is None:
        return XdpAttachment(XDP_ATTACHED_NONE, 0)
    mode = xdp.get_attr("IFLA_XDP_ATTACHED")
    # pyroute2 maps the mode to a name on decode; take the number back
    names = {None: 0, "xdp": 1, "xdpgeneric": 2, "xdpoffload": 3, "xdpmulti": 4}
    mode_n = names.get(mode, mode) if not isinstance(mode, int) else mode
    return XdpAttachment(int(mode_n or 0), int(xdp.get_attr("IFLA_XDP_PROG_ID") or 0),
                         int(xdp.get_attr("IFLA_XDP_DRV_PROG_ID") or 0),
                         int(xdp.get_attr("IFLA_XDP_SKB_PROG_ID") or 0))


def _xdp_set(ifindex: int, fd: int, flags: int) -> None:
    from pyroute2 import NetlinkError
    attrs: list[tuple[str, int]] = [("IFLA_XDP_FD", fd)]
    if flags:
        attrs.append(("IFLA_XDP_FLAGS", flags))
    with contextlib.closing(_ipr()) as ipr:
        try:
            ipr.link("set", index=ifindex, xdp={"attrs": attrs})
        except NetlinkError as exc:
            raise BpfError(exc.code, f"netlink IFLA_XDP on ifindex {ifindex}: "
                           f"{os.strerror(exc.code)}") from None


def xdp_attach_legacy(ifindex: int, prog: BpfProg | int, flags: int = 0) -> None:
    """Attach the old way (netlink IFLA_XDP_FD): it stays after the process is gone.  Only
    the tests use it, to make what an older run or another tool leaves behind."""
    _xdp_set(ifindex, prog if isinstance(prog, int) else prog.fileno(), flags)


def xdp_detach_legacy(ifindex: int, mode: int) -> None:
    """Detach a program attached the legacy way in ``mode`` (XDP_ATTACHED_DRV/SKB).  The
    kernel refuses (EBUSY) when a BPF link holds the hook, so a live process's attachment is
    never taken away."""
    flags = {XDP_ATTACHED_SKB: XDP_FLAGS_SKB_MODE, XDP_ATTACHED_DRV: XDP_FLAGS_DRV_MODE,
             XDP_ATTACHED_HW: XDP_FLAGS_HW_MODE}.get(mode, 0)
    _xdp_set(ifindex, -1, flags)


# ------------------------------------------------------------------------------ the programs


def addr_key(addr: str | int | bytes) -> bytes:
    """The address map's key: the IPv4 address as on the wire (4 bytes, network order)."""
    if isinstance(addr, bytes):
        if len(addr) != 4:
            raise ValueError("IPv4 address must be 4 bytes")
        return addr
    return ipaddress.IPv4Address(addr).packed


def _match_pptp_gre(a: Asm, no: str) -> None:
    """Emit the "PPTP GRE for us" parse (module doc): expects r2 = data, r3 = data_end
    (packet pointers, data at the Ethernet header); on a miss jumps to ``no``; on a match
    falls through with the IPv4 destination address stored at r10-4 (the map key).
    Clobbers r2, r4, r5."""
    a.mov_reg(R4, R2)
    a.alu_imm(ADD, R4, 14 + 20)               # Ethernet + minimal IPv4 header in bounds
    a.jmp_reg(JGT, R4, R3, no)
    a.ldx(H, R4, R2, 12)                      # EtherType, loaded little-endian
    a.jmp_imm(JNE, R4, 0x0008, no)            # 08 00 = IPv4
    a.ldx(B, R4, R2, 14)                      # version | IHL
    a.mov_reg(R5, R4)
    a.alu_imm(AND, R5, 0xF0)
    a.jmp_imm(JNE, R5, 0x40, no)
    a.alu_imm(AND, R4, 0x0F)
    a.jmp_imm(JLT, R4, 5, no)
    a.alu_imm(LSH, R4, 2)                     # header length, 20..60
    a.ldx(B, R5, R2, 14 + 9)
    a.jmp_imm(JNE, R5, 47, no)                # protocol GRE
    a.ldx(H, R5, R2, 14 + 6)                  # flags | fragment offset, little-endian load:
    a.alu_imm(AND, R5, 0xFF3F)                # MF (0x20 of byte 0) and the 13-bit offset
    a.jmp_imm(JNE, R5, 0, no)                 # a fragment: the kernel reassembles it
    a.ldx(W, R5, R2, 14 + 16)                 # destination address, as on the wire
    a.stx(W, R10, -4, R5)
    a.alu_reg(ADD, R2, R4)                    # r2 = data + IHL*4: GRE at r2 + 14
    a.mov_reg(R4, R2)
    a.alu_imm(ADD, R4, 14 + 4)                # GRE flags/version and protocol type
    a.jmp_reg(JGT, R4, R3, no)
    a.ldx(B, R5, R2, 14 + 1)
    a.alu_imm(AND, R5, 0x07)
    a.jmp_imm(JNE, R5, 1, no)                 # GRE version 1 (enhanced GRE, RFC 2637 §4.1)
    a.ldx(H, R5, R2, 14 + 2)
    a.jmp_imm(JNE, R5, 0x0B88, no)            # 88 0B = PPP
    # destination one of ours?
    a.ld_map_fd(R1, -1)                       # patched with the address map's fd
    a.mov_reg(R2, R10)
    a.alu_imm(ADD, R2, -4)
    a.call(FN_map_lookup_elem)
    a.jmp_imm(JEQ, R0, 0, no)


def _patch_map_fds(a: Asm, fds: list[int]) -> None:
    """Replace the placeholder map fds (-1, -2, ...) of ``ld_map_fd`` with real ones."""
    for i, (op, dst, src, off, imm) in enumerate(a.insns):
        if op == LD | DW | IMM and src == BPF_PSEUDO_MAP_FD and imm < 0:
            a.insns[i] = (op, dst, src, off, fds[-imm - 1])


def gre_drop_insns(addr_map_fd: int) -> bytes:
    """The TCX ingress program (module doc): TC_ACT_SHOT for PPTP GRE to one of our
    addresses, TC_ACT_UNSPEC (next program / the stack) for everything else."""
    a = Asm()
    a.ldx(W, R4, R1, SKB_VLAN_PRESENT)        # a tag the driver took off: not ours here
    a.jmp_imm(JNE, R4, 0, "pass")
    a.ldx(W, R2, R1, SKB_DATA)
    a.ldx(W, R3, R1, SKB_DATA_END)
    _match_pptp_gre(a, "pass")
    a.mov_imm(R0, TC_ACT_SHOT)
    a.exit()
    a.label("pass")
    a.mov_imm(R0, TC_ACT_UNSPEC)
    a.exit()
    _patch_map_fds(a, [addr_map_fd])
    return a.assemble()


def xdp_gre_redirect_insns(addr_map_fd: int, xsks_map_fd: int) -> bytes:
    """The XDP program (module doc): the match goes to the AF_XDP socket of this receive
    queue, everything else XDP_PASS."""
    a = Asm()
    a.mov_reg(R6, R1)                         # keep ctx across the helper call
    a.ldx(W, R2, R1, XDP_MD_DATA)
    a.ldx(W, R3, R1, XDP_MD_DATA_END)
    _match_pptp_gre(a, "pass")
    a.ld_map_fd(R1, -2)
    a.ldx(W, R2, R6, XDP_MD_RX_QUEUE_INDEX)
    a.mov_imm(R3, XDP_PASS)                   # no socket on this queue: to the stack
    a.call(FN_redirect_map)
    a.exit()
    a.label("pass")
    a.mov_imm(R0, XDP_PASS)
    a.exit()
    _patch_map_fds(a, [addr_map_fd, xsks_map_fd])
    return a.assemble()


def create_addr_map(local_addrs: Iterable[str | int | bytes]) -> BpfMap:
    m = map_create(BPF_MAP_TYPE_HASH, 4, 4, ADDR_MAP_MAX, MAP_NAME_ADDRS)
    try:
        set_addrs(m, local_addrs)
    except BaseException:
        m.close()
        raise
    return m


def set_addrs(m: BpfMap, local_addrs: Iterable[str | int | bytes]) -> None:
    """Make the address map hold exactly ``local_addrs`` (added first, then the rest
    removed: a packet in flight never sees a moment with neither)."""
    want = {addr_key(x) for x in local_addrs}
    if len(want) > ADDR_MAP_MAX:
        raise ValueError(f"more than {ADDR_MAP_MAX} local addresses")
    for k in want:
        m.update(k, b"\1\0\0\0")
    for k in m.keys():
        if k not in want:
            m.delete(k)


def load_gre_drop(addr_map: BpfMap) -> BpfProg:
    return prog_load(BPF_PROG_TYPE_SCHED_CLS, gre_drop_insns(addr_map.fileno()), PROG_NAME_GRE_DROP,
                     expected_attach_type=BPF_TCX_INGRESS)


def load_xdp_gre_redirect(addr_map: BpfMap, xsks: BpfMap) -> BpfProg:
    return prog_load(BPF_PROG_TYPE_XDP, xdp_gre_redirect_insns(addr_map.fileno(), xsks.fileno()),
                     PROG_NAME_XDP_GRE, expected_attach_type=BPF_XDP)


class GreIngressDrop:
    """``gre_drop`` attached at TCX ingress of one interface.  ``update(addrs)`` changes the
    addresses it matches; ``close()`` detaches it (so does the process's exit)."""

    def __init__(self, ifindex: int, addr_map: BpfMap, prog: BpfProg, link: BpfLink) -> None:
        self.ifindex = ifindex
        self.addr_map = addr_map
        self.prog = prog
        self.link = link
        self.prog_id = prog.info().id

    def update(self, local_addrs: Iterable[str | int | bytes]) -> None:
        set_addrs(self.addr_map, local_addrs)

    def addrs(self) -> list[str]:
        return sorted(socket.inet_ntoa(k) for k in self.addr_map.keys())

    @property
    def closed(self) -> bool:
        return self.link.closed

    def close(self) -> None:
        self.link.detach()
        self.prog.close()
        self.addr_map.close()

    def __enter__(self) -> GreIngressDrop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return (f"TCX ingress {PROG_NAME_GRE_DROP} (id {self.prog_id}) on ifindex {self.ifindex} "
                f"for {', '.join(self.addrs()) or 'no address'}")


def attach_gre_ingress_drop(ifindex: int, local_addrs: Iterable[str | int | bytes]) -> GreIngressDrop:
    """Load ``gre_drop`` for ``local_addrs`` and attach it at TCX ingress of ``ifindex`` (in
    the calling thread's namespace).  Needs CAP_BPF + CAP_NET_ADMIN and a kernel with TCX
    (6.6); BpfError otherwise."""
    addr_map = create_addr_map(local_addrs)
    prog: BpfProg | None = None
    try:
        prog = load_gre_drop(addr_map)
        link = link_create(prog, ifindex, BPF_TCX_INGRESS)
        return GreIngressDrop(ifindex, addr_map, prog, link)
    except BaseException:
        if prog is not None:
            prog.close()
        addr_map.close()
        raise


def tcx_programs(ifindex: int, attach_type: int = BPF_TCX_INGRESS) -> list[ProgInfo]:
    """The programs at a TCX hook, in order, with their names."""
    out = []
    for pid in prog_query(ifindex, attach_type).prog_ids:
        with contextlib.suppress(BpfError):     # detached meanwhile
            out.append(prog_info_by_id(pid))
    return out


def iter_xdp_programs(ifindex: int) -> Iterator[tuple[int, ProgInfo | None]]:
    """(attach mode, program info or None if it went away) for each XDP program on ifindex."""
    att = xdp_query(ifindex)
    for pid in att.prog_ids():
        mode = (XDP_ATTACHED_DRV if pid == att.drv_prog_id else
                XDP_ATTACHED_SKB if pid == att.skb_prog_id else att.mode)
        try:
            yield mode, prog_info_by_id(pid)
        except BpfError:
            yield mode, None
