"""Scripted changes and the record assertions every source mode must pass (Kafka, embedded)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.integration.stack import (
    AUX_URL,
    INV_URL,
    PG_URL,
    PORTS,
    REPO,
    calls,
    execute,
    new_id_base,
    sidecar,
    sidecar_config,
    wait_for,
)

RECORD = str(REPO / "tests" / "hooks" / "record_calls.py")
AUDIT = str(REPO / "hooks" / "audit_log.py")
HOOKS = {"record": {"path": RECORD}, "audit_log": {"path": AUDIT, "tables": ["public.orders"]}}


def rec(row: Any) -> dict[str, Any]:
    return json.loads(row.record_json)  # type: ignore[no-any-return]


def by_id(rows: list[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for r in rows:
        out.setdefault(r.record_id, []).append(r)
    return out


def commit_changes(ids: dict[str, int], mariadb: bool) -> int:
    """The scripted changes; returns how many hook calls they make."""
    execute(PG_URL, "INSERT INTO orders (id, amount, status, details) VALUES (:a, 10.50, 'new', '{\"x\": 1}')", ids)
    execute(PG_URL, "UPDATE orders SET status = 'paid', amount = 11.00 WHERE id = :a", ids)
    execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:b, 1)", ids)
    execute(PG_URL, "DELETE FROM orders WHERE id = :b", ids)
    execute(PG_URL, "INSERT INTO orders (id, amount) VALUES (:c1, 1), (:c2, 2), (:c3, 3)", ids)  # one transaction
    execute(PG_URL, "UPDATE orders SET id = :c4 WHERE id = :c3", ids)  # primary-key update
    calls_made = 2 + 2 + 3 + 2  # a: c,u · b: c,d · c1-c3 · c3 d + c4 c
    if mariadb:
        execute(INV_URL, "INSERT INTO products (id, sku, name, price) VALUES (:p, 'S-1', 'Widget', 9.99)", ids)
        execute(INV_URL, "UPDATE products SET price = 12.50 WHERE id = :p", ids)
        execute(INV_URL, "DELETE FROM products WHERE id = :p", ids)
        calls_made += 3
    return calls_made


def new_ids() -> dict[str, int]:
    base = new_id_base()
    return {k: base + i for i, k in enumerate(["a", "b", "c1", "c2", "c3", "c4", "p", "probe"])}


def kafka_scenario(tmp: Path) -> dict[str, Any]:
    """Kafka mode: changes committed first (the connector already runs), then the sidecar reads them."""
    ids = new_ids()
    expected = commit_changes(ids, mariadb=True)
    run = f"it-{uuid.uuid4().hex[:8]}"
    cfg = sidecar_config(tmp, group=f"it-{run}", topics=["shop.public.orders", "inv.inventory.products"], hooks=HOOKS)
    log = tmp / "sidecar.log"
    with sidecar(cfg, run, log):
        rows = wait_for("hook calls for every change",
                        lambda: (r := [x for x in calls(run) if x.record_id in ids.values()])
                        and len(r) >= expected and r, timeout=90)
    return {"mode": "kafka", "ids": ids, "run": run, "rows": rows, "config": cfg, "tmp": tmp, "log": log}


def embedded_config(tmp: Path, run: str, slot: str, tables: str = "public.orders",
                    snapshot_mode: str = "no_data", extra: dict[str, Any] | None = None) -> Path:
    cfg = {
        "pipeline": "it-pipeline",
        "source": {"kind": "embedded", "embedded": {
            "connector": str(REPO / "connectors" / "postgres-shop.json"),
            "properties": {"slot.name": slot, "publication.name": slot, "topic.prefix": "shop",
                           "table.include.list": tables, "snapshot.mode": snapshot_mode,
                           "database.port": str(PORTS["postgres"]), **(extra or {})},
            "state_dir": str(tmp / f"state-{slot}"),
            "jvm_opts": ["-Xmx512m"],
        }},
        "databases": {"destination": PG_URL, "auxiliary": {"calls": AUX_URL, "audit": AUX_URL}},
        "tables": {"public.orders": {"source_table": "crm.orders"}},
        "hooks": HOOKS,
        "log": {"level": "info", "format": "json"},
    }
    path = tmp / f"embedded-{run}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


PROBES = {
    "orders": "INSERT INTO orders (id, amount) VALUES (:id, 0) "
              "ON CONFLICT (id) DO UPDATE SET status = clock_timestamp()::text",
    "load_rows": "INSERT INTO load_rows (id, batch) VALUES (:id, -1) "
                 "ON CONFLICT (id) DO UPDATE SET payload = clock_timestamp()::text",
}


def wait_streaming(run: str, probe_id: int, table: str = "orders") -> None:
    """Commit probe changes until the hook sees one: the engine is past its snapshot and streaming."""
    def seen() -> bool:
        execute(PG_URL, PROBES[table], {"id": probe_id})
        return any(r.record_id == probe_id for r in calls(run))

    wait_for("the embedded engine to stream", seen, timeout=120, every=1.0)


def embedded_scenario(tmp: Path) -> dict[str, Any]:
    """Embedded mode: start the engine (own slot), wait until it streams, then commit the changes."""
    ids = new_ids()
    run = f"emb-{uuid.uuid4().hex[:8]}"
    slot = f"it_{run.replace('-', '_')}"
    cfg = embedded_config(tmp, run, slot)
    log = tmp / "sidecar-embedded.log"
    try:
        with sidecar(cfg, run, log):
            wait_streaming(run, ids["probe"])
            offsets = tmp / f"state-{slot}" / "offsets.dat"
            kept = tmp / f"first-offsets-{slot}.dat"  # a hard link keeps the first inode allocated (not reused)

            def link_first() -> int | None:
                try:
                    os.link(offsets, kept)
                except FileNotFoundError:  # not flushed yet, or replaced just now: try again
                    return None
                return kept.stat().st_ino

            first_inode = wait_for("the first offsets flush", link_first)
            expected = commit_changes(ids, mariadb=False)
            wanted = {v for k, v in ids.items() if k not in ("p", "probe")}
            rows = wait_for("hook calls for every change",
                            lambda: (r := [x for x in calls(run) if x.record_id in wanted])
                            and len(r) >= expected and r, timeout=90)
            # Flushes after those batches: the file is replaced (a new inode), not rewritten in place.
            wait_for("a later offsets flush", lambda: offsets.stat().st_ino != first_inode, timeout=30)
    finally:
        drop_slot(slot)
    return {"mode": "embedded", "ids": ids, "run": run, "rows": rows, "config": cfg, "tmp": tmp, "log": log}


def drop_slot(slot: str) -> None:
    from tests.integration.stack import query

    wait_for("slot released", lambda: not query(
        PG_URL, "SELECT 1 FROM pg_replication_slots WHERE slot_name = :s AND active", {"s": slot}), timeout=30)
    execute(PG_URL, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = :s AND NOT active", {"s": slot})
    execute(PG_URL, f"DROP PUBLICATION IF EXISTS {slot}")


def assert_inserts_updates_deletes(scenario: dict[str, Any]) -> None:
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
    if scenario["mode"] == "kafka":  # the embedded engine has no MariaDB connector (see README)
        p = rows[ids["p"]]
        assert [r.op for r in p] == ["c", "u", "d"] and p[0].tbl == "inventory.products"
        assert rec(p[1])["before"]["price"] == "Decimal:9.99" and rec(p[1])["record"]["price"] == "Decimal:12.50"


def assert_multi_row_transaction_and_pk_update(scenario: dict[str, Any]) -> None:
    """Rows of one transaction share _transaction_id; a PK update is a delete then a create."""
    ids, rows = scenario["ids"], by_id(scenario["rows"])
    tx = {rec(rows[ids[k]][0])["record"]["_transaction_id"] for k in ("c1", "c2", "c3")}
    assert len(tx) == 1 and None not in tx
    assert [r.op for r in rows[ids["c3"]]] == ["c", "d"]
    assert [r.op for r in rows[ids["c4"]]] == ["c"]
    all_ids = [r.event_id for r in scenario["rows"]]
    assert len(all_ids) == len(set(all_ids))
