"""Pure-Python reference data plane: the readable spec of ``fastpptp._gre``.

Same API and byte-for-byte the same behaviour as the compiled engine (differential tests
hold the two to it); it is also the benchmark baseline.  Semantics, in packet order:

Encapsulation (IP packet read from TUN ``tun``):
 1. IPv4/IPv6 header sanity (version, minimum length), else ``totals.drop_malformed``.
 2. Destination address -> session through the route table (``add_route``); if no route and
    the TUN carries exactly one session, that one; else ``totals.drop_no_route``.
 3. The family must be open (``set_data``), else ``drop_not_ready``.
 4. TCP SYN MSS clamped to the session MTU minus 40 (IPv4) / 60 (IPv6) when ``clamp_mss``.
 5. PPP header: FF 03 unless tx ACFC, protocol 1 byte when tx PFC and it is < 0x100.
    With MPPE: outer protocol 0x00FD, 2-byte MPPE header, then the encrypted inner
    2-byte protocol and datagram (RFC 3078 §3; Linux sends the inner protocol uncompressed).
 6. GRE (RFC 2637 §4.1): K=1, S=1, version 1, protocol 0x880B, peer's call ID,
    seq = ++seq_sent, ack = seq_recv piggybacked only if it changed since last sent (A=1).
 7. ``flow_control=True`` (fastpptp/_txwin_ref.py): held in a bounded per-call queue (TXQ_DEPTH = 64 packets of at
    most TXQ_SLOT = 2048 bytes) while the unacknowledged count reaches the window
    (``drop_window_full`` when the queue is full or the packet is larger than a slot).
    The window starts at the peer's Packet Receive Window, grows by one per ack up to it,
    halves when no ack comes within the adaptive ack time-out of RFC 2637 Appendix A
    (SRTT/DEV estimator, ATO = SRTT + 4 DEV in [0.1, 10] s, doubled on each time-out;
    the outstanding packets are then taken as lost).  Default: never held, since Windows
    and Linux peers do not enforce the window ([MS-PTPT]).

Arguments of the set-up calls are checked by fastpptp/engine_args.py, shared with the
compiled twin; the slab calls check their arrays as the compiled typed memoryviews do.

Control frames (``send_control``): queued (bounded by ``control_queue``), sent on the next
``process`` / loop wake-up with the next sequence number; LCP always with FF 03 and a
2-byte protocol (RFC 1661 §6.5/6.6), other protocols framed as the peer negotiated.

Decapsulation (IPv4 datagram from the raw GRE socket):
 1. IPv4: version 4, IHL >= 5, total length within the datagram, protocol 47, not a
    fragment; GRE as Linux pptp.c accepts it: C=0, R=0, K=1, s=0, recursion 0, flags 0,
    version 1, protocol 0x880B, payload length within what is left (S and A free).
    Otherwise ``totals.drop_malformed``.  A GRE payload above MRU + 32 is
    ``drop_malformed`` for the call (reorder slots are MRU-sized).
 2. Call ID -> session (``totals.drop_unknown_call``); the IPv4 source must be the session's
    peer (``drop_wrong_source``).
 3. A=1: ack processed (RFC 1982 serial comparison).  S=0: ack-only, no payload allowed.
 4. Sequence (RFC 2637 §4.3; the window: fastpptp/_rxwin_ref.py): the first packet is
    accepted whatever its number (peers start at 0 or at 1).  Next expected -> delivered,
    then the reorder buffer drains.  Ahead -> buffered (``reordered``), at most
    ``reorder_depth`` ahead; up to reorder_depth + max(reorder_depth, JUMP_SLACK) ahead
    forces older gaps to be given up (``lost``); further ahead is a jump (``_jump``:
    refused, ``drop_seq_jump``, until a second packet confirms the new region and the
    window has been silent for ``reorder_timeout``, or four confirm it and the window has
    been silent for 32 of the stream's mean packet gaps, at least 1 ms: _rxwin_ref.py).  A gap held longer than
    ``reorder_timeout`` is given up (``lost`` and ``drop_reorder_timeout`` count the
    sequence numbers skipped).  The frames buffered by all calls come from one pool of
    ``reorder_pool`` frames; when it is empty, ``drop_no_room``.  Behind ->
    ``drop_duplicate`` if that number was delivered (64-entry history), else
    ``drop_too_old``.  LCP Echo-Request/Reply are delivered out of order (so keepalives
    survive reordering) only inside the window or behind it within the history, never
    twice: a window moved away from the peer makes the keepalive fail.
 5. Delivery (in order, after the reorder buffer): PPP header parsed (FF 03 optional,
    protocol 1 or 2 bytes: RFC 1661 §2 validity), MPPE decrypted when on (plaintext data
    is refused: ``drop_mppe``; so is a decrypted inner protocol outside 0x0021..0x00FA, and
    stateless, MPPE_LOST_SYNC_RUN non-IP frames in a row queue EV_MPPE_LOST_SYNC once and
    drop everything but sane IP until one arrives), IPv4/IPv6 -> TUN (``rx_packets``/``rx_bytes``), anything else
    -> control queue (``rx_control``; ``queue_full_rx_control``) and the control eventfd.
    In ``decap_slab`` a packet no row can take is ``drop_no_room``, never ``rx_packets``.

Rate limits (``set_rate_limit``): a token bucket and hold queue per direction (_Bucket) on
IP packets only, checked after the MSS clamp of encapsulation step 4 and of delivery (5);
``drop_rate_limit``; held packets leave from the timers.

Acks: when an ack is pending and nothing carried it for ``ack_delay`` seconds, one ack-only
packet (S=0, A=1, ack in the sequence slot) goes out (``tx_acks``): one per call per timer,
never one per received packet.
"""
from __future__ import annotations

import errno
import ipaddress
import operator
import os
import select
import socket
import threading
import time
from collections import deque

import numpy as np

from fastpptp import _offload_ref as _offload
from fastpptp import _rxwin_ref as _rxwin
from fastpptp import _txwin_ref as _txwin
from fastpptp import engine_args as _args
from fastpptp.crypto import mppe as _mppe
from fastpptp.dataplane import (COUNTER_NAMES, EV_MPPE_LOST_SYNC, EV_MPPE_RESET_NEEDED,
                                FRAME_SLACK, HEADROOM, MAX_TUN, MPPE_LOST_SYNC_RUN, RLQ_SLOT,
                                TOTAL_NAMES, EngineConfig)
from fastpptp.gre import GRE_PROTOCOL_PPP as GRE_PROTO_PPP
from fastpptp.ppp.constants import ENGINE_EVENT_BASE, Protocol

PPP_IPV4 = int(Protocol.IPV4)       # plain ints (compared per packet), defined in ppp/constants
PPP_IPV6 = int(Protocol.IPV6)
PPP_COMP = int(Protocol.COMPRESSED)
PPP_LCP = int(Protocol.LCP)
PAUSED_POLL = 0.001             # s: while the GRE side is full the loop asks it this often
                                # (the compiled twin: _ioloop.pyx PAUSED_POLL_MS)
RX_COALESCE_MIN = 8             # a GRE burst this busy makes the next idle moment a coalescing wait
RL_EPS = 1e-6                   # bytes: a deadline computed for a packet lets it pass
U32 = 0xFFFFFFFF
serial_diff = _rxwin.serial_diff     # RFC 1982 signed 32-bit distance


def _parse_addr(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


class Output:
    """What one ``process`` call produced."""

    __slots__ = ("tun_out", "gre_out")

    def __init__(self):
        self.tun_out: list[tuple[int, bytes]] = []
        self.gre_out: list[tuple[str, bytes]] = []


class _SlabSink:
    """Where ``decap_slab`` puts the IP packets ``_deliver`` hands over (in place of a
    ``tun_out`` list): the row's own packet in its row, a released one in a free row (done,
    yielded nothing; lowest first) or a spare row; ``put`` is False when none can take it."""

    def __init__(self, slab, n, out_tun, out_off, out_len):
        self.flat = slab.reshape(-1)
        self.rows, self.width = slab.shape
        self.spare = n
        self.free: deque = deque()
        self.out = (out_tun, out_off, out_len)
        self.m = 0
        self.row = 0                # the row being decapsulated
        self.yielded = False        # it has put its own packet

    def put(self, tun, ip, own) -> bool:
        k = len(ip)
        if own:
            self.yielded = True     # shorter than its datagram: it fits its own row
            r = self.row
        elif HEADROOM + k > self.width:
            return False
        elif self.free:
            r = self.free.popleft()
        elif self.spare < self.rows:
            r = self.spare
            self.spare += 1
        else:
            return False
        off = r * self.width + HEADROOM
        self.flat[off:off + k] = memoryview(bytes(ip))
        out_tun, out_off, out_len = self.out
        out_tun[self.m], out_off[self.m], out_len[self.m] = tun, off, k
        self.m += 1
        return True


class _Bucket:
    """Rate limit of one direction of a session: a token bucket (bytes) and a hold queue.

    Tokens refill at ``rate`` bytes/s up to ``burst``, on each packet and timer, from the
    caller's clock.  A packet passes when nothing is held and the bucket holds its size (or
    is full, for a packet larger than the burst: the tokens may then go below 0); otherwise
    it joins the hold queue, unless the queue has ``rate_limit_queue`` packets, or
    ``queue_bytes`` bytes with it, or the packet is larger than RLQ_SLOT: then it is
    dropped (``drop_rate_limit``).  Held packets leave in order from the timers, each when
    the bucket holds its size.  rate 0: unlimited (what is still held leaves at once)."""

    __slots__ = ("rate", "burst", "tokens", "last", "qmax", "q", "qbytes")

    def __init__(self):
        self.rate = 0.0
        self.burst = 0.0
        self.tokens = 0.0
        self.last = -1.0
        self.qmax = 0
        self.q: deque = deque()         # (protocol, packet)
        self.qbytes = 0

    def set(self, rate, burst, qmax):
        """From unlimited the bucket starts full; otherwise it keeps its tokens (at most
        the new burst)."""
        if rate and not self.rate:
            self.tokens = burst
            self.last = -1.0
        elif self.tokens > burst:
            self.tokens = burst
        self.rate, self.burst, self.qmax = rate, burst, qmax

    def refill(self, now):
        if self.last < 0 or now < self.last:       # first packet, or a clock from elsewhere
            self.last = now
            return
        if self.tokens < self.burst:
            self.tokens += (now - self.last) * self.rate
            if self.tokens > self.burst:
                self.tokens = self.burst
        self.last = now

    def fits(self, n):
        need = float(n) if n < self.burst else self.burst
        return self.rate == 0 or self.tokens >= need - RL_EPS

    def deadline(self):
        if not self.q:
            return None
        if self.rate == 0:
            return self.last
        need = float(len(self.q[0][1]))
        if need > self.burst:
            need = self.burst
        if self.tokens >= need - RL_EPS:
            return self.last
        return self.last + (need - self.tokens) / self.rate


class _Session:
    def __init__(self, call_id, peer_call_id, peer_addr, peer_bin, tun, peer_rwin, peer_ppd, mtu,
                 rx: _rxwin.RxWindow):
        self.call_id = call_id
        self.peer_call_id = peer_call_id
        self.peer_addr = peer_addr
        self.peer_bin = peer_bin
        self.tun = tun
        self.peer_ppd = peer_ppd
        self.tx_acfc = False
        self.tx_pfc = False
        self.mtu = mtu
        self.ipv4 = False
        self.ipv6 = False
        # RFC 2637 §4.2-4.4, named as Linux pptp.c names them.  Send side: seq_sent,
        # ack_recv, the peer's window and the opt-in flow control (_txwin_ref)
        self.tx = _txwin.TxWindow(peer_rwin)
        # receive side: seq_recv, ack_sent, the ack timer, the reorder buffer (_rxwin_ref)
        self.rx = rx
        self.mppe_tx = None
        self.mppe_rx = None
        self.rl_tx = _Bucket()      # TUN -> GRE
        self.rl_rx = _Bucket()      # GRE -> TUN
        self.rl_deadline = None
        self.c = dict.fromkeys(COUNTER_NAMES, 0)


def _c_int(x) -> int:
    """What a Cython ``int`` argument accepts (the per-batch calls convert theirs this way on
    the compiled twin): anything with __index__, and a float (truncated); else TypeError;
    OverflowError outside a C int."""
    if isinstance(x, float):
        v = int(x)
    else:
        try:
            v = operator.index(x)
        except TypeError:
            raise TypeError("an integer is required") from None
    if not -0x80000000 <= v <= 0x7FFFFFFF:
        raise OverflowError("value too large to convert to int")
    return v


def _c_double(x) -> float:
    """What a Cython ``double`` argument accepts: a real number (__float__ or __index__)."""
    if isinstance(x, float):
        return x
    if x is None or isinstance(x, (str, bytes, bytearray)):
        raise TypeError(f"must be real number, not {type(x).__name__}")
    return float(x)


def _check_slab(slab, lens, n, outs):
    """The slab calls' array checks, as the compiled typed memoryviews and bounds checks
    make them: uint8 [rows, row] slab, uint32 lens, ``0 <= n <= rows``, each row's length
    fits its row after HEADROOM.  Returns n."""
    _args.slab_array(slab, "slab", np.uint8, 2)
    _args.slab_array(lens, "lens", np.uint32, 1)
    for arr, name, dtype, ndim in outs:
        _args.slab_array(arr, name, dtype, ndim)
    n = _c_int(n)
    if not 0 <= n <= slab.shape[0] or n > lens.shape[0]:
        raise ValueError("slab/lens/out_dst too small for n")
    for i in range(n):
        if HEADROOM + int(lens[i]) > slab.shape[1]:
            raise ValueError(f"row {i}: packet does not fit the row")
    return n


class Engine:
    """Reference engine: see the module docstring for the semantics."""

    HEADROOM = HEADROOM

    def __init__(self, config: EngineConfig | None = None):
        self._config = cfg = _args.engine_config(config)
        self._sessions: dict[int, _Session] = {}
        self._routes: dict[bytes, int] = {}
        self._timers: dict[int, None] = {}          # call IDs with a deadline, insertion order
        self._ctlq: deque = deque()
        self._ctl_out: deque = deque()              # (call_id, PPP frame) waiting for process()
        self._totals = dict.fromkeys(TOTAL_NAMES, 0)
        self._lock = threading.Lock()
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread = None
        self._running = False
        self._port = None                           # the GRE port object, from start() to stop()
        self._paused = False                        # back-pressure: TUNs not polled (_routine_io)
        self._gre_fills = False                     # the raw GRE socket's send buffer filled once
        self._port_icmp_base = 0
        self._gre_sock = None
        self._max_frame = cfg.mru + FRAME_SLACK
        # receive windows (_rxwin_ref): their parameters and the reorder frames all calls share
        self._rxp = _rxwin.RxParams(cfg.reorder_depth, cfg.reorder_timeout, cfg.ack_delay)
        self._rxpool = _rxwin.RxPool(_rxwin.pool_frames(cfg.reorder_pool, cfg.reorder_depth))
        # TUN table: index -> fd (-1 free), virtio_net_hdr length, owner ("start": freed by
        # stop(); "added": by remove_tun).  add_tun reuses the lowest free index.
        self._tun_fds: list[int] = []
        self._tun_vnet: list[int] = []
        self._tun_owner: list[str | None] = []
        self._ep = None
        self._loops = 0
        self._coalesced = 0

    @property
    def config(self):
        """The EngineConfig (read-only, as the compiled engine's)."""
        return self._config

    # ------------------------------------------------------------------ sessions
    def add_session(self, call_id, peer_call_id, peer_addr, *, tun=0, peer_rwin=64, peer_ppd=0):
        a = _args.add_session(call_id, peer_call_id, peer_addr, tun, peer_rwin, peer_ppd)
        with self._lock:
            if a.call_id in self._sessions:
                raise ValueError(f"call ID {a.call_id} already has a session")
            self._sessions[a.call_id] = _Session(a.call_id, a.peer_call_id, a.peer_addr,
                                                 a.peer_bin, a.tun, a.peer_rwin, a.peer_ppd,
                                                 self.config.mtu,
                                                 _rxwin.RxWindow(self._rxp, self._rxpool))
        self._kick()

    def set_peer_call(self, call_id, peer_call_id, *, peer_rwin=64, peer_ppd=0):
        """The peer's call ID (and window) arrived: a PNS registers its call when it sends the
        Outgoing-Call-Request, so GRE the PAC sends right after its reply is not dropped, and
        learns the PAC's call ID only from that reply (RFC 2637 §2.7-2.8)."""
        call_id, peer_call_id, peer_rwin, peer_ppd = _args.set_peer_call(
            call_id, peer_call_id, peer_rwin, peer_ppd)
        with self._lock:
            s = self._get(call_id)
            s.peer_call_id = peer_call_id
            s.peer_ppd = peer_ppd
            s.tx.set_rwin(peer_rwin)

    def remove_session(self, call_id):
        call_id = _args.lookup(call_id)
        with self._lock:
            s = self._get(call_id)              # s.tun == -1: detached by remove_tun
            del self._sessions[call_id]
            s.rx.release()                      # its buffered frames back to the pool
            self._timers.pop(call_id, None)
            for k in [k for k, v in self._routes.items() if v == call_id]:
                del self._routes[k]
            self._ctl_out = deque(x for x in self._ctl_out if x[0] != call_id)
        del s

    def _get(self, call_id: int) -> _Session:
        """The session of an ID engine_args.lookup returned (KeyError when there is none)."""
        try:
            return self._sessions[call_id]
        except KeyError:
            raise KeyError(f"no session for call ID {call_id}") from None

    def set_ppp(self, call_id, *, tx_acfc, tx_pfc, mtu):
        call_id, acfc, pfc, mtu = _args.set_ppp(call_id, tx_acfc, tx_pfc, mtu)
        with self._lock:
            s = self._get(call_id)
            s.tx_acfc, s.tx_pfc, s.mtu = acfc, pfc, mtu

    def set_data(self, call_id, ipv4, ipv6):
        call_id = _args.lookup(call_id)
        with self._lock:
            s = self._get(call_id)
            s.ipv4, s.ipv6 = bool(ipv4), bool(ipv6)

    def add_route(self, call_id, addr):
        key, _ = _args.address(addr)
        call_id = _args.lookup(call_id)
        with self._lock:
            self._get(call_id)
            self._routes[key] = call_id

    def remove_route(self, addr):
        key, _ = _args.address(addr)
        with self._lock:
            self._routes.pop(key, None)

    def set_mppe(self, call_id, send_key, recv_key, bits, stateful, rx_stateful=None):
        """``stateful``: the mode we send with and, unless ``rx_stateful`` is given, receive
        with (CCP negotiates each direction on its own, RFC 1962 §1)."""
        a = _args.set_mppe(call_id, send_key, recv_key, bits, stateful, rx_stateful)
        tx = _mppe.MppeEncryptor(a.send_key, a.bits, a.stateful)
        rx = _mppe.MppeDecryptor(a.recv_key, a.bits, a.rx_stateful)
        with self._lock:
            s = self._get(a.call_id)
            s.mppe_tx, s.mppe_rx = tx, rx

    def clear_mppe(self, call_id):
        call_id = _args.lookup(call_id)
        with self._lock:
            s = self._get(call_id)
            s.mppe_tx = s.mppe_rx = None

    def mppe_reset(self, call_id):
        call_id = _args.lookup(call_id)
        with self._lock:
            s = self._get(call_id)
            if s.mppe_tx is not None:
                s.mppe_tx.request_flush()

    # ------------------------------------------------------------------ rate limits
    def set_rate_limit(self, call_id, tx_kbit, rx_kbit, burst_bytes=0):
        """Token bucket per direction (tx: TUN -> GRE, rx: GRE -> TUN) on IP packets, in
        kbit/s (1000 bit/s) of IP bytes; 0 = unlimited; ``burst_bytes`` 0 = automatic.  See
        _Bucket; PPP control frames and acks are never limited."""
        call_id, tx, rx = _args.set_rate_limit(call_id, tx_kbit, rx_kbit, burst_bytes)
        with self._lock:
            s = self._get(call_id)
            s.rl_tx.set(tx.rate, tx.burst, tx.queue_bytes)
            s.rl_rx.set(rx.rate, rx.burst, rx.queue_bytes)
            if s.rl_tx.q or s.rl_rx.q:
                # the rate changed under held packets: recomputed on the next timer pass
                s.rl_deadline = 0.0
                self._arm(s)
        self._kick()

    def _rl_admit(self, s, b, proto, pkt, now) -> bool:
        """True: send ``pkt`` now (tokens taken); False: held or dropped."""
        if b.rate == 0 and not b.q:
            return True
        b.refill(now)
        n = len(pkt)
        if not b.q and b.fits(n):
            b.tokens -= n
            return True
        if (len(b.q) >= self.config.rate_limit_queue or n > RLQ_SLOT
                or (b.rate != 0 and b.qbytes + n > b.qmax)):
            s.c["drop_rate_limit"] += 1
            return False
        b.q.append((proto, bytes(pkt)))
        b.qbytes += n
        self._rl_arm(s)
        return False

    def _rl_arm(self, s):
        ds = [d for d in (s.rl_tx.deadline(), s.rl_rx.deadline()) if d is not None]
        s.rl_deadline = min(ds) if ds else None
        if ds:
            self._arm(s)

    def _rl_release(self, s, now, tun_out, gre_out):
        """Send what the buckets allow of the hold queues, in order (from the timers)."""
        s.rl_deadline = None
        for b, tx in ((s.rl_tx, True), (s.rl_rx, False)):
            if not b.q:
                continue
            b.refill(now)
            while b.q and b.fits(len(b.q[0][1])):
                proto, pkt = b.q.popleft()
                b.qbytes -= len(pkt)
                b.tokens -= len(pkt)
                if s.tun < 0 or not (s.ipv4 if proto == PPP_IPV4 else s.ipv6):
                    s.c["drop_not_ready"] += 1
                    continue
                if tx:
                    self._send_data(s, proto, bytearray(pkt), now, gre_out)
                else:
                    self._to_tun(s, tun_out, pkt, False)
        self._rl_arm(s)

    @staticmethod
    def _to_tun(s, tun_out, ip, own):
        """Hand an IP packet to the session's TUN (a ``tun_out`` list, or decap_slab's rows)
        and count it; a packet no slab row can take is ``drop_no_room``, never received."""
        if isinstance(tun_out, _SlabSink):
            if not tun_out.put(s.tun, ip, own):
                s.c["drop_no_room"] += 1
                return
        else:
            tun_out.append((s.tun, bytes(ip)))
        s.c["rx_packets"] += 1
        s.c["rx_bytes"] += len(ip)

    # ------------------------------------------------------------------ control queue
    def send_control(self, call_id, protocol, payload):
        call_id, protocol, payload = _args.send_control(call_id, protocol, payload)
        with self._lock:
            s = self._get(call_id)
            _args.control_length(len(payload), s.mtu, self.config.mru)
            if len(self._ctl_out) >= self.config.control_queue:
                self._ctl_full(s, "queue_full_tx_control")  # bounded: PPP retransmits control frames
                return
            self._ctl_out.append((call_id, self._ppp_header(s, protocol, force_full=protocol == PPP_LCP)
                                  + payload))
        self._kick()

    def recv_control(self, max=64):
        max = _args.recv_control(max)
        out = []
        with self._lock:
            while self._ctlq and len(out) < max:
                out.append(self._ctlq.popleft())
            if not self._ctlq and self._efd >= 0:
                try:
                    os.eventfd_read(self._efd)
                except BlockingIOError:
                    pass
        return out

    @property
    def control_fd(self):
        return self._efd

    def _ctl_full(self, s, cause):
        """A control queue overflowed: counted by cause, and in the sum drop_queue_full, on
        the call and engine-wide (totals outlive the call)."""
        for k in (cause, "drop_queue_full"):
            s.c[k] += 1
            self._totals[k] += 1

    def _queue_control(self, s, protocol, info):
        # Never blocks: a full queue drops (counted) and the eventfd is non-blocking.
        if len(self._ctlq) >= self.config.control_queue or len(info) > self._max_frame:
            # bounded, and slots of MRU + slack
            self._ctl_full(s, "queue_full_event" if protocol >= ENGINE_EVENT_BASE else "queue_full_rx_control")
            return
        self._ctlq.append((s.call_id, protocol, bytes(info)))
        if protocol < ENGINE_EVENT_BASE:
            s.c["rx_control"] += 1
        if self._efd >= 0:
            os.eventfd_write(self._efd, 1)

    # ------------------------------------------------------------------ counters
    def counters(self, call_id):
        call_id = _args.lookup(call_id)
        with self._lock:
            return dict(self._get(call_id).c)

    def totals(self):
        with self._lock:
            out = dict(self._totals)
            if self._port is not None:
                out["icmp_errors"] += self._port.counters()["icmp_errors"] - self._port_icmp_base
            return out

    # ------------------------------------------------------------------ sans-I/O core
    def process(self, now, tun_in=(), gre_in=()):
        now = _c_double(now)
        if self._running:
            raise RuntimeError("process() while the I/O thread runs")
        out = Output()
        with self._lock:
            for d in gre_in:
                d = bytes(d)                        # as the compiled twin takes each item
                if len(d) > 65535:                  # larger than any IPv4 datagram
                    self._totals["drop_malformed"] += 1
                    continue
                self._decap(d, now, out.tun_out)
            self._flush_control(now, out.gre_out)
            for tun, pkt in tun_in:
                tun = _c_int(tun)
                pkt = bytearray(pkt)
                if len(pkt) > 65535:
                    self._totals["drop_malformed"] += 1
                    continue
                self._encap(tun, pkt, now, out.gre_out)
            self._fire_timers(now, out.tun_out, out.gre_out)
        return out

    def next_deadline(self):
        with self._lock:
            return self._next_deadline()

    def _next_deadline(self):
        best = None
        for cid in self._timers:
            s = self._sessions[cid]
            for d in (*s.rx.deadlines(), s.tx.deadline, s.rl_deadline):
                if d is not None and (best is None or d < best):
                    best = d
        return best

    def _arm(self, s):
        if s.call_id not in self._timers:
            self._timers[s.call_id] = None

    # ---- encapsulation
    def _ppp_header(self, s, protocol, force_full=False):
        h = b"" if (s.tx_acfc and not force_full) else b"\xff\x03"
        if s.tx_pfc and not force_full and protocol < 0x100:
            return h + bytes((protocol,))
        return h + protocol.to_bytes(2, "big")

    def _encap(self, tun, pkt: bytearray, now, gre_out):
        n = len(pkt)
        v = pkt[0] >> 4 if n else 0
        if v == 4 and n >= 20:
            dst, proto = bytes(pkt[16:20]), PPP_IPV4
        elif v == 6 and n >= 40:
            dst, proto = bytes(pkt[24:40]), PPP_IPV6
        else:
            self._totals["drop_malformed"] += 1
            return
        cid = self._routes.get(dst)
        s = self._sessions.get(cid) if cid is not None else None
        if s is None:
            only = [x for x in self._sessions.values() if x.tun == tun] if tun >= 0 else []
            if len(only) != 1:
                self._totals["drop_no_route"] += 1
                return
            s = only[0]
        if not (s.ipv4 if proto == PPP_IPV4 else s.ipv6) or s.tun < 0:   # < 0: TUN removed
            s.c["drop_not_ready"] += 1
            return
        if self.config.clamp_mss:
            _offload.mss_clamp_mtu(pkt, s.mtu)
        if not self._rl_admit(s, s.rl_tx, proto, pkt, now):
            return
        self._send_data(s, proto, pkt, now, gre_out)

    def _send_data(self, s, proto, pkt, now, gre_out):
        """An IP packet past its rate limit: held while the flow-control window is closed,
        else framed and emitted."""
        if s.tx.must_hold(self.config.flow_control):
            if not s.tx.hold(proto, pkt):
                s.c["drop_window_full"] += 1        # queue full, or larger than a slot
                return
            self._arm(s)
            return
        self._emit_data(s, proto, pkt, now, gre_out)

    def _emit_data(self, s, proto, pkt, now, gre_out):
        if s.mppe_tx is not None:
            frame = self._ppp_header(s, PPP_COMP) + s.mppe_tx.encrypt(proto.to_bytes(2, "big") + bytes(pkt))
        else:
            frame = self._ppp_header(s, proto) + bytes(pkt)
        self._emit_gre(s, frame, now, gre_out)
        s.c["tx_packets"] += 1
        s.c["tx_bytes"] += len(pkt)

    def _emit_gre(self, s, frame, now, gre_out):
        seq, arm = s.tx.next_seq(self.config.flow_control, now)
        if arm:                                 # flow control: the ack time-out started
            self._arm(s)
        ack = s.rx.ack_pending()
        hdr = bytearray(b"\x30\x01\x88\x0b")
        hdr += len(frame).to_bytes(2, "big") + s.peer_call_id.to_bytes(2, "big")
        hdr += seq.to_bytes(4, "big")
        if ack:
            hdr[1] |= 0x80
            hdr += s.rx.ack_taken().to_bytes(4, "big")    # piggybacked: no ack-only packet
        gre_out.append((s.peer_addr, bytes(hdr) + bytes(frame)))

    def _flush_control(self, now, gre_out):
        while self._ctl_out:
            cid, frame = self._ctl_out.popleft()
            s = self._sessions.get(cid)
            if s is None:
                continue
            self._emit_gre(s, frame, now, gre_out)
            s.c["tx_control"] += 1

    # ---- decapsulation
    def _decap(self, d: bytes, now, tun_out):
        n = len(d)
        t = self._totals
        if n < 20 or d[0] >> 4 != 4 or d[0] & 15 < 5:
            t["drop_malformed"] += 1
            return
        ihl = (d[0] & 15) * 4
        tot = (d[2] << 8) | d[3]
        if tot < ihl or tot > n or d[9] != 47 or ((d[6] << 8) | d[7]) & 0x3FFF:
            t["drop_malformed"] += 1
            return
        g, rem = ihl, tot - ihl
        if rem < 8:
            t["drop_malformed"] += 1
            return
        f0, f1 = d[g], d[g + 1]
        # RFC 2637 §4.1 / Linux pptp.c: K=1, C=R=s=recur=0, flags 0, version 1, PPP.
        if (f0 & 0xEF) != 0x20 or (f1 & 0x7F) != 0x01 or ((d[g + 2] << 8) | d[g + 3]) != GRE_PROTO_PPP:
            t["drop_malformed"] += 1
            return
        has_seq, has_ack = bool(f0 & 0x10), bool(f1 & 0x80)
        hl = 8 + 4 * has_seq + 4 * has_ack
        plen = (d[g + 4] << 8) | d[g + 5]
        if rem < hl or plen > rem - hl:
            t["drop_malformed"] += 1
            return
        s = self._sessions.get((d[g + 6] << 8) | d[g + 7])
        if s is None:
            t["drop_unknown_call"] += 1
            return
        if d[12:16] != s.peer_bin:
            s.c["drop_wrong_source"] += 1
            return
        o = g + 8
        seq = 0
        if has_seq:
            seq = int.from_bytes(d[o:o + 4], "big")
            o += 4
        if has_ack:
            self._on_ack(s, int.from_bytes(d[o:o + 4], "big"), now)
            o += 4
        if not has_seq:
            if plen:
                s.c["drop_malformed"] += 1      # payload without a sequence number
            return
        if plen == 0 or plen > self._max_frame:
            s.c["drop_malformed"] += 1
            return
        self._on_seq(s, seq, d[o:o + plen], now, tun_out)

    def _on_ack(self, s, ack, now):
        """The peer acknowledged ``ack`` (_txwin_ref: the window opens, the ack time-out
        restarts, held packets may go)."""
        if s.tx.on_ack(ack, self.config.flow_control, now):
            self._arm(s)

    def _on_seq(self, s, seq, frame, now, tun_out):
        """A frame with a sequence number: through the receive window (_rxwin_ref)."""
        self._rx_act(s, s.rx.receive(seq, frame, now), now, tun_out)

    def _rx_act(self, s, o: _rxwin.RxOut, now, tun_out):
        """Do what the receive window asked: arm the timers, count, deliver the frames in
        order, then give their reorder-pool frames back (only now, as the compiled twin)."""
        if o.arm:
            self._arm(s)
        c = s.c
        c["lost"] += o.lost
        if o.lost and s.mppe_rx is not None:     # a stateless count may wrap over 4096+ lost
            s.mppe_rx.add_lost(o.lost)
        c["drop_reorder_timeout"] += o.lost_timeout
        c["reordered"] += o.reordered
        if o.drop != _rxwin.TAKEN:
            c[_rxwin.DROP_COUNTER[o.drop]] += 1
        for frame, own in o.frames:
            self._deliver(s, frame, now, tun_out, own=own)
        s.rx.pool.put(o.pooled)

    # ---- delivery of an in-order PPP frame
    def _deliver(self, s, frame, now, tun_out, own=False):
        """``own``: the frame of the datagram being decapsulated (not one released from
        the reorder buffer); decap_slab leaves it in its own row."""
        n = len(frame)
        o = 2 if n >= 2 and frame[0] == 0xFF and frame[1] == 0x03 else 0
        proto, o = self._ppp_proto(frame, o)
        if proto is None:
            s.c["drop_malformed"] += 1
            return
        if proto == PPP_COMP and s.mppe_rx is not None:
            if n - o < 3:
                s.c["drop_malformed"] += 1
                return
            rx = s.mppe_rx
            try:
                frame = rx.decrypt(bytes(frame[o:]))
            except _mppe.MppeError as exc:
                s.c["drop_mppe"] += 1
                if isinstance(exc, _mppe.MppeNeedReset):   # stateful loss: CCP Reset-Request
                    self._queue_control(s, EV_MPPE_RESET_NEEDED, b"")
                return
            proto, o = self._ppp_proto(frame, 0)
            if not rx.stateful:
                # Stateless keys cannot be reset: after >= 4096 losses the count wrapped and
                # every frame decrypts to garbage.  A sane IP packet ends a run of non-data
                # frames; MPPE_LOST_SYNC_RUN of them in a row raise EV_MPPE_LOST_SYNC, once.
                m = len(frame) - o
                if ((proto == PPP_IPV4 and m >= 20 and frame[o] >> 4 == 4)
                        or (proto == PPP_IPV6 and m >= 40 and frame[o] >> 4 == 6)):
                    rx.lost_run = 0
                elif rx.lost_run < MPPE_LOST_SYNC_RUN:
                    rx.lost_run += 1
                    if rx.lost_run == MPPE_LOST_SYNC_RUN:
                        self._queue_control(s, EV_MPPE_LOST_SYNC, b"")
                if rx.lost_run >= MPPE_LOST_SYNC_RUN:     # lost: all but sane IP is garbage
                    s.c["drop_mppe"] += 1
                    return
            if proto is None:
                s.c["drop_malformed"] += 1
                return
            # MPPE carries PPP protocols 0x0021..0x00FA only (never LCP/NCP/CCP): anything
            # else is garbage from lost keys, never a control frame for the link.
            if not _mppe.MPPE_PROTO_MIN <= proto <= _mppe.MPPE_PROTO_MAX:
                s.c["drop_mppe"] += 1
                return
        elif (proto == PPP_IPV4 or proto == PPP_IPV6) and s.mppe_rx is not None:
            s.c["drop_mppe"] += 1               # MPPE is on: refuse plaintext data
            return
        if proto == PPP_IPV4 or proto == PPP_IPV6:
            ip = bytearray(frame[o:])
            m = len(ip)
            if proto == PPP_IPV4:
                ok, ready = m >= 20 and ip[0] >> 4 == 4, s.ipv4
            else:
                ok, ready = m >= 40 and ip[0] >> 4 == 6, s.ipv6
            if not ok:
                s.c["drop_malformed"] += 1
                return
            if not ready or s.tun < 0:          # < 0: its TUN was removed (detached)
                s.c["drop_not_ready"] += 1
                return
            if self.config.clamp_mss:
                _offload.mss_clamp_mtu(ip, s.mtu)
            if not self._rl_admit(s, s.rl_rx, proto, ip, now):
                return
            self._to_tun(s, tun_out, ip, own)
            return
        self._queue_control(s, proto, frame[o:])

    @staticmethod
    def _ppp_proto(frame, o):
        """RFC 1661 §2: protocol is 1 byte when PFC sent it (odd first byte), else 2 bytes with
        the low byte odd."""
        n = len(frame)
        if o >= n:
            return None, o
        b = frame[o]
        if b & 1:
            return b, o + 1
        if o + 1 >= n or not frame[o + 1] & 1:
            return None, o
        return (b << 8) | frame[o + 1], o + 2

    # ---- timers
    def _fire_timers(self, now, tun_out, gre_out):
        for cid in list(self._timers):
            s = self._sessions.get(cid)
            if s is None:
                self._timers.pop(cid, None)
                continue
            # receive window: gaps past the reorder timeout given up, a confirmed jump taken
            self._rx_act(s, s.rx.fire(now), now, tun_out)
            if self.config.flow_control:
                # the ack time-out (the window halves), then what the window lets go
                s.tx.fire(now)
                while (item := s.tx.pop()) is not None:
                    self._emit_data(s, item[0], item[1], now, gre_out)
            if s.rl_deadline is not None and s.rl_deadline <= now:
                self._rl_release(s, now, tun_out, gre_out)
            if s.rx.ack_due(now):
                # S=0, A=1: the ack travels where the sequence number would be (RFC 2637 §4.1)
                gre_out.append((s.peer_addr, b"\x20\x81\x88\x0b\x00\x00"
                                + s.peer_call_id.to_bytes(2, "big")
                                + s.rx.ack_sent_now().to_bytes(4, "big")))
                s.c["tx_acks"] += 1
            if (all(d is None for d in s.rx.deadlines()) and not s.tx.timers_pending()
                    and s.rl_deadline is None):
                del self._timers[cid]

    # ------------------------------------------------------------------ slab API
    def encap_slab(self, tun, slab, lens, n, out_dst):
        """Encapsulate rows 0..n-1 of ``slab`` (uint8 [rows, row_size]); row i holds an IP
        packet of ``lens[i]`` bytes at ``HEADROOM``.  Each frame is built in place in front
        of its packet.  On return ``out_dst[i] = (peer IPv4 as host-order uint32 or 0 when
        the packet was dropped or queued, frame start offset in the row, frame length)``
        (``out_dst``: uint32 [rows, 3]).  Returns the number of frames ready to send.
        A packet above 65535 bytes is ``drop_malformed``, as in ``process``."""
        tun = _c_int(tun)
        if self._running:
            raise RuntimeError("encap_slab() while the I/O thread runs")
        n = _check_slab(slab, lens, n, [(out_dst, "out_dst", np.uint32, 2)])
        if n > out_dst.shape[0] or out_dst.shape[1] != 3:
            raise ValueError("slab/lens/out_dst too small for n")
        now = time.monotonic()
        ready = 0
        with self._lock:
            for i in range(n):
                out_dst[i, 0] = out_dst[i, 1] = out_dst[i, 2] = 0
                if lens[i] > 65535:
                    self._totals["drop_malformed"] += 1
                    continue
                pkt = bytearray(slab[i, HEADROOM:HEADROOM + int(lens[i])].tobytes())
                go = []
                self._encap(tun, pkt, now, go)
                if go:
                    addr, frame = go[0]
                    start = HEADROOM + int(lens[i]) - len(frame)
                    slab[i, start:start + len(frame)] = memoryview(frame)
                    out_dst[i, 0] = int.from_bytes(_parse_addr(addr), "big")
                    out_dst[i, 1] = start
                    out_dst[i, 2] = len(frame)
                    ready += 1
        return ready

    def decap_slab(self, slab, lens, n, out_tun, out_off, out_len):
        """Decapsulate rows 0..n-1 of ``slab``: row i holds an IPv4+GRE datagram of ``lens[i]``
        bytes at offset ``HEADROOM``.  IP packets for TUN come back in delivery order:
        ``out_tun[j], out_off[j], out_len[j]`` for j < the returned count, where ``out_off`` is
        the flat offset into the slab (row * row_size + column).  A row's own packet stays in
        its row (here: copied to its HEADROOM); packets released from the reorder buffer
        never go into the row being read: they go to a row already done that yielded
        nothing (lowest first), else to spare rows n, n+1, ... (the slab needs n +
        reorder_depth rows).  A released packet no row can take (none left, or rows too
        narrow) is ``drop_no_room``, never ``rx_packets``.  A datagram above 65535 bytes is
        ``drop_malformed``, as in ``process``."""
        if self._running:
            raise RuntimeError("decap_slab() while the I/O thread runs")
        n = _check_slab(slab, lens, n, [(out_tun, "out_tun", np.int32, 1),
                                        (out_off, "out_off", np.int64, 1),
                                        (out_len, "out_len", np.uint32, 1)])
        rows = slab.shape[0]
        if min(out_tun.shape[0], out_off.shape[0], out_len.shape[0]) < rows:
            raise ValueError("out arrays need one entry per slab row")
        now = time.monotonic()
        sink = _SlabSink(slab, n, out_tun, out_off, out_len)
        with self._lock:
            for i in range(n):
                sink.row = i
                sink.yielded = False
                if lens[i] > 65535:
                    self._totals["drop_malformed"] += 1
                else:
                    self._decap(slab[i, HEADROOM:HEADROOM + int(lens[i])].tobytes(), now, sink)
                if not sink.yielded:            # nothing left in row i: free for releases
                    sink.free.append(i)
        return sink.m

    # ------------------------------------------------------------------ I/O mode
    supports_vnet_hdr = True

    def start(self, tun_fds, gre, *, vnet_hdr_len=None):
        """Run the I/O loop in a thread; see fastpptp._gre.Engine.start.  ``tun_fds`` take
        indexes 0..n-1 until stop(); TUNs added with add_tun keep theirs.  ``gre``: a GRE
        port object (its Python ``poll_fds``/``recv_batch``/``send_batch``, which copy) or
        the fd of a raw GRE socket, used directly with Python socket calls."""
        if self._thread is not None:
            raise RuntimeError("already started")
        if self._wake < 0:
            raise RuntimeError("engine closed")
        port = gre if hasattr(gre, "recv_batch") else None
        fds, gre_fd, vl = _args.start(tun_fds, None if port is not None else gre, vnet_hdr_len)
        for i in range(len(fds)):
            if i < len(self._tun_owner) and self._tun_owner[i] is not None:
                raise ValueError(f"TUN index {i} is taken (add_tun): start() fills 0..{len(fds) - 1}")
        self._port = port
        self._paused = self._gre_fills = False
        self._port_icmp_base = port.counters()["icmp_errors"] if port is not None else 0
        dom = None
        if port is None:
            dom = socket.socket(fileno=os.dup(gre_fd))
            dom.setblocking(False)
        with self._lock:
            for i, fd in enumerate(fds):
                os.set_blocking(fd, False)
                self._tun_set(i, fd, vl[i], "start")
        self._gre_fd = gre_fd
        if dom is not None:
            os.set_blocking(gre_fd, False)
        self._gre_is_inet = dom is not None and dom.family == socket.AF_INET
        self._gre_sock = dom
        # The epoll set lives from here to stop(): add_tun/remove_tun change it while the
        # loop waits on it.
        self._ep = select.epoll()
        for fd in self._tun_fds:
            if fd >= 0:
                self._ep.register(fd, select.EPOLLIN)
        if port is not None:
            for fd in port.poll_fds():
                self._ep.register(fd, select.EPOLLIN)
        else:
            self._ep.register(gre_fd, select.EPOLLIN)
        self._ep.register(self._wake, select.EPOLLIN)
        self._running = True
        self._stop = False
        self._thread = threading.Thread(target=self._routine_io, name="RoutineGreRef", daemon=True)
        self._thread.start()

    def stop(self):
        if self._thread is None:
            return
        self._stop = True
        self._kick()
        self._thread.join()
        self._thread = None
        with self._lock:
            self._running = False
            self._ep.close()
            self._ep = None
            for i, owner in enumerate(self._tun_owner):
                if owner == "start":            # add_tun'd TUNs stay until remove_tun
                    self._tun_set(i, -1, 0, None)
            if self._port is not None:
                self._totals["icmp_errors"] += self._port.counters()["icmp_errors"] - self._port_icmp_base
                self._port = None
        if self._gre_sock is not None:
            self._gre_sock.close()
            self._gre_sock = None

    def port_counters(self):
        """The running GRE port's counters ({} when not running or on a bare fd)."""
        with self._lock:
            return {} if self._port is None else self._port.counters()

    @property
    def gre_port(self):
        """The running GRE port object (None when not running or on a bare fd)."""
        return self._port

    # ------------------------------------------------------------------ TUN table
    def _tun_set(self, i, fd, vnet, owner):
        while len(self._tun_fds) <= i:
            self._tun_fds.append(-1)
            self._tun_vnet.append(0)
            self._tun_owner.append(None)
        self._tun_fds[i], self._tun_vnet[i], self._tun_owner[i] = fd, vnet, owner
        while self._tun_fds and self._tun_fds[-1] < 0:     # keep the high-water mark tight
            self._tun_fds.pop()
            self._tun_vnet.pop()
            self._tun_owner.pop()

    def add_tun(self, fd, vnet_hdr_len=None):
        """Add a TUN fd; returns its index, the lowest free one (indexes of removed TUNs are
        reused).  Allowed while the I/O thread runs: the table changes under the lock and
        the fd joins the loop's epoll set at once.  ``vnet_hdr_len``: None asks the TUN, an
        int says what the fd carries (0 for fakes).  Stays until remove_tun."""
        fd, v = _args.add_tun(fd, vnet_hdr_len)
        os.set_blocking(fd, False)
        with self._lock:
            if fd in self._tun_fds:
                raise ValueError(f"fd {fd} is already TUN {self._tun_fds.index(fd)}")
            idx = next((i for i, o in enumerate(self._tun_owner) if o is None),
                       len(self._tun_owner))
            if idx >= MAX_TUN:
                raise ValueError(f"no free TUN index (MAX_TUN = {MAX_TUN})")
            if self._running and self._ep is not None:
                self._ep.register(fd, 0 if self._paused else select.EPOLLIN)
            self._tun_set(idx, fd, v, "added")
        self._kick()
        return idx

    def remove_tun(self, index):
        """Take TUN ``index`` out of the table (the fd is not closed: the caller owns it).
        Sessions still on it are detached: their IP packets count as ``drop_not_ready``
        both ways, so a later TUN that reuses the index never sees them."""
        index = _args.tun_index(index)
        with self._lock:
            if index >= len(self._tun_owner) or self._tun_owner[index] is None:
                raise KeyError(f"no TUN {index}")
            if self._running and self._ep is not None:
                try:
                    self._ep.unregister(self._tun_fds[index])
                except (OSError, ValueError):
                    pass                        # already gone (EOF on a fake)
            for x in self._sessions.values():
                if x.tun == index:
                    x.tun = -1
            self._tun_set(index, -1, 0, None)
        self._kick()

    def tuns(self):
        """{index: fd} of the TUN table (tests, diagnostics)."""
        with self._lock:
            return {i: fd for i, fd in enumerate(self._tun_fds) if fd >= 0}

    @property
    def loops(self):
        """Wake-ups of the I/O thread so far (tests, diagnostics)."""
        return self._loops

    @property
    def coalesced(self):
        """Times the I/O thread waited ``rx_coalesce_us`` after a busy GRE burst."""
        return self._coalesced

    def _kick(self):
        if self._wake >= 0:                     # after close(): nothing to wake
            os.eventfd_write(self._wake, 1)

    def _send_gre(self, gre_out):
        if self._port is not None:
            if gre_out:
                self._port.send_batch([(frame, addr) for addr, frame in gre_out])
            return
        for addr, frame in gre_out:
            try:
                if self._gre_is_inet:
                    self._gre_sock.sendto(frame, (addr, 0))
                else:
                    self._gre_sock.send(frame)
            except BlockingIOError:
                self._gre_fills = True          # send buffer full: the rest would be too
                break
            except InterruptedError:
                pass
            except OSError as e:
                if e.errno in (errno.ENOPROTOOPT, errno.ECONNREFUSED, errno.EHOSTUNREACH,
                               errno.ENETUNREACH):
                    self._totals["icmp_errors"] += 1
                # anything else (EMSGSIZE, ENOBUFS...): this frame is lost, the loop goes on

    def _tx_room(self):
        """Frames the GRE side can take now without dropping any (the compiled twin: the
        port's tx_room): a port says; a raw socket that has filled once is asked poll(2)."""
        if self._port is not None:
            return self._port.room()
        if self._gre_fills:
            p = select.poll()
            p.register(self._gre_fd, select.POLLOUT)
            if not p.poll(0):
                return 0
        return 2 * self.config.batch

    def _tun_events(self, ep, events):
        """Poll every TUN for ``events`` (0 while the GRE side is full: see _routine_io)."""
        for fd in self._tun_fds:
            if fd >= 0:
                try:
                    ep.modify(fd, events)
                except (OSError, ValueError):
                    pass                        # EOF took it out of the set

    def _write_tun(self, tun_out):
        """Write what decapsulation produced; on a TUN with a virtio_net_hdr, runs of
        in-order segments of one TCP flow are coalesced into one write (GRO)."""
        i = 0
        while i < len(tun_out):
            tun = tun_out[i][0]
            j = i
            while j < len(tun_out) and tun_out[j][0] == tun:
                j += 1
            run = [ip for _, ip in tun_out[i:j]]
            i = j
            if not 0 <= tun < len(self._tun_fds) or self._tun_fds[tun] < 0:
                continue
            v = self._tun_vnet[tun]
            if v == 0:
                writes = run
            elif self.config.offload:
                writes = [vh[:v] + p for vh, p in _offload.coalesce(run)]
            else:
                writes = [bytes(v) + p for p in run]
            for w in writes:
                try:
                    os.write(self._tun_fds[tun], w)
                except OSError:
                    pass                    # TUN gone or full: the packet is lost, go on

    def _tun_read(self, t, data, now, gre_out):
        """One TUN read: [virtio_net_hdr] + IP packet; TSO super-packets are cut to the
        session MTU before encapsulation."""
        v = self._tun_vnet[t]
        if v == 0:
            self._encap(t, bytearray(data), now, gre_out)
            return
        if len(data) <= v:
            self._totals["drop_malformed"] += 1
            return
        vh = _offload.unpack_vnet_hdr(bytes(data[:v]) + bytes(12 - v))
        pkt = bytearray(data[v:])
        s = self._session_for(t, pkt)
        if s is None:
            self._encap(t, pkt, now, gre_out)
            return
        maxlen = min(s.mtu, 4096)
        gso = vh.gso_type & ~_offload.VIRTIO_NET_HDR_GSO_ECN
        try:
            if gso == _offload.VIRTIO_NET_HDR_GSO_NONE and len(pkt) <= maxlen:
                if vh.flags & _offload.VIRTIO_NET_HDR_F_NEEDS_CSUM:
                    pkt = bytearray(_offload.complete_csum(bytes(pkt), vh))
                segs = [pkt]
            else:
                segs = _offload.segment(bytes(pkt), vh, maxlen, 256)
        except _offload.OffloadError:
            s.c["drop_malformed"] += 1
            return
        for seg in segs:
            self._encap(t, bytearray(seg), now, gre_out)

    def _session_for(self, tun, pkt):
        n = len(pkt)
        key = None
        if n >= 20 and pkt[0] >> 4 == 4:
            key = bytes(pkt[16:20])
        elif n >= 40 and pkt[0] >> 4 == 6:
            key = bytes(pkt[24:40])
        cid = self._routes.get(key) if key is not None else None
        if cid is not None:
            return self._sessions.get(cid)
        only = [x for x in self._sessions.values() if x.tun == tun] if tun >= 0 else []
        return only[0] if len(only) == 1 else None

    def _routine_io(self):
        ep = self._ep                   # built by start(), changed by add_tun/remove_tun
        batch = self.config.batch
        coalesce = self.config.rx_coalesce_us / 1e6
        last_got = 0
        while not self._stop:
            with self._lock:
                dl = self._next_deadline()
            now = time.monotonic()
            timeout = -1 if dl is None else max(0.0, dl - now)
            if self._paused and not 0 <= timeout <= PAUSED_POLL:
                timeout = PAUSED_POLL
            # receive coalescing, as the compiled loop (_ioloop.pyx): after a busy GRE burst
            # with nothing ready, wait rx_coalesce_us for more before sleeping in epoll
            if coalesce > 0 and last_got >= RX_COALESCE_MIN and timeout != 0 and not ep.poll(0):
                self._coalesced += 1
                time.sleep(coalesce)
            ep.poll(timeout)
            try:
                os.eventfd_read(self._wake)
            except BlockingIOError:
                pass
            if self._stop:
                break
            self._loops += 1
            now = time.monotonic()
            tun_out, gre_out = [], []
            last_got = 0
            with self._lock:
                for d in (self._port.recv_batch(batch) if self._port is not None else ()):
                    self._decap(d, now, tun_out)
                    last_got += 1
                for _ in range(batch if self._port is None else 0):
                    try:
                        d = self._gre_sock.recv(65535)
                        last_got += 1
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        if e.errno in (errno.ENOPROTOOPT, errno.ECONNREFUSED,
                                       errno.EHOSTUNREACH, errno.ENETUNREACH):
                            self._totals["icmp_errors"] += 1
                            continue
                        raise
                    self._decap(d, now, tun_out)
                self._flush_control(now, gre_out)
                # back-pressure (the compiled twin: _ioloop.pyx, 4.): a GRE side with no room
                # gets no more frames; the TUNs are not polled until it has room again
                room = self._tx_room() - len(gre_out)
                if self._paused and room > 0:
                    self._paused = False
                    self._tun_events(ep, select.EPOLLIN)
                for t, fd in enumerate(self._tun_fds):
                    if fd < 0 or self._paused:
                        continue
                    if room <= 0:
                        self._paused = True
                        if self._port is not None:
                            self._port.count_tun_paused()
                        self._tun_events(ep, 0)
                        continue
                    n0 = len(gre_out)
                    for _ in range(min(batch, room)):
                        try:
                            p = os.read(fd, 65535 + 12)
                        except (BlockingIOError, InterruptedError):
                            break
                        if not p:                   # EOF: stop polling it
                            try:
                                ep.unregister(fd)
                            except (OSError, ValueError):
                                pass
                            break
                        self._tun_read(t, p, now, gre_out)
                    room -= len(gre_out) - n0
                self._fire_timers(now, tun_out, gre_out)
                # TUN writes under the lock, as the compiled loop does: once remove_tun has
                # returned, its fd (which the caller may close and the OS reuse) is never used
                self._write_tun(tun_out)
            self._send_gre(gre_out)

    def close(self):
        """Stop the I/O thread and release the eventfds (``control_fd`` becomes -1).  The
        tables stay: sans-I/O calls still work; ``start`` raises RuntimeError.  Idempotent."""
        self.stop()
        for fd in (self._efd, self._wake):
            if fd >= 0:
                os.close(fd)
        self._efd = self._wake = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
