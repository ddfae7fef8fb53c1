"""Bad situations in `deploy/local/stack` and connector setup give a clear message, not a hang."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sidecar import connectors as cx
from tests.integration.stack import CONNECT, PORTS, REPO

STACK = REPO / "deploy" / "local" / "stack"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_stack(tmp_path: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "STACK_STATE_DIR": str(tmp_path / "state"), "STACK_WAIT_SECONDS": "20", **env}
    return subprocess.run(["/bin/bash", str(STACK), "up"], env=full, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_port_in_use_is_named(tmp_path: Path) -> None:
    """A port held by another process stops `up` at once, naming the port, its owner and the variable."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_stack(tmp_path, {"STACK_PG_PORT": str(port), "STACK_MARIADB_PORT": str(free_port()),
                                 "STACK_KAFKA_PORT": str(free_port()), "STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
                                 "STACK_CONNECT_PORT": str(free_port())}, timeout=30)
    assert r.returncode != 0
    assert f"port {port} for postgres is already in use" in r.stderr
    assert "STACK_PG_PORT" in r.stderr


def test_java_missing_from_path(tmp_path: Path) -> None:
    """Without java on PATH, `up` says so and how to install it."""
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for d in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for tool in Path(d).iterdir():
            if tool.name.startswith("java") or (fakebin / tool.name).exists():
                continue
            (fakebin / tool.name).symlink_to(tool)
    r = run_stack(tmp_path, {"PATH": str(fakebin)}, timeout=30)
    assert r.returncode != 0
    assert "Java is not on PATH" in r.stderr and "openjdk-17" in r.stderr


def test_empty_jar_cache_and_unreachable_maven_central(tmp_path: Path) -> None:
    """No jars in the local cache and no way to Maven Central: a message naming both, quickly."""
    settings = tmp_path / "settings.xml"
    dead = free_port()  # nothing listens there: connection refused at once
    settings.write_text(
        "<settings><mirrors><mirror><id>unreachable</id><mirrorOf>*</mirrorOf>"
        f"<url>http://127.0.0.1:{dead}/maven2</url></mirror></mirrors></settings>"
    )
    env = {"STACK_MAVEN_ARGS": f"-s {settings} -Dmaven.repo.local={tmp_path / 'empty-m2'}",
           "STACK_PG_PORT": str(free_port()), "STACK_MARIADB_PORT": str(free_port()),
           "STACK_KAFKA_PORT": str(free_port()), "STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
           "STACK_CONNECT_PORT": str(free_port())}
    r = run_stack(tmp_path, env, timeout=300)
    assert r.returncode != 0
    assert "could not fetch the 'kafka' jars" in r.stderr
    assert "Maven Central could not be reached" in r.stderr


def test_failing_connector_shows_task_trace(tmp_path: Path, connectors: list[str]) -> None:
    """A connector whose task cannot start (a user without binlog privileges) fails `apply` with the trace."""
    name = f"it-broken-{uuid.uuid4().hex[:8]}"
    cfg = json.loads((REPO / "connectors" / "mariadb-inventory.json").read_text())
    cfg["name"] = name
    # Valid for Connect's validation (the login works) but the task's binlog queries are refused.
    cfg["config"].update({"database.user": "sidecar", "database.password": "sidecar-demo-pw", "topic.prefix": name,
                          "database.server.id": str(300000 + os.getpid() % 1000),
                          "database.port": str(PORTS["mariadb"]),
                          "schema.history.internal.kafka.topic": f"_schema-history.{name}"})
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(cfg))
    try:
        r = subprocess.run(
            [sys.executable, "-m", "sidecar", "connectors", "apply", str(path), "--connect-url", CONNECT,
             "--timeout", "60"],
            capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
        )
        assert r.returncode == 6, r.stdout + r.stderr
        assert "FAILED" in r.stderr and "at io.debezium" in r.stderr, r.stderr
    finally:
        cx.delete(CONNECT, name)


@pytest.mark.parametrize("cmd", ["status"])
def test_stack_status_reports_components(cmd: str) -> None:
    """`stack status` lists each component and its port."""
    r = subprocess.run(["/bin/bash", str(STACK), cmd], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stdout
    for name in ("postgres", "mariadb", "kafka", "kafka-connect"):
        assert name in r.stdout
