# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""GRE ports: the base class of the batch contract (fastpptp/_greport.pxd) and the raw
IPPROTO_GRE socket port, which is also every other port's slow path."""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
cimport fastpptp._sys as sys_
from fastpptp._sys cimport mmsghdr, iovec, sockaddr_in
from fastpptp._l2 cimport nh_clear, nh_dump, nh_free

import ipaddress
import numpy as np
import socket

cdef extern from * nogil:
    """
    #include <sys/socket.h>
    #include <netinet/in.h>
    #include <linux/errqueue.h>
    #ifndef IP_RECVERR
    #define IP_RECVERR 11
    #endif
    """
    enum:
        MSG_ERRQUEUE
        SOL_IP
        IP_RECVERR
    sys_.ssize_t recvmsg(int fd, sys_.msghdr* msg, int flags)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLOUT
    int poll(pollfd* fds, unsigned long nfds, int timeout)

cdef enum:
    RAW_ROW = 65536 + 64    # one IPv4 datagram at most 65535 bytes
    RAW_OFF = 64            # rows start this far in (alignment, room in front)
    ERRQ_MAX = 64           # error-queue messages read per wake-up, at most

# docs/DESIGN.md "GRE port": the order of the P_* indices in _greport.pxd
PORT_COUNTER_NAMES = (
    "rx_packets", "rx_batches", "tx_packets", "tx_batches", "rx_ring_full", "tx_ring_full",
    "kernel_drops", "tx_errors", "rx_slowpath", "tx_slowpath", "icmp_errors", "rx_not_ours",
    "tx_full", "tun_paused",
)


cdef bint fd_writable(int fd) noexcept nogil:
    cdef pollfd pf
    pf.fd = fd
    pf.events = POLLOUT
    pf.revents = 0
    return poll(&pf, 1, 0) == 1 and (pf.revents & POLLOUT) != 0


cdef class GrePort:
    """Base of every GRE port: nothing to receive, nothing sent.  Subclasses implement the
    four nogil methods; the Python methods here drive them for tests, diagnostics and the
    pure-Python reference engine (which copies, and is allowed to)."""

    def __cinit__(self, *args, **kw):
        self.kind = "none"
        self.tx_cap = 0
        self.nfds = 0

    cdef int rx_burst(self, const uint32_t* ev, uint8_t** pkts, uint32_t* lens, int max) noexcept nogil:
        return 0

    cdef void rx_release(self) noexcept nogil:
        pass

    cdef void tx_add(self, uint8_t* frame, uint32_t n, uint32_t dst_be) noexcept nogil:
        pass

    cdef void tx_flush(self) noexcept nogil:
        pass

    cdef int tx_room(self) noexcept nogil:
        return self.tx_cap if self.tx_cap > 0 else 1 << 20

    def room(self):
        """tx_room(): frames the port can take now without dropping any (tests, diagnostics)."""
        cdef int r
        with nogil:
            r = self.tx_room()
        return r

    def count_tun_paused(self):
        """The reference engine's I/O loop stopped reading its TUNs for this full port
        (the compiled loop counts ``tun_paused`` itself)."""
        self.pc[P_TUN_PAUSED] += 1

    def poll_fds(self):
        """The fds the engine polls for this port (EPOLLIN)."""
        return [self.fds[i] for i in range(self.nfds)]

    def counters(self):
        """{name: value} of this port's counters (PORT_COUNTER_NAMES)."""
        return {PORT_COUNTER_NAMES[i]: self.pc[i] for i in range(N_PORT_COUNTERS)}

    def describe(self):
        """One line for the log: which port, on what."""
        return self.kind

    def recv_batch(self, int max=64):
        """Up to ``max`` received IPv4 datagrams as bytes (copies; not the fast path)."""
        cdef uint32_t ev[PORT_MAX_FDS]
        cdef uint8_t* ptrs[256]
        cdef uint32_t lens[256]
        cdef int i, n
        if max > 256:
            max = 256
        for i in range(PORT_MAX_FDS):
            ev[i] = sys_.EPOLLIN | sys_.EPOLLERR    # drain the error queue too
        with nogil:
            n = self.rx_burst(ev, ptrs, lens, max)
        out = [bytes((<char*>ptrs[i])[:lens[i]]) for i in range(n)]
        if n > 0:
            self.rx_release()
        return out

    def send_batch(self, frames):
        """Send ``[(gre_frame, peer_ipv4_str), ...]`` through tx_add/tx_flush (copies)."""
        cdef list items = list(frames)
        cdef int k = 0, total = 0
        cdef size_t off = 0
        cdef uint8_t* buf
        cdef bytes b
        if not items:
            return
        for fr, _peer in items:
            total += PORT_HEADROOM + len(fr) + 16
        buf = <uint8_t*>calloc(total, 1)
        if buf == NULL:
            raise MemoryError()
        try:
            for fr, peer in items:
                if self.tx_cap and k == self.tx_cap:
                    self.tx_flush()
                    k = 0
                b = bytes(fr)
                memcpy(buf + off + PORT_HEADROOM, <char*>b, len(b))
                self.tx_add(buf + off + PORT_HEADROOM, len(b),
                            int.from_bytes(socket.inet_aton(peer), "little"))
                off += PORT_HEADROOM + len(b) + 16
                k += 1
            self.tx_flush()
        finally:
            free(buf)

    def close(self):
        pass


cdef class L2Port(GrePort):
    """The transmit queue and nexthop table of the ports that write their own L2/L3 headers
    (_greport.pxd); each subclass has its own ``set_nexthop`` (its MTU rules)."""

    def __cinit__(self, *args, **kw):
        self.nht.slot = NULL
        self.nht.lock_ok = False

    cdef int queue_alloc(self) except -1:
        free(self.q_frame)
        free(self.q_len)
        free(self.q_dst)
        self.qn = 0
        self.q_frame = <uint8_t**>calloc(self.tx_cap, sizeof(uint8_t*))
        self.q_len = <uint32_t*>calloc(self.tx_cap, sizeof(uint32_t))
        self.q_dst = <uint32_t*>calloc(self.tx_cap, sizeof(uint32_t))
        if self.q_frame == NULL or self.q_len == NULL or self.q_dst == NULL:
            raise MemoryError()
        return 0

    def __dealloc__(self):
        free(self.q_frame)
        free(self.q_len)
        free(self.q_dst)
        nh_free(&self.nht)

    def clear_nexthop(self, peer):
        """Send GRE to ``peer`` through the slow path again.  True if it had an entry."""
        cdef uint32_t dst = ip_be(peer)
        cdef bint had
        with nogil:
            had = nh_clear(&self.nht, dst)
        return had

    def nexthops(self):
        """{peer: (mac "aa:bb:..", src, mtu)} of the live entries (diagnostics, tests)."""
        return {ip_str(d): (m.hex(":"), ip_str(s), mtu) for d, s, m, mtu in nh_dump(&self.nht)}

    cdef int tx_room(self) noexcept nogil:
        if self.qn >= self.tx_cap:
            self.pc[P_TX_FULL] += 1
            return 0
        return self.tx_cap - self.qn

    cdef void tx_add(self, uint8_t* frame, uint32_t n, uint32_t dst_be) noexcept nogil:
        cdef int i = self.qn
        if i >= self.tx_cap:
            self.pc[P_TX_RING_FULL] += 1
            return
        self.q_frame[i] = frame
        self.q_len[i] = n
        self.q_dst[i] = dst_be
        self.qn = i + 1


cdef class RawPort(GrePort):
    """The kernel's raw IPPROTO_GRE socket: ``recv`` gives the IPv4 datagram with its
    header, ``sendmmsg`` takes GRE + payload and the kernel adds the IPv4 header (and
    fragments, resolves neighbours, routes).  IP_RECVERR is set so that a frame the qdisc or
    driver drops comes back as ENOBUFS (``kernel_drops``) instead of silently vanishing
    (Linux raw_sendmsg hides ENOBUFS otherwise), and ICMP errors about earlier packets are
    read from the error queue (``icmp_errors``) instead of spinning epoll with EPOLLERR.

    The socket stays the caller's: ``close()`` does not close it."""

    def __init__(self, fd, int batch=64, *, recverr=True):
        fd = fd.fileno() if hasattr(fd, "fileno") else int(fd)
        cdef int one = 1, dom = 0
        cdef sys_.socklen_t sl = sizeof(int)
        cdef int i
        cdef mmsghdr* m
        cdef iovec* v
        if batch < 1 or batch > 1024:
            raise ValueError(f"batch {batch} out of 1..1024")
        if sys_.getsockopt(fd, sys_.SOL_SOCKET, sys_.SO_DOMAIN, &dom, &sl) != 0:
            raise OSError(sys_.errno, "GRE fd is not a socket")
        self.kind = "raw"
        self.fd = fd
        self.inet = 1 if dom == sys_.AF_INET else 0
        self.batch = batch
        self.tx_cap = batch * 2
        self.nfds = 1
        self.fds[0] = fd
        if self.inet and recverr:
            s = socket.socket(fileno=fd)
            try:
                s.setsockopt(SOL_IP, IP_RECVERR, one)
            finally:
                s.detach()
        self.slab_np = np.zeros((batch, RAW_ROW), np.uint8)
        cdef uint8_t[:, ::1] sv = self.slab_np
        self.slab = &sv[0, 0]
        self.in_msgs = calloc(batch, sizeof(mmsghdr))
        self.in_iov = calloc(batch, sizeof(iovec))
        self.out_msgs = calloc(self.tx_cap, sizeof(mmsghdr))
        self.out_iov = calloc(self.tx_cap, sizeof(iovec))
        self.out_addr = calloc(self.tx_cap, sizeof(sockaddr_in))
        if (self.in_msgs == NULL or self.in_iov == NULL or self.out_msgs == NULL
                or self.out_iov == NULL or self.out_addr == NULL):
            raise MemoryError()
        m = <mmsghdr*>self.in_msgs
        v = <iovec*>self.in_iov
        for i in range(batch):
            v[i].iov_base = self.slab + <size_t>i * RAW_ROW + RAW_OFF
            v[i].iov_len = RAW_ROW - RAW_OFF
            m[i].msg_hdr.msg_iov = &v[i]
            m[i].msg_hdr.msg_iovlen = 1
        m = <mmsghdr*>self.out_msgs
        v = <iovec*>self.out_iov
        for i in range(self.tx_cap):
            m[i].msg_hdr.msg_iov = &v[i]
            m[i].msg_hdr.msg_iovlen = 1
            if self.inet:
                m[i].msg_hdr.msg_name = &(<sockaddr_in*>self.out_addr)[i]
                m[i].msg_hdr.msg_namelen = sizeof(sockaddr_in)
        self.out_n = 0

    def __dealloc__(self):
        free(self.in_msgs)
        free(self.in_iov)
        free(self.out_msgs)
        free(self.out_iov)
        free(self.out_addr)

    def describe(self):
        return f"raw IPPROTO_GRE socket fd {self.fd}" if self.inet else f"fake GRE socket fd {self.fd}"

    cdef void drain_errqueue(self) noexcept nogil:
        """Read (and count) what IP_RECVERR queued: ICMP errors about earlier packets."""
        cdef uint8_t buf[256]
        cdef uint8_t ctl[512]
        cdef iovec v
        cdef sys_.msghdr h
        cdef int k
        for k in range(ERRQ_MAX):
            v.iov_base = buf
            v.iov_len = sizeof(buf)
            h.msg_name = NULL
            h.msg_namelen = 0
            h.msg_iov = &v
            h.msg_iovlen = 1
            h.msg_control = ctl
            h.msg_controllen = sizeof(ctl)
            h.msg_flags = 0
            if recvmsg(self.fd, &h, MSG_ERRQUEUE | sys_.MSG_DONTWAIT) < 0:
                return
            self.pc[P_ICMP_ERRORS] += 1

    cdef int rx_burst(self, const uint32_t* ev, uint8_t** pkts, uint32_t* lens, int max) noexcept nogil:
        cdef mmsghdr* m = <mmsghdr*>self.in_msgs
        cdef iovec* v = <iovec*>self.in_iov
        cdef int i, got, e, tries = 0
        if ev[0] == 0:
            return 0
        if ev[0] & sys_.EPOLLERR:
            self.drain_errqueue()
        if max > self.batch:
            max = self.batch
        while True:
            for i in range(max):
                m[i].msg_hdr.msg_name = NULL
                m[i].msg_hdr.msg_namelen = 0
                m[i].msg_hdr.msg_flags = 0
            got = sys_.recvmmsg(self.fd, m, max, sys_.MSG_DONTWAIT, NULL)
            if got < 0:
                e = sys_.errno
                if e == sys_.EINTR and tries < 8:
                    tries += 1
                    continue
                if (e == sys_.ENOPROTOOPT or e == sys_.ECONNREFUSED or e == sys_.EHOSTUNREACH
                        or e == sys_.ENETUNREACH) and tries < 8:
                    # a connected socket reports an ICMP error about an earlier packet here
                    self.pc[P_ICMP_ERRORS] += 1
                    tries += 1
                    continue
                return 0
            break
        for i in range(got):
            pkts[i] = <uint8_t*>v[i].iov_base
            lens[i] = m[i].msg_len
        if got > 0:
            self.pc[P_RX_PACKETS] += got
            self.pc[P_RX_BATCHES] += 1
        return got

    cdef void tx_add(self, uint8_t* frame, uint32_t n, uint32_t dst_be) noexcept nogil:
        cdef int i = self.out_n
        cdef iovec* v = <iovec*>self.out_iov
        cdef sockaddr_in* a = <sockaddr_in*>self.out_addr
        if i >= self.tx_cap:
            self.pc[P_TX_RING_FULL] += 1
            return
        v[i].iov_base = frame
        v[i].iov_len = n
        if self.inet:
            a[i].sin_family = sys_.AF_INET
            a[i].sin_port = 0
            a[i].sin_addr.s_addr = dst_be
        self.out_n = i + 1

    cdef void tx_flush(self) noexcept nogil:
        cdef mmsghdr* m = <mmsghdr*>self.out_msgs
        cdef int done = 0, r, e, icmp = 0, sent = 0
        while done < self.out_n:
            r = sys_.sendmmsg(self.fd, m + done, self.out_n - done, sys_.MSG_DONTWAIT)
            if r < 0:
                e = sys_.errno
                if e == sys_.EINTR:
                    continue
                if (e == sys_.ENOPROTOOPT or e == sys_.ECONNREFUSED or e == sys_.EHOSTUNREACH
                        or e == sys_.ENETUNREACH) and icmp < 16:
                    # an ICMP error about an earlier packet: count it, this one is retried
                    self.pc[P_ICMP_ERRORS] += 1
                    icmp += 1
                    continue
                if e == sys_.ENOBUFS:
                    self.pc[P_KERNEL_DROPS] += 1      # qdisc/driver dropped it (IP_RECVERR)
                elif e == sys_.EAGAIN:
                    # socket send buffer full: the rest of the batch would meet it too (one
                    # syscall each for nothing); no room until poll(2) says writable
                    self.pc[P_TX_RING_FULL] += self.out_n - done
                    self.fills = 1
                    break
                else:
                    self.pc[P_TX_ERRORS] += 1         # EMSGSIZE, ...
                done += 1                              # drop this one, go on with the rest
                continue
            done += r
            sent += r
        if sent > 0:
            self.pc[P_TX_PACKETS] += sent
            self.pc[P_TX_BATCHES] += 1
        self.out_n = 0

    cdef bint full(self) noexcept nogil:
        """The send buffer has no room (only asked once it has filled: ``fills``).
        Writable (POLLOUT) means at least half of SO_SNDBUF free for an inet socket (a
        quarter used for AF_UNIX), far more than a batch at the engine's 4 MB default."""
        return self.fills and not fd_writable(self.fd)

    cdef int tx_room(self) noexcept nogil:
        if self.full():
            self.pc[P_TX_FULL] += 1
            return 0
        return self.tx_cap - self.out_n


# ---------------------------------------------------------------------------- address helpers
# (shared by the ports that write their own L2/L3 headers: _port_packet.pyx, _port_xdp.pyx)

def mac_bytes(mac):
    """A MAC address ("aa:bb:..", "aa-bb-..", "aabb..", or 6 bytes) as 6 bytes."""
    if isinstance(mac, str):
        b = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    else:
        b = bytes(mac)
    if len(b) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return b


def ip_be(addr):
    """IPv4 address as the uint32 whose memory is network order (little-endian host)."""
    return int.from_bytes(ipaddress.IPv4Address(addr).packed, "little")


def ip_str(be):
    """The inverse of ip_be."""
    return str(ipaddress.IPv4Address(int(be).to_bytes(4, "little")))


# ---------------------------------------------------------------------------- micro-benchmark
#
# The GRE transport alone, without the engine: any GrePort driven through its four nogil
# methods as the engine's I/O thread would (bench/bench_packetport.py, bench/bench_greport.py).
# No Python per packet, bounded in count and in time, CPU measured per thread
# (CLOCK_THREAD_CPUTIME_ID: includes the softirq work the kernel does in our thread's context,
# e.g. veth delivery).

cdef extern from * nogil:
    """
    #include <time.h>
    """
    enum:
        CLOCK_THREAD_CPUTIME_ID


cdef inline double _clock(int clk) noexcept nogil:
    cdef sys_.timespec ts
    sys_.clock_gettime(clk, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def port_blast(GrePort port, frame, peer, long count, double seconds, int batch=0):
    """Send ``frame`` (GRE header + payload) to ``peer`` ``count`` times in batches of
    ``batch`` (0: ``tx_cap``) through tx_add/tx_flush, or until ``seconds`` pass.  Each frame
    of a batch has its own slot (with PORT_HEADROOM in front), as the engine's would.
    {"offered", "wall", "cpu"}."""
    cdef bytes f = bytes(frame)
    cdef uint32_t n = len(f), dst = ip_be(peer)
    cdef size_t slot = (PORT_HEADROOM + n + 63) & ~(<size_t>63)
    cdef uint8_t* buf
    cdef long sent = 0, k, i
    cdef double t0, c0, t1, c1
    if batch == 0:
        batch = port.tx_cap if port.tx_cap > 0 else 64
    if batch < 1 or batch > port.tx_cap:
        raise ValueError(f"batch {batch} out of 1..{port.tx_cap}")
    if count < 0 or seconds <= 0:
        raise ValueError("count >= 0 and seconds > 0")
    buf = <uint8_t*>calloc(batch, slot)
    if buf == NULL:
        raise MemoryError()
    for i in range(batch):
        memcpy(buf + i * slot + PORT_HEADROOM, <char*>f, n)
    with nogil:
        t0 = _clock(sys_.CLOCK_MONOTONIC)
        c0 = _clock(CLOCK_THREAD_CPUTIME_ID)
        while sent < count:
            k = count - sent
            if k > batch:
                k = batch
            for i in range(k):
                port.tx_add(buf + i * slot + PORT_HEADROOM, n, dst)
            port.tx_flush()
            sent += k
            if (sent // batch) % 16 == 0 and _clock(sys_.CLOCK_MONOTONIC) - t0 > seconds:
                break
        t1 = _clock(sys_.CLOCK_MONOTONIC)
        c1 = _clock(CLOCK_THREAD_CPUTIME_ID)
    free(buf)
    return {"offered": sent, "wall": t1 - t0, "cpu": c1 - c0}


def port_sink(GrePort port, long count, double seconds, double idle=0.3):
    """Receive through rx_burst/rx_release (epoll on the port's fds, level-triggered; a ring
    is drained until empty) until ``count`` datagrams, ``seconds`` in all, or ``idle`` seconds
    without one after the first.  {"received", "bytes", "wall", "cpu"} (wall and cpu from
    the first datagram to the last)."""
    cdef int epfd, i, nev, got
    cdef sys_.epoll_event evs[PORT_MAX_FDS]
    cdef sys_.epoll_event e
    cdef uint32_t ev[PORT_MAX_FDS]
    cdef uint8_t* pkts[256]
    cdef uint32_t lens[256]
    cdef long total = 0
    cdef uint64_t nbytes = 0
    cdef double start, now, first = 0, last = 0, c_first = 0, c_last = 0
    epfd = sys_.epoll_create1(sys_.EPOLL_CLOEXEC)
    if epfd < 0:
        raise OSError(sys_.errno, "epoll_create1")
    try:
        for i in range(port.nfds):
            e.events = sys_.EPOLLIN
            e.data.u32 = i
            if sys_.epoll_ctl(epfd, sys_.EPOLL_CTL_ADD, port.fds[i], &e) != 0:
                raise OSError(sys_.errno, "epoll_ctl")
        with nogil:
            start = _clock(sys_.CLOCK_MONOTONIC)
            while total < count:
                now = _clock(sys_.CLOCK_MONOTONIC)
                if now - start > seconds or (total > 0 and now - last > idle):
                    break
                nev = sys_.epoll_wait(epfd, evs, PORT_MAX_FDS, 2)
                memset(ev, 0, sizeof(ev))
                for i in range(nev if nev > 0 else 0):
                    ev[evs[i].data.u32] |= evs[i].events
                while total < count:
                    got = port.rx_burst(ev, pkts, lens, 256)
                    if got <= 0:
                        break
                    if total == 0:
                        first = _clock(sys_.CLOCK_MONOTONIC)
                        c_first = _clock(CLOCK_THREAD_CPUTIME_ID)
                    for i in range(got):
                        nbytes += lens[i]
                    total += got
                    port.rx_release()
                    last = _clock(sys_.CLOCK_MONOTONIC)
                    c_last = _clock(CLOCK_THREAD_CPUTIME_ID)
    finally:
        sys_.close(epfd)
    return {"received": total, "bytes": nbytes, "wall": last - first, "cpu": c_last - c_first}
