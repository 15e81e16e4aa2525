"""fastpptp — a PPTP (RFC 2637) client and server with a compiled GRE/PPP data plane."""
__version__ = "0.1.0"
