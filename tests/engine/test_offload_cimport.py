"""The .pxd is the contract the engine codes against: a separate Cython module cimports
fastpptp._offload, fills a vnet_hdr and calls tso_segment/gro_coalesce/mss_clamp without the
GIL into a slab with headroom, exactly as _gre.pyx is meant to.  Built in a temp dir."""
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastpptp import _offload_ref as ref
from support.offload import compiled, flow, super_packet, tcp_packet

REPO = Path(__file__).resolve().parents[2]

USER = textwrap.dedent('''
    # cython: language_level=3
    from libc.stdint cimport uint8_t, uint32_t
    from libc.string cimport memcpy
    from fastpptp._offload cimport (
        vnet_hdr, tso_segment, gro_coalesce, gro_group_flows, mss_clamp_mtu, VNET_HDR_LEN,
        GRO_MAX_IP_LEN)

    cdef enum:
        ROWS = 64
        STRIDE = 1600
        HEADROOM = 64

    def segment_into_slab(bytes tun_read, int max_ip_len):
        """A TUN read = vnet_hdr + packet, cut into slab rows after HEADROOM bytes."""
        cdef vnet_hdr vh
        memcpy(&vh, <char*>tun_read, VNET_HDR_LEN)
        cdef const uint8_t* pkt = <const uint8_t*><char*>tun_read + VNET_HDR_LEN
        cdef size_t n = len(tun_read) - VNET_HDR_LEN
        cdef uint8_t slab[ROWS * STRIDE]
        cdef uint32_t lens[ROWS]
        cdef int r
        with nogil:
            r = tso_segment(pkt, n, &vh, max_ip_len, slab, STRIDE, HEADROOM, ROWS, lens)
        return r, [(<char*>slab + STRIDE * k + HEADROOM)[:lens[k]] for k in range(max(r, 0))]

    def coalesce_for_tun_write(list pkts):
        """Decapsulated packets -> [vnet_hdr + super-packet] as written to the TUN."""
        cdef uint8_t* ptrs[64]
        cdef uint32_t lens[64]
        cdef uint8_t dst[VNET_HDR_LEN + GRO_MAX_IP_LEN]
        cdef uint32_t dst_len
        cdef int n = len(pkts), i = 0, r, k
        for k in range(n):
            ptrs[k] = <uint8_t*><char*>pkts[k]
            lens[k] = len(pkts[k])
        out = []
        with nogil:
            gro_group_flows(ptrs, lens, n)
        while i < n:
            with nogil:
                r = gro_coalesce(ptrs + i, lens + i, n - i, dst + VNET_HDR_LEN,
                                 GRO_MAX_IP_LEN, <vnet_hdr*>dst, &dst_len)
            out.append((<char*>dst)[:VNET_HDR_LEN + dst_len])
            i += r
        return out

    def clamp(bytes pkt, int mtu):
        cdef bytearray b = bytearray(pkt)
        cdef uint8_t* p = <uint8_t*><char*>b
        cdef size_t n = len(b)
        with nogil:
            mss_clamp_mtu(p, n, mtu)
        return bytes(b)
''')

SETUP = textwrap.dedent('''
    from setuptools import Extension, setup
    from Cython.Build import cythonize
    setup(ext_modules=cythonize([Extension("offload_user", ["offload_user.pyx"])],
                                include_path=[{repo!r}], language_level=3, quiet=True))
''')


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    d = tmp_path_factory.mktemp("cimport")
    (d / "offload_user.pyx").write_text(USER)
    (d / "setup.py").write_text(SETUP.format(repo=str(REPO)))
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=d,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sys.path.insert(0, str(d))
    try:
        yield importlib.import_module("offload_user")
    finally:
        sys.path.remove(str(d))


@pytest.mark.slow
def test_engine_style_use_through_cimport(user):
    pkt, vh = super_packet(4, bytes(range(256)) * 100, 1448)
    r, segs = user.segment_into_slab(vh + pkt, 1400)
    assert r == len(segs) == 19 and segs == compiled.segment(pkt, vh, 1400)
    a, b = flow(4, [1000] * 5), flow(6, [1000] * 5)
    mixed = [p for pair in zip(a, b, strict=True) for p in pair]
    writes = user.coalesce_for_tun_write(mixed)
    assert writes == [vh + p for vh, p in compiled.coalesce(mixed, group=True)]
    assert [ref.unpack_vnet_hdr(w[:12]).gso_type for w in writes] == [1, 4]
    syn = tcp_packet(6, flags=0x02, opts=bytes([2, 4, 0x05, 0xB4]))
    assert user.clamp(syn, 1400) == compiled.clamp(syn, 1340)
