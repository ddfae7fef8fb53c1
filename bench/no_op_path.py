"""The no-op path side by side (issue 12): a bare consumer, a Quix Streams app and the sidecar.

Needs the local stack's Kafka (`deploy/local/stack up kafka`) and bench/.venv-quix
(`make bench-fast-path` makes both venvs and runs this). Cells: a wide table (28 columns) and a
narrow one (orders, 5 columns) × with embedded schemas / without, each a one-partition topic of
--messages Debezium envelopes in the compact JSON Kafka Connect's JsonConverter writes (bench/
envelopes.py, modelled on tests/fixtures/debezium/), 1 % poison (not JSON; envelopes cut off),
in record batches like Kafka Connect's producer makes (16 KB, linger 5 ms, uncompressed). A topic
is filled once and reused while it holds the expected count.

Per round and cell, each reader in its own process, a fresh consumer group each time:
- bare: confluent-kafka `consume(500)` + `orjson.loads(value)` for every message, librdkafka's
  default settings (the baseline the goals name);
- bare-tuned: the same loop with the fetch setting the sidecar's consumer sets by default
  (`fetch.queue.backoff.ms` 10: librdkafka's 1,000 caps one partition at ~64 MB/s), so it is
  also shown how the sidecar compares with a bare loop that fetches as it does;
- quix: Quix Streams (pinned, own venv), JSON deserializer + a no-op function (bench/quix_reader.py);
- sidecar: the real `checkpoint-sidecar run` (Kafka mode, metrics and HTTP on, dead letters to a
  file), one no-op hook that counts its calls. Asserted: calls == non-poison messages and
  dead-letter entries == poison messages (a wrong count fails the run).
Every reader times itself from the first message it handles to the last (time.perf_counter in
the reader or the hook) and writes that to a file: process start-up, imports and the group join
are excluded for all three. Rate = messages in the topic / that interval. Rounds alternate
readers and cells; the tables show medians, every round, and the ratios; goals (printed, not
enforced): sidecar ≥ 0.8× bare and ≥ 1.2× Quix in every cell.

    .venv/bin/python bench/no_op_path.py [--rounds 3] [--messages 200000] [--only bare,bare-tuned,quix,sidecar]
        [--cells wide-schemas,wide-plain,narrow-schemas,narrow-plain]
        [--sidecar-python OTHER/.venv/bin/python | --sidecar-cmd 'CMD ...']
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import envelopes  # noqa: E402

KAFKA = f"127.0.0.1:{os.environ.get('STACK_KAFKA_PORT', '9092')}"
QUIX_PY = REPO / "bench" / ".venv-quix" / "bin" / "python"
READERS = ("bare", "bare-tuned", "quix", "sidecar")
# Diagnostic, not in the default set: the bare loop on the Quix venv's confluent-kafka/librdkafka.
EXTRA_READERS = ("bare-quixvenv",)
CELLS = {  # name -> (table, schemas)
    "wide-schemas": ("customer_accounts", True),
    "wide-plain": ("customer_accounts", False),
    "narrow-schemas": ("orders", True),
    "narrow-plain": ("orders", False),
}
RUN_LIMIT_S = 900.0

HOOK = '''"""No-op hook of bench/no_op_path.py: counts its calls, times the first and the last."""
import atexit
import json
import os
import time

_OUT = os.environ["BENCH_HOOK_OUT"]
_EXPECT = int(os.environ["BENCH_HOOK_EXPECT"])
_state = {"calls": 0, "first": 0.0, "last": 0.0}


def _write(path):
    with open(path + ".tmp", "w") as f:
        json.dump(_state, f)
    os.replace(path + ".tmp", path)


def checkpoint(param):
    now = time.perf_counter()
    n = _state["calls"] + 1
    _state["calls"] = n
    if n == 1:
        _state["first"] = now
    _state["last"] = now
    if n == _EXPECT:
        _write(_OUT + ".done")


atexit.register(_write, _OUT)
'''


# ---------------------------------------------------------------------------- topics
def topic_name(cell: str, n: int) -> str:
    return f"bench.noop.{cell}.{n}.v2"


def topic_count(topic: str) -> int | None:
    """Messages in the topic's one partition (None: no such topic)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": KAFKA, "group.id": "bench-noop-count", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            return None
        total = 0
        for p in t.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total
    finally:
        c.close()


def ensure_topic(cell: str, n: int) -> str:
    """Fill the cell's topic once; reuse it while it holds exactly n messages."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = topic_name(cell, n)
    have = topic_count(topic)
    if have == n:
        print(f"{cell}: reusing {topic} ({n:,} messages)", flush=True)
        return topic
    admin = AdminClient({"bootstrap.servers": KAFKA})
    if have is not None:  # a fill that did not finish
        admin.delete_topics([topic])[topic].result(30)
        for _ in range(60):
            if topic_count(topic) is None:
                break
            time.sleep(0.5)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    table, schemas = CELLS[cell]
    started = time.perf_counter()
    # Record batches as Kafka Connect's producer (Kafka 4.x defaults) writes them: batch.size
    # 16384, linger.ms 5, no compression; a consumer pays per batch, so this is part of realism.
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 5, "batch.size": 16_384,
                         "compression.type": "none", "queue.buffering.max.messages": 500_000,
                         "queue.buffering.max.kbytes": 1_048_576, "message.max.bytes": 10_000_000})
    for i, (key, value) in enumerate(envelopes.messages(table, schemas, n)):
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 5_000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise SystemExit(f"{topic}: messages left unsent")
    got = topic_count(topic)
    if got != n:
        raise SystemExit(f"{topic}: {got} messages after the fill, expected {n}")
    print(f"{cell}: filled {topic} with {n:,} messages ({envelopes.poison_count(n):,} poison) "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    return topic


# ---------------------------------------------------------------------------- readers
TUNED = {"fetch.queue.backoff.ms": 10}
"""bare-tuned: the librdkafka settings the sidecar's consumer sets beyond librdkafka's defaults
that change fetching (sidecar/config.py), so the bare loop fetches as the sidecar does."""


def bare_reader(topic: str, expect: int, out: str, tuned: bool = False) -> None:
    """Child process: consume(500) + orjson.loads for every message, fresh group."""
    import orjson
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": KAFKA, "group.id": f"bench-bare-{uuid.uuid4().hex[:10]}",
                  "auto.offset.reset": "earliest", **(TUNED if tuned else {})})
    c.subscribe([topic])
    seen = errors = 0
    first = last = 0.0
    loads = orjson.loads
    deadline = time.monotonic() + RUN_LIMIT_S
    while seen < expect and time.monotonic() < deadline:
        msgs = c.consume(500, 1.0)
        if not msgs:
            continue
        if not seen:
            first = time.perf_counter()
        for m in msgs:
            if m.error() is not None:
                continue
            seen += 1
            try:
                loads(m.value())
            except orjson.JSONDecodeError:
                errors += 1
        last = time.perf_counter()
    c.close()
    Path(out).write_text(json.dumps({"calls": seen - errors, "errors": errors, "first": first, "last": last}))


def run_child(cmd: list[str], out: Path, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"{cmd[:3]} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def sidecar_reader(topic: str, expect: int, poison: int, cmd: list[str], tmp: Path) -> dict[str, Any]:
    """The real `checkpoint-sidecar run` with one counting no-op hook; returns timings and counts."""
    hook = tmp / "noop_hook.py"
    hook.write_text(HOOK)
    out = tmp / "hook.json"
    dl = tmp / "dead-letters.jsonl"
    port = free_port()
    config = {
        "pipeline": "bench-noop",
        "source": {"kind": "kafka", "kafka": {"bootstrap_servers": KAFKA, "topics": [topic],
                                               "group_id": f"bench-sidecar-{uuid.uuid4().hex[:10]}"}},
        "http": {"enabled": True, "host": "127.0.0.1", "port": port},
        "dead_letters": {"kind": "file", "path": str(dl)},
        "hooks": {"noop": {"path": str(hook)}},
        "log": {"level": "info", "format": "json"},
    }
    cfg = tmp / "config.yaml"
    cfg.write_text(json.dumps(config))  # JSON is YAML
    env = {**os.environ, "BENCH_HOOK_OUT": str(out), "BENCH_HOOK_EXPECT": str(expect - poison)}
    env = {k: v for k, v in env.items() if not k.startswith("SIDECAR_")}
    with (tmp / "sidecar.log").open("w") as log:
        proc = subprocess.Popen([*cmd, "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                cwd=tmp, env=env)
    deadline = time.monotonic() + RUN_LIMIT_S
    dead = 0
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"sidecar exited early ({proc.returncode}); log: {tmp / 'sidecar.log'}")
            dead = _lines(dl)
            if Path(str(out) + ".done").exists() and dead >= poison:
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"sidecar: not done within {RUN_LIMIT_S:.0f} s (dead letters {dead}); log: {tmp}")
        time.sleep(1.0)  # anything beyond the expected counts would show up now
        decode_errors = scrape(port, "checkpoint_decode_errors_total")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"sidecar exited {proc.returncode} after SIGTERM; log: {tmp / 'sidecar.log'}")
    final = out if out.exists() else Path(str(out) + ".done")
    res: dict[str, Any] = json.loads(final.read_text())
    res["dead_letters"] = _lines(dl)
    res["decode_errors_metric"] = decode_errors
    return res


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def measure(reader: str, topic: str, n: int, poison: int, sidecar_cmd: list[str]) -> float:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-noop-{reader}-"))
    out = tmp / "times.json"
    if reader in ("bare", "bare-tuned", "bare-quixvenv"):
        py = str(QUIX_PY) if reader == "bare-quixvenv" else sys.executable
        res = run_child([py, __file__, "--bare-child", topic, "--messages", str(n), "--out", str(out)]
                        + (["--tuned"] if reader == "bare-tuned" else []), out, RUN_LIMIT_S)
        calls, bad = res["calls"], res["errors"]
    elif reader == "quix":
        res = run_child([str(QUIX_PY), str(REPO / "bench" / "quix_reader.py"), "--broker", KAFKA, "--topic", topic,
                         "--expect", str(n), "--out", str(out)], out, RUN_LIMIT_S)
        calls, bad = res["calls"], res["errors"]
    else:
        res = sidecar_reader(topic, n, poison, sidecar_cmd, tmp)
        calls, bad = res["calls"], res["dead_letters"]
        if res["decode_errors_metric"] != poison:
            print(f"  note: checkpoint_decode_errors_total = {res['decode_errors_metric']:.0f}", flush=True)
    if calls != n - poison or bad != poison:
        raise SystemExit(f"{reader} on {topic}: {calls} calls / {bad} poison handled, expected "
                         f"{n - poison} / {poison} (files in {tmp})")
    return n / (res["last"] - res["first"])


# ---------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=200_000, help="messages per topic (1 %% of them poison)")
    ap.add_argument("--only", default=",".join(READERS),
                    help="readers, comma-separated: bare,bare-tuned,quix,sidecar (diagnostic: bare-quixvenv, "
                         "the bare loop on the Quix venv's confluent-kafka)")
    ap.add_argument("--cells", default=",".join(CELLS), help="cells, comma-separated: " + ",".join(CELLS))
    ap.add_argument("--sidecar-python", help="run the sidecar as PYTHON -m sidecar (e.g. another checkout's venv)")
    ap.add_argument("--sidecar-cmd", help="the sidecar command, e.g. '/other/.venv/bin/checkpoint-sidecar'")
    ap.add_argument("--bare-child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_child:
        bare_reader(args.bare_child, args.messages, args.out, args.tuned)
        return
    readers = [r for r in args.only.split(",") if r]
    cells = [c for c in args.cells.split(",") if c]
    unknown = [r for r in readers if r not in READERS + EXTRA_READERS] + [c for c in cells if c not in CELLS]
    if unknown:
        raise SystemExit(f"unknown reader/cell: {', '.join(unknown)}")
    if args.sidecar_cmd:
        sidecar_cmd = shlex.split(args.sidecar_cmd)
    else:
        sidecar_cmd = [args.sidecar_python or str(REPO / ".venv" / "bin" / "python"), "-m", "sidecar"]
    if {"quix", "bare-quixvenv"} & set(readers) and not QUIX_PY.exists():
        raise SystemExit(f"{QUIX_PY} is missing: make bench-venv-quix (or make bench-fast-path)")
    n = args.messages
    poison = envelopes.poison_count(n)
    topics = {c: ensure_topic(c, n) for c in cells}
    print(f"\nsidecar: {' '.join(sidecar_cmd)}; {n:,} messages per topic, {poison:,} poison; "
          f"{args.rounds} rounds; timed from each reader's first message handled to its last "
          f"(process start-up, imports and the group join excluded for all three)\n", flush=True)
    rates: dict[tuple[str, str], list[float]] = {(c, r): [] for c in cells for r in readers}
    for rnd in range(args.rounds):
        order = readers if rnd % 2 == 0 else readers[::-1]  # alternate who goes first
        for cell in cells:
            for reader in order:
                rate = measure(reader, topics[cell], n, poison, sidecar_cmd)
                rates[(cell, reader)].append(rate)
                print(f"round {rnd + 1} {cell:15} {reader:8} {rate:9,.0f} msg/s", flush=True)
    report(cells, readers, rates, args.rounds, n)


def report(cells: list[str], readers: list[str], rates: dict[tuple[str, str], list[float]], rounds: int,
           n: int) -> None:
    print(f"\nmsg/s from the first message handled to the last (start-up and group join excluded), "
          f"{n:,} messages/topic, median of {rounds} rounds")
    for cell in cells:
        table, schemas = CELLS[cell]
        med = {r: statistics.median(rates[(cell, r)]) for r in readers}
        print(f"\n### {cell}: public.{table}, {'with embedded schemas' if schemas else 'without schemas'}\n")
        print("| reader | msg/s (median) | every round | vs bare | sidecar vs this |")
        print("|---|---|---|---|---|")
        for r in readers:
            vs_bare = f"{med[r] / med['bare']:.2f}" if "bare" in med else ""
            side = f"{med['sidecar'] / med[r]:.2f}" if "sidecar" in med and r != "sidecar" else ""
            every = ", ".join(f"{x:,.0f}" for x in rates[(cell, r)])
            print(f"| {r} | {med[r]:,.0f} | {every} | {vs_bare} | {side} |")
        if {"bare", "quix", "sidecar"} <= med.keys():
            a, b = med["sidecar"] / med["bare"], med["sidecar"] / med["quix"]
            ok = a >= 0.8 and b >= 1.2
            print(f"\n{'PASS' if ok else 'FAIL'}: sidecar {a:.2f}× bare (goal ≥ 0.8), {b:.2f}× Quix (goal ≥ 1.2)")
        if {"bare-tuned", "sidecar"} <= med.keys():
            print(f"sidecar {med['sidecar'] / med['bare-tuned']:.2f}× bare-tuned (the bare loop with the sidecar's "
                  f"fetch settings, {TUNED})")


if __name__ == "__main__":
    main()
