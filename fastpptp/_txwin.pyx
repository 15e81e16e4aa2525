# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A thin Python view of the compiled send window (fastpptp/_txwin.pxd) for the table
test, tests/engine/test_txwin.py: the same API as fastpptp._txwin_ref.TxWindowForTest,
acting as fastpptp/_gre.pyx does (send_data, fire_timers).  The engine itself only cimports
the .pxd's inline functions."""
from libc.stdint cimport uint32_t
from libc.string cimport memset
from cpython.bytes cimport PyBytes_FromStringAndSize


cdef class TxWindowForTest:
    cdef tx_window w
    cdef bint fc

    def __cinit__(self, int rwin=64, bint flow_control=True):
        if not 1 <= rwin <= 0xFFFF:
            raise ValueError("rwin 1..65535")
        memset(&self.w, 0, sizeof(tx_window))
        txw_init(&self.w, rwin)
        self.fc = flow_control

    def __dealloc__(self):
        txw_release(&self.w)

    def send(self, payload, double now):
        cdef bytes b = bytes(payload)
        cdef bint arm
        cdef double dl
        if txw_must_hold(&self.w, self.fc):
            if txw_hold(&self.w, 0x21, <const unsigned char*><char*>b, len(b)) < 0:
                return ("drop", None)
            return ("held", None)
        return ("sent", txw_next_seq(&self.w, self.fc, now, &arm, &dl))

    def ack(self, ack, double now):
        cdef double dl
        return bool(txw_on_ack(&self.w, ack & 0xFFFFFFFF, self.fc, now, &dl))

    def fire(self, double now):
        cdef txq_item* it
        cdef bint arm
        cdef double dl
        out = []
        if self.fc:
            txw_fire(&self.w, now)
            it = txw_pop(&self.w)
            while it != NULL:
                out.append((PyBytes_FromStringAndSize(<char*>it.row + TXQ_HEADROOM, it.len),
                            txw_next_seq(&self.w, self.fc, now, &arm, &dl)))
                it = txw_pop(&self.w)
        return out

    def state(self):
        return {"seq_sent": self.w.seq_sent, "ack_recv": self.w.ack_recv,
                "window": self.w.window, "held": self.w.qcount, "ato": self.w.ato,
                "deadline": self.w.dl if self.w.has_dl else None}
