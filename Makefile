# fastpptp — every target sets up what it needs, so `make demo` and `make test` work on a fresh
# Debian 12 machine.
#
# Python: a project virtual environment in .venv/ made with `$(PY) -m venv`; the dependencies
# are read from pyproject.toml (the one list: [build-system] requires, [project] dependencies
# and the optional groups in EXTRAS) and installed there, never into the system Python.  The
# stamp .venv/.fastpptp-stamp records the interpreter and pyproject.toml's hash: pip runs again
# only when one of them changes (a different PY re-creates the venv).
#
# Debian packages: checked on every run (a few `command -v`); missing ones are installed after
# one `apt-get update` when we are root, otherwise the exact `sudo apt-get install` line is
# printed (and the build stops if it cannot work without them).
#
#   make build    venv + compiled modules in place      make lint    ruff + mypy
#   make test     the test suite, then lint (both must pass; TESTS=... runs a subset)
#   make demo     server + client in two namespaces      make bench   data-plane benchmark
#   make clean    compiled files                          make distclean  also .venv/
#   make fuzz     every fuzz target FUZZ_SECONDS (120) each, one after the other (fuzz/README.md)

PY      ?= python3
TESTS   ?= tests
EXTRAS  ?= test lint plot
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.fastpptp-stamp
# one in-place build at a time on this machine (per user: /tmp is sticky)
LOCK    := flock /tmp/fastpptp-build-$(shell id -u).lock
# recipes run with the venv first on PATH, so a `python3` or a console script started by a
# test or the demo is the venv's
RUN     := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)"
LINT_PATHS := fastpptp tests bench fuzz

# Debian packages, by what we look for.  Build: python3-venv (ensurepip), python3-dev
# (Python.h), build-essential (gcc, libc headers).
# `make test` also wants, as command:package, the tools of the tests that run as root
# (namespaces, interop VMs, the RADIUS tests' FreeRADIUS and radclient).  The interop harness
# ../shared/interop/pptp-vm would install qemu and tshark itself; listing them here gives one
# apt-get update and the full line for a non-root user.
TEST_TOOLS := ip:iproute2 iperf3:iperf3 tshark:tshark qemu-system-x86_64:qemu-system-x86 \
              freeradius:freeradius radclient:freeradius-utils perf:linux-perf
ifneq ($(filter test,$(MAKECMDGOALS)),)
WANT_TEST_PKGS := 1
endif

# pyproject.toml -> one requirement a line: build requires, dependencies, the EXTRAS groups
REQUIREMENTS_PY := import sys, tomllib; d = tomllib.load(open("pyproject.toml", "rb")); p = d["project"]; \
  print("\n".join(dict.fromkeys(d["build-system"]["requires"] + p["dependencies"] \
                  + [r for g in sys.argv[1:] for r in p["optional-dependencies"][g]])))

.PHONY: all sysdeps venv build test lint demo bench fuzz clean distclean

all: build

sysdeps:
	@command -v $(PY) >/dev/null 2>&1 || { echo "make: '$(PY)' not found (Debian: apt-get install python3; or PY=/path/to/python3.11+)" >&2; exit 1; }
	@need=""; \
	$(PY) -c 'import ensurepip, venv' 2>/dev/null || need="$$need python3-venv"; \
	$(PY) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || need="$$need python3-dev"; \
	{ command -v gcc >/dev/null && [ -e /usr/include/stdio.h ]; } || need="$$need build-essential"; \
	opt=""; \
	if [ -n "$(WANT_TEST_PKGS)" ]; then \
	  for t in $(TEST_TOOLS); do command -v $${t%%:*} >/dev/null || opt="$$opt $${t#*:}"; done; \
	fi; \
	[ -z "$$need$$opt" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$need$$opt"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$need$$opt >/dev/null \
	    || { echo "make: apt-get install$$need$$opt failed" >&2; [ -z "$$need" ]; }; \
	else \
	  echo "make: missing Debian packages:$$need$$opt; install them first with:" >&2; \
	  echo "  sudo apt-get install$$need$$opt" >&2; \
	  if [ -n "$$need" ]; then exit 1; fi; \
	  echo "make: going on without them (only tests that run as root use them)" >&2; \
	fi

# The venv, and the dependencies from pyproject.toml in it (skipped when the stamp is current).
venv: sysdeps
	@set -e; \
	py_id="$$($(PY) -c 'import sys; print(sys.base_prefix + "@%d.%d.%d" % sys.version_info[:3])')"; \
	want="$$py_id $(EXTRAS) $$(sha256sum pyproject.toml | cut -c1-16)"; \
	have="$$(cat $(STAMP) 2>/dev/null || true)"; \
	if [ "$$have" = "$$want" ] && $(VPY) -c '' 2>/dev/null; then exit 0; fi; \
	if [ "$${have%% *}" != "$${want%% *}" ] || ! $(VPY) -c '' 2>/dev/null; then \
	  echo "creating $(VENV)/ with $(PY) ($$py_id)"; \
	  rm -rf $(VENV); $(PY) -m venv $(VENV); \
	fi; \
	$(VPY) -c '$(REQUIREMENTS_PY)' $(EXTRAS) > $(VENV)/requirements.txt; \
	echo "installing into $(VENV)/:" $$(cat $(VENV)/requirements.txt); \
	$(VPY) -m pip install -q --disable-pip-version-check -r $(VENV)/requirements.txt; \
	echo "$$want" > $(STAMP)

build: venv
	$(LOCK) $(VPY) setup.py -q build_ext --inplace

# ruff and mypy both run even when the first one fails (shell text for the two recipes below)
LINT_SH = echo "$(VPY) -m ruff check $(LINT_PATHS)"; $(RUN) $(VPY) -m ruff check $(LINT_PATHS) || rc=1; \
	echo "$(VPY) -m mypy"; $(RUN) $(VPY) -m mypy || rc=1

# pytest first so the suite always runs, then lint; fails if either failed.
test: build
	@rc=0; \
	echo "$(VPY) -m pytest -q $(TESTS)"; \
	$(RUN) $(VPY) -m pytest -q $(TESTS) || rc=1; \
	$(LINT_SH); \
	[ $$rc = 0 ] || echo "make test: FAILED (pytest or lint, see above)" >&2; \
	exit $$rc

lint: venv
	@rc=0; $(LINT_SH); exit $$rc

demo: build
	@echo "$(VPY) -m fastpptp demo"; $(RUN) $(VPY) -m fastpptp demo

bench: build
	@echo "$(VPY) -m fastpptp bench dataplane"; $(RUN) $(VPY) -m fastpptp bench dataplane

# atheris (the `fuzz` group of pyproject.toml) in the venv; without it fuzz/run.py falls back
# to its own mutator.  FUZZ_TARGETS=... runs a subset.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS ?=
fuzz: EXTRAS += fuzz
fuzz: build
	$(RUN) $(VPY) -m fuzz.run --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build fastpptp/*.so fastpptp/*.c fastpptp/*.html

distclean: clean
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks .mypy_cache .ruff_cache
