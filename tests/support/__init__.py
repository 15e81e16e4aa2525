"""What the tests share (pytest puts tests/ on the path: ``from support.packets import ...``).
Test modules never import each other; fixtures live in the folders' conftest.py.

packets      IPv4/IPv6/TCP/UDP, GRE and PPP builders for the data-plane tests
offload      the independent packet builder/checker of the TUN offload twins, and IMPLS
ppp_pair     ``pump``/``codes``: two PPP protocol objects back to back
inproc       FakeTun and packets for the products run in-process
lab          the products' namespace lab (server behind a bridge, clients on veths)
netnsrig     namespace rigs with impairments and a relay, for the end-to-end data plane
interop_rig  drives the QEMU harness (pptp-vm) against pppd / pptp-linux / pptpd
pcap         reads the captures in tests/data/captures
paths        where the data and the interop harness are
"""
