# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The ``packet`` GRE port: an AF_PACKET TPACKET_V3 receive ring behind a classic BPF filter,
and AF_PACKET ``sendmmsg`` with PACKET_QDISC_BYPASS of frames whose Ethernet + IPv4 header
we write ourselves into the port's headroom (docs/DESIGN.md "GRE port", issue 9).

Receive (kernel Documentation/networking/packet_mmap.rst, "TPACKET_V3"):
  * one AF_PACKET socket bound to the interface with ETH_P_ALL.  ETH_P_ALL is required: taps
    (ptype_all) see a frame in __netif_receive_skb_core *before* tc/TCX ingress, where the
    companion drop program (fastpptp.net.bpf) stops the kernel's own IPv4 processing of the
    same PPTP GRE; a protocol-specific (ETH_P_IP) socket would only see it after, i.e. never.
  * a cBPF filter (SO_ATTACH_FILTER, :func:`gre_filter`) lets only incoming (PACKET_HOST)
    untagged or priority-tagged (VLAN 0) IPv4 PPTP GRE through: protocol 47, MF=0 and offset 0, GRE version 1, protocol
    0x880B, destination one of our local addresses.  Everything else never enters the ring.
  * the ring is ``block_nr`` blocks of ``block_size`` bytes; the kernel retires a block to us
    when it is full or ``retire_ms`` after its first packet.  ``rx_burst`` walks ready blocks
    (no syscall), returns pointers at the IPv4 header inside the ring (writable: the engine
    decrypts in place), and ``rx_release`` hands fully walked blocks back (TP_STATUS_KERNEL,
    store-release after our reads, matching the kernel's smp_wmb/flush before it sets
    TP_STATUS_USER, which we read with load-acquire).
  * PACKET_STATISTICS (read when a block carries TP_STATUS_LOSING, and by ``counters()``):
    tp_drops -> rx_ring_full; tp_freeze_q_cnt (queue freezes, events not packets) is kept
    apart in ``ring_stats()``.

Send: ``tx_add`` only queues; ``tx_flush`` takes the nexthop table lock once per batch, writes
Ethernet (next-hop MAC, our MAC, 0x0800) + IPv4 (DF, TTL 64, ID incrementing, header
checksum from a per-destination precomputed partial sum) into the 34 bytes before each GRE
frame, and sends the batch with one ``sendmmsg`` on a second AF_PACKET socket (protocol 0:
it never receives) with PACKET_QDISC_BYPASS.  Destinations without a nexthop entry, frames
larger than the entry's MTU go to the slow path (the raw IPPROTO_GRE socket, RawPort), which
is also polled for receive: fragments the kernel reassembled and GRE from other interfaces.

PACKET_TX_RING was tried and measured (bench/bench_packetport.py, 1400-byte frames across a
veth, 3 interleaved rounds, a 1024-frame TPACKET_V2 ring, one send() per flush): sender CPU
1.44-1.56 us/packet against 0.90-1.00 with sendmmsg, and 143-208k packets/s delivered
against 271-531k (the skb built from ring pages is non-linear, and what is downstream pays
more for that than sendmmsg pays for its copy).  So sendmmsg it is.

The nexthop table is filled from Python (``set_nexthop``/``clear_nexthop``, by
fastpptp.net.nexthop.NexthopTracker from any thread) under a pthread mutex.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
cimport fastpptp._sys as sys_
from fastpptp._sys cimport mmsghdr, iovec, pthread_mutex_lock, pthread_mutex_unlock
from fastpptp._l2 cimport (nh_entry, nh_init, nh_find, nh_set, l2l3_write, csum_fold, sum16,
                           ETH_HLEN, IP_HLEN, L2L3)
from fastpptp._greport cimport (GrePort, L2Port, RawPort, PORT_HEADROOM, PORT_MAX_FDS,
                                P_RX_PACKETS, P_RX_BATCHES, P_TX_PACKETS, P_TX_BATCHES,
                                P_RX_RING_FULL, P_TX_RING_FULL, P_KERNEL_DROPS, P_TX_ERRORS,
                                P_RX_SLOWPATH, P_TX_SLOWPATH, P_ICMP_ERRORS, P_RX_NOT_OURS,
                                P_TX_FULL, fd_writable,
                                N_PORT_COUNTERS)

import ipaddress

from fastpptp._greport import ip_be as _ip_be, mac_bytes as _mac_bytes
import os

cdef extern from * nogil:
    """
    #include <sys/mman.h>
    #include <sys/socket.h>
    #include <linux/if_packet.h>
    #include <linux/if_ether.h>
    #include <linux/filter.h>
    #ifndef PACKET_IGNORE_OUTGOING
    #define PACKET_IGNORE_OUTGOING 23
    #endif
    #ifndef PACKET_QDISC_BYPASS
    #define PACKET_QDISC_BYPASS 20
    #endif
    static inline uint32_t fp_load_acquire(const uint32_t* p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void fp_store_release(uint32_t* p, uint32_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline void fp_add_u64(uint64_t* p, uint64_t v) {
        __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
    }
    """
    struct tpacket_req3:
        unsigned int tp_block_size
        unsigned int tp_block_nr
        unsigned int tp_frame_size
        unsigned int tp_frame_nr
        unsigned int tp_retire_blk_tov
        unsigned int tp_sizeof_priv
        unsigned int tp_feature_req_word
    struct tpacket_hdr_v1:
        uint32_t block_status
        uint32_t num_pkts
        uint32_t offset_to_first_pkt
        uint32_t blk_len
    union tpacket_bd_header_u:
        tpacket_hdr_v1 bh1
    struct tpacket_block_desc:
        uint32_t version
        uint32_t offset_to_priv
        tpacket_bd_header_u hdr
    struct tpacket3_hdr:
        uint32_t tp_next_offset
        uint32_t tp_sec
        uint32_t tp_nsec
        uint32_t tp_snaplen
        uint32_t tp_len
        uint32_t tp_status
        uint16_t tp_mac
        uint16_t tp_net
    struct tpacket2_hdr:
        uint32_t tp_status
        uint32_t tp_len
        uint32_t tp_snaplen
        uint16_t tp_mac
        uint16_t tp_net
        uint32_t tp_sec
        uint32_t tp_nsec
        uint16_t tp_vlan_tci
        uint16_t tp_vlan_tpid
    struct tpacket_stats_v3:
        unsigned int tp_packets
        unsigned int tp_drops
        unsigned int tp_freeze_q_cnt
    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]
    struct sock_filter:
        uint16_t code
        uint8_t jt
        uint8_t jf
        uint32_t k
    struct sock_fprog:
        unsigned short len
        sock_filter* filter
    enum:
        AF_PACKET
        SOCK_RAW
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        SOL_PACKET
        PACKET_RX_RING
        PACKET_VERSION
        TPACKET_V2
        TPACKET_V3
        PACKET_QDISC_BYPASS
        PACKET_IGNORE_OUTGOING
        PACKET_STATISTICS
        SO_ATTACH_FILTER
        SO_SNDBUFFORCE
        SO_SNDBUF
        ETH_P_ALL
        ETH_P_IP
        TP_STATUS_KERNEL
        TP_STATUS_USER
        TP_STATUS_LOSING
        PROT_READ
        PROT_WRITE
        MAP_SHARED
        MAP_POPULATE
    void* MAP_FAILED
    int c_socket "socket"(int domain, int type, int protocol)
    int c_bind "bind"(int fd, const sys_.sockaddr* addr, sys_.socklen_t len)
    int c_setsockopt "setsockopt"(int fd, int level, int name, const void* val, sys_.socklen_t len)
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    uint16_t htons(uint16_t)
    uint32_t fp_load_acquire(const uint32_t* p)
    void fp_store_release(uint32_t* p, uint32_t v)
    void fp_add_u64(uint64_t* p, uint64_t v)

cdef enum:
    MAX_ADDRS = 200                 # cBPF jumps are 8-bit: the address list must fit in 255

# cBPF (linux/filter.h, Documentation/networking/filter.rst "Classic BPF")
cdef enum:
    BPF_LD = 0x00
    BPF_LDX = 0x01
    BPF_ALU = 0x04
    BPF_JMP = 0x05
    BPF_RET = 0x06
    BPF_W = 0x00
    BPF_H = 0x08
    BPF_B = 0x10
    BPF_ABS = 0x20
    BPF_IND = 0x40
    BPF_MSH = 0xa0
    BPF_JA = 0x00
    BPF_JEQ = 0x10
    BPF_JSET = 0x40
    BPF_AND = 0x50
    BPF_K = 0x00

SKF_AD_OFF = 0x100000000 - 0x1000      # (u32)-4096: ancillary data loads
SKF_AD_PKTTYPE = 4
SKF_AD_VLAN_TAG = 44
SKF_AD_VLAN_TAG_PRESENT = 48
PACKET_HOST = 0
GRE_PROTO_PPP = 0x880B
SNAP = 0x40000                          # accept up to 256 KiB (the block bounds it anyway)


def gre_filter(local_addrs):
    """The classic BPF program of the receive ring, as ``[(code, jt, jf, k), ...]``: accept
    incoming, untagged or priority-tagged, unfragmented IPv4 GRE version 1 carrying PPP (0x880B, RFC 2637 §4.1)
    to one of ``local_addrs``; drop everything else.  Offsets are from the Ethernet header
    (SOCK_RAW).  An empty address list accepts nothing."""
    addrs = [int(ipaddress.IPv4Address(a)) for a in local_addrs]
    if len(addrs) > MAX_ADDRS:
        raise ValueError(f"{len(addrs)} local addresses: the ring filter takes {MAX_ADDRS} at most")
    head = [
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", PACKET_HOST),          # not OUTGOING/OTHERHOST
        # an 802.1Q tag is out of the frame by now (skb metadata): untagged and priority-
        # tagged (VLAN 0, which the stack processes as untagged) are ours, other VLANs
        # belong to a VLAN interface -- the TCX program (fastpptp.net.bpf) decides the same
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT),
        (BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 0),                         # untagged
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_AD_OFF + SKF_AD_VLAN_TAG),
        (BPF_JMP | BPF_JSET | BPF_K, "drop", 0, 0x0FFF),              # VID != 0
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 12),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", 0x0800),               # IPv4
        (BPF_LD | BPF_B | BPF_ABS, 0, 0, 14 + 9),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", 47),                   # IPPROTO_GRE
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 14 + 6),
        (BPF_JMP | BPF_JSET | BPF_K, "drop", 0, 0x3FFF),              # MF or offset: slow path
        (BPF_LDX | BPF_B | BPF_MSH, 0, 0, 14),                        # X = IHL * 4
        (BPF_LD | BPF_H | BPF_IND, 0, 0, 14),                         # GRE flags + version
        (BPF_ALU | BPF_AND | BPF_K, 0, 0, 0x0007),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", 1),                    # enhanced GRE (v1)
        (BPF_LD | BPF_H | BPF_IND, 0, 0, 16),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", GRE_PROTO_PPP),
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, 14 + 16),                    # IPv4 destination
    ]
    if addrs:
        body = [(BPF_JMP | BPF_JEQ | BPF_K, "accept", 0, a) for a in addrs[:len(addrs) - 1]]
        body.append((BPF_JMP | BPF_JEQ | BPF_K, "accept", "drop", addrs[len(addrs) - 1]))
    else:
        head.pop()      # no address is ours: nothing to compare, fall into "drop"
        body = [(BPF_JMP | BPF_JA, 0, 0, 1)]
    prog = head + body
    accept = len(prog)
    drop = accept + 1
    prog += [(BPF_RET | BPF_K, 0, 0, SNAP), (BPF_RET | BPF_K, 0, 0, 0)]
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        if code & 0x07 == BPF_JMP:
            labels = {"accept": accept, "drop": drop}
            jt = labels[jt] - (i + 1) if isinstance(jt, str) else jt
            jf = labels[jf] - (i + 1) if isinstance(jf, str) else jf
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise ValueError("cBPF jump out of range")
        out.append((code, jt, jf, k & 0xFFFFFFFF))
    return out


cdef int attach_filter(int fd, list prog) except -1:
    cdef int n = len(prog), i
    cdef sock_filter* f = <sock_filter*>calloc(n if n > 0 else 1, sizeof(sock_filter))
    cdef sock_fprog fp
    if f == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            f[i].code, f[i].jt, f[i].jf, f[i].k = prog[i]
        fp.len = n
        fp.filter = f
        if c_setsockopt(fd, sys_.SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp)) != 0:
            raise OSError(sys_.errno, f"SO_ATTACH_FILTER: {os.strerror(sys_.errno)}")
    finally:
        free(f)
    return 0


cdef class PacketPort(L2Port):
    """GRE over AF_PACKET (see the module doc).  Opens its two packet sockets in the calling
    thread's network namespace; ``raw_socket`` (an IPPROTO_GRE socket, or None for no slow
    path) stays the caller's.  ``owned`` objects (e.g. the TCX drop handle) are closed by
    ``close()``; one with an ``update(addrs)`` method follows ``set_local_addrs``.

    For the engine: ``fds`` are [the ring's socket, the raw socket (if any)]; the ring's
    becomes readable when the kernel retires a block (full, or ``retire_ms`` after its first
    frame), and ``rx_burst`` walks ready blocks whatever ``ev[0]`` says (a memory read, no
    syscall); the raw socket is read only when ``ev[1]`` is set.  ``tracker`` (set by
    fastpptp.net.packetport) wants ``add_peer(ip, local)`` when a call to ``ip`` comes up
    and ``remove_peer(ip)`` when it ends (counted per address)."""

    cdef int rx_fd, tx_fd
    cdef readonly int ifindex
    cdef readonly bytes mac
    cdef readonly int block_size, block_nr, frame_size, retire_ms, tpacket_version
    cdef RawPort slow
    cdef uint8_t* ring
    cdef size_t ring_len
    # ring walk state
    cdef uint32_t cur_block     # block being walked, or the next one to look at
    cdef uint32_t rel_block     # first block walked but not yet handed back
    cdef uint32_t walked        # fully walked blocks not yet handed back
    cdef bint in_block
    cdef uint32_t pkt_left
    cdef uint32_t pkt_off
    # TPACKET_V2: frame slots, walked in order
    cdef uint32_t frame_nr, frames_per_block
    cdef uint32_t cur_frame     # next frame to look at
    cdef uint32_t rel_frame     # first frame walked but not yet handed back
    cdef uint64_t freezes, ring_packets
    # transmit
    cdef mmsghdr* out_msgs
    cdef iovec* out_iov
    cdef sockaddr_ll tx_addr
    cdef uint16_t ip_id
    cdef int fills              # a flush met a full send buffer (EAGAIN): tx_room polls from then on
    # nexthop table
    cdef public object owned
    cdef public object tracker      # the NexthopTracker keeping the table (packetport.py)
    cdef object local_addrs
    cdef object slow_sock

    def __cinit__(self, *args, **kw):
        self.rx_fd = -1
        self.tx_fd = -1
        self.ring = NULL

    def __init__(self, int ifindex, mac, local_addrs, raw_socket=None, *, int batch=64,
                 int block_size=1 << 18, int block_nr=64, int frame_size=2048,
                 int retire_ms=1, int nexthops=1024, int tpacket_version=2):
        cdef tpacket_req3 req
        cdef sockaddr_ll sll
        cdef int one = 1, ver, sndbuf = 4 << 20, i
        cdef uint32_t cap
        if batch < 1 or batch > 1024:
            raise ValueError(f"batch {batch} out of 1..1024")
        if block_size < 4096 or block_size % 4096 or block_size > (1 << 26):
            raise ValueError(f"block_size {block_size}: a multiple of 4096 up to 64 MiB")
        if frame_size < 128 or frame_size % 16 or block_size % frame_size:
            raise ValueError(f"frame_size {frame_size}: a multiple of 16 dividing block_size")
        if block_nr < 2 or block_nr > 65536 or <size_t>block_nr * block_size > (1 << 31):
            raise ValueError(f"block_nr {block_nr} out of 2..65536 (ring at most 2 GiB)")
        if retire_ms < 1 or retire_ms > 1000:
            raise ValueError(f"retire_ms {retire_ms} out of 1..1000")
        if tpacket_version != 2 and tpacket_version != 3:
            raise ValueError(f"tpacket_version {tpacket_version}: 2 or 3")
        if nexthops < 1 or nexthops > (1 << 20):
            raise ValueError(f"nexthops {nexthops} out of 1..{1 << 20}")
        self.kind = "packet"
        self.ifindex = ifindex
        self.mac = _mac_bytes(mac)
        memcpy(self.own_mac, <char*>self.mac, 6)
        self.block_size, self.block_nr = block_size, block_nr
        self.frame_size, self.retire_ms = frame_size, retire_ms
        self.tpacket_version = tpacket_version
        self.frames_per_block = block_size // frame_size
        self.frame_nr = self.frames_per_block * block_nr
        self.tx_cap = batch * 2
        self.owned = []
        self.local_addrs = [str(ipaddress.IPv4Address(a)) for a in local_addrs]
        prog = gre_filter(self.local_addrs)

        cap = 16
        while cap < <uint32_t>nexthops * 2:
            cap <<= 1
        self.queue_alloc()
        self.out_msgs = <mmsghdr*>calloc(self.tx_cap, sizeof(mmsghdr))
        self.out_iov = <iovec*>calloc(self.tx_cap, sizeof(iovec))
        if self.out_msgs == NULL or self.out_iov == NULL:
            raise MemoryError()
        if nh_init(&self.nht, cap) != 0:
            raise OSError(sys_.errno, "nexthop table: calloc / pthread_mutex_init")

        # receive: protocol 0 first (receives nothing), then filter + ring, then bind ETH_P_ALL,
        # so no unfiltered frame ever lands in the ring
        self.rx_fd = c_socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if self.rx_fd < 0:
            raise OSError(sys_.errno, f"AF_PACKET socket: {os.strerror(sys_.errno)}")
        attach_filter(self.rx_fd, prog)
        # our own transmissions never need the tap (kernel >= 4.20); the filter checks too
        c_setsockopt(self.rx_fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one))
        ver = TPACKET_V2 if tpacket_version == 2 else TPACKET_V3
        if c_setsockopt(self.rx_fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof(ver)) != 0:
            raise OSError(sys_.errno, f"PACKET_VERSION TPACKET_V{tpacket_version}: "
                                      f"{os.strerror(sys_.errno)}")
        memset(&req, 0, sizeof(req))
        req.tp_block_size = block_size
        req.tp_block_nr = block_nr
        req.tp_frame_size = frame_size
        req.tp_frame_nr = self.frame_nr
        if tpacket_version == 3:
            req.tp_retire_blk_tov = retire_ms     # V2 reads only the first four fields
        if c_setsockopt(self.rx_fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0:
            raise OSError(sys_.errno, f"PACKET_RX_RING: {os.strerror(sys_.errno)}")
        self.ring_len = <size_t>block_size * block_nr
        cdef void* m = mmap(NULL, self.ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                            self.rx_fd, 0)
        if m == MAP_FAILED:
            raise OSError(sys_.errno, f"mmap of the receive ring: {os.strerror(sys_.errno)}")
        self.ring = <uint8_t*>m
        memset(&sll, 0, sizeof(sll))
        sll.sll_family = AF_PACKET
        sll.sll_protocol = htons(ETH_P_ALL)
        sll.sll_ifindex = ifindex
        if c_bind(self.rx_fd, <sys_.sockaddr*>&sll, sizeof(sll)) != 0:
            raise OSError(sys_.errno, f"bind AF_PACKET to ifindex {ifindex}: {os.strerror(sys_.errno)}")

        # send: protocol 0 (never receives), bound to the interface, qdisc bypassed
        self.tx_fd = c_socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if self.tx_fd < 0:
            raise OSError(sys_.errno, f"AF_PACKET socket: {os.strerror(sys_.errno)}")
        memset(&sll, 0, sizeof(sll))
        sll.sll_family = AF_PACKET
        sll.sll_protocol = 0
        sll.sll_ifindex = ifindex
        if c_bind(self.tx_fd, <sys_.sockaddr*>&sll, sizeof(sll)) != 0:
            raise OSError(sys_.errno, f"bind AF_PACKET to ifindex {ifindex}: {os.strerror(sys_.errno)}")
        if c_setsockopt(self.tx_fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) != 0:
            raise OSError(sys_.errno, f"PACKET_QDISC_BYPASS: {os.strerror(sys_.errno)}")
        if c_setsockopt(self.tx_fd, sys_.SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) != 0:
            c_setsockopt(self.tx_fd, sys_.SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf))
        memset(&self.tx_addr, 0, sizeof(self.tx_addr))
        self.tx_addr.sll_family = AF_PACKET
        self.tx_addr.sll_protocol = htons(ETH_P_IP)
        self.tx_addr.sll_ifindex = ifindex
        self.tx_addr.sll_halen = 6
        for i in range(self.tx_cap):
            self.out_msgs[i].msg_hdr.msg_iov = &self.out_iov[i]
            self.out_msgs[i].msg_hdr.msg_iovlen = 1
            self.out_msgs[i].msg_hdr.msg_name = &self.tx_addr
            self.out_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_ll)

        self.nfds = 1
        self.fds[0] = self.rx_fd
        if raw_socket is not None:
            self.slow = RawPort(raw_socket, batch)
            self.slow_sock = raw_socket
            self.nfds = 2
            self.fds[1] = self.slow.fds[0]

    def __dealloc__(self):
        self._release_os()
        free(self.out_msgs)
        free(self.out_iov)

    cdef void _release_os(self) noexcept:
        if self.ring != NULL:
            munmap(self.ring, self.ring_len)
            self.ring = NULL
        if self.rx_fd >= 0:
            sys_.close(self.rx_fd)
            self.rx_fd = -1
        if self.tx_fd >= 0:
            sys_.close(self.tx_fd)
            self.tx_fd = -1

    def close(self):
        """Unmap the ring, close our packet sockets and what we own (the drop program).
        The raw socket stays the caller's.  Call only when the I/O thread is stopped."""
        owned, self.owned = self.owned, []
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
        for o in reversed(owned):
            o.close()
        self._release_os()
        self.nfds = 0

    def describe(self):
        if self.tpacket_version == 2:
            ring = f"TPACKET_V2 ring {self.frame_nr}x{self.frame_size} B"
        else:
            ring = (f"TPACKET_V3 ring {self.block_nr}x{self.block_size // 1024} KiB, "
                    f"retire {self.retire_ms} ms")
        s = f"packet (AF_PACKET {ring}, qdisc bypass) on ifindex {self.ifindex}"
        if self.slow is not None:
            s += f", slow path {self.slow.describe()}"
        for o in self.owned:
            if hasattr(o, "describe"):
                s += f", {o.describe()}"
        return s

    @property
    def slow_path(self):
        """The RawPort of the slow path, or None."""
        return self.slow

    # ------------------------------------------------------------------ local addresses

    def set_local_addrs(self, addrs):
        """Replace the addresses the ring accepts GRE for (the filter is swapped atomically)
        and tell the owned drop program (``update``)."""
        addrs = [str(ipaddress.IPv4Address(a)) for a in addrs]
        if self.rx_fd < 0:
            raise ValueError("port closed")
        attach_filter(self.rx_fd, gre_filter(addrs))
        self.local_addrs = addrs
        for o in self.owned:
            if hasattr(o, "update"):
                o.update(addrs)

    @property
    def local_addresses(self):
        return list(self.local_addrs)

    # ------------------------------------------------------------------ nexthop table

    def set_nexthop(self, peer, mac, src, int mtu):
        """Send GRE to IPv4 ``peer`` the fast way: Ethernet to ``mac`` (the peer's or its
        gateway's), IPv4 from ``src``, datagrams up to ``mtu`` bytes (larger ones: slow path)."""
        cdef bytes mb = _mac_bytes(mac)
        cdef uint32_t dst = _ip_be(peer), s = _ip_be(src)
        cdef const uint8_t* mp = <const uint8_t*><char*>mb
        cdef bint ok
        if mtu < 68 or mtu > 65535:
            raise ValueError(f"mtu {mtu} out of 68..65535")
        with nogil:
            ok = nh_set(&self.nht, dst, s, <uint16_t>mtu, mp, self.own_mac)
        if not ok:
            raise OverflowError("nexthop table full")

    # ------------------------------------------------------------------ statistics

    cdef void fold_stats(self) noexcept nogil:
        """PACKET_STATISTICS (reading resets it): drops because the ring was full."""
        cdef tpacket_stats_v3 st
        cdef sys_.socklen_t sl = sizeof(st)
        if self.rx_fd < 0:
            return
        memset(&st, 0, sizeof(st))      # V2 fills only tpacket_stats (no tp_freeze_q_cnt)
        if sys_.getsockopt(self.rx_fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0:
            # atomic: the I/O thread (TP_STATUS_LOSING) and counters() may both fold
            fp_add_u64(&self.pc[P_RX_RING_FULL], st.tp_drops)
            fp_add_u64(&self.freezes, st.tp_freeze_q_cnt)
            fp_add_u64(&self.ring_packets, st.tp_packets)

    def counters(self):
        with nogil:
            self.fold_stats()
        return GrePort.counters(self)

    def ring_stats(self):
        """The ring's own PACKET_STATISTICS totals: frames it took (``packets``, including
        the dropped ones), ``drops`` (= rx_ring_full) and ``freezes`` (queue freeze events)."""
        with nogil:
            self.fold_stats()
        return {"packets": self.ring_packets, "drops": self.pc[P_RX_RING_FULL],
                "freezes": self.freezes}

    # ------------------------------------------------------------------ receive

    cdef inline tpacket2_hdr* frame_v2(self, uint32_t i) noexcept nogil:
        return <tpacket2_hdr*>(self.ring + <size_t>(i // self.frames_per_block) * self.block_size
                               + <size_t>(i % self.frames_per_block) * self.frame_size)

    cdef inline void hand_back(self) noexcept nogil:
        cdef tpacket_block_desc* bd
        if self.tpacket_version == 2:
            while self.walked > 0:
                fp_store_release(&self.frame_v2(self.rel_frame).tp_status, TP_STATUS_KERNEL)
                self.rel_frame += 1
                if self.rel_frame == self.frame_nr:
                    self.rel_frame = 0
                self.walked -= 1
            return
        while self.walked > 0:
            bd = <tpacket_block_desc*>(self.ring + <size_t>self.rel_block * self.block_size)
            fp_store_release(&bd.hdr.bh1.block_status, TP_STATUS_KERNEL)
            self.rel_block += 1
            if self.rel_block == <uint32_t>self.block_nr:
                self.rel_block = 0
            self.walked -= 1

    cdef inline uint8_t* accept_frame(self, uint8_t* f, uint32_t room, uint32_t snap,
                                      uint32_t wire_len, uint32_t* ip_len) noexcept nogil:
        """The IPv4 header of the frame at f (``snap`` bytes captured of ``wire_len``, ``room``
        bytes of ring memory from f), or NULL (counted) when it is not ours to hand out."""
        cdef uint8_t* ip
        cdef uint32_t ihl, tot
        if snap > room or snap < L2L3 or snap < wire_len:
            self.pc[P_RX_NOT_OURS] += 1           # truncated or out of bounds
            return NULL
        ip = f + ETH_HLEN
        ihl = (ip[0] & 0x0F) * 4
        tot = (<uint32_t>ip[2] << 8) | ip[3]
        # the filter checked the rest; the IPv4 header is ours to check now that the
        # kernel's ip_rcv never sees it (RFC 1122 §3.2.1.2)
        if (f[12] != 0x08 or f[13] != 0x00 or (ip[0] >> 4) != 4 or ihl < IP_HLEN
                or tot < ihl + 8 or tot > snap - ETH_HLEN
                or csum_fold(sum16(ip, ihl)) != 0):
            self.pc[P_RX_NOT_OURS] += 1
            return NULL
        ip_len[0] = tot                           # not snaplen: Ethernet pads short frames
        return ip

    cdef int walk_v2(self, uint8_t** pkts, uint32_t* lens, int max) noexcept nogil:
        """TPACKET_V2: each frame is ours as soon as the kernel sets TP_STATUS_USER on it
        (and the socket is readable at once): no block to wait for, so a lone packet -- a
        TCP ACK, a ping -- is not held back the way a TPACKET_V3 block holds it until it
        fills or its retire timer fires (docs/DESIGN.md "GRE port")."""
        cdef int n = 0
        cdef uint32_t st, fs = self.frame_size
        cdef tpacket2_hdr* h
        cdef uint8_t* ip
        while n < max and self.walked < self.frame_nr:
            h = self.frame_v2(self.cur_frame)
            st = fp_load_acquire(&h.tp_status)
            if not (st & TP_STATUS_USER):
                break
            if st & TP_STATUS_LOSING:
                self.fold_stats()
            self.walked += 1
            self.cur_frame += 1
            if self.cur_frame == self.frame_nr:
                self.cur_frame = 0
            if h.tp_mac >= fs:
                self.pc[P_RX_NOT_OURS] += 1
                continue
            ip = self.accept_frame(<uint8_t*>h + h.tp_mac, fs - h.tp_mac, h.tp_snaplen,
                                   h.tp_len, &lens[n])
            if ip != NULL:
                pkts[n] = ip
                n += 1
        return n

    cdef int walk_v3(self, uint8_t** pkts, uint32_t* lens, int max) noexcept nogil:
        cdef int n = 0
        cdef uint32_t st, bs = self.block_size, off
        cdef tpacket_block_desc* bd
        cdef tpacket3_hdr* h
        cdef uint8_t* ip
        while n < max:
            bd = <tpacket_block_desc*>(self.ring + <size_t>self.cur_block * bs)
            if not self.in_block:
                # the kernel fills blocks in order; stop at the first one still its own
                st = fp_load_acquire(&bd.hdr.bh1.block_status)
                if not (st & TP_STATUS_USER):
                    break
                if st & TP_STATUS_LOSING:
                    self.fold_stats()
                self.in_block = True
                self.pkt_left = bd.hdr.bh1.num_pkts
                self.pkt_off = bd.hdr.bh1.offset_to_first_pkt
            if self.pkt_left > 0:
                off = self.pkt_off
                if off < sizeof(tpacket_block_desc) or off > bs - sizeof(tpacket3_hdr):
                    self.pc[P_RX_NOT_OURS] += self.pkt_left      # corrupt walk: skip the block
                    self.pkt_left = 0
                else:
                    h = <tpacket3_hdr*>(<uint8_t*>bd + off)
                    self.pkt_left -= 1
                    self.pkt_off = off + h.tp_next_offset
                    if h.tp_mac > bs - off:
                        self.pc[P_RX_NOT_OURS] += 1
                    else:
                        ip = self.accept_frame(<uint8_t*>h + h.tp_mac, bs - off - h.tp_mac,
                                               h.tp_snaplen, h.tp_len, &lens[n])
                        if ip != NULL:
                            pkts[n] = ip
                            n += 1
            if self.pkt_left == 0:
                self.in_block = False
                self.walked += 1
                self.cur_block += 1
                if self.cur_block == <uint32_t>self.block_nr:
                    self.cur_block = 0
                if self.walked == <uint32_t>self.block_nr:
                    break       # every block is ours until rx_release
        return n

    cdef int rx_burst(self, const uint32_t* ev, uint8_t** pkts, uint32_t* lens, int max) noexcept nogil:
        cdef int n = 0, got
        cdef uint64_t icmp0
        if self.ring != NULL:
            if self.tpacket_version == 2:
                n = self.walk_v2(pkts, lens, max)
            else:
                n = self.walk_v3(pkts, lens, max)
            if n == 0:
                self.hand_back()    # nothing handed out: give the walked frames back now
        if n > 0:
            self.pc[P_RX_PACKETS] += n
        if self.slow is not None and n < max and ev[1] != 0:
            icmp0 = self.slow.pc[P_ICMP_ERRORS]
            got = self.slow.rx_burst(ev + 1, pkts + n, lens + n, max - n)
            self.pc[P_ICMP_ERRORS] += self.slow.pc[P_ICMP_ERRORS] - icmp0
            if got > 0:
                self.pc[P_RX_SLOWPATH] += got
                self.pc[P_RX_PACKETS] += got
                n += got
        if n > 0:
            self.pc[P_RX_BATCHES] += 1
        return n

    cdef void rx_release(self) noexcept nogil:
        self.hand_back()
        if self.slow is not None:
            self.slow.rx_release()

    # ------------------------------------------------------------------ transmit

    cdef int tx_room(self) noexcept nogil:
        if (self.fills and not fd_writable(self.tx_fd)) or (self.slow is not None and self.slow.full()):
            self.pc[P_TX_FULL] += 1
            return 0
        return L2Port.tx_room(self)

    cdef void tx_flush(self) noexcept nogil:
        cdef int i, k = 0, nslow = 0, done = 0, r, e, sent = 0
        cdef nh_entry* ent
        cdef uint32_t n
        cdef uint64_t s_tx, s_kd, s_rf, s_te, s_ic
        if self.qn == 0:
            return
        pthread_mutex_lock(&self.nht.lock)
        for i in range(self.qn):
            n = self.q_len[i]
            ent = nh_find(&self.nht, self.q_dst[i], False)
            if ent == NULL or n + IP_HLEN > ent.mtu or self.tx_fd < 0:
                # no neighbour yet / too big for the link / other interface: the kernel's way
                if self.slow is not None:
                    self.slow.tx_add(self.q_frame[i], n, self.q_dst[i])
                    nslow += 1
                else:
                    self.pc[P_TX_ERRORS] += 1
                continue
            self.ip_id += 1
            l2l3_write(self.q_frame[i] - L2L3, ent, n + IP_HLEN, self.ip_id)
            self.out_iov[k].iov_base = self.q_frame[i] - L2L3
            self.out_iov[k].iov_len = n + L2L3
            k += 1
        pthread_mutex_unlock(&self.nht.lock)
        self.qn = 0
        while done < k:
            r = sys_.sendmmsg(self.tx_fd, self.out_msgs + done, k - done, sys_.MSG_DONTWAIT)
            if r < 0:
                e = sys_.errno
                if e == sys_.EINTR:
                    continue
                if e == sys_.ENOBUFS:
                    self.pc[P_KERNEL_DROPS] += 1      # the driver refused it (qdisc bypassed)
                elif e == sys_.EAGAIN:
                    # socket send buffer full: the rest would meet it too; no room until
                    # poll(2) says writable (tx_room)
                    self.pc[P_TX_RING_FULL] += k - done
                    self.fills = 1
                    break
                else:
                    self.pc[P_TX_ERRORS] += 1         # ENETDOWN, EMSGSIZE, ...
                done += 1
                continue
            done += r
            sent += r
        if nslow > 0:
            s_tx = self.slow.pc[P_TX_PACKETS]
            s_kd = self.slow.pc[P_KERNEL_DROPS]
            s_rf = self.slow.pc[P_TX_RING_FULL]
            s_te = self.slow.pc[P_TX_ERRORS]
            s_ic = self.slow.pc[P_ICMP_ERRORS]
            self.slow.tx_flush()
            self.pc[P_TX_SLOWPATH] += nslow
            sent += self.slow.pc[P_TX_PACKETS] - s_tx
            self.pc[P_KERNEL_DROPS] += self.slow.pc[P_KERNEL_DROPS] - s_kd
            self.pc[P_TX_RING_FULL] += self.slow.pc[P_TX_RING_FULL] - s_rf
            self.pc[P_TX_ERRORS] += self.slow.pc[P_TX_ERRORS] - s_te
            self.pc[P_ICMP_ERRORS] += self.slow.pc[P_ICMP_ERRORS] - s_ic
        if sent > 0:
            self.pc[P_TX_PACKETS] += sent
            self.pc[P_TX_BATCHES] += 1
