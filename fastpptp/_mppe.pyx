# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled MPPE (RFC 3078, keys RFC 3079) for the data plane; contract in _mppe.pxd.

The pure-Python twin, fastpptp/crypto/mppe.py, is the readable spec: same states, same
rekey points, same errors; tests/test_mppe_diff.py checks they agree byte for byte.

Per packet (all ``noexcept nogil``, no allocation):
  1. encrypt: count += 1; rekey if stateless, flag packet (count & 0xFF == 0xFF) or a CCP
     Reset-Request is pending, and then set A; header = A|D|count; RC4 the data in place.
  2. decrypt: sanity checks (D set, C clear, A where required) leave the state untouched;
     stateless: rekey once per count advanced (1..2048 ahead, else MPPE_ERR_TOO_OLD);
     stateful: gap -> discard state (MPPE_ERR_NEED_RESET once, then _DISCARDING) until an
     A packet resyncs (one rekey per missed flag packet); every A packet rekeys; then RC4.
Rekey (RFC 3078 §7.3) = SHA-1(start | pad1 | session | pad2) -> interim, session =
RC4(interim)(interim), salted for 40/56 bits, RC4 re-keyed: see _rekey().

SHA-1 and RC4 are written here: this machine's OpenSSL has no RC4 (legacy provider
absent), and a per-packet call into a library would cost more than the cipher.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from fastpptp.crypto import mppe as _py_mppe

# RFC 3079 §3.4 / RFC 3078 §7.3 SHA pads: 40 x 00 and 40 x F2.
cdef uint8_t SHS_PAD1[40]
cdef uint8_t SHS_PAD2[40]
memset(SHS_PAD1, 0x00, 40)
memset(SHS_PAD2, 0xF2, 40)


# --- SHA-1 (FIPS 180-4 §6.1) -----------------------------------------------------------

cdef inline uint32_t _rol(uint32_t x, int n) noexcept nogil:
    return (x << n) | (x >> (32 - n))


cdef void _sha1_block(uint32_t* h, const uint8_t* p) noexcept nogil:
    cdef uint32_t w[80]
    cdef uint32_t a, b, c, d, e, f, k, t
    cdef int i
    for i in range(16):
        w[i] = ((<uint32_t>p[4 * i] << 24) | (<uint32_t>p[4 * i + 1] << 16)
                | (<uint32_t>p[4 * i + 2] << 8) | <uint32_t>p[4 * i + 3])
    for i in range(16, 80):
        w[i] = _rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]
    for i in range(80):
        if i < 20:
            f = (b & c) | ((~b) & d)
            k = 0x5A827999
        elif i < 40:
            f = b ^ c ^ d
            k = 0x6ED9EBA1
        elif i < 60:
            f = (b & c) | (b & d) | (c & d)
            k = 0x8F1BBCDC
        else:
            f = b ^ c ^ d
            k = 0xCA62C1D6
        t = _rol(a, 5) + f + e + k + w[i]
        e = d
        d = c
        c = _rol(b, 30)
        b = a
        a = t
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e


cdef void sha1_init(sha1_ctx* c) noexcept nogil:
    c.h[0] = 0x67452301
    c.h[1] = 0xEFCDAB89
    c.h[2] = 0x98BADCFE
    c.h[3] = 0x10325476
    c.h[4] = 0xC3D2E1F0
    c.length = 0
    c.buflen = 0


cdef void sha1_update(sha1_ctx* c, const uint8_t* data, size_t n) noexcept nogil:
    cdef size_t take
    c.length += n
    if c.buflen:
        take = 64 - c.buflen
        if take > n:
            take = n
        memcpy(c.buf + c.buflen, data, take)
        c.buflen += <uint32_t>take
        data += take
        n -= take
        if c.buflen < 64:
            return
        _sha1_block(c.h, c.buf)
        c.buflen = 0
    while n >= 64:
        _sha1_block(c.h, data)
        data += 64
        n -= 64
    if n:
        memcpy(c.buf, data, n)
        c.buflen = <uint32_t>n


cdef void sha1_final(sha1_ctx* c, uint8_t* digest20) noexcept nogil:
    cdef uint64_t bitlen = c.length * 8
    cdef int i
    c.buf[c.buflen] = 0x80
    c.buflen += 1
    if c.buflen > 56:
        memset(c.buf + c.buflen, 0, 64 - c.buflen)
        _sha1_block(c.h, c.buf)
        c.buflen = 0
    memset(c.buf + c.buflen, 0, 56 - c.buflen)
    for i in range(8):
        c.buf[56 + i] = <uint8_t>(bitlen >> (56 - 8 * i))
    _sha1_block(c.h, c.buf)
    for i in range(5):
        digest20[4 * i] = <uint8_t>(c.h[i] >> 24)
        digest20[4 * i + 1] = <uint8_t>(c.h[i] >> 16)
        digest20[4 * i + 2] = <uint8_t>(c.h[i] >> 8)
        digest20[4 * i + 3] = <uint8_t>c.h[i]


# --- RC4 ---------------------------------------------------------------------------------

cdef void rc4_init(rc4_state* st, const uint8_t* key, size_t key_len) noexcept nogil:
    # Key-scheduling algorithm; a wrapping index instead of i % key_len (no division).
    cdef unsigned int i, j = 0, t
    cdef size_t k = 0
    for i in range(256):
        st.s[i] = <uint8_t>i
    for i in range(256):
        j = (j + st.s[i] + key[k]) & 0xFF
        k += 1
        if k == key_len:
            k = 0
        t = st.s[i]
        st.s[i] = st.s[j]
        st.s[j] = <uint8_t>t
    st.i = 0
    st.j = 0


cdef void rc4_crypt(rc4_state* st, uint8_t* data, size_t n) noexcept nogil:
    # PRGA.  Word-sized indices in locals (a helper taking &i/&j was 40% slower: stores to
    # the uint8_t S-box may alias them); the keystream is gathered 8 octets at a time and
    # XORed as one 64-bit word.
    cdef uint8_t* s = st.s
    cdef unsigned int i = st.i, j = st.j, si, sj
    cdef size_t k = 0
    cdef uint8_t ks[8]
    cdef uint64_t w, kw
    cdef int b
    while k + 8 <= n:
        for b in range(8):
            i = (i + 1) & 0xFF
            si = s[i]
            j = (j + si) & 0xFF
            sj = s[j]
            s[i] = <uint8_t>sj
            s[j] = <uint8_t>si
            ks[b] = s[(si + sj) & 0xFF]
        memcpy(&w, data + k, 8)
        memcpy(&kw, ks, 8)      # byte order independent: both words are memory images
        w ^= kw
        memcpy(data + k, &w, 8)
        k += 8
    while k < n:
        i = (i + 1) & 0xFF
        si = s[i]
        j = (j + si) & 0xFF
        sj = s[j]
        s[i] = <uint8_t>sj
        s[j] = <uint8_t>si
        data[k] ^= s[(si + sj) & 0xFF]
        k += 1
    st.i = <uint8_t>i
    st.j = <uint8_t>j


# --- MPPE ----------------------------------------------------------------------------------

cdef inline void _get_new_key_from_sha(mppe_state* st, uint8_t* digest20) noexcept nogil:
    # RFC 3078 §7.3 GetNewKeyFromSHA(StartKey, SessionKey, key_len).
    cdef sha1_ctx c
    sha1_init(&c)
    sha1_update(&c, st.start_key, st.key_len)
    sha1_update(&c, SHS_PAD1, 40)
    sha1_update(&c, st.session_key, st.key_len)
    sha1_update(&c, SHS_PAD2, 40)
    sha1_final(&c, digest20)


cdef inline void _salt(mppe_state* st) noexcept nogil:
    # RFC 3078 §7.3 / RFC 3079 §3.1-3.2: reduce the effective key strength.
    if st.bits == 40:
        st.session_key[0] = 0xD1
        st.session_key[1] = 0x26
        st.session_key[2] = 0x9E
    elif st.bits == 56:
        st.session_key[0] = 0xD1


cdef void _rekey(mppe_state* st) noexcept nogil:
    cdef uint8_t interim[20]
    cdef rc4_state tmp
    _get_new_key_from_sha(st, interim)
    rc4_init(&tmp, interim, st.key_len)
    memcpy(st.session_key, interim, st.key_len)
    rc4_crypt(&tmp, st.session_key, st.key_len)
    _salt(st)
    rc4_init(&st.rc4, st.session_key, st.key_len)
    st.rekeys += 1


cdef int mppe_init(mppe_state* st, const uint8_t* start_key, int bits,
                   int stateful) noexcept nogil:
    cdef uint8_t digest[20]
    memset(st, 0, sizeof(mppe_state))
    if bits == 128:
        st.key_len = 16
    elif bits == 40 or bits == 56:
        st.key_len = 8
    else:
        return MPPE_ERR_BAD_ARGS
    st.bits = bits
    st.stateful = 1 if stateful else 0
    memcpy(st.start_key, start_key, st.key_len)
    # Initial session key: GetNewKeyFromSHA(start, start), no RC4 step (RFC 3079 §3.5,
    # Linux mppe_rekey(state, 1)).
    memcpy(st.session_key, start_key, st.key_len)
    _get_new_key_from_sha(st, digest)
    memcpy(st.session_key, digest, st.key_len)
    _salt(st)
    rc4_init(&st.rc4, st.session_key, st.key_len)
    # Linux: start at 4095 so the first packet carries count 0 ("determined through
    # experiment" against Windows).
    st.ccount = MPPE_CCOUNT_SPACE - 1
    st.initialized = 1
    return MPPE_OK


cdef void mppe_request_flush(mppe_state* st) noexcept nogil:
    st.flags |= MPPE_BIT_FLUSHED


cdef int mppe_encrypt(mppe_state* st, uint8_t* hdr2, uint8_t* data, size_t len) noexcept nogil:
    cdef uint8_t flags = MPPE_BIT_ENCRYPTED
    if not st.initialized:
        return MPPE_ERR_BAD_ARGS
    if len < 1:
        return MPPE_ERR_TRUNCATED
    st.ccount = (st.ccount + 1) & (MPPE_CCOUNT_SPACE - 1)
    if (not st.stateful or (st.ccount & 0xFF) == 0xFF
            or (st.flags & MPPE_BIT_FLUSHED)):
        _rekey(st)
        flags |= MPPE_BIT_FLUSHED
        st.flags &= ~MPPE_BIT_FLUSHED
    hdr2[0] = flags | <uint8_t>(st.ccount >> 8)
    hdr2[1] = <uint8_t>(st.ccount & 0xFF)
    rc4_crypt(&st.rc4, data, len)
    return MPPE_OK


cdef int mppe_decrypt(mppe_state* st, const uint8_t* hdr2, uint8_t* data,
                      size_t len) noexcept nogil:
    cdef uint8_t flags = hdr2[0] & 0xF0
    cdef uint16_t ccount = ((<uint16_t>(hdr2[0] & 0x0F)) << 8) | hdr2[1]
    cdef int flushed = (flags & MPPE_BIT_FLUSHED) != 0
    cdef int ahead
    cdef int resync
    if not st.initialized:
        return MPPE_ERR_BAD_ARGS
    if len < 1:
        return MPPE_ERR_TRUNCATED
    # Sanity checks leave the state untouched (Linux mppe_decompress).
    if not (flags & MPPE_BIT_ENCRYPTED) or (flags & MPPE_BIT_COMPRESSED):
        return MPPE_ERR_NOT_ENCRYPTED
    if not flushed and (not st.stateful or (ccount & 0xFF) == 0xFF):
        return MPPE_ERR_NOT_FLUSHED
    if not st.stateful:
        ahead = (<int>ccount - <int>st.ccount) & (MPPE_CCOUNT_SPACE - 1)
        if ahead == 0 or ahead > MPPE_CCOUNT_SPACE // 2:
            return MPPE_ERR_TOO_OLD
        while ahead > 0:            # RFC 3078 §8.1: one rekey per count
            _rekey(st)
            ahead -= 1
        st.ccount = ccount
    else:
        resync = 0
        if not st.discard:
            st.ccount = (st.ccount + 1) & (MPPE_CCOUNT_SPACE - 1)
            if ccount != st.ccount:
                if not flushed:
                    st.discard = 1
                    return MPPE_ERR_NEED_RESET
                resync = 1          # gap revealed by an A packet: resync now
        elif not flushed:
            return MPPE_ERR_DISCARDING
        else:
            resync = 1
        if resync:
            # One rekey per missed flag packet (256-count boundary crossed).
            while (ccount & 0xF00) != (st.ccount & 0xF00):
                _rekey(st)
                st.ccount = (st.ccount + 256) & (MPPE_CCOUNT_SPACE - 1)
            st.discard = 0
            st.ccount = ccount
        if flushed:
            # Linux rekeys on every A packet; RFC 3078 only re-inits RC4 unless it is a
            # flag packet.  Interop with pppd/Linux wins (see crypto/mppe.py).
            _rekey(st)
    rc4_crypt(&st.rc4, data, len)
    return MPPE_OK


# --- Python surface (tests, differential checks, benchmarks) ------------------------------

def sha1(data) -> bytes:
    """SHA-1 digest of ``data`` by the compiled implementation."""
    cdef const uint8_t[:] v = bytes(data)
    cdef sha1_ctx c
    cdef uint8_t out[20]
    sha1_init(&c)
    if v.shape[0]:
        sha1_update(&c, &v[0], v.shape[0])
    sha1_final(&c, out)
    return out[:20]


def rc4(key, data) -> bytes:
    """RC4 keystream XOR ``data`` under ``key`` (1..256 octets)."""
    cdef bytes k = bytes(key)
    cdef bytearray buf = bytearray(data)
    cdef rc4_state st
    cdef uint8_t* p
    if not 1 <= len(k) <= 256:
        raise ValueError("RC4 key must be 1..256 octets")
    rc4_init(&st, <const uint8_t*><char*>k, len(k))
    if len(buf):
        p = <uint8_t*><char*>buf
        rc4_crypt(&st, p, len(buf))
    return bytes(buf)


cdef _raise_for(int rc):
    if rc == MPPE_ERR_BAD_ARGS:
        raise ValueError("MPPE state not initialised")
    raise _py_mppe.ERRORS_BY_CODE[rc](f"MPPE error {rc}")


cdef class Mppe:
    """One direction of MPPE, compiled: same behaviour as crypto.mppe.MppeEncryptor /
    MppeDecryptor (use one object per direction)."""

    cdef mppe_state st

    def __init__(self, start_key, int bits, bint stateful):
        cdef bytes k = bytes(start_key)
        cdef int need = 16 if bits == 128 else 8
        if bits not in (40, 56, 128):
            raise ValueError(f"MPPE key strength must be 40, 56 or 128 bits, not {bits}")
        if len(k) < need:
            raise ValueError(f"{bits}-bit MPPE needs a {need}-octet start key")
        if mppe_init(&self.st, <const uint8_t*><char*>k, bits, stateful) != MPPE_OK:
            raise ValueError("mppe_init failed")

    def encrypt(self, data) -> bytes:
        """PPP protocol field + payload -> 2-octet MPPE header + ciphertext."""
        cdef bytearray buf = bytearray(2) + bytearray(data)
        cdef uint8_t* p = <uint8_t*><char*>buf
        cdef int rc
        if len(buf) < 3:
            raise ValueError("MPPE encrypts at least the PPP protocol field")
        rc = mppe_encrypt(&self.st, p, p + 2, len(buf) - 2)
        if rc != MPPE_OK:
            _raise_for(rc)
        return bytes(buf)

    def decrypt(self, pkt) -> bytes:
        """2-octet MPPE header + ciphertext -> PPP protocol field + payload."""
        cdef bytearray buf = bytearray(pkt)
        cdef uint8_t* p
        cdef int rc
        if len(buf) < 3:
            raise _py_mppe.MppeTruncated(f"MPPE packet of {len(buf)} octets")
        p = <uint8_t*><char*>buf
        rc = mppe_decrypt(&self.st, p, p + 2, len(buf) - 2)
        if rc != MPPE_OK:
            _raise_for(rc)
        return bytes(buf[2:])

    def request_flush(self):
        mppe_request_flush(&self.st)

    @property
    def ccount(self) -> int:
        return self.st.ccount

    @property
    def discard(self) -> bool:
        return bool(self.st.discard)

    @property
    def rekeys(self) -> int:
        return self.st.rekeys

    @property
    def session_key(self) -> bytes:
        return self.st.session_key[:self.st.key_len]


def _bench_encrypt(Mppe m, size_t length, size_t count) -> None:
    """Encrypt ``count`` packets of ``length`` octets in place without the GIL (the engine's
    per-packet cost without Python object overhead); benchmarks only."""
    cdef bytearray buf = bytearray(length + 2)
    cdef uint8_t* p = <uint8_t*><char*>buf
    cdef size_t i
    with nogil:
        for i in range(count):
            mppe_encrypt(&m.st, p, p + 2, length)
