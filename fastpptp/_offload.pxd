# cython: language_level=3
"""Contract of the compiled TUN offload helpers (fastpptp/_offload.pyx).

The engine reads TCP super-packets (up to 64 KB) from a TUN opened with IFF_VNET_HDR and
TUNSETOFFLOAD(TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6), cuts them into PPP-MTU-sized IP packets
(tso_segment), and glues decapsulated in-order TCP segments back into super-packets
(gro_coalesce) before writing them to the TUN.

virtio_net_hdr: fastpptp uses the 12-byte header (struct virtio_net_hdr_mrg_rxbuf, i.e. the
10-byte struct virtio_net_hdr + num_buffers), selected with TUNSETVNETHDRSZ(12) by
fastpptp.net.tun.open_tun.  Why 12: the IP header that follows lands 4-byte aligned in a
4-byte aligned buffer.  Fields are in host byte order (little endian here; TUNSETVNETLE not
used), so `vnet_hdr` can be memcpy'd to/from the wire: it is exactly VNET_HDR_LEN bytes.

How the engine uses it (TunDevice.vnet_hdr_len from fastpptp.net.tun says whether a TUN fd
carries the header: 12, or 0 after a fallback -- then none of this applies):
  TUN read:  n = read(fd, buf, VNET_HDR_LEN + 65536); memcpy(&vh, buf, VNET_HDR_LEN);
             k = tso_segment(buf + VNET_HDR_LEN, n - VNET_HDR_LEN, &vh, ppp_mtu,
                             slab, row_size, HEADROOM, rows, lens);
             k < 0: count a drop (k == OFFLOAD_ETOOBIG: a non-TCP packet over the MTU);
             else mss_clamp_mtu(row + HEADROOM, lens[i], ppp_mtu) and encapsulate rows 0..k-1.
  TUN write: gro_group_flows(ptrs, lens, n) once per decapsulated batch (n <= GRO_MAX_BATCH),
             then while i < n: r = gro_coalesce(ptrs + i, lens + i, n - i,
                     dst + VNET_HDR_LEN, GRO_MAX_IP_LEN, <vnet_hdr*>dst, &len);
             write(fd, dst, VNET_HDR_LEN + len); i += r.
  Every write to a vnet TUN needs the header, even for one plain packet (all zero then).

Every function here is nogil, touches no Python object, and never writes outside the
bounds it is given.  Negative return values are OFFLOAD_E* codes: the engine drops the packet
and counts it (drop_malformed for EMALFORMED, the others as it sees fit); nothing raises.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t


cdef enum:
    VNET_HDR_LEN = 12                    # what we ask for with TUNSETVNETHDRSZ

    # virtio_net_hdr.flags (virtio spec 5.1.6, include/uapi/linux/virtio_net.h)
    VIRTIO_NET_HDR_F_NEEDS_CSUM = 1      # L4 checksum is partial: see csum_complete
    VIRTIO_NET_HDR_F_DATA_VALID = 2      # checksum already verified (read side only)

    # virtio_net_hdr.gso_type
    VIRTIO_NET_HDR_GSO_NONE = 0
    VIRTIO_NET_HDR_GSO_TCPV4 = 1
    VIRTIO_NET_HDR_GSO_UDP = 3           # UFO (IP fragmentation): unsupported
    VIRTIO_NET_HDR_GSO_TCPV6 = 4
    VIRTIO_NET_HDR_GSO_UDP_L4 = 5        # USO: segmented by tso_segment too
    VIRTIO_NET_HDR_GSO_ECN = 0x80        # OR'ed into gso_type: the super-packet carries CWR

    # Largest IP packet gro_coalesce builds (IPv4 total length / IPv6 40 + payload length).
    GRO_MAX_IP_LEN = 65535
    # Most packets gro_group_flows reorders in one call.
    GRO_MAX_BATCH = 256

    # Return codes (< 0)
    OFFLOAD_EMALFORMED = -1    # truncated / inconsistent headers, bad csum_start, ...
    OFFLOAD_EUNSUPPORTED = -2  # UFO, IPv6 fragment header, SYN/RST in a GSO packet, ...
    OFFLOAD_ETOOBIG = -3       # GSO_NONE non-TCP packet longer than max_ip_len
    OFFLOAD_ENOSPC = -4        # more than max_out segments, or a row (stride) too small


cdef struct vnet_hdr:
    uint8_t flags
    uint8_t gso_type
    uint16_t hdr_len       # hint only; we parse headers ourselves
    uint16_t gso_size      # payload bytes per segment (TCP: the MSS the stack used)
    uint16_t csum_start    # offset of the L4 header from the start of the IP packet
    uint16_t csum_offset   # offset of the checksum field from csum_start (TCP 16, UDP 6)
    uint16_t num_buffers   # 0 on write, ignored on read


# -- checksum -------------------------------------------------------------------------------

# NEEDS_CSUM: the 16-bit field at csum_start+csum_offset holds the folded pseudo-header sum
# (virtio: "the checksum from csum_start to the end is to be computed and stored at
# csum_start+csum_offset").  Sum [csum_start, len), complement, store (0 is sent as 0xFFFF,
# as RFC 768 wants for UDP; equivalent for TCP).  Returns 1 if it wrote a checksum, 0 if the
# header did not ask for one, OFFLOAD_EMALFORMED if the offsets fall outside the packet.
cdef int csum_complete(uint8_t* pkt, size_t len, const vnet_hdr* vh) noexcept nogil


# -- TSO / USO segmentation (TUN read -> GRE) ------------------------------------------------

# Split the IP packet `pkt[0:len]` described by `vh` into IP packets of at most `max_ip_len`
# bytes.  Segment k is written at out + k*out_stride + out_headroom, its length in
# out_lens[k].  Returns the number of segments (>= 1) or an OFFLOAD_E* code.
#
# * GSO_TCPV4 / GSO_TCPV6: payload cut in min(gso_size, max_ip_len - headers) chunks;
#   per segment: IPv4 total length, ID = first ID + k, header checksum; IPv6 payload length;
#   TCP seq += bytes before it; FIN/PSH only on the last, CWR only on the first; TCP checksum
#   computed from scratch (pseudo-header + segment), whatever vh->flags says.
#   IPv4 options and IPv6 extension headers (hop-by-hop, routing, destination) are copied.
# * GSO_UDP_L4: the same for UDP (own UDP header, length and checksum per datagram).
# * GSO_NONE: one packet, copied, its checksum completed if NEEDS_CSUM.  A TCP packet longer
#   than max_ip_len is segmented as if it were GSO (TCP may be resegmented); any other
#   protocol longer than max_ip_len returns OFFLOAD_ETOOBIG (the engine answers ICMP).
# Requirements: out_stride >= out_headroom + (largest segment), else OFFLOAD_ENOSPC.
cdef int tso_segment(const uint8_t* pkt, size_t len, const vnet_hdr* vh,
                     uint16_t max_ip_len, uint8_t* out, size_t out_stride,
                     size_t out_headroom, int max_out, uint32_t* out_lens) noexcept nogil


# -- GRO coalescing (GRE -> TUN write) -------------------------------------------------------

# Coalesce pkts[0], pkts[1], ... (n >= 1 IP packets, lens[i] bytes each) into one TCP
# super-packet at dst (dst_cap bytes) and describe it in *vh_out; *dst_len = its length.
# Returns how many input packets it consumed, >= 1 (or OFFLOAD_ENOSPC if n < 1 or pkts[0]
# does not fit dst_cap).  Packets i>0 are merged into pkts[0] while ALL hold:
#   same IP version, no IPv4 options / IPv6 extension headers, not fragments,
#   same addresses, ports, TOS/traffic class, TTL/hop limit, DF, IPv6 flow label;
#   IPv4 ID = first ID + i unless DF is set (RFC 6864: atomic datagrams' IDs mean nothing);
#   TCP flags ACK or ACK|PSH only (PSH ends the run), same ack number, window, header length
#   and option bytes, seq = previous seq + previous payload length;
#   every segment before the last carries exactly the first one's payload length (> 0), the
#   last at most that;
#   IPv4 header checksum and TCP checksum of the segment verify (we must not launder
#   corrupted data: GRE without MPPE has no integrity check), and the total stays
#   <= min(GRO_MAX_IP_LEN, dst_cap).
# With >= 2 merged: vh_out = {NEEDS_CSUM, GSO_TCPV4|TCPV6, hdr_len = IP + TCP header,
# gso_size = first payload length, csum_start = IP header length, csum_offset = 16}, the IP
# header has the new length (and checksum), the TCP checksum field holds the folded
# pseudo-header sum over the whole TCP length (the kernel's CHECKSUM_PARTIAL convention,
# accepted by virtio_net_hdr_to_skb on a TUN write), PSH = OR of the merged ones.
# With 1 consumed: the packet is copied unchanged, vh_out = all zero (GSO_NONE, no flags).
cdef int gro_coalesce(uint8_t** pkts, const uint32_t* lens, int n, uint8_t* dst,
                      size_t dst_cap, vnet_hdr* vh_out, uint32_t* dst_len) noexcept nogil


# Make each flow's packets consecutive so gro_coalesce can merge interleaved flows (two TCP
# streams decapsulated alternately, say): a stable grouping of pkts/lens in place, groups in
# order of first appearance, packet order within a flow unchanged.  Flow key: IP version,
# addresses, protocol, and for unfragmented TCP/UDP the ports (so a FIN or a pure ACK stays
# in order with its flow's data).  Unparseable packets form one group.  Different flows may
# be reordered relative to each other, which IP allows.  Returns the number of groups, or
# OFFLOAD_ENOSPC if n > GRO_MAX_BATCH (nothing moved).
cdef int gro_group_flows(uint8_t** pkts, uint32_t* lens, int n) noexcept nogil


# -- TCP MSS clamping --------------------------------------------------------------------------

# If pkt is an IPv4 or IPv6 TCP segment with SYN set whose MSS option (RFC 9293 3.2) exceeds
# `mss`, rewrite it to `mss` and update the TCP checksum incrementally (RFC 1624 eqn. 3).
# Returns 1 if it changed the packet, 0 otherwise (non-SYN, no/short MSS, malformed or
# truncated options: never reads past len).
cdef int mss_clamp(uint8_t* pkt, size_t len, uint16_t mss) noexcept nogil

# mss_clamp with the MSS derived from the PPP MTU: mtu - 40 for IPv4, mtu - 60 for IPv6.
cdef int mss_clamp_mtu(uint8_t* pkt, size_t len, uint16_t mtu) noexcept nogil
