"""Example hook: one audit row per committed record, idempotent on the record's event id.

Works in every mode: a call's rows go in with one `executemany` in one auxiliary
transaction (`mode: transaction` or `batch`: many rows per round trip; `record`: one).
Config: an auxiliary database named `audit` holding `pipeline_audit_log`
(see deploy/local/mariadb-init.sql). A redelivered record hits the primary key and
changes nothing, so running twice is safe.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from sidecar import CheckpointParam

INSERT = text(
    "INSERT INTO pipeline_audit_log "
    "(event_id, pipeline, destination_table, source_table, op, record_key, committed_at) "
    "VALUES (:event_id, :pipeline, :destination_table, :source_table, :op, :record_key, :committed_at) "
    "ON DUPLICATE KEY UPDATE event_id = event_id"
)


def row(pipeline: str, record: dict[str, Any]) -> dict[str, Any]:
    committed = record["_committed_at"]
    key = record.get("id")
    return {
        "event_id": record["_event_id"],
        "pipeline": pipeline,
        "destination_table": record["_destination_table"],
        "source_table": record["_source_table"],
        "op": record["_op"],
        "record_key": None if key is None else str(key),
        "committed_at": None if committed is None else committed.replace(tzinfo=None),
    }


def checkpoint(param: CheckpointParam) -> None:
    rows = [row(param.ctx.name, r) for r in param.records]
    with param.auxiliary_db["audit"].begin() as conn:
        conn.execute(INSERT, rows)
    if len(rows) == 1:
        param.logger.info("checkpoint triggered", record_id=param.record.get("id"))
    else:
        param.logger.info("checkpoint triggered", records=len(rows), transaction_id=param.ctx.transaction.id
                          if param.ctx.transaction else None)
