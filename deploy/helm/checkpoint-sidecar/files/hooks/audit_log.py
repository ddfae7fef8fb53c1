"""Example hook: one audit row per committed record, idempotent on event_id.

Config: an auxiliary database named `audit` holding `pipeline_audit_log`
(see deploy/local/mariadb-init.sql). A redelivered event hits the primary key and
changes nothing, so running twice is safe.
"""

from __future__ import annotations

from sqlalchemy import text

from sidecar import CheckpointParam

INSERT = text(
    "INSERT INTO pipeline_audit_log "
    "(event_id, pipeline, destination_table, source_table, op, record_key, committed_at) "
    "VALUES (:event_id, :pipeline, :destination_table, :source_table, :op, :record_key, :committed_at) "
    "ON DUPLICATE KEY UPDATE event_id = event_id"
)


def checkpoint(param: CheckpointParam) -> None:
    record = param.record
    committed = record["_committed_at"]
    key = record.get("id")
    with param.auxiliary_db["audit"].begin() as conn:
        conn.execute(
            INSERT,
            {
                "event_id": param.ctx.event_id,
                "pipeline": param.ctx.name,
                "destination_table": record["_destination_table"],
                "source_table": record["_source_table"],
                "op": record["_op"],
                "record_key": None if key is None else str(key),
                "committed_at": None if committed is None else committed.replace(tzinfo=None),
            },
        )
    param.logger.info("checkpoint triggered", record_id=key)
