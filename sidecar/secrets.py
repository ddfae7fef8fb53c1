"""No secret in any output: a registry of secret strings and the scrubbing every output path uses.

Secrets are registered where they enter the process — secret-named environment variables
(`*_PASSWORD`, `*_TOKEN`, `*_SECRET`, … at least 8 characters), database URLs (their password, also a
`?password=` query parameter), Kafka settings named like a secret, the content of `file:`
secret files, Kafka Connect URL user info, connector properties named like a secret — and
every output path (structlog lines in every format, stdlib logging, CLI messages, uncaught
exceptions, dead-letter errors and tracebacks) replaces each registered secret, in its plain,
URL-encoded and base64 forms, with `***`. This is the last line of defence; the first is not
putting secrets into messages (frame locals are never rendered, URLs are masked).
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any, Final

MASK: Final = "***"
# Shorter values (e.g. "a", "1") would mask unrelated text everywhere and protect nothing.
MIN_SECRET_LENGTH: Final = 4
SECRET_NAME: Final = re.compile(r"password|passwd|secret|token|sasl\.oauthbearer\.client|ssl\.key|credentials", re.I)


class Redactor:
    """The set of secret strings (in all their forms) and a scrubber for text and nested values."""

    def __init__(self) -> None:
        self._needles: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        self._guard = threading.Lock()

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
                 urllib.parse.quote(secret), base64.b64encode(secret.encode()).decode(),
                 base64.urlsafe_b64encode(secret.encode()).decode()}
        forms |= {f.rstrip("=") for f in forms if len(f.rstrip("=")) >= MIN_SECRET_LENGTH}
        with self._guard:
            needles = set(self._needles) | forms
            self._needles = tuple(sorted(needles, key=len, reverse=True))
            self._pattern = re.compile("|".join(re.escape(n) for n in self._needles))

    def add_all(self, secrets: Iterable[str | None]) -> None:
        for s in secrets:
            self.add(s)

    def clear(self) -> None:
        with self._guard:
            self._needles = ()
            self._pattern = None

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def scrub_value(self, value: Any, _depth: int = 0) -> Any:
        """Strings anywhere in dicts/lists/tuples scrubbed; other values unchanged (bytes decoded views too)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if _depth > 50:
            return value
        if isinstance(value, dict):
            return {self.scrub_value(k, _depth + 1): self.scrub_value(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_value(v, _depth + 1) for v in value)
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {value}")
        return value


REDACTOR: Final = Redactor()


def register(secret: str | None) -> None:
    REDACTOR.add(secret)


ENV_SECRET_NAME: Final = re.compile(r"password|passwd|secret|token|api_?key|private_?key|credential|(^|_)PW$", re.I)
MIN_ENV_SECRET_LENGTH: Final = 8  # env flags named like secrets ("..._PASSWORD_ENABLED=true") stay readable


def register_environment(environ: dict[str, str]) -> None:
    """Values of environment variables named like secrets (DB_PASSWORD, API_TOKEN, …): hooks read
    those, and whatever a hook's exception carries must not reach a log or a dead letter."""
    for name, value in environ.items():
        if ENV_SECRET_NAME.search(name) and len(value) >= MIN_ENV_SECRET_LENGTH:
            REDACTOR.add(value)
            REDACTOR.add_all(url_secrets(value))


def register_all(values: Iterable[str | None]) -> None:
    REDACTOR.add_all(values)


def scrub(text: str) -> str:
    return REDACTOR.scrub(text)


def split_userinfo(url: str) -> tuple[str, str | None, str | None, str]:
    """`scheme://user:pass@host…` → ("scheme://", user, password, "host…").

    The user info ends at the LAST `@` before the query, so a password holding an unescaped
    `@` (or `/`) is taken whole instead of leaking its tail as the "host"; also when it holds a
    `?` before that `@` (`u:pa?ss@word@host`), if the text after the last `@` reads as a host.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", None, None, url
    query_at = -1 if _at_inside_userinfo(rest) else rest.find("?")
    at = rest.rfind("@", 0, query_at if query_at != -1 else len(rest))
    if at == -1:
        # No `@` before the first `?`: a password may hold the `?` (`user:pa?ss@host`). Read it
        # as SQLAlchemy does (user without `:` or `/`, password up to the first `@`), so the
        # password it would send is the one masked.
        m = _SQLALCHEMY_USERINFO.match(rest)
        if m is None:
            return scheme + "://", None, None, rest
        return scheme + "://", m.group(1), m.group(2), rest[m.end():]
    user, colon, password = rest[:at].partition(":")
    return scheme + "://", user, (password if colon else None), rest[at + 1:]


_SQLALCHEMY_USERINFO: Final = re.compile(r"([^:/?#@]*):([^@]*)@")
"""User info as `sqlalchemy.engine.make_url` reads it (`[^:/]*` then `:[^@]*` then `@`), with a
password: a URL whose query holds an `@` but has no user info has no `:` before its first `/`."""


def _at_inside_userinfo(rest: str) -> bool:
    """Two `@` with no `/` between them, the last followed by a host (`user:pa@ss?x@host:3306/db`):
    the user info holds an unescaped `@` (and maybe a `?`) and ends at the last `@`."""
    first, last = rest.find("@"), rest.rfind("@")
    if first == last:
        return False
    between = rest[first + 1 : last]  # a query (`host?k=v@x`, `host:5432?a@b`) here: not user info
    if "/" in between or _HOST_PORT_QUERY.match(between) or _HOST_AFTER.match(rest, last + 1) is None:
        return False
    # `?k=` between the two: a query holding an `@` (`host?x=a@b.com`) — unless what follows the
    # last `@` is a host with a port or a path (`u:pa@ss?w=rd@127.0.0.1:3306/db`), which no query
    # value before the database's path would hold: then the password holds `?k=`.
    return not _QUERY_PAIR.search(between) or _HOST_PORT_OR_PATH.match(rest, last + 1) is not None


_QUERY_PAIR: Final = re.compile(r"\?[^=]*=")
_HOST_PORT_QUERY: Final = re.compile(r"[\w.-]+:\d+\?")

_HOST_AFTER: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[\w.-]+)(?::\d+)?(?:[/?]|$)")
_HOST_PORT_OR_PATH: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[\w.-]+)(?::\d+(?:[/?]|$)|/)")


def url_secrets(url: str) -> list[str]:
    """Every secret in a URL: the password (raw and decoded) and secret-named query parameters."""
    out: list[str] = []
    _, _, password, hostpart = split_userinfo(url)
    if password:
        out += [password, urllib.parse.unquote(password)]
    query = hostpart.partition("?")[2]
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if SECRET_NAME.search(name) and value:
            out.append(value)
    for m in re.finditer(r"(?:^|[?&;\s])([A-Za-z_.]*(?:password|secret|token)[A-Za-z_.]*)=([^&;\s]+)", query, re.I):
        out += [m.group(2), urllib.parse.unquote_plus(m.group(2))]
    return out


def mask_url(url: str) -> str:
    """A URL safe to print: user info password and secret query parameters replaced by ***."""
    scheme, user, password, hostpart = split_userinfo(url)
    if user is None and password is None:
        shown = url
    else:
        shown = f"{scheme}{user or ''}{':' + MASK if password is not None else ''}@{hostpart}"
    head, q, query = shown.partition("?")
    if q:
        parts = []
        for item in query.split("&"):
            name, eq, _value = item.partition("=")
            parts.append(f"{name}={MASK}" if eq and SECRET_NAME.search(name) else item)
        shown = head + "?" + "&".join(parts)
    return scrub(shown)


__all__ = ["MASK", "REDACTOR", "SECRET_NAME", "Redactor", "mask_url", "register", "register_all",
           "register_environment", "scrub", "split_userinfo", "url_secrets"]
