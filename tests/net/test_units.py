"""fastpptp.net.units: per-session interface units (ppp0, ppp1, ...), with a fake opener."""
import pytest

from fastpptp.net.units import IFNAMSIZ, MAX_UNITS, UnitError, UnitTable, unit_pattern


class _Opener:
    """Records the names asked for; names in ``busy`` answer None (someone else's)."""

    def __init__(self, busy=(), fail=()):
        self.busy, self.fail, self.asked = set(busy), set(fail), []

    def __call__(self, name):
        self.asked.append(name)
        if name in self.fail:
            raise OSError(f"cannot open {name}")
        return None if name in self.busy else f"dev:{name}"


@pytest.mark.parametrize("interface,expect", [
    ("fpptp0", "ppp%d"), ("", "ppp%d"), ("ppp", "ppp%d"), ("ppp0", "ppp%d"), ("vpn0", "vpn%d"),
    ("vpn12", "vpn%d"), ("tun-%d-x", "tun-%d-x"), ("7", "ppp%d"), ("a%s%d", "a%s%d"),
])
def test_unit_pattern(interface, expect):
    assert unit_pattern(interface, "fpptp0") == expect


@pytest.mark.parametrize("in_use,taken,busy,expect_unit,expect_asked", [
    ((), (), (), 0, ["ppp0"]),
    ((0, 1), (), (), 2, ["ppp2"]),
    ((0, 2), (), (), 1, ["ppp1"]),                          # lowest free, not next
    ((), ("ppp0", "eth0"), (), 1, ["ppp1"]),                # a real pppd's ppp0 is not touched
    ((1,), ("ppp0",), ("ppp2",), 3, ["ppp2", "ppp3"]),      # busy when opened: next unit
])
def test_allocate_lowest_free_unit(in_use, taken, busy, expect_unit, expect_asked):
    table = UnitTable("ppp%d")
    for unit in in_use:         # claim exactly `unit`: every other name counts as taken
        table.allocate(str, taken=[table.name(u) for u in range(MAX_UNITS) if u != unit])
    assert table.in_use == frozenset(in_use)
    opener = _Opener(busy)
    unit, name, dev = table.allocate(opener, taken)
    assert (unit, name, dev) == (expect_unit, f"ppp{expect_unit}", f"dev:ppp{expect_unit}")
    assert opener.asked == expect_asked
    assert table.in_use == frozenset(in_use) | {expect_unit}


def test_release_makes_the_unit_lowest_free_again():
    table = UnitTable("vpn%d")
    got = [table.allocate(str)[0] for _ in range(3)]
    assert got == [0, 1, 2]
    table.release(1)
    table.release(1)                          # twice: a no-op
    assert table.allocate(str)[:2] == (1, "vpn1")
    assert table.allocate(str)[0] == 3


def test_an_opener_error_leaves_the_unit_free():
    table = UnitTable("ppp%d")
    with pytest.raises(OSError, match="cannot open ppp0"):
        table.allocate(_Opener(fail={"ppp0"}))
    assert table.in_use == frozenset()
    assert table.allocate(_Opener())[0] == 0


def test_every_unit_in_use_or_taken():
    table = UnitTable("ppp%d", size=3)
    assert [table.allocate(str)[0] for _ in range(2)] == [0, 1]
    with pytest.raises(UnitError, match="no free interface unit"):
        table.allocate(_Opener(), taken={"ppp2"})
    with pytest.raises(UnitError):
        table.allocate(_Opener(busy={"ppp2"}))
    assert table.in_use == frozenset({0, 1})


def test_a_name_too_long_for_ifnamsiz():
    long_prefix = "x" * (IFNAMSIZ - 2)                # "x...x0" is 15 bytes: fits with the NUL
    table = UnitTable(long_prefix + "%d", size=20)
    assert table.allocate(str)[1] == long_prefix + "0"
    with pytest.raises(UnitError, match="IFNAMSIZ"):
        table.allocate(str, taken={f"{long_prefix}{u}" for u in range(1, 10)})   # next: ...10


def test_unit_error_is_an_oserror_and_patterns_need_a_unit():
    assert issubclass(UnitError, OSError)            # the server refuses the call on OSError
    with pytest.raises(ValueError):
        UnitTable("ppp")
    assert UnitTable("tun-%d-%d").name(4) == "tun-4-%d"    # only the first %d is the unit
