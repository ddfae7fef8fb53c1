"""Pooled connections are pinged before a hook gets them only when they sat idle, and a dead one
is replaced, not handed out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from sidecar import databases


def test_ping_only_after_idle_and_a_dead_connection_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}", pool_size=1, max_overflow=0)
    databases.ping_when_idle(engine)
    pings: list[bool] = []
    answer = {"alive": True}
    connects: list[Any] = []
    event.listen(engine, "connect", lambda conn, record: connects.append(conn))

    def do_ping(dbapi_connection: Any) -> bool:
        pings.append(answer["alive"])
        if not answer["alive"]:
            raise OSError("server has gone away")
        return True

    monkeypatch.setattr(engine.dialect, "do_ping", do_ping)
    for _ in range(3):  # back to back: no round trip for a ping
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    assert pings == [] and len(connects) == 1
    monkeypatch.setattr(databases, "PING_IDLE_S", 0.0)  # every connection now counts as idle
    with engine.connect() as c:
        c.execute(text("SELECT 1"))
    assert pings == [True] and len(connects) == 1
    answer["alive"] = False
    with engine.connect() as c:  # the dead one is dropped and a fresh one handed out
        assert c.execute(text("SELECT 1")).scalar() == 1
    assert pings == [True, False] and len(connects) == 2
    engine.dispose()
