"""The repository runs its own tests from a clone (issue 13, sections 2 and 4).

The pppd / pptp-linux / pptpd captures are in ``tests/data/captures`` (so the replay tests
parametrize over a non-empty list anywhere); the interop harness is found through
``$FASTPPTP_INTEROP`` or ``../shared/interop``, never a machine's absolute path; a test module
never imports another, nor redefines a fixture its folder's ``conftest.py`` provides.
"""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

from support import paths
from support.pcap import capture_files, read_pcap

REPO = pathlib.Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


def test_captures_are_in_the_repository():
    files = capture_files()
    assert {p.name for p in files} >= {"pap.pcap", "chap-md5.pcap", "mschapv2-mppe128.pcap",
                                       "mschapv2-nompe.pcap", "server-shutdown.pcap"}
    index = (paths.CAPTURES / "INDEX.md").read_text()
    for p in files:
        assert p.resolve().is_relative_to(REPO / "tests" / "data"), p
        assert p.name in index, f"{p.name} not described in INDEX.md"
        assert len(read_pcap(p)) > 10, p


def test_interop_harness_from_the_environment_or_beside_the_repository(monkeypatch, tmp_path):
    (tmp_path / "pptp-vm").write_text("")
    monkeypatch.setenv("FASTPPTP_INTEROP", str(tmp_path))
    assert paths._interop() == (tmp_path, None)
    monkeypatch.setenv("FASTPPTP_INTEROP", str(tmp_path / "absent"))
    where, missing = paths._interop()
    assert where == tmp_path / "absent" and "FASTPPTP_INTEROP" in missing
    monkeypatch.delenv("FASTPPTP_INTEROP")
    where, _ = paths._interop()
    assert where == REPO.parent / "shared" / "interop"


# a home directory or this machine's work tree written into code or tests
MACHINE_PATH = re.compile(r"""["'](/work/|/home/|/root/(?!\.pyenv))""")


def test_no_machine_specific_paths():
    offenders = []
    for top in ("fastpptp", "tests", "bench", "fuzz"):
        for path in sorted((REPO / top).rglob("*")):
            if path.suffix not in (".py", ".pyx", ".pxd", ".sh", ".toml") or path == pathlib.Path(__file__):
                continue
            for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if MACHINE_PATH.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{lineno}")
    assert offenders == []


TEST_MODULES = sorted(TESTS.rglob("test_*.py"))


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: str(p.relative_to(TESTS)))
def test_test_modules_do_not_import_each_other(path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            assert not name.split(".")[-1].startswith("test_"), f"imports {name}"
            assert not name.startswith("tests."), f"imports {name}"


def _fixtures(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and any(
                "fixture" in ast.unparse(d) for d in node.decorator_list):
            out.add(node.name)
    return out


# deliberate overrides of a conftest fixture, with the reason
OVERRIDES = {
    ("engine/test_mppe.py", "impl"): "the MPPE twins instead of the offload twins",
    ("radius/test_radius_server.py", "radius_ns"): "the namespace entered for the whole module",
}


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: str(p.relative_to(TESTS)))
def test_conftest_fixtures_are_not_copied(path):
    """A fixture shared by a folder lives in its conftest.py, once (the both-engines fixture
    was copied into five files)."""
    provided: set[str] = set()
    for folder in [TESTS, *[p for p in path.parent.parents if p.is_relative_to(TESTS)], path.parent]:
        if (folder / "conftest.py").exists():
            provided |= _fixtures(folder / "conftest.py")
    rel = str(path.relative_to(TESTS))
    copies = {f for f in _fixtures(path) & provided if (rel, f) not in OVERRIDES}
    assert copies == set()
