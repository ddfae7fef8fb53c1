"""Example hook: per-pipeline, per-table last commit time and an *exact* event count.

Works in every mode; meant for `mode: transaction` (or `batch`): one auxiliary transaction
per call, one upsert per table. The ledger (`sidecar.ledger.claim`, table
`checkpoint_ledger`, created by `checkpoint-sidecar ledger create --database audit`) records
each record's `_event_id` in the same transaction as the counts, so a redelivered record is
never counted twice. The last commit time only moves forward (GREATEST).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sidecar import CheckpointParam
from sidecar.ledger import claim

UPSERT = (
    "INSERT INTO pipeline_stats (pipeline, destination_table, last_committed_at, events) "
    "VALUES (%s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE events = events + VALUES(events), "
    "last_committed_at = GREATEST(COALESCE(last_committed_at, VALUES(last_committed_at)), "
    "VALUES(last_committed_at)), updated_at = CURRENT_TIMESTAMP(6)"
)
"""Driver SQL (`conn.exec_driver_sql`): (pipeline, table, committed_at, events)."""


def per_table(records: list[dict[str, Any]], applied: set[str]) -> dict[str, tuple[int, datetime | None]]:
    """(count, latest commit time) per destination table of the records not applied before."""
    out: dict[str, tuple[int, datetime | None]] = {}
    for record in records:
        if record["_event_id"] in applied:
            continue
        table = record["_destination_table"]
        count, latest = out.get(table, (0, None))
        committed = record["_committed_at"]
        if committed is not None and (latest is None or committed > latest):
            latest = committed
        out[table] = (count + 1, latest)
    return out


def checkpoint(param: CheckpointParam) -> None:
    with param.auxiliary_db["audit"].begin() as conn:
        applied = claim(conn, param)
        for table, (count, latest) in sorted(per_table(param.records, applied).items()):
            conn.exec_driver_sql(UPSERT, (param.ctx.name, table,
                                          None if latest is None else latest.replace(tzinfo=None), count))
    if applied:
        param.logger.info("records already counted by an earlier delivery", already=len(applied))
