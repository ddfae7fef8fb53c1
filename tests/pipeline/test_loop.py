"""The whole decode → route → run → checkpoint path over an in-memory source."""

from __future__ import annotations

import itertools
import time
from typing import Any

from sidecar.dispatch import DispatchStats
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.testing import MemorySource, run_pipeline
from tests.fixtures import raws

UNIT = ("fxpo.public.type_zoo", 0)


def one_partition(name: str, topic: str) -> list[RawMessage]:
    msgs = [r for r in raws(name) if r.topic == topic]
    return [RawMessage(r.topic, 0, i, r.key, r.value) for i, r in enumerate(msgs)]


def run(msgs: list[RawMessage], hooks: list[HookSpec], **kw: Any) -> tuple[MemorySource, DispatchStats]:
    return run_pipeline(msgs, hooks, source_tables={"public.type_zoo": "erp.zoo"}, **kw)


def test_every_change_reaches_hook_and_offsets_advance() -> None:
    """All change events of a partition reach the hook once; the commit point passes them all."""
    msgs = one_partition("postgres-schemas", "fxpo.public.type_zoo")
    seen: list[Any] = []
    hook = HookSpec("rec", lambda p: seen.append(p), "test")
    source, stats = run(msgs, [hook])
    changes = [m for m in msgs if m.value is not None]
    assert stats.events == len(changes) and len(seen) == len(changes)
    assert source.committed[UNIT] == len(msgs)
    first = seen[0]
    assert first.record["_op"] == "r" and first.record["_source_table"] == "erp.zoo"
    assert first.record["_destination_table"] == "public.type_zoo"
    assert first.ctx.topic == "fxpo.public.type_zoo" and first.ctx.offset == 0
    deletes = [p for p in seen if p.ctx.op == "d"]
    assert deletes and all(p.record["id"] == p.ctx.before["id"] for p in deletes)


def test_failing_hook_is_retried_and_nothing_skipped() -> None:
    """A hook failing twice is retried with growing backoff; the record is not passed until it succeeds."""
    calls: list[str] = []
    failed_at: list[float] = []

    def flaky(p: Any) -> None:
        if p.record.get("id") == 2 and p.ctx.op == "c" and len(failed_at) < 3:
            failed_at.append(time.monotonic())
            raise RuntimeError("db down")
        calls.append(p.ctx.event_id)

    # multiplier 4: even with ±20 % jitter the second gap is ≥ 2.6× the first, far above timer noise
    hook = HookSpec("f", flaky, "t", initial_backoff_s=0.02, multiplier=4.0)
    msgs = one_partition("postgres-schemas", "fxpo.public.type_zoo")
    source, _ = run(msgs, [hook])
    gaps = [b - a for a, b in itertools.pairwise(failed_at)]
    assert len(failed_at) == 3 and gaps[1] > gaps[0] * 1.3  # exponential backoff
    assert len(calls) == len(set(calls))
    assert source.committed[UNIT] == len(msgs)


def test_decode_failure_halts_partition_and_holds_offsets() -> None:
    """An undecodable message halts its partition; the commit point stays before it."""
    good = one_partition("postgres-schemas", "fxpo.public.type_zoo")[:3]
    bad = RawMessage("fxpo.public.type_zoo", 0, 3, None, b"garbage")
    after = RawMessage("fxpo.public.type_zoo", 0, 4, good[1].key, good[1].value)
    seen: list[Any] = []
    source, stats = run([*good, bad, after], [HookSpec("rec", seen.append, "t")])
    assert stats.decode_failures == 1 and source.halted == [UNIT]
    assert len(seen) == 3
    assert source.committed[UNIT] == 3  # offset 3 (bad) never committed past


def test_routing_filters_tables_and_ops() -> None:
    """Hooks see only their tables and ops; TRUNCATE only when asked, with an empty record."""
    msgs = one_partition("postgres-schemas", "fxpo.public.events_default_identity")
    default_ops: list[Any] = []
    wants_t: list[Any] = []
    other_table: list[Any] = []
    hooks = [
        HookSpec("a", default_ops.append, "t", tables=frozenset({"public.events_default_identity"})),
        HookSpec("b", wants_t.append, "t", ops=frozenset({"t"})),
        HookSpec("c", other_table.append, "t", tables=frozenset({"public.orders"})),
    ]
    run(msgs, hooks)
    assert [p.ctx.op for p in default_ops] == ["c", "u", "d", "c"]
    assert len(wants_t) == 1 and set(wants_t[0].record) == {
        "_op", "_destination_table", "_source_table", "_committed_at", "_transaction_id", "_event_id"}
    assert other_table == []


def test_one_failing_hook_holds_only_itself_and_the_commit() -> None:
    """While hook A retries record 2, hook B goes on with later records; A keeps its order; the
    commit point stays before record 2 until A is done."""
    msgs = one_partition("postgres-schemas", "fxpo.public.type_zoo")
    source = MemorySource(msgs)
    a_seen: list[int] = []
    b_seen: list[int] = []
    a_fail = {"left": 5}
    state: dict[str, Any] = {}

    def a(p: Any) -> None:
        if p.record.get("id") == 2 and p.ctx.op == "c" and a_fail["left"]:
            a_fail["left"] -= 1
            state.setdefault("b_when_a_failed", []).append(len(b_seen))
            state.setdefault("commit_while_failing", []).append(source.committed.get(UNIT))
            raise RuntimeError("a is down")
        a_seen.append(p.ctx.offset)

    def b(p: Any) -> None:
        time.sleep(0.01)  # still going while a retries (a no-op b may finish before a first fails)
        b_seen.append(p.ctx.offset)

    run(msgs, [HookSpec("a", a, "t", initial_backoff_s=0.02, max_attempts=None), HookSpec("b", b, "t")],
        source=source)
    changes = [m.offset for m in msgs if m.value is not None]
    assert b_seen == changes and a_seen == changes  # both saw everything, each in order
    assert state["b_when_a_failed"][-1] > state["b_when_a_failed"][0]  # b moved on while a retried
    failing_offset = next(m.offset for m in msgs if m.value and b'"id":2' in m.value and b'"op":"c"' in m.value)
    assert all(c is None or c <= failing_offset for c in state["commit_while_failing"])
    assert source.committed[UNIT] == len(msgs)
