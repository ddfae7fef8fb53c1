"""PyMySQL: no ROLLBACK round trip when a connection goes back to the pool right after a commit.

SQLAlchemy's pool resets every connection it takes back with a `rollback()` ("reset on
return"); a connection closed with its SQLAlchemy transaction still open was already rolled back
and is skipped, but `with engine.begin() as conn:` commits first, so its connection is rolled
back again. psycopg sends nothing for a rollback outside a transaction; PyMySQL always sends
`ROLLBACK`: one more round trip per hook call, on the call's critical path (measured:
2 ROLLBACKs per 20-row transaction of the two example hooks, beside 2 COMMITs and 3 INSERTs).

For `mysql+pymysql` engines the sidecar connects with a PyMySQL connection that remembers
whether the last command sent on it was a `commit()` or `rollback()` that succeeded: every
command PyMySQL sends (`Connection._execute_command`: statements, raw DBAPI use included, BEGIN,
SET NAMES, a ping, ...) clears that, whether it succeeds or fails. Such a connection, still open
and with the server's "in transaction" flag clear in that reply, goes back to the pool as it is;
every other one is rolled back, as SQLAlchemy does, and a failed rollback invalidates it
(SQLAlchemy closes it). A PyMySQL without `_execute_command` keeps SQLAlchemy's reset.

What this gives up: the ROLLBACK also found a session the server had dropped after the commit
(KILL, a restart, `wait_timeout`) before the connection went back; such a connection now stays in
the pool until its next use. Within a second of going idle that use fails, and SQLAlchemy then
replaces the pool's connections (the call is retried by its policy); later, the ping a connection
idle for over a second gets before a hook has it (`databases.ping_when_idle`) replaces it first.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine

SERVER_STATUS_IN_TRANS = 0x0001
"""MySQL protocol: the server status flag of a session with a transaction open."""


@functools.cache
def _connection_class() -> type[Any] | None:
    """The tracking connection class, or None when this PyMySQL does not send every command
    through `Connection._execute_command` (the engine then keeps SQLAlchemy's reset)."""
    from pymysql.connections import Connection  # type: ignore[import-untyped]

    if not callable(getattr(Connection, "_execute_command", None)):
        return None

    class SettledConnection(Connection):  # type: ignore[misc]
        """A PyMySQL connection that knows whether it is outside any transaction it was sent."""

        sidecar_settled = False

        def _execute_command(self, command: Any, sql: Any) -> Any:
            # Every command PyMySQL sends comes through here: queries (raw DBAPI use included),
            # BEGIN, SET NAMES, SET AUTOCOMMIT, SHOW WARNINGS, COM_INIT_DB, COM_PING, ...
            self.sidecar_settled = False
            return super()._execute_command(command, sql)

        def commit(self) -> None:
            super().commit()
            self.sidecar_settled = True

        def rollback(self) -> None:
            super().rollback()
            self.sidecar_settled = True

    return SettledConnection


def settled(dbapi_connection: Any) -> bool:
    """True when the connection is open, its last command was a commit or rollback that
    succeeded, and the server's status (from that command's reply) has no transaction open."""
    status = getattr(dbapi_connection, "server_status", None)
    return (getattr(dbapi_connection, "sidecar_settled", False) is True
            and getattr(dbapi_connection, "open", False) is True
            and isinstance(status, int) and not status & SERVER_STATUS_IN_TRANS)


def applies(url: str) -> bool:
    """Whether an engine for this URL uses PyMySQL (`mysql+pymysql://`, `mariadb+pymysql://`)."""
    dialect = make_url(url).get_dialect()
    return dialect.name in ("mysql", "mariadb") and dialect.driver == "pymysql" and _connection_class() is not None


def install(engine: Engine) -> None:
    """For a PyMySQL engine created with `pool_reset_on_return=None`: connect with
    `SettledConnection` and roll back on return what is not settled."""
    cls = _connection_class()
    if cls is None:
        raise RuntimeError("pool_reset.install: this PyMySQL cannot be tracked (check applies() first)")
    rollback = engine.dialect.do_rollback

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        return cls(*cargs, **cparams)

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        if not state.asyncio_safe or state.transaction_was_reset or settled(dbapi_connection):
            return
        rollback(dbapi_connection)


__all__ = ["SERVER_STATUS_IN_TRANS", "applies", "install", "settled"]
