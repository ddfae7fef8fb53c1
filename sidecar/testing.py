"""Helpers for hook authors' own tests (public API).

    from sidecar.testing import make_event, make_param, make_call_param, run_hook, capture_logs

    def test_my_hook():
        with capture_logs() as logs:
            run_hook(my_hook.checkpoint, make_event("public.orders", after={"id": 1, "amount": Decimal("5")}))
        assert logs[0]["event"] == "checkpoint triggered"

    def test_my_transaction_hook():  # mode: transaction — one call, many records
        events = [make_event("public.orders", after={"id": i}, transaction_id="42") for i in range(3)]
        param = run_hook(my_hook.checkpoint, events)
        assert len(param.records) == 3 and param.ctx.transaction.id == "42"

`MemorySource` and `run_pipeline` run hooks through the real loop and dispatcher (ordering,
concurrency, retries, failure policies) on messages held in memory.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.engine import Engine

from sidecar.checkpoint import Checkpoint
from sidecar.databases import Databases
from sidecar.dead_letters import DeadLetterWriter
from sidecar.decode import Decoder, event_id
from sidecar.dispatch import Dispatcher, DispatchStats
from sidecar.events import ChangeEvent, Op, RawMessage, TransactionInfo
from sidecar.execute import call_once
from sidecar.hooks import HookSpec
from sidecar.loop import run_loop
from sidecar.metrics import Metrics
from sidecar.param import CheckpointParam, ParamFactory
from sidecar.rebalance import Rebalance
from sidecar.sources import Assignments, Source
from sidecar.transactions import batch_call_id, transaction_call_id


def make_event(
    table: str,
    *,
    op: Op = "c",
    after: Mapping[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    committed_at: datetime | None = None,
    transaction_id: str | None = None,
    connector: str = "postgresql",
    source: Mapping[str, Any] | None = None,
) -> ChangeEvent:
    """A ChangeEvent as the decoder would produce it, from native values."""
    schema, _, name = table.rpartition(".")
    committed = committed_at or datetime.now(UTC)
    src = dict(source or {
        "connector": connector, "name": "test", "schema": schema, "db": schema, "table": name,
        "ts_us": int(committed.timestamp() * 1_000_000),
    })
    eid = event_id(src, table, op, None if before is None else dict(before), None if after is None else dict(after))
    return ChangeEvent(
        raw=RawMessage(topic=f"test.{table}", partition=None, offset=None, key=None, value=None),
        event_id=eid,
        op=op,
        table=table,
        connector=connector,
        key=None,
        before=None if before is None else dict(before),
        after=None if after is None else dict(after),
        source=src,
        transaction=TransactionInfo(transaction_id, None, None) if transaction_id else None,
        committed_at=committed,
        snapshot=op == "r",
    )


def decode_message(value: bytes | str, key: bytes | str | None = None, topic: str = "test") -> Any:
    """Decode one captured Debezium message exactly as the sidecar does."""
    as_bytes = value.encode() if isinstance(value, str) else value
    key_bytes = key.encode() if isinstance(key, str) else key
    return Decoder().decode(RawMessage(topic=topic, partition=0, offset=0, key=key_bytes, value=as_bytes))


def make_param(
    event: ChangeEvent,
    *,
    pipeline: str = "test-pipeline",
    hook_name: str = "hook",
    source_table: str | None = None,
    destination_db: Engine | None = None,
    source_db: Engine | None = None,
    auxiliary_db: Mapping[str, Engine] | None = None,
) -> CheckpointParam:
    """The CheckpointParam a hook named `hook_name` would get for `event`."""
    factory = ParamFactory(
        pipeline,
        Databases(source=source_db, destination=destination_db, auxiliary=dict(auxiliary_db or {})),
        structlog.get_logger("checkpoint-sidecar"),
        source_tables={event.table: source_table},
    )
    spec = HookSpec(name=hook_name, fn=lambda p: None, origin="test")
    return factory.params(event, [spec])[0]


def make_call_param(
    events: Sequence[ChangeEvent],
    *,
    pipeline: str = "test-pipeline",
    hook_name: str = "hook",
    transaction: TransactionInfo | None = None,
    source_tables: Mapping[str, str | None] | None = None,
    destination_db: Engine | None = None,
    source_db: Engine | None = None,
    auxiliary_db: Mapping[str, Engine] | None = None,
) -> CheckpointParam:
    """The CheckpointParam a transaction or batch hook gets for a call on `events` (in this
    order). `transaction` defaults to what a whole transaction's call carries: the events'
    common transaction id (None when they have none: a batch), event_count and per-table
    counts from the events, the first one's commit time, part 1, last."""
    if not events:
        raise ValueError("a call has at least one record")
    if transaction is None:
        ids = {e.transaction.group_id if e.transaction else None for e in events}
        tx_id = ids.pop() if len(ids) == 1 else None
        counts: dict[str, int] = {}
        for e in events:
            counts[e.table] = counts.get(e.table, 0) + 1
        transaction = TransactionInfo(
            id=tx_id, event_count=len(events) if tx_id else None,
            data_collections=tuple(counts.items()) if tx_id else None,
            committed_at=events[0].committed_at, part=1 if tx_id else None, last=True if tx_id else None)
    factory = ParamFactory(
        pipeline,
        Databases(source=source_db, destination=destination_db, auxiliary=dict(auxiliary_db or {})),
        structlog.get_logger("checkpoint-sidecar"),
        source_tables=source_tables,
    )
    spec = HookSpec(name=hook_name, fn=lambda p: None, origin="test", mode="transaction" if transaction.id else "batch")
    event_ids = [e.event_id for e in events]
    call_id = (transaction_call_id("test", transaction.id, transaction.part or 1, event_ids) if transaction.id
               else batch_call_id(event_ids))
    return factory.call_param(events, spec, call_id, transaction)


def run_hook(fn: Callable[[CheckpointParam], Any], event: ChangeEvent | Sequence[ChangeEvent],
             **kwargs: Any) -> CheckpointParam:
    """Call a hook once (sync or `async def`; exceptions propagate) on an event — or on a list of
    events, as one transaction/batch call (`make_call_param`); returns the param it got."""
    param = make_call_param(event, **kwargs) if isinstance(event, Sequence) else make_param(event, **kwargs)
    call_once(fn, param)
    return param


class MemorySource:
    """Messages in memory, one unit per (topic, partition), offsets as given (or numbered).

    Finite: `exhausted` once every message was polled. `committed` holds what the
    checkpoint committed per unit; `halted` the units a hook or a bad message halted.

    `rebalances`: [(after, "revoke" | "assign", units)] — Kafka-like rebalances, run inside the
    first `poll` after `after` messages were polled (after that poll's batch was taken, as
    librdkafka's callbacks run while a fetched batch waits), told to `listener`. Units are then
    assigned (all at the first poll), not automatic. A revoked unit is no longer polled; an
    assigned one is polled again from its committed offset. `seek(unit, offset)` polls a unit
    again from `offset` (next, before the rest); `seeks` records them."""

    auto_units = True

    def __init__(self, messages: Sequence[RawMessage], batch_size: int = 50,
                 rebalances: Sequence[tuple[int, str, Collection[Hashable]]] = ()) -> None:
        self.messages: deque[RawMessage] = deque(
            m if m.offset is not None else RawMessage(m.topic, m.partition if m.partition is not None else 0, i,
                                                      m.key, m.value, m.headers, m.timestamp_ms)
            for i, m in enumerate(messages)
        )  # pending, in poll order (a deque: a poll takes its batch off the front in O(batch))
        self.batch_size = batch_size
        self.committed: dict[Hashable, int] = {}
        self.halted: list[Hashable] = []
        self.paused = 0
        self.listener: Assignments | None = None
        self.seeks: list[tuple[Hashable, int]] = []
        self._history: dict[Hashable, list[RawMessage]] = {}
        for m in self.messages:
            self._history.setdefault((m.topic, m.partition), []).append(m)
        self._rebalances = sorted(rebalances, key=lambda r: r[0])
        self._polled = 0
        self._started = not rebalances
        if rebalances:
            self.auto_units = False
        self.exhausted = not self.messages and not self._rebalances
        # As KafkaSource: `locate` gives ((topic, partition), offset) — unless a subclass says otherwise.
        self.units_are_partitions = type(self).locate is MemorySource.locate

    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        if not self._started:
            self._started = True
            if self.listener is not None:
                self.listener.assigned(list(self._history))
        pending = self.messages
        batch = [pending.popleft() for _ in range(min(self.batch_size, len(pending)))]
        self._polled += len(batch)
        while self._rebalances and (self._polled >= self._rebalances[0][0] or not self.messages):
            _, what, units = self._rebalances.pop(0)
            self._rebalance(what, set(units))
        self.exhausted = not self.messages and not self._rebalances
        return batch

    def _rebalance(self, what: str, units: set[Hashable]) -> None:
        if what == "revoke":
            if self.listener is not None:
                self.listener.revoked(units)
            self.messages = deque(m for m in self.messages if (m.topic, m.partition) not in units)
            return
        for unit in units:
            start = self.committed.get(unit, -1)
            self.messages += [m for m in self._history.get(unit, []) if m.offset is not None and m.offset >= start]
        if self.listener is not None:
            self.listener.assigned(units)

    def seek(self, unit: Hashable, offset: int) -> None:
        self.seeks.append((unit, offset))
        again = [m for m in self._history.get(unit, []) if m.offset is not None and m.offset >= offset]
        self.messages = deque(again + [m for m in self.messages if (m.topic, m.partition) != unit])

    def locate(self, raw: RawMessage) -> tuple[Hashable, int]:
        assert raw.offset is not None
        return (raw.topic, raw.partition), raw.offset

    def pause(self) -> None:
        self.paused += 1

    def resume(self) -> None:
        pass

    def halt(self, unit: Hashable) -> None:
        self.halted.append(unit)

    def commit(self, offsets: dict[Hashable, int]) -> bool:
        self.committed.update(offsets)
        return True

    def close(self) -> None:
        pass


def run_pipeline(
    messages: Sequence[RawMessage],
    hooks: Sequence[HookSpec],
    *,
    pipeline: str = "test-pipeline",
    dead_letters: DeadLetterWriter | None = None,
    metrics: Metrics | None = None,
    report: bool = False,
    max_in_flight: int = 10_000,
    soft_max_in_flight: int = 1_000,
    max_message_bytes: int | None = None,
    max_transaction_records: int = 10_000,
    transaction_end_timeout_s: float = 60.0,
    source: Source | None = None,
    stop: threading.Event | None = None,
    databases: Databases | None = None,
    source_tables: Mapping[str, str | None] | None = None,
) -> tuple[Any, DispatchStats]:
    """Run `hooks` on `messages` (or on `source`) through the real decode → dispatch →
    checkpoint path until everything that can finish has finished (halted units stay where
    they halted) or `stop` is set."""
    src: Any = source or MemorySource(messages)
    checkpoint = Checkpoint(src, 0.0, 1)
    factory = ParamFactory(pipeline, databases or Databases(), structlog.get_logger("checkpoint-sidecar"),
                           source_tables=source_tables)
    dispatcher = Dispatcher(hooks, factory, checkpoint, structlog.get_logger("checkpoint-sidecar"),
                            dead_letters=dead_letters, metrics=metrics, report=report,
                            max_message_bytes=max_message_bytes, max_transaction_records=max_transaction_records,
                            transaction_end_timeout_s=transaction_end_timeout_s)
    if isinstance(src, MemorySource):
        src.listener = Rebalance(dispatcher, checkpoint, revoke_wait_s=5.0)
    try:
        stats = run_loop(src, Decoder(), dispatcher, checkpoint, stop or threading.Event(), until_exhausted=True,
                         max_in_flight=max_in_flight, soft_max_in_flight=soft_max_in_flight, shutdown_grace_s=5.0)
    finally:
        dispatcher.close()
    return src, stats


@contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Capture structured log entries (dicts) emitted while the block runs."""
    with structlog.testing.capture_logs() as logs:
        yield logs
