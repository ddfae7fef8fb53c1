"""Calls made at intake / on the loop's thread (review): failures, policies and bookkeeping
behave exactly as on the workers."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import structlog

from sidecar import Retry, SkipEvent
from sidecar.checkpoint import Checkpoint
from sidecar.databases import Databases
from sidecar.dead_letters import FileDeadLetters, read_file
from sidecar.decode import Decoder
from sidecar.dispatch import Dispatcher
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.loop import run_loop
from sidecar.param import ParamFactory
from sidecar.testing import MemorySource
from tests.pipeline.test_failure_policies import _bad_date_message
from tests.pipeline.test_inline_calls import TOPIC, messages


def run(specs: list[HookSpec], msgs: list[Any], *, inline: bool = True, source: MemorySource | None = None,
        **kw: Any) -> tuple[MemorySource, Dispatcher]:
    """Run with every hook inline from the first record (as after a probe window of fast calls)."""
    src = source or MemorySource(msgs, batch_size=50)
    log = structlog.get_logger()
    cp = Checkpoint(src, 0.0, 1)
    d = Dispatcher(specs, ParamFactory("p", Databases(), log), cp, log, inline_below_s=0.05,
                   inline_probe_calls=10**9, **kw)
    for h in d._hooks.values():
        h.inline = inline
    try:
        run_loop(src, Decoder(), d, cp, threading.Event(), until_exhausted=True, shutdown_grace_s=1)
    finally:
        d.close()
    return src, d


def test_ordering_none_calls_failing_at_intake_leave_no_lanes_behind() -> None:
    """A call made at intake that ends in SkipEvent (or a dead letter, skip by policy) must not leave
    its one-record lane in the hook's lanes: on the workers such lanes are dropped when emptied."""
    def hook(p: Any) -> None:
        if p.record["id"] % 2:
            raise SkipEvent("not interesting")

    for inline in (False, True):
        source, d = run([HookSpec("h", hook, "t", ordering="none", concurrency=2)], messages(400), inline=inline)
        assert source.committed[(TOPIC, 0)] == 400
        assert d.stats.skipped == 200
        assert len(d._hooks["h"].lanes) == 0, (inline, len(d._hooks["h"].lanes))


def test_a_bad_value_read_at_intake_is_dead_lettered_once_never_retried(tmp_path: Path) -> None:
    msgs = [*messages(3), *[RawMessage("fxpo.public.type_zoo", 0, 3 + i, None, _bad_date_message(0).value)
                            for i in range(2)]]
    reads: list[int] = []

    def reader(p: Any) -> None:
        reads.append(p.ctx.offset)
        _ = p.record["d"] if p.ctx.topic != TOPIC else p.record["id"]

    for inline in (False, True):
        reads.clear()
        dl = FileDeadLetters(tmp_path / f"dl{inline}.jsonl")
        source, d = run([HookSpec("reader", reader, "t", max_attempts=5, initial_backoff_s=0.001)], msgs,
                        inline=inline, dead_letters=dl)
        entries = list(read_file(tmp_path / f"dl{inline}.jsonl"))
        assert reads == [0, 1, 2, 3, 4], inline
        assert [(e["kind"], e["reason"]) for e in entries] == [("decode_failed", "out_of_range")] * 2
        assert d.stats.calls_failed == 0 and d.stats.decode_failures == 2
        assert source.committed[("fxpo.public.type_zoo", 0)] == 5


class FlakyStore(FileDeadLetters):
    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def write(self, entry: dict[str, Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("store down")
        super().write(entry)


def test_policies_at_intake_match_the_workers(tmp_path: Path) -> None:
    """Retry(delay), a dead letter whose store fails at first, halt: same calls, order and commits."""
    results: dict[bool, Any] = {}
    for inline in (False, True):
        calls: list[int] = []
        attempts: dict[int, int] = defaultdict(int)

        def hook(p: Any, calls: list[int] = calls, attempts: dict[int, int] = attempts) -> None:
            i = p.record["id"]
            attempts[i] += 1
            calls.append(i)
            if i == 5 and attempts[i] == 1:
                raise Retry(delay=0.01)
            if i == 10:
                raise RuntimeError("always")

        store = FlakyStore(tmp_path / f"dl{inline}.jsonl", failures=1)
        source, d = run([HookSpec("h", hook, "t", max_attempts=2, initial_backoff_s=0.001)], messages(30),
                        inline=inline, dead_letters=store)
        results[inline] = (calls, dict(attempts), source.committed, d.stats.dead_lettered, d.stats.calls_failed,
                           len(list(read_file(tmp_path / f"dl{inline}.jsonl"))))
    assert results[True] == results[False]
    calls = results[True][0]
    assert calls == [*range(5), 5, *range(5, 10), 10, 10, *range(11, 30)]

    for inline in (False, True):
        halted: list[int] = []

        def stopper(p: Any, halted: list[int] = halted) -> None:
            halted.append(p.record["id"])
            if p.record["id"] == 7:
                raise RuntimeError("stop")

        source, d = run([HookSpec("h", stopper, "t", max_attempts=1, on_failure="halt")], messages(20), inline=inline)
        assert halted == list(range(8)), inline
        assert source.committed.get((TOPIC, 0), 0) == 7
        assert d.health.halted


def test_random_failures_at_intake_keep_key_order_commit_prefix_and_concurrency() -> None:
    """One fast hook (so calls are made at intake and in inline runs, some slow ones on workers):
    random keys, failures, skips and slow calls never break per-key order, the commit prefix, or
    the hook's concurrency."""
    for seed in range(12):
        _random_run(seed)


def _random_run(seed: int) -> None:
    import random

    from tests.pipeline.test_dispatch_properties import Checked, message

    rnd = random.Random(seed)
    offsets = [0, 0]
    msgs: list[RawMessage] = []
    plan: dict[tuple[int, int], str] = {}
    for _ in range(300):
        part = rnd.randrange(2)
        msgs.append(message(part, offsets[part], rnd.randrange(6)))
        kinds = ["ok", "fail", "skip", "slow", "retry"]
        plan[(part, offsets[part])] = rnd.choices(kinds, [80, 6, 5, seed % 3 // 2, 5])[0]
        offsets[part] += 1
    lock = threading.Lock()
    finished: set[tuple[int, int]] = set()
    per_key: dict[tuple[int, int], list[int]] = defaultdict(list)
    attempts: dict[tuple[int, int], int] = defaultdict(int)
    active = [0]
    problems: list[str] = []

    def hook(p: Any) -> None:
        where = (p.ctx.partition, p.ctx.offset)
        with lock:
            active[0] += 1
            if active[0] > 3:
                problems.append("concurrency exceeded")
        try:
            attempts[where] += 1
            what = plan[where]
            if what == "slow":
                time.sleep(0.012)
            if attempts[where] == 1 and what == "fail":
                raise RuntimeError("first attempt fails")
            if attempts[where] == 1 and what == "retry":
                raise Retry(delay=0.002)
            with lock:
                per_key[(where[0], p.record["id"])].append(where[1])
                finished.add(where)
            if what == "skip":
                raise SkipEvent()
        finally:
            with lock:
                active[0] -= 1

    source = Checked(msgs, finished, lock)
    log = structlog.get_logger()
    cp = Checkpoint(source, 0.0, 1)
    d = Dispatcher([HookSpec("h", hook, "t", ordering="key", concurrency=3, initial_backoff_s=0.001,
                             max_attempts=None)],
                   ParamFactory("p", Databases(), log), cp, log, inline_below_s=0.001, inline_probe_calls=5)
    try:
        run_loop(source, Decoder(), d, cp, threading.Event(), until_exhausted=True, shutdown_grace_s=1,
                 max_in_flight=20)
    finally:
        d.close()
    assert source.violations == [] and problems == [], seed
    for key, seen in per_key.items():
        assert seen == sorted(seen) and len(seen) == len(set(seen)), (seed, key, seen)
    assert sum(map(len, per_key.values())) == len(msgs)
    assert all(source.committed[(TOPIC, p)] == offsets[p] for p in (0, 1))
    assert len(d._hooks["h"].lanes) <= 12


def test_worker_results_applied_by_an_inline_run_do_not_leave_ready_lanes_unnoticed() -> None:
    """An inline run applies every result waiting in the queue, other hooks' too. A worker hook
    whose run ended there (its next job now ready) must start at the next turn without the loop
    blocking a whole poll_timeout_s in the source's poll: `busy` must say so."""

    go = threading.Event()
    y_calls: list[int] = []

    def worker_hook(p: Any) -> None:
        if p.ctx.offset == 0:
            go.wait(5)
        y_calls.append(p.ctx.offset)

    d: Dispatcher | None = None

    def fast_hook(p: Any) -> None:
        if p.ctx.offset == 1:
            go.set()
            deadline = time.monotonic() + 5
            assert d is not None
            while d._results.qsize() < 2 and time.monotonic() < deadline:  # worker's success + end of run
                time.sleep(0.0005)

    source = MemorySource([])
    source.auto_units = False
    log = structlog.get_logger()
    cp = Checkpoint(source, 0.0, 1)
    cp.assign([(TOPIC, 0)])
    d = Dispatcher([HookSpec("y", worker_hook, "t"), HookSpec("x", fast_hook, "t")],
                   ParamFactory("p", Databases(), log), cp, log, inline_below_s=0.1, inline_probe_calls=10**9)
    d._hooks["x"].inline = True
    dec = Decoder()
    try:
        for raw in messages(2):
            token = cp.begin(raw)
            assert token is not None
            d.dispatch(raw, dec.decode(raw), token)
            d.service()
        # y: offset 0 ended (applied by x's inline run), offset 1 ready; nothing running
        assert not d._running and d._hooks["y"].ready
        assert d.busy  # else the loop's next poll blocks for poll_timeout_s
    finally:
        go.set()
        d.close()


def test_revoke_while_calls_are_made_inline() -> None:
    """Revoking a partition whose records wait (a retry timer, records behind it) while the hook
    runs inline: nothing more is called for it, the finished prefix is committed, the other
    partition goes on in order, and nothing is counted twice."""
    from sidecar.app import Rebalance

    source = MemorySource([])
    source.auto_units = False
    cp = Checkpoint(source, 0.0, 1)
    calls: list[tuple[int, int]] = []
    failed: set[tuple[int, int]] = set()

    def hook(p: Any) -> None:
        where = (p.ctx.partition, p.ctx.offset)
        if where[1] == 5 and where not in failed:
            failed.add(where)
            raise Retry(delay=0.05)
        calls.append(where)

    log = structlog.get_logger()
    d = Dispatcher([HookSpec("h", hook, "t")], ParamFactory("p", Databases(), log), cp, log,
                   inline_below_s=0.05, inline_probe_calls=10**9)
    d._hooks["h"].inline = True
    rb = Rebalance(d, cp, revoke_wait_s=1.0)
    rb.assigned([(TOPIC, 0), (TOPIC, 1)])
    dec = Decoder()
    for raw in messages(40, partitions=2):
        token = cp.begin(raw)
        assert token is not None
        d.dispatch(raw, dec.decode(raw), token)
    d.service()
    assert calls == [(i % 2, i // 2) for i in range(10)]  # offset 5 of both partitions waits for its retry
    rb.revoked([(TOPIC, 0)])
    assert source.committed.get((TOPIC, 0)) == 5 and not cp.owns((TOPIC, 0))
    deadline = time.monotonic() + 5
    while d.pending() and time.monotonic() < deadline:
        d.service(0.01)
    cp.commit()
    d.close()
    assert [o for p, o in calls if p == 0] == list(range(5))
    assert [o for p, o in calls if p == 1] == list(range(20))
    assert source.committed[(TOPIC, 1)] == 20 and cp.in_flight == 0
    assert d.stats.calls_ok == 25
