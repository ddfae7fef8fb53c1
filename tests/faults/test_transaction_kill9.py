"""kill -9 the sidecar while 5,000-row transactions flow through transaction hooks.

Every transaction-hook call must hold a whole transaction (its record count equals its END
`event_count`; never a part of one), no row may be lost, and `pipeline_stats` counting
through the ledger must end with exactly the number of rows committed, however many
records the kills made the sidecar see twice.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import yaml
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import text

from sidecar.ledger import create_table
from tests.integration.kafka_read import committed, watermark
from tests.integration.stack import (
    AUX_URL,
    KAFKA,
    PG_URL,
    REPO,
    engine,
    new_id_base,
    query,
    sidecar_config,
    start_sidecar,
    stop_sidecar,
    wait_for,
)

TRANSACTIONS = 8
ROWS = 5000  # per transaction: below max_transaction_records (10,000), so never in parts
KILLS = 3
COMMIT_S = 4.0
DATA, MARKERS = "shop.public.load_rows", "shop.transaction"


def test_kill9_during_large_transactions_never_splits_and_counts_exactly(connectors: list[str],
                                                                         tmp_path: Path) -> None:
    """8 transactions of 5,000 rows, 3 SIGKILLs mid-stream: every call is a whole transaction,
    every row reaches the hook, the ledger-backed stats count each row exactly once although
    whole transactions were delivered twice."""
    create_table(engine(AUX_URL))
    base = new_id_base()
    run = f"txk9-{uuid.uuid4().hex[:8]}"
    group = f"faults-{run}"
    pipeline = f"txk9-{run}"
    with engine(PG_URL).begin() as conn:  # the topic exists; start after it
        conn.execute(text("INSERT INTO load_rows (id, batch) VALUES (:id, -1)"), {"id": base - 1})
    wait_for("the load_rows topic", lambda: watermark(DATA), timeout=60)
    time.sleep(2)  # the probe's markers are written too
    starts = {t: wait_for(f"{t} watermark", lambda t=t: watermark(t), timeout=60) for t in (DATA, MARKERS)}
    c = Consumer({"bootstrap.servers": KAFKA, "group.id": group})
    c.commit(offsets=[TopicPartition(t, 0, o) for t, o in starts.items()], asynchronous=False)
    c.close()
    cfg = sidecar_config(tmp_path, group=group, topics=[DATA, MARKERS], pipeline=pipeline, hooks={
        "tx": {"path": str(REPO / "tests/hooks/record_tx_calls.py"), "mode": "transaction",
               "tables": ["public.load_rows"]},
        "pipeline_stats": {"path": str(REPO / "hooks/pipeline_stats.py"), "mode": "transaction",
                           "tables": ["public.load_rows"]},
    }, settings={"group.instance.id": f"{run}-member"})
    # Commits lag the hooks by up to COMMIT_S: kills land between a call's aux commit and the
    # offset commit, so whole transactions are redelivered and the ledger has work to do.
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["kafka"].update(commit_interval_s=COMMIT_S, max_uncommitted=1_000_000)
    cfg.write_text(yaml.safe_dump(doc))

    def writer() -> None:
        for b in range(TRANSACTIONS):
            rows = [{"id": base + b * ROWS + i, "batch": b} for i in range(ROWS)]
            with engine(PG_URL).begin() as conn:
                conn.execute(text("INSERT INTO load_rows (id, batch) VALUES (:id, :batch)"), rows)
            time.sleep(3.0)

    log = tmp_path / "sidecar.log"
    proc = start_sidecar(cfg, run, log)
    w = threading.Thread(target=writer, daemon=True)
    w.start()
    rnd = random.Random(7)
    offsets = [committed(group, DATA)]
    kills = mid_stream = 0
    while kills < KILLS:
        wait_for("progress since the last kill", lambda: committed(group, DATA) > offsets[-1], timeout=120)
        time.sleep(rnd.uniform(0.5, COMMIT_S - 0.5))
        mid_stream += w.is_alive()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kills += 1
        offsets.append(committed(group, DATA))
        proc = start_sidecar(cfg, run, log)
    w.join(timeout=300)
    assert not w.is_alive(), "writer did not finish"
    wanted = set(range(base, base + TRANSACTIONS * ROWS))

    def calls() -> list[dict[str, object]]:
        out = []
        for row in query(AUX_URL, "SELECT tbl, record_json, pid FROM hook_calls WHERE test_run = :r", {"r": run}):
            call = json.loads(row.record_json)
            out.append({"tx": row.tbl, "pid": row.pid, **call})
        return out

    def all_seen() -> bool:
        seen = {r[1] for c in calls() for r in c["records"]}  # type: ignore[attr-defined]
        return wanted <= seen

    try:
        wait_for("every row at the transaction hook", all_seen, timeout=600, every=3)
        stats_done = wait_for("stats counted every row", lambda: (n := query(
            AUX_URL, "SELECT events FROM pipeline_stats WHERE pipeline = :p AND destination_table = 'public.load_rows'",
            {"p": pipeline})) and n[0][0] >= len(wanted) and n, timeout=300, every=2)
        time.sleep(3)  # a late duplicate count would show now
    finally:
        code = stop_sidecar(proc)
    assert code == 0
    got = calls()
    ours = [c for c in got if any(r[1] in wanted for r in c["records"])]  # type: ignore[attr-defined]
    sizes = [len(c["records"]) for c in ours]  # type: ignore[arg-type]
    counts = [c["event_count"] for c in ours]
    seen = [r[1] for c in ours for r in c["records"]]  # type: ignore[attr-defined]
    events = query(AUX_URL, "SELECT events FROM pipeline_stats WHERE pipeline = :p "
                            "AND destination_table = 'public.load_rows'", {"p": pipeline})[0][0]
    pids = len({c["pid"] for c in got})
    print(f"txkill9: transactions={TRANSACTIONS}x{ROWS} kills={kills} mid_stream={mid_stream} calls={len(ours)} "
          f"sizes={sizes} redelivered_rows={len(seen) - len(set(seen))} stats_events={events} processes={pids} "
          f"offsets={offsets}")
    assert stats_done
    assert all(size == ROWS for size in sizes), sizes  # never a partial call
    assert all(count == ROWS for count in counts), counts
    assert all(c["part"] == 1 and c["last"] is True for c in ours)
    assert set(seen) == wanted  # nothing lost
    assert events == len(wanted)  # exact despite redeliveries
    assert kills == KILLS and mid_stream >= 2 and pids >= 2
    assert len(seen) > len(set(seen)), "no kill caused a redelivery: the ledger was not exercised"
