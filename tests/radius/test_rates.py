"""fastpptp/radius/rates.py: the rate-limit attributes of Access-Accepts and CoA-Requests
(Mikrotik-Rate-Limit, Cisco-AVPair rate-limit, Filter-Id) and their precedence.

These cases were once two sets, of the verifier's lenient parsers (None for anything that did
not parse) and of the DAE core's strict ones; the one API is strict: a rate attribute that
does not parse raises ValueError (the verifier then ignores it, the DAE core NAKs it), and
only a Filter-Id that is not shaped like a rate (a filter's name) is None."""
from __future__ import annotations

import pytest

from fastpptp.radius.dictionary import VENDOR_CISCO, VENDOR_MIKROTIK, Attr, CiscoAttr, MikrotikAttr
from fastpptp.radius.packet import Attribute
from fastpptp.radius.rates import (
    is_rate_avpair, parse_cisco_rate_limit, parse_filter_id_rate, parse_mikrotik_rate_limit,
    rate_limit_from_attributes,
)
from fastpptp.shaping import MAX_KBIT, RateLimit


def _mk(text: bytes) -> Attribute:
    return Attribute(MikrotikAttr.MIKROTIK_RATE_LIMIT, text, VENDOR_MIKROTIK)


def _cisco(text: bytes) -> Attribute:
    return Attribute(CiscoAttr.CISCO_AVPAIR, text, VENDOR_CISCO)


def _fid(text: bytes) -> Attribute:
    return Attribute(Attr.FILTER_ID, text)


# ----------------------------------------------------------------------------- Mikrotik-Rate-Limit

@pytest.mark.parametrize("text,rate", [
    ("2M", RateLimit(2000, 2000)),
    ("1M", RateLimit(1000, 1000)),
    ("512k/2M", RateLimit(2000, 512)),           # rx (from the client) / tx (to it): tx is the down
    ("256000/128000", RateLimit(128, 256)),      # bit/s without a suffix
    ("2M/8M 4M/16M 1M/4M 10/10 8", RateLimit(8000, 2000)),          # bursts and priority ignored
    ("1000000/4000000 2M/8M 1M/4M 10/10 8", RateLimit(4000, 1000)),
    ("1G/0", RateLimit(0, 1_000_000)),
    ("1500", RateLimit(2, 2)),                    # bit/s; below 1 kbit/s is still a limit, never 0
    ("1", RateLimit(1, 1)),
    ("0", RateLimit(0, 0)),                       # 0 = unlimited
    ("  4M/1M  ", RateLimit(1000, 4000)),
])
def test_mikrotik_rate_limit(text, rate):
    assert parse_mikrotik_rate_limit(text) == rate


# "fast", "1/2/3" and "" were None in the verifier's old parser; the strict API raises
@pytest.mark.parametrize("text", ["", "   ", "fast", "1/2/3", "1x", "-1M", "1M/", "/1M", "1.5M", "200G",
                                  "M"])
def test_mikrotik_rate_limit_rejects(text):
    with pytest.raises(ValueError):
        parse_mikrotik_rate_limit(text)


# ----------------------------------------------------------------------------- Cisco-AVPair

IOS_PAIRS = ["lcp:interface-config#1=rate-limit output 2048000 384000 768000 conform-action "
             "transmit exceed-action drop",
             "lcp:interface-config#2=rate-limit input 512000 96000 192000 conform-action transmit "
             "exceed-action drop"]


@pytest.mark.parametrize("pairs,rate", [
    (IOS_PAIRS, RateLimit(2048, 512)),
    (IOS_PAIRS[:1], RateLimit(2048, 0)),                      # a direction not given: unlimited
    (["rate-limit output 2048000 8000 8000 conform-action transmit"], RateLimit(2048, 0)),
    (["ip:addr-pool=x", "lcp:interface-config=rate-limit input 64000 8000 8000"], RateLimit(0, 64)),
    (["x=rate-limit output 3000000 1 1"], RateLimit(3000, 0)),       # any name= before it
    # accel-ppp's access-group form: the ACL is skipped, the rate is the session's
    (["lcp:interface-config#1=rate-limit output access-group 101 1024000 1000000 1000000 conform-action "
      "transmit exceed-action drop",
      "lcp:interface-config#1=rate-limit input access-group rate-limit 7 256000 8000 8000"], RateLimit(1024, 256)),
    (["rate-limit OUTPUT 1500 1 1"], RateLimit(2, 0)),        # rounded up, case-insensitive
    (["ip:addr-pool=main"], None),
    (["subscriber:command=reauthenticate"], None),
    ([], None),
])
def test_cisco_rate_limit(pairs, rate):
    assert parse_cisco_rate_limit(pairs) == rate


@pytest.mark.parametrize("pair", [
    "rate-limit sideways 1000", "rate-limit output lots", "rate-limit", "rate-limit input",
    "lcp:interface-config#1=rate-limit output access-group 101", "rate-limit output 1.5M 1 1",
    "rate-limit output 200000000000 1 1",
])
def test_cisco_rate_limit_rejects(pair):
    with pytest.raises(ValueError):
        parse_cisco_rate_limit(["ip:addr-pool=x", pair])


def test_is_rate_avpair():
    assert is_rate_avpair("lcp:interface-config#1=rate-limit output 1000 1 1")
    assert is_rate_avpair("rate-limit sideways")          # a rate-limit pair, if a bad one
    assert not is_rate_avpair("subscriber:command=reauthenticate")
    assert not is_rate_avpair("ip:inacl#1=permit ip any any")
    assert not is_rate_avpair("")


# ----------------------------------------------------------------------------- Filter-Id

@pytest.mark.parametrize("text,rate", [
    ("1000/2000", RateLimit(1000, 2000)),
    ("4096", RateLimit(4096, 4096)),
    ("1000:500", RateLimit(1000, 500)),
    ("1000\\500", RateLimit(1000, 500)),
    ("10M/2M", RateLimit(10000, 2000)),          # M = Mbit/s
    ("512k/1m", RateLimit(512, 1000)),            # k = kbit/s, suffixes in either case
    (" 2000 / 512 ", RateLimit(2000, 512)),
    ("0", RateLimit(0, 0)),
    (f"{MAX_KBIT}", RateLimit(MAX_KBIT, MAX_KBIT)),
])
def test_filter_id_rate_as_accel_ppp(text, rate):
    assert parse_filter_id_rate(text) == rate


@pytest.mark.parametrize("text", ["web-only", "gold", "no-p2p", "", "1000/", "-5", "1/2/3", "1.5M", "10G"])
def test_a_filter_id_that_is_no_rate_is_none_not_an_error(text):
    assert parse_filter_id_rate(text) is None


@pytest.mark.parametrize("text", [f"{MAX_KBIT + 1}", "1000/200000M"])
def test_a_filter_id_rate_above_the_maximum_is_an_error(text):
    with pytest.raises(ValueError):
        parse_filter_id_rate(text)


# ----------------------------------------------------------------------------- precedence

def test_rate_attribute_precedence():
    mk, cisco, fid = _mk(b"1M/2M"), _cisco(b"rate-limit output 3000000 1 1"), _fid(b"4000/4000")
    assert rate_limit_from_attributes([fid, cisco, mk]) == RateLimit(2000, 1000)
    assert rate_limit_from_attributes([fid, cisco]) == RateLimit(3000, 0)
    assert rate_limit_from_attributes([_fid(b"100/200"), _cisco(b"x=rate-limit output 3000000 1 1"),
                                       _mk(b"1k/5k")]) == RateLimit(5, 1)
    assert rate_limit_from_attributes([_fid(b"gold"), fid]) == RateLimit(4000, 4000)
    assert rate_limit_from_attributes([_fid(b"gold")]) is None
    assert rate_limit_from_attributes([_cisco(b"ip:addr-pool=x"), fid]) == RateLimit(4000, 4000)
    assert rate_limit_from_attributes([_mk(b"0"), fid]) == RateLimit(0, 0)       # explicit unlimited
    assert rate_limit_from_attributes([_mk(b"2M"), _mk(b"fast")]) == RateLimit(2000, 2000)   # the first
    assert rate_limit_from_attributes([]) is None


@pytest.mark.parametrize("attrs", [
    [_mk(b"fast"), _fid(b"1000")],                # the deciding kind is bad: no falling back
    [_cisco(b"rate-limit output lots"), _fid(b"1000")],
    [_fid(b"gold"), _fid(f"{MAX_KBIT + 1}".encode())],
    [_mk(b"\xff\xfe")],                           # undecodable octets: replaced, then no rate
])
def test_a_bad_deciding_attribute_is_an_error(attrs):
    with pytest.raises(ValueError):
        rate_limit_from_attributes(attrs)
