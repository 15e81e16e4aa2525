"""set_peer_call: a PNS registers its call before the PAC's reply tells it the peer call ID."""
import struct

import pytest

from fastpptp.gre import GreHeader


def _ipv4_gre(src, dst, gre: bytes) -> bytes:
    import socket
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(gre), 0, 0x4000, 64, 47, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return hdr + gre


def test_frames_before_and_after_the_peer_call_id(engine):
    engine.add_session(0x1111, 0, "192.0.2.10")          # OCRQ sent: peer call ID unknown
    # the PAC's first LCP Configure-Request arrives before its Outgoing-Call-Reply is handled
    lcp = b"\xff\x03\xc0\x21" + bytes([1, 1, 0, 4])
    gre = GreHeader(call_id=0x1111, payload_length=len(lcp), seq=0).encode() + lcp
    engine.process(1.0, gre_in=[_ipv4_gre("192.0.2.10", "192.0.2.1", gre)])
    assert engine.recv_control() == [(0x1111, 0xC021, bytes([1, 1, 0, 4]))]
    engine.set_peer_call(0x1111, 0x2222, peer_rwin=3, peer_ppd=0)
    engine.send_control(0x1111, 0xC021, bytes([2, 1, 0, 4]))
    out = engine.process(1.01).gre_out
    frames = [f for peer, f in out if peer == "192.0.2.10"]
    assert frames, out
    hdr = GreHeader.decode(frames[-1])
    assert hdr.call_id == 0x2222 and hdr.ack == 0        # the peer's key; its seq 0 acked
    with pytest.raises(KeyError):
        engine.set_peer_call(0x3333, 1)
    with pytest.raises(ValueError):
        engine.set_peer_call(0x1111, 0x10000)
