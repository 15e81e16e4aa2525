"""admission.idle_victim: which idle control connection makes room at the connection limit
(issue 10: idle and slow-loris connections must not lock logins out)."""
from __future__ import annotations

from fastpptp.admission import IDLE_EVICT_AFTER, idle_victim


def test_none_without_candidates_or_when_all_are_young():
    assert idle_victim([], 100.0) is None
    young = [("192.0.2.19", 100.0 - IDLE_EVICT_AFTER / 2, "a")]
    assert idle_victim(young, 100.0) is None


def test_the_oldest_of_the_source_holding_the_most():
    cands = [("192.0.2.10", 10.0, "legit"),                 # oldest of all, but alone
             ("192.0.2.19", 20.0, "loris1"), ("192.0.2.19", 15.0, "loris0"),
             ("192.0.2.19", 99.5, "loris-young")]            # inside the grace: not counted
    assert idle_victim(cands, 100.0) == "loris0"


def test_tie_goes_to_the_source_with_the_older_connection():
    cands = [("192.0.2.20", 30.0, "b1"), ("192.0.2.21", 20.0, "c1"),
             ("192.0.2.20", 40.0, "b2"), ("192.0.2.21", 50.0, "c2")]
    assert idle_victim(cands, 100.0) == "c1"


def test_min_age_is_a_parameter():
    assert idle_victim([("192.0.2.19", 99.9, "x")], 100.0, min_age=0.0) == "x"
