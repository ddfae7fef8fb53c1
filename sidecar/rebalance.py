"""Kafka partitions coming and going, as the dispatcher and the checkpoint must see them.

Called from the source's rebalance callbacks, on the loop's thread (inside its poll)."""

from __future__ import annotations

from collections.abc import Collection, Hashable

from sidecar.checkpoint import Checkpoint
from sidecar.dispatch import Dispatcher


class Rebalance:
    def __init__(self, dispatcher: Dispatcher, checkpoint: Checkpoint, revoke_wait_s: float) -> None:
        self.dispatcher = dispatcher
        self.checkpoint = checkpoint
        self.revoke_wait_s = revoke_wait_s

    def assigned(self, units: Collection[Hashable]) -> None:
        self.checkpoint.assign(units)

    def revoked(self, units: Collection[Hashable]) -> None:
        # Wait (bounded) for their running calls, commit what finished, drop the rest: the
        # next owner gets it. A call still running after revoke_wait_s may write late.
        self.dispatcher.release(units, self.revoke_wait_s)
        if self.checkpoint.reachable():
            self.checkpoint.commit(only=units)
        self._forget(units)

    def lost(self, units: Collection[Hashable]) -> None:
        self._forget(units)

    def _forget(self, units: Collection[Hashable]) -> None:
        # Records of kept partitions that depended on dropped ones (the rest of a transaction
        # begun on a revoked partition) are fetched again: those partitions go on committing.
        rewinds = self.dispatcher.forget(units, rewind=self.checkpoint.can_rewind)
        self.checkpoint.drop(units)
        for unit, offset in rewinds.items():
            self.checkpoint.rewind(unit, offset)


__all__ = ["Rebalance"]
