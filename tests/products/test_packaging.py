"""Packaging: the three commands and the compiled engine reach an installation.

The cheap test checks what pyproject.toml declares against the code.  The slow one does what a
user does: an sdist made from the tracked sources alone (a copy, so no in-place build or
build/ directory leaks in), a wheel built from that sdist (what ``pip install fastpptp-*.tar.gz``
and ``python -m build`` do; ``pip install .`` builds the same tree in place), installed into a
throwaway virtual environment; there the commands answer ``--help`` and the compiled modules
import from the installation.  It compiles the Cython modules once (about a minute), so it is
marked slow; it is the only such test, and nothing else catches a wheel without its engine.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib

import pytest

from support import paths

COMMANDS = {"fastpptp": "fastpptp.cli:main", "fastpptp-server": "fastpptp.cli:server_main",
            "fastpptp-client": "fastpptp.cli:client_main"}
COMPILED = ("_gre", "_mppe", "_offload", "_sink", "_ioloop")


def _pyproject() -> dict:
    with open(paths.REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_console_scripts_are_declared_and_answer_help(capsys):
    import importlib
    assert _pyproject()["project"]["scripts"] == COMMANDS
    for prog, target in COMMANDS.items():
        module, func = target.split(":")
        main = getattr(importlib.import_module(module), func)
        with pytest.raises(SystemExit) as exit_:
            main(["--help"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: {prog} ")


def _run(argv: list[str], cwd: str, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv}: {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _tracked_sources() -> list[str]:
    """What an sdist is made from: the package's tracked files and the build files."""
    out = subprocess.run(["git", "ls-files", "fastpptp", "setup.py", "pyproject.toml", "README.md"],
                         cwd=paths.REPO, capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.skip("not a git checkout: cannot tell the sources from build output")
    return out.stdout.split()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_from_sdist_installs_commands_and_compiled_engine(tmp_path):
    src = tmp_path / "src"
    for rel in _tracked_sources():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(paths.REPO / rel, src / rel)
    py = sys.executable
    # the build requirements are the running interpreter's (make installs them in .venv/):
    # no network, no build isolation
    _run([py, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], cwd=str(src))
    (sdist,) = (tmp_path / "dist").glob("fastpptp-*.tar.gz")
    _run([py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "whl"),
          str(sdist)], cwd=str(tmp_path), timeout=800)
    (wheel,) = (tmp_path / "whl").glob("fastpptp-*.whl")

    venv = tmp_path / "venv"
    _run([py, "-m", "venv", str(venv)], cwd=str(tmp_path))
    vpy = str(venv / "bin" / "python")
    # the dependencies (numpy, pyroute2, pycryptodome) from the running interpreter's
    # site-packages, after the venv's own: the fastpptp imported is the wheel's
    site_dir = _run([vpy, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=str(tmp_path)).strip()
    deps = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    with open(os.path.join(site_dir, "fastpptp-test-deps.pth"), "w") as f:
        f.write("".join(f"{d}\n" for d in deps))
    _run([vpy, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=str(tmp_path))

    for prog in COMMANDS:
        out = _run([str(venv / "bin" / prog), "--help"], cwd=str(tmp_path))
        assert out.startswith(f"usage: {prog} ")
    probe = ("import importlib, json, fastpptp\n"
             "from fastpptp.dataplane import load_engine\n"
             f"mods = {{m: importlib.import_module('fastpptp.' + m).__file__ for m in {COMPILED!r}}}\n"
             "print(json.dumps({'package': fastpptp.__file__, 'compiled': mods,\n"
             "                  'engine': load_engine('compiled').__module__}))\n")
    got = json.loads(_run([vpy, "-c", probe], cwd=str(tmp_path)))
    assert got["package"].startswith(site_dir)
    for name, path in got["compiled"].items():
        assert path.startswith(site_dir) and path.endswith(".so"), (name, path)
    assert got["engine"] == "fastpptp._gre"
    # the .pxd contracts travel with the wheel (cimport-able); generated C does not
    installed = os.listdir(os.path.join(site_dir, "fastpptp"))
    assert {f"{m}.pxd" for m in COMPILED} <= set(installed)
    assert not [f for f in installed if f.endswith(".c")]
