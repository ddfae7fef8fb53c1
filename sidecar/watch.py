"""Background checks, off the main loop: databases reachable (readiness) and, for a
PostgreSQL destination, the WAL each replication slot holds back (a stopped connector or
sidecar otherwise fills the disk silently); in Kafka mode, the brokers answering.

Each check has its own interval. A check is a callable that raises when its dependency
does not answer; readiness follows the last result, and only a change is logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import text

from sidecar.databases import Databases
from sidecar.health import Health
from sidecar.metrics import Metrics

SLOTS_SQL = text(
    "SELECT slot_name, COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0) FROM pg_replication_slots"
)

Check = Callable[[], None]


class Watcher(threading.Thread):
    def __init__(self, databases: Databases, metrics: Metrics, health: Health, logger: Any,
                 interval_s: float = 15.0, checks: Mapping[str, tuple[Check, float]] | None = None) -> None:
        """`checks`: dependency name → (callable raising when it is down, interval in seconds)."""
        super().__init__(name="watcher", daemon=True)
        self.databases = databases
        self.metrics = metrics
        self.health = health
        self.log = logger
        self.interval_s = interval_s
        self.checks = dict(checks or {})
        self.stopping = threading.Event()

    def run(self) -> None:
        due = {name: 0.0 for name in ["databases", *self.checks]}
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= due["databases"]:
                self.check_databases()
                due["databases"] = time.monotonic() + self.interval_s
            for name, (check, interval) in self.checks.items():
                if now >= due[name]:
                    self.check(name, check)
                    due[name] = time.monotonic() + interval
            self.stopping.wait(max(0.05, min(due.values()) - time.monotonic()))

    def check(self, name: str, check: Check) -> None:
        try:
            check()
        except Exception as exc:
            self._record(name, exc)
        else:
            self._record(name, None)

    def check_databases(self) -> None:
        for name, engine in self.databases.all().items():
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                    if name == "destination" and engine.dialect.name == "postgresql":
                        for row in conn.execute(SLOTS_SQL):
                            self.metrics.slot_retained.labels(slot=str(row[0])).set(float(str(row[1])))
            except Exception as exc:
                self._record(f"database:{name}", exc)
            else:
                self._record(f"database:{name}", None)

    def _record(self, dependency: str, exc: Exception | None) -> None:
        if not self.health.dependency(dependency, exc is None):
            return
        if exc is None:
            self.log.info("dependency answers again", dependency=dependency)
        else:
            self.log.warning("dependency unreachable; not ready until it answers", dependency=dependency,
                             error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    def stop(self) -> None:
        self.stopping.set()
