"""Shared machinery of the fault scenarios: paced rows, a fault mid-stream, the figures.

Each scenario commits N rows with unique ids into public.load_rows (one topic, Kafka mode),
lands its fault while rows are still being committed, then waits until every id reached
the test hook (calls recorded in MariaDB). It asserts the fault time lies between the first
and the last hook call with at least a quarter of the rows committed after it, and prints
one line of figures: scenario, rows, lost, duplicates, seconds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.integration import kafka_read
from tests.integration.stack import AUX_URL, KAFKA, PG_URL, REPO, engine, new_id_base, query, sidecar_config, wait_for

TOPIC = "shop.public.load_rows"
RECORD = str(REPO / "tests" / "hooks" / "record_calls.py")


def committed(group: str, topic: str = TOPIC) -> int:
    return kafka_read.committed(group, topic)


def watermark(topic: str = TOPIC) -> int | None:
    return kafka_read.watermark(topic)


@dataclass
class Scenario:
    name: str
    tmp: Path
    rows: int = 5000
    batch: int = 50
    pause_s: float = 0.1
    hooks: dict[str, Any] | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)
    run: str = field(default_factory=lambda: f"f-{uuid.uuid4().hex[:8]}")
    base: int = field(default_factory=new_id_base)
    fault_at: datetime | None = None
    committed_before_fault: int = 0
    written: int = 0

    def __post_init__(self) -> None:
        self.group = f"faults-{self.run}"
        before = watermark() or 0
        with engine(PG_URL).begin() as conn:  # makes sure the topic exists; start after it
            conn.execute(text("INSERT INTO load_rows (id, batch) VALUES (:id, -1)"), {"id": self.base - 1})
        start = wait_for("the warm-up row", lambda: (w := watermark()) and w > before and w, timeout=60)
        c = Consumer({"bootstrap.servers": KAFKA, "group.id": self.group})
        c.commit(offsets=[TopicPartition(TOPIC, 0, start)], asynchronous=False)
        c.close()
        self.start_offset = start
        self.config = sidecar_config(self.tmp, group=self.group, topics=[TOPIC],
                                     hooks=self.hooks or {"record": {"path": RECORD}})
        doc = yaml.safe_load(self.config.read_text())
        for key, value in self.extra_config.items():
            doc.setdefault(key, {}).update(value) if isinstance(value, dict) else doc.__setitem__(key, value)
        self.config.write_text(yaml.safe_dump(doc))
        self.log = self.tmp / "sidecar.log"
        self.writer = threading.Thread(target=self._write, daemon=True)

    @property
    def ids(self) -> range:
        return range(self.base, self.base + self.rows)

    def _write(self) -> None:
        # ON CONFLICT DO NOTHING: a batch retried after a lost connection commits each row once.
        insert = text("INSERT INTO load_rows (id, batch) VALUES (:id, :batch) ON CONFLICT (id) DO NOTHING")
        for b in range(self.rows // self.batch):
            rows = [{"id": self.base + b * self.batch + i, "batch": b} for i in range(self.batch)]
            for _ in range(600):
                try:
                    with engine(PG_URL).begin() as conn:
                        conn.execute(insert, rows)
                    break
                except OperationalError:  # PostgreSQL restarting (scenario 5)
                    time.sleep(0.5)
            self.written = (b + 1) * self.batch
            time.sleep(self.pause_s)

    def start_writing(self) -> None:
        self.writer.start()

    def fault_when(self, fraction: float, fault: Callable[[], None]) -> None:
        """Run `fault` once `fraction` of the rows are committed (mid-stream)."""
        wait_for(f"{fraction:.0%} of the rows committed", lambda: self.written >= self.rows * fraction, timeout=300,
                 every=0.1)
        self.committed_before_fault = self.written
        self.fault_at = datetime.now(UTC)
        fault()

    def http_port(self) -> int:
        """The sidecar's HTTP port (the config asks for any free one; the log says which)."""
        import re

        ports = re.findall(r'"event": "http listening".*?"port": (\d+)|"port": (\d+)[^\n]*"event": "http listening"',
                           self.log.read_text())
        assert ports, "no 'http listening' line in the sidecar log"
        last = ports[-1]
        return int(last[0] or last[1])

    def probe(self, path: str) -> int:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port()}{path}", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    def distinct(self) -> int:
        return int(query(AUX_URL, "SELECT COUNT(DISTINCT record_id) FROM hook_calls WHERE test_run = :r "
                                  "AND record_id BETWEEN :lo AND :hi",
                         {"r": self.run, "lo": self.ids[0], "hi": self.ids[-1]})[0][0])

    def wait_all(self, timeout: float = 300, expected: int | None = None) -> None:
        self.writer.join(timeout=600)
        want = self.rows if expected is None else expected
        wait_for(f"{want} ids at the hook", lambda: self.distinct() >= want, timeout=timeout, every=1)

    def figures(self, started: float, dup_bound: int | None = None, lost_ok: set[int] | None = None) -> dict[str, Any]:
        rows = query(AUX_URL, "SELECT record_id, COUNT(*), MIN(called_at), MAX(called_at) FROM hook_calls "
                              "WHERE test_run = :r AND record_id BETWEEN :lo AND :hi GROUP BY record_id",
                     {"r": self.run, "lo": self.ids[0], "hi": self.ids[-1]})
        seen = {r[0] for r in rows}
        lost = sorted(set(self.ids) - seen - (lost_ok or set()))
        duplicates = sum(r[1] - 1 for r in rows)
        first = min(r[2] for r in rows)
        last = max(r[3] for r in rows)
        fig = {"scenario": self.name, "rows": self.rows, "lost": len(lost), "duplicates": duplicates,
               "seconds": round(time.monotonic() - started, 1)}
        print("FIGURES " + " ".join(f"{k}={v}" for k, v in fig.items()), flush=True)
        assert not lost, f"{len(lost)} ids never reached the hook, e.g. {lost[:5]}"
        if self.fault_at is not None:
            fault = self.fault_at.replace(tzinfo=None)
            assert first <= fault <= last, (first, fault, last)
            assert self.rows - self.committed_before_fault >= self.rows / 4, "the fault landed too late"
        if dup_bound is not None:
            assert duplicates <= dup_bound, f"{duplicates} duplicates > bound {dup_bound}"
        return fig
