"""Transaction hooks on the real stack: PostgreSQL and MariaDB through Kafka, PostgreSQL embedded.

Each scripted transaction must be exactly one call holding its records in commit order;
three transactions written interleaved from three sessions are told apart; calls follow
commit order; a transaction larger than max_transaction_records comes in parts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.integration.kafka_read import start_group_at_end
from tests.integration.scenario import drop_slot, embedded_config
from tests.integration.stack import (
    AUX_URL,
    INV_URL,
    PG_URL,
    REPO,
    calls,
    engine,
    execute,
    new_id_base,
    sidecar,
    sidecar_config,
    wait_for,
)

TXHOOK = str(REPO / "tests" / "hooks" / "record_tx_calls.py")
BIG = 500


def pg_script(base: int) -> list[tuple[str, list[int]]]:
    """Commit the scripted PostgreSQL transactions; returns (name, ids) in commit order."""
    ids = iter(range(base, base + 10_000))
    one = [next(ids)]
    execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:id, 1)", {"id": one[0]})
    big = [next(ids) for _ in range(BIG)]
    execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:id, 2)", [{"id": i} for i in big])
    cust, ords = [next(ids), next(ids)], [next(ids) for _ in range(3)]
    with engine(PG_URL).begin() as conn:
        conn.execute(text("INSERT INTO customers (id, email) VALUES (:id, 'm@x')"), [{"id": i} for i in cust])
        conn.execute(text("INSERT INTO orders (id, customer_id, amount) VALUES (:id, :c, 3)"),
                     [{"id": i, "c": cust[0]} for i in ords])
        conn.execute(text("UPDATE orders SET status = 'paid' WHERE id = :id"), {"id": ords[0]})
    multi = cust + ords + [ords[0]]
    return [("one", one), ("big", big), ("multi", multi), *interleaved(
        PG_URL, "INSERT INTO orders (id, amount) VALUES (:id, 4)", ids)]


def interleaved(url: str, insert: str, ids: Any) -> list[tuple[str, list[int]]]:
    """Three sessions write interleaved, then commit in the order B, C, A."""
    conns = {n: engine(url).connect() for n in "ABC"}
    txs = {n: c.begin() for n, c in conns.items()}
    rows: dict[str, list[int]] = {n: [] for n in "ABC"}
    try:
        for n in "ABCABCBB":
            i = next(ids)
            conns[n].execute(text(insert), {"id": i})
            rows[n].append(i)
        for n in "BCA":
            txs[n].commit()
    finally:
        for c in conns.values():
            c.close()
    return [(f"tx{n}", rows[n]) for n in "BCA"]


def mariadb_script(base: int) -> list[tuple[str, list[int]]]:
    ids = iter(range(base, base + 10_000))
    ins = "INSERT INTO products (id, sku, name, price) VALUES (:id, 'S', 'n', 1.50)"
    one = [next(ids)]
    execute(INV_URL, ins, {"id": one[0]})
    big = [next(ids) for _ in range(BIG)]
    execute(INV_URL, ins, [{"id": i} for i in big])
    prod, moves = [next(ids)], [next(ids) for _ in range(2)]
    with engine(INV_URL).begin() as conn:
        conn.execute(text(ins), {"id": prod[0]})
        conn.execute(text("INSERT INTO stock_movements (id, product_id, quantity, moved_at) "
                          "VALUES (:id, :p, 5, NOW(3))"), [{"id": i, "p": prod[0]} for i in moves])
    return [("one", one), ("big", big), ("multi", prod + moves), *interleaved(INV_URL, ins, ids)]


def our_calls(run: str, wanted: set[int]) -> list[dict[str, Any]]:
    out = []
    for row in calls(run):
        call = json.loads(row.record_json)
        if any(r[1] in wanted for r in call["records"]):
            out.append({"id": row.event_id, "tx": row.tbl, "kind": row.op, **call})
    return out


def wait_calls(run: str, script: list[tuple[str, list[int]]], timeout: float = 180) -> list[dict[str, Any]]:
    wanted = {i for _, ids in script for i in ids}
    total = sum(len(ids) for _, ids in script)

    def enough() -> list[dict[str, Any]] | None:
        got = our_calls(run, wanted)
        return got if sum(len(c["records"]) for c in got) >= total else None

    return wait_for("transaction calls for every scripted transaction", enough, timeout=timeout, every=1.0)


def assert_one_call_per_transaction(got: list[dict[str, Any]], script: list[tuple[str, list[int]]]) -> None:
    """Each scripted transaction is exactly one call, records in commit order, calls in commit order."""
    assert len(got) == len(script), [(c["tx"], len(c["records"])) for c in got]
    for call, (name, ids) in zip(got, script, strict=True):
        assert call["kind"] == "T", name
        assert [r[1] for r in call["records"]] == ids, name
        assert call["event_count"] == len(ids) and call["part"] == 1 and call["last"] is True, name
        assert len({r[3] for r in call["records"]}) == len(ids), name
    assert len({c["tx"] for c in got}) == len(script)


def kafka_run(tmp: Path, topics: list[str], tables: list[str], script: Callable[[int], list[tuple[str, list[int]]]],
              dispatch: dict[str, Any] | None = None, env: dict[str, str] | None = None,
              from_end: bool = False, timeout: float = 180) -> tuple[list[dict[str, Any]], list[tuple[str, list[int]]]]:
    run = f"tx-{uuid.uuid4().hex[:8]}"
    if from_end:  # read only what the script writes, not every earlier test's changes
        start_group_at_end(f"it-{run}", topics)
    steps = script(new_id_base())
    cfg = sidecar_config(tmp, group=f"it-{run}", topics=topics, hooks={
        "tx": {"path": TXHOOK, "mode": "transaction", "tables": tables}})
    if dispatch:
        import yaml

        doc = yaml.safe_load(cfg.read_text())
        doc["dispatch"] = dispatch
        cfg.write_text(yaml.safe_dump(doc))
    with sidecar(cfg, run, tmp / f"{run}.log", env):
        got = wait_calls(run, steps, timeout)
    return got, steps


PG_TOPICS = ["shop.public.orders", "shop.public.customers", "shop.transaction"]
PG_TABLES = ["public.orders", "public.customers"]


def test_kafka_postgres_one_call_per_transaction(connectors: list[str], tmp_path: Path) -> None:
    """Kafka mode, PostgreSQL: 1-row, 500-row, multi-table and three interleaved transactions are
    one call each, with their own records, in commit order."""
    got, script = kafka_run(tmp_path, PG_TOPICS, PG_TABLES, pg_script)
    assert_one_call_per_transaction(got, script)
    multi = got[2]
    assert multi["counts"] == {"public.customers": 2, "public.orders": 4}


def test_kafka_mariadb_one_call_per_transaction(connectors: list[str], tmp_path: Path) -> None:
    """Kafka mode, MariaDB: the same transactions through the MariaDB connector (GTID ids)."""
    got, script = kafka_run(tmp_path, ["inv.inventory.products", "inv.inventory.stock_movements", "inv.transaction"],
                            ["inventory.products", "inventory.stock_movements"], mariadb_script)
    assert_one_call_per_transaction(got, script)
    assert got[2]["counts"] == {"inventory.products": 1, "inventory.stock_movements": 2}


def migration_then_insert(base: int) -> list[tuple[str, list[int]]]:
    """12 DDL statements (MariaDB: a BEGIN marker each, no END, no event), then one insert."""
    for n in range(6):
        execute(AUX_URL, f"CREATE TABLE IF NOT EXISTS it_migration_{base}_{n} (k INT PRIMARY KEY)")
    for n in range(6):
        execute(AUX_URL, f"DROP TABLE IF EXISTS it_migration_{base}_{n}")
    execute(INV_URL, "INSERT INTO products (id, sku, name, price) VALUES (:id, 'S', 'n', 1.50)", {"id": base})
    return [("after the migration", [base])]


def test_kafka_mariadb_a_migrations_begins_do_not_delay_the_next_transaction(
        connectors: list[str], tmp_path: Path) -> None:
    """A run of DDL statements before a transaction: its call comes well within one END timeout
    (60 s; before: each BEGIN waited that long for the one after it — found in CI, where another
    test's CREATE/DROP TABLEs held this file's calls for minutes)."""
    got, script = kafka_run(tmp_path, ["inv.inventory.products", "inv.transaction"], ["inventory.products"],
                            migration_then_insert, from_end=True, timeout=40)
    assert_one_call_per_transaction(got, script)


def test_kafka_postgres_transaction_in_parts(connectors: list[str], tmp_path: Path) -> None:
    """max_transaction_records=200: the 500-row transaction comes as parts 200+200+100, in order,
    last only on the third; the others stay one call."""
    got, script = kafka_run(tmp_path, PG_TOPICS, PG_TABLES, pg_script, dispatch={"max_transaction_records": 200})
    big = [c for c in got if any(r[1] in script[1][1] for r in c["records"])]
    assert [(len(c["records"]), c["part"], c["last"]) for c in big] == [(200, 1, False), (200, 2, False),
                                                                       (100, 3, True)]
    assert [r[1] for c in big for r in c["records"]] == script[1][1]
    assert len({c["id"] for c in big}) == 3
    others = [c for c in got if c not in big]
    assert [[r[1] for r in c["records"]] for c in others] == [ids for n, ids in script if n != "big"]


def pg_many(base: int, transactions: int = 200, rows: int = 20) -> list[tuple[str, list[int]]]:
    ids = iter(range(base, base + transactions * rows))
    script = []
    for n in range(transactions):
        batch = [next(ids) for _ in range(rows)]
        execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:id, 5)", [{"id": i} for i in batch])
        script.append((f"t{n}", batch))
    return script


def test_kafka_postgres_backlog_behind_a_slow_hook_every_call_whole(connectors: list[str], tmp_path: Path) -> None:
    """200 twenty-row transactions queue in Kafka behind a hook of 50 ms per call, with a small
    in-flight bound (100: the loop holds its intake back, then pauses the data topics) and an END
    timeout of 1 s, far shorter than the backlog: time an END or events may wait unread does not
    count, so every transaction is still one whole call. (On the code before f9247af this test
    failed here: 166 of the 200 transactions were timed out while their END sat in Kafka, and
    called without their event_count.)"""
    got, script = kafka_run(tmp_path, PG_TOPICS, PG_TABLES, pg_many, env={"TX_HOOK_SLEEP_S": "0.05"}, from_end=True,
                            dispatch={"max_in_flight": 100, "transaction_end_timeout_s": 1.0})
    assert_one_call_per_transaction(got, script)


def test_embedded_postgres_one_call_per_transaction(tmp_path: Path) -> None:
    """Embedded mode, PostgreSQL: the same transactions, markers arriving in the engine's stream."""
    run = f"etx-{uuid.uuid4().hex[:8]}"
    slot = f"it_{run.replace('-', '_')}"
    cfg = embedded_config(tmp_path, run, slot, tables="public.orders,public.customers")
    import yaml

    doc = yaml.safe_load(cfg.read_text())
    doc["hooks"] = {"tx": {"path": TXHOOK, "mode": "transaction", "tables": PG_TABLES}}
    cfg.write_text(yaml.safe_dump(doc))
    log = tmp_path / "embedded.log"
    probe = new_id_base() + 9_999

    def streaming() -> bool:
        execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:id, 0) "
                        "ON CONFLICT (id) DO UPDATE SET status = clock_timestamp()::text", {"id": probe})
        return any(json.loads(r.record_json)["records"][0][1] == probe for r in calls(run))

    try:
        with sidecar(cfg, run, log):
            wait_for("the embedded engine to stream", streaming, timeout=120, every=1.0)
            script = pg_script(new_id_base())
            got = wait_calls(run, script)
    finally:
        drop_slot(slot)
    assert_one_call_per_transaction(got, script)


def test_embedded_transaction_spanning_engine_batches(tmp_path: Path) -> None:
    """Embedded mode, max.batch.size 1024: a 5,000-row transaction spans several engine batches
    and is still one call (no deadlock), followed by the next transaction's call; the engine
    went on while the transaction was held (batches deferred)."""
    run = f"ebig-{uuid.uuid4().hex[:8]}"
    slot = f"it_{run.replace('-', '_')}"
    cfg = embedded_config(tmp_path, run, slot, tables="public.orders")
    import yaml

    doc = yaml.safe_load(cfg.read_text())
    doc["hooks"] = {"tx": {"path": TXHOOK, "mode": "transaction", "tables": ["public.orders"]}}
    doc["source"]["embedded"]["max_batch_size"] = 1024
    doc["log"]["level"] = "debug"
    cfg.write_text(yaml.safe_dump(doc))
    base = new_id_base()
    probe = base + 9_999

    def streaming() -> bool:
        execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:id, 0) "
                        "ON CONFLICT (id) DO UPDATE SET status = clock_timestamp()::text", {"id": probe})
        return any(json.loads(r.record_json)["records"][0][1] == probe for r in calls(run))

    big = list(range(base, base + 5000))
    after = [base + 5000]
    try:
        with sidecar(cfg, run, tmp_path / "embedded-big.log"):
            wait_for("the embedded engine to stream", streaming, timeout=120, every=1.0)
            execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:id, 5)", [{"id": i} for i in big])
            execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:id, 6)", {"id": after[0]})
            script = [("big", big), ("after", after)]
            got = wait_calls(run, script, timeout=300)
    finally:
        drop_slot(slot)
    assert_one_call_per_transaction(got, script)
    assert "engine batch deferred" in (tmp_path / "embedded-big.log").read_text()
