"""Boundaries of docs/DESIGN.md: the sans-I/O cores (pptp/, ppp/, crypto/, gre.py, and radius/
but for its asyncio driver) never import I/O or clock modules, and the products never import
the tools (demo, benchmarks, the netns rig) that sit beside them."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "fastpptp"
FORBIDDEN = {"asyncio", "socket", "time", "os", "pyroute2", "select", "selectors", "threading"}
SANS_IO = sorted(
    [p for d in ("pptp", "ppp", "crypto") for p in (ROOT / d).rglob("*.py")]
    + [p for p in (ROOT / "radius").glob("*.py") if p.name != "aio.py"]
    + [p for p in [ROOT / "gre.py"] if p.exists()]
)
PRODUCTS = sorted(p for p in ROOT.rglob("*.py") if "tools" not in p.relative_to(ROOT).parts
                  and p.name not in ("cli.py", "__main__.py"))   # the CLI loads tools lazily


def _imports(path: pathlib.Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:          # relative: resolve against the module's package
                package = path.relative_to(ROOT.parent).parent.parts
                package = package[:len(package) - (node.level - 1)]
                module = ".".join([*package, module] if module else package)
            names.append(module)
    return names


def test_the_radius_core_modules_exist():
    assert {p.name for p in SANS_IO if p.parent.name == "radius"} >= {
        "dictionary.py", "packet.py", "auth.py", "client.py"}


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: str(p.relative_to(ROOT)))
def test_sans_io_modules_do_not_import_io(path):
    for name in _imports(path):
        assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
        assert name != "fastpptp.radius.aio", f"{path.name} imports the RADIUS driver"


@pytest.mark.parametrize("path", PRODUCTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_products_do_not_import_the_tools(path):
    for name in _imports(path):
        assert not name.startswith("fastpptp.tools"), f"{path.relative_to(ROOT)} imports {name}"
