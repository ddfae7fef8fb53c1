"""`dispatch.soft_max_in_flight`: past it, while calls run with others ready behind them, the loop
takes nothing more from the source (nothing is paused) until half as many records are in flight;
it still polls once every `SOFT_HOLD_S`; a transaction being assembled while nothing is queued,
and a slow or stuck lane, never hold the intake back."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any

from sidecar.dispatch import STALLED_S
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.loop import SOFT_HOLD_S
from sidecar.testing import MemorySource, run_pipeline
from tests.pipeline.test_dispatch_properties import message
from tests.pipeline.test_transactions import synthetic_transaction


class Counting(MemorySource):
    """Records when each batch was taken and how many messages were taken by then."""

    def __init__(self, messages: Sequence[RawMessage], batch_size: int) -> None:
        super().__init__(messages, batch_size=batch_size)
        self.taken = 0
        self.polls: list[tuple[float, int]] = []

    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        batch = super().poll(timeout_s)
        if batch:
            self.taken += len(batch)
            self.polls.append((time.monotonic(), self.taken))
        return batch


def numbered_per_topic(ordered: Sequence[RawMessage]) -> list[RawMessage]:
    """The messages, in this order, with offsets counted per topic (partition 0)."""
    offsets: dict[str, int] = {}
    numbered = []
    for m in ordered:
        offsets[m.topic] = offsets.get(m.topic, -1) + 1
        numbered.append(RawMessage(m.topic, 0, offsets[m.topic], m.key, m.value))
    return numbered


def _ahead_of_a_serial_hook(soft: int) -> int:
    """Most records taken and not yet called, over 1,500 one-record calls of ~0.3 ms each."""
    msgs = [message(0, i, i) for i in range(1500)]
    source = Counting(msgs, batch_size=50)
    called = [0]
    ahead: list[int] = []

    def hook(param: Any) -> None:
        time.sleep(0.0003)
        called[0] += 1
        ahead.append(source.taken - called[0])

    # timeout_s: its calls run on a worker thread (never on the loop's, as fast hooks may)
    run_pipeline(msgs, [HookSpec("serial", hook, "t", timeout_s=30.0)], source=source,
                 max_in_flight=100_000, soft_max_in_flight=soft)
    assert called[0] == 1500
    return max(ahead)


def test_intake_holds_while_calls_wait() -> None:
    """With 200, the loop stays within 200 records (+ one batch, + a batch per half second of hold)
    of a serial hook; with 0 (off) it takes nearly everything in at once, up to max_in_flight."""
    held = _ahead_of_a_serial_hook(200)
    free = _ahead_of_a_serial_hook(0)
    assert held <= 200 + 50 + 50 * 2, held
    assert free > 1000, free


def test_the_loop_polls_during_a_hold() -> None:
    """Calls of 60 ms (slow, not stuck: under STALLED_S) with calls queued behind them, fewer
    finishing per half second than a batch holds: the records in flight stay past half the bound,
    the hold lasts, and the loop still takes one batch every SOFT_HOLD_S (rebalance callbacks run
    in the poll; the member stays live) — not everything, and not nothing. (After 1.6 s the calls
    get fast, so the test ends soon.)"""
    msgs = [message(0, i, i) for i in range(150)]
    source = Counting(msgs, batch_size=25)
    first: list[float] = []

    def hook(param: Any) -> None:
        if not first:
            first.append(time.monotonic())
        if time.monotonic() - first[0] < 1.6:
            time.sleep(0.06)

    run_pipeline(msgs, [HookSpec("slow", hook, "t", timeout_s=30.0)], source=source,
                 max_in_flight=100_000, soft_max_in_flight=50)
    start = first[0]
    during = [taken for at, taken in source.polls if start + 0.2 < at < start + 1.55]
    assert SOFT_HOLD_S == 0.5 and STALLED_S > 0.06
    assert 2 <= len(during) <= 4, [(round(at - start, 3), n) for at, n in source.polls]
    assert max(during) <= 50 + 25 + 4 * 25, source.polls


def test_a_stuck_lane_does_not_hold_the_others_back() -> None:
    """One partition's call takes 1.5 s (a lock wait, a slow API) with that partition's records
    queued behind it; the other partition's 2,000 records are all called while it waits: a call
    running past STALLED_S turns the hold off (only that lane waits)."""
    msgs = [message(0, i, 10_000 + i) for i in range(2000)] + [message(1, i, i) for i in range(600)]
    msgs.sort(key=lambda m: (m.offset or 0, m.partition))  # interleaved, as two partitions arrive
    source = Counting(msgs, batch_size=50)
    stuck: list[float] = []
    other_done: list[float] = []

    def hook(param: Any) -> None:
        if param.ctx.partition == 1:
            if not stuck:
                stuck.append(time.monotonic())
                time.sleep(1.5)
                stuck.append(time.monotonic())
        else:
            other_done.append(time.monotonic())

    run_pipeline(msgs, [HookSpec("h", hook, "t", timeout_s=30.0, concurrency=2)], source=source,
                 max_in_flight=100_000, soft_max_in_flight=200)
    assert len(other_done) == 2000
    assert other_done[-1] < stuck[1], (other_done[-1] - stuck[0], stuck[1] - stuck[0])


def test_a_transaction_being_assembled_is_not_held() -> None:
    """While a slow call of a small transaction runs, the next transaction (3,000 rows) is taken
    in whole although it is past the bound: nothing of it waits to start until its END, so holding
    it back would only leave the hook idle afterwards. Both calls are whole."""
    small, small_markers = synthetic_transaction(1, 5)
    big, big_markers = synthetic_transaction(2, 3000)
    ordered = [small_markers[0], *small, small_markers[1], big_markers[0], *big, big_markers[1]]
    numbered = numbered_per_topic(ordered)
    source = Counting(numbered, batch_size=100)
    calls: list[tuple[int, int]] = []

    def hook(param: Any) -> None:
        if not calls:
            time.sleep(1.0)
        calls.append((len(param.records), source.taken))

    run_pipeline(numbered, [HookSpec("tx", hook, "t", mode="transaction", timeout_s=30.0)], source=source,
                 soft_max_in_flight=100)
    assert [n for n, _ in calls] == [5, 3000]
    assert calls[0][1] == len(numbered), calls  # everything was taken while the first call ran


def test_a_hold_does_not_time_out_transactions_whose_end_is_unread() -> None:
    """The ENDs come in bursts, each after the rows of the next ten transactions (as two Kafka
    topics may deliver them); calls take 60 ms (slow, not stuck: under STALLED_S) and the intake
    holds while ten calls queue (soft bound 20). With an END timeout shorter than that hold, the
    time the loop does not read its source must not count, or the next transaction, whose END
    still waits in the source, is called with what arrived (event_count None). (Before the fix:
    measured on the real stack, a 20-row transaction called as 3 + 17 rows.) Every call is whole."""
    txs, block = 40, 10
    parts = [synthetic_transaction(t, 5) for t in range(1, txs + 1)]
    ordered: list[RawMessage] = []
    for at in range(0, txs + block, block):
        for data, (begin, _) in parts[at:at + block]:
            ordered += [begin, *data]
        ordered += [end for _, (_, end) in parts[at - block:at]] if at else []
    numbered = numbered_per_topic(ordered)
    source = Counting(numbered, batch_size=10)
    calls: list[tuple[int, int | None]] = []

    def hook(param: Any) -> None:
        time.sleep(0.06)
        calls.append((len(param.records), param.ctx.transaction.event_count))

    _, stats = run_pipeline(numbered, [HookSpec("tx", hook, "t", mode="transaction", timeout_s=30.0)],
                            source=source, soft_max_in_flight=20, transaction_end_timeout_s=0.2)
    assert calls == [(5, 5)] * txs, calls
    assert stats.transactions_incomplete == 0
    gaps = [b - a for (a, _), (b, _) in zip(source.polls, source.polls[1:], strict=False)]
    assert max(gaps) > 0.3, source.polls  # the loop held (longer than the END timeout)


class KafkaLike(Counting):
    """Kafka mode's pause: the data topics stop, the marker topic is still read (the loop polls on)."""

    def __init__(self, messages: Sequence[RawMessage], batch_size: int, markers: str) -> None:
        super().__init__(messages, batch_size=batch_size)
        self.auto_units = False  # as KafkaSource: assigned units, polled while paused
        self._started = False    # (the first poll assigns every unit)
        self.markers = markers
        self.data_paused = False
        self.taken_paused: list[str] = []  # topics of what a poll returned while paused

    def pause(self) -> None:
        super().pause()
        self.data_paused = True

    def resume(self) -> None:
        self.data_paused = False

    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        if not self.data_paused or not self._started:
            return super().poll(timeout_s)
        batch = [m for m in self.messages if m.topic == self.markers][:self.batch_size]
        taken = {id(m) for m in batch}
        self.messages = deque(m for m in self.messages if id(m) not in taken)
        self.exhausted = not self.messages
        self.taken_paused += [m.topic for m in batch]
        if batch:
            self.taken += len(batch)
            self.polls.append((time.monotonic(), self.taken))
        return batch


def test_a_kafka_data_pause_does_not_time_out_a_transaction_whose_end_came() -> None:
    """Kafka mode: each transaction's END is read before its rows (the marker topic runs ahead, as
    it does on the real stack), calls take 200 ms, and `max_in_flight` 16 pauses the data topic
    while calls drain; the marker topic is read on meanwhile. A pause longer than the END timeout
    (0.3 s) then catches a transaction with its END and some of its rows read, the rest paused: that
    time must not count against it, or it is called with what arrived. Every call is whole, and
    the loop did pause with only markers read while paused."""
    txs = 12
    ordered: list[RawMessage] = []
    for t in range(1, txs + 1):
        data, (begin, end) = synthetic_transaction(t, 5)
        ordered += [begin, end, *data]
    numbered = numbered_per_topic(ordered)
    source = KafkaLike(numbered, batch_size=4, markers="syn.transaction")
    calls: list[tuple[int, int | None]] = []

    def hook(param: Any) -> None:
        time.sleep(0.2)
        calls.append((len(param.records), param.ctx.transaction.event_count))

    _, stats = run_pipeline(numbered, [HookSpec("tx", hook, "t", mode="transaction", timeout_s=30.0)],
                            source=source, max_in_flight=16, soft_max_in_flight=0, transaction_end_timeout_s=0.3)
    assert source.paused and source.taken_paused, (source.paused, source.polls)
    assert set(source.taken_paused) == {"syn.transaction"}
    assert calls == [(5, 5)] * txs, calls
    assert stats.transactions_incomplete == 0



class MarkersLate(KafkaLike):
    """Kafka mode with the data fetched before the transaction topic (librdkafka may start on a data
    backlog first): `markers_behind` is True while a marker is still unread (or always, with
    `never_caught_up`: a marker partition whose leader is down)."""

    def __init__(self, messages: Sequence[RawMessage], batch_size: int, markers: str,
                 never_caught_up: bool = False) -> None:
        super().__init__(messages, batch_size, markers)
        self.never_caught_up = never_caught_up
        self.data_taken = 0
        self.data_at_last_marker: int | None = None  # data records taken when the last marker was
        self.asked: list[set[str]] = []  # the scopes of each markers_behind call

    def markers_behind(self, scopes: Collection[str]) -> bool:
        self.asked.append(set(scopes))
        return self.never_caught_up or any(m.topic == self.markers for m in self.messages)

    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        batch = super().poll(timeout_s)
        self.data_taken += sum(m.topic != self.markers for m in batch)
        if self.data_at_last_marker is None and not any(m.topic == self.markers for m in self.messages):
            self.data_at_last_marker = self.data_taken
        return batch


def test_a_data_backlog_fetched_before_the_markers_is_paused_at_the_bound() -> None:
    """Every data message comes before the first marker, `max_in_flight` 16. The records are all held
    for their ENDs (nothing else runnable), which alone never keeps the source paused; but while the
    first transaction waits for its END and the transaction topic has unread messages, the data is
    paused at the bound and the markers are read on. Before: all 60 records were taken in before
    the last marker. Every call is whole."""
    txs, rows, batch, bound = 12, 5, 4, 16
    data: list[RawMessage] = []
    markers: list[RawMessage] = []
    for t in range(1, txs + 1):
        d, m = synthetic_transaction(t, rows)
        data += d
        markers += m
    numbered = numbered_per_topic([*data, *markers])
    source = MarkersLate(numbered, batch_size=batch, markers="syn.transaction")
    calls: list[tuple[int, int | None]] = []

    def hook(param: Any) -> None:
        calls.append((len(param.records), param.ctx.transaction.event_count))

    _, stats = run_pipeline(numbered, [HookSpec("tx", hook, "t", mode="transaction", timeout_s=30.0)],
                            source=source, max_in_flight=bound, soft_max_in_flight=0)
    assert source.data_at_last_marker is not None and source.data_at_last_marker <= bound + batch, (
        source.data_at_last_marker)
    assert source.paused and set(source.taken_paused) == {"syn.transaction"}, (source.paused, source.taken_paused)
    assert len(source.taken_paused) == 2 * txs, "every marker read while the data was paused"
    assert source.asked and all(scopes == {"syn"} for scopes in source.asked), source.asked
    assert calls == [(rows, rows)] * txs, calls
    assert stats.transactions_incomplete == 0


def test_a_transaction_waiting_only_for_data_is_never_paused_for_markers() -> None:
    """Each END is read before its rows, and the transaction topic never looks caught up (its leader
    down, say). A transaction whose END came waits only for data: pausing the data for the markers
    would stall it for good (its END timeout does not run while the data is paused). Every
    transaction is called, whole, none by timeout."""
    txs, rows = 12, 5
    ordered: list[RawMessage] = []
    for t in range(1, txs + 1):
        d, (begin, end) = synthetic_transaction(t, rows)
        ordered += [begin, end, *d]
    numbered = numbered_per_topic(ordered)
    source = MarkersLate(numbered, batch_size=4, markers="syn.transaction", never_caught_up=True)
    calls: list[tuple[int, int | None]] = []
    stop = threading.Event()
    watchdog = threading.Timer(20, stop.set)

    def hook(param: Any) -> None:
        time.sleep(0.02)
        calls.append((len(param.records), param.ctx.transaction.event_count))

    watchdog.start()
    try:
        _, stats = run_pipeline(numbered, [HookSpec("tx", hook, "t", mode="transaction", timeout_s=30.0)],
                                source=source, max_in_flight=8, soft_max_in_flight=0, stop=stop,
                                transaction_end_timeout_s=0.5)
    finally:
        watchdog.cancel()
    assert not stop.is_set(), f"stalled: {len(calls)} calls in 20 s"
    assert calls == [(rows, rows)] * txs, calls
    assert stats.transactions_incomplete == 0


def watched_run(source: MarkersLate, hook: Any, limit_s: float, **kwargs: Any) -> tuple[Any, bool]:
    """run_pipeline with one transaction hook on table `t`, stopped after `limit_s`: (stats, stalled)."""
    stop = threading.Event()
    watchdog = threading.Timer(limit_s, stop.set)
    watchdog.start()
    try:
        _, stats = run_pipeline(source.messages, [HookSpec("tx", hook, "t", mode="transaction", timeout_s=30.0)],
                                source=source, soft_max_in_flight=0, stop=stop, **kwargs)
    finally:
        watchdog.cancel()
    return stats, stop.is_set()


def test_a_first_transaction_whose_end_never_comes_ends_by_timeout_while_paused_for_markers() -> None:
    """A 40-row transaction whose END never comes (the connector restarted mid-transaction), and a
    transaction topic that never looks caught up (its leader down): the data is paused at the bound
    waiting for the END, the markers are polled on, so the END timeout runs and hands over what
    came, counted incomplete. Its later rows wait for no marker (before: each further piece was
    paused at the bound for another whole timeout): they are taken in and called together. Nothing
    stalls, nothing is lost."""
    rows, batch, bound = 40, 4, 8
    data, (begin, _) = synthetic_transaction(1, rows)
    source = MarkersLate(numbered_per_topic([begin, *data]), batch_size=batch, markers="syn.transaction",
                         never_caught_up=True)
    calls: list[list[int]] = []

    def hook(param: Any) -> None:
        calls.append([r["id"] for r in param.records])

    stats, stalled = watched_run(source, hook, 20, max_in_flight=bound, transaction_end_timeout_s=0.3)
    assert not stalled, f"stalled: {len(calls)} calls in 20 s"
    assert [i for c in calls for i in c] == [100_000 + n for n in range(1, rows + 1)], calls
    assert len(calls) == 2 and len(calls[0]) <= bound + batch, [len(c) for c in calls]
    assert stats.transactions_incomplete == 2


def test_a_begin_without_events_or_end_ahead_of_a_complete_end_does_not_pause_the_data() -> None:
    """A BEGIN with no events and no END (MariaDB's DDL) heads the scope; the next transaction's END
    came, its 30 rows follow. Markers come in commit order: the first one's END is not coming, so
    nothing waits for the transaction topic and the data is not paused for it, even though that
    topic never looks caught up (before: paused at the bound of 8 until the first one's END
    timeout, 30 s). The empty one is dropped as soon as the next is complete, which is called whole."""
    rows = 30
    _, (ddl_begin, _) = synthetic_transaction(1, 0)
    data, markers = synthetic_transaction(2, rows)
    source = MarkersLate(numbered_per_topic([ddl_begin, *markers, *data]), batch_size=4,
                         markers="syn.transaction", never_caught_up=True)
    calls: list[tuple[int, int | None]] = []

    def hook(param: Any) -> None:
        calls.append((len(param.records), param.ctx.transaction.event_count))

    stats, stalled = watched_run(source, hook, 10, max_in_flight=8, transaction_end_timeout_s=30.0)
    assert not stalled, f"stalled: {len(calls)} calls in 10 s"
    assert calls == [(rows, rows)], calls
    assert not source.asked, "nothing waited for the transaction topic"
    assert stats.transactions_incomplete == 1  # (the empty one, counted)
