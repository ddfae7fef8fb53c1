"""The sidecar's engines on the stack's MariaDB (PyMySQL) and PostgreSQL (psycopg): a hook's
`engine.begin()` costs no ROLLBACK round trip after its COMMIT, and a connection that may hold
an open transaction (raw DBAPI use, an error) still goes back to the pool rolled back — no row
lock survives it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pymysql.connections
import pytest
from sqlalchemy import text

from sidecar.databases import build_databases
from tests.integration.stack import AUX_URL, PG_URL


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQL text of every query PyMySQL sends."""
    queries: list[str] = []
    original = pymysql.connections.Connection._execute_command

    def spy(self: Any, command: int, sql: Any) -> Any:
        if command == 3:  # COM_QUERY
            queries.append(bytes(sql).decode() if not isinstance(sql, str) else sql)
        return original(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", spy)
    yield queries


def _table(engine: Any, dialect: str) -> str:
    name = f"it_reset_{uuid.uuid4().hex[:8]}"
    with engine.begin() as c:
        c.execute(text(f"CREATE TABLE {name} (id INT PRIMARY KEY, v INT NOT NULL)"
                       + (" ENGINE=InnoDB" if dialect == "mariadb" else "")))
        c.execute(text(f"INSERT INTO {name} VALUES (1, 0)"))
    return name


def test_mariadb_no_rollback_after_commit_and_no_lock_left_behind(sent: list[str]) -> None:
    dbs = build_databases(None, None, {"aux": AUX_URL}, pool_size=1)
    engine = dbs.auxiliary["aux"]
    other = build_databases(None, None, {"aux": AUX_URL}).auxiliary["aux"]
    try:
        table = _table(engine, "mariadb")
        sent.clear()
        for _ in range(3):  # what a hook call does
            with engine.begin() as c:
                c.execute(text(f"UPDATE {table} SET v = v + 1 WHERE id = 1"))
        assert [q.split()[0].upper() for q in sent] == ["UPDATE", "COMMIT"] * 3, sent
        sent.clear()
        raw = engine.raw_connection()  # raw DBAPI use that leaves its transaction open
        raw.cursor().execute(f"UPDATE {table} SET v = 100 WHERE id = 1")
        raw.close()
        assert sent[-1] == "ROLLBACK", sent
        sent.clear()
        with pytest.raises(Exception, match="Duplicate entry"), engine.begin() as c:  # a hook's failing write
            c.execute(text(f"UPDATE {table} SET v = v + 1000 WHERE id = 1"))
            c.execute(text(f"INSERT INTO {table} VALUES (1, 7)"))
        assert sent[-1] == "ROLLBACK", sent  # SQLAlchemy's own, once
        assert sent.count("ROLLBACK") == 1, sent
        with other.begin() as c:  # the row is free: nothing above kept a lock or a change
            c.execute(text("SET SESSION innodb_lock_wait_timeout = 2"))
            c.execute(text(f"UPDATE {table} SET v = v + 10 WHERE id = 1"))
            assert c.execute(text(f"SELECT v FROM {table} WHERE id = 1")).scalar() == 13
        with engine.begin() as c:
            c.execute(text(f"DROP TABLE {table}"))
    finally:
        dbs.dispose()
        other.dispose()


def test_postgresql_raw_transaction_is_rolled_back() -> None:
    dbs = build_databases(None, None, {"pg": PG_URL}, pool_size=1)
    engine = dbs.auxiliary["pg"]
    other = build_databases(None, None, {"pg": PG_URL}).auxiliary["pg"]
    try:
        table = _table(engine, "postgresql")
        with engine.begin() as c:
            c.execute(text(f"UPDATE {table} SET v = v + 1 WHERE id = 1"))
        raw = engine.raw_connection()
        raw.cursor().execute(f"UPDATE {table} SET v = 100 WHERE id = 1")
        raw.close()
        with other.begin() as c:
            c.execute(text("SET LOCAL lock_timeout = '2s'"))
            c.execute(text(f"UPDATE {table} SET v = v + 10 WHERE id = 1"))
            assert c.execute(text(f"SELECT v FROM {table} WHERE id = 1")).scalar() == 11
        with engine.begin() as c:
            c.execute(text(f"DROP TABLE {table}"))
    finally:
        dbs.dispose()
        other.dispose()
