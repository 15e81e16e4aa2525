# cython: language_level=3
"""Contract of the compiled data plane (fastpptp/_gre.pyx): per-call state and the fast path.

All per-packet functions are ``noexcept nogil`` and touch no Python object; what they
produce goes to the engine's output sink (fastpptp/_sink.pxd), of which only the process()
one takes the GIL to make bytes.  The I/O loop is fastpptp/_ioloop.pyx.  Semantics:
fastpptp/_gre_ref.py, the readable twin.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from fastpptp._sys cimport pthread_mutex_t, mmsghdr, iovec, sockaddr_in
from fastpptp._mppe cimport mppe_state
from fastpptp._sink cimport Sink, ProcessSink, SlabSink
from fastpptp._rxwin cimport rx_window, rx_params, rx_pool, rx_out
from fastpptp._txwin cimport tx_window, TXQ_DEPTH, TXQ_SLOT

cdef enum:
    HEADROOM = 64           # free bytes in front of each packet in a slab row
    FRAME_SLACK = 32        # a GRE payload may exceed the MRU by the PPP/MPPE headers
    MAX_TUN = 256
    IO_ROW = 65536 + 128    # I/O slab row: a 64 KB read plus headroom and vnet header
    SEG_ROW = HEADROOM + 4096   # TSO segment row (segments are at most min(MTU, 4096))
    SEG_MAX = 256           # segments of one TSO super-packet
    GRO_MAX = 256           # delivered packets held for one coalescing pass
    RLQ_SLOT = 2048         # rate limit: largest IP packet its hold queue takes (larger: policed)

# Per-session counter indices: the order of dataplane.COUNTER_NAMES.
cdef enum:
    C_RX_PACKETS = 0
    C_RX_BYTES
    C_TX_PACKETS
    C_TX_BYTES
    C_RX_CONTROL
    C_TX_CONTROL
    C_TX_ACKS
    C_LOST
    C_REORDERED
    C_DROP_MALFORMED
    C_DROP_UNKNOWN_CALL
    C_DROP_WRONG_SOURCE
    C_DROP_SEQ_JUMP
    C_DROP_NO_ROOM
    C_QFULL_RX_CONTROL
    C_QFULL_TX_CONTROL
    C_QFULL_EVENT
    C_DROP_DUPLICATE
    C_DROP_TOO_OLD
    C_DROP_REORDER_TIMEOUT
    C_DROP_QUEUE_FULL
    C_DROP_WINDOW_FULL
    C_DROP_MPPE
    C_DROP_NOT_READY
    C_DROP_RATE_LIMIT
    C_ICMP_ERRORS
    C_DROP_NO_ROUTE          # totals only
    N_COUNTERS

cdef enum:
    TUN_FREE = 0            # tun_owner[]: who put the fd in the TUN table
    TUN_FROM_START = 1      # start(tun_fds): the slot lives until stop()
    TUN_ADDED = 2           # add_tun(): the slot lives until remove_tun()


cdef struct rl_item:
    uint16_t proto
    uint32_t len

# Rate limit (token bucket) of one direction of a session, and its hold queue
# (docs/DESIGN.md "Rate limits"; semantics: fastpptp/_gre_ref.py _Bucket).
cdef struct rate_bucket:
    double rate             # bytes per second; 0: unlimited
    double burst            # bucket size, bytes
    double tokens           # may go below 0 after a packet larger than the burst
    double last             # time of the last refill; < 0: none yet
    uint32_t qmax           # bytes the hold queue may hold
    uint32_t qbytes
    int qhead
    int qcount
    rl_item* q              # rate_limit_queue items, allocated on first use
    uint8_t* qmem           # rate_limit_queue x (HEADROOM + RLQ_SLOT)

cdef struct session:
    uint16_t call_id
    uint16_t peer_call_id
    uint32_t peer_be        # peer IPv4, network byte order (as in the IP header)
    int tun
    uint32_t peer_ppd
    int tx_acfc
    int tx_pfc
    uint32_t mtu
    int ipv4
    int ipv6
    int rl_on               # a rate limit is set or a hold queue is not empty
    # RFC 2637 §4.2-4.4, Linux pptp.c names.  Receive side: seq_recv, ack_sent, the ack
    # timer, the reorder ring (fastpptp/_rxwin.pxd); its hot fields lead, in the lines
    # prefetch_call warms
    rx_window rx
    # send side: seq_sent, ack_recv, the peer's window, opt-in flow control (_txwin.pxd)
    tx_window tx
    int mppe_on
    uint64_t c[N_COUNTERS]
    # timer list (sessions with a deadline or queued data), insertion order
    int in_timers
    session* tnext
    session* tprev
    int has_rl_dl           # a rate-limit hold queue waits for tokens until rl_dl
    double rl_dl
    rate_bucket rl_tx       # TUN -> GRE
    rate_bucket rl_rx       # GRE -> TUN
    # MPPE (RFC 3078), one state per direction: last, so that the fields every packet
    # touches share a few cache lines (10 000 calls do not fit in the CPU caches)
    mppe_state mppe_tx
    mppe_state mppe_rx

cdef struct route_entry:
    uint8_t fam             # 0 empty, 4, 6
    uint16_t call_id
    uint8_t key[16]

cdef struct ctl_entry:
    int32_t call_id         # -1: cancelled (session removed)
    uint32_t proto
    uint32_t len
    uint8_t* data


cdef class Engine:
    cdef readonly object config
    cdef pthread_mutex_t lock
    cdef session** calls            # 65536 pointers, by our call ID
    cdef int nsessions
    cdef int tun_count[MAX_TUN]
    cdef session* tun_single[MAX_TUN]  # the session of a TUN that has exactly one
    cdef object peer_strs           # call ID -> peer address str (for gre_out)
    cdef route_entry* routes
    cdef uint32_t route_cap
    cdef uint32_t route_count
    cdef session* thead
    cdef session* ttail
    cdef double next_dl             # I/O mode: earliest deadline (lower bound)
    cdef uint64_t totals_c[N_COUNTERS]
    # config, copied to C
    cdef int batch
    cdef uint32_t cfg_mtu
    cdef uint32_t mru
    cdef uint32_t max_frame
    # receive windows (fastpptp/_rxwin.pxd): their parameters, the reorder frames all
    # calls share (sized at construction), what one window call asks of the engine
    cdef rx_params rxp
    cdef rx_pool rxpool
    cdef rx_out rxo
    cdef int flow_control
    cdef int clamp
    cdef int rl_depth               # config.rate_limit_queue
    # control queues
    cdef int efd
    cdef int wake_fd
    cdef ctl_entry* ctlq            # to Python
    cdef uint8_t* ctlq_mem
    cdef int ctlq_cap
    cdef int ctlq_head
    cdef int ctlq_count
    cdef ctl_entry* ctlo            # from Python (send_control) to the wire
    cdef uint8_t* ctlo_mem
    cdef int ctlo_head
    cdef int ctlo_count
    cdef uint8_t* work              # process(): one row, HEADROOM + 65535 + slack
    cdef uint8_t* ackbuf
    # the output sink (fastpptp/_sink.pxd): psink in process(), ssink in the slab calls,
    # the I/O loop between start() and stop(); set under the lock, before any emit
    cdef Sink sink
    cdef ProcessSink psink
    cdef SlabSink ssink
    cdef object io                  # fastpptp._ioloop.IoLoop from start() to stop(), else None
    cdef int running
    # the TUN table (add_tun/remove_tun/start); the I/O loop reads it under the lock
    cdef int ntun                   # TUN table high-water mark: indexes 0..ntun-1 may be used
    cdef int tun_fds[MAX_TUN]       # -1: free slot (add_tun reuses the lowest)
    cdef int tun_vnet[MAX_TUN]      # virtio_net_hdr length on each TUN (0, 10 or 12)
    cdef uint8_t tun_owner[MAX_TUN] # TUN_FREE, TUN_FROM_START (freed by stop), TUN_ADDED
    cdef uint64_t io_loops          # the I/O loop's wake-ups, over every run (Engine.loops)
    cdef uint64_t io_coalesced      # receive-coalescing waits, over every run (Engine.coalesced)

    cdef void _free_session(self, session* s) noexcept nogil
    cdef void _lock(self) noexcept
    cdef void _unlock(self) noexcept
    cdef void _kick(self) noexcept nogil
    cdef session* _get(self, int call_id) except NULL
    cdef session* route_lookup(self, const uint8_t* key, uint8_t fam) noexcept nogil
    cdef int _route_insert(self, const uint8_t* key, uint8_t fam, uint16_t call_id) noexcept nogil
    cdef void _route_delete_at(self, uint32_t i) noexcept nogil
    cdef int _route_grow(self) except -1
    cdef void _queue_control(self, session* s, uint32_t proto, const uint8_t* p, uint32_t n) noexcept nogil
    cdef void _arm(self, session* s, double dl) noexcept nogil
    cdef void _timer_unlink(self, session* s) noexcept nogil
    cdef double _next_deadline(self) noexcept nogil
    cdef void fire_timers(self, double now) noexcept nogil
    cdef void _send_ack_only(self, session* s) noexcept nogil
    cdef void encap_one(self, int tun, uint8_t* pkt, uint32_t n, double now) noexcept nogil
    cdef session* _only_session(self, int tun) noexcept nogil
    cdef int _rl_admit(self, session* s, rate_bucket* b, uint16_t proto, uint8_t* p, uint32_t n, double now) noexcept nogil
    cdef void _rl_arm(self, session* s) noexcept nogil
    cdef uint8_t* _rl_take(self, session* s, rate_bucket* b, rl_item* out) noexcept nogil
    cdef void _rl_release(self, session* s, double now) noexcept nogil
    cdef session* _scan_tun_session(self, int tun) noexcept nogil
    cdef void _emit_data(self, session* s, uint16_t proto, uint8_t* pkt, uint32_t n, double now) noexcept nogil
    cdef void _emit_gre_hdr(self, session* s, uint8_t* p, uint32_t L, double now) noexcept nogil
    cdef void flush_control(self, double now) noexcept nogil
    cdef void decap_one(self, uint8_t* d, uint32_t n, double now) noexcept nogil
    cdef void prefetch_call(self, const uint8_t* d, uint32_t n, int stage) noexcept nogil
    cdef void _on_ack(self, session* s, uint32_t ack, double now) noexcept nogil
    cdef void _on_seq(self, session* s, uint32_t seq, uint8_t* f, uint32_t n, double now) noexcept nogil
    cdef void _rx_act(self, session* s, double now) noexcept nogil
    cdef void _ctl_full(self, session* s, int cause) noexcept nogil
    cdef void _deliver(self, session* s, uint8_t* f, uint32_t n, double now) noexcept nogil
    cdef void _tun_highwater(self) noexcept
    cdef void _tun_release_started(self) noexcept
