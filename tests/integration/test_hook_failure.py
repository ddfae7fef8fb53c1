"""A failing hook holds its partition: retried with backoff, never skipped, resumed after a fix."""

from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import text

from tests.integration.kafka_read import committed, watermark
from tests.integration.stack import (
    KAFKA,
    PG_URL,
    REPO,
    calls,
    engine,
    new_id_base,
    sidecar,
    sidecar_config,
    wait_for,
)

TOPIC = "shop.public.load_rows"


def _offsets(group: str) -> int:
    return committed(group, TOPIC)


def _watermark() -> int | None:
    return watermark(TOPIC)


def test_failing_record_blocks_partition_until_fixed(connectors: list[str], tmp_path: Path) -> None:
    """Rows before a failing id pass; it and later rows wait (offset held); a fixed hook finishes them all."""
    base = new_id_base() + 100  # base + 10 is the one failing id (fail every 10th id, only ids > base)
    before = _watermark() or 0
    with engine(PG_URL).begin() as conn:
        conn.execute(text("INSERT INTO load_rows (id, batch) VALUES (:id, -1)"), {"id": base - 99})
    # Our rows then sit at offsets start, start+1, ... (one message per transaction, one partition).
    start = wait_for("the warm-up row on the topic", lambda: (w := _watermark()) and w > before and w, timeout=60)
    run = f"fail-{uuid.uuid4().hex[:8]}"
    group = f"it-{run}"
    c = Consumer({"bootstrap.servers": KAFKA, "group.id": group})
    c.commit(offsets=[TopicPartition(TOPIC, 0, start)], asynchronous=False)
    c.close()
    # Ids base+1 .. base+15 in separate transactions, so each is its own message; base+10 fails.
    for i in range(1, 16):
        with engine(PG_URL).begin() as conn:
            conn.execute(text("INSERT INTO load_rows (id, batch) VALUES (:id, 0)"), {"id": base + i})
    hooks = {"record": {"path": str(REPO / "tests/hooks/record_calls.py"), "tables": ["public.load_rows"],
                        "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0, "max_attempts": None}}}
    cfg = sidecar_config(tmp_path, group=group, topics=[TOPIC], hooks=hooks)
    log = tmp_path / "sidecar.log"
    ours = range(base + 1, base + 16)
    with sidecar(cfg, run, log, {"RECORD_FAIL_EVERY": str(base + 10)}):
        def seen() -> set[int]:
            return {r.record_id for r in calls(run)} & set(ours)

        wait_for("the rows before the failing one", lambda: len(seen()) >= 9, timeout=60)
        wait_for("several retries", lambda: log.read_text().count('"retrying hook"') >= 3, timeout=60)
        assert seen() == set(range(base + 1, base + 10))  # nothing past the failure
    held = _offsets(group)
    assert held == start + 9, "the committed offset must stop at the failing record"
    text_log = log.read_text()
    assert "test failure for id" in text_log and '"exception"' in text_log  # logged with its traceback
    # The hook is fixed (no failure env): the failing row and every later one now arrive.
    with sidecar(cfg, run, tmp_path / "sidecar-fixed.log"):
        wait_for("all rows after the fix", lambda: seen() >= set(ours), timeout=60)
    seen = [r.record_id for r in calls(run) if r.record_id in ours]
    assert sorted(set(seen)) == list(ours)
    assert _offsets(group) >= start + 15
