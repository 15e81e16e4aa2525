# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The AF_XDP GRE port: PPTP GRE straight between the NIC's XDP hook and our memory.

Theory of operation (Documentation/networking/af_xdp.rst):

1. Set-up (Python, fastpptp/net/xdpport.py): the XDP program ``xdp_gre_redirect``
   (fastpptp/net/bpf.py) is attached to the interface; it redirects only PPTP GRE to one of our
   addresses, unfragmented, to ``xsks[rx_queue_index]`` and passes everything else (the TCP
   1723 control connection, ARP, ICMP, fragments) to the stack.  This class opens one AF_XDP
   socket per receive queue, each with its own UMEM, and xdpport.py puts them in the XSKMAP.
2. A UMEM is ``frames`` chunks of ``frame_size`` bytes (2048, or 4096 when the link MTU needs
   it).  The first half are receive buffers: they live in the fill ring, the kernel copies a
   redirected frame into one (copy mode: veth and most drivers without zero-copy) and posts
   its descriptor on the rx ring.  The second half are transmit buffers, on a free stack
   until ``tx_flush`` writes a frame into one and posts it on the tx ring; the completion
   ring gives them back once the kernel is done with them.
3. Rings are single-producer/single-consumer arrays of 2^n slots with free-running u32
   indices shared with the kernel: we read the other side's index with an acquire load and
   publish ours with a release store (the ``fp_*`` helpers below; libxdp's xsk.h does the
   same with smp_load_acquire/smp_store_release).
4. ``rx_burst`` takes descriptors from every socket's rx ring (no syscall: the ring is in our
   memory) and hands the engine pointers at the IPv4 header inside the UMEM (Ethernet
   stripped, length from the IPv4 total length so link padding is cut).  Frames that are not
   plain IPv4 GRE go back to the fill ring at once (``rx_not_ours``).  ``rx_release`` gives
   the engine's frames back to the fill ring and, when the kernel asks for it
   (XDP_RING_NEED_WAKEUP on the fill ring), wakes it with a recvfrom.
5. ``tx_add`` only queues (frame, length, destination).  ``tx_flush`` takes the nexthop table
   lock once, and for each frame: destination without a nexthop entry, or IPv4 datagram
   larger than the entry's MTU -> the slow path (the kernel's raw GRE socket: it resolves,
   routes and fragments; ``tx_slowpath``); otherwise Ethernet (next-hop MAC, our MAC, IPv4)
   + IPv4 (DF, TTL 64, ID counting up, checksum from the entry's precomputed sum) + the GRE
   frame are copied into a free transmit buffer and posted.  Then ``sendto(MSG_DONTWAIT)``
   kicks the kernel (in copy mode it transmits at most 32 descriptors per call, so the kick
   repeats, bounded, while it says EAGAIN), and the completion ring is reaped.
6. The slow path's socket is polled too (its fd follows the AF_XDP fds in ``fds``): GRE that
   the XDP program passed (fragments, reassembled by the kernel) or that came in on another
   interface arrives there (``rx_slowpath``).
7. XDP_STATISTICS (kernel drops: rx ring full, fill ring empty, invalid descriptors) are
   folded into the P_* counters by ``counters()``/``fold_stats``.

The nexthop table is filled from Python (``set_nexthop``/``clear_nexthop``, from any thread,
e.g. by a neighbour-table tracker) under a pthread mutex that ``tx_flush`` holds only while it
builds one batch.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
cimport fastpptp._sys as sys_
from fastpptp._sys cimport pthread_mutex_lock, pthread_mutex_unlock
from fastpptp._l2 cimport (nh_entry, nh_init, nh_find, nh_set, l2l3_write, ETH_HLEN, IP_HLEN)
from fastpptp._greport cimport (GrePort, L2Port, RawPort, PORT_MAX_FDS, P_RX_PACKETS, P_RX_BATCHES,
                                P_TX_PACKETS, P_TX_BATCHES, P_RX_RING_FULL, P_TX_RING_FULL,
                                P_KERNEL_DROPS, P_TX_ERRORS, P_RX_SLOWPATH, P_TX_SLOWPATH,
                                P_RX_NOT_OURS, P_ICMP_ERRORS, P_TX_FULL, N_PORT_COUNTERS)

import ipaddress
import os

from fastpptp._greport import ip_be as _ip_be, mac_bytes as _mac_bytes

cdef extern from * nogil:
    """
    #include <stdint.h>
    #include <sys/mman.h>
    #include <sys/socket.h>
    #include <linux/if_xdp.h>
    #ifndef AF_XDP
    #define AF_XDP 44
    #endif
    #ifndef SOL_XDP
    #define SOL_XDP 283
    #endif
    #ifndef XDP_USE_NEED_WAKEUP
    #define XDP_USE_NEED_WAKEUP (1 << 3)
    #endif
    #ifndef XDP_RING_NEED_WAKEUP
    #define XDP_RING_NEED_WAKEUP (1 << 0)
    #endif
    /* the ring indices are shared with the kernel: acquire the other side's, release ours */
    static inline uint32_t fp_load_acquire(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void fp_store_release(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline uint32_t fp_load_relaxed(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    """
    uint32_t fp_load_acquire(const uint32_t* p)
    void fp_store_release(uint32_t* p, uint32_t v)
    uint32_t fp_load_relaxed(const uint32_t* p)

    enum:
        AF_XDP
        SOL_XDP
        XDP_MMAP_OFFSETS
        XDP_RX_RING
        XDP_TX_RING
        XDP_UMEM_REG
        XDP_UMEM_FILL_RING
        XDP_UMEM_COMPLETION_RING
        XDP_STATISTICS
        XDP_COPY
        XDP_USE_NEED_WAKEUP
        XDP_RING_NEED_WAKEUP
        XDP_PGOFF_RX_RING
        XDP_PGOFF_TX_RING
        SOCK_RAW
        SOCK_CLOEXEC
        PROT_READ
        PROT_WRITE
        MAP_SHARED
        MAP_PRIVATE
        MAP_ANONYMOUS
        MAP_POPULATE
        EINVAL
        EBUSY
        ENOMEM
        EPERM
        ENETDOWN
        ENXIO
    unsigned long long XDP_UMEM_PGOFF_FILL_RING
    unsigned long long XDP_UMEM_PGOFF_COMPLETION_RING
    void* MAP_FAILED

    struct xdp_umem_reg:
        uint64_t addr
        uint64_t len
        uint32_t chunk_size
        uint32_t headroom
        uint32_t flags
    struct xdp_ring_offset:
        uint64_t producer
        uint64_t consumer
        uint64_t desc
        uint64_t flags
    struct xdp_mmap_offsets:
        xdp_ring_offset rx
        xdp_ring_offset tx
        xdp_ring_offset fr
        xdp_ring_offset cr
    struct sockaddr_xdp:
        uint16_t sxdp_family
        uint16_t sxdp_flags
        uint32_t sxdp_ifindex
        uint32_t sxdp_queue_id
        uint32_t sxdp_shared_umem_fd
    struct xdp_desc:
        uint64_t addr
        uint32_t len
        uint32_t options
    struct xdp_statistics:
        uint64_t rx_dropped
        uint64_t rx_invalid_descs
        uint64_t tx_invalid_descs
        uint64_t rx_ring_full
        uint64_t rx_fill_ring_empty_descs
        uint64_t tx_ring_empty_descs

    int socket(int domain, int type, int protocol)
    int bind(int fd, const sys_.sockaddr* addr, sys_.socklen_t len)
    int setsockopt(int fd, int level, int name, const void* val, sys_.socklen_t len)
    int getsockopt(int fd, int level, int name, void* val, sys_.socklen_t* len)
    sys_.ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sys_.sockaddr* addr, sys_.socklen_t alen)
    sys_.ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sys_.sockaddr* addr, sys_.socklen_t* alen)
    void* mmap(void* addr, size_t len, int prot, int flags, int fd, long long off)
    int munmap(void* addr, size_t len)


cdef enum:
    GRE_MIN = 4                 # flags/version + protocol type
    XDP_PACKET_HEADROOM = 256   # the kernel's headroom in front of a received frame
    KICK_TRIES = 256            # sendto kicks per flush, at most (32 descriptors each in copy mode)
    NH_CAP = 65536              # nexthop table slots (at most half live: 32768 peers)
    MAX_QUEUES = 15             # AF_XDP sockets per port: PORT_MAX_FDS minus the slow path's fd


cdef struct ring_t:
    uint32_t* producer
    uint32_t* consumer
    uint32_t* flags
    void* descs                 # uint64_t[size] (fill, completion) or xdp_desc[size] (rx, tx)
    uint32_t mask
    uint32_t size
    uint32_t cached_prod        # ours: producer rings
    uint32_t cached_cons        # ours: consumer rings
    void* map
    size_t map_len


cdef struct xsk_t:
    int fd
    uint32_t queue_id
    uint8_t* umem
    size_t umem_len
    ring_t fill
    ring_t comp
    ring_t rx
    ring_t tx
    uint64_t* tx_free           # stack of free transmit buffers (UMEM offsets)
    uint32_t tx_nfree
    uint64_t* held              # receive buffers lent to the engine until rx_release
    uint32_t nheld
    uint64_t st_last[6]         # XDP_STATISTICS already folded in


cdef int ring_map(int fd, ring_t* r, xdp_ring_offset* off, uint32_t size, size_t desc_size,
                  long long pgoff) except -1:
    r.map_len = <size_t>(off.desc + <uint64_t>size * desc_size)
    r.map = mmap(NULL, r.map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff)
    if r.map == MAP_FAILED:
        r.map = NULL
        raise OSError(sys_.errno, f"mmap of an AF_XDP ring: {os.strerror(sys_.errno)}")
    r.producer = <uint32_t*>(<uint8_t*>r.map + off.producer)
    r.consumer = <uint32_t*>(<uint8_t*>r.map + off.consumer)
    r.flags = <uint32_t*>(<uint8_t*>r.map + off.flags)
    r.descs = <void*>(<uint8_t*>r.map + off.desc)
    r.size = size
    r.mask = size - 1
    r.cached_prod = fp_load_relaxed(r.producer)
    r.cached_cons = fp_load_relaxed(r.consumer)
    return 0


cdef class XdpPort(L2Port):
    """GRE over AF_XDP on one interface (module doc).  Opens its sockets in the calling
    thread's network namespace; ``slow`` (a RawPort over the kernel's raw GRE socket) is the
    slow path; ``owned`` objects (the XDP link, program, maps) are closed by ``close()``,
    the link first, so the program stops redirecting before the sockets go."""

    cdef readonly int ifindex
    cdef readonly int nq
    cdef readonly int frame_size
    cdef readonly int frames
    cdef readonly int mtu
    cdef readonly bint need_wakeup
    cdef readonly bytes mac
    cdef readonly str src
    cdef readonly int batch
    cdef uint32_t src_be
    cdef RawPort slow
    cdef xsk_t* xs
    cdef int slow_rx                # the slow path returned frames in the last rx_burst
    cdef int slow_tx                # frames queued on the slow path since the last flush
    cdef uint16_t ip_id
    cdef list owned
    cdef readonly bint closed
    cdef public str attach_note     # how the XDP program is attached (set by the set-up)
    cdef public object addr_map     # the XDP program's address map (bpf.BpfMap), set by the set-up
    cdef uint64_t xst[N_PORT_COUNTERS]  # XDP_STATISTICS folded in (written by fold_stats only)

    def __cinit__(self, *args, **kw):
        self.xs = NULL
        self.nq = 0
        self.owned = []
        self.closed = False
        self.attach_note = ""

    def __init__(self, int ifindex, RawPort slow, *, mac, src, int mtu, int queues=1,
                 int frames=4096, int frame_size=0, int batch=64, bint need_wakeup=True):
        """``queues``: receive queues to open a socket on (0..queues-1; the set-up reads the
        count from the interface); ``frames``: UMEM chunks per socket (half receive, half
        transmit), a power of two; ``frame_size``: 2048 or 4096 (0: the smallest that holds
        an ``mtu`` frame behind the kernel's 256-byte XDP headroom)."""
        cdef int q
        if queues < 1 or queues > MAX_QUEUES:
            raise ValueError(f"queues {queues} out of 1..{MAX_QUEUES}")
        if frames < 64 or frames > 65536 or frames & (frames - 1):
            raise ValueError(f"frames {frames}: a power of two in 64..65536")
        if mtu < 68 or mtu > 65535:
            raise ValueError(f"mtu {mtu} out of 68..65535")
        if frame_size == 0:
            frame_size = 2048 if mtu + ETH_HLEN + XDP_PACKET_HEADROOM <= 2048 else 4096
        if frame_size not in (2048, 4096):
            raise ValueError(f"frame_size {frame_size}: 2048 or 4096")
        if mtu + ETH_HLEN + XDP_PACKET_HEADROOM > frame_size:
            raise ValueError(f"mtu {mtu} does not fit a {frame_size}-byte AF_XDP frame")
        if batch < 1 or batch > 1024:
            raise ValueError(f"batch {batch} out of 1..1024")
        self.kind = "xdp"
        self.ifindex = ifindex
        self.slow = slow
        self.mac = _mac_bytes(mac)
        memcpy(self.own_mac, <char*>self.mac, 6)
        self.src = str(ipaddress.IPv4Address(src))
        self.src_be = _ip_be(src)
        self.mtu = mtu
        self.frames = frames
        self.frame_size = frame_size
        self.batch = batch
        self.need_wakeup = need_wakeup
        self.tx_cap = min(batch * 2, frames // 4)
        self.queue_alloc()
        self.xs = <xsk_t*>calloc(queues, sizeof(xsk_t))
        if self.xs == NULL:
            raise MemoryError()
        if nh_init(&self.nht, NH_CAP) != 0:
            raise MemoryError("nexthop table: calloc / pthread_mutex_init failed")
        for q in range(queues):
            self.xs[q].fd = -1
        try:
            for q in range(queues):
                self.nq = q + 1
                try:
                    self._open_queue(q)
                except OSError as exc:
                    if q == 0 or exc.errno != EINVAL:
                        raise
                    # fewer queues in use than allocated (real_num_rx_queues): stop here
                    self._close_queue(&self.xs[q])
                    self.nq = q
                    break
        except BaseException:
            self._release()
            raise
        for q in range(self.nq):
            self.fds[q] = self.xs[q].fd
        self.nfds = self.nq
        for q in range(slow.nfds):
            if self.nfds < PORT_MAX_FDS:
                self.fds[self.nfds] = slow.fds[q]
                self.nfds += 1

    cdef int _open_queue(self, int q) except -1:
        cdef xsk_t* x = &self.xs[q]
        cdef xdp_umem_reg reg
        cdef xdp_mmap_offsets off
        cdef sockaddr_xdp sa
        cdef sys_.socklen_t ol = sizeof(off)
        cdef uint32_t nrx = self.frames // 2, ntx = self.frames // 2, i
        cdef int e
        x.queue_id = q
        x.fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0)
        if x.fd < 0:
            raise OSError(sys_.errno, f"AF_XDP socket: {os.strerror(sys_.errno)}")
        x.umem_len = <size_t>self.frames * self.frame_size
        x.umem = <uint8_t*>mmap(NULL, x.umem_len, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
        if <void*>x.umem == MAP_FAILED:
            x.umem = NULL
            raise OSError(sys_.errno, f"mmap of the UMEM: {os.strerror(sys_.errno)}")
        memset(&reg, 0, sizeof(reg))     # newer kernels read tx_metadata_len from the padding
        reg.addr = <uint64_t>x.umem
        reg.len = x.umem_len
        reg.chunk_size = self.frame_size
        reg.headroom = 0
        if setsockopt(x.fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)) != 0:
            e = sys_.errno
            raise OSError(e, f"XDP_UMEM_REG of {x.umem_len >> 20} MiB: {os.strerror(e)}"
                          + (" (pinned memory: RLIMIT_MEMLOCK too small without CAP_IPC_LOCK)"
                             if e == sys_.ENOBUFS or e == ENOMEM or e == EPERM else ""))
        for opt, n in ((XDP_UMEM_FILL_RING, nrx), (XDP_UMEM_COMPLETION_RING, ntx),
                       (XDP_RX_RING, nrx), (XDP_TX_RING, ntx)):
            i = n
            if setsockopt(x.fd, SOL_XDP, opt, &i, sizeof(i)) != 0:
                raise OSError(sys_.errno, f"AF_XDP ring size option {opt}: {os.strerror(sys_.errno)}")
        if getsockopt(x.fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol) != 0:
            raise OSError(sys_.errno, f"XDP_MMAP_OFFSETS: {os.strerror(sys_.errno)}")
        ring_map(x.fd, &x.fill, &off.fr, nrx, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING)
        ring_map(x.fd, &x.comp, &off.cr, ntx, sizeof(uint64_t), XDP_UMEM_PGOFF_COMPLETION_RING)
        ring_map(x.fd, &x.rx, &off.rx, nrx, sizeof(xdp_desc), XDP_PGOFF_RX_RING)
        ring_map(x.fd, &x.tx, &off.tx, ntx, sizeof(xdp_desc), XDP_PGOFF_TX_RING)
        x.held = <uint64_t*>calloc(nrx, sizeof(uint64_t))
        x.tx_free = <uint64_t*>calloc(ntx, sizeof(uint64_t))
        if x.held == NULL or x.tx_free == NULL:
            raise MemoryError()
        # receive buffers: chunks 0..nrx-1 into the fill ring; transmit: the rest, free
        for i in range(nrx):
            (<uint64_t*>x.fill.descs)[(x.fill.cached_prod + i) & x.fill.mask] = <uint64_t>i * self.frame_size
        x.fill.cached_prod += nrx
        fp_store_release(x.fill.producer, x.fill.cached_prod)
        for i in range(ntx):
            x.tx_free[i] = <uint64_t>(nrx + i) * self.frame_size
        x.tx_nfree = ntx
        memset(&sa, 0, sizeof(sa))
        sa.sxdp_family = AF_XDP
        sa.sxdp_ifindex = self.ifindex
        sa.sxdp_queue_id = q
        sa.sxdp_flags = XDP_COPY | (XDP_USE_NEED_WAKEUP if self.need_wakeup else 0)
        if bind(x.fd, <sys_.sockaddr*>&sa, sizeof(sa)) != 0:
            e = sys_.errno
            if e == EINVAL and self.need_wakeup and q == 0:
                # kernels before 5.4 know no XDP_USE_NEED_WAKEUP: then always kick
                self.need_wakeup = False
                sa.sxdp_flags = XDP_COPY
                if bind(x.fd, <sys_.sockaddr*>&sa, sizeof(sa)) == 0:
                    return 0
                e = sys_.errno
            raise OSError(e, f"bind AF_XDP to ifindex {self.ifindex} queue {q}: {os.strerror(e)}")
        return 0

    cdef void _close_queue(self, xsk_t* x) noexcept:
        if x.fill.map != NULL:
            munmap(x.fill.map, x.fill.map_len)
        if x.comp.map != NULL:
            munmap(x.comp.map, x.comp.map_len)
        if x.rx.map != NULL:
            munmap(x.rx.map, x.rx.map_len)
        if x.tx.map != NULL:
            munmap(x.tx.map, x.tx.map_len)
        if x.fd >= 0:
            sys_.close(x.fd)
        if x.umem != NULL:
            munmap(x.umem, x.umem_len)
        free(x.held)
        free(x.tx_free)
        memset(x, 0, sizeof(xsk_t))
        x.fd = -1

    cdef void _release(self) noexcept:
        cdef int q
        if self.xs != NULL:
            for q in range(self.nq):
                self._close_queue(&self.xs[q])
            free(self.xs)
            self.xs = NULL
        self.nq = 0
        self.nfds = 0

    def __dealloc__(self):
        self._release()

    # ------------------------------------------------------------------ Python side

    def xsk_fds(self):
        """[(queue id, AF_XDP socket fd)]: what the set-up puts in the XSKMAP."""
        return [(self.xs[q].queue_id, self.xs[q].fd) for q in range(self.nq)]

    def own(self, obj):
        """Keep ``obj`` (with a ``close()``) until this port closes; closed in reverse order."""
        self.owned.append(obj)

    def close(self):
        """Detach (the owned link first), then close the sockets and free the UMEM.  The
        engine must no longer call the port."""
        if self.closed:
            return
        self.closed = True
        for obj in reversed(self.owned):
            try:
                obj.close()
            except Exception:
                pass
        self.owned = []
        self.fold_stats()
        self._release()

    def describe(self):
        return (f"AF_XDP copy mode on ifindex {self.ifindex}{self.attach_note}, {self.nq} queue(s), "
                f"{self.frames} x {self.frame_size} B UMEM each, need_wakeup "
                f"{'on' if self.need_wakeup else 'off'}, mtu {self.mtu}; slow path: "
                f"{self.slow.describe()}")

    def counters(self):
        """This port's counters (PORT_COUNTER_NAMES), the kernel's XDP_STATISTICS and the
        slow path's own counts folded in: ``rx_packets``/``tx_packets`` are fast + slow
        path, ``rx_slowpath``/``tx_slowpath`` say how many of them went the slow way."""
        cdef int i
        self.fold_stats()
        out = GrePort.counters(self)
        for i, name in enumerate(out):
            out[name] += self.xst[i]
        slow = self.slow.counters()
        for name in ("tx_packets", "tx_ring_full", "kernel_drops", "tx_errors", "icmp_errors"):
            out[name] += slow[name]
        return out

    def xdp_statistics(self):
        """XDP_STATISTICS summed over the sockets (kernel-side counts)."""
        cdef xdp_statistics st
        cdef sys_.socklen_t sl
        cdef int q
        tot = dict(rx_dropped=0, rx_invalid_descs=0, tx_invalid_descs=0, rx_ring_full=0,
                   rx_fill_ring_empty_descs=0, tx_ring_empty_descs=0)
        for q in range(self.nq):
            sl = sizeof(st)
            memset(&st, 0, sizeof(st))
            if getsockopt(self.xs[q].fd, SOL_XDP, XDP_STATISTICS, &st, &sl) == 0:
                tot["rx_dropped"] += st.rx_dropped
                tot["rx_invalid_descs"] += st.rx_invalid_descs
                tot["tx_invalid_descs"] += st.tx_invalid_descs
                tot["rx_ring_full"] += st.rx_ring_full
                tot["rx_fill_ring_empty_descs"] += st.rx_fill_ring_empty_descs
                tot["tx_ring_empty_descs"] += st.tx_ring_empty_descs
        return tot

    cdef void fold_stats(self) noexcept nogil:
        """XDP_STATISTICS deltas into the P_* counters (net/xdp/xsk.c xsk_getsockopt):
        ``rx_dropped`` counts frames lost for want of a fill-ring buffer (we were behind)
        and frames larger than a chunk; ``rx_fill_ring_empty_descs`` counts the first
        kind's events, so the smaller of the two goes to rx_ring_full with ``rx_ring_full``
        (rx ring full), the rest of ``rx_dropped`` to kernel_drops; invalid descriptors
        (ours, never expected) to tx_errors.  Kept apart from ``pc`` (which only the I/O
        thread writes); call from one thread at a time (``counters()``, ``close()``)."""
        cdef xdp_statistics st
        cdef sys_.socklen_t sl
        cdef int q, j
        cdef xsk_t* x
        cdef uint64_t cur[6]
        cdef uint64_t dl[6]
        cdef uint64_t behind
        if self.xs == NULL:
            return
        for q in range(self.nq):
            x = &self.xs[q]
            sl = sizeof(st)
            memset(&st, 0, sizeof(st))
            if getsockopt(x.fd, SOL_XDP, XDP_STATISTICS, &st, &sl) != 0:
                continue
            cur[0] = st.rx_dropped
            cur[1] = st.rx_invalid_descs
            cur[2] = st.tx_invalid_descs
            cur[3] = st.rx_ring_full
            cur[4] = st.rx_fill_ring_empty_descs
            cur[5] = st.tx_ring_empty_descs
            for j in range(6):
                dl[j] = cur[j] - x.st_last[j]
            behind = dl[0] if dl[0] < dl[4] else dl[4]
            self.xst[P_RX_RING_FULL] += dl[3] + behind
            self.xst[P_KERNEL_DROPS] += dl[0] - behind
            self.xst[P_TX_ERRORS] += dl[1] + dl[2]
            memcpy(x.st_last, cur, sizeof(cur))

    # ------------------------------------------------------------------ nexthop table

    def set_nexthop(self, peer, mac, src=None, int mtu=0):
        """Send GRE to IPv4 ``peer`` the fast way: Ethernet to ``mac`` (the peer's, or its
        gateway's), IPv4 from ``src`` (default: the port's), datagrams up to ``mtu`` bytes
        (0: the link MTU; larger ones take the slow path).  ``mac`` None clears the entry.
        Returns False when the table is full (the peer then keeps the slow path)."""
        if mac is None:
            self.clear_nexthop(peer)
            return True
        cdef bytes mb = _mac_bytes(mac)
        cdef uint32_t dst = _ip_be(peer)
        cdef uint32_t s = self.src_be if src is None else _ip_be(src)
        cdef const uint8_t* mp = <const uint8_t*><char*>mb
        cdef bint ok
        if mtu == 0 or mtu > self.mtu:
            mtu = self.mtu
        if mtu < 68:
            raise ValueError(f"mtu {mtu} below 68")
        with nogil:
            ok = nh_set(&self.nht, dst, s, <uint16_t>mtu, mp, self.own_mac)
        return ok

    # ------------------------------------------------------------------ receive

    cdef int rx_burst(self, const uint32_t* ev, uint8_t** pkts, uint32_t* lens, int max) noexcept nogil:
        cdef int got = 0, q, n
        cdef uint32_t prod, avail, i, flen, tot, ihl
        cdef uint64_t addr, base
        cdef uint8_t* f
        cdef xsk_t* x
        cdef xdp_desc* d
        cdef int not_ours = 0, bad
        if self.xs == NULL:
            return 0
        if max > self.batch:
            max = self.batch
        for q in range(self.nq):
            if got >= max:
                break
            x = &self.xs[q]
            prod = fp_load_acquire(x.rx.producer)
            avail = prod - x.rx.cached_cons
            if avail == 0:
                continue
            if avail > <uint32_t>(max - got):
                avail = max - got
            bad = 0
            for i in range(avail):
                d = &(<xdp_desc*>x.rx.descs)[(x.rx.cached_cons + i) & x.rx.mask]
                addr = d.addr
                flen = d.len
                base = addr - addr % <uint64_t>self.frame_size
                if addr + flen > x.umem_len:          # never from a sane kernel; bound anyway
                    self.recycle(x, base)
                    bad += 1
                    continue
                f = x.umem + addr
                # plain IPv4 GRE, whole: what the XDP program redirects (it checked the rest)
                if (flen < ETH_HLEN + IP_HLEN + GRE_MIN or f[12] != 0x08 or f[13] != 0x00
                        or (f[14] >> 4) != 4 or f[14 + 9] != 47
                        or (f[14 + 6] & 0x3F) != 0 or f[14 + 7] != 0):
                    self.recycle(x, base)
                    bad += 1
                    continue
                ihl = (f[14] & 0x0F) * 4
                tot = (<uint32_t>f[14 + 2] << 8) | f[14 + 3]
                if ihl < IP_HLEN or tot < ihl + GRE_MIN or tot > flen - ETH_HLEN:
                    self.recycle(x, base)
                    bad += 1
                    continue
                x.held[x.nheld] = base
                x.nheld += 1
                pkts[got] = f + ETH_HLEN
                lens[got] = tot                       # Ethernet padding cut off
                got += 1
            x.rx.cached_cons += avail
            fp_store_release(x.rx.consumer, x.rx.cached_cons)
            if bad:
                self.fill_submit(x)
                not_ours += bad
        if not_ours:
            self.pc[P_RX_NOT_OURS] += not_ours
        self.slow_rx = 0
        if got < max and self.slow.nfds > 0 and ev[self.nq] != 0:
            n = self.slow.rx_burst(ev + self.nq, pkts + got, lens + got, max - got)
            if n > 0:
                self.slow_rx = 1
                self.pc[P_RX_SLOWPATH] += n
                got += n
        if got > 0:
            self.pc[P_RX_PACKETS] += got
            self.pc[P_RX_BATCHES] += 1
        return got

    cdef inline void recycle(self, xsk_t* x, uint64_t base) noexcept nogil:
        """A receive buffer straight back to the fill ring (published by fill_submit)."""
        (<uint64_t*>x.fill.descs)[x.fill.cached_prod & x.fill.mask] = base
        x.fill.cached_prod += 1

    cdef inline void fill_submit(self, xsk_t* x) noexcept nogil:
        fp_store_release(x.fill.producer, x.fill.cached_prod)
        if self.need_wakeup and (fp_load_relaxed(x.fill.flags) & XDP_RING_NEED_WAKEUP):
            recvfrom(x.fd, NULL, 0, sys_.MSG_DONTWAIT, NULL, NULL)

    cdef void rx_release(self) noexcept nogil:
        cdef int q
        cdef uint32_t i
        cdef xsk_t* x
        if self.xs != NULL:
            for q in range(self.nq):
                x = &self.xs[q]
                if x.nheld == 0:
                    continue
                # the fill ring has room: every receive buffer is in it, on the rx ring,
                # or held here
                for i in range(x.nheld):
                    self.recycle(x, x.held[i])
                x.nheld = 0
                self.fill_submit(x)
        if self.slow_rx:
            self.slow_rx = 0
            self.slow.rx_release()

    # ------------------------------------------------------------------ send

    cdef uint32_t reap(self, xsk_t* x) noexcept nogil:
        """Completed transmit buffers back onto the free stack."""
        cdef uint32_t prod = fp_load_acquire(x.comp.producer)
        cdef uint32_t n = prod - x.comp.cached_cons, i
        cdef uint64_t* c = <uint64_t*>x.comp.descs
        for i in range(n):
            if x.tx_nfree < x.tx.size:
                x.tx_free[x.tx_nfree] = c[(x.comp.cached_cons + i) & x.comp.mask]
                x.tx_nfree += 1
        x.comp.cached_cons = prod
        fp_store_release(x.comp.consumer, prod)
        return n

    cdef int tx_room(self) noexcept nogil:
        """Free transmit buffers and ring slots (after reaping completions), at most what the
        queue takes: frames still on the ring from an earlier flush are kicked once first
        (copy mode transmits only in sendmsg)."""
        cdef xsk_t* x
        cdef uint32_t cons, free_slots, room
        cdef int q = L2Port.tx_room(self)
        if q <= 0 or self.xs == NULL:
            return q
        x = &self.xs[0]
        self.reap(x)
        cons = fp_load_acquire(x.tx.consumer)
        if cons != x.tx.cached_prod:
            sendto(x.fd, NULL, 0, sys_.MSG_DONTWAIT, NULL, 0)
            self.reap(x)
            cons = fp_load_acquire(x.tx.consumer)
        free_slots = x.tx.size - (x.tx.cached_prod - cons)
        room = x.tx_nfree if x.tx_nfree < free_slots else free_slots
        if room == 0:
            self.pc[P_TX_FULL] += 1
            return 0
        return <int>room if room < <uint32_t>q else q

    cdef void tx_flush(self) noexcept nogil:
        cdef xsk_t* x
        cdef nh_entry* e
        cdef int k, tries, r, err
        cdef uint32_t n, tot, cons0, cons, posted = 0, free_slots, drops = 0
        cdef uint64_t addr
        cdef uint8_t* f
        cdef xdp_desc* d
        if self.qn == 0 and self.slow_tx == 0:
            return
        if self.xs == NULL:
            self.pc[P_TX_ERRORS] += self.qn
            self.qn = 0
            return
        x = &self.xs[0]
        self.reap(x)
        cons0 = fp_load_acquire(x.tx.consumer)
        pthread_mutex_lock(&self.nht.lock)
        for k in range(self.qn):
            n = self.q_len[k]
            tot = n + IP_HLEN
            e = nh_find(&self.nht, self.q_dst[k], False)
            if e == NULL or tot > e.mtu:
                self.slow.tx_add(self.q_frame[k], n, self.q_dst[k])
                self.slow_tx += 1
                self.pc[P_TX_SLOWPATH] += 1
                continue
            free_slots = x.tx.size - (x.tx.cached_prod - cons0)
            if x.tx_nfree == 0 or free_slots == 0:
                self.reap(x)
                cons0 = fp_load_acquire(x.tx.consumer)
                free_slots = x.tx.size - (x.tx.cached_prod - cons0)
                if x.tx_nfree == 0 or free_slots == 0:
                    self.pc[P_TX_RING_FULL] += 1
                    continue
            x.tx_nfree -= 1
            addr = x.tx_free[x.tx_nfree]
            f = x.umem + addr
            self.ip_id += 1
            l2l3_write(f, e, tot, self.ip_id)
            memcpy(&f[ETH_HLEN + IP_HLEN], self.q_frame[k], n)
            d = &(<xdp_desc*>x.tx.descs)[x.tx.cached_prod & x.tx.mask]
            d.addr = addr
            d.len = ETH_HLEN + tot
            d.options = 0
            x.tx.cached_prod += 1
            posted += 1
        pthread_mutex_unlock(&self.nht.lock)
        self.qn = 0
        if posted:
            fp_store_release(x.tx.producer, x.tx.cached_prod)
            # copy mode transmits in sendmsg, at most 32 descriptors a call (EAGAIN: more)
            for tries in range(KICK_TRIES):
                r = sendto(x.fd, NULL, 0, sys_.MSG_DONTWAIT, NULL, 0)
                err = sys_.errno if r < 0 else 0
                if err == EBUSY:
                    drops += 1                        # the driver dropped one descriptor
                elif err != 0 and err != sys_.EAGAIN and err != sys_.ENOBUFS and err != sys_.EINTR:
                    self.pc[P_TX_ERRORS] += 1         # ENETDOWN, ENXIO, ...
                    break
                self.reap(x)
                if fp_load_acquire(x.tx.consumer) == x.tx.cached_prod:
                    break
            cons = fp_load_acquire(x.tx.consumer)
            self.pc[P_KERNEL_DROPS] += drops
            if cons - cons0 > drops:
                self.pc[P_TX_PACKETS] += cons - cons0 - drops
                self.pc[P_TX_BATCHES] += 1
            # what the kernel has not taken yet stays on the ring and goes with the next kick
        if self.slow_tx:
            self.slow_tx = 0
            self.slow.tx_flush()
