"""Pair tests of the PPP protocol objects (LCP, IPCP, IPV6CP, CCP, ...): two instances wired
back to back, with no clock of their own (``now`` is an argument, as in the cores)."""
from __future__ import annotations

from fastpptp.ppp.packet import Packet


def codes(frames):
    return [Packet.decode(info).code for _, info in frames]


def pump(a, b, now: float = 0.0, max_rounds: int = 20) -> int:
    """Shuttle frames between two protocol objects until both are quiet; return the rounds."""
    for rounds in range(1, max_rounds + 1):
        fa, fb = a.frames_to_send(), b.frames_to_send()
        if not fa and not fb:
            return rounds - 1
        for _, info in fa:
            b.receive(info, now)
        for _, info in fb:
            a.receive(info, now)
    raise AssertionError("no convergence")
