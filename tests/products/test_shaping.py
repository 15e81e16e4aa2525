"""fastpptp.shaping: the RATE text form (accel-ppp's) and the RateLimit value."""
import pytest

from fastpptp.shaping import MAX_KBIT, UNLIMITED, RateLimit, parse_rate


@pytest.mark.parametrize("text,down,up", [
    ("1000", 1000, 1000),            # one number: both ways, as accel-ppp reads it
    ("2000/512", 2000, 512),         # down/up: towards the client / from it
    ("0", 0, 0),                     # unlimited
    ("0/512", 0, 512),               # unlimited down, 512 kbit/s up
    ("007/08", 7, 8),                # leading zeros are still decimal
    (str(MAX_KBIT), MAX_KBIT, MAX_KBIT),
])
def test_parse_rate_accepts(text, down, up):
    assert parse_rate(text) == RateLimit(down, up)


@pytest.mark.parametrize("text", [
    "", " 1000", "1000 ", "10 00", "-1", "+5", "1000/", "/512", "1/2/3", "10M", "1k", "1.5",
    "1000\\512", "1000:512", "0x10", "１０００", str(MAX_KBIT + 1), f"1/{MAX_KBIT + 1}", "1234567890",
])
def test_parse_rate_rejects(text):
    with pytest.raises(ValueError, match="bad rate"):
        parse_rate(text)


def test_parse_rate_rejects_non_text():
    with pytest.raises(TypeError):
        parse_rate(1000)


def test_rate_limit_value():
    r = RateLimit(2000, 512)
    assert str(r) == "2000/512" and parse_rate(str(r)) == r
    assert r.to_json() == {"down_kbit": 2000, "up_kbit": 512}
    assert not r.unlimited and UNLIMITED.unlimited and RateLimit(0, 0) == UNLIMITED
    with pytest.raises(AttributeError):
        r.down_kbit = 1                                  # frozen
    assert hash(r) == hash(RateLimit(2000, 512))


@pytest.mark.parametrize("down,up,exc", [
    (-1, 0, ValueError), (0, MAX_KBIT + 1, ValueError), (1.5, 0, TypeError), (True, 0, TypeError),
    ("1000", 0, TypeError),
])
def test_rate_limit_validates(down, up, exc):
    with pytest.raises(exc):
        RateLimit(down, up)
