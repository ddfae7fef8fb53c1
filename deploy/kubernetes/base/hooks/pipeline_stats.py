"""Example hook: upsert per-pipeline, per-table last commit time and event count.

The count is "events seen" and may count a redelivered event twice; the last commit time
only moves forward (GREATEST), so redeliveries never move it back.
"""

from __future__ import annotations

from sqlalchemy import text

from sidecar import CheckpointParam

UPSERT = text(
    "INSERT INTO pipeline_stats (pipeline, destination_table, last_committed_at, events) "
    "VALUES (:pipeline, :table, :committed_at, 1) "
    "ON DUPLICATE KEY UPDATE events = events + 1, "
    "last_committed_at = GREATEST(COALESCE(last_committed_at, VALUES(last_committed_at)), "
    "VALUES(last_committed_at)), updated_at = CURRENT_TIMESTAMP(6)"
)


def checkpoint(param: CheckpointParam) -> None:
    committed = param.record["_committed_at"]
    with param.auxiliary_db["audit"].begin() as conn:
        conn.execute(
            UPSERT,
            {
                "pipeline": param.ctx.name,
                "table": param.record["_destination_table"],
                "committed_at": None if committed is None else committed.replace(tzinfo=None),
            },
        )
