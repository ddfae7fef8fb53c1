"""Test hook: records every call in sidecar_aux.hook_calls (a database table, not memory).

TEST_RUN (env) tags the rows of one test; RECORD_FAIL_EVERY=N makes ids divisible by N fail;
RECORD_HANG_EVERY=N makes them hang until cancelled (for timeouts).
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import text

from sidecar import UNAVAILABLE, CheckpointParam

INSERT = text(
    "INSERT INTO hook_calls (test_run, record_id, event_id, tbl, op, record_json, pid) "
    "VALUES (:run, :rid, :eid, :tbl, :op, :rec, :pid)"
)


def _default(value: Any) -> Any:
    if value is UNAVAILABLE:
        return "<UNAVAILABLE>"
    if isinstance(value, Decimal | UUID | timedelta):
        return f"{type(value).__name__}:{value}"
    if isinstance(value, datetime | date | time):
        return f"{type(value).__name__}:{value.isoformat()}"
    if isinstance(value, bytes):
        return f"bytes:{value.hex()}"
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(type(value).__name__)


def _tag(row: Any) -> Any:
    # orjson would write UUIDs and datetimes as bare strings: tag them so tests see the type.
    if not isinstance(row, dict):
        return row
    return {k: (_default(v) if isinstance(v, UUID | datetime | date | time) else v) for k, v in row.items()}


def dumps(record: dict[str, Any], before: Any) -> str:
    return orjson.dumps({"record": _tag(record), "before": _tag(before)}, default=_default,
                        option=orjson.OPT_NON_STR_KEYS).decode()


def checkpoint(param: CheckpointParam) -> None:
    rid = param.record.get("id")
    hang_every = int(os.environ.get("RECORD_HANG_EVERY", "0"))
    if hang_every and isinstance(rid, int) and rid % hang_every == 0:
        param.ctx.cancelled.wait(3600)  # hangs until the sidecar gives up on it (timeout) and cancels
        return
    fail_every = int(os.environ.get("RECORD_FAIL_EVERY", "0"))
    if fail_every and isinstance(rid, int) and rid % fail_every == 0:
        raise RuntimeError(f"test failure for id {rid}")
    with param.auxiliary_db["calls"].begin() as conn:
        conn.execute(
            INSERT,
            {
                "run": os.environ.get("TEST_RUN", "default"),
                "rid": rid if isinstance(rid, int) else -1,
                "eid": param.ctx.event_id,
                "tbl": param.ctx.table,
                "op": param.ctx.op,
                "rec": dumps(param.record, param.ctx.before),
                "pid": os.getpid(),
            },
        )
