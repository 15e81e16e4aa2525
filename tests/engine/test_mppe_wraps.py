"""Stateless MPPE across 4096+ lost frames (issue 9), both twins: the decryptor follows a
coherency count that wrapped when the GRE receive window says that many sequence numbers
were given up (``add_lost``), tries ahead + 4096 w and keeps the first key whose first
octets decrypt to data; the twins agree frame by frame and key by key."""
from __future__ import annotations

import pytest

from fastpptp.crypto import mppe as py_mppe

_mppe = pytest.importorskip("fastpptp._mppe", reason="compiled MPPE not built")

KEY = bytes.fromhex("405CB2247A7956E6E211007AE27B22D4")
IP4 = b"\x00\x21" + b"\x45" + bytes(39)
IP6 = b"\x00\x57" + b"\x60" + bytes(59)
PFC4 = b"\x21" + b"\x45" + bytes(39)

TWINS = {
    "compiled": (lambda: _mppe.Mppe(KEY, 128, False), lambda: _mppe.Mppe(KEY, 128, False)),
    "reference": (lambda: py_mppe.MppeEncryptor(KEY, 128, False),
                  lambda: py_mppe.MppeDecryptor(KEY, 128, False)),
}


@pytest.fixture(params=sorted(TWINS))
def twin(request):
    return TWINS[request.param]


# rows: [(frames lost, GRE sequence numbers the window reports lost), ...] then one frame;
# ``ok``: it decrypts to what was sent
ROWS = [
    pytest.param([(4095, 4095)], True, id="exactly-one-wrap"),     # count 0 ahead: not a dup
    pytest.param([(5000, 5000)], True, id="5000"),
    pytest.param([(5000, 5003)], True, id="3-control-frames-in-the-gap"),
    pytest.param([(12952, 12952)], True, id="12952-three-wraps"),
    pytest.param([(5000, 0)], False, id="no-gre-loss-no-follow"),  # keys out of step
    pytest.param([(5000, 4000)], False, id="gre-loss-too-small"),
    pytest.param([(17 * 4096, 17 * 4096)], False, id="beyond-max-wraps"),
    pytest.param([(2, 2), (3, 3)], True, id="small-gaps-unchanged"),
]


@pytest.mark.parametrize("losses,ok", ROWS)
def test_follow_wraps_table(twin, losses, ok):
    E, D = twin
    enc, dec = E(), D()
    assert dec.decrypt(enc.encrypt(IP4)) == IP4
    for lost, reported in losses:
        for _ in range(lost):
            enc.encrypt(IP4)
        dec.add_lost(reported)
    out = dec.decrypt(enc.encrypt(IP4))
    assert (out == IP4) is ok
    if ok:
        assert dec.decrypt(enc.encrypt(IP6)) == IP6        # and in step afterwards
        assert dec.seq_lost == sum(r - n for n, r in losses)   # control frames: left over


def test_budget_is_spent_by_the_frames_before_the_gap(twin):
    """One window call may deliver buffered frames (small gaps) before a big gap (a jump):
    the loss is reported once, before all of them.  The frames before the gap take w = 0
    (their first octets decrypt to data) and spend their share; the frame after it still
    has the rest of the budget and follows the wraps."""
    E, D = twin
    enc, dec = E(), D()
    assert dec.decrypt(enc.encrypt(IP4)) == IP4
    enc.encrypt(IP4)                                       # 1 lost
    a = enc.encrypt(IP4)
    for _ in range(9000):                                  # then 9000 lost
        enc.encrypt(IP4)
    b = enc.encrypt(PFC4)
    dec.add_lost(9001)
    assert dec.decrypt(a) == IP4
    assert dec.decrypt(b) == PFC4
    assert dec.decrypt(enc.encrypt(IP4)) == IP4


def test_twins_agree_key_for_key():
    (ce, cd), (pe, pd) = (TWINS["compiled"][0](), TWINS["compiled"][1]()), \
        (TWINS["reference"][0](), TWINS["reference"][1]())
    for enc, dec in ((ce, cd), (pe, pd)):
        dec.decrypt(enc.encrypt(IP4))
        for _ in range(6000):
            enc.encrypt(IP4)
        dec.add_lost(6000)
        dec.decrypt(enc.encrypt(IP4))
    assert cd.session_key == pd.session_key and cd.ccount == pd.ccount
    assert cd.rekeys == pd.rekeys and cd.wraps == pd.wraps == 1


def test_add_lost_refuses_negative_and_saturates(twin):
    dec = twin[1]()
    with pytest.raises(ValueError):
        dec.add_lost(-1)
    dec.add_lost(1 << 40)
    assert dec.seq_lost == py_mppe.LOST_CAP
