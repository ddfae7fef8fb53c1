"""Transaction and batch hooks over the captured PostgreSQL and MariaDB fixtures (real
Debezium transaction markers), through the real decode → dispatch → checkpoint path."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pytest

from sidecar.dead_letters import FileDeadLetters, read_file
from sidecar.errors import HookLoadError
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.testing import MemorySource, run_pipeline
from tests.fixtures import load, raws


def units(name: str) -> dict[Hashable, list[RawMessage]]:
    out: dict[Hashable, list[RawMessage]] = {}
    for r in raws(name):
        out.setdefault((r.topic, r.partition), []).append(r)
    return out


def arrange(name: str, how: str, seed: int = 0) -> list[RawMessage]:
    """The fixture's messages in an order a consumer of several topics may see: data before
    markers, markers before data, or a random interleaving keeping each partition's order."""
    per_unit = units(name)
    markers = [u for u in per_unit if str(u[0]).endswith(".transaction")]  # type: ignore[index]
    data = [u for u in per_unit if u not in markers]
    if how == "data_first":
        return [m for u in data + markers for m in per_unit[u]]
    if how == "markers_first":
        return [m for u in markers + data for m in per_unit[u]]
    rng = random.Random(seed)
    queues = {u: list(ms) for u, ms in per_unit.items()}
    out: list[RawMessage] = []
    while queues:
        u = rng.choice(sorted(queues, key=str))
        out.append(queues[u].pop(0))
        if not queues[u]:
            del queues[u]
    return out


def expected_transactions(name: str) -> dict[str, dict[str, Any]]:
    """From the fixture itself: each END's id (group part), event_count, per-table counts, and the
    data events (op, total_order) carrying that transaction."""
    ends: dict[str, dict[str, Any]] = {}
    events: dict[str, list[tuple[int, str]]] = {}
    for m in load(name)["messages"]:
        if m["value"] is None:
            continue
        doc = json.loads(m["value"])
        payload = doc["payload"] if "schema" in doc else doc
        if payload.get("status") == "END":
            ends[payload["id"].split(":")[0]] = payload
        elif isinstance(payload.get("transaction"), dict):
            tx = payload["transaction"]
            events.setdefault(tx["id"].split(":")[0], []).append((tx["total_order"], payload["op"]))
    return {g: {"end": e, "events": sorted(events.get(g, []))} for g, e in ends.items()}


def tx_hook(calls: list[Any], **kw: Any) -> HookSpec:
    return HookSpec("tx", calls.append, "test", mode="transaction", **kw)


@pytest.mark.parametrize("name", ["postgres-schemas", "mariadb-schemas", "postgres-noschemas", "mariadb-noschemas"])
@pytest.mark.parametrize("how", ["data_first", "markers_first", "shuffled-1", "shuffled-2", "shuffled-3"])
def test_one_call_per_transaction_in_commit_order(name: str, how: str) -> None:
    """Every transaction whose END the fixture holds is exactly one call with every counted
    event, in total_order; calls follow commit (BEGIN) order; all offsets are committed."""
    kind, _, seed = how.partition("-")
    msgs = arrange(name, kind, int(seed or 0))
    calls: list[Any] = []
    source, stats = run_pipeline(msgs, [tx_hook(calls, ops=frozenset({"c", "u", "d", "r", "t"}))])
    expected = expected_transactions(name)
    tx_calls = [c for c in calls if c.ctx.transaction.id is not None]
    assert [c.ctx.transaction.id for c in tx_calls] == list(expected)  # fixture order = commit order
    for call in tx_calls:
        want = expected[call.ctx.transaction.id]
        info = call.ctx.transaction
        assert info.event_count == want["end"]["event_count"] == len(call.records)
        assert info.counts == {d["data_collection"]: d["event_count"] for d in want["end"]["data_collections"]}
        assert [r["_op"] for r in call.records] == [op for _, op in want["events"]]
        assert info.part == 1 and info.last is True
        assert call.record is call.records[0] and all(r["_event_id"] for r in call.records)
        assert len({r["_event_id"] for r in call.records}) == len(call.records)
    # snapshot rows (no transaction) come as batch calls with transaction id None
    snapshot = [r for c in calls if c.ctx.transaction.id is None for r in c.records]
    assert snapshot and all(r["_op"] == "r" for r in snapshot)
    assert stats.transactions == len(expected) + stats.transactions_incomplete
    for unit, ms in units(name).items():
        assert source.committed[unit] == ms[-1].offset + 1  # type: ignore[operator]


def test_mariadb_begin_without_end_is_counted_not_dropped() -> None:
    """MariaDB's BEGIN without END (0-1-26, DDL only) ends when the next BEGIN comes; the last
    BEGIN of the capture (0-1-28) ends with the input: both counted, no call (no events)."""
    calls: list[Any] = []
    _, stats = run_pipeline(arrange("mariadb-schemas", "markers_first"), [tx_hook(calls)])
    assert stats.transactions_incomplete == 2
    assert "0-1-26" not in [c.ctx.transaction.id for c in calls]


def test_postgres_groups_by_txid_not_lsn() -> None:
    """PostgreSQL ids differ in their LSN part between BEGIN, events and END (754:26753656 …
    754:26754376): grouped by txId, the five events of 754 are one call."""
    calls: list[Any] = []
    run_pipeline(arrange("postgres-schemas", "shuffled", 7), [tx_hook(calls)])
    (call,) = [c for c in calls if c.ctx.transaction.id == "754"]
    assert len({r["_event_id"] for r in call.records}) == 5
    assert {r["_transaction_id"] for r in call.records} == {"754"}


def test_table_filter_calls_only_with_matching_records() -> None:
    """A transaction hook on one table gets only that table's records; transactions without one
    make no call, and their offsets are still committed."""
    calls: list[Any] = []
    hook = tx_hook(calls, tables=frozenset({"public.events_default_identity"}))
    source, _ = run_pipeline(arrange("postgres-schemas", "data_first"), [hook])
    assert {r["_destination_table"] for c in calls for r in c.records} == {"public.events_default_identity"}
    assert [c.ctx.transaction.id for c in calls] == ["757", "758", "759", "760"]  # 761 is a truncate
    for unit, ms in units("postgres-schemas").items():
        assert source.committed[unit] == ms[-1].offset + 1  # type: ignore[operator]


def test_transaction_in_parts_commits_only_after_the_last() -> None:
    """max_transaction_records=2: 754's five events come as parts 2+2+1 in total_order, only the
    last has last=True, and no offset of 754 is committed before the last part's call."""
    msgs = arrange("postgres-schemas", "data_first")
    source = MemorySource(msgs)
    seen: list[tuple[Any, dict[Hashable, int]]] = []
    hook = HookSpec("tx", lambda p: seen.append((p, dict(source.committed))), "t", mode="transaction",
                    tables=frozenset({"public.type_zoo"}))
    run_pipeline(msgs, [hook], source=source, max_transaction_records=2)
    parts = [(p.ctx.transaction.part, p.ctx.transaction.last, len(p.records)) for p, _ in seen
             if p.ctx.transaction.id == "754"]
    assert parts == [(1, False, 2), (2, False, 2), (3, True, 1)]
    orders = [r["_event_id"] for p, _ in seen if p.ctx.transaction.id == "754" for r in p.records]
    assert len(set(orders)) == 5
    first_754_offset = 4  # fxpo.public.type_zoo offsets 4..8 carry 754
    for p, committed in seen:
        if p.ctx.transaction.id == "754":
            assert committed.get(("fxpo.public.type_zoo", 0), 0) <= first_754_offset
            assert committed.get(("fxpo.transaction", 0), 0) <= 6  # BEGIN 754 at offset 6
    assert source.committed[("fxpo.public.type_zoo", 0)] == 14


def test_record_and_transaction_hooks_on_the_same_records() -> None:
    """A record hook and a transaction hook watch the same tables: each gets every record; the
    commit waits for both."""
    rec: list[Any] = []
    tx: list[Any] = []
    source, _ = run_pipeline(arrange("postgres-schemas", "shuffled", 3),
                             [HookSpec("rec", rec.append, "t"), tx_hook(tx)])
    assert sorted(p.record["_event_id"] for p in rec) == sorted(r["_event_id"] for c in tx for r in c.records)
    assert all(p.records == [p.record] for p in rec)
    for unit, ms in units("postgres-schemas").items():
        assert source.committed[unit] == ms[-1].offset + 1  # type: ignore[operator]


def test_batch_mode_bounded_calls_in_arrival_order() -> None:
    """Batch hooks get calls of at most max_records records, in arrival order, transaction id None."""
    calls: list[Any] = []
    msgs = arrange("postgres-schemas", "data_first")
    hook = HookSpec("b", calls.append, "t", mode="batch", max_records=3, max_wait_ms=10_000)
    source, _ = run_pipeline(msgs, [hook])
    assert all(1 <= len(c.records) <= 3 for c in calls) and len(calls[0].records) == 3
    assert all(c.ctx.transaction.id is None for c in calls)
    got = [r["_event_id"] for c in calls for r in c.records]
    assert len(got) == len(set(got))
    changes = sum(1 for t in expected_transactions("postgres-schemas").values() for _, op in t["events"] if op != "t")
    assert len(got) == changes + 1  # every c/u/d change of the capture and the snapshot row (no truncate)
    for unit, ms in units("postgres-schemas").items():
        assert source.committed[unit] == ms[-1].offset + 1  # type: ignore[operator]
    assert calls[0].ctx.event_id != calls[1].ctx.event_id


def test_mode_with_key_ordering_is_refused() -> None:
    """ordering: key with a transaction or batch hook is refused at load."""
    with pytest.raises(HookLoadError, match="ordering key"):
        HookSpec("x", print, "t", mode="transaction", ordering="key")


def test_failed_call_dead_lettered_as_linked_entries(tmp_path: Path) -> None:
    """A transaction call that keeps failing is dead-lettered as one entry per record, linked by
    the call id; the other transactions are called and every offset is committed."""
    ok: list[Any] = []

    def hook(p: Any) -> None:
        if p.ctx.transaction.id == "754":
            raise RuntimeError("aux db refuses")
        ok.append(p)

    store = FileDeadLetters(tmp_path / "dl.jsonl")
    source, stats = run_pipeline(arrange("postgres-schemas", "shuffled", 5),
                                 [HookSpec("tx", hook, "t", mode="transaction", max_attempts=2,
                                           initial_backoff_s=0.01)], dead_letters=store)
    store.close()
    entries = list(read_file(tmp_path / "dl.jsonl"))
    assert len(entries) == 5 and stats.dead_lettered == 1
    assert {e["call"]["id"] for e in entries} == {entries[0]["call"]["id"]}
    assert sorted(e["call"]["index"] for e in entries) == [0, 1, 2, 3, 4]
    assert entries[0]["call"]["transaction"]["id"] == "754" and entries[0]["call"]["count"] == 5
    assert "754" not in [p.ctx.transaction.id for p in ok] and len(ok) > 5
    for unit, ms in units("postgres-schemas").items():
        assert source.committed[unit] == ms[-1].offset + 1  # type: ignore[operator]


def test_halt_policy_holds_the_transaction_offsets() -> None:
    """halt on a failing transaction call: nothing at or after its records is committed."""
    def hook(p: Any) -> None:
        if p.ctx.transaction.id == "754":
            raise RuntimeError("no")

    source, _ = run_pipeline(arrange("postgres-schemas", "data_first"),
                             [HookSpec("tx", hook, "t", mode="transaction", max_attempts=1, on_failure="halt")])
    assert source.halted
    assert source.committed.get(("fxpo.public.type_zoo", 0), 0) <= 4
    assert source.committed.get(("fxpo.transaction", 0), 0) <= 6


def replay_with(tmp_path: Path, store_path: Path, hook_source: str, **options: Any) -> tuple[Path, Any]:
    """`dead-letters replay` of `store_path` with a transaction hook `tx` of this source (and these
    options): (config, result)."""
    import yaml
    from click.testing import CliRunner

    from sidecar.cli import main

    hook = tmp_path / "fixed.py"
    hook.write_text(hook_source)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "pipeline": "test-pipeline", "source": {"kind": "file", "file": {"path": str(store_path)}},
        "hooks": {"tx": {"path": str(hook), "mode": "transaction", **options}},
        "dead_letters": {"kind": "file", "path": str(store_path)}}))
    return cfg, CliRunner().invoke(main, ["dead-letters", "replay", "--config", str(cfg)])


def test_dead_letter_replay_reassembles_the_call(tmp_path: Path) -> None:
    """`dead-letters replay` calls the hook once on the whole dead-lettered call again: same
    records in the same order, same call id, same transaction; a second replay repeats nothing."""
    from click.testing import CliRunner

    from sidecar.cli import main

    store_path = tmp_path / "dl.jsonl"
    store = FileDeadLetters(store_path)
    failed: list[Any] = []

    def broken(p: Any) -> None:
        if p.ctx.transaction.id == "754":
            failed.append(p)
            raise RuntimeError("aux db refuses")

    run_pipeline(arrange("postgres-schemas", "shuffled", 2),
                 [HookSpec("tx", broken, "t", mode="transaction", max_attempts=1)], dead_letters=store)
    store.close()
    out = tmp_path / "calls.jsonl"
    hook = (
        "import json\n"
        "def checkpoint(param):\n"
        f"    with open({str(out)!r}, 'a') as f:\n"
        "        f.write(json.dumps([param.ctx.event_id, param.ctx.transaction.id, param.ctx.transaction.event_count,"
        " [r['_event_id'] for r in param.records]]) + '\\n')\n")
    cfg, result = replay_with(tmp_path, store_path, hook)
    assert result.exit_code == 0 and "replayed 5 ok, 0 failed" in result.output
    (call,) = [json.loads(line) for line in out.read_text().splitlines()]
    original = failed[0]
    assert call == [original.ctx.event_id, "754", 5, [r["_event_id"] for r in original.records]]
    again = CliRunner().invoke(main, ["dead-letters", "replay", "--config", str(cfg)])
    assert "replayed 0 ok, 0 failed (kept), 5 already replayed before" in again.output
    assert len(out.read_text().splitlines()) == 1


def test_dead_letter_replay_of_a_call_narrowed_by_where_gets_the_same_records(tmp_path: Path) -> None:
    """A transaction call narrowed by `where:` that failed is replayed with the records the hook
    got, not every record of the transaction its entries hold (found by review)."""
    store_path = tmp_path / "dl.jsonl"
    store = FileDeadLetters(store_path)
    failed: list[Any] = []

    def broken(p: Any) -> None:
        failed.append([p.ctx.event_id, [r["_event_id"] for r in p.records]])
        raise RuntimeError("aux db refuses")

    every = frozenset({"c", "u", "d", "r", "t"})
    run_pipeline(arrange("postgres-schemas", "data_first"),
                 [HookSpec("tx", broken, "t", mode="transaction", max_attempts=1, ops=every, where="_op == 'u'")],
                 dead_letters=store)
    store.close()
    whole: list[Any] = []
    run_pipeline(arrange("postgres-schemas", "data_first"), [tx_hook(whole, ops=every)])
    sizes = {c.ctx.event_id: len(c.records) for c in whole}
    assert failed and any(len(ids) < sizes[call_id] for call_id, ids in failed)  # some calls were narrowed
    out = tmp_path / "calls.jsonl"
    hook = (
        "import json\n"
        "def checkpoint(param):\n"
        f"    with open({str(out)!r}, 'a') as f:\n"
        "        f.write(json.dumps([param.ctx.event_id, [r['_event_id'] for r in param.records]]) + '\\n')\n")
    _, result = replay_with(tmp_path, store_path, hook, ops=sorted(every), where="_op == 'u'")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == failed


def synthetic_transaction(tx: int, rows: int, prefix: str = "syn") -> tuple[list[RawMessage], list[RawMessage]]:
    """(data messages, markers) of one PostgreSQL-like transaction of `rows` inserts (no schemas)."""
    data = []
    for order in range(1, rows + 1):
        value = {"before": None, "after": {"id": tx * 100_000 + order}, "op": "c", "ts_ms": 1,
                 "source": {"connector": "postgresql", "name": prefix, "schema": "public", "table": "big",
                            "ts_ms": 1, "txId": tx, "lsn": tx * 100_000 + order},
                 "transaction": {"id": f"{tx}:{tx * 100_000 + order}", "total_order": order,
                                 "data_collection_order": order}}
        data.append(RawMessage(f"{prefix}.public.big", 0, None, None, json.dumps(value).encode()))
    begin = {"status": "BEGIN", "id": f"{tx}:1", "event_count": None, "data_collections": None}
    end = {"status": "END", "id": f"{tx}:2", "event_count": rows,
           "data_collections": [{"data_collection": "public.big", "event_count": rows}]}
    markers = [RawMessage(f"{prefix}.transaction", 0, None, None, json.dumps(m).encode()) for m in (begin, end)]
    return data, markers


def test_transaction_larger_than_in_flight_bound_does_not_deadlock() -> None:
    """Two 5,000-row transactions whose markers come after all their rows, with max_in_flight=1,000:
    the source is not kept paused while every held record waits for the markers; each
    transaction is one call of 5,000 records."""
    data1, markers1 = synthetic_transaction(1, 5000)
    data2, markers2 = synthetic_transaction(2, 5000)
    msgs = [*data1, *data2, *markers1, *markers2]
    numbered = [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(
        [m for m in msgs if m.topic.endswith("big")])]
    numbered += [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(
        [m for m in msgs if m.topic.endswith("transaction")])]
    calls: list[Any] = []
    source, _ = run_pipeline(numbered, [tx_hook(calls)], max_in_flight=1000)
    assert [(c.ctx.transaction.id, len(c.records), c.ctx.transaction.last) for c in calls] == [
        ("1", 5000, True), ("2", 5000, True)]
    assert [r["id"] for r in calls[0].records] == list(range(100_001, 105_001))
    assert source.committed[("syn.public.big", 0)] == 10_000 and source.committed[("syn.transaction", 0)] == 4


def test_metrics_records_per_call_open_and_incomplete_transactions() -> None:
    """Records per call are observed per hook; the MariaDB capture's two ENDless BEGINs are counted
    by reason; no transaction stays open."""
    from prometheus_client import generate_latest

    from sidecar.metrics import Metrics

    metrics = Metrics()
    calls: list[Any] = []
    run_pipeline(arrange("mariadb-schemas", "markers_first"), [tx_hook(calls)], metrics=metrics)
    text = generate_latest(metrics.registry).decode()
    n_calls = len(calls)
    n_records = sum(len(c.records) for c in calls)
    assert f'checkpoint_hook_call_records_count{{hook="tx"}} {float(n_calls)}' in text
    assert f'checkpoint_hook_call_records_sum{{hook="tx"}} {float(n_records)}' in text
    assert 'checkpoint_transactions_incomplete_total{reason="no_end_empty"} 1.0' in text
    assert 'checkpoint_transactions_incomplete_total{reason="end_of_input"} 1.0' in text
    assert "checkpoint_open_transactions 0.0" in text


def test_ordering_partition_serial_none_concurrent() -> None:
    """Transaction hooks: ordering partition runs one call at a time in commit order; ordering none
    with concurrency 4 runs calls at once."""
    import threading
    import time as _time

    def hook_with(counter: dict[str, int], order: list[str]) -> Any:
        lock = threading.Lock()

        def fn(p: Any) -> None:
            with lock:
                counter["now"] += 1
                counter["max"] = max(counter["max"], counter["now"])
                order.append(p.ctx.transaction.id)
            _time.sleep(0.05)
            with lock:
                counter["now"] -= 1
        return fn

    serial = {"now": 0, "max": 0}
    serial_order: list[str] = []
    wide = {"now": 0, "max": 0}
    msgs = arrange("postgres-schemas", "shuffled", 11)
    run_pipeline(msgs, [HookSpec("s", hook_with(serial, serial_order), "t", mode="transaction"),
                        HookSpec("w", hook_with(wide, []), "t", mode="transaction", ordering="none",
                                 concurrency=4)])
    assert serial["max"] == 1 and wide["max"] > 1
    assert [t for t in serial_order if t is not None] == [t for t in expected_transactions("postgres-schemas")
                                                          if t != "761"]  # 761: a truncate, not in default ops


def test_replay_file_with_markers_calls_transactions(tmp_path: Path) -> None:
    """`replay FILE` with markers and data events in stream order calls a transaction hook once per
    transaction, like `run`."""
    from click.testing import CliRunner

    from sidecar.cli import main

    lines = [json.dumps({"topic": m.topic, "partition": m.partition, "offset": m.offset,
                         "key": None if m.key is None else m.key.decode(),
                         "value": None if m.value is None else m.value.decode()})
             for m in arrange("postgres-schemas", "shuffled", 4)]
    data = tmp_path / "capture.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "calls.txt"
    hook = tmp_path / "h.py"
    hook.write_text("def checkpoint(param):\n"
                    f"    open({str(out)!r}, 'a').write(f'{{param.ctx.transaction.id}} {{len(param.records)}}\\n')\n")
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"pipeline": "p", "source": {"kind": "file", "file": {"path": str(data)}},
                                   "hooks": {"tx": {"path": str(hook), "mode": "transaction"}}}))
    result = CliRunner().invoke(main, ["replay", str(data), "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    got = [line.split() for line in out.read_text().splitlines()]
    want = [[t, str(sum(1 for _, op in e["events"] if op != "t"))]
            for t, e in expected_transactions("postgres-schemas").items() if t != "761"]
    assert [g for g in got if g[0] != "None"] == want
    assert [g for g in got if g[0] == "None"] == [["None", "1"]]  # the snapshot row, as a batch call


def test_call_timeout_cancels_and_retries_the_whole_call() -> None:
    """A transaction call past timeout_s is given up on (ctx.cancelled set) and the whole call is
    retried; the retry gets every record of the transaction again."""
    attempts: list[tuple[int, bool]] = []

    def hook(p: Any) -> None:
        if p.ctx.transaction.id == "754":
            first = not attempts
            attempts.append((len(p.records), first))
            if first:
                assert p.ctx.cancelled.wait(5)  # hangs until the dispatcher gives up on it

    source, stats = run_pipeline(arrange("postgres-schemas", "data_first"),
                                 [HookSpec("tx", hook, "t", mode="transaction", timeout_s=0.2,
                                           initial_backoff_s=0.01)])
    assert attempts == [(5, True), (5, False)] and stats.abandoned == 1
    for unit, ms in units("postgres-schemas").items():
        assert source.committed[unit] == ms[-1].offset + 1  # type: ignore[operator]


def test_revoke_drops_open_transactions_touching_the_revoked_partition() -> None:
    """forget(units) on a revoke: an open transaction holding a record of a revoked partition is
    dropped uncommitted (its next owner gets all of it); the others still complete and are called."""
    import structlog

    from sidecar.checkpoint import Checkpoint
    from sidecar.databases import Databases
    from sidecar.decode import Decoder
    from sidecar.dispatch import Dispatcher
    from sidecar.param import ParamFactory

    msgs = arrange("postgres-schemas", "data_first")
    source = MemorySource(msgs)
    checkpoint = Checkpoint(source, 0.0, 1)
    calls: list[Any] = []
    log = structlog.get_logger("test")
    dispatcher = Dispatcher([tx_hook(calls)], ParamFactory("p", Databases(), log), checkpoint, log)
    decoder = Decoder()
    revoked = ("fxpo.public.type_zoo", 0)
    try:
        data = [m for m in msgs if not m.topic.endswith(".transaction")]
        for raw in data:
            token = checkpoint.begin(raw)
            assert token is not None
            dispatcher.dispatch(raw, decoder.decode(raw), token)
        assert dispatcher.assembler is not None
        before = dispatcher.assembler.open_count
        dispatcher.forget({revoked})
        checkpoint.drop({revoked})
        after = dispatcher.assembler.open_count
        for raw in msgs[len(data):]:
            token = checkpoint.begin(raw)
            assert token is not None
            dispatcher.dispatch(raw, decoder.decode(raw), token)
        deadline = time.monotonic() + 5
        while dispatcher.pending() and time.monotonic() < deadline:
            dispatcher.service(0.01)
    finally:
        dispatcher.close()
    assert before == 11 and after == 5  # 751-756 held type_zoo records; 757-761 did not
    assert [c.ctx.transaction.id for c in calls] == ["757", "758", "759", "760"]
    assert all(r["_destination_table"] == "public.events_default_identity" for c in calls for r in c.records)


@pytest.mark.pure_python  # subclasses or patches a compiled class
def test_with_transaction_hooks_each_message_is_parsed_whole_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every change is read in full at intake when transaction or batch hooks exist: the loop
    parses it once (orjson) instead of routing it (msgspec) first; record-only pipelines route."""
    from sidecar.decode import Decoder

    routed = 0
    plain = Decoder._route

    def counted(self: Decoder, raw: RawMessage, value: bytes) -> Any:
        nonlocal routed
        routed += 1
        return plain(self, raw, value)

    monkeypatch.setattr(Decoder, "_route", counted)
    msgs = arrange("postgres-noschemas", "data_first")
    calls: list[Any] = []
    run_pipeline(msgs, [tx_hook(calls)])
    assert routed == 0 and sum(len(c.records) for c in calls) > 10
    seen: list[Any] = []
    run_pipeline(msgs, [HookSpec("rec", seen.append, "test")])
    assert routed > 10 and seen


_BAD_KEY = json.dumps({"schema": {"type": "struct", "optional": False, "name": "k", "fields": [
    {"field": "id", "type": "bytes", "optional": False, "name": "org.apache.kafka.connect.data.Decimal",
     "parameters": {"scale": "2"}}]}, "payload": {"id": "%%% not base64"}}).encode()
"""A message key that does not match its schema (not base64 for a Decimal)."""


def test_bulk_calls_do_not_decode_the_message_key() -> None:
    """No hook reads the message key: with transaction hooks it is not decoded at intake (as in
    record mode), so a key that does not match its schema does not keep a row from its call;
    read anyway, it still fails as a decode error."""
    from sidecar.decode import DecodeError

    data, markers = synthetic_transaction(7, 3)
    data[1] = RawMessage(data[1].topic, 0, None, _BAD_KEY, data[1].value)
    msgs = [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(data)]
    msgs += [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(markers)]
    calls: list[Any] = []
    source, stats = run_pipeline(msgs, [tx_hook(calls)])
    assert [(c.ctx.transaction.id, [r["id"] for r in c.records]) for c in calls] == [
        ("7", [700_001, 700_002, 700_003])]
    assert stats.decode_failures == 0 and source.committed[("syn.public.big", 0)] == 3
    with pytest.raises(DecodeError):
        _ = calls[0]._events[1].key


def test_dead_letter_replay_of_a_call_with_a_key_that_does_not_decode(tmp_path: Path) -> None:
    """Replay decodes a dead-lettered call's records as intake does (all but the key): a call that
    held such a row and failed is replayed whole, not refused as "no longer a change event"."""


    data, markers = synthetic_transaction(7, 3)
    data[1] = RawMessage(data[1].topic, 0, None, _BAD_KEY, data[1].value)
    msgs = [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(data)]
    msgs += [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(markers)]
    store_path = tmp_path / "dl.jsonl"
    store = FileDeadLetters(store_path)

    def broken(p: Any) -> None:
        raise RuntimeError("aux db refuses")

    run_pipeline(msgs, [HookSpec("tx", broken, "t", mode="transaction", max_attempts=1)], dead_letters=store)
    store.close()
    out = tmp_path / "ids.txt"
    _, result = replay_with(tmp_path, store_path, "def checkpoint(param):\n"
                            f"    open({str(out)!r}, 'a').write(repr([r['id'] for r in param.records]))\n")
    assert result.exit_code == 0 and "replayed 3 ok, 0 failed" in result.output, result.output
    assert out.read_text() == "[700001, 700002, 700003]"


def test_transaction_hooks_each_get_their_own_records() -> None:
    """Two transaction hooks on the same records: equal records, but each call its own list and
    dicts (top level) — the first hook emptying and changing its records changes nothing the second sees;
    a hook taking fewer tables gets only its records."""
    data, markers = synthetic_transaction(3, 4)
    msgs = [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(data)]
    msgs += [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(markers)]
    seen: dict[str, list[dict[str, Any]]] = {}

    def vandal(p: Any) -> None:
        seen["vandal"] = [dict(r) for r in p.records]
        for r in p.records:
            r.clear()
            r["_op"] = "x"
        p.records.append({"_op": "extra"})

    def reader(p: Any) -> None:
        seen["reader"] = [dict(r) for r in p.records]

    hooks = [HookSpec("vandal", vandal, "test", mode="transaction"),
             HookSpec("reader", reader, "test", mode="transaction"),
             HookSpec("none", lambda p: seen.setdefault("none", []), "test", tables=frozenset({"public.other"}),
                      mode="transaction")]
    run_pipeline(msgs, hooks)
    assert [r["id"] for r in seen["reader"]] == [300_001, 300_002, 300_003, 300_004]
    assert seen["reader"] == seen["vandal"] and all(r["_op"] == "c" and r["_event_id"] for r in seen["reader"])
    assert "none" not in seen


@pytest.mark.parametrize("order", ["2", 1.5, True, [2]])
def test_transaction_order_that_is_not_an_integer_is_a_decode_failure(tmp_path: Path, order: Any) -> None:
    """A data event whose transaction block's total_order is not an integer (a string among ints
    stopped the run: TypeError in the sort that puts a transaction in commit order) is
    dead-lettered with the reason; the rest of its transaction is called (ended incomplete,
    counted), and all offsets are committed."""
    data, markers = synthetic_transaction(5, 3)
    bad = json.loads(data[1].value or b"")
    bad["transaction"]["total_order"] = order
    data[1] = RawMessage(data[1].topic, 0, None, None, json.dumps(bad).encode())
    msgs = [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(data)]
    msgs += [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(markers)]
    calls: list[Any] = []
    store = FileDeadLetters(tmp_path / "dl.jsonl")
    source, stats = run_pipeline(msgs, [tx_hook(calls)], dead_letters=store)
    store.close()
    assert [[r["id"] for r in c.records] for c in calls] == [[500_001, 500_003]]
    assert stats.decode_failures == 1 and stats.transactions_incomplete == 1
    (entry,) = read_file(tmp_path / "dl.jsonl")
    assert entry["reason"] == "not_envelope" and "total_order" in entry["error"]
    assert source.committed == {("syn.public.big", 0): 3, ("syn.transaction", 0): 2}


_ODD = [None, "", "x", "1", 1.5, -1, 0, 2**70, -(2**70), True, [], {}, [1], {"a": 1}, "1:2", ":", "\x00", 1e308]


def _mangle(doc: Any, rng: random.Random) -> Any:
    """One field anywhere in `doc` replaced by an odd value (or, in an object, removed)."""
    def paths(node: Any, at: tuple[Any, ...] = ()) -> Any:
        yield at
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            yield from paths(v, (*at, k))

    at = rng.choice([p for p in paths(doc) if p])
    parent = doc
    for k in at[:-1]:
        parent = parent[k]
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[at[-1]]
    else:
        parent[at[-1]] = rng.choice(_ODD)
    return doc


@pytest.mark.parametrize("seed", range(0, 200, 25))
def test_mangled_transaction_metadata_never_stops_the_run(tmp_path: Path, seed: int) -> None:
    """Markers and data events with 1–3 fields replaced by odd values (wrong types, huge numbers,
    missing keys), through transaction, batch and record hooks with a dead-letter store: the run
    never raises, and every offset is committed (each message called, dead-lettered or skipped).
    (Before 292e682 a string total_order stopped the run.)"""
    for case in range(seed, seed + 25):
        rng = random.Random(case)
        msgs: list[RawMessage] = []
        for tx in range(1, 4):
            data, markers = synthetic_transaction(tx, rng.randint(1, 4))
            msgs += data + markers
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(msgs))
            doc = _mangle(json.loads(msgs[i].value or b""), rng)
            msgs[i] = RawMessage(msgs[i].topic, 0, None, None, json.dumps(doc).encode())
        counts: dict[str, int] = {}
        numbered = []
        for m in msgs:
            counts[m.topic] = counts.get(m.topic, 0) + 1
            numbered.append(RawMessage(m.topic, 0, counts[m.topic] - 1, m.key, m.value))
        store = FileDeadLetters(tmp_path / f"dl-{case}.jsonl")
        hooks = [HookSpec("tx", lambda p: p.records, "t", mode="transaction"),
                 HookSpec("batch", lambda p: p.records, "t", mode="batch"),
                 HookSpec("rec", lambda p: (p.record, p.ctx), "t")]
        source, _ = run_pipeline(numbered, hooks, dead_letters=store, transaction_end_timeout_s=0.0)
        store.close()
        assert source.committed == {(t, 0): n for t, n in counts.items()}, case


def test_two_dead_lettered_calls_with_one_call_id_are_each_replayed(tmp_path: Path) -> None:
    """The same transaction dead-lettered twice (its offsets were not committed, a restart
    delivered it again) gives two calls with the same call id: replay keeps their entries apart
    (each call's `link`) and calls the hook on each, instead of finding "6 of its 3 entries"
    and never replaying either."""
    data, markers = synthetic_transaction(8, 3)
    msgs = [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(data)]
    msgs += [RawMessage(m.topic, 0, i, m.key, m.value) for i, m in enumerate(markers)]
    store_path = tmp_path / "dl.jsonl"

    def broken(p: Any) -> None:
        raise RuntimeError("aux db refuses")

    for _ in range(2):
        store = FileDeadLetters(store_path)
        run_pipeline(msgs, [HookSpec("tx", broken, "t", mode="transaction", max_attempts=1)], dead_letters=store)
        store.close()
    entries = list(read_file(store_path))
    assert len(entries) == 6 and len({e["call"]["id"] for e in entries}) == 1
    assert len({e["call"]["link"] for e in entries}) == 2
    out = tmp_path / "ids.txt"
    _, result = replay_with(tmp_path, store_path, "def checkpoint(param):\n"
                            f"    open({str(out)!r}, 'a').write(repr([r['id'] for r in param.records]) + '\\n')\n")
    assert result.exit_code == 0 and "replayed 6 ok, 0 failed" in result.output, result.output
    assert out.read_text().splitlines() == ["[800001, 800002, 800003]"] * 2


@pytest.mark.parametrize("name", ["postgres-schemas", "mariadb-noschemas"])
def test_where_filters_each_record_of_a_transaction_call(name: str) -> None:
    """`where:` on a transaction hook tests every record, not the call's first: the hook gets the
    records that match, in commit order, under the call's id; a transaction with none is no call.
    (Before, a call was kept or dropped whole by its first record.)"""
    msgs = arrange(name, "data_first")
    every = frozenset({"c", "u", "d", "r", "t"})
    plain: list[Any] = []
    run_pipeline(msgs, [tx_hook(plain, ops=every)])
    filtered: list[Any] = []
    source, _ = run_pipeline(msgs, [tx_hook(filtered, ops=every, where="_op == 'u'")])
    want = [(c.ctx.event_id, [r["_event_id"] for r in c.records if r["_op"] == "u"]) for c in plain]
    want = [(call_id, ids) for call_id, ids in want if ids]
    assert want and any(len(c.records) > len(ids) for c, (_, ids) in zip(
        [c for c in plain if any(r["_op"] == "u" for r in c.records)], want, strict=True))  # some calls narrowed
    assert [(c.ctx.event_id, [r["_event_id"] for r in c.records]) for c in filtered] == want
    assert all(c.record is c.records[0] and c.ctx.op == "u" for c in filtered)
    for unit, ms in units(name).items():
        assert source.committed[unit] == ms[-1].offset + 1  # type: ignore[operator]


def test_where_on_a_retried_call_counts_filtered_records_once() -> None:
    """A transaction call narrowed by `where:` that fails and is retried: the records its where
    let through are the same at every attempt, and the others are counted as filtered once, not
    once per attempt. (Before, every attempt tested and counted them again.)"""
    from sidecar.where import FILTERED

    msgs = arrange("postgres-schemas", "data_first")
    every = frozenset({"c", "u", "d", "r", "t"})
    ok: list[Any] = []
    before = FILTERED.snapshot().get(("tx", "no_match"), 0)  # (process-wide: other tests count too)
    run_pipeline(msgs, [tx_hook(ok, ops=every, where="_op == 'u'")])
    once = FILTERED.snapshot().get(("tx", "no_match"), 0) - before
    attempts: dict[str, int] = {}
    calls: list[Any] = []

    def flaky(param: Any) -> None:
        attempts[param.ctx.event_id] = attempts.get(param.ctx.event_id, 0) + 1
        if attempts[param.ctx.event_id] == 1:
            raise RuntimeError("first attempt fails")
        calls.append(param)

    run_pipeline(msgs, [HookSpec("tx", flaky, "test", mode="transaction", ops=every, where="_op == 'u'",
                                 initial_backoff_s=0.001, max_backoff_s=0.001)])
    assert once > 0 and calls and all(n == 2 for n in attempts.values())
    assert FILTERED.snapshot().get(("tx", "no_match"), 0) - before == 2 * once  # the same in both runs: once
    assert [[r["_event_id"] for r in c.records] for c in calls] == [[r["_event_id"] for r in c.records] for c in ok]
