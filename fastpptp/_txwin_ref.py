"""The send side of a call in one place, pure Python: the readable twin of
fastpptp/_txwin.pxd (same functions, same results; tests/engine/test_txwin.py runs one
table on both).

RFC 2637 §4.2-4.4 / Appendix A.  ``seq_sent`` is the last sequence number we sent (the
first is 0), ``ack_recv`` the last of ours the peer acknowledged; an ack outside
(ack_recv, seq_sent] is ignored.  With flow control on (opt-in: Windows and Linux peers do
not enforce the window, [MS-PTPT]) at most ``window`` packets are unacknowledged; more wait
in a bounded queue (TXQ_DEPTH packets of at most TXQ_SLOT bytes, else
``drop_window_full``).  The window starts at the peer's Packet Receive Window, grows by one
per ack up to it and halves when no ack comes within the adaptive ack time-out (SRTT/DEV
from one probe in flight, ATO = SRTT + 4 DEV in [0.1, 10] s, doubled on each time-out; the
outstanding packets are then taken as lost).

The functions never call the engine: they say what it must do (arm its timer list, send a
held packet now).
"""
from __future__ import annotations

from collections import deque

from fastpptp.dataplane import TXQ_DEPTH, TXQ_SLOT

U32 = 0xFFFFFFFF
ATO_MIN, ATO_MAX, ATO_INIT = 0.1, 10.0, 1.0   # Appendix A ack time-out bounds (seconds)


def serial_diff(a: int, b: int) -> int:
    """a - b as a signed 32-bit serial-number distance (RFC 1982)."""
    return ((a - b + 0x80000000) & U32) - 0x80000000


class TxWindow:
    """The send side of one call; field names as the compiled tx_window's."""

    __slots__ = ("seq_sent", "ack_recv", "rwin", "window", "deadline", "srtt", "rttdev",
                 "ato", "probe", "txq")

    def __init__(self, rwin: int):
        self.seq_sent = U32         # last sequence number sent (first sent is 0)
        self.ack_recv = U32         # last of ours the peer acknowledged
        self.rwin = max(1, rwin)    # the peer's Packet Receive Window (§2.7-2.9)
        self.window = self.rwin     # flow control: unacknowledged packets allowed
        self.deadline: float | None = None     # the ack time-out
        self.srtt: float | None = None
        self.rttdev = 0.0
        self.ato = ATO_INIT
        self.probe: tuple[int, float] | None = None   # (seq, sent_at) RTT sample in flight
        self.txq: deque = deque()   # (protocol, IP packet) held while the window is full

    def set_rwin(self, rwin: int) -> None:
        """The peer's window arrived (PNS: its Outgoing-Call-Reply): the window starts there."""
        self.rwin = rwin
        self.window = rwin

    def next_seq(self, fc: bool, now: float) -> tuple[int, bool]:
        """A GRE packet with a sequence number goes out: (its number, arm the timer list)."""
        self.seq_sent = (self.seq_sent + 1) & U32
        arm = False
        if fc:
            if self.probe is None:
                self.probe = (self.seq_sent, now)
            if self.deadline is None:
                self.deadline = now + self.ato
                arm = True
        return self.seq_sent, arm

    def on_ack(self, ack: int, fc: bool, now: float) -> bool:
        """The peer acknowledged ``ack``: True when the caller must arm its timer list (the
        ack time-out restarted, or held packets may go now)."""
        if serial_diff(ack, self.ack_recv) <= 0 or serial_diff(ack, self.seq_sent) > 0:
            return False                    # old, or for a packet we never sent
        self.ack_recv = ack
        if not fc:
            return False
        # Appendix A: RTT estimate -> adaptive ack time-out; the window opens again
        if self.probe is not None and serial_diff(ack, self.probe[0]) >= 0:
            sample = now - self.probe[1]
            if self.srtt is None:
                self.srtt, self.rttdev = sample, sample / 2
            else:
                diff = sample - self.srtt
                self.srtt += diff / 8
                self.rttdev += (abs(diff) - self.rttdev) / 4
            self.ato = min(ATO_MAX, max(ATO_MIN, self.srtt + 4 * self.rttdev))
            self.probe = None
        self.window = min(self.rwin, self.window + 1)
        arm = False
        if serial_diff(self.seq_sent, self.ack_recv) > 0:
            self.deadline = now + self.ato
            arm = True
        else:
            self.deadline = None
        return arm or bool(self.txq)

    def must_hold(self, fc: bool) -> bool:
        """A packet to send must wait: flow control on and the window full, or others wait."""
        return fc and (bool(self.txq) or serial_diff(self.seq_sent, self.ack_recv) >= self.window)

    def hold(self, proto: int, pkt) -> bool:
        """Queue an IP packet until the window opens (the caller arms its timer list); False
        when the queue is full or the packet is larger than a slot (drop_window_full)."""
        if len(self.txq) >= TXQ_DEPTH or len(pkt) > TXQ_SLOT:
            return False
        self.txq.append((proto, bytes(pkt)))
        return True

    def fire(self, now: float) -> None:
        """The ack time-out (flow control only): Appendix A, no ack within it -> assume the
        window was lost, back off the time-out, halve the window."""
        if self.deadline is not None and self.deadline <= now:
            self.ack_recv = self.seq_sent
            self.deadline = None
            self.probe = None
            self.ato = min(ATO_MAX, self.ato * 2)
            self.window = max(1, self.window // 2)

    def pop(self) -> tuple[int, bytes] | None:
        """The next held packet when the window has room, else None."""
        if self.txq and serial_diff(self.seq_sent, self.ack_recv) < self.window:
            return self.txq.popleft()
        return None

    def timers_pending(self) -> bool:
        return self.deadline is not None or bool(self.txq)


class TxWindowForTest:
    """The table test's view of one send window (the same class on the compiled side,
    fastpptp._txwin.TxWindowForTest), acting as the engine does: ``send`` frames a packet
    (its sequence number) or holds it, ``fire`` runs the time-out and sends what the window
    lets go."""

    def __init__(self, rwin=64, flow_control=True):
        self.w = TxWindow(rwin)
        self.fc = flow_control

    def send(self, payload: bytes, now: float):
        """("sent", seq), ("held", None) or ("drop", None) (drop_window_full)."""
        if self.w.must_hold(self.fc):
            return ("held", None) if self.w.hold(0x21, payload) else ("drop", None)
        return ("sent", self.w.next_seq(self.fc, now)[0])

    def ack(self, ack: int, now: float) -> bool:
        return self.w.on_ack(ack & U32, self.fc, now)

    def fire(self, now: float) -> list[tuple[bytes, int]]:
        """The held packets sent now, as (payload, sequence number)."""
        out = []
        if self.fc:
            self.w.fire(now)
            while (item := self.w.pop()) is not None:
                out.append((item[1], self.w.next_seq(self.fc, now)[0]))
        return out

    def state(self) -> dict:
        return {"seq_sent": self.w.seq_sent, "ack_recv": self.w.ack_recv,
                "window": self.w.window, "held": len(self.w.txq), "ato": self.w.ato,
                "deadline": self.w.deadline}
