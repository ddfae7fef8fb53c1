"""Where raw messages come from. Only the `sources/kafka*.py` modules import confluent_kafka.

A Source only fetches, pauses and resumes, commits what it is told, and closes; which
records are finished and when to commit is `Checkpoint`'s business, what happens to each
record is the dispatcher's.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from typing import Protocol

from sidecar.events import RawMessage


class Assignments(Protocol):
    """Told by a source whose units (Kafka partitions) come and go."""

    def assigned(self, units: Collection[Hashable]) -> None: ...

    def revoked(self, units: Collection[Hashable]) -> None:
        """Called before the units go to another member: finish or abandon, commit what finished."""

    def lost(self, units: Collection[Hashable]) -> None:
        """The units are gone already: commit nothing for them."""


class Source(Protocol):
    exhausted: bool
    """A finite source (a file) has been read to its end."""

    auto_units: bool
    """True: units appear with their records (embedded batches, files); False: they are
    assigned (Kafka partitions, through `Assignments`)."""

    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        """Up to a batch of messages; waits up to `timeout_s` when nothing is there."""

    def locate(self, raw: RawMessage) -> tuple[Hashable, int]:
        """The unit (partition, batch) a message belongs to and its offset in it. A source whose
        answer is always `((raw.topic, raw.partition), raw.offset)` may say so with an attribute
        `units_are_partitions = True`: the checkpoint then locates without calling it."""

    def pause(self) -> None:
        """Stop fetching (too many records in flight); keep the membership alive."""

    def resume(self) -> None:
        """Fetch again after `pause`."""

    def halt(self, unit: Hashable) -> None:
        """Fetch nothing more of this unit (a hook or a message halted it)."""

    def commit(self, offsets: dict[Hashable, int]) -> bool:
        """Commit these positions (next offset to read, per unit); True when it took them."""

    def close(self) -> None:
        """Release resources (the caller committed what finished)."""
