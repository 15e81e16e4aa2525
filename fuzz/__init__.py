"""fastpptp's fuzz targets and their runner (issue 10, "Fuzzing, part of the project").

See fuzz/README.md.  ``python3 -m fuzz.run`` runs them; ``make fuzz`` is the same for every
target.  The package is not installed with fastpptp: it lives next to ``tests/`` and imports
the capture reader from ``tests/support``.
"""
