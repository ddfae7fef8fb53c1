"""The whole decode → route → run → checkpoint path over an in-memory source."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from typing import Any

import structlog

from sidecar.checkpoint import PartitionTracker
from sidecar.databases import Databases
from sidecar.decode import Decoder
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.loop import run_loop
from sidecar.route import Router
from sidecar.run import HookRunner
from tests.fixtures import raws


class MemorySource:
    """One partition in memory with the real PartitionTracker; stops the loop when drained."""

    def __init__(self, messages: Sequence[RawMessage], stop: threading.Event) -> None:
        self.messages = list(messages)
        self.tracker = PartitionTracker()
        self.halted: list[tuple[int | None, str]] = []
        self.stop = stop
        self.waits: list[float] = []
        self.idle = 0

    def poll_batch(self) -> Sequence[RawMessage]:
        batch, self.messages = self.messages[:50], self.messages[50:]
        if not batch:
            # Done when everything finished; otherwise give retries a bounded while (3 s).
            self.idle += 1
            if self.tracker.in_flight == 0 or self.idle > 300:
                self.stop.set()
            threading.Event().wait(0.01)
        return batch

    def current(self, raw: RawMessage) -> bool:
        return not self.halted

    def begin(self, raw: RawMessage) -> None:
        assert raw.offset is not None
        self.tracker.begin(raw.offset)

    def finish(self, raw: RawMessage) -> None:
        assert raw.offset is not None
        self.tracker.finish(raw.offset)

    def halt(self, raw: RawMessage, reason: str) -> None:
        self.halted.append((raw.offset, reason))

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        threading.Event().wait(seconds)
        return True

    def maybe_commit(self) -> None:
        pass

    def close(self) -> None:
        pass


def one_partition(name: str, topic: str) -> list[RawMessage]:
    msgs = [r for r in raws(name) if r.topic == topic]
    return [RawMessage(r.topic, 0, i, r.key, r.value) for i, r in enumerate(msgs)]


def runner() -> HookRunner:
    return HookRunner("p", Databases(), structlog.get_logger(), source_tables={"public.type_zoo": "erp.zoo"})


def test_every_change_reaches_hook_and_offsets_advance() -> None:
    """All change events of a partition reach the hook once; the commit point passes them all."""
    stop = threading.Event()
    msgs = one_partition("postgres-schemas", "fxpo.public.type_zoo")
    source = MemorySource(msgs, stop)
    seen: list[Any] = []
    hook = HookSpec("rec", lambda p: seen.append(p), "test")
    stats = run_loop(source, Decoder(), Router([hook]), runner(), stop, structlog.get_logger())
    changes = [m for m in msgs if m.value is not None]
    assert stats.events == len(changes) and len(seen) == len(changes)
    assert source.tracker.commit_due() == len(msgs)
    first = seen[0]
    assert first.record["_op"] == "r" and first.record["_source_table"] == "erp.zoo"
    assert first.record["_destination_table"] == "public.type_zoo"
    assert first.ctx.topic == "fxpo.public.type_zoo" and first.ctx.offset == 0
    deletes = [p for p in seen if p.ctx.op == "d"]
    assert deletes and all(p.record["id"] == p.ctx.before["id"] for p in deletes)


def test_failing_hook_is_retried_and_nothing_skipped() -> None:
    """A hook failing twice is retried with growing backoff; the record is not passed until it succeeds."""
    stop = threading.Event()
    source = MemorySource(one_partition("postgres-schemas", "fxpo.public.type_zoo"), stop)
    calls: list[str] = []
    failed_at: list[float] = []

    def flaky(p: Any) -> None:
        if p.record.get("id") == 2 and p.ctx.op == "c" and len(failed_at) < 3:
            failed_at.append(time.monotonic())
            raise RuntimeError("db down")
        calls.append(p.ctx.event_id)

    # multiplier 4: even with ±20 % jitter the second gap is ≥ 2.6× the first, far above timer noise
    hook = HookSpec("f", flaky, "t", initial_backoff_s=0.02, multiplier=4.0)
    run_loop(source, Decoder(), Router([hook]), runner(), stop, structlog.get_logger())
    gaps = [b - a for a, b in itertools.pairwise(failed_at)]
    assert len(failed_at) == 3 and gaps[1] > gaps[0] * 1.3  # exponential backoff
    assert len(calls) == len(set(calls))
    assert source.tracker.in_flight == 0


def test_decode_failure_halts_partition_and_holds_offsets() -> None:
    """An undecodable message halts its partition; the commit point stays before it."""
    stop = threading.Event()
    good = one_partition("postgres-schemas", "fxpo.public.type_zoo")[:3]
    bad = RawMessage("fxpo.public.type_zoo", 0, 3, None, b"garbage")
    after = RawMessage("fxpo.public.type_zoo", 0, 4, good[1].key, good[1].value)
    source = MemorySource([*good, bad, after], stop)
    seen: list[Any] = []
    stats = run_loop(source, Decoder(), Router([HookSpec("rec", seen.append, "t")]), runner(), stop,
                     structlog.get_logger())
    assert stats.decode_failures == 1 and source.halted == [(3, "not_json")]
    assert len(seen) == 3
    assert source.tracker.commit_due() == 3  # offset 3 (bad) never committed past


def test_routing_filters_tables_and_ops() -> None:
    """Hooks see only their tables and ops; TRUNCATE only when asked, with an empty record."""
    stop = threading.Event()
    source = MemorySource(one_partition("postgres-schemas", "fxpo.public.events_default_identity"), stop)
    default_ops: list[Any] = []
    wants_t: list[Any] = []
    other_table: list[Any] = []
    hooks = [
        HookSpec("a", default_ops.append, "t", tables=frozenset({"public.events_default_identity"})),
        HookSpec("b", wants_t.append, "t", ops=frozenset({"t"})),
        HookSpec("c", other_table.append, "t", tables=frozenset({"public.orders"})),
    ]
    run_loop(source, Decoder(), Router(hooks), runner(), stop, structlog.get_logger())
    assert [p.ctx.op for p in default_ops] == ["c", "u", "d", "c"]
    assert len(wants_t) == 1 and set(wants_t[0].record) == {
        "_op", "_destination_table", "_source_table", "_committed_at", "_transaction_id"}
    assert other_table == []


def test_one_failing_hook_holds_only_itself_and_the_commit() -> None:
    """While hook A retries record 2, hook B goes on with later records; A keeps its order; the
    commit point stays before record 2 until A is done."""
    stop = threading.Event()
    msgs = one_partition("postgres-schemas", "fxpo.public.type_zoo")
    source = MemorySource(msgs, stop)
    a_seen: list[int] = []
    b_seen: list[int] = []
    a_fail = {"left": 5}
    state: dict[str, Any] = {}

    def a(p: Any) -> None:
        if p.record.get("id") == 2 and p.ctx.op == "c" and a_fail["left"]:
            a_fail["left"] -= 1
            state.setdefault("b_when_a_failed", []).append(len(b_seen))
            state.setdefault("commit_while_failing", []).append(source.tracker.commit_due())
            raise RuntimeError("a is down")
        a_seen.append(p.ctx.offset)

    def b(p: Any) -> None:
        b_seen.append(p.ctx.offset)

    run_loop(source, Decoder(), Router([HookSpec("a", a, "t", initial_backoff_s=0.02, max_attempts=None),
                                        HookSpec("b", b, "t")]), runner(), stop, structlog.get_logger())
    changes = [m.offset for m in msgs if m.value is not None]
    assert b_seen == changes and a_seen == changes  # both saw everything, each in order
    assert state["b_when_a_failed"][-1] > state["b_when_a_failed"][0]  # b moved on while a retried
    failing_offset = next(m.offset for m in msgs if m.value and b'"id":2' in m.value and b'"op":"c"' in m.value)
    assert all(c is None or c <= failing_offset for c in state["commit_while_failing"])
    assert source.tracker.commit_due() == len(msgs)
