"""Fixtures of the data-plane tests: every test that takes one runs on both twins.

* ``Engine``: the engine class, compiled (fastpptp._gre) then reference (fastpptp._gre_ref).
* ``engine``: an ``Engine(EngineConfig())`` instance, closed afterwards.
* ``fakes``: a TUN fake and a GRE fake (socketpairs) for the I/O thread.
* ``impl``: the TUN offload module, compiled (fastpptp._offload) then reference (_offload_ref);
  test_mppe.py overrides it with its own MPPE twins.
"""
import socket

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


class Fakes:
    """A TUN fake and a GRE fake; the test holds the far ends."""

    def __init__(self):
        self.tun_eng, self.tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.gre_eng, self.gre = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (self.tun_eng, self.tun, self.gre_eng, self.gre):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.tun.settimeout(5)
        self.gre.settimeout(5)

    def close(self):
        for s in (self.tun_eng, self.tun, self.gre_eng, self.gre):
            s.close()


@pytest.fixture
def fakes():
    f = Fakes()
    yield f
    f.close()
