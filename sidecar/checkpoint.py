"""Offsets: which records are finished, when to commit, and committing — for every source.

One object, `Checkpoint`, owns this for Kafka, the embedded engine and files alike; a
Source only fetches, pauses, commits what it is told and closes.

1. `begin(raw)` — the loop takes a record; the source says where it sits (`locate`: a
   unit — a Kafka partition, an embedded engine batch — and an offset in it). Records
   are begun in offset order within a unit.
2. `finish(token)` — every hook of the record is done (in any order: hooks run
   concurrently). The commit point of a unit is the offset after its highest *contiguous*
   finished record (`PartitionTracker`), so it never passes an unfinished one.
3. `due()` — `commit_interval_s` passed or `max_uncommitted` records finished since the
   last commit, and the source is reachable (a synchronous commit to a Kafka that is down
   would block the loop for session.timeout.ms and fail anyway).
4. `commit(only)` — hand each unit's commit point to `Source.commit`; remember what the
   source accepted. Revokes commit only the revoked units; a lost assignment commits nothing.
5. `rewind(unit, offset)` — records of a unit the dispatcher had to give up on while keeping
   the unit (part of a transaction dropped on a partial revoke) are fetched again: the source
   seeks back to `offset`, the unit's tracker forgets everything from there (a token of a record
   before it still finishes; one at or after it no longer does), and messages of the unit
   fetched before the seek (past the last record taken) are skipped until the re-fetch starts.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Hashable

from sidecar.events import RawMessage
from sidecar.health import Health
from sidecar.sources import Source


class PartitionTracker:
    """The contiguous-prefix algorithm (the only one in the codebase)."""

    __slots__ = ("_done", "_pending", "committed", "cutoff", "position", "successor")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self.position: int | None = None  # next offset to commit (finished prefix + 1)
        self.committed: int | None = None  # what the source last accepted
        self.successor: PartitionTracker | None = None  # rewound: records before `cutoff` go on there
        self.cutoff = 0

    @property
    def last_begun(self) -> int | None:
        if self._pending:
            return self._pending[-1]
        return None if self.position is None else self.position - 1

    def rewound(self, offset: int) -> PartitionTracker:
        """A tracker for the same unit that forgot every record at or after `offset` (they will be
        begun again); this one forwards records before `offset` to it."""
        new = PartitionTracker()
        new._pending = deque(o for o in self._pending if o < offset)
        new._done = {o for o in self._done if o < offset}
        new.position = self.position
        new.committed = self.committed
        self.successor, self.cutoff = new, offset
        return new

    def begin(self, offset: int) -> None:
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} dispatched out of order (last {self._pending[-1]})")
        self._pending.append(offset)

    def finish(self, offset: int) -> None:
        pending = self._pending
        if pending and pending[0] == offset:  # the common case: in order
            pending.popleft()
            self.position = offset + 1
            if not self._done:
                return
        else:
            self._done.add(offset)
        done = self._done
        while pending and pending[0] in done:
            first = pending.popleft()
            done.discard(first)
            self.position = first + 1

    @property
    def in_flight(self) -> int:
        """Records begun and not finished (finished ones behind a gap are still pending, not in flight)."""
        return len(self._pending) - len(self._done)

    def commit_due(self) -> int | None:
        """The offset to commit now, or None if nothing new finished since the last commit."""
        if self.position is not None and self.position != self.committed:
            return self.position
        return None


Token = tuple[Hashable, PartitionTracker, int]


class Checkpoint:
    def __init__(
        self,
        source: Source,
        interval_s: float = 1.0,
        max_uncommitted: int = 1000,
        health: Health | None = None,
        dependency: str | None = None,
    ) -> None:
        self._source = source
        self._locate = source.locate
        # (topic, partition) units (Kafka): located here, without a call to the source per record.
        self._by_partition: bool = getattr(source, "units_are_partitions", False)
        # Called before offsets are handed to the source (the dead-letter store's `sync`): what it
        # raises stops the commit, so nothing is committed past a record whose dead letter is not safe.
        self.before_commit: Callable[[], None] | None = None
        self._commit_async: Callable[[dict[Hashable, int]], bool] | None = getattr(source, "commit_async", None)
        self._auto = source.auto_units  # units appear with their records (embedded batches, files)
        self._units: dict[Hashable, PartitionTracker] = {}
        self._halted: set[Hashable] = set()
        self.interval_s = interval_s
        self.max_uncommitted = max_uncommitted
        self._health = health
        self._dependency = dependency  # e.g. "kafka": no periodic commit while it is down
        self._last = time.monotonic()
        self._uncommitted = 0
        self.in_flight = 0
        self._seek = getattr(source, "seek", None)
        self._stale: dict[Hashable, int] = {}  # rewound unit → last offset taken before the seek

    @property
    def can_rewind(self) -> bool:
        """The source can fetch a unit again from an earlier offset (Kafka: seek)."""
        return self._seek is not None

    # ------------------------------------------------------------------ units
    def assign(self, units: Collection[Hashable]) -> None:
        for unit in units:
            self._units.setdefault(unit, PartitionTracker())
            self._halted.discard(unit)
            self._stale.pop(unit, None)

    def drop(self, units: Collection[Hashable]) -> None:
        """Forget units (revoked, lost, or an embedded batch acknowledged): their records in
        flight are abandoned; finishing them later changes nothing."""
        for unit in units:
            tracker = self._units.pop(unit, None)
            if tracker is not None:
                self.in_flight -= tracker.in_flight
            self._halted.discard(unit)
            self._stale.pop(unit, None)

    def rewind(self, unit: Hashable, offset: int) -> None:
        """Fetch `unit` again from `offset`: its records from there on were given up on (see 5.)."""
        tracker = self._units.get(unit)
        if tracker is None or self._seek is None:
            return
        last = tracker.last_begun
        new = tracker.rewound(offset)
        self.in_flight -= tracker.in_flight - new.in_flight
        self._units[unit] = new
        if last is not None and last >= offset:
            self._stale[unit] = max(last, self._stale.get(unit, last))
        self._seek(unit, offset)

    def halt(self, unit: Hashable) -> None:
        """Nothing more of this unit is taken (its unfinished record holds the commit point)."""
        self._halted.add(unit)
        self._source.halt(unit)

    def owns(self, unit: Hashable) -> bool:
        return unit in self._units

    # ------------------------------------------------------------------ records
    def begin(self, raw: RawMessage) -> Token | None:
        """Start tracking a record; None when its unit is not ours (revoked since it was fetched)."""
        unit: Hashable
        partition, at = raw.partition, raw.offset
        if self._by_partition and partition is not None and at is not None:
            unit, offset = (raw.topic, partition), at
        else:
            unit, offset = self._locate(raw)
        tracker = self._units.get(unit)
        if tracker is None:
            if not self._auto or unit in self._halted:
                return None
            tracker = self._units[unit] = PartitionTracker()
        elif unit in self._halted:
            return None
        if self._stale and unit in self._stale:
            if offset > self._stale[unit]:
                return None  # fetched before a rewind's seek: it comes again, in order
            del self._stale[unit]  # the re-fetch has started
        tracker.begin(offset)
        self.in_flight += 1
        return unit, tracker, offset

    def finish(self, token: Token) -> None:
        unit, tracker, offset = token
        current = self._units.get(unit)
        if current is not tracker:
            # Its unit was dropped meanwhile (revoked, lost: ignored), or rewound: a record before
            # the rewind point goes on in the unit's new tracker, one at or after it is ignored.
            while tracker.successor is not None and offset < tracker.cutoff:
                tracker = tracker.successor
            if current is not tracker:
                return
        tracker.finish(offset)
        self.in_flight -= 1
        self._uncommitted += 1

    # ------------------------------------------------------------------ committing
    def reachable(self) -> bool:
        return self._health is None or self._dependency is None or self._dependency not in self._health.down

    def due(self) -> bool:
        if not self._uncommitted:
            return False
        if self._uncommitted < self.max_uncommitted and time.monotonic() - self._last < self.interval_s:
            return False
        return self.reachable()

    def maybe_commit(self) -> None:
        if self.due():
            self.commit(wait=False)

    def positions(self, only: Collection[Hashable] | None = None) -> dict[Hashable, int]:
        out: dict[Hashable, int] = {}
        for unit, tracker in self._units.items():
            if only is not None and unit not in only:
                continue
            offset = tracker.commit_due()
            if offset is not None:
                out[unit] = offset
        return out

    def commit(self, only: Collection[Hashable] | None = None, wait: bool = True) -> bool:
        """Commit every unit's finished prefix (or `only` those); True when the source took it.
        `wait=False` (the periodic commit): a source that can commits without waiting for the
        result (Kafka: a failure is retried with the next commit; revokes and shutdown wait)."""
        self._last = time.monotonic()
        due = self.positions(only)
        if only is None:
            self._uncommitted = 0
        if not due:
            return True
        if self.before_commit is not None:
            self.before_commit()  # dead letters written since the last commit become durable first
        send = self._source.commit if wait or self._commit_async is None else self._commit_async
        if not send(due):
            return False
        for unit, offset in due.items():
            tracker = self._units.get(unit)
            if tracker is not None:
                tracker.committed = offset
                if self._auto and not tracker.in_flight and unit not in self._halted:
                    del self._units[unit]  # an embedded batch or a file: done with it
        return True
