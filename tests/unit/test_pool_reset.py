"""sidecar/pool_reset.py without a server (the behaviour on MariaDB: tests/integration/test_pool_reset.py)."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar import pool_reset


class Conn:
    def __init__(self, settled: Any, open_: Any, status: Any) -> None:
        self.sidecar_settled, self.open, self.server_status = settled, open_, status


@pytest.mark.parametrize(("conn", "expected"), [
    (Conn(True, True, 0x0002), True),  # autocommit flag only: settled
    (Conn(True, True, 0x0003), False),  # the server says a transaction is open
    (Conn(False, True, 0x0002), False),  # something was sent after the commit
    (Conn(True, False, 0x0002), False),  # closed
    (Conn(True, True, None), False),  # no status
    (object(), False),  # not a tracking connection
])
def test_settled_needs_the_mark_an_open_connection_and_no_transaction(conn: Any, expected: bool) -> None:
    assert pool_reset.settled(conn) is expected


def test_every_command_clears_the_mark_and_only_a_successful_commit_or_rollback_sets_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pymysql.connections import Connection  # type: ignore[import-untyped]

    cls = pool_reset._connection_class()
    assert cls is not None and issubclass(cls, Connection)
    conn = cls(host="127.0.0.1", defer_connect=True)  # never connects
    sent: list[Any] = []
    fail = {"on": False}

    def execute(self: Any, command: Any, sql: Any) -> None:
        sent.append(sql)
        if fail["on"]:
            raise OSError("lost")

    monkeypatch.setattr(Connection, "_execute_command", execute)
    monkeypatch.setattr(Connection, "_read_ok_packet", lambda self: None)
    monkeypatch.setattr(Connection, "_read_query_result", lambda self, unbuffered=False: 0)
    assert conn.sidecar_settled is False
    conn.commit()
    assert conn.sidecar_settled is True
    conn.query("SELECT 1")
    assert conn.sidecar_settled is False
    conn.rollback()
    assert conn.sidecar_settled is True
    conn.select_db("other")  # a command that is not a statement (COM_INIT_DB)
    assert conn.sidecar_settled is False
    fail["on"] = True
    with pytest.raises(OSError):
        conn.commit()
    assert conn.sidecar_settled is False
    assert sent == ["COMMIT", b"SELECT 1", "ROLLBACK", "other", "COMMIT"]


def test_only_pymysql_urls_apply() -> None:
    assert pool_reset.applies("mysql+pymysql://u:p@127.0.0.1/db")
    assert pool_reset.applies("mariadb+pymysql://u:p@127.0.0.1/db?charset=utf8mb4")
    assert not pool_reset.applies("mysql://u:p@127.0.0.1/db")  # mysqldb, SQLAlchemy's default
    assert not pool_reset.applies("postgresql+psycopg://u:p@127.0.0.1/db")
    assert not pool_reset.applies("sqlite://")
