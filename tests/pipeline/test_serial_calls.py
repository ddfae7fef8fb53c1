"""A serial transaction hook's next calls join the run going on its worker: the worker starts
each as soon as the call before it ends, without a hand-off through the loop's thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
import structlog

from sidecar.checkpoint import Checkpoint
from sidecar.databases import Databases
from sidecar.decode import Decoder
from sidecar.dispatch import Dispatcher
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.param import ParamFactory
from sidecar.rebalance import Rebalance
from sidecar.testing import MemorySource, run_pipeline
from tests.pipeline.test_transactions import synthetic_transaction

M, P0, P1 = ("syn.transaction", 0), ("syn.public.big", 0), ("syn.public.big", 1)
TABLE = "public.big"


def transactions(n: int) -> list[RawMessage]:
    """`n` one-row transactions, markers and data in stream order (offsets numbered across both
    topics, in that order)."""
    out: list[RawMessage] = []
    for tx in range(1, n + 1):
        data, (begin, end) = synthetic_transaction(tx, 1)
        out += [begin, *data, end]
    return out


def one_row_transaction(tx: int, unit: tuple[str, int], row_offset: int, marker_offset: int) -> list[RawMessage]:
    """One row on `unit`, its markers on the transaction topic, at the offsets given."""
    (data,), (begin, end) = synthetic_transaction(tx, 1)
    return [RawMessage(M[0], M[1], marker_offset, None, begin.value),
            RawMessage(unit[0], unit[1], row_offset, None, data.value),
            RawMessage(M[0], M[1], marker_offset + 1, None, end.value)]


def dispatch_all(cp: Checkpoint, d: Dispatcher, msgs: Sequence[RawMessage]) -> None:
    """Take each message in and dispatch it, as the loop does (none may be refused)."""
    dec = Decoder()
    for raw in msgs:
        token = cp.begin(raw)
        assert token is not None
        d.dispatch(raw, dec.decode(raw), token)


class BlockingAtEnd(MemorySource):
    """One message per poll; once every message was taken, one poll blocks the loop's thread until
    `unblock` is set (or `wait_s` passed)."""

    def __init__(self, messages: Sequence[RawMessage], wait_s: float) -> None:
        super().__init__(messages, batch_size=1)
        self.blocking = threading.Event()
        self.unblock = threading.Event()
        self.released_in_time: bool | None = None
        self._wait_s = wait_s

    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        if not self.messages and self.released_in_time is None:
            self.blocking.set()
            self.released_in_time = self.unblock.wait(self._wait_s)
            return []
        return super().poll(timeout_s)


@pytest.mark.parametrize("timeout_s", [None, 30.0])
def test_a_serial_hooks_next_calls_start_while_the_loop_is_busy(timeout_s: float | None) -> None:
    """Calls 2 and 3 are dispatched while call 1 runs; then the loop's thread is kept in a poll.
    They still run: the worker goes on to them (before: they waited in the lane until the loop
    applied call 1's end and started a new run — here, for the whole poll)."""
    source = BlockingAtEnd(transactions(3), wait_s=5.0)
    calls: list[tuple[str | None, list[int]]] = []

    def hook(p: Any) -> None:
        if not calls:
            # every transaction is dispatched before the source blocks the loop
            assert source.blocking.wait(5.0)
        calls.append((p.ctx.transaction.id, [r["id"] for r in p.records]))
        if len(calls) == 3:
            source.unblock.set()

    started = time.monotonic()
    _, stats = run_pipeline([], [HookSpec("tx", hook, TABLE, mode="transaction", timeout_s=timeout_s)],
                            source=source)
    assert calls == [("1", [100_001]), ("2", [200_001]), ("3", [300_001])]
    assert source.released_in_time is True, "calls 2 and 3 waited for the loop's thread"
    assert time.monotonic() - started < 4.0
    assert stats.calls_ok == 3 and stats.transactions == 3
    assert source.committed == {M: 9, P0: 8}


def test_a_failed_call_in_a_joined_run_is_retried_before_the_calls_behind_it() -> None:
    """A call that joined a run and fails: the calls behind it wait (go back to the lane in order)
    and run after its retry succeeds — commit order holds."""
    source = BlockingAtEnd(transactions(4), wait_s=0.5)
    order: list[str | None] = []
    failed = [False]

    def hook(p: Any) -> None:
        tx = p.ctx.transaction.id
        if not order:
            assert source.blocking.wait(5.0)
        order.append(tx)
        if tx == "2" and not failed[0]:
            failed[0] = True
            raise RuntimeError("first attempt of call 2 fails")

    _, stats = run_pipeline([], [HookSpec("tx", hook, TABLE, mode="transaction", initial_backoff_s=0.01)],
                            source=source)
    assert order == ["1", "2", "2", "3", "4"]
    assert stats.calls_ok == 4 and stats.calls_failed == 1
    assert source.committed == {M: 12, P0: 11}


def test_a_finished_call_is_committed_while_the_call_after_it_in_its_run_hangs() -> None:
    """A quick call (under 1 ms) followed in the same run by one that hangs: the quick call's
    success is reported at once, so its offsets are committed meanwhile (before: successes under
    1 ms were held for a bundle until the next call returned). (Found by review.)"""
    source = MemorySource(transactions(2), batch_size=100)  # one batch: both calls in one run
    gate = threading.Event()
    committed_while_hanging: list[dict[Any, int]] = []

    def hook(p: Any) -> None:
        if p.ctx.transaction.id == "2":
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and source.committed.get(P0) != 2:
                time.sleep(0.01)
            committed_while_hanging.append(dict(source.committed))
            gate.set()

    _, stats = run_pipeline([], [HookSpec("tx", hook, TABLE, mode="transaction")], source=source)
    assert gate.is_set() and stats.calls_ok == 2
    assert committed_while_hanging == [{M: 3, P0: 2}]  # T1: markers 0 and 2, row 1
    assert source.committed == {M: 6, P0: 5}


def test_a_revoke_never_fetches_again_calls_that_finished_in_a_run_it_gives_up_on() -> None:
    """A call from the revoked partition joined a run whose earlier calls finished and were
    committed: the run is given up on, but what it finished is not fetched or called again
    (before: T1 and T2 were fetched again from offset 0 and called after T3, without markers).
    (Found by review.)"""
    log = structlog.get_logger("test")
    msgs = [m for tx, unit, row, marker in ((1, P0, 0, 0), (2, P0, 1, 2), (3, P0, 2, 4), (4, P1, 0, 6))
            for m in one_row_transaction(tx, unit, row, marker)]
    source = MemorySource(msgs)  # (its history serves the seeks; fed by hand below)
    source.messages.clear()
    source.exhausted = True
    source.auto_units = False
    cp = Checkpoint(source, 0.0, 1)
    gates = {1: threading.Event(), 3: threading.Event()}
    calls: list[str] = []

    def hook(p: Any) -> None:
        tx = int(p.ctx.transaction.id)
        calls.append(str(tx))
        if tx in gates:
            gates[tx].wait(5.0)
        else:
            time.sleep(0.002)  # > 1 ms: its success is reported before the next call (no bundle)

    d = Dispatcher([HookSpec("tx", hook, TABLE, mode="transaction")],
                   ParamFactory("p", Databases(), log), cp, log)
    rb = Rebalance(d, cp, revoke_wait_s=0.2)
    rb.assigned([M, P0, P1])
    dec = Decoder()

    def feed(msgs: list[RawMessage]) -> None:
        for raw in msgs:
            token = cp.begin(raw)
            assert token is not None
            d.dispatch(raw, dec.decode(raw), token)

    def until(cond: Any) -> None:
        deadline = time.monotonic() + 5
        while not cond() and time.monotonic() < deadline:
            d.service(0.01)
        assert cond()

    try:
        feed(one_row_transaction(1, P0, 0, 0))
        d.service()
        until(lambda: calls == ["1"])          # T1 runs (blocked) on its worker
        feed(one_row_transaction(2, P0, 1, 2) + one_row_transaction(3, P0, 2, 4))
        gates[1].set()
        until(lambda: calls == ["1", "2", "3"])  # T1, T2 done; T3 runs (blocked)
        d.service()
        assert cp.commit()
        committed_before = dict(source.committed)
        assert committed_before[P0] == 2       # T1's and T2's rows are committed
        feed(one_row_transaction(4, P1, 0, 6))                 # T4: a row of P1, arrives while T3 runs
        d.service()
        rb.revoked({P1})                       # P1 is revoked (T3 still running)
        # Only T4 depends on P1: the kept partitions need not be fetched again before T4's records,
        # and certainly not before what was already committed.
        rewound = dict(source.seeks)
        gates[3].set()
        # what follows: the re-fetched messages go through, then the input ends
        for _ in range(50):
            for raw in source.poll(0):
                token = cp.begin(raw)
                if token is not None:
                    d.dispatch(raw, dec.decode(raw), token)
            d.service(0.01)
        d.drain()
        until(lambda: not d.pending())
        cp.commit()
        # T1 and T2 (done, committed) are not called again; T3 ran in the orphaned run beside
        # T4, so it comes again (at least once); calls stay in commit order
        assert calls in (["1", "2", "3"], ["1", "2", "3", "3"]), calls
        assert P0 not in rewound or rewound[P0] >= committed_before[P0], rewound
        assert source.committed[P0] == 3 and P1 not in rewound
    finally:
        gates[3].set()
        d.close()


def test_the_loops_wait_is_not_cut_short_by_a_success_inside_a_run_but_by_its_end() -> None:
    """`service(wait_s)`, the loop's idle wait: a call that succeeds while its run goes on wakes
    nobody (its result is applied when the wait ends); the run's end, or a failed call, ends the
    wait at once. (Before: every success woke the loop's thread, which then took the interpreter
    from the hook threads at each call: the loop's CPU per record 41 → 29 µs on the bench.)"""
    log = structlog.get_logger("test")
    source = MemorySource(transactions(3))
    msgs = list(source.messages)  # (numbered: offsets across both topics)
    source.messages.clear()
    cp = Checkpoint(source, 0.0, 1)
    gate, second = threading.Event(), threading.Event()
    calls: list[str] = []

    def hook(p: Any) -> None:
        calls.append(p.ctx.transaction.id)
        if p.ctx.transaction.id == "2":
            second.set()
            gate.wait(5.0)
        if p.ctx.transaction.id == "3":
            raise RuntimeError("call 3 fails")

    d = Dispatcher([HookSpec("tx", hook, TABLE, mode="transaction", initial_backoff_s=10.0)],
                   ParamFactory("p", Databases(), log), cp, log)
    try:
        dispatch_all(cp, d, msgs)
        d.service()                       # one run: T1, T2, T3
        assert second.wait(5.0)           # T1 succeeded, T2 runs (blocked): the run goes on
        started = time.monotonic()
        d.service(0.3)
        assert time.monotonic() - started >= 0.25, "a success inside the run ended the wait"
        assert d.stats.calls_ok == 1      # ... and was applied when it ended
        threading.Timer(0.05, gate.set).start()
        started = time.monotonic()
        d.service(5.0)                    # T2 succeeds, T3 fails: the run ends
        assert time.monotonic() - started < 2.0, "the failure or the run's end did not end the wait"
        deadline = time.monotonic() + 5.0
        while d.stats.calls_failed == 0 and time.monotonic() < deadline:
            d.service(0.05)
        assert calls == ["1", "2", "3"] and d.stats.calls_ok == 2 and d.stats.calls_failed == 1
    finally:
        gate.set()
        d.shutdown(1.0)


def test_runs_on_the_loops_thread_leave_nothing_that_wakes_the_loop() -> None:
    """Two `thread: loop` hooks run their calls inside `service`: afterwards no run end or failure
    is left waiting (a stale token made the next record's mid-batch check service again, and the
    idle wait return at once). (Found by review.)"""
    log = structlog.get_logger("test")
    source = MemorySource(transactions(3))
    msgs = list(source.messages)
    source.messages.clear()
    cp = Checkpoint(source, 0.0, 1)
    d = Dispatcher([HookSpec("a", lambda p: None, TABLE, thread="loop"),
                    HookSpec("b", lambda p: None, TABLE, thread="loop")],
                   ParamFactory("p", Databases(), log), cp, log)
    try:
        dispatch_all(cp, d, msgs)
        d.service()
        assert d.stats.calls_ok == 6
        assert d.no_results()
    finally:
        d.shutdown(1.0)
