"""Seeds from the real captures in tests/data/captures (read with tests/support/pcap.py)."""
from __future__ import annotations

import functools
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support import pcap  # noqa: E402  (tests/ is not a package on the default path)

CLIENT_VM = "192.0.2.20"     # the captures' PNS (tests/data/captures/INDEX.md)


@functools.lru_cache(maxsize=None)
def frames() -> dict[str, list]:
    return {p.name: pcap.read_pcap(p) for p in pcap.capture_files()}


def control_streams() -> list[tuple[bytes, bytes]]:
    """Per capture: (bytes the PNS sent, bytes the PAC sent) on TCP 1723."""
    out = []
    for fs in frames().values():
        to_pac, to_pns = bytearray(), bytearray()
        for key, segs in pcap.tcp_streams(fs).items():
            for _, payload in segs:
                (to_pac if key[0] == CLIENT_VM else to_pns).extend(payload)
        out.append((bytes(to_pac), bytes(to_pns)))
    return out


def ppp_frames() -> list[tuple[str, list[tuple[bool, int, bytes]]]]:
    """Per capture: its PPP frames in order as (sent by the PNS, protocol, information)."""
    out = []
    for name, fs in frames().items():
        seq = [(f.ip_src == CLIENT_VM, proto, info) for f, proto, info in pcap.ppp_frames(fs)]
        out.append((name, seq))
    return out


def gre_payloads() -> list[bytes]:
    """The GRE headers+payloads of every capture, as sent."""
    return [g for fs in frames().values() for f in fs if (g := f.gre_bytes)]
