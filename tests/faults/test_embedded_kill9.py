"""Embedded mode: kill -9 the sidecar (and its in-process engine) while rows are committed.

Every committed id reaches the hook at least once (calls recorded in MariaDB), and the
duplicates stay within kills × max.batch.size (the engine acknowledges a batch only after
its hooks finished, and flushes offsets after every batch).
"""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from tests.integration.scenario import drop_slot, embedded_config, wait_streaming
from tests.integration.stack import AUX_URL, PG_URL, engine, new_id_base, query, start_sidecar, stop_sidecar, wait_for

ROWS = 5_000
BATCH_ROWS = 100
KILLS = 3
MAX_BATCH = 256


def distinct_seen(run: str, lo: int, hi: int) -> int:
    return int(query(AUX_URL, "SELECT COUNT(DISTINCT record_id) FROM hook_calls WHERE test_run = :r "
                              "AND record_id BETWEEN :lo AND :hi", {"r": run, "lo": lo, "hi": hi})[0][0])


def test_embedded_kill9_loses_nothing(tmp_path: Path) -> None:
    """5,000 rows, 3 × SIGKILL mid-stream: every id at the hook; duplicates ≤ kills × max.batch.size."""
    base = new_id_base()
    lo, hi = base, base + ROWS - 1
    run = f"embkill-{uuid.uuid4().hex[:8]}"
    slot = f"it_{run.replace('-', '_')}"
    cfg = embedded_config(tmp_path, run, slot, tables="public.load_rows",
                          extra={"max.batch.size": str(MAX_BATCH)})
    log = tmp_path / "sidecar.log"
    proc = start_sidecar(cfg, run, log)
    try:
        wait_streaming(run, base - 1, table="load_rows")

        def writer() -> None:
            for b in range(ROWS // BATCH_ROWS):
                rows = [{"id": base + b * BATCH_ROWS + i, "batch": b} for i in range(BATCH_ROWS)]
                with engine(PG_URL).begin() as conn:
                    conn.execute(text("INSERT INTO load_rows (id, batch) VALUES (:id, :batch)"), rows)
                time.sleep(0.3)

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        rnd = random.Random(7)
        kills = mid_stream = 0
        progress = [0]
        while kills < KILLS:
            wait_for("progress since the last kill", lambda: distinct_seen(run, lo, hi) > progress[-1], timeout=120)
            time.sleep(rnd.uniform(0.3, 1.5))
            mid_stream += w.is_alive()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            progress.append(distinct_seen(run, lo, hi))
            proc = start_sidecar(cfg, run, log)
        w.join(timeout=300)
        wait_for("every id at the hook", lambda: distinct_seen(run, lo, hi) >= ROWS, timeout=300, every=2)
    finally:
        code = stop_sidecar(proc)
        drop_slot(slot)
    assert code == 0
    total, distinct = query(AUX_URL, "SELECT COUNT(*), COUNT(DISTINCT record_id) FROM hook_calls WHERE test_run = :r "
                                     "AND record_id BETWEEN :lo AND :hi", {"r": run, "lo": lo, "hi": hi})[0]
    duplicates = total - distinct
    print(f"embedded kill9: rows={ROWS} kills={kills} mid_stream={mid_stream} calls={total} distinct={distinct} "
          f"duplicates={duplicates} bound={kills * MAX_BATCH} progress={progress}")
    assert distinct == ROWS
    assert mid_stream >= 2, "kills must land while rows are still being committed"
    assert duplicates <= kills * MAX_BATCH
