"""Background checks every few seconds: databases reachable (readiness) and, for a
PostgreSQL destination, the WAL each replication slot holds back (a stopped connector or
sidecar otherwise fills the disk silently)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import text

from sidecar.databases import Databases
from sidecar.health import Health
from sidecar.metrics import Metrics

SLOTS_SQL = text(
    "SELECT slot_name, COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0) FROM pg_replication_slots"
)


class Watcher(threading.Thread):
    def __init__(self, databases: Databases, metrics: Metrics, health: Health, logger: Any,
                 interval_s: float = 15.0) -> None:
        super().__init__(name="watcher", daemon=True)
        self.databases = databases
        self.metrics = metrics
        self.health = health
        self.log = logger
        self.interval_s = interval_s
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.check_once()
            self.stopping.wait(self.interval_s)

    def check_once(self) -> None:
        for name, engine in self.databases.all().items():
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                    if name == "destination" and engine.dialect.name == "postgresql":
                        for row in conn.execute(SLOTS_SQL):
                            self.metrics.slot_retained.labels(slot=str(row[0])).set(float(str(row[1])))
                ok = True
            except Exception as exc:
                ok = False
                if f"database:{name}" not in self.health.down:
                    self.log.warning("database unreachable; not ready until it answers", database=name,
                                     error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            self.health.dependency(f"database:{name}", ok)

    def stop(self) -> None:
        self.stopping.set()
