"""End-to-end tunnel benchmark runner: iperf3 through veth, fastpptp on each GRE port (raw,
packet, xdp; with and without MPPE-128) and OpenVPN 2.6 (no crypto) between two network
namespaces, in one run.

    sudo .venv/bin/python bench/bench_tunnel.py [--json] [--time 5] [--rounds 3] [--plot FILE.png]
        [--only veth,fastpptp-raw,fastpptp-xdp,openvpn] [--gre-io raw,packet,xdp]

The same as `fastpptp bench tunnel`; see fastpptp/tools/benchtunnel.py for what is measured and
docs/BENCHMARKS.md for recorded results.  Needs root; installs iperf3/openvpn with apt-get
when missing.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastpptp.tools.benchtunnel import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
