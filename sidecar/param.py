"""The hook API: `CheckpointParam` and `PipelineContext` (public, keep stable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy.engine import Engine

from sidecar.databases import Auxiliary
from sidecar.events import ChangeEvent, DecodeError, Op, Rebuilt, TransactionInfo
from sidecar.logs import LazyLogger

if TYPE_CHECKING:
    from sidecar.databases import Databases
    from sidecar.hooks import HookSpec

# Hooks without a timeout share one never-set event (an Event per record costs ~2 µs); a hook
# with `timeout_s` gets its own per call, set when the call is given up on or at shutdown.
NOT_CANCELLED = threading.Event()


@dataclass(frozen=True, slots=True)
class PipelineContext(Rebuilt):
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

    def __init__(self, name: str, event_id: str, op: Op, table: str, before: Mapping[str, Any] | None,
                 source: Mapping[str, Any], transaction: TransactionInfo | None, topic: str | None,
                 partition: int | None, offset: int | None, deadline: float | None = None,
                 cancelled: threading.Event = NOT_CANCELLED) -> None:
        # (written out: compiled, it is a native one; see sidecar/events.py above RawMessage)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "before", before)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "transaction", transaction)
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "partition", partition)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "deadline", deadline)
        object.__setattr__(self, "cancelled", cancelled)


_SLOTS: Final = ("_call", "_cancel", "_ctx", "_dbs", "_deadline", "_decode_error", "_events", "_factory", "_hook",
                 "_logger", "_record", "_records", "_spec", "_where_kept")


class CheckpointParam:
    """What a checkpoint hook receives for one call: one committed record (record mode), or a
    committed transaction or a batch (`records`, in commit order; `record` is the first).

    Read-only. From the dispatcher, `ctx`, `logger`, `record` and `records` are built when a
    hook first reads them (a hook that never reads its record never pays for decoding it);
    a value that cannot be decoded raises `sidecar.events.DecodeError` then, and the call is
    handled as a decode failure (dead letter with the reason), even if the hook catches it."""

    __slots__ = _SLOTS

    # Built on first read from _factory/_spec/_events/_call (None: given to __init__).
    _ctx: PipelineContext | None
    _logger: Any
    _record: dict[str, Any] | None
    _records: list[dict[str, Any]] | None
    _dbs: Databases | tuple[Engine | None, Engine | None, Mapping[str, Engine]]
    _hook: str
    _decode_error: DecodeError | None
    _factory: ParamFactory | None
    _spec: HookSpec | None
    _events: Sequence[ChangeEvent]
    _call: tuple[str, TransactionInfo] | None  # transaction/batch calls: (call id, transaction)
    _cancel: threading.Event  # ctx.cancelled (a hook with a timeout has its own)
    _deadline: float | None  # ctx.deadline
    _where_kept: list[int] | None
    """Internal (`sidecar.route`): which records of a bulk call the hook's `where:` matched, decided
    at the first attempt (a retry neither tests nor counts them again)."""

    def __init__(self, ctx: PipelineContext, logger: Any, record: dict[str, Any],
                 source_db: Engine | None = None, destination_db: Engine | None = None,
                 auxiliary_db: Mapping[str, Engine] | None = None, records: list[dict[str, Any]] | None = None,
                 hook: str = "") -> None:
        self._ctx = ctx
        self._logger = logger
        self._record = record
        self._records = records if records else [record]  # record mode: records == [record]
        self._dbs = (source_db, destination_db, Auxiliary(auxiliary_db or {}))
        self._hook = hook
        self._decode_error = self._where_kept = None
        self._factory = self._spec = self._call = None
        self._events = ()
        self._cancel = ctx.cancelled
        self._deadline = ctx.deadline

    @property
    def source_db(self) -> Engine | None:
        dbs = self._dbs
        return dbs[0] if isinstance(dbs, tuple) else dbs.source

    @property
    def destination_db(self) -> Engine | None:
        dbs = self._dbs
        return dbs[1] if isinstance(dbs, tuple) else dbs.destination

    @property
    def auxiliary_db(self) -> Mapping[str, Engine]:
        dbs = self._dbs
        return dbs[2] if isinstance(dbs, tuple) else dbs.auxiliary

    @property
    def hook(self) -> str:
        """The hook's configured name (the ledger's key, metrics' label)."""
        return self._hook

    @property
    def decode_error(self) -> DecodeError | None:
        """Set when reading the record failed to decode (the call is then a decode failure)."""
        return self._decode_error

    @property
    def ctx(self) -> PipelineContext:
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = self._guard(self._build_ctx)
        return ctx

    @property
    def logger(self) -> Any:
        logger = self._logger
        if logger is None:
            logger = self._logger = self._build_logger()
        return logger

    @property
    def record(self) -> dict[str, Any]:
        record = self._record
        if record is None:
            factory = self._factory
            assert factory is not None
            first = self._events[0]
            record = self.records[0] if self._call is not None else self._guard(lambda: factory.record(first))
            self._record = record
        return record

    @property
    def records(self) -> list[dict[str, Any]]:
        records = self._records
        if records is None:
            factory = self._factory
            assert factory is not None
            if self._call is not None:
                records = self._guard(lambda: [factory.record(e) for e in self._events])
            else:
                records = [self.record]
            self._records = records
        return records

    def cancel(self) -> None:
        """Set `ctx.cancelled` (the call was given up on, or shutdown), built or not."""
        self._cancel.set()

    @property
    def bulk(self) -> bool:
        """A transaction or batch call (many records at once), not a record-mode call."""
        return self._call is not None

    def narrowed(self, keep: Sequence[int]) -> CheckpointParam:
        """This call's param with only the records at `keep` (indexes, in commit order) — what a
        hook's `where:` lets through of a transaction or batch call. The call's id, transaction,
        cancel flag and deadline stay; `ctx` and the logger describe the records kept."""
        records = self.records
        other = _LazyParam()
        for name in _SLOTS:
            setattr(other, name, getattr(self, name))
        other._records = [records[i] for i in keep]
        other._record = other._records[0]
        other._where_kept = None
        if self._factory is not None and self._events:
            other._events = [self._events[i] for i in keep]
            other._ctx = other._logger = None  # built again from the records kept
        return other

    def _guard(self, build: Callable[[], _T]) -> _T:
        try:
            return build()
        except DecodeError as exc:
            if self._decode_error is None:
                self._decode_error = exc
            raise

    def _build_ctx(self) -> PipelineContext:
        factory = self._factory
        assert factory is not None
        return build_context(self._events[0], factory.pipeline, self._deadline, self._cancel, self._call)

    def _build_logger(self) -> Any:
        factory, spec = self._factory, self._spec
        assert factory is not None and spec is not None
        if self._call is None:
            event = self._events[0]
            try:
                event_id: str | None = event.event_id
            except DecodeError:  # the logger works even for a message that cannot be read
                event_id = None
            return LazyLogger(factory.log, {"pipeline": factory.pipeline, "table": event.table, "op": event.op,
                                            "event_id": event_id, "hook": spec.name})
        call_id, tx = self._call
        return LazyLogger(factory.log, {"pipeline": factory.pipeline, "hook": spec.name, "event_id": call_id,
                                        "transaction_id": tx.id, "records": len(self._events)})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CheckpointParam):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _PARAM_FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "CheckpointParam(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in _PARAM_FIELDS) + ")"


_PARAM_FIELDS = ("ctx", "logger", "record", "source_db", "destination_db", "auxiliary_db", "records", "hook")
_T = TypeVar("_T")


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
    tx = event.transaction
    record["_transaction_id"] = tx.group_id if tx else None
    record["_event_id"] = event.event_id
    return record


def build_context(event: ChangeEvent, pipeline: str, deadline: float | None = None,
                  cancelled: threading.Event = NOT_CANCELLED,
                  call: tuple[str, TransactionInfo] | None = None) -> PipelineContext:
    """`call`: a transaction or batch call's (id, transaction), in place of the event's."""
    raw = event.raw
    return PipelineContext(
        name=pipeline,
        event_id=event.event_id if call is None else call[0],
        op=event.op,
        table=event.table,
        before=event.before,
        source=event.source,
        transaction=event.transaction if call is None else call[1],
        topic=raw.topic if raw.partition is not None else None,
        partition=raw.partition,
        offset=raw.offset,
        deadline=deadline,
        cancelled=cancelled,
    )



class _LazyParam(CheckpointParam):
    """A `CheckpointParam` from the dispatcher (`ParamFactory`): `ctx`, `logger` and the records are
    built when first read. (Its own constructor: the compiled build cannot bypass `__init__`.)"""

    __slots__ = ()

    def __init__(self) -> None:  # every field is set by its maker
        pass



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
            self.timed(param, hook.timeout_s)
        return param

    def call_param(self, events: Sequence[ChangeEvent], hook: HookSpec, call_id: str,
                   transaction: TransactionInfo, records: list[dict[str, Any]] | None = None) -> CheckpointParam:
        """The param of a transaction or batch call: every record of `events` (in commit order).
        `ctx` is the first event's, with `event_id` = the call's id and `transaction` = the call's.
        `records`: those records already built (fresh dicts no other param holds)."""
        param = self._deferred(hook, events, (call_id, transaction))
        param._records = records
        if hook.timeout_s is not None:
            self.timed(param, hook.timeout_s)
        return param

    def _deferred(self, hook: HookSpec, events: Sequence[ChangeEvent],
                  call: tuple[str, TransactionInfo] | None) -> CheckpointParam:
        param = _LazyParam()
        param._ctx = param._logger = param._record = param._records = param._decode_error = param._where_kept = None
        param._dbs = self.databases
        param._hook = hook.name
        param._factory = self
        param._spec = hook
        param._events = events
        param._call = call
        param._cancel = NOT_CANCELLED
        param._deadline = None
        return param

    @staticmethod
    def timed(param: CheckpointParam, timeout_s: float) -> None:
        """A hook with a timeout: its own cancel flag (set when the dispatcher gives up) and deadline."""
        param._cancel = threading.Event()
        param._deadline = time.time() + timeout_s
