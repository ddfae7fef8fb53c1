"""Property tests of the dispatcher: random keys, delays and failures, concurrency ≥ 8."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Hashable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.testing import MemorySource, run_pipeline
from tests.fixtures import raws

_TEMPLATE = next(r for r in raws("postgres-noschemas") if r.value and r.topic.endswith("events_default_identity"))
_DOC = orjson.loads(_TEMPLATE.value or b"{}")
TOPIC = _TEMPLATE.topic


def message(partition: int, offset: int, key: int) -> RawMessage:
    doc = dict(_DOC)
    doc["after"] = {"id": key, "note": f"offset {offset}"}
    doc["op"] = "c"
    return RawMessage(TOPIC, partition, offset, orjson.dumps({"id": key}), orjson.dumps(doc))


class Checked(MemorySource):
    """Asserts at every commit that nothing at or past an unfinished record is committed."""

    def __init__(self, messages: list[RawMessage], finished: set[tuple[int, int]], lock: threading.Lock) -> None:
        super().__init__(messages, batch_size=17)
        self.finished = finished
        self.lock = lock
        self.violations: list[str] = []

    def commit(self, offsets: dict[Hashable, int]) -> bool:
        with self.lock:
            for unit, position in offsets.items():
                _, partition = unit  # type: ignore[misc]
                missing = [o for o in range(position) if (partition, o) not in self.finished]
                if missing:
                    self.violations.append(f"committed {position} on partition {partition} before {missing[:3]}")
        return super().commit(offsets)


records = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 11), st.integers(0, 3), st.booleans()),  # partition, key, ms, fail
    min_size=20,
    max_size=120,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records)
def test_key_order_and_commit_prefix_hold_under_concurrency(spec: list[tuple[int, int, int, bool]]) -> None:
    """Random keys, delays and failures never violate per-key order; commits never pass an unfinished
    record; calls on different keys do overlap."""
    offsets = [0, 0]
    msgs: list[RawMessage] = []
    plan: dict[tuple[int, int], tuple[int, bool]] = {}
    for partition, key, delay_ms, fail in spec:
        msgs.append(message(partition, offsets[partition], key))
        plan[(partition, offsets[partition])] = (delay_ms, fail)
        offsets[partition] += 1
    lock = threading.Lock()
    finished: set[tuple[int, int]] = set()
    per_key: dict[tuple[int, int], list[int]] = defaultdict(list)  # successful calls' offsets, in call order
    serial_seen: dict[int, list[int]] = defaultdict(list)
    running: set[tuple[int, int]] = set()
    overlapped = threading.Event()
    failed_once: set[tuple[int, int]] = set()
    done_by: dict[tuple[int, int], int] = defaultdict(int)  # hooks done per record
    problems: list[str] = []  # an assert inside a hook would only count as a hook failure

    def keyed(p: Any) -> None:
        where = (p.ctx.partition, p.ctx.offset)
        key = (p.ctx.partition, p.record["id"])
        with lock:
            if key in running:
                problems.append(f"two calls on key {key} at once")
            running.add(key)
            if len(running) > 1:
                overlapped.set()
        try:
            delay_ms, fail = plan[where]
            time.sleep(delay_ms / 1000)
            if fail and where not in failed_once:
                failed_once.add(where)
                raise RuntimeError("first attempt fails")
            with lock:
                per_key[key].append(where[1])
                done_by[where] += 1
                if done_by[where] == 2:
                    finished.add(where)
        finally:
            with lock:
                running.discard(key)

    def serial(p: Any) -> None:
        where = (p.ctx.partition, p.ctx.offset)
        with lock:
            serial_seen[where[0]].append(where[1])
            done_by[where] += 1
            if done_by[where] == 2:
                finished.add(where)

    source = Checked(msgs, finished, lock)
    hooks = [
        HookSpec("keyed", keyed, "t", ordering="key", concurrency=8, initial_backoff_s=0.001, max_attempts=None),
        HookSpec("serial", serial, "t"),
    ]
    run_pipeline([], hooks, source=source)
    assert source.violations == [] and problems == []
    for key, seen in per_key.items():
        assert seen == sorted(seen) and len(seen) == len(set(seen)), f"key {key} out of order: {seen}"
    for partition, seen in serial_seen.items():
        assert seen == list(range(offsets[partition])), "partition ordering broken for the serial hook"
    assert sum(len(v) for v in per_key.values()) == len(msgs)
    for partition in (0, 1):
        if offsets[partition]:
            assert source.committed[(TOPIC, partition)] == offsets[partition]
    distinct = {(p, k) for p, k, _, _ in spec}
    slow = sum(1 for _, _, d, _ in spec if d >= 2)
    if len(distinct) >= 4 and slow >= 10:
        assert overlapped.is_set(), "no two keys ever ran at once"


def test_different_keys_overlap_and_same_key_waits() -> None:
    """8 distinct keys at concurrency 8: calls overlap; a key's calls never do."""
    msgs = [message(0, i, i % 8) for i in range(64)]
    lock = threading.Lock()
    running: set[int] = set()
    peak = [0]
    order: dict[int, list[int]] = defaultdict(list)
    problems: list[int] = []

    def hook(p: Any) -> None:
        key = p.record["id"]
        with lock:
            if key in running:
                problems.append(key)
            running.add(key)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.005)
        with lock:
            running.discard(key)
            order[key].append(p.ctx.offset)

    source, stats = run_pipeline(msgs, [HookSpec("h", hook, "t", ordering="key", concurrency=8)])
    assert peak[0] >= 4 and problems == []
    assert all(v == sorted(v) for v in order.values())
    assert stats.calls_ok == 64 and source.committed[(TOPIC, 0)] == 64


def test_async_hooks_run_concurrently_on_the_event_loop() -> None:
    """`async def` hooks get the same param and run concurrently up to `concurrency`, in key order."""
    import asyncio

    msgs = [message(0, i, i % 16) for i in range(64)]
    state = {"running": 0, "peak": 0}
    order: dict[int, list[int]] = defaultdict(list)
    loops: set[int] = set()

    async def hook(p: Any) -> None:
        loops.add(id(asyncio.get_running_loop()))
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        await asyncio.sleep(0.005)
        state["running"] -= 1
        order[p.record["id"]].append(p.ctx.offset)

    spec = HookSpec("a", hook, "t", ordering="key", concurrency=16, is_async=True)
    source, stats = run_pipeline(msgs, [spec])
    assert stats.calls_ok == 64 and source.committed[(TOPIC, 0)] == 64
    assert state["peak"] >= 8 and len(loops) == 1
    assert all(v == sorted(v) for v in order.values())


def test_in_flight_bound_pauses_the_source() -> None:
    """Past max_in_flight unfinished records the source is paused; everything still finishes."""
    msgs = [message(0, i, i) for i in range(300)]
    source = MemorySource(msgs, batch_size=50)

    def hook(p: Any) -> None:
        time.sleep(0.001)

    _, stats = run_pipeline([], [HookSpec("h", hook, "t")], source=source, max_in_flight=60)
    assert source.paused >= 1 and stats.calls_ok == 300 and source.committed[(TOPIC, 0)] == 300


def test_shutdown_grace_then_cancel_commits_the_finished_prefix() -> None:
    """After stop no new call starts; running calls get the grace period, then ctx.cancelled; only the
    finished prefix is committed (the rest is redelivered)."""
    msgs = [message(0, i, i) for i in range(40)]
    stop = threading.Event()
    started: list[int] = []
    cancelled: list[int] = []

    def hook(p: Any) -> None:
        started.append(p.ctx.offset)
        if p.ctx.offset == 5:
            stop.set()
        if p.ctx.offset >= 5 and p.ctx.cancelled.wait(2):
            cancelled.append(p.ctx.offset)

    spec = HookSpec("h", hook, "t", ordering="key", concurrency=4, timeout_s=60)
    source = MemorySource(msgs)
    import structlog

    from sidecar.checkpoint import Checkpoint
    from sidecar.databases import Databases
    from sidecar.decode import Decoder
    from sidecar.dispatch import Dispatcher
    from sidecar.loop import run_loop
    from sidecar.param import ParamFactory

    cp = Checkpoint(source, 0.0, 1)
    d = Dispatcher([spec], ParamFactory("p", Databases(), structlog.get_logger()), cp, structlog.get_logger())
    t0 = time.monotonic()
    run_loop(source, Decoder(), d, cp, stop, shutdown_grace_s=0.3)
    d.close()
    assert 0.3 <= time.monotonic() - t0 < 3
    deadline = time.monotonic() + 2
    while not cancelled and time.monotonic() < deadline:     # the abandoned calls see the flag after the loop
        time.sleep(0.01)
    assert cancelled and all(o >= 5 for o in cancelled)      # running calls were told to stop
    assert len(started) <= 5 + 4                              # nothing new started after stop
    assert source.committed.get((TOPIC, 0)) == 5              # the finished prefix, not beyond


def test_revoke_waits_for_running_calls_then_drops_the_rest() -> None:
    """On revoke: no new call for the partition, its running calls get revoke_wait_s, what finished is
    committed, queued records are dropped (the next owner gets them); other partitions go on."""
    import structlog

    from sidecar.app import Rebalance
    from sidecar.checkpoint import Checkpoint
    from sidecar.databases import Databases
    from sidecar.decode import Decoder
    from sidecar.dispatch import Dispatcher
    from sidecar.param import ParamFactory

    source = MemorySource([])
    source.auto_units = False
    cp = Checkpoint(source, 0.0, 1)
    calls: list[tuple[int, int]] = []

    def hook(p: Any) -> None:
        time.sleep(0.02)
        calls.append((p.ctx.partition, p.ctx.offset))

    d = Dispatcher([HookSpec("h", hook, "t", ordering="key", concurrency=4)],
                   ParamFactory("p", Databases(), structlog.get_logger()), cp, structlog.get_logger())
    rb = Rebalance(d, cp, revoke_wait_s=1.0)
    rb.assigned([(TOPIC, 0), (TOPIC, 1)])
    dec = Decoder()
    for part in (0, 1):
        for i in range(30):
            raw = message(part, i, i % 3)
            token = cp.begin(raw)
            assert token is not None
            d.dispatch(raw, dec.decode(raw), token)
    d.service()
    time.sleep(0.05)
    rb.revoked([(TOPIC, 0)])
    p0 = [o for p, o in calls if p == 0]
    assert 0 < len(p0) < 30                                   # revoked mid-way: the rest was dropped
    prefix = next(i for i in range(31) if i not in p0)
    assert source.committed.get((TOPIC, 0), 0) == prefix        # exactly the finished prefix
    assert not cp.owns((TOPIC, 0))
    deadline = time.monotonic() + 5
    while d.pending() and time.monotonic() < deadline:
        d.service(0.01)
    d.close()
    p1 = [o for p, o in calls if p == 1]
    assert sorted(p1) == list(range(30))                       # the other partition went on
    assert all([o for o in p1 if o % 3 == k] == list(range(k, 30, 3)) for k in range(3))  # in key order
    assert cp.in_flight == 0                                   # dropping a unit does not miscount (was -N)
    assert len([o for p, o in calls if p == 0]) == len(p0)     # nothing more ran for the revoked one
