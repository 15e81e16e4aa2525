"""The sans-I/O cores never import I/O or clock modules (docs/DESIGN.md, boundaries)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "fastpptp"
FORBIDDEN = {"asyncio", "socket", "time", "os", "pyroute2", "select", "selectors", "threading"}
SANS_IO = sorted(
    p for d in ("pptp", "ppp", "crypto") for p in (ROOT / d).rglob("*.py")
) + [p for p in [ROOT / "gre.py"] if p.exists()]


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: str(p.relative_to(ROOT)))
def test_sans_io_modules_do_not_import_io(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
