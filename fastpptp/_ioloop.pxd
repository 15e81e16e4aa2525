# cython: language_level=3
"""The engine's I/O loop: its own thread, without the GIL, between Engine.start() and
Engine.stop() (fastpptp/_ioloop.pyx; docs/DESIGN.md "Engine internals").

``IoLoop`` is the engine's third output sink (fastpptp/_sink.pxd): IP packets are written
to the TUN table's fds (held for GRO on a TUN with a virtio_net_hdr), GRE packets go to the
GRE port (fastpptp/_greport.pxd).  It owns what only the running loop needs: the epoll set
(TUN fds, the port's fds, the engine's wake eventfd), the TUN read slab, the TSO segment
slab, the GRO hold, the port's tx scratch, the thread.  The engine core (sessions, routes,
windows, timers, the TUN table) stays in fastpptp/_gre.pyx: this module cimports Engine,
and _gre imports this one at run time in start() (no circular cimport).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from fastpptp._sink cimport Sink
from fastpptp._gre cimport Engine
from fastpptp._greport cimport GrePort


cdef class IoLoop(Sink):
    cdef Engine eng                 # strong: the thread runs the engine; Engine.stop() drops us
    cdef readonly GrePort port      # the GRE port, from start() to stop() (the caller's)
    cdef readonly uint64_t icmp_base    # port.pc[P_ICMP_ERRORS] at start()
    cdef int ep                     # epoll fd; -1 once closed
    cdef int stopping
    cdef object thread
    cdef int batch
    cdef int offload
    cdef uint8_t* seg_slab          # TSO segments of one super-packet, SEG_ROW each
    cdef uint32_t* seg_lens
    cdef uint8_t** gro_ptrs         # delivered packets held for one coalescing pass
    cdef uint32_t* gro_lens
    cdef int gro_n
    cdef int gro_tun
    cdef uint8_t* gro_dst
    cdef uint8_t** rx_ptrs          # what port.rx_burst returned (batch entries)
    cdef uint32_t* rx_lens
    cdef uint8_t* rx_cur            # the datagram being decapsulated: [rx_cur, rx_cur_end) stays
    cdef uint8_t* rx_cur_end        # valid until port.rx_release, so GRO may hold it
    cdef uint8_t* tun_slab          # rows of tun_np (numpy, [batch, IO_ROW])
    cdef object tun_np              # the TUN read slab (numpy array), kept alive here
    cdef uint8_t* scratch           # copies of frames not in a slab, PORT_HEADROOM in front
    cdef size_t scratch_used
    cdef size_t scratch_cap
    cdef int out_n                  # frames given to port.tx_add since its last tx_flush
    cdef uint64_t* port_pc          # port.pc (the loop counts tun_paused there)
    cdef int paused                 # back-pressure: the port had no room, TUNs not polled
    cdef int coalesce_us            # EngineConfig.rx_coalesce_us

    cdef bint to_tun(self, int tun, uint8_t* p, uint32_t n) noexcept nogil
    cdef void to_gre(self, int call_id, uint32_t dst_be, uint8_t* p, uint32_t n) noexcept nogil
    cdef void _free(self) noexcept
    cdef void flush_gre(self) noexcept nogil
    cdef void flush_tun(self) noexcept nogil
    cdef void write_tun(self, int tun, uint8_t* p, uint32_t n) noexcept nogil
    cdef void tun_read(self, int t, uint8_t* row, uint32_t n, double now) noexcept nogil
    cdef void tun_events(self, uint32_t events) noexcept nogil
    cdef void run(self) noexcept nogil
