"""What the fuzzers found, pinned: each saved input in tests/fuzz/cases/TARGET/ replays
clean through its target (the invariants included), and each fix has a direct test here."""
from __future__ import annotations

import pathlib
import random

import pytest

from fastpptp.errors import DecodeError
from fastpptp.ppp.auth.policy import AuthPolicy
from fastpptp.ppp.lcp import LcpConfig
from fastpptp.ppp.link import LinkConfig, LinkDown, PPPLink
from fastpptp.radius.packet import Attribute, _decode_attributes, _encode_attributes, decode_packet
from fuzz.run import _load

CASES = pathlib.Path(__file__).resolve().parent / "cases"


@pytest.mark.parametrize("case", sorted(CASES.glob("*/*")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_saved_case_replays_clean(case):
    _load(case.parent.name).one_input(case.read_bytes())


# --- link: LinkDown twice (fuzz/targets/link.py, case link/linkdown-twice-...) --------------
def test_close_after_lower_down_gives_no_second_link_down():
    """lower_down() ends the link (one LinkDown); the owner's close() afterwards finishes
    LCP (Starting -> Initial, tlf) but the link is already Dead: no second LinkDown (an owner
    would tear the session down twice)."""
    cfg = LinkConfig(lcp=LcpConfig(echo_interval=0), policy=AuthPolicy.from_options("noauth"))
    link = PPPLink(cfg, "client", None, random.Random(1))
    link.lower_up(0.0)
    link.lower_down(1.0)
    link.close(2.0, "admin")
    downs = [e for e in link.events() if isinstance(e, LinkDown)]
    assert [d.reason for d in downs] == ["lower layer down"]
    link.lower_up(3.0)                  # a new negotiation can still end with its own LinkDown
    link.lower_down(4.0)
    assert sum(isinstance(e, LinkDown) for e in link.events()) == 1


# --- radius: attribute type 0 (case radius/attribute-type-0) --------------------------------
def test_attribute_type_0_is_a_decode_error():
    """Type 0 is reserved; the encoder refuses it, so the decoder must not hand it out (a
    decoded packet must encode back)."""
    with pytest.raises(DecodeError):
        _decode_attributes(b"\x00\x03x")
    raw = bytes([2, 1, 0, 23]) + bytes(16) + b"\x00\x03x"
    with pytest.raises(DecodeError):
        decode_packet(raw)


def test_vendor_sub_attribute_type_0_is_kept_raw():
    """A Vendor-Specific whose sub-attribute type is 0 is not in the recommended format: it
    stays one raw attribute 26, which encodes back to the same octets."""
    vsa = (9).to_bytes(4, "big") + b"\x00\x03x"
    body = bytes([26, 2 + len(vsa)]) + vsa
    attrs = _decode_attributes(body)
    assert attrs == [Attribute(26, vsa)]
    assert _encode_attributes(attrs) == body


# --- control: a refused OCRP after our CCRQ (case control/refused-ocrp-after-clear-...) -----
def test_pns_call_cleared_then_refused_is_not_established():
    """PNS: place a call, clear it before the Outgoing-Call-Reply, then the reply refuses
    it: the call ends there (the PAC has no call to send a CDN for) as never established --
    it used to linger in wait-disconnect and later be reported ``established=True``."""
    from fastpptp.pptp import messages as m
    from fastpptp.pptp.control import CallCleared, ControlConfig, ControlConnection, Role

    conn = ControlConnection(Role.PNS, ControlConfig(), 0.0, random.Random(3))
    conn.start(0.0)
    conn.receive_data(m.SCCRP().encode(), 0.0)
    call_id = conn.place_call(0.0)
    conn.clear_call(call_id, "user", 0.0)
    conn.events()
    conn.receive_data(m.OCRP(call_id=5, peer_call_id=call_id, result_code=3).encode(), 0.1)
    [ev] = conn.events()
    assert isinstance(ev, CallCleared) and ev.call_id == call_id and not ev.established
    assert conn.calls() == {}
    conn.receive_data(m.CDN(call_id=5, result_code=1).encode(), 0.2)
    assert not any(isinstance(e, CallCleared) for e in conn.events())


def test_pns_call_cleared_then_connected_learns_the_pac_call_id():
    """The other order stays as it was: a Connected reply after our CCRQ only teaches us the
    PAC's call ID; its CDN then ends the call (it did come up at the PAC)."""
    from fastpptp.pptp import messages as m
    from fastpptp.pptp.control import CallCleared, ControlConfig, ControlConnection, Role

    conn = ControlConnection(Role.PNS, ControlConfig(), 0.0, random.Random(3))
    conn.start(0.0)
    conn.receive_data(m.SCCRP().encode(), 0.0)
    call_id = conn.place_call(0.0)
    conn.clear_call(call_id, "user", 0.0)
    conn.receive_data(m.OCRP(call_id=5, peer_call_id=call_id, result_code=1).encode(), 0.1)
    assert conn.calls() and not conn.events()[1:]
    conn.receive_data(m.CDN(call_id=5, result_code=1).encode(), 0.2)
    [ev] = [e for e in conn.events() if isinstance(e, CallCleared)]
    assert ev.call_id == call_id and ev.peer_call_id == 5


# --- control: an OCRQ completed by later octets (case control/ocrq-completed-by-...) ------
def test_pns_refuses_an_ocrq_split_across_writes_once():
    """The peer's stream is one: the first 20 octets of an Outgoing-Call-Request, then the
    rest in a later write, are one OCRQ. A PNS never takes calls (RFC 2637 §2.7), so it
    answers that one OCRQ with one OCRP General-Error/PAC-Error for the peer's call ID and
    keeps the connection.  (The fuzz failure was the harness's ledger of peer OCRQs, which
    scanned only the octets of record 0 and missed an OCRQ finished by the octets of an
    injected reply; fuzz/targets/control.py now notes every peer octet.)"""
    from fastpptp.pptp import messages as m
    from fastpptp.pptp.control import ControlConfig, ControlConnection, Role, State
    from fastpptp.pptp.framer import PptpFramer

    conn = ControlConnection(Role.PNS, ControlConfig(), 0.0, random.Random(3))
    conn.start(0.0)
    conn.receive_data(m.SCCRP().encode(), 0.0)
    conn.data_to_send()
    raw = m.OCRQ(call_id=46361).encode()
    conn.receive_data(raw[:20], 0.1)
    assert conn.data_to_send() == b""
    conn.receive_data(raw[20:], 0.2)
    out = PptpFramer()
    out.feed(conn.data_to_send())
    [reply] = list(out)
    assert isinstance(reply, m.OCRP) and reply.peer_call_id == 46361
    assert reply.result_code == m.OutgoingCallResult.GENERAL_ERROR
    assert reply.error_code == m.GeneralErrorCode.PAC_ERROR
    assert conn.state is State.ESTABLISHED and conn.calls() == {}
