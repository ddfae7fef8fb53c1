"""The ledger of applied ids on the stack's MariaDB (auxiliary) and PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
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
    create_table(e)  # idempotent
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


def test_mariadb_claim_names_skipped_ids_as_given_and_refuses_what_it_cannot_tell() -> None:
    """MariaDB: the claim counts inserted rows and, when some were skipped, reads which on a second
    connection. The ids come back as the claim gave them (the table's collation ignores case:
    "ABC" is the "abc" claimed before); two ids of one claim equal to the table ("q", "Q") cannot
    be told apart: the claim raises, naming why, and leaves the hook's transaction to roll back."""
    e = engine(AUX_URL)
    create_table(e)
    pipeline = f"it-ledger-ci-{uuid.uuid4().hex[:8]}"
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["abc", "x"]) == set()
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["ABC", "new"]) == {"ABC"}
    with pytest.raises(RuntimeError, match="1 of 2 ids were applied before, but 0 are found"), e.begin() as c:
        claim_ids(c, pipeline, "h", ["q", "Q"])
    with e.begin() as c:  # rolled back: neither is taken
        assert claim_ids(c, pipeline, "h", ["q"]) == set()


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
    assert ok.exit_code == 0 and "checkpoint_ledger ready" in ok.output, ok.output
    bad = CliRunner().invoke(main, ["ledger", "create", "--config", str(cfg), "--database", "nope"])
    assert bad.exit_code == 2 and "no auxiliary database 'nope'" in bad.output
