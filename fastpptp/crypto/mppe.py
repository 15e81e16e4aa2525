"""Pure-Python MPPE (RFC 3078) with RFC 3079 rekeying: the readable twin of _mppe.pyx.

One object per direction: ``MppeEncryptor`` for what we send, ``MppeDecryptor`` for what we
receive, each built from that direction's start key (crypto/mschap.py) and the CCP result
(key strength in bits, stateful or stateless = CCP "H" bit clear/set).

Packet (the information field of PPP protocol 0x00FD, RFC 3078 §3):

    +-+-+-+-+---------------------+------------------------------------------+
    |A|B|C|D| coherency count (12)| RC4(PPP protocol (1-2 octets) + payload) |
    +-+-+-+-+---------------------+------------------------------------------+
    A = 0x80 flushed (RC4 re-initialised), C = 0x20 compressed (MPPC, unused),
    D = 0x10 encrypted.

Theory of operation (Linux drivers/net/ppp/ppp_mppe.c, which pppd drives; where it differs
from RFC 3078 we follow Linux, since interop beats the RFC):

  1. Start: session key = GetNewKeyFromSHA(start, start) salted to the strength, *no* RC4
     step (RFC 3079 §3.5; Linux mppe_rekey(initial_key=1)); RC4 is keyed with it; the
     coherency count starts at 4095 so the first packet carries 0.  The first packet does
     not carry A in stateful mode (Linux: "contrary to RFC 3078, sec. 3.1").
  2. Rekey (RFC 3078 §7.3): interim = GetNewKeyFromSHA(start, session);
     session = RC4(interim)(interim), salted (40-bit: D1 26 9E, 56-bit: D1); RC4 re-keyed.
  3. Stateless (RFC 3078 §7.2/§8.1): the sender rekeys before *every* packet (including the
     first) and sets A.  The receiver rekeys once per coherency count it advances, so it
     catches up over lost packets: any count 1..4095 ahead (mod 4096) is taken as that
     many steps forward, i.e. up to 4095 packets lost (older Linux ppp_mppe.c does the
     same).  The engine's GRE receive window delivers data frames in sequence order and
     drops late and duplicate ones before MPPE sees them, so a count far ahead is a loss,
     never a late packet; newer Linux takes counts > 2048 ahead as late and discards them,
     which after a burst of 2048+ losses rejects every later packet (a stuck session).
     Only the same count again (0 ahead) is dropped, without rekeying (MppeTooOld; Linux
     lets it through and decrypts it with a spent RC4 stream).  After 4096 or more losses
     the count has wrapped, which its 12 bits cannot show; the engine tells the decryptor
     how many GRE sequence numbers its receive window gave up (``add_lost``: each carried at
     most one count), and after 4095+ of them the decryptor tries ahead + 4096 w (w = 0,
     1, .. MAX_WRAPS, within that bound) and keeps the first whose first octets decrypt to
     data (``_sane_start``).  When none does, the keys are out of step for good: the engine sees inner
     protocols MPPE never carries (outside 0x0021..0x00FA) and, after a run of them,
     raises EV_MPPE_LOST_SYNC so the PPP link closes (docs/DESIGN.md, "Engine API").
  4. Stateful (RFC 3078 §7.1/§8.2): RC4 runs on across packets.  The sender rekeys and
     sets A on the "flag" packet (count & 0xFF == 0xFF) and on the first packet after a
     CCP Reset-Request.  The receiver rekeys on every A packet.  RFC 3078 says an A packet
     that is not a flag packet only re-initialises RC4 with the *current* session key;
     Linux rekeys instead, and so do we (a Linux peer would otherwise lose sync).
  5. Stateful loss: a count gap puts the receiver in "discard" state and raises
     MppeNeedReset once (the owner sends CCP Reset-Request, RFC 1962 §2.1); further packets
     raise MppeDiscarding until one with A arrives, which resyncs: one rekey per flag
     packet missed (per 256-count boundary crossed), then the usual A rekey.  A gap found
     on a packet that itself has A resyncs at once (Linux drops that packet and asks for
     a reset first; the keys come out the same).
"""
from __future__ import annotations

from Crypto.Cipher import ARC4

from ..errors import DecodeError, RemoteProtocolError
from .mschap import get_new_key_from_sha, key_length_for_bits, reduce_session_key

__all__ = [
    "MppeError", "MppeTruncated", "MppeNotEncrypted", "MppeNotFlushed", "MppeTooOld",
    "MppeNeedReset", "MppeDiscarding", "MppeEncryptor", "MppeDecryptor",
    "MPPE_BIT_FLUSHED", "MPPE_BIT_COMPRESSED", "MPPE_BIT_ENCRYPTED", "MPPE_OVERHEAD",
    "CCOUNT_SPACE", "MAX_CATCH_UP", "MAX_WRAPS", "MPPE_PROTO_MIN", "MPPE_PROTO_MAX", "parse_header",
]

MPPE_BIT_FLUSHED = 0x80     # A
MPPE_BIT_COMPRESSED = 0x20  # C (MPPC)
MPPE_BIT_ENCRYPTED = 0x10   # D
MPPE_OVERHEAD = 2
CCOUNT_SPACE = 4096
_CCOUNT_MASK = CCOUNT_SPACE - 1
# Stateless: how far ahead a packet may be and still be caught up with: the whole space
# but the current count (item 3 of the module doc; older Linux ppp_mppe.c).
MAX_CATCH_UP = CCOUNT_SPACE - 1
# Stateless: whole 4096-count wraps a gap may be followed over, at most, when the GRE
# window reports that many sequence numbers lost (== _mppe.pxd MPPE_MAX_WRAPS).
MAX_WRAPS = 16
LOST_CAP = 0x7FFFFFFF       # seq_lost saturates here (== _mppe.pxd MPPE_LOST_CAP)
# RFC 3078 §1 / Linux ppp_generic: MPPE carries only PPP protocols 0x0021..0x00FA (network
# data, never LCP/NCP/CCP); a decrypted inner protocol outside them means lost keys.
MPPE_PROTO_MIN = 0x0021
MPPE_PROTO_MAX = 0x00FA


# --- errors (codes equal the MPPE_ERR_* constants of _mppe.pxd) ----------------------------

class MppeError(RemoteProtocolError, ValueError):
    """A received MPPE packet was not decrypted (the peer's fault or the link's: drop it
    and count it as drop_mppe; never fatal by itself)."""

    code = 0


class MppeTruncated(DecodeError, MppeError):
    """Fewer than 2 header octets plus 1 octet of ciphertext."""

    code = -1


class MppeNotEncrypted(MppeError):
    """D bit clear, or C bit set (MPPC compression is never negotiated by us)."""

    code = -2


class MppeNotFlushed(MppeError):
    """Stateless packet, or stateful flag packet, without the A (flushed) bit."""

    code = -3


class MppeTooOld(MppeError):
    """Stateless: the same coherency count as the last one (a duplicate)."""

    code = -4


class MppeNeedReset(MppeError):
    """Stateful: a coherency count gap was just detected; send CCP Reset-Request."""

    code = -5


class MppeDiscarding(MppeError):
    """Stateful: still out of sync, waiting for a packet with A set."""

    code = -6


ERRORS_BY_CODE = {cls.code: cls for cls in (
    MppeTruncated, MppeNotEncrypted, MppeNotFlushed, MppeTooOld, MppeNeedReset,
    MppeDiscarding)}


def _sane_start(p: bytes) -> bool:
    """The first octets of a decrypted stateless frame look like data: PPP protocol IPv4
    (0x0021, or 0x21 with PFC) before a version-4 header, or IPv6 (0x0057) before version 6
    (a wrong key passes with probability ~2^-20)."""
    if len(p) >= 1 and p[0] & 1:        # PFC: a 1-octet protocol field (RFC 1661 §6.5)
        proto, o = p[0], 1
    elif len(p) >= 2:
        proto, o = (p[0] << 8) | p[1], 2
    else:
        return False
    if len(p) <= o:
        return False
    return (proto == 0x21 and p[o] >> 4 == 4) or (proto == 0x57 and p[o] >> 4 == 6)


def parse_header(pkt: bytes) -> tuple[int, int]:
    """(flag bits in the high nibble, 12-bit coherency count) of an MPPE packet."""
    if len(pkt) < MPPE_OVERHEAD:
        raise MppeTruncated("MPPE header needs 2 octets")
    return pkt[0] & 0xF0, ((pkt[0] & 0x0F) << 8) | pkt[1]


class _MppeKeys:
    """Key schedule shared by both directions (steps 1 and 2 of the module doc)."""

    def __init__(self, start_key: bytes, bits: int, stateful: bool) -> None:
        self.key_len = key_length_for_bits(bits)
        start_key = bytes(start_key)
        if len(start_key) < self.key_len:
            raise ValueError(f"{bits}-bit MPPE needs a {self.key_len}-octet start key")
        self.bits = bits
        self.stateful = bool(stateful)
        self._start = start_key[:self.key_len]
        self._session = reduce_session_key(
            get_new_key_from_sha(self._start, self._start, self.key_len), bits)
        self._rc4 = ARC4.new(self._session)
        self.ccount = CCOUNT_SPACE - 1
        self.rekeys = 0

    def _rekey(self) -> None:
        interim = get_new_key_from_sha(self._start, self._session, self.key_len)
        self._session = reduce_session_key(ARC4.new(interim).encrypt(interim), self.bits)
        self._rc4 = ARC4.new(self._session)
        self.rekeys += 1

    @property
    def session_key(self) -> bytes:
        """The current session key (for tests; never log it)."""
        return self._session


class MppeEncryptor(_MppeKeys):
    """Our sending direction: ``encrypt(protocol + payload) -> MPPE header + ciphertext``."""

    def __init__(self, start_key: bytes, bits: int, stateful: bool) -> None:
        super().__init__(start_key, bits, stateful)
        self._flush_pending = False

    def request_flush(self) -> None:
        """The peer sent CCP Reset-Request (RFC 3078 §7.1): the next packet is rekeyed and
        carries A.  Several requests before that packet still mean one rekey (Linux
        mppe_comp_reset: the peer cannot know how many times we rekeyed)."""
        self._flush_pending = True

    def encrypt(self, data: bytes) -> bytes:
        if len(data) < 1:
            raise ValueError("MPPE encrypts at least the PPP protocol field")
        self.ccount = (self.ccount + 1) & _CCOUNT_MASK
        flags = MPPE_BIT_ENCRYPTED
        if (not self.stateful or (self.ccount & 0xFF) == 0xFF or self._flush_pending):
            self._rekey()
            flags |= MPPE_BIT_FLUSHED
            self._flush_pending = False
        hdr = bytes((flags | (self.ccount >> 8), self.ccount & 0xFF))
        return hdr + self._rc4.encrypt(bytes(data))


class MppeDecryptor(_MppeKeys):
    """The peer's sending direction: ``decrypt(MPPE header + ciphertext) -> protocol +
    payload`` (protocol field returned as received: 2 octets, or 1 if PFC-compressed)."""

    def __init__(self, start_key: bytes, bits: int, stateful: bool) -> None:
        super().__init__(start_key, bits, stateful)
        self.discard = False
        # Kept by the engine's deliver path, not here: stateless frames in a row whose
        # decrypted inner protocol was not data (the compiled twin: mppe_state.lost_run).
        self.lost_run = 0
        self.seq_lost = 0       # GRE sequence numbers given up since the last decrypt
        self.wraps = 0          # gaps of 4096+ counts followed (statistics)

    def add_lost(self, n: int) -> None:
        """The GRE receive window gave ``n`` sequence numbers up (item 3 of the module doc)."""
        if n < 0:
            raise ValueError("lost count is >= 0")
        self.seq_lost = min(LOST_CAP, self.seq_lost + n)

    def _follow_wraps(self, ahead: int, data: bytes) -> int:
        """The count gap is ahead + 4096 w, at most seq_lost + 1: rekey to each candidate and
        keep the first whose first octets decrypt to data.  The rekeys the caller still owes
        (0: matched, the keys are the frame's; ``ahead``: none matched, state untouched), or
        -1 for a duplicate (the compiled twin: _mppe.pyx _follow_wraps)."""
        lost = self.seq_lost
        bound = lost + 1
        if ahead == 0 and bound < CCOUNT_SPACE:
            return -1
        wmax = min(MAX_WRAPS, (bound - ahead) // CCOUNT_SPACE)
        saved = (self._session, self._rc4, self.rekeys)
        w = 0 if ahead > 0 else 1
        gap = ahead + CCOUNT_SPACE * w
        k = 0
        head = bytes(data[:4])
        while w <= wmax:
            while k < gap:
                self._rekey()
                k += 1
            if _sane_start(ARC4.new(self._session).decrypt(head)):
                self.wraps += 1 if w > 0 else 0
                # the gap spent gap - 1 of the lost sequence numbers; the rest may still be
                # ahead (one window call reports the loss before all the frames it delivers)
                self.seq_lost = lost - (gap - 1)
                return 0
            w += 1
            gap += CCOUNT_SPACE
        # the budget goes too: the keys are out of step for good (lost sync closes the
        # link), and a retry on every later frame would stall the I/O thread
        self._session, self._rc4, self.rekeys = saved
        self.seq_lost = 0
        return -1 if ahead == 0 else ahead

    def decrypt(self, pkt: bytes) -> bytes:
        if len(pkt) < MPPE_OVERHEAD + 1:
            raise MppeTruncated(f"MPPE packet of {len(pkt)} octets")
        flags, ccount = parse_header(pkt)
        flushed = bool(flags & MPPE_BIT_FLUSHED)
        # Sanity checks first: they leave the state untouched (Linux mppe_decompress).
        if not flags & MPPE_BIT_ENCRYPTED or flags & MPPE_BIT_COMPRESSED:
            raise MppeNotEncrypted(f"MPPE flags {flags:#04x}")
        if not flushed and (not self.stateful or (ccount & 0xFF) == 0xFF):
            raise MppeNotFlushed(f"coherency count {ccount} without the flushed bit")
        if not self.stateful:
            ahead = (ccount - self.ccount) & _CCOUNT_MASK
            if self.seq_lost + 1 >= CCOUNT_SPACE:
                # 4095+ sequence numbers given up since the last frame: the count may have
                # wrapped (ahead + 4096 w), which its 12 bits alone cannot tell
                ahead = self._follow_wraps(ahead, pkt[MPPE_OVERHEAD:])
                if ahead < 0:
                    raise MppeTooOld(f"coherency count {ccount}, expected after {self.ccount}")
            elif ahead == 0:    # a duplicate; 1..MAX_CATCH_UP ahead is that many lost
                raise MppeTooOld(f"coherency count {ccount}, expected after {self.ccount}")
            else:
                self.seq_lost = max(0, self.seq_lost - (ahead - 1))
            # RFC 3078 §8.1: one rekey per count, catching up over lost packets.
            for _ in range(ahead):
                self._rekey()
            self.ccount = ccount
        else:
            resync = False
            if not self.discard:
                self.ccount = (self.ccount + 1) & _CCOUNT_MASK
                if ccount != self.ccount:
                    if not flushed:
                        self.discard = True
                        raise MppeNeedReset(
                            f"coherency count {ccount}, expected {self.ccount}")
                    # Gap revealed by an A packet (a flag packet, or the answer to an
                    # earlier Reset-Request): it carries all we need to resync, so do it
                    # now.  Linux drops it and asks for a reset; the result is the same
                    # keys, minus one round trip of losses.
                    resync = True
            elif not flushed:
                raise MppeDiscarding(f"coherency count {ccount} while out of sync")
            else:
                resync = True
            if resync:
                # One rekey per flag packet we missed (Linux: "rekey for every missed
                # flag packet"), i.e. per 256-count block boundary crossed.
                while (ccount & ~0xFF) != (self.ccount & ~0xFF):
                    self._rekey()
                    self.ccount = (self.ccount + 256) & _CCOUNT_MASK
                self.discard = False
                self.ccount = ccount
            if flushed:
                self._rekey()
        return self._rc4.decrypt(bytes(pkt[MPPE_OVERHEAD:]))
