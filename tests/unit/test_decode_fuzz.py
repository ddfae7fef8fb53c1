"""Fuzzing the decoder (hypothesis): random bytes, random JSON and mutated real Debezium envelopes.

Properties: `Decoder.decode` never raises, returns one of the decoded kinds, answers within a
deadline, and allocates a bounded amount of memory per message; a ChangeEvent it returns has a
usable table name.
"""

from __future__ import annotations

import copy
import json
import time
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sidecar.decode import Decoder
from sidecar.events import (
    ChangeEvent,
    DecodeError,
    DecodeFailure,
    Heartbeat,
    RawMessage,
    SchemaChange,
    Tombstone,
    TransactionMarker,
)
from tests.fixtures import load

KINDS = (ChangeEvent, DecodeFailure, Heartbeat, SchemaChange, Tombstone, TransactionMarker)
MAX_SECONDS = 2.0
MAX_PEAK_BYTES = 64 * 1024 * 1024  # per message, far above what a real envelope needs (~100 KB)

REAL = [m for name in ("postgres-schemas", "mariadb-schemas", "postgres-noschemas", "mariadb-noschemas")
        for m in load(name)["messages"] if m["value"]]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
# Values that make converters work hard: huge/negative numbers, odd strings, deep nests.
nasty = st.sampled_from([
    10**30, -(2**63), 2**64, 1e308, -1e-308, "", "\x00", "infinity", "NaN", "AAAA", "not base64!",
    "99999-99-99T99:99:99Z", [], {}, [[[[[]]]]], {"scale": "1.5", "value": "AQ=="}, {"scale": 10**9, "value": "AQ=="},
    {"wkb": 1}, "__debezium_unavailable_value", True,
])


def _dumps(doc: Any) -> bytes:
    """Compact JSON like Kafka Connect's (json, not orjson: integers beyond 64 bits are part of the fuzz)."""
    return json.dumps(doc, separators=(",", ":")).encode()


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> bytes:
    """A real captured message with 1–4 structural mutations (schema or payload), or byte-level damage."""
    original = draw(st.sampled_from(REAL))
    doc = orjson.loads(original["value"])
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        hot = [p for p in paths if len(p) >= 2 and "source" in p[:3]]  # table names, positions, connector
        path = draw(st.sampled_from(hot)) if hot and draw(st.booleans()) else draw(st.sampled_from(paths))
        value = draw(json_values | nasty)
        doc = _set(copy.deepcopy(doc), path, value, delete=draw(st.booleans()))
    data = _dumps(doc)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        damage = draw(st.sampled_from(["truncate", "flip", "insert"]))
        if damage == "truncate":
            data = data[:cut]
        elif damage == "flip" and cut < len(data):
            data = data[:cut] + bytes([data[cut] ^ draw(st.integers(1, 255))]) + data[cut + 1:]
        else:
            data = data[:cut] + draw(st.binary(max_size=16)) + data[cut:]
    return data


messages = st.binary(max_size=512) | json_values.map(_dumps) | mutated_envelopes()
keys = st.none() | st.binary(max_size=64) | st.sampled_from([m["key"].encode() for m in REAL if m["key"]])


def _check(decoder: Decoder, value: bytes, key: bytes | None, topic: str) -> None:
    raw = RawMessage(topic=topic, partition=0, offset=1, key=key, value=value)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        out = decoder.decode(raw)  # must not raise
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert isinstance(out, KINDS)
    assert elapsed < MAX_SECONDS, f"decode took {elapsed:.2f}s"
    assert peak < MAX_PEAK_BYTES, f"decode allocated {peak} bytes at peak"
    if isinstance(out, ChangeEvent):
        assert isinstance(out.table, str) and out.table and "\x00" not in out.table
        assert not out.table.endswith("."), f"no table name in {out.table!r}"
        try:
            event_id = out.event_id
        except DecodeError as exc:  # too deep to write canonically: refused when read, which the
            assert exc.reason == "too_deep", exc  # loop turns into a decode failure (dead letter, reason)
        else:
            assert len(event_id) == 32


DECODER = Decoder()  # shared across examples, as in the loop: its schema caches are fuzzed too


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(value=messages, key=keys, topic=st.sampled_from(["shop.public.orders", "__debezium-heartbeat.shop", "x"]))
def test_decoder_never_raises_hangs_or_balloons(value: bytes, key: bytes | None, topic: str) -> None:
    """Any bytes, any JSON, any mutation of a real envelope: a decoded value, quickly, in bounded memory."""
    _check(DECODER, value, key, topic)


def _nested_struct_envelope(depth: int) -> bytes:
    """A real-shaped envelope whose row schema nests `depth` structs (the converter builder recurses)."""
    row = (b'{"type":"struct","fields":[' + b'{"field":"s","type":"struct","fields":[' * depth +
           b'{"field":"leaf","type":"int32"}' + b"]}" * depth + b"]}")
    fields = (b'[{"field":"before","type":"struct","fields":[]},{"field":"after",' + row[1:] +
              b',{"field":"source","type":"struct","name":"io.debezium.connector.postgresql.Source","fields":[]},'
              b'{"field":"op","type":"string"}]')
    payload = b'{"before":null,"after":{},"source":{"connector":"postgresql","schema":"public","table":"t"},"op":"c"}'
    return b'{"schema":{"type":"struct","fields":' + fields + b'},"payload":' + payload + b"}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 3000) | st.integers(430, 530), shape=st.sampled_from(["list", "object", "schema"]))
@example(depth=1983, shape="list")  # parses, but its event id is too deep to write: refused when read
def test_decoder_survives_any_nesting_depth(depth: int, shape: str) -> None:
    """Nesting at any depth (around Python's and orjson's recursion limits) is decoded or refused.

    430–530 is drawn often: there the schema parses (under orjson's 1024 levels) but building
    its converters used to exceed Python's recursion limit."""
    if shape == "schema":
        value = _nested_struct_envelope(depth)
    elif shape == "list":
        value = b'{"op":"c","source":{"connector":"postgresql","table":"t"},"after":{"a":' + \
            b"[" * depth + b"]" * depth + b"}}"
    else:
        value = b'{"a":' * depth + b"1" + b"}" * depth
    _check(DECODER, value, None, "shop.public.orders")


def test_integers_beyond_64_bits_in_the_source_block_or_schema_decode() -> None:
    """Found by this fuzzer: a message parsed exactly (a number beyond a double: 1e400) whose source
    block holds an integer beyond 64 bits (orjson refuses to write it) made the event id raise
    TypeError; a schema holding one failed in the split."""
    big = 2**70
    plain = json.dumps({"before": None, "after": {"id": 1, "x": 0}, "op": "c",
                        "source": {"connector": big, "table": "t", "db": "d", "pos": big}}).replace(
        '"x": 0', '"x": 1e400').encode()
    with_schema = (b'{"schema":{"type":"struct","fields":[],"parameters":{"n":' + str(big).encode() +
                   b'}},"payload":' + plain + b"}")
    for value in (plain, with_schema):
        out = Decoder().decode(RawMessage(topic="x", partition=0, offset=1, key=None, value=value))
        assert isinstance(out, ChangeEvent), out
        assert len(out.event_id) == 32 and out.event_id == Decoder().decode(
            RawMessage(topic="x", partition=0, offset=9, key=None, value=value)).event_id


def test_integers_beyond_64_bits_in_a_schemaless_row_or_key_reach_hooks_exactly() -> None:
    """orjson reads an integer below -2**63 or above 2**64-1 as a float, silently (a NUMERIC column
    sent as a JSON number without a schema): every digit must reach the hook, or the message fail."""
    big, small = 2**70 + 1, -(2**63) - 1
    doc = {"before": None, "after": {"id": big, "v": small, "f": 1.5, "s": "x"}, "op": "c",
           "source": {"connector": "postgresql", "name": "s", "schema": "public", "table": "t",
                      "ts_us": 1, "ts_ns": 1764460800000000000}}
    value = json.dumps(doc, separators=(",", ":")).encode()
    key = json.dumps({"id": big}).encode()
    decoder = Decoder()
    for _ in range(2):  # first sight, then again
        out = decoder.decode(RawMessage("s.public.t", 0, 1, key, value))
        assert isinstance(out, ChangeEvent)
        assert out.after == {"id": big, "v": small, "f": 1.5, "s": "x"}
        assert type(out.after["id"]) is int and type(out.after["f"]) is float  # type: ignore[index]
        assert out.key == {"id": big} and len(out.event_id) == 32
    routed = decoder.decode(RawMessage("s.public.t", 0, 1, key, value))  # (lazily: the same parser when read)
    assert isinstance(routed, ChangeEvent) and routed.after == out.after and routed.event_id == out.event_id


class _Number(str):
    """A number's JSON text, written as is."""


_NUMBERS = st.one_of(
    st.integers(), st.integers(-(2**64) * 4, 2**64 * 4),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: _Number(repr(f))),
    st.builds(lambda m, f, e: _Number(f"{m}.{f}e{e}"), st.integers(-(10**25), 10**25), st.integers(0, 10**20),
              st.integers(-330, 310)),
)
_DOCS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.text(max_size=8), _NUMBERS),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=12,
)


def _text(doc: Any) -> str:
    """JSON text of a document whose numbers may be written out as text already (`_NUMBERS`)."""
    if isinstance(doc, _Number):
        return str(doc)
    if isinstance(doc, list):
        return "[" + ",".join(_text(v) for v in doc) + "]"
    if isinstance(doc, dict):
        return "{" + ",".join(json.dumps(k) + ":" + _text(v) for k, v in doc.items()) + "}"
    return json.dumps(doc)


@settings(max_examples=3000, deadline=None)
@given(_DOCS)
def test_the_parser_reads_integers_exactly_and_floats_as_orjson(doc: Any) -> None:
    """The decoder's parser (msgspec): every integer exact and every float the nearest double, as the
    standard library reads them (orjson reads floats the same, integers beyond 64 bits as floats);
    what orjson cannot read raises its error, as before (the callers then read numbers beyond a
    double exactly, or say the JSON is cut off)."""
    from sidecar.decode import _int_exact_loads, _loads

    data = _text(doc).encode()
    try:
        expected = _int_exact_loads(data)
    except ValueError:
        with pytest.raises(ValueError):
            _loads(data)
        return
    try:
        as_orjson = orjson.loads(data)
    except ValueError:  # beyond a double (1e400): the decoder reads it exactly elsewhere
        with pytest.raises(ValueError):
            _loads(data)
        return
    got = _loads(data)
    assert got == expected and repr(got) == repr(expected)  # (repr: same types, every float's exact value)
    assert type(as_orjson) is type(got) or isinstance(got, int)  # orjson: a float for an int beyond 64 bits
