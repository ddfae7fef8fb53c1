"""Kafka Connect schemas → converters from Debezium's JSON values to native Python values.

A converter is built once per distinct schema (the decoder caches them) and then applied
to every row with that schema. Choices a user can rely on, also in the README:

- `timestamptz` ±infinity (sent as the strings "infinity"/"-infinity") become
  `datetime.max` / `datetime.min` with tzinfo UTC. That is the only clamp: any other date or
  timestamp outside Python's range (years 1…9999) is a decode failure naming the value.
- Decimals are exact at every precision (PostgreSQL `numeric` up to 1,000 digits, MySQL
  `DECIMAL(65,30)`, VariableScaleDecimal): built from the unscaled integer and the scale,
  never through a decimal context or a float. The NUMERIC JSON encoding
  (`decimal.format=NUMERIC`) is re-read from the message text when orjson made a float of it
  (`InexactNumber`, handled by the decoder). A scale that is not an integer is a decode failure.
- float NaN/±Infinity (sent as strings) become `float("nan")`, `float("inf")`, `float("-inf")`.
- PostgreSQL `numeric` NaN arrives as null in `precise` mode and stays None.
- The TOAST placeholder becomes `sidecar.UNAVAILABLE`, for text, bytes, JSON and arrays.
- MariaDB/MySQL `TIME` is a duration (timedelta, may be negative or over 24 h);
  PostgreSQL `time` is a `datetime.time`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import msgspec
import orjson

from sidecar.envelope_fields import JSON
from sidecar.events import UNAVAILABLE, Geometry

Converter = Callable[[Any], Any]
PLACEHOLDER: Final = "__debezium_unavailable_value"
_PLACEHOLDER_BYTES: Final = PLACEHOLDER.encode()
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_DATE_ORDINAL: Final = date(1970, 1, 1).toordinal()
# (object, not float: the compiled build would unbox them and hand out a new NaN each time; one shared
# NaN keeps `before == after` true for a row whose NaN column did not change, as it always was.)
_FLOAT_SPECIALS: Final[dict[str, object]] = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_DURATION_CONNECTORS: Final = frozenset({"mysql", "mariadb"})
_BEYOND_YEAR_9999: Final = re.compile(r"^(?:[+-]\d{4,}|\d{5,})-")


class UnknownLogicalType(ValueError):
    """A schema names a logical type this version cannot convert."""


class OutOfRange(ValueError):
    """A date or timestamp outside Python's range (years 1…9999): a decode failure, never a clamp."""


class InexactNumber(Exception):
    """A Decimal field arrived as a binary float: the decoder re-reads the message with exact numbers."""


def _b64(value: Any) -> bytes:
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    raise TypeError(f"expected base64 text, got {type(value).__name__}")


def _unscaled(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def scale_of(value: Any, where: str) -> int:
    """A Connect/Debezium scale: an int or integer text (Connect sends "2"); anything else is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise ValueError(f"{where}: scale {value!r} is not an integer")


def exact_decimal(unscaled: int, scale: int) -> Decimal:
    """unscaled × 10^-scale with every digit kept (no decimal context is involved)."""
    sign = 1 if unscaled < 0 else 0
    digits = tuple(int(d) for d in str(abs(unscaled)))
    return Decimal((sign, digits, -scale))


def _decimal(scale: int) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            return exact_decimal(_unscaled(_b64(value)), scale)
        # JsonConverter decimal.format=NUMERIC: the number itself. An int is exact; a float
        # lost digits in the JSON parser, so the decoder re-reads the message exactly.
        if isinstance(value, Decimal):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return Decimal(value)
        if isinstance(value, float):
            raise InexactNumber
        raise TypeError(f"decimal: unexpected {type(value).__name__}")

    return convert


def _variable_scale_decimal(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise TypeError("VariableScaleDecimal: expected a struct with scale and value")
    return exact_decimal(_unscaled(_b64(value["value"])), scale_of(value["scale"], "VariableScaleDecimal"))


def _date(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return date.fromordinal(_EPOCH_DATE_ORDINAL + value)
        except (ValueError, OverflowError):
            raise OutOfRange(f"date: {value} days from 1970-01-01 is outside years 1…9999") from None
    raise TypeError(f"date: expected days as an integer, got {type(value).__name__}")


def _time_of_day(divisor: int) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, int):
            raise TypeError(f"time: expected an integer, got {type(value).__name__}")
        micros = value * 1_000_000 // divisor
        if micros >= 86_400_000_000:  # PostgreSQL allows 24:00:00
            return time.max
        seconds, us = divmod(micros, 1_000_000)
        minutes, s = divmod(seconds, 60)
        h, m = divmod(minutes, 60)
        return time(h, m, s, us)

    return convert


def _duration(divisor: int) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, int):
            raise TypeError(f"duration: expected an integer, got {type(value).__name__}")
        return timedelta(microseconds=value * 1_000_000 // divisor)

    return convert


def _timestamp(divisor: int) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"timestamp: expected an integer, got {type(value).__name__}")
        try:
            return _EPOCH + timedelta(microseconds=value * 1_000_000 // divisor)
        except OverflowError:
            raise OutOfRange(
                f"timestamp: {value} (1/{divisor} s since 1970-01-01) is outside years 1…9999"
            ) from None

    return convert


def _zoned_timestamp(value: Any) -> Any:
    if not isinstance(value, str):
        raise TypeError(f"ZonedTimestamp: expected ISO text, got {type(value).__name__}")
    if value == "infinity":
        return datetime.max.replace(tzinfo=UTC)
    if value == "-infinity":
        return datetime.min.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        if _BEYOND_YEAR_9999.match(value):  # +12000-01-01…, 12000-…, or a BC date (-0044-…)
            raise OutOfRange(f"ZonedTimestamp: {value[:40]!r} is outside years 1…9999") from None
        raise


def _zoned_time(value: Any) -> Any:
    if not isinstance(value, str):
        raise TypeError(f"ZonedTime: expected ISO text, got {type(value).__name__}")
    return time.fromisoformat(value)


def _uuid(value: Any) -> Any:
    return UUID(value)


def _json(value: Any) -> Any:
    if value == PLACEHOLDER:
        return UNAVAILABLE
    try:  # integers of any size exact (orjson reads one beyond 64 bits as a float), floats as orjson reads them
        return JSON.decode(value)
    except (msgspec.DecodeError, RecursionError):  # (msgspec nests as deep as the stack has room; orjson 1,024)
        pass
    return orjson.loads(value)  # not JSON, or a number beyond a double: orjson's error says why


def _enum_set(value: Any) -> Any:
    if not isinstance(value, str):
        raise TypeError("EnumSet: expected text")
    return set(value.split(",")) if value else set()


def _bytes(value: Any) -> Any:
    raw = _b64(value)
    return UNAVAILABLE if raw == _PLACEHOLDER_BYTES else raw


def _float(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _FLOAT_SPECIALS[value]
        except KeyError:
            raise TypeError(f"float: unexpected text {value!r}") from None
    return float(value)


def _geometry(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise TypeError("Geometry: expected a struct with wkb and srid")
    return Geometry(wkb=_b64(value["wkb"]), srid=value.get("srid"))


def _string(value: Any) -> Any:
    if type(value) is not str:
        raise TypeError(f"string: expected text, got {type(value).__name__} {str(value)[:40]!r}")
    return UNAVAILABLE if value == PLACEHOLDER else value


_INTEGER_KINDS: Final = ("int8", "int16", "int32", "int64")


def _integer(value: Any) -> Any:
    if type(value) is not int:  # (a JSON true/false is a bool, not an integer)
        raise TypeError(f"integer: expected an integer, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def _boolean(value: Any) -> Any:
    if type(value) is not bool:
        raise TypeError(f"boolean: expected true or false, got {type(value).__name__} {str(value)[:40]!r}")
    return value


# Logical types that keep their base value (documented pass-through, not an accident).
_PASS_THROUGH: Final = frozenset(
    {
        "io.debezium.data.Enum",
        "io.debezium.data.Xml",
        "io.debezium.data.Ltree",
        "io.debezium.time.Year",
        "io.debezium.time.Interval",
        "io.debezium.data.Ip",
        "io.debezium.data.Cidr",
        "io.debezium.data.Inet",
        "io.debezium.data.Macaddr",
        "io.debezium.data.Tsvector",
        "io.debezium.time.IsoDate",
        "io.debezium.time.IsoTime",
        "io.debezium.time.IsoTimestamp",
    }
)


def converter_for(schema: Mapping[str, Any], connector: str) -> Converter | None:
    """Return a converter for one field's schema, or None when the JSON value is already right.

    Raises UnknownLogicalType for a logical type name this version does not know.
    """
    name = schema.get("name")
    kind = schema.get("type")
    params = schema.get("parameters") or {}
    if name:
        simple = _named(name, kind, params, connector)
        if simple is not _MISSING:
            return simple  # type: ignore[return-value]
    if kind == "struct":
        return row_converter(schema, connector)
    if kind == "array":
        item = converter_for(schema.get("items") or {}, connector)
        return _array(item)
    if kind == "map":
        value_conv = converter_for(schema.get("values") or {}, connector)
        return None if value_conv is None else _map(value_conv)
    if kind == "bytes":
        return _bytes
    if kind in ("float", "double", "float32", "float64"):
        return _float
    if kind == "string":
        return _string
    if kind in _INTEGER_KINDS:
        return _integer  # the JSON value is already right, unless the payload does not match its schema
    if kind == "boolean":
        return _boolean
    if kind is None:
        return None
    raise UnknownLogicalType(f"unknown Kafka Connect type {kind!r}")


_MISSING: Final = object()


def _named(name: str, kind: Any, params: Mapping[str, Any], connector: str) -> Converter | object | None:
    duration = connector in _DURATION_CONNECTORS
    match name:
        case "org.apache.kafka.connect.data.Decimal":
            return _decimal(scale_of(params.get("scale", 0), "Decimal"))
        case "io.debezium.data.VariableScaleDecimal":
            return _variable_scale_decimal
        case "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date":
            return _date
        case "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time":
            return _duration(1000) if duration else _time_of_day(1000)
        case "io.debezium.time.MicroTime":
            return _duration(1_000_000) if duration else _time_of_day(1_000_000)
        case "io.debezium.time.NanoTime":
            return _duration(1_000_000_000) if duration else _time_of_day(1_000_000_000)
        case "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp":
            return _timestamp(1000)
        case "io.debezium.time.MicroTimestamp":
            return _timestamp(1_000_000)
        case "io.debezium.time.NanoTimestamp":
            return _timestamp(1_000_000_000)
        case "io.debezium.time.ZonedTimestamp":
            return _zoned_timestamp
        case "io.debezium.time.ZonedTime":
            return _zoned_time
        case "io.debezium.time.MicroDuration":
            return _duration(1_000_000)
        case "io.debezium.time.NanoDuration":
            return _duration(1_000_000_000)
        case "io.debezium.data.Uuid":
            return _uuid
        case "io.debezium.data.Json":
            return _json
        case "io.debezium.data.EnumSet":
            return _enum_set
        case "io.debezium.data.Bits":
            return _bytes
        case (
            "io.debezium.data.geometry.Geometry"
            | "io.debezium.data.geometry.Geography"
            | "io.debezium.data.geometry.Point"
        ):
            return _geometry
    if name in _PASS_THROUGH:
        return _string if kind == "string" else _integer if kind in _INTEGER_KINDS else None
    if kind == "struct":
        return _MISSING  # a named struct (row value, nested record): converted field by field
    if name.startswith(("io.debezium.", "org.apache.kafka.connect.")):
        raise UnknownLogicalType(
            f"unknown logical type {name!r}: this version of checkpoint-sidecar cannot convert it; "
            "upgrade the sidecar or change the connector's handling mode for that column"
        )
    return _MISSING  # a user/third-party name on a primitive: its base type decides


def _array(item: Converter | None) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"array: expected a list, got {type(value).__name__}")
        if len(value) == 1 and value[0] == PLACEHOLDER:
            return UNAVAILABLE
        if item is None:
            return value
        return [None if v is None else item(v) for v in value]

    return convert


def _map(value_conv: Converter) -> Converter:
    def convert(value: Any) -> Any:
        return {k: None if v is None else value_conv(v) for k, v in value.items()}

    return convert


RowConverter = Callable[[Mapping[str, Any]], dict[str, Any]]


def row_converter(schema: Mapping[str, Any], connector: str) -> RowConverter:
    """A converter for a whole row (a struct schema): only fields that need it are touched."""
    fields = schema.get("fields")
    if schema.get("type") != "struct" or not isinstance(fields, list):
        raise TypeError("row schema is not a struct")
    plan: list[tuple[str, Converter]] = []
    for f in fields:
        conv = converter_for(f, connector)
        if conv is not None:
            plan.append((f["field"], conv))

    def convert(row: Mapping[str, Any]) -> dict[str, Any]:
        if type(row) is not dict and not isinstance(row, Mapping):  # (a dict: no ABC check)
            raise TypeError(f"row: expected an object, got {type(row).__name__}")
        out = dict(row)
        for name, conv in plan:
            value = out.get(name)
            if value is not None:
                out[name] = conv(value)
        return out

    return convert


def schemaless_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Without schemas only JSON types are known; the TOAST placeholder is still recognised."""
    if type(row) is not dict and not isinstance(row, Mapping):  # (a dict: no ABC check)
        raise TypeError(f"row: expected an object, got {type(row).__name__}")
    if PLACEHOLDER not in row.values():  # (the common case: one pass in C, then a plain copy)
        return dict(row)
    return {k: (UNAVAILABLE if v == PLACEHOLDER else v) for k, v in row.items()}


__all__ = [
    "PLACEHOLDER",
    "Converter",
    "InexactNumber",
    "OutOfRange",
    "RowConverter",
    "UnknownLogicalType",
    "converter_for",
    "row_converter",
    "schemaless_row",
]
