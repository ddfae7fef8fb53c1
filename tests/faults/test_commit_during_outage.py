"""Offset commits issued just as the broker disappears.

The periodic commit (`maybe_commit`) is asynchronous: it returns at once even then. A
synchronous commit (a revoke's, the final one) blocks in librdkafka until session.timeout.ms
("Waiting for coordinator"); the main loop cannot tick meanwhile. Liveness must count it as a
bounded wait for a dependency (true up to session.timeout.ms + 15 s), not as a stuck loop —
otherwise a broker outage would restart every pod. The fault scenario 3 cannot force this path
(librdkafka usually reports the outage first and the commit is skipped), so this test calls the
commits directly.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

from sidecar.checkpoint import Checkpoint
from sidecar.health import Health
from sidecar.logs import get_logger
from sidecar.sources.kafka import KafkaSource
from tests.faults.harness import TOPIC
from tests.integration.stack import KAFKA, REPO

STACK = REPO / "deploy" / "local" / "stack"


def test_commit_blocked_by_a_vanished_broker_stays_live_within_its_bound() -> None:
    health = Health(loop_stall_s=1.0)
    conf = {"bootstrap.servers": KAFKA, "group.id": f"faults-commit-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": "false", "auto.offset.reset": "earliest", "session.timeout.ms": "6000"}
    source = KafkaSource(conf, [TOPIC], get_logger(), health=health)
    checkpoint = Checkpoint(source, 0.0, 10**9, health, "kafka")
    source.listener = type("L", (), {"assigned": lambda self, u: checkpoint.assign(u),
                                     "revoked": lambda self, u: None, "lost": lambda self, u: None})()
    deadline = time.monotonic() + 60
    got = []
    while not got:
        assert time.monotonic() < deadline, "no record from the topic within 60 s"
        got = list(source.poll(0.5))
    token = checkpoint.begin(got[0])
    assert token is not None
    checkpoint.finish(token)

    subprocess.run([str(STACK), "down", "kafka"], check=True, capture_output=True, timeout=120)
    try:
        assert "kafka" not in health.down  # nothing served poll() since: the commit is attempted
        commit = threading.Thread(target=checkpoint.commit)  # synchronous (a revoke's, the final one)
        health.beat()  # as the loop does before it commits
        started = time.monotonic()
        commit.start()
        samples: list[tuple[float, bool, str]] = []
        while commit.is_alive() and time.monotonic() - started < 40:
            live, why = health.live()
            samples.append((time.monotonic() - started, live, why))
            time.sleep(0.1)
        commit.join(30)
        took = time.monotonic() - started
        after = health.live()  # the loop would tick again right after the commit returns
        periodic = time.monotonic()
        checkpoint.commit(wait=False)  # the periodic commit is asynchronous: it never blocks the loop
        periodic_took = time.monotonic() - periodic
    finally:
        subprocess.run([str(STACK), "up", "kafka"], check=True, capture_output=True, timeout=240)
        source.close()

    assert not commit.is_alive(), "the commit did not return within session.timeout.ms + 30 s"
    # It really blocked past loop_stall_s (the path under test), and liveness held throughout.
    assert took > 3 * health.loop_stall_s, took
    assert all(live for _, live, _ in samples), [s for s in samples if not s[1]][:3]
    assert any(why == "kafka offset commit running" for _, _, why in samples)
    assert after[0] and health.busy is None, after
    assert periodic_took < 1.0, periodic_took
    print(f"FIGURES commit-during-outage blocked={took:.1f}s samples={len(samples)} all live")
