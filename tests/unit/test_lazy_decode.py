"""Lazy decoding gives exactly what eager decoding gives: every captured message of every
fixture (PostgreSQL and MariaDB, with and without embedded schemas), every field, the record
a hook sees and everything a hook may do with it (json, orjson, copy, pickle, {**record}).
Event ids are pinned to the values the eager decoder of 7a75de2 produced."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.decode import Decoder
from sidecar.events import ChangeEvent, DecodeError, DecodeFailure, RawMessage
from sidecar.param import build_record
from tests.fixtures import FIXTURES, raws

NAMES = ["postgres-schemas", "postgres-noschemas", "mariadb-schemas", "mariadb-noschemas"]
FIELDS = ("event_id", "op", "table", "connector", "key", "before", "after", "source", "transaction", "committed_at",
          "snapshot")
PINNED = json.loads((FIXTURES / "event-ids.json").read_text())


def _text(value: Any, render: Any = str) -> str:
    """`default=` for the dumps below; a set (MySQL SET) in sorted order: its iteration order is
    Python's, and may differ between two equal sets (one rebuilt by pickle)."""
    if isinstance(value, set | frozenset):
        return repr(sorted(value, key=repr))
    return str(render(value))


def _dumps(record: dict[str, Any]) -> tuple[bytes | str, str]:
    """What orjson and json make of a record (or the error they raise: orjson refuses an aware time)."""
    try:
        fast: bytes | str = orjson.dumps(record, default=_text, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        fast = repr(exc)
    return fast, json.dumps(record, default=lambda v: _text(v, repr), sort_keys=True)


@pytest.mark.parametrize("name", NAMES)
def test_lazy_values_equal_eager_values_for_every_fixture_message(name: str) -> None:
    # decode_whole: without the simdjson route (the full orjson path decides everything), as the
    # loop decodes when transaction or batch hooks exist.
    lazy_decoder, eager_decoder, orjson_decoder = Decoder(), Decoder(), Decoder()
    changes = 0
    for raw, pinned in zip(raws(name), PINNED[name], strict=True):
        eager = eager_decoder.decode(raw, eager=True)
        lazy = lazy_decoder.decode(raw)
        full = orjson_decoder.decode_whole(raw)
        assert type(lazy) is type(eager) is type(full)
        if not isinstance(eager, ChangeEvent):
            assert pinned is None
            continue
        assert isinstance(lazy, ChangeEvent) and isinstance(full, ChangeEvent)
        changes += 1
        # Read in an order unlike the eager one: the record first, the id last.
        record = build_record(lazy, "src.t")
        assert record == build_record(eager, "src.t") == build_record(full, "src.t")
        for f in reversed(FIELDS):
            assert getattr(lazy, f) == getattr(eager, f) == getattr(full, f), f
        assert lazy.event_id == pinned  # the eager decoder's id before lazy decoding existed
        assert lazy.commit_us == eager.commit_us
        # What a hook may do with its record behaves as with the eager one.
        twin = build_record(eager, "src.t")
        assert _dumps(record) == _dumps(twin)
        assert {**record} == twin and dict(record) == twin and list(record) == list(twin)
        assert copy.copy(record) == twin and copy.deepcopy(record) == twin
        assert pickle.dumps(record) == pickle.dumps(twin)
        assert _dumps(pickle.loads(pickle.dumps(record))) == _dumps(twin)
    assert changes >= 14


@pytest.mark.parametrize("name", NAMES)
def test_a_message_is_routed_without_parsing_its_rows(name: str) -> None:
    """The no-op path: a change event comes out of the simdjson route (rows not built yet)
    for every change message whose schema was seen once (first sight: the full path)."""
    decoder = Decoder()
    msgs = [r for r in raws(name) if isinstance(Decoder().decode(r), ChangeEvent)]
    for raw in msgs:
        decoder.decode(raw)  # learn the schemas
    routed = [decoder._route(raw, raw.value or b"") for raw in msgs]
    assert all(isinstance(e, ChangeEvent) for e in routed)
    assert all(e._after is not None and e._deferred is not None and e._deferred._payload is None  # type: ignore[union-attr]
               for e in routed)


def _envelope(after: dict[str, Any], field_schema: dict[str, Any]) -> bytes:
    row = {"type": "struct", "optional": True, "fields": [{"field": "id", "type": "int64"},
                                                          {"field": "v", **field_schema}]}
    schema = {"type": "struct", "fields": [dict(row, field="before"), dict(row, field="after"),
                                           {"type": "struct", "field": "source", "fields": [],
                                            "name": "io.debezium.connector.postgresql.Source"},
                                           {"type": "string", "field": "op"}]}
    payload = {"before": None, "after": after, "op": "c",
               "source": {"connector": "postgresql", "name": "shop", "schema": "public", "table": "t", "ts_us": 1}}
    return orjson.dumps({"schema": schema, "payload": payload})


def test_a_value_that_fails_to_convert_fails_when_read_with_its_reason() -> None:
    value = _envelope({"id": 1, "v": 10**9}, {"type": "int32", "name": "io.debezium.time.Date"})
    decoder = Decoder()
    for _ in range(2):  # first sight (full path), then routed
        event = decoder.decode(RawMessage("shop.public.t", 0, 0, None, value))
        assert isinstance(event, ChangeEvent)
        assert event.op == "c" and event.table == "public.t"
        with pytest.raises(DecodeError) as exc:
            _ = event.after
        assert exc.value.reason == "out_of_range"
        failure = decoder.decode(RawMessage("shop.public.t", 0, 0, None, value), eager=True)
        assert isinstance(failure, DecodeFailure) and failure.reason == "out_of_range"


def test_duplicate_envelope_keys_read_as_orjson_reads_them_routed_or_whole() -> None:
    """Routing (msgspec) reads the last of duplicate keys, as orjson does when the rows are read:
    the routed event and the whole parse agree (op, source, rows)."""
    value = (b'{"before":null,"after":{"id":1},"op":"c","source":{"connector":"postgresql","name":"s",'
             b'"schema":"public","table":"t","table":"u"},"op":"d","before":{"id":2}}')
    raw = RawMessage("s.public.t", 0, 0, None, value)
    event, whole = Decoder().decode(raw), Decoder().decode_whole(raw)
    assert isinstance(event, ChangeEvent) and isinstance(whole, ChangeEvent)
    assert event.op == whole.op == "d" and event.table == whole.table == "public.u"
    assert event.before == whole.before == {"id": 2} and event.after == whole.after == {"id": 1}
    assert event.event_id == whole.event_id


_ODD_PAYLOADS = {
    # what msgspec skips without checking, and what only the slower parsers read exactly
    "invalid UTF-8 in a row": b'{"before":null,"after":{"id":1,"s":"\xff\xfe"},"op":"c",' + b'"source":{"table":"t"}}',
    "non-ASCII row": '{"before":null,"after":{"id":1,"s":"grüße ✓"},"op":"c","source":{"table":"t"}}'.encode(),
    "number beyond a double": b'{"before":null,"after":{"id":1,"f":1e400},"op":"c","source":{"table":"t"}}',
    "integer beyond 64 bits": b'{"before":null,"after":{"id":123456789012345678901234567890},"op":"c",'
                              b'"source":{"table":"t"}}',
    "negative beyond 64 bits": b'{"before":null,"after":{"id":-9223372036854775809},"op":"c","source":{"table":"t"}}',
    "nested too deep": (b'{"before":null,"after":{"id":1,"j":' + b"[" * 3000 + b"]" * 3000
                        + b'},"op":"c","source":{"table":"t"}}'),
    "escaped marker key": b'{"op":"c","st\\u0061tus":"END","source":{"table":"t"},"after":{"id":1}}',
    "marker key null": b'{"op":"c","ddl":null,"source":{"table":"t"},"after":{"id":1}}',
    "op not text": b'{"op":["c"],"source":{"table":"t"},"after":{"id":1}}',
    "source null": b'{"op":"c","source":null,"after":{"id":1}}',
    "source missing": b'{"op":"c","after":{"id":1}}',
    "cut off": b'{"before":null,"after":{"id":1},"op":"c","source":{"tab',
    "trailing text": b'{"before":null,"after":{"id":1},"op":"c","source":{"table":"t"}} x',
    "invalid escape in a row": b'{"before":null,"after":{"s":"\\q"},"op":"c","source":{"table":"t"}}',
    "lone surrogate in a row": b'{"before":null,"after":{"s":"\\ud800"},"op":"c","source":{"table":"t"}}',
    "control character in a row": b'{"before":null,"after":{"s":"a\x01b"},"op":"c","source":{"table":"t"}}',
    "NaN in a row": b'{"before":null,"after":{"f":NaN},"op":"c","source":{"table":"t"}}',
}


@pytest.mark.parametrize("name", sorted(_ODD_PAYLOADS))
def test_routed_and_whole_parse_agree_on_odd_payloads(name: str) -> None:
    """Every payload msgspec's routing may read differently from orjson: the routed event gives
    the whole parse's result when its fields are read (or the same failure, with its reason)."""
    raw = RawMessage("s.public.t", 0, 0, None, _ODD_PAYLOADS[name])
    routed, whole = Decoder().decode(raw), Decoder().decode(raw, eager=True)
    if isinstance(whole, DecodeFailure):
        if isinstance(routed, ChangeEvent):  # accepted by routing: fails when read, same reason
            with pytest.raises(DecodeError) as exc:
                routed.materialize(True)
            assert exc.value.reason == whole.reason
        else:
            assert isinstance(routed, DecodeFailure) and routed.reason == whole.reason
        return
    assert type(routed) is type(whole)
    if isinstance(whole, ChangeEvent):
        assert isinstance(routed, ChangeEvent)
        for f in ("op", "table", "connector", "snapshot", "commit_us", "event_id", "before", "after", "transaction"):
            assert getattr(routed, f) == getattr(whole, f), f


def test_numeric_decimals_are_read_exactly_on_the_routed_path() -> None:
    """decimal.format=NUMERIC: a float in a decimal field sends the message to the exact path."""
    schema = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "30"}}
    text = b"0.123456789012345678901234567890"
    value = _envelope({"id": 1, "v": 0}, schema).replace(b'"v":0', b'"v":' + text)
    decoder = Decoder()
    for _ in range(2):
        event = decoder.decode(RawMessage("shop.public.t", 0, 0, None, value))
        assert isinstance(event, ChangeEvent)
        assert str(event.after["v"]) == text.decode()  # type: ignore[index]


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "t", "a\x00b", "public", "db"]),
                   st.just([]), st.just({"a": 1}))


@settings(max_examples=400, deadline=None)
@given(
    op=st.sampled_from(["c", "u", "d", "r", "t", "m", "x", None, 1]),
    table=_SCALARS, schema=_SCALARS, db=_SCALARS,
    connector=st.sampled_from(["postgresql", "mysql", "", None, 7, [], {}]),
    ts_us=st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20)),
    extra=st.sampled_from([None, "status", "ddl", "tableChanges", "databaseName", "transaction"]),
    topic=st.sampled_from(["shop.public.t", "__debezium-heartbeat.shop"]),
)
def test_routed_and_full_paths_agree_on_any_envelope(op: Any, table: Any, schema: Any, db: Any, connector: Any,
                                                     ts_us: Any, extra: str | None, topic: str) -> None:
    """Whatever the envelope holds, the simdjson route and the full orjson path decide the same:
    same kind of result, same op/table/connector/commit time, same failure reason."""
    source: dict[str, Any] = {"connector": connector, "name": "shop", "table": table, "schema": schema, "db": db}
    if ts_us is not None:
        source["ts_us"] = ts_us
    payload: dict[str, Any] = {"before": None, "after": {"id": 1}, "op": op, "source": source}
    if extra is not None:
        payload[extra] = {"id": "1:2", "total_order": 1} if extra == "transaction" else "x"
    raw = RawMessage(topic, 0, 0, None, json.dumps(payload).encode())  # json: ints beyond 64 bits too
    routed, full = Decoder().decode(raw), Decoder().decode_whole(raw)
    assert type(routed) is type(full)
    if isinstance(full, ChangeEvent):
        assert isinstance(routed, ChangeEvent)
        for f in ("op", "table", "connector", "snapshot", "commit_us", "event_id", "after", "transaction"):
            assert getattr(routed, f) == getattr(full, f), f
    elif isinstance(full, DecodeFailure):
        assert isinstance(routed, DecodeFailure) and routed.reason == full.reason


def test_event_transaction_equals_the_dataclass_it_builds_faster() -> None:
    """The decoder's per-event TransactionInfo skips the frozen dataclass's __init__: same value, and
    the field layout it relies on (id, total_order, data_collection_order first; the rest None)."""
    from dataclasses import fields

    from sidecar.events import TransactionInfo, event_transaction

    assert [f.name for f in fields(TransactionInfo)][:3] == ["id", "total_order", "data_collection_order"]
    assert all(f.default is None for f in fields(TransactionInfo)[3:])
    for args in (("571:34078936", 3, 1), ("x", None, None)):
        fast, slow = event_transaction(*args), TransactionInfo(*args)
        assert fast == slow and repr(fast) == repr(slow) and hash(fast) == hash(slow)
        assert fast.group_id == slow.group_id


def test_materialize_raises_the_first_failing_field_in_field_order() -> None:
    """Key and after-image both fail: eager decoding (materialize, all fields at once) names the key's
    reason, as reading field by field in _FIELDS order does; a field read before is kept."""
    key = orjson.dumps({"schema": {"type": "struct", "fields": [
        {"field": "id", "type": "int32", "name": "io.debezium.time.Date"}]}, "payload": {"id": 10**9}})
    value = _envelope({"id": 1, "v": "not a date"}, {"type": "int32", "name": "io.debezium.time.Date"})
    decoder = Decoder()
    for _ in range(2):  # first sight (full path), then routed
        raw = RawMessage("shop.public.t", 0, 0, key, value)
        failure = decoder.decode(raw, eager=True)
        assert isinstance(failure, DecodeFailure) and failure.reason == "out_of_range", failure
        event = decoder.decode(raw)
        assert isinstance(event, ChangeEvent)
        with pytest.raises(DecodeError) as after_exc:
            _ = event.after
        assert after_exc.value.reason == "schema_mismatch"
        with pytest.raises(DecodeError) as exc:
            event.materialize()  # after was read (and failed): the key still fails first
        assert exc.value.reason == "out_of_range"
        ok = decoder.decode(RawMessage("shop.public.t", 0, 0, None, value))
        assert isinstance(ok, ChangeEvent)
        eid = ok.event_id
        with pytest.raises(DecodeError):
            ok.materialize()
        assert ok.event_id == eid and ok.key is None


@pytest.mark.parametrize("name", ["cut off", "invalid UTF-8 in a row", "integer longer than Python reads"])
def test_poison_the_loop_can_see_fails_at_intake_not_when_read(name: str) -> None:
    """What no parser reads is a decode failure before any hook runs, also where routing skips it
    (msgspec checks neither the UTF-8 nor the length of what it skips: the decoder does)."""
    payloads = {
        "cut off": _ODD_PAYLOADS["cut off"],
        "invalid UTF-8 in a row": _ODD_PAYLOADS["invalid UTF-8 in a row"],
        "integer longer than Python reads": (b'{"before":null,"after":{"id":1,"v":' + b"7" * 4301
                                             + b'},"op":"c","source":{"table":"t"}}'),
    }
    out = Decoder().decode(RawMessage("s.public.t", 0, 0, None, payloads[name]))
    assert isinstance(out, DecodeFailure) and out.reason == "not_json"
    exactly = b'{"before":null,"after":{"id":1,"v":' + b"7" * 4300 + b'},"op":"c","source":{"table":"t"}}'
    event = Decoder().decode(RawMessage("s.public.t", 0, 0, None, exactly))  # the longest Python reads
    assert isinstance(event, ChangeEvent) and event.after == {"id": 1, "v": int("7" * 4300)}


def test_an_integer_longer_than_python_reads_fails_at_intake_with_a_schema_too() -> None:
    """Embedded schema: first sight (the full path) and then routed (the schema known), the same
    decode failure; only the payload's length decides whether it is looked for."""
    value = _envelope({"id": 1, "v": 0}, {"type": "int64"}).replace(b'"v":0', b'"v":' + b"7" * 4301)
    decoder = Decoder()
    for _ in range(2):
        out = decoder.decode(RawMessage("shop.public.t", 0, 0, None, value))
        assert isinstance(out, DecodeFailure) and out.reason == "not_json"
