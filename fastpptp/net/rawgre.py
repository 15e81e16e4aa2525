"""The raw IPPROTO_GRE socket the data-plane engine sends and receives PPTP GRE on.

``recv`` on it returns the whole IPv4 datagram (IP header + GRE, what the engine's decap
validates); ``sendto(frame, (peer, 0))`` takes GRE + PPP and the kernel adds the IP header.
One socket serves every call: the engine demultiplexes on the GRE call ID and checks the
source address (RFC 2637 §4.1).  Needs CAP_NET_RAW.
"""
from __future__ import annotations

import socket

IPPROTO_GRE = 47
DEFAULT_BUF = 8 << 20   # the kernel doubles it: ~10k full-size GRE packets of slack for a starved loop


def open_gre_socket(local: str | None = None, *, rcvbuf: int = DEFAULT_BUF,
                    sndbuf: int = DEFAULT_BUF, peer: str | None = None) -> socket.socket:
    """Open a non-blocking raw GRE socket, with big buffers, optionally bound to ``local``.

    ``peer`` connects it (a client with one server): the kernel then only delivers that
    peer's GRE, and reports ICMP errors about earlier packets (protocol/host unreachable) as
    ENOPROTOOPT/EHOSTUNREACH/ECONNREFUSED on a later call, which the engine counts
    (``icmp_errors``).  An unconnected raw socket never sees those errors (Linux raw_err).
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
    try:
        s.setblocking(False)
        for opt, force, size in ((socket.SO_RCVBUF, 33, rcvbuf), (socket.SO_SNDBUF, 32, sndbuf)):
            try:
                s.setsockopt(socket.SOL_SOCKET, force, size)   # SO_RCVBUFFORCE / SO_SNDBUFFORCE
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, opt, size)     # capped by net.core.*mem_max
        if local:
            s.bind((local, 0))
        if peer:
            s.connect((peer, 0))
    except BaseException:
        s.close()
        raise
    return s
