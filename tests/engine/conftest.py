"""Fixtures of the data-plane tests: every test that takes one runs on both twins.

* ``Engine``: the engine class, compiled (fastpptp._gre) then reference (fastpptp._gre_ref).
* ``engine``: an ``Engine(EngineConfig())`` instance, closed afterwards.
* ``impl``: the TUN offload module, compiled (fastpptp._offload) then reference (_offload_ref);
  test_mppe.py overrides it with its own MPPE twins.
"""
import pytest

from fastpptp.dataplane import EngineConfig, load_engine
from support.offload import IMPLS


@pytest.fixture(params=["compiled", "reference"])
def Engine(request):
    return load_engine(request.param)


@pytest.fixture
def engine(Engine):
    eng = Engine(EngineConfig())
    yield eng
    eng.close()


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    return IMPLS[request.param]
