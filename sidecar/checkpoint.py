"""Offsets: which records are finished, and what may be committed.

A record is dispatched (`begin`) in offset order and finished (`finish`) in any order.
The commit point of a partition is the offset after the highest contiguous finished
record: records finishing out of order (per-key concurrency, transaction hooks) never
let the commit point pass an unfinished one.
"""

from __future__ import annotations

from collections import deque


class PartitionTracker:
    __slots__ = ("_done", "_pending", "committed", "position")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self.position: int | None = None  # next offset to commit (finished prefix + 1)
        self.committed: int | None = None  # what was last committed to the broker

    def begin(self, offset: int) -> None:
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} dispatched out of order (last {self._pending[-1]})")
        self._pending.append(offset)

    def finish(self, offset: int) -> None:
        self._done.add(offset)
        pending = self._pending
        while pending and pending[0] in self._done:
            done = pending.popleft()
            self._done.discard(done)
            self.position = done + 1

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def commit_due(self) -> int | None:
        """The offset to commit now, or None if nothing new finished since the last commit."""
        if self.position is not None and self.position != self.committed:
            return self.position
        return None


class OffsetTracker:
    """Trackers for the partitions this member owns, keyed by (topic, partition)."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], PartitionTracker] = {}

    def assign(self, topic: str, partition: int) -> None:
        self._parts.setdefault((topic, partition), PartitionTracker())

    def revoke(self, topic: str, partition: int) -> PartitionTracker | None:
        return self._parts.pop((topic, partition), None)

    def owns(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._parts

    def get(self, topic: str, partition: int) -> PartitionTracker | None:
        return self._parts.get((topic, partition))

    def items(self) -> list[tuple[tuple[str, int], PartitionTracker]]:
        return list(self._parts.items())

    @property
    def in_flight(self) -> int:
        return sum(t.in_flight for t in self._parts.values())
