"""The one place that picks the data-plane engine.

``Engine`` is the compiled engine (``fastpptp._gre``).  The pure-Python twin
(``fastpptp._gre_ref``) is only used when asked for by name: ``load_engine("reference")``.
If the compiled module is missing we raise :class:`EngineUnavailable` (an ImportError)
with the build command, never fall back silently to the (30x slower) reference.
"""
from __future__ import annotations

import dataclasses
import fcntl
import importlib
import struct
from collections.abc import Sequence
from typing import Any, Protocol

from .ppp.constants import ENGINE_EVENT_BASE, EV_MPPE_LOST_SYNC, EV_MPPE_RESET_NEEDED

__all__ = ["EngineConfig", "EngineUnavailable", "load_engine", "Engine", "vnet_lengths",  # noqa: F822 (__getattr__)
           "ENGINE_EVENT_BASE", "EV_MPPE_RESET_NEEDED", "EV_MPPE_LOST_SYNC", "COUNTER_NAMES", "HEADROOM"]

# Engine events ride the control queue with pseudo-protocol numbers >= 0x10000; they are
# defined once, in ppp/constants.py (the PPP link consumes them and may not import us).

#: Bytes kept free in front of each packet in a slab row for the GRE/PPP/MPPE headers
#: (16 GRE + 2 FF03 + 2 protocol + 2 MPPE header + 2 inner protocol = 24, rounded up),
#: and room for a 12-byte virtio_net_hdr before it.
HEADROOM = 64

#: Per-session counters (docs/DESIGN.md, "Engine API"); totals() has the same keys
#: plus ``drop_no_route`` (a TUN packet for an address no session owns).
COUNTER_NAMES = (
    "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_control", "tx_control", "tx_acks",
    "lost", "reordered", "drop_malformed", "drop_unknown_call", "drop_wrong_source",
    # issue 10: a refused jump of the window, a packet no slab row could take, and the
    # control-queue overflows by cause (each of the three also counts in drop_queue_full)
    "drop_seq_jump", "drop_no_room", "queue_full_rx_control", "queue_full_tx_control",
    "queue_full_event",
    "drop_duplicate", "drop_too_old", "drop_reorder_timeout", "drop_queue_full",
    "drop_window_full", "drop_mppe", "drop_not_ready",
    "drop_rate_limit",
    "icmp_errors",
)
TOTAL_NAMES = COUNTER_NAMES + ("drop_no_route",)

#: Limits both twins share (the compiled engine's .pxd enum holds the same numbers; _gre
#: refuses to import if they differ).  Argument checks: fastpptp/engine_args.py.
MAX_TUN = 256           # TUN indexes 0..255
TXQ_DEPTH = 64          # flow control: packets held per call while the peer's window is full
TXQ_SLOT = 2048         # flow control: largest IP packet that can be held (larger: dropped)
FRAME_SLACK = 32        # a GRE payload may exceed the MRU by the PPP/MPPE headers
RLQ_SLOT = 2048         # rate limit: largest IP packet the hold queue takes (larger: policed)
#: Stateless MPPE: decrypted frames in a row whose inner protocol is not data (outside
#: 0x0021..0x00FA, or not a sane IP packet) before EV_MPPE_LOST_SYNC (_mppe.pxd has it too).
#: A peer in sync sends IP in every encrypted frame; garbage passes as IP ~1 in 2000 frames.
MPPE_LOST_SYNC_RUN = 32

#: Rate limits (``set_rate_limit``, docs/DESIGN.md "Rate limits"): the automatic burst is
#: RL_BURST_TIME seconds at the rate, at least RL_BURST_MIN bytes; the hold queue takes at
#: most RL_QUEUE_TIME seconds at the rate (at least RL_QUEUE_MIN bytes) and
#: ``EngineConfig.rate_limit_queue`` packets.
RL_BURST_TIME = 0.01
RL_BURST_MIN = 6000
RL_QUEUE_TIME = 0.05
RL_QUEUE_MIN = 6000
RL_MAX_KBIT = 1_000_000_000   # 1 Tbit/s (a limit the benchmark can set and never reach)
RL_MAX_BURST = 1 << 30


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    batch: int = 64                 # packets drained per side per wake-up
    mtu: int = 1400                 # PPP MTU towards the peer (default for new sessions)
    mru: int = 1500                 # largest PPP information field we accept
    reorder_depth: int = 64         # sequence numbers the reorder buffer can hold ahead
    reorder_timeout: float = 0.1    # seconds a gap is held open before it is declared lost
    ack_delay: float = 0.02         # seconds before a pending ack goes out alone (<= 0.1)
    flow_control: bool = False      # RFC 2637 sliding window + Appendix A ack timeout
    clamp_mss: bool = True          # clamp TCP MSS of SYNs both ways to fit the tunnel
    control_queue: int = 4096       # PPP control frames held each way (peer->Python, Python->peer)
    rcvbuf: int = 4 << 20
    sndbuf: int = 4 << 20
    offload: bool = True            # TUN virtio_net_hdr / TSO / GRO when the TUN has them
    rate_limit_queue: int = 64      # packets held per session and direction over its rate limit (0: drop)
    reorder_pool: int = 0           # reorder frames all calls share (0: max(1024, 4 x reorder_depth))
    # receive coalescing (interrupt moderation, as ethtool's rx-usecs): after a busy GRE
    # burst (>= RX_COALESCE_MIN datagrams) with nothing else ready, the I/O thread waits this
    # many microseconds for more before it sleeps in epoll, instead of being woken for each
    # next packet.  Only ever after a busy burst: a lone packet is never held.  0: off.
    rx_coalesce_us: int = 30

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= 1024:
            raise ValueError("batch must be 1..1024")
        if not 64 <= self.mtu <= 65535 or not 64 <= self.mru <= 65535:
            raise ValueError("mtu and mru must be 64..65535")
        if not 1 <= self.reorder_depth <= 1024:
            raise ValueError("reorder_depth must be 1..1024")
        if not 0 < self.reorder_timeout <= 10:
            raise ValueError("reorder_timeout must be in (0, 10] seconds")
        if not 0 <= self.ack_delay <= 0.1:
            raise ValueError("ack_delay must be in [0, 0.1] seconds (RFC 2637 §4.4 wants acks soon)")
        if not 1 <= self.control_queue <= 65536:
            raise ValueError("control_queue must be 1..65536")
        if not 0 <= self.rate_limit_queue <= 1024:
            raise ValueError("rate_limit_queue must be 0..1024")
        if not 0 <= self.reorder_pool <= 1 << 20:
            raise ValueError("reorder_pool must be 0..1048576")
        if not 0 <= self.rx_coalesce_us <= 1000:
            raise ValueError("rx_coalesce_us must be 0..1000 microseconds")


class EngineUnavailable(ImportError):
    """The compiled engine is not built (or failed to import)."""


_MODULES = {"compiled": "fastpptp._gre", "reference": "fastpptp._gre_ref"}


class EngineClass(Protocol):
    """What :func:`load_engine` returns: either twin's ``Engine`` class.  Class-level facts
    are declared here so callers read them without second-guessing (both twins set them)."""

    supports_vnet_hdr: bool

    def __call__(self, config: EngineConfig | None = None) -> Any: ...


def load_engine(impl: str = "compiled") -> EngineClass:
    """Return the Engine class of ``impl`` ("compiled" or "reference")."""
    try:
        name = _MODULES[impl]
    except KeyError:
        raise ValueError(f"unknown engine implementation {impl!r} (compiled|reference)") from None
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:
        if impl == "reference":
            raise
        raise EngineUnavailable(
            "the compiled data plane fastpptp._gre is not built "
            f"({exc}); build it with: python3 setup.py build_ext --inplace "
            "(or pip install .). The pure-Python reference is only used when asked for "
            "explicitly: load_engine('reference')") from exc
    engine: EngineClass = mod.Engine
    return engine


def vnet_lengths(fds: Sequence[int], vnet_hdr_len: int | Sequence[int] | None = None) -> list[int]:
    """virtio_net_hdr length carried by each TUN fd: given, or asked from the kernel
    (TUNGETIFF flags & IFF_VNET_HDR, then TUNGETVNETHDRSZ); 0 for anything not a TUN."""
    if vnet_hdr_len is not None:
        if isinstance(vnet_hdr_len, int):
            vl = [vnet_hdr_len] * len(fds)
        else:
            vl = [int(v) for v in vnet_hdr_len]
        if len(vl) != len(fds) or any(v not in (0, 10, 12) for v in vl):
            raise ValueError("vnet_hdr_len must be 0, 10 or 12 per TUN")
        return vl
    out = []
    for fd in fds:
        try:
            ifr = fcntl.ioctl(fd, 0x800454D2, bytes(40))          # TUNGETIFF
        except OSError:
            out.append(0)
            continue
        if not struct.unpack_from("=H", ifr, 16)[0] & 0x4000:     # IFF_VNET_HDR
            out.append(0)
            continue
        try:
            out.append(struct.unpack("=i", fcntl.ioctl(fd, 0x800454D7, bytes(4)))[0])
        except OSError:
            out.append(10)
    return out


def __getattr__(name: str) -> type:
    # `from fastpptp.dataplane import Engine` -> the compiled engine, or a clear error.
    if name == "Engine":
        return load_engine("compiled")
    raise AttributeError(name)
