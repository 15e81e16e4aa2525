# cython: language_level=3
"""The engine's output sink: where a decapsulated IP packet (for a TUN) and a built GRE
packet (for a peer) go.  docs/DESIGN.md "Engine internals".

The engine core (fastpptp/_gre.pyx) frames and deframes without knowing who consumes the
result; it holds one ``Sink`` and calls its two methods, always with the engine lock held:

* ``to_tun(tun, p, n)``: the IP packet ``p[0:n]`` for TUN index ``tun``.  0 only when the
  sink has no room for it (the slab sink: no row left), and the engine then counts it
  ``drop_no_room``; 1 otherwise (also when the sink loses it after the count, e.g. a TUN
  removed under the I/O loop).  ``p`` may point into the datagram being decapsulated
  (decrypted in place), into a reorder slot or a rate-limit hold queue.
* ``to_gre(call_id, dst_be, p, n)``: the GRE packet (GRE header + PPP frame) ``p[0:n]`` of
  call ``call_id`` for the IPv4 peer ``dst_be`` (network byte order).  At least 40 bytes
  before ``p`` are writable when ``p`` lies in a slab row (a row has HEADROOM in front).

Three sinks: ``ProcessSink`` (``process()``: Python bytes, the GIL is taken), ``SlabSink``
(``encap_slab``/``decap_slab``: results described in the caller's arrays), and the I/O
loop's (fastpptp/_ioloop.pxd ``IoLoop``: TUN writes with GRO holds, the GRE port).  A cdef
class rather than a struct of function pointers: the process sink owns Python lists and the
I/O sink a thread, slabs and a port, whose lifetimes the object's refcount manages; Cython's
vtable is the struct of function pointers, typed, and a subclass in another module (the
I/O loop) overrides the methods through this .pxd.  The call costs what the former
``self.mode`` branch did: one indirect call (Engine's cdef methods were already virtual).
"""
cimport cython
from libc.stdint cimport uint8_t, uint32_t, int32_t, int64_t


cdef class Sink:
    # the base class discards (tests and a not-yet-started engine never reach it)
    cdef bint to_tun(self, int tun, uint8_t* p, uint32_t n) noexcept nogil
    cdef void to_gre(self, int call_id, uint32_t dst_be, uint8_t* p, uint32_t n) noexcept nogil


@cython.final
cdef class ProcessSink(Sink):
    """process(): frames become Python bytes appended to the two lists (GIL taken)."""
    cdef object tun_out             # list of (tun, bytes), or None outside process()
    cdef object gre_out             # list of (peer address str, bytes), or None
    cdef object peer_strs           # the engine's dict: call ID -> peer address str


@cython.final
cdef class SlabSink(Sink):
    """encap_slab / decap_slab: nothing is copied out; results are offsets into the caller's
    slab, written to the caller's arrays (the pointers are valid for one call only)."""
    cdef size_t headroom            # bytes in front of each packet in a row (Engine.HEADROOM)
    cdef uint8_t* base              # the slab, [rows, row] bytes
    cdef size_t row
    cdef size_t rows
    cdef size_t cur                 # the row being encapsulated / decapsulated
    cdef size_t spare               # decap: next spare row (n, n+1, ...) for released packets
    cdef int first                  # decap: row cur has yielded nothing yet
    cdef int32_t* free_rows         # decap: rows < cur that yielded nothing, lowest first
    cdef size_t free_cap
    cdef size_t free_head
    cdef size_t free_n
    cdef int32_t* o_tun             # decap: out_tun / out_off / out_len
    cdef int64_t* o_off
    cdef uint32_t* o_len
    cdef uint32_t* o_dst            # encap: out_dst [rows, 3]; NULL in decap (acks dropped)
    cdef int o_n                    # entries written (the call's return value)

    cdef int reserve(self, size_t n) except -1
    cdef void begin_encap(self, uint8_t* base, size_t row, uint32_t* o_dst) noexcept nogil
    cdef void begin_decap(self, uint8_t* base, size_t row, size_t rows, size_t n,
                          int32_t* o_tun, int64_t* o_off, uint32_t* o_len) noexcept nogil
    cdef void row_begin(self, size_t i) noexcept nogil
    cdef void row_end(self, size_t i) noexcept nogil
    cdef void end(self) noexcept nogil
