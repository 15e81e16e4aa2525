"""fastpptp.admission: connection limit, per-source rate limit, failed-login lockout, bounded memory.

Scenarios are tables of (event, source, now, expected decision); the clock is an argument.
"""
import pytest

from fastpptp.admission import (Admission, AdmissionLimits, Admit, Refusal, Refuse,
                                SlidingWindow)

A, B, C = "192.0.2.1", "192.0.2.2", "192.0.2.3"
ADMIT = Admit()


def _run(limits, script):
    """Play (op, source, now, expected) rows; expected None: the op returns nothing."""
    adm = Admission(limits)
    for row, (op, source, now, expected) in enumerate(script):
        if op == "connect":
            got = adm.connect(source, now)
        elif op == "disconnect":
            got = adm.disconnect(source)
        elif op == "auth_failed":
            got = adm.auth_failed(source, now)
        else:
            raise AssertionError(op)
        assert got == expected, f"row {row}: {op}({source}, {now}) -> {got}, expected {expected}"
    return adm


def _limits(**kw):
    base = dict(max_connections=100, rate_limit=100, max_auth_failures=100)
    return AdmissionLimits(**{**base, **kw})


SCENARIOS = {
    "connection limit counts open connections, a disconnect frees one": (_limits(max_connections=2), [
        ("connect", A, 0.0, ADMIT),
        ("connect", B, 0.0, ADMIT),
        ("connect", C, 0.0, Refuse(Refusal.CONNECTIONS)),
        ("disconnect", A, None, None),
        ("connect", C, 0.0, ADMIT),
        ("connect", A, 0.0, Refuse(Refusal.CONNECTIONS)),
    ]),
    "disconnect of a source with nothing open changes nothing": (_limits(max_connections=1), [
        ("connect", A, 0.0, ADMIT),
        ("disconnect", B, None, None),
        ("connect", B, 0.0, Refuse(Refusal.CONNECTIONS)),
        ("disconnect", A, None, None),
        ("disconnect", A, None, None),       # once too often: ignored, not negative
        ("connect", B, 0.0, ADMIT),
        ("connect", C, 0.0, Refuse(Refusal.CONNECTIONS)),
    ]),
    "rate limit per source over a sliding window, boundary exclusive": (_limits(rate_limit=2), [
        ("connect", A, 0.0, ADMIT),
        ("connect", A, 4.0, ADMIT),
        ("connect", A, 9.0, Refuse(Refusal.RATE_LIMITED, 1.0)),     # 0.0 leaves at 10.0
        ("connect", B, 9.0, ADMIT),                                 # another source
        ("connect", A, 9.75, Refuse(Refusal.RATE_LIMITED, 0.25)),
        ("connect", A, 10.0, ADMIT),                                # exactly window later: gone
        ("connect", A, 13.0, Refuse(Refusal.RATE_LIMITED, 1.0)),    # 4.0 and 10.0 in window
        ("connect", A, 14.0, ADMIT),
    ]),
    "a refused attempt is not recorded against its source": (_limits(rate_limit=1), [
        ("connect", A, 0.0, ADMIT),
        ("connect", A, 5.0, Refuse(Refusal.RATE_LIMITED, 5.0)),
        ("connect", A, 9.0, Refuse(Refusal.RATE_LIMITED, 1.0)),
        ("connect", A, 10.0, ADMIT),
    ]),
    "lockout after max_auth_failures in the window, until the oldest leaves it":
        (_limits(max_auth_failures=3), [
            ("auth_failed", A, 0.0, ADMIT),
            ("auth_failed", A, 100.0, ADMIT),
            ("connect", A, 100.0, ADMIT),
            ("auth_failed", A, 200.0, Refuse(Refusal.LOCKED_OUT, 100.0)),
            ("connect", A, 200.0, Refuse(Refusal.LOCKED_OUT, 100.0)),
            ("connect", B, 200.0, ADMIT),                           # per source
            ("connect", A, 299.5, Refuse(Refusal.LOCKED_OUT, 0.5)),
            ("connect", A, 300.0, ADMIT),                           # 0.0 left the 300 s window
            ("auth_failed", A, 301.0, Refuse(Refusal.LOCKED_OUT, 99.0)),   # 100, 200, 301
        ]),
    "failures before the window do not add up": (_limits(max_auth_failures=2), [
        ("auth_failed", A, 0.0, ADMIT),
        ("auth_failed", A, 300.0, ADMIT),
        ("connect", A, 300.0, ADMIT),
        ("auth_failed", A, 599.0, Refuse(Refusal.LOCKED_OUT, 1.0)),
    ]),
    "checks in order: connections, lockout, rate": (_limits(max_connections=1, rate_limit=1,
                                                            max_auth_failures=1), [
        ("connect", A, 0.0, ADMIT),
        ("auth_failed", B, 0.0, Refuse(Refusal.LOCKED_OUT, 300.0)),
        ("connect", B, 1.0, Refuse(Refusal.CONNECTIONS)),
        ("disconnect", A, None, None),
        ("connect", B, 1.0, Refuse(Refusal.LOCKED_OUT, 299.0)),
        ("connect", A, 1.0, Refuse(Refusal.RATE_LIMITED, 9.0)),
    ]),
    "a locked-out source's attempts do not use up its rate":
        (_limits(rate_limit=1, max_auth_failures=1, lockout_window=5.0), [
            ("auth_failed", A, 0.0, Refuse(Refusal.LOCKED_OUT, 5.0)),
            ("connect", A, 1.0, Refuse(Refusal.LOCKED_OUT, 4.0)),
            ("connect", A, 5.0, ADMIT),            # the attempt at 1.0 would rate-limit this one
        ]),
    "limits of zero refuse everything (as a limit, not 'off')": (_limits(rate_limit=0), [
        ("connect", A, 0.0, Refuse(Refusal.RATE_LIMITED, None)),
    ]),
    "zero failed logins allowed: every source locked out": (_limits(max_auth_failures=0), [
        ("connect", A, 0.0, Refuse(Refusal.LOCKED_OUT, None)),
    ]),
    "zero connections": (_limits(max_connections=0), [
        ("connect", A, 0.0, Refuse(Refusal.CONNECTIONS)),
    ]),
}


@pytest.mark.parametrize("limits,script", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scenario(limits, script):
    _run(limits, script)


def test_open_connections_follow_connects_and_disconnects():
    adm = _run(_limits(max_connections=3), [
        ("connect", A, 0.0, ADMIT), ("connect", A, 0.0, ADMIT), ("connect", B, 0.0, ADMIT),
        ("disconnect", A, None, None),
    ])
    assert adm.open_connections == 2


@pytest.mark.parametrize("kw", [
    dict(max_connections=-1), dict(rate_limit=-1), dict(max_auth_failures=-1),
    dict(rate_window=0.0), dict(lockout_window=-1.0), dict(max_sources=0),
])
def test_limits_are_validated(kw):
    with pytest.raises(ValueError):
        _limits(**kw)


# --------------------------------------------------------------------------- bounded memory
def test_expired_sources_are_forgotten_when_room_is_needed():
    adm = Admission(_limits(rate_limit=5, max_sources=4))
    for i in range(4):
        assert adm.connect(f"198.51.100.{i}", float(i)) == ADMIT
    assert adm.tracked_sources() == 4
    # 20 s later every one of them left the 10 s window: a new source takes room, none evicted
    assert adm.connect(C, 20.0) == ADMIT
    assert adm.tracked_sources() == 1 and adm.evicted == 0


def test_a_spray_of_sources_cannot_grow_the_tables():
    adm = Admission(_limits(max_connections=10**6, rate_limit=1, max_auth_failures=1, max_sources=16))
    for i in range(1000):
        src = f"203.0.113.{i % 256}/{i}"
        assert adm.connect(src, 1.0) == ADMIT
        adm.auth_failed(src, 1.0)
        assert adm.tracked_sources() <= 2 * 16
    assert adm.evicted == 2 * (1000 - 16)


def test_the_least_recently_seen_source_is_evicted_first():
    sw = SlidingWindow(limit=2, window=10.0, max_sources=2)
    sw.add(A, 0.0)
    sw.add(B, 1.0)
    sw.add(A, 2.0)              # A seen again: B is now the least recently seen
    sw.add(C, 3.0)              # table full, nothing expired: B goes
    assert (sw.count(A, 3.0), sw.count(B, 3.0), sw.count(C, 3.0)) == (2, 0, 1)
    assert sw.evicted == 1 and len(sw) == 2


@pytest.mark.parametrize("events,now,count,retry_after", [
    ((), 0.0, 0, 0.0),
    ((0.0,), 5.0, 1, 0.0),
    ((0.0, 1.0, 2.0), 5.0, 3, 5.0),
    ((0.0, 1.0, 2.0, 3.0, 4.0), 5.0, 3, 7.0),    # only the newest `limit` are kept: 2, 3, 4
    ((0.0, 1.0, 2.0), 10.0, 2, 0.0),              # exactly window later: 0.0 has left
    ((0.0, 1.0, 2.0), 12.0, 0, 0.0),
])
def test_sliding_window_count_and_retry_after(events, now, count, retry_after):
    sw = SlidingWindow(limit=3, window=10.0)
    for t in events:
        sw.add(A, t)
    assert sw.count(A, now) == count
    assert sw.retry_after(A, now) == pytest.approx(retry_after)
    if count == 0:
        assert len(sw) == 0      # an empty source is not kept


def test_a_zero_limit_never_clears():
    sw = SlidingWindow(limit=0, window=10.0)
    sw.add(A, 0.0)
    assert (sw.count(A, 0.0), sw.retry_after(A, 0.0), sw.allow(A, 100.0), len(sw)) == (0, None, False, 0)


def test_per_source_memory_is_bounded_by_the_limit():
    sw = SlidingWindow(limit=3, window=1e9)
    for t in range(10_000):
        sw.add(A, float(t))
    assert sw.count(A, 10_000.0) == 3
