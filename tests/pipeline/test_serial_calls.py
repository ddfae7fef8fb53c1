"""A serial transaction hook's next calls join the run going on its worker: the worker starts
each as soon as the call before it ends, without a hand-off through the loop's thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.testing import MemorySource, run_pipeline


def transactions(n: int, rows: int = 1) -> list[RawMessage]:
    """`n` transactions of `rows` rows each, markers and data in stream order (offsets numbered
    across both topics, in that order)."""
    out: list[RawMessage] = []
    for tx in range(1, n + 1):
        out.append(RawMessage("p.transaction", 0, None, None, json.dumps(
            {"status": "BEGIN", "id": f"{tx}:1", "event_count": None, "data_collections": None}).encode()))
        for order in range(1, rows + 1):
            row = tx * 1000 + order
            out.append(RawMessage("p.public.orders", 0, None, json.dumps({"id": row}).encode(), json.dumps({
                "before": None, "after": {"id": row}, "op": "c", "ts_ms": 1,
                "source": {"connector": "postgresql", "name": "p", "db": "shop", "schema": "public",
                           "table": "orders", "txId": tx, "lsn": row, "ts_ms": 1},
                "transaction": {"id": f"{tx}:{row}", "total_order": order, "data_collection_order": order},
            }).encode()))
        out.append(RawMessage("p.transaction", 0, None, None, json.dumps(
            {"status": "END", "id": f"{tx}:1", "event_count": rows,
             "data_collections": [{"data_collection": "public.orders", "event_count": rows}]}).encode()))
    return out


class BlockingAtEnd(MemorySource):
    """One message per poll; once every message was taken, one poll blocks the loop's thread until
    `unblock` is set (or `wait_s` passed)."""

    def __init__(self, messages: Sequence[RawMessage], wait_s: float) -> None:
        super().__init__(messages, batch_size=1)
        self.blocking = threading.Event()
        self.unblock = threading.Event()
        self.released_in_time: bool | None = None
        self._wait_s = wait_s

    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        if not self.messages and self.released_in_time is None:
            self.blocking.set()
            self.released_in_time = self.unblock.wait(self._wait_s)
            return []
        return super().poll(timeout_s)


@pytest.mark.parametrize("timeout_s", [None, 30.0])
def test_a_serial_hooks_next_calls_start_while_the_loop_is_busy(timeout_s: float | None) -> None:
    """Calls 2 and 3 are dispatched while call 1 runs; then the loop's thread is kept in a poll.
    They still run: the worker goes on to them (before: they waited in the lane until the loop
    applied call 1's end and started a new run — here, for the whole poll)."""
    source = BlockingAtEnd(transactions(3), wait_s=5.0)
    calls: list[tuple[str | None, list[int]]] = []

    def hook(p: Any) -> None:
        if not calls:
            # every transaction is dispatched before the source blocks the loop
            assert source.blocking.wait(5.0)
        calls.append((p.ctx.transaction.id, [r["id"] for r in p.records]))
        if len(calls) == 3:
            source.unblock.set()

    started = time.monotonic()
    _, stats = run_pipeline([], [HookSpec("tx", hook, "public.orders", mode="transaction", timeout_s=timeout_s)],
                            source=source)
    assert calls == [("1", [1001]), ("2", [2001]), ("3", [3001])]
    assert source.released_in_time is True, "calls 2 and 3 waited for the loop's thread"
    assert time.monotonic() - started < 4.0
    assert stats.calls_ok == 3 and stats.transactions == 3
    assert source.committed == {("p.transaction", 0): 9, ("p.public.orders", 0): 8}


def test_a_failed_call_in_a_joined_run_is_retried_before_the_calls_behind_it() -> None:
    """A call that joined a run and fails: the calls behind it wait (go back to the lane in order)
    and run after its retry succeeds — commit order holds."""
    source = BlockingAtEnd(transactions(4), wait_s=0.5)
    order: list[str | None] = []
    failed = [False]

    def hook(p: Any) -> None:
        tx = p.ctx.transaction.id
        if not order:
            assert source.blocking.wait(5.0)
        order.append(tx)
        if tx == "2" and not failed[0]:
            failed[0] = True
            raise RuntimeError("first attempt of call 2 fails")

    _, stats = run_pipeline([], [HookSpec("tx", hook, "public.orders", mode="transaction", initial_backoff_s=0.01)],
                            source=source)
    assert order == ["1", "2", "2", "3", "4"]
    assert stats.calls_ok == 4 and stats.calls_failed == 1
    assert source.committed == {("p.transaction", 0): 12, ("p.public.orders", 0): 11}
