"""Every PPTP control message and every GRE packet of the reference captures
(tests/data/captures, pptp-linux 1.10 <-> pptpd 1.4.0) decodes and re-encodes to
the very same bytes."""
from __future__ import annotations

import pytest

from fastpptp import gre
from fastpptp.ppp import frame
from fastpptp.ppp.constants import Protocol
from fastpptp.pptp import messages as m
from fastpptp.pptp.framer import PptpFramer
from support.pcap import PROTO_GRE, capture_files, read_pcap, tcp_streams

CAPTURES = capture_files()
assert CAPTURES, "the reference captures are missing from tests/data/captures"

# INDEX.md: message types per capture, in stream order per direction (client 192.0.2.20).
EXPECTED = {
    "chap-md5.pcap": ([1, 7, 12], [2, 8]),
    "mschapv2-mppe128.pcap": ([1, 7, 5, 12], [2, 8, 6]),
    "mschapv2-nompe.pcap": ([1, 7, 5, 12], [2, 8, 6]),
    "pap.pcap": ([1, 7, 12], [2, 8]),
    "server-shutdown.pcap": ([1, 7, 4], [2, 8, 13, 3]),
}


def control_messages(path):
    """{'client'|'server': [(frame number, wire bytes, Message)]} via the stream framer."""
    out = {"client": [], "server": []}
    for (_src, sport, _dst, dport), segments in tcp_streams(read_pcap(path)).items():
        if m.PPTP_PORT not in (sport, dport):
            continue
        side = "client" if dport == m.PPTP_PORT else "server"
        framer = PptpFramer()
        for number, data in segments:
            framer.feed(data)
            for msg in framer:
                out[side].append((number, msg))
        assert framer.pending == 0, f"{path.name}: {side} stopped mid-message"
    return out


def raw_stream(path, side):
    for (_s, sport, _d, dport), segments in tcp_streams(read_pcap(path)).items():
        to_server = dport == m.PPTP_PORT
        if (side == "client" and to_server) or (side == "server" and sport == m.PPTP_PORT):
            return b"".join(data for _, data in segments)
    return b""


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_control_messages_round_trip(path):
    msgs = control_messages(path)
    for side in ("client", "server"):
        wire = b"".join(msg.encode() for _, msg in msgs[side])
        assert wire == raw_stream(path, side)
    if path.name in EXPECTED:
        client, server = EXPECTED[path.name]
        assert [int(x.TYPE) for _, x in msgs["client"]] == client
        assert [int(x.TYPE) for _, x in msgs["server"]] == server


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_call_ids_agree_with_gre_keys(path):
    msgs = control_messages(path)
    ocrq = next(x for _, x in msgs["client"] if isinstance(x, m.OCRQ))
    ocrp = next(x for _, x in msgs["server"] if isinstance(x, m.OCRP))
    assert ocrp.peer_call_id == ocrq.call_id
    assert ocrp.call_id == 0                  # pptpd always answers with Call ID 0
    assert ocrp.result_code == m.OutgoingCallResult.CONNECTED
    keys = {(f.ip_dst, gre.GreHeader.decode(f.gre_bytes).call_id)
            for f in read_pcap(path) if f.proto == PROTO_GRE}
    # GRE carries the receiver's call ID: client->server 0, server->client the PNS's ID
    assert keys == {("192.0.2.10", 0), ("192.0.2.20", ocrq.call_id)}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_gre_packet_round_trips(path):
    packets = [f for f in read_pcap(path) if f.proto == PROTO_GRE]
    assert packets
    ack_only = 0
    for f in packets:
        hdr, ppp = gre.decode_packet(f.gre_bytes)
        assert hdr.encode() + ppp == f.gre_bytes
        if hdr.is_ack_only:
            ack_only += 1
            assert ppp == b""
            continue
        protocol, info = frame.decode(ppp)
        assert protocol in {p.value for p in Protocol}
        acfc = not ppp.startswith(b"\xff\x03")
        pfc = len(ppp) - len(info) - (0 if acfc else 2) == 1
        if protocol == Protocol.LCP and acfc:
            # The Linux pptp driver keeps FF 03 only on LCP codes 1-7 (Configure-* to
            # Code-Reject) once ACFC is agreed; Echo etc. go out compressed.  We always
            # send FF 03 on LCP (RFC 1661 §6.6) and accept both.
            assert info[0] >= 8
            continue
        assert frame.encode(protocol, info, acfc=acfc, pfc=pfc) == ppp
    assert ack_only >= 1                      # pptp-linux sends ack-only packets


def test_server_shutdown_details():
    path = next((p for p in CAPTURES if p.name == "server-shutdown.pcap"), None)
    assert path is not None, "server-shutdown.pcap is missing from tests/data/captures"
    server = [x for _, x in control_messages(path)["server"]]
    cdn = next(x for x in server if isinstance(x, m.CDN))
    assert cdn.result_code == m.CallDisconnectResult.ADMIN_SHUTDOWN
    stop = next(x for x in server if isinstance(x, m.StopCCRQ))
    assert stop.reason == m.StopCtrlConnReason.NONE
