"""Argument checks of the engine's set-up calls, written once for both twins.

Every control-plane method of ``fastpptp._gre.Engine`` (compiled) and
``fastpptp._gre_ref.Engine`` (reference) starts by calling the function here that bears its
name and then works only with what it returns, so the twins cannot drift on what they accept
(tests/engine/test_twins_api.py holds them to it, case by case).  The exceptions:

* ``TypeError``   -- not an integer (``operator.index``: bool is an int, float is not) or
  not bytes-like (an ``int`` is refused: ``bytes(5)`` would be five zero octets);
* ``ValueError``  -- out of range for the protocol field or the engine's limits;
* ``KeyError``    -- a call ID no session can have, in a call that looks a session up
  (the same error as a free call ID: "no session for call ID ...");
* ``OSError``     -- a file descriptor the kernel refuses.

Checks that need engine state (a session exists, an fd is already a TUN, the I/O thread
runs) stay in the twins, after these.  Per-packet and per-batch calls (``process``,
``encap_slab``, ``decap_slab``) do not come here: the compiled engine checks their arrays
in C (typed memoryviews) and the reference mirrors those checks with :func:`slab_array`.
"""
from __future__ import annotations

import errno
import ipaddress
import operator
import os
import stat
from collections.abc import Iterable
from typing import NamedTuple, SupportsIndex, Union

import numpy as np

from fastpptp.dataplane import (FRAME_SLACK, MAX_TUN, RL_BURST_MIN, RL_BURST_TIME, RL_MAX_BURST,
                                RL_MAX_KBIT, RL_QUEUE_MIN, RL_QUEUE_TIME, EngineConfig,
                                vnet_lengths)

MPPE_KEY_LEN = {40: 8, 56: 8, 128: 16}      # RFC 3079 §2-3: start key octets per strength

Address = Union[str, int, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address]
Octets = Union[bytes, bytearray, memoryview, Iterable[SupportsIndex]]


def _int(x: object, what: str) -> int:
    try:
        return operator.index(x)        # type: ignore[arg-type]  # TypeError is the check
    except TypeError:
        raise TypeError(f"{what} must be an integer, not {type(x).__name__}") from None


def _octets(x: Octets, what: str) -> bytes:
    if isinstance(x, int):
        raise TypeError(f"{what} must be bytes-like, not int")
    return bytes(x)


def engine_config(config: object) -> EngineConfig:
    """``Engine(config=None)``: None is the defaults; anything else must be an EngineConfig
    (its own __post_init__ has checked the numbers)."""
    if config is None:
        return EngineConfig()
    if not isinstance(config, EngineConfig):
        raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
    return config


def _call_id(x: object) -> int:
    v = _int(x, "call ID")
    if not 0 <= v <= 0xFFFF:
        raise ValueError("call IDs are 16-bit")
    return v


def lookup(call_id: object) -> int:
    """A call ID to look a session up by: an int; one outside 16 bits has no session."""
    v = _int(call_id, "call ID")
    if not 0 <= v <= 0xFFFF:
        raise KeyError(f"no session for call ID {call_id}")
    return v


def _window(peer_rwin: object, peer_ppd: object) -> tuple[int, int]:
    # RFC 2637 §2.7-2.9: Packet Recv. Window Size and Packet Processing Delay are 16-bit
    # fields.  A window of 0 is taken as 1: we must be able to send at all.
    rwin = _int(peer_rwin, "peer_rwin")
    ppd = _int(peer_ppd, "peer_ppd")
    if not 0 <= rwin <= 0xFFFF or not 0 <= ppd <= 0xFFFF:
        raise ValueError("peer_rwin and peer_ppd are 16-bit (RFC 2637 §2.7-2.9)")
    return max(1, rwin), ppd


class SessionArgs(NamedTuple):
    call_id: int
    peer_call_id: int
    peer_addr: str          # canonical text: what gre_out names the peer by
    peer_bin: bytes         # 4 octets, network order (the IPv4 header's source)
    tun: int
    peer_rwin: int
    peer_ppd: int


def add_session(call_id: object, peer_call_id: object, peer_addr: Address, tun: object,
                peer_rwin: object, peer_ppd: object) -> SessionArgs:
    cid, pcid = _call_id(call_id), _call_id(peer_call_id)
    a = ipaddress.ip_address(peer_addr)     # ValueError if it is not one
    if a.version != 4:
        raise ValueError("PPTP GRE runs over IPv4: peer_addr must be an IPv4 address")
    t = _int(tun, "tun")
    if not 0 <= t < MAX_TUN:
        raise ValueError("tun index out of range")
    rwin, ppd = _window(peer_rwin, peer_ppd)
    return SessionArgs(cid, pcid, str(a), a.packed, t, rwin, ppd)


def set_peer_call(call_id: object, peer_call_id: object, peer_rwin: object,
                  peer_ppd: object) -> tuple[int, int, int, int]:
    pcid = _call_id(peer_call_id)
    rwin, ppd = _window(peer_rwin, peer_ppd)
    return lookup(call_id), pcid, rwin, ppd


def set_ppp(call_id: object, tx_acfc: object, tx_pfc: object,
            mtu: object) -> tuple[int, bool, bool, int]:
    m = _int(mtu, "mtu")
    if not 64 <= m <= 65535:
        raise ValueError("mtu must be 64..65535")
    return lookup(call_id), bool(tx_acfc), bool(tx_pfc), m


def address(addr: Address) -> tuple[bytes, int]:
    """A tunnel-side IPv4 or IPv6 address -> (packed, 4 or 6)."""
    a = ipaddress.ip_address(addr)          # ValueError if it is not one
    return a.packed, a.version


class MppeArgs(NamedTuple):
    call_id: int
    send_key: bytes         # exactly MPPE_KEY_LEN[bits] octets
    recv_key: bytes
    bits: int
    stateful: bool          # what we send
    rx_stateful: bool       # what we receive


def set_mppe(call_id: object, send_key: Octets, recv_key: Octets, bits: object,
             stateful: object, rx_stateful: object) -> MppeArgs:
    """Both keys are checked before either direction changes: a bad receive key must not
    leave the send direction encrypting alone."""
    b = _int(bits, "bits")
    if b not in MPPE_KEY_LEN:
        raise ValueError("MPPE bits must be 40, 56 or 128")
    n = MPPE_KEY_LEN[b]
    sk, rk = _octets(send_key, "send_key"), _octets(recv_key, "recv_key")
    if len(sk) < n or len(rk) < n:
        raise ValueError(f"{b}-bit MPPE needs {n}-octet keys")
    st = bool(stateful)
    return MppeArgs(lookup(call_id), sk[:n], rk[:n], b, st,
                    st if rx_stateful is None else bool(rx_stateful))


def send_control(call_id: object, protocol: object, payload: Octets) -> tuple[int, int, bytes]:
    p = _int(protocol, "protocol")
    if not 0 < p <= 0xFFFF:
        raise ValueError("bad PPP protocol")
    return lookup(call_id), p, _octets(payload, "payload")


def control_length(n: int, mtu: int, mru: int) -> None:
    """A control frame of ``n`` octets for a session with ``mtu``: longer than the peer
    takes, or than a queue slot (MRU + FRAME_SLACK) holds, is our bug -> ValueError."""
    if n > max(mtu, mru):
        raise ValueError("control frame longer than the MTU")
    if n > mru + FRAME_SLACK:
        raise ValueError("control frame too long")


class Bucket(NamedTuple):
    """One direction of a rate limit, resolved: rate in bytes/s (0: unlimited), the bucket
    size and the hold queue's byte bound (both bytes)."""
    rate: float
    burst: float
    queue_bytes: int


def _bucket(kbit: int, burst: int) -> Bucket:
    rate = kbit * 125.0                 # kbit/s = 1000 bit/s
    if kbit == 0:
        return Bucket(0.0, 0.0, 0)
    b = float(burst) if burst else max(rate * RL_BURST_TIME, float(RL_BURST_MIN))
    # the byte bound only matters below rate_limit_queue x RLQ_SLOT (2 MiB at most)
    q = min(max(rate * RL_QUEUE_TIME, float(RL_QUEUE_MIN)), float(RL_MAX_BURST))
    return Bucket(rate, b, int(q))


def set_rate_limit(call_id: object, tx_kbit: object, rx_kbit: object,
                   burst_bytes: object) -> tuple[int, Bucket, Bucket]:
    """(call ID, TUN -> GRE bucket, GRE -> TUN bucket).  kbit/s = 1000 bit/s of IP packets,
    0 = unlimited, at most RL_MAX_KBIT; ``burst_bytes`` 0 = automatic (RL_BURST_TIME at the
    rate, at least RL_BURST_MIN), else 1..RL_MAX_BURST, for both directions."""
    tx = _int(tx_kbit, "tx_kbit")
    rx = _int(rx_kbit, "rx_kbit")
    burst = _int(burst_bytes, "burst_bytes")
    if not 0 <= tx <= RL_MAX_KBIT or not 0 <= rx <= RL_MAX_KBIT:
        raise ValueError(f"rate limits are 0 (unlimited)..{RL_MAX_KBIT} kbit/s")
    if not 0 <= burst <= RL_MAX_BURST:
        raise ValueError(f"burst_bytes must be 0 (automatic)..{RL_MAX_BURST}")
    return lookup(call_id), _bucket(tx, burst), _bucket(rx, burst)


def recv_control(max: object) -> int:
    return _int(max, "max")


def tun_index(index: object) -> int:
    i = _int(index, "tun index")
    if not 0 <= i < MAX_TUN:
        raise ValueError("tun index out of range")
    return i


def _fd(fd: object) -> int:
    v = _int(fd, "fd")
    if v < 0:
        raise ValueError("bad fd")
    return v


def add_tun(fd: object, vnet_hdr_len: object) -> tuple[int, int]:
    """(fd, its virtio_net_hdr length: given, or asked from the TUN)."""
    f = _fd(fd)
    vl = None if vnet_hdr_len is None else [_int(vnet_hdr_len, "vnet_hdr_len")]
    return f, vnet_lengths([f], vl)[0]


def start(tun_fds: Iterable[object], gre_fd: object,
          vnet_hdr_len: int | Iterable[object] | None) -> tuple[list[int], int, list[int]]:
    """(TUN fds, GRE socket fd, virtio_net_hdr length per TUN).  ``gre_fd`` None: the
    caller passed a GRE port object, checked by the engine (the fd returned is -1)."""
    fds = [_fd(f) for f in tun_fds]
    if len(fds) > MAX_TUN:
        raise ValueError("too many TUN fds")
    g = -1
    if gre_fd is not None:
        g = _fd(gre_fd)
        if not stat.S_ISSOCK(os.fstat(g).st_mode):
            raise OSError(errno.ENOTSOCK, "gre_fd is not a socket")
    if vnet_hdr_len is None or isinstance(vnet_hdr_len, int):
        vl = vnet_lengths(fds, vnet_hdr_len)
    else:
        vl = vnet_lengths(fds, [_int(v, "vnet_hdr_len") for v in vnet_hdr_len])
    return fds, g, vl


# ------------------------------------------------------------------ slab arrays (reference)
def slab_array(x: object, name: str, dtype: type, ndim: int) -> memoryview:
    """What the compiled engine's typed memoryview arguments (``uint8_t[:, ::1] slab not
    None`` ...) accept, checked the same way for the reference: a writable C-contiguous
    buffer of ``ndim`` dimensions and exactly ``dtype``; TypeError for None or a
    non-buffer, ValueError otherwise."""
    if x is None:
        raise TypeError(f"Argument '{name}' must not be None")
    try:
        mv = memoryview(x)      # type: ignore[arg-type]  # any buffer; the TypeError is the check
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(x).__name__}'") from None
    if mv.ndim != ndim:
        raise ValueError(f"Buffer has wrong number of dimensions (expected {ndim}, got {mv.ndim})")
    if np.dtype(mv.format) != np.dtype(dtype):
        raise ValueError(f"Buffer dtype mismatch, expected {np.dtype(dtype)} but got {mv.format!r}")
    if not mv.c_contiguous:
        raise ValueError("ndarray is not C-contiguous")
    if mv.readonly:
        raise ValueError("buffer source array is read-only")
    return mv
