"""Exactly-counted writes: a ledger of applied record ids in the hook's auxiliary database.

Under at-least-once delivery a record can reach a hook twice. An idempotent write (insert
keyed by `_event_id`) does not care; a counter does. `claim` records the ids of a call's
records in the ledger table *inside the hook's own transaction* on that database and
returns the ids that were there already: apply the write only for the others. The claim
and the write commit or roll back together, so each id is applied exactly once.

    from sidecar.ledger import claim

    def checkpoint(param):
        with param.auxiliary_db["audit"].begin() as conn:
            applied = claim(conn, param)
            fresh = [r for r in param.records if r["_event_id"] not in applied]
            ...  # one upsert per table, counting len(fresh)

Key: (pipeline, hook, id) — `param.ctx.name`, `param.hook`, the record's `_event_id`.
Create the table with `checkpoint-sidecar ledger create --database NAME` (MariaDB/MySQL or
PostgreSQL). Rows older than the redelivery window may be pruned
(`checkpoint-sidecar ledger prune --database NAME --older-than-days N`): a record
redelivered after its id was pruned is applied again. Redelivery happens after a crash or
a rebalance, within minutes (the uncommitted tail) — or after a replication slot or
connector offsets reset, which re-sends everything since; keep ids as long as that can
happen (days, not hours).

Concurrency: the claim inserts first and reads nothing before — PostgreSQL `INSERT … ON
CONFLICT DO NOTHING RETURNING id`, MariaDB `INSERT IGNORE … RETURNING id` (both return only
the rows this claim inserted), MySQL (no RETURNING) one `INSERT IGNORE` per id, applied when
it inserted a row. Ids are claimed in sorted order, so two claims never wait on each other in
a cycle; claims of different ids never wait at all; a claim of an id another transaction
inserted and has not committed waits for it, then sees it applied (committed) or takes it
(rolled back). (The earlier `SELECT … FOR UPDATE` then INSERT took gap locks on ids not yet
there, and concurrent claims deadlocked on them: InnoDB error 1213.) A deadlock that still
happens (e.g. between a claim and the hook's own upserts) fails the call, which its retry
policy runs again.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

TABLE = "checkpoint_ledger"
CHUNK = 500

_DDL = {
    "mysql": [
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        " pipeline VARCHAR(200) NOT NULL, hook VARCHAR(200) NOT NULL, id VARCHAR(64) NOT NULL,"
        " applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
        " PRIMARY KEY (pipeline, hook, id), KEY checkpoint_ledger_applied_at (applied_at)"
        ") ENGINE=InnoDB",
    ],
    "postgresql": [
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        " pipeline varchar(200) NOT NULL, hook varchar(200) NOT NULL, id varchar(64) NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (pipeline, hook, id))",
        f"CREATE INDEX IF NOT EXISTS checkpoint_ledger_applied_at ON {TABLE} (applied_at)",
    ],
}


def _dialect(bind: Connection | Engine) -> str:
    name = bind.dialect.name
    if name in ("mysql", "mariadb"):
        return "mysql"
    if name == "postgresql":
        return "postgresql"
    raise ValueError(f"the ledger supports MariaDB/MySQL and PostgreSQL, not {name}")


def ddl(dialect: str) -> list[str]:
    return list(_DDL["mysql" if dialect in ("mysql", "mariadb") else dialect])


def create_table(engine: Engine) -> None:
    with engine.begin() as conn:
        for statement in ddl(_dialect(conn)):
            conn.execute(text(statement))


def prune(engine: Engine, older_than_days: float) -> int:
    """Delete ledger rows older than this many days; returns how many."""
    if _dialect(engine) == "postgresql":
        sql = f"DELETE FROM {TABLE} WHERE applied_at < now() - make_interval(secs => :s)"
    else:
        sql = f"DELETE FROM {TABLE} WHERE applied_at < CURRENT_TIMESTAMP(6) - INTERVAL :s SECOND"
    with engine.begin() as conn:
        return int(conn.execute(text(sql), {"s": older_than_days * 86400}).rowcount or 0)


def claim_ids(conn: Connection, pipeline: str, hook: str, ids: Iterable[str]) -> set[str]:
    """Record `ids` as applied in this transaction; return those that were recorded before."""
    wanted = sorted(set(ids))  # one lock order for every claim: no wait cycles between claims
    if not wanted:
        return set()
    kind = _dialect(conn)
    if kind == "mysql" and not getattr(conn.dialect, "is_mariadb", False):
        return _claim_each(conn, pipeline, hook, wanted)
    already: set[str] = set()
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        params: dict[str, Any] = {"p": pipeline, "h": hook, **{f"i{n}": i for n, i in enumerate(chunk)}}
        inserted = {r[0] for r in conn.exec_driver_sql(_insert(kind, len(chunk)), params)}
        already.update(i for i in chunk if i not in inserted)
    return already


@functools.lru_cache(maxsize=64)
def _insert(kind: str, n: int) -> str:
    """The claim statement for `n` ids (built once per size: a call's size repeats). Driver SQL
    with `%(name)s` placeholders (PyMySQL's and psycopg's style), run with `exec_driver_sql`:
    SQLAlchemy's processing of a `text()` statement's named parameters costs more CPU than the
    driver's own, per id."""
    values = ", ".join(f"(%(p)s, %(h)s, %(i{k})s)" for k in range(n))
    if kind == "postgresql":
        return f"INSERT INTO {TABLE} (pipeline, hook, id) VALUES {values} ON CONFLICT DO NOTHING RETURNING id"
    return f"INSERT IGNORE INTO {TABLE} (pipeline, hook, id) VALUES {values} RETURNING id"


def _claim_each(conn: Connection, pipeline: str, hook: str, wanted: list[str]) -> set[str]:
    """MySQL has no RETURNING: one INSERT IGNORE per id; no row inserted = applied before."""
    statement = text(f"INSERT IGNORE INTO {TABLE} (pipeline, hook, id) VALUES (:p, :h, :i)")
    return {i for i in wanted if not conn.execute(statement, {"p": pipeline, "h": hook, "i": i}).rowcount}


def claim(conn: Connection, param: Any, records: Sequence[dict[str, Any]] | None = None) -> set[str]:
    """Claim the `_event_id`s of a call's records (default: all of `param.records`) for
    (pipeline, hook); returns the ids already applied by an earlier delivery."""
    rows = param.records if records is None else records
    return claim_ids(conn, param.ctx.name, param.hook, (r["_event_id"] for r in rows))
