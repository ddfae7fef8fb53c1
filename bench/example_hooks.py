"""The example hooks on the local stack (issue 9): `audit_log` + `pipeline_stats` in Kafka mode,
record mode, `ordering: key`, against a bare thread pool of the same size running the same
statements with the same driver (PyMySQL through SQLAlchemy) against the same MariaDB.
"Same size": the pool has C threads, each running both statements of a record; the sidecar
runs `audit_log` at C − S and `pipeline_stats` at S (`--stats-concurrency`, default 1), so C
calls are in flight at once in both; the pool retries a deadlocked record as the sidecar's
retry policy would, and both count them (the ledger claim used to deadlock on InnoDB gap locks
when concurrent; the insert-first claim does not).
(config.example.yaml runs both hooks in `mode: transaction`, which `bench/transactions.py`
measures.)

Needs the local stack (Kafka and MariaDB: `deploy/local/stack up kafka mariadb`) and the
ledger table (`checkpoint-sidecar ledger create --database audit --config config.example.yaml`;
a stack initialised since the ledger exists has it). Each round
fills a fresh one-partition topic with orders envelopes (distinct keys), then runs: the bare
pool, the sidecar at `concurrency` C, and the sidecar serial (concurrency 1, the old
behaviour). Rounds alternate; the table shows medians. The pool runs with Python's defaults
(what a user would write); the sidecar sets its own `dispatch.switch_interval_s` (1 ms) while
it runs.

    .venv/bin/python bench/example_hooks.py [--rounds 3] [--messages 4000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from concurrency import bench_settings, fill, run_until  # noqa: E402

DEADLOCKS = {"bare": 0, "sidecar calls failed": 0}
lock = threading.Lock()
AUX_URL = (f"mysql+pymysql://sidecar:sidecar-demo-pw@127.0.0.1:{os.environ.get('STACK_MARIADB_PORT', '3306')}"
           "/sidecar_aux")


def bare_pool(n: int, threads: int) -> float:
    """The same two statements per record, each in its own transaction, from `threads` threads."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    sys.path.insert(0, str(REPO / "hooks"))
    import audit_log
    import pipeline_stats

    from sidecar.ledger import claim_ids

    engine = create_engine(AUX_URL, pool_size=threads, max_overflow=4, pool_pre_ping=True)
    run = uuid.uuid4().hex
    committed = datetime.now(UTC).replace(tzinfo=None)

    def one(i: int) -> None:
        for _ in range(10):  # an InnoDB deadlock is retried, as the sidecar would (and counted)
            try:
                return once(i)
            except OperationalError as exc:
                if "1213" not in str(exc.orig):
                    raise
                with lock:
                    DEADLOCKS["bare"] += 1
        raise RuntimeError(f"record {i}: deadlocked 10 times")

    def once(i: int) -> None:
        # The hooks' own statements, one record per call: the audit row, then the ledger claim and
        # the count upsert in one transaction (what pipeline_stats does for a one-record call).
        eid = f"{run}{i:032d}"[:64]
        with engine.begin() as conn:
            conn.exec_driver_sql(audit_log.INSERT, [(eid, "bench-bare", "public.orders", None, "c",
                                                     str(i), committed)])
        with engine.begin() as conn:
            if not claim_ids(conn, "bench-bare", "pipeline_stats", [eid]):
                conn.exec_driver_sql(pipeline_stats.UPSERT, ("bench-bare", "public.orders", committed, 1))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(min(50, n))))  # warm the pool's connections
        started = time.perf_counter()
        list(pool.map(one, range(50, n)))
        elapsed = time.perf_counter() - started
    engine.dispose()
    return (n - 50) / elapsed


def sidecar(topic: str, n: int, concurrency: int, stats_concurrency: int) -> float:
    import structlog

    from sidecar.app import build_app

    stop = threading.Event()
    lock = threading.Lock()
    state = {"n": 0, "first": 0.0, "last": 0.0}
    hook = {"tables": ["public.orders"], "ordering": "key"}
    audit = {**hook, "concurrency": max(1, concurrency - stats_concurrency)}
    stats = {**hook, "concurrency": stats_concurrency}
    settings = bench_settings(
        topic, f"bench-{uuid.uuid4().hex[:6]}",
        databases={"auxiliary": {"audit": AUX_URL}},
        hooks={"audit_log": {"path": str(REPO / "hooks/audit_log.py"), **audit},
               "pipeline_stats": {"path": str(REPO / "hooks/pipeline_stats.py"), **stats}},
    )
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    app = build_app(settings)
    from sidecar.hooks import HookSpec

    def counted(spec: HookSpec) -> HookSpec:
        inner = spec.fn

        def fn(param: Any) -> None:
            inner(param)
            if spec.name == "pipeline_stats":
                with lock:
                    state["n"] += 1
                    if state["n"] == 1:
                        state["first"] = time.perf_counter()
                    if state["n"] == n:
                        state["last"] = time.perf_counter()
                        stop.set()

        from dataclasses import replace

        return replace(spec, fn=fn)

    app.hooks[:] = [counted(h) for h in app.hooks]
    stats = run_until(app, stop, 600)
    DEADLOCKS["sidecar calls failed"] += stats.calls_failed
    if state["n"] < n:
        raise SystemExit(f"sidecar c={concurrency}: only {state['n']} of {n} records within 600 s")
    return (n - 1) / (state["last"] - state["first"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--serial-messages", type=int, default=800)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--stats-concurrency", type=int, default=1)
    args = ap.parse_args()
    c = args.concurrency
    sc = args.stats_concurrency
    names = [f"bare pool ({c} threads)", f"sidecar key, audit x{c - sc} + stats x{sc}", "sidecar serial (c=1 each)"]
    rates: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds):
        topic = f"bench.example.{uuid.uuid4().hex[:8]}"
        fill(topic, args.messages, args.messages)
        serial_topic = f"bench.example.{uuid.uuid4().hex[:8]}"
        fill(serial_topic, args.serial_messages, args.serial_messages)
        for name in names:
            if name == names[0]:
                rate = bare_pool(args.messages, c)
            elif name == names[1]:
                rate = sidecar(topic, args.messages, c, sc)
            else:
                rate = sidecar(serial_topic, args.serial_messages, 2, 1)  # each hook at concurrency 1
            rates[name].append(rate)
            print(f"round {r + 1}: {name:24} {rate:8,.0f} records/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print("\n| run | records/s (median) | every round | vs bare pool |")
    print("|---|---|---|---|")
    for k in names:
        print(f"| {k} | {med[k]:,.0f} | {', '.join(f'{x:,.0f}' for x in rates[k])} | {med[k] / med[names[0]]:.2f} |")
    print(f"\ndeadlocks retried by the bare pool: {DEADLOCKS['bare']}; "
          f"failed hook calls in the sidecar runs (retried): {DEADLOCKS['sidecar calls failed']}")


if __name__ == "__main__":
    main()
