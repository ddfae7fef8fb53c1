"""Hostile input never crashes the decoder, replay's line parser, or the metrics' label set."""

from __future__ import annotations

import orjson
import pytest

from sidecar import metrics as metrics_mod
from sidecar.decode import Decoder
from sidecar.events import ChangeEvent, DecodeError, DecodeFailure, RawMessage
from sidecar.metrics import Metrics
from sidecar.sources.file import parse_line


def _raw(value: bytes) -> RawMessage:
    return RawMessage(topic="shop.public.t", partition=0, offset=1, key=None, value=value)


def _nested_schema(depth: int) -> bytes:
    """`depth` structs inside each other, as JSON text (orjson will not write this deep)."""
    return (b'{"type":"struct","fields":[' + b'{"field":"s","type":"struct","fields":[' * depth +
            b'{"field":"leaf","type":"int32"}' + b"]}" * depth + b"]}")


def _envelope(row_schema: bytes, after: object, source: dict[str, object] | None = None) -> bytes:
    src = source if source is not None else {"connector": "postgresql", "schema": "public", "table": "t", "lsn": 1}
    fields = (b'[{"field":"before","type":"struct","fields":[]},{"field":"after",' + row_schema[1:] +
              b',{"field":"source","type":"struct","name":"io.debezium.connector.postgresql.Source","fields":[]},'
              b'{"field":"op","type":"string"}]')
    payload = orjson.dumps({"before": None, "after": after, "source": src, "op": "c"})
    return b'{"schema":{"type":"struct","fields":' + fields + b'},"payload":' + payload + b"}"


@pytest.mark.parametrize("depth", [50, 200, 400, 450, 490, 520, 1000, 5000])
def test_deeply_nested_schema_is_a_failure_not_a_crash(depth: int) -> None:
    """A schema nesting hundreds of structs (RecursionError territory) decodes or fails, never raises."""
    out = Decoder().decode(_raw(_envelope(_nested_schema(depth), {})))
    assert isinstance(out, ChangeEvent | DecodeFailure)
    if depth <= 200:
        assert isinstance(out, ChangeEvent)
    if depth >= 1000:
        assert isinstance(out, DecodeFailure) and out.reason in ("too_deep", "not_json")


@pytest.mark.parametrize("depth", [100, 300, 600, 990, 1000, 1022, 1100, 20000])
def test_deeply_nested_schemaless_value(depth: int) -> None:
    """A deeply nested row value without schemas decodes or fails, never raises — also when every
    field is computed at once (transaction/batch hooks: `materialize`, the event id included)."""
    value = (b'{"op":"c","source":{"connector":"postgresql","schema":"public","table":"t","lsn":1},'
             b'"before":null,"after":{"a":' + b"[" * depth + b"1" + b"]" * depth + b"}}")
    decoder = Decoder()
    for decode in (decoder.decode, decoder.decode_whole):
        out = decode(_raw(value))
        assert isinstance(out, ChangeEvent | DecodeFailure)
        if isinstance(out, ChangeEvent):
            try:
                out.materialize()
            except DecodeError as exc:
                assert exc.reason == "too_deep", exc
                with pytest.raises(DecodeError):
                    _ = out.event_id  # read alone, the same failure


@pytest.mark.parametrize("source", [
    {},
    {"connector": "postgresql", "schema": "public", "table": ""},
    {"connector": "postgresql", "schema": "public", "table": "or\x00ders"},
    {"connector": "mariadb", "db": "inv\x00", "table": "t"},
])
def test_unusable_table_name_is_a_decode_failure(source: dict[str, object]) -> None:
    """An empty source block, an empty table or a NUL in a name never reaches hooks."""
    out = Decoder().decode(_raw(_envelope(b'{"type":"struct","fields":[]}', {}, source)))
    assert isinstance(out, DecodeFailure) and out.reason == "not_envelope"


@pytest.mark.parametrize("depth", [100, 300, 1000, 5000])
def test_deeply_nested_replay_wrapper_line_is_kept_not_raised(depth: int) -> None:
    """A replay wrapper line whose value nests deeply becomes a message the decoder can refuse."""
    line = b'{"topic":"t","partition":0,"offset":3,"value":' + b"[" * depth + b"]" * depth + b"}"
    raw = parse_line(line, 7, "file:x")
    assert raw.value is not None
    assert isinstance(Decoder().decode(raw), DecodeFailure)


def test_table_label_cardinality_is_bounded() -> None:
    """Past MAX_TABLE_LABELS distinct tables, new tables are counted under table="other"."""
    cap, other = metrics_mod.MAX_TABLE_LABELS, metrics_mod.OTHER_TABLE
    m = Metrics()
    for i in range(cap + 100):
        m.event(f"public.t{i}", "c", None)
    m.event("public.t0", "c", None)  # a known table keeps its own series
    tables = {t for t, _ in m._event_counts}
    assert len(tables) == cap + 1
    assert m._event_counts[(other, "c")] == 100
    assert m._event_counts[("public.t0", "c")] == 2
