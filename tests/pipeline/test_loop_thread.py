"""`thread: loop`: a hook's calls run on the loop's own thread, one at a time between intakes,
however long they take (never sent to the workers as a slow fast-path hook is), with the same
ordering, retries and offsets as on workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.testing import MemorySource, run_pipeline
from tests.pipeline.test_dispatch_properties import message
from tests.pipeline.test_soft_hold import Counting, numbered_per_topic
from tests.pipeline.test_transactions import synthetic_transaction


def transactions(count: int, rows: int) -> list[RawMessage]:
    ordered: list[RawMessage] = []
    for t in range(1, count + 1):
        data, (begin, end) = synthetic_transaction(t, rows)
        ordered += [begin, *data, end]
    return numbered_per_topic(ordered)


def test_transaction_calls_run_on_the_loop_thread_in_commit_order() -> None:
    """Every call of a `thread: loop` transaction hook runs on the thread that runs the loop (here:
    the test's), whole and in commit order, also calls far slower than the fast-path bound (20 ms,
    where 1 ms sends a fast hook back to the workers); a second hook on workers runs elsewhere.
    Every offset is committed."""
    msgs = transactions(30, 4)
    loop_thread = threading.get_ident()
    on_loop: list[tuple[int, str | None, int]] = []
    on_workers: list[int] = []

    def slow(param: Any) -> None:
        if len(on_loop) % 5 == 0:
            time.sleep(0.02)
        on_loop.append((threading.get_ident(), param.ctx.transaction.id, len(param.records)))

    def other(param: Any) -> None:
        on_workers.append(threading.get_ident())

    source, stats = run_pipeline(msgs, [
        HookSpec("pinned", slow, "t", mode="transaction", thread="loop"),
        HookSpec("other", other, "t", mode="transaction"),
    ])
    assert [t for t, _, _ in on_loop] == [loop_thread] * 30
    assert [(tx, n) for _, tx, n in on_loop] == [(str(t), 4) for t in range(1, 31)]
    assert len(on_workers) == 30 and loop_thread not in on_workers
    assert stats.transactions == 30 and stats.transactions_incomplete == 0
    assert source.committed == {(m.topic, 0): max(x.offset for x in msgs if x.topic == m.topic) + 1 for m in msgs}


def test_a_failed_call_on_the_loop_thread_is_retried_there() -> None:
    """A failure is retried as on workers (the whole call again, after the backoff), on the loop's
    thread; what follows waits for it (ordering partition) and runs after it."""
    msgs = transactions(5, 3)
    attempts: list[tuple[str | None, int]] = []
    failed: list[bool] = []

    def flaky(param: Any) -> None:
        tx = param.ctx.transaction.id
        attempts.append((tx, threading.get_ident()))
        if tx == "2" and not failed:
            failed.append(True)
            raise RuntimeError("first attempt fails")

    source, stats = run_pipeline(msgs, [HookSpec("pinned", flaky, "t", mode="transaction", thread="loop",
                                                 initial_backoff_s=0.01)])
    assert [tx for tx, _ in attempts] == ["1", "2", "2", "3", "4", "5"]
    assert {t for _, t in attempts} == {threading.get_ident()}
    assert stats.transactions == 5 and stats.calls_ok == 5
    assert source.committed[("syn.public.big", 0)] == 15


def test_record_calls_run_on_the_loop_thread_and_stay_there() -> None:
    """A record-mode `thread: loop` hook: every call on the loop's thread, calls of 5 ms (five times
    the fast path's bound) included, in offset order; every offset committed."""
    msgs = [message(0, i, i) for i in range(200)]
    seen: list[tuple[int, int]] = []

    def hook(param: Any) -> None:
        if param.ctx.offset % 40 == 0:
            time.sleep(0.005)
        seen.append((threading.get_ident(), param.ctx.offset))

    source, stats = run_pipeline(msgs, [HookSpec("pinned", hook, "t", thread="loop")])
    assert seen == [(threading.get_ident(), i) for i in range(200)]
    assert stats.calls_ok == 200
    assert source.committed == {(msgs[0].topic, 0): 200}


def _ahead_of_a_loop_hook(soft: int) -> int:
    """Most messages taken and not yet called, over 250 five-row transactions whose calls take ~6 ms
    on the loop's thread (the hook alone: no call ever runs on a worker). A turn takes a batch (50
    messages) in and runs 10 ms of calls twice (4 calls, 28 messages): without a hold the intake
    runs ahead."""
    msgs = transactions(250, 5)
    source = Counting(msgs, batch_size=50)
    called = [0]
    ahead: list[int] = []

    def hook(param: Any) -> None:
        time.sleep(0.006)
        called[0] += len(param.records) + 2  # its rows and its two markers
        ahead.append(source.taken - called[0])

    run_pipeline(msgs, [HookSpec("pinned", hook, "t", mode="transaction", thread="loop")], source=source,
                 max_in_flight=100_000, soft_max_in_flight=soft)
    assert called[0] == len(msgs)
    return max(ahead)


def test_the_intake_holds_back_for_a_thread_loop_hook() -> None:
    """The soft bound holds for a hook that runs only on the loop's thread: with 100 the loop keeps
    within 100 messages (+ a batch, + a batch per half second of hold, + the calls of one turn) of
    the calls; with 0 (off) it runs far ahead."""
    held = _ahead_of_a_loop_hook(100)
    free = _ahead_of_a_loop_hook(0)
    assert held <= 100 + 50 + 50 * 2 + 70, held
    assert free > 500, free


def test_record_calls_on_the_loop_thread_keep_the_turn_budget() -> None:
    """A record-mode `thread: loop` hook that is a record's only hook is called as records are
    taken in, but only for the turn's 10 ms: the rest of a 200-record batch waits for the next
    turns, so the loop polls again between them (before: all 200 calls of 5 ms, 1 s, in one go)."""
    msgs = [message(0, i, i) for i in range(400)]

    class EveryPoll(MemorySource):
        polls = 0

        def poll(self, timeout_s: float) -> Sequence[RawMessage]:
            self.polls += 1  # (empty ones too: the loop's turns)
            return super().poll(timeout_s)

    source = EveryPoll(msgs, batch_size=200)
    at_poll: list[int] = []

    def hook(param: Any) -> None:
        time.sleep(0.005)
        at_poll.append(source.polls)

    _, stats = run_pipeline(msgs, [HookSpec("pinned", hook, "t", thread="loop")], source=source)
    assert stats.calls_ok == 400
    per_poll = [at_poll.count(n) for n in set(at_poll)]
    assert max(per_poll) <= 20, per_poll
