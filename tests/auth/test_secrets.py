"""pppd chap-secrets / pap-secrets parsing, lookup precedence and the backends."""
import pytest

from fastpptp.ppp.auth.secrets import (
    CallableBackend, Secret, SecretsError, SecretsFile, SecretsFileBackend, SecretsSyntaxError,
    StaticBackend, lookup_entries, parse_secrets,
)

SAMPLE = r'''
# Secrets for authentication using CHAP
# client        server  secret                  IP addresses
fastpptp        pptpd   fastpptp-secret         *
"alice smith"   pptpd   's3 cret'               198.51.100.7
bob             *       "pa\"ss#word"           -     # trailing comment
*               pptpd   guestpw
carol pptpd x\x41\101\s\ty 198.51.100.0/28 !198.51.100.3 -- ms-dns 192.0.2.53
dave  pptpd ab"c d"e'f g'h
'''


def test_parse_columns_quotes_escapes_comments():
    entries = parse_secrets(SAMPLE, "chap-secrets")
    assert [(e.client, e.server, e.secret) for e in entries] == [
        ("fastpptp", "pptpd", "fastpptp-secret"),
        ("alice smith", "pptpd", "s3 cret"),
        ("bob", "*", 'pa"ss#word'),
        ("*", "pptpd", "guestpw"),
        ("carol", "pptpd", "xAA \ty"),
        ("dave", "pptpd", "abc def gh"),
    ]
    assert entries[0].addresses == ("*",)
    assert entries[1].static_address == "198.51.100.7"
    assert entries[2].no_address and entries[2].static_address is None
    assert entries[3].addresses == ()
    assert entries[4].addresses == ("198.51.100.0/28", "!198.51.100.3")
    assert entries[4].options == ("ms-dns", "192.0.2.53")
    assert [e.line for e in entries] == [4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize("text,word", [
    ("a b c\\\n d\n", ["a", "b", "c", "d"]),      # backslash-newline continues the entry
    ("a b 'x\ny'\n", ["a", "b", "x\ny"]),           # newline inside quotes is literal
    ("a b c#d\n", ["a", "b", "c"]),                  # unquoted '#' ends the word: comment
    ("a b 'c#d'\n", ["a", "b", "c#d"]),
    ("a b \\#x\n", ["a", "b", "#x"]),
    ("a b \"\"\n", ["a", "b", ""]),                  # empty quoted secret
    ("a b \\n\\r\\\\\n", ["a", "b", "\n\r\\"]),
])
def test_tokenizer_table(text, word):
    (e,) = parse_secrets(text)
    assert [e.client, e.server, e.secret] + list(e.addresses) == word


@pytest.mark.parametrize("text,line,reason", [
    ("a b 'unterminated\n", 1, "unterminated ' quote"),
    ("\n\nonlyclient\n", 3, "at least client and server"),
    ("a b c \\", 1, "backslash at end of file"),
    ("a b c 1.2.3.4 - \n", 1, "must stand alone"),
    ("a b c \\xZZ\n", 1, "\\x without hex digits"),
])
def test_syntax_errors_carry_file_line_reason(text, line, reason):
    with pytest.raises(SecretsSyntaxError) as ei:
        parse_secrets(text, "/etc/ppp/chap-secrets")
    assert ei.value.filename == "/etc/ppp/chap-secrets"
    assert ei.value.line == line
    assert reason in ei.value.reason
    assert str(ei.value).startswith(f"/etc/ppp/chap-secrets:{line}: ")


@pytest.mark.parametrize("client,server,expect", [
    ("u", "srv", "exact-both"),          # 3 beats everything
    ("u", "other", "client-only"),       # exact client (2) beats exact server (1)
    ("x", "srv", "server-only"),         # exact server (1) beats wildcard (0)
    ("x", "other", "wild-first"),        # ties: first line wins
])
def test_lookup_precedence(client, server, expect):
    entries = parse_secrets(
        "* * wild-first\n* * wild-second\n* srv server-only\nu * client-only\n"
        "u srv exact-both\n")
    assert lookup_entries(entries, client, server).secret == expect


def test_lookup_no_match():
    assert SecretsFile.from_text("alice pptpd pw\n").lookup("bob", "pptpd") is None


def test_secret_never_in_repr():
    e = parse_secrets('alice pptpd "hunter2"\n')[0]
    assert "hunter2" not in repr(e)
    backend = SecretsFileBackend(SecretsFile([e]))
    assert "hunter2" not in repr(backend)
    assert "hunter2" not in repr(StaticBackend({"a": "hunter2"}))


@pytest.mark.parametrize("addresses,addr,allowed", [
    ((), "198.51.100.9", True),
    (("-",), "198.51.100.9", False),
    (("*",), "198.51.100.9", True),
    (("198.51.100.0/28",), "198.51.100.9", True),
    (("198.51.100.0/28",), "198.51.100.99", False),
    (("198.51.100.0/28", "!198.51.100.9"), "198.51.100.9", False),
    (("!198.51.100.9", "*"), "198.51.100.10", True),
])
def test_allows_address(addresses, addr, allowed):
    assert Secret("s", addresses).allows_address(addr) is allowed


def test_file_backend(tmp_path):
    chap = tmp_path / "chap-secrets"
    chap.write_text(SAMPLE)
    b = SecretsFileBackend(SecretsFile.load(chap), server_name="pptpd")
    assert b.get_secret("fastpptp", "pptpd") == "fastpptp-secret"
    assert b.get_secret("fastpptp") == "fastpptp-secret"        # "*" -> our name
    assert b.get_secret("nobody", "elsewhere") is None
    assert b.get_secret("nobody", "pptpd") == "guestpw"
    assert b.check_password("alice smith", "s3 cret")
    assert not b.check_password("alice smith", "s3 creT")
    assert b.static_address("alice smith") == "198.51.100.7"
    assert b.static_address("fastpptp") is None


def test_file_reload(tmp_path):
    chap = tmp_path / "chap-secrets"
    chap.write_text("a pptpd one\n")
    sf = SecretsFile.load(chap)
    assert not sf.reload_if_changed()
    chap.write_text("a pptpd two-two\n")
    assert sf.reload_if_changed()
    assert sf.lookup("a", "pptpd").secret == "two-two"


def test_missing_file_is_typed_error(tmp_path):
    with pytest.raises(SecretsError):
        SecretsFile.load(tmp_path / "absent")


def test_callable_backend():
    calls = []

    def get(user, server):
        calls.append((user, server))
        return {"r1": "pw"}.get(user)

    b = CallableBackend(get, static_address=lambda u: "203.0.113.5" if u == "r1" else None)
    assert b.get_secret("r1", "gw") == "pw"
    assert b.check_password("r1", "pw") and not b.check_password("r1", "px")
    assert not b.check_password("ghost", "")
    assert b.static_address("r1") == "203.0.113.5"
    assert calls[0] == ("r1", "gw")
    custom = CallableBackend(lambda u, s: None, check_password=lambda u, p, s: p == "ok")
    assert custom.check_password("any", "ok")


def test_at_file_secret(tmp_path):
    secret_file = tmp_path / "alice.secret"
    secret_file.write_text("from-file pw\nignored second line\n")
    sf = SecretsFile.from_text(f"alice pptpd @{secret_file}\nbob pptpd @{tmp_path}/absent\n")
    b = SecretsFileBackend(sf, server_name="pptpd")
    assert b.get_secret("alice") == "from-file pw"
    assert b.check_password("alice", "from-file pw")
    assert b.get_secret("bob") is None and not b.check_password("bob", "")


# --------------------------------------------------------------------------- RATE column

RATES = r'''
# client  server  secret  address          RATE (accel-ppp's fifth column)
alice     pptpd   pw      198.51.100.7     2000/512
bob       pptpd   pw      *                1000
carol     pptpd   pw      -                0
dave      pptpd   pw      198.51.100.8
erin      pptpd   pw      198.51.100.9     198.51.100.10
frank     pptpd   pw      198.51.100.0/28  !198.51.100.3  -- ms-dns 192.0.2.53
gina      pptpd   pw      198.51.100.11    300/100        -- ms-dns 192.0.2.53
hank      pptpd   pw      198.51.100.12    198.51.100.13  100
ivan      pptpd   pw      "*"              '50'
'''


def test_rate_column():
    from fastpptp.shaping import RateLimit
    e = {x.client: x for x in parse_secrets(RATES, "chap-secrets")}
    assert (e["alice"].addresses, e["alice"].rate) == (("198.51.100.7",), RateLimit(2000, 512))
    assert e["alice"].static_address == "198.51.100.7"
    assert (e["bob"].addresses, e["bob"].rate) == (("*",), RateLimit(1000, 1000))
    assert (e["carol"].no_address, e["carol"].rate) == (True, RateLimit(0, 0))
    # pppd files read as before: one address, two addresses, an address list with options
    assert (e["dave"].addresses, e["dave"].rate) == (("198.51.100.8",), None)
    assert (e["erin"].addresses, e["erin"].rate) == (("198.51.100.9", "198.51.100.10"), None)
    assert (e["frank"].addresses, e["frank"].rate) == (("198.51.100.0/28", "!198.51.100.3"), None)
    assert (e["gina"].rate, e["gina"].options) == (RateLimit(300, 100), ("ms-dns", "192.0.2.53"))
    # a rate is the fifth column only: after two addresses "100" is a (pppd) address word
    assert (e["hank"].addresses, e["hank"].rate) == (("198.51.100.12", "198.51.100.13", "100"), None)
    assert e["ivan"].rate == RateLimit(50, 50)           # quoting is the tokenizer's business
    assert "2000/512" in repr(e["alice"]) and "pw" not in repr(e["alice"])


@pytest.mark.parametrize("rate", ["1000/", "1/2/3", "10M", "1.5", "100000001", "5x"])
def test_bad_rate_column_is_refused_with_line(rate):
    text = f"# header\nalice pptpd pw 198.51.100.7 {rate}\n"
    with pytest.raises(SecretsSyntaxError) as ei:
        parse_secrets(text, "chap-secrets")
    assert ei.value.line == 2 and "bad rate" in ei.value.reason


def test_rate_column_word_that_is_an_address_stays_an_address():
    # a second IPv4 word (dotted) is an address, never a rate; a host name stays one too
    (e,) = parse_secrets("alice pptpd pw 198.51.100.7 10.0.0.0/8\n")
    assert (e.addresses, e.rate) == (("198.51.100.7", "10.0.0.0/8"), None)
    (e,) = parse_secrets("alice pptpd pw 198.51.100.7 host.example\n")
    assert (e.addresses, e.rate) == (("198.51.100.7", "host.example"), None)


def test_file_backend_rate_limit(tmp_path):
    from fastpptp.shaping import RateLimit, RateLimitBackend
    p = tmp_path / "chap-secrets"
    p.write_text(RATES)
    b = SecretsFileBackend(SecretsFile.load(p), server_name="pptpd")
    assert isinstance(b, RateLimitBackend)
    assert b.rate_limit("alice") == RateLimit(2000, 512)
    assert b.rate_limit("dave") is None and b.rate_limit("nobody") is None
    assert b.get_secret("alice") == "pw" and b.static_address("alice") == "198.51.100.7"


def test_callable_backend_rates():
    from fastpptp.ppp.auth.secrets import UserSecret
    from fastpptp.shaping import RateLimit, RateLimitBackend
    table = {"alice": UserSecret("s1", rate="2000/512"), "bob": "s2",
             "carol": UserSecret("s3", rate=RateLimit(7, 8)), "dave": UserSecret("s4")}
    b = CallableBackend(lambda u, s: table.get(u))
    assert isinstance(b, RateLimitBackend)
    # plain strings keep working; the rate is the one of the answer that authenticated the user
    assert [b.get_secret(u) for u in ("alice", "bob", "carol", "dave", "eve")] == ["s1", "s2", "s3", "s4", None]
    assert b.rate_limit("alice") == RateLimit(2000, 512)
    assert b.rate_limit("carol") == RateLimit(7, 8)
    assert b.rate_limit("bob") is None and b.rate_limit("dave") is None and b.rate_limit("eve") is None
    assert b.check_password("alice", "s1") and not b.check_password("alice", "s2")
    table["alice"] = "s1"                               # the next answer has no rate: none kept
    b.get_secret("alice")
    assert b.rate_limit("alice") is None
    assert "s1" not in repr(UserSecret("s1", rate="10"))
    with pytest.raises(ValueError, match="bad rate"):
        UserSecret("x", rate="fast")
    # an explicit rate_limit callable answers instead (RateLimit or its text)
    c = CallableBackend(lambda u, s: "pw", rate_limit=lambda u: {"a": "300/100", "b": RateLimit(1, 2)}.get(u))
    assert (c.rate_limit("a"), c.rate_limit("b"), c.rate_limit("z")) == (RateLimit(300, 100), RateLimit(1, 2), None)
    assert StaticBackend({"a": "x"}).rate_limit("a") is None
