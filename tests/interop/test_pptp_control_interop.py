"""Our control connection against the real thing: pptpd 1.4.0 and pptp-linux 1.10 in QEMU VMs
(../shared/interop harness), over a TCP socket opened inside the harness namespace.

Only the PPTP control channel is exercised here (no PPP: the products' tests do that), so the
calls are torn down right after they come up: what matters is that the real peers accept our
bytes and that we read theirs, including pptpd's habit of closing TCP after a
Call-Clear-Request and pptp-linux's reaction to a Call-Disconnect-Notify.
"""
from __future__ import annotations

import random
import select
import socket
import time

import pytest

from support import interop_rig
from fastpptp.net import netns
from fastpptp.pptp import messages as m
from fastpptp.pptp.control import (CallCleared, CallEstablished, CallRequested, ControlClosed,
                                   ControlConfig, ControlConnected, ControlConnection, Role)

pytestmark = [pytest.mark.interop, pytest.mark.slow]


@pytest.fixture(scope="module")
def net():
    with interop_rig.prepared_net() as n:
        # A GRE sink on our side: without a taker for protocol 47 the kernel answers the
        # peer's GRE with ICMP protocol-unreachable, and pptpd/pptp-linux give up the call
        # (their connected GRE socket reads ENOPROTOOPT).  We never read it: no PPP here.
        sink = netns.open_socket(n.name, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
        try:
            yield n
        finally:
            sink.close()


class Driver:
    """A blocking, bounded loop: socket <-> ControlConnection, real monotonic clock."""

    def __init__(self, sock: socket.socket, conn: ControlConnection):
        self.sock, self.conn = sock, conn
        self.events: list = []
        self.eof = False

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.eof:
            self.sock.sendall(data)

    def run_until(self, cond, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            while (ev := self.conn.next_event()) is not None:
                self.events.append(ev)
                self.on_event(ev)
            self.flush()
            hit = cond()
            if hit:
                return hit
            now = time.monotonic()
            if now >= deadline:
                raise AssertionError(f"timeout waiting for {what}; events: {self.events}")
            timer = self.conn.get_timer()
            wait = min(deadline, timer if timer is not None else deadline) - now
            if self.eof:
                if timer is None:
                    raise AssertionError(f"connection over without {what}: {self.events}")
                time.sleep(max(0.0, min(wait, 0.2)))
                self.conn.handle_timer(time.monotonic())
                continue
            r, _, _ = select.select([self.sock], [], [], max(0.0, wait))
            now = time.monotonic()
            if r:
                try:
                    data = self.sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                if not data:
                    self.eof = True
                self.conn.receive_data(data, now)
            timer = self.conn.get_timer()
            if timer is not None and timer <= now:
                self.conn.handle_timer(now)

    def on_event(self, ev):
        pass

    def first(self, cls):
        return next((e for e in self.events if isinstance(e, cls)), None)


def test_our_pns_against_pptpd(net, tmp_path):
    vm = interop_rig.VmRun("server", net, ["--sessions", "1", "--timeout", "120"],
                           str(tmp_path / "server-vm.log"))
    try:
        vm.wait_marker("SERVER-READY", 120)
        sock = netns.open_socket(net.name, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(20)
        sock.connect((interop_rig.SERVER_VM_ADDR, m.PPTP_PORT))
        now = time.monotonic()
        conn = ControlConnection(Role.PNS, ControlConfig(host_name="fastpptp-test",
                                                         echo_interval=1.0, echo_timeout=20),
                                 now, random.Random())
        d = Driver(sock, conn)
        conn.start(now)
        up = d.run_until(lambda: d.first(ControlConnected), 30, "SCCRP")
        assert up.peer_vendor == b"linux" and up.protocol_version == 0x0100
        call_id = conn.place_call(time.monotonic())
        est = d.run_until(lambda: d.first(CallEstablished), 30, "OCRP")
        assert est.call_id == call_id and est.peer_call_id == 0      # pptpd's Call ID
        assert est.peer_rwin > 0
        # our keepalive: an Echo-Request after 1 s idle, answered by pptpctrl
        d.run_until(lambda: conn.stats["echo_ok"] >= 1, 30, "Echo-Reply")
        conn.clear_call(call_id, "test over", now=time.monotonic())
        cleared = d.run_until(lambda: d.first(CallCleared), 30, "the call to end")
        assert cleared.call_id == call_id
        closed = d.run_until(lambda: d.first(ControlClosed), 30, "TCP close")
        assert closed.by_peer and d.eof
        assert conn.stats["wrong_state"] == 0 and conn.stats["decode_error"] == 0
        sock.close()
        vm.wait_marker("SESSION-END", 60)
    finally:
        vm.stop()


def test_pptp_linux_against_our_pac(net, tmp_path):
    listener = netns.open_socket(net.name, socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((interop_rig.HOST_ADDR, m.PPTP_PORT))
    listener.listen(1)
    listener.settimeout(120)
    vm = interop_rig.VmRun("client", net, ["--server", interop_rig.HOST_ADDR, "--timeout", "90"],
                           str(tmp_path / "client-vm.log"))
    try:
        sock, _peer = listener.accept()
        now = time.monotonic()
        conn = ControlConnection(Role.PAC, ControlConfig(host_name="fastpptp", echo_interval=1.0,
                                                         echo_timeout=20), now, random.Random())

        class Pac(Driver):
            def on_event(self, ev):
                if isinstance(ev, CallRequested):
                    self.conn.accept_call(ev, now=time.monotonic())

        d = Pac(sock, conn)
        up = d.run_until(lambda: d.first(ControlConnected), 60, "SCCRQ")
        assert up.peer_vendor == b"cananian"                        # pptp-linux
        est = d.run_until(lambda: d.first(CallEstablished), 60, "OCRQ")
        assert est.peer_call_id != 0 and est.peer_rwin > 0
        d.run_until(lambda: conn.stats["echo_ok"] >= 1, 30, "Echo-Reply")
        # PAC-side hang-up: Call-Disconnect-Notify, pptp-linux tears down and closes TCP
        conn.clear_call(est.call_id, "test over", now=time.monotonic())
        closed = d.run_until(lambda: d.first(ControlClosed), 60, "pptp-linux to hang up")
        assert closed.by_peer
        assert conn.stats["decode_error"] == 0
        sock.close()
        vm.wait(120)
    finally:
        listener.close()
        vm.stop()
