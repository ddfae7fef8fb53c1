"""The hook API: `CheckpointParam` and `PipelineContext` (public, keep stable)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from sidecar.events import ChangeEvent, Op, TransactionInfo

# Until per-hook timeouts exist nothing cancels a hook: one shared, never-set event
# (an Event per record costs ~2 µs).
NOT_CANCELLED = threading.Event()


@dataclass(frozen=True, slots=True)
class PipelineContext:
    """Where a record comes from: pipeline, change, position. `event_id` is the idempotency key."""

    name: str
    event_id: str
    op: Op
    table: str
    before: Mapping[str, Any] | None
    source: Mapping[str, Any]
    transaction: TransactionInfo | None
    topic: str | None
    partition: int | None
    offset: int | None
    deadline: float | None = None
    cancelled: threading.Event = NOT_CANCELLED


@dataclass(frozen=True, slots=True)
class CheckpointParam:
    """What a checkpoint hook receives for one committed record."""

    ctx: PipelineContext
    logger: Any
    record: dict[str, Any]
    source_db: Engine | None = None
    destination_db: Engine | None = None
    auxiliary_db: Mapping[str, Engine] = field(default_factory=dict)


def build_record(
    event: ChangeEvent, source_table: str | None
) -> dict[str, Any]:
    """The row hooks see: after-image (before-image for deletes; empty for TRUNCATE) + metadata."""
    if event.op == "d":
        row = event.before
    elif event.op == "t":
        row = None
    else:
        row = event.after
    record: dict[str, Any] = dict(row) if row else {}
    record["_op"] = event.op
    record["_destination_table"] = event.table
    record["_source_table"] = source_table
    record["_committed_at"] = event.committed_at
    record["_transaction_id"] = event.transaction.group_id if event.transaction else None
    return record


def build_context(event: ChangeEvent, pipeline: str, deadline: float | None = None) -> PipelineContext:
    raw = event.raw
    return PipelineContext(
        name=pipeline,
        event_id=event.event_id,
        op=event.op,
        table=event.table,
        before=event.before,
        source=event.source,
        transaction=event.transaction,
        topic=raw.topic if raw.partition is not None else None,
        partition=raw.partition,
        offset=raw.offset,
        deadline=deadline,
    )

