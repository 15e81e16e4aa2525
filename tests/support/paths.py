"""Where the tests find their material, relative to the repository (never an absolute path).

* ``CAPTURES``: the pppd / pptp-linux / pptpd packet captures, kept in the repository under
  ``tests/data/captures`` (copied from the interop harness; ``INDEX.md`` describes each frame,
  ``NOTES.json`` the runs that produced them).
* ``INTEROP``: the QEMU harness (``pptp-vm``) the interop tests boot, which is *not* in the
  repository: ``$FASTPPTP_INTEROP`` if set, else ``../shared/interop`` beside the repository
  (where CI lays it).  ``INTEROP_MISSING`` is ``None`` when it is there, else the reason the
  interop tests are skipped (tests/conftest.py turns it into their skip reason).
"""
from __future__ import annotations

import os
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent.parent
REPO = TESTS.parent
DATA = TESTS / "data"
CAPTURES = DATA / "captures"


def _interop() -> tuple[pathlib.Path, str | None]:
    env = os.environ.get("FASTPPTP_INTEROP")
    where = pathlib.Path(env) if env else REPO.parent / "shared" / "interop"
    if (where / "pptp-vm").exists():
        return where, None
    said = f"FASTPPTP_INTEROP={env}" if env else f"{where} (FASTPPTP_INTEROP unset)"
    return where, f"interop harness not found: no pptp-vm in {said}"


INTEROP, INTEROP_MISSING = _interop()
