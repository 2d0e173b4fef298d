"""Masking secrets in URLs, command lines and messages before they are stored, printed or published.

A storage URL such as ``postgresql://alice:pw@host/db?sslpassword=...`` reaches run records,
the results index, the leaderboard's "Command(s)" column, the terminal and error texts. Every
one of those goes through this module, so what counts as a secret is decided in one place:

- the password in a URL's userinfo (``user:PASSWORD@host``). The userinfo is taken to end at
  the *last* ``@`` of the URL, so a password holding a raw ``@``, ``:``, ``/`` or ``?`` is
  masked whole (over-masking a query that holds an ``@`` is the safe side of that choice);
- the value of a query parameter or ``NAME=VALUE`` / ``--flag VALUE`` / ``--flag=VALUE``
  argument whose name looks secret (password, passwd, pwd, secret, token, api_key,
  access_key, sslpassword, ... case-insensitive);
- any text in which a known secret literally appears (``scrub``), for messages written by
  a database driver that may echo parts of the URL in its own words.

Masking is idempotent and leaves text without a secret unchanged.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterable, Sequence
from urllib.parse import quote, unquote

MASK = "***"

# A name is secret when it contains one of these words (after lower-casing, '-' -> '_').
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "api_key", "apikey", "access_key", "accesskey", "private_key",
                 "credential", "auth", "signature", "session_key")
# Options whose value is a URL that may carry credentials even though the name is harmless.
URL_OPTIONS = ("--storage",)

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# NAME=VALUE inside a query string: the value runs to the next '&NAME=' (or the end), so a raw
# '&' inside a password does not end it early unless it looks like the start of a new parameter.
_QUERY_PARAM = re.compile(r"(?P<name>[^&=]+)=(?P<value>.*?)(?=&[A-Za-z_][\w.\-]*=|\Z)", re.S)
_ASSIGNMENT = re.compile(r"^(?P<name>-{0,2}[A-Za-z_][\w.\-]*)=(?P<value>.*)$", re.S)
_FLAG = re.compile(r"^-{1,2}[A-Za-z][\w\-]*$")
_SQUASHED_WORDS = tuple(sorted({w.replace("_", "") for w in _SECRET_WORDS}))


def _may_hold_secret(text: str) -> bool:
    """False only when ``text`` holds no URL and no secret-looking word (a superset of what
    ``is_secret_name`` flags), so nothing in it can need masking."""
    low = text.lower()
    squashed = low.replace("-", "").replace("_", "")
    return "://" in low or any(word in squashed for word in _SQUASHED_WORDS)


def is_secret_name(name: str) -> bool:
    """True for parameter, option or variable names that hold a secret (``password``, ``--api-key``...)."""
    key = name.strip().lstrip("-").lower().replace("-", "_")
    return any(word in key for word in _SECRET_WORDS)


def _userinfo(url: str) -> tuple[int, tuple[int, int] | None, int]:
    """(where the part after ``scheme://`` starts, the span of the userinfo password or None, where
    the part after the userinfo starts). The userinfo ends at the *last* ``@``; ``sqlite:///path``
    has none."""
    m = _SCHEME.match(url)
    start = m.end() if m else 0
    at = url.rfind("@", start) if m and not url.startswith("/", start) else -1
    colon = url.find(":", start, at) if at >= 0 else -1
    return start, (colon + 1, at) if colon >= 0 else None, max(at, start)


def _query_spans(url: str, pos: int) -> list[tuple[int, int]]:
    """The spans of the secret values in the query string that starts at the first ``?`` from ``pos``."""
    q = url.find("?", pos)
    if q < 0:
        return []
    return [p.span("value") for p in _QUERY_PARAM.finditer(url, q + 1) if is_secret_name(unquote(p.group("name")))]


def mask_url(url: str) -> str:
    """The URL with its userinfo password and secret query values replaced by ``***``.

    >>> mask_url("postgresql://alice:p@ss@db.example/xb?sslpassword=k&sslmode=require")
    'postgresql://alice:***@db.example/xb?sslpassword=***&sslmode=require'
    """
    start, password, _ = _userinfo(url)
    if password is not None:  # first: its own '?' or '&' then start no query
        url = url[:password[0]] + MASK + url[password[1]:]
    for a, b in reversed(_query_spans(url, start)):
        url = url[:a] + MASK + url[b:]
    return url


def _mask_token(token: str) -> str:
    """One argv element: ``NAME=VALUE`` with a secret name, or anything holding a URL."""
    m = _ASSIGNMENT.match(token)
    if m:
        name, value = m.group("name"), m.group("value")
        if is_secret_name(name):
            return f"{name}={MASK}"
        return f"{name}={_mask_token(value)}"
    found = _SCHEME.search(token)
    if found:
        return token[:found.start()] + mask_url(token[found.start():])
    return token


def mask_argv(argv: Sequence[str]) -> list[str]:
    """Argument list with secrets masked: URLs anywhere, ``--storage X``, ``--password X``, ``NAME=X``."""
    out: list[str] = []
    previous = ""
    for token in argv:
        if _FLAG.match(previous) and is_secret_name(previous):
            out.append(MASK)
        elif previous in URL_OPTIONS and not token.startswith("-"):
            out.append(mask_url(token))
        else:
            out.append(_mask_token(token))
        previous = token
    return out


def mask_command(command: str) -> str:
    """A shell command line (as ``shlex.join`` writes one) with its secrets masked.

    Used on commands read back from records written before masking existed, so text that is
    not valid shell is still masked word by word rather than passed through.
    """
    if not command or not _may_hold_secret(command):
        return command  # the common case, decided by one regex search: a leaderboard masks every record
    return _mask_command(command)


@functools.lru_cache(maxsize=4096)
def _mask_command(command: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError:
        return mask_text(command)
    masked = mask_argv(argv)
    if masked == argv:
        return command  # unchanged, quoting and all
    return " ".join(shlex.quote(a) for a in masked)


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"]+")
_ASSIGNMENT_IN_TEXT = re.compile(r"(?P<name>(?<![\w\-])-{0,2}[A-Za-z_][\w.\-]*)=(?P<value>[^\s&]+)")


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text (an error message, a log line) with known secrets and URL secrets masked."""
    text = scrub(text, secrets)
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    return _ASSIGNMENT_IN_TEXT.sub(lambda m: f"{m['name']}={MASK}" if is_secret_name(m["name"]) else m[0], text)


def url_secrets(url: str) -> list[str]:
    """The secret values a URL carries (userinfo password, secret query values), for ``scrub``."""
    _, password, after = _userinfo(url)
    spans = [password] if password is not None else []
    return [url[a:b] for a, b in spans + _query_spans(url, after) if url[a:b] not in ("", MASK)]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (as given, percent-decoded and percent-encoded)
    replaced by ``***``; longest first, so that one secret inside another leaves no tail."""
    variants: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        for form in (secret, unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")):
            if len(form) >= 2:  # a one-character "secret" would mask every such letter
                variants.add(form)
    for form in sorted(variants, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text
