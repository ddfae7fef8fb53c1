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

Concurrency: the claim inserts first and reads nothing before. PostgreSQL: `INSERT … ON
CONFLICT DO NOTHING RETURNING id` (returns only the rows this claim inserted). MariaDB/MySQL:
`INSERT IGNORE` of all the ids and its count of inserted rows — all of them, the usual case,
means none was applied before (PyMySQL parses a `RETURNING` row in Python, ~5 µs per id, half
a 20-id claim's CPU). Fewer means a redelivery: which ids were skipped is then read on a second
connection of the same engine, READ COMMITTED, no locks, waiting at most 10 s for a table lock
(a pending `ALTER`/`OPTIMIZE TABLE` on the ledger would otherwise wait for this claim's
transaction while the claim waits for the read). It sees committed rows only, i.e. exactly the
ids the claim skipped: an id skipped was committed before the insert returned (the insert waits
for an uncommitted duplicate's transaction) and stays share-locked by this transaction until it
ends; the ids this claim inserted are uncommitted, invisible to the read. The read needs one
more pooled connection, only on a redelivery (the sidecar's engines keep 4 beyond the hooks'
concurrency). It raises instead of guessing when it finds fewer ids than were skipped: an id
claimed twice within one transaction (its first claim is not committed), or two ids of one claim
equal to the table but not to Python (MariaDB's default collation ignores case, accents and
trailing spaces; event ids are lowercase hex); the call then fails each time, by its policy.
Ids are claimed in sorted order, so two claims never wait on each other in a cycle; claims of
different ids never wait at all; a claim of an id another transaction inserted and has not
committed waits for it, then sees it applied (committed) or takes it (rolled back). (The
earlier `SELECT … FOR UPDATE` then INSERT took gap locks on ids not yet there, and concurrent
claims deadlocked on them: InnoDB error 1213.) A deadlock that still happens (e.g. between a
claim and the hook's own upserts) fails the call, which its retry policy runs again.

The statements are driver SQL with `%(name)s` placeholders, run with `exec_driver_sql`: PyMySQL,
mysqlclient, psycopg (3) and psycopg2 take them. Ids longer than 64 characters, and pipeline or
hook names longer than 200, are refused (ValueError): MariaDB/MySQL would store them cut short.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

TABLE = "checkpoint_ledger"
CHUNK = 500
ID_MAX = 64
NAME_MAX = 200
LOCK_WAIT_S = 10

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


_EXISTS = {
    # Where CREATE TABLE without a schema writes: the first schema of search_path that exists
    # (current_schema()), the connection's database (DATABASE(); none selected: no row, and the
    # CREATE then fails saying so). Not "visible anywhere on search_path".
    "postgresql": f"SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = '{TABLE}'",
    "mysql": f"SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '{TABLE}'",
}


def create_table(engine: Engine) -> bool:
    """Create the ledger table if it does not exist where an unqualified CREATE TABLE writes;
    True when it was not there before (two runs at the same moment may both say so)."""
    with engine.begin() as conn:
        dialect = _dialect(conn)
        existed = conn.execute(text(_EXISTS[dialect])).first() is not None
        for statement in ddl(dialect):  # (IF NOT EXISTS: right also when another creates it meanwhile)
            conn.execute(text(statement))
    return not existed


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
    if len(pipeline) > NAME_MAX or len(hook) > NAME_MAX:
        raise ValueError(f"ledger claim: pipeline and hook names are at most {NAME_MAX} characters "
                         f"(got {len(pipeline)} and {len(hook)})")
    longest = max(map(len, wanted))
    if longest > ID_MAX:
        raise ValueError(f"ledger claim: ids are at most {ID_MAX} characters, got one of {longest} "
                         "(hash longer ids, e.g. sha256 hex digest cut to 64)")
    kind = _dialect(conn)
    already: set[str] = set()
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        params: dict[str, Any] = {"p": pipeline, "h": hook, **{f"i{n}": i for n, i in enumerate(chunk)}}
        if kind == "postgresql":
            inserted = {r[0] for r in conn.exec_driver_sql(_insert(kind, len(chunk)), params)}
            already.update(i for i in chunk if i not in inserted)
            continue
        skipped = len(chunk) - conn.exec_driver_sql(_insert(kind, len(chunk)), params).rowcount
        if skipped:
            already.update(_committed(conn, params, len(chunk), skipped))
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
    return f"INSERT IGNORE INTO {TABLE} (pipeline, hook, id) VALUES {values}"


@functools.lru_cache(maxsize=64)
def _select(n: int, mariadb: bool) -> str:
    """Which of `n` ids have a row: the ids as given (the table compares them by its collation);
    waiting at most LOCK_WAIT_S for the table's metadata lock."""
    given = " UNION ALL ".join(f"SELECT %(i{k})s AS id" for k in range(n))
    query = (f"SELECT {{hint}}v.id FROM ({given}) AS v WHERE EXISTS (SELECT 1 FROM {TABLE} AS l "
             "WHERE l.pipeline = %(p)s AND l.hook = %(h)s AND l.id = v.id)")
    if mariadb:
        return f"SET STATEMENT lock_wait_timeout={LOCK_WAIT_S} FOR " + query.format(hint="")
    return query.format(hint=f"/*+ SET_VAR(lock_wait_timeout={LOCK_WAIT_S}) */ ")


def _committed(conn: Connection, params: dict[str, Any], n: int, skipped: int) -> set[str]:
    """MariaDB/MySQL, after an INSERT IGNORE that skipped `skipped` of `n` ids: which ones. Read
    on another connection, READ COMMITTED: it sees committed rows only, i.e. not the ids this
    claim inserted."""
    statement = _select(n, bool(getattr(conn.dialect, "is_mariadb", False)))
    with conn.engine.connect().execution_options(isolation_level="READ COMMITTED") as other:
        found = {r[0] for r in other.exec_driver_sql(statement, params)}
    if len(found) != skipped:
        raise RuntimeError(
            f"ledger claim: {skipped} of {n} ids were skipped as applied, but only {len(found)} are committed "
            f"in {TABLE}: an id was claimed twice in this transaction, or two ids of the claim are equal to "
            "the table (its collation ignores case, accents and trailing spaces); see sidecar/ledger.py")
    return found


def claim(conn: Connection, param: Any, records: Sequence[dict[str, Any]] | None = None) -> set[str]:
    """Claim the `_event_id`s of a call's records (default: all of `param.records`) for
    (pipeline, hook); returns the ids already applied by an earlier delivery."""
    rows = param.records if records is None else records
    return claim_ids(conn, param.ctx.name, param.hook, (r["_event_id"] for r in rows))
