# cython: language_level=3
"""The send side of a call in one place: GRE sequence numbers out, acks in, and the opt-in
flow control of RFC 2637 §4.2-4.4 / Appendix A -- a struct and ``noexcept nogil`` functions
over it.  Readable twin: fastpptp/_txwin_ref.py (TxWindow); table test on both:
tests/engine/test_txwin.py; contract: docs/DESIGN.md "Flow control".

Theory of operation.  ``seq_sent`` is the last sequence number we sent (the first is 0),
``ack_recv`` the last of ours the peer acknowledged (Linux pptp.c's names); an ack outside
(ack_recv, seq_sent] is ignored (RFC 1982 serial comparison).  With flow control on
(EngineConfig.flow_control, off by default: Windows and Linux peers do not enforce the
window, [MS-PTPT]) at most ``window`` packets are unacknowledged: more wait in a bounded
queue (TXQ_DEPTH packets of at most TXQ_SLOT bytes, else drop_window_full).  The window
starts at the peer's Packet Receive Window (``rwin``), grows by one per ack up to it, and
halves when no ack comes within the adaptive ack time-out ``ato`` (Appendix A: SRTT/DEV
from one probe in flight, ATO = SRTT + 4 DEV in [0.1, 10] s, doubled on each time-out,
the outstanding packets then taken as lost).

The functions never call the engine: they return what it must do (arm its timer list at
a deadline, send a held packet now).  The queue's rows are allocated on the first packet a
closed window holds (TXQ_DEPTH x (TXQ_SLOT + TXQ_HEADROOM) = 135 kB: reserving that for
every call at add_session would cost 135 MB at 1000 calls for an opt-in feature); without
memory the packet is refused like one over the queue's depth.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy

cdef enum:
    TXQ_DEPTH = 64          # flow control: packets held per call while the window is full
    TXQ_SLOT = 2048         # flow control: largest IP packet that can be held
    TXQ_HEADROOM = 64       # free bytes in front of a held packet (= _gre's HEADROOM, checked)

cdef struct txq_item:
    uint16_t proto
    uint32_t len
    uint8_t* row            # TXQ_SLOT + TXQ_HEADROOM bytes, packet at TXQ_HEADROOM

cdef struct tx_window:
    uint32_t seq_sent       # last sequence number sent (RFC 2637 §4.3)
    uint32_t ack_recv       # last of ours the peer acknowledged
    uint32_t rwin           # the peer's Packet Receive Window (§2.7-2.9), >= 1
    uint32_t window         # flow control: unacknowledged packets allowed, 1..rwin
    int has_dl
    double dl               # flow control: the ack time-out
    int has_srtt
    double srtt
    double rttdev
    double ato              # adaptive ack time-out (Appendix A)
    int has_probe
    uint32_t probe_seq      # the packet whose ack gives the next RTT sample
    double probe_time
    txq_item* q             # TXQ_DEPTH items, allocated on first use
    uint8_t* qmem
    int qhead
    int qcount


cdef inline int32_t txw_sdiff(uint32_t a, uint32_t b) noexcept nogil:
    """a - b as a signed serial-number distance (RFC 1982, 32-bit)."""
    return <int32_t>(a - b)

cdef inline void txw_init(tx_window* w, uint32_t rwin) noexcept nogil:
    """A new call (w zeroed by the caller); ``rwin`` >= 1."""
    w.seq_sent = 0xFFFFFFFF
    w.ack_recv = 0xFFFFFFFF
    w.rwin = rwin
    w.window = rwin
    w.ato = 1.0                         # Appendix A: before any RTT sample

cdef inline void txw_set_rwin(tx_window* w, uint32_t rwin) noexcept nogil:
    """The peer's window arrived (PNS: its Outgoing-Call-Reply): the window starts there."""
    w.rwin = rwin
    w.window = rwin

cdef inline void txw_release(tx_window* w) noexcept nogil:
    free(w.q)
    free(w.qmem)
    w.q = NULL
    w.qmem = NULL
    w.qcount = 0

cdef inline uint32_t txw_next_seq(tx_window* w, bint fc, double now, bint* arm,
                                  double* arm_dl) noexcept nogil:
    """A GRE packet with a sequence number goes out at ``now``: its number.  With flow
    control, it may become the RTT probe and start the ack time-out: then ``arm[0]`` is set
    and ``arm_dl[0]`` is the deadline for the caller's timer list."""
    w.seq_sent += 1
    arm[0] = 0
    if fc:
        if not w.has_probe:
            w.has_probe = 1
            w.probe_seq = w.seq_sent
            w.probe_time = now
        if not w.has_dl:
            w.has_dl = 1
            w.dl = now + w.ato
            arm[0] = 1
            arm_dl[0] = w.dl
    return w.seq_sent

cdef inline bint txw_on_ack(tx_window* w, uint32_t ack, bint fc, double now,
                            double* arm_dl) noexcept nogil:
    """The peer acknowledged ``ack`` at ``now``.  Returns 1 when the caller must arm its
    timer list at ``arm_dl[0]`` (the ack time-out restarted, or held packets may go now)."""
    cdef double sample, diff
    cdef bint arm = 0
    if txw_sdiff(ack, w.ack_recv) <= 0 or txw_sdiff(ack, w.seq_sent) > 0:
        return 0                            # old, or for a packet we never sent
    w.ack_recv = ack
    if not fc:
        return 0
    # Appendix A: RTT estimate -> adaptive ack time-out; the window opens again
    if w.has_probe and txw_sdiff(ack, w.probe_seq) >= 0:
        sample = now - w.probe_time
        if not w.has_srtt:
            w.has_srtt = 1
            w.srtt = sample
            w.rttdev = sample / 2
        else:
            diff = sample - w.srtt
            w.srtt += diff / 8
            w.rttdev += ((diff if diff >= 0 else -diff) - w.rttdev) / 4
        w.ato = w.srtt + 4 * w.rttdev
        if w.ato < 0.1:                     # ATO in [0.1, 10] s
            w.ato = 0.1
        if w.ato > 10.0:
            w.ato = 10.0
        w.has_probe = 0
    if w.window + 1 < w.rwin:
        w.window += 1
    else:
        w.window = w.rwin
    arm_dl[0] = 1e300
    if txw_sdiff(w.seq_sent, w.ack_recv) > 0:
        w.has_dl = 1
        w.dl = now + w.ato
        arm = 1
        arm_dl[0] = w.dl
    else:
        w.has_dl = 0
    if w.qcount:
        arm = 1
        if now < arm_dl[0]:
            arm_dl[0] = now
    return arm

cdef inline bint txw_must_hold(const tx_window* w, bint fc) noexcept nogil:
    """A packet to send must wait: flow control on and the window full, or others wait."""
    return fc and (w.qcount > 0 or txw_sdiff(w.seq_sent, w.ack_recv) >= <int32_t>w.window)

cdef inline int txw_hold(tx_window* w, uint16_t proto, const uint8_t* pkt,
                         uint32_t n) noexcept nogil:
    """Queue an IP packet until the window opens (the caller arms its timer list at now):
    0, or -1 when the queue is full, the packet is larger than a slot, or there is no
    memory for the queue (drop_window_full)."""
    cdef int i
    cdef txq_item* it
    if w.qcount >= TXQ_DEPTH or n > TXQ_SLOT:
        return -1
    if w.q == NULL:
        w.q = <txq_item*>calloc(TXQ_DEPTH, sizeof(txq_item))
        w.qmem = <uint8_t*>malloc(<size_t>TXQ_DEPTH * (TXQ_SLOT + TXQ_HEADROOM))
        if w.q == NULL or w.qmem == NULL:
            txw_release(w)
            return -1
        for i in range(TXQ_DEPTH):
            w.q[i].row = w.qmem + <size_t>i * (TXQ_SLOT + TXQ_HEADROOM)
    it = &w.q[(w.qhead + w.qcount) % TXQ_DEPTH]
    w.qcount += 1
    it.proto = proto
    it.len = n
    memcpy(it.row + TXQ_HEADROOM, pkt, n)
    return 0

cdef inline void txw_fire(tx_window* w, double now) noexcept nogil:
    """The ack time-out at ``now`` (flow control only): Appendix A, no ack within it ->
    assume the window was lost, back off the time-out, halve the window."""
    if w.has_dl and w.dl <= now:
        w.ack_recv = w.seq_sent
        w.has_dl = 0
        w.has_probe = 0
        w.ato = w.ato * 2 if w.ato * 2 < 10.0 else 10.0
        w.window = w.window // 2 if w.window > 1 else 1

cdef inline txq_item* txw_pop(tx_window* w) noexcept nogil:
    """The next held packet when the window has room (send it before the next call: its
    row is reused only once another packet is held), else NULL."""
    cdef txq_item* it
    if w.qcount > 0 and txw_sdiff(w.seq_sent, w.ack_recv) < <int32_t>w.window:
        it = &w.q[w.qhead]
        w.qhead = (w.qhead + 1) % TXQ_DEPTH
        w.qcount -= 1
        return it
    return NULL

cdef inline double txw_deadline(const tx_window* w) noexcept nogil:
    """The ack time-out (1e300: none)."""
    return w.dl if w.has_dl else 1e300

cdef inline bint txw_timers_pending(const tx_window* w) noexcept nogil:
    """The call needs the timer list: an ack time-out, or held packets."""
    return w.has_dl or w.qcount > 0
