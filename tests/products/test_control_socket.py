"""The control socket's request handling, SessionMatch, the sessions table and the CLI flags
of session control (no network: a fake server behind StatusServer.handle)."""
import json

import pytest

from fastpptp import cli
from fastpptp.shaping import RateLimit
from fastpptp.status import MAX_REQUEST, SessionMatch, StatusServer, format_status


class FakeControl:
    def __init__(self):
        self.calls = []

    def terminate(self, match, *, soft=False, reason="administratively terminated"):
        self.calls.append(("terminate", match, soft))
        return ["00112233445566aa"] if match.user == "alice" or match.all else []

    def limit_session(self, session_id, rate):
        self.calls.append(("rate", session_id, rate))
        return session_id == "00112233445566aa"


def _server(control=None):
    return StatusServer("/nonexistent/ctl.sock", lambda: {"sessions": []}, control=control)


def _req(srv, doc):
    return srv.handle(json.dumps(doc).encode() + b"\n")


def test_requests_reach_the_server():
    ctl = FakeControl()
    srv = _server(ctl)
    assert srv.handle(b"status\n") == {"sessions": []} == _req(srv, {"cmd": "sessions"})
    assert _req(srv, {"cmd": "terminate", "match": {"user": "alice"}}) == {
        "matched": 1, "sessions": ["00112233445566aa"]}
    assert _req(srv, {"cmd": "terminate", "match": {"ip": "198.51.100.9"}, "soft": True}) == {
        "matched": 0, "sessions": []}
    assert _req(srv, {"cmd": "rate-limit", "session": "00112233445566aa", "rate": "2000/512"}) == {
        "matched": 1, "session": "00112233445566aa", "rate": {"down_kbit": 2000, "up_kbit": 512}}
    assert ctl.calls == [("terminate", SessionMatch(user="alice"), False),
                         ("terminate", SessionMatch(ip="198.51.100.9"), True),
                         ("rate", "00112233445566aa", RateLimit(2000, 512))]


@pytest.mark.parametrize("doc,error", [
    ({"cmd": "reboot"}, "unknown command"),
    ([1, 2], "a request is a JSON object"),
    ({"cmd": "terminate"}, "match"),
    ({"cmd": "terminate", "match": {}}, "exactly one"),
    ({"cmd": "terminate", "match": {"user": "a", "ip": "b"}}, "exactly one"),
    ({"cmd": "terminate", "match": {"uid": 0}}, "match"),
    ({"cmd": "terminate", "match": {"user": ""}}, "non-empty"),
    ({"cmd": "terminate", "match": {"user": 5}}, "non-empty"),
    ({"cmd": "terminate", "match": {"all": False}}, "all must be true"),
    ({"cmd": "terminate", "match": {"all": True}, "soft": "yes"}, "soft"),
    ({"cmd": "rate-limit", "session": "x"}, "needs session and rate"),
    ({"cmd": "rate-limit", "session": "x", "rate": "1/2/3"}, "bad rate"),
])
def test_bad_requests_are_answered_not_raised(doc, error):
    ctl = FakeControl()
    reply = _req(_server(ctl), doc)
    assert error in reply["error"]
    assert ctl.calls == []


def test_garbage_and_no_control():
    assert "unknown request" in _server().handle(b"\xff\xfe hello\n")["error"]
    assert "not available" in _req(_server(), {"cmd": "terminate", "match": {"all": True}})["error"]
    assert MAX_REQUEST >= 1024          # room for long user names


@pytest.mark.parametrize("match,hit", [
    (SessionMatch(user="alice"), True), (SessionMatch(user="bob"), False),
    (SessionMatch(ip="198.51.100.2"), True), (SessionMatch(ip="198.51.100.3"), False),
    (SessionMatch(session="aa"), True), (SessionMatch(session="ab"), False),
    (SessionMatch(peer="192.0.2.2"), True), (SessionMatch(peer="192.0.2.3"), False),
    (SessionMatch(all=True), True),
])
def test_session_match(match, hit):
    assert match.matches(session_id="aa", user="alice", ip="198.51.100.2", peer="192.0.2.2") is hit
    assert SessionMatch.from_json(match.to_json()) == match


def test_session_match_unauthenticated_session():
    # no user yet and no address: only session, peer and all select it
    kw = {"session_id": "aa", "user": None, "ip": None, "peer": "192.0.2.2"}
    assert not SessionMatch(user="alice").matches(**kw) and not SessionMatch(ip="198.51.100.2").matches(**kw)
    assert SessionMatch(peer="192.0.2.2").matches(**kw) and SessionMatch(all=True).matches(**kw)


def test_sessions_table_shows_session_id_and_rate():
    doc = {"sessions": [
        {"session_id": "00112233445566aa", "user": "alice", "peer": "192.0.2.2",
         "rate": {"down_kbit": 2000, "up_kbit": 512}, "drops": {}},
        {"session_id": "00112233445566bb", "user": "bob", "peer": "192.0.2.3",
         "rate": {"down_kbit": 0, "up_kbit": 0}, "drops": {}},
        {"session_id": "00112233445566cc", "user": None, "peer": "192.0.2.4", "rate": None, "drops": {}},
    ]}
    lines = format_status(doc).splitlines()
    assert "RATE" in lines[0] and lines[0].rstrip().endswith("SESSION")
    assert "2000/512" in lines[1] and lines[1].endswith("00112233445566aa")
    assert "unlimited" in lines[2]
    assert lines[3].split()[0] == "-" and lines[3].endswith("00112233445566cc")


def test_server_cli_default_rate_limit():
    args = cli.server_parser().parse_args(["--remoteip", "198.51.100.2-3", "--default-rate-limit", "2000/512"])
    config, _ = cli.build_server_config(args)
    assert config.default_rate_limit == RateLimit(2000, 512)
    assert config.rate_limit == 20             # --rate-limit stays the connection rate limit
    args = cli.server_parser().parse_args(["--remoteip", "198.51.100.2"])
    assert cli.build_server_config(args)[0].default_rate_limit is None


def test_cli_rejects_bad_rates_and_selectors(capsys):
    with pytest.raises(SystemExit) as ei:
        cli.server_parser().parse_args(["--default-rate-limit", "10M"])
    assert ei.value.code == 2 and "bad rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["rate-limit", "aa", "fast"])
    assert "bad rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["terminate"])                      # a selector is required
    with pytest.raises(SystemExit):
        cli.main(["terminate", "--user", "a", "--all"])
    assert cli.main(["terminate", "--user", "", "--control-socket", "/nonexistent"]) == 2


def test_cli_unreachable_socket(capsys, tmp_path):
    sock = str(tmp_path / "none.sock")
    assert cli.main(["sessions", "--control-socket", sock]) == 1
    assert cli.main(["status", "--json", "--control-socket", sock]) == 1
    assert cli.main(["terminate", "--all", "--control-socket", sock]) == 1
    assert "cannot reach" in capsys.readouterr().err
