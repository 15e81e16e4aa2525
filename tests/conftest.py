"""Shared pytest configuration.

Tests marked ``netns`` need root, ``ip netns``, veth and /dev/net/tun; tests marked ``interop``
also need QEMU and the interop harness (``pptp-vm``: ``$FASTPPTP_INTEROP``, else
``../shared/interop`` beside the repository; see tests/support/paths.py).  CI is root on the
same kind of machine with the harness laid out, so these run there; they are skipped only when
the facility is truly absent, with the reason.

Layout: one folder per part of the package (wire, pptp, ppp, auth, engine, net, products), then
integration (products in namespaces) and interop (real peers in VMs); shared helpers in
``tests/support``, shared fixtures in the folders' ``conftest.py``, data in ``tests/data``.
"""
import os
import shutil

import pytest

from support import paths


def _netns_missing_reason():
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is absent"
    return None


def pytest_collection_modifyitems(config, items):
    netns_missing = _netns_missing_reason()
    for item in items:
        # markers, not item.keywords: the keywords also hold the folder names (tests/interop/)
        interop = item.get_closest_marker("interop") is not None
        if interop and paths.INTEROP_MISSING is not None:
            item.add_marker(pytest.mark.skip(reason=paths.INTEROP_MISSING))
        elif netns_missing is not None and (interop or item.get_closest_marker("netns") is not None):
            item.add_marker(pytest.mark.skip(reason=netns_missing))


@pytest.fixture
def engines(monkeypatch):
    """Every engine the server loads is wrapped so a test sees the calls made on it
    (tests/support/recording_engine.py: set_rate_limit among them)."""
    import fastpptp.dataplane as dataplane
    from support.recording_engine import RecordingEngines
    rec = RecordingEngines(dataplane.load_engine)
    monkeypatch.setattr(dataplane, "load_engine", rec)
    return rec
