# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled MPPE (RFC 3078, keys RFC 3079) for the data plane; contract in _mppe.pxd.

The pure-Python twin, fastpptp/crypto/mppe.py, is the readable spec: same states, same
rekey points, same errors; tests/test_mppe_diff.py checks they agree byte for byte.

Per packet (all ``noexcept nogil``, no allocation):
  1. encrypt: count += 1; rekey if stateless, flag packet (count & 0xFF == 0xFF) or a CCP
     Reset-Request is pending, and then set A; header = A|D|count; RC4 the data in place.
  2. decrypt: sanity checks (D set, C clear, A where required) leave the state untouched;
     stateless: rekey once per count advanced (1..4095 ahead: the GRE window has
     dropped late frames, so far ahead is a loss; the same count is MPPE_ERR_TOO_OLD);
     after the window gave 4095+ sequence numbers up (mppe_add_lost) the count may have
     wrapped: _follow_wraps tries ahead + 4096 w and keeps the one that decrypts to data;
     stateful: gap -> discard state (MPPE_ERR_NEED_RESET once, then _DISCARDING) until an
     A packet resyncs (one rekey per missed flag packet); every A packet rekeys; then RC4.
Rekey (RFC 3078 §7.3) = SHA-1(start | pad1 | session | pad2) -> interim, session =
RC4(interim)(interim), salted for 40/56 bits, RC4 re-keyed: see _rekey().

Stateless MPPE (the Windows default) rekeys before every packet, so the rekey is the cost
of small packets; it is built for that: the SHA-1 input is laid out directly as its two
padded blocks (_get_new_key_from_sha), compressed with the x86 SHA extensions where CPUID
has them or else an unrolled portable compression, and both RC4 key schedules run a
written-out 256-round loop (_ksa).  tests/test_mppe_speed_paths.py checks each fast path.

SHA-1 and RC4 are written here: this machine's OpenSSL has no RC4 (legacy provider
absent), and a per-packet call into a library would cost more than the cipher.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from fastpptp.crypto import mppe as _py_mppe

if MPPE_MAX_WRAPS != _py_mppe.MAX_WRAPS or MPPE_LOST_CAP != _py_mppe.LOST_CAP:
    raise ImportError("fastpptp/_mppe.pxd MPPE_MAX_WRAPS/MPPE_LOST_CAP differ from crypto/mppe.py: rebuild")

# --- SHA-1 (FIPS 180-4 §6.1) -----------------------------------------------------------
#
# The portable compression is unrolled: 80 rounds as 16 lines of 5, the five working
# variables renamed round by round instead of shifted (they stay in registers), the
# message schedule computed in place in the caller's 16-word block (§6.1.2 step 1) at
# constant indices.  Where the CPU has them, the SHA extensions do the same job (below).

cdef inline uint32_t _rol(uint32_t x, int n) noexcept nogil:
    return (x << n) | (x >> (32 - n))


cdef inline uint32_t _be32(const uint8_t* p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16)
            | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


cdef inline uint32_t _wx(uint32_t* w, int t) noexcept nogil:
    # W[t] for t >= 16, stored over W[t - 16] in the ring.
    cdef uint32_t x = _rol(w[(t - 3) & 15] ^ w[(t - 8) & 15] ^ w[(t - 14) & 15] ^ w[t & 15], 1)
    w[t & 15] = x
    return x


# One round each of rounds 0-19 (Ch), 20-39 (Parity), 40-59 (Maj), 60-79 (Parity):
# e += ROTL5(a) + f(b, c, d) + K + W[t]; b = ROTL30(b).  The caller rotates the names.
cdef inline void _r1(uint32_t a, uint32_t* b, uint32_t c, uint32_t d, uint32_t* e,
                     uint32_t x) noexcept nogil:
    e[0] += _rol(a, 5) + (d ^ (b[0] & (c ^ d))) + 0x5A827999u + x
    b[0] = _rol(b[0], 30)


cdef inline void _r2(uint32_t a, uint32_t* b, uint32_t c, uint32_t d, uint32_t* e,
                     uint32_t x) noexcept nogil:
    e[0] += _rol(a, 5) + (b[0] ^ c ^ d) + 0x6ED9EBA1u + x
    b[0] = _rol(b[0], 30)


cdef inline void _r3(uint32_t a, uint32_t* b, uint32_t c, uint32_t d, uint32_t* e,
                     uint32_t x) noexcept nogil:
    e[0] += _rol(a, 5) + ((b[0] & c) | (d & (b[0] | c))) + 0x8F1BBCDCu + x
    b[0] = _rol(b[0], 30)


cdef inline void _r4(uint32_t a, uint32_t* b, uint32_t c, uint32_t d, uint32_t* e,
                     uint32_t x) noexcept nogil:
    e[0] += _rol(a, 5) + (b[0] ^ c ^ d) + 0xCA62C1D6u + x
    b[0] = _rol(b[0], 30)


cdef inline void _sha1_compress(uint32_t* h, uint32_t* w) noexcept nogil:
    # One block given as its 16 big-endian words; ``w`` is consumed (becomes the schedule).
    cdef uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4]
    _r1(a, &b, c, d, &e, w[0]);   _r1(e, &a, b, c, &d, w[1]);   _r1(d, &e, a, b, &c, w[2])
    _r1(c, &d, e, a, &b, w[3]);   _r1(b, &c, d, e, &a, w[4])
    _r1(a, &b, c, d, &e, w[5]);   _r1(e, &a, b, c, &d, w[6]);   _r1(d, &e, a, b, &c, w[7])
    _r1(c, &d, e, a, &b, w[8]);   _r1(b, &c, d, e, &a, w[9])
    _r1(a, &b, c, d, &e, w[10]);  _r1(e, &a, b, c, &d, w[11]);  _r1(d, &e, a, b, &c, w[12])
    _r1(c, &d, e, a, &b, w[13]);  _r1(b, &c, d, e, &a, w[14])
    _r1(a, &b, c, d, &e, w[15]);  _r1(e, &a, b, c, &d, _wx(w, 16))
    _r1(d, &e, a, b, &c, _wx(w, 17))
    _r1(c, &d, e, a, &b, _wx(w, 18));  _r1(b, &c, d, e, &a, _wx(w, 19))

    _r2(a, &b, c, d, &e, _wx(w, 20));  _r2(e, &a, b, c, &d, _wx(w, 21))
    _r2(d, &e, a, b, &c, _wx(w, 22));  _r2(c, &d, e, a, &b, _wx(w, 23))
    _r2(b, &c, d, e, &a, _wx(w, 24))
    _r2(a, &b, c, d, &e, _wx(w, 25));  _r2(e, &a, b, c, &d, _wx(w, 26))
    _r2(d, &e, a, b, &c, _wx(w, 27));  _r2(c, &d, e, a, &b, _wx(w, 28))
    _r2(b, &c, d, e, &a, _wx(w, 29))
    _r2(a, &b, c, d, &e, _wx(w, 30));  _r2(e, &a, b, c, &d, _wx(w, 31))
    _r2(d, &e, a, b, &c, _wx(w, 32));  _r2(c, &d, e, a, &b, _wx(w, 33))
    _r2(b, &c, d, e, &a, _wx(w, 34))
    _r2(a, &b, c, d, &e, _wx(w, 35));  _r2(e, &a, b, c, &d, _wx(w, 36))
    _r2(d, &e, a, b, &c, _wx(w, 37));  _r2(c, &d, e, a, &b, _wx(w, 38))
    _r2(b, &c, d, e, &a, _wx(w, 39))

    _r3(a, &b, c, d, &e, _wx(w, 40));  _r3(e, &a, b, c, &d, _wx(w, 41))
    _r3(d, &e, a, b, &c, _wx(w, 42));  _r3(c, &d, e, a, &b, _wx(w, 43))
    _r3(b, &c, d, e, &a, _wx(w, 44))
    _r3(a, &b, c, d, &e, _wx(w, 45));  _r3(e, &a, b, c, &d, _wx(w, 46))
    _r3(d, &e, a, b, &c, _wx(w, 47));  _r3(c, &d, e, a, &b, _wx(w, 48))
    _r3(b, &c, d, e, &a, _wx(w, 49))
    _r3(a, &b, c, d, &e, _wx(w, 50));  _r3(e, &a, b, c, &d, _wx(w, 51))
    _r3(d, &e, a, b, &c, _wx(w, 52));  _r3(c, &d, e, a, &b, _wx(w, 53))
    _r3(b, &c, d, e, &a, _wx(w, 54))
    _r3(a, &b, c, d, &e, _wx(w, 55));  _r3(e, &a, b, c, &d, _wx(w, 56))
    _r3(d, &e, a, b, &c, _wx(w, 57));  _r3(c, &d, e, a, &b, _wx(w, 58))
    _r3(b, &c, d, e, &a, _wx(w, 59))

    _r4(a, &b, c, d, &e, _wx(w, 60));  _r4(e, &a, b, c, &d, _wx(w, 61))
    _r4(d, &e, a, b, &c, _wx(w, 62));  _r4(c, &d, e, a, &b, _wx(w, 63))
    _r4(b, &c, d, e, &a, _wx(w, 64))
    _r4(a, &b, c, d, &e, _wx(w, 65));  _r4(e, &a, b, c, &d, _wx(w, 66))
    _r4(d, &e, a, b, &c, _wx(w, 67));  _r4(c, &d, e, a, &b, _wx(w, 68))
    _r4(b, &c, d, e, &a, _wx(w, 69))
    _r4(a, &b, c, d, &e, _wx(w, 70));  _r4(e, &a, b, c, &d, _wx(w, 71))
    _r4(d, &e, a, b, &c, _wx(w, 72));  _r4(c, &d, e, a, &b, _wx(w, 73))
    _r4(b, &c, d, e, &a, _wx(w, 74))
    _r4(a, &b, c, d, &e, _wx(w, 75));  _r4(e, &a, b, c, &d, _wx(w, 76))
    _r4(d, &e, a, b, &c, _wx(w, 77));  _r4(c, &d, e, a, &b, _wx(w, 78))
    _r4(b, &c, d, e, &a, _wx(w, 79))
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e


# SHA-1 with the x86 SHA extensions (SHA-NI: sha1rnds4 does 4 rounds, sha1msg1/sha1msg2
# the message schedule, sha1nexte the E term), chosen at import when CPUID reports SHA,
# SSSE3 and SSE4.1; compiled for that target on this one function only, so the module still
# loads on any x86-64 (and anywhere else, where it is a stub that is never chosen).  Same
# contract as _sha1_compress: h[5] updated by one block of 16 host-order words w[16].
cdef extern from *:
    """
    #if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    #include <cpuid.h>
    #include <immintrin.h>
    static int fastpptp_sha_ni_available(void) {
        unsigned int a, b, c, d;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19)))
            return 0;                                   /* SSSE3, SSE4.1 */
        if (__get_cpuid_max(0, 0) < 7) return 0;
        __cpuid_count(7, 0, a, b, c, d);
        return (b >> 29) & 1;                           /* SHA */
    }
    /* One group of 4 rounds t = 4g..4g+3 with round function F (0: Ch, 1: Parity, 2: Maj,
       3: Parity).  m[g & 3] holds W[4g-16..4g-13] and becomes W[4g..4g+3] (FIPS 180-4
       6.1.2 step 1, W[t] in the high dword); E of these rounds is ROTL30(A) of the state 4
       rounds back (prev). */
    #define FASTPPTP_SHA1_GROUP(F) do {                                               \\
            if (g >= 4)                                                               \\
                m[g & 3] = _mm_sha1msg2_epu32(                                        \\
                    _mm_xor_si128(_mm_sha1msg1_epu32(m[g & 3], m[(g + 1) & 3]),       \\
                                  m[(g + 2) & 3]),                                    \\
                    m[(g + 3) & 3]);                                                  \\
            e = _mm_sha1nexte_epu32(prev, m[g & 3]);                                  \\
            prev = abcd;                                                              \\
            abcd = _mm_sha1rnds4_epu32(abcd, e, F);                                   \\
        } while (0)
    __attribute__((target("sha,ssse3,sse4.1")))
    static void fastpptp_sha1_compress_ni(uint32_t *h, const uint32_t *w) {
        __m128i abcd0 = _mm_set_epi32((int)h[0], (int)h[1], (int)h[2], (int)h[3]);
        __m128i e0 = _mm_set_epi32((int)h[4], 0, 0, 0);
        __m128i abcd = abcd0, prev = abcd0, e, m[4];
        int g;
        for (g = 0; g < 4; g++)
            m[g] = _mm_set_epi32((int)w[4 * g], (int)w[4 * g + 1], (int)w[4 * g + 2],
                                 (int)w[4 * g + 3]);
        abcd = _mm_sha1rnds4_epu32(abcd, _mm_add_epi32(e0, m[0]), 0);   /* rounds 0-3 */
        for (g = 1; g < 5; g++) FASTPPTP_SHA1_GROUP(0);
        for (; g < 10; g++) FASTPPTP_SHA1_GROUP(1);
        for (; g < 15; g++) FASTPPTP_SHA1_GROUP(2);
        for (; g < 20; g++) FASTPPTP_SHA1_GROUP(3);
        e = _mm_sha1nexte_epu32(prev, e0);              /* E + ROTL30(A of round 76) */
        abcd = _mm_add_epi32(abcd, abcd0);
        h[0] = (uint32_t)_mm_extract_epi32(abcd, 3);
        h[1] = (uint32_t)_mm_extract_epi32(abcd, 2);
        h[2] = (uint32_t)_mm_extract_epi32(abcd, 1);
        h[3] = (uint32_t)_mm_extract_epi32(abcd, 0);
        h[4] = (uint32_t)_mm_extract_epi32(e, 3);
    }
    #undef FASTPPTP_SHA1_GROUP
    #else
    static int fastpptp_sha_ni_available(void) { return 0; }
    static void fastpptp_sha1_compress_ni(uint32_t *h, const uint32_t *w) { (void)h; (void)w; }
    #endif
    """
    int fastpptp_sha_ni_available() noexcept nogil
    void fastpptp_sha1_compress_ni(uint32_t* h, const uint32_t* w) noexcept nogil


# 1 when the SHA-NI compression is used (set once at import; tests may clear it).
cdef int _use_sha_ni = fastpptp_sha_ni_available()


cdef inline void _compress(uint32_t* h, uint32_t* w) noexcept nogil:
    if _use_sha_ni:
        fastpptp_sha1_compress_ni(h, w)
    else:
        _sha1_compress(h, w)


cdef void _sha1_block(uint32_t* h, const uint8_t* p) noexcept nogil:
    cdef uint32_t w[16]
    cdef int i
    for i in range(16):
        w[i] = _be32(p + 4 * i)
    _compress(h, w)


cdef inline void _sha1_iv(uint32_t* h) noexcept nogil:
    h[0] = 0x67452301
    h[1] = 0xEFCDAB89
    h[2] = 0x98BADCFE
    h[3] = 0x10325476
    h[4] = 0xC3D2E1F0


cdef inline void _sha1_digest(const uint32_t* h, uint8_t* digest20) noexcept nogil:
    cdef int i
    for i in range(5):
        digest20[4 * i] = <uint8_t>(h[i] >> 24)
        digest20[4 * i + 1] = <uint8_t>(h[i] >> 16)
        digest20[4 * i + 2] = <uint8_t>(h[i] >> 8)
        digest20[4 * i + 3] = <uint8_t>h[i]


cdef void sha1_init(sha1_ctx* c) noexcept nogil:
    _sha1_iv(c.h)
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
    _sha1_digest(c.h, digest20)


# --- RC4 ---------------------------------------------------------------------------------
#
# Key schedule: the key is first repeated into 256 octets (K[i] = key[i mod len]); S starts
# as a copy of the identity permutation; the 256 rounds are written out, so every index but
# j is a constant (a fifth faster than a 16-way unrolled loop; GCC will not inline a helper
# of 16 rounds 16 times).  Each round loads S[i + 1] before its own swap and patches it if
# the swap just wrote it (t == i + 1), so the next round's j does not wait on a store to an
# address computed from this round's j.

cdef uint8_t RC4_IDENTITY[256]
for _i in range(256):
    RC4_IDENTITY[_i] = <uint8_t>_i


cdef inline void _kr(uint8_t* s, const uint8_t* k, unsigned int i, unsigned int* jp,
                     unsigned int* sip) noexcept nogil:
    # Round i: si = S[i] (in *sip); j += si + K[i]; swap S[i], S[j]; *sip = S[i + 1] as it
    # is after the swap (round 255 reads S[0], unused).
    cdef unsigned int si = sip[0]
    cdef unsigned int nxt = s[(i + 1) & 0xFF]
    cdef unsigned int j = jp[0] + si + k[i]      # only the low 8 bits matter
    cdef unsigned int t = j & 0xFF
    s[i] = s[t]
    s[t] = <uint8_t>si
    jp[0] = j
    sip[0] = si if t == ((i + 1) & 0xFF) else nxt


cdef inline void _repeat_key(uint8_t* krep, const uint8_t* key, size_t key_len) noexcept nogil:
    # krep[i] = key[i % key_len] for i < 256; fixed-size copies for the MPPE lengths 8, 16.
    cdef size_t n, c
    cdef int m
    if key_len == 16 or key_len == 8:
        memcpy(krep, key, 8)
        memcpy(krep + 8, key + (key_len - 8), 8)
        for m in range(1, 16):
            memcpy(krep + 16 * m, krep, 16)
    else:
        memcpy(krep, key, key_len)
        n = key_len
        while n < 256:
            c = n if n <= 256 - n else 256 - n
            memcpy(krep + n, krep, c)
            n += c


cdef void _ksa(uint8_t* s, const uint8_t* k) noexcept nogil:
    # RC4 key-scheduling algorithm on the key repeated to 256 octets.
    cdef unsigned int j = 0, si = 0          # S[0] = 0
    memcpy(s, RC4_IDENTITY, 256)
    _kr(s, k, 0, &j, &si); _kr(s, k, 1, &j, &si); _kr(s, k, 2, &j, &si); _kr(s, k, 3, &j, &si)
    _kr(s, k, 4, &j, &si); _kr(s, k, 5, &j, &si); _kr(s, k, 6, &j, &si); _kr(s, k, 7, &j, &si)
    _kr(s, k, 8, &j, &si); _kr(s, k, 9, &j, &si); _kr(s, k, 10, &j, &si); _kr(s, k, 11, &j, &si)
    _kr(s, k, 12, &j, &si); _kr(s, k, 13, &j, &si); _kr(s, k, 14, &j, &si); _kr(s, k, 15, &j, &si)
    _kr(s, k, 16, &j, &si); _kr(s, k, 17, &j, &si); _kr(s, k, 18, &j, &si); _kr(s, k, 19, &j, &si)
    _kr(s, k, 20, &j, &si); _kr(s, k, 21, &j, &si); _kr(s, k, 22, &j, &si); _kr(s, k, 23, &j, &si)
    _kr(s, k, 24, &j, &si); _kr(s, k, 25, &j, &si); _kr(s, k, 26, &j, &si); _kr(s, k, 27, &j, &si)
    _kr(s, k, 28, &j, &si); _kr(s, k, 29, &j, &si); _kr(s, k, 30, &j, &si); _kr(s, k, 31, &j, &si)
    _kr(s, k, 32, &j, &si); _kr(s, k, 33, &j, &si); _kr(s, k, 34, &j, &si); _kr(s, k, 35, &j, &si)
    _kr(s, k, 36, &j, &si); _kr(s, k, 37, &j, &si); _kr(s, k, 38, &j, &si); _kr(s, k, 39, &j, &si)
    _kr(s, k, 40, &j, &si); _kr(s, k, 41, &j, &si); _kr(s, k, 42, &j, &si); _kr(s, k, 43, &j, &si)
    _kr(s, k, 44, &j, &si); _kr(s, k, 45, &j, &si); _kr(s, k, 46, &j, &si); _kr(s, k, 47, &j, &si)
    _kr(s, k, 48, &j, &si); _kr(s, k, 49, &j, &si); _kr(s, k, 50, &j, &si); _kr(s, k, 51, &j, &si)
    _kr(s, k, 52, &j, &si); _kr(s, k, 53, &j, &si); _kr(s, k, 54, &j, &si); _kr(s, k, 55, &j, &si)
    _kr(s, k, 56, &j, &si); _kr(s, k, 57, &j, &si); _kr(s, k, 58, &j, &si); _kr(s, k, 59, &j, &si)
    _kr(s, k, 60, &j, &si); _kr(s, k, 61, &j, &si); _kr(s, k, 62, &j, &si); _kr(s, k, 63, &j, &si)
    _kr(s, k, 64, &j, &si); _kr(s, k, 65, &j, &si); _kr(s, k, 66, &j, &si); _kr(s, k, 67, &j, &si)
    _kr(s, k, 68, &j, &si); _kr(s, k, 69, &j, &si); _kr(s, k, 70, &j, &si); _kr(s, k, 71, &j, &si)
    _kr(s, k, 72, &j, &si); _kr(s, k, 73, &j, &si); _kr(s, k, 74, &j, &si); _kr(s, k, 75, &j, &si)
    _kr(s, k, 76, &j, &si); _kr(s, k, 77, &j, &si); _kr(s, k, 78, &j, &si); _kr(s, k, 79, &j, &si)
    _kr(s, k, 80, &j, &si); _kr(s, k, 81, &j, &si); _kr(s, k, 82, &j, &si); _kr(s, k, 83, &j, &si)
    _kr(s, k, 84, &j, &si); _kr(s, k, 85, &j, &si); _kr(s, k, 86, &j, &si); _kr(s, k, 87, &j, &si)
    _kr(s, k, 88, &j, &si); _kr(s, k, 89, &j, &si); _kr(s, k, 90, &j, &si); _kr(s, k, 91, &j, &si)
    _kr(s, k, 92, &j, &si); _kr(s, k, 93, &j, &si); _kr(s, k, 94, &j, &si); _kr(s, k, 95, &j, &si)
    _kr(s, k, 96, &j, &si); _kr(s, k, 97, &j, &si); _kr(s, k, 98, &j, &si); _kr(s, k, 99, &j, &si)
    _kr(s, k, 100, &j, &si); _kr(s, k, 101, &j, &si); _kr(s, k, 102, &j, &si); _kr(s, k, 103, &j, &si)
    _kr(s, k, 104, &j, &si); _kr(s, k, 105, &j, &si); _kr(s, k, 106, &j, &si); _kr(s, k, 107, &j, &si)
    _kr(s, k, 108, &j, &si); _kr(s, k, 109, &j, &si); _kr(s, k, 110, &j, &si); _kr(s, k, 111, &j, &si)
    _kr(s, k, 112, &j, &si); _kr(s, k, 113, &j, &si); _kr(s, k, 114, &j, &si); _kr(s, k, 115, &j, &si)
    _kr(s, k, 116, &j, &si); _kr(s, k, 117, &j, &si); _kr(s, k, 118, &j, &si); _kr(s, k, 119, &j, &si)
    _kr(s, k, 120, &j, &si); _kr(s, k, 121, &j, &si); _kr(s, k, 122, &j, &si); _kr(s, k, 123, &j, &si)
    _kr(s, k, 124, &j, &si); _kr(s, k, 125, &j, &si); _kr(s, k, 126, &j, &si); _kr(s, k, 127, &j, &si)
    _kr(s, k, 128, &j, &si); _kr(s, k, 129, &j, &si); _kr(s, k, 130, &j, &si); _kr(s, k, 131, &j, &si)
    _kr(s, k, 132, &j, &si); _kr(s, k, 133, &j, &si); _kr(s, k, 134, &j, &si); _kr(s, k, 135, &j, &si)
    _kr(s, k, 136, &j, &si); _kr(s, k, 137, &j, &si); _kr(s, k, 138, &j, &si); _kr(s, k, 139, &j, &si)
    _kr(s, k, 140, &j, &si); _kr(s, k, 141, &j, &si); _kr(s, k, 142, &j, &si); _kr(s, k, 143, &j, &si)
    _kr(s, k, 144, &j, &si); _kr(s, k, 145, &j, &si); _kr(s, k, 146, &j, &si); _kr(s, k, 147, &j, &si)
    _kr(s, k, 148, &j, &si); _kr(s, k, 149, &j, &si); _kr(s, k, 150, &j, &si); _kr(s, k, 151, &j, &si)
    _kr(s, k, 152, &j, &si); _kr(s, k, 153, &j, &si); _kr(s, k, 154, &j, &si); _kr(s, k, 155, &j, &si)
    _kr(s, k, 156, &j, &si); _kr(s, k, 157, &j, &si); _kr(s, k, 158, &j, &si); _kr(s, k, 159, &j, &si)
    _kr(s, k, 160, &j, &si); _kr(s, k, 161, &j, &si); _kr(s, k, 162, &j, &si); _kr(s, k, 163, &j, &si)
    _kr(s, k, 164, &j, &si); _kr(s, k, 165, &j, &si); _kr(s, k, 166, &j, &si); _kr(s, k, 167, &j, &si)
    _kr(s, k, 168, &j, &si); _kr(s, k, 169, &j, &si); _kr(s, k, 170, &j, &si); _kr(s, k, 171, &j, &si)
    _kr(s, k, 172, &j, &si); _kr(s, k, 173, &j, &si); _kr(s, k, 174, &j, &si); _kr(s, k, 175, &j, &si)
    _kr(s, k, 176, &j, &si); _kr(s, k, 177, &j, &si); _kr(s, k, 178, &j, &si); _kr(s, k, 179, &j, &si)
    _kr(s, k, 180, &j, &si); _kr(s, k, 181, &j, &si); _kr(s, k, 182, &j, &si); _kr(s, k, 183, &j, &si)
    _kr(s, k, 184, &j, &si); _kr(s, k, 185, &j, &si); _kr(s, k, 186, &j, &si); _kr(s, k, 187, &j, &si)
    _kr(s, k, 188, &j, &si); _kr(s, k, 189, &j, &si); _kr(s, k, 190, &j, &si); _kr(s, k, 191, &j, &si)
    _kr(s, k, 192, &j, &si); _kr(s, k, 193, &j, &si); _kr(s, k, 194, &j, &si); _kr(s, k, 195, &j, &si)
    _kr(s, k, 196, &j, &si); _kr(s, k, 197, &j, &si); _kr(s, k, 198, &j, &si); _kr(s, k, 199, &j, &si)
    _kr(s, k, 200, &j, &si); _kr(s, k, 201, &j, &si); _kr(s, k, 202, &j, &si); _kr(s, k, 203, &j, &si)
    _kr(s, k, 204, &j, &si); _kr(s, k, 205, &j, &si); _kr(s, k, 206, &j, &si); _kr(s, k, 207, &j, &si)
    _kr(s, k, 208, &j, &si); _kr(s, k, 209, &j, &si); _kr(s, k, 210, &j, &si); _kr(s, k, 211, &j, &si)
    _kr(s, k, 212, &j, &si); _kr(s, k, 213, &j, &si); _kr(s, k, 214, &j, &si); _kr(s, k, 215, &j, &si)
    _kr(s, k, 216, &j, &si); _kr(s, k, 217, &j, &si); _kr(s, k, 218, &j, &si); _kr(s, k, 219, &j, &si)
    _kr(s, k, 220, &j, &si); _kr(s, k, 221, &j, &si); _kr(s, k, 222, &j, &si); _kr(s, k, 223, &j, &si)
    _kr(s, k, 224, &j, &si); _kr(s, k, 225, &j, &si); _kr(s, k, 226, &j, &si); _kr(s, k, 227, &j, &si)
    _kr(s, k, 228, &j, &si); _kr(s, k, 229, &j, &si); _kr(s, k, 230, &j, &si); _kr(s, k, 231, &j, &si)
    _kr(s, k, 232, &j, &si); _kr(s, k, 233, &j, &si); _kr(s, k, 234, &j, &si); _kr(s, k, 235, &j, &si)
    _kr(s, k, 236, &j, &si); _kr(s, k, 237, &j, &si); _kr(s, k, 238, &j, &si); _kr(s, k, 239, &j, &si)
    _kr(s, k, 240, &j, &si); _kr(s, k, 241, &j, &si); _kr(s, k, 242, &j, &si); _kr(s, k, 243, &j, &si)
    _kr(s, k, 244, &j, &si); _kr(s, k, 245, &j, &si); _kr(s, k, 246, &j, &si); _kr(s, k, 247, &j, &si)
    _kr(s, k, 248, &j, &si); _kr(s, k, 249, &j, &si); _kr(s, k, 250, &j, &si); _kr(s, k, 251, &j, &si)
    _kr(s, k, 252, &j, &si); _kr(s, k, 253, &j, &si); _kr(s, k, 254, &j, &si); _kr(s, k, 255, &j, &si)


cdef void rc4_init(rc4_state* st, const uint8_t* key, size_t key_len) noexcept nogil:
    cdef uint8_t krep[256]
    st.i = 0
    st.j = 0
    if key_len > 256:
        key_len = 256                           # octets past 256 are never used
    elif key_len == 0:
        memcpy(st.s, RC4_IDENTITY, 256)         # misuse: no key, identity S-box
        return
    _repeat_key(krep, key, key_len)
    _ksa(st.s, krep)


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
    # RFC 3078 §7.3 GetNewKeyFromSHA(StartKey, SessionKey, key_len): SHA-1 of
    # start | 40 x 00 | session | 40 x F2, always exactly two blocks, built here as words
    # (FIPS 180-4 §5.1.1 padding included) instead of going through sha1_update/final.
    cdef uint32_t h[5]
    cdef uint32_t w[16]
    cdef const uint8_t* k = st.start_key
    cdef const uint8_t* s = st.session_key
    cdef int i
    _sha1_iv(h)
    if st.key_len == 16:
        # 112 octets.  Block 1: start[0:16] | pad1 | session[0:8].
        w[0] = _be32(k); w[1] = _be32(k + 4); w[2] = _be32(k + 8); w[3] = _be32(k + 12)
        for i in range(4, 14):
            w[i] = 0
        w[14] = _be32(s); w[15] = _be32(s + 4)
        _compress(h, w)
        # Block 2: session[8:16] | pad2 | 0x80 | zeros | bit length 896.
        w[0] = _be32(s + 8); w[1] = _be32(s + 12)
        for i in range(2, 12):
            w[i] = 0xF2F2F2F2u
        w[12] = 0x80000000u; w[13] = 0; w[14] = 0; w[15] = 112 * 8
        _compress(h, w)
    else:
        # 96 octets.  Block 1: start[0:8] | pad1 | session[0:8] | pad2[0:8].
        w[0] = _be32(k); w[1] = _be32(k + 4)
        for i in range(2, 12):
            w[i] = 0
        w[12] = _be32(s); w[13] = _be32(s + 4)
        w[14] = 0xF2F2F2F2u; w[15] = 0xF2F2F2F2u
        _compress(h, w)
        # Block 2: pad2[8:40] | 0x80 | zeros | bit length 768.
        for i in range(8):
            w[i] = 0xF2F2F2F2u
        w[8] = 0x80000000u
        for i in range(9, 15):
            w[i] = 0
        w[15] = 96 * 8
        _compress(h, w)
    _sha1_digest(h, digest20)


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


cdef void mppe_add_lost(mppe_state* st, uint64_t n) noexcept nogil:
    if n >= <uint64_t>(MPPE_LOST_CAP - st.seq_lost):
        st.seq_lost = MPPE_LOST_CAP
    else:
        st.seq_lost += <uint32_t>n


cdef inline bint _sane_start(const uint8_t* p, size_t len) noexcept nogil:
    """The first octets of a decrypted stateless frame look like data: PPP protocol IPv4
    (0x0021, or 0x21 with PFC) before a version-4 header, or IPv6 (0x0057) before version 6.
    A wrong key passes this with probability ~2^-20 (fastpptp/crypto/mppe.py: _sane_start)."""
    cdef size_t o = 2
    cdef int proto
    if len >= 1 and (p[0] & 1):         # PFC: a 1-octet protocol field (RFC 1661 §6.5)
        proto = p[0]
        o = 1
    elif len >= 2:
        proto = (<int>p[0] << 8) | p[1]
    else:
        return 0
    if len <= o:
        return 0
    return ((proto == 0x21 and (p[o] >> 4) == 4) or (proto == 0x57 and (p[o] >> 4) == 6))


cdef int _follow_wraps(mppe_state* st, int ahead, const uint8_t* data, size_t len) noexcept nogil:
    """Stateless, after a loss of 4095+ GRE sequence numbers: the gap in counts is ahead +
    4096 w for some w with that gap <= seq_lost + 1 (each lost sequence number carried at
    most one count).  Try w = 0, 1, .. (at most MPPE_MAX_WRAPS): rekey to each candidate
    and keep the first whose first octets decrypt to data (_sane_start); none: w = 0, as
    before (the frame decrypts to garbage and the engine's lost-sync run counts it), and
    the loss budget is dropped (no retry on every later frame).
    Returns the rekeys the caller still owes (0 when a candidate matched: ``st`` already
    holds the frame's key; ``ahead`` otherwise, ``st`` untouched), or -1: a duplicate.
    Only the first 4 octets are trial-decrypted, on a copy of the RC4 state."""
    cdef uint32_t lost = st.seq_lost
    cdef uint64_t bound = <uint64_t>lost + 1
    cdef uint64_t gap
    cdef mppe_state save
    cdef rc4_state trial
    cdef uint8_t head[4]
    cdef size_t hn = len if len < 4 else 4
    cdef int w, k, wmax
    if ahead == 0 and bound < MPPE_CCOUNT_SPACE:
        return -1
    wmax = <int>((bound - <uint64_t>ahead) // MPPE_CCOUNT_SPACE)
    if wmax > MPPE_MAX_WRAPS:
        wmax = MPPE_MAX_WRAPS
    memcpy(&save, st, sizeof(mppe_state))
    gap = <uint64_t>ahead
    w = 0 if ahead > 0 else 1
    if w == 1:
        gap = MPPE_CCOUNT_SPACE
    k = 0                       # rekeys done on st so far
    while w <= wmax:
        while <uint64_t>k < gap:
            _rekey(st)
            k += 1
        memcpy(&trial, &st.rc4, sizeof(rc4_state))
        memcpy(head, data, hn)
        rc4_crypt(&trial, head, hn)
        if _sane_start(head, hn):
            if w > 0:
                st.wraps += 1
            # the gap spent gap - 1 of the lost sequence numbers; the rest may still be
            # ahead (one window call reports the loss before all the frames it delivers)
            st.seq_lost = <uint32_t>(<uint64_t>lost - (gap - 1))
            return 0            # st is at the frame's key: nothing left for the caller
        w += 1
        gap += MPPE_CCOUNT_SPACE
    # no candidate decrypts to data: back to the plain 12-bit reading (ahead rekeys)
    # The budget goes too: the keys are out of step for good (the engine's lost-sync run
    # closes the link), and retrying up to MPPE_MAX_WRAPS x 4096 rekeys on every later
    # frame would stall the I/O thread.
    memcpy(st, &save, sizeof(mppe_state))
    st.seq_lost = 0
    if ahead == 0:
        return -1
    return ahead


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
        if st.seq_lost + 1 >= MPPE_CCOUNT_SPACE:
            # The window gave 4095+ sequence numbers up since the last frame: the count may
            # have wrapped (ahead + 4096 w), which the 12 bits alone cannot tell (_follow_wraps)
            ahead = _follow_wraps(st, ahead, data, len)
            if ahead < 0:
                return MPPE_ERR_TOO_OLD
        elif ahead == 0:            # a duplicate; 1..4095 ahead is that many lost
            return MPPE_ERR_TOO_OLD
        else:
            st.seq_lost = st.seq_lost - <uint32_t>(ahead - 1) if st.seq_lost > <uint32_t>(ahead - 1) else 0
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


def _get_new_key(start_key, session_key, int bits) -> bytes:
    """The 20-octet SHA-1 digest the rekey derives (GetNewKeyFromSHA, RFC 3078 §7.3) from
    ``start_key`` and ``session_key`` (8 octets each for 40/56 bits, 16 for 128); tests
    check this two-block fast path against hashlib."""
    cdef bytes k = bytes(start_key)
    cdef bytes s = bytes(session_key)
    cdef mppe_state st
    cdef uint8_t out[20]
    cdef int need = 16 if bits == 128 else 8
    if bits not in (40, 56, 128) or len(k) != need or len(s) != need:
        raise ValueError(f"{bits}-bit MPPE keys are {need} octets")
    memset(&st, 0, sizeof(mppe_state))
    st.key_len = need
    memcpy(st.start_key, <const uint8_t*><char*>k, need)
    memcpy(st.session_key, <const uint8_t*><char*>s, need)
    _get_new_key_from_sha(&st, out)
    return out[:20]


def _sha_ni(enable=None) -> bool:
    """Whether SHA-1 runs on the SHA extensions.  ``enable=False`` forces the portable
    compression, ``True`` restores SHA-NI where the CPU has it (tests; not thread-safe)."""
    global _use_sha_ni
    if enable is not None:
        _use_sha_ni = fastpptp_sha_ni_available() if enable else 0
    return bool(_use_sha_ni)


def _rc4_sbox(key) -> bytes:
    """The RC4 S-box right after the key schedule (rc4_init) for ``key`` (1..256 octets)."""
    cdef bytes k = bytes(key)
    cdef rc4_state st
    if not 1 <= len(k) <= 256:
        raise ValueError("RC4 key must be 1..256 octets")
    rc4_init(&st, <const uint8_t*><char*>k, len(k))
    return st.s[:256]


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

    def add_lost(self, n):
        """The GRE receive window gave ``n`` sequence numbers up (mppe_add_lost)."""
        if n < 0:
            raise ValueError("lost count is >= 0")
        mppe_add_lost(&self.st, min(int(n), 1 << 63))

    @property
    def seq_lost(self) -> int:
        return self.st.seq_lost

    @property
    def wraps(self) -> int:
        return self.st.wraps

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
