"""Failure policies over the real loop: dead letters, skip, halt, Retry, SkipEvent, timeouts, poison input."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar import Retry, SkipEvent
from sidecar.dead_letters import FileDeadLetters, decode_message, read_file
from sidecar.dispatch import DispatchStats
from sidecar.errors import DeadLetterError
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.metrics import Metrics
from sidecar.testing import MemorySource, run_pipeline
from tests.pipeline.test_loop import UNIT, one_partition

MSGS = one_partition("postgres-schemas", "fxpo.public.type_zoo")


class Result:
    def __init__(self, stats: DispatchStats, metrics: Metrics) -> None:
        self.stats = stats
        self.metrics = metrics
        self.skipped = stats.skipped


def run(tmp_path: Path, hooks: list[HookSpec], msgs: list[RawMessage] | None = None,
        max_message_bytes: int | None = None) -> tuple[MemorySource, Result, list[dict[str, Any]]]:
    source = MemorySource(msgs if msgs is not None else MSGS)
    dl = FileDeadLetters(tmp_path / "dl.jsonl")
    metrics = Metrics()
    metrics.declare_hooks([h.name for h in hooks])
    _, stats = run_pipeline([], hooks, source=source, dead_letters=dl, metrics=metrics,
                            max_message_bytes=max_message_bytes)
    dl.close()
    return source, Result(stats, metrics), list(read_file(tmp_path / "dl.jsonl"))


def failing_on(rid: int) -> Any:
    def hook(p: Any) -> None:
        if p.record.get("id") == rid:
            raise ValueError(f"bad row {rid}")
    return hook


def test_exhausted_attempts_dead_letter_and_stream_goes_on(tmp_path: Path) -> None:
    """After max_attempts the record is dead-lettered with its error and message; later records run."""
    seen: list[int] = []
    fail = failing_on(2)
    hook = HookSpec("h", lambda p: (fail(p), seen.append(p.record["id"])), "t", max_attempts=3,
                    initial_backoff_s=0.001)
    source, runner, entries = run(tmp_path, [hook])
    assert source.halted == [] and source.committed[UNIT] == len(MSGS)
    assert entries
    e = entries[0]
    assert e["kind"] == "hook_failed" and e["hook"] == "h" and e["attempts"] == 3
    assert e["error"].startswith("ValueError: bad row 2") and "Traceback" in e["traceback"]
    original = next(m for m in MSGS if m.offset == e["message"]["offset"])
    assert decode_message(e["message"]).value == original.value
    assert any(i > 2 for i in seen)  # records after the failing one were processed
    assert runner.metrics._run_counts[("h", "dead_letter")] == len(entries)
    assert runner.metrics._run_counts[("h", "retry")] == 2 * len(entries)


def test_skip_and_halt_policies(tmp_path: Path) -> None:
    """skip: counted and passed; halt: the partition stops at the record."""
    skip = HookSpec("s", failing_on(2), "t", max_attempts=1, on_failure="skip")
    source, runner, entries = run(tmp_path, [skip])
    assert entries == [] and source.halted == [] and runner.skipped >= 1
    halt = HookSpec("x", failing_on(2), "t", max_attempts=1, on_failure="halt")
    source, _, entries = run(tmp_path / "h", [halt])
    assert entries == [] and source.halted == [UNIT]
    failing = next(m.offset for m in MSGS if m.value and b'"id":2,' in m.value)
    assert source.committed.get(UNIT, 0) == failing


def test_retry_and_skipevent_from_hooks(tmp_path: Path) -> None:
    """Retry(delay) waits that long then runs again; SkipEvent passes the record as skipped."""
    calls: list[int] = []
    times: list[float] = []

    def hook(p: Any) -> None:
        calls.append(p.record["id"])
        if p.record["id"] == 2:
            times.append(time.monotonic())
        if p.record["id"] == 2 and calls.count(2) == 1:
            raise Retry(delay=0.05)
        if p.record["id"] == 3:
            raise SkipEvent("not interesting")

    source, runner, entries = run(tmp_path, [HookSpec("r", hook, "t", max_attempts=3)])
    assert entries == [] and calls.count(2) >= 2 and times[1] - times[0] >= 0.05
    assert runner.skipped >= 1 and source.committed[UNIT] == len(MSGS)


def test_timeout_counts_and_moves_on(tmp_path: Path) -> None:
    """A hung call times out (counted, ctx.cancelled set, dead-lettered after its attempts); it keeps
    its slot and its key, and the other keys go on meanwhile."""
    release = threading.Event()
    cancelled: list[bool] = []
    done_while_hung: list[int] = []

    def hook(p: Any) -> None:
        if p.record["id"] == 2 and p.ctx.op == "c":
            release.wait(5)
            cancelled.append(p.ctx.cancelled.is_set())
        elif not release.is_set():
            done_while_hung.append(p.record["id"])

    started = time.monotonic()
    threading.Timer(1.0, release.set).start()
    spec = HookSpec("slow", hook, "t", max_attempts=1, timeout_s=0.1, ordering="key", concurrency=4)
    source, runner, entries = run(tmp_path, [spec])
    assert time.monotonic() - started < 4
    assert len(entries) == 1 and entries[0]["error"].startswith("HookTimeout")
    assert runner.metrics._run_counts[("slow", "timeout")] == 1
    assert cancelled == [True]
    assert any(i != 2 for i in done_while_hung)  # other keys ran while the call hung
    assert source.committed[UNIT] == len(MSGS)


def test_poison_messages_dead_lettered_with_reason(tmp_path: Path) -> None:
    """Not JSON, not an envelope, too large: each dead-lettered with its reason; good records still run."""
    good = MSGS[:2]
    poison = [
        RawMessage("fxpo.public.type_zoo", 0, 2, None, b"\xff\xfe not json"),
        RawMessage("fxpo.public.type_zoo", 0, 3, None, orjson.dumps({"hello": "world"})),
        RawMessage("fxpo.public.type_zoo", 0, 4, None, b'{"x":"' + b"a" * 50000 + b'"}'),
    ]
    after = [RawMessage(m.topic, 0, 5 + i, m.key, m.value) for i, m in enumerate(MSGS[2:4])]
    seen: list[Any] = []
    source, _, entries = run(tmp_path, [HookSpec("h", seen.append, "t")], [*good, *poison, *after],
                             max_message_bytes=40000)
    assert [e["reason"] for e in entries] == ["not_json", "flattened", "too_large"]
    assert all(e["kind"] == "decode_failed" for e in entries)
    assert entries[0]["message"]["encoding"] == "base64"
    assert decode_message(entries[0]["message"]).value == b"\xff\xfe not json"
    assert source.halted == [] and source.committed[UNIT] == 7
    assert len(seen) == 4


def test_async_timeout_cancels_the_call(tmp_path: Path) -> None:
    """An `async def` call past timeout_s is cancelled for real (CancelledError inside it), counted, and
    its slot freed at once: the stream goes on even at concurrency 1."""
    import asyncio

    cancelled: list[str] = []

    async def hook(p: Any) -> None:
        if p.record["id"] == 2 and p.ctx.op == "c":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append("cancelled")
                raise

    started = time.monotonic()
    spec = HookSpec("a", hook, "t", max_attempts=1, timeout_s=0.1, is_async=True)
    source, _runner, entries = run(tmp_path, [spec])
    assert time.monotonic() - started < 5
    assert cancelled == ["cancelled"] and len(entries) == 1 and entries[0]["error"].startswith("HookTimeout")
    assert source.committed[UNIT] == len(MSGS)


def test_systemexit_and_keyboardinterrupt_in_a_hook_are_hook_failures(tmp_path: Path) -> None:
    """A hook raising SystemExit or KeyboardInterrupt does not end the process: it fails like any error."""
    def hook(p: Any) -> None:
        if p.record["id"] == 2:
            raise SystemExit(3)
        if p.record["id"] == 3:
            raise KeyboardInterrupt

    source, _runner, entries = run(tmp_path, [HookSpec("x", hook, "t", max_attempts=1)])
    errors = sorted(e["error"].split(":")[0] for e in entries)
    assert "SystemExit" in errors and "KeyboardInterrupt" in errors
    assert source.committed[UNIT] == len(MSGS)


def test_awaitable_returned_by_a_plain_hook_is_awaited(tmp_path: Path) -> None:
    """A plain function returning a coroutine has it run (not counted ok unrun)."""
    ran: list[int] = []

    async def work(i: int) -> None:
        ran.append(i)

    def hook(p: Any) -> Any:
        return work(p.record["id"])

    source, runner, _ = run(tmp_path, [HookSpec("w", hook, "t")])
    assert len(ran) == runner.stats.calls_ok and ran
    assert source.committed[UNIT] == len(MSGS)


def test_timed_out_sync_call_holds_its_key_until_it_returns(tmp_path: Path) -> None:
    """A thread cannot be killed: the same record's next attempt waits for the abandoned call, so
    threads do not pile up (5 hung attempts never run at once)."""
    live = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def hook(p: Any) -> None:
        if p.record["id"] == 2 and p.ctx.op == "c":
            with lock:
                live["now"] += 1
                live["peak"] = max(live["peak"], live["now"])
            try:
                time.sleep(0.3)
            finally:
                with lock:
                    live["now"] -= 1

    spec = HookSpec("h", hook, "t", max_attempts=3, timeout_s=0.05, initial_backoff_s=0.001, ordering="key",
                    concurrency=8)
    threads_before = threading.active_count()
    _source, runner, entries = run(tmp_path, [spec])
    assert live["peak"] == 1 and len(entries) == 1
    assert runner.metrics._run_counts[("h", "timeout")] == 3
    assert threading.active_count() <= threads_before + 8 + 2  # the pool, the event loop, nothing per attempt


def _bad_date_message(offset: int) -> RawMessage:
    """A change whose `after.d` is a date no Python date can hold: it fails when read."""
    row = {"type": "struct", "optional": True, "fields": [{"field": "id", "type": "int64"},
                                                          {"field": "d", "type": "int32",
                                                           "name": "io.debezium.time.Date"}]}
    schema = {"type": "struct", "fields": [dict(row, field="before"), dict(row, field="after"),
                                           {"type": "struct", "field": "source", "fields": []},
                                           {"type": "string", "field": "op"}]}
    payload = {"before": None, "after": {"id": offset, "d": 10**9}, "op": "c",
               "source": {"connector": "postgresql", "name": "fxpo", "schema": "public", "table": "type_zoo"}}
    return RawMessage("fxpo.public.type_zoo", 0, offset, None, orjson.dumps({"schema": schema, "payload": payload}))


def test_a_value_failing_when_read_is_a_decode_failure_not_a_retried_hook_failure(tmp_path: Path) -> None:
    """Lazy decoding: the hook that reads the bad value gets DecodeError; the call is dead-lettered
    as decode_failed with the reason (once, no retries) — also when the hook catches the error —
    and a hook that never reads the record runs normally."""
    msgs = [*MSGS[:2], _bad_date_message(2), _bad_date_message(3),
            *[RawMessage(m.topic, 0, 4 + i, m.key, m.value) for i, m in enumerate(MSGS[2:4])]]
    reads: list[int] = []
    caught: list[str] = []

    def reader(p: Any) -> None:
        reads.append(p.ctx.offset)
        _ = p.record["id"]

    def swallower(p: Any) -> None:
        try:
            _ = p.record
        except Exception as exc:  # a hook that hides the error still does not count it done
            caught.append(type(exc).__name__)

    blind: list[int] = []
    hooks = [HookSpec("reader", reader, "t", max_attempts=5, initial_backoff_s=0.001),
             HookSpec("swallower", swallower, "t", max_attempts=5, initial_backoff_s=0.001),
             HookSpec("blind", lambda p: blind.append(p.ctx.offset), "t")]
    source, runner, entries = run(tmp_path, hooks, msgs)
    assert source.halted == [] and source.committed[UNIT] == len(msgs)
    assert reads.count(2) == 1 and reads.count(3) == 1  # never retried
    assert caught == ["DecodeError", "DecodeError"]
    assert sorted((e["hook"], e["message"]["offset"]) for e in entries) == [
        ("reader", 2), ("reader", 3), ("swallower", 2), ("swallower", 3)]
    assert all(e["kind"] == "decode_failed" and e["reason"] == "out_of_range" for e in entries)
    assert "outside years" in entries[0]["error"]
    assert blind == [m.offset for m in msgs if m.value is not None]
    assert runner.stats.decode_failures == 4 and runner.stats.calls_failed == 0
    assert runner.metrics.decode_errors.labels(reason="out_of_range")._value.get() == 4


def test_each_hook_gets_its_own_record(tmp_path: Path) -> None:
    """One hook changing its record (decoded when read) changes nothing another hook sees."""
    seen: list[dict[str, Any]] = []

    def vandal(p: Any) -> None:
        p.record.clear()
        p.record["_op"] = "x"

    hooks = [HookSpec("vandal", vandal, "t"), HookSpec("reader", lambda p: seen.append(dict(p.record)), "t")]
    run(tmp_path, hooks)
    assert seen and all(r["_op"] in ("c", "u", "d", "r") and "_event_id" in r for r in seen)


def test_dead_letters_are_durable_before_the_commit_that_passes_them(tmp_path: Path) -> None:
    """Entries are fsynced together (`sync`) before each offset commit — not one fsync per entry —
    and a store that cannot sync stops the commit: nothing is committed past its records."""
    events: list[str] = []

    class Store(FileDeadLetters):
        def write(self, entry: dict[str, Any]) -> None:
            events.append("write")
            super().write(entry)

        def sync(self) -> None:
            events.append("sync")
            super().sync()

    class Source(MemorySource):
        def commit(self, offsets: dict[Any, int]) -> bool:
            events.append("commit")
            return super().commit(offsets)

    poison = [RawMessage("fxpo.public.type_zoo", 0, i, None, b"not json") for i in range(2, 6)]
    msgs = [*MSGS[:2], *poison, *[RawMessage(m.topic, 0, 6 + i, m.key, m.value) for i, m in enumerate(MSGS[2:4])]]
    store = Store(tmp_path / "dl.jsonl")
    source = Source(msgs)
    run_pipeline([], [HookSpec("h", lambda p: None, "t")], source=source, dead_letters=store)
    assert events.count("write") == 4 and source.committed[UNIT] == len(msgs)
    for i, e in enumerate(events):  # every commit after a write is preceded by a sync after it
        if e == "commit" and "write" in events[:i]:
            last_write = max(j for j in range(i) if events[j] == "write")
            assert "sync" in events[last_write:i]

    class Broken(FileDeadLetters):
        def sync(self) -> None:
            raise DeadLetterError("disk gone")

    source = MemorySource(msgs)
    with pytest.raises(DeadLetterError, match="disk gone"):
        run_pipeline([], [HookSpec("h", lambda p: None, "t")], source=source,
                     dead_letters=Broken(tmp_path / "dl2.jsonl"))
    assert source.committed.get(UNIT, 0) <= 2  # never past the first dead-lettered record
