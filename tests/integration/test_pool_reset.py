"""The sidecar's PyMySQL engines skip the pool's ROLLBACK after a commit, and only then
(sidecar/pool_reset.py), on the stack's MariaDB. Each test counts the ROLLBACKs the server saw
on one pooled connection (`SHOW SESSION STATUS`, the session's own counter)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import reset_none, reset_rollback

from sidecar import pool_reset
from sidecar.databases import build_databases
from tests.integration.stack import AUX_URL, PG_URL


@pytest.fixture()
def aux(stack: None) -> Iterator[Engine]:
    """The sidecar's engine for the auxiliary database, one pooled connection."""
    databases = build_databases(None, None, {"audit": AUX_URL}, pool_size=1)
    engine = databases.auxiliary["audit"]
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS it_pool_reset (k VARCHAR(64) PRIMARY KEY)")
    yield engine
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS it_pool_reset")
    databases.dispose()


def rollbacks(engine: Engine) -> int:
    """The ROLLBACKs the pooled connection's session has received so far (this query sends none)."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SHOW SESSION STATUS LIKE 'Com_rollback'")
        count = int(cur.fetchone()[1])
        cur.close()
        raw.commit()  # (settled again: reading the counter adds no ROLLBACK on return)
        return count
    finally:
        raw.close()


def in_transaction(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT @@in_transaction").scalar()


def test_a_committed_connection_goes_back_without_a_rollback(aux: Engine) -> None:
    before = rollbacks(aux)
    for n in range(50):
        with aux.begin() as conn:
            conn.exec_driver_sql("INSERT INTO it_pool_reset (k) VALUES (%s)", (f"c{n}",))
    assert rollbacks(aux) == before  # SQLAlchemy's default reset: 50 more


def test_the_plain_sqlalchemy_default_sends_one_rollback_per_commit(stack: None) -> None:
    """What the sidecar's engines save: the same loop on a default engine (one connection)."""
    engine = create_engine(AUX_URL, pool_size=1)
    try:
        before = rollbacks(engine)
        for _ in range(5):
            with engine.begin() as conn:
                conn.exec_driver_sql("SELECT 1")
        # 5 for the calls, 1 for the return of the connection the first count read on
        assert rollbacks(engine) == before + 5 + 1
    finally:
        engine.dispose()


def test_a_failed_transaction_is_rolled_back_once(aux: Engine) -> None:
    key = uuid.uuid4().hex
    before = rollbacks(aux)
    with pytest.raises(RuntimeError), aux.begin() as conn:
        conn.exec_driver_sql("INSERT INTO it_pool_reset (k) VALUES (%s)", (key,))
        raise RuntimeError("the hook failed")
    assert rollbacks(aux) == before + 1
    with aux.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM it_pool_reset WHERE k = %s", (key,)).scalar() == 0


@pytest.mark.parametrize("statement", ["INSERT INTO it_pool_reset (k) VALUES ('{key}')",
                                       "SELECT k FROM it_pool_reset FOR UPDATE",
                                       "INSERT INTO it_pool_reset (k) VALUES ('{key}'), ('{key}')"],
                         ids=["raw-insert", "raw-select", "raw-failing-insert"])
def test_raw_dbapi_statements_left_open_are_rolled_back_on_return(aux: Engine, statement: str) -> None:
    """A hook that sends a statement on the DBAPI connection after SQLAlchemy's commit and returns
    it without committing: the pool rolls it back (a write is not kept, no lock or snapshot is
    carried into the next call). Also when the statement returned rows (PyMySQL does not update
    the server's status from a result set) and when it failed (no status at all)."""
    key = uuid.uuid4().hex
    before = rollbacks(aux)
    with aux.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        conn.commit()
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(statement.format(key=key))
        except Exception as exc:  # the duplicate: its error, the transaction it began stays open
            assert "Duplicate" in str(exc)
    assert rollbacks(aux) == before + 1
    assert in_transaction(aux) == 0
    with aux.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM it_pool_reset WHERE k = %s", (key,)).scalar() == 0


def test_a_command_sent_past_query_after_the_commit_is_rolled_back(aux: Engine) -> None:
    """PyMySQL sends `SET NAMES` (set_character_set) without `query` and reads no server status
    from its reply; a collation argument smuggling a locking read opens a transaction there.
    Every command clears the connection's settled mark, so the pool rolls it back: the row is
    free for another session and the next use starts outside any transaction."""
    key = uuid.uuid4().hex
    with aux.begin() as conn:
        conn.exec_driver_sql("INSERT INTO it_pool_reset (k) VALUES (%s)", (key,))
    before = rollbacks(aux)
    with aux.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        conn.commit()
        conn.connection.dbapi_connection.set_character_set(  # type: ignore[union-attr]
            "utf8mb4", f"utf8mb4_general_ci, @x = (SELECT k FROM it_pool_reset WHERE k = '{key}' FOR UPDATE)")
    assert rollbacks(aux) == before + 1
    assert in_transaction(aux) == 0
    other = create_engine(AUX_URL, pool_size=1)
    try:
        with other.begin() as conn:
            conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
            assert conn.exec_driver_sql("SELECT k FROM it_pool_reset WHERE k = %s FOR UPDATE", (key,)).scalar() == key
    finally:
        other.dispose()


def test_a_connection_closed_by_the_hook_after_its_commit_is_not_handed_out_again(aux: Engine) -> None:
    """A hook that closes the DBAPI connection itself after committing: the pool does not take
    the closed connection back as settled; the next use gets a working one."""
    with aux.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        conn.commit()
        conn.connection.dbapi_connection.close()  # type: ignore[union-attr]
    with aux.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


def test_a_raw_connection_returned_with_a_write_is_rolled_back(aux: Engine) -> None:
    key = uuid.uuid4().hex
    raw = aux.raw_connection()
    raw.cursor().execute("INSERT INTO it_pool_reset (k) VALUES (%s)", (key,))
    raw.close()
    with aux.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM it_pool_reset WHERE k = %s", (key,)).scalar() == 0


def test_only_pymysql_engines_change_their_reset(stack: None) -> None:
    """psycopg sends nothing for a rollback outside a transaction: PostgreSQL engines keep
    SQLAlchemy's reset, as every other driver does."""
    assert pool_reset.applies(AUX_URL)
    assert not pool_reset.applies(PG_URL)
    assert not pool_reset.applies("mysql+mysqldb://u:p@127.0.0.1/db")
    databases = build_databases(None, None, {"aux": AUX_URL, "pg": PG_URL})
    try:
        assert databases.auxiliary["aux"].pool._reset_on_return is reset_none
        assert databases.auxiliary["pg"].pool._reset_on_return is reset_rollback
    finally:
        databases.dispose()
