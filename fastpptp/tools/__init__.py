"""What ships beside the products but is not part of them: the demo, the static tunnel (tests,
benchmarks), the benchmark runners, the namespace rig they share and the process helper.

The products (server.py, client.py and what they import) never import from here; cli.py
does, lazily, for ``fastpptp demo`` and ``fastpptp bench``.
"""
