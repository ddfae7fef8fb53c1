"""Running the hooks of one change event: build the param, call, retry with backoff.

Until failure policies exist (dead letters, skip, halt) a failing hook is retried until it
succeeds, the source says to abandon the record (partition revoked, shutting down), or —
for `replay` — a bounded number of attempts runs out. Nothing is ever skipped.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from sidecar.databases import Databases
from sidecar.events import ChangeEvent
from sidecar.health import Health
from sidecar.hooks import HookSpec
from sidecar.logs import LazyLogger
from sidecar.metrics import Metrics, NoMetrics
from sidecar.param import CheckpointParam, build_context, build_record

Wait = Callable[[float], bool]
"""Wait up to N seconds (keeping the source alive); False means: abandon the record now."""


class Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    ABANDONED = "abandoned"


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
    ) -> None:
        self.pipeline = pipeline
        self.databases = databases
        self.log = logger
        self.source_tables = source_tables or {}
        self.max_attempts = max_attempts
        self._aux: Mapping[str, Engine] = databases.auxiliary
        self.metrics = metrics or NoMetrics()
        self.health = health or Health()
        self.calls_ok = 0
        self.calls_failed = 0

    def params(self, event: ChangeEvent, hooks: Sequence[HookSpec]) -> list[tuple[HookSpec, CheckpointParam]]:
        """The CheckpointParam each hook gets for this event (shared by `run` and `sidecar.testing`)."""
        record = build_record(event, self.source_tables.get(event.table))
        ctx = build_context(event, self.pipeline)
        base = LazyLogger(
            self.log, {"pipeline": self.pipeline, "table": event.table, "op": event.op, "event_id": event.event_id}
        )
        out = []
        for i, hook in enumerate(hooks):
            out.append(
                (
                    hook,
                    CheckpointParam(
                        ctx=ctx,
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
        for hook, param in self.params(event, hooks):
            outcome = self._run_one(hook, param, wait)
            if outcome is not Outcome.DONE:
                return outcome
        return Outcome.DONE

    def _run_one(self, hook: HookSpec, param: CheckpointParam, wait: Wait) -> Outcome:
        attempt = 0
        delay = hook.initial_backoff_s
        committed_at = param.record.get("_committed_at")
        health, metrics = self.health, self.metrics
        while True:
            attempt += 1
            health.hook_begin(hook.name)
            started = time.perf_counter()
            try:
                hook.fn(param)
            except Exception as exc:
                health.hook_end()
                metrics.hook_attempt(hook.name, "error", time.perf_counter() - started, committed_at)
                self.calls_failed += 1
                param.logger.error(
                    "hook failed",
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=exc,
                )
                if self.max_attempts is not None and attempt >= self.max_attempts:
                    return Outcome.FAILED
                metrics.hook_run(hook.name, "retry")
                sleep = min(delay, hook.max_backoff_s) * random.uniform(0.8, 1.2)
                param.logger.warning("retrying hook", attempt=attempt, backoff_s=round(sleep, 3))
                if not wait(sleep):
                    return Outcome.ABANDONED
                delay = min(delay * hook.multiplier, hook.max_backoff_s)
            else:
                health.hook_end()
                metrics.hook_attempt(hook.name, "success", time.perf_counter() - started, committed_at)
                self.calls_ok += 1
                return Outcome.DONE
