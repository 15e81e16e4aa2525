# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The engine's output sinks for process() and the slab API (contract: fastpptp/_sink.pxd;
the I/O loop's sink is fastpptp/_ioloop.pyx)."""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t, int32_t, int64_t
from libc.stdlib cimport realloc, free
from libc.string cimport memcpy

cimport fastpptp._sys as sys_


cdef class Sink:
    cdef bint to_tun(self, int tun, uint8_t* p, uint32_t n) noexcept nogil:
        return 1

    cdef void to_gre(self, int call_id, uint32_t dst_be, uint8_t* p, uint32_t n) noexcept nogil:
        pass


cdef class ProcessSink(Sink):
    def __init__(self, dict peer_strs):
        self.peer_strs = peer_strs
        self.tun_out = None
        self.gre_out = None

    cdef bint to_tun(self, int tun, uint8_t* p, uint32_t n) noexcept nogil:
        with gil:
            self.tun_out.append((tun, PyBytes_FromStringAndSize(<char*>p, n)))
        return 1

    cdef void to_gre(self, int call_id, uint32_t dst_be, uint8_t* p, uint32_t n) noexcept nogil:
        with gil:
            self.gre_out.append((self.peer_strs[call_id], PyBytes_FromStringAndSize(<char*>p, n)))


cdef class SlabSink(Sink):
    def __init__(self, size_t headroom):
        self.headroom = headroom

    def __dealloc__(self):
        free(self.free_rows)

    cdef int reserve(self, size_t n) except -1:
        """Room for n entries in the free-row list (decap_slab; called with the GIL)."""
        cdef int32_t* fr
        if self.free_cap < n:
            fr = <int32_t*>realloc(self.free_rows, n * sizeof(int32_t))
            if fr == NULL:
                raise MemoryError()
            self.free_rows = fr
            self.free_cap = n
        return 0

    cdef void begin_encap(self, uint8_t* base, size_t row, uint32_t* o_dst) noexcept nogil:
        self.base = base
        self.row = row
        self.o_dst = o_dst
        self.o_n = 0

    cdef void begin_decap(self, uint8_t* base, size_t row, size_t rows, size_t n,
                          int32_t* o_tun, int64_t* o_off, uint32_t* o_len) noexcept nogil:
        self.base = base
        self.row = row
        self.rows = rows
        self.spare = n
        self.free_head = 0
        self.free_n = 0
        self.o_dst = NULL
        self.o_tun = o_tun
        self.o_off = o_off
        self.o_len = o_len
        self.o_n = 0

    cdef void row_begin(self, size_t i) noexcept nogil:
        self.cur = i
        self.first = 1

    cdef void row_end(self, size_t i) noexcept nogil:
        if self.first:                      # nothing left in row i: free for releases
            self.free_rows[self.free_head + self.free_n] = <int32_t>i
            self.free_n += 1

    cdef void end(self) noexcept nogil:
        """The caller's arrays are given back: no pointer into them is kept."""
        self.base = NULL
        self.o_dst = NULL
        self.o_tun = NULL
        self.o_off = NULL
        self.o_len = NULL

    cdef bint to_tun(self, int tun, uint8_t* p, uint32_t n) noexcept nogil:
        cdef size_t off, r
        cdef uint8_t* row = self.base + self.cur * self.row
        if p >= row and p + n <= row + self.row:
            # the row's own packet, decapsulated in place: it stays where it is
            self.first = 0
            off = <size_t>(p - self.base)
        else:
            # released from the reorder buffer: never into the current row, whose
            # datagram is still being read; a row already done that yielded nothing,
            # else a spare row n, n+1, ...
            if self.headroom + n > self.row:
                return 0
            if self.free_n > 0:
                r = <size_t>self.free_rows[self.free_head]
                self.free_head += 1
                self.free_n -= 1
            elif self.spare < self.rows:
                r = self.spare
                self.spare += 1
            else:
                return 0
            off = r * self.row + self.headroom
            memcpy(self.base + off, p, n)
        self.o_tun[self.o_n] = tun
        self.o_off[self.o_n] = off
        self.o_len[self.o_n] = n
        self.o_n += 1
        return 1

    cdef void to_gre(self, int call_id, uint32_t dst_be, uint8_t* p, uint32_t n) noexcept nogil:
        cdef size_t i
        if self.o_dst != NULL:
            i = self.cur
            self.o_dst[i * 3] = sys_.ntohl(dst_be)
            self.o_dst[i * 3 + 1] = <uint32_t>(p - (self.base + self.cur * self.row))
            self.o_dst[i * 3 + 2] = n
            self.o_n += 1
