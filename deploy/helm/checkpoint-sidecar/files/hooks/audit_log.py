"""Example hook: one audit row per committed record, idempotent on the record's event id.

Works in every mode: a call's rows go in with one `executemany` in one auxiliary
transaction (`mode: transaction` or `batch`: many rows per round trip; `record`: one).
The rows are plain tuples passed to the driver (`exec_driver_sql`, `%s` placeholders):
SQLAlchemy's named-parameter handling (`text()` with a dict per row) costs ~8 µs of CPU per
row, a quarter of a 20-row call's, on the interpreter the sidecar's loop shares.
Config: an auxiliary database named `audit` holding `pipeline_audit_log`
(see deploy/local/mariadb-init.sql). A redelivered record hits the primary key and
changes nothing, so running twice is safe.
"""

from __future__ import annotations

from typing import Any

from sidecar import CheckpointParam

INSERT = (
    "INSERT INTO pipeline_audit_log "
    "(event_id, pipeline, destination_table, source_table, op, record_key, committed_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE event_id = event_id"
)
"""Driver SQL (`conn.exec_driver_sql`): one tuple per row, in `row`'s order."""


def row(pipeline: str, record: dict[str, Any]) -> tuple[Any, ...]:
    """(event_id, pipeline, destination_table, source_table, op, record_key, committed_at)."""
    committed = record["_committed_at"]
    key = record.get("id")
    return (
        record["_event_id"],
        pipeline,
        record["_destination_table"],
        record["_source_table"],
        record["_op"],
        None if key is None else str(key),
        None if committed is None else committed.replace(tzinfo=None),
    )


def checkpoint(param: CheckpointParam) -> None:
    rows = [row(param.ctx.name, r) for r in param.records]
    with param.auxiliary_db["audit"].begin() as conn:
        conn.exec_driver_sql(INSERT, rows)
    if len(rows) == 1:
        param.logger.info("checkpoint triggered", record_id=param.record.get("id"))
    else:
        param.logger.info("checkpoint triggered", records=len(rows), transaction_id=param.ctx.transaction.id
                          if param.ctx.transaction else None)
