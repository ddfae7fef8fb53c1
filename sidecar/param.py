"""The hook API: `CheckpointParam` and `PipelineContext` (public, keep stable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.engine import Engine

from sidecar.events import ChangeEvent, DecodeError, Op, TransactionInfo
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


class CheckpointParam:
    """What a checkpoint hook receives for one call: one committed record (record mode), or a
    committed transaction or a batch (`records`, in commit order; `record` is the first).

    Read-only. From the dispatcher, `ctx`, `logger`, `record` and `records` are built when a
    hook first reads them (a hook that never reads its record never pays for decoding it);
    a value that cannot be decoded raises `sidecar.events.DecodeError` then, and the call is
    handled as a decode failure (dead letter with the reason), even if the hook catches it."""

    __slots__ = ("_ctx", "_lazy", "_logger", "_record", "_records", "auxiliary_db", "decode_error", "destination_db",
                 "hook", "source_db")

    source_db: Engine | None
    destination_db: Engine | None
    auxiliary_db: Mapping[str, Engine]
    hook: str  # the hook's configured name (the ledger's key, metrics' label)
    decode_error: DecodeError | None  # set when reading the record failed to decode
    _ctx: PipelineContext | None
    _logger: Any
    _record: dict[str, Any] | None
    _records: list[dict[str, Any]] | None
    _lazy: _Lazy | None

    def __init__(self, ctx: PipelineContext, logger: Any, record: dict[str, Any],
                 source_db: Engine | None = None, destination_db: Engine | None = None,
                 auxiliary_db: Mapping[str, Engine] | None = None, records: list[dict[str, Any]] | None = None,
                 hook: str = "") -> None:
        _set = object.__setattr__
        _set(self, "_ctx", ctx)
        _set(self, "_logger", logger)
        _set(self, "_record", record)
        _set(self, "_records", records if records else [record])  # record mode: records == [record]
        _set(self, "source_db", source_db)
        _set(self, "destination_db", destination_db)
        _set(self, "auxiliary_db", {} if auxiliary_db is None else auxiliary_db)
        _set(self, "hook", hook)
        _set(self, "decode_error", None)
        _set(self, "_lazy", None)

    @property
    def ctx(self) -> PipelineContext:
        ctx = self._ctx
        if ctx is None:
            ctx = self._build("_ctx")
        return cast(PipelineContext, ctx)

    @property
    def logger(self) -> Any:
        logger = self._logger
        if logger is None:
            logger = self._build("_logger")
        return logger

    @property
    def record(self) -> dict[str, Any]:
        record = self._record
        if record is None:
            if self._lazy is not None and self._lazy.call is not None:
                record = self.records[0]
                object.__setattr__(self, "_record", record)
            else:
                record = self._build("_record")
        return cast("dict[str, Any]", record)

    @property
    def records(self) -> list[dict[str, Any]]:
        records = self._records
        if records is None:
            if self._lazy is not None and self._lazy.call is not None:
                records = self._build("_records")
            else:
                records = [self.record]
                object.__setattr__(self, "_records", records)
        return cast("list[dict[str, Any]]", records)

    def _build(self, name: str) -> Any:
        lazy = self._lazy
        assert lazy is not None
        try:
            value = lazy.build(name)
        except DecodeError as exc:
            if self.decode_error is None:
                object.__setattr__(self, "decode_error", exc)
            raise
        object.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CheckpointParam):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _PARAM_FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "CheckpointParam(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in _PARAM_FIELDS) + ")"


_PARAM_FIELDS = ("ctx", "logger", "record", "source_db", "destination_db", "auxiliary_db", "records", "hook")


class _Lazy:
    """How the dispatcher's params build their parts on first read (one record, or a call's)."""

    __slots__ = ("call", "events", "factory", "spec")

    def __init__(self, factory: ParamFactory, spec: HookSpec, events: Sequence[ChangeEvent],
                 call: tuple[str, TransactionInfo] | None) -> None:
        self.factory = factory
        self.spec = spec
        self.events = events
        self.call = call  # transaction/batch calls: (call id, transaction)

    def build(self, name: str) -> Any:
        factory = self.factory
        events = self.events
        if name == "_record":
            return factory.record(events[0])
        if name == "_records":
            return [factory.record(e) for e in events]
        event = events[0]
        if name == "_ctx":
            ctx = build_context(event, factory.pipeline)
            if self.call is not None:
                ctx = replace(ctx, event_id=self.call[0], transaction=self.call[1])
            return ctx
        if self.call is None:  # _logger
            return LazyLogger(factory.log, {"pipeline": factory.pipeline, "table": event.table, "op": event.op,
                                            "event_id": event.event_id, "hook": self.spec.name})
        call_id, tx = self.call
        return LazyLogger(factory.log, {"pipeline": factory.pipeline, "hook": self.spec.name, "event_id": call_id,
                                        "transaction_id": tx.id, "records": len(events)})


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

    def record(self, event: ChangeEvent) -> dict[str, Any]:
        return build_record(event, self.source_tables.get(event.table))

    def params(self, event: ChangeEvent, hooks: Sequence[HookSpec]) -> list[CheckpointParam]:
        """One param per hook, each built when the hook reads it: its own record dict (one hook
        cannot change what another sees), `ctx`, `logger`."""
        return [self.param(event, hook) for hook in hooks]

    def param(self, event: ChangeEvent, hook: HookSpec) -> CheckpointParam:
        param = self._deferred(hook, (event,), None)
        if hook.timeout_s is not None:  # its own cancel flag and deadline, from now
            self._timed(param, hook.timeout_s)
        return param

    def call_param(self, events: Sequence[ChangeEvent], hook: HookSpec, call_id: str,
                   transaction: TransactionInfo) -> CheckpointParam:
        """The param of a transaction or batch call: every record of `events` (in commit order).
        `ctx` is the first event's, with `event_id` = the call's id and `transaction` = the call's."""
        param = self._deferred(hook, events, (call_id, transaction))
        if hook.timeout_s is not None:
            self._timed(param, hook.timeout_s)
        return param

    def _deferred(self, hook: HookSpec, events: Sequence[ChangeEvent],
                  call: tuple[str, TransactionInfo] | None) -> CheckpointParam:
        param = CheckpointParam.__new__(CheckpointParam)
        _set = object.__setattr__
        _set(param, "_ctx", None)
        _set(param, "_logger", None)
        _set(param, "_record", None)
        _set(param, "_records", None)
        dbs = self.databases
        _set(param, "source_db", dbs.source)
        _set(param, "destination_db", dbs.destination)
        _set(param, "auxiliary_db", dbs.auxiliary)
        _set(param, "hook", hook.name)
        _set(param, "decode_error", None)
        _set(param, "_lazy", _Lazy(self, hook, events, call))
        return param

    @staticmethod
    def _timed(param: CheckpointParam, timeout_s: float) -> None:
        """A hook with a timeout: the dispatcher sets `ctx.cancelled` when it gives up, so the
        context exists from the start (a decode failure in it is the call's, when read)."""
        try:
            ctx = param.ctx
        except DecodeError:
            return
        object.__setattr__(param, "_ctx", replace(ctx, cancelled=threading.Event(),
                                                  deadline=time.time() + timeout_s))
