"""The run loop: source → decode → route → run → checkpoint, until stopped or exhausted.

Each hook keeps its own progress. A record goes to every matching hook; a hook whose
attempt fails keeps that record at the head of its own backlog (retried when its backoff
is due) and queues its later records behind it, in order, while the other hooks go on with
those later records. A record is finished — its offset may be committed — only when all its
hooks are done, so a failing hook holds back the commit (as far as its policy says) but not
the other hooks. Backlogs are bounded (`max_backlog`): past it the loop stops taking new
records and only keeps the source alive and retries.

Poison input (undecodable, oversized) is dead-lettered with its reason and the stream goes
on; without a dead-letter store (`replay`) its partition halts instead.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sidecar.dead_letters import make_entry
from sidecar.decode import Decoder
from sidecar.events import ChangeEvent, DecodeFailure, RawMessage
from sidecar.route import Router
from sidecar.run import HookRunner, Job, Outcome
from sidecar.sources import Source


@dataclass
class LoopStats:
    messages: int = 0
    events: int = 0
    hook_failures: int = 0
    decode_failures: int = 0
    abandoned: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


class _Record:
    __slots__ = ("raw", "remaining")

    def __init__(self, raw: RawMessage, remaining: int) -> None:
        self.raw = raw
        self.remaining = remaining


class _Backlogs:
    """Per-hook FIFO of jobs waiting behind a failed one."""

    def __init__(self, source: Source, runner: HookRunner, stats: LoopStats, log: Any) -> None:
        self.queues: dict[str, deque[Job]] = {}
        self.halted: set[str] = set()
        self.size = 0
        self.source = source
        self.runner = runner
        self.stats = stats
        self.log = log

    def blocked(self, hook: str) -> bool:
        q = self.queues.get(hook)
        return bool(q)

    def push(self, job: Job) -> None:
        self.queues.setdefault(job.hook.name, deque()).append(job)
        self.size += 1

    def next_due(self) -> float | None:
        due = [q[0].retry_at for name, q in self.queues.items() if q and name not in self.halted]
        return min(due) if due else None

    def run_due(self, stop: threading.Event) -> None:
        now = time.monotonic()
        for name, q in self.queues.items():
            if name in self.halted:
                continue
            while q and not stop.is_set():
                head = q[0]
                if not self.source.current(head.record.raw):  # partition revoked: the next owner has it
                    q.popleft()
                    self.size -= 1
                    self.stats.abandoned += 1
                    continue
                if head.retry_at > now:
                    break
                outcome = self.runner.attempt(head)
                if outcome is None:
                    break  # still failing: retry_at moved
                if not settle(head, outcome, self.source, self.stats, self):
                    break  # halted
                q.popleft()
                self.size -= 1
                now = time.monotonic()


def settle(job: Job, outcome: Outcome, source: Source, stats: LoopStats, backlogs: _Backlogs) -> bool:
    """Apply an ended job; False when its hook is now halted (the job stays where it is)."""
    if outcome is Outcome.FAILED:
        # replay: no store for failures; count it, report it, go on with the next event
        stats.hook_failures += 1
        stats.failures.append(("hook_failed", job.event.event_id))
        outcome = Outcome.DONE
    if outcome is Outcome.DONE:
        rec = job.record
        rec.remaining -= 1
        if rec.remaining == 0:
            source.finish(rec.raw)
            source.maybe_commit()
        return True
    stats.hook_failures += 1
    stats.failures.append(("hook_failed", job.event.event_id))
    backlogs.halted.add(job.hook.name)
    source.halt(job.record.raw, "halted by hook policy")
    return False


def run_loop(
    source: Source,
    decoder: Decoder,
    router: Router,
    runner: HookRunner,
    stop: threading.Event,
    log: Any,
    until_exhausted: bool = False,
    max_message_bytes: int | None = None,
    max_backlog: int = 10_000,
) -> LoopStats:
    """Process messages; a record's offset is finished only when all its hooks are done."""
    stats = LoopStats()
    metrics, health = runner.metrics, runner.health
    backlogs = _Backlogs(source, runner, stats, log)

    def wait(seconds: float) -> bool:
        # Wait in slices so the liveness heartbeat keeps ticking.
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            health.beat()
            if not source.wait(min(left, 1.0)):
                return False
        return False

    while not stop.is_set():
        health.beat()
        if backlogs.size:
            backlogs.run_due(stop)
            if backlogs.size >= max_backlog:
                due = backlogs.next_due()
                wait(min(1.0, max(0.01, (due or time.monotonic() + 1) - time.monotonic())))
                continue
        batch = source.poll_batch()
        if not batch and until_exhausted and getattr(source, "exhausted", False):
            if not backlogs.size or backlogs.next_due() is None:
                break
            due = backlogs.next_due() or time.monotonic()
            wait(max(0.0, due - time.monotonic()))
            continue
        metrics.set_in_flight(len(batch) + backlogs.size)
        for raw in batch:
            if stop.is_set():
                break
            if not source.current(raw):
                continue  # revoked or halted since it was fetched: the next owner gets it
            stats.messages += 1
            source.begin(raw)
            if max_message_bytes is not None and len(raw.value or b"") + len(raw.key or b"") > max_message_bytes:
                result: Any = DecodeFailure(
                    raw, "too_large", f"message of {len(raw.value or b'')} bytes exceeds {max_message_bytes}"
                )
            else:
                result = decoder.decode(raw)
            if isinstance(result, DecodeFailure):
                stats.decode_failures += 1
                metrics.decode_error(result.reason)
                stats.failures.append((result.reason, result.detail))
                log.error(
                    "cannot decode message",
                    reason=result.reason,
                    detail=result.detail,
                    topic=raw.topic,
                    partition=raw.partition,
                    offset=raw.offset,
                    value_head=(raw.value or b"")[:200].decode("utf-8", "replace"),
                )
                if runner.dead_letters is None:
                    source.halt(raw, result.reason)
                    continue
                entry = make_entry(pipeline=runner.pipeline, kind="decode_failed", raw=raw, reason=result.reason,
                                   detail=result.detail)
                runner.dead_letters.write(entry)
                log.warning("undecodable message dead-lettered", reason=result.reason, dead_letter_id=entry["id"])
                source.finish(raw)
                source.maybe_commit()
                continue
            if isinstance(result, ChangeEvent):
                stats.events += 1
                metrics.event(result.table, result.op, result.committed_at)
                hooks = router.route(result.table, result.op)
                if hooks:
                    record = _Record(raw, len(hooks))
                    for hook, param in runner.params(result, hooks):
                        job = Job(result, hook, param, record=record)
                        if backlogs.blocked(hook.name):
                            backlogs.push(job)  # in order, behind this hook's failing record
                            continue
                        outcome = runner.attempt(job)
                        if outcome is None:
                            backlogs.push(job)  # this hook waits; the others go on
                        elif not settle(job, outcome, source, stats, backlogs):
                            backlogs.push(job)
                    if backlogs.size:
                        backlogs.run_due(stop)
                    continue
            source.finish(raw)
            source.maybe_commit()  # per record: slow hooks must not delay commits by a whole batch
        metrics.set_in_flight(backlogs.size)
        source.maybe_commit()
    stats.abandoned += backlogs.size
    return stats


__all__ = ["LoopStats", "run_loop"]
