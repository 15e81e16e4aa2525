"""fastpptp.aio.accounting.Accountant on a real event loop with a fake RADIUS driver: the order
and timing of Accounting-On, Start, Interim-Update, Stop and Accounting-Off, the bounded
shutdown, unanswered requests, and the backlog's drops applied to the requests in flight."""
import asyncio
import ipaddress

import pytest

from fastpptp.aio.accounting import COUNTERS, Accountant
from fastpptp.radius.accounting import BACKLOG_COUNTERS, AcctSession, Nas
from fastpptp.radius.aio import RadiusNoResponse
from fastpptp.radius.client import Response
from fastpptp.radius.dictionary import AcctStatusType, AcctTerminateCause, Attr, Code
from fastpptp.radius.packet import Packet

NAS = Nas("nas-under-test")
ST = AcctStatusType


def session(sid="sess-a"):
    return AcctSession(session_id=sid, nas_port=7, calling_station="203.0.113.9", user="alice",
                       framed_ip=ipaddress.IPv4Address("198.51.100.2"))


class FakeDriver:
    """Answers each request after ``delay(packet)`` seconds; None: never; "fail": no server
    answered.  Keeps (loop time, Packet) of every request and which were cancelled."""

    def __init__(self, delay=lambda p: 0.0):
        self.delay = delay
        self.requests = []
        self.answered = []
        self.cancelled = []
        self.started = self.closed = False

    async def start(self):
        self.started = True

    async def request(self, code, attributes):
        assert code == Code.ACCOUNTING_REQUEST
        p = Packet(code, 0, attributes=list(attributes))
        self.requests.append((asyncio.get_running_loop().time(), p))
        d = self.delay(p)
        try:
            if d is None:
                await asyncio.Event().wait()
            if d == "fail":
                raise RadiusNoResponse("no RADIUS server answered")
            await asyncio.sleep(d)
        except asyncio.CancelledError:
            self.cancelled.append(p)
            raise
        self.answered.append((asyncio.get_running_loop().time(), p))
        return Response(0, Packet(Code.ACCOUNTING_RESPONSE, 0), 0, b"", bytes(16))

    def close(self):
        self.closed = True

    def statuses(self, packets=None):
        return [p.get_int(Attr.ACCT_STATUS_TYPE) for _, p in (packets or self.requests)]


def status_is(*kinds):
    return lambda p: p.get_int(Attr.ACCT_STATUS_TYPE) in kinds


def test_on_start_interims_on_time_stop_and_off():
    async def main():
        loop = asyncio.get_running_loop()
        driver = FakeDriver()
        acc = Accountant(NAS, driver, nas_session_id="run-1", wall_clock=lambda: 1_800_000_000.5)
        await acc.start()
        reads = []

        def counters():
            n = len(reads) + 1
            reads.append(n)
            return {"rx_bytes": 1000 * n, "tx_bytes": 2000 * n, "rx_packets": n, "tx_packets": 2 * n}
        up = loop.time()
        acc.session_up(session(), counters, interval=1)
        await asyncio.sleep(2.5)
        acc.session_closed("sess-a", {"rx_bytes": 5555, "tx_bytes": 6666, "rx_packets": 5, "tx_packets": 6},
                           AcctTerminateCause.USER_REQUEST)
        await acc.stop()
        return up, driver, acc

    up, driver, acc = asyncio.run(main())
    assert driver.started and driver.closed
    assert driver.statuses() == [ST.ACCOUNTING_ON, ST.START, ST.INTERIM_UPDATE, ST.INTERIM_UPDATE,
                                 ST.STOP, ST.ACCOUNTING_OFF]
    (_, on), (_, start), (t1, i1), (t2, i2), (_, stop), (_, off) = driver.requests
    assert on.get_text(Attr.ACCT_SESSION_ID) == off.get_text(Attr.ACCT_SESSION_ID) == "run-1"
    assert on.get_int(Attr.EVENT_TIMESTAMP) == 1_800_000_000
    assert {p.get_text(Attr.ACCT_SESSION_ID) for p in (start, i1, i2, stop)} == {"sess-a"}
    # on time: one interval after the Start, then the next (timed from the Start, no drift)
    assert t1 - up == pytest.approx(1.0, abs=0.15) and t2 - up == pytest.approx(2.0, abs=0.15)
    assert [i.get_int(Attr.ACCT_SESSION_TIME) for i in (i1, i2)] == [1, 2]
    assert [i.get_int(Attr.ACCT_INPUT_OCTETS) for i in (i1, i2)] == [1000, 2000]
    assert [i.get_int(Attr.ACCT_OUTPUT_PACKETS) for i in (i1, i2)] == [2, 4]
    assert stop.get_int(Attr.ACCT_INPUT_OCTETS) == 5555 and stop.get_int(Attr.ACCT_OUTPUT_OCTETS) == 6666
    assert stop.get_int(Attr.ACCT_TERMINATE_CAUSE) == AcctTerminateCause.USER_REQUEST
    assert stop.get_int(Attr.ACCT_SESSION_TIME) == 2
    assert acc.counters["requests"] == acc.counters["answered"] == 6
    assert acc.outstanding == 0 and acc.sessions == []


def test_stop_waits_for_the_shutdowns_stops_then_sends_off():
    async def main():
        driver = FakeDriver(delay=lambda p: 0.4 if p.get_int(Attr.ACCT_STATUS_TYPE) == ST.STOP else 0.0)
        acc = Accountant(NAS, driver, nas_session_id="run-2", stop_wait=5.0)
        await acc.start()
        for sid in ("a", "b"):
            acc.session_up(session(sid), dict, interval=0)
        await asyncio.sleep(0.05)
        for sid in ("a", "b"):
            acc.session_closed(sid, {}, AcctTerminateCause.ADMIN_REBOOT)
        await acc.stop()
        return driver, acc

    driver, acc = asyncio.run(main())
    stops_answered = max(t for t, p in driver.answered if p.get_int(Attr.ACCT_STATUS_TYPE) == ST.STOP)
    off_sent = next(t for t, p in driver.requests if p.get_int(Attr.ACCT_STATUS_TYPE) == ST.ACCOUNTING_OFF)
    assert off_sent >= stops_answered                 # Accounting-Off after the last Stop
    assert driver.statuses(driver.answered)[-1] == ST.ACCOUNTING_OFF
    assert acc.counters["answered"] == 6 and driver.closed


def test_unanswered_requests_are_given_up_when_stop_wait_is_over():
    async def main():
        loop = asyncio.get_running_loop()
        driver = FakeDriver(delay=lambda p: None)
        acc = Accountant(NAS, driver, nas_session_id="run-3", stop_wait=0.5)
        await acc.start()
        acc.session_up(session(), dict, interval=0)
        acc.session_closed("sess-a", {}, AcctTerminateCause.ADMIN_REBOOT)
        began = loop.time()
        await acc.stop()
        return loop.time() - began, driver, acc

    took, driver, acc = asyncio.run(main())
    assert took == pytest.approx(0.5, abs=0.2)
    assert driver.statuses() == [ST.ACCOUNTING_ON, ST.START, ST.STOP, ST.ACCOUNTING_OFF]
    assert len(driver.cancelled) == 4 and acc.outstanding == 0 and driver.closed


def test_no_server_answering_is_counted_and_accounting_goes_on():
    async def main():
        driver = FakeDriver(delay=lambda p: "fail" if p.get_int(Attr.ACCT_STATUS_TYPE) == ST.START else 0.0)
        acc = Accountant(NAS, driver, nas_session_id="run-4")
        await acc.start()
        acc.session_up(session(), dict, interval=1)
        await asyncio.sleep(1.3)
        acc.session_closed("sess-a", {}, AcctTerminateCause.LOST_CARRIER)
        await acc.stop()
        return driver, acc

    driver, acc = asyncio.run(main())
    assert driver.statuses() == [ST.ACCOUNTING_ON, ST.START, ST.INTERIM_UPDATE, ST.STOP, ST.ACCOUNTING_OFF]
    assert acc.counters["no_response"] == 1 and acc.counters["answered"] == 4


def test_a_stop_supersedes_the_sessions_unanswered_interim():
    async def main():
        driver = FakeDriver(delay=lambda p: None if p.get_int(Attr.ACCT_STATUS_TYPE) == ST.INTERIM_UPDATE else 0.0)
        acc = Accountant(NAS, driver, nas_session_id="run-5")
        await acc.start()
        acc.session_up(session(), dict, interval=1)
        await asyncio.sleep(1.2)                         # the interim is out, unanswered
        acc.session_closed("sess-a", {"rx_bytes": 9}, AcctTerminateCause.IDLE_TIMEOUT)
        await asyncio.sleep(0)
        cancelled = driver.statuses([(0, p) for p in driver.cancelled])
        await acc.stop()
        return driver, acc, cancelled

    driver, acc, cancelled = asyncio.run(main())
    assert cancelled == [ST.INTERIM_UPDATE]
    assert acc.counters["interim_superseded"] == 1
    assert driver.statuses(driver.answered) == [ST.ACCOUNTING_ON, ST.START, ST.STOP, ST.ACCOUNTING_OFF]


def test_over_the_backlog_limit_interims_go_and_stops_stay():
    async def main():
        driver = FakeDriver(delay=lambda p: None)        # a server that never answers
        acc = Accountant(NAS, driver, nas_session_id="run-6", backlog_limit=3, stop_wait=0.2)
        await acc.start()                                 # On: 1 outstanding
        acc.session_up(session("a"), dict, interval=1)    # Start a: 2
        acc.session_up(session("b"), dict, interval=1)    # Start b: 3, full
        await asyncio.sleep(1.2)                          # both interims: not sent
        acc.session_closed("a", {}, AcctTerminateCause.USER_REQUEST)   # over the limit
        await asyncio.sleep(0)
        outstanding = acc.outstanding
        acc.session_closed("b", {}, AcctTerminateCause.USER_REQUEST)
        await acc.stop()
        return driver, acc, outstanding

    driver, acc, outstanding = asyncio.run(main())
    assert driver.statuses() == [ST.ACCOUNTING_ON, ST.START, ST.START, ST.STOP, ST.STOP, ST.ACCOUNTING_OFF]
    assert outstanding == 4
    assert acc.counters["interim_dropped"] == 2 and acc.counters["over_limit"] == 3


def test_a_session_without_a_start_has_no_stop_and_unreadable_counters_skip_an_interim():
    async def main():
        driver = FakeDriver()
        acc = Accountant(NAS, driver, nas_session_id="run-7")
        acc.session_closed("never-up", {}, AcctTerminateCause.USER_ERROR)    # before start: ignored
        await acc.start()
        acc.session_closed("never-up", {}, AcctTerminateCause.USER_ERROR)

        def gone():
            raise KeyError("call left the engine")
        acc.session_up(session(), gone, interval=1)
        acc.session_up(session(), gone, interval=1)       # twice (IPCP renegotiated): one Start
        await asyncio.sleep(1.2)
        acc.session_closed("sess-a", {}, AcctTerminateCause.LOST_CARRIER)
        await acc.stop()
        await acc.stop()                                  # twice: harmless
        return driver, acc

    driver, acc = asyncio.run(main())
    assert driver.statuses() == [ST.ACCOUNTING_ON, ST.START, ST.STOP, ST.ACCOUNTING_OFF]
    assert acc.counters["interim_skipped"] == 1


def test_counter_names_do_not_clash():
    assert not set(COUNTERS) & set(BACKLOG_COUNTERS)
