"""A call that ends while the loop dispatches a fetched batch lets the hook's next call start
at once, not after the whole batch (a serial hook behind a busy loop)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import structlog

from sidecar.checkpoint import Checkpoint
from sidecar.databases import Databases
from sidecar.decode import Decoder
from sidecar.dispatch import Dispatcher
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.loop import run_loop
from sidecar.param import ParamFactory
from sidecar.testing import MemorySource
from tests.pipeline.test_inline_calls import messages

BATCH = 50
DECODE_S = 0.002  # loop work per message: a batch takes 100 ms to dispatch


class SlowDecoder(Decoder):
    def __init__(self) -> None:
        super().__init__()
        self.decoded = 0

    def decode(self, raw: RawMessage) -> Any:
        time.sleep(DECODE_S)
        self.decoded += 1
        return super().decode(raw)


@pytest.mark.pure_python  # subclasses or patches a compiled class
def test_a_serial_hooks_next_call_starts_while_the_batch_is_still_dispatched() -> None:
    msgs = messages(2 * BATCH)
    decoder = SlowDecoder()
    at_call: dict[int, int] = {}  # record id → messages decoded when its call started
    order: list[int] = []

    def hook(p: Any) -> None:
        order.append(p.record["id"])
        at_call[p.record["id"]] = decoder.decoded

    source = MemorySource(msgs, batch_size=BATCH)
    log = structlog.get_logger()
    cp = Checkpoint(source, 0.0, 1)
    d = Dispatcher([HookSpec("serial", hook, "p")], ParamFactory("p", Databases(), log), cp, log,
                   inline_below_s=0.0)  # every call on a worker, one at a time (ordering: partition)
    try:
        run_loop(source, decoder, d, cp, threading.Event(), until_exhausted=True, shutdown_grace_s=1)
    finally:
        d.close()
    assert order == list(range(2 * BATCH))  # each record once, in offset order
    assert source.committed[(msgs[0].topic, 0)] == 2 * BATCH
    # The first batch's calls (~ms) end early in the second batch's 100 ms of dispatching: the
    # second batch's first records are called then, long before its last record is decoded.
    second = [at_call[i] for i in range(BATCH, 2 * BATCH)]
    assert min(second) < 2 * BATCH - 10, second


def test_a_mid_batch_service_keeps_the_turns_inline_budget() -> None:
    """Fast hooks on the loop's thread get INLINE_TURN_S per loop turn; a service in the middle of a
    batch must not hand them a fresh budget (the loop would poll less often than documented)."""
    source = MemorySource(messages(1), batch_size=BATCH)
    log = structlog.get_logger()
    d = Dispatcher([HookSpec("h", lambda p: None, "p")], ParamFactory("p", Databases(), log),
                   Checkpoint(source, 0.0, 1), log)
    try:
        d.service()
        budget = d._inline_until
        time.sleep(0.01)
        d.service(new_turn=False)
        assert d._inline_until == budget
        d.service()
        assert d._inline_until > budget
    finally:
        d.close()


def _yields(monkeypatch: Any, hook: Any, every: int, inline_below_s: float, n: int = 40,
            probe_calls: int = 1000, backlog: int = 0) -> tuple[int, list[int]]:
    """Run n records through one hook; count the loop's hand-over sleeps (YIELD_S, made unique)."""
    import sidecar.loop as loop_mod

    monkeypatch.setattr(loop_mod, "YIELD_S", 1.25e-5)
    monkeypatch.setattr(loop_mod, "YIELD_BACKLOG", backlog)
    real_sleep = time.sleep
    count = [0]

    def sleep(seconds: float) -> None:
        if seconds == 1.25e-5 and threading.current_thread() is threading.main_thread():
            count[0] += 1
        real_sleep(seconds)

    monkeypatch.setattr(loop_mod.time, "sleep", sleep)
    msgs = messages(n)
    seen: list[int] = []

    def fn(p: Any) -> None:
        hook()
        seen.append(p.record["id"])

    source = MemorySource(msgs, batch_size=8)  # calls start when the loop services, after each batch
    log = structlog.get_logger()
    cp = Checkpoint(source, 0.0, 1)
    d = Dispatcher([HookSpec("h", fn, "p", ordering="none", concurrency=4)], ParamFactory("p", Databases(), log),
                   cp, log, inline_below_s=inline_below_s, inline_probe_calls=probe_calls)
    try:
        run_loop(source, Decoder(), d, cp, threading.Event(), until_exhausted=True, shutdown_grace_s=1,
                 yield_every_records=every)
    finally:
        d.close()
    assert source.committed[(msgs[0].topic, 0)] == n
    return count[0], seen


def test_the_loop_hands_the_interpreter_to_running_hook_calls(monkeypatch: Any) -> None:
    """While calls run on workers, the loop sleeps briefly every `yield_every_records` records it
    takes in (a hook thread back from its database gets the interpreter at once)."""
    gate = threading.Event()
    count, seen = _yields(monkeypatch, lambda: gate.wait(0.05), every=4, inline_below_s=0.0)
    assert sorted(seen) == list(range(40))
    # Every 4th record: 10 times; the first batch's 2 before any call started, the other 8 while
    # the first calls (50 ms each, 4 at a time) still run.
    assert count == 8, count


def test_the_loop_does_not_sleep_without_worker_calls_or_when_turned_off(monkeypatch: Any) -> None:
    count, seen = _yields(monkeypatch, lambda: gate_time(), every=0, inline_below_s=0.0)
    assert count == 0 and sorted(seen) == list(range(40))
    # Fewer records in flight than YIELD_BACKLOG: the calls wait for the intake, which goes on.
    count, seen = _yields(monkeypatch, lambda: gate_time(), every=1, inline_below_s=0.0, backlog=41)
    assert count == 0 and sorted(seen) == list(range(40))
    count, seen = _yields(monkeypatch, lambda: gate_time(), every=1, inline_below_s=0.0, backlog=9)
    assert count > 0 and sorted(seen) == list(range(40))
    # A fast hook, on the loop's own thread once its first batch's calls (on workers) measured it:
    # only records taken in while those calls still run find a worker to hand over to — the second
    # batch's on an idle machine (8), a few more when the machine is busy (10 seen in CI while other
    # tests ran); from then on there is none (on workers all along, every=1 sleeps for the last 32).
    count, seen = _yields(monkeypatch, lambda: None, every=1, inline_below_s=1.0, probe_calls=8)
    assert count <= 16 and sorted(seen) == list(range(40))


def gate_time() -> None:
    time.sleep(0.001)
