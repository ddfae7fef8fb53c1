"""The hook API: `CheckpointParam` and `PipelineContext` (public, keep stable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from sidecar.events import ChangeEvent, Op, TransactionInfo
from sidecar.logs import LazyLogger

if TYPE_CHECKING:
    from sidecar.databases import Databases
    from sidecar.hooks import HookSpec

# Hooks without a timeout share one never-set event (an Event per record costs ~2 µs); a hook
# with `timeout_s` gets its own per call, set when the call is given up on or at shutdown.
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



class ParamFactory:
    """Builds the CheckpointParam each hook gets for an event (shared by the dispatcher and
    `sidecar.testing`). Each hook gets its own record dict, so one hook cannot change what
    another sees."""

    def __init__(self, pipeline: str, databases: Databases, logger: Any,
                 source_tables: Mapping[str, str | None] | None = None) -> None:
        self.pipeline = pipeline
        self.databases = databases
        self.log = logger
        self.source_tables = source_tables or {}

    def params(self, event: ChangeEvent, hooks: Sequence[HookSpec]) -> list[CheckpointParam]:
        record = build_record(event, self.source_tables.get(event.table))
        ctx = build_context(event, self.pipeline)
        base = LazyLogger(
            self.log, {"pipeline": self.pipeline, "table": event.table, "op": event.op, "event_id": event.event_id}
        )
        dbs = self.databases
        last = len(hooks) - 1
        out = []
        for i, hook in enumerate(hooks):
            hook_ctx = ctx
            if hook.timeout_s is not None:  # its own cancel flag and deadline
                hook_ctx = replace(ctx, cancelled=threading.Event(), deadline=time.time() + hook.timeout_s)
            out.append(
                CheckpointParam(
                    ctx=hook_ctx,
                    logger=base.bind(hook=hook.name),
                    record=record if i == last else dict(record),
                    source_db=dbs.source,
                    destination_db=dbs.destination,
                    auxiliary_db=dbs.auxiliary,
                )
            )
        return out
