"""The sidecar on the real stack: PostgreSQL/MariaDB → Debezium → Kafka → sidecar → hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from sidecar import connectors as cx
from tests.integration.kafka_read import read_until
from tests.integration.stack import (
    AUX_URL,
    CONNECT,
    INV_URL,
    PG_URL,
    PORTS,
    REPO,
    calls,
    execute,
    new_id_base,
    query,
    sidecar,
    sidecar_config,
    wait_for,
)

RECORD = str(REPO / "tests" / "hooks" / "record_calls.py")
AUDIT = str(REPO / "hooks" / "audit_log.py")


def rec(row: Any) -> dict[str, Any]:
    return json.loads(row.record_json)  # type: ignore[no-any-return]


def by_id(rows: list[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for r in rows:
        out.setdefault(r.record_id, []).append(r)
    return out


@pytest.fixture(scope="module")
def scenario(connectors: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Commit a scripted set of changes once, run the sidecar over them, keep what the hooks saw."""
    tmp = tmp_path_factory.mktemp("sidecar")
    base = new_id_base()
    ids = {k: base + i for i, k in enumerate(["a", "b", "c1", "c2", "c3", "c4", "p"])}
    execute(PG_URL, "INSERT INTO orders (id, amount, status, details) VALUES (:a, 10.50, 'new', '{\"x\": 1}')", ids)
    execute(PG_URL, "UPDATE orders SET status = 'paid', amount = 11.00 WHERE id = :a", ids)
    execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:b, 1)", ids)
    execute(PG_URL, "DELETE FROM orders WHERE id = :b", ids)
    execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:c1, 1), (:c2, 2), (:c3, 3)", ids)  # one transaction
    execute(PG_URL, "UPDATE orders SET id = :c4 WHERE id = :c3", ids)  # primary-key update
    execute(INV_URL, "INSERT INTO products (id, sku, name, price) VALUES (:p, 'S-1', 'Widget', 9.99)", ids)
    execute(INV_URL, "UPDATE products SET price = 12.50 WHERE id = :p", ids)
    execute(INV_URL, "DELETE FROM products WHERE id = :p", ids)
    run = f"it-{uuid.uuid4().hex[:8]}"
    cfg = sidecar_config(tmp, group=f"it-{run}", topics=["shop.public.orders", "inv.inventory.products"], hooks={
        "record": {"path": RECORD}, "audit_log": {"path": AUDIT, "tables": ["public.orders"]}})
    log = tmp / "sidecar.log"
    expected_calls = 2 + 2 + 3 + 2 + 3  # a: c,u · b: c,d · c1-c3 · c3 d + c4 c · p: c,u,d
    with sidecar(cfg, run, log):
        rows = wait_for("hook calls for every change",
                        lambda: (r := [x for x in calls(run) if x.record_id in ids.values()])
                        and len(r) >= expected_calls and r, timeout=90)
    return {"ids": ids, "run": run, "rows": rows, "config": cfg, "tmp": tmp, "log": log}


def test_inserts_updates_deletes(scenario: dict[str, Any]) -> None:
    """Insert, update (before and after images), delete (before image) reach the hook with native values."""
    ids, rows = scenario["ids"], by_id(scenario["rows"])
    a = rows[ids["a"]]
    assert [r.op for r in a] == ["c", "u"]
    created, updated = rec(a[0]), rec(a[1])
    assert created["record"]["amount"] == "Decimal:10.50" and created["record"]["details"] == {"x": 1}
    assert created["record"]["_op"] == "c" and created["record"]["_source_table"] == "crm.orders"
    assert created["record"]["_destination_table"] == "public.orders"
    assert created["record"]["_committed_at"].startswith("datetime:")
    assert updated["before"]["status"] == "new" and updated["record"]["status"] == "paid"
    assert updated["record"]["amount"] == "Decimal:11.00"
    assert created["record"]["external_id"].startswith("UUID:")
    b = rows[ids["b"]]
    assert [r.op for r in b] == ["c", "d"]
    assert rec(b[1])["record"]["id"] == ids["b"] and rec(b[1])["record"]["_op"] == "d"
    p = rows[ids["p"]]
    assert [r.op for r in p] == ["c", "u", "d"] and p[0].tbl == "inventory.products"
    assert rec(p[1])["before"]["price"] == "Decimal:9.99" and rec(p[1])["record"]["price"] == "Decimal:12.50"


def test_multi_row_transaction_and_pk_update(scenario: dict[str, Any]) -> None:
    """Rows of one transaction share _transaction_id; a PK update is a delete then a create."""
    ids, rows = scenario["ids"], by_id(scenario["rows"])
    tx = {rec(rows[ids[k]][0])["record"]["_transaction_id"] for k in ("c1", "c2", "c3")}
    assert len(tx) == 1 and None not in tx
    assert [r.op for r in rows[ids["c3"]]] == ["c", "d"]
    assert [r.op for r in rows[ids["c4"]]] == ["c"]
    all_ids = [r.event_id for r in scenario["rows"]]
    assert len(all_ids) == len(set(all_ids))


def test_audit_rows_once_per_event_even_when_redelivered(scenario: dict[str, Any]) -> None:
    """The example audit hook writes one row per event_id; a full redelivery (new group) adds none."""
    ids = scenario["ids"]
    order_ids = [ids[k] for k in ("a", "b", "c1", "c2", "c3", "c4")]
    events = {r.event_id for r in scenario["rows"] if r.tbl == "public.orders"}
    keys = [str(i) for i in order_ids]

    def audit() -> list[Any]:
        return query(AUX_URL, "SELECT event_id, op, source_table FROM pipeline_audit_log "
                              f"WHERE record_key IN ({','.join(keys)})")

    first = audit()
    assert {r.event_id for r in first} == events and len(first) == len(events)
    assert {r.source_table for r in first} == {"crm.orders"}
    run2 = f"it2-{uuid.uuid4().hex[:8]}"
    cfg = sidecar_config(scenario["tmp"], group=f"it-{run2}", topics=["shop.public.orders"], hooks={
        "record": {"path": RECORD, "tables": ["public.orders"]}, "audit_log": {"path": AUDIT}})
    with sidecar(cfg, run2, scenario["tmp"] / "sidecar2.log"):
        again = wait_for("redelivered calls", lambda: (r := [x for x in calls(run2) if x.record_id in order_ids])
                         and len(r) >= len(events) and r, timeout=90)
    assert {r.event_id for r in again} == events  # same event_ids on redelivery
    second = audit()
    assert sorted(r.event_id for r in second) == sorted(r.event_id for r in first)


def test_replay_gives_same_records_as_run(scenario: dict[str, Any]) -> None:
    """`replay` of the same Kafka messages gives the hook the same records as `run` did."""
    ids = set(scenario["ids"].values())

    def ours(m: dict[str, Any]) -> bool:
        p = m["payload"] or {}
        row = p.get("after") or p.get("before") or {}
        return isinstance(row, dict) and row.get("id") in ids

    msgs = read_until(["shop.public.orders", "inv.inventory.products"],
                      lambda ms: sum(ours(m) for m in ms) >= len(scenario["rows"]))
    lines = [json.dumps({k: m[k] for k in ("topic", "partition", "offset", "key", "value")}) for m in msgs if ours(m)]
    path = scenario["tmp"] / "replay.jsonl"
    path.write_text("\n".join(lines) + "\n")
    run = f"replay-{uuid.uuid4().hex[:8]}"
    r = subprocess.run([sys.executable, "-m", "sidecar", "replay", str(path), "--config", str(scenario["config"])],
                       env={**os.environ, "TEST_RUN": run}, capture_output=True, text=True,
                       timeout=120, cwd=REPO, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    replayed = {x.event_id: rec(x) for x in calls(run)}
    ran = {x.event_id: rec(x) for x in scenario["rows"]}
    assert replayed == ran


def test_snapshot_rows_of_existing_data(connectors: list[str], tmp_path: Path) -> None:
    """Rows present before a connector starts arrive as snapshot rows (_op='r')."""
    base = new_id_base()
    execute(PG_URL, "INSERT INTO customers (id, email) VALUES (:a, 'a@x'), (:b, 'b@x')", {"a": base, "b": base + 1})
    prefix = f"snap{uuid.uuid4().hex[:6]}"
    env = {"PG_CONNECTOR_NAME": prefix, "PG_TOPIC_PREFIX": prefix, "PG_SLOT_NAME": prefix,
           "PG_PUBLICATION_NAME": prefix, "PG_TABLE_INCLUDE_LIST": "public.customers",
           "PG_PORT": str(PORTS["postgres"])}
    name = cx.apply(CONNECT, REPO / "connectors" / "postgres-shop.json", {**os.environ, **env})
    try:
        cx.wait_running(CONNECT, name, 90)
        run = f"snap-{uuid.uuid4().hex[:8]}"
        cfg = sidecar_config(tmp_path, group=f"it-{run}", topics=[f"{prefix}.public.customers"])
        with sidecar(cfg, run, tmp_path / "sidecar.log"):
            rows = wait_for("snapshot rows", lambda: (r := [x for x in calls(run) if x.record_id in (base, base + 1)])
                            and len(r) >= 2 and r, timeout=90)
        assert {r.op for r in rows} == {"r"}
        assert {rec(r)["record"]["_op"] for r in rows} == {"r"}
        assert {rec(r)["record"]["email"] for r in rows} == {"a@x", "b@x"}
    finally:
        cx.delete(CONNECT, name)
        wait_for("slot released", lambda: not query(
            PG_URL, "SELECT 1 FROM pg_replication_slots WHERE slot_name = :s AND active", {"s": prefix}), timeout=30)
        execute(PG_URL, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE slot_name = :s AND NOT active", {"s": prefix})
        execute(PG_URL, f"DROP PUBLICATION IF EXISTS {prefix}")


def test_check_command_exit_codes(tmp_path: Path) -> None:
    """`check` exits 0 on the stack, 5 when the broker is unreachable, 4 when a database is."""
    cfg = sidecar_config(tmp_path, group="it-check", topics=["shop.public.orders"])

    def check(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sidecar", "check", "--config", str(cfg), "--timeout", "3"],
                              env={**os.environ, **extra}, capture_output=True, text=True,
                              timeout=60, cwd=REPO, check=False)

    ok = check({})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "kafka: ok" in ok.stdout
    broker = check({"SIDECAR_SOURCE__KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert broker.returncode == 5, broker.stdout + broker.stderr
    db = check({"SIDECAR_DATABASES__AUXILIARY__CALLS": f"mysql+pymysql://sidecar:wrong@127.0.0.1:{PORTS['mariadb']}/x"})
    assert db.returncode == 4 and "auxiliary.calls" in db.stderr
    assert "wrong" not in db.stderr  # the password is masked
