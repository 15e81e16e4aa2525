"""Hardening of the PAC's calls (issue 10): call-ID exhaustion by an unauthenticated peer,
Outgoing-Call-Request rate limit, and ``CallCleared.established`` for calls cleared before
their Outgoing-Call-Reply."""
from __future__ import annotations

import random

import pytest

from fastpptp.pptp import messages as m
from fastpptp.pptp.control import (CallCleared, CallIdAllocator, CallIdsExhausted,
                                   CallRequested, ControlConfig, ControlConnection, Role)
from fastpptp.pptp.framer import PptpFramer


def decoded(conn: ControlConnection) -> list[m.Message]:
    f = PptpFramer()
    f.feed(conn.data_to_send())
    return list(f)


def pac_up(alloc: CallIdAllocator, source: str, now: float,
           cfg: ControlConfig | None = None) -> ControlConnection:
    pac = ControlConnection(Role.PAC, cfg or ControlConfig(), now, random.Random(2), alloc)
    pac.source = source
    pac.receive_data(m.SCCRQ().encode(), now)
    pac.events()
    pac.data_to_send()
    return pac


def accept_requests(pac: ControlConnection, now: float) -> list[int]:
    """The server's part: accept every CallRequested (what server.py does)."""
    ids = []
    for ev in pac.events():
        if isinstance(ev, CallRequested):
            ids.append(pac.accept_call(ev, now=now))
    return ids


# --- call-ID exhaustion -------------------------------------------------------------------

def test_one_connection_cannot_exhaust_the_call_ids_and_a_victim_still_gets_a_call():
    # The attack of issue 10: one control connection, OCRQ + CCRQ as fast as TCP carries
    # them (65 520 pairs in ~50 s), no login ever.  Before: every ID went into the 60 s
    # quarantine and the victim's accept_call raised CallIdsExhausted.
    alloc = CallIdAllocator.for_pac(random.Random(1))
    now = 1000.0
    attacker = pac_up(alloc, "203.0.113.66", now)
    pairs, accepted = 65_600, 0
    for i in range(pairs):
        now += 50.0 / pairs
        peer_call = (i % 0xFFFF) + 1
        attacker.receive_data(m.OCRQ(call_id=peer_call).encode()
                              + m.CCRQ(call_id=peer_call).encode(), now)
        accepted += len(accept_requests(attacker, now))
        attacker.data_to_send()
        attacker.events()
    # the rate limit: a burst of 8, then 1 per second
    assert accepted <= 8 + 50 + 1
    assert attacker.stats["calls_rate_limited"] >= pairs - accepted
    assert alloc.quarantined() == 0            # none of those calls carried GRE
    victim = pac_up(alloc, "198.51.100.7", now)
    victim.receive_data(m.OCRQ(call_id=77).encode(), now)
    (call_id,) = accept_requests(victim, now)
    (ocrp,) = decoded(victim)
    assert isinstance(ocrp, m.OCRP) and ocrp.result_code == m.OutgoingCallResult.CONNECTED
    assert ocrp.call_id == call_id != 0


@pytest.mark.parametrize("with_gre", [False, True])
def test_the_whole_id_space_churned_leaves_ids_for_a_victim(with_gre):
    # The same churn without the rate limit (many connections, or a patient attacker): the
    # allocator alone keeps IDs free.  Without GRE nothing is quarantined; with GRE for
    # every call, at most per_owner (256) IDs of that source wait in quarantine.
    alloc = CallIdAllocator.for_pac(random.Random(9))
    now = 0.0
    for _ in range(65_600):
        now += 50.0 / 65_600
        call_id = alloc.allocate(now)
        if with_gre:
            alloc.mark_active(call_id)
        alloc.release(call_id, now, "203.0.113.66")
    assert alloc.quarantined() == (256 if with_gre else 0)
    assert alloc.allocate(now) and alloc.stats["reused_early"] == 0


def test_the_old_allocator_is_exhausted_by_that_churn():
    # the reproduction of issue 10's finding: the plain allocator (quarantine everything,
    # no cap, no reuse) runs out for the victim after one source's churn
    alloc = CallIdAllocator(random.Random(9))
    for _ in range(65_535):
        alloc.release(alloc.allocate(1.0), 1.0, "203.0.113.66")
    with pytest.raises(CallIdsExhausted):
        alloc.allocate(2.0)


def test_many_connections_with_gre_cannot_fill_the_quarantine():
    # Worst case: the attacker opens many connections and sends GRE for every call, so each
    # ID would be quarantined.  A small ID space (300) makes the exhaustion quick to reach:
    # the per-source cap keeps its quarantine at 64 and the victim still gets IDs, also
    # once legitimate churn has put every free ID into quarantine (oldest reused first).
    alloc = CallIdAllocator(random.Random(3), quarantine=60.0, first=1, last=300,
                            quarantine_idle=False, per_owner=64, reuse_oldest=True)
    now = 0.0
    for _round in range(40):
        for c in range(20):
            conn = pac_up(alloc, "203.0.113.66", now, ControlConfig(call_rate=0))
            conn.receive_data(m.OCRQ(call_id=c + 1).encode(), now)
            (call_id,) = accept_requests(conn, now)
            alloc.mark_active(call_id)         # the attacker's GRE for it arrived
            conn.receive_data(m.CCRQ(call_id=c + 1).encode(), now)
            now += 0.001
    assert alloc.quarantined("203.0.113.66") == 64 and len(alloc) == 0
    assert alloc.stats["owner_cap"] == 800 - 64
    # legitimate users churn through the rest of the space, their calls all carried GRE
    held = []
    for _ in range(236):
        call_id = alloc.allocate(now)
        alloc.mark_active(call_id)
        held.append(call_id)
    for i, call_id in enumerate(held):
        alloc.release(call_id, now, f"198.51.100.{i % 200}")
    assert alloc.quarantined() == 300
    victim = pac_up(alloc, "198.51.100.250", now)
    victim.receive_data(m.OCRQ(call_id=5).encode(), now)
    (call_id,) = accept_requests(victim, now)
    assert alloc.stats["reused_early"] == 1
    assert 1 <= call_id <= 300


def test_idle_call_ids_are_free_at_once_active_ones_quarantined():
    alloc = CallIdAllocator.for_pac(random.Random(4))
    idle, active = alloc.allocate(0.0), alloc.allocate(0.0)
    alloc.mark_active(active)
    alloc.release(idle, 1.0, "a")
    alloc.release(active, 1.0, "a")
    assert alloc.available(idle, 1.0)
    assert not alloc.available(active, 60.9) and alloc.available(active, 61.0)
    assert alloc.quarantined("a") == 0


def test_per_owner_cap_frees_the_owners_oldest_first():
    alloc = CallIdAllocator(random.Random(5), per_owner=2)
    ids = [alloc.allocate(0.0) for _ in range(3)]
    other = alloc.allocate(0.0)
    for t, call_id in enumerate(ids):
        alloc.release(call_id, float(t), "src")
    alloc.release(other, 0.0, "elsewhere")
    assert alloc.available(ids[0], 3.0)        # the oldest of "src" went free early
    assert not alloc.available(ids[1], 3.0) and not alloc.available(ids[2], 3.0)
    assert not alloc.available(other, 3.0)     # another owner's quarantine is untouched
    assert (alloc.quarantined("src"), alloc.quarantined()) == (2, 3)


def test_exhaustion_without_reuse_still_raises():
    alloc = CallIdAllocator(random.Random(6), first=1, last=3, reuse_oldest=False)
    for _ in range(3):
        alloc.release(alloc.allocate(0.0), 0.0)
    with pytest.raises(CallIdsExhausted):
        alloc.allocate(1.0)
    alloc.reuse_oldest = True
    alloc.allocate(1.0)


# --- OCRQ rate limit ------------------------------------------------------------------------

def test_outgoing_call_requests_are_rate_limited_per_connection():
    alloc = CallIdAllocator.for_pac(random.Random(7))
    pac = pac_up(alloc, "192.0.2.5", 0.0, ControlConfig(call_rate=2.0, call_burst=3))
    replies = []
    for i in range(5):
        pac.receive_data(m.OCRQ(call_id=i + 1).encode(), 0.0)
        accept_requests(pac, 0.0)
        replies += decoded(pac)
    assert [r.result_code for r in replies] == [1, 1, 1, 2, 2]
    assert replies[-1].error_code == m.GeneralErrorCode.NO_RESOURCE
    pac.receive_data(m.OCRQ(call_id=9).encode(), 0.5)   # one token back after 1/2 s
    accept_requests(pac, 0.5)
    (r,) = decoded(pac)
    assert r.result_code == m.OutgoingCallResult.CONNECTED
    assert pac.stats["calls_rate_limited"] == 2


def test_calls_per_connection_bounded_like_pptpd():
    assert ControlConfig().max_calls == 128


# --- CallCleared.established for a PNS call cleared before its Outgoing-Call-Reply ---------------

def _pns_with_call_cleared_before_reply(clear: bool) -> tuple[ControlConnection, int]:
    pns = ControlConnection(Role.PNS, ControlConfig(clear_timeout=10), 0.0, random.Random(8))
    pns.start(0.0)
    pns.receive_data(m.SCCRP(result_code=1).encode(), 0.0)
    call_id = pns.place_call(0.0)
    if clear:
        pns.clear_call(call_id, "cancelled", now=0.0)
    pns.events()
    pns.data_to_send()
    return pns, call_id


def _replied(pns: ControlConnection, call_id: int) -> None:
    pns.receive_data(m.OCRP(call_id=4321, peer_call_id=call_id, result_code=1).encode(), 0.0)


@pytest.mark.parametrize("cleared_first,replied,end,established", [
    # the call was cleared before its OCRP (WAIT_DISCONNECT, no reply): it never came up
    (True, False, "connection_lost", False),
    (True, False, "peer_stop", False),
    (True, False, "clear_timeout", False),
    (True, False, "stop", False),
    # waiting for the reply, not cleared
    (False, False, "connection_lost", False),
    (False, False, "peer_stop", False),
    # the reply came (after the clear, or before): it did come up
    (True, True, "connection_lost", True),
    (True, True, "clear_timeout", True),
    (False, True, "connection_lost", True),
    (False, True, "peer_stop", True),
])
def test_call_cleared_established_table(cleared_first, replied, end, established):
    pns, call_id = _pns_with_call_cleared_before_reply(cleared_first)
    if replied:
        _replied(pns, call_id)
        pns.events()
    if end == "connection_lost":
        pns.connection_lost(1.0)
    elif end == "peer_stop":
        pns.receive_data(m.StopCCRQ().encode(), 1.0)
    elif end == "clear_timeout":
        pns.handle_timer(10.5)
    else:
        pns.stop("bye", 1.0)
    (cleared,) = [e for e in pns.events() if isinstance(e, CallCleared)]
    assert cleared.call_id == call_id
    assert cleared.established is established
