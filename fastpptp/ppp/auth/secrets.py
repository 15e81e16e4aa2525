"""pppd's secrets files (chap-secrets, pap-secrets) and the authentication backends.

File format, as pppd's ``getword()`` / ``scan_authfile()`` read it (pppd(8) "AUTHENTICATION")::

    # client      server     secret              [acceptable local/remote addresses...]
    fastpptp      pptpd      "fastpptp-secret"   198.51.100.7
    "DOM\\\\bob"   *          's3 cret'           -
    *             pptpd      guestpw             *

* Words are separated by white space; a ``#`` that starts a word starts a comment that
  runs to the end of the line; a newline ends an entry (a backslash before the newline
  continues it).
* A word may contain double- or single-quoted parts (``"a b"``, ``'a b'``, even
  ``ab"c d"e``); white space and ``#`` inside quotes are literal and the quotes are removed.
* A backslash escapes the next character, in or out of quotes, with the C escapes
  ``\\a \\b \\f \\n \\r \\t \\v``, ``\\s`` (space), octal ``\\ooo`` and hex ``\\xHH``.
* ``*`` in the client or server column matches anything.  When several entries match,
  pppd picks the most specific one: an exact client beats an exact server, which beats a
  wildcard; among equals, the first in the file wins.
* After the secret, each word is an address the client may use: an IPv4 address, a
  subnet ``a.b.c.d/n``, ``*`` (any), ``!addr`` (not this one), or a single ``-`` meaning
  "no address".  A plain IPv4 address is the client's static address (pppd gives it to
  the peer when the address is not otherwise set); ``--`` ends the address list (pppd then
  reads per-user options, which we keep but ignore).
* RATE (accel-ppp's fifth column, ours too): ``alice pptpd pw 198.51.100.7 2000/512``.  The
  last of *exactly two* words after the secret (before any ``--``) is the session's rate
  limit when it starts with a digit and is not an IPv4 address or subnet; it must then be a
  valid rate (:func:`fastpptp.shaping.parse_rate`: ``1000`` or ``down/up`` kbit/s, ``0`` =
  unlimited) or the file is refused.  A rate therefore always follows one address word (``*``
  for "any", ``-`` for none), as in accel-ppp; pppd files with one address, or with two or
  more addresses, read as before (pppd would take ``1000`` for the address 0.0.3.232, which
  nobody writes).

Nothing here logs or puts a secret in a ``repr``.  This module reads files with the
builtin ``open`` only (no os / time imports: ppp/ stays sans-I/O).
"""
from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import pathlib
from typing import Callable, Iterable

from fastpptp.shaping import RateLimit, parse_rate

WILDCARD = "*"


class SecretsError(ValueError):
    """Base of errors about secrets files."""


class SecretsSyntaxError(SecretsError):
    """A secrets file could not be parsed: carries the file name, line and reason."""

    def __init__(self, filename: str, line: int, reason: str) -> None:
        super().__init__(f"{filename}:{line}: {reason}")
        self.filename = filename
        self.line = line
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Secret:
    """One entry's secret and the addresses it allows."""

    secret: str = dataclasses.field(repr=False)
    addresses: tuple[str, ...] = ()
    options: tuple[str, ...] = ()       # words after "--" (pppd per-user options)
    client: str = WILDCARD
    server: str = WILDCARD
    line: int = 0
    rate: RateLimit | None = None       # the RATE column (accel-ppp's fifth), if given

    def __repr__(self) -> str:
        rate = "" if self.rate is None else f", rate={str(self.rate)!r}"
        return (f"Secret(client={self.client!r}, server={self.server!r}, "
                f"addresses={self.addresses!r}{rate}, secret=<hidden>)")

    @property
    def no_address(self) -> bool:
        """The entry said ``-``: the peer may not use any address."""
        return self.addresses == ("-",)

    @property
    def static_address(self) -> str | None:
        """The first plain IPv4 address in the address column, if any."""
        for word in self.addresses:
            try:
                return str(ipaddress.IPv4Address(word))
            except ValueError:
                continue
        return None

    def allows_address(self, addr: str) -> bool:
        """pppd's rule: no words = any; ``-`` = none; ``*`` = any; ``!x`` excludes."""
        if not self.addresses:
            return True
        if self.no_address:
            return False
        try:
            a = ipaddress.IPv4Address(addr)
        except ValueError:
            return False
        allowed = False
        for word in self.addresses:
            neg = word.startswith("!")
            w = word[1:] if neg else word
            if w == WILDCARD:
                hit = True
            else:
                try:
                    hit = a in ipaddress.IPv4Network(w, strict=False)
                except ValueError:
                    continue
            if hit:
                if neg:
                    return False
                allowed = True
        return allowed


# --------------------------------------------------------------------------- tokenizer

_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
              "v": "\v", "s": " "}


def _tokenize(text: str, filename: str) -> list[tuple[int, list[str]]]:
    """Split ``text`` into entries: (line number of the first word, words)."""
    entries: list[tuple[int, list[str]]] = []
    words: list[str] = []
    entry_line = 0
    i, n, line = 0, len(text), 1

    def end_entry() -> None:
        nonlocal words
        if words:
            entries.append((entry_line, words))
        words = []

    while i < n:
        c = text[i]
        if c == "\n":
            end_entry()
            line += 1
            i += 1
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        if c == "#":                          # a comment starts where a word would
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c == "\\" and i + 1 < n and text[i + 1] == "\n":
            i += 2                             # line continuation between words
            line += 1
            continue
        # ---- one word
        word_line = line
        buf: list[str] = []
        quote: str | None = None
        while i < n:
            c = text[i]
            if c == "\\":
                if i + 1 >= n:
                    raise SecretsSyntaxError(filename, line, "backslash at end of file")
                nxt = text[i + 1]
                if nxt == "\n":                # continuation inside a word
                    i += 2
                    line += 1
                    continue
                if nxt in "01234567":
                    j = i + 1
                    while j < n and j < i + 4 and text[j] in "01234567":
                        j += 1
                    buf.append(chr(int(text[i + 1:j], 8) & 0xFF))
                    i = j
                    continue
                if nxt == "x":
                    j = i + 2
                    while j < n and j < i + 4 and text[j] in "0123456789abcdefABCDEF":
                        j += 1
                    if j == i + 2:
                        raise SecretsSyntaxError(filename, line, "\\x without hex digits")
                    buf.append(chr(int(text[i + 2:j], 16)))
                    i = j
                    continue
                buf.append(_C_ESCAPES.get(nxt, nxt))
                i += 2
                continue
            if quote is not None:
                if c == quote:
                    quote = None
                else:
                    if c == "\n":
                        line += 1
                    buf.append(c)
                i += 1
                continue
            if c in "\"'":
                quote = c
                i += 1
                continue
            if c in " \t\r\f\v\n" or c == "#":
                break
            buf.append(c)
            i += 1
        if quote is not None:
            raise SecretsSyntaxError(filename, word_line, f"unterminated {quote} quote")
        if not words:
            entry_line = word_line
        words.append("".join(buf))
    end_entry()
    return entries


def parse_secrets(text: str, filename: str = "<secrets>") -> list[Secret]:
    """Parse the text of a chap-secrets / pap-secrets file into its entries, in order."""
    out: list[Secret] = []
    for line, words in _tokenize(text, filename):
        if len(words) < 2:
            raise SecretsSyntaxError(filename, line,
                                     "an entry needs at least client and server columns")
        client, server = words[0], words[1]
        secret = words[2] if len(words) > 2 else ""
        rest = words[3:]
        options: list[str] = []
        if "--" in rest:
            k = rest.index("--")
            rest, options = rest[:k], rest[k + 1:]
        rate: RateLimit | None = None
        if len(rest) == 2 and _is_rate_column(rest[1]):
            try:
                rate = parse_rate(rest[1])
            except ValueError as exc:
                raise SecretsSyntaxError(filename, line, str(exc)) from None
            rest = rest[:1]
        if "-" in rest and rest != ["-"]:
            raise SecretsSyntaxError(filename, line, "'-' (no address) must stand alone")
        for word in rest:
            w = word[1:] if word.startswith("!") else word
            if w in (WILDCARD, "-") or w.startswith("+") or w.startswith("@"):
                continue    # '+' = pppd's "our own" notation / '@' netgroup: kept, not checked
            try:
                ipaddress.IPv4Network(w, strict=False)
            except ValueError:
                # pppd also accepts host names here; we cannot resolve (sans-I/O): keep it.
                if not w or any(ch.isspace() for ch in w):
                    raise SecretsSyntaxError(filename, line, f"bad address {word!r}") from None
        out.append(Secret(secret, tuple(rest), tuple(options), client, server, line, rate))
    return out


def _is_rate_column(word: str) -> bool:
    """The word after exactly one address word is RATE when it starts with a digit and is
    not an IPv4 address or subnet (see the module docstring)."""
    if not word[:1].isdigit():
        return False
    try:
        ipaddress.IPv4Network(word, strict=False)     # "1000" and "10/8" are not (no dots)
    except ValueError:
        return True
    return False


def lookup_entries(entries: Iterable[Secret], client: str, server: str) -> Secret | None:
    """pppd's precedence: exact client (2) + exact server (1); ties go to the first line."""
    best: Secret | None = None
    best_score = -1
    for e in entries:
        if e.client != WILDCARD and e.client != client:
            continue
        if e.server != WILDCARD and e.server != server:
            continue
        score = (2 if e.client != WILDCARD else 0) + (1 if e.server != WILDCARD else 0)
        if score > best_score:
            best, best_score = e, score
            if score == 3:
                break
    return best


class SecretsFile:
    """A parsed secrets file (or text), with :meth:`lookup`.

    ``SecretsFile.load(path)`` reads a file; :meth:`reload_if_changed` re-reads it when its
    size or mtime changed (call it from the I/O side, e.g. on SIGHUP or per call).
    """

    def __init__(self, entries: list[Secret], filename: str = "<secrets>") -> None:
        self.entries = list(entries)
        self.filename = filename
        self._stamp: tuple[int, int] | None = None

    @classmethod
    def from_text(cls, text: str, filename: str = "<secrets>") -> "SecretsFile":
        return cls(parse_secrets(text, filename), filename)

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "SecretsFile":
        p = pathlib.Path(path)
        try:
            text = p.read_text(encoding="utf-8", errors="surrogateescape")
            st = p.stat()
        except OSError as exc:
            raise SecretsError(f"{p}: cannot read secrets file: {exc.strerror}") from None
        sf = cls(parse_secrets(text, str(p)), str(p))
        sf._stamp = (st.st_mtime_ns, st.st_size)
        return sf

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed; keep the old entries if the new text is bad."""
        p = pathlib.Path(self.filename)
        try:
            st = p.stat()
        except OSError:
            return False
        if self._stamp == (st.st_mtime_ns, st.st_size):
            return False
        fresh = SecretsFile.load(p)
        self.entries, self._stamp = fresh.entries, fresh._stamp
        return True

    def lookup(self, client: str, server: str) -> Secret | None:
        return lookup_entries(self.entries, client, server)

    def __repr__(self) -> str:
        return f"SecretsFile({self.filename!r}, {len(self.entries)} entries)"


# --------------------------------------------------------------------------- backends

MAX_SECRET_FILE = 4096


def resolve_secret(secret: str) -> str | None:
    """pppd: a secret ``@FILE`` is read from the first line of FILE (None if unreadable)."""
    if not secret.startswith("@") or len(secret) == 1:
        return secret
    try:
        with open(secret[1:], encoding="utf-8", errors="surrogateescape") as f:
            first = f.readline(MAX_SECRET_FILE)
    except OSError:
        return None
    return first.rstrip("\r\n")


def _same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))


class SecretsFileBackend:
    """:class:`~fastpptp.ppp.auth.base.AuthBackend` over pppd-style secrets files.

    ``chap`` serves CHAP/MS-CHAP (and PAP when ``pap`` is not given, as a convenience);
    ``pap`` is pap-secrets.  ``server_name`` is our pppd ``name``, used when the caller
    passes ``"*"``.
    """

    def __init__(self, chap: SecretsFile | None = None, pap: SecretsFile | None = None,
                 server_name: str = WILDCARD) -> None:
        self.chap = chap
        self.pap = pap if pap is not None else chap
        self.server_name = server_name

    def __repr__(self) -> str:
        return f"SecretsFileBackend(chap={self.chap!r}, pap={self.pap!r})"

    def _server(self, server_name: str) -> str:
        return self.server_name if server_name in ("", WILDCARD) else server_name

    def lookup(self, user: str, server_name: str = WILDCARD) -> Secret | None:
        if self.chap is None:
            return None
        return self.chap.lookup(user, self._server(server_name))

    def get_secret(self, user: str, server_name: str = WILDCARD) -> str | None:
        entry = self.lookup(user, server_name)
        return None if entry is None else resolve_secret(entry.secret)

    def check_password(self, user: str, password: str, server_name: str = WILDCARD) -> bool:
        if self.pap is None:
            return False
        entry = self.pap.lookup(user, self._server(server_name))
        secret = None if entry is None else resolve_secret(entry.secret)
        return secret is not None and _same_secret(secret, password)

    def static_address(self, user: str, server_name: str = WILDCARD) -> str | None:
        """The per-user static IPv4 address from the addresses column, if there is one."""
        entry = self.lookup(user, server_name)
        if entry is None and self.pap is not None:
            entry = self.pap.lookup(user, self._server(server_name))
        return None if entry is None else entry.static_address

    def rate_limit(self, user: str, server_name: str = WILDCARD) -> RateLimit | None:
        """The RATE column of the user's chap-secrets entry (None: none given)."""
        entry = self.lookup(user, server_name)
        return None if entry is None else entry.rate


@dataclasses.dataclass(frozen=True)
class UserSecret:
    """What an embedding ``get_secret`` callback may answer instead of a plain string: the
    secret and the user's rate limit (a :class:`~fastpptp.shaping.RateLimit` or its text,
    ``"2000/512"``; None = the server's default)."""

    secret: str = dataclasses.field(repr=False)
    rate: RateLimit | str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rate, str):      # checked now: a bad rate fails in the callback's caller
            object.__setattr__(self, "rate", parse_rate(self.rate))

    @property
    def rate_limit(self) -> RateLimit | None:
        return self.rate if isinstance(self.rate, RateLimit) else None


#: A get_secret callback's answer: the secret, the secret with a rate, or None (unknown user).
SecretAnswer = str | UserSecret | None


class CallableBackend:
    """Backend made of callables: routers plug their user database in here.

    ``get_secret(user, server_name) -> str | UserSecret | None`` (a :class:`UserSecret` also
    carries the user's rate limit); ``check_password(user, password, server_name) -> bool``
    defaults to comparing with ``get_secret`` in constant time; ``static_address(user) -> str |
    None`` is optional; ``rate_limit(user) -> RateLimit | str | None`` is optional too and,
    when given, is what :meth:`rate_limit` answers (otherwise the rate of the user's latest
    ``get_secret`` answer, the one that authenticated them).
    """

    def __init__(self, get_secret: Callable[[str, str], SecretAnswer],
                 check_password: Callable[[str, str, str], bool] | None = None,
                 static_address: Callable[[str], str | None] | None = None,
                 rate_limit: Callable[[str], RateLimit | str | None] | None = None) -> None:
        self._get_secret = get_secret
        self._check_password = check_password
        self._static_address = static_address
        self._rate_limit = rate_limit
        # user -> the rate of their latest get_secret answer (only users whose answer had one)
        self._answered_rates: dict[str, RateLimit] = {}

    def _answer(self, user: str, server_name: str) -> str | None:
        answer = self._get_secret(user, server_name)
        if isinstance(answer, UserSecret):
            rate = answer.rate_limit
            if rate is not None:
                self._answered_rates[user] = rate
            else:
                self._answered_rates.pop(user, None)
            return answer.secret
        self._answered_rates.pop(user, None)
        return answer

    def get_secret(self, user: str, server_name: str = WILDCARD) -> str | None:
        return self._answer(user, server_name)

    def check_password(self, user: str, password: str, server_name: str = WILDCARD) -> bool:
        if self._check_password is not None:
            return bool(self._check_password(user, password, server_name))
        secret = self._answer(user, server_name)
        return secret is not None and _same_secret(secret, password)

    def static_address(self, user: str, server_name: str = WILDCARD) -> str | None:
        return self._static_address(user) if self._static_address is not None else None

    def rate_limit(self, user: str, server_name: str = WILDCARD) -> RateLimit | None:
        if self._rate_limit is not None:
            rate = self._rate_limit(user)
            return parse_rate(rate) if isinstance(rate, str) else rate
        return self._answered_rates.get(user)


class StaticBackend(CallableBackend):
    """A fixed ``{user: secret}`` table (tests, single-user clients)."""

    def __init__(self, users: dict[str, str]) -> None:
        table = dict(users)
        super().__init__(lambda user, server: table.get(user))

    def __repr__(self) -> str:
        return "StaticBackend(<hidden>)"
