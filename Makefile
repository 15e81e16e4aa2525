# fastpptp — every target installs what it needs, so both work on a fresh machine.
PY      ?= python3
PIP     ?= $(PY) -m pip
PYTEST  ?= $(PY) -m pytest
# Debian packages the tests and the demo use (only installed when a tool is missing).
APT_PKGS = iproute2 iperf3 tshark
LOCK     = flock /tmp/fastpptp-build.lock

.PHONY: all deps sysdeps build test demo bench clean

all: build

sysdeps:
	@missing=""; \
	command -v ip >/dev/null     || missing="$$missing iproute2"; \
	command -v iperf3 >/dev/null || missing="$$missing iperf3"; \
	command -v tshark >/dev/null || missing="$$missing tshark"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null \
	    || echo "warning: could not install$$missing (tests needing them will say so)"; \
	fi

deps: sysdeps
	$(PIP) install -q --disable-pip-version-check -r requirements-dev.txt

build: deps
	$(LOCK) $(PY) setup.py -q build_ext --inplace

test: build
	$(PYTEST) -q tests

demo: build
	$(PY) -m fastpptp demo

bench: build
	$(PY) -m fastpptp bench dataplane

clean:
	rm -rf build fastpptp/*.so fastpptp/*.c fastpptp/*.html
