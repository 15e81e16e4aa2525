"""Real GRE traffic from pppd / pptp-linux / pptpd (tests/data/captures) through the
engine: every frame of each direction is accepted (nothing malformed, no sequence trouble),
control frames reach Python in order, IPv4 reaches the TUN, on both twins."""
from __future__ import annotations

import struct
from collections import defaultdict

import pytest

from support.packets import dgram
from fastpptp.dataplane import EngineConfig
from support.pcap import PROTO_GRE, capture_files, read_pcap

CAPS = [p for p in capture_files()]


def _directions(path):
    by = defaultdict(list)
    for f in read_pcap(path):
        if f.proto == PROTO_GRE and f.gre_bytes:
            by[(f.ip_src, f.ip_dst)].append(f)
    return by


def _ppp(payload: bytes):
    o = 2 if payload[:2] == b"\xff\x03" else 0
    if payload[o] & 1:
        return payload[o], payload[o + 1:]
    return struct.unpack("!H", payload[o:o + 2])[0], payload[o + 2:]


@pytest.mark.parametrize("path", CAPS, ids=lambda p: p.name)
def test_capture_gre_accepted(Engine, path):
    dirs = _directions(path)
    assert dirs, "no GRE in the capture"
    delivered = 0
    for (src, dst), frames in dirs.items():
        key = struct.unpack("!H", frames[0].gre_bytes[6:8])[0]
        e = Engine(EngineConfig(control_queue=4096))
        e.add_session(key, 1, src)
        e.set_data(key, True, False)
        expect_ctl, expect_ip = [], []
        for f in frames:
            g = f.gre_bytes
            if not g[0] & 0x10:
                continue                                 # ack-only
            hl = 12 + (4 if g[1] & 0x80 else 0)
            proto, info = _ppp(g[hl:])
            (expect_ip if proto == 0x21 else expect_ctl).append((proto, info))
        tun = []
        t0 = frames[0].time
        for f in frames:
            out = e.process(f.time - t0, gre_in=[dgram(f.gre_bytes, src=src, dst=dst)])
            tun += [ip for _, ip in out.tun_out]
        c, t = e.counters(key), e.totals()
        bad = {k: v for k, v in c.items() if k.startswith("drop_") and v}
        assert not bad and t["drop_malformed"] == 0 and t["drop_unknown_call"] == 0, (src, bad, t)
        assert c["lost"] == 0
        ctl = [(p, i) for _, p, i in e.recv_control(4096)]
        assert ctl == expect_ctl
        assert [(0x21, ip) for ip in tun] == expect_ip
        delivered += len(tun)
    if "mppe" not in path.name and "shutdown" not in path.name:
        assert delivered >= 4                            # the pings, both ways
