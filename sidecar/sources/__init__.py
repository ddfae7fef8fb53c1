"""Where raw messages come from. Only `sources/kafka.py` imports confluent_kafka."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sidecar.events import RawMessage


class Source(Protocol):
    """What the run loop needs from a source of messages."""

    def poll_batch(self) -> Sequence[RawMessage]:
        """Up to a batch of messages; may block briefly when nothing is waiting."""

    def current(self, raw: RawMessage) -> bool:
        """False when the message's partition was revoked or halted since it was fetched."""

    def begin(self, raw: RawMessage) -> None:
        """The record is being worked on (it holds back the commit until finished)."""

    def finish(self, raw: RawMessage) -> None:
        """Every hook of the record finished: its offset may be committed."""

    def halt(self, raw: RawMessage, reason: str) -> None:
        """Stop the record's partition here: nothing at or after it is committed."""

    def wait(self, seconds: float) -> bool:
        """Sleep while staying a live member; False if the caller should give up now."""

    def maybe_commit(self) -> None:
        """Commit finished offsets if the commit interval has passed."""

    def close(self) -> None:
        """Commit what finished and release resources."""
