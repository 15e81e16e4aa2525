"""Fixtures of the integration tests (all need root: they make network namespaces).

* ``loopback_ns``: a fresh namespace with only ``lo`` up, entered for the test's duration.
* ``lab``: the products' lab of tests/support/lab.py, set up and torn down around the test
  (the server's log tail is printed at the end).
* ``gre_io``: the GRE port (issue 9), one run per forced mode -- ``raw``, ``packet``, ``xdp``
  -- for the core data tests (clean transfer, loss/reorder/duplication, MPPE, IPv6); each
  asserts the mode that ran and that its counters moved (support.lab.check_gre_port).  The
  other tests run with the default, ``auto``.
"""
from __future__ import annotations

import os

import pytest

from fastpptp.net import netns
from support.lab import GRE_IO_FORCED, Lab
from fastpptp.tools.netrig import namespace as lo_namespace


@pytest.fixture
def loopback_ns():
    with lo_namespace("fpinp") as name, netns.entered(name):
        yield name


@pytest.fixture
def lab(tmp_path):
    lab = Lab(str(tmp_path), f"{os.getpid() % 10000}")
    lab.setup()
    try:
        yield lab
    finally:
        lab.teardown()
        print("--- server.log ---\n" + lab.log("server.log")[-4000:])



@pytest.fixture(params=GRE_IO_FORCED)
def gre_io(request):
    return request.param
