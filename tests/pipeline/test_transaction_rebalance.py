"""Transaction hooks across a partial revoke (Kafka-like rebalances on the in-memory source):
a revoke that takes part of an open transaction must not leave the kept partitions' records
of it unfinished — those partitions go on committing, and the transaction is assembled again."""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import Any

import orjson
import pytest
import structlog

from sidecar.checkpoint import Checkpoint
from sidecar.databases import Databases
from sidecar.decode import Decoder
from sidecar.dispatch import Dispatcher
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.param import ParamFactory
from sidecar.rebalance import Rebalance
from sidecar.testing import MemorySource, run_pipeline

PREFIX = "shop"
MARKERS = (f"{PREFIX}.transaction", 0)
A0, A1, B = (f"{PREFIX}.public.a", 0), (f"{PREFIX}.public.a", 1), (f"{PREFIX}.public.b", 0)


def _event(table: str, tx: int, order: int, row: int) -> bytes:
    ts = 1_764_460_800_000 + tx
    return orjson.dumps({
        "before": None, "after": {"id": row, "tx": tx},
        "source": {"version": "3.5.0.Final", "connector": "postgresql", "name": PREFIX, "ts_ms": ts,
                   "ts_us": ts * 1000, "snapshot": "false", "db": "shop", "schema": "public", "table": table,
                   "txId": tx, "lsn": 10_000 * tx + order},
        "transaction": {"id": f"{tx}:{10_000 * tx + order}", "total_order": order, "data_collection_order": order},
        "op": "c", "ts_ms": ts})


def _marker(status: str, tx: int) -> bytes:
    end = status == "END"
    return orjson.dumps({
        "status": status, "id": f"{tx}:{10_000 * tx}", "event_count": 3 if end else None,
        "data_collections": [{"data_collection": "public.a", "event_count": 2},
                             {"data_collection": "public.b", "event_count": 1}] if end else None,
        "ts_ms": 1_764_460_800_000 + tx})


def stream(transactions: int, seed: int) -> dict[Hashable, list[RawMessage]]:
    """Per unit, in offset order: each transaction has a row in a[0], one in b[0], one in a[1]
    (three partitions) and its BEGIN/END on the marker topic."""
    per: dict[Hashable, list[bytes]] = {MARKERS: [], A0: [], A1: [], B: []}
    for tx in range(1, transactions + 1):
        per[MARKERS].append(_marker("BEGIN", tx))
        per[A0].append(_event("a", tx, 1, 3 * tx))
        per[B].append(_event("b", tx, 2, 3 * tx + 1))
        per[A1].append(_event("a", tx, 3, 3 * tx + 2))
        per[MARKERS].append(_marker("END", tx))
    return {u: [RawMessage(u[0], u[1], i, None, v) for i, v in enumerate(vs)]  # type: ignore[index]
            for u, vs in per.items()}


def interleave(per_unit: dict[Hashable, list[RawMessage]], seed: int) -> list[RawMessage]:
    """A consumer's view of several partitions: each partition in order, randomly interleaved."""
    rng = random.Random(seed)
    queues = {u: list(ms) for u, ms in per_unit.items()}
    out: list[RawMessage] = []
    while queues:
        u = rng.choice(sorted(queues, key=str))
        out.append(queues[u].pop(0))
        if not queues[u]:
            del queues[u]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_partial_revoke_then_back_every_transaction_called_whole_and_every_partition_committed(seed: int) -> None:
    """b[0] is revoked while transactions holding records of a[0], a[1] and the markers are open,
    and assigned back later (another member came and went). The kept partitions are fetched again
    from the first record of a dropped transaction: every transaction is called, each call whole
    (3 records), first calls in commit order, and every partition is committed to its end.
    (Before: the kept records of the dropped transactions stayed unfinished — those partitions
    never committed past them — and the transactions were never called.)"""
    per_unit = stream(40, seed)
    calls: list[Any] = []
    source = MemorySource(interleave(per_unit, seed), batch_size=7,
                          rebalances=[(60, "revoke", [B]), (100, "assign", [B])])
    run_pipeline([], [HookSpec("tx", calls.append, "t", mode="transaction")], source=source)
    assert {u: source.committed.get(u) for u in per_unit} == {u: len(ms) for u, ms in per_unit.items()}
    assert all(len(c.records) == 3 and c.ctx.transaction.last for c in calls)
    first: list[int] = []
    for c in calls:
        tx = int(c.ctx.transaction.id)
        if tx not in first:
            first.append(tx)
    assert first == list(range(1, 41))
    assert source.seeks and {u for u, _ in source.seeks} <= {MARKERS, A0, A1}  # the revoke took part of one


def test_partial_revoke_for_good_kept_partitions_go_on_committing() -> None:
    """b[0] is revoked for good (its new owner gets its part): the kept partitions are not stuck on
    the dropped transactions' records — every one of them is committed to its end. The
    transactions that cannot complete here any more are called with what arrived when the input
    ends (`end_of_input`; on Kafka after `transaction_end_timeout_s`), and counted."""
    per_unit = stream(30, 7)
    calls: list[Any] = []
    source = MemorySource(interleave(per_unit, 7), batch_size=5, rebalances=[(45, "revoke", [B])])
    _, stats = run_pipeline([], [HookSpec("tx", calls.append, "t", mode="transaction")], source=source)
    kept = [MARKERS, A0, A1]
    assert {u: source.committed.get(u) for u in kept} == {u: len(per_unit[u]) for u in kept}
    assert stats.transactions_incomplete > 0  # called with what arrived, counted
    assert source.seeks


def test_stale_prefetched_messages_of_a_rewound_partition_are_skipped() -> None:
    """Messages of a kept partition fetched before its seek (in the batch the revoke arrived with)
    are not taken; the re-fetch from the seek point is, in order, and a finish of a record before
    the rewind point still counts while one at or after it does not."""
    source = MemorySource([])
    source.auto_units = False
    cp = Checkpoint(source, 0.0, 1)
    unit = ("t", 0)
    cp.assign([unit])
    tokens = [cp.begin(RawMessage("t", 0, o, None, b"{}")) for o in range(6)]
    assert all(t is not None for t in tokens) and cp.in_flight == 6
    cp.rewind(unit, 3)
    assert source.seeks == [(unit, 3)] and cp.in_flight == 3
    assert cp.begin(RawMessage("t", 0, 6, None, b"{}")) is None  # prefetched past the last taken: stale
    for t in tokens:
        assert t is not None
        cp.finish(t)  # 0-2 count, 3-5 (given up on) do not
    assert cp.in_flight == 0 and cp.commit() and source.committed == {unit: 3}
    again = [cp.begin(RawMessage("t", 0, o, None, b"{}")) for o in range(3, 8)]  # the re-fetch
    for t in again:
        assert t is not None
        cp.finish(t)
    assert cp.commit() and source.committed == {unit: 8}


def test_forget_gives_up_on_what_depends_on_a_revoked_partition() -> None:
    """Complete transactions with their calls queued, the first touching the revoked partition: its
    call is dropped, so its records on kept partitions cannot finish — those partitions are fetched
    again from its first record there, which gives up on the later transaction too (its records
    come after on the same partitions); returned for `Checkpoint.rewind`."""
    log = structlog.get_logger("test")
    source = MemorySource([])
    source.auto_units = False
    cp = Checkpoint(source, 0.0, 1)
    d = Dispatcher([HookSpec("tx", lambda p: None, "t", mode="transaction")], ParamFactory("p", Databases(), log),
                   cp, log)
    rb = Rebalance(d, cp, revoke_wait_s=0.0)
    per_unit = stream(2, 0)
    rb.assigned(list(per_unit))
    dec = Decoder()
    try:
        for u in (MARKERS, A0, A1, B):
            for raw in per_unit[u]:
                token = cp.begin(raw)
                assert token is not None
                d.dispatch(raw, dec.decode(raw), token)
        assert d.assembler is not None and d.assembler.open_count == 0  # both complete, calls queued
        rewinds = d.forget({B}, rewind=True)
        assert rewinds == {MARKERS: 0, A0: 0, A1: 0}
    finally:
        d.close()
