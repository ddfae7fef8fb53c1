"""Values produced by `decode`: one per source message, never raw Debezium JSON for hooks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

Op = Literal["c", "u", "d", "r", "t"]
ALL_OPS: Final[tuple[Op, ...]] = ("c", "u", "d", "r", "t")
DEFAULT_OPS: Final[tuple[Op, ...]] = ("c", "u", "d", "r")


class _Unavailable:
    """A TOASTed column an update did not touch: the value exists but was not sent."""

    _instance: _Unavailable | None = None

    def __new__(cls) -> _Unavailable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "sidecar.UNAVAILABLE"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = _Unavailable()


# RawMessage and ChangeEvent are made once per record on the hot path: plain slotted
# dataclasses (a frozen one costs ~1 µs more to build). Treat them as read-only.
@dataclass(slots=True)
class RawMessage:
    """One message as the source delivered it (kept whole for errors and dead letters)."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Geometry:
    """A spatial value as Debezium sends it: well-known binary plus SRID."""

    wkb: bytes
    srid: int | None


@dataclass(frozen=True, slots=True)
class TransactionInfo:
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

    @property
    def counts(self) -> dict[str, int]:
        """Per-table event counts of the whole transaction (empty when unknown)."""
        return dict(self.data_collections or ())

    @property
    def group_id(self) -> str:
        """The id shared by BEGIN, data events and END (PostgreSQL: the txId part of `txId:LSN`)."""
        return "" if self.id is None else self.id.split(":", 1)[0]


@dataclass(slots=True)
class ChangeEvent:
    """A committed row change, values already native Python types."""

    raw: RawMessage
    event_id: str
    op: Op
    table: str
    connector: str
    key: Mapping[str, Any] | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: Mapping[str, Any]
    transaction: TransactionInfo | None
    committed_at: datetime | None
    snapshot: bool = False


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The null-value record Kafka compaction uses after a delete; no hook sees it."""

    raw: RawMessage


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A Debezium heartbeat or a PostgreSQL logical-decoding message; no hook sees it."""

    raw: RawMessage


@dataclass(frozen=True, slots=True)
class TransactionMarker:
    """Debezium transaction metadata: BEGIN or END (END carries the event counts)."""

    raw: RawMessage
    status: Literal["BEGIN", "END"]
    id: str
    event_count: int | None
    data_collections: tuple[tuple[str, int], ...] = field(default=())

    @property
    def group_id(self) -> str:
        return self.id.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """A DDL record (MariaDB/MySQL emit them on the `<prefix>` topic); no record hook sees it."""

    raw: RawMessage
    ddl: str | None
    database: str | None


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """A message that could not be decoded: why, and the message itself, kept whole."""

    raw: RawMessage
    reason: str
    detail: str


Decoded = ChangeEvent | Tombstone | Heartbeat | TransactionMarker | SchemaChange | DecodeFailure
