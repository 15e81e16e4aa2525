# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A thin Python view of the compiled receive window (fastpptp/_rxwin.pxd) for the table
test, tests/engine/test_rxwin.py: the same API as fastpptp._rxwin_ref.RxWindowForTest, and
it acts on each rx_out as fastpptp/_gre.pyx does (counts, delivers in order, gives the pool
frames back).  The engine itself only cimports the .pxd's inline functions."""
from libc.stdint cimport uint32_t
from libc.stdlib cimport free
from libc.string cimport memset
from cpython.bytes cimport PyBytes_FromStringAndSize

_DROP_COUNTER = {RXW_DUPLICATE: "drop_duplicate", RXW_TOO_OLD: "drop_too_old",
                 RXW_SEQ_JUMP: "drop_seq_jump", RXW_NO_ROOM: "drop_no_room"}


cdef class RxWindowForTest:
    cdef rx_params p
    cdef rx_pool pool
    cdef rx_window w
    cdef rx_out o
    cdef public list delivered
    cdef public dict counters

    def __cinit__(self, int depth=64, double timeout=0.1, double ack_delay=0.02, int pool=1024):
        if not 1 <= depth <= 1024 or not 1 <= pool <= 1 << 20:
            raise ValueError("depth 1..1024, pool 1..2^20")
        memset(&self.w, 0, sizeof(rx_window))
        rxw_params(&self.p, depth, timeout, ack_delay)
        # a frame holds the test's frames: 2048 bytes (the engine's is MRU + 32)
        if rxpool_init(&self.pool, pool, 2048) < 0 or rxw_init(&self.w, &self.p) < 0:
            raise MemoryError()
        self.o.frames = rxw_out_alloc(&self.p)
        if self.o.frames == NULL:
            raise MemoryError()
        self.delivered = []
        self.counters = dict.fromkeys(("lost", "drop_reorder_timeout", "reordered",
                                       "drop_duplicate", "drop_too_old", "drop_seq_jump",
                                       "drop_no_room"), 0)

    def __dealloc__(self):
        rxw_release(&self.w, &self.p, &self.pool)
        rxpool_release(&self.pool)
        free(self.o.frames)

    cdef void _act(self):
        cdef int i
        c = self.counters
        c["lost"] += self.o.lost
        c["drop_reorder_timeout"] += self.o.lost_timeout
        c["reordered"] += self.o.reordered
        if self.o.drop != RXW_TAKEN:
            c[_DROP_COUNTER[self.o.drop]] += 1
        for i in range(self.o.n):
            self.delivered.append(PyBytes_FromStringAndSize(<char*>self.o.frames[i].f,
                                                            self.o.frames[i].n))
        rxw_done(&self.pool, &self.o)

    def receive(self, seq, frame, double now):
        cdef bytes b = bytes(frame)
        cdef uint32_t s = seq & 0xFFFFFFFF
        if not 0 < len(b) <= 2048:
            raise ValueError("a frame is 1..2048 bytes")
        rxw_receive(&self.w, &self.p, &self.pool, s, <unsigned char*><char*>b, len(b), now,
                    &self.o)
        self._act()

    def fire(self, double now):
        rxw_fire(&self.w, &self.p, &self.pool, now, &self.o)
        self._act()

    def ack_due(self, double now):
        return rxw_ack_sent(&self.w) if rxw_ack_due(&self.w, now) else None

    def ack_taken(self):
        return rxw_ack_taken(&self.w) if rxw_ack_pending(&self.w) else None

    @property
    def seq_recv(self):
        return self.w.seq_recv

    @property
    def buffered(self):
        return self.w.count

    @property
    def pool_free(self):
        return self.pool.nfree

    def deadline(self):
        d = rxw_deadline(&self.w, &self.p)
        return None if d >= 1e300 else d
