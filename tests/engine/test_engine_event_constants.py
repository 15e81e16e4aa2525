"""Engine event numbers are defined once (ppp/constants.py) and every user agrees on them.

The compiled engine holds its own C copy (``cdef uint32_t EV_RESET``) for the I/O thread;
it is initialised from the Python constant, and this test pins the value it reports.
"""
from __future__ import annotations

import pathlib
import re

import pytest

import fastpptp
from fastpptp import dataplane
from fastpptp.ppp import constants, link


def test_compiled_engine_queues_the_python_value():
    gre = pytest.importorskip("fastpptp._gre", reason="compiled engine not built")
    assert gre.COMPILED_EV_MPPE_RESET_NEEDED == constants.EV_MPPE_RESET_NEEDED == 0x10001


def test_python_users_share_one_definition():
    assert dataplane.EV_MPPE_RESET_NEEDED is constants.EV_MPPE_RESET_NEEDED
    assert link.EV_MPPE_RESET_NEEDED is constants.EV_MPPE_RESET_NEEDED
    # engine events sit above every 16-bit PPP protocol number
    assert constants.EV_MPPE_RESET_NEEDED >= constants.ENGINE_EVENT_BASE == 0x10000
    assert max(constants.Protocol) < constants.ENGINE_EVENT_BASE


def test_no_module_writes_the_number_again():
    root = pathlib.Path(fastpptp.__file__).parent
    literal = re.compile(r"\b0x0*10001\b|\b65537\b", re.IGNORECASE)
    sources = [p for ext in ("*.py", "*.pyx", "*.pxd") for p in root.rglob(ext)]
    offenders = [f"{p.relative_to(root)}:{n}" for p in sources if p.name != "constants.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
    assert offenders == []
