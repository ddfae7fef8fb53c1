"""Running the hooks of one change event: build the param, call, retry with backoff.

Until failure policies exist (dead letters, skip, halt) a failing hook is retried until it
succeeds, the source says to abandon the record (partition revoked, shutting down), or —
for `replay` — a bounded number of attempts runs out. Nothing is ever skipped.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from sidecar.control import HookTimeout, Retry, SkipEvent
from sidecar.databases import Databases
from sidecar.dead_letters import DeadLetterWriter, make_entry
from sidecar.events import ChangeEvent
from sidecar.health import Health
from sidecar.hooks import HookSpec
from sidecar.logs import LazyLogger
from sidecar.metrics import Metrics, NoMetrics
from sidecar.param import CheckpointParam, build_context, build_record

Wait = Callable[[float], bool]
"""Wait up to N seconds (keeping the source alive); False means: abandon the record now."""


class Outcome(enum.Enum):
    DONE = "done"            # every hook finished (succeeded, skipped, or dead-lettered by policy)
    FAILED = "failed"        # attempts ran out and nothing stores the failure (replay): the caller decides
    HALT = "halt"            # a hook's policy says stop here
    ABANDONED = "abandoned"  # shutting down or the partition left us: the record is not finished


@dataclass(slots=True)
class Job:
    """One hook's work on one event, with its retry state."""

    event: ChangeEvent
    hook: HookSpec
    param: CheckpointParam
    attempts: int = 0
    delay: float = 0.0
    retry_at: float = 0.0
    first_failed: datetime | None = None
    record: Any = None  # the loop's per-record completion state


def _call(hook: HookSpec, param: CheckpointParam) -> None:
    if hook.timeout_s is None:
        hook.fn(param)
        return
    # A thread per call only for hooks with a timeout: a hung call is left behind (it cannot
    # be killed) with param.ctx.cancelled set, and the sidecar moves on.
    box: dict[str, BaseException] = {}
    done = threading.Event()

    def target() -> None:
        try:
            hook.fn(param)
        except BaseException as exc:
            box["exc"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=f"hook-{hook.name}", daemon=True).start()
    if not done.wait(hook.timeout_s):
        param.ctx.cancelled.set()
        raise HookTimeout(f"hook {hook.name} did not finish within {hook.timeout_s:g}s")
    if "exc" in box:
        raise box["exc"]


class HookRunner:
    def __init__(
        self,
        pipeline: str,
        databases: Databases,
        logger: Any,
        source_tables: Mapping[str, str | None] | None = None,
        max_attempts: int | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        dead_letters: DeadLetterWriter | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.databases = databases
        self.log = logger
        self.source_tables = source_tables or {}
        self.max_attempts = max_attempts  # overrides every hook's (replay: fail fast, no policy)
        self._aux: Mapping[str, Engine] = databases.auxiliary
        self.metrics = metrics or NoMetrics()
        self.health = health or Health()
        self.dead_letters = dead_letters
        self.calls_ok = 0
        self.calls_failed = 0
        self.dead_lettered = 0
        self.skipped = 0

    def params(self, event: ChangeEvent, hooks: Sequence[HookSpec]) -> list[tuple[HookSpec, CheckpointParam]]:
        """The CheckpointParam each hook gets for this event (shared by `run` and `sidecar.testing`)."""
        record = build_record(event, self.source_tables.get(event.table))
        ctx = build_context(event, self.pipeline)
        base = LazyLogger(
            self.log, {"pipeline": self.pipeline, "table": event.table, "op": event.op, "event_id": event.event_id}
        )
        out = []
        for i, hook in enumerate(hooks):
            hook_ctx = ctx
            if hook.timeout_s is not None:  # its own cancel flag and deadline
                hook_ctx = replace(ctx, cancelled=threading.Event(), deadline=time.time() + hook.timeout_s)
            out.append(
                (
                    hook,
                    CheckpointParam(
                        ctx=hook_ctx,
                        logger=base.bind(hook=hook.name),
                        record=record if i == len(hooks) - 1 else dict(record),
                        source_db=self.databases.source,
                        destination_db=self.databases.destination,
                        auxiliary_db=self._aux,
                    ),
                )
            )
        return out

    def run(self, event: ChangeEvent, hooks: Sequence[HookSpec], wait: Wait) -> Outcome:
        """Run every hook of one event to its end, waiting out backoffs (replay, tests, dead-letter replay)."""
        for hook, param in self.params(event, hooks):
            job = Job(event, hook, param)
            while True:
                outcome = self.attempt(job)
                if outcome is not None:
                    break
                if not wait(max(0.0, job.retry_at - time.monotonic())):
                    return Outcome.ABANDONED
            if outcome is not Outcome.DONE:
                return outcome
        return Outcome.DONE

    def attempt(self, job: Job) -> Outcome | None:
        """One attempt of one hook on one event: an Outcome when it ended, None when it should be
        retried at `job.retry_at` (backoff, or the delay the hook asked for with Retry)."""
        hook, param = job.hook, job.param
        health, metrics = self.health, self.metrics
        max_attempts = self.max_attempts if self.max_attempts is not None else hook.max_attempts
        job.attempts += 1
        health.hook_begin(hook.name)
        started = time.perf_counter()
        try:
            _call(hook, param)
        except SkipEvent as exc:
            health.hook_end()
            metrics.hook_attempt(hook.name, "success", time.perf_counter() - started, None)
            metrics.hook_run(hook.name, "skipped")
            self.skipped += 1
            param.logger.info("hook skipped the event", reason=str(exc) or "SkipEvent")
            return Outcome.DONE
        except Exception as exc:
            health.hook_end()
            timed_out = isinstance(exc, HookTimeout)
            metrics.hook_attempt(hook.name, "timeout" if timed_out else "error", time.perf_counter() - started,
                                 param.record.get("_committed_at"))
            self.calls_failed += 1
            job.first_failed = job.first_failed or datetime.now(UTC)
            requested = exc.delay if isinstance(exc, Retry) else None
            param.logger.error(
                "hook timed out" if timed_out else "hook failed",
                attempt=job.attempts,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=None if timed_out or requested is not None else exc,
            )
            if max_attempts is not None and job.attempts >= max_attempts:
                return self._exhausted(job.event, hook, param, exc, job.attempts, job.first_failed)
            backoff = min(job.delay or hook.initial_backoff_s, hook.max_backoff_s) * random.uniform(0.8, 1.2)
            sleep = requested if requested is not None else backoff
            job.delay = min((job.delay or hook.initial_backoff_s) * hook.multiplier, hook.max_backoff_s)
            job.retry_at = time.monotonic() + sleep
            metrics.hook_run(hook.name, "retry")
            param.logger.warning("retrying hook", attempt=job.attempts, backoff_s=round(sleep, 3))
            return None
        health.hook_end()
        metrics.hook_attempt(hook.name, "success", time.perf_counter() - started, param.record.get("_committed_at"))
        self.calls_ok += 1
        return Outcome.DONE

    def _exhausted(self, event: ChangeEvent, hook: HookSpec, param: CheckpointParam, exc: BaseException,
                   attempts: int, first_failed: datetime) -> Outcome:
        """Attempts ran out: apply the hook's policy."""
        if self.max_attempts is not None:
            return Outcome.FAILED
        if hook.on_failure == "skip":
            self.metrics.hook_run(hook.name, "skipped")
            self.skipped += 1
            param.logger.warning("attempts exhausted; event skipped by policy", attempts=attempts)
            return Outcome.DONE
        if hook.on_failure == "halt" or self.dead_letters is None:
            param.logger.error("attempts exhausted; halting by policy", attempts=attempts,
                               policy=hook.on_failure)
            return Outcome.HALT
        entry = make_entry(pipeline=self.pipeline, kind="hook_failed", raw=event.raw, reason="attempts_exhausted",
                           hook=hook.name, error=exc, attempts=attempts, event_id=event.event_id,
                           first_failed_at=first_failed)
        self.dead_letters.write(entry)
        self.metrics.hook_run(hook.name, "dead_letter")
        self.dead_lettered += 1
        param.logger.error("attempts exhausted; event dead-lettered", attempts=attempts, dead_letter_id=entry["id"])
        return Outcome.DONE
