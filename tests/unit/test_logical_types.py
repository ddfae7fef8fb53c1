"""Logical types the local connectors do not produce, from the Debezium/Connect type docs."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest

from sidecar import UNAVAILABLE, Geometry
from sidecar.logical_types import PLACEHOLDER, UnknownLogicalType, converter_for


def conv(name: str, kind: str = "int64", connector: str = "postgresql", **params: str):  # type: ignore[no-untyped-def]
    c = converter_for({"type": kind, "name": name, "parameters": params}, connector)
    assert c is not None
    return c


def test_nano_and_milli_variants() -> None:
    """NanoTime/NanoTimestamp/NanoDuration and the Connect ms types convert (truncated to µs)."""
    assert conv("io.debezium.time.NanoTime")(3_723_000_000_123) == time(1, 2, 3, 0)
    assert conv("io.debezium.time.NanoTimestamp")(1_000_000_001_999) == datetime(1970, 1, 1, 0, 16, 40, 1)
    assert conv("io.debezium.time.NanoDuration")(1_500_000_000) == timedelta(seconds=1.5)
    assert conv("org.apache.kafka.connect.data.Time", "int32")(61_001) == time(0, 1, 1, 1000)
    assert conv("org.apache.kafka.connect.data.Timestamp")(1_000) == datetime(1970, 1, 1, 0, 0, 1)
    assert conv("org.apache.kafka.connect.data.Date", "int32")(-1) == date(1969, 12, 31)
    assert conv("io.debezium.time.Timestamp")(86_400_000) == datetime(1970, 1, 2)


def test_time_is_duration_for_mysql_family() -> None:
    """The same TIME schema is a timedelta for MySQL/MariaDB and a time of day for PostgreSQL."""
    assert conv("io.debezium.time.MicroTime", connector="mysql")(-1_000_000) == timedelta(seconds=-1)
    assert conv("io.debezium.time.Time", "int32", connector="mariadb")(90_000_000) == timedelta(hours=25)
    assert conv("io.debezium.time.MicroTime")(86_400_000_000) == time.max  # PostgreSQL 24:00:00


def test_zoned_values() -> None:
    """ZonedTimestamp with nanoseconds and offsets, ZonedTime, and ±infinity."""
    zts = conv("io.debezium.time.ZonedTimestamp", "string")
    assert zts("2024-02-29T13:14:15.123456789+02:00") == datetime(
        2024, 2, 29, 13, 14, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert zts("infinity") == datetime.max.replace(tzinfo=UTC)
    assert zts("-infinity") == datetime.min.replace(tzinfo=UTC)
    assert conv("io.debezium.time.ZonedTime", "string")("13:14:15Z") == time(13, 14, 15, tzinfo=UTC)


def test_geometry_keeps_wkb_and_srid() -> None:
    """Geometry/Geography/Point become Geometry(wkb, srid)."""
    wkb = bytes.fromhex("0101000000000000000000f03f0000000000000040")
    value = {"wkb": base64.b64encode(wkb).decode(), "srid": 4326}
    for name in ("io.debezium.data.geometry.Geometry", "io.debezium.data.geometry.Geography",
                 "io.debezium.data.geometry.Point"):
        assert conv(name, "struct")(value) == Geometry(wkb=wkb, srid=4326)


def test_placeholder_in_every_shape() -> None:
    """The TOAST placeholder becomes UNAVAILABLE in text, bytes, JSON and arrays."""
    assert converter_for({"type": "string"}, "postgresql")(PLACEHOLDER) is UNAVAILABLE  # type: ignore[misc]
    as_bytes = base64.b64encode(PLACEHOLDER.encode()).decode()
    assert converter_for({"type": "bytes"}, "postgresql")(as_bytes) is UNAVAILABLE  # type: ignore[misc]
    assert conv("io.debezium.data.Json", "string")(PLACEHOLDER) is UNAVAILABLE
    arr = converter_for({"type": "array", "items": {"type": "int32"}}, "postgresql")
    assert arr is not None and arr([PLACEHOLDER]) is UNAVAILABLE
    assert repr(UNAVAILABLE) == "sidecar.UNAVAILABLE" and not UNAVAILABLE


def test_json_column_integers_exact() -> None:
    """A Json column's integers beyond 64 bits stay exact ints (orjson made floats of them);
    what is not JSON still fails with the parser's reason."""
    j = conv("io.debezium.data.Json", "string")
    big = 123456789012345678901234567890
    assert j(f'{{"a": {big}, "b": [-{big}, 1.5, "x"], "c": null}}') == {"a": big, "b": [-big, 1.5, "x"], "c": None}
    assert type(j('{"n": 18446744073709551616}')["n"]) is int
    assert j("0.1") == 0.1 and j('"text"') == "text"
    for bad in ("{", '{"a": 1', "1e400", "nul"):
        with pytest.raises(ValueError):
            j(bad)


def test_json_column_nesting_does_not_depend_on_the_stack() -> None:
    """A document 1,000 levels deep decodes however deep the stack already is when the row is
    converted (rows convert lazily, under whichever hook reads them first): msgspec's depth is
    what the interpreter's stack has left, orjson's a fixed 1,024; past that: a failure."""
    j = conv("io.debezium.data.Json", "string")
    doc = "[" * 1000 + "]" * 1000

    def depth(value: object) -> int:
        n = 0
        while isinstance(value, list):
            n, value = n + 1, (value[0] if value else None)
        return n

    def at(n: int) -> object:
        return at(n - 1) if n else j(doc)

    assert depth(at(0)) == depth(at(300)) == 1000
    with pytest.raises(ValueError):
        j("[" * 1100 + "]" * 1100)


def test_nested_struct_and_map() -> None:
    """Structs and maps convert recursively."""
    schema = {"type": "struct", "fields": [
        {"field": "d", "type": "int32", "name": "io.debezium.time.Date"},
        {"field": "m", "type": "map", "keys": {"type": "string"},
         "values": {"type": "int32", "name": "io.debezium.time.Date"}},
    ]}
    c = converter_for(schema, "postgresql")
    assert c is not None
    assert c({"d": 1, "m": {"a": 2, "b": None}}) == {"d": date(1970, 1, 2), "m": {"a": date(1970, 1, 3), "b": None}}


def test_unknown_debezium_type_raises_and_foreign_name_passes() -> None:
    """An unknown io.debezium type is refused; a third-party name falls back to its base type."""
    with pytest.raises(UnknownLogicalType, match=r"io\.debezium\.data\.Nope"):
        converter_for({"type": "string", "name": "io.debezium.data.Nope"}, "postgresql")
    assert converter_for({"type": "int32", "name": "com.example.Thing"}, "postgresql") is converter_for(
        {"type": "int32"}, "postgresql")


def test_schemaless_row_copies_and_replaces_only_top_level_placeholders() -> None:
    """Without schemas: a new dict each time; a top-level placeholder is UNAVAILABLE, one nested
    (unknown type without a schema) stays as sent; equal-looking values are kept."""
    from sidecar.logical_types import schemaless_row

    row = {"id": 1, "note": "x", "n": 1.5, "tags": [PLACEHOLDER], "doc": {"a": PLACEHOLDER}}
    out = schemaless_row(row)
    assert out == row and out is not row
    toasted = schemaless_row({**row, "note": PLACEHOLDER})
    assert toasted["note"] is UNAVAILABLE and toasted["tags"] == [PLACEHOLDER] and toasted["id"] == 1
    with pytest.raises(TypeError):
        schemaless_row([1])  # type: ignore[arg-type]
