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
from tests.integration.scenario import (
    AUDIT,
    RECORD,
    assert_inserts_updates_deletes,
    assert_multi_row_transaction_and_pk_update,
    kafka_scenario,
    rec,
)
from tests.integration.stack import (
    AUX_URL,
    CONNECT,
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


@pytest.fixture(scope="module")
def scenario(connectors: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Commit a scripted set of changes once, run the sidecar over them, keep what the hooks saw."""
    return kafka_scenario(tmp_path_factory.mktemp("sidecar"))


def test_inserts_updates_deletes(scenario: dict[str, Any]) -> None:
    """Insert, update (before and after images), delete (before image) reach the hook with native values."""
    assert_inserts_updates_deletes(scenario)


def test_multi_row_transaction_and_pk_update(scenario: dict[str, Any]) -> None:
    """Rows of one transaction share _transaction_id; a PK update is a delete then a create."""
    assert_multi_row_transaction_and_pk_update(scenario)


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


def test_broker_probe_answers_for_the_real_broker_and_fails_for_a_closed_port() -> None:
    """The watcher's Kafka readiness check: a metadata request on its own client, bounded in time."""
    import socket
    import time

    from sidecar.errors import SourceError
    from sidecar.sources.kafka import BrokerProbe
    from tests.integration.stack import KAFKA

    BrokerProbe({"bootstrap.servers": KAFKA, "group.id": "probe-test", "group.instance.id": "x"})()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, not listening: connection refused
        started = time.monotonic()
        with pytest.raises(SourceError, match=f"Kafka at 127.0.0.1:{closed} did not answer"):
            BrokerProbe({"bootstrap.servers": f"127.0.0.1:{closed}"}, timeout_s=1.0)()
        assert time.monotonic() - started < 5
