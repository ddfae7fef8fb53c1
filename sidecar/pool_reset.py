"""PyMySQL: no ROLLBACK round trip when a connection goes back to the pool right after a commit.

SQLAlchemy's pool resets every connection it takes back with a `rollback()` ("reset on
return"); a connection closed with its SQLAlchemy transaction still open was already rolled back
and is skipped, but `with engine.begin() as conn:` commits first, so its connection is rolled
back again. psycopg sends nothing for a rollback outside a transaction; PyMySQL always sends
`ROLLBACK`: one more round trip per hook call, on the call's critical path (measured:
2 ROLLBACKs per 20-row transaction of the two example hooks, beside 2 COMMITs and 3 INSERTs).

For `mysql+pymysql` engines the sidecar connects with a PyMySQL connection that remembers
whether the last thing sent on it ended a transaction: a `commit()` or `rollback()` that
succeeded, and no statement, `begin()` or failure since (any statement clears it, raw DBAPI
use included, whether it succeeds or fails). Such a connection goes back to the pool as it is;
every other one is rolled back, as SQLAlchemy does (the server's own "in transaction" flag is
checked as well). A failed reset invalidates the connection (SQLAlchemy closes it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine

SERVER_STATUS_IN_TRANS = 0x0001
"""MySQL protocol: the server status flag of a session with a transaction open."""


def _connection_class() -> type[Any]:
    from pymysql.connections import Connection  # type: ignore[import-untyped]

    class SettledConnection(Connection):  # type: ignore[misc]
        """A PyMySQL connection that knows whether it is outside any transaction it was sent."""

        sidecar_settled = False

        def query(self, sql: Any, unbuffered: bool = False) -> int:
            self.sidecar_settled = False
            return int(super().query(sql, unbuffered))

        def begin(self) -> None:
            self.sidecar_settled = False
            super().begin()

        def commit(self) -> None:
            self.sidecar_settled = False
            super().commit()
            self.sidecar_settled = True

        def rollback(self) -> None:
            self.sidecar_settled = False
            super().rollback()
            self.sidecar_settled = True

    return SettledConnection


def settled(dbapi_connection: Any) -> bool:
    """True when the connection's last command ended its transaction and the server agrees."""
    status = getattr(dbapi_connection, "server_status", None)
    return (getattr(dbapi_connection, "sidecar_settled", False) is True and isinstance(status, int)
            and not status & SERVER_STATUS_IN_TRANS)


def applies(url: str) -> bool:
    """Whether an engine for this URL uses PyMySQL (`mysql+pymysql://`, `mariadb+pymysql://`)."""
    dialect = make_url(url).get_dialect()
    return dialect.name in ("mysql", "mariadb") and dialect.driver == "pymysql"


def install(engine: Engine) -> None:
    """For a PyMySQL engine created with `pool_reset_on_return=None`: connect with
    `SettledConnection` and roll back on return what is not settled."""
    cls = _connection_class()

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        return cls(*cargs, **cparams)

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        if not state.asyncio_safe or state.transaction_was_reset or settled(dbapi_connection):
            return
        dbapi_connection.rollback()


__all__ = ["SERVER_STATUS_IN_TRANS", "applies", "install", "settled"]
