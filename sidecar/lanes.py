"""The dispatcher's state: records in flight, jobs (hook calls), lanes (units of order) and
each hook's lanes and slots. Plain slotted classes, touched only by the loop's thread."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sidecar.checkpoint import Token
from sidecar.events import ChangeEvent, RawMessage
from sidecar.execute import Run
from sidecar.hooks import HookSpec
from sidecar.param import CheckpointParam
from sidecar.transactions import Transaction


@dataclass
class DispatchStats:
    messages: int = 0
    events: int = 0
    calls_ok: int = 0
    calls_failed: int = 0
    hook_failures: int = 0
    decode_failures: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    abandoned: int = 0
    transactions: int = 0
    transactions_incomplete: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def failure(self, reason: str, detail: str) -> None:
        if len(self.failures) < 1000:
            self.failures.append((reason, detail))


class Record:
    __slots__ = ("raw", "remaining", "token")

    def __init__(self, raw: RawMessage, token: Token, remaining: int) -> None:
        self.raw = raw
        self.token = token
        self.remaining = remaining


class Job:
    """One hook call: one record (record mode) or a call of many (`events`, `holds`, `txn`)."""

    __slots__ = ("attempts", "delay", "done", "entry", "event", "events", "first_failed", "holds", "lane", "param",
                 "record", "txn")

    def __init__(self, record: Record, event: ChangeEvent, param: CheckpointParam,
                 holds: Sequence[Record] | None = None, events: Sequence[ChangeEvent] | None = None,
                 txn: Transaction[Record] | None = None, lane: Lane | None = None) -> None:
        self.record = record  # the (first) record: its unit halts on `halt`
        self.lane: Lane
        if lane is not None:  # otherwise set when the job joins its lane
            self.lane = lane
        self.event = event
        self.param = param
        self.holds = (record,) if holds is None else holds  # records this call finishes when done
        self.events = events  # a call's events (dead letters); None: [event]
        self.txn = txn  # a transaction call: its records are released with the transaction
        self.attempts = 0
        self.delay = 0.0
        self.first_failed: datetime | None = None
        self.entry: list[dict[str, Any]] | None = None  # dead letter entries still to be written
        self.done = False

    def units(self) -> set[Hashable]:
        units = {r.token[0] for r in self.holds}
        units.add(self.record.token[0])
        if self.txn is not None:
            units.update(r.token[0] for r in self.txn.holds)
        return units


class Lane:
    __slots__ = ("halted", "hook", "jobs", "key", "queued", "retry_at", "run", "timer")

    def __init__(self, hook: HookState, key: Hashable) -> None:
        self.hook = hook
        self.key = key
        self.jobs: deque[Job] = deque()
        self.run: Run | None = None
        self.retry_at = 0.0
        self.timer = False   # waiting in the timer heap
        self.queued = False  # waiting in the hook's ready queue
        self.halted = False

    def idle(self) -> bool:
        return self.run is None and not self.timer and not self.queued and not self.halted


class HookState:
    __slots__ = ("abandoned", "active", "batch", "batch_started", "direct_s", "direct_us", "inline", "lanes",
                 "probe_calls", "probe_s", "ready", "reported_active", "spec")

    def __init__(self, spec: HookSpec) -> None:
        self.spec = spec
        self.lanes: dict[Hashable, Lane] = {}
        self.ready: deque[Lane] = deque()
        self.active = 0         # runs in flight (an abandoned call keeps its run, so its slot)
        self.abandoned = 0
        self.reported_active = -1
        self.batch: list[tuple[Record, ChangeEvent]] = []  # batch calls: records collected
        self.batch_started = 0.0
        self.inline = spec.thread == "loop"  # runs execute on the loop's thread (fast calls, or `thread: loop`)
        self.probe_calls = 0    # calls (and their seconds) since inline was last decided
        self.probe_s = 0.0
        self.direct_s: list[float] = []        # calls made at intake (durations, commit times) not yet in metrics
        self.direct_us: list[int | None] = []

    def call_lane(self) -> Lane:
        """Transaction and batch calls: one lane (partition: in commit order), or one per call (none)."""
        key: Hashable = "calls" if self.spec.ordering == "partition" else object()
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(self, key)
        return lane

    def lane_key(self, raw: RawMessage) -> Hashable:
        ordering = self.spec.ordering
        if ordering == "partition" or (ordering == "key" and raw.key is None):
            return (raw.topic, raw.partition)
        if ordering == "key":
            return (raw.topic, raw.partition, raw.key)
        return object()  # none: every record its own lane

    def lane(self, raw: RawMessage) -> Lane:
        key = self.lane_key(raw)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(self, key)
        return lane


def offset(job: Job) -> int:
    """Where a record-mode job's record sits in its unit (packed runs are merged by it)."""
    return job.record.token[2]
