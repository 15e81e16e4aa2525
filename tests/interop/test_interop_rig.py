"""The interop rig's console parser, without a VM: what it must make of the lines the
harness's serial console really prints (markers glued to unfinished pppd log lines included)."""
from __future__ import annotations

from support import interop_rig as R


def test_marker_at_line_start():
    assert R.parse_console_line("PPTP-VM: PPP-UP iface=ppp0 local=198.51.100.2 remote=198.51.100.1") == (
        "marker", "PPP-UP", "iface=ppp0 local=198.51.100.2 remote=198.51.100.1")


def test_marker_glued_to_an_unterminated_pppd_line():
    # Verbatim from a CI run: pppd's log line had not yet got its newline when the harness
    # echoed the marker, so the console delivered both on one line.
    line = ("Script /etc/ppp/ip-down finished (pid 234), status = 0x0"
            "PPTP-VM: PPPD-EXIT rc=5 uptime=17.20")
    kind, name, payload = R.parse_console_line(line)
    assert (kind, name) == ("marker", "PPPD-EXIT")
    assert R.parse_kv(payload) == {"rc": "5", "uptime": "17.20"}


def test_host_line_is_not_taken_for_a_guest_marker():
    line = "PPTP-VM-HOST: SUMMARY role=client rc=0 auth=chap-MS-v2 mppe=128-bit-stateless"
    kind, name, payload = R.parse_console_line(line)
    assert (kind, name) == ("host", "SUMMARY")
    assert R.parse_kv(payload)["mppe"] == "128-bit-stateless"
    # and glued after console output, too
    assert R.parse_console_line("[   18.099914] reboot: Power down" + line)[:2] == ("host", "SUMMARY")


def test_ordinary_console_lines_are_not_markers():
    for line in ("   5.432 MPPE 128-bit stateless compression enabled",
                 "sent [LCP TermReq id=0x2 \"MPPE disabled\"]",
                 "PPTP-VM:no-space-is-not-a-marker",
                 ""):
        assert R.parse_console_line(line) == ("", "", "")
