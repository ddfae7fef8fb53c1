"""Makefile targets a new user runs first, checked without starting anything."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_stack_status_with_the_stack_down_ends_cleanly() -> None:
    """`make stack-status` lists every component as down and exits 0 (no make error)."""
    env = {**os.environ, "STACK_STATE_DIR": "/nonexistent-stack-state"}
    for var in ("STACK_PG_PORT", "STACK_MARIADB_PORT", "STACK_KAFKA_PORT", "STACK_CONNECT_PORT"):
        env[var] = str(free_port())
    result = subprocess.run(["make", "-s", "stack-status"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" down ") == 4, result.stdout
    assert "make stack-up" in result.stdout
    assert "Error" not in result.stderr, result.stderr


def test_run_kafka_does_not_start_the_stack_behind_run_demo() -> None:
    """run-demo stops what it starts: a stack-up prerequisite would start it unseen and leave it running."""
    out = subprocess.run(["make", "-n", "run-kafka"], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PY": "true"}).stdout
    assert "deploy/local/run-demo kafka" in out
    assert "stack up" not in out and "connectors apply" not in out, out


def test_deploy_tools_are_cached_outside_the_clone(tmp_path: Path) -> None:
    """helm/kustomize builds (~4 min) go to a per-user cache, not the clone: a fresh clone reuses them."""
    install = REPO / "deploy" / "tools" / "install"
    env = {k: v for k, v in os.environ.items() if k not in ("TOOLS_BIN", "XDG_CACHE_HOME")}
    where = Path(subprocess.run([install, "--where"], env=env, capture_output=True, text=True, check=True,
                                timeout=30).stdout.strip())
    assert where == Path.home() / ".cache" / "checkpoint-sidecar" / "tools" / "bin"
    assert not where.is_relative_to(REPO)
    env["XDG_CACHE_HOME"] = str(tmp_path)
    moved = subprocess.run([install, "--where"], env=env, capture_output=True, text=True, check=True, timeout=30)
    assert moved.stdout.strip() == str(tmp_path / "checkpoint-sidecar" / "tools" / "bin")
