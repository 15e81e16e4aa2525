"""Replay the reference captures (pptp-linux 1.10 PNS <-> pptpd 1.4.0 PAC) into our control
connection: the PAC side into our PNS and the PNS side into our PAC.  Configured like the
reference peer, ours produces the very bytes it produced, and reaches the same outcome (call
established with the same call IDs and window sizes, the same teardown)."""
from __future__ import annotations

import random

import pytest

from fastpptp.pptp import messages as m
from fastpptp.pptp.control import (CallCleared, CallEstablished, CallRequested, ControlClosed,
                                   ControlConfig, ControlConnected, ControlConnection, Role)
from fastpptp.pptp.framer import PptpFramer
from support.pcap import capture_files, read_pcap, tcp_streams

CAPTURES = capture_files()
assert CAPTURES, "the reference captures are missing from tests/data/captures"

# What pptp-linux and pptpd put in their messages (see the captures).
PPTP_LINUX = ControlConfig(host_name="local", vendor_string="cananian", firmware_revision=1,
                           maximum_channels=65535, recv_window=3, minimum_bps=2400,
                           maximum_bps=10_000_000)
PPTPD = ControlConfig(host_name="local", vendor_string="linux", firmware_revision=1,
                      maximum_channels=1, framing_capabilities=0, bearer_capabilities=0,
                      recv_window=3, connect_speed=10_000_000)


def timeline(path):
    """[(time, side, [Message, ...], raw bytes)] for each PPTP segment, in capture order."""
    frames = read_pcap(path)
    times = {f.number: f.time for f in frames}
    items = []
    for (_src, _sport, _dst, dport), segments in tcp_streams(frames).items():
        side = "client" if dport == m.PPTP_PORT else "server"
        framer = PptpFramer()
        for number, data in segments:
            framer.feed(data)
            items.append((number, times[number], side, list(framer), data))
    items.sort()
    fin = max(f.time for f in frames)
    return [item[1:] for item in items], fin


def drain(conn):
    evs = []
    while (ev := conn.next_event()) is not None:
        evs.append(ev)
    return evs


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_pac_side_into_our_pns(path):
    items, end = timeline(path)
    t0 = items[0][0]
    pns = ControlConnection(Role.PNS, PPTP_LINUX, t0, random.Random(0))
    events, sent, expected = [], b"", b""
    for now, side, msgs, raw in items:
        if pns.get_timer() is not None and pns.get_timer() <= now:
            pns.handle_timer(now)
        if side == "server":
            pns.receive_data(raw, now)
        else:
            for msg in msgs:
                if isinstance(msg, m.SCCRQ):
                    pns.start(now)
                elif isinstance(msg, m.OCRQ):
                    assert pns.place_call(now, call_id=msg.call_id) == msg.call_id
                elif isinstance(msg, m.CCRQ):
                    pns.clear_call(msg.call_id, "user", now=now)
                if not isinstance(msg, m.EchoRequest):     # ours is timer-driven
                    expected += msg.encode()
        sent += pns.data_to_send()
        events += drain(pns)
    pns.receive_data(b"", end)                               # the TCP FIN
    events += drain(pns)
    assert sent == expected                                  # byte for byte as pptp-linux

    client = [x for _, s, msgs, _ in items if s == "client" for x in msgs]
    ocrq = next(x for x in client if isinstance(x, m.OCRQ))
    assert isinstance(events[0], ControlConnected)
    assert events[0].peer_host_name == b"local" and events[0].peer_vendor == b"linux"
    (est,) = [e for e in events if isinstance(e, CallEstablished)]
    assert (est.call_id, est.peer_call_id, est.peer_rwin, est.peer_ppd, est.connect_speed) == \
        (ocrq.call_id, 0, 3, 0, 10_000_000)
    (cleared,) = [e for e in events if isinstance(e, CallCleared)]
    assert cleared.call_id == ocrq.call_id and cleared.by_peer
    if path.name == "server-shutdown.pcap":
        assert cleared.result == m.CallDisconnectResult.ADMIN_SHUTDOWN
        assert "Stop-Control-Connection-Request" in events[-1].reason
    else:
        assert cleared.result == m.CallDisconnectResult.REQUEST
        assert "TCP closed after Call-Clear-Request" in cleared.reason
    assert isinstance(events[-1], ControlClosed)
    assert sum(isinstance(e, ControlClosed) for e in events) == 1


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_pns_side_into_our_pac(path):
    items, end = timeline(path)
    t0 = items[0][0]
    pac = ControlConnection(Role.PAC, PPTPD, t0 - 0.01, random.Random(0))
    events, sent, expected = [], b"", b""
    for now, side, msgs, raw in items:
        if pac.get_timer() is not None and pac.get_timer() <= now:
            pac.handle_timer(now)
        if side == "client":
            pac.receive_data(raw, now)
            for ev in drain(pac):
                events.append(ev)
                if isinstance(ev, CallRequested):
                    pac.accept_call(ev, 0, now=now)          # pptpd's Call ID
                    events += drain(pac)
            if any(isinstance(x, m.CCRQ) for x in msgs):
                expected += m.CDN(call_id=0, result_code=4).encode()  # pptpd closes instead
        else:
            if any(isinstance(x, m.CDN) for x in msgs):
                pac.stop("SIGTERM", now)                     # pptpctrl got SIGTERM
            expected += raw
        sent += pac.data_to_send()
        events += drain(pac)
    if not pac.closed:
        pac.receive_data(b"", end)
        events += drain(pac)
    assert sent == expected                                  # byte for byte as pptpd

    client = [x for _, s, msgs, _ in items if s == "client" for x in msgs]
    ocrq = next(x for x in client if isinstance(x, m.OCRQ))
    assert events[0] == ControlConnected(b"local", b"cananian", 0x0100, 1, 3, 3, 65535)
    (req,) = [e for e in events if isinstance(e, CallRequested)]
    assert (req.peer_call_id, req.peer_rwin, req.peer_ppd) == (ocrq.call_id, 3, 0)
    assert (req.minimum_bps, req.maximum_bps) == (2400, 10_000_000)
    (est,) = [e for e in events if isinstance(e, CallEstablished)]
    assert (est.call_id, est.peer_call_id, est.peer_rwin) == (0, ocrq.call_id, 3)
    (cleared,) = [e for e in events if isinstance(e, CallCleared)]
    assert cleared.call_id == 0 and cleared.peer_call_id == ocrq.call_id
    assert isinstance(events[-1], ControlClosed)


def _h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# [MS-PTPT] §4 example (Windows Vista client <-> Windows Server 2008), TEST-VECTORS §9.
MS_SCCRQ = _h("009C 0001 1A2B3C4D 0001 0000 0100 0000 00000001 00000001 0000 0000") + bytes(64) \
    + b"Microsoft" + bytes(55)
MS_SCCRP = _h("009C 0001 1A2B3C4D 0002 0000 0100 01 00 00000001 00000001 0000 0000") + bytes(64) \
    + b"Microsoft" + bytes(55)
MS_OCRQ = _h("00A8 0001 1A2B3C4D 0007 0000 FAEA 0001 0000012C 05F5E100 00000003 00000003 0040"
             " 0000 0000 0000") + bytes(64) + _h("E3572A57E0A2BD41B826F1454106F261") + bytes(48)
MS_OCRP = _h("0020 0001 1A2B3C4D 0008 0000 E40A FAEA 01 00 0000 00512502 4000 0000 00000000")
MS_CCRQ = _h("0010 0001 1A2B3C4D 000C 0000 FAEA 0000")
MS_CDN = _h("0094 0001 1A2B3C4D 000D 0000 E40A 00 00 0000 0000") + bytes(128)


def test_windows_server_into_our_pns():
    pns = ControlConnection(Role.PNS, ControlConfig(), 0.0, random.Random(0))
    pns.start(0.0)
    pns.receive_data(MS_SCCRP, 0.1)
    assert pns.next_event().peer_vendor == b"Microsoft"
    pns.place_call(0.2, call_id=0xFAEA)
    pns.receive_data(MS_OCRP, 0.3)
    est = pns.next_event()
    assert est == CallEstablished(0xFAEA, 0xE40A, 0x4000, 0, 0x00512502)
    pns.clear_call(0xFAEA, now=0.4)
    assert pns.data_to_send().endswith(MS_CCRQ)
    pns.receive_data(MS_CDN, 0.5)              # Windows: Result Code 0 in the CDN
    cleared = pns.next_event()
    assert isinstance(cleared, CallCleared) and cleared.call_id == 0xFAEA
    assert cleared.result == 0 and cleared.by_peer


def test_windows_client_into_our_pac():
    pac = ControlConnection(Role.PAC, ControlConfig(), 0.0, random.Random(0))
    pac.receive_data(MS_SCCRQ, 0.1)
    assert pac.next_event().peer_host_name == b""       # Windows sends no host name
    pac.receive_data(MS_OCRQ, 0.2)
    req = pac.next_event()
    assert (req.peer_call_id, req.call_serial_number, req.peer_rwin) == (0xFAEA, 1, 64)
    assert req.subaddress.startswith(_h("E3572A57"))
    pac.accept_call(req, 0xE40A, now=0.2)
    est = pac.next_event()
    assert (est.call_id, est.peer_call_id, est.peer_rwin) == (0xE40A, 0xFAEA, 64)
    pac.data_to_send()
    pac.receive_data(MS_CCRQ, 0.3)
    cdn = m.decode(pac.data_to_send())
    assert cdn.call_id == 0xE40A and cdn.result_code == m.CallDisconnectResult.REQUEST
    assert pac.next_event().call_id == 0xE40A
