"""Test hook for transaction/batch calls: one row per call in sidecar_aux.hook_calls.

record_id = the first record's id, event_id = the call id, tbl = the transaction id ("-" for
a batch), op = "T" (transaction) or "B" (batch), record_json = the call: its records
(table, id, op, _event_id) in order, event_count, per-table counts, part, last.
TEST_RUN (env) tags the rows of one test; TX_HOOK_SLEEP_S (env) makes each call that much slower.
"""

from __future__ import annotations

import os
import time

import orjson
from sqlalchemy import text

from sidecar import CheckpointParam

INSERT = text(
    "INSERT INTO hook_calls (test_run, record_id, event_id, tbl, op, record_json, pid) "
    "VALUES (:run, :rid, :eid, :tbl, :op, :rec, :pid)"
)


def checkpoint(param: CheckpointParam) -> None:
    time.sleep(float(os.environ.get("TX_HOOK_SLEEP_S", "0")))
    tx = param.ctx.transaction
    rid = param.record.get("id")
    call = {
        "records": [[r["_destination_table"], r.get("id"), r["_op"], r["_event_id"]] for r in param.records],
        "event_count": tx.event_count if tx else None,
        "counts": tx.counts if tx else {},
        "part": tx.part if tx else None,
        "last": tx.last if tx else None,
    }
    with param.auxiliary_db["calls"].begin() as conn:
        conn.execute(INSERT, {
            "run": os.environ.get("TEST_RUN", "default"),
            "rid": rid if isinstance(rid, int) else -1,
            "eid": param.ctx.event_id,
            "tbl": (tx.id if tx and tx.id else "-"),
            "op": "T" if tx and tx.id else "B",
            "rec": orjson.dumps(call).decode(),
            "pid": os.getpid(),
        })
