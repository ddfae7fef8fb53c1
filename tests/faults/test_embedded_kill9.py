"""Embedded mode: kill -9 the sidecar (and its in-process engine) while rows are committed.

Every committed id reaches the hook at least once (calls recorded in MariaDB), and the
duplicates stay within kills × max.batch.size (the engine acknowledges a batch only after
its hooks finished, and flushes offsets after every batch).
"""

from __future__ import annotations

import random
import signal
import subprocess
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


def diagnose(exc: AssertionError, proc: subprocess.Popen[bytes], run: str, lo: int, hi: int,
             progress: list[int], log: Path) -> str:
    """What a failed wait needs to tell lost from stalled: the sidecar's state, the ids missing at
    the hook (as ranges), the rows in the source table and the log's tail."""
    seen = {int(r[0]) for r in query(AUX_URL, "SELECT DISTINCT record_id FROM hook_calls WHERE test_run = :r "
                                              "AND record_id BETWEEN :lo AND :hi", {"r": run, "lo": lo, "hi": hi})}
    runs: list[list[int]] = []  # missing ids as [first, last] offsets from lo
    for i in range(hi - lo + 1):
        if lo + i in seen:
            continue
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    missing = sum(b - a + 1 for a, b in runs)
    ranges = [str(a) if a == b else f"{a}-{b}" for a, b in runs]
    in_table = query(PG_URL, "SELECT COUNT(*) FROM load_rows WHERE id BETWEEN :lo AND :hi", {"lo": lo, "hi": hi})[0][0]
    state = "running" if proc.poll() is None else f"exited {proc.returncode}"
    return (f"{exc}\nsidecar {state}; progress at kills {progress}; rows in the table {in_table}; "
            f"{missing} ids missing at the hook (offsets from {lo}): "
            f"{', '.join(ranges[:20])}{' …' if len(ranges) > 20 else ''}\n"
            f"log tail:\n{log.read_text(errors='replace')[-6000:]}")


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
        try:
            wait_for("every id at the hook", lambda: distinct_seen(run, lo, hi) >= ROWS, timeout=300, every=2)
        except AssertionError as exc:
            raise AssertionError(diagnose(exc, proc, run, lo, hi, progress, log)) from None
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
