"""Fixtures of the RADIUS tests: one real FreeRADIUS per module (tests/support/freeradius.py),
skipped with the reason only when FreeRADIUS is not installed."""

import pytest

from support.freeradius import FreeRadius, RadiusUser, freeradius_missing
from fastpptp.tools.netrig import namespace as lo_namespace

ALICE_REPLY = {
    "Framed-IP-Address": "203.0.113.7",
    "Framed-IP-Netmask": "255.255.255.255",
    "Framed-Route": "198.51.100.0/24 0.0.0.0 1",
    "Session-Timeout": "3600",
    "Idle-Timeout": "600",
    "Acct-Interim-Interval": "60",
    "Framed-MTU": "1400",
    "Class": "gold-plan",
    "MS-Primary-DNS-Server": "192.0.2.53",
    "MS-Secondary-DNS-Server": "192.0.2.54",
}
USERS = [
    RadiusUser("alice", "Alice-pw-2865", ALICE_REPLY),
    RadiusUser("bob", "bob-only-pw"),
]


@pytest.fixture(scope="module")
def freeradius():
    """The running server; ``.secret``, ``.users`` (alice with reply attributes, bob without)."""
    reason = freeradius_missing()
    if reason is not None:
        print(f"skipping: {reason}")
        pytest.skip(reason)
    with FreeRadius(USERS, secret="Fr33-radius-s3cret") as server:
        yield server


@pytest.fixture(scope="module")
def radius_ns():
    """A fresh network namespace with ``lo`` up and a FreeRADIUS (USERS) on its 127.0.0.1,
    for in-process servers: the test enters it (``netns.entered(radius_ns.netns)``).  Only
    for tests marked netns (they need root)."""
    reason = freeradius_missing()
    if reason is not None:
        pytest.skip(reason)
    with lo_namespace("fpacct") as name, \
            FreeRadius(USERS, secret="Fr33-radius-s3cret", netns=name) as server:
        yield server
