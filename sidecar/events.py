"""Values produced by `decode`: one per source message, never raw Debezium JSON for hooks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol, cast

Op = Literal["c", "u", "d", "r", "t"]
ALL_OPS: Final[tuple[Op, ...]] = ("c", "u", "d", "r", "t")
DEFAULT_OPS: Final[tuple[Op, ...]] = ("c", "u", "d", "r")


class _Unavailable:
    """A TOASTed column an update did not touch: the value exists but was not sent."""

    # One instance, UNAVAILABLE: `copy`, `deepcopy` and `pickle` give it back (`__reduce__`).

    def __repr__(self) -> str:
        return "sidecar.UNAVAILABLE"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = _Unavailable()

COMPILED: Final = not __file__.endswith(".py")
"""This module runs compiled (mypyc, `make venv`/the image): then so do the decoder, dispatcher and
the other hot-path modules (setup.py lists them)."""


class Rebuilt:
    """Base of the dataclasses of the compiled modules: `copy`, `deepcopy` and `pickle` rebuild one
    by its constructor from its fields, in both builds (compiled, a frozen dataclass cannot be
    rebuilt the default way: that sets fields after creation)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), tuple(getattr(self, f.name) for f in fields(cast(Any, self)))


# RawMessage is made once per record on the hot path: a plain slotted dataclass. Treat it as read-only.
# The dataclasses here spell out their __init__ (same signature as the generated one, checked by
# tests/unit/test_build_parity.py): compiled, the generated one stays interpreted Python and costs
# 0.4–1.5 µs per object (a frozen one sets each field through object.__setattr__); a written one is
# compiled to direct slot stores (~50 ns) and still refuses assignment afterwards.
@dataclass(slots=True)
class RawMessage(Rebuilt):
    """One message as the source delivered it (kept whole for errors and dead letters)."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None

    def __init__(self, topic: str, partition: int | None, offset: int | None, key: bytes | None, value: bytes | None,
                 headers: tuple[tuple[str, bytes | None], ...] = (), timestamp_ms: int | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp_ms = timestamp_ms


@dataclass(frozen=True, slots=True)
class Geometry(Rebuilt):
    """A spatial value as Debezium sends it: well-known binary plus SRID."""

    wkb: bytes
    srid: int | None

    def __init__(self, wkb: bytes, srid: int | None) -> None:
        object.__setattr__(self, "wkb", wkb)
        object.__setattr__(self, "srid", srid)


@dataclass(frozen=True, slots=True)
class TransactionInfo(Rebuilt):
    """A source transaction as hooks see it, one type in every mode (None where unknown).

    Record mode: where the change sits (`id` as the connector sent it, `total_order`,
    `data_collection_order`). Transaction and batch calls (`ctx.transaction`): `id` is the
    transaction's group id (None for a batch of rows without a transaction, e.g. snapshot
    rows), `event_count` and `data_collections` (per-table counts) from its END marker,
    `committed_at` (source commit time of its first record), `part` (1, 2, … when delivered
    in parts) and `last` (this call ends the transaction).
    """

    id: str | None
    total_order: int | None = None
    data_collection_order: int | None = None
    total: int | None = None
    event_count: int | None = None
    data_collections: tuple[tuple[str, int], ...] | None = None
    committed_at: datetime | None = None
    part: int | None = None
    last: bool | None = None

    def __init__(self, id: str | None, total_order: int | None = None, data_collection_order: int | None = None,
                 total: int | None = None, event_count: int | None = None,
                 data_collections: tuple[tuple[str, int], ...] | None = None, committed_at: datetime | None = None,
                 part: int | None = None, last: bool | None = None) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "total_order", total_order)
        object.__setattr__(self, "data_collection_order", data_collection_order)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "event_count", event_count)
        object.__setattr__(self, "data_collections", data_collections)
        object.__setattr__(self, "committed_at", committed_at)
        object.__setattr__(self, "part", part)
        object.__setattr__(self, "last", last)

    @property
    def counts(self) -> dict[str, int]:
        """Per-table event counts of the whole transaction (empty when unknown)."""
        return dict(self.data_collections or ())

    @property
    def group_id(self) -> str:
        """The id shared by BEGIN, data events and END (PostgreSQL: the txId part of `txId:LSN`)."""
        return "" if self.id is None else group_of(self.id)


def group_of(transaction_id: str) -> str:
    """What identifies a transaction in every message of it: PostgreSQL's `txId:LSN` ids differ in
    the LSN between BEGIN, data events and END; the txId part is shared. (find, not split: once per
    event, no list of parts.)"""
    colon = transaction_id.find(":")
    return transaction_id if colon < 0 else transaction_id[:colon]


_TXN_SET: Final = tuple(getattr(TransactionInfo, f.name).__set__ for f in fields(TransactionInfo))
# `event_transaction` relies on this field order and on every later field defaulting to None
# (tests/unit/test_lazy_decode.py checks both).
_SET_ID, _SET_TOTAL_ORDER, _SET_DCO = _TXN_SET[:3]
_SET_REST: Final = _TXN_SET[3:]


def event_transaction(id: str, total_order: int | None, data_collection_order: int | None) -> TransactionInfo:
    """`TransactionInfo(id=..., total_order=..., data_collection_order=...)` of a data event. Not
    compiled, built without the frozen dataclass's per-field `object.__setattr__` (one per decoded
    event); equal to it. Compiled, the plain constructor is the fast one."""
    if COMPILED:
        return TransactionInfo(id, total_order, data_collection_order)
    info = object.__new__(TransactionInfo)
    _SET_ID(info, id)
    _SET_TOTAL_ORDER(info, total_order)
    _SET_DCO(info, data_collection_order)
    for setter in _SET_REST:
        setter(info, None)
    return info


class DecodeError(ValueError):
    """A value that could not be converted when it was first read (lazy decoding): handled as
    a decode failure of the message — dead letter with `reason` — never as a hook failure."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Deferred(Protocol):
    """What the decoder leaves to compute when a field of a `ChangeEvent` is first read
    (`everything`: all of them, in `ChangeEvent.materialize`'s order)."""

    def event_id(self) -> str: ...
    def key(self) -> Mapping[str, Any] | None: ...
    def before(self) -> dict[str, Any] | None: ...
    def after(self) -> dict[str, Any] | None: ...
    def source(self) -> Mapping[str, Any]: ...
    def transaction(self) -> TransactionInfo | None: ...
    def committed_at(self) -> datetime | None: ...
    def everything(self, key: bool = True) -> tuple[str, Mapping[str, Any] | None, dict[str, Any] | None,
                                                    dict[str, Any] | None, Mapping[str, Any], TransactionInfo | None,
                                                    datetime | None]: ...


_UNSET: Final[Any] = object()


class ChangeEvent:
    """A committed row change, values native Python types.

    From the decoder, the row images, key, event id, source block, transaction and commit
    time are computed when first read and kept (a hook that never reads its record never
    pays for converting it); a value that cannot be converted raises `DecodeError` then.
    Treat as read-only."""

    __slots__ = ("_after", "_before", "_committed_at", "_deferred", "_event_id", "_key", "_source", "_transaction",
                 "commit_us", "connector", "op", "raw", "snapshot", "table")
    # Each holds its value, or _UNSET until `_deferred` computed it.
    _event_id: Any
    _key: Any
    _before: Any
    _after: Any
    _source: Any
    _transaction: Any
    _committed_at: Any

    def __init__(self, raw: RawMessage, event_id: str, op: Op, table: str, connector: str,
                 key: Mapping[str, Any] | None, before: dict[str, Any] | None, after: dict[str, Any] | None,
                 source: Mapping[str, Any], transaction: TransactionInfo | None, committed_at: datetime | None,
                 snapshot: bool = False) -> None:
        self.raw = raw
        self.op = op
        self.table = table
        self.connector = connector
        self.snapshot = snapshot
        self._event_id = event_id
        self._key = key
        self._before = before
        self._after = after
        self._source = source
        self._transaction = transaction
        self._committed_at = committed_at
        self._deferred: Deferred | None = None
        self.commit_us = None if committed_at is None else _epoch_us(committed_at)

    @staticmethod
    def deferred(raw: RawMessage, op: Op, table: str, connector: str, snapshot: bool, commit_us: int | None,
                 deferred: Deferred) -> ChangeEvent:
        """An event whose other fields `deferred` computes when first read."""
        return _LazyEvent(raw, op, table, connector, snapshot, commit_us, deferred)

    @property
    def event_id(self) -> str:
        v = self._event_id  # (Any: its type is only sure once computed)
        if v is _UNSET:
            v = self._event_id = self._pending().event_id()
        value: str = v
        return value

    @property
    def key(self) -> Mapping[str, Any] | None:
        v = self._key  # (Any: its type is only sure once computed)
        if v is _UNSET:
            v = self._key = self._pending().key()
        value: Mapping[str, Any] | None = v
        return value

    @property
    def before(self) -> dict[str, Any] | None:
        v = self._before  # (Any: its type is only sure once computed)
        if v is _UNSET:
            v = self._before = self._pending().before()
        value: dict[str, Any] | None = v
        return value

    @property
    def after(self) -> dict[str, Any] | None:
        v = self._after  # (Any: its type is only sure once computed)
        if v is _UNSET:
            v = self._after = self._pending().after()
        value: dict[str, Any] | None = v
        return value

    @property
    def source(self) -> Mapping[str, Any]:
        v = self._source  # (Any: its type is only sure once computed)
        if v is _UNSET:
            v = self._source = self._pending().source()
        value: Mapping[str, Any] = v
        return value

    @property
    def transaction(self) -> TransactionInfo | None:
        v = self._transaction  # (Any: its type is only sure once computed)
        if v is _UNSET:
            v = self._transaction = self._pending().transaction()
        value: TransactionInfo | None = v
        return value

    @property
    def committed_at(self) -> datetime | None:
        v = self._committed_at  # (Any: its type is only sure once computed)
        if v is _UNSET:
            v = self._committed_at = self._pending().committed_at()
        value: datetime | None = v
        return value

    def materialize(self, key: bool = True) -> None:
        """Compute every field now (raises `DecodeError` for a value that cannot be converted).
        `key=False`: all but the message key (no hook reads it; it stays computed when read)."""
        d = self._deferred
        if d is None:
            return  # built with every value
        # The order of the old getattr loop over _FIELDS: the first failing field names the reason.
        if (self._event_id is _UNSET and self._key is _UNSET and self._before is _UNSET and self._after is _UNSET
                and self._source is _UNSET and self._transaction is _UNSET and self._committed_at is _UNSET):
            (self._event_id, k, self._before, self._after, self._source, self._transaction,
             self._committed_at) = d.everything(key)
            if key:
                self._key = k
            return
        for name in _FIELDS:  # some field was read already (rare here): the others, one by one, in order
            if key or name != "key":
                getattr(self, name)

    def _pending(self) -> Deferred:
        assert self._deferred is not None
        return self._deferred

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChangeEvent):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = []
        for name in _FIELDS:
            try:
                parts.append(f"{name}={getattr(self, name)!r}")
            except DecodeError as exc:
                parts.append(f"{name}=<undecodable: {exc.reason}>")
        return "ChangeEvent(" + ", ".join(parts) + ")"

    def replace(self, **changes: Any) -> ChangeEvent:
        """A copy with some fields changed (every field computed first)."""
        values = {f: getattr(self, f) for f in _FIELDS}
        values.update(changes)
        return ChangeEvent(**values)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Rebuilt by the constructor from every field (computed first), so copies and pickles work in
        both builds."""
        return ChangeEvent, tuple(getattr(self, f) for f in _FIELDS)


class _LazyEvent(ChangeEvent):
    """A `ChangeEvent` from the decoder (`ChangeEvent.deferred`): its other fields are computed when
    first read. (Its own constructor: the compiled build cannot bypass `ChangeEvent.__init__`.)"""

    __slots__ = ()

    def __init__(self, raw: RawMessage, op: Op, table: str, connector: str, snapshot: bool,
                 commit_us: int | None, deferred: Deferred) -> None:
        self.raw = raw
        self.op = op
        self.table = table
        self.connector = connector
        self.snapshot = snapshot
        self.commit_us = commit_us  # source commit time, µs since the epoch (metrics' lag)
        self._deferred = deferred
        self._event_id = self._key = self._before = self._after = _UNSET
        self._source = self._transaction = self._committed_at = _UNSET


_FIELDS: Final = ("raw", "event_id", "op", "table", "connector", "key", "before", "after", "source", "transaction",
                  "committed_at", "snapshot")
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_us(at: datetime) -> int:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return (aware - _EPOCH_UTC) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Tombstone(Rebuilt):
    """The null-value record Kafka compaction uses after a delete; no hook sees it."""

    raw: RawMessage

    def __init__(self, raw: RawMessage) -> None:
        object.__setattr__(self, "raw", raw)


@dataclass(frozen=True, slots=True)
class Heartbeat(Rebuilt):
    """A Debezium heartbeat or a PostgreSQL logical-decoding message; no hook sees it."""

    raw: RawMessage

    def __init__(self, raw: RawMessage) -> None:
        object.__setattr__(self, "raw", raw)


@dataclass(frozen=True, slots=True)
class TransactionMarker(Rebuilt):
    """Debezium transaction metadata: BEGIN or END (END carries the event counts)."""

    raw: RawMessage
    status: Literal["BEGIN", "END"]
    id: str
    event_count: int | None
    data_collections: tuple[tuple[str, int], ...] = field(default=())

    def __init__(self, raw: RawMessage, status: Literal["BEGIN", "END"], id: str, event_count: int | None,
                 data_collections: tuple[tuple[str, int], ...] = ()) -> None:
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "event_count", event_count)
        object.__setattr__(self, "data_collections", data_collections)

    @property
    def group_id(self) -> str:
        return group_of(self.id)


@dataclass(frozen=True, slots=True)
class SchemaChange(Rebuilt):
    """A DDL record (MariaDB/MySQL emit them on the `<prefix>` topic); no record hook sees it."""

    raw: RawMessage
    ddl: str | None
    database: str | None

    def __init__(self, raw: RawMessage, ddl: str | None, database: str | None) -> None:
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "ddl", ddl)
        object.__setattr__(self, "database", database)


@dataclass(frozen=True, slots=True)
class DecodeFailure(Rebuilt):
    """A message that could not be decoded: why, and the message itself, kept whole."""

    raw: RawMessage
    reason: str
    detail: str

    def __init__(self, raw: RawMessage, reason: str, detail: str) -> None:
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "detail", detail)


Decoded = ChangeEvent | Tombstone | Heartbeat | TransactionMarker | SchemaChange | DecodeFailure
