"""Offset tracking: commit only the contiguous finished prefix."""

from __future__ import annotations

import pytest

from sidecar.checkpoint import OffsetTracker, PartitionTracker


def test_in_order_finish_advances() -> None:
    """Finishing in order moves the commit point to the last finished + 1."""
    t = PartitionTracker()
    for o in (5, 6, 7):
        t.begin(o)
    t.finish(5)
    t.finish(6)
    assert t.commit_due() == 7
    t.committed = 7
    assert t.commit_due() is None


def test_out_of_order_finish_waits_for_the_gap() -> None:
    """A later record finishing first does not let the commit pass an unfinished one."""
    t = PartitionTracker()
    for o in (1, 2, 3):
        t.begin(o)
    t.finish(3)
    t.finish(2)
    assert t.commit_due() is None
    assert t.in_flight == 3
    t.finish(1)
    assert t.commit_due() == 4 and t.in_flight == 0


def test_dispatch_out_of_order_is_refused() -> None:
    """Records are dispatched in offset order."""
    t = PartitionTracker()
    t.begin(10)
    with pytest.raises(ValueError, match="out of order"):
        t.begin(9)


def test_revoke_forgets_partition() -> None:
    """A revoked partition is no longer owned."""
    ot = OffsetTracker()
    ot.assign("t", 0)
    assert ot.owns("t", 0)
    ot.revoke("t", 0)
    assert not ot.owns("t", 0)
