"""What hooks and hook tests can do with the objects they get works the same in the compiled build
and the pure-Python one (`make test` runs this file in both): copy, deepcopy and pickle of the
dataclasses and events, one shared NaN, schema changes whatever the JSON type of their fields."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from sidecar.decode import Decoder
from sidecar.events import (
    UNAVAILABLE,
    ChangeEvent,
    Geometry,
    RawMessage,
    SchemaChange,
    TransactionInfo,
    TransactionMarker,
)
from sidecar.param import PipelineContext, build_context, build_record
from sidecar.testing import make_event

INFO = TransactionInfo("571:2338", 3, 1, 20, 20, (("public.orders", 20),), datetime(2026, 12, 1, tzinfo=UTC), 2, True)
RAW = RawMessage("shop.public.orders", 0, 7, b'{"id":1}', b"{}", (("h", b"v"), ("n", None)), 1_764_460_800_000)
VALUES: list[Any] = [
    INFO,
    Geometry(b"\x01\x01\x00\x00\x00", 4326),
    RAW,
    TransactionMarker(RAW, "END", "571:2338", 20, (("public.orders", 20),)),
    SchemaChange(RAW, "ALTER TABLE t ADD c INT", "inventory"),
    {"id": 1, "total": Decimal("21.50"), "note": UNAVAILABLE, "geom": Geometry(b"\x00", None),
     "at": datetime(2026, 12, 1, 12, 0, tzinfo=UTC), "_transaction": INFO},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_copy_deepcopy_and_pickle_give_an_equal_value(value: Any) -> None:
    for twin in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert twin == value and type(twin) is type(value)
    assert copy.deepcopy({"x": UNAVAILABLE})["x"] is UNAVAILABLE
    assert pickle.loads(pickle.dumps(UNAVAILABLE)) is UNAVAILABLE


def test_a_hooks_ctx_and_its_transaction_copy_and_an_event_copies_and_pickles() -> None:
    event = make_event("public.orders", after={"id": 1, "total": Decimal("1.10")}, transaction_id="571:2338")
    ctx = build_context(event, "p", call=("call-id", INFO))
    assert isinstance(ctx, PipelineContext)
    shallow = copy.copy(ctx)
    assert shallow == ctx and shallow.transaction is ctx.transaction
    assert copy.deepcopy(ctx.transaction) == INFO == pickle.loads(pickle.dumps(ctx.transaction))
    for twin in (copy.copy(event), copy.deepcopy(event), pickle.loads(pickle.dumps(event))):
        assert twin == event and build_record(twin, None) == build_record(event, None)


def _envelope(before: str, after: str, op: str = "u") -> bytes:
    row = {"type": "struct", "optional": True, "fields": [{"field": "id", "type": "int32"},
                                                          {"field": "x", "type": "double", "optional": True}]}
    schema = {"type": "struct", "name": "x.Envelope", "fields": [
        {"field": "before", **row}, {"field": "after", **row},
        {"field": "source", "type": "struct", "name": "io.debezium.connector.postgresql.Source", "fields": []},
        {"field": "op", "type": "string"}]}
    source = {"connector": "postgresql", "name": "t", "schema": "public", "table": "t", "ts_us": 1}
    return (orjson.dumps({"schema": schema})[:-1] + b',"payload":{"before":' + before.encode() + b',"after":'
            + after.encode() + b',"source":' + orjson.dumps(source) + b',"op":"' + op.encode() + b'"}}')


@pytest.mark.parametrize("eager", [True, False])
def test_an_unchanged_nan_column_leaves_before_equal_to_after(eager: bool) -> None:
    """Debezium writes NaN as the text "NaN"; every one decodes to the same float object, so a row
    whose NaN column did not change compares equal (NaN is never equal to another NaN)."""
    value = _envelope('{"id":1,"x":"NaN"}', '{"id":1,"x":"NaN"}')
    out = Decoder().decode(RawMessage("t.public.t", 0, 1, None, value), eager=eager)
    assert isinstance(out, ChangeEvent)
    assert out.before == out.after and out.after is not None and out.after["x"] != out.after["x"]


@pytest.mark.parametrize("ddl", [7, None, ["ALTER TABLE t"], "ALTER TABLE t ADD c INT"])
def test_a_schema_change_is_skipped_whatever_json_type_its_fields_have(ddl: Any) -> None:
    payload = {"source": {"connector": "mariadb", "name": "inv", "db": "inventory"}, "ts_ms": 1,
               "databaseName": 12 if ddl == 7 else "inventory", "ddl": ddl, "tableChanges": []}
    out = Decoder().decode(RawMessage("inv", 0, 1, None, orjson.dumps(payload)))
    assert isinstance(out, SchemaChange)
    assert out.ddl == (None if ddl is None else ddl if isinstance(ddl, str) else str(ddl))


def _written_out() -> list[tuple[type, list[Any]]]:
    """Each dataclass with a written-out __init__, and a value for each of its fields (distinct
    from its defaults; of the field's type: compiled, a constructor checks them)."""
    import threading

    from sidecar.events import DecodeFailure, Heartbeat, Tombstone
    when = datetime(2026, 12, 1, tzinfo=UTC)
    return [
        (RawMessage, ["t", 1, 2, b"k", b"v", (("h", b"x"),), 3]),
        (Geometry, [b"\x01", 4326]),
        (TransactionInfo, ["1:2", 3, 4, 5, 6, (("public.t", 6),), when, 7, True]),
        (Tombstone, [RAW]),
        (Heartbeat, [RAW]),
        (TransactionMarker, [RAW, "END", "1:2", 6, (("public.t", 6),)]),
        (SchemaChange, [RAW, "DROP TABLE t", "db"]),
        (DecodeFailure, [RAW, "not_json", "detail"]),
        (PipelineContext, ["p", "e", "u", "public.t", {"id": 1}, {"table": "t"}, INFO, "topic", 0, 9, 1.5,
                           threading.Event()]),
    ]


@pytest.mark.parametrize(("cls", "values"), _written_out(), ids=lambda c: getattr(c, "__name__", ""))
def test_a_written_out_init_takes_exactly_the_dataclass_fields(cls: type, values: list[Any]) -> None:
    """These dataclasses spell out __init__ (compiled, the generated one is interpreted): it takes
    their fields in order, by position or name, with the same defaults; frozen ones stay frozen.
    (Checked by behaviour: a compiled __init__ has no inspectable signature.)"""
    import dataclasses

    fields = dataclasses.fields(cls)
    assert len(values) == len(fields)
    by_position, by_name = cls(*values), cls(**{f.name: v for f, v in zip(fields, values, strict=True)})
    for made in (by_position, by_name):
        assert [getattr(made, f.name) for f in fields] == values
    required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    minimal = cls(*values[: len(required)])
    for f in fields[len(required):]:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert getattr(minimal, f.name) == default, f.name
        assert getattr(minimal, f.name) != values[fields.index(f)], f.name  # (the sample is not the default)
    with pytest.raises(TypeError):
        cls(*values, values[-1])
    changed = dataclasses.replace(by_name, **{fields[-1].name: values[-1]})
    assert changed == by_position
    if cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(by_name, fields[0].name, values[0])
