# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled PPTP data plane: the engine core, GRE/PPP encapsulation between TUN devices and
GRE peers.

The semantics are those of fastpptp/_gre_ref.py (the readable spec; differential tests hold
the two byte-identical).  What the core does per packet:

* decap_one (a received IPv4/GRE datagram): validation, call ID -> session (a 65536-entry
  table), source == the peer, ack, sequence window + reorder buffer, PPP header, MPPE
  decryption in place, MSS clamp, rate limit -> the sink's to_tun; control frames ->
  bounded queue + eventfd for Python.
* encap_one (an IP packet from a TUN, HEADROOM free bytes in front): destination ->
  session (open-addressing hash, O(1)), MSS clamp, rate limit, flow-control window, PPP
  header, MPPE in place, GRE header written in front, in place -> the sink's to_gre.
* flush_control: frames Python queued with send_control get their GRE header (the same
  sequence counter as data) -> to_gre.
* fire_timers: reorder gaps given up, queued flow-control frames, packets held by a rate
  limit, ack-only packets.

Where the results go is the engine's one output sink (fastpptp/_sink.pxd): Python bytes in
process(), the caller's arrays in encap_slab/decap_slab, TUN writes and the GRE port in the
I/O loop (fastpptp/_ioloop.pyx: the thread, epoll, slabs, GRO, TSO), which start() makes
and stop() drops.  Python threads change the call, route and TUN tables under ``lock``,
which the loop holds for one batch at a time.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memcmp, memset

cimport fastpptp._sys as sys_
from fastpptp._greport cimport GrePort, RawPort
from fastpptp._sys cimport (pthread_mutex_lock, pthread_mutex_unlock, pthread_mutex_init,
                            pthread_mutex_destroy, mmsghdr, iovec, sockaddr_in, epoll_event,
                            timespec)
from fastpptp._mppe cimport (mppe_state, mppe_init, mppe_encrypt, mppe_decrypt, mppe_add_lost,
                             mppe_request_flush, MPPE_OK, MPPE_ERR_NEED_RESET,
                             MPPE_PROTO_MIN, MPPE_PROTO_MAX, MPPE_LOST_SYNC_RUN)
from fastpptp._offload cimport mss_clamp_mtu
from fastpptp._rxwin cimport (rx_out, rxw_params, rxpool_init, rxpool_release, rxw_init,
                              rxw_release, rxw_out_alloc, rxw_receive, rxw_fire, rxw_done,
                              rxw_deadline, rxw_timers_pending, rxw_ack_pending,
                              rxw_ack_taken, rxw_ack_due, rxw_ack_sent, RXW_DUPLICATE,
                              RXW_TOO_OLD, RXW_SEQ_JUMP, RXW_NO_ROOM)
from fastpptp._txwin cimport (txq_item, TXQ_HEADROOM, txw_init, txw_set_rwin, txw_release,
                              txw_next_seq, txw_on_ack, txw_must_hold, txw_hold, txw_fire,
                              txw_pop, txw_deadline, txw_timers_pending)

# The rate limiter can be compiled out (-DFASTPPTP_NO_RATE_LIMIT): `fastpptp bench dataplane`
# builds such a copy to show that an unlimited session pays nothing for it.
cdef extern from *:
    """
    #ifdef FASTPPTP_NO_RATE_LIMIT
    #define FP_RATE_LIMIT 0
    #else
    #define FP_RATE_LIMIT 1
    #endif
    /* the limiter's branch is the rare one: keep it out of the hot path's straight line */
    #define fp_rl_on(s) (FP_RATE_LIMIT && __builtin_expect(!!((s)->rl_on), 0))
    """
    const int FP_RATE_LIMIT
    bint fp_rl_on(session* s) noexcept nogil

import os

from fastpptp import engine_args as _args
from fastpptp._rxwin_ref import pool_frames
from fastpptp import dataplane as _dp
from fastpptp.dataplane import (COUNTER_NAMES, ENGINE_EVENT_BASE, EV_MPPE_LOST_SYNC, EV_MPPE_RESET_NEEDED,
                                TOTAL_NAMES, EngineConfig, vnet_lengths)

# The limits are declared twice (the .pxd enum for C, dataplane for Python and the reference
# twin): refuse to load if they drifted apart.
if (HEADROOM, MAX_TUN, TXQ_DEPTH, TXQ_SLOT, FRAME_SLACK) != (
        _dp.HEADROOM, _dp.MAX_TUN, _dp.TXQ_DEPTH, _dp.TXQ_SLOT, _dp.FRAME_SLACK):
    raise ImportError("fastpptp/_gre.pxd limits differ from fastpptp/dataplane.py: rebuild")

DEF_HEADROOM = HEADROOM
cdef uint32_t EV_BASE = ENGINE_EVENT_BASE      # pseudo-protocols >= this are engine events
cdef uint32_t EV_RESET = EV_MPPE_RESET_NEEDED    # from ppp/constants.py, via dataplane
#: The value the compiled code queues (tests pin it to ppp.constants.EV_MPPE_RESET_NEEDED).
COMPILED_EV_MPPE_RESET_NEEDED = EV_RESET
cdef uint32_t EV_LOST_SYNC = EV_MPPE_LOST_SYNC   # stateless MPPE lost sync: the link closes
COMPILED_EV_MPPE_LOST_SYNC = EV_LOST_SYNC
#: False in a build with -DFASTPPTP_NO_RATE_LIMIT (the benchmark's baseline).
RATE_LIMIT_COMPILED = bool(FP_RATE_LIMIT)
if TXQ_HEADROOM != HEADROOM:
    raise ImportError("fastpptp/_txwin.pxd TXQ_HEADROOM differs from HEADROOM: rebuild")
if MPPE_LOST_SYNC_RUN != _dp.MPPE_LOST_SYNC_RUN:
    raise ImportError("fastpptp/_mppe.pxd MPPE_LOST_SYNC_RUN differs from fastpptp/dataplane.py: rebuild")
if RLQ_SLOT != _dp.RLQ_SLOT:
    raise ImportError("fastpptp/_gre.pxd RLQ_SLOT differs from fastpptp/dataplane.py: rebuild")
cdef double RL_EPS = 1e-6      # bytes: a deadline computed for a packet lets it pass
cdef uint32_t U32 = 0xFFFFFFFF
cdef int RECV_CHUNK = 64        # recv_control: frames copied out per hold of the table lock


# --------------------------------------------------------------------------- tiny helpers
cdef inline uint16_t rd16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline void wr16(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF

cdef inline void wr32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v >> 24
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF

cdef inline double mono_now() noexcept nogil:
    cdef timespec ts
    sys_.clock_gettime(sys_.CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

cdef inline void rl_set(rate_bucket* b, double rate, double burst, uint32_t qmax) noexcept nogil:
    """A new limit: from unlimited the bucket starts full; otherwise its tokens are kept
    (at most the new burst).  Held packets stay and leave at the new rate."""
    if rate != 0 and b.rate == 0:
        b.tokens = burst
        b.last = -1.0
    elif b.tokens > burst:
        b.tokens = burst
    b.rate = rate
    b.burst = burst
    b.qmax = qmax

cdef inline void rl_refill(rate_bucket* b, double now) noexcept nogil:
    if b.last < 0 or now < b.last:        # first packet, or a clock from elsewhere
        b.last = now
        return
    if b.tokens < b.burst:
        b.tokens += (now - b.last) * b.rate
        if b.tokens > b.burst:
            b.tokens = b.burst
    b.last = now

cdef inline bint rl_fits(rate_bucket* b, uint32_t n) noexcept nogil:
    """A packet passes when the bucket holds its size, or is full (packets above the burst)."""
    cdef double need = n if n < b.burst else b.burst
    return b.rate == 0 or b.tokens >= need - RL_EPS

cdef inline double rl_deadline(rate_bucket* b) noexcept nogil:
    """When the first held packet can pass (1e300: nothing held)."""
    cdef double need
    if b.qcount == 0:
        return 1e300
    if b.rate == 0:
        return b.last
    need = b.q[b.qhead].len
    if need > b.burst:
        need = b.burst
    if b.tokens >= need - RL_EPS:
        return b.last
    return b.last + (need - b.tokens) / b.rate

cdef inline uint32_t hash_key(const uint8_t* k, uint8_t fam) noexcept nogil:
    # FNV-1a over the address bytes: cheap and good enough for addresses we assign
    cdef uint32_t h = 2166136261u ^ fam
    cdef int i, n = 4 if fam == 4 else 16
    for i in range(n):
        h = (h ^ k[i]) * 16777619u
    return h ^ (h >> 15)

cdef inline int ppp_proto(const uint8_t* f, uint32_t n, uint32_t* o) noexcept nogil:
    """RFC 1661 §2 protocol field at f[o[0]]: 1 byte if odd, else 2 with the low byte odd.
    Returns the protocol (advancing o) or -1."""
    cdef uint32_t i = o[0]
    if i >= n:
        return -1
    if f[i] & 1:
        o[0] = i + 1
        return f[i]
    if i + 1 >= n or not (f[i + 1] & 1):
        return -1
    o[0] = i + 2
    return (<int>f[i] << 8) | f[i + 1]


cdef class Engine:
    """Compiled engine; the API and semantics are fastpptp._gre_ref.Engine's."""

    HEADROOM = DEF_HEADROOM

    def __cinit__(self, *args, **kw):
        pthread_mutex_init(&self.lock, NULL)
        self.calls = <session**>calloc(65536, sizeof(session*))
        self.route_cap = 64
        self.routes = <route_entry*>calloc(self.route_cap, sizeof(route_entry))
        self.efd = -1
        self.wake_fd = -1
        cdef int t
        for t in range(MAX_TUN):
            self.tun_fds[t] = -1
        if self.calls == NULL or self.routes == NULL:
            raise MemoryError()

    def __init__(self, config=None):
        cfg = _args.engine_config(config)
        self.config = cfg
        self.batch = cfg.batch
        self.cfg_mtu = cfg.mtu
        self.mru = cfg.mru
        self.max_frame = cfg.mru + FRAME_SLACK
        rxw_params(&self.rxp, cfg.reorder_depth, cfg.reorder_timeout, cfg.ack_delay)
        # the reorder frames of every call, reserved now: none is allocated on the I/O thread
        if rxpool_init(&self.rxpool, pool_frames(cfg.reorder_pool, cfg.reorder_depth),
                       self.max_frame) < 0:
            raise MemoryError()
        self.rxo.frames = rxw_out_alloc(&self.rxp)
        if self.rxo.frames == NULL:
            raise MemoryError()
        self.flow_control = 1 if cfg.flow_control else 0
        self.clamp = 1 if cfg.clamp_mss else 0
        self.rl_depth = cfg.rate_limit_queue
        self.peer_strs = {}
        self.psink = ProcessSink(self.peer_strs)
        self.ssink = SlabSink(HEADROOM)
        self.sink = self.psink
        self.ctlq_cap = cfg.control_queue
        self.ctlq = <ctl_entry*>calloc(self.ctlq_cap, sizeof(ctl_entry))
        self.ctlq_mem = <uint8_t*>malloc(<size_t>self.ctlq_cap * self.max_frame)
        self.ctlo = <ctl_entry*>calloc(self.ctlq_cap, sizeof(ctl_entry))
        self.ctlo_mem = <uint8_t*>malloc(<size_t>self.ctlq_cap * (self.max_frame + 4))
        self.work = <uint8_t*>malloc(HEADROOM + 65536 + 64)
        self.ackbuf = <uint8_t*>malloc(HEADROOM + 16)
        if (self.ctlq == NULL or self.ctlq_mem == NULL or self.ctlo == NULL
                or self.ctlo_mem == NULL or self.work == NULL or self.ackbuf == NULL):
            raise MemoryError()
        cdef int i
        for i in range(self.ctlq_cap):
            self.ctlq[i].data = self.ctlq_mem + <size_t>i * self.max_frame
            self.ctlo[i].data = self.ctlo_mem + <size_t>i * (self.max_frame + 4)
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.next_dl = 1e300

    def __dealloc__(self):
        cdef int i
        cdef session* s
        if self.running:
            # the thread holds a reference to self: cannot happen; be safe anyway
            return
        if self.calls != NULL:
            for i in range(65536):
                s = self.calls[i]
                if s != NULL:
                    self._free_session(s)
            free(self.calls)
        free(self.routes)
        free(self.ctlq)
        free(self.ctlq_mem)
        free(self.ctlo)
        free(self.ctlo_mem)
        free(self.work)
        free(self.ackbuf)
        rxpool_release(&self.rxpool)
        free(self.rxo.frames)
        if self.efd >= 0:
            sys_.close(self.efd)
        if self.wake_fd >= 0:
            sys_.close(self.wake_fd)
        pthread_mutex_destroy(&self.lock)

    cdef void _free_session(self, session* s) noexcept nogil:
        rxw_release(&s.rx, &self.rxp, &self.rxpool)     # its buffered frames back to the pool
        txw_release(&s.tx)
        free(s.rl_tx.q)
        free(s.rl_tx.qmem)
        free(s.rl_rx.q)
        free(s.rl_rx.qmem)
        free(s)

    cdef void _lock(self) noexcept:
        # Python threads take the table lock only while they hold the GIL, and wait for it
        # without the GIL: the I/O thread is never kept waiting while we get the GIL back.
        while sys_.pthread_mutex_trylock(&self.lock) != 0:
            with nogil:
                pthread_mutex_lock(&self.lock)
                pthread_mutex_unlock(&self.lock)

    cdef void _unlock(self) noexcept:
        pthread_mutex_unlock(&self.lock)

    cdef void _kick(self) noexcept nogil:
        cdef uint64_t one = 1
        if self.wake_fd >= 0:                   # after close(): nothing to wake
            sys_.write(self.wake_fd, &one, 8)

    # ------------------------------------------------------------------ sessions
    def add_session(self, call_id, peer_call_id, peer_addr, *, tun=0, peer_rwin=64, peer_ppd=0):
        a = _args.add_session(call_id, peer_call_id, peer_addr, tun, peer_rwin, peer_ppd)
        cdef bytes pk = a.peer_bin
        cdef int cid = a.call_id
        cdef int t = a.tun
        cdef session* s = <session*>calloc(1, sizeof(session))
        if s == NULL:
            raise MemoryError()
        s.call_id = cid
        s.peer_call_id = a.peer_call_id
        memcpy(&s.peer_be, <const char*>pk, 4)
        s.tun = t
        s.peer_ppd = a.peer_ppd
        s.mtu = self.cfg_mtu
        txw_init(&s.tx, a.peer_rwin)
        if rxw_init(&s.rx, &self.rxp) < 0:          # its reorder ring, reserved now
            free(s)
            raise MemoryError()
        self._lock()
        if self.calls[cid] != NULL:
            self._unlock()
            self._free_session(s)
            raise ValueError(f"call ID {cid} already has a session")
        self.calls[cid] = s
        self.nsessions += 1
        self.tun_count[t] += 1
        if self.tun_count[t] == 1:
            self.tun_single[t] = s
        self.peer_strs[cid] = a.peer_addr
        self._unlock()
        self._kick()

    def set_peer_call(self, call_id, peer_call_id, *, peer_rwin=64, peer_ppd=0):
        """The peer's call ID (and window) arrived: a PNS registers its call when it sends the
        Outgoing-Call-Request, so GRE the PAC sends right after its reply is not dropped, and
        learns the PAC's call ID only from that reply (RFC 2637 §2.7-2.8)."""
        cdef session* s
        cid, pcid, rwin, ppd = _args.set_peer_call(call_id, peer_call_id, peer_rwin, peer_ppd)
        self._lock()
        try:
            s = self._get(cid)
            s.peer_call_id = pcid
            s.peer_ppd = ppd
            txw_set_rwin(&s.tx, rwin)
        finally:
            self._unlock()

    def remove_session(self, call_id):
        cdef session* s
        cdef uint32_t i
        cdef int k, w, a_, b_
        cdef ctl_entry tmp
        cdef int cid = _args.lookup(call_id)
        self._lock()
        s = self.calls[cid]
        if s == NULL:
            self._unlock()
            raise KeyError(f"no session for call ID {cid}")
        self.calls[cid] = NULL
        self.nsessions -= 1
        if s.tun >= 0:                          # < 0: detached by remove_tun
            self.tun_count[s.tun] -= 1
            self.tun_single[s.tun] = self._scan_tun_session(s.tun) if self.tun_count[s.tun] == 1 else NULL
        self._timer_unlink(s)
        # drop its routes (backward-shift deletion keeps probing chains intact)
        i = 0
        while i < self.route_cap:
            if self.routes[i].fam != 0 and self.routes[i].call_id == cid:
                self._route_delete_at(i)
                continue
            i += 1
        # its queued outgoing control frames give their slots back: a stable compaction of
        # the ring (entries are swapped, so every slot keeps its own data buffer)
        w = 0
        for k in range(self.ctlo_count):
            a_ = (self.ctlo_head + k) % self.ctlq_cap
            if self.ctlo[a_].call_id != cid:
                b_ = (self.ctlo_head + w) % self.ctlq_cap
                if a_ != b_:
                    tmp = self.ctlo[b_]
                    self.ctlo[b_] = self.ctlo[a_]
                    self.ctlo[a_] = tmp
                w += 1
        self.ctlo_count = w
        self.peer_strs.pop(cid, None)
        self._free_session(s)
        self._unlock()

    cdef session* _get(self, int call_id) except NULL:
        cdef session* s = NULL
        if 0 <= call_id <= 0xFFFF:
            s = self.calls[call_id]
        if s == NULL:
            raise KeyError(f"no session for call ID {call_id}")
        return s

    def set_ppp(self, call_id, *, tx_acfc, tx_pfc, mtu):
        cdef session* s
        cid, acfc, pfc, m = _args.set_ppp(call_id, tx_acfc, tx_pfc, mtu)
        self._lock()
        try:
            s = self._get(cid)
            s.tx_acfc = 1 if acfc else 0
            s.tx_pfc = 1 if pfc else 0
            s.mtu = m
        finally:
            self._unlock()

    def set_data(self, call_id, ipv4, ipv6):
        cdef session* s
        cdef int cid = _args.lookup(call_id)
        self._lock()
        try:
            s = self._get(cid)
            s.ipv4 = 1 if ipv4 else 0
            s.ipv6 = 1 if ipv6 else 0
        finally:
            self._unlock()

    def set_mppe(self, call_id, send_key, recv_key, bits, stateful, rx_stateful=None):
        """Turn MPPE on: RFC 3079 start keys and key length; ``stateful`` is the mode of what
        we send and, unless ``rx_stateful`` says otherwise, of what we receive (CCP
        negotiates each direction on its own, RFC 1962 §1)."""
        a = _args.set_mppe(call_id, send_key, recv_key, bits, stateful, rx_stateful)
        cdef bytes sk = a.send_key, rk = a.recv_key
        cdef session* s
        cdef int b = a.bits
        cdef int st = 1 if a.stateful else 0
        cdef int rst = 1 if a.rx_stateful else 0
        self._lock()
        try:
            s = self._get(a.call_id)
            if (mppe_init(&s.mppe_tx, <const uint8_t*><const char*>sk, b, st) != MPPE_OK or
                    mppe_init(&s.mppe_rx, <const uint8_t*><const char*>rk, b, rst) != MPPE_OK):
                s.mppe_on = 0
                raise ValueError("mppe_init failed")
            s.mppe_on = 1
        finally:
            self._unlock()

    def clear_mppe(self, call_id):
        cdef session* s
        cdef int cid = _args.lookup(call_id)
        self._lock()
        try:
            s = self._get(cid)
            s.mppe_on = 0
            memset(&s.mppe_tx, 0, sizeof(mppe_state))
            memset(&s.mppe_rx, 0, sizeof(mppe_state))
        finally:
            self._unlock()

    def mppe_reset(self, call_id):
        cdef session* s
        cdef int cid = _args.lookup(call_id)
        self._lock()
        try:
            s = self._get(cid)
            if s.mppe_on:
                mppe_request_flush(&s.mppe_tx)
        finally:
            self._unlock()

    # ------------------------------------------------------------------ rate limits
    def set_rate_limit(self, call_id, tx_kbit, rx_kbit, burst_bytes=0):
        """Token bucket per direction (tx: TUN -> GRE, rx: GRE -> TUN) on IP packets, in
        kbit/s (1000 bit/s) of IP bytes; 0 = unlimited; ``burst_bytes`` 0 = automatic.
        Packets over the limit wait in a hold queue (``rate_limit_queue`` packets, at most
        RL_QUEUE_TIME at the rate) or are dropped (``drop_rate_limit``).  PPP control frames
        and acks are never limited.  May be called at any time (also while running)."""
        cid, tx, rx = _args.set_rate_limit(call_id, tx_kbit, rx_kbit, burst_bytes)
        cdef session* s
        if not FP_RATE_LIMIT and (tx.rate or rx.rate):
            raise RuntimeError("this build of fastpptp._gre has no rate limiter")
        self._lock()
        try:
            s = self._get(cid)
            rl_set(&s.rl_tx, tx.rate, tx.burst, tx.queue_bytes)
            rl_set(&s.rl_rx, rx.rate, rx.burst, rx.queue_bytes)
            s.rl_on = 1 if (tx.rate or rx.rate or s.rl_tx.qcount or s.rl_rx.qcount) else 0
            if s.rl_tx.qcount or s.rl_rx.qcount:
                # the rate changed under held packets: recompute their time on the next timer pass
                s.has_rl_dl = 1
                s.rl_dl = 0.0
                self._arm(s, 0.0)
        finally:
            self._unlock()
        self._kick()

    cdef int _rl_admit(self, session* s, rate_bucket* b, uint16_t proto, uint8_t* p, uint32_t n,
                       double now) noexcept nogil:
        """1: send p[0:n] now (tokens taken); 0: held in the queue (in order behind what
        waits) or dropped (``drop_rate_limit``)."""
        cdef int i
        cdef rl_item* it
        if b.rate == 0 and b.qcount == 0:
            return 1
        rl_refill(b, now)
        if b.qcount == 0 and rl_fits(b, n):
            b.tokens -= n
            return 1
        if (b.qcount >= self.rl_depth or n > RLQ_SLOT
                or (b.rate != 0 and b.qbytes + n > b.qmax)):
            s.c[C_DROP_RATE_LIMIT] += 1
            return 0
        if b.q == NULL:
            b.q = <rl_item*>calloc(self.rl_depth, sizeof(rl_item))
            b.qmem = <uint8_t*>malloc(<size_t>self.rl_depth * (HEADROOM + RLQ_SLOT))
            if b.q == NULL or b.qmem == NULL:
                free(b.q)
                free(b.qmem)
                b.q = NULL
                b.qmem = NULL
                s.c[C_DROP_RATE_LIMIT] += 1
                return 0
        i = (b.qhead + b.qcount) % self.rl_depth
        it = &b.q[i]
        it.proto = proto
        it.len = n
        memcpy(b.qmem + <size_t>i * (HEADROOM + RLQ_SLOT) + HEADROOM, p, n)
        b.qcount += 1
        b.qbytes += n
        self._rl_arm(s)
        return 0

    cdef void _rl_arm(self, session* s) noexcept nogil:
        """The time the first held packet of either direction gets its tokens."""
        cdef double a = rl_deadline(&s.rl_tx), b = rl_deadline(&s.rl_rx)
        if b < a:
            a = b
        if a >= 1e300:
            s.has_rl_dl = 0
            return
        s.has_rl_dl = 1
        s.rl_dl = a
        self._arm(s, a)

    cdef uint8_t* _rl_take(self, session* s, rate_bucket* b, rl_item* out) noexcept nogil:
        """The first held packet of ``b`` if the bucket now holds its size (charged and taken
        off the queue: its bytes stay valid until the next push), else NULL.  A packet whose
        family is no longer up is dropped (drop_not_ready) and the next one looked at."""
        cdef uint8_t* p
        while b.qcount and rl_fits(b, b.q[b.qhead].len):
            out[0] = b.q[b.qhead]
            p = b.qmem + <size_t>b.qhead * (HEADROOM + RLQ_SLOT) + HEADROOM
            b.qhead = (b.qhead + 1) % self.rl_depth
            b.qcount -= 1
            b.qbytes -= out.len
            b.tokens -= out.len
            if s.tun < 0 or not (s.ipv4 if out.proto == 0x21 else s.ipv6):
                s.c[C_DROP_NOT_READY] += 1
                continue
            return p
        return NULL

    cdef void _rl_release(self, session* s, double now) noexcept nogil:
        """Send what the buckets allow of the hold queues, in order (from the timers)."""
        cdef rl_item it
        cdef uint8_t* p
        s.has_rl_dl = 0
        if s.rl_tx.qcount:
            rl_refill(&s.rl_tx, now)
            p = self._rl_take(s, &s.rl_tx, &it)
            while p != NULL:
                send_data(self, s, it.proto, p, it.len, now)
                p = self._rl_take(s, &s.rl_tx, &it)
        if s.rl_rx.qcount:
            rl_refill(&s.rl_rx, now)
            p = self._rl_take(s, &s.rl_rx, &it)
            while p != NULL:
                if not self.sink.to_tun(s.tun, p, it.len):
                    s.c[C_DROP_NO_ROOM] += 1      # decap_slab: no row can take it
                else:
                    s.c[C_RX_PACKETS] += 1
                    s.c[C_RX_BYTES] += it.len
                p = self._rl_take(s, &s.rl_rx, &it)
        if s.rl_tx.qcount == 0 and s.rl_rx.qcount == 0 and s.rl_tx.rate == 0 and s.rl_rx.rate == 0:
            s.rl_on = 0
        self._rl_arm(s)

    # ------------------------------------------------------------------ routes
    cdef session* route_lookup(self, const uint8_t* key, uint8_t fam) noexcept nogil:
        cdef uint32_t mask = self.route_cap - 1
        cdef uint32_t i = hash_key(key, fam) & mask
        cdef route_entry* e
        cdef int n = 4 if fam == 4 else 16
        while True:
            e = &self.routes[i]
            if e.fam == 0:
                return NULL
            if e.fam == fam and memcmp(e.key, key, n) == 0:
                return self.calls[e.call_id]
            i = (i + 1) & mask

    cdef int _route_insert(self, const uint8_t* key, uint8_t fam, uint16_t call_id) noexcept nogil:
        cdef uint32_t mask = self.route_cap - 1
        cdef uint32_t i = hash_key(key, fam) & mask
        cdef int n = 4 if fam == 4 else 16
        while self.routes[i].fam != 0:
            if self.routes[i].fam == fam and memcmp(self.routes[i].key, key, n) == 0:
                self.routes[i].call_id = call_id
                return 0
            i = (i + 1) & mask
        self.routes[i].fam = fam
        self.routes[i].call_id = call_id
        memset(self.routes[i].key, 0, 16)
        memcpy(self.routes[i].key, key, n)
        self.route_count += 1
        return 1

    cdef void _route_delete_at(self, uint32_t i) noexcept nogil:
        # backward-shift deletion for linear probing
        cdef uint32_t mask = self.route_cap - 1
        cdef uint32_t j = i, home
        self.routes[i].fam = 0
        self.route_count -= 1
        while True:
            j = (j + 1) & mask
            if self.routes[j].fam == 0:
                return
            home = hash_key(self.routes[j].key, self.routes[j].fam) & mask
            # can entry j move into hole i?  (is home cyclically outside (i, j]?)
            if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
                self.routes[i] = self.routes[j]
                self.routes[j].fam = 0
                i = j

    cdef int _route_grow(self) except -1:
        cdef route_entry* old = self.routes
        cdef uint32_t oldcap = self.route_cap, i
        cdef route_entry* nw = <route_entry*>calloc(oldcap * 2, sizeof(route_entry))
        if nw == NULL:
            raise MemoryError()
        self.routes = nw
        self.route_cap = oldcap * 2
        self.route_count = 0
        for i in range(oldcap):
            if old[i].fam != 0:
                self._route_insert(old[i].key, old[i].fam, old[i].call_id)
        free(old)
        return 0

    def add_route(self, call_id, addr):
        packed, ver = _args.address(addr)
        cdef bytes key = packed
        cdef int cid = _args.lookup(call_id)
        self._lock()
        try:
            self._get(cid)
            if (self.route_count + 1) * 2 > self.route_cap:
                self._route_grow()
            self._route_insert(<const uint8_t*><const char*>key, <uint8_t>ver, cid)
        finally:
            self._unlock()

    def remove_route(self, addr):
        packed, ver = _args.address(addr)
        cdef bytes key = packed
        cdef uint8_t fam = ver
        cdef uint32_t mask, i
        cdef int n = 4 if fam == 4 else 16
        self._lock()
        mask = self.route_cap - 1
        i = hash_key(<const uint8_t*><const char*>key, fam) & mask
        while self.routes[i].fam != 0:
            if self.routes[i].fam == fam and memcmp(self.routes[i].key, <const char*>key, n) == 0:
                self._route_delete_at(i)
                break
            i = (i + 1) & mask
        self._unlock()

    # ------------------------------------------------------------------ control queue
    def send_control(self, call_id, protocol, payload):
        a_cid, a_proto, a_payload = _args.send_control(call_id, protocol, payload)
        cdef int cid = a_cid
        cdef int proto = a_proto
        cdef bytes pl = a_payload
        cdef session* s
        cdef ctl_entry* e
        cdef uint32_t hl = 0
        cdef const uint8_t* src = <const uint8_t*><const char*>pl
        self._lock()
        try:
            s = self._get(cid)
            _args.control_length(len(pl), s.mtu, self.mru)
            if self.ctlo_count >= self.ctlq_cap:
                self._ctl_full(s, C_QFULL_TX_CONTROL)   # bounded: PPP retransmits control frames
                return
            e = &self.ctlo[(self.ctlo_head + self.ctlo_count) % self.ctlq_cap]
            self.ctlo_count += 1
            e.call_id = cid
            e.proto = proto
            # LCP always goes with FF 03 and a 2-byte protocol (RFC 1661 §6.5/6.6)
            if not s.tx_acfc or proto == 0xC021:
                e.data[0] = 0xFF
                e.data[1] = 0x03
                hl = 2
            if s.tx_pfc and proto != 0xC021 and proto < 0x100:
                e.data[hl] = proto
                hl += 1
            else:
                wr16(e.data + hl, proto)
                hl += 2
            memcpy(e.data + hl, src, len(pl))
            e.len = hl + len(pl)
        finally:
            self._unlock()
        self._kick()

    def recv_control(self, max=64):
        out = []
        cdef ctl_entry* e
        cdef uint64_t v
        cdef int k
        max = _args.recv_control(max)
        # The I/O thread waits for the lock while we hold it: take at most RECV_CHUNK frames
        # per hold, so a deep queue drained in one call never stalls the data path for long.
        while True:
            self._lock()
            try:
                k = 0
                while self.ctlq_count > 0 and len(out) < max and k < RECV_CHUNK:
                    e = &self.ctlq[self.ctlq_head]
                    out.append((e.call_id, e.proto, PyBytes_FromStringAndSize(<char*>e.data, e.len)))
                    self.ctlq_head = (self.ctlq_head + 1) % self.ctlq_cap
                    self.ctlq_count -= 1
                    k += 1
                if self.ctlq_count == 0:
                    # empty: start again at slot 0, so a large, mostly idle queue only
                    # ever touches its first pages
                    self.ctlq_head = 0
                    if self.efd >= 0:
                        sys_.read(self.efd, &v, 8)
                    return out
                if len(out) >= max:
                    return out
            finally:
                self._unlock()

    @property
    def control_fd(self):
        return self.efd

    cdef void _ctl_full(self, session* s, int cause) noexcept nogil:
        """A control queue overflowed: counted by cause, and in the sum drop_queue_full, on
        the call and engine-wide (totals outlive the call)."""
        s.c[cause] += 1
        s.c[C_DROP_QUEUE_FULL] += 1
        self.totals_c[cause] += 1
        self.totals_c[C_DROP_QUEUE_FULL] += 1

    cdef void _queue_control(self, session* s, uint32_t proto, const uint8_t* p, uint32_t n) noexcept nogil:
        # Never blocks: a full ring drops (counted) and the eventfd is non-blocking.
        cdef ctl_entry* e
        cdef uint64_t one = 1
        if self.ctlq_count >= self.ctlq_cap or n > self.max_frame:
            self._ctl_full(s, C_QFULL_EVENT if proto >= EV_BASE else C_QFULL_RX_CONTROL)
            return
        e = &self.ctlq[(self.ctlq_head + self.ctlq_count) % self.ctlq_cap]
        self.ctlq_count += 1
        e.call_id = s.call_id
        e.proto = proto
        e.len = n
        if n:
            memcpy(e.data, p, n)
        if proto < EV_BASE:
            s.c[C_RX_CONTROL] += 1
        if self.efd >= 0:
            sys_.write(self.efd, &one, 8)

    # ------------------------------------------------------------------ counters
    def counters(self, call_id):
        cdef session* s
        cdef int i
        cdef int cid = _args.lookup(call_id)
        out = {}
        self._lock()
        try:
            s = self._get(cid)
            for i in range(len(COUNTER_NAMES)):
                out[COUNTER_NAMES[i]] = s.c[i]
        finally:
            self._unlock()
        return out

    def totals(self):
        """Engine-wide counters (TOTAL_NAMES); ``icmp_errors`` includes what the running GRE
        port read from the kernel."""
        cdef int i
        out = {}
        self._lock()
        for i in range(len(TOTAL_NAMES)):
            out[TOTAL_NAMES[i]] = self.totals_c[i]
        if self.io is not None:
            out["icmp_errors"] += self.io.icmp_errors
        self._unlock()
        return out

    def port_counters(self):
        """The running GRE port's counters ({} when the I/O thread is not running)."""
        self._lock()
        try:
            return {} if self.io is None else self.io.port.counters()
        finally:
            self._unlock()

    @property
    def gre_port(self):
        """The running GRE port (None when the I/O thread is not running)."""
        io = self.io
        return None if io is None else io.port

    # ------------------------------------------------------------------ timers
    cdef void _arm(self, session* s, double dl) noexcept nogil:
        if not s.in_timers:
            s.in_timers = 1
            s.tnext = NULL
            s.tprev = self.ttail
            if self.ttail != NULL:
                self.ttail.tnext = s
            else:
                self.thead = s
            self.ttail = s
        if dl < self.next_dl:
            self.next_dl = dl

    cdef void _timer_unlink(self, session* s) noexcept nogil:
        if not s.in_timers:
            return
        if s.tprev != NULL:
            s.tprev.tnext = s.tnext
        else:
            self.thead = s.tnext
        if s.tnext != NULL:
            s.tnext.tprev = s.tprev
        else:
            self.ttail = s.tprev
        s.in_timers = 0
        s.tnext = s.tprev = NULL

    cdef double _next_deadline(self) noexcept nogil:
        cdef double best = 1e300
        cdef session* s = self.thead
        while s != NULL:
            if rxw_deadline(&s.rx, &self.rxp) < best:
                best = rxw_deadline(&s.rx, &self.rxp)
            if txw_deadline(&s.tx) < best:
                best = txw_deadline(&s.tx)
            if s.has_rl_dl and s.rl_dl < best:
                best = s.rl_dl
            s = s.tnext
        return best

    def next_deadline(self):
        self._lock()
        d = self._next_deadline()
        self._unlock()
        return None if d >= 1e300 else d

    cdef void fire_timers(self, double now) noexcept nogil:
        cdef session* s = self.thead
        cdef session* nxt
        cdef txq_item* it
        cdef double best = 1e300
        while s != NULL:
            nxt = s.tnext
            # receive window: gaps past the reorder timeout given up, a confirmed jump taken
            rxw_fire(&s.rx, &self.rxp, &self.rxpool, now, &self.rxo)
            self._rx_act(s, now)
            if self.flow_control:
                # the ack time-out (the window halves), then what the window lets go
                txw_fire(&s.tx, now)
                it = txw_pop(&s.tx)
                while it != NULL:
                    self._emit_data(s, it.proto, it.row + HEADROOM, it.len, now)
                    it = txw_pop(&s.tx)
            if s.has_rl_dl and s.rl_dl <= now:
                self._rl_release(s, now)
            if rxw_ack_due(&s.rx, now):
                self._send_ack_only(s)
            if not (rxw_timers_pending(&s.rx, &self.rxp) or txw_timers_pending(&s.tx)
                    or s.has_rl_dl):
                self._timer_unlink(s)
            else:
                if rxw_deadline(&s.rx, &self.rxp) < best:
                    best = rxw_deadline(&s.rx, &self.rxp)
                if txw_deadline(&s.tx) < best:
                    best = txw_deadline(&s.tx)
                if s.has_rl_dl and s.rl_dl < best:
                    best = s.rl_dl
            s = nxt
        self.next_dl = best

    cdef void _send_ack_only(self, session* s) noexcept nogil:
        # S=0, A=1: the ack travels where the sequence number would be (RFC 2637 §4.1)
        cdef uint8_t* h = self.ackbuf
        h[0] = 0x20
        h[1] = 0x81
        h[2] = 0x88
        h[3] = 0x0B
        h[4] = 0
        h[5] = 0
        wr16(h + 6, s.peer_call_id)
        wr32(h + 8, rxw_ack_sent(&s.rx))
        s.c[C_TX_ACKS] += 1
        self.sink.to_gre(s.call_id, s.peer_be, h, 12)

    # ------------------------------------------------------------------ encapsulation
    cdef void encap_one(self, int tun, uint8_t* pkt, uint32_t n, double now) noexcept nogil:
        """pkt: an IP packet with HEADROOM writable bytes in front of it."""
        cdef session* s
        cdef uint16_t proto
        cdef int v = pkt[0] >> 4 if n else 0
        if v == 4 and n >= 20:
            s = self.route_lookup(pkt + 16, 4)
            proto = 0x21
        elif v == 6 and n >= 40:
            s = self.route_lookup(pkt + 24, 6)
            proto = 0x57
        else:
            self.totals_c[C_DROP_MALFORMED] += 1
            return
        if s == NULL:
            if tun < 0 or tun >= MAX_TUN or self.tun_count[tun] != 1:
                self.totals_c[C_DROP_NO_ROUTE] += 1
                return
            s = self._only_session(tun)
            if s == NULL:
                self.totals_c[C_DROP_NO_ROUTE] += 1
                return
        if not (s.ipv4 if proto == 0x21 else s.ipv6) or s.tun < 0:   # < 0: TUN removed
            s.c[C_DROP_NOT_READY] += 1
            return
        if self.clamp:
            mss_clamp_mtu(pkt, n, <uint16_t>s.mtu)
        if fp_rl_on(s) and not self._rl_admit(s, &s.rl_tx, proto, pkt, n, now):
            return
        send_data(self, s, proto, pkt, n, now)


    cdef session* _only_session(self, int tun) noexcept nogil:
        return self.tun_single[tun] if self.tun_count[tun] == 1 else NULL

    cdef session* _scan_tun_session(self, int tun) noexcept nogil:
        # O(65536), only when a session is removed
        cdef int i
        cdef session* s
        for i in range(65536):
            s = self.calls[i]
            if s != NULL and s.tun == tun:
                return s
        return NULL

    cdef void _emit_data(self, session* s, uint16_t proto, uint8_t* pkt, uint32_t n,
                         double now) noexcept nogil:
        cdef uint8_t* p = pkt
        cdef uint32_t L = n
        cdef uint16_t outer = proto
        if s.mppe_on:
            # RFC 3078 §3: encrypted = inner protocol (2 bytes, as Linux sends it) + datagram
            p -= 2
            wr16(p, proto)
            L += 2
            mppe_encrypt(&s.mppe_tx, p - 2, p, L)
            p -= 2
            L += 2
            outer = 0xFD
        if s.tx_pfc and outer < 0x100:
            p -= 1
            p[0] = <uint8_t>outer
            L += 1
        else:
            p -= 2
            wr16(p, outer)
            L += 2
        if not s.tx_acfc:
            p -= 2
            p[0] = 0xFF
            p[1] = 0x03
            L += 2
        self._emit_gre_hdr(s, p, L, now)
        s.c[C_TX_PACKETS] += 1
        s.c[C_TX_BYTES] += n

    cdef void _emit_gre_hdr(self, session* s, uint8_t* p, uint32_t L, double now) noexcept nogil:
        """Write the GRE header in front of the PPP frame p[0:L] (in place) and emit it."""
        cdef bint ack = rxw_ack_pending(&s.rx), arm
        cdef uint8_t* h
        cdef double dl
        cdef uint32_t seq = txw_next_seq(&s.tx, self.flow_control, now, &arm, &dl)
        if arm:                                 # flow control: the ack time-out started
            self._arm(s, dl)
        if ack:
            h = p - 16
            h[1] = 0x81
            wr32(h + 12, rxw_ack_taken(&s.rx))   # piggybacked: no ack-only packet needed
        else:
            h = p - 12
            h[1] = 0x01
        h[0] = 0x30
        h[2] = 0x88
        h[3] = 0x0B
        wr16(h + 4, L)
        wr16(h + 6, s.peer_call_id)
        wr32(h + 8, seq)
        self.sink.to_gre(s.call_id, s.peer_be, h, <uint32_t>(p - h) + L)

    cdef void flush_control(self, double now) noexcept nogil:
        cdef ctl_entry* e
        cdef session* s
        while self.ctlo_count > 0:
            e = &self.ctlo[self.ctlo_head]
            self.ctlo_head = (self.ctlo_head + 1) % self.ctlq_cap
            self.ctlo_count -= 1
            if e.call_id < 0:
                continue
            s = self.calls[e.call_id]
            if s == NULL:
                continue
            memcpy(self.work + HEADROOM, e.data, e.len)
            self._emit_gre_hdr(s, self.work + HEADROOM, e.len, now)
            s.c[C_TX_CONTROL] += 1
        self.ctlo_head = 0                      # empty: reuse the first slots (see recv_control)

    # ------------------------------------------------------------------ decapsulation
    cdef void decap_one(self, uint8_t* d, uint32_t n, double now) noexcept nogil:
        cdef uint32_t ihl, tot, g, rem, hl, plen, o, seq = 0
        cdef uint8_t f0, f1
        cdef bint has_seq, has_ack
        cdef session* s
        cdef uint32_t src
        if n < 20 or d[0] >> 4 != 4 or (d[0] & 15) < 5:
            self.totals_c[C_DROP_MALFORMED] += 1
            return
        ihl = (d[0] & 15) * 4
        tot = rd16(d + 2)
        if tot < ihl or tot > n or d[9] != 47 or (rd16(d + 6) & 0x3FFF):
            self.totals_c[C_DROP_MALFORMED] += 1
            return
        g = ihl
        rem = tot - ihl
        if rem < 8:
            self.totals_c[C_DROP_MALFORMED] += 1
            return
        f0 = d[g]
        f1 = d[g + 1]
        # RFC 2637 §4.1 / Linux pptp.c: K=1, C=R=s=recur=0, flags 0, version 1, PPP
        if (f0 & 0xEF) != 0x20 or (f1 & 0x7F) != 0x01 or rd16(d + g + 2) != 0x880B:
            self.totals_c[C_DROP_MALFORMED] += 1
            return
        has_seq = (f0 & 0x10) != 0
        has_ack = (f1 & 0x80) != 0
        hl = 8 + (4 if has_seq else 0) + (4 if has_ack else 0)
        plen = rd16(d + g + 4)
        if rem < hl or plen > rem - hl:
            self.totals_c[C_DROP_MALFORMED] += 1
            return
        s = self.calls[rd16(d + g + 6)]
        if s == NULL:
            self.totals_c[C_DROP_UNKNOWN_CALL] += 1
            return
        memcpy(&src, d + 12, 4)
        if src != s.peer_be:
            s.c[C_DROP_WRONG_SOURCE] += 1
            return
        o = g + 8
        if has_seq:
            seq = rd32(d + o)
            o += 4
        if has_ack:
            self._on_ack(s, rd32(d + o), now)
            o += 4
        if not has_seq:
            if plen:
                s.c[C_DROP_MALFORMED] += 1
            return
        if plen == 0 or plen > self.max_frame:
            s.c[C_DROP_MALFORMED] += 1
            return
        self._on_seq(s, seq, d + o, plen, now)

    cdef void prefetch_call(self, const uint8_t* d, uint32_t n, int stage) noexcept nogil:
        """Batch decap with thousands of calls is bound by memory latency, not work: warm
        the call-table slot (stage 0) and then the session (stage 1) of a packet to come."""
        cdef uint32_t g
        cdef session* s
        if n < 28:
            return
        g = (d[0] & 15) * 4
        if g + 8 > n:
            return
        if stage == 0:
            sys_.__builtin_prefetch(&self.calls[rd16(d + g + 6)])
            return
        s = self.calls[rd16(d + g + 6)]
        if s != NULL:
            sys_.__builtin_prefetch(s)
            sys_.__builtin_prefetch(<char*>s + 64)
            sys_.__builtin_prefetch(&s.c[0])
            sys_.__builtin_prefetch(&s.c[C_RX_BYTES + 8])

    cdef void _on_ack(self, session* s, uint32_t ack, double now) noexcept nogil:
        """The peer acknowledged ``ack`` (fastpptp/_txwin.pxd: the window opens, the ack
        time-out restarts, held packets may go)."""
        cdef double dl
        if txw_on_ack(&s.tx, ack, self.flow_control, now, &dl):
            self._arm(s, dl)

    cdef void _on_seq(self, session* s, uint32_t seq, uint8_t* f, uint32_t n, double now) noexcept nogil:
        """A frame with a sequence number: through the receive window (fastpptp/_rxwin.pxd)."""
        rxw_receive(&s.rx, &self.rxp, &self.rxpool, seq, f, n, now, &self.rxo)
        self._rx_act(s, now)

    cdef void _rx_act(self, session* s, double now) noexcept nogil:
        """Do what the receive window asked in self.rxo: arm the timer list, count, deliver
        the frames in order, then give their reorder-pool frames back (only now: one window
        call may release a frame and buffer another)."""
        cdef rx_out* o = &self.rxo
        cdef int i
        if o.arm:
            self._arm(s, o.arm_dl)
        if o.counted:                           # not for an in-order packet: cold lines
            s.c[C_LOST] += o.lost
            if s.mppe_on and o.lost:            # a stateless count may wrap over 4096+ lost
                mppe_add_lost(&s.mppe_rx, o.lost)
            s.c[C_DROP_REORDER_TIMEOUT] += o.lost_timeout
            s.c[C_REORDERED] += o.reordered
            if o.drop == RXW_DUPLICATE:
                s.c[C_DROP_DUPLICATE] += 1
            elif o.drop == RXW_TOO_OLD:
                s.c[C_DROP_TOO_OLD] += 1
            elif o.drop == RXW_SEQ_JUMP:
                s.c[C_DROP_SEQ_JUMP] += 1
            elif o.drop == RXW_NO_ROOM:
                s.c[C_DROP_NO_ROOM] += 1
        for i in range(o.n):
            self._deliver(s, o.frames[i].f, o.frames[i].n, now)
        rxw_done(&self.rxpool, o)

    cdef void _deliver(self, session* s, uint8_t* f, uint32_t n, double now) noexcept nogil:
        cdef uint32_t o = 0, m
        cdef int proto, rc
        cdef bint ok, ready
        if n >= 2 and f[0] == 0xFF and f[1] == 0x03:
            o = 2
        proto = ppp_proto(f, n, &o)
        if proto < 0:
            s.c[C_DROP_MALFORMED] += 1
            return
        if proto == 0xFD and s.mppe_on:
            if n - o < 3:
                s.c[C_DROP_MALFORMED] += 1
                return
            rc = mppe_decrypt(&s.mppe_rx, f + o, f + o + 2, n - o - 2)
            if rc < 0:
                s.c[C_DROP_MPPE] += 1
                if rc == MPPE_ERR_NEED_RESET:     # stateful loss: CCP Reset-Request
                    self._queue_control(s, EV_RESET, NULL, 0)
                return
            f = f + o + 2
            n = n - o - 2
            o = 0
            proto = ppp_proto(f, n, &o)
            if not s.mppe_rx.stateful:
                # Stateless keys cannot be reset: after >= 4096 losses the count wrapped and
                # every frame decrypts to garbage.  A sane IP packet ends a run of non-data
                # frames; MPPE_LOST_SYNC_RUN of them in a row raise EV_MPPE_LOST_SYNC, once.
                m = n - o
                if ((proto == 0x21 and m >= 20 and f[o] >> 4 == 4)
                        or (proto == 0x57 and m >= 40 and f[o] >> 4 == 6)):
                    s.mppe_rx.lost_run = 0
                elif s.mppe_rx.lost_run < MPPE_LOST_SYNC_RUN:
                    s.mppe_rx.lost_run += 1
                    if s.mppe_rx.lost_run == MPPE_LOST_SYNC_RUN:
                        self._queue_control(s, EV_LOST_SYNC, NULL, 0)
                if s.mppe_rx.lost_run >= MPPE_LOST_SYNC_RUN:   # lost: all but sane IP is garbage
                    s.c[C_DROP_MPPE] += 1
                    return
            if proto < 0:
                s.c[C_DROP_MALFORMED] += 1
                return
            # MPPE carries PPP protocols 0x0021..0x00FA only (never LCP/NCP/CCP): anything
            # else is garbage from lost keys, never a control frame for the link.
            if proto < MPPE_PROTO_MIN or proto > MPPE_PROTO_MAX:
                s.c[C_DROP_MPPE] += 1
                return
        elif (proto == 0x21 or proto == 0x57) and s.mppe_on:
            s.c[C_DROP_MPPE] += 1                 # MPPE is on: refuse plaintext data
            return
        if proto == 0x21 or proto == 0x57:
            m = n - o
            if proto == 0x21:
                ok = m >= 20 and f[o] >> 4 == 4
                ready = s.ipv4
            else:
                ok = m >= 40 and f[o] >> 4 == 6
                ready = s.ipv6
            if not ok:
                s.c[C_DROP_MALFORMED] += 1
                return
            if not ready or s.tun < 0:            # < 0: its TUN was removed (detached)
                s.c[C_DROP_NOT_READY] += 1
                return
            if self.clamp:
                mss_clamp_mtu(f + o, m, <uint16_t>s.mtu)
            if fp_rl_on(s) and not self._rl_admit(s, &s.rl_rx, <uint16_t>proto, f + o, m, now):
                return
            if not self.sink.to_tun(s.tun, f + o, m):
                s.c[C_DROP_NO_ROOM] += 1          # decap_slab: no row can take it
                return
            s.c[C_RX_PACKETS] += 1
            s.c[C_RX_BYTES] += m
            return
        self._queue_control(s, proto, f + o, n - o)

    # ------------------------------------------------------------------ sans-I/O API
    def process(self, double now, tun_in=(), gre_in=()):
        if self.running:
            raise RuntimeError("process() while the I/O thread runs")
        out = Output()
        cdef bytes b
        cdef uint32_t n
        cdef int tun
        self._lock()
        try:
            self.psink.tun_out = out.tun_out
            self.psink.gre_out = out.gre_out
            self.sink = self.psink
            for item in gre_in:
                b = bytes(item)
                n = len(b)
                if n > 65535:
                    self.totals_c[C_DROP_MALFORMED] += 1
                    continue
                memcpy(self.work + HEADROOM, <const char*>b, n)
                self.decap_one(self.work + HEADROOM, n, now)
            self.flush_control(now)
            for tun, item in tun_in:
                b = bytes(item)
                n = len(b)
                if n > 65535:
                    self.totals_c[C_DROP_MALFORMED] += 1
                    continue
                memcpy(self.work + HEADROOM, <const char*>b, n)
                self.encap_one(tun, self.work + HEADROOM, n, now)
            self.fire_timers(now)
        finally:
            self.psink.tun_out = None
            self.psink.gre_out = None
            self._unlock()
        return out

    # ------------------------------------------------------------------ slab API
    def encap_slab(self, int tun, uint8_t[:, ::1] slab not None, uint32_t[::1] lens not None,
                   int n, uint32_t[:, ::1] out_dst not None):
        """Encapsulate rows 0..n-1 of ``slab`` (uint8 [rows, row_size]); row i holds an IP
        packet of ``lens[i]`` bytes at ``HEADROOM``.  Each frame is built in place in front
        of its packet.  On return ``out_dst[i] = (peer IPv4 as host-order uint32, or 0 when
        the packet was dropped or queued; frame start offset in the row; frame length)``
        (``out_dst``: uint32 [rows, 3]).  Returns the number of frames ready to send.
        A packet above 65535 bytes is ``drop_malformed``, as in ``process``.
        Timers are not run here (call process(now) for those)."""
        if self.running:
            raise RuntimeError("encap_slab() while the I/O thread runs")
        if (n < 0 or n > slab.shape[0] or n > lens.shape[0] or n > out_dst.shape[0]
                or out_dst.shape[1] != 3):
            raise ValueError("slab/lens/out_dst too small for n")
        cdef size_t row = slab.shape[1]
        cdef int i
        cdef double now = mono_now()
        for i in range(n):
            if HEADROOM + <size_t>lens[i] > row:     # size_t: no uint32 wrap-around
                raise ValueError(f"row {i}: packet does not fit the row")
        cdef SlabSink sk = self.ssink
        self._lock()
        self.sink = sk
        with nogil:
            sk.begin_encap(&slab[0, 0], row, &out_dst[0, 0])
            for i in range(n):
                out_dst[i, 0] = 0
                out_dst[i, 1] = 0
                out_dst[i, 2] = 0
                if lens[i] > 65535:
                    self.totals_c[C_DROP_MALFORMED] += 1
                    continue
                sk.cur = i
                self.encap_one(tun, &slab[i, 0] + HEADROOM, lens[i], now)
            sk.end()
        self.sink = self.psink
        self._unlock()
        return sk.o_n

    def decap_slab(self, uint8_t[:, ::1] slab not None, uint32_t[::1] lens not None, int n,
                   int32_t[::1] out_tun not None, int64_t[::1] out_off not None,
                   uint32_t[::1] out_len not None):
        """Decapsulate rows 0..n-1 of ``slab``: row i holds an IPv4+GRE datagram of
        ``lens[i]`` bytes at offset ``HEADROOM``.  IP packets for TUN come back in delivery
        order: ``out_tun[j], out_off[j], out_len[j]`` for j < the returned count, where
        ``out_off`` is the flat offset into the slab (row * row_size + column).  A row's own
        packet stays in that row, where it was decrypted; packets released from the reorder
        buffer never go into the row being read: they are copied into a row already done
        that yielded nothing (lowest first), else into spare rows n, n+1, ... (give the slab
        n + reorder_depth rows, and the out arrays as many entries).  A released packet no
        row can take (none left, or rows too narrow) is ``drop_no_room``, never
        ``rx_packets``.  A datagram above 65535 bytes is ``drop_malformed``, as in
        ``process``."""
        if self.running:
            raise RuntimeError("decap_slab() while the I/O thread runs")
        cdef size_t rows = slab.shape[0], row = slab.shape[1]
        if n < 0 or <size_t>n > rows or n > lens.shape[0]:
            raise ValueError("slab/lens too small for n")
        cdef size_t cap = min(out_tun.shape[0], out_off.shape[0], out_len.shape[0])
        cdef int i
        cdef double now = mono_now()
        for i in range(n):
            if HEADROOM + <size_t>lens[i] > row:     # size_t: no uint32 wrap-around
                raise ValueError(f"row {i}: datagram does not fit the row")
        if cap < rows:
            raise ValueError("out arrays need one entry per slab row")
        cdef SlabSink sk = self.ssink
        self._lock()
        try:
            sk.reserve(<size_t>n)
        except MemoryError:
            self._unlock()
            raise
        self.sink = sk
        with nogil:
            sk.begin_decap(&slab[0, 0], row, rows, <size_t>n, &out_tun[0], &out_off[0],
                           &out_len[0])
            for i in range(n):
                if i + 4 < n:
                    self.prefetch_call(&slab[i + 4, 0] + HEADROOM, lens[i + 4], 0)
                if i + 2 < n:
                    self.prefetch_call(&slab[i + 2, 0] + HEADROOM, lens[i + 2], 1)
                sk.row_begin(i)
                if lens[i] > 65535:
                    self.totals_c[C_DROP_MALFORMED] += 1
                else:
                    self.decap_one(&slab[i, 0] + HEADROOM, lens[i], now)
                sk.row_end(i)
            sk.end()
        self.sink = self.psink
        self._unlock()
        return sk.o_n

    # ------------------------------------------------------------------ I/O mode
    supports_vnet_hdr = True

    def start(self, tun_fds, gre, *, vnet_hdr_len=None):
        """Start the native I/O thread on ``tun_fds`` (TUN index = list position) and the GRE
        port ``gre``: a :class:`fastpptp._greport.GrePort` (raw, packet ring, AF_XDP; the
        caller keeps it and closes it after stop()), or the fd of a raw GRE socket, wrapped
        in a RawPort (an AF_UNIX datagram socket is accepted as a test fake: frames are then
        sent without an address).  ``vnet_hdr_len``: None = ask each TUN (IFF_VNET_HDR
        and TUNGETVNETHDRSZ); an int or a list = what each fd carries (fakes in tests).  With a
        virtio_net_hdr, TSO super-packets are segmented to the session MTU and, when
        ``offload``, in-order TCP segments are coalesced (GRO) into one write.  The loop
        itself is fastpptp._ioloop.IoLoop (also the output sink while it runs)."""
        if self.io is not None:
            raise RuntimeError("already started")
        if self.wake_fd < 0:
            raise RuntimeError("engine closed")
        # at run time, not cimported: _ioloop cimports this module's Engine
        from fastpptp._ioloop import IoLoop
        cdef GrePort port
        if isinstance(gre, GrePort):
            port = gre
            fds, _unused, vl = _args.start(tun_fds, None, vnet_hdr_len)
        else:
            fds, gre_fd, vl = _args.start(tun_fds, gre, vnet_hdr_len)
            os.set_blocking(gre_fd, False)
            port = RawPort(gre_fd, self.batch)
        cdef int i
        for i in range(len(fds)):
            if self.tun_owner[i] != TUN_FREE:
                raise ValueError(f"TUN index {i} is taken (add_tun): start() fills 0..{len(fds) - 1}")
        if port.tx_cap < 1:
            raise ValueError(f"GRE port {port.describe()} cannot send")
        io = IoLoop(self, port)                  # the slabs (MemoryError: nothing changed yet)
        for i in range(len(fds)):
            os.set_blocking(fds[i], False)
            self.tun_fds[i] = fds[i]
            self.tun_vnet[i] = vl[i]
            self.tun_owner[i] = TUN_FROM_START
        self._tun_highwater()
        try:
            io.open()                            # the epoll set, from here to stop()
        except OSError:
            self._tun_release_started()
            io.release()
            raise
        self._lock()
        self.io = io
        self.sink = io
        self.running = 1
        self._unlock()
        io.start()

    cdef void _tun_highwater(self) noexcept:
        cdef int n = MAX_TUN
        while n > 0 and self.tun_fds[n - 1] < 0:
            n -= 1
        self.ntun = n

    cdef void _tun_release_started(self) noexcept:
        """Free the TUN slots start() filled (add_tun'd TUNs stay until remove_tun)."""
        cdef int i
        for i in range(MAX_TUN):
            if self.tun_owner[i] == TUN_FROM_START:
                self.tun_fds[i] = -1
                self.tun_vnet[i] = 0
                self.tun_owner[i] = TUN_FREE
        self._tun_highwater()

    def add_tun(self, fd, vnet_hdr_len=None):
        """Add a TUN fd to the table and return its index (the lowest free one; indexes of
        removed TUNs are reused).  Allowed while the I/O thread runs: the table changes under
        the lock and the fd joins the loop's epoll set at once.  ``vnet_hdr_len``: None asks
        the TUN (IFF_VNET_HDR), an int says what the fd carries (0 for fakes).  The TUN stays
        until remove_tun (stop() keeps it)."""
        cdef int i, idx = -1
        a_fd, v = _args.add_tun(fd, vnet_hdr_len)
        cdef int tfd = a_fd
        os.set_blocking(tfd, False)
        self._lock()
        try:
            for i in range(MAX_TUN):
                if self.tun_fds[i] == tfd:
                    raise ValueError(f"fd {tfd} is already TUN {i}")
            for i in range(MAX_TUN):
                if self.tun_owner[i] == TUN_FREE:
                    idx = i
                    break
            if idx < 0:
                raise ValueError(f"no free TUN index (MAX_TUN = {MAX_TUN})")
            if self.io is not None:
                self.io.watch_tun(idx, tfd)      # OSError: the table is unchanged
            self.tun_fds[idx] = tfd
            self.tun_vnet[idx] = v
            self.tun_owner[idx] = TUN_ADDED
            self._tun_highwater()
        finally:
            self._unlock()
        self._kick()
        return idx

    def remove_tun(self, index):
        """Take TUN ``index`` out of the table (its fd is not closed: the caller owns it).
        Sessions still on it are detached: their IP packets count as ``drop_not_ready``
        both ways, so a later TUN that reuses the index never sees them."""
        cdef int i
        cdef session* s
        cdef int ti = _args.tun_index(index)
        self._lock()
        try:
            if self.tun_owner[ti] == TUN_FREE:
                raise KeyError(f"no TUN {ti}")
            if self.io is not None:
                self.io.unwatch_tun(self.tun_fds[ti])
            if self.tun_count[ti] > 0:
                for i in range(65536):
                    s = self.calls[i]
                    if s != NULL and s.tun == ti:
                        s.tun = -1
                self.tun_count[ti] = 0
                self.tun_single[ti] = NULL
            self.tun_fds[ti] = -1
            self.tun_vnet[ti] = 0
            self.tun_owner[ti] = TUN_FREE
            self._tun_highwater()
        finally:
            self._unlock()
        self._kick()

    def tuns(self):
        """{index: fd} of the TUN table (tests, diagnostics)."""
        cdef int i
        self._lock()
        out = {i: self.tun_fds[i] for i in range(self.ntun) if self.tun_fds[i] >= 0}
        self._unlock()
        return out

    def stop(self):
        io = self.io
        if io is None:
            return
        io.join()                                # the thread is gone: no emit from here on
        self._lock()
        self.running = 0
        io.close()                               # its epoll set: add_tun no longer sees it
        self._tun_release_started()
        # the port's ICMP errors of this run stay in the totals; the port is the caller's
        # (or our RawPort over the caller's fd)
        self.totals_c[C_ICMP_ERRORS] += io.icmp_errors
        self.io = None
        self.sink = self.psink
        self._unlock()
        io.release()

    def close(self):
        """Stop the I/O thread and release the eventfds (``control_fd`` becomes -1).  The
        tables stay: sans-I/O calls still work; ``start`` raises RuntimeError.  Idempotent."""
        self.stop()
        if self.efd >= 0:
            sys_.close(self.efd)
            self.efd = -1
        if self.wake_fd >= 0:
            sys_.close(self.wake_fd)
            self.wake_fd = -1

    @property
    def loops(self):
        """Wake-ups of the I/O thread so far (tests, diagnostics)."""
        return self.io_loops

    @property
    def coalesced(self):
        """Times the I/O thread waited ``rx_coalesce_us`` after a busy GRE burst."""
        return self.io_coalesced



cdef inline void send_data(Engine self, session* s, uint16_t proto, uint8_t* pkt, uint32_t n,
                           double now) noexcept nogil:
    """An IP packet for the session, past its rate limit (inline: the encapsulation fast
    path and the hold queue both end here): held while the flow-control window is closed
    (fastpptp/_txwin.pxd), else framed and emitted.  pkt has HEADROOM writable bytes before."""
    if txw_must_hold(&s.tx, self.flow_control):
        if txw_hold(&s.tx, proto, pkt, n) < 0:
            s.c[C_DROP_WINDOW_FULL] += 1       # queue full, larger than a slot, no memory
            return
        self._arm(s, now)
        return
    self._emit_data(s, proto, pkt, n, now)


class Output:
    """What one ``process`` call produced."""

    __slots__ = ("tun_out", "gre_out")

    def __init__(self):
        self.tun_out = []
        self.gre_out = []


def bench_memcpy(uint8_t[:, ::1] src, uint8_t[:, ::1] dst, uint32_t[::1] lens, int n,
                 size_t offset=HEADROOM):
    """The benchmarks' floor: copy each packet (``lens[i]`` bytes at ``offset`` in row i of
    ``src``) to row i of ``dst``, as a data plane that only moved the bytes once would."""
    cdef int i
    if n > src.shape[0] or n > dst.shape[0] or n > lens.shape[0]:
        raise ValueError("arrays too small for n")
    for i in range(n):
        if offset + lens[i] > <size_t>src.shape[1] or lens[i] > <size_t>dst.shape[1]:
            raise ValueError("packet does not fit its row")
    with nogil:
        for i in range(n):
            memcpy(&dst[i, 0], &src[i, 0] + offset, lens[i])
    return n
