"""Probe semantics: each liveness and readiness state."""

from __future__ import annotations

import time

from sidecar.health import Health


def test_not_ready_before_assignment_then_ready() -> None:
    """Readiness waits for the first assignment (an empty one counts)."""
    h = Health()
    assert h.ready() == (False, "waiting for the first partition assignment / engine start")
    h.started = True
    assert h.ready() == (True, "ok")


def test_dependency_down_halted_shutting_down() -> None:
    """A down dependency, a halt and shutdown each make it unready; liveness stays true."""
    h = Health(started=True)
    h.dependency("kafka", False)
    assert h.ready() == (False, "dependency down: kafka") and h.live()[0]
    h.dependency("kafka", True)
    h.halted = True
    assert h.ready() == (False, "halted by policy") and h.live()[0]
    h.halted = False
    h.shutting_down = True
    assert h.ready() == (False, "shutting down")


def test_liveness_follows_heartbeat_and_hook_timeout() -> None:
    """Stale heartbeat or a hook past its timeout fail liveness; a running hook within it does not."""
    h = Health(loop_stall_s=0.05, hook_timeout_s=0.05)
    assert h.live()[0]
    time.sleep(0.08)
    assert h.live() == (False, h.live()[1]) and "not ticked" in h.live()[1]
    h.beat()
    h.hook_begin("slow")
    assert h.live() == (True, "hook slow running")
    time.sleep(0.08)
    ok, why = h.live()
    assert not ok and "hook slow running for" in why
    h.hook_end()
    assert h.live()[0]
