"""The built-in engine: seeded random mutations of the seed corpus, no coverage feedback.

Used where atheris is not installed (the CI smoke run, ``--engine builtin``): it exercises
every target from its real seeds with libFuzzer's basic mutations (bit flips, byte sets,
interesting values, inserts, deletes, duplicated ranges, splices of two inputs), so a target
that breaks or an invariant that fails near the seeds is found without atheris.  Runs are
deterministic for a given ``seed``.
"""
from __future__ import annotations

import random

_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)
_INTERESTING16 = (0, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF)


def mutate(data: bytes, corpus: list[bytes], rng: random.Random, max_len: int = 4096) -> bytes:
    buf = bytearray(data)
    for _ in range(1 + rng.randrange(4)):
        op = rng.randrange(8)
        n = len(buf)
        if op == 0 and n:
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 2 and n:
            buf[rng.randrange(n)] = rng.choice(_INTERESTING)
        elif op == 3 and n >= 2:
            i = rng.randrange(n - 1)
            buf[i:i + 2] = rng.choice(_INTERESTING16).to_bytes(2, rng.choice(("big", "little")))
        elif op == 4:
            i = rng.randrange(n + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(1 + rng.randrange(8)))
        elif op == 5 and n:
            i = rng.randrange(n)
            del buf[i:i + 1 + rng.randrange(min(16, n - i))]
        elif op == 6 and n:
            i = rng.randrange(n)
            part = buf[i:i + 1 + rng.randrange(32)]
            j = rng.randrange(n + 1)
            buf[j:j] = part
        elif op == 7 and corpus:
            other = rng.choice(corpus)
            i = rng.randrange(len(buf) + 1)
            j = rng.randrange(len(other) + 1)
            buf = buf[:i] + other[j:]
    return bytes(buf[:max_len])
