"""Transaction hooks on the real Kafka with a second member coming and going: the first member
warns that it misses partitions, and after the partial revoke its kept partitions — which hold
records of transactions the revoke split — are fetched again and go on committing to the end.
(Before: they stopped committing at the first such record until a restart.)"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.stack import KAFKA, REPO, calls, sidecar, sidecar_config, wait_for
from tests.pipeline.test_transaction_rebalance import _event, _marker

TXHOOK = str(REPO / "tests" / "hooks" / "record_tx_calls.py")
TRANSACTIONS = 150


def fill(prefix: str) -> dict[tuple[str, int], int]:
    """Topics a (2 partitions), b, transaction; each transaction a row in a[0], b[0], a[1] plus
    BEGIN/END (the pipeline test's stream, with this prefix). Returns the end offset per partition."""
    a, b, markers = f"{prefix}.public.a", f"{prefix}.public.b", f"{prefix}.transaction"
    admin = AdminClient({"bootstrap.servers": KAFKA})
    for future in admin.create_topics([NewTopic(a, num_partitions=2, replication_factor=1),
                                       NewTopic(b, num_partitions=1, replication_factor=1),
                                       NewTopic(markers, num_partitions=1, replication_factor=1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 10})

    def put(topic: str, partition: int, value: bytes) -> None:
        producer.produce(topic, value=value.replace(b'"name":"shop"', f'"name":"{prefix}"'.encode()),
                         partition=partition)

    for tx in range(1, TRANSACTIONS + 1):
        put(markers, 0, _marker("BEGIN", tx))
        put(a, 0, _event("a", tx, 1, 3 * tx))
        put(b, 0, _event("b", tx, 2, 3 * tx + 1))
        put(a, 1, _event("a", tx, 3, 3 * tx + 2))
        put(markers, 0, _marker("END", tx))
    assert producer.flush(30) == 0
    return {(a, 0): TRANSACTIONS, (a, 1): TRANSACTIONS, (b, 0): TRANSACTIONS, (markers, 0): 2 * TRANSACTIONS}


def committed(group: str, ends: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": KAFKA, "group.id": group, "enable.auto.commit": "false"})
    try:
        got = c.committed([TopicPartition(t, p) for t, p in ends], timeout=10)
    finally:
        c.close()
    return {(tp.topic, tp.partition): tp.offset for tp in got}


def test_second_member_comes_and_goes_kept_partitions_go_on_committing(stack: None, tmp_path: Path) -> None:
    run = f"rb-{uuid.uuid4().hex[:8]}"
    prefix = f"itrb{uuid.uuid4().hex[:8]}"
    ends = fill(prefix)
    group = f"it-{run}"
    cfg = sidecar_config(tmp_path, group=group, topics=sorted({t for t, _ in ends}), hooks={
        "tx": {"path": TXHOOK, "mode": "transaction"}})
    doc = yaml.safe_load(cfg.read_text())
    doc["dispatch"] = {"transaction_end_timeout_s": 3.0, "revoke_wait_s": 1.0}
    cfg.write_text(yaml.safe_dump(doc))
    log1, log2 = tmp_path / "member1.log", tmp_path / "member2.log"
    slow = {"TX_HOOK_SLEEP_S": "0.1"}  # 150 calls: ~15 s of work queued when the second member joins
    with sidecar(cfg, run, log1, slow):
        wait_for("member 1's first calls", lambda: len(calls(run)) >= 3, timeout=60)
        with sidecar(cfg, run, log2, slow):
            wait_for("member 2 assigned some partitions", lambda: any(
                json.loads(line).get("event") == "partitions assigned" and json.loads(line).get("partitions")
                for line in log2.read_text().splitlines() if line.startswith("{")), timeout=60)
            time.sleep(2)
        # Member 2 left: member 1 owns everything again and must finish and commit all of it.
        wait_for("every partition committed to its end", lambda: committed(group, ends) == ends, timeout=90)
    events = [json.loads(line) for line in log1.read_text().splitlines() if line.startswith("{")]
    missing = [e for e in events if "does not own every captured partition" in e.get("event", "")]
    assert missing and all(e["missing_count"] >= 1 for e in missing), "member 1 warned it missed partitions"
    assert any("fetched again" in e.get("event", "") for e in events), "kept partitions were rewound"
    called = {tuple(r[:2]) for c in calls(run) for r in json.loads(c.record_json)["records"]}
    expected = {(f"public.{t}", 3 * tx + k) for tx in range(1, TRANSACTIONS + 1) for t, k in (("a", 0), ("b", 1),
                                                                                           ("a", 2))}
    assert called >= expected  # every record reached a call (at least once, across both members)
