# cython: language_level=3
"""Layer 2/3 pieces shared by the GRE ports that write their own Ethernet + IPv4 headers
(PacketPort in _port_packet.pyx, XdpPort in _port_xdp.pyx): the IPv4 header checksum, the
nexthop table (peer -> next-hop MAC, our source, MTU) and the header write from one of its
entries.  Everything here is inline so the transmit fast path stays one loop without calls.

The nexthop table is open addressing with linear probing and tombstones; its ``lock`` is held
by the control thread (set/clear/dump) and by the engine's I/O thread for the lookups of one
``tx_flush``, never across a syscall.  It is kept at most half live, so a probe always ends.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from fastpptp._sys cimport (pthread_mutex_t, pthread_mutex_init, pthread_mutex_destroy,
                            pthread_mutex_lock, pthread_mutex_unlock)

cdef enum:
    ETH_HLEN = 14
    IP_HLEN = 20
    L2L3 = ETH_HLEN + IP_HLEN       # what a port writes in front of a GRE frame
    NH_FREE = 0                     # never used since the last rebuild: a probe ends here
    NH_LIVE = 1
    NH_DEAD = 2                     # tombstone


cdef struct nh_entry:
    uint32_t dst_be         # key: the peer's IPv4 address (network order in memory)
    uint32_t src_be         # our IPv4 source towards it
    uint32_t csum_base      # one's-complement sum of the IPv4 header words that never change
    uint16_t mtu            # IPv4 datagrams up to this size go the fast way
    uint8_t state
    uint8_t eth[ETH_HLEN]   # next-hop MAC, our MAC, 0x0800


cdef struct nh_table:
    nh_entry* slot
    uint32_t mask           # slots - 1 (a power of two)
    uint32_t live           # NH_LIVE entries
    uint32_t used           # NH_LIVE + NH_DEAD entries
    bint lock_ok
    pthread_mutex_t lock


cdef inline uint16_t csum_fold(uint32_t s) noexcept nogil:
    """RFC 1071 section 4.1: fold the carries, complement."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>(~s & 0xFFFF)


cdef inline uint32_t sum16(const uint8_t* p, int n) noexcept nogil:
    """One's-complement sum of ``n`` (even) bytes as big-endian 16-bit words, unfolded."""
    cdef uint32_t s = 0
    cdef int i
    for i in range(0, n, 2):
        s += (<uint32_t>p[i] << 8) | p[i + 1]
    return s


cdef inline uint32_t nh_hash(uint32_t key, uint32_t mask) noexcept nogil:
    return ((key * 2654435761u) >> 11) & mask


cdef inline int nh_init(nh_table* t, uint32_t slots) noexcept:
    """``slots``: a power of two.  -1 on ENOMEM or a mutex failure (``t`` then still frees)."""
    t.slot = <nh_entry*>calloc(slots, sizeof(nh_entry))
    if t.slot == NULL:
        return -1
    t.mask = slots - 1
    t.live = 0
    t.used = 0
    if pthread_mutex_init(&t.lock, NULL) != 0:
        return -1
    t.lock_ok = True
    return 0


cdef inline void nh_free(nh_table* t) noexcept nogil:
    free(t.slot)
    t.slot = NULL
    if t.lock_ok:
        pthread_mutex_destroy(&t.lock)
        t.lock_ok = False


cdef inline nh_entry* nh_find(nh_table* t, uint32_t dst_be, bint for_insert) noexcept nogil:
    """The live entry of ``dst_be``, or NULL; with ``for_insert`` and no live entry, the slot
    to put it in (the first tombstone on its probe path, else the free slot ending it).
    Under ``t.lock``."""
    cdef uint32_t i, k
    cdef nh_entry* tomb = NULL
    cdef nh_entry* e
    if t.slot == NULL:
        return NULL
    i = nh_hash(dst_be, t.mask)
    for k in range(t.mask + 1):
        e = &t.slot[i]
        if e.state == NH_FREE:
            if for_insert:
                return tomb if tomb != NULL else e
            return NULL
        if e.state == NH_LIVE and e.dst_be == dst_be:
            return e
        if e.state == NH_DEAD and tomb == NULL:
            tomb = e
        i = (i + 1) & t.mask
    return tomb if for_insert else NULL


cdef inline void nh_rebuild(nh_table* t) noexcept nogil:
    """Re-insert the live entries without tombstones (under ``t.lock``); on ENOMEM the table
    stays as it was."""
    cdef uint32_t cap = t.mask + 1, i, j
    cdef nh_entry* old = <nh_entry*>calloc(cap, sizeof(nh_entry))
    if old == NULL:
        return
    memcpy(old, t.slot, cap * sizeof(nh_entry))
    memset(t.slot, 0, cap * sizeof(nh_entry))
    t.used = 0
    for i in range(cap):
        if old[i].state == NH_LIVE:
            j = nh_hash(old[i].dst_be, t.mask)
            while t.slot[j].state != NH_FREE:
                j = (j + 1) & t.mask
            t.slot[j] = old[i]
            t.used += 1
    free(old)


cdef inline bint nh_set(nh_table* t, uint32_t dst_be, uint32_t src_be, uint16_t mtu,
                        const uint8_t* mac, const uint8_t* own_mac) noexcept nogil:
    """Insert or replace the entry of ``dst_be`` (takes ``t.lock``).  False when the table
    is full (half live): the peer then keeps the slow path."""
    cdef uint8_t tmpl[IP_HLEN]
    cdef nh_entry* e
    cdef bint ok = True
    # the IPv4 header words that never change (RFC 791): 0x4500, DF, TTL 64 | GRE (47), src,
    # dst; tot_len and id are added per packet in l2l3_write
    memset(tmpl, 0, IP_HLEN)
    tmpl[0] = 0x45
    tmpl[6] = 0x40
    tmpl[8] = 64
    tmpl[9] = 47
    memcpy(&tmpl[12], &src_be, 4)
    memcpy(&tmpl[16], &dst_be, 4)
    pthread_mutex_lock(&t.lock)
    e = nh_find(t, dst_be, False)
    if e == NULL:
        if t.slot == NULL or t.live * 2 >= t.mask + 1:
            ok = False
        else:
            if t.used * 4 >= (t.mask + 1) * 3:
                nh_rebuild(t)           # too many tombstones
            e = nh_find(t, dst_be, True)
            if e == NULL:
                ok = False
            else:
                if e.state == NH_FREE:
                    t.used += 1
                t.live += 1
    if ok:
        e.dst_be = dst_be
        e.src_be = src_be
        e.mtu = mtu
        e.csum_base = sum16(tmpl, IP_HLEN)
        memcpy(&e.eth[0], mac, 6)
        memcpy(&e.eth[6], own_mac, 6)
        e.eth[12] = 0x08
        e.eth[13] = 0x00
        e.state = NH_LIVE
    pthread_mutex_unlock(&t.lock)
    return ok


cdef inline bint nh_clear(nh_table* t, uint32_t dst_be) noexcept nogil:
    """Drop the entry of ``dst_be`` (takes ``t.lock``).  True if it had one."""
    cdef nh_entry* e
    cdef bint had = False
    pthread_mutex_lock(&t.lock)
    e = nh_find(t, dst_be, False)
    if e != NULL:
        e.state = NH_DEAD
        t.live -= 1
        had = True
    pthread_mutex_unlock(&t.lock)
    return had


cdef inline list nh_dump(nh_table* t):
    """[(dst_be, src_be, mac bytes, mtu)] of the live entries (takes ``t.lock``)."""
    cdef uint32_t i
    cdef list live = []
    if t.slot == NULL:
        return live
    with nogil:
        pthread_mutex_lock(&t.lock)
    try:
        for i in range(t.mask + 1):
            if t.slot[i].state == NH_LIVE:
                live.append((t.slot[i].dst_be, t.slot[i].src_be, bytes(t.slot[i].eth[:6]),
                             t.slot[i].mtu))
    finally:
        pthread_mutex_unlock(&t.lock)
    return live


cdef inline void l2l3_write(uint8_t* p, const nh_entry* e, uint32_t tot, uint16_t ip_id) noexcept nogil:
    """Ethernet + IPv4 header (``L2L3`` bytes at ``p``) for an IPv4 datagram of ``tot`` bytes
    carrying GRE to ``e``: the checksum is ``e.csum_base`` plus the two words that vary
    (RFC 1624 style incremental sum).  DF set: RFC 2637 leaves it to us, PMTU goes through
    the slow path."""
    cdef uint16_t c
    memcpy(p, e.eth, ETH_HLEN)
    p += ETH_HLEN
    p[0] = 0x45
    p[1] = 0
    p[2] = <uint8_t>(tot >> 8)
    p[3] = <uint8_t>tot
    p[4] = <uint8_t>(ip_id >> 8)
    p[5] = <uint8_t>ip_id
    p[6] = 0x40         # DF
    p[7] = 0
    p[8] = 64
    p[9] = 47
    memcpy(&p[12], &e.src_be, 4)
    memcpy(&p[16], &e.dst_be, 4)
    c = csum_fold(e.csum_base + tot + ip_id)
    p[10] = <uint8_t>(c >> 8)
    p[11] = <uint8_t>c
