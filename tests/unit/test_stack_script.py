"""Helpers of deploy/local/stack that can be checked without starting anything."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack"


def test_kafka_cluster_ids_never_start_with_a_dash() -> None:
    """`kafka-storage format -t -abc…` reads the id as an option: 1 fresh start in 64 failed so."""
    script = (f"source <(sed -n '/^kafka_cluster_id()/,/^}}/p' {STACK}); "
              "kafka_cluster_id 5000")
    ids = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True, timeout=120).stdout.split()
    assert len(ids) == 5000 and len(set(ids)) == 5000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids), [i for i in ids if i[0] == "-"]


def test_kafka_is_ready_however_much_log_follows_the_start_line(tmp_path: Path) -> None:
    """Under `set -o pipefail`, `tail | grep -q` failed on tail's SIGPIPE when more than a pipe
    buffer of log followed "Kafka Server started" (a broker loading many consumer groups): a
    started broker stayed "not ready" until the 120 s timeout."""
    log = tmp_path / "kafka.log"
    log.write_text("old run\n[x] INFO Kafka Server started\n" + "earlier\n" * 10
                   + "[y] INFO Kafka Server started (this run)\n" + "group metadata loaded ........\n" * 50_000)
    start = len("old run\n[x] INFO Kafka Server started\n" + "earlier\n" * 10) + 1
    funcs = ("set -euo pipefail; STACK_KAFKA_PORT=1; port_open() { return 0; }; "
             f"source <(sed -n '/^kafka_ready()/,/^}}/p' {STACK}); ")
    ready = subprocess.run(["bash", "-c", funcs + f"kafka_ready {log} {start}"], capture_output=True, text=True,
                           timeout=60)
    assert ready.returncode == 0, ready.stderr
    # Only this start's lines count: a log with the line before `start` only is not ready.
    log.write_text("[x] INFO Kafka Server started\n" + "after\n" * 50_000)
    not_yet = subprocess.run(["bash", "-c", funcs + f"kafka_ready {log} 40"], capture_output=True, text=True,
                             timeout=60)
    assert not_yet.returncode != 0
