"""Commit→hook latency (issue 12): single-row transactions into PostgreSQL at a paced rate while
the real `checkpoint-sidecar run` (Kafka mode and embedded mode) runs a hook that records
`time.time()` at hook start minus the row's commit time (`source.ts_us`, else `ts_ms`).

Needs the whole local stack (`deploy/local/stack up`; embedded mode needs only PostgreSQL).
Kafka mode: a connector `bench-latency` built from connectors/postgres-shop.json (so its
`poll.interval.ms` and producer settings are the repo's), only for public.bench_latency, topic
prefix `benchlat`, no snapshot. Embedded mode: the same connector file through
`source.kind: embedded` as config.embedded.yaml does, with the sidecar's own defaults
(`source.embedded.poll_interval_ms`), a fresh slot per run (dropped after).

Per run: the sidecar starts; warm-up rows at 10/s until the hook has seen one (start-up, JVM,
group join and slot creation are not measured), then `--warmup-seconds` at the full rate (JIT,
caches; not measured either); then `--seconds` of single-row INSERTs, each its
own transaction (one psycopg connection, autocommit), paced at `--rate`; then an end row. The hook
keeps every sample of the measured rows (raw samples, not histogram buckets) and writes them to a
file when it sees the end row. Reported: p50/p99/max per run from the raw samples, and the median
of each over `--runs` runs, per mode; goals Kafka p50 ≤ 50 ms, p99 ≤ 150 ms; embedded p50 ≤ 20 ms.

    .venv/bin/python bench/latency.py [--modes kafka,embedded] [--runs 3] [--seconds 60] [--rate 1000]
        [--connector-set poll.interval.ms=500 ...] [--consumer-set fetch.wait.max.ms=500 ...]
        [--poll-timeout 0.2] [--embedded-poll-ms 500] [--hook-work-us 300]
        [--sidecar-python PY | --sidecar-cmd CMD]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PG_PORT = os.environ.get("STACK_PG_PORT", "5432")
KAFKA = f"127.0.0.1:{os.environ.get('STACK_KAFKA_PORT', '9092')}"
CONNECT = f"http://127.0.0.1:{os.environ.get('STACK_CONNECT_PORT', '8083')}"
PG_DSN = f"host=127.0.0.1 port={PG_PORT} user=cdc password=cdc dbname=shop"
TABLE = "public.bench_latency"
# A new connector (and slot) per invocation: Kafka Connect keeps a deleted connector's offsets,
# which would point into a slot dropped since.
CONNECTOR = f"bench-latency-{uuid.uuid4().hex[:8]}"
CONNECTOR_SLOT = CONNECTOR.replace("-", "_")
PREFIX = "benchlat"
GOALS = {"kafka": (50.0, 150.0), "embedded": (20.0, None)}

HOOK = '''"""Latency hook of bench/latency.py: hook start minus the commit time, raw samples."""
import os
import time

_OUT = os.environ["BENCH_LAT_OUT"]
_MIN_ID = int(os.environ["BENCH_LAT_MIN_ID"])
_END_ID = int(os.environ["BENCH_LAT_END_ID"])
_WORK_S = float(os.environ.get("BENCH_LAT_WORK_US", "0")) / 1e6
_samples = []
_ready = [False]


def checkpoint(param):
    now = time.time()
    if _WORK_S:  # CPU work holding the GIL, like a hook building a payload (and so never inline)
        end = time.perf_counter() + _WORK_S
        while time.perf_counter() < end:
            pass
    src = param.ctx.source
    ts_us = src.get("ts_us")
    committed = ts_us / 1e6 if ts_us is not None else src["ts_ms"] / 1e3
    row_id = param.record["id"]
    if not _ready[0] and row_id >= _MIN_ID - 10_000_000:  # this run's warm-up rows, not an earlier run's
        _ready[0] = True
        open(_OUT + ".ready", "w").close()
    if row_id == _END_ID:
        with open(_OUT + ".tmp", "w") as f:
            f.write("\\n".join(f"{s:.6f}" for s in _samples))
        os.replace(_OUT + ".tmp", _OUT)
    elif _MIN_ID <= row_id < _END_ID:
        _samples.append((now - committed) * 1000.0)
'''


def pg() -> Any:
    import psycopg

    return psycopg.connect(PG_DSN, autocommit=True)


def prepare() -> None:
    with pg() as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, note text)")
        conn.execute(f"ALTER TABLE {TABLE} REPLICA IDENTITY FULL")


def drop_slot(slot: str) -> None:
    with pg() as conn:
        for _ in range(40):
            try:
                conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE slot_name = %s", (slot,))
                break
            except Exception:  # still active: the engine lets go of it a moment later
                time.sleep(0.5)
        conn.execute(f"DROP PUBLICATION IF EXISTS {slot}")


def kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


# ---------------------------------------------------------------------------- Kafka Connect
def connector_up(overrides: dict[str, str]) -> dict[str, str]:
    from sidecar import connectors as cx

    _, config = cx.load_connector(REPO / "connectors" / "postgres-shop.json")
    config.update({"slot.name": CONNECTOR_SLOT, "publication.name": CONNECTOR_SLOT, "topic.prefix": PREFIX,
                   "table.include.list": TABLE, "snapshot.mode": "no_data"})
    config.update(overrides)
    from confluent_kafka.admin import AdminClient, NewTopic

    # The topic exists before the sidecar subscribes (librdkafka would look again only at its
    # next metadata refresh); an existing one is fine.
    topic = f"{PREFIX}.{TABLE}"
    admin = AdminClient({"bootstrap.servers": KAFKA})  # kept referenced until the future resolves
    futures = admin.create_topics([NewTopic(topic, 1, 1)])
    try:
        futures[topic].result(30)
    except Exception as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
    cx._request(f"{CONNECT}/connectors/{CONNECTOR}/config", "PUT", config)
    # A changed config restarts the task; give it a moment to pick the new one up.
    time.sleep(3)
    cx.wait_running(CONNECT, CONNECTOR, timeout_s=120)
    return config


def connector_down() -> None:
    from sidecar import connectors as cx

    cx.delete(CONNECT, CONNECTOR)
    time.sleep(2)
    drop_slot(CONNECTOR_SLOT)


# ---------------------------------------------------------------------------- one run
def sidecar_config(mode: str, tmp: Path, hook: Path, args: argparse.Namespace) -> dict[str, Any]:
    source: dict[str, Any]
    if mode == "kafka":
        kafka: dict[str, Any] = {"bootstrap_servers": KAFKA, "group_id": "bench-latency",
                                 "topics": [f"{PREFIX}.{TABLE}"], "settings": kv(args.consumer_set)}
        if args.poll_timeout is not None:
            kafka["poll_timeout_s"] = args.poll_timeout
        source = {"kind": "kafka", "kafka": kafka}
    else:
        slot = f"bench_lat_{uuid.uuid4().hex[:8]}"
        embedded: dict[str, Any] = {
            "connector": str(REPO / "connectors" / "postgres-shop.json"),
            "properties": {"slot.name": slot, "publication.name": slot, "topic.prefix": PREFIX,
                           "table.include.list": TABLE, "snapshot.mode": "no_data", **kv(args.connector_set_embedded)},
            "state_dir": str(tmp / "embedded"),
        }
        if args.embedded_poll_ms is not None:
            embedded["poll_interval_ms"] = args.embedded_poll_ms
        if args.poll_timeout is not None:
            embedded["poll_timeout_s"] = args.poll_timeout
        source = {"kind": "embedded", "embedded": embedded}
    return {
        "pipeline": "bench-latency",
        "source": source,
        "http": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "dead_letters": {"kind": "file", "path": str(tmp / "dead-letters.jsonl")},
        "hooks": {"lat": {"path": str(hook)}},
        "log": {"level": "warning", "format": "json"},
    }


def write(base: int, n: int, rate: float, connections: int) -> float:
    """n single-row transactions (autocommit), paced at `rate` in all, from `connections`
    connections each taking every connections-th row; returns the seconds it took."""
    import threading

    started = time.perf_counter()

    def writer(k: int) -> None:
        with pg() as conn:
            for i in range(k, n, connections):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                conn.execute(f"INSERT INTO {TABLE} (id, note) VALUES (%s, 'x')", (base + i,))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def one_run(mode: str, args: argparse.Namespace, cmd: list[str]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-lat-{mode}-"))
    hook = tmp / "lat_hook.py"
    hook.write_text(HOOK)
    out = tmp / "samples.txt"
    n = int(args.seconds * args.rate)
    base = int(time.time() * 1000) * 1000  # unique per run; warm-up ids below it
    cfg = sidecar_config(mode, tmp, hook, args)
    (tmp / "config.yaml").write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update({"BENCH_LAT_OUT": str(out), "BENCH_LAT_MIN_ID": str(base), "BENCH_LAT_END_ID": str(base + n),
                "BENCH_LAT_WORK_US": str(args.hook_work_us)})
    log = (tmp / "sidecar.log").open("w")
    proc = subprocess.Popen([*cmd, "run", "--config", str(tmp / "config.yaml")], stdout=log, stderr=subprocess.STDOUT,
                            cwd=REPO, env=env)
    try:
        with pg() as conn:
            # Warm-up: until the hook has seen a row (start-up, JVM, group join, slot creation).
            deadline = time.monotonic() + 180
            k = 0
            while not Path(str(out) + ".ready").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{mode}: the hook saw no row (sidecar exit {proc.returncode}); log: {tmp}")
                conn.execute(f"INSERT INTO {TABLE} (id, note) VALUES (%s, 'warm-up')", (base - 10_000_000 + k,))
                k += 1
                time.sleep(0.1)
            # Then the full rate, not measured: the JVMs' JIT and the caches warm up (measured: the
            # first seconds after start are several times slower than the rest).
            write(base - 5_000_000, int(args.warmup_seconds * args.rate), args.rate, args.connections)
            time.sleep(2)  # let the warm-up rows drain
            elapsed = write(base, n, args.rate, args.connections)
            conn.execute(f"INSERT INTO {TABLE} (id, note) VALUES (%s, 'end')", (base + n,))
        deadline = time.monotonic() + 120
        while not out.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{mode}: the end row never reached the hook (exit {proc.returncode}); log: {tmp}")
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        if mode == "embedded":
            drop_slot(cfg["source"]["embedded"]["properties"]["slot.name"])
    samples = sorted(float(x) for x in out.read_text().split())
    if len(samples) != n:
        raise SystemExit(f"{mode}: {len(samples)} samples for {n} rows (duplicates or losses); files in {tmp}")
    return {"n": n, "rate": n / elapsed, "p50": statistics.median(samples),
            "p99": samples[math.ceil(0.99 * len(samples)) - 1], "max": samples[-1], "samples": str(out)}


# ---------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="kafka,embedded")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=1000.0, help="single-row transactions per second")
    ap.add_argument("--warmup-seconds", type=float, default=10.0, help="full-rate rows before the measured ones")
    ap.add_argument("--connections", type=int, default=1,
                    help="writer connections sharing the pace (one connection commits ~400/s with fsync=on here)")
    ap.add_argument("--connector-set", action="append", default=[], metavar="KEY=VALUE",
                    help="Kafka mode: override a property of connectors/postgres-shop.json (e.g. poll.interval.ms=10, "
                         "producer.override.linger.ms=0)")
    ap.add_argument("--connector-set-embedded", action="append", default=[], metavar="KEY=VALUE",
                    help="embedded mode: an engine property over the sidecar's")
    ap.add_argument("--consumer-set", action="append", default=[], metavar="KEY=VALUE",
                    help="Kafka mode: a librdkafka consumer setting (source.kafka.settings)")
    ap.add_argument("--poll-timeout", type=float, help="source.*.poll_timeout_s (default: the sidecar's)")
    ap.add_argument("--embedded-poll-ms", type=int, help="source.embedded.poll_interval_ms (default: the sidecar's)")
    ap.add_argument("--hook-work-us", type=float, default=0.0,
                    help="CPU work per hook call (busy loop, holds the GIL), after the sample is taken; a hook over "
                         "dispatch.inline_below_us runs on workers")
    ap.add_argument("--sidecar-python", help="run the sidecar as PYTHON -m sidecar")
    ap.add_argument("--sidecar-cmd", help="the sidecar command")
    ap.add_argument("--label", default="", help="printed with the results")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    cmd = shlex.split(args.sidecar_cmd) if args.sidecar_cmd else \
        [args.sidecar_python or str(REPO / ".venv" / "bin" / "python"), "-m", "sidecar"]
    prepare()
    settings = {"connector": kv(args.connector_set), "consumer": kv(args.consumer_set),
                "poll_timeout_s": args.poll_timeout, "embedded_poll_ms": args.embedded_poll_ms,
                "hook_work_us": args.hook_work_us}
    print(f"latency {args.label}: {args.rate:.0f} tx/s from {args.connections} connection(s) for "
          f"{args.seconds:.0f} s, {args.runs} runs; "
          f"overrides {json.dumps(settings)}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    if "kafka" in modes:
        cfg = connector_up(kv(args.connector_set))
        print(f"connector poll.interval.ms={cfg.get('poll.interval.ms', '(Debezium default)')}, "
              f"producer.override.linger.ms={cfg.get('producer.override.linger.ms', '(worker default)')}", flush=True)
    try:
        for r in range(args.runs):
            for mode in modes:
                res = one_run(mode, args, cmd)
                results[mode].append(res)
                print(f"run {r + 1} {mode:8}: {res['n']} rows at {res['rate']:,.0f} tx/s: p50 {res['p50']:.1f} ms, "
                      f"p99 {res['p99']:.1f} ms, max {res['max']:.1f} ms (samples: {res['samples']})", flush=True)
    finally:
        if "kafka" in modes:
            connector_down()
    print(f"\n| mode {args.label} | p50 ms (median) | p99 ms (median) | max ms (median) | every run p50 / p99 "
          "| tx/s | goal |")
    print("|---|---|---|---|---|---|---|")
    for mode in modes:
        rs = results[mode]
        p50, p99, mx = (statistics.median(r[k] for r in rs) for k in ("p50", "p99", "max"))
        g50, g99 = GOALS[mode]
        ok = p50 <= g50 and (g99 is None or p99 <= g99)
        goal = f"p50 ≤ {g50:.0f}" + (f", p99 ≤ {g99:.0f}" if g99 else "")
        every = "; ".join(f"{r['p50']:.1f} / {r['p99']:.1f}" for r in rs)
        rate = statistics.median(r["rate"] for r in rs)
        print(f"| {mode} | {p50:.1f} | {p99:.1f} | {mx:.1f} | {every} | {rate:,.0f} | {goal}: "
              f"{'PASS' if ok else 'FAIL'} |")


if __name__ == "__main__":
    main()
