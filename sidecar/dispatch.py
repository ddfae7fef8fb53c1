"""Dispatch: every decision about a record's fate, in one place.

A decoded record goes to each matching hook as a *job* in one of the hook's *lanes*: the
lane is the unit of order — `ordering: partition` one lane per (topic, partition), `key`
one per Kafka message key (keyless records: their partition's lane), `none` one per record.
A lane runs one job at a time, in order; a hook runs up to `concurrency` lanes at once
(`execute.py`: threads for plain hooks, one event loop for `async def`). A record is
finished — `Checkpoint.finish`, its offset may be committed — when all its hooks are done.

A failed attempt keeps its job at the head of its lane (only that lane waits): retried
after exponential backoff (or the delay the hook asked for with `Retry`), then the hook's
policy once attempts run out — dead letter (the record is done), skip (done, counted) or
halt (its unit is halted: nothing at or after it is committed; not ready). A call past
`timeout_s` is given up on: its `ctx.cancelled` is set, the attempt counts as `timeout`;
the call keeps its concurrency slot and its lane until it returns (an async call is
cancelled), and more than `max_abandoned` such calls fail liveness.

Undecodable messages are dead-lettered with their reason (no store: their unit halts, or
in `report` mode — `replay` — they are counted and the stream goes on). A dead letter that
cannot be written is retried with backoff; the record stays unfinished meanwhile.

Bulk modes (`mode: transaction|batch`): a job is then a *call* holding many records.
Transaction hooks get whole source transactions from `transactions.Assembler` (records of
transactions and their BEGIN/END markers are held until every transaction hook's call of
the transaction finished — so the checkpoint never commits part of a transaction); rows
without a transaction (snapshot rows) reach them as batch calls. Batch hooks collect up to
`max_records` records or `max_wait_ms`. A call's lane: one per hook with `ordering:
partition` (one call at a time, in commit order), one per call with `none`. Retries,
timeouts and the failure policy apply to the whole call; its dead letter is one entry per
record, linked by the call id (`call` block), so each stays under the store's size limit.

Where calls run: a plain record-mode hook without timeout starts on the workers; once its
calls average under `inline_below_s` over `inline_probe_calls` calls, its runs execute on the
loop's thread (at most `INLINE_TURN_S` per turn) — handing fast calls to a thread costs more
than the calls; one call over ten times the bound sends it back to the workers. A hook set to
`thread: loop` (serial, no timeout, not async) always runs there, however long its calls take.

All bookkeeping happens on the loop's thread: workers only call hooks and report.
"""

from __future__ import annotations

import contextlib
import heapq
import inspect
import itertools
import math
import queue
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Hashable, Sequence
from datetime import UTC, datetime
from typing import Any

from sidecar.checkpoint import Checkpoint, Token
from sidecar.control import HookTimeout, Retry, SkipEvent
from sidecar.dead_letters import DeadLetterWriter, make_entry
from sidecar.errors import ExitNow
from sidecar.events import (
    ChangeEvent,
    Decoded,
    DecodeError,
    DecodeFailure,
    RawMessage,
    TransactionInfo,
    TransactionMarker,
)
from sidecar.execute import ABANDONED, DONE, Executor, Result, Run
from sidecar.health import Health
from sidecar.hooks import HookSpec
from sidecar.lanes import DispatchStats, HookState, Job, Lane, Record, offset
from sidecar.metrics import Metrics, NoMetrics
from sidecar.param import ParamFactory
from sidecar.route import Router
from sidecar.transactions import Assembler, Transaction, batch_call_id

_Modes = tuple[tuple[HookSpec, ...], tuple[HookState, ...], tuple[HookState, ...]]
"""Per (table, op): the record hooks, the batch-call hooks and the transaction-call hooks."""

RUN_MAX = 256
"""Jobs one worker takes from a lane at a time (one hand-off per run, not per record)."""

INLINE_TURN_S = 0.01
"""How long calls made on the loop's thread may take per turn before the loop polls again."""

STALLED_S = 0.1
"""A call running longer than this turns the loop's soft hold off (`waiting`): the hold is for hooks
the loop runs ahead of, not for a lane that waits on something."""

EXPIRY_CHECK_S = 0.5
"""How often open transactions are checked against `transaction_end_timeout_s`."""


class Dispatcher:
    def __init__(
        self,
        hooks: Sequence[HookSpec],
        params: ParamFactory,
        checkpoint: Checkpoint,
        log: Any,
        *,
        dead_letters: DeadLetterWriter | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        max_attempts: int | None = None,
        report: bool = False,
        max_abandoned: int = 16,
        max_message_bytes: int | None = None,
        max_transaction_records: int = 10_000,
        transaction_end_timeout_s: float = 60.0,
        subscribed: Callable[[str], bool] | None = None,
        inline_below_s: float = 100e-6,
        inline_probe_calls: int = 1000,
    ) -> None:
        self.router = Router(hooks)
        self.params = params
        self.checkpoint = checkpoint
        self.log = log
        self.pipeline = params.pipeline
        self.dead_letters = dead_letters
        if dead_letters is not None:  # written entries become durable together, before each commit
            checkpoint.before_commit = dead_letters.sync
        self.metrics = metrics or NoMetrics()
        self.health = health or Health()
        self.max_attempts = max_attempts  # overrides every hook's (replay: fail fast)
        self.report = report              # replay: a final failure is counted and reported, not stored
        self.max_abandoned = max_abandoned
        self.max_message_bytes = max_message_bytes
        self.stats = DispatchStats()
        self._hooks = {h.name: HookState(h) for h in self.router.hooks}  # with their `where` filters
        self._results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()  # a token per run end or failure
        # No run ended and no call failed since `service` last ran (cheap: asked per record). A
        # success inside a run going on readies nothing: it waits for the loop's next turn.
        self.no_results = self._wake.empty
        self._executor = Executor(sum(h.concurrency for h in self.router.hooks if not h.is_async), self._results,
                                  self._wake)
        self._running: set[Run] = set()
        self._timers: list[tuple[float, int, Lane]] = []
        self._seq = itertools.count()
        self._rejects: deque[tuple[float, dict[str, Any], Token]] = deque()  # dead letters to retry
        self.closing = False
        self._queued = 0  # jobs waiting in lanes (not in a run)
        self._releasing: set[Hashable] = set()  # units being revoked: start nothing more for them
        self._modes: dict[tuple[str, str], _Modes] = {}
        self._targets: dict[tuple[str, str], tuple[HookState, ...]] = {}  # record mode: (table, op) → hooks
        self._txn_hooks = [self._hooks[h.name] for h in hooks if h.mode == "transaction"]
        self._loop_hooks = [h for h in self._hooks.values() if h.spec.thread == "loop"]
        self._batch_hooks = [self._hooks[h.name] for h in hooks if h.mode != "record"]
        # Every change is decoded in full at intake (`_bulk`): the loop need not route it first.
        self.reads_every_field = bool(self._batch_hooks)
        self._subscribed = subscribed
        self.assembler: Assembler[Record] | None = (
            Assembler(max_transaction_records, transaction_end_timeout_s,
                      None if subscribed is None else self._consumed) if self._txn_hooks else None)
        self._next_expiry_check = 0.0
        self._open_reported = -1
        self._below_s = inline_below_s  # 0: every call on a worker
        self._slow_s = 10 * inline_below_s  # one inline call longer than this sends its hook back to the workers
        self.inline_probe_calls = inline_probe_calls
        self._inline_until = 0.0  # this turn's calls on the loop's thread stop here
        self._deferred = False    # ready lanes wait for the next turn (a fast hook's, or readied by its runs)
        self._seen: dict[tuple[str, str], int] = {}  # change events per (table, op) this turn
        self._newest_us: int | None = None

    # ------------------------------------------------------------------ intake
    def dispatch(self, raw: RawMessage, decoded: Decoded, token: Token) -> None:
        """Take one record (already begun in the checkpoint)."""
        stats = self.stats
        stats.messages += 1
        if isinstance(decoded, ChangeEvent):
            stats.events += 1
            key = (decoded.table, decoded.op)
            seen = self._seen  # counted per turn, reported to the metrics by `service`
            seen[key] = seen.get(key, 0) + 1
            us = decoded.commit_us
            if us is not None and (self._newest_us is None or us > self._newest_us):
                self._newest_us = us
            if self._batch_hooks:
                self._bulk(raw, decoded, token)
                return
            targets = self._targets.get(key)
            if targets is None:
                targets = self._targets[key] = tuple(self._hooks[h.name] for h in self.router.route(*key))
            if targets:
                if len(targets) == 1 and targets[0].inline and self._direct(targets[0], raw, decoded, token):
                    return
                self._record_jobs(Record(raw, token, len(targets)), decoded, targets)
                return
        elif isinstance(decoded, DecodeFailure):
            self._reject(decoded, token)
            return
        elif (isinstance(decoded, TransactionMarker) and self.assembler is not None
              and self.assembler.marker(decoded, Record(raw, token, 1), time.monotonic())):
            self._deliveries()
            return
        self.checkpoint.finish(token)  # tombstone, heartbeat, marker, schema change, or no hook wants it

    def _consumed(self, scope: str, table: str) -> bool:
        """Kafka: is the topic of this data collection subscribed (Debezium's `<prefix>.<table>`)?
        The subscription, not the current assignment: a topic created moments ago may be
        assigned only at the next metadata refresh, and its events still come."""
        assert self._subscribed is not None
        return self._subscribed(f"{scope}.{table}")

    def _record_jobs(self, record: Record, event: ChangeEvent, hooks: Sequence[HookState]) -> None:
        raw = record.raw
        param = self.params.param
        for hook in hooks:
            lane = hook.lane(raw)
            lane.jobs.append(Job(record, event, param(event, hook.spec), lane=lane))
            if lane.idle():
                lane.queued = True
                hook.ready.append(lane)
        self._queued += len(hooks)

    # ------------------------------------------------------------------ bulk calls
    def _split(self, table: str, op: str) -> _Modes:
        """(record hooks, batch hooks, transaction hooks) matching a (table, op), cached."""
        found = self._modes.get((table, op))
        if found is None:
            hooks = self.router.route(table, op)
            found = (tuple(h for h in hooks if h.mode == "record"),
                     tuple(self._hooks[h.name] for h in hooks if h.mode == "batch"),
                     tuple(self._hooks[h.name] for h in hooks if h.mode == "transaction"))
            self._modes[(table, op)] = found
        return found

    def _bulk(self, raw: RawMessage, event: ChangeEvent, token: Token) -> None:
        """A record when some hook takes calls: record jobs, batch collection, transaction hold."""
        try:  # calls read their events on this thread (ids, transaction, commit time): decode them now
            event.materialize(key=False)  # (the message key: no hook reads it; as in record mode, not decoded)
        except DecodeError as exc:
            self._reject(DecodeFailure(raw, exc.reason, exc.detail), token)
            return
        record_hooks, batch_hooks, txn_hooks = self._split(event.table, event.op)
        # Every record of a transaction is held while transaction hooks exist, matching or not:
        # committing any of it early would make a redelivered transaction incomplete.
        held = self.assembler is not None and event.transaction is not None
        batched = batch_hooks if held else batch_hooks + txn_hooks
        remaining = len(record_hooks) + len(batched) + (1 if held else 0)
        if not remaining:
            self.checkpoint.finish(token)
            return
        record = Record(raw, token, remaining)
        if record_hooks:
            self._record_jobs(record, event, [self._hooks[h.name] for h in record_hooks])
        for hook in batched:
            if not hook.batch:
                hook.batch_started = time.monotonic()
            hook.batch.append((record, event))
            if len(hook.batch) >= hook.spec.max_records:
                self._flush(hook)
        if held:
            assembler = self.assembler
            assert assembler is not None
            if not assembler.event(event, record, time.monotonic()):
                record.remaining -= 1  # its transaction was dropped on a revoke: not held
                if record.remaining == 0:
                    self.checkpoint.finish(token)
            elif assembler.out or assembler.ended:
                self._deliveries()

    def _flush(self, hook: HookState) -> None:
        """Call a batch hook (or a transaction hook's rows without transaction) on what it collected."""
        batch, hook.batch = hook.batch, []
        if not batch:
            return
        events = [e for _, e in batch]
        info = TransactionInfo(id=None, committed_at=events[0].committed_at)
        param = self.params.call_param(events, hook.spec, batch_call_id([e.event_id for e in events]), info)
        self._call(hook, Job(batch[0][0], events[0], param, holds=[r for r, _ in batch], events=events))

    def _call(self, hook: HookState, job: Job) -> None:
        self.metrics.records_per_call(hook.spec.name, len(job.param.records))
        lane = hook.call_lane()
        job.lane = lane
        run = lane.run
        if (run is not None and not lane.jobs and len(run.jobs) < RUN_MAX and not hook.inline
                and not hook.spec.is_async and not run.stop and not run.orphaned and run.abandoned_at < 0
                and not lane.halted and not self._releasing):
            # The lane's run is still on its worker: the call joins it, and the worker starts it as
            # soon as the call before it ends, with no hand-off through this thread (measured: a
            # serial hook waited for the loop between runs). Worker and this thread share the list
            # (append / read by index under the interpreter lock); a call the worker no longer
            # reaches is not done and goes back to the lane's head when the run ends. Not while a
            # revoke waits for running calls (`release`): nothing more starts then.
            run.jobs.append(job)
            return
        lane.jobs.append(job)
        self._queued += 1
        self._ready(lane)

    def _deliveries(self) -> None:
        """Hand transactions (or parts) the assembler completed to the transaction hooks, in order."""
        assembler = self.assembler
        assert assembler is not None
        while assembler.out:
            d = assembler.out.popleft()
            txn = d.transaction
            if d.info.last:
                self.stats.transactions += 1
            first: tuple[list[int], list[dict[str, Any]]] | None = None
            split = self._split
            wanted = [split(e.table, e.op)[2] for e in d.events]  # each event's transaction hooks (cached)
            for hook in self._txn_hooks:
                spec = hook.spec
                picked = [i for i, hooks in enumerate(wanted) if hook in hooks]
                if not picked:
                    continue
                events = [d.events[i] for i in picked]
                # Another hook with the same records: copies of the first call's, made before any
                # hook runs — its own list and dicts, as a build gives (nested values are shared in
                # both ways, as `build_record`'s shallow copy of the row always did); a copy is cheaper.
                records = [dict(r) for r in first[1]] if first is not None and first[0] == picked else None
                param = self.params.call_param(events, spec, d.call_id, d.info, records)
                txn.calls += 1
                self._call(hook, Job(d.items[picked[0]], events[0], param, holds=(), events=events, txn=txn))
                if first is None:
                    first = (picked, param.records)  # (built by `_call`, for the metrics)
            if txn.closed and not txn.calls:
                self._release(txn)
        while assembler.ended:
            txn, reason = assembler.ended.pop(0)
            self.stats.transactions_incomplete += 1
            self.metrics.transaction_incomplete(reason)
            if reason == "no_end_empty":
                self.log.info("a BEGIN with no events and no END ended (e.g. MariaDB DDL): nothing to call",
                              reason=reason, transaction_id=txn.group_id, scope=txn.scope)
                continue
            self.log.warning("transaction ended without its END or some of its events; called with what arrived",
                reason=reason, transaction_id=txn.group_id, scope=txn.scope, received=txn.received,
                event_count=txn.end.event_count if txn.end is not None else None)
        if assembler.open_count != self._open_reported:
            self._open_reported = assembler.open_count
            self.metrics.open_transactions(assembler.open_count)

    def _release(self, txn: Transaction[Record]) -> None:
        """Every call of a closed transaction is done: its records (and markers) are finished."""
        holds, txn.holds = txn.holds, []
        for record in holds:
            record.remaining -= 1
            if record.remaining == 0:
                self.checkpoint.finish(record.token)

    def drain(self) -> None:
        """A finite source ended (replay, tests): call what batches and open transactions hold."""
        for hook in self._batch_hooks:
            self._flush(hook)
        if self.assembler is not None and (self.assembler.open_count or self.assembler.out):
            self.assembler.drain()
            self._deliveries()

    def awaiting_end(self) -> set[str]:
        """The scopes (connector topic prefixes) where a transaction first in its commit order waits
        for an END its marker topic may hold (`starved`; otherwise only data events are missing)."""
        return self.assembler.awaiting_end() if self.assembler is not None else set()

    @property
    def starved(self) -> bool:
        """Records are held for transactions still missing messages and nothing else can run:
        the source must not stay paused (its next messages complete them)."""
        return (self.assembler is not None and self.assembler.open_count > 0 and not self._running
                and not self._queued)

    def too_large(self, raw: RawMessage) -> DecodeFailure | None:
        limit = self.max_message_bytes
        if limit is None:
            return None
        size = len(raw.value or b"") + len(raw.key or b"")
        if size <= limit:
            return None
        return DecodeFailure(raw, "too_large", f"message of {size} bytes exceeds {limit}")

    @property
    def inline_below_s(self) -> float:
        """Mean call time under which a hook's calls run on the loop's thread (read-only: the
        slow-call bound is derived from it once)."""
        return self._below_s

    # ------------------------------------------------------------------ the loop's turn
    def service(self, wait_s: float = 0.0, new_turn: bool = True) -> None:
        """Apply finished calls (waiting up to `wait_s` for a run to end or a call to fail:
        successes inside runs going on are applied, not waited for), start due retries, give up
        on calls past their timeout, start runs in free slots. `new_turn=False` (the loop, in
        the middle of a fetched batch): inline runs keep this turn's time budget."""
        results, wake = self._results, self._wake
        if wait_s > 0 and self._running and wake.empty():
            with contextlib.suppress(queue.Empty):
                wake.get(timeout=wait_s)
        self._clear_wake()
        while not results.empty():
            self._apply(results.get_nowait())
        if self._seen:
            self._count_events()
        now = time.monotonic()
        if new_turn:
            self._inline_until = now + INLINE_TURN_S
            self._deferred = False
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, lane = heapq.heappop(timers)
            lane.timer = False
            self._ready(lane)
        if self._rejects and self._rejects[0][0] <= now:
            self._retry_rejects(now)
        for hook in self._batch_hooks:
            if hook.batch and now - hook.batch_started >= hook.spec.max_wait_ms / 1000:
                self._flush(hook)
        if self.assembler is not None and now >= self._next_expiry_check:
            self._next_expiry_check = now + EXPIRY_CHECK_S
            self.assembler.expire(now)
            self._deliveries()
        if self._running:
            self._check_timeouts(now)
        for hook in self._hooks.values():
            if hook.direct_s:
                self._direct_report(hook)
            if hook.ready and hook.active < hook.spec.concurrency and not self.closing:
                self._start(hook)
        self._report_health(now)

    def _clear_wake(self) -> None:
        """Take every wake token: the results they announce are queued before them, and the
        caller applies every queued result next. (Only this thread takes: not empty → get succeeds.)"""
        wake = self._wake
        while not wake.empty():
            wake.get_nowait()

    def _count_events(self) -> None:
        seen, self._seen = self._seen, {}
        events = self.metrics.events
        for (table, op), n in seen.items():
            events(table, op, n, self._newest_us)

    @property
    def busy(self) -> bool:
        """Calls are running or ready to run (the loop should not block long on the source)."""
        return bool(self._running) or self._deferred

    def waiting(self, now: float) -> bool:
        """The hooks have work ready beyond what runs: a running call has another of its lanes' calls
        behind it (not begun in its run, or queued in its lanes), or a lane waits for a slot. False
        while any call has run longer than `STALLED_S` or was given up on: a slow or stuck lane's
        backlog must not hold the intake back for the others (only that lane waits); nor do halted
        lanes or lanes waiting to retry, which are not ready. Calls of a `thread: loop` hook left for the
        loop's next turn wait too (they run on the loop's thread: only while the intake holds back)."""
        if not self._running:
            return any(hook.ready for hook in self._loop_hooks)
        behind = False
        for run in self._running:
            if run.stop or run.orphaned or run.abandoned_at >= 0 or (run.index >= 0 and now - run.started > STALLED_S):
                return False
            if not behind and (run.next < len(run.jobs) or any(lane.jobs for lane in run.lanes)):
                behind = True
        return behind or any(hook.ready for hook in self._hooks.values())

    @property
    def workers_busy(self) -> bool:
        """Calls are running (on worker threads: a call on the loop's thread ends before it returns)."""
        return bool(self._running)

    def pending(self) -> bool:
        """Anything not yet finished that can still progress (halted lanes cannot)."""
        if self._running or self._rejects:
            return True
        if any(h.batch for h in self._batch_hooks) or (self.assembler is not None and self.assembler.open_count):
            return True
        return any(lane.jobs and not lane.halted for h in self._hooks.values() for lane in h.lanes.values())

    def intake(self, polled: bool, data_read: bool) -> None:
        """What the loop reads of its source (`Assembler.intake`): transactions whose missing pieces
        may sit unread meanwhile are not timed out for that time."""
        if self.assembler is not None:
            self.assembler.intake(polled, data_read, time.monotonic())

    def next_due(self) -> float | None:
        due = [t for t, _, _ in self._timers[:1]] + [t for t, _, _ in list(self._rejects)[:1]]
        due += [h.batch_started + h.spec.max_wait_ms / 1000 for h in self._batch_hooks if h.batch]
        if self.assembler is not None and self.assembler.open_count:
            due.append(max(self._next_expiry_check, self.assembler.next_expiry() or 0.0))
        return min(due) if due else None

    # ------------------------------------------------------------------ runs
    def _ready(self, lane: Lane) -> None:
        if lane.jobs and lane.idle():
            lane.queued = True
            lane.hook.ready.append(lane)

    def _startable(self, lane: Lane) -> bool:
        if lane.run is not None or lane.halted or not lane.jobs:
            return False
        if self._releasing and lane.jobs[0].record.token[0] in self._releasing:
            return False  # its partition is being revoked; `forget` drops the lane
        return lane.jobs[0].entry is None or self._write_pending(lane)

    def _start(self, hook: HookState) -> None:
        spec = hook.spec
        while hook.ready and hook.active < spec.concurrency:
            if hook.inline and time.monotonic() > self._inline_until:
                self._deferred = True  # this turn's share of the loop's thread is used up
                return
            lane = hook.ready.popleft()
            lane.queued = False
            if not self._startable(lane):
                continue
            jobs = self._take(lane, RUN_MAX)
            run = Run(lane, jobs, timed=spec.timeout_s is not None, each=spec.mode != "record")
            lane.run = run
            if spec.timeout_s is None and spec.mode == "record":
                self._pack(hook, run)
            hook.active += 1
            self._running.add(run)
            if hook.inline:
                self._inline(hook, run)
            else:
                self._executor.submit(run, spec.fn, spec.is_async)

    def _direct(self, hook: HookState, raw: RawMessage, event: ChangeEvent, token: Token) -> bool:
        """A fast hook's call made right here, at intake, when it is the record's only hook and
        the record would start its lane at once anyway (nothing queued or running before it, a
        free slot): no job, run or result for a success. False: take the usual way."""
        spec = hook.spec
        if hook.active >= spec.concurrency or self.closing:
            return False
        if self._queued or hook.active:  # (else no lane of the hook holds a job or a run: all idle)
            lane = hook.lanes.get(hook.lane_key(raw))
            if lane is not None and (lane.jobs or not lane.idle()):
                return False
        if self._releasing and token[0] in self._releasing:
            return False
        now = time.monotonic
        pinned = spec.thread == "loop"  # (never sent to the workers, live up to health.hook_timeout_s)
        if pinned and now() > self._inline_until:
            return False  # this turn's share of the loop's thread is used up: queued, called next turn
        param = self.params.param(event, spec)
        slow_s = math.inf if pinned else self._slow_s
        if pinned:
            self._loop_call_begins(spec)
        started = now()
        try:
            try:
                result = spec.fn(param)
                if result is not None and inspect.isawaitable(result):
                    self._executor.await_on_loop(result)
                if param.decode_error is not None:  # the hook caught it: still a decode failure
                    raise param.decode_error
            finally:
                if pinned:
                    self.health.call_end()
        except ExitNow:
            raise
        except BaseException as exc:  # handled exactly like a run whose first call failed
            seconds = now() - started
            lane = hook.lane(raw)
            run = Run(lane, [Job(Record(raw, token, 1), event, param, lane=lane)])
            lane.run = run
            hook.active += 1
            self._running.add(run)
            self._apply((run, 0, exc, seconds))
            self._apply((run, None, None, 0.0))
            if spec.ordering == "none" and not lane.jobs:  # done (skipped, dead-lettered): as `_take` does
                hook.lanes.pop(lane.key, None)
            if seconds > slow_s:
                self._demote(hook)
            return True
        seconds = now() - started
        hook.direct_s.append(seconds)
        hook.direct_us.append(event.commit_us)
        self.stats.calls_ok += 1
        self.checkpoint.finish(token)
        if seconds > slow_s:
            self._demote(hook)
        return True

    def _loop_call_begins(self, spec: HookSpec) -> None:
        """A `thread: loop` hook's call(s) start on this thread, which cannot tick meanwhile: live up to
        `health.hook_timeout_s`, as a call on a worker."""
        self.health.call_begin(f"hook {spec.name} (thread loop)", self.health.hook_timeout_s)

    def _direct_report(self, hook: HookState) -> None:
        """Calls made at intake reach the metrics and the probe in bundles."""
        durations, hook.direct_s = hook.direct_s, []
        commits, hook.direct_us = hook.direct_us, []
        self.metrics.hook_successes(hook.spec.name, durations, commits)
        self._probe(hook, durations)

    def _demote(self, hook: HookState) -> None:
        """A slow call: back to the workers until a whole probe window of its calls is fast again."""
        if hook.direct_s:
            self._direct_report(hook)
        hook.inline = False
        hook.probe_calls, hook.probe_s = 0, 0.0
        self.log.info("hook calls are no longer fast: running them on worker threads", hook=hook.spec.name,
                      slower_than_us=round(self._slow_s * 1e6))

    def _inline(self, hook: HookState, run: Run) -> None:
        """A fast hook's run on this thread, its results applied at once (so its lanes can go on).
        A `thread: loop` hook's too: never sent to the workers, live up to `health.hook_timeout_s`."""
        spec = hook.spec
        pinned = spec.thread == "loop"
        if pinned:
            self._loop_call_begins(spec)
        try:
            slow = self._executor.run_inline(run, spec.fn, self._inline_until, math.inf if pinned else self._slow_s)
        finally:
            if pinned:
                self.health.call_end()
        results = self._results
        self._clear_wake()  # this run's own token, and workers'
        while not results.empty():
            result = results.get_nowait()
            self._apply(result)
            if result[0].lane.hook is not hook:
                # Another hook's run may have ended here and readied its lanes after its turn
                # in `service`: the loop must come back at once, not block in the next poll.
                self._deferred = True
        if slow:
            self._demote(hook)

    def _probe(self, hook: HookState, durations: list[float]) -> None:
        """Decide where a hook's calls run from their mean duration over the last probe window:
        fast sync calls (a no-op, a counter, a log line) run on the loop's thread. (`thread: loop`:
        always there.)"""
        if hook.spec.thread == "loop":
            return
        hook.probe_calls += len(durations)
        hook.probe_s += sum(durations)
        if hook.probe_calls < self.inline_probe_calls:
            return
        spec = hook.spec
        fast = (hook.probe_s / hook.probe_calls < self.inline_below_s and not spec.is_async
                and spec.timeout_s is None and spec.mode == "record")
        if fast != hook.inline:
            hook.inline = fast
            self.log.info("hook calls are fast: running them on the loop's thread" if fast else
                          "hook calls are no longer fast: running them on worker threads", hook=spec.name,
                          mean_us=round(hook.probe_s / hook.probe_calls * 1e6, 1))
        hook.probe_calls, hook.probe_s = 0, 0.0

    def _pack(self, hook: HookState, run: Run) -> None:
        """More ready lanes than slots: put the next lanes of the same partition into this
        run too, merged in offset order (each lane's jobs stay in order, each lane waits for the
        run, and finished records form a prefix the commit can follow), so many keys with one
        record each cost one hand-off per run, not one per record. Never for hooks with a
        timeout: a hung call would hold the other keys of its run."""
        unit = run.jobs[0].record.token[0]
        # A fair share of the ready lanes per slot (of all slots: they free up one by one, and
        # the first to free must not take the lot), so every slot gets work.
        share = -(-(len(hook.ready) + 1) // hook.spec.concurrency)
        taken = [run.jobs]
        total = len(run.jobs)
        while total < RUN_MAX and len(run.lanes) < share and hook.ready:
            lane = hook.ready[0]
            if lane.jobs and lane.jobs[0].record.token[0] != unit:
                break
            hook.ready.popleft()
            lane.queued = False
            if not self._startable(lane):
                continue
            jobs = self._take(lane, RUN_MAX - total)
            taken.append(jobs)
            total += len(jobs)
            run.lanes.append(lane)
            lane.run = run
        if len(taken) > 1:
            run.jobs = list(heapq.merge(*taken, key=offset))

    def _take(self, lane: Lane, most: int) -> list[Job]:
        jobs = [lane.jobs.popleft() for _ in range(min(len(lane.jobs), most))]
        self._queued -= len(jobs)
        if not lane.jobs and lane.hook.spec.ordering == "none":
            lane.hook.lanes.pop(lane.key, None)
        return jobs

    def _apply(self, result: Result) -> None:
        run, index, error, seconds = result
        lane = run.lane
        hook = lane.hook
        if index is None:
            self._end_run(run)
            return
        if error is ABANDONED:  # the call given up on has returned; its slot frees when the run ends
            hook.abandoned -= 1
            return
        if run.orphaned:
            return
        if error is DONE or error is None:
            durations = seconds if error is DONE else [seconds]
            jobs = run.jobs[index:index + len(durations)]
            self.metrics.hook_successes(hook.spec.name, durations, [j.event.commit_us for j in jobs])
            if self.inline_below_s:
                self._probe(hook, durations)
            finish = self.checkpoint.finish
            for job in jobs:
                job.attempts += 1
                if job.txn is None and len(job.holds) == 1:  # a record's job: the common case, inline
                    job.done = True
                    record = job.holds[0]
                    record.remaining -= 1
                    if record.remaining == 0:
                        finish(record.token)
                else:
                    self._job_done(job)
            self.stats.calls_ok += len(durations)
            return
        assert isinstance(error, BaseException)
        self._failed(run, index, error, float(seconds), timed_out=False)

    def _end_run(self, run: Run) -> None:
        if run.released:
            return  # given up on and replaced earlier (replay): its slot and lane were freed then
        hook = run.lane.hook
        self._running.discard(run)
        hook.active -= 1
        for lane in run.lanes:
            if lane.run is run:
                lane.run = None
        if run.orphaned:
            return
        # Jobs not done (a failure to retry, a dead letter to write, or not started because
        # the run stopped early) go back to their lane's head, in order.
        rest: dict[Lane, list[Job]] = {}
        for j in run.jobs:
            if not j.done:
                rest.setdefault(j.lane, []).append(j)
        now = time.monotonic()
        for lane in run.lanes:
            back = rest.get(lane)
            if back:
                lane.jobs.extendleft(reversed(back))
                self._queued += len(back)
                if hook.spec.ordering == "none":
                    hook.lanes[lane.key] = lane
            if lane.halted:
                continue
            if lane.jobs and lane.jobs[0].attempts and lane.retry_at > now:
                lane.timer = True
                heapq.heappush(self._timers, (lane.retry_at, next(self._seq), lane))
            else:
                self._ready(lane)

    def _job_done(self, job: Job) -> None:
        job.done = True
        for record in job.holds:
            record.remaining -= 1
            if record.remaining == 0:
                self.checkpoint.finish(record.token)
        txn = job.txn
        if txn is not None:
            txn.calls -= 1
            if txn.closed and not txn.calls:
                self._release(txn)

    # ------------------------------------------------------------------ failures
    def _failed(self, run: Run, index: int, exc: BaseException, seconds: float, timed_out: bool) -> None:
        job = run.jobs[index]
        lane = job.lane
        hook = lane.hook
        spec = hook.spec
        param = job.param
        job.attempts += 1
        decode_error = exc if isinstance(exc, DecodeError) else param.decode_error
        if decode_error is not None:
            self._undecodable(lane, job, decode_error)
            return
        if isinstance(exc, SkipEvent):
            self.metrics.hook_attempt(spec.name, "success", seconds, None)
            self.metrics.hook_run(spec.name, "skipped")
            self.stats.skipped += 1
            param.logger.info("hook skipped the event", reason=str(exc) or "SkipEvent")
            self._job_done(job)
            return
        self.metrics.hook_attempt(spec.name, "timeout" if timed_out else "error", seconds, job.event.commit_us)
        self.stats.calls_failed += 1
        job.first_failed = job.first_failed or datetime.now(UTC)
        requested = exc.delay if isinstance(exc, Retry) else None
        param.logger.error(
            "hook timed out" if timed_out else "hook failed",
            attempt=job.attempts,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=None if timed_out or requested is not None else exc,
        )
        max_attempts = self.max_attempts if self.max_attempts is not None else spec.max_attempts
        if max_attempts is not None and job.attempts >= max_attempts:
            self._exhausted(lane, job, exc)
            return
        backoff = min(job.delay or spec.initial_backoff_s, spec.max_backoff_s) * random.uniform(0.8, 1.2)
        sleep = requested if requested is not None else backoff
        job.delay = min((job.delay or spec.initial_backoff_s) * spec.multiplier, spec.max_backoff_s)
        lane.retry_at = time.monotonic() + sleep
        self.metrics.hook_run(spec.name, "retry")
        param.logger.warning("retrying hook", attempt=job.attempts, backoff_s=round(sleep, 3))
        # The job stays unreported: it goes back to the lane's head when the run ends.

    def _exhausted(self, lane: Lane, job: Job, exc: BaseException) -> None:
        spec = lane.hook.spec
        param = job.param
        self.stats.hook_failures += 1
        self.stats.failure("hook_failed", _event_id(job) or "")
        if self.report:
            self._job_done(job)
            return
        if spec.on_failure == "skip":
            self.metrics.hook_run(spec.name, "skipped")
            self.stats.skipped += 1
            param.logger.warning("attempts exhausted; event skipped by policy", attempts=job.attempts)
            self._job_done(job)
            return
        if spec.on_failure == "halt" or self.dead_letters is None:
            param.logger.error("attempts exhausted; halting by policy", attempts=job.attempts, policy=spec.on_failure)
            self._halt(lane, job.record.token, job.record.raw, "halted by hook policy")
            return
        job.entry = self._entries(job, spec, exc)
        first_id = job.entry[0]["id"]
        if self._write_all(job.entry):
            self.metrics.hook_run(spec.name, "dead_letter")
            self.stats.dead_lettered += 1
            param.logger.error("attempts exhausted; event dead-lettered", attempts=job.attempts,
                               dead_letter_id=first_id)
            job.entry = None
            self._job_done(job)
        else:
            lane.retry_at = time.monotonic() + min(30.0, max(1.0, spec.initial_backoff_s))

    def _undecodable(self, lane: Lane, job: Job, error: DecodeError) -> None:
        """Reading the record (decoded when first read) failed: a decode failure of the message,
        dead-lettered with its reason for this hook; never retried."""
        spec = lane.hook.spec
        raw = job.event.raw
        self.stats.decode_failures += 1
        self.metrics.decode_error(error.reason)
        self.stats.failure(error.reason, error.detail)
        self.log.error("cannot decode message", reason=error.reason, detail=error.detail, hook=spec.name,
                       topic=raw.topic, partition=raw.partition, offset=raw.offset,
                       value_head=(raw.value or b"")[:200].decode("utf-8", "replace"))
        if self.report:
            self._job_done(job)
            return
        if self.dead_letters is None:
            self._halt(lane, job.record.token, raw, error.reason)
            return
        events = job.events if job.events is not None else (job.event,)
        job.entry = [make_entry(pipeline=self.pipeline, kind="decode_failed", raw=e.raw, reason=error.reason,
                                hook=spec.name, detail=error.detail) for e in events]
        first_id = job.entry[0]["id"]
        if self._write_all(job.entry):
            self.metrics.hook_run(spec.name, "dead_letter")
            self.log.warning("undecodable message dead-lettered", reason=error.reason, hook=spec.name,
                             dead_letter_id=first_id)
            job.entry = None
            self._job_done(job)
        else:
            lane.retry_at = time.monotonic() + 5.0

    def _entries(self, job: Job, spec: HookSpec, exc: BaseException) -> list[dict[str, Any]]:
        """A record's dead letter, or a call's: one entry per record, linked by the call id."""
        if job.events is None:
            return [make_entry(pipeline=self.pipeline, kind="hook_failed", raw=job.event.raw,
                               reason="attempts_exhausted", hook=spec.name, error=exc, attempts=job.attempts,
                               event_id=_event_id(job), first_failed_at=job.first_failed)]
        ctx = job.param.ctx
        tx = ctx.transaction
        # `link`: this call's entries, told apart from another call's with the same id (the same
        # records dead-lettered again after a restart) at replay.
        call = {"id": ctx.event_id, "link": uuid.uuid4().hex, "mode": spec.mode, "count": len(job.events),
                "transaction": None if tx is None else {
                    "id": tx.id, "event_count": tx.event_count, "part": tx.part, "last": tx.last,
                    "data_collections": [list(c) for c in tx.data_collections or ()]}}
        entries = []
        for i, event in enumerate(job.events):
            entry = make_entry(pipeline=self.pipeline, kind="hook_failed", raw=event.raw,
                               reason="attempts_exhausted", hook=spec.name, error=exc, attempts=job.attempts,
                               event_id=event.event_id, first_failed_at=job.first_failed)
            if i:
                entry["traceback"] = ""  # once per call is enough
            entry["call"] = {**call, "index": i}
            entries.append(entry)
        return entries

    def _write_all(self, entries: list[dict[str, Any]]) -> bool:
        """Write entries in order, dropping each once written; True when none is left."""
        while entries:
            if not self._write(entries[0]):
                return False
            entries.pop(0)
        return True

    def _write_pending(self, lane: Lane) -> bool:
        """The lane's head job waits for its dead letter to be written; True once it is."""
        job = lane.jobs[0]
        assert job.entry is not None
        first_id = job.entry[0]["id"] if job.entry else None
        if not self._write_all(job.entry):
            lane.retry_at = time.monotonic() + 5.0
            lane.timer = True
            heapq.heappush(self._timers, (lane.retry_at, next(self._seq), lane))
            return False
        self.metrics.hook_run(lane.hook.spec.name, "dead_letter")
        self.stats.dead_lettered += 1
        job.param.logger.error("attempts exhausted; event dead-lettered", attempts=job.attempts,
                               dead_letter_id=first_id)
        job.entry = None
        lane.jobs.popleft()
        self._queued -= 1
        self._job_done(job)
        return bool(lane.jobs)

    def _write(self, entry: dict[str, Any]) -> bool:
        assert self.dead_letters is not None
        try:
            self.dead_letters.write(entry)
        except Exception as exc:  # a store that cannot take it now: keep the record, retry
            self.log.error("cannot write a dead letter; the record stays unfinished and is retried",
                           error=f"{type(exc).__name__}: {exc}", dead_letter_id=entry["id"])
            return False
        return True

    def _reject(self, failure: DecodeFailure, token: Token) -> None:
        """An undecodable message: counted, logged once (with its dead letter's id when one was
        written: one line per poison message, not two), dead-lettered, finished."""
        raw = failure.raw
        self.stats.decode_failures += 1
        self.metrics.decode_error(failure.reason)
        self.stats.failure(failure.reason, failure.detail)
        entry = None
        if not self.report and self.dead_letters is not None:
            entry = make_entry(pipeline=self.pipeline, kind="decode_failed", raw=raw, reason=failure.reason,
                               detail=failure.detail)
        written = entry is not None and self._write(entry)
        self.log.error("cannot decode message" + ("; dead-lettered" if written else ""), reason=failure.reason,
                       detail=failure.detail, topic=raw.topic, partition=raw.partition, offset=raw.offset,
                       value_head=(raw.value or b"")[:200].decode("utf-8", "replace"),
                       **({"dead_letter_id": entry["id"]} if written and entry is not None else {}))
        if self.report:
            self.checkpoint.finish(token)
        elif entry is None:
            self._halt(None, token, raw, failure.reason)
        elif written:
            self.checkpoint.finish(token)
        else:
            self._rejects.append((time.monotonic() + 5.0, entry, token))

    def _retry_rejects(self, now: float) -> None:
        while self._rejects and self._rejects[0][0] <= now:
            _, entry, token = self._rejects.popleft()
            if not self.checkpoint.owns(token[0]):
                continue
            if self._write(entry):
                self.log.warning("undecodable message dead-lettered", reason=entry["reason"],
                                 dead_letter_id=entry["id"])
                self.checkpoint.finish(token)
            else:
                self._rejects.appendleft((now + 5.0, entry, token))
                return

    def _halt(self, lane: Lane | None, token: Token, raw: RawMessage, reason: str) -> None:
        if lane is not None:
            lane.halted = True
        self.health.halted = True  # needs a person: not ready until restarted
        self.checkpoint.halt(token[0])
        self.log.error("halted: nothing at or after this record is committed", topic=raw.topic,
                       partition=raw.partition, offset=raw.offset, reason=reason)

    # ------------------------------------------------------------------ timeouts and health
    def _check_timeouts(self, now: float) -> None:
        for run in list(self._running):
            spec = run.lane.hook.spec
            if spec.timeout_s is None or run.orphaned:
                continue
            with run.lock:  # (no `continue` inside: the compiled build does not allow it in a `with`)
                i = run.index
                late = i >= 0 and run.abandoned_at != i and now - run.started > spec.timeout_s
                if late:
                    run.abandoned_at = i
                    run.stop = True
            if not late:
                continue
            job = run.jobs[i]
            job.param.cancel()
            run.lane.hook.abandoned += 1
            self.stats.abandoned += 1
            if spec.is_async:
                self._executor.cancel(run)
            self._failed(run, i, HookTimeout(f"hook {spec.name} did not finish within {spec.timeout_s:g}s"),
                         now - run.started, timed_out=True)
            if self.report:
                # `replay` must end: the hung thread is left behind with a fresh one in its place,
                # and the lane goes on (a bounded, finite run; `run` keeps the slot instead).
                self._end_run(run)
                run.orphaned = run.released = True
                self._executor.add_thread()

    def _report_health(self, now: float) -> None:
        oldest: tuple[str, float] | None = None
        abandoned = 0
        for run in self._running:
            i = run.index
            # Abandoned calls count too: one hung past health.hook_timeout_s stalls its key.
            if i >= 0 and (oldest is None or run.started < oldest[1]):
                oldest = (run.lane.hook.spec.name, run.started)
        for hook in self._hooks.values():
            abandoned += hook.abandoned
            if hook.active != hook.reported_active:
                hook.reported_active = hook.active
                self.metrics.hook_in_flight(hook.spec.name, hook.active)
        self.health.calls(oldest, abandoned, self.max_abandoned)
        self.metrics.set_in_flight(self.checkpoint.in_flight)

    # ------------------------------------------------------------------ revoke and shutdown
    def release(self, units: Collection[Hashable], wait_s: float) -> None:
        """Partitions are being revoked: start nothing more for them, wait up to `wait_s` for
        their running calls (applying results meanwhile); the caller commits and forgets."""
        units = set(units)
        waiting = {r for r in self._running if any(j.units() & units for j in r.jobs)}
        for run in waiting:
            run.stop = True
        self._releasing = units
        try:
            deadline = time.monotonic() + wait_s
            while waiting & self._running and time.monotonic() < deadline:
                self.health.beat()
                self.service(min(0.05, max(0.0, deadline - time.monotonic())))
        finally:
            self._releasing = set()

    def forget(self, units: Collection[Hashable], rewind: bool = False) -> dict[Hashable, int]:
        """Drop every job of these units (revoked or lost: the next owner has them). Their
        running calls keep their slots until they return; results are ignored.

        Records of other (kept) units can depend on them: the rest of an open transaction holding
        one of their records, every record of a call or of a run that cannot finish now. With
        `rewind` (the source can fetch again) those are given up on as well — and everything of
        their unit after the first of them, which the source will fetch again — until nothing
        kept depends on anything dropped; returns {kept unit: offset to fetch again from} for
        `Checkpoint.rewind`. Without it such records stay unfinished (their unit stops committing)."""
        units = set(units)
        rewinds: dict[Hashable, int] = {}

        def lost(record: Record) -> bool:
            unit, _, off = record.token
            return unit in units or (unit in rewinds and off >= rewinds[unit])

        def job_lost(job: Job) -> bool:
            return (lost(job.record) or any(lost(r) for r in job.holds)
                    or (job.txn is not None and any(lost(r) for r in job.txn.holds)))

        dropped: list[Transaction[Record]] = []
        while True:
            give_up: list[Record] = []
            if self.assembler is not None:
                for txn in self.assembler.drop(lost, remember=not rewind, now=time.monotonic()):
                    dropped.append(txn)
                    give_up += txn.holds
            if not rewind:
                break
            # A run is orphaned whole: all of its calls are given up on — but not those already
            # done (their records are finished, maybe committed: fetching them again would call
            # them again, after later ones and without their markers).
            jobs = [j for run in self._running if not run.orphaned and any(job_lost(x) for x in run.jobs)
                    for j in run.jobs if not j.done]
            jobs += [j for h in self._hooks.values() for lane in h.lanes.values() for j in lane.jobs if job_lost(j)]
            for job in jobs:
                give_up += [job.record, *job.holds, *(job.txn.holds if job.txn is not None else ())]
            changed = False
            for record in give_up:
                unit, _, off = record.token
                if unit not in units and off < rewinds.get(unit, off + 1):
                    rewinds[unit] = off
                    changed = True
            if not changed:
                break
        for txn in dropped:
            self.log.warning("partition revoked during an open transaction: dropped uncommitted "
                             "(its next owner gets all of it)", transaction_id=txn.group_id,
                             received=txn.received)
        if rewinds:
            self.log.warning("records of kept partitions given up on with a revoked transaction or call: "
                             "fetched again from these offsets", partitions={
                                 f"{u[0]}[{u[1]}]" if isinstance(u, tuple) else str(u): o
                                 for u, o in rewinds.items()})
        for hook in self._batch_hooks:
            hook.batch = [(r, e) for r, e in hook.batch if not lost(r)]
        for run in self._running:
            if any(job_lost(j) for j in run.jobs):
                run.orphaned = True
                run.stop = True
        for hook in self._hooks.values():
            for key, lane in list(hook.lanes.items()):
                kept = deque(j for j in lane.jobs if not job_lost(j))
                dropped_jobs = len(lane.jobs) - len(kept)
                if dropped_jobs:
                    self._queued -= dropped_jobs
                    self.stats.abandoned += dropped_jobs
                    lane.jobs = kept
                if lane.run is not None and lane.run.orphaned:
                    lane.run = None
                if not lane.jobs and lane.run is None:
                    del hook.lanes[key]
                    lane.queued = lane.halted = False
            hook.ready = deque(ln for ln in hook.ready if hook.lanes.get(ln.key) is ln and ln.jobs)
            for ln in hook.lanes.values():
                if ln.jobs and ln.idle():
                    self._ready(ln)
        self._rejects = deque(r for r in self._rejects if not (r[2][0] in units or (
            r[2][0] in rewinds and r[2][2] >= rewinds[r[2][0]])))
        return rewinds

    def shutdown(self, grace_s: float) -> None:
        """No new call starts; running calls get `grace_s`, then `ctx.cancelled`."""
        self.closing = True
        for run in self._running:
            run.stop = True
        deadline = time.monotonic() + grace_s
        while self._running and time.monotonic() < deadline:
            self.health.beat()
            self.service(min(0.1, max(0.0, deadline - time.monotonic())))
        for run in list(self._running):
            i = run.index
            if i >= 0:
                run.jobs[i].param.cancel()
                run.jobs[i].param.logger.warning("shutdown grace period over: call abandoned", grace_s=grace_s)
            if run.lane.hook.spec.is_async:
                self._executor.cancel(run)
        self.stats.abandoned += sum(len(lane.jobs) for h in self._hooks.values() for lane in h.lanes.values())
        self.stats.abandoned += sum(len(run.jobs) - run.next for run in self._running)  # in runs, not begun

    def close(self) -> None:
        self._executor.close()


def _event_id(job: Job) -> str | None:
    """The id a failure report names: the call's, or the record's (None: its message cannot be read)."""
    try:
        return job.param.ctx.event_id if job.events is not None else job.event.event_id
    except DecodeError:
        return None


__all__ = ["RUN_MAX", "DispatchStats", "Dispatcher"]
