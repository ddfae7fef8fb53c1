"""Helpers for tests on the real local stack: ports, databases, Kafka, the sidecar process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parents[2]
PORTS = {
    "postgres": int(os.environ.get("STACK_PG_PORT", "5432")),
    "mariadb": int(os.environ.get("STACK_MARIADB_PORT", "3306")),
    "kafka": int(os.environ.get("STACK_KAFKA_PORT", "9092")),
    "kafka-connect": int(os.environ.get("STACK_CONNECT_PORT", "8083")),
}
KAFKA = f"127.0.0.1:{PORTS['kafka']}"
CONNECT = f"http://127.0.0.1:{PORTS['kafka-connect']}"
PG_URL = f"postgresql+psycopg://cdc:cdc@127.0.0.1:{PORTS['postgres']}/shop"
AUX_URL = f"mysql+pymysql://sidecar:sidecar-demo-pw@127.0.0.1:{PORTS['mariadb']}/sidecar_aux"
INV_URL = f"mysql+pymysql://cdc:cdc@127.0.0.1:{PORTS['mariadb']}/inventory"
T = TypeVar("T")

_engines: dict[str, Engine] = {}


def engine(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = create_engine(url, pool_pre_ping=True)
    return _engines[url]


def execute(url: str, sql: str, params: dict[str, Any] | list[dict[str, Any]] | None = None) -> None:
    with engine(url).begin() as conn:
        conn.execute(text(sql), params or {})


def query(url: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    with engine(url).connect() as conn:
        return list(conn.execute(text(sql), params or {}))


def new_id_base() -> int:
    """Ids unique across test runs on one stack (tables keep rows between runs)."""
    return (int(time.time() * 1000) % 10**11) * 1000


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 60.0, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def calls(run: str) -> list[Any]:
    return query(AUX_URL, "SELECT record_id, event_id, tbl, op, record_json, pid, called_at FROM hook_calls "
                          "WHERE test_run = :r ORDER BY id", {"r": run})


def sidecar_config(tmp: Path, *, group: str, topics: list[str] | None = None, pattern: str | None = None,
                   hooks: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
                   pipeline: str = "it-pipeline") -> Path:
    cfg = {
        "pipeline": pipeline,
        "source": {"kind": "kafka", "kafka": {
            "bootstrap_servers": KAFKA, "group_id": group, "topics": topics or [], "topic_pattern": pattern,
            "commit_interval_s": 0.5,
            "settings": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                         "topic.metadata.refresh.interval.ms": 2000, **(settings or {})},
        }},
        "databases": {"destination": PG_URL, "auxiliary": {"calls": AUX_URL, "audit": AUX_URL}},
        "tables": {"public.orders": {"source_table": "crm.orders"}},
        "hooks": hooks or {"record": {"path": str(REPO / "tests" / "hooks" / "record_calls.py")}},
        "log": {"level": "info", "format": "json"},
        "http": {"host": "127.0.0.1", "port": 0},
        "dead_letters": {"path": str(tmp / "dead-letters.jsonl")},
    }
    path = tmp / f"sidecar-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_sidecar(
    config: Path, run: str, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TEST_RUN": run, **(extra_env or {})}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sidecar", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True,
        )


def stop_sidecar(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError("sidecar did not exit within the grace period after SIGTERM") from None


@contextmanager
def sidecar(
    config: Path, run: str, log: Path, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_sidecar(config, run, log, extra_env)
    try:
        yield proc
    finally:
        code = stop_sidecar(proc)
        assert code == 0, f"sidecar exited {code}; log:\n{log.read_text()[-4000:]}"
