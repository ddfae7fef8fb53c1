"""Bulk calls benchmark (issue 10): the example hooks in `transaction` mode on a pre-filled
topic of 20-row transactions, against a bare script running the same statements with the same
driver in transactions of the same size, and against the same hooks in record mode, serial.

Needs the local stack's Kafka and MariaDB (`deploy/local/stack up kafka mariadb`). Each round
fills fresh topics `<prefix>.public.orders` (one partition, compact JSON Debezium envelopes
with transaction blocks) and `<prefix>.transaction` (BEGIN/END markers), then runs:
- bare: per transaction of 20 rows, the statements `audit_log` and `pipeline_stats` run
  (audit executemany; ledger claim + one stats upsert), each hook's in its own aux
  transaction, on two threads (the sidecar runs the two hooks on two workers). The rows are
  the ones the hooks write for the same records: their keys are the records' event ids
  (32 hex digits of a sha256, computed before the clock starts, from envelopes of the same
  shape under a prefix of the bare run's own, so no id collides with a sidecar run's), and each
  run claims them under a pipeline name of its own, as each sidecar run does (the ledger's key
  is (pipeline, hook, id));
- bare, sequential ids (shown, not the baseline): the same with ids that grow within a run,
  as this bench used before 2026-12-01 — InnoDB appends those to the primary keys of
  `pipeline_audit_log` and `checkpoint_ledger` at about half the server CPU per row of the
  random ids every real pipeline writes (measured: ~44 against ~95 µs per record), so it
  ran about twice as fast as the same script on the ids the hooks actually write;
- bare, no ROLLBACK on return (shown, not the baseline): the same on an engine set up as the
  sidecar's (sidecar/pool_reset.py): SQLAlchemy's default pool, which the baseline keeps, sends
  a ROLLBACK after each committed call; the sidecar's PyMySQL engines do not (since 2026-12-03);
- sidecar, both hooks `mode: transaction` (serial each, commit order), real `run` path;
- sidecar, the same with pipeline_stats on the loop's own thread (`thread: loop`), on topics of its own;
- sidecar, the two hooks as config.example.yaml sets them (what a user starts from: today
  audit_log `transaction`, ordering none, concurrency 4, timeout 30 s; pipeline_stats
  `transaction`, serial), on topics of its own;
- sidecar, both hooks `mode: record`, serial (the old behaviour, 164 records/s in issue 9);
- with `--concurrency N`: also both hooks `mode: transaction, ordering: none, concurrency: N`
  (calls overlap; fine for these two hooks, whose writes commute), on topics of its own.
After each run its rows are deleted (audit rows by key, its ledger claims and stats row) and its
consumer group, after each round its topics, so every run starts from the same tables (`--keep-rows`: keep them).
The sidecar's clock runs from the first messages its source hands the loop (the intake is part of
its work) to the end of the pipeline_stats call that completes the last record; the bare script's
from its threads' start to their end. (Before 2026-12-02 11:00 UTC, 4d2c735, the sidecar's clock
started at its first hook call.)
Rounds alternate; the table shows medians, their ratios, and the median of each round's ratio to
that round's bare run (the machine's speed drifts between rounds). A second table shows where the time goes: per hook
call its wall time and its thread's CPU time (medians), and for the sidecar the loop thread's CPU
per record (`time.thread_time` around `run`: intake, decode, assembly, commits; start-up included).

    .venv/bin/python bench/transactions.py [--rounds 3] [--transactions 1000] [--record-messages 2000]
        [--concurrency N] [--keep-rows]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "hooks"))

KAFKA = f"127.0.0.1:{os.environ.get('STACK_KAFKA_PORT', '9092')}"
AUX_URL = (f"mysql+pymysql://sidecar:sidecar-demo-pw@127.0.0.1:{os.environ.get('STACK_MARIADB_PORT', '3306')}"
           "/sidecar_aux")
ROWS = 20
BARE = "bare script (20-row transactions)"
BARE_SEQUENTIAL = "bare script, sequential ids (not the baseline)"
BARE_SETTLED = "bare script, no ROLLBACK on return (not the baseline)"
EXAMPLE = "sidecar, hooks as in config.example.yaml"
ON_LOOP = "sidecar mode: transaction, pipeline_stats thread loop"
DIAG: dict[str, dict[str, list[float]]] = {}
"""Per run name: the hook calls' wall and CPU seconds, the loop's CPU seconds per record."""


class CallTimes:
    """Wall and thread-CPU seconds of calls (thread-safe appends)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def timed(self, fn: Any, *args: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.cpu.append(time.thread_time() - c)
            self.wall.append(time.perf_counter() - w)


def envelope(prefix: str, tx: int, order: int, row: int) -> tuple[bytes, bytes]:
    import orjson

    ts = 1764460800000 + tx
    value = {
        "before": None,
        "after": {"id": row, "customer_id": row % 97, "total": f"{row % 1000}.50", "status": "new"},
        "source": {"version": "3.5.0.Final", "connector": "postgresql", "name": prefix, "ts_ms": ts,
                   "ts_us": ts * 1000, "snapshot": "false", "db": "shop", "schema": "public",
                   "table": "orders", "txId": tx, "lsn": 100_000 + row},
        "transaction": {"id": f"{tx}:{100_000 + row}", "total_order": order, "data_collection_order": order},
        "op": "c", "ts_ms": ts,
    }
    return orjson.dumps({"id": row}), orjson.dumps(value)


def marker(status: str, tx: int) -> bytes:
    import orjson

    end = status == "END"
    return orjson.dumps({
        "status": status, "id": f"{tx}:{tx * 10}", "event_count": ROWS if end else None,
        "data_collections": [{"data_collection": "public.orders", "event_count": ROWS}] if end else None,
        "ts_ms": 1764460800000 + tx})


def fill(prefix: str, transactions: int) -> list[str]:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    data, markers = f"{prefix}.public.orders", f"{prefix}.transaction"
    admin = AdminClient({"bootstrap.servers": KAFKA})
    created = admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in (data, markers)])
    for future in created.values():
        future.result(30)
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "compression.type": "lz4"})
    for tx in range(1, transactions + 1):
        producer.produce(markers, key=None, value=marker("BEGIN", tx))
        for order in range(1, ROWS + 1):
            k, v = envelope(prefix, tx, order, tx * ROWS + order)
            producer.produce(data, key=k, value=v)
        producer.produce(markers, key=None, value=marker("END", tx))
        producer.poll(0)
    assert producer.flush(60) == 0
    return [data, markers]


def ids_of(prefix: str, transactions: int, first: int = 1) -> list[list[str]]:
    """Per transaction, the event ids the sidecar gives its 20 records: envelopes as `fill`
    writes them under `prefix`, decoded as the sidecar decodes them."""
    from sidecar.testing import decode_message

    return [[decode_message(envelope(prefix, tx, o, tx * ROWS + o)[1]).event_id for o in range(1, ROWS + 1)]
            for tx in range(first, first + transactions)]


def event_ids(transactions: int) -> list[list[str]]:
    """The bare run's keys: ids of the same shape under a prefix of its own (no collision)."""
    return ids_of(f"benchbare{uuid.uuid4().hex[:8]}", transactions, first=0)


KEEP = False
"""--keep-rows: leave what each run wrote (to measure on tables that grow from run to run)."""


def forget(pipeline: str, ids: list[list[str]]) -> None:
    """Delete what one run wrote: its audit rows (by their keys), its ledger claims and its
    stats row. Every run then starts from the same tables: rows left behind by earlier runs
    (9 M per table here after a few dozen) outgrow the stack's 128 MiB buffer pool and made the
    same run several times slower than on a fresh stack."""
    if KEEP:
        return
    from sqlalchemy import bindparam, create_engine, text

    engine = create_engine(AUX_URL)
    delete = text("DELETE FROM pipeline_audit_log WHERE pipeline = :p AND event_id IN :ids").bindparams(
        bindparam("ids", expanding=True))
    flat = [i for tx in ids for i in tx]
    with engine.begin() as conn:
        for at in range(0, len(flat), 1000):
            conn.execute(delete, {"p": pipeline, "ids": flat[at:at + 1000]})
        conn.execute(text("DELETE FROM checkpoint_ledger WHERE pipeline = :p"), {"p": pipeline})
        conn.execute(text("DELETE FROM pipeline_stats WHERE pipeline = :p"), {"p": pipeline})
    engine.dispose()


def drop_group(group: str) -> None:
    _drop("consumer group", lambda admin: admin.delete_consumer_groups([group], request_timeout=30))


def drop_topics(topics: list[str]) -> None:
    if topics:
        _drop("topic", lambda admin: admin.delete_topics(topics))


def _drop(kind: str, request: Any) -> None:
    """Delete what a run made in Kafka (unless --keep-rows); a refusal (e.g. delete.topic.enable=false)
    is a note: the measurement stands."""
    from confluent_kafka.admin import AdminClient

    if KEEP:
        return
    admin = AdminClient({"bootstrap.servers": KAFKA})  # (kept alive until every future is done)
    for name, future in request(admin).items():
        try:
            future.result(30)
        except Exception as exc:
            print(f"note: {kind} {name} not deleted ({exc})", file=sys.stderr)


def bare(transactions: int, sequential: bool = False, settled: bool = False) -> float:
    """The hooks' statements per 20-row transaction, same driver, each hook's in its own aux
    transaction, the two hooks' work on two threads. Keys: the records' event ids, or with
    `sequential` ids that grow within the run (the old baseline). `settled`: the engine as the
    sidecar sets it up (no ROLLBACK when a committed connection goes back to the pool)."""
    import audit_log
    import pipeline_stats
    from sqlalchemy import create_engine

    from sidecar import pool_reset
    from sidecar.ledger import claim_ids

    # No ping per checkout (the sidecar pings only connections that sat idle): no extra round trip.
    engine = create_engine(AUX_URL, pool_size=4, max_overflow=4, **({"pool_reset_on_return": None} if settled else {}))
    if settled:
        pool_reset.install(engine)
    run = uuid.uuid4().hex[:16]
    # A pipeline name of its own per run, as each sidecar run has: the ledger's key is
    # (pipeline, hook, id), so one run's claims share a narrow, cached key range. (One name for
    # every run, as before, made each run's random ids land across every earlier run's rows.)
    pipeline = f"bench-bare-{run[:6]}"
    committed = datetime.now(UTC).replace(tzinfo=None)
    ids = ([[f"{run}{tx:08d}{o:04d}" for o in range(ROWS)] for tx in range(transactions)] if sequential
           else event_ids(transactions))
    warm = [[uuid.uuid4().hex for _ in range(ROWS)] for _ in range(3)]

    def rows(tx: int) -> list[tuple[Any, ...]]:  # audit_log.row's columns, the way it passes them
        keys = ids[tx] if tx >= 0 else warm[-1 - tx]
        return [(keys[o], pipeline, "public.orders", None, "c", str(tx * ROWS + o), committed)
                for o in range(ROWS)]

    def audit(tx: int) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(audit_log.INSERT, rows(tx))

    def stats(tx: int) -> None:
        with engine.begin() as conn:
            applied = claim_ids(conn, pipeline, "pipeline_stats", [r[0] for r in rows(tx)])
            conn.exec_driver_sql(pipeline_stats.UPSERT, (pipeline, "public.orders", committed, ROWS - len(applied)))

    for tx in range(3):  # warm the pool
        audit(-1 - tx)
        stats(-1 - tx)
    times = CallTimes()
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda f=f: [times.timed(f, tx) for tx in range(transactions)])
               for f in (audit, stats)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
        forget(pipeline, ids + warm)
    _diag(BARE_SEQUENTIAL if sequential else BARE_SETTLED if settled else BARE, times, None)
    return transactions * ROWS / elapsed


def _diag(name: str, times: CallTimes, loop_cpu_per_record: float | None) -> None:
    d = DIAG.setdefault(name, {"wall": [], "cpu": [], "loop": []})
    d["wall"].append(statistics.median(times.wall))
    d["cpu"].append(statistics.median(times.cpu))
    if loop_cpu_per_record is not None:
        d["loop"].append(loop_cpu_per_record)


EXAMPLE_KEYS = ("mode", "ordering", "concurrency", "timeout_s", "retry", "on_failure", "max_records", "max_wait_ms")


def example_hooks() -> dict[str, dict[str, Any]]:
    """The two hooks' settings in config.example.yaml (what a user starts from): mode, ordering,
    concurrency, timeout and failure policy; only their tables are narrowed to the bench's one."""
    import yaml

    hooks = yaml.safe_load((REPO / "config.example.yaml").read_text())["hooks"]
    return {name: {k: v for k, v in hooks[name].items() if k in EXAMPLE_KEYS}
            for name in ("audit_log", "pipeline_stats")}


def example_description() -> str:
    parts = []
    for name, cfg in example_hooks().items():
        how = "serial" if cfg.get("ordering", "partition") == "partition" and cfg.get("concurrency", 1) == 1 else (
            f"ordering {cfg.get('ordering', 'partition')}, concurrency {cfg.get('concurrency', 1)}")
        timeout = f", timeout {cfg['timeout_s']} s" if cfg.get("timeout_s") else ""
        parts.append(f"{name} {cfg.get('mode', 'record')}, {how}{timeout}")
    return "; ".join(parts)


def sidecar(topics: list[str], records: int, mode: str, concurrency: int = 0, example: bool = False,
            on_loop: tuple[str, ...] = ()) -> float:
    import structlog

    import sidecar.app as sidecar_app
    from sidecar.app import build_app
    from sidecar.app import run as run_sidecar
    from sidecar.config import Settings
    from sidecar.hooks import HookSpec

    stop = threading.Event()
    lock = threading.Lock()
    state = {"n": 0, "first": 0.0, "last": 0.0}
    tmp = Path(tempfile.mkdtemp(prefix="cs-bench-"))
    pipeline, group = f"bench-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:8]}"
    hook: dict[str, Any] = {"tables": ["public.orders"], "mode": mode}
    shipped = example_hooks() if example else {}
    if concurrency:
        hook.update(ordering="none", concurrency=concurrency)
    settings = Settings(
        pipeline=pipeline,
        source={"kind": "kafka", "kafka": {"bootstrap_servers": KAFKA, "group_id": group,
                                           "topics": topics}},  # type: ignore[arg-type]
        databases={"auxiliary": {"audit": AUX_URL}},  # type: ignore[arg-type]
        hooks={name: {"path": str(REPO / f"hooks/{name}.py"),  # type: ignore[misc]
                      **(dict(shipped[name], tables=["public.orders"]) if example else hook),
                      **({"thread": "loop"} if name in on_loop else {})}
               for name in ("audit_log", "pipeline_stats")},
        http={"enabled": False},  # type: ignore[arg-type]
        dead_letters={"kind": "file", "path": str(tmp / "dl.jsonl")},  # type: ignore[arg-type]
    )
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    app = build_app(settings)

    times = CallTimes()

    def counted(spec: HookSpec) -> HookSpec:
        inner = spec.fn

        def fn(param: Any) -> None:
            times.timed(inner, param)
            if spec.name == "pipeline_stats":
                with lock:
                    state["n"] += len(param.records)
                    if state["n"] >= records:
                        state["last"] = time.perf_counter()
                        stop.set()

        return replace(spec, fn=fn)

    app.hooks[:] = [counted(h) for h in app.hooks]
    # The clock starts when the source first hands the loop messages, not at the first hook call:
    # the loop's intake is part of the sidecar's work. (Timed from the first call, a round where
    # librdkafka happened to fetch the whole data partition before the transaction topic had
    # taken in every record before any call — its ~0.5 s of intake outside the clock — and
    # showed 12,500 records/s where the rounds whose intake overlaps the calls showed ~10,000.)
    opened = sidecar_app.open_source

    def open_source(app_: Any) -> Any:
        source, checkpoint, checks = opened(app_)
        poll = source.poll

        def first_poll(timeout_s: float) -> Any:
            batch = poll(timeout_s)
            if batch and not state["first"]:
                state["first"] = time.perf_counter()
            return batch

        source.poll = first_poll
        return source, checkpoint, checks

    watchdog = threading.Timer(600, stop.set)
    watchdog.start()
    loop_cpu = time.thread_time()
    try:
        sidecar_app.open_source = open_source
        run_sidecar(app, stop)
    finally:
        sidecar_app.open_source = opened
        watchdog.cancel()
        loop_cpu = time.thread_time() - loop_cpu
        forget(pipeline, ids_of(topics[0].split(".")[0], records // ROWS))
        shutil.rmtree(tmp, ignore_errors=True)
        drop_group(group)
    if state["n"] < records:
        raise SystemExit(f"sidecar {mode}: only {state['n']} of {records} records within 600 s")
    _diag(EXAMPLE if example else ON_LOOP if on_loop else label(mode, concurrency), times, loop_cpu / state["n"])
    return state["n"] / (state["last"] - state["first"])


def label(mode: str, concurrency: int = 0) -> str:
    if concurrency:
        return f"sidecar mode: {mode}, ordering none, concurrency {concurrency}"
    return f"sidecar mode: {mode}" + (", serial" if mode == "record" else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    # Each run lasts a few seconds (a run of 1–2 s, as before, was dominated by the noise of
    # this shared machine: bare rounds of one run spread 4,102–7,391 records/s).
    ap.add_argument("--transactions", type=int, default=1000)
    ap.add_argument("--record-messages", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=0,
                    help="also run the transaction hooks with ordering none and up to N calls at once")
    ap.add_argument("--keep-rows", action="store_true",
                    help="leave each run's rows and topics (by default deleted: every run starts from the same tables)")
    args = ap.parse_args()
    global KEEP
    KEEP = args.keep_rows
    names = [BARE, label("transaction"), ON_LOOP, EXAMPLE, label("record"), BARE_SEQUENTIAL, BARE_SETTLED]
    if args.concurrency:
        names.insert(2, label("transaction", args.concurrency))
    rates: dict[str, list[float]] = {k: [] for k in names}
    width = max(len(k) for k in names)
    for r in range(args.rounds):
        tx_topics = fill(f"benchtx{uuid.uuid4().hex[:8]}", args.transactions)
        # Topics of its own for the ordering-none run: on the same topics its records would have
        # the same event ids, and its audit inserts would only find the rows the first run wrote.
        conc_topics = fill(f"benchtx{uuid.uuid4().hex[:8]}", args.transactions) if args.concurrency else []
        example_topics = fill(f"benchtx{uuid.uuid4().hex[:8]}", args.transactions)
        loop_topics = fill(f"benchtx{uuid.uuid4().hex[:8]}", args.transactions)
        rec_topics = fill(f"benchtx{uuid.uuid4().hex[:8]}", args.record_messages // ROWS)
        for name in names:
            if name in (BARE, BARE_SEQUENTIAL, BARE_SETTLED):
                rate = bare(args.transactions, sequential=name == BARE_SEQUENTIAL, settled=name == BARE_SETTLED)
            elif name == label("record"):
                rate = sidecar(rec_topics[:1], args.record_messages, "record")
            elif name == label("transaction"):
                rate = sidecar(tx_topics, args.transactions * ROWS, "transaction")
            elif name == ON_LOOP:
                rate = sidecar(loop_topics, args.transactions * ROWS, "transaction", on_loop=("pipeline_stats",))
            elif name == EXAMPLE:
                rate = sidecar(example_topics, args.transactions * ROWS, "transaction", example=True)
            else:
                rate = sidecar(conc_topics, args.transactions * ROWS, "transaction", args.concurrency)
            rates[name].append(rate)
            print(f"round {r + 1}: {name:{width}} {rate:8,.0f} records/s", flush=True)
        drop_topics(tx_topics + conc_topics + example_topics + loop_topics + rec_topics)
    med = {k: statistics.median(v) for k, v in rates.items()}
    # Also each round's ratio to that round's bare run (run minutes apart, so on the same machine
    # state: this machine's speed drifts by a third between rounds), and their median.
    paired = {k: [x / b for x, b in zip(v, rates[BARE], strict=True)] for k, v in rates.items()}
    print("\n| run | records/s (median) | every round | vs bare | vs bare, per round (median) | vs record serial |")
    print("|---|---|---|---|---|---|")
    for k in names:
        print(f"| {k} | {med[k]:,.0f} | {', '.join(f'{x:,.0f}' for x in rates[k])} | "
              f"{med[k] / med[BARE]:.2f} | {statistics.median(paired[k]):.2f} "
              f"({', '.join(f'{x:.2f}' for x in paired[k])}) | {med[k] / med[label('record')]:.1f} |")
    print(f"\n{EXAMPLE}: {example_description()}.")
    print("\nWhere the time goes (medians over rounds of each round's median call):\n")
    print("| run | hook call, wall (ms) | hook call, thread CPU (ms) | loop thread CPU per record (µs) |")
    print("|---|---|---|---|")
    for k in names:
        d = DIAG.get(k, {"wall": [], "cpu": [], "loop": []})
        loop = f"{statistics.median(d['loop']) * 1e6:.0f}" if d["loop"] else "—"
        print(f"| {k} | {statistics.median(d['wall']) * 1e3:.2f} | {statistics.median(d['cpu']) * 1e3:.2f} | {loop} |")
    print(f"\n({ON_LOOP}: the loop thread's CPU includes pipeline_stats' calls, which run on it.)")


if __name__ == "__main__":
    main()
