"""The RADIUS core is sans-I/O (docs/DESIGN.md, RADIUS): only fastpptp/radius/aio.py opens
sockets or uses asyncio; the clock is always an argument."""
import ast
import pathlib

import pytest

RADIUS = pathlib.Path(__file__).resolve().parents[2] / "fastpptp" / "radius"
FORBIDDEN = {"asyncio", "socket", "time", "os", "pyroute2", "select", "selectors", "threading"}
SANS_IO = sorted(p for p in RADIUS.glob("*.py") if p.name != "aio.py")


def test_the_core_modules_exist():
    assert {p.name for p in SANS_IO} >= {"dictionary.py", "packet.py", "auth.py", "client.py"}


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: p.name)
def test_radius_core_does_not_import_io(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            assert name != "fastpptp.radius.aio", f"{path.name} imports the driver"
