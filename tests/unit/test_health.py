"""Probe semantics: each liveness and readiness state."""

from __future__ import annotations

import itertools
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
    h.calls(("slow", time.monotonic()), 0, 2)
    assert h.live() == (True, "ok")
    time.sleep(0.08)
    h.beat()
    ok, why = h.live()
    assert not ok and "hook slow running for" in why
    h.calls(None, 3, 2)
    ok, why = h.live()
    assert not ok and "3 timed-out hook calls" in why
    h.calls(None, 2, 2)
    assert h.live()[0]


def test_dependency_reports_changes_only() -> None:
    """`dependency` says whether the state changed, so callers log transitions once."""
    h = Health(started=True)
    assert h.dependency("kafka", True) is False
    assert h.dependency("kafka", False) is True
    assert h.dependency("kafka", False) is False
    assert h.dependency("kafka", True) is True


def test_watcher_runs_each_check_on_its_interval_and_readiness_follows() -> None:
    """The watcher thread (not the main loop) drives a check's readiness, at its own interval."""
    from sidecar.databases import Databases
    from sidecar.logs import get_logger
    from sidecar.metrics import NoMetrics
    from sidecar.watch import Watcher

    calls: list[float] = []
    state = {"up": False}

    def check() -> None:
        calls.append(time.monotonic())
        if not state["up"]:
            raise ConnectionError("broker did not answer")

    h = Health(started=True)
    w = Watcher(Databases(), NoMetrics(), h, get_logger(), interval_s=60, checks={"kafka": (check, 0.1)})
    w.start()
    try:
        deadline = time.monotonic() + 5
        while h.ready()[0] or not calls:
            assert time.monotonic() < deadline, "the check never ran"
            time.sleep(0.02)
        assert h.ready() == (False, "dependency down: kafka")
        state["up"] = True
        while not h.ready()[0]:
            assert time.monotonic() < deadline, "readiness did not come back"
            time.sleep(0.02)
    finally:
        w.stop()
        w.join(2)
    assert not w.is_alive()
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps and min(gaps) >= 0.09, gaps


def test_a_bounded_blocking_call_is_live_until_its_bound() -> None:
    """Inside a synchronous commit the loop cannot tick: live up to the call's bound, then not."""
    h = Health(loop_stall_s=0.02)
    h.call_begin("kafka offset commit", 0.1)
    time.sleep(0.05)  # past loop_stall_s, within the bound
    assert h.live() == (True, "kafka offset commit running")
    time.sleep(0.08)
    live, why = h.live()
    assert not live and why.startswith("kafka offset commit running for"), why
    h.call_end()
    assert h.live() == (True, "ok")


def test_a_call_on_the_loops_thread_does_not_hide_a_hung_worker_call() -> None:
    """While the loop is inside a bounded call (a `thread: loop` hook's call, a commit), a worker's
    call past hook_timeout_s or too many abandoned calls still fail liveness."""
    h = Health(loop_stall_s=0.02, hook_timeout_s=0.05)
    h.calls(("slow_worker_hook", time.monotonic() - 1.0), 0, 16)
    h.call_begin("hook pinned (thread loop)", 300.0)
    live, why = h.live()
    assert not live and why.startswith("hook slow_worker_hook running for"), why
    h.calls(None, 17, 16)
    live, why = h.live()
    assert not live and "17 timed-out hook calls" in why, why
    h.calls(None, 0, 16)
    time.sleep(0.03)  # past loop_stall_s: the loop cannot tick inside the call
    assert h.live() == (True, "hook pinned (thread loop) running")
