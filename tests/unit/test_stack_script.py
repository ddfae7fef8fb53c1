"""Helpers of deploy/local/stack that can be checked without starting anything."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "local" / "stack"


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


def test_make_run_refuses_a_server_on_its_port_that_is_not_this_checkouts_stack(tmp_path: Path) -> None:
    """Found by a new-user trial: `make run` used whatever listened on 5432/3306 (the machine's own
    PostgreSQL, another checkout's stack) and created the demo's tables and rows there. It now
    stops before starting anything, naming the port's owner and the variable that moves it."""
    import os
    import socket

    with socket.socket() as listener, socket.socket() as probe:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        probe.bind(("127.0.0.1", 0))  # a port nothing listens on (mariadb: would be started; never reached)
        port = listener.getsockname()[1]
        env = {**os.environ, "STACK_PG_PORT": str(port), "STACK_MARIADB_PORT": str(probe.getsockname()[1]),
               "STACK_STATE_DIR": str(tmp_path / "state")}
        done = subprocess.run(["deploy/local/run-demo", "embedded"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"port {port} for postgres is in use by a process this checkout's stack did not start" in done.stderr
    assert "set STACK_PG_PORT to a free port" in done.stderr, done.stderr
    assert not (tmp_path / "state").exists()  # nothing was started or set up
