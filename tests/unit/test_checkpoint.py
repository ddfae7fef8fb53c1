"""Offset tracking: commit only the contiguous finished prefix."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from sidecar.checkpoint import Checkpoint, PartitionTracker
from sidecar.testing import MemorySource


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
    assert t.in_flight == 1  # 2 and 3 finished; 1 is the gap
    t.finish(1)
    assert t.commit_due() == 4 and t.in_flight == 0


def test_dispatch_out_of_order_is_refused() -> None:
    """Records are dispatched in offset order."""
    t = PartitionTracker()
    t.begin(10)
    with pytest.raises(ValueError, match="out of order"):
        t.begin(9)


def test_dropped_unit_is_forgotten_and_its_late_finish_ignored() -> None:
    """A revoked unit is no longer owned; a record of it finishing later changes nothing."""
    src = MemorySource([])
    src.auto_units = False
    cp = Checkpoint(src, 0.0, 1)
    cp.assign([("t", 0)])
    from sidecar.events import RawMessage

    token = cp.begin(RawMessage("t", 0, 5, None, b"{}"))
    assert token is not None and cp.in_flight == 1
    cp.drop([("t", 0)])
    assert not cp.owns(("t", 0)) and cp.in_flight == 0
    cp.finish(token)
    assert cp.in_flight == 0 and cp.commit() and src.committed == {}
    assert cp.begin(RawMessage("t", 0, 6, None, b"{}")) is None  # not ours any more


def test_commit_policy_interval_and_max_uncommitted() -> None:
    """Due after max_uncommitted finished records or the interval, never with nothing new."""
    src = MemorySource([])
    cp = Checkpoint(src, 3600.0, 3)
    from sidecar.events import RawMessage

    tokens = [cp.begin(RawMessage("t", 0, o, None, b"{}")) for o in range(4)]
    assert not cp.due()
    for t in tokens[:2]:
        assert t is not None
        cp.finish(t)
    assert not cp.due()
    assert tokens[3] is not None
    cp.finish(tokens[3])  # out of order: counts, but the commit point stays at 2
    assert cp.due()
    cp.maybe_commit()
    assert src.committed == {("t", 0): 2} and not cp.due()


def test_drop_counts_only_unfinished_records() -> None:
    """Dropping a unit with records finished behind a gap subtracts only the unfinished ones (was negative)."""
    from sidecar.events import RawMessage

    src = MemorySource([])
    src.auto_units = False
    cp = Checkpoint(src, 0.0, 1)
    cp.assign([("t", 0), ("t", 1)])
    tokens = [cp.begin(RawMessage("t", 0, o, None, b"{}")) for o in range(3)]
    other = cp.begin(RawMessage("t", 1, 0, None, b"{}"))
    for t in tokens[1:]:
        assert t is not None
        cp.finish(t)  # offset 0 still running: 1 and 2 finished behind the gap
    assert cp.in_flight == 2
    cp.drop([("t", 0)])
    assert cp.in_flight == 1
    assert other is not None
    cp.finish(other)
    assert cp.in_flight == 0


def test_a_source_subclass_that_locates_its_own_way_is_asked() -> None:
    """Kafka-like sources are located by the checkpoint itself (no call per record); a subclass that
    overrides `locate` is called, as any source."""
    from sidecar.events import RawMessage

    asked: list[int] = []

    class OneUnit(MemorySource):
        def locate(self, raw: RawMessage) -> tuple[Hashable, int]:
            assert raw.offset is not None
            asked.append(raw.offset)
            return "all", raw.offset

    msgs = [RawMessage("t", p, o, None, b"{}") for o in range(2) for p in (0, 1)]
    plain, own = MemorySource(msgs), OneUnit(msgs)
    assert plain.units_are_partitions and not own.units_are_partitions
    cp = Checkpoint(plain)
    assert [cp.begin(m) is not None for m in msgs] == [True] * 4 and asked == []
    cp = Checkpoint(own)
    tokens = [cp.begin(m) for m in msgs[:1]]
    assert asked == [0] and tokens[0] is not None and tokens[0][0] == "all"
