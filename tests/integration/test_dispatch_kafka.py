"""The dispatcher on the real Kafka broker: concurrency, backpressure by pause/resume, commits."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from tests.integration.kafka_read import committed
from tests.integration.stack import KAFKA, REPO

sys.path.insert(0, str(REPO / "bench"))


def bench_transactions() -> Any:
    """bench/transactions.py (its envelopes and markers), loaded by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_transactions", REPO / "bench" / "transactions.py")
    assert spec is not None and spec.loader is not None
    bt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bt)
    return bt


def create_topics(*topics: str) -> Any:
    """One-partition topics; the admin client that made them."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": KAFKA})
    for future in admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in topics]).values():
        future.result(30)
    return admin


def forget(admin: Any, topics: list[str], group: str) -> None:
    for future in admin.delete_topics(topics).values():
        future.result(30)
    for future in admin.delete_consumer_groups([group], request_timeout=30).values():
        future.result(30)


def test_backpressure_pauses_partitions_and_commits_everything(tmp_path: Path) -> None:
    """A slow keyed hook far behind a pre-filled topic: records in flight never exceed max_in_flight + one
    fetch, the member stays in the group (it keeps polling while paused), every record runs once per key
    order, and the committed offset reaches the end."""
    from concurrency import fill

    from sidecar.app import build_app
    from sidecar.app import run as run_sidecar
    from sidecar.config import Settings
    from sidecar.hooks import HookSpec

    topic = f"it.backpressure.{uuid.uuid4().hex[:8]}"
    n, bound, fetch = 1500, 100, 50
    fill(topic, n, 40)
    stop = threading.Event()
    lock = threading.Lock()
    seen: dict[int, list[int]] = {}
    peak = [0]
    app_box: dict[str, Any] = {}

    def hook(p: Any) -> None:
        time.sleep(0.002)
        in_flight = app_box["app"].metrics.in_flight._value.get()
        with lock:
            peak[0] = max(peak[0], int(in_flight))
            seen.setdefault(p.record["id"], []).append(p.ctx.offset)
            if sum(len(v) for v in seen.values()) >= n:
                threading.Timer(2.0, stop.set).start()  # let the last commit happen

    group = f"it-bp-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        pipeline="it-backpressure",
        source={"kind": "kafka", "kafka": {"bootstrap_servers": KAFKA, "group_id": group, "topics": [topic],
                                           "batch_size": fetch, "commit_interval_s": 0.2,
                                           "settings": {"max.poll.interval.ms": "10000",
                                                        "session.timeout.ms": "6000"}}},  # type: ignore[arg-type]
        http={"enabled": False},  # type: ignore[arg-type]
        dead_letters={"kind": "file", "path": str(tmp_path / "dl.jsonl")},  # type: ignore[arg-type]
        dispatch={"max_in_flight": bound},  # type: ignore[arg-type]
    )
    app = build_app(settings, hooks=[HookSpec("slow", hook, "it", ordering="key", concurrency=4)])
    app_box["app"] = app
    watchdog = threading.Timer(120, stop.set)
    watchdog.start()
    started = time.monotonic()
    try:
        stats = run_sidecar(app, stop)
    finally:
        watchdog.cancel()
    took = time.monotonic() - started
    assert sum(len(v) for v in seen.values()) == n, "every record ran exactly once"
    assert all(v == sorted(v) for v in seen.values()), "per-key order"
    assert peak[0] <= bound + fetch, f"{peak[0]} records in flight (bound {bound} + one fetch of {fetch})"
    assert committed(group, topic) == n
    assert stats.calls_ok == n
    print(f"backpressure: {n} records in {took:.1f}s, peak in flight {peak[0]} (bound {bound})")


def test_resumed_partitions_are_fetched_at_once(tmp_path: Path) -> None:
    """Transaction hooks behind a pre-filled topic: the data partition is paused and resumed again
    and again while the transaction topic (never paused, nothing new in it) has a fetch waiting at the
    broker. librdkafka fetches a resumed partition only once that fetch returns: with its default
    `fetch.wait.max.ms` (500) the hooks sat idle up to half a second per resume. Measured here: the
    time from each resume to the next data message the loop gets.

    The markers go first and the data is written once the loop has read them: with a pre-filled data
    topic librdkafka may start fetching it before the transaction topic (seen in CI, 1 run in 6 here),
    the loop then took in all 1,200 records held for their ENDs (held records did not pause the
    source then), and no resume was left to measure."""
    from confluent_kafka import Producer

    from sidecar.app import build_app
    from sidecar.app import run as run_sidecar
    from sidecar.config import Settings
    from sidecar.sources.kafka import KafkaSource

    bt = bench_transactions()
    prefix = f"itresume{uuid.uuid4().hex[:8]}"
    data, markers = f"{prefix}.public.orders", f"{prefix}.transaction"
    n_tx = 60
    admin = create_topics(data, markers)
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20})
    for tx in range(1, n_tx + 1):
        producer.produce(markers, value=bt.marker("BEGIN", tx))
        producer.produce(markers, value=bt.marker("END", tx))
    assert producer.flush(30) == 0
    markers_read = threading.Event()
    filled: list[int] = []

    def fill() -> None:  # the data, all at once, once the loop has the markers
        if not markers_read.wait(60):
            return
        for tx in range(1, n_tx + 1):
            for order in range(1, bt.ROWS + 1):
                key, value = bt.envelope(prefix, tx, order, tx * bt.ROWS + order)
                producer.produce(data, key=key, value=value)
        filled.append(producer.flush(30))

    resumed: list[float | None] = [None]  # when the data partition was last resumed, until its next message
    gaps: list[float] = []
    calls: list[int] = []
    stop = threading.Event()
    real_resume, real_poll = KafkaSource.resume, KafkaSource.poll

    def resume(self: KafkaSource) -> None:
        if any(topic == data for topic, _ in self._paused):  # (a resume that resumes nothing is no sample)
            resumed[0] = time.monotonic()
        real_resume(self)

    def poll(self: KafkaSource, timeout_s: float) -> Any:
        batch = real_poll(self, timeout_s)
        if not markers_read.is_set() and any(m.topic == markers for m in batch):
            markers_read.set()
        since = resumed[0]
        if since is not None and any(m.topic == data for m in batch):
            gaps.append(time.monotonic() - since)
            resumed[0] = None
        return batch

    def hook(p: Any) -> None:
        time.sleep(0.02)
        calls.append(len(p.records))
        if len(calls) == n_tx:
            stop.set()

    from sidecar.hooks import HookSpec

    settings = Settings(
        pipeline="it-resume",
        # Fetches of at most 32 KB per partition: the data (~0.8 MB, written in a burst) comes in many
        # fetches, as from a backlog, and the partition is paused and resumed between them.
        source={"kind": "kafka", "kafka": {"bootstrap_servers": KAFKA, "group_id": f"it-resume-{prefix}",
                                           "topics": [data, markers], "batch_size": 20,
                                           "settings": {"max.partition.fetch.bytes": "32768"}}},  # type: ignore[arg-type]
        http={"enabled": False},  # type: ignore[arg-type]
        dead_letters={"kind": "file", "path": str(tmp_path / "dl.jsonl")},  # type: ignore[arg-type]
        dispatch={"max_in_flight": 100, "max_transaction_records": 50},  # type: ignore[arg-type]
    )
    spec_tx = HookSpec("tx", hook, "it", tables=frozenset({"public.orders"}), mode="transaction")
    app = build_app(settings, hooks=[spec_tx])
    KafkaSource.resume, KafkaSource.poll = resume, poll  # type: ignore[method-assign]
    watchdog = threading.Timer(120, stop.set)
    watchdog.start()
    filler = threading.Thread(target=fill, daemon=True)
    filler.start()
    try:
        run_sidecar(app, stop)
    finally:
        watchdog.cancel()
        markers_read.set()
        filler.join(60)
        KafkaSource.resume, KafkaSource.poll = real_resume, real_poll  # type: ignore[method-assign]
        forget(admin, [data, markers], f"it-resume-{prefix}")  # (leave the stack as found)
    assert filled == [0], "the data was written"
    assert calls == [bt.ROWS] * n_tx, "every transaction called once, whole"
    assert len(gaps) >= 10, f"data came after only {len(gaps)} resumes"
    median = sorted(gaps)[len(gaps) // 2]
    print(f"resume → next data message: median {median * 1e3:.0f} ms, max {max(gaps) * 1e3:.0f} ms "
          f"over {len(gaps)} resumes")
    # With librdkafka's 500 ms every resume waited ~480 ms (median and max alike); the median is
    # the typical wait and is not moved by one slow moment of a busy machine.
    assert median < 0.25, f"a resumed partition typically waited {median * 1e3:.0f} ms for its next fetch"


def test_a_data_backlog_read_before_the_transaction_topic_is_paused_at_the_bound(tmp_path: Path) -> None:
    """Transaction hooks behind a backlog whose transaction topic is read more slowly than its data
    (20,000 markers of empty transactions first, fetches of 32 KB per partition): every record
    taken is held for an END not read yet. Held records alone never keep the source paused, so the
    whole data backlog (1,200 records, `max_in_flight` 100) was taken in before the ENDs (and with a
    real backlog, all of it: librdkafka may start on the data before the transaction topic, seen in
    CI). While the transaction topic has unread messages the data is paused at the bound."""
    from confluent_kafka import Producer

    from sidecar.app import build_app
    from sidecar.app import run as run_sidecar
    from sidecar.config import Settings
    from sidecar.hooks import HookSpec
    from sidecar.sources.kafka import KafkaSource

    bt = bench_transactions()
    prefix = f"itlate{uuid.uuid4().hex[:8]}"
    data, markers = f"{prefix}.public.orders", f"{prefix}.transaction"
    n_tx, n_fill, bound, batch = 60, 20_000, 100, 20
    admin = create_topics(data, markers)
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20})
    for i in range(n_fill):  # transactions without events: complete at their END, no call
        tx_id = f"{1_000_000 + i}:1"
        producer.produce(markers, value=orjson.dumps({"status": "BEGIN", "id": tx_id, "event_count": None,
                                                      "data_collections": None, "ts_ms": 1}))
        producer.produce(markers, value=orjson.dumps({"status": "END", "id": tx_id, "event_count": 0,
                                                      "data_collections": [], "ts_ms": 1}))
        if i % 1000 == 0:
            producer.poll(0)
    for tx in range(1, n_tx + 1):
        producer.produce(markers, value=bt.marker("BEGIN", tx))
        producer.produce(markers, value=bt.marker("END", tx))
        for order in range(1, bt.ROWS + 1):
            key, value = bt.envelope(prefix, tx, order, tx * bt.ROWS + order)
            producer.produce(data, key=key, value=value)
    assert producer.flush(60) == 0

    last_end = bt.marker("END", n_tx)
    data_taken = [0]
    data_before_ends: list[int] = []  # data records taken by the time the last END was
    calls: list[tuple[int, int]] = []
    stop = threading.Event()
    real_poll = KafkaSource.poll

    def poll(self: KafkaSource, timeout_s: float) -> Any:
        batch = real_poll(self, timeout_s)
        for m in batch:
            if m.topic == data:
                data_taken[0] += 1
            elif not data_before_ends and m.value == last_end:
                data_before_ends.append(data_taken[0])
        return batch

    def hook(p: Any) -> None:
        calls.append((len(p.records), p.records[0]["id"]))
        if len(calls) == n_tx:
            stop.set()

    settings = Settings(
        pipeline="it-late",
        source={"kind": "kafka", "kafka": {"bootstrap_servers": KAFKA, "group_id": f"it-late-{prefix}",
                                           "topics": [data, markers], "batch_size": batch,
                                           "settings": {"max.partition.fetch.bytes": "32768"}}},  # type: ignore[arg-type]
        http={"enabled": False},  # type: ignore[arg-type]
        dead_letters={"kind": "file", "path": str(tmp_path / "dl.jsonl")},  # type: ignore[arg-type]
        dispatch={"max_in_flight": bound, "soft_max_in_flight": 0, "max_transaction_records": 50},  # type: ignore[arg-type]
    )
    app = build_app(settings, hooks=[HookSpec("tx", hook, "it", tables=frozenset({"public.orders"}),
                                              mode="transaction")])
    KafkaSource.poll = poll  # type: ignore[method-assign]
    watchdog = threading.Timer(120, stop.set)
    watchdog.start()
    try:
        run_sidecar(app, stop)
    finally:
        watchdog.cancel()
        KafkaSource.poll = real_poll  # type: ignore[method-assign]
        forget(admin, [data, markers], f"it-late-{prefix}")  # (leave the stack as found)
    print(f"late transaction topic: {data_before_ends} data records taken before the last END "
          f"(bound {bound}, batches of {batch})")
    assert data_before_ends, "the last END was read"
    assert data_before_ends[0] <= bound + batch, (
        f"{data_before_ends[0]} data records taken in while the transaction topic was behind (bound {bound})")
    assert calls == [(bt.ROWS, tx * bt.ROWS + 1) for tx in range(1, n_tx + 1)], "each once, whole, in commit order"
