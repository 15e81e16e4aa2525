# cython: language_level=3
"""The GRE port: the one narrow batch contract between the data-plane engine and the OS's
GRE transport (wireguard-go's ``conn.Bind`` in spirit).  docs/DESIGN.md "GRE port".

The engine's I/O thread only ever calls the four ``noexcept nogil`` methods below, with the
engine lock held, from that one thread:

* ``rx_burst(ev, pkts, lens, max)``: up to ``max`` received IPv4 datagrams that carry GRE
  (``pkts[i]`` points at the IPv4 header, ``lens[i]`` is its length), read only from the fds
  whose epoll events ``ev[k]`` (index = position in ``fds``) are non-zero, plus whatever a
  ring already holds (no syscall just to hear EAGAIN).  The memory stays valid and writable
  (the engine decrypts in place, and holds rows for GRO) until ``rx_release``.
* ``rx_release()``: the engine is done with everything the last ``rx_burst`` returned (ring
  frames go back to the kernel).  Called once after every ``rx_burst`` that returned > 0.
* ``tx_add(frame, n, dst_be)``: queue one GRE packet (GRE header + payload, ``n`` bytes) for
  the IPv4 peer ``dst_be`` (network byte order).  ``PORT_HEADROOM`` bytes before ``frame``
  are the port's to write (an L2/L3 header goes there), and ``frame`` stays valid and
  unchanged until the next ``tx_flush``.  The engine never queues more than ``tx_cap``
  frames between two flushes.
* ``tx_flush()``: send what is queued; whatever cannot go is counted, never retried forever.
* ``tx_room()``: how many frames ``tx_add``/``tx_flush`` can take now without dropping any
  for lack of room (socket send buffer, transmit ring, free umem frames); may reap
  completions and kick the kernel, at most one cheap syscall.  0 counts ``tx_full``.  The
  I/O loop asks before reading a TUN and reads no more than this: when the port is full it
  stops reading the TUNs (``tun_paused``), so the kernel's TUN queue drops packets before
  they are encrypted (an MPPE coherency count spent on a frame that is then thrown away
  is a gap the peer must follow), as any tunnel's does.

Every port keeps the kernel's raw IPPROTO_GRE socket as its slow path: fragmented GRE (which
the kernel reassembles), GRE arriving on another interface, and frames it cannot send itself
(no neighbour entry yet, larger than the link MTU, another egress interface) go through it,
counted as ``rx_slowpath`` / ``tx_slowpath``.  Nothing is dropped silently.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from fastpptp._l2 cimport nh_table

cdef enum:
    PORT_HEADROOM = 40      # writable bytes before a tx frame: Ethernet 14 + IPv4 20, rounded up
    PORT_MAX_FDS = 16       # fds one port asks the engine to poll

# Per-port counter indices: the order of greport.PORT_COUNTER_NAMES (fastpptp/net/greport.py).
cdef enum:
    P_RX_PACKETS = 0        # GRE datagrams handed to the engine
    P_RX_BATCHES            # rx_burst calls that returned > 0
    P_TX_PACKETS            # GRE packets the kernel accepted
    P_TX_BATCHES            # tx_flush calls that sent > 0
    P_RX_RING_FULL          # frames the kernel dropped because our receive ring/buffer was full
    P_TX_RING_FULL          # frames dropped because the send ring / socket buffer was full
    P_KERNEL_DROPS          # drops the kernel reported at send (ENOBUFS with IP_RECVERR, qdisc/driver)
    P_TX_ERRORS             # other send errors (EMSGSIZE, ENETUNREACH, ...)
    P_RX_SLOWPATH           # GRE that came through the raw socket (fragments, other interfaces)
    P_TX_SLOWPATH           # frames sent through the raw socket (no neighbour, too big, ...)
    P_ICMP_ERRORS           # ICMP errors about earlier packets (IP_RECVERR error queue)
    P_RX_NOT_OURS           # frames the fast path saw that were not PPTP GRE for us (ring only)
    P_TX_FULL               # tx_room() calls that found no room (back-pressure on the TUN reads)
    P_TUN_PAUSED            # times the I/O loop stopped reading its TUNs for a full port
    N_PORT_COUNTERS


# poll(2) POLLOUT without waiting: the socket's send buffer has room (ports' tx_room)
cdef bint fd_writable(int fd) noexcept nogil


cdef class GrePort:
    cdef readonly str kind          # "raw", "packet", "xdp" (and "fake" in tests)
    cdef readonly int tx_cap        # frames between two tx_flush calls, at most
    cdef int nfds
    cdef int fds[PORT_MAX_FDS]      # what the engine's epoll watches (EPOLLIN)
    cdef uint64_t pc[N_PORT_COUNTERS]

    cdef int rx_burst(self, const uint32_t* ev, uint8_t** pkts, uint32_t* lens, int max) noexcept nogil
    cdef void rx_release(self) noexcept nogil
    cdef void tx_add(self, uint8_t* frame, uint32_t n, uint32_t dst_be) noexcept nogil
    cdef void tx_flush(self) noexcept nogil
    cdef int tx_room(self) noexcept nogil


cdef class L2Port(GrePort):
    """A port that writes its own Ethernet + IPv4 headers at ``tx_flush`` (PacketPort,
    XdpPort): ``tx_add`` only queues (frame, length, peer), up to ``tx_cap`` entries (more are
    counted as P_TX_RING_FULL); the headers come from the nexthop table ``nht``
    (fastpptp/_l2.pxd).  Subclasses call ``queue_alloc`` once ``tx_cap`` is set and
    ``nh_init`` on ``nht``, set ``own_mac``, and empty the queue (``qn = 0``) in tx_flush."""
    cdef int qn                 # frames queued since the last flush
    cdef uint8_t** q_frame
    cdef uint32_t* q_len
    cdef uint32_t* q_dst
    cdef nh_table nht           # peer -> next-hop MAC, source, MTU; with its lock
    cdef uint8_t own_mac[6]

    cdef int queue_alloc(self) except -1


cdef class RawPort(GrePort):
    """The raw IPPROTO_GRE socket (recvmmsg/sendmmsg), with IP_RECVERR; also every other
    port's slow path.  An AF_UNIX datagram socket is accepted as the test fake (frames are
    then sent without an address)."""
    cdef int fd
    cdef int inet
    cdef int batch
    cdef object slab_np
    cdef uint8_t* slab
    cdef void* in_msgs          # mmsghdr[batch]
    cdef void* in_iov           # iovec[batch]
    cdef void* out_msgs         # mmsghdr[tx_cap]
    cdef void* out_iov          # iovec[tx_cap]
    cdef void* out_addr         # sockaddr_in[tx_cap]
    cdef int out_n
    cdef int fills              # a flush met a full send buffer (EAGAIN) once: from then on
                                # tx_room asks poll(2) whether it is writable (a port that never
                                # fills, e.g. raw on a veth, pays no syscall for it)

    cdef void drain_errqueue(self) noexcept nogil
    cdef bint full(self) noexcept nogil
