"""Concurrency benchmark (issue 9): the same build at concurrency 1 vs 64 on a pre-filled topic.

Needs the local stack's Kafka (`deploy/local/stack up kafka`). One partition, Debezium
envelopes in the compact JSON Kafka Connect writes, N distinct keys; hooks that wait 5 ms
(`time.sleep` in a plain hook, `asyncio.sleep` in an `async def` one) and a no-op hook.
Each variant runs the real `run` path (Kafka source, checkpoint, dispatcher, metrics on)
in a fresh consumer group, rounds alternate, the table shows medians and ratios.

    .venv/bin/python bench/concurrency.py [--rounds 3] [--messages 10000] [--serial-messages 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KAFKA = f"127.0.0.1:{os.environ.get('STACK_KAFKA_PORT', '9092')}"


def envelope(i: int, key: int) -> tuple[bytes, bytes]:
    import orjson

    value = {
        "before": None,
        "after": {"id": key, "customer_id": i % 97, "total": f"{i % 1000}.50", "status": "new"},
        "source": {"version": "3.5.0.Final", "connector": "postgresql", "name": "bench", "ts_ms": 1764460800000 + i,
                   "ts_us": (1764460800000 + i) * 1000, "snapshot": "false", "db": "shop", "schema": "public",
                   "table": "orders", "txId": 1000 + i, "lsn": 100_000 + i},
        "transaction": None, "op": "c", "ts_ms": 1764460800000 + i,
    }
    return orjson.dumps({"id": key}), orjson.dumps(value)


def fill(topic: str, n: int, keys: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "compression.type": "lz4"})
    for i in range(n):
        k, v = envelope(i, i % keys)
        producer.produce(topic, key=k, value=v)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def run_variant(topic: str, n: int, kind: str, concurrency: int) -> float:
    """Records/s from the first hook call to the n-th."""
    import structlog

    from sidecar.app import build_app
    from sidecar.hooks import HookSpec

    stop = threading.Event()
    lock = threading.Lock()
    state = {"n": 0, "first": 0.0, "last": 0.0}

    def count() -> None:
        with lock:
            state["n"] += 1
            if state["n"] == 1:
                state["first"] = time.perf_counter()
            if state["n"] == n:
                state["last"] = time.perf_counter()
                stop.set()

    def sleepy(param: Any) -> None:
        time.sleep(0.005)
        count()

    async def async_sleepy(param: Any) -> None:
        await asyncio.sleep(0.005)
        count()

    def noop(param: Any) -> None:
        count()

    fn = {"sleep": sleepy, "async": async_sleepy, "noop": noop}[kind]
    spec = HookSpec("bench", fn, "bench", ordering="key", concurrency=concurrency, is_async=kind == "async")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    app = build_app(bench_settings(topic, "bench"), hooks=[spec])
    run_until(app, stop, 300)
    if state["n"] < n:
        raise SystemExit(f"{kind} c={concurrency}: only {state['n']} of {n} records within 300 s")
    return (n - 1) / (state["last"] - state["first"])


def bench_settings(topic: str, pipeline: str, **more: Any) -> Any:
    """A Kafka-mode config for one benchmark run: a fresh consumer group, no HTTP, a file dead-letter store."""
    from sidecar.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="cs-bench-"))
    return Settings(
        pipeline=pipeline,
        source={"kind": "kafka", "kafka": {"bootstrap_servers": KAFKA, "group_id": f"bench-{uuid.uuid4().hex[:8]}",
                                           "topics": [topic]}},  # type: ignore[arg-type]
        http={"enabled": False},  # type: ignore[arg-type]
        dead_letters={"kind": "file", "path": str(tmp / "dl.jsonl")},  # type: ignore[arg-type]
        **more,
    )


def run_until(app: Any, stop: threading.Event, limit_s: float) -> Any:
    """The real `run` path until the hooks set `stop` (or `limit_s` passes); its DispatchStats."""
    from sidecar.app import run as run_sidecar

    watchdog = threading.Timer(limit_s, stop.set)
    watchdog.start()
    try:
        return run_sidecar(app, stop)
    finally:
        watchdog.cancel()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--serial-messages", type=int, default=600, help="records per serial (c=1) run: 5 ms each")
    args = ap.parse_args()
    topics = {}
    for keys in (10_000, 8):
        topics[keys] = f"bench.concurrency.{keys}.{uuid.uuid4().hex[:6]}"
        fill(topics[keys], args.messages, keys)
    variants = [
        ("noop", 64, 10_000), ("sleep", 1, 10_000), ("sleep", 64, 10_000), ("sleep", 64, 8),
        ("async", 1, 10_000), ("async", 64, 10_000), ("async", 64, 8),
    ]
    rates: dict[tuple[str, int, int], list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for kind, conc, keys in variants:
            n = args.serial_messages if conc == 1 else args.messages
            rate = run_variant(topics[keys], n, kind, conc)
            rates[(kind, conc, keys)].append(rate)
            print(f"round {r + 1}: {kind:5} concurrency {conc:2} keys {keys:5}: {rate:8,.0f} records/s", flush=True)
    med = {v: statistics.median(x) for v, x in rates.items()}
    noop = med[("noop", 64, 10_000)]
    print("\n| hook | concurrency | keys | records/s (median) | every round | vs serial | vs no-op |")
    print("|---|---|---|---|---|---|---|")
    for kind, conc, keys in variants:
        m = med[(kind, conc, keys)]
        serial = med.get(("async" if kind == "async" else "sleep", 1, 10_000))
        vs = f"{m / serial:.1f}x" if serial and kind != "noop" else ""
        rounds = ", ".join(f"{x:,.0f}" for x in rates[(kind, conc, keys)])
        print(f"| {kind} | {conc} | {keys} | {m:,.0f} | {rounds} | {vs} | {m / noop:.2f} |")


if __name__ == "__main__":
    main()
