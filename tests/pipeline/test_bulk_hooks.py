"""Multi-record params from `sidecar.testing` and the example hooks' call handling (no database:
a stand-in engine records the statements)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sidecar.testing import make_call_param, make_event, run_hook

REPO = Path(__file__).resolve().parents[2]


def load_hook(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", REPO / "hooks" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Recorder:
    """Stands in for an Engine: `begin()` yields a connection that records execute() and
    exec_driver_sql() calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.transactions = 0

    @contextmanager
    def begin(self) -> Iterator[Recorder]:
        self.transactions += 1
        yield self

    def execute(self, statement: Any, params: Any = None) -> None:
        self.calls.append((str(statement), params))

    exec_driver_sql = execute


def test_make_call_param_builds_a_transaction_call() -> None:
    """Events with one transaction id make a transaction call: records in order, record = first,
    per-table counts, part 1 / last, each record with its _event_id."""
    events = [make_event("public.orders", after={"id": i}, transaction_id="42") for i in range(3)]
    events.append(make_event("public.lines", after={"id": 9}, transaction_id="42"))
    param = make_call_param(events, hook_name="h")
    assert [r.get("id") for r in param.records] == [0, 1, 2, 9] and param.record is param.records[0]
    tx = param.ctx.transaction
    assert tx is not None and tx.id == "42" and tx.event_count == 4 and tx.last and tx.part == 1
    assert tx.counts == {"public.orders": 3, "public.lines": 1}
    assert [r["_event_id"] for r in param.records] == [e.event_id for e in events]
    assert param.ctx.event_id not in {e.event_id for e in events} and param.hook == "h"


def test_make_call_param_without_transaction_is_a_batch() -> None:
    """Snapshot rows (no transaction) make a batch call: transaction id None."""
    events = [make_event("public.orders", op="r", after={"id": i}) for i in range(2)]
    param = make_call_param(events)
    assert param.ctx.transaction is not None and param.ctx.transaction.id is None and len(param.records) == 2


def test_audit_log_writes_a_call_with_one_executemany() -> None:
    """audit_log: one auxiliary transaction and one executemany of all the call's rows; one row in record mode."""
    hook = load_hook("audit_log")
    aux = Recorder()
    events = [make_event("public.orders", after={"id": i}, transaction_id="7") for i in range(5)]
    run_hook(hook.checkpoint, events, auxiliary_db={"audit": aux})  # type: ignore[dict-item]
    assert aux.transactions == 1 and len(aux.calls) == 1
    rows = aux.calls[0][1]  # tuples in audit_log.row's column order: event_id first
    assert [r[0] for r in rows] == [e.event_id for e in events]
    assert rows[0][1:6] == ("test-pipeline", "public.orders", None, "c", "0")  # make_event: no source table
    aux2 = Recorder()
    run_hook(hook.checkpoint, events[0], auxiliary_db={"audit": aux2})  # type: ignore[dict-item]
    assert len(aux2.calls) == 1 and [r[0] for r in aux2.calls[0][1]] == [events[0].event_id]


def test_pipeline_stats_counts_only_records_not_applied_before() -> None:
    """pipeline_stats.per_table: counts per table skip ids the ledger says were applied; the
    latest commit time per table is kept."""
    hook = load_hook("pipeline_stats")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events = [make_event("public.orders", after={"id": i}, committed_at=t0 + timedelta(seconds=i),
                         transaction_id="1") for i in range(4)]
    events.append(make_event("public.lines", after={"id": 1}, committed_at=t0, transaction_id="1"))
    param = make_call_param(events)
    applied = {param.records[3]["_event_id"]}
    got = hook.per_table(param.records, applied)
    assert got == {"public.orders": (3, t0 + timedelta(seconds=2)), "public.lines": (1, t0)}


class _Result:
    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


class MariaDBStandIn(Recorder):
    """A MariaDB connection for `sidecar.ledger.claim`: every id claimed is new (row count = ids)."""

    class dialect:  # (what SQLAlchemy's Connection.dialect offers the ledger)
        name = "mysql"
        is_mariadb = True

    def exec_driver_sql(self, statement: str, params: Any = None) -> _Result:  # type: ignore[override]
        self.calls.append((statement, params))
        return _Result(statement.count("%(i") if statement.startswith("INSERT IGNORE") else 1)


def test_example_hooks_pass_as_many_values_as_their_statements_take() -> None:
    """audit_log's INSERT takes one value per column of `row`; pipeline_stats' UPSERT four, given
    as (pipeline, table, latest commit time without tz, count) — one upsert per table, in table
    order, after the ledger claim of every record."""
    audit, stats = load_hook("audit_log"), load_hook("pipeline_stats")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events = [make_event("public.orders", after={"id": i}, committed_at=t0 + timedelta(seconds=i),
                         transaction_id="5") for i in range(3)]
    events.append(make_event("public.lines", after={"id": 7}, committed_at=t0, transaction_id="5"))
    param = make_call_param(events)
    assert audit.INSERT.count("%s") == len(audit.row("p", param.records[0])) == 7
    aux = MariaDBStandIn()
    run_hook(stats.checkpoint, events, auxiliary_db={"audit": aux})  # type: ignore[dict-item]
    claim, *upserts = aux.calls
    assert claim[0].startswith("INSERT IGNORE INTO checkpoint_ledger") and len(claim[1]) == 2 + 4
    assert [s for s, _ in upserts] == [stats.UPSERT] * 2 and stats.UPSERT.count("%s") == 4
    assert [v for _, v in upserts] == [("test-pipeline", "public.lines", t0.replace(tzinfo=None), 1),
                                       ("test-pipeline", "public.orders",
                                        (t0 + timedelta(seconds=2)).replace(tzinfo=None), 3)]
