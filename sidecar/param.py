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
    """What a checkpoint hook receives for one call: one committed record (record mode), or a
    committed transaction or a batch (`records`, in commit order; `record` is the first)."""

    ctx: PipelineContext
    logger: Any
    record: dict[str, Any]
    source_db: Engine | None = None
    destination_db: Engine | None = None
    auxiliary_db: Mapping[str, Engine] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    hook: str = ""  # the hook's configured name (the ledger's key, metrics' label)

    def __post_init__(self) -> None:
        if not self.records:  # record mode: records == [record]
            object.__setattr__(self, "records", [self.record])


def build_record(
    event: ChangeEvent, source_table: str | None
) -> dict[str, Any]:
    """The row hooks see: after-image (before-image for deletes; empty for TRUNCATE) + metadata
    (`_op`, `_destination_table`, `_source_table`, `_committed_at`, `_transaction_id`, `_event_id`)."""
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
    record["_event_id"] = event.event_id
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
            rec = record if i == last else dict(record)
            out.append(
                CheckpointParam(
                    ctx=hook_ctx,
                    logger=base.bind(hook=hook.name),
                    record=rec,
                    source_db=dbs.source,
                    destination_db=dbs.destination,
                    auxiliary_db=dbs.auxiliary,
                    records=[rec],
                    hook=hook.name,
                )
            )
        return out

    def call_param(self, events: Sequence[ChangeEvent], hook: HookSpec, call_id: str,
                   transaction: TransactionInfo) -> CheckpointParam:
        """The param of a transaction or batch call: every record of `events` (in commit order).
        `ctx` is the first event's, with `event_id` = the call's id and `transaction` = the call's."""
        records = [build_record(e, self.source_tables.get(e.table)) for e in events]
        ctx = replace(build_context(events[0], self.pipeline), event_id=call_id, transaction=transaction)
        if hook.timeout_s is not None:
            ctx = replace(ctx, cancelled=threading.Event(), deadline=time.time() + hook.timeout_s)
        logger = LazyLogger(self.log, {"pipeline": self.pipeline, "hook": hook.name, "event_id": call_id,
                                       "transaction_id": transaction.id, "records": len(records)})
        dbs = self.databases
        return CheckpointParam(ctx=ctx, logger=logger, record=records[0], source_db=dbs.source,
                               destination_db=dbs.destination, auxiliary_db=dbs.auxiliary, records=records,
                               hook=hook.name)
