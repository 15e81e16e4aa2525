# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The engine's I/O loop (contract: fastpptp/_ioloop.pxd).  One pass, as the thread runs it:

 1. epoll_wait on the TUN fds, the GRE port's fds and the engine's wake eventfd, with the
    engine's next timer deadline (ack-only, reorder gap, flow-control ack time-out, rate
    limit) as the time-out.  Then everything below under the engine lock, for one batch.
 2. GRE side: port.rx_burst -> Engine.decap_one on each datagram, in the port's memory
    (IPv4/GRE validation, call ID -> session, window, PPP, MPPE in place, MSS clamp).  The
    engine hands IP packets to this sink's to_tun: a write() to the session's TUN, or, on
    a TUN with a virtio_net_hdr, a hold to the end of the batch so that in-order TCP
    segments of one flow go out as one GRO super-packet (_offload.gro_coalesce); then
    port.rx_release.  Control frames go to the engine's bounded queue + eventfd.
 3. Control frames Python queued with send_control: Engine.flush_control.
 4. TUN side (back-pressure first: port.tx_room() says how many frames the port can take
    now; none, and the loop stops polling the TUNs until it has room again -- the
    kernel's TUN queue then drops, before encryption, as any tunnel's does, instead of
    this loop reading, encrypting and throwing away; see tun_events):
    read() up to min(``batch``, room) packets per ready TUN straight into slab rows at
    HEADROOM (a virtio_net_hdr lands just before it; TSO super-packets are cut to the
    session MTU by _offload.tso_segment) -> Engine.encap_one each, which builds the frame
    in place in front of the packet and hands it to to_gre -> port.tx_add; tx_flush per TUN.
 5. Timers due: Engine.fire_timers (reorder gaps given up, queued flow-control frames,
    rate-limit releases, ack-only packets), then the GRO hold and the port flushed.

No Python object is touched per packet: the thread runs without the GIL from start to
stop.  Python threads change the engine's tables (sessions, routes, TUN table, this epoll
set through watch_tun/unwatch_tun) under the engine lock, which the loop holds for one
batch at a time.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset

cimport fastpptp._sys as sys_
from fastpptp._sys cimport pthread_mutex_lock, pthread_mutex_unlock, iovec, epoll_event, timespec
from fastpptp._gre cimport (Engine, session, HEADROOM, MAX_TUN, IO_ROW, SEG_ROW, SEG_MAX,
                            GRO_MAX, C_DROP_MALFORMED)
from fastpptp._greport cimport GrePort, PORT_HEADROOM, PORT_MAX_FDS, P_ICMP_ERRORS, P_TUN_PAUSED
from fastpptp._offload cimport (vnet_hdr, tso_segment, gro_coalesce, csum_complete,
                                VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_ECN,
                                VIRTIO_NET_HDR_F_NEEDS_CSUM)

import threading

import numpy as np

cdef extern from "<sys/epoll.h>" nogil:
    enum:
        EPOLL_CTL_MOD

# While the port is full the loop wakes at least this often (ms) to ask it again: a socket
# port's room comes back with its send buffer, an AF_XDP port's only when it is kicked.
cdef int PAUSED_POLL_MS = 1
# a GRE burst of at least this many datagrams makes the next idle moment a coalescing wait
# (EngineConfig.rx_coalesce_us); fewer is a trickle, whose packets are not to be held
cdef int RX_COALESCE_MIN = 8

cdef extern from "<unistd.h>" nogil:
    int usleep(unsigned int usec)

cdef uint32_t PORT_EV = 1000    # epoll data of the GRE port's fds: PORT_EV + index in port.fds
cdef uint32_t WAKE_EV = 999     # epoll data of the wake eventfd; a TUN's is its index (< MAX_TUN)


cdef inline double mono_now() noexcept nogil:
    cdef timespec ts
    sys_.clock_gettime(sys_.CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class IoLoop(Sink):
    """The running I/O side of one Engine: made by Engine.start(), dropped by Engine.stop().
    Its Python methods are the engine's to call (with the GIL; those marked so with the
    engine lock held)."""

    def __cinit__(self, *args, **kw):
        self.ep = -1

    def __init__(self, Engine eng not None, GrePort port not None):
        cdef int b = eng.batch
        cdef uint8_t[:, ::1] tv
        self.eng = eng
        self.port = port
        self.icmp_base = port.pc[P_ICMP_ERRORS]
        self.port_pc = &port.pc[0]
        self.paused = 0
        self.batch = b
        self.coalesce_us = eng.config.rx_coalesce_us
        self.offload = 1 if eng.config.offload else 0
        # the TUN slab is a numpy array (kept alive here); the loop uses its memory
        self.tun_np = np.zeros((b, IO_ROW), np.uint8)
        tv = self.tun_np
        self.tun_slab = &tv[0, 0]
        # copies of frames until the port's flush: at most tx_cap frames between flushes
        self.scratch_cap = <size_t>(port.tx_cap if port.tx_cap > 0 else 2 * b) * \
            (PORT_HEADROOM + eng.max_frame + HEADROOM + 16)
        self.scratch = <uint8_t*>malloc(self.scratch_cap)
        self.rx_ptrs = <uint8_t**>calloc(b, sizeof(uint8_t*))
        self.rx_lens = <uint32_t*>calloc(b, sizeof(uint32_t))
        self.seg_slab = <uint8_t*>malloc(<size_t>SEG_MAX * SEG_ROW)
        self.seg_lens = <uint32_t*>calloc(SEG_MAX, sizeof(uint32_t))
        self.gro_ptrs = <uint8_t**>calloc(GRO_MAX, sizeof(uint8_t*))
        self.gro_lens = <uint32_t*>calloc(GRO_MAX, sizeof(uint32_t))
        self.gro_dst = <uint8_t*>malloc(65536 + 64)
        self.gro_n = 0
        self.out_n = 0
        self.scratch_used = 0
        self.rx_cur = self.rx_cur_end = NULL
        if (self.seg_slab == NULL or self.seg_lens == NULL or self.gro_ptrs == NULL
                or self.gro_lens == NULL or self.gro_dst == NULL or self.scratch == NULL
                or self.rx_ptrs == NULL or self.rx_lens == NULL):
            self._free()
            raise MemoryError()

    def __dealloc__(self):
        if self.ep >= 0:
            sys_.close(self.ep)
            self.ep = -1
        self._free()

    cdef void _free(self) noexcept:
        self.tun_np = None
        free(self.scratch)
        free(self.rx_ptrs)
        free(self.rx_lens)
        free(self.seg_slab)
        free(self.seg_lens)
        free(self.gro_ptrs)
        free(self.gro_lens)
        free(self.gro_dst)
        self.seg_slab = self.gro_dst = NULL
        self.seg_lens = self.gro_lens = self.rx_lens = NULL
        self.gro_ptrs = self.rx_ptrs = NULL
        self.tun_slab = self.scratch = NULL

    # ------------------------------------------------------------------ the engine's calls
    def open(self):
        """Build the epoll set: every TUN in the engine's table, the port's fds, the wake
        eventfd.  It lives to close(): watch_tun/unwatch_tun change it while the loop waits
        on it (epoll_ctl is safe against a concurrent epoll_wait)."""
        cdef Engine e = self.eng
        cdef epoll_event ev
        cdef int i, k
        cdef int ep = sys_.epoll_create1(sys_.EPOLL_CLOEXEC)
        if ep < 0:
            raise OSError(sys_.errno, "epoll_create1")
        for i in range(e.ntun):
            if e.tun_fds[i] >= 0:
                ev.events = sys_.EPOLLIN
                ev.data.u32 = i
                sys_.epoll_ctl(ep, sys_.EPOLL_CTL_ADD, e.tun_fds[i], &ev)
        for k in range(self.port.nfds):
            ev.events = sys_.EPOLLIN
            ev.data.u32 = PORT_EV + k
            sys_.epoll_ctl(ep, sys_.EPOLL_CTL_ADD, self.port.fds[k], &ev)
        ev.events = sys_.EPOLLIN
        ev.data.u32 = WAKE_EV
        sys_.epoll_ctl(ep, sys_.EPOLL_CTL_ADD, e.wake_fd, &ev)
        self.ep = ep

    def watch_tun(self, int index, int fd):
        """Engine.add_tun, engine lock held: poll TUN ``index`` (fd ``fd``) from now on."""
        cdef epoll_event ev
        if self.ep < 0:
            return
        ev.events = 0 if self.paused else sys_.EPOLLIN     # polled again when the port has room
        ev.data.u32 = index
        if sys_.epoll_ctl(self.ep, sys_.EPOLL_CTL_ADD, fd, &ev) != 0:
            raise OSError(sys_.errno, f"epoll_ctl ADD TUN fd {fd}")

    def unwatch_tun(self, int fd):
        """Engine.remove_tun, engine lock held: stop polling ``fd``."""
        if self.ep >= 0:
            sys_.epoll_ctl(self.ep, sys_.EPOLL_CTL_DEL, fd, NULL)

    def start(self):
        self.stopping = 0
        self.thread = threading.Thread(target=self._thread_main, name="RoutineGreEngine",
                                       daemon=True)
        self.thread.start()

    def _thread_main(self):
        with nogil:
            self.run()

    def join(self):
        """Ask the loop to end (at its next wake-up: the engine's eventfd is kicked) and
        wait for the thread.  Without the engine lock."""
        self.stopping = 1
        self.eng._kick()
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def close(self):
        """Engine.stop, engine lock held, after join(): the epoll set goes, so a later
        add_tun never touches a closed fd."""
        if self.ep >= 0:
            sys_.close(self.ep)
            self.ep = -1

    def release(self):
        """Give the slabs back (after close(), without the lock)."""
        self._free()

    @property
    def icmp_errors(self):
        """ICMP errors the port read since start()."""
        return self.port.pc[P_ICMP_ERRORS] - self.icmp_base

    # ------------------------------------------------------------------ the sink
    cdef bint to_tun(self, int tun, uint8_t* p, uint32_t n) noexcept nogil:
        """An IP packet for TUN ``tun``; a TUN gone (removed, or a fd closed under us)
        loses it after the engine counted it."""
        if tun < 0 or tun >= self.eng.ntun or self.eng.tun_fds[tun] < 0:
            return 1
        if self.eng.tun_vnet[tun] == 0:
            sys_.write(self.eng.tun_fds[tun], p, n)
            return 1
        if self.offload and p >= self.rx_cur and p < self.rx_cur_end:
            # the datagram being decapsulated, in the port's receive memory: held for
            # GRO until the end of the batch (valid until port.rx_release)
            if self.gro_n and (self.gro_tun != tun or self.gro_n >= GRO_MAX):
                self.flush_tun()
            self.gro_ptrs[self.gro_n] = p
            self.gro_lens[self.gro_n] = n
            self.gro_tun = tun
            self.gro_n += 1
            return 1
        self.flush_tun()                        # keep the order of what is held
        self.write_tun(tun, p, n)
        return 1

    cdef void to_gre(self, int call_id, uint32_t dst_be, uint8_t* p, uint32_t n) noexcept nogil:
        cdef uint8_t* q
        if self.out_n >= self.port.tx_cap:
            self.flush_gre()
        q = p
        if not ((p >= self.tun_slab and p < self.tun_slab + <size_t>self.batch * IO_ROW) or
                (p >= self.seg_slab and p < self.seg_slab + <size_t>SEG_MAX * SEG_ROW)):
            # not in a TUN/segment slab row (control, ack, queued, MPPE-released): copy,
            # with the port's headroom in front, until the port's tx_flush
            if self.scratch_used + PORT_HEADROOM + n + 16 > self.scratch_cap:
                self.flush_gre()
            q = self.scratch + self.scratch_used + PORT_HEADROOM
            memcpy(q, p, n)
            self.scratch_used += (PORT_HEADROOM + n + 15) & ~(<size_t>15)
        # a slab row has HEADROOM bytes before the packet; the PPP/MPPE/GRE headers take at
        # most 24 of them, so PORT_HEADROOM (40) are left in front of the GRE header
        self.port.tx_add(q, n, dst_be)
        self.out_n += 1

    # ------------------------------------------------------------------ TUN and port I/O
    cdef void tun_read(self, int t, uint8_t* row, uint32_t n, double now) noexcept nogil:
        """One TUN read: row[0:n] is an IP packet, its virtio_net_hdr (if the TUN has one) is
        just before it.  TSO super-packets are cut to the session MTU (RFC 2637 has no
        fragmentation of its own: each PPP frame must fit the peer's MRU)."""
        cdef int V = self.eng.tun_vnet[t]
        cdef vnet_hdr vh
        cdef session* s
        cdef int k, i, gso
        cdef uint32_t maxlen
        if V == 0:
            self.eng.encap_one(t, row, n, now)
            return
        memset(&vh, 0, sizeof(vnet_hdr))
        memcpy(&vh, row - V, V if V <= <int>sizeof(vnet_hdr) else sizeof(vnet_hdr))
        gso = vh.gso_type & ~VIRTIO_NET_HDR_GSO_ECN
        s = NULL
        if n >= 20 and row[0] >> 4 == 4:
            s = self.eng.route_lookup(row + 16, 4)
        elif n >= 40 and row[0] >> 4 == 6:
            s = self.eng.route_lookup(row + 24, 6)
        if s == NULL and 0 <= t < MAX_TUN and self.eng.tun_count[t] == 1:
            s = self.eng._only_session(t)
        if s == NULL:
            self.eng.encap_one(t, row, n, now)          # counts it (malformed / no route)
            return
        maxlen = s.mtu if s.mtu < SEG_ROW - HEADROOM else SEG_ROW - HEADROOM
        if gso == VIRTIO_NET_HDR_GSO_NONE and n <= maxlen:
            if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) and csum_complete(row, n, &vh) < 0:
                s.c[C_DROP_MALFORMED] += 1
                return
            self.eng.encap_one(t, row, n, now)
            return
        k = tso_segment(row, n, &vh, <uint16_t>maxlen, self.seg_slab, SEG_ROW, HEADROOM,
                        SEG_MAX, self.seg_lens)
        if k < 0:
            s.c[C_DROP_MALFORMED] += 1
            return
        for i in range(k):
            self.eng.encap_one(t, self.seg_slab + <size_t>i * SEG_ROW + HEADROOM,
                               self.seg_lens[i], now)
        self.flush_gre()                         # frames point into the segment slab

    cdef void write_tun(self, int tun, uint8_t* p, uint32_t n) noexcept nogil:
        """One packet to a TUN that carries a virtio_net_hdr: an all-zero header (no GSO, no
        checksum to do) in front, by writev (no copy)."""
        cdef uint8_t zero[16]
        cdef iovec iov[2]
        memset(zero, 0, 16)
        iov[0].iov_base = zero
        iov[0].iov_len = self.eng.tun_vnet[tun]
        iov[1].iov_base = p
        iov[1].iov_len = n
        sys_.writev(self.eng.tun_fds[tun], iov, 2)

    cdef void flush_tun(self) noexcept nogil:
        """Write the packets held for GRO: runs of in-order segments of one TCP flow become
        one super-packet with a GSO virtio_net_hdr (fastpptp._offload.gro_coalesce)."""
        cdef int i = 0, k, tun = self.gro_tun
        cdef vnet_hdr vh
        cdef uint32_t dlen
        cdef iovec iov[2]
        while i < self.gro_n:
            k = 1
            if self.gro_n - i > 1:
                k = gro_coalesce(self.gro_ptrs + i, self.gro_lens + i, self.gro_n - i,
                                 self.gro_dst, 65536, &vh, &dlen)
            if k <= 1:
                self.write_tun(tun, self.gro_ptrs[i], self.gro_lens[i])
                i += 1
                continue
            iov[0].iov_base = &vh
            iov[0].iov_len = self.eng.tun_vnet[tun]
            iov[1].iov_base = self.gro_dst
            iov[1].iov_len = dlen
            sys_.writev(self.eng.tun_fds[tun], iov, 2)
            i += k
        self.gro_n = 0

    cdef void tun_events(self, uint32_t events) noexcept nogil:
        """Poll every TUN for ``events`` (EPOLLIN, or 0 while the port is full: epoll is
        level-triggered, so a TUN left readable but unread would wake the loop at once,
        again and again).  An fd EOF took out of the set is left out (ENOENT)."""
        cdef epoll_event ev
        cdef int i
        for i in range(self.eng.ntun):
            if self.eng.tun_fds[i] >= 0:
                ev.events = events
                ev.data.u32 = i
                sys_.epoll_ctl(self.ep, EPOLL_CTL_MOD, self.eng.tun_fds[i], &ev)

    cdef void flush_gre(self) noexcept nogil:
        """Send what the port holds; the scratch copies are free again afterwards."""
        if self.out_n > 0:
            self.port.tx_flush()
        self.out_n = 0
        self.scratch_used = 0

    # ------------------------------------------------------------------ the loop
    cdef void run(self) noexcept nogil:
        cdef epoll_event evs[MAX_TUN + 2 + PORT_MAX_FDS]
        cdef uint8_t ready[MAX_TUN]
        cdef uint32_t port_ev[PORT_MAX_FDS]
        cdef bint gre_ready
        cdef uint32_t u
        cdef int ep = self.ep
        cdef int i, t, r, k, timeout, got, room, lim
        cdef uint64_t v
        cdef double now, dl
        cdef sys_.ssize_t nr
        cdef uint8_t* row
        cdef int last_got = 0
        if ep < 0:
            return
        while not self.stopping:
            pthread_mutex_lock(&self.eng.lock)
            dl = self.eng.next_dl
            pthread_mutex_unlock(&self.eng.lock)
            now = mono_now()
            if dl >= 1e299:
                timeout = 1000
            elif dl <= now:
                timeout = 0
            else:
                timeout = <int>((dl - now) * 1000.0) + 1
                if timeout > 1000:
                    timeout = 1000
            if self.paused and timeout > PAUSED_POLL_MS:
                timeout = PAUSED_POLL_MS
            r = 0
            if self.coalesce_us > 0 and last_got >= RX_COALESCE_MIN and timeout != 0:
                # receive coalescing: the last GRE burst was busy; if nothing is ready now,
                # let more arrive for coalesce_us instead of being woken per packet (on a
                # TPACKET_V2 ring or AF_XDP each frame wakes a sleeping epoll_wait)
                r = sys_.epoll_wait(ep, evs, MAX_TUN + 2 + PORT_MAX_FDS, 0)
                if r == 0:
                    self.eng.io_coalesced += 1
                    usleep(self.coalesce_us)
            if r <= 0:
                r = sys_.epoll_wait(ep, evs, MAX_TUN + 2 + PORT_MAX_FDS, timeout)
            if self.stopping:
                break
            # only what epoll reported is read (no syscall just to hear EAGAIN); level-
            # triggered, so a side that still has packets after a batch comes back at once
            memset(ready, 0, MAX_TUN)
            memset(port_ev, 0, sizeof(port_ev))
            gre_ready = 0
            for i in range(r if r > 0 else 0):
                u = evs[i].data.u32
                if u == WAKE_EV:
                    sys_.read(self.eng.wake_fd, &v, 8)
                elif PORT_EV <= u < PORT_EV + PORT_MAX_FDS:
                    port_ev[u - PORT_EV] = evs[i].events
                    gre_ready = 1
                elif u < MAX_TUN:
                    ready[u] = 1
            self.eng.io_loops += 1
            pthread_mutex_lock(&self.eng.lock)
            now = mono_now()
            # GRE side: a batch from the port (pointers into its receive memory), decapsulated
            # in place; delivered packets may be held for GRO until flush_tun, and the
            # port gets its memory back only after that
            got = 0
            if gre_ready:
                got = self.port.rx_burst(port_ev, self.rx_ptrs, self.rx_lens, self.batch)
                for i in range(got):
                    if i + 4 < got:
                        self.eng.prefetch_call(self.rx_ptrs[i + 4], self.rx_lens[i + 4], 0)
                    if i + 2 < got:
                        self.eng.prefetch_call(self.rx_ptrs[i + 2], self.rx_lens[i + 2], 1)
                    self.rx_cur = self.rx_ptrs[i]
                    self.rx_cur_end = self.rx_cur + self.rx_lens[i]
                    self.eng.decap_one(self.rx_cur, self.rx_lens[i], now)
                self.rx_cur = self.rx_cur_end = NULL
            self.flush_tun()
            if got > 0:
                self.port.rx_release()
            last_got = got
            # control frames from Python
            self.eng.flush_control(now)
            # back-pressure: a full port gets no more frames from the TUNs (module doc, 4.)
            if self.paused and self.port.tx_room() > 0:
                self.paused = 0
                self.tun_events(sys_.EPOLLIN)   # readable TUNs wake the next epoll_wait at once
            # TUN side: read a batch per TUN into the slab at HEADROOM, encapsulate in place
            for t in range(self.eng.ntun):
                # a TUN removed since epoll reported it: slot free (-1) or reused (EAGAIN)
                if self.paused or not ready[t] or self.eng.tun_fds[t] < 0:
                    continue
                room = self.port.tx_room()
                if room <= 0:
                    self.paused = 1
                    self.port_pc[P_TUN_PAUSED] += 1
                    self.tun_events(0)
                    continue
                lim = self.batch if self.batch < room else room
                k = 0
                while k < lim:
                    row = self.tun_slab + <size_t>k * IO_ROW + HEADROOM
                    # the virtio_net_hdr (if any) lands just before HEADROOM, the packet at it
                    nr = sys_.read(self.eng.tun_fds[t], row - self.eng.tun_vnet[t],
                                   IO_ROW - HEADROOM - 64 + self.eng.tun_vnet[t])
                    if nr < 0:
                        if sys_.errno == sys_.EINTR:
                            continue
                        break
                    if nr == 0:
                        # EOF (a fake TUN whose far end closed): stop polling it, or
                        # level-triggered epoll would spin on it
                        if self.eng.tun_fds[t] >= 0:
                            sys_.epoll_ctl(ep, sys_.EPOLL_CTL_DEL, self.eng.tun_fds[t], NULL)
                        break
                    k += 1
                    if nr <= self.eng.tun_vnet[t]:
                        self.eng.totals_c[C_DROP_MALFORMED] = \
                            self.eng.totals_c[C_DROP_MALFORMED] + 1
                        continue
                    self.tun_read(t, row, <uint32_t>(nr - self.eng.tun_vnet[t]), now)
                self.flush_gre()
            if now >= self.eng.next_dl:
                self.eng.fire_timers(now)
                self.flush_tun()
            self.flush_gre()
            pthread_mutex_unlock(&self.eng.lock)
