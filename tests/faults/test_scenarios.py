"""Fault scenarios on the real stack (Kafka mode): no commit is ever lost.

Figures of each run are printed as `FIGURES scenario=… rows=… lost=… duplicates=… seconds=…`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from sidecar.sources.kafka import read_dead_letter_topic
from tests.faults.harness import RECORD, TOPIC, Scenario
from tests.integration.stack import AUX_URL, KAFKA, REPO, query, start_sidecar, stop_sidecar


def test_sigterm_mid_stream_no_loss_no_duplicates(tmp_path: Path) -> None:
    """1. SIGTERM mid-stream: exit 0 within the grace period; restart; no loss, no duplicates."""
    s = Scenario("sigterm", tmp_path)
    started = time.monotonic()
    proc = start_sidecar(s.config, s.run, s.log)
    s.start_writing()
    exits: list[tuple[int, float]] = []

    def fault() -> None:
        t0 = time.monotonic()
        code = stop_sidecar(proc, timeout=30)
        exits.append((code, time.monotonic() - t0))

    s.fault_when(0.4, fault)
    proc = start_sidecar(s.config, s.run, s.log)
    try:
        s.wait_all()
    finally:
        assert stop_sidecar(proc) == 0
    assert exits[0][0] == 0 and exits[0][1] < 30, exits
    s.figures(started, dup_bound=0)


def test_hook_failing_every_100th_id_dead_letters_then_replay(tmp_path: Path) -> None:
    """7. Every 100th id fails: dead-lettered with the error, others processed; replay after the fix runs each once."""
    hooks = {"record": {"path": RECORD, "retry": {"max_attempts": 2, "initial_backoff_s": 0.01}}}
    s = Scenario("dead-letters", tmp_path, hooks=hooks)
    started = time.monotonic()
    failing = {i for i in s.ids if i % 100 == 0}
    proc = start_sidecar(s.config, s.run, s.log, {"RECORD_FAIL_EVERY": "100"})
    s.start_writing()
    try:
        s.wait_all(expected=s.rows - len(failing))
        topic = f"{s.group}.dead-letters"
        entries = []
        for _ in range(60):
            entries = [e for e in read_dead_letter_topic({"bootstrap.servers": KAFKA}, topic)
                       if e["kind"] == "hook_failed"]
            if len(entries) >= len(failing):
                break
            time.sleep(1)
    finally:
        assert stop_sidecar(proc) == 0
    dead = {json.loads(e["message"]["value"])["payload"]["after"]["id"] for e in entries}
    assert dead == failing
    assert all(e["error"].startswith("RuntimeError: test failure for id") and e["attempts"] == 2 for e in entries)
    s.figures(started, dup_bound=0, lost_ok=failing)
    r = subprocess.run([sys.executable, "-m", "sidecar", "dead-letters", "replay", "--config", str(s.config)],
                       env={**os.environ, "TEST_RUN": s.run}, capture_output=True, text=True,
                       timeout=300, cwd=REPO, check=False)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert f"replayed {len(failing)} ok, 0 failed" in r.stdout
    again = subprocess.run([sys.executable, "-m", "sidecar", "dead-letters", "replay", "--config", str(s.config)],
                           env={**os.environ, "TEST_RUN": s.run}, capture_output=True, text=True,
                           timeout=300, cwd=REPO, check=False)
    assert f"replayed 0 ok, 0 failed (kept), {len(failing)} already replayed" in again.stdout
    counts = dict(query(AUX_URL, "SELECT record_id, COUNT(*) FROM hook_calls WHERE test_run = :r AND "
                                 "MOD(record_id, 100) = 0 AND record_id BETWEEN :lo AND :hi GROUP BY record_id",
                        {"r": s.run, "lo": s.ids[0], "hi": s.ids[-1]}))
    assert counts == dict.fromkeys(failing, 1)  # processed exactly once more, after the fix


def test_poison_messages_in_topic_are_dead_lettered(tmp_path: Path) -> None:
    """9. Poison messages produced straight into the topic: dead-lettered with their reason; the stream goes on."""
    s = Scenario("poison", tmp_path, extra_config={"dead_letters": {"max_message_bytes": 200_000}})
    started = time.monotonic()
    proc = start_sidecar(s.config, s.run, s.log)
    s.start_writing()
    marker = uuid.uuid4().hex
    poison = [
        (b"not json at all " + marker.encode(), "not_json"),
        (orjson.dumps({"id": 1, "amount": "5", "__deleted": "false", "m": marker}), "flattened"),
        (b"\x00\x00\x00\x00\x07avro" + marker.encode(), "unsupported_format"),
        (orjson.dumps({"op": "x", "source": {"connector": "postgresql"}, "m": marker}), "not_envelope"),
        (b'{"m":"' + marker.encode() + b'","pad":"' + b"x" * 300_000 + b'"}', "too_large"),
    ]

    def fault() -> None:
        producer = Producer({"bootstrap.servers": KAFKA, "message.max.bytes": 2_000_000})
        for value, _ in poison:
            producer.produce(TOPIC, value=value)
        assert producer.flush(30) == 0

    try:
        s.fault_when(0.3, fault)
        s.wait_all()
        entries = []
        for _ in range(30):
            entries = [e for e in read_dead_letter_topic({"bootstrap.servers": KAFKA}, f"{s.group}.dead-letters")
                       if marker in (e["message"]["value"] or "") or e["message"]["encoding"] == "base64"]
            if len(entries) >= len(poison):
                break
            time.sleep(1)
    finally:
        assert stop_sidecar(proc) == 0
    reasons = sorted(e["reason"] for e in entries if e["kind"] == "decode_failed")
    assert reasons == sorted(r for _, r in poison), reasons
    s.figures(started, dup_bound=0)


STACK = REPO / "deploy" / "local" / "stack"


def restart(component: str, down_s: float = 0.0, during: Callable[[], None] | None = None) -> None:
    """Stop a stack component, run `during` while it is down, keep it down `down_s` in all, start it."""
    subprocess.run([str(STACK), "down", component], check=True, capture_output=True, timeout=120)
    stopped = time.monotonic()
    if during is not None:
        during()
    time.sleep(max(0.0, down_s - (time.monotonic() - stopped)))
    subprocess.run([str(STACK), "up", component], check=True, capture_output=True, timeout=240)


def restart_scenario(tmp_path: Path, name: str, component: str, down_s: float = 0.0,
                     expect_unready: bool = False, extra_config: dict[str, Any] | None = None) -> dict[str, int]:
    hooks = {"record": {"path": RECORD, "retry": {"max_attempts": None, "max_backoff_s": 2}}}
    s = Scenario(name, tmp_path, hooks=hooks, extra_config=extra_config or {})
    started = time.monotonic()
    proc = start_sidecar(s.config, s.run, s.log)
    s.start_writing()
    probes: dict[str, int] = {}

    def during() -> None:
        # Probe all through the outage. Readiness must turn false by itself (Kafka: the
        # watcher's probe every health.kafka_check_interval_s = 5 s, 3 s timeout, or
        # librdkafka's error callback); liveness must stay true the whole time.
        t0 = time.monotonic()
        probes["live_during"] = probes["ready_during"] = 200
        while True:
            elapsed = time.monotonic() - t0
            if elapsed >= down_s and (probes["ready_during"] == 503 or not expect_unready):
                break
            if elapsed >= down_s + 10:
                break
            ready, live = s.probe("/readyz"), s.probe("/healthz")
            if ready != 200 and probes["ready_during"] == 200:
                probes["ready_during"] = ready
                probes["unready_after_ms"] = round(elapsed * 1000)
            if live != 200:
                probes["live_during"] = live
            time.sleep(0.25)

    try:
        s.fault_when(0.4, lambda: restart(component, down_s, during))
        if component == "connect":
            from sidecar import connectors as cx
            from tests.integration.stack import CONNECT

            for path in sorted((REPO / "connectors").glob("*.json")):
                cx.wait_running(CONNECT, cx.load_connector(path)[0], 120)
        s.wait_all(timeout=400)
        assert proc.poll() is None, "the sidecar must survive the outage"
        probes["ready_after"] = s.probe("/readyz")
    finally:
        assert stop_sidecar(proc) == 0
    s.figures(started)
    print(f"PROBES scenario={name} {probes}")
    assert probes["live_during"] == 200 and probes["ready_after"] == 200, probes
    return probes


def test_kafka_broker_restarted_mid_stream(tmp_path: Path) -> None:
    """3. The Kafka broker restarts mid-stream: stays up (live), not ready while it is down, loses nothing."""
    # loop_stall_s 5 < the outage: a synchronous commit caught by it blocks the loop until the
    # broker returns, and liveness must still hold (the commit is a bounded wait, not a stall).
    probes = restart_scenario(tmp_path, "kafka-restart", "kafka", down_s=8, expect_unready=True,
                              extra_config={"health": {"loop_stall_s": 5}})
    assert probes["ready_during"] == 503, probes
    # librdkafka's own lines (a flood of reconnect failures during the outage) arrive as JSON
    # events like every other line, with repeats held back.
    lines = (tmp_path / "sidecar.log").read_text().splitlines()
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json[:3]
    kafka_lines = [json.loads(line) for line in lines if '"librdkafka: ' in line]
    assert any("Connection refused" in e["event"] for e in kafka_lines), len(kafka_lines)
    print(f"FIGURES kafka-restart librdkafka_lines={len(kafka_lines)} of {len(lines)}")


def test_kafka_connect_restarted_mid_stream(tmp_path: Path) -> None:
    """4. Kafka Connect restarts mid-stream: nothing is lost (Debezium resumes from its offsets)."""
    restart_scenario(tmp_path, "connect-restart", "connect")


def test_postgresql_restarted_mid_stream(tmp_path: Path) -> None:
    """5. PostgreSQL restarts mid-stream: nothing is lost (the slot keeps the WAL; the writer retries)."""
    restart_scenario(tmp_path, "postgres-restart", "postgres", down_s=2)


def test_auxiliary_database_down_30s(tmp_path: Path) -> None:
    """10. The auxiliary MariaDB is down for 30 s: hooks back off, nothing is committed past them, not ready
    but live, and every row is processed after it returns."""
    hooks = {"record": {"path": RECORD, "retry": {"max_attempts": None, "initial_backoff_s": 0.2,
                                                  "max_backoff_s": 2}}}
    s = Scenario("aux-db-down", tmp_path, hooks=hooks, extra_config={"health": {"watch_interval_s": 1}})
    started = time.monotonic()
    proc = start_sidecar(s.config, s.run, s.log)
    s.start_writing()
    observed: dict[str, object] = {}

    def outage() -> None:
        from tests.faults.harness import committed

        subprocess.run([str(STACK), "down", "mariadb"], check=True, capture_output=True, timeout=120)
        time.sleep(5)
        held = committed(s.group)
        observed["ready_during"] = s.probe("/readyz")
        observed["live_during"] = s.probe("/healthz")
        time.sleep(25)
        observed["held_after_30s"] = committed(s.group) - held
        subprocess.run([str(STACK), "up", "mariadb"], check=True, capture_output=True, timeout=240)

    try:
        s.fault_when(0.3, outage)
        s.wait_all(timeout=400)
        observed["ready_after"] = s.probe("/readyz")
    finally:
        assert stop_sidecar(proc) == 0
    assert observed["ready_during"] == 503 and observed["live_during"] == 200, observed
    assert observed["held_after_30s"] == 0, observed  # nothing committed past the failing hook
    assert observed["ready_after"] == 200, observed
    s.figures(started)


def test_hanging_hook_times_out_and_stream_continues(tmp_path: Path) -> None:
    """8. A hook that hangs: each hang is a counted timeout, the stream goes on, liveness stays true."""
    hooks = {"record": {"path": RECORD, "timeout_s": 0.5, "retry": {"max_attempts": 1}}}
    s = Scenario("hanging-hook", tmp_path, hooks=hooks)
    started = time.monotonic()
    hanging = {i for i in s.ids if i % 1000 == 0}
    proc = start_sidecar(s.config, s.run, s.log, {"RECORD_HANG_EVERY": "1000"})
    s.start_writing()
    live: list[int] = []
    try:
        s.fault_when(0.3, lambda: live.append(s.probe("/healthz")))
        s.wait_all(expected=s.rows - len(hanging))
        live.append(s.probe("/healthz"))
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{s.http_port()}/metrics", timeout=5) as r:
            scrape = r.read().decode()
    finally:
        assert stop_sidecar(proc) == 0
    assert live == [200, 200]
    timeouts = float(next(line.split()[-1] for line in scrape.splitlines()
                          if line.startswith('checkpoint_hook_runs_total{hook="record",outcome="timeout"}')))
    assert timeouts == len(hanging)
    s.figures(started, dup_bound=0, lost_ok=hanging)


@pytest.mark.parametrize("mode", ["serial", "key32"])
def test_two_members_rebalance_one_two_one(tmp_path: Path, mode: str) -> None:
    """6. Two sidecars, one group, 4 partitions; one joins (1→2) then is killed (2→1): no loss, both ran hooks
    (serial, and ordering: key with concurrency 32 and 500 records in flight at most)."""
    import yaml

    from sidecar import connectors as cx
    from tests.integration.scenario import drop_slot
    from tests.integration.stack import CONNECT, PORTS, wait_for

    hooks = {"record": {"path": RECORD, **({"ordering": "key", "concurrency": 32} if mode == "key32" else {})}}
    s = Scenario(f"rebalance-1-2-1-{mode}", tmp_path, rows=8000, pause_s=0.15, hooks=hooks,
                 extra_config={"dispatch": {"max_in_flight": 500}})
    prefix = f"rb{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PG_CONNECTOR_NAME": prefix, "PG_TOPIC_PREFIX": prefix, "PG_SLOT_NAME": prefix,
           "PG_PUBLICATION_NAME": prefix, "PG_TABLE_INCLUDE_LIST": "public.load_rows", "PG_SNAPSHOT_MODE": "no_data",
           "TOPIC_PARTITIONS": "4", "PG_PORT": str(PORTS["postgres"])}
    name = cx.apply(CONNECT, REPO / "connectors" / "postgres-shop.json", env)
    topic = f"{prefix}.public.load_rows"
    try:
        cx.wait_running(CONNECT, name, 120)
        doc = yaml.safe_load(s.config.read_text())
        doc["source"]["kafka"]["topics"] = [topic]
        s.config.write_text(yaml.safe_dump(doc))
        started = time.monotonic()
        a = start_sidecar(s.config, s.run, s.log)
        s.start_writing()
        procs = {"a": a}
        wait_for("member a running hooks", lambda: s.distinct() > 0, timeout=120)
        procs["b"] = start_sidecar(s.config, s.run, tmp_path / "b.log")  # 1 → 2
        wait_for("member b running hooks", lambda: len({r[0] for r in query(
            AUX_URL, "SELECT DISTINCT pid FROM hook_calls WHERE test_run = :r", {"r": s.run})}) >= 2, timeout=120)

        def kill_b() -> None:  # 2 → 1
            procs["b"].send_signal(9)
            procs["b"].wait(10)

        s.fault_when(0.5, kill_b)
        s.wait_all(timeout=400)
    finally:
        for p in (procs.get("a"),):
            if p is not None:
                assert stop_sidecar(p) == 0
        cx.delete(CONNECT, name)
        drop_slot(prefix)
    md = Producer({"bootstrap.servers": KAFKA}).list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 4
    pids = {r[0] for r in query(AUX_URL, "SELECT DISTINCT pid FROM hook_calls WHERE test_run = :r", {"r": s.run})}
    assert len(pids) == 2, pids
    # the killed member's finished-but-uncommitted (max_uncommitted 1000) + its records in flight (500)
    s.figures(started, dup_bound=1000 + 500)
