"""Helpers for hook authors' own tests (public API).

    from sidecar.testing import make_event, make_param, run_hook, capture_logs

    def test_my_hook():
        with capture_logs() as logs:
            run_hook(my_hook.checkpoint, make_event("public.orders", after={"id": 1, "amount": Decimal("5")}))
        assert logs[0]["event"] == "checkpoint triggered"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.engine import Engine

from sidecar.databases import Databases
from sidecar.decode import Decoder, event_id
from sidecar.events import ChangeEvent, Op, RawMessage, TransactionInfo
from sidecar.hooks import HookSpec
from sidecar.param import CheckpointParam
from sidecar.run import HookRunner


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
    runner = HookRunner(
        pipeline,
        Databases(source=source_db, destination=destination_db, auxiliary=dict(auxiliary_db or {})),
        structlog.get_logger("checkpoint-sidecar"),
        source_tables={event.table: source_table},
    )
    spec = HookSpec(name=hook_name, fn=lambda p: None, origin="test")
    return runner.params(event, [spec])[0][1]


def run_hook(fn: Callable[[CheckpointParam], Any], event: ChangeEvent, **kwargs: Any) -> CheckpointParam:
    """Call a hook once on an event (exceptions propagate); returns the param it got."""
    param = make_param(event, **kwargs)
    fn(param)
    return param


@contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Capture structured log entries (dicts) emitted while the block runs."""
    with structlog.testing.capture_logs() as logs:
        yield logs
