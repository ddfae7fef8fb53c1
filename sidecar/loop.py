"""The run loop: source → decode → route → run → checkpoint, until stopped or exhausted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.dead_letters import make_entry
from sidecar.decode import Decoder
from sidecar.events import ChangeEvent, DecodeFailure, RawMessage
from sidecar.route import Router
from sidecar.run import HookRunner, Outcome
from sidecar.sources import Source


@dataclass
class LoopStats:
    messages: int = 0
    events: int = 0
    hook_failures: int = 0
    decode_failures: int = 0
    abandoned: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def _waiter(wait: Callable[[float], bool], source: Source, raw: RawMessage) -> Callable[[float], bool]:
    """Backoff wait for one record: gives up when stopping or when its partition left us."""

    def wait_for_record(seconds: float) -> bool:
        return wait(seconds) and source.current(raw)

    return wait_for_record


def run_loop(
    source: Source,
    decoder: Decoder,
    router: Router,
    runner: HookRunner,
    stop: threading.Event,
    log: Any,
    until_exhausted: bool = False,
    max_message_bytes: int | None = None,
) -> LoopStats:
    """Process messages in order; a record's offset is finished only when all its hooks are.

    Poison input (undecodable, oversized) is dead-lettered with its reason and the stream
    goes on; without a dead-letter store (replay) its partition halts instead.
    """
    stats = LoopStats()
    metrics, health = runner.metrics, runner.health

    def wait(seconds: float) -> bool:
        # Back off in slices so the liveness heartbeat keeps ticking.
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
        batch = source.poll_batch()
        if not batch and until_exhausted and getattr(source, "exhausted", False):
            break
        metrics.set_in_flight(len(batch))
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
                    outcome = runner.run(result, hooks, _waiter(wait, source, raw))
                    if outcome in (Outcome.FAILED, Outcome.HALT):
                        stats.hook_failures += 1
                        stats.failures.append(("hook_failed", result.event_id))
                        source.halt(raw, "hook failed" if outcome is Outcome.FAILED else "halted by hook policy")
                        continue
                    if outcome is Outcome.ABANDONED:
                        stats.abandoned += 1
                        continue
            source.finish(raw)
            source.maybe_commit()  # per record: slow hooks must not delay commits by a whole batch
        metrics.set_in_flight(0)
        source.maybe_commit()
    return stats
