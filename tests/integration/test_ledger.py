"""The ledger of applied ids on the stack's MariaDB (auxiliary) and PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import text

from sidecar import ledger
from sidecar.cli import main
from sidecar.ledger import claim_ids, create_table, prune
from tests.integration.stack import AUX_URL, PG_URL, engine, sidecar_config


@pytest.mark.parametrize("url", [AUX_URL, PG_URL], ids=["mariadb", "postgresql"])
def test_claim_returns_ids_applied_before_and_rolls_back_with_the_hook(url: str) -> None:
    """A claim reports the ids an earlier (committed) claim took; a rolled-back claim took none;
    hooks are independent; chunks of >500 ids work; prune removes old ids."""
    e = engine(url)
    create_table(e)
    assert create_table(e) is False  # idempotent: it says the table was there
    pipeline = f"it-ledger-{uuid.uuid4().hex[:8]}"
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["a", "b"]) == set()
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["b", "c", "c"]) == {"b"}
    with pytest.raises(RuntimeError), e.begin() as c:
        claim_ids(c, pipeline, "h", ["d"])
        raise RuntimeError("the hook's write failed")
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["d"]) == set()
        assert claim_ids(c, pipeline, "other", ["a"]) == set()
    ids = [f"x{i}" for i in range(1200)]
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ids) == set()
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", [*ids, "new"]) == set(ids)
    assert prune(e, 0.0) >= 1206
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["a"]) == set()


def test_create_table_says_whether_it_created_the_table() -> None:
    """PostgreSQL, with a schema of its own first on search_path and the table already in `public`
    (visible, but not where an unqualified CREATE TABLE writes): the first create makes the table
    in the new schema (True, `ledger create` prints "created"), the next finds it (False,
    "already exists … left as it is")."""
    from sqlalchemy import create_engine, text

    create_table(engine(PG_URL))  # public has one
    schema = f"it_ledger_{uuid.uuid4().hex[:8]}"
    with engine(PG_URL).begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    e = create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema},public"})
    try:
        assert create_table(e) is True
        assert create_table(e) is False
        with e.connect() as c:
            tables = text("SELECT count(*) FROM pg_tables WHERE schemaname = :s AND tablename = 'checkpoint_ledger'")
            assert c.execute(tables, {"s": schema}).scalar() == 1
    finally:
        e.dispose()
        with engine(PG_URL).begin() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def test_ledger_create_without_a_database_in_the_url_is_one_line(tmp_path: Path) -> None:
    """MariaDB URL naming no database: `ledger create` is exit 4 with the server's "No database
    selected" (not a traceback) and what to change in the URL, and the password appears nowhere."""
    from sqlalchemy.engine import make_url

    url = make_url(AUX_URL)._replace(database=None)
    assert url.password
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "pipeline": "it-ledger-nodb", "source": {"kind": "file", "file": {"path": str(tmp_path / "in.jsonl")}},
        "databases": {"auxiliary": {"audit": url.render_as_string(hide_password=False)}},
        "hooks": {}}))
    result = CliRunner().invoke(main, ["ledger", "create", "--config", str(cfg), "--database", "audit"])
    assert result.exit_code == 4, result.output
    assert "No database selected" in result.output and "Traceback" not in result.output, result.output
    assert "the URL names no database: give one, as in mysql+pymysql://sidecar:***@" in result.output, result.output
    assert f":{url.port}/DBNAME" in result.output, result.output
    assert str(url.password) not in result.output


def test_mariadb_claim_names_skipped_ids_as_given_and_refuses_what_it_cannot_tell() -> None:
    """MariaDB: the claim counts inserted rows and, when some were skipped, reads which on a second
    connection. The ids come back as the claim gave them (the table's collation ignores case:
    "ABC" is the "abc" claimed before); two ids of one claim equal to the table ("q", "Q"), or an
    id claimed twice in one transaction, cannot be told apart from a row committed before: the
    claim raises, naming why, and the hook's transaction rolls back. Over-long ids are refused."""
    e = engine(AUX_URL)
    create_table(e)
    pipeline = f"it-ledger-ci-{uuid.uuid4().hex[:8]}"
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["abc", "x"]) == set()
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["ABC", "new"]) == {"ABC"}
    with pytest.raises(RuntimeError, match="1 of 2 ids were skipped as applied, but only 0 are committed"), \
            e.begin() as c:
        claim_ids(c, pipeline, "h", ["q", "Q"])
    with pytest.raises(RuntimeError, match="claimed twice in this transaction"), e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["t"]) == set()
        claim_ids(c, pipeline, "h", ["t", "u"])
    with e.begin() as c:  # both rolled back: nothing of them is taken
        assert claim_ids(c, pipeline, "h", ["q", "t", "u"]) == set()
    with pytest.raises(ValueError, match="at most 64 characters"), e.begin() as c:
        claim_ids(c, pipeline, "h", ["x" * 65])


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_mariadb_claim_waits_for_an_uncommitted_duplicate(outcome: str) -> None:
    """A claim of an id another transaction inserted and has not committed waits for it; then the
    id is applied before (committed: the second connection's read finds it) or taken (rolled
    back: the row count says so)."""
    e = engine(AUX_URL)
    create_table(e)
    pipeline = f"it-ledger-wait-{uuid.uuid4().hex[:8]}"
    got: list[set[str]] = []
    holder = e.connect()
    trans = holder.begin()
    assert claim_ids(holder, pipeline, "h", ["x"]) == set()

    def second() -> None:
        with e.begin() as c:
            got.append(claim_ids(c, pipeline, "h", ["x", "y"]))

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.5)
    assert t.is_alive() and not got  # waiting for the holder's row
    trans.commit() if outcome == "commit" else trans.rollback()
    holder.close()
    t.join(30)
    assert got == [{"x"} if outcome == "commit" else set()]


def test_mariadb_claim_read_is_bounded_behind_pending_ddl() -> None:
    """A redelivered claim whose transaction holds the ledger while an ALTER TABLE waits for it:
    the read on the second connection would queue behind the ALTER — the claim fails after the
    bounded wait (ledger.LOCK_WAIT_S) instead of hanging; once its transaction rolls back the
    ALTER goes through."""
    e = engine(AUX_URL)
    create_table(e)
    pipeline = f"it-ledger-ddl-{uuid.uuid4().hex[:8]}"
    with e.begin() as c:
        claim_ids(c, pipeline, "h", ["a"])
    altered: list[float] = []

    def alter() -> None:
        with e.connect() as c:
            c.exec_driver_sql(f"ALTER TABLE {ledger.TABLE} COMMENT = 'sidecar ledger'")
            altered.append(time.monotonic())

    with e.connect() as conn:
        trans = conn.begin()
        assert claim_ids(conn, pipeline, "h", ["z"]) == set()  # this transaction writes the ledger
        t = threading.Thread(target=alter)
        t.start()
        time.sleep(0.5)
        started = time.monotonic()
        with pytest.raises(Exception, match="Lock wait timeout"):
            claim_ids(conn, pipeline, "h", ["a", "b"])  # "a" skipped: the read on a second connection
        waited = time.monotonic() - started
        trans.rollback()
    t.join(30)
    assert ledger.LOCK_WAIT_S - 1 < waited < ledger.LOCK_WAIT_S + 5
    assert altered and altered[0] >= started


@pytest.mark.parametrize("url", [AUX_URL, PG_URL], ids=["mariadb", "postgresql"])
def test_concurrent_claims_never_deadlock_and_apply_each_id_once(url: str) -> None:
    """8 threads, 15 rounds, each round every thread claims (in its own transaction, held a moment
    like a hook's write) a random overlapping subset of the round's shared ids plus ids of its own,
    in random order, all starting together: no error at all (no deadlock 1213/40P01, no duplicate
    key), and every id is reported fresh by exactly one claim."""
    e = engine(url)
    create_table(e)
    pipeline = f"it-ledger-conc-{uuid.uuid4().hex[:8]}"
    threads, rounds = 8, 15
    barrier = threading.Barrier(threads)
    fresh: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        rng = random.Random(t)
        for r in range(rounds):
            shared = [f"r{r}-s{k}" for k in range(30)]
            ids = rng.sample(shared, 15) + [f"r{r}-t{t}-{k}" for k in range(5)]
            rng.shuffle(ids)
            barrier.wait()
            try:
                with e.begin() as conn:
                    already = ledger.claim_ids(conn, pipeline, "h", ids)
                    time.sleep(0.01)  # the hook's own write, while the claim's locks are held
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            with lock:
                fresh.update(i for i in ids if i not in already)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(120)
    assert not errors, errors[:3]
    claimed = {f"r{r}-t{t}-{k}" for r in range(rounds) for t in range(threads) for k in range(5)}
    claimed |= {i for i in fresh if "-s" in i}
    assert {i: n for i, n in fresh.items() if n != 1} == {}  # each id applied exactly once
    assert set(fresh) == claimed
    with e.connect() as conn:
        rows = conn.execute(text(f"SELECT count(*) FROM {ledger.TABLE} WHERE pipeline = :p"), {"p": pipeline})
        assert rows.scalar() == len(fresh)


def test_cli_ledger_create(tmp_path: Path) -> None:
    """`checkpoint-sidecar ledger create --database audit` creates the table (exit 0); an unknown
    database name is a config error (exit 2)."""
    cfg = sidecar_config(tmp_path, group="it-ledger", topics=["shop.public.orders"])
    ok = CliRunner().invoke(main, ["ledger", "create", "--config", str(cfg), "--database", "audit"])
    assert ok.exit_code == 0, ok.output
    assert ("checkpoint_ledger created in auxiliary database audit" in ok.output
            or "checkpoint_ledger already exists in auxiliary database audit (left as it is)" in ok.output), ok.output
    again = CliRunner().invoke(main, ["ledger", "create", "--config", str(cfg), "--database", "audit"])
    assert again.exit_code == 0 and "already exists in auxiliary database audit (left as it is)" in again.output
    bad = CliRunner().invoke(main, ["ledger", "create", "--config", str(cfg), "--database", "nope"])
    assert bad.exit_code == 2 and "no auxiliary database 'nope'" in bad.output
