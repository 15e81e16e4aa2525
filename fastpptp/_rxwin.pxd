# cython: language_level=3
"""GRE receive window and reorder buffer (RFC 2637 §4.3-4.4): one struct per call and
``noexcept nogil`` functions over it.  Readable twin: fastpptp/_rxwin_ref.py (RxWindow);
table test on both: tests/engine/test_rxwin.py; contract: docs/DESIGN.md "Receive window".

Theory of operation.  GRE carries sequence numbers but nothing is retransmitted: the
receiver orders, drops duplicates and gives gaps up.  ``seq_recv`` is the last sequence
number taken in order (Linux pptp.c's name); ``hist`` bit k says seq_recv - k was
delivered (duplicate detection behind the window); packets up to ``depth`` ahead wait in
``ring`` (slot ``seq & ring_mask``: a power of two divides 2^32, so the index stays
continuous across the wrap); a gap is given up after ``timeout``.  A packet ``d`` ahead
with depth <= d < jump_at makes room at once (the oldest gaps are lost); further ahead is a
jump candidate, taken only when the old region fell silent while the new one was live: for
``timeout`` (idle), or for 32 mean gaps of the stream, >= 1 ms (fast, after a burst loss
under a flood: issue 9); see _rxw_jump for why neither lets a spoofer move a live window.

The functions never call the engine.  They fill an ``rx_out`` the caller acts on, in this
order: arm its timer list once at ``arm_dl`` when ``arm`` is set; count ``lost``,
``lost_timeout``, ``reordered`` and the ``drop`` reason (only when ``counted``: an
in-order packet touches no counter line it does not need); deliver ``frames[0..n-1]`` in
order (``buf`` < 0: the caller's own frame, else a frame of the reorder pool); then give
the pool frames back with ``rxw_done``.  Frames released by one call go back to the pool
only after the caller delivered them, so a frame buffered by the same call (the window
made room, then buffered) never lands in a frame not yet delivered.

Memory (why a pool): per call only the ring's metadata, ``(ring_mask + 1) x
sizeof(rx_slot)`` = 64 x 24 B = 1.5 kB at the default depth, allocated when the call is
added (rxw_init).  The frames themselves (MRU + 32 bytes each) come from one ``rx_pool``
per engine sized at construction: a session with a gap open uses as many frames as it holds,
never depth x MRU up front (98 kB a call at the defaults, which at 10 000 calls would be
1 GB of memory nobody uses).  Nothing is allocated on the I/O thread; an empty pool refuses
the frame (RXW_NO_ROOM: drop_no_room), an LCP Echo placeholder needs no frame.

Why a .pxd of inline functions: the window sits on every received packet's path, and
inline functions are compiled into _gre's own C file (a cimported function of another
extension module is called through a capsule pointer, never inlined).  fastpptp/_rxwin.pyx
only wraps the struct for the table test (RxWindowForTest).
"""
from libc.stdint cimport uint8_t, uint32_t, int32_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy

cdef enum:
    RXW_JUMP_SLACK = 64     # one packet moves the window by at most max(depth, 64)
    RXW_HIST = 64           # sequence numbers behind the window remembered as delivered
    RXW_GAP_K = 32          # fast jump: the new region seen for RXW_GAP_K mean gaps ...
    RXW_JUMP_FAST_N = 4     # ... and holding this many packets near each other
    RXW_JUMP_FLOOR_US = 1000    # ... and for at least 1 ms whatever the stream's rate:
                                # the peer's own pauses (scheduling) are not a burst loss

# rx_out.drop: why rxw_receive did not take the packet (at most one reason per packet)
cdef enum:
    RXW_TAKEN = 0           # delivered, buffered, or an LCP Echo delivered behind the window
    RXW_DUPLICATE = 1       # drop_duplicate: delivered (history) or buffered already
    RXW_TOO_OLD = 2         # drop_too_old: behind the window and not in the history
    RXW_SEQ_JUMP = 3        # drop_seq_jump: far ahead, refused (a jump candidate)
    RXW_NO_ROOM = 4         # drop_no_room: the reorder pool has no free frame

cdef struct rx_params:      # one per engine, shared by its calls
    int depth               # reorder_depth: a packet at most depth - 1 ahead is buffered
    uint32_t ring_mask      # ring slots - 1: the smallest power of two >= depth, minus 1
    int jump_at             # depth + max(depth, RXW_JUMP_SLACK): this far ahead is a jump
    double timeout          # reorder_timeout (s): a gap held this long is given up
    double ack_delay        # an ack pending this long goes out alone

cdef struct rx_pool:        # the reorder frames of one engine: a stack of free indexes
    uint8_t* mem            # cap x frame bytes
    size_t frame            # bytes per frame: MRU + FRAME_SLACK
    int32_t* free
    int32_t nfree
    int32_t cap

cdef struct rx_slot:
    double arrival
    uint32_t seq
    uint32_t len
    int32_t buf             # pool frame; -1: an LCP Echo delivered early (a placeholder)
    uint8_t used

cdef struct rx_window:
    # what an in-order packet touches first: one cache line (10 000 calls do not fit the
    # CPU caches; the engine prefetches the session's first lines)
    uint32_t seq_recv       # last sequence number taken in order (RFC 2637 §4.3)
    uint32_t ack_sent       # last ack we sent (piggybacked or alone)
    uint64_t hist           # bit k: seq_recv - k was delivered
    double last             # arrival of the last packet taken into the window
    int inst_n              # packets taken at the instant ``last``
    double ack_dl           # when a pending ack goes out alone
    int started             # a first packet arrived (peers start at 0 or at 1)
    int has_ack_dl
    int has_jump
    int count               # slots in use
    int has_reorder_dl
    int jump_n              # refused packets near each other (>= 2: a confirmed region)
    uint32_t jump_seq       # the latest refused far-ahead sequence number
    # the stream's rate, learnt once per arrival instant (_rxw_taken): off the first line
    double gap              # EWMA (1/8) of the gaps between arrival instants (batches)
    double pkts             # EWMA (1/8) of the packets taken per instant
    double pend             # the gap that ended at ``last``, learnt when its count is known
    double jump_t0          # when the candidate region's first packet was refused
    double jump_tp          # when its latest packet was refused (a batch fully processed
                            # by the next, later instant)
    double reorder_dl       # oldest buffered arrival + timeout
    rx_slot* ring           # ring_mask + 1 slots, from rxw_init

cdef struct rx_frame:       # a frame for the caller to deliver
    uint8_t* f
    uint32_t n
    int32_t buf             # pool frame to give back after delivery; -1: the caller's own

cdef struct rx_out:         # what one rxw_receive / rxw_fire asks of the caller
    rx_frame* frames        # capacity ring_mask + 2 (rxw_out_alloc)
    int n
    int pooled              # of those, pool frames (rxw_done gives them back)
    int counted             # any of the counts below is not zero
    uint64_t lost           # sequence numbers given up (lost)
    uint64_t lost_timeout   # of those, given up by the reorder timeout (drop_reorder_timeout)
    int reordered           # the packet was buffered (reordered)
    int drop                # RXW_*
    int arm                 # put the call on the timer list, with a deadline at arm_dl
    double arm_dl           # the earliest deadline armed (1e300: none)


# --------------------------------------------------------------------------- set-up
cdef inline void rxw_params(rx_params* p, int depth, double timeout, double ack_delay) noexcept nogil:
    cdef uint32_t ring = 1
    while ring < <uint32_t>depth:
        ring *= 2
    p.depth = depth
    p.ring_mask = ring - 1
    p.jump_at = depth + (depth if depth > RXW_JUMP_SLACK else RXW_JUMP_SLACK)
    p.timeout = timeout
    p.ack_delay = ack_delay

cdef inline int rxpool_init(rx_pool* pool, int32_t cap, size_t frame) noexcept nogil:
    """0, or -1 when out of memory (nothing held then)."""
    cdef int32_t i
    pool.mem = <uint8_t*>malloc(<size_t>cap * frame)
    pool.free = <int32_t*>malloc(<size_t>cap * sizeof(int32_t))
    if pool.mem == NULL or pool.free == NULL:
        free(pool.mem)
        free(pool.free)
        pool.mem = NULL
        pool.free = NULL
        pool.cap = pool.nfree = 0
        return -1
    pool.frame = frame
    pool.cap = cap
    pool.nfree = cap
    for i in range(cap):
        pool.free[i] = cap - 1 - i          # frame 0 first: a quiet engine touches one page
    return 0

cdef inline void rxpool_release(rx_pool* pool) noexcept nogil:
    free(pool.mem)
    free(pool.free)
    pool.mem = NULL
    pool.free = NULL
    pool.cap = pool.nfree = 0

cdef inline int32_t rxpool_get(rx_pool* pool) noexcept nogil:
    if pool.nfree == 0:
        return -1
    pool.nfree -= 1
    return pool.free[pool.nfree]

cdef inline void rxpool_put(rx_pool* pool, int32_t b) noexcept nogil:
    pool.free[pool.nfree] = b
    pool.nfree += 1

cdef inline uint8_t* rxpool_frame(rx_pool* pool, int32_t b) noexcept nogil:
    return pool.mem + <size_t>b * pool.frame

cdef inline int rxw_init(rx_window* w, const rx_params* p) noexcept nogil:
    """A new call's window (w zeroed by the caller): 0, or -1 when out of memory."""
    w.seq_recv = 0xFFFFFFFF
    w.ack_sent = 0xFFFFFFFF
    w.ring = <rx_slot*>calloc(p.ring_mask + 1, sizeof(rx_slot))
    return 0 if w.ring != NULL else -1

cdef inline void rxw_release(rx_window* w, const rx_params* p, rx_pool* pool) noexcept nogil:
    """The call ends: its buffered frames go back to the pool, the ring is freed."""
    cdef uint32_t i
    if w.ring == NULL:
        return
    for i in range(p.ring_mask + 1):
        if w.ring[i].used and w.ring[i].buf >= 0:
            rxpool_put(pool, w.ring[i].buf)
    free(w.ring)
    w.ring = NULL
    w.count = 0

cdef inline rx_frame* rxw_out_alloc(const rx_params* p) noexcept nogil:
    """The frames array an rx_out needs (NULL: out of memory): one call releases at most
    every buffered frame (fewer than depth) plus its own."""
    return <rx_frame*>malloc((p.ring_mask + 2) * sizeof(rx_frame))


# --------------------------------------------------------------------------- small parts
cdef inline int32_t rxw_sdiff(uint32_t a, uint32_t b) noexcept nogil:
    """a - b as a signed serial-number distance (RFC 1982, 32-bit)."""
    return <int32_t>(a - b)

cdef inline bint rxw_is_lcp_echo(const uint8_t* f, uint32_t n) noexcept nogil:
    """LCP Echo-Request/Reply (RFC 1661 §5.8), sent with FF 03 and a 2-byte protocol."""
    return (n >= 5 and f[0] == 0xFF and f[1] == 0x03 and f[2] == 0xC0 and f[3] == 0x21
            and (f[4] == 9 or f[4] == 10))

cdef inline void rxw_out_reset(rx_out* o) noexcept nogil:
    o.n = 0
    o.pooled = 0
    o.counted = 0
    o.lost = 0
    o.lost_timeout = 0
    o.reordered = 0
    o.drop = RXW_TAKEN
    o.arm = 0
    o.arm_dl = 1e300

cdef inline void _rxw_arm(rx_out* o, double dl) noexcept nogil:
    o.arm = 1
    if dl < o.arm_dl:
        o.arm_dl = dl

cdef inline void _rxw_emit(rx_out* o, uint8_t* f, uint32_t n, int32_t buf) noexcept nogil:
    o.frames[o.n].f = f
    o.frames[o.n].n = n
    o.frames[o.n].buf = buf
    o.n += 1
    if buf >= 0:
        o.pooled += 1

cdef inline void _rxw_lost(rx_out* o, int32_t gap, bint timeout) noexcept nogil:
    o.counted = 1
    o.lost += <uint64_t>gap
    if timeout:
        o.lost_timeout += <uint64_t>gap

cdef inline double rxw_jump_due(const rx_window* w, const rx_params* p) noexcept nogil:
    """When a confirmed jump candidate (two or more refused packets near each other) is
    taken by the timer: the window silent for ``timeout``; never (1e300) otherwise."""
    if w.has_jump and w.jump_n >= 2:
        return w.last + p.timeout
    return 1e300

cdef inline double rxw_jump_silence(const rx_window* w, const rx_params* p) noexcept nogil:
    """How long a far-ahead region must be seen, the window taking nothing meanwhile, before
    the window follows it at once (_rxw_jump): RXW_GAP_K mean gaps between this stream's
    packets (gap / pkts: time per instant over packets per instant, i.e. 1 / its rate), at
    least RXW_JUMP_FLOOR_US, at most ``timeout`` (then it is the idle rule of today)."""
    cdef double s = RXW_GAP_K * w.gap / w.pkts
    if s < RXW_JUMP_FLOOR_US * 1e-6:
        s = RXW_JUMP_FLOOR_US * 1e-6
    if s > p.timeout:
        s = p.timeout
    return s

cdef inline double _rxw_jump_stride(const rx_window* w, const rx_params* p) noexcept nogil:
    """The longest step between two instants at which the region is seen that still counts
    as seeing it continuously: half of S, or two of this stream's instant gaps when its
    batches are slower.  A longer step is most likely the receiver off the CPU -- spoofed
    packets queued before it and genuine ones queued behind them have not been read yet,
    so the step proves no silence and the region's evidence starts again."""
    cdef double g = rxw_jump_silence(w, p) * 0.5
    if 2 * w.gap > g:
        g = 2 * w.gap
    return g

cdef inline void _rxw_taken(rx_window* w, const rx_params* p, double now) noexcept nogil:
    """A packet taken into the window at ``now``; the candidate region is forgotten.  The
    stream's rate is learnt per arrival *instant* (the I/O loop gives a whole batch one
    ``now``): when an instant is over (the next one begins) the EWMAs (1/8, as RFC 6298's
    SRTT) learn the gap that ended at it (capped at ``timeout``: an idle minute is no
    stronger evidence than an idle 0.1 s) and the packets it took; their ratio is the mean
    gap between packets whatever the batching -- a receiver stall ends in a long gap *and*
    a large backlog batch, read as the rate it is, not as a stream falling silent."""
    cdef double g
    if now > w.last:
        w.gap += (w.pend - w.gap) * 0.125
        w.pkts += (<double>w.inst_n - w.pkts) * 0.125
        g = now - w.last
        if g > p.timeout:
            g = p.timeout
        w.pend = g
        w.inst_n = 1
        w.last = now
    else:
        w.inst_n += 1
    w.has_jump = 0

cdef inline void _rxw_advance(rx_window* w, const rx_params* p, uint32_t seq, bint delivered,
                              double now, rx_out* o) noexcept nogil:
    """seq_recv moves forward to ``seq``; the history remembers what was delivered and an
    ack becomes pending (sent alone after ack_delay unless data carries it)."""
    cdef int32_t k = rxw_sdiff(seq, w.seq_recv)
    if k < 64:
        w.hist = w.hist << k
    else:
        w.hist = 0
    if delivered:
        w.hist |= 1
    w.seq_recv = seq
    if not w.has_ack_dl:
        w.has_ack_dl = 1
        w.ack_dl = now + p.ack_delay
        _rxw_arm(o, w.ack_dl)

cdef inline void _rxw_rearm(rx_window* w, const rx_params* p, rx_out* o) noexcept nogil:
    """The reorder deadline follows the oldest buffered frame; none when nothing is held."""
    cdef uint32_t i
    cdef double m = 1e300
    if w.count == 0:
        w.has_reorder_dl = 0
        return
    for i in range(p.ring_mask + 1):
        if w.ring[i].used and w.ring[i].arrival < m:
            m = w.ring[i].arrival
    w.has_reorder_dl = 1
    w.reorder_dl = m + p.timeout
    _rxw_arm(o, w.reorder_dl)

cdef inline void _rxw_drain(rx_window* w, const rx_params* p, rx_pool* pool, double now,
                            rx_out* o) noexcept nogil:
    """Release the buffered frames that are now in order."""
    cdef rx_slot* sl
    cdef uint32_t nxt
    while w.count > 0:
        nxt = w.seq_recv + 1
        sl = &w.ring[nxt & p.ring_mask]
        if not (sl.used and sl.seq == nxt):
            break
        sl.used = 0
        w.count -= 1
        _rxw_advance(w, p, nxt, 1, now, o)
        if sl.buf >= 0:
            _rxw_emit(o, rxpool_frame(pool, sl.buf), sl.len, sl.buf)
    _rxw_rearm(w, p, o)

cdef inline uint32_t _rxw_lowest_buffered(const rx_window* w, const rx_params* p) noexcept nogil:
    cdef int k
    cdef uint32_t q
    cdef const rx_slot* sl
    for k in range(1, p.depth + 1):
        q = w.seq_recv + <uint32_t>k
        sl = &w.ring[q & p.ring_mask]
        if sl.used and sl.seq == q:
            return q
    return w.seq_recv + 1

cdef inline void _rxw_skip_to(rx_window* w, const rx_params* p, rx_pool* pool,
                              uint32_t new_expected, double now, bint timeout,
                              rx_out* o) noexcept nogil:
    """Give up every gap before new_expected: buffered frames there are released in order,
    missing sequence numbers counted lost."""
    cdef uint32_t exp = w.seq_recv + 1, q
    cdef int32_t span = rxw_sdiff(new_expected, exp), gap
    cdef int32_t k, lim
    cdef rx_slot* sl
    if span <= 0:
        return
    if w.count > 0:
        lim = span if span < p.depth else p.depth
        for k in range(lim):
            q = exp + <uint32_t>k
            sl = &w.ring[q & p.ring_mask]
            if sl.used and sl.seq == q:
                _rxw_lost(o, rxw_sdiff(q, w.seq_recv + 1), timeout)
                sl.used = 0
                w.count -= 1
                _rxw_advance(w, p, q, 1, now, o)
                if sl.buf >= 0:
                    _rxw_emit(o, rxpool_frame(pool, sl.buf), sl.len, sl.buf)
    gap = rxw_sdiff(new_expected, w.seq_recv + 1)
    if gap > 0:
        _rxw_lost(o, gap, timeout)
        _rxw_advance(w, p, new_expected - 1, 0, now, o)
    _rxw_drain(w, p, pool, now, o)

cdef inline bint _rxw_jump(rx_window* w, const rx_params* p, rx_pool* pool, uint32_t seq,
                           double now, rx_out* o) noexcept nogil:
    """``seq`` is ``jump_at`` or more ahead of the window. RFC 2637 §4.4: the peer never
    retransmits, so after a burst loss larger than the window the window must follow the
    peer -- but a blind spoof (a live call ID, the peer's address, a sequence number far
    ahead: issue 10) must not drag it away from the real stream. So a far-ahead packet is
    refused (drop_seq_jump) and remembered as the candidate of a new region; a packet taken
    into the window forgets it. The window follows the region only on proof that the old
    region went silent *while the new one was live* -- a spoofer can add packets but cannot
    silence the peer's:

    * idle rule (as before): a second packet near the candidate (within max(depth,
      JUMP_SLACK)) when the window has had no packet for ``timeout`` -- at once, or by
      rxw_fire (to just past the candidate) when the window falls silent later;
    * fast rule (issue 9: a receiver's kernel drops runs of hundreds of datagrams under a
      flood; waiting ``timeout`` refused ~90k genuine frames in 3 s): the region holds
      RXW_JUMP_FAST_N packets near each other, and between its first packet (jump_t0) and
      an earlier instant at which it was seen again (jump_tp) at least S =
      rxw_jump_silence passed: RXW_GAP_K (32) times this stream's own mean gap between
      packets, at least 1 ms, at most ``timeout``. At 50k-200k packets/s S is the 1 ms floor.
      The region must be seen continuously: a step between its instants longer than
      _rxw_jump_stride restarts jump_t0.

    Why a spoofer cannot use the fast rule against a live stream. (1) Any packet taken into
    the window forgets the candidate, so the region's evidence must span S with *no*
    genuine packet processed meanwhile. (2) jump_tp must be an instant *earlier* than now:
    the I/O loop gives one ``now`` to a batch, so a spoofed run leading a batch that also
    holds genuine packets (a receiver that stalled, with both queued) proves nothing until
    that batch has been processed -- and its genuine packets forget the run; and a receiver
    stall between two instants of the run is not counted as silence (_rxw_jump_stride):
    the spoofs read after it were queued before the genuine packets not read yet. (3) S is 32
    mean gaps: a live stream, regular or Poisson (P(no packet for 32 mean gaps) = e^-32),
    delivers a packet within S, and the floor covers the peer's own scheduling pauses.
    What moves the window is a real pause of the stream longer than S while the spoofer
    sends -- the idle rule's exposure, at a shorter pause for a busy stream; a session idle
    for ``timeout`` was exposed before, too. A young window (gap starts at ``timeout``) or a
    slow stream is capped at ``timeout``: then the fast rule, measured from the region's
    first packet, is no weaker than the idle rule, measured from the window's last.

    Returns 1 when ``seq`` is now the next expected (the gaps before it given up: lost), 0
    when the packet is refused."""
    cdef int32_t k
    cdef bint near
    if w.has_jump:
        k = rxw_sdiff(seq, w.jump_seq)
        # near: the region's own reordering may reach what makes room in the window
        near = k != 0 and k > p.depth - p.jump_at and k < p.jump_at - p.depth
        if near and (now - w.last >= p.timeout
                     or (w.jump_n + 1 >= RXW_JUMP_FAST_N and now > w.jump_tp
                         and w.jump_tp - w.jump_t0 >= rxw_jump_silence(w, p))):
            w.has_jump = 0
            _rxw_skip_to(w, p, pool, seq, now, 0, o)
            return 1
        o.drop = RXW_SEQ_JUMP
        o.counted = 1
        if k == 0:
            return 0                        # the candidate again: confirms nothing
        if near:
            w.jump_n += 1
            if now - w.jump_tp > _rxw_jump_stride(w, p):
                w.jump_t0 = now             # a stall inside the evidence: it starts again
        else:
            w.jump_n = 1                    # another region: its own evidence from now
            w.jump_t0 = now
    else:
        o.drop = RXW_SEQ_JUMP
        o.counted = 1
        w.jump_n = 1
        w.jump_t0 = now
    w.has_jump = 1
    w.jump_seq = seq
    w.jump_tp = now
    if w.jump_n >= 2:                       # confirmed: the timer takes it if the window stays silent
        _rxw_arm(o, w.last + p.timeout)
    return 0


# --------------------------------------------------------------------------- the API
cdef inline void rxw_receive(rx_window* w, const rx_params* p, rx_pool* pool, uint32_t seq,
                             uint8_t* f, uint32_t n, double now, rx_out* o) noexcept nogil:
    """A data or control frame f[0:n] (0 < n <= the pool's frame size) with GRE sequence
    number ``seq`` arrived at ``now``.  Fills ``o`` (reset here): the first packet is taken
    whatever its number; the next expected is delivered and the buffer drains; ahead is
    buffered; behind is a duplicate, too old, or an LCP Echo delivered anyway (keepalives
    survive reordering, but only near the window: a window moved away from the peer makes
    echoes fail); far ahead is a jump (_rxw_jump)."""
    cdef int32_t d, back
    cdef int32_t buf = -1
    cdef bint echo
    cdef rx_slot* sl
    rxw_out_reset(o)
    if not w.started:
        w.started = 1
        w.seq_recv = seq - 1
        w.ack_sent = seq - 1                # nothing acked yet, whatever seq is
        w.last = now
        w.gap = p.timeout                   # nothing learnt yet: the fast jump waits timeout
        w.pkts = 1
        w.pend = p.timeout
        w.inst_n = 1
        _rxw_advance(w, p, seq, 1, now, o)
        _rxw_emit(o, f, n, -1)
        return
    d = rxw_sdiff(seq, w.seq_recv + 1)
    if d >= p.jump_at:
        # far beyond the window: a new region, or a blind spoof (see _rxw_jump)
        if not _rxw_jump(w, p, pool, seq, now, o):
            return
        w.last = now                        # the silence crossed is the loss, not a gap
        w.pend = w.gap
        w.inst_n = 0
        d = 0                               # the jump made seq the next expected
    elif d >= p.depth:
        # just beyond (a gap held open filled the buffer): give up the oldest gaps (lost)
        # to make room; one packet moves the window by at most max(depth, JUMP_SLACK)
        _rxw_skip_to(w, p, pool, seq - <uint32_t>p.depth + 1, now, 0, o)
        d = rxw_sdiff(seq, w.seq_recv + 1)
    if d == 0:
        _rxw_taken(w, p, now)
        _rxw_advance(w, p, seq, 1, now, o)
        _rxw_emit(o, f, n, -1)
        _rxw_drain(w, p, pool, now, o)
        return
    echo = rxw_is_lcp_echo(f, n)
    if d < 0:
        back = -d - 1
        if back < RXW_HIST and (w.hist >> back) & 1:
            o.drop = RXW_DUPLICATE
            o.counted = 1
        elif echo and back < RXW_HIST:
            # a keepalive arriving after its gap was given up: still delivered, but only
            # near the window, so a window moved away from the peer makes echoes fail
            _rxw_emit(o, f, n, -1)
        else:
            o.drop = RXW_TOO_OLD
            o.counted = 1
        return
    sl = &w.ring[seq & p.ring_mask]
    if sl.used and sl.seq == seq:
        o.drop = RXW_DUPLICATE
        o.counted = 1
        return
    if not echo:
        buf = rxpool_get(pool)
        if buf < 0:
            o.drop = RXW_NO_ROOM
            o.counted = 1
            return
    _rxw_taken(w, p, now)
    if echo:
        _rxw_emit(o, f, n, -1)              # delivered now; its slot is a placeholder
    sl.used = 1
    sl.seq = seq
    sl.buf = buf
    sl.len = n
    sl.arrival = now
    if buf >= 0:
        memcpy(rxpool_frame(pool, buf), f, n)
    w.count += 1
    o.reordered = 1
    o.counted = 1
    if not w.has_reorder_dl:
        w.has_reorder_dl = 1
        w.reorder_dl = now + p.timeout
        _rxw_arm(o, w.reorder_dl)

cdef inline void rxw_fire(rx_window* w, const rx_params* p, rx_pool* pool, double now,
                          rx_out* o) noexcept nogil:
    """The window's timers at ``now`` (o reset here): gaps held past the reorder timeout are
    given up (lost, drop_reorder_timeout), and a confirmed jump candidate whose window has
    been silent for the timeout is taken (the window moves just past it)."""
    rxw_out_reset(o)
    while w.has_reorder_dl and w.reorder_dl <= now:
        _rxw_skip_to(w, p, pool, _rxw_lowest_buffered(w, p), now, 1, o)
    if rxw_jump_due(w, p) <= now:
        # the new region is confirmed and the window silent: move to just past the
        # candidate (it and every gap before it lost)
        w.has_jump = 0
        _rxw_skip_to(w, p, pool, w.jump_seq + 1, now, 0, o)

cdef inline void rxw_done(rx_pool* pool, rx_out* o) noexcept nogil:
    """After the caller delivered o.frames: their pool frames are free again."""
    cdef int i
    if o.pooled:
        for i in range(o.n):
            if o.frames[i].buf >= 0:
                rxpool_put(pool, o.frames[i].buf)
    o.n = 0
    o.pooled = 0

cdef inline double rxw_deadline(const rx_window* w, const rx_params* p) noexcept nogil:
    """The window's earliest deadline (reorder gap, pending ack, jump); 1e300: none."""
    cdef double best = rxw_jump_due(w, p)
    if w.has_reorder_dl and w.reorder_dl < best:
        best = w.reorder_dl
    if w.has_ack_dl and w.ack_dl < best:
        best = w.ack_dl
    return best

cdef inline bint rxw_timers_pending(const rx_window* w, const rx_params* p) noexcept nogil:
    return w.has_reorder_dl or w.has_ack_dl or rxw_jump_due(w, p) < 1e300

cdef inline bint rxw_ack_pending(const rx_window* w) noexcept nogil:
    """An ack to piggyback on the next packet we send (RFC 2637 §4.4: only when changed)."""
    return w.started and w.seq_recv != w.ack_sent

cdef inline uint32_t rxw_ack_taken(rx_window* w) noexcept nogil:
    """A packet we send carries the ack: nothing pending, no ack-only packet needed."""
    w.ack_sent = w.seq_recv
    w.has_ack_dl = 0
    return w.seq_recv

cdef inline bint rxw_ack_due(rx_window* w, double now) noexcept nogil:
    """The ack timer at ``now``: 1 when an ack-only packet must go out (then send it with
    rxw_ack_sent); the timer is cleared either way once due."""
    if w.has_ack_dl and w.ack_dl <= now:
        w.has_ack_dl = 0
        return w.seq_recv != w.ack_sent
    return 0

cdef inline uint32_t rxw_ack_sent(rx_window* w) noexcept nogil:
    """An ack-only packet goes out: the value it carries."""
    w.ack_sent = w.seq_recv
    return w.seq_recv
