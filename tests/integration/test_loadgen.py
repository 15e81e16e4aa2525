"""``fastpptp bench sessions`` (fastpptp/tools/loadgen.py): the payload and option helpers
on their own, then 200 MS-CHAPv2 + MPPE-128 clients against ``fastpptp server`` in two
namespaces (fastpptp/tools/loadrig.py; 198.18.0.0/15 only, nothing routed from the root
namespace)."""
from __future__ import annotations

import ipaddress
import json

import pytest

from fastpptp.net import netlink
from fastpptp.status import query_status
from fastpptp.tools import loadgen
from fastpptp.tools.loadrig import SOURCE_RANGE, load_lab, pool_spec
from fastpptp.tools.netrig import wait_for


# ---------------------------------------------------------------------------- helpers
def test_packet_round_trip_and_ip_checksum():
    addr = ipaddress.IPv4Address("198.18.0.7").packed
    pkt = loadgen.build_packet(addr, 42, 123456, 10.5, 300)
    assert len(pkt) == 300
    assert pkt[12:16] == pkt[16:20] == addr          # to its own tunnel address
    assert loadgen._ip_checksum(pkt[:20]) == 0       # a valid header sums to 0xFFFF
    assert loadgen.parse_packet(pkt) == (42, 123456, 10.5)
    assert loadgen.parse_packet(pkt[:40]) is None
    assert loadgen.parse_packet(b"\x45" + pkt[1:28] + b"XXXX" + pkt[32:]) is None


@pytest.mark.parametrize("text,pps", [("10", 10.0), ("10pps", 10.0), ("2Mbit/s", 2e6 / (256 * 8)),
                                      ("512kbit", 512e3 / (256 * 8))])
def test_parse_traffic(text, pps):
    assert loadgen.parse_traffic(text).pps == pytest.approx(pps)


def test_parse_traffic_refuses_garbage():
    with pytest.raises(ValueError):
        loadgen.parse_traffic("fast")


def test_sources_and_options():
    assert loadgen.source_addresses("198.19.0.0/16", 3) == ["198.19.0.1", "198.19.0.2", "198.19.0.3"]
    assert loadgen.source_addresses(None, 2) == [None, None]
    with pytest.raises(ValueError):
        loadgen.source_addresses("198.19.0.0/30", 3)
    cfg = loadgen.LoadConfig(server="x", clients=1, auth="chap", mppe="none")
    assert loadgen.ppp_words(cfg) == ["refuse-pap", "refuse-mschap", "refuse-mschap-v2", "nomppe"]
    assert "require-mppe-128" in loadgen.ppp_words(loadgen.LoadConfig(server="x", clients=1))
    assert pool_spec(1022) == "198.18.0.2-198.18.3.255"


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert loadgen._percentile(values, 50) == 50
    assert loadgen._percentile(values, 99) == 99
    assert loadgen._percentile([], 50) is None


# ---------------------------------------------------------------------------- the load
N = 200


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_200_sessions_come_up_and_pass_traffic_both_ways(tmp_path):
    plot = tmp_path / "load.png"
    with load_lab(str(tmp_path), N) as lab:
        lab.start_server()
        status, s, err = lab.bench("--traffic", "10", "--duration", "4", "--setup-timeout", "90",
                                   "--plot", str(plot), timeout=300)
        print(err[-3000:])
        assert s is not None, f"no JSON summary (exit {status}): {err[-2000:]}"
        print(loadgen.format_summary(s))
        # every session ended: nothing left listed on the server
        wait_for(lambda: not query_status(lab.path("ctl.sock"))["sessions"], 20, 0.2, "server idle")
        # --add-addresses took its 200 addresses off again
        left = [a for a in netlink.list_addresses(lab.client_if, family=4, netns=lab.client_ns)
                if ipaddress.IPv4Address(a.local) in ipaddress.IPv4Network(SOURCE_RANGE)]
        assert left == []
    assert json.loads(json.dumps(s)) == s
    assert status == 0, err[-2000:]
    assert (s["up"], s["failed"], s["failures"], s["dropped_after_up"]) == (N, 0, {}, {})
    st = s["setup"]
    assert 0 < st["latency_p50_s"] <= st["latency_p99_s"] <= st["latency_max_s"]
    assert st["rate_per_s"] > 0 and st["time_to_all_up_s"] > 0
    # each client from its own source address; the server listed all of them at once
    sessions = s["sessions"]
    assert len({x["source"] for x in sessions}) == N
    assert len({x["local_ip"] for x in sessions}) == N
    assert all(ipaddress.IPv4Address(x["local_ip"]) in ipaddress.IPv4Network("198.18.0.0/22") for x in sessions)
    assert all(x["mppe"] and x["mppe"].startswith("128") for x in sessions)
    assert s["server"]["sessions_listed_peak"] == N
    assert s["server"]["distinct_peers_at_peak"] == N
    # traffic both ways in every session (each packet went up and came back down)
    assert all(x["tx_bytes"] > 0 and x["rx_bytes"] > 0 and x["rx_packets"] > 0 for x in sessions)
    d = s["data"]
    assert d["tx_packets"] == sum(x["tx_packets"] for x in sessions)
    assert d["rx_packets"] == sum(x["rx_packets"] for x in sessions)
    assert 0 < d["rx_packets"] <= d["tx_packets"]
    assert d["lost_packets"] == d["tx_packets"] - d["rx_packets"]
    assert d["sessions_without_traffic"] == 0
    assert d["aggregate_rx_mbit"] > 0 and d["per_session_rx_mbit"]["min"] > 0
    assert d["rtt_p50_ms"] <= d["rtt_p99_ms"]
    # the timeline only grows, and ends with everyone up
    ups = [p["up"] for p in s["timeline"]]
    assert ups == sorted(ups) and ups[-1] == N
    assert "up" in err and "in flight" in err            # progress lines
    assert s["server"]["rss_kb_peak"] >= s["server"]["rss_kb_before"] > 0
    # matplotlib is in the `plot` group, which `make test` installs: the chart is always drawn
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_failures_are_counted_by_reason(tmp_path):
    """The server requires MS-CHAPv2: clients that only do PAP all fail, with one reason."""
    with load_lab(str(tmp_path), 3) as lab:
        lab.start_server()
        status, s, err = lab.bench("--auth", "pap", "--duration", "0", "--setup-timeout", "30", "--quiet",
                                   timeout=120)
    assert s is not None, err[-2000:]
    assert status == 1
    assert (s["up"], s["failed"]) == (0, 3)
    assert len(s["failures"]) == 1 and list(s["failures"].values()) == [3]
    assert next(iter(s["failures"])).startswith("negotiation_failed: ")
    assert all(x["detail"] and not x["up"] for x in s["sessions"])
    assert s["setup"]["latency_p50_s"] is None and s["server"]["rss_kb_per_session"] is None
    assert "warning" not in err.lower()          # failures go to the summary, not the log


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_a_server_closing_at_accept_is_a_failure_with_its_reason(request):
    """A server that accepts the control connection and closes it at once (what an admission
    refusal looks like to a client) fails each client with the phase and reason, never as
    "internal error"."""
    import asyncio
    import socket
    import threading

    from fastpptp.tools.loadgen import LoadConfig, LoadGenerator
    from support.loopns import private_netns

    netns, name = private_netns(request, prefix="fpt-lgrefuse")
    with netns.entered(name):
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
    port = lsock.getsockname()[1]
    stop = threading.Event()

    def refuse() -> None:
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
            except OSError:
                continue
            c.close()

    t = threading.Thread(target=refuse, daemon=True)
    t.start()
    try:
        cfg = LoadConfig(server="127.0.0.1", clients=3, port=port, duration=0.0, setup_timeout=15.0,
                         connect_timeout=5.0, progress=False)
        with netns.entered(name):
            summary = asyncio.run(LoadGenerator(cfg).run())
    finally:
        stop.set()
        t.join(2)
        lsock.close()
    assert (summary["up"], summary["failed"]) == (0, 3), summary["failures"]
    reasons = list(summary["failures"])
    assert not any("internal error" in r for r in reasons), reasons
    assert all("control connection" in r or "connect:" in r for r in reasons), reasons
