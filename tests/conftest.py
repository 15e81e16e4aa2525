"""Shared pytest configuration.

Tests marked ``netns`` need root, ``ip netns``, veth and /dev/net/tun; tests marked ``interop``
also need QEMU (the ../shared/interop harness).  CI is root on the same kind of machine, so
these run there; they are skipped only when the facility is truly absent, with the reason.
"""
import os
import shutil

import pytest


def _netns_missing_reason():
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is absent"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _netns_missing_reason()
    if reason is None:
        return
    for item in items:
        if "netns" in item.keywords or "interop" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
