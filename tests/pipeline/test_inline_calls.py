"""Fast hooks run on the loop's thread (`dispatch.inline_below_us`): where calls run, and that
order, commits, failures and slow calls behave exactly as on the workers."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest
import structlog

from sidecar.checkpoint import Checkpoint
from sidecar.databases import Databases
from sidecar.decode import Decoder
from sidecar.dispatch import Dispatcher
from sidecar.errors import ExitNow
from sidecar.hooks import HookSpec
from sidecar.loop import run_loop
from sidecar.param import ParamFactory
from sidecar.testing import MemorySource
from tests.fixtures import raws

_TEMPLATE = next(r for r in raws("postgres-noschemas") if r.value and r.topic.endswith("events_default_identity"))
_DOC = orjson.loads(_TEMPLATE.value or b"{}")
TOPIC = _TEMPLATE.topic


def messages(n: int, partitions: int = 1) -> list[Any]:
    from sidecar.events import RawMessage

    out = []
    for i in range(n):
        doc = dict(_DOC, op="c", after={"id": i, "note": f"row {i}"})
        out.append(RawMessage(TOPIC, i % partitions, i // partitions, orjson.dumps({"id": i}), orjson.dumps(doc)))
    return out


def run(specs: list[HookSpec], msgs: list[Any], probe: int = 20, below_s: float = 0.001, max_in_flight: int = 10_000,
        **kw: Any) -> tuple[MemorySource, Dispatcher]:
    source = MemorySource(msgs, batch_size=50)
    log = structlog.get_logger()
    cp = Checkpoint(source, 0.0, 1)
    d = Dispatcher(specs, ParamFactory("p", Databases(), log), cp, log, inline_below_s=below_s,
                   inline_probe_calls=probe, **kw)
    try:
        run_loop(source, Decoder(), d, cp, threading.Event(), until_exhausted=True, shutdown_grace_s=1,
                 max_in_flight=max_in_flight)
    finally:
        d.close()
    return source, d


@pytest.mark.pure_python  # subclasses or patches a compiled class
def test_a_fast_hook_moves_to_the_loop_thread_after_its_probe_and_keeps_order(monkeypatch: Any) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []  # (id, thread)
    direct = 0
    plain = Dispatcher._direct

    def counted(self: Dispatcher, *args: Any) -> bool:
        nonlocal direct
        made = plain(self, *args)
        direct += made
        return made

    monkeypatch.setattr(Dispatcher, "_direct", counted)

    def hook(p: Any) -> None:
        seen.append((p.record["id"], threading.get_ident()))

    source, d = run([HookSpec("fast", hook, "events_default_identity")], messages(600), max_in_flight=60)
    assert direct > 400                                              # most calls made as records arrived
    assert [i for i, _ in seen] == list(range(600))                 # every record once, in order
    threads = [t for _, t in seen]
    assert threads[0] != loop_thread                                 # probed on a worker first
    assert threads[-1] == loop_thread                                # then on the loop's thread
    first_inline = threads.index(loop_thread)
    assert 20 <= first_inline < 300
    assert all(t == loop_thread for t in threads[first_inline:])    # and it stays there
    assert source.committed[(TOPIC, 0)] == 600
    assert d.stats.calls_ok == 600


def test_disabled_or_ineligible_hooks_never_run_on_the_loop_thread() -> None:
    loop_thread = threading.get_ident()
    threads: dict[str, set[int]] = {"off": set(), "timed": set(), "async": set()}

    def plain(name: str) -> Any:
        def hook(p: Any) -> None:
            threads[name].add(threading.get_ident())
        return hook

    async def async_hook(p: Any) -> None:
        threads["async"].add(threading.get_ident())

    run([HookSpec("off", plain("off"), "events_default_identity")], messages(300), below_s=0.0)
    run([HookSpec("timed", plain("timed"), "events_default_identity", timeout_s=5),
         HookSpec("async", async_hook, "events_default_identity")], messages(300))
    for name, seen in threads.items():
        assert seen and loop_thread not in seen, name


def test_a_slow_call_sends_the_hook_back_to_the_workers() -> None:
    """The first call at or past id 200 that runs inline takes 30 ms (> 10 × inline_below): the
    next calls run on workers again, for a whole probe window. (The slow call is the first inline
    one from 200 on, not id 200 itself: on a busy machine any call may take over 1 ms — a
    collection, a preemption — and send the hook to the workers for a window just then.)"""
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []
    slow_at: list[int] = []

    def hook(p: Any) -> None:
        i = p.record["id"]
        if i >= 200 and not slow_at and threading.get_ident() == loop_thread:
            slow_at.append(i)
            time.sleep(0.03)  # > 10 × inline_below (1 ms)
        seen.append((i, threading.get_ident()))

    run([HookSpec("h", hook, "events_default_identity")], messages(260), probe=1000)
    assert all(t != loop_thread for _, t in seen)                    # 1,000-call probe never ends
    assert not slow_at

    seen.clear()
    source, _ = run([HookSpec("h", hook, "events_default_identity")], messages(400), probe=20)
    assert [i for i, _ in seen] == list(range(400))
    by_id = dict(seen)
    assert slow_at and slow_at[0] < 380, slow_at                     # inline again soon after 200
    slow = slow_at[0]
    assert by_id[slow] == loop_thread                                # inline when it turned slow
    assert by_id[slow + 1] != loop_thread                            # the next calls: workers again
    assert by_id[slow + 20] != loop_thread                           # on workers for a whole new probe window
    assert source.committed[(TOPIC, 0)] == 400


def test_failures_retries_and_partitions_behave_as_on_workers() -> None:
    loop_thread = threading.get_ident()
    attempts: dict[int, int] = {}
    order: dict[int, list[int]] = {0: [], 1: []}

    def hook(p: Any) -> None:
        i = p.record["id"]
        attempts[i] = attempts.get(i, 0) + 1
        if i in (300, 301) and attempts[i] < 3:
            raise RuntimeError("transient")
        order[p.ctx.partition].append(i)

    spec = HookSpec("h", hook, "events_default_identity", initial_backoff_s=0.01, max_backoff_s=0.02, concurrency=2)
    source, d = run([spec], messages(400, partitions=2))
    assert attempts[300] == 3 and attempts[301] == 3                  # retried until they succeed
    assert order[0] == list(range(0, 400, 2)) and order[1] == list(range(1, 400, 2))  # per-partition order kept
    assert source.committed == {(TOPIC, 0): 200, (TOPIC, 1): 200}
    assert d.stats.calls_failed == 4 and d.stats.calls_ok == 400
    assert d._hooks["h"].inline and threading.get_ident() == loop_thread


def test_the_second_signal_is_not_taken_for_a_hook_failure() -> None:
    """ExitNow (the second SIGTERM's) raised during a call on the loop thread ends the process."""
    calls = 0

    def hook(p: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 100:
            raise ExitNow(1)

    with pytest.raises(ExitNow):
        run([HookSpec("h", hook, "events_default_identity")], messages(200))


def test_calls_made_at_intake_are_counted_in_metrics_and_respect_concurrency() -> None:
    """A single fast hook is called as records arrive; its successes still reach the metrics, and
    it is never called at intake while a worker run of the same (concurrency 1) hook is going."""
    from sidecar.metrics import Metrics

    active = 0
    overlaps = 0
    lock = threading.Lock()

    def hook(p: Any) -> None:
        nonlocal active, overlaps
        with lock:
            active += 1
            overlaps += active > 1
        if p.record["id"] % 97 == 0:
            time.sleep(0.002)  # a slow call now and then: back to the workers, then inline again
        with lock:
            active -= 1

    metrics = Metrics()
    metrics.declare_hooks(["h"])
    source, d = run([HookSpec("h", hook, "events_default_identity")], messages(3000), metrics=metrics)
    assert overlaps == 0
    assert metrics._run_counts[("h", "success")] == 3000 == d.stats.calls_ok
    assert source.committed[(TOPIC, 0)] == 3000
