"""SQLAlchemy engines for hooks: created once, connected lazily, pooled, disposed on exit."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Engine

from sidecar import pool_reset, secrets
from sidecar.errors import ConfigError


def normalize_url(url: str) -> str:
    """Percent-escape a password holding an unescaped `@`, `/`, `?` or `#`.

    SQLAlchemy splits `user:p@ss@host` at the first `@`: it would connect to host `ss@host`
    and print the password's tail as a host name in every error.
    """
    scheme, user, password, rest = secrets.split_userinfo(url)
    if password is None or not any(c in password for c in "@/?#"):
        return url
    escaped = urllib.parse.quote(urllib.parse.unquote(password), safe="")
    return f"{scheme}{user}:{escaped}@{rest}"


class Auxiliary(dict[str, Engine]):
    """`param.auxiliary_db`: a name the config does not have is a KeyError that says which it has."""

    def __missing__(self, name: str) -> Engine:
        have = ", ".join(sorted(self)) or "none"
        raise KeyError(f"no auxiliary database {name!r} in the config (databases.auxiliary has: {have})")


@dataclass
class Databases:
    source: Engine | None = None
    destination: Engine | None = None
    auxiliary: Mapping[str, Engine] = field(default_factory=Auxiliary)

    def __post_init__(self) -> None:
        if not isinstance(self.auxiliary, Auxiliary):
            self.auxiliary = Auxiliary(self.auxiliary)

    def all(self) -> dict[str, Engine]:
        named: dict[str, Engine] = {}
        if self.source is not None:
            named["source"] = self.source
        if self.destination is not None:
            named["destination"] = self.destination
        for name, engine in self.auxiliary.items():
            named[f"auxiliary.{name}"] = engine
        return named

    def dispose(self) -> None:
        for engine in self.all().values():
            engine.dispose()


PING_IDLE_S = 1.0
"""A pooled connection idle longer than this is pinged before a hook gets it (a dead one is replaced)."""


def ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before handing it out only when it sat idle (`PING_IDLE_S`),
    not on every checkout (`pool_pre_ping`): a hook called back to back — a transaction or batch
    hook on a busy pipeline — saves a round trip per call. A server that went away while its
    connections were idle is noticed here; one that drops a connection in use fails that call,
    which is retried (SQLAlchemy replaces the pool's connections), as with pool_pre_ping's own window."""

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise exc.DisconnectionError("pooled connection did not answer a ping; replaced")


def _engine(key: str, url: str | None, pool_size: int = 2) -> Engine | None:
    if not url:
        return None
    try:
        # create_engine does not connect: the first hook that uses it does. The pool holds one
        # connection per hook call that can run at once, so concurrent calls never wait for one.
        # PyMySQL: no ROLLBACK on return after a commit (pool_reset.py): one round trip less per call.
        url = normalize_url(url)
        settled_reset = pool_reset.applies(url)
        engine = create_engine(url, pool_size=pool_size, max_overflow=4,
                               **({"pool_reset_on_return": None} if settled_reset else {}))
    except Exception as exc:  # the URL itself is wrong (bad scheme, missing driver)
        raise ConfigError(
            f"databases.{key}: cannot use this database URL ({type(exc).__name__}: {secrets.scrub(str(exc))}); "
            "expected e.g. postgresql+psycopg://user:pass@host/db or mysql+pymysql://user:pass@host/db"
        ) from None
    if settled_reset:
        pool_reset.install(engine)
    ping_when_idle(engine)
    return engine


def build_databases(source: str | None, destination: str | None, auxiliary: Mapping[str, str],
                    pool_size: int = 2) -> Databases:
    """`pool_size`: connections kept per database (the sidecar passes the hooks' total concurrency)."""
    aux = Auxiliary()
    for name, url in auxiliary.items():
        engine = _engine(f"auxiliary.{name}", url, pool_size)
        if engine is not None:
            aux[name] = engine
    return Databases(
        source=_engine("source", source, pool_size), destination=_engine("destination", destination, pool_size),
        auxiliary=aux,
    )
