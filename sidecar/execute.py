"""Where hook calls run: a bounded thread pool for plain functions, one event-loop thread
for `async def` hooks (and awaitables a plain hook returns).

A *run* is a short sequence of one lane's jobs (same hook, same ordering key) executed one
after another by one worker, so a serial hook costs one hand-off per batch of records, not
one per record. Finished calls are reported on the dispatcher's result queue:
`(run, index, error, seconds)` for a failure, `(run, first, DONE, [seconds, …])` for
consecutive successes (bundled for at most ~1 ms), `(run, None, None, 0)` ends the run. A run stops early after
a failed call (the lane must retry before going on) or when the dispatcher asks it to
(`run.stop`: shutting down, partition revoked).

A fast hook's run may instead be executed on the loop's thread (`Executor.run_inline`, chosen
by the dispatcher from the hook's measured call times): same results on the same queue, no
hand-off between threads.

Timeouts are decided by the dispatcher (it sees `run.index`/`run.started`): it marks the
call abandoned under `run.lock`; the worker, when the call finally returns, reports
`(run, index, ABANDONED, seconds)` instead of a result and ends the run. An async call is
cancelled for real; a thread cannot be, so it keeps its worker (and its concurrency slot).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from sidecar.errors import ExitNow

ABANDONED = object()
"""Marker in a result: the call returned after the dispatcher had given up on it."""

DONE = object()
"""Marker in a result: calls `index`, `index + 1`, … succeeded; `seconds` is the list of their durations."""


class Run:
    """One worker's share of one or more lanes of a hook: jobs run in order, one at a time."""

    __slots__ = ("abandoned_at", "each", "future", "index", "jobs", "lane", "lanes", "lock", "next", "orphaned",
                 "released", "started", "stop", "timed")

    def __init__(self, lane: Any, jobs: list[Any], timed: bool = False, each: bool = False) -> None:
        self.lane = lane           # the first lane (its hook is the run's hook)
        self.lanes = [lane]        # every lane whose jobs are in the run (same hook, same partition)
        self.jobs = jobs
        self.index = -1            # the job being called now (-1: between calls)
        self.next = 0              # jobs before this one have started (written by the worker, read by the loop)
        self.started = 0.0         # time.monotonic() when that call started
        self.stop = False          # do not start another job (shutdown, revoke)
        self.abandoned_at = -1     # index of the call the dispatcher gave up on
        self.orphaned = False      # its lane was dropped: results only free the slot
        self.released = False      # its slot and lane were freed when it was given up on (replay)
        self.lock = threading.Lock()
        self.timed = timed         # the hook has a timeout: index/started change under `lock`
        self.each = each           # report every success at once (bulk calls: never held behind a later call)
        self.future: asyncio.Task[Any] | None = None  # async runs: cancelled when abandoned


Result = tuple[Run, int | None, object, Any]
Call = Callable[[Any], Any]


class Executor:
    """`threads` daemon workers: one per concurrency slot of the plain hooks, so a hung call
    (which keeps its slot) never starves another hook, and never blocks the process's exit
    (concurrent.futures' pool joins its threads at exit)."""

    def __init__(self, threads: int, results: queue.SimpleQueue[Result],
                 wake: queue.SimpleQueue[None] | None = None) -> None:
        self._work: queue.SimpleQueue[tuple[Run, Call] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"hook-{i}", daemon=True) for i in range(max(1, threads))
        ]
        for t in self._threads:
            t.start()
        self._results = results
        # A token per result the loop must act on at once: a run's end (its slot and lanes are
        # free) or a failed call. A success inside a run going on wakes nobody: it is applied at
        # the loop's next turn (its offsets commit then); waking the loop for each cost the hook
        # threads the interpreter at every call (measured: the loop 41 → 29 µs per record).
        self._wake: queue.SimpleQueue[None] = wake if wake is not None else queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        self._async_pending: deque[tuple[Run, Call]] = deque()  # append/popleft are atomic
        self._async_scheduled = False

    # ------------------------------------------------------------------ event loop
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                self._loop_thread = threading.Thread(target=serve, name="hook-async", daemon=True)
                self._loop_thread.start()
                started.wait(10)
                self._loop = loop
            return self._loop

    def await_on_loop(self, awaitable: Any) -> Any:
        """From a worker thread: run an awaitable a plain hook returned on the event loop."""

        async def wrap() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop()).result()

    # ------------------------------------------------------------------ runs
    def submit(self, run: Run, call: Call, is_async: bool) -> None:
        if is_async:
            # Many runs start per loop turn: hand them to the event loop in one wake-up.
            self._async_pending.append((run, call))
            if not self._async_scheduled:
                self._async_scheduled = True
                self.loop().call_soon_threadsafe(self._start_async)
        else:
            self._work.put((run, call))

    def _start_async(self) -> None:
        """On the event loop: start a task for every run handed over since the last wake-up."""
        self._async_scheduled = False
        loop = self.loop()
        while self._async_pending:
            run, call = self._async_pending.popleft()
            run.future = loop.create_task(self._run_async(run, call))

    def add_thread(self) -> None:
        """One more worker, in place of one stuck in an abandoned call."""
        t = threading.Thread(target=self._serve, name=f"hook-{len(self._threads)}", daemon=True)
        self._threads.append(t)
        t.start()

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            self._run_sync(*item)

    def _finish_call(self, run: Run, i: int, error: object, started: float) -> bool:
        """Report one call; False when the run must end here."""
        seconds = time.monotonic() - started
        with run.lock:
            abandoned = run.abandoned_at == i
            run.index = -1
        self._results.put((run, i, ABANDONED if abandoned else error, seconds))
        if abandoned or error is not None:
            self._wake.put(None)
        return not abandoned and error is None and not run.stop

    def _end(self, run: Run) -> None:
        """Report the run's end (its slot and lanes are free): the loop acts on it at once."""
        self._results.put((run, None, None, 0.0))
        self._wake.put(None)

    def run_inline(self, run: Run, call: Call, until: float, slow_s: float) -> bool:
        """Run a fast hook's run on the calling (loop) thread: no hand-off between threads,
        which on a busy machine costs more than a fast call itself. Stops taking jobs at
        `until` (the rest go back to their lanes) or after a call longer than `slow_s` —
        then returns True: the hook is not fast (any more)."""
        return self._run_sync(run, call, until, slow_s)

    def _run_sync(self, run: Run, call: Call, until: float = math.inf, slow_s: float = math.inf) -> bool:
        if run.timed:
            self._run_sync_timed(run, call)
            return False
        # No timeout: nobody gives up on these calls, so no lock; record-mode successes are reported
        # in bundles, at the end of a call 1 ms or more after the last bundle (or at the run's end; so
        # a bundle waits for the call running when it was due) — a fast hook costs one hand-off per
        # bundle, not per call. Bulk runs (`each`) report every success at once.
        put = self._results.put
        now = time.monotonic
        ok: list[float] = []
        first = 0
        flushed = now()
        slow = False
        try:
            for i, job in enumerate(run.jobs):
                if run.stop or flushed > until or slow:
                    break
                started = now()
                run.started = started
                run.index = i
                run.next = i + 1
                param = job.param
                try:
                    result = call(param)
                    if result is not None and inspect.isawaitable(result):
                        self.await_on_loop(result)
                    if param.decode_error is not None:  # the hook caught it: still a decode failure
                        raise param.decode_error
                except ExitNow:
                    raise
                except BaseException as exc:  # SystemExit/KeyboardInterrupt in a hook are hook failures
                    run.index = -1
                    if ok:
                        put((run, first, DONE, ok))
                        ok = []
                    seconds = now() - started
                    put((run, i, exc, seconds))
                    self._wake.put(None)
                    return seconds > slow_s
                ended = now()
                run.index = -1
                if not ok:
                    first = i
                ok.append(ended - started)
                slow = ended - started > slow_s
                if run.each or ended - flushed > 0.001:
                    put((run, first, DONE, ok))
                    ok = []
                    flushed = ended
        finally:
            if ok:
                put((run, first, DONE, ok))
            self._end(run)
        return slow

    @staticmethod
    def _begin(run: Run, i: int) -> float:
        """A call of a hook with a timeout starts: the dispatcher may now give up on it."""
        started = time.monotonic()
        with run.lock:
            run.index, run.started = i, started
        run.next = i + 1
        return started

    def _run_sync_timed(self, run: Run, call: Call) -> None:
        try:
            for i, job in enumerate(run.jobs):
                if run.stop:
                    break
                started = self._begin(run, i)
                error: object = None
                try:
                    result = call(job.param)
                    if inspect.isawaitable(result):
                        self.await_on_loop(result)
                    if job.param.decode_error is not None:  # the hook caught it: still a decode failure
                        raise job.param.decode_error
                except BaseException as exc:  # SystemExit/KeyboardInterrupt in a hook are hook failures
                    error = exc
                if not self._finish_call(run, i, error, started):
                    break
        finally:
            self._end(run)

    async def _run_async(self, run: Run, call: Call) -> None:
        try:
            for i, job in enumerate(run.jobs):
                if run.stop:
                    break
                started = self._begin(run, i)
                error: object = None
                try:
                    result: Coroutine[Any, Any, Any] | Any = call(job.param)
                    if inspect.isawaitable(result):
                        await result
                    if job.param.decode_error is not None:
                        raise job.param.decode_error
                except asyncio.CancelledError as exc:  # the dispatcher gave up on this call
                    error = exc
                except BaseException as exc:
                    error = exc
                if not self._finish_call(run, i, error, started):
                    break
        finally:
            self._end(run)

    def cancel(self, run: Run) -> None:
        """Stop an abandoned async call for real (a thread cannot be stopped)."""
        task = run.future
        if task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(task.cancel)

    def close(self) -> None:
        # Abandoned calls may still run: their threads are daemons, nobody waits for them.
        for _ in self._threads:
            self._work.put(None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


class GaveUp(Exception):
    """`within` stopped waiting for a call that had not returned (not a TimeoutError the call raised)."""


def within(fn: Callable[[], Any], timeout_s: float, name: str) -> Any:
    """`fn()` on a daemon thread, waited for `timeout_s` (the CLI's one-off calls: `check`'s
    database probe, a `hooks test` call). Returns its result or re-raises what it raised (SystemExit
    too); GaveUp if it is still running then — the thread is left to end by itself."""
    outcome: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise GaveUp(f"did not finish within {timeout_s:g} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def call_once(fn: Call, param: Any) -> Any:
    """Call a hook once on this thread, sync or async (dead-letter replay, `sidecar.testing`)."""
    result = fn(param)
    if inspect.isawaitable(result):

        async def wrap() -> Any:
            return await result

        return asyncio.run(wrap())
    return result
