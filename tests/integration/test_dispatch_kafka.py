"""The dispatcher on the real Kafka broker: concurrency, backpressure by pause/resume, commits."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tests.integration.kafka_read import committed
from tests.integration.stack import KAFKA, REPO

sys.path.insert(0, str(REPO / "bench"))


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
