"""The engine's output sink and its I/O loop module (issue 9): one sink at a time (process,
slab, I/O loop), the I/O loop made by start() and dropped by stop(), the sans-I/O calls
working again after a run, the wake-up count kept over runs, no reference cycle left."""
from __future__ import annotations

import gc
import os
import socket
import struct
import time

import numpy as np
import pytest

from support.packets import PEER, data_in, parse_gre, udp_packet
from fastpptp.dataplane import HEADROOM, EngineConfig, load_engine

CID, PCID = 7, 0x99
T_IN, T_PEER = "198.51.100.1", "198.51.100.2"




def _engine(Engine):
    e = Engine(EngineConfig())
    e.add_session(CID, PCID, PEER)
    e.set_data(CID, True, True)
    return e


def _data_frame(sock) -> dict:
    """The next GRE frame with a sequence number (ack-only packets skipped)."""
    while True:
        g = parse_gre(sock.recv(65535))
        if g["seq"] is not None:
            return g


def _run_once(e, fakes, k: int) -> None:
    """One packet each way through the running loop."""
    ip_out = udp_packet(dst=T_PEER, body=b"out%d" % k)
    ip_in = udp_packet(dst=T_IN, body=b"in%d" % k)
    fakes.tun.send(ip_out)
    assert _data_frame(fakes.gre)["payload"][4:] == ip_out
    fakes.gre.send(data_in(CID, k, ip_in))
    assert fakes.tun.recv(65535) == ip_in


def test_sans_io_calls_use_their_own_sinks_again_after_a_run(Engine, fakes):
    """stop() gives the engine its process sink back: process(), encap_slab and decap_slab
    produce what they produce on an engine that never ran (the sequence numbers go on)."""
    e = _engine(Engine)
    try:
        e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno())
        _run_once(e, fakes, 0)
        e.stop()
        assert e.gre_port is None and e.port_counters() == {}

        ip = udp_packet(dst=T_PEER, body=b"after")
        out = e.process(time.monotonic(), tun_in=[(0, ip)])
        assert len(out.gre_out) == 1 and out.gre_out[0][0] == PEER
        g = parse_gre(out.gre_out[0][1])
        assert (g["call_id"], g["seq"], g["payload"][4:]) == (PCID, 1, ip)

        slab = np.zeros((2, 2048), np.uint8)
        lens = np.zeros(2, np.uint32)
        slab[0, HEADROOM:HEADROOM + len(ip)] = np.frombuffer(ip, np.uint8)
        lens[0] = len(ip)
        dst = np.zeros((2, 3), np.uint32)
        assert e.encap_slab(0, slab, lens, 1, dst) == 1
        assert dst[0, 0] == struct.unpack("!I", socket.inet_aton(PEER))[0]
        frame = bytes(slab[0, dst[0, 1]:dst[0, 1] + dst[0, 2]])
        assert parse_gre(frame)["seq"] == 2 and parse_gre(frame)["payload"][4:] == ip

        ip_in = udp_packet(dst=T_IN, body=b"after-in")
        d = data_in(CID, 1, ip_in)
        slab[0, HEADROOM:HEADROOM + len(d)] = np.frombuffer(d, np.uint8)
        lens[0] = len(d)
        o_tun = np.zeros(2, np.int32)
        o_off = np.zeros(2, np.int64)
        o_len = np.zeros(2, np.uint32)
        assert e.decap_slab(slab, lens, 1, o_tun, o_off, o_len) == 1
        flat = slab.reshape(-1)
        assert o_tun[0] == 0 and bytes(flat[o_off[0]:o_off[0] + o_len[0]]) == ip_in
        c = e.counters(CID)
        assert (c["tx_packets"], c["rx_packets"]) == (3, 2)
    finally:
        e.close()


def test_a_second_run_gets_a_fresh_loop_and_the_wake_ups_add_up(Engine, fakes):
    e = _engine(Engine)
    try:
        e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno())
        with pytest.raises(RuntimeError):
            e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno())
        _run_once(e, fakes, 0)
        e.stop()
        e.stop()                                    # idempotent
        first = e.loops
        assert first > 0
        assert e.tuns() == {}                       # start()'s TUN slots end with the run
        e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno())
        _run_once(e, fakes, 1)
        e.stop()
        assert e.loops > first
    finally:
        e.close()


def test_the_io_loop_is_its_own_module_and_a_sink():
    from fastpptp._gre import Engine
    from fastpptp._ioloop import IoLoop
    from fastpptp._sink import ProcessSink, Sink, SlabSink
    assert all(issubclass(c, Sink) for c in (IoLoop, ProcessSink, SlabSink))
    with pytest.raises(TypeError):                  # an engine and a GRE port, nothing else
        IoLoop(object(), None)
    e = Engine(EngineConfig())
    try:
        with pytest.raises(TypeError):
            IoLoop(e, None)
    finally:
        e.close()


def test_a_stopped_engine_is_freed_without_the_cycle_collector(fakes):
    """The loop holds the engine and the engine the loop only from start() to stop(): after
    stop() dropping the last reference frees the engine at once (its eventfds close)."""
    e = _engine(load_engine("compiled"))
    e.start([fakes.tun_eng.fileno()], fakes.gre_eng.fileno())
    port = e.gre_port                               # the RawPort start() wrapped the fd in
    assert port is not None and port.kind == "raw"
    _run_once(e, fakes, 0)
    assert e.port_counters()["tx_packets"] >= 1
    e.stop()
    assert e.gre_port is None and e.port_counters() == {}
    del port
    fd = e.control_fd
    os.fstat(fd)
    gc.disable()
    try:
        del e
        with pytest.raises(OSError):
            os.fstat(fd)
    finally:
        gc.enable()
