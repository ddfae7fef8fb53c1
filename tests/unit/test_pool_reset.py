"""The sidecar's engines roll a connection back at check-in only when something may be open:
not after `engine.begin()` committed (PyMySQL sent a ROLLBACK there, one round trip per hook
call), but after raw DBAPI use, a statement after the commit, or a failed commit."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, exc, text

from sidecar import databases


class Counting:
    """A sqlite3 connection that counts the DBAPI rollbacks and commits made on it."""

    def __init__(self, path: Path, calls: list[str], fail_commit: dict[str, bool]) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._calls = calls
        self._fail_commit = fail_commit

    def rollback(self) -> None:
        self._calls.append("rollback")
        self._conn.rollback()

    def commit(self) -> None:
        self._calls.append("commit")
        if self._fail_commit["now"]:
            raise sqlite3.OperationalError("disk I/O error")
        self._conn.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture()
def counted(tmp_path: Path) -> tuple[Any, list[str], dict[str, bool]]:
    calls: list[str] = []
    fail = {"now": False}
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}", creator=lambda: Counting(tmp_path / "x.db", calls, fail),
                           pool_size=1, max_overflow=0, pool_reset_on_return=None)
    databases.reset_only_when_needed(engine)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
        c.execute(text("INSERT INTO t VALUES (1, 0)"))
    calls.clear()
    return engine, calls, fail


def test_no_rollback_after_a_commit_made_through_sqlalchemy(counted: Any) -> None:
    engine, calls, _ = counted
    for _ in range(3):
        with engine.begin() as c:
            c.execute(text("UPDATE t SET v = v + 1"))
    assert calls == ["commit"] * 3
    with engine.connect() as c:  # connect(), commit(), close(): the same
        c.execute(text("UPDATE t SET v = v + 1"))
        c.commit()
    assert calls == ["commit"] * 4
    with engine.connect() as c:  # nothing run at all: SQLAlchemy ends nothing, so the pool rolls back
        pass
    assert calls == ["commit"] * 4 + ["rollback"]


def test_rolled_back_whenever_something_may_be_open(counted: Any) -> None:
    engine, calls, fail = counted
    raw = engine.raw_connection()  # a hook using the DBAPI connection itself, not ending it
    raw.cursor().execute("UPDATE t SET v = 100")
    raw.close()
    assert calls == ["rollback"]
    with engine.connect() as c:
        assert c.execute(text("SELECT v FROM t")).scalar() == 0  # the raw update was rolled back
    calls.clear()
    with engine.connect() as c:  # a statement after the commit: Connection.close rolls it back itself
        c.execute(text("UPDATE t SET v = 1"))
        c.commit()
        c.execute(text("UPDATE t SET v = 2"))
    assert calls == ["commit", "rollback"]
    calls.clear()
    with engine.begin() as c:  # commit, then a raw cursor on the same DBAPI connection
        c.execute(text("UPDATE t SET v = 3"))
    raw = engine.raw_connection()
    raw.cursor().execute("UPDATE t SET v = 4")
    raw.close()
    assert calls == ["commit", "rollback"]
    calls.clear()
    fail["now"] = True
    with pytest.raises(exc.OperationalError), engine.begin() as c:  # the commit itself fails
        c.execute(text("UPDATE t SET v = 5"))
    fail["now"] = False
    assert calls[0] == "commit" and calls[-1] == "rollback"
    with engine.connect() as c:
        assert c.execute(text("SELECT v FROM t")).scalar() == 3


def test_driver_reporting_an_open_transaction_is_rolled_back() -> None:
    class Status:
        server_status = 0

    conn = Status()
    assert not databases._in_transaction(conn)
    conn.server_status = 1 | 2  # SERVER_STATUS_IN_TRANS | AUTOCOMMIT
    assert databases._in_transaction(conn)
    assert not databases._in_transaction(object())


def test_sidecar_engines_are_built_this_way(tmp_path: Path) -> None:
    dbs = databases.build_databases(None, None, {"a": f"sqlite:///{tmp_path / 'a.db'}"})
    pool = dbs.auxiliary["a"].pool
    assert pool._reset_on_return.name == "reset_none"  # type: ignore[attr-defined]  # the pool's own ROLLBACK is off
    assert pool.dispatch.reset  # and ours decides
    dbs.dispose()
