"""One typed vocabulary (issue 13, section 3), pinned by reading the package's source.

Events are dispatched on their types (``match`` / ``isinstance``), never on class-name
strings; each engine-event number is written once (ppp/constants.py); the configuration the
PPP link and the products receive is typed (no ``getattr``/``hasattr`` second-guessing); the
client's exit status comes from a typed ``FailureKind``, not from reading its reason text
(tests/products/test_products_units.py checks the mapping);
two classes share a name only where listed below, and never an event's.
"""
from __future__ import annotations

import ast
import collections
import pathlib
import re
import tokenize

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "fastpptp"
PY = sorted(ROOT.rglob("*.py"))
CYTHON = sorted([*ROOT.glob("*.pyx"), *ROOT.glob("*.pxd"), *ROOT.glob("*.pxi")])
# "CallFailed", "LinkDown", "AuthFailed": a CamelCase name of two words or more
CLASS_NAME_RE = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+$")


def _rel(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


def _tree(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _class_names() -> dict[str, list[str]]:
    seen: dict[str, list[str]] = collections.defaultdict(list)
    for path in PY:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                seen[node.name].append(f"{_rel(path)}:{node.lineno}")
    return seen


def test_no_dispatch_on_type_names():
    """``type(ev).__name__ == "NetworkUp"`` (or ``in (...)``): a renamed class silently
    stops matching.  ``__name__`` may appear in messages, never in a comparison."""
    offenders = []
    for path in PY:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    if isinstance(side, ast.Attribute) and side.attr in ("__name__", "__qualname__"):
                        offenders.append(f"{_rel(path)}:{node.lineno}")
    assert offenders == []


def _nodes_outside_module_getattr(tree: ast.Module):
    """Every node but those of a module-level ``__getattr__`` (PEP 562: it compares the
    attribute asked for, e.g. ``name == "Engine"``, which is a name lookup, not dispatch)."""
    for top in tree.body:
        if isinstance(top, ast.FunctionDef) and top.name == "__getattr__":
            continue
        yield from ast.walk(top)


def test_no_comparison_with_class_name_strings():
    """``name == "CallFailed"`` / ``case "ControlFailed":``: strings standing for classes
    (the dead branches issue 13 found matched names that no module defined).  The tools are
    left out: they read other processes' log lines, where a class name is text."""
    classes = set(_class_names())
    offenders = []
    for path in PY:
        if "tools" in path.relative_to(ROOT).parts:
            continue
        for node in _nodes_outside_module_getattr(_tree(path)):
            consts: list[ast.expr] = []
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                consts = [e for s in sides for e in ([s, *s.elts] if isinstance(s, (ast.Tuple, ast.Set, ast.List))
                                                     else [s])]
            elif isinstance(node, ast.MatchValue):
                consts = [node.value]
            for c in consts:
                if (isinstance(c, ast.Constant) and isinstance(c.value, str)
                        and (c.value in classes or CLASS_NAME_RE.match(c.value)
                             and c.value.endswith(("Failed", "Up", "Down", "Closed", "Opened")))):
                    offenders.append(f"{_rel(path)}:{node.lineno} {c.value!r}")
    assert offenders == []


# Names two modules both define, each a different thing of a different layer (a new entry needs
# a reason; an event class never belongs here: two "AuthFailed"s was the bug).
SHARED_NAMES = {
    "Admission": "admission.py (server admission control) / radius/accounting.py (backlog answer)",
    "_Session": "private to _gre_ref.py / aio/accounting.py",
    "LinkInfo": "PPTP Set-Link-Info context / netlink link attributes (bpf.py, nexthop.py)",
    "Role": "PPTP PAC/PNS / PPP authenticator/peer",
    "State": "the PPTP control FSM / the RFC 1661 option FSM",
    "Event": "the PPTP control FSM / the RFC 1661 option FSM",
    "Packet": "PPP control packet / RADIUS packet",
    "Code": "PPP control codes / RADIUS codes",
    "_Protocol": "private asyncio protocols of aio/dae.py and radius/aio.py",
}


def test_class_names_are_not_shared_but_where_listed():
    shared = {name: where for name, where in _class_names().items() if len(where) > 1}
    assert set(shared) <= set(SHARED_NAMES), {n: shared[n] for n in set(shared) - set(SHARED_NAMES)}
    assert "AuthFailed" not in SHARED_NAMES


def _code_lines(path: pathlib.Path):
    """(line number, code) without comments, and for Python files without string literals
    (docstrings may name the numbers)."""
    if path.suffix == ".py":
        with path.open("rb") as f:
            for tok in tokenize.tokenize(f.readline):
                if tok.type in (tokenize.NUMBER, tokenize.NAME, tokenize.OP):
                    yield tok.start[0], tok.string
        return
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield lineno, code


def test_engine_event_numbers_are_written_once():
    """The engine events' pseudo-protocol numbers live in ppp/constants.py; everything else
    imports ENGINE_EVENT_BASE / EV_MPPE_RESET_NEEDED / EV_MPPE_LOST_SYNC from there."""
    from fastpptp.ppp import constants
    assert (constants.ENGINE_EVENT_BASE, constants.EV_MPPE_RESET_NEEDED,
            constants.EV_MPPE_LOST_SYNC) == (0x10000, 0x10001, 0x10002)
    events = re.compile(r"\b0x0*1000[12]\b", re.I)
    base = re.compile(r"\b0x0*10000\b", re.I)
    offenders = []
    for path in PY + CYTHON:
        if path == ROOT / "ppp" / "constants.py":
            continue
        for lineno, code in _code_lines(path):
            if events.search(code) or base.search(code):
                offenders.append(f"{_rel(path)}:{lineno} {code.strip()}")
    assert offenders == []


TYPED_CONFIG = [ROOT / "ppp", ROOT / "client.py", ROOT / "server.py", ROOT / "config.py",
                ROOT / "admission.py", ROOT / "aio" / "session.py"]


@pytest.mark.parametrize("where", TYPED_CONFIG, ids=_rel)
def test_no_getattr_second_guessing(where):
    """The link reads a typed LinkConfig (built from pppd options in config.py), the products
    frozen dataclasses: attribute access is checked by mypy, not probed at run time."""
    offenders = []
    for path in sorted(where.rglob("*.py")) if where.is_dir() else [where]:
        for node in ast.walk(_tree(path)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr", "setattr")):
                offenders.append(f"{_rel(path)}:{node.lineno} {node.func.id}")
    assert offenders == []


def _mentions_reason(node: ast.AST) -> bool:
    return any((isinstance(n, ast.Name) and "reason" in n.id)
               or (isinstance(n, ast.Attribute) and "reason" in n.attr) for n in ast.walk(node))


@pytest.mark.parametrize("path", [ROOT / "client.py", ROOT / "aio" / "session.py"], ids=_rel)
def test_outcome_not_read_from_reason_text(path):
    """``"auth" in reason.lower()`` picked the exit status: the reason is for the log, the
    classification is a FailureKind set where the typed event arrives."""
    offenders = []
    for node in ast.walk(_tree(path)):
        if (isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
                and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)
                and any(_mentions_reason(c) for c in node.comparators)):
            offenders.append(f"{_rel(path)}:{node.lineno}")
    assert offenders == []

