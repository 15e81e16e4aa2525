"""fastpptp — a PPTP (RFC 2637) client and server with a compiled GRE/PPP data plane."""
# The one place the version is written: pyproject.toml reads it from here ([tool.setuptools.dynamic]),
# CHANGELOG.md names it.  Keep this module free of imports so that stays possible without a build.
__version__ = "0.1.0"
