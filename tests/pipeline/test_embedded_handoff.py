"""The loop against a source that works like the embedded engine: one batch at a time, the next
only once this one is committed (the engine waits in `handleBatch` until then)."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Sequence
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
from tests.pipeline.test_inline_calls import messages

POLL_TIMEOUT_S = 0.3
BATCH = 3


class EngineLikeSource:
    """Batches handed over one at a time; while one waits for its commit a poll can only time out
    (nothing arrives before the commit lets the engine go on): `blocked` records such waits."""

    auto_units = True

    def __init__(self, batches: list[list[RawMessage]]) -> None:
        self.batches = batches
        self.exhausted = False
        self.blocked: list[float] = []
        self.committed_batches = 0
        self.handed_out = 0
        self._unit = 0
        self._open: int | None = None  # size of the batch the engine waits on
        self._position = 0

    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        if self._open is not None:
            if timeout_s > 0:
                self.blocked.append(timeout_s)
                time.sleep(timeout_s)
            return []
        if not self.batches:
            self.exhausted = True
            return []
        self._unit += 1
        self._position = 0
        batch = self.batches.pop(0)
        self._open = len(batch)
        self.handed_out += len(batch)
        return batch

    def locate(self, raw: RawMessage) -> tuple[Hashable, int]:
        self._position += 1
        return ("engine", self._unit), self._position - 1

    def commit(self, offsets: dict[Hashable, int]) -> bool:
        if self._open is not None and offsets.get(("engine", self._unit), 0) >= self._open:
            self._open = None
            self.committed_batches += 1
        return True

    def pause(self) -> None: pass

    def resume(self) -> None: pass

    def halt(self, unit: Hashable) -> None: pass

    def close(self) -> None: pass


def run_to_end(source: EngineLikeSource, d: Dispatcher, cp: Checkpoint) -> None:
    """The loop over the whole source (polls of POLL_TIMEOUT_S), then the dispatcher closed."""
    try:
        run_loop(source, Decoder(), d, cp, threading.Event(), poll_timeout_s=POLL_TIMEOUT_S, until_exhausted=True,
                 shutdown_grace_s=1)
    finally:
        d.close()


@pytest.mark.pure_python  # subclasses or patches a compiled class
def test_a_batch_finished_on_a_worker_is_committed_before_the_loop_waits_on_the_source() -> None:
    """A worker's call that returns just after the loop's end-of-turn commit is applied at the top of
    the next turn; it is committed there, before a poll that could wait (the engine hands over the
    next batch only after that commit): no poll ever waits while the engine waits for a commit."""
    returned = 0
    lock = threading.Lock()

    def hook(p: Any) -> None:
        nonlocal returned
        time.sleep(0.002)
        with lock:
            returned += 1

    class LateResults(Checkpoint):
        def maybe_commit(self) -> None:
            super().maybe_commit()
            # Let running calls return (and their workers post the results) only after this commit:
            # the window in which a finished batch used to stay uncommitted.
            deadline = time.monotonic() + 2
            while returned < source.handed_out and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(0.005)  # the worker posts the run's end

    msgs = messages(30)
    source = EngineLikeSource([msgs[i:i + BATCH] for i in range(0, 30, BATCH)])
    log = structlog.get_logger()
    cp = LateResults(source, 0.0, 1)
    d = Dispatcher([HookSpec("h", hook, "events_default_identity")], ParamFactory("p", Databases(), log), cp, log,
                   inline_below_s=0.0)  # every call on a worker
    t0 = time.monotonic()
    run_to_end(source, d, cp)
    assert d.stats.calls_ok == 30 and source.committed_batches == 10
    assert source.blocked == []
    assert time.monotonic() - t0 < 10 * POLL_TIMEOUT_S


def test_a_batch_hooks_leftover_records_are_called_at_max_wait_not_after_a_whole_poll() -> None:
    """Batch mode, engine batches of 100 records, `max_records` 30: each engine batch leaves 10
    records for the `max_wait_ms` flush, and the engine hands nothing more over until they are
    called and committed. The loop's poll waits no longer than that flush is due (before: the
    whole poll_timeout_s, 0.3 s per engine batch). (Found by review.)"""
    source = EngineLikeSource([messages(3000)[i:i + 100] for i in range(0, 3000, 100)])
    log = structlog.get_logger()
    cp = Checkpoint(source, 0.0, 1)
    sizes: list[int] = []
    d = Dispatcher([HookSpec("b", lambda p: sizes.append(len(p.records)), "events_default_identity",
                             mode="batch", max_records=30, max_wait_ms=20)],
                   ParamFactory("p", Databases(), log), cp, log, inline_below_s=0.0)
    t0 = time.monotonic()
    run_to_end(source, d, cp)
    assert sum(sizes) == 3000 and source.committed_batches == 30
    assert max(source.blocked, default=0.0) <= 0.021
    assert time.monotonic() - t0 < 30 * POLL_TIMEOUT_S / 2
