# cython: language_level=3
"""Compiled MPPE (RFC 3078) with RFC 3079 rekeying: the contract of fastpptp/_mppe.pyx.

One ``mppe_state`` per direction of a call (an encryptor or a decryptor).  Everything here
is plain C state and ``noexcept nogil`` functions: no Python object, no allocation, no lock
on the per-packet path.  The owner serialises calls on one state.

Wire layout handled here (the PPP information field of protocol 0x00FD):
    hdr2[0..1] = A(0x80 flushed) B(0x40) C(0x20 compressed) D(0x10 encrypted) | 12-bit
                 coherency count, big endian
    data[..]   = RC4(PPP protocol field (1 or 2 octets) + payload), same length as plain

Semantics follow Linux drivers/net/ppp/ppp_mppe.c (see _mppe.pyx and crypto/mppe.py, the
pure-Python twin, for where that differs from RFC 3078).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

# Return codes of mppe_init / mppe_encrypt / mppe_decrypt.
cdef enum:
    MPPE_OK = 0
    MPPE_ERR_TRUNCATED = -1        # fewer than 1 octet after the 2-octet MPPE header
    MPPE_ERR_NOT_ENCRYPTED = -2    # D bit clear (or C bit set: MPPC is not negotiated)
    MPPE_ERR_NOT_FLUSHED = -3      # stateless packet, or stateful flag packet, without A
    MPPE_ERR_TOO_OLD = -4          # stateless: the same count again (a duplicate)
    MPPE_ERR_NEED_RESET = -5       # stateful: loss detected now; send CCP Reset-Request
    MPPE_ERR_DISCARDING = -6       # stateful: still waiting for a flushed (A) packet
    MPPE_ERR_BAD_ARGS = -7         # mppe_init: bits not 40/56/128; state not initialised

cdef enum:
    MPPE_OVERHEAD = 2              # MPPE header octets in front of the ciphertext
    MPPE_BIT_FLUSHED = 0x80        # A
    MPPE_BIT_COMPRESSED = 0x20     # C (MPPC, never set by us)
    MPPE_BIT_ENCRYPTED = 0x10      # D
    MPPE_CCOUNT_SPACE = 4096
    MPPE_MAX_KEY_LEN = 16
    MPPE_PROTO_MIN = 0x21          # MPPE carries PPP protocols 0x0021..0x00FA only
    MPPE_PROTO_MAX = 0xFA
    # Stateless frames in a row whose decrypted inner protocol is not data before the
    # engine raises EV_MPPE_LOST_SYNC (== fastpptp/dataplane.py MPPE_LOST_SYNC_RUN).
    MPPE_LOST_SYNC_RUN = 32
    # Stateless: whole 4096-count wraps a gap may be followed over at most (each costs 4096
    # rekeys, ~6 ms compiled), when the GRE receive window says that many were lost.
    MPPE_MAX_WRAPS = 16
    MPPE_LOST_CAP = 0x7FFFFFFF     # mppe_state.seq_lost saturates here

cdef struct rc4_state:
    uint8_t s[256]
    uint8_t i
    uint8_t j

cdef struct sha1_ctx:
    uint32_t h[5]
    uint64_t length                # message octets so far
    uint8_t buf[64]
    uint32_t buflen

cdef struct mppe_state:
    uint8_t start_key[16]          # RFC 3079 start (master) key, key_len octets used
    uint8_t session_key[16]        # current session key, key_len octets used
    int key_len                    # 8 (40/56-bit) or 16 (128-bit)
    int bits                       # 40, 56 or 128
    int stateful                   # 0: stateless (CCP H bit), 1: stateful
    uint16_t ccount                # last coherency count sent / accepted (starts 4095)
    uint8_t flags                  # encryptor: MPPE_BIT_FLUSHED pending (Reset-Request)
    uint8_t discard                # decryptor, stateful: lost sync, waiting for A
    uint8_t initialized
    uint32_t rekeys                # statistics: number of rekeys done
    uint32_t lost_run              # engine deliver path: non-data frames in a row (stateless)
    uint32_t seq_lost              # decryptor, stateless: GRE sequence numbers given up since
                                   # the last frame decrypted (mppe_add_lost); bounds the gap
    uint32_t wraps                 # statistics: gaps of 4096+ counts followed (stateless)
    rc4_state rc4

# SHA-1 (FIPS 180-4) and RC4, self-contained (no OpenSSL: RC4 is legacy-only there).
cdef void sha1_init(sha1_ctx* c) noexcept nogil
cdef void sha1_update(sha1_ctx* c, const uint8_t* data, size_t n) noexcept nogil
cdef void sha1_final(sha1_ctx* c, uint8_t* digest20) noexcept nogil
cdef void rc4_init(rc4_state* st, const uint8_t* key, size_t key_len) noexcept nogil
cdef void rc4_crypt(rc4_state* st, uint8_t* data, size_t n) noexcept nogil

# MPPE.  start_key points at key_len octets (8 for 40/56 bits, 16 for 128 bits).
cdef int mppe_init(mppe_state* st, const uint8_t* start_key, int bits,
                   int stateful) noexcept nogil
# Encrypt ``data`` (PPP protocol field + payload, len >= 1) in place and write the 2-octet
# MPPE header to hdr2.  Returns MPPE_OK (or MPPE_ERR_TRUNCATED / _BAD_ARGS on misuse).
cdef int mppe_encrypt(mppe_state* st, uint8_t* hdr2, uint8_t* data, size_t len) noexcept nogil
# Decrypt ``data`` in place given the received header.  MPPE_OK or a negative MPPE_ERR_*;
# on error ``data`` is left as received.  MPPE_ERR_NEED_RESET is returned once per loss
# (the owner raises EV_MPPE_RESET_NEEDED), then MPPE_ERR_DISCARDING until an A packet
# resyncs (a gap revealed by an A packet resyncs at once).
cdef int mppe_decrypt(mppe_state* st, const uint8_t* hdr2, uint8_t* data,
                      size_t len) noexcept nogil
# The GRE receive window gave ``n`` sequence numbers up (lost): each may have carried one
# coherency count, so a stateless gap of 4096 counts or more can still be followed
# (mppe_decrypt, RFC 3078 §8.1); the engine calls this before delivering the frames.
cdef void mppe_add_lost(mppe_state* st, uint64_t n) noexcept nogil
# The peer sent CCP Reset-Request: the next encrypted packet is flushed (A) and rekeyed.
# Not atomic: call it from the thread that encrypts (e.g. via the engine's control queue).
cdef void mppe_request_flush(mppe_state* st) noexcept nogil
