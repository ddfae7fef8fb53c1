"""Cost of metrics: replay a large captured file through the full loop, metrics on vs off.

    .venv/bin/python bench/metrics_overhead.py [--messages 200000] [--rounds 5]

The file is real Debezium messages (tests/fixtures/debezium/postgres-schemas.json, change
events only) repeated to --messages lines, so Debezium's own speed does not hide the cost.
Runs alternate off/on in one process, one no-op hook; reported: each run, the medians,
and the cost (1 − on/off). Goal: ≤ 5 %.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_file(n: int) -> Path:
    doc = json.loads((REPO / "tests" / "fixtures" / "debezium" / "postgres-schemas.json").read_text())
    lines = [json.dumps({k: m[k] for k in ("topic", "partition", "offset", "key", "value")})
             for m in doc["messages"] if m["value"] and '"op":"' in m["value"] and '"op":"m"' not in m["value"]]
    path = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    with path.open("w") as f:
        for i in range(n):
            f.write(lines[i % len(lines)] + "\n")
    return path


def run_once(path: Path, metrics_on: bool) -> float:

    from sidecar.hooks import HookSpec
    from sidecar.metrics import Metrics, NoMetrics
    from sidecar.sources.file import FileSource
    from sidecar.testing import run_pipeline

    metrics = Metrics() if metrics_on else NoMetrics()
    hook = HookSpec("noop", lambda p: None, "bench")
    metrics.declare_hooks(["noop"])
    source = FileSource(path, batch_size=500)
    started = time.perf_counter()
    _, stats = run_pipeline([], [hook], source=source, metrics=metrics, report=True)
    elapsed = time.perf_counter() - started
    assert stats.events > 0
    return stats.messages / elapsed


def main() -> None:
    import structlog

    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    path = make_file(args.messages)
    rates: dict[bool, list[float]] = {False: [], True: []}
    run_once(path, True)  # warm-up (imports, caches)
    for r in range(args.rounds):
        for on in (False, True):
            rate = run_once(path, on)
            rates[on].append(rate)
            print(f"round {r + 1} metrics {'on ' if on else 'off'}: {rate:,.0f} msg/s")
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"median off {off:,.0f}/s, on {on:,.0f}/s: metrics cost {100 * (1 - on / off):.1f}% (goal <= 5%)")
    path.unlink()


if __name__ == "__main__":
    main()
