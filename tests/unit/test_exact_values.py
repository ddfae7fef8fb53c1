"""Values reach hooks exactly: every decimal digit kept, out-of-range dates refused, never clamped."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from sidecar.decode import Decoder
from sidecar.events import ChangeEvent, DecodeFailure, RawMessage

DECIMAL = "org.apache.kafka.connect.data.Decimal"
VSD = "io.debezium.data.VariableScaleDecimal"


def _raw(value: bytes) -> RawMessage:
    return RawMessage(topic="shop.public.t", partition=0, offset=1, key=None, value=value)


def _message(field_schema: dict[str, Any], value_json: str) -> bytes:
    """A compact JsonConverter message whose after-image has one field `v` written as `value_json` text."""
    row = {"type": "struct", "optional": True, "fields": [{"field": "v", "optional": True, **field_schema}]}
    schema = {"type": "struct", "name": "x.Envelope", "fields": [
        {"field": "before", **row}, {"field": "after", **row},
        {"field": "source", "type": "struct", "name": "io.debezium.connector.postgresql.Source", "fields": []},
        {"field": "op", "type": "string"}]}
    source = {"connector": "postgresql", "name": "t", "schema": "public", "table": "t", "lsn": 1, "txId": 2,
              "ts_us": 1}
    head = orjson.dumps({"schema": schema})[:-1]
    return head + b',"payload":{"before":null,"after":{"v":' + value_json.encode() + b'},"source":' + \
        orjson.dumps(source) + b',"op":"c"}}'


def _decoded(field_schema: dict[str, Any], value_json: str) -> Any:
    out = Decoder().decode(_raw(_message(field_schema, value_json)), eager=True)
    assert isinstance(out, ChangeEvent), out
    assert out.after is not None
    return out.after["v"]


def _b64_unscaled(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)).decode()


@pytest.mark.parametrize("text", [
    "1234567890123456789012345678.1234567890",           # numeric(38,10)
    "-" + "9" * 35 + "." + "9" * 30,                      # MySQL DECIMAL(65,30)
    "1" * 500 + "." + "0" * 499 + "1",                   # PostgreSQL numeric, 1,000 digits
    "0.000000000000000000000000000000000001",
])
def test_base64_decimal_keeps_every_digit(text: str) -> None:
    """Decimal (base64 unscaled + schema scale) is exact far beyond the 28-digit default context."""
    expected = Decimal(text)
    scale = -expected.as_tuple().exponent  # type: ignore[operator]
    unscaled = int(text.replace(".", ""))
    got = _decoded({"type": "bytes", "name": DECIMAL, "parameters": {"scale": str(scale)}},
                   f'"{_b64_unscaled(unscaled)}"')
    assert got == expected and got.as_tuple() == expected.as_tuple()


@pytest.mark.parametrize("text", ["1234567890123456789012345678.1234567890", "-0.10", "12345678901234567890123",
                                  "1e400", "5"])
def test_numeric_json_decimal_is_exact(text: str) -> None:
    """decimal.format=NUMERIC (a JSON number) never goes through a binary float."""
    got = _decoded({"type": "bytes", "name": DECIMAL, "parameters": {"scale": "10"}}, text)
    assert isinstance(got, Decimal) and got == Decimal(text) and str(got) == str(Decimal(text))


def test_numeric_json_keeps_floats_of_other_fields_float() -> None:
    """Re-reading a message exactly does not turn double columns into Decimals."""
    got = _decoded({"type": "double"}, "0.1")
    assert isinstance(got, float) and got == 0.1


def test_variable_scale_decimal_exact() -> None:
    """VariableScaleDecimal keeps every digit too."""
    unscaled = int("7" * 60)
    got = _decoded({"type": "struct", "name": VSD, "fields": [{"field": "scale", "type": "int32"},
                                                             {"field": "value", "type": "bytes"}]},
                   orjson.dumps({"scale": 25, "value": _b64_unscaled(unscaled)}).decode())
    assert got == Decimal("7" * 35 + "." + "7" * 25)


@pytest.mark.parametrize(("schema", "value"), [
    ({"type": "bytes", "name": DECIMAL, "parameters": {"scale": "2.5"}}, '"AQ=="'),
    ({"type": "bytes", "name": DECIMAL, "parameters": {"scale": "two"}}, '"AQ=="'),
    ({"type": "struct", "name": VSD, "fields": []}, '{"scale": 2.5, "value": "AQ=="}'),
    ({"type": "struct", "name": VSD, "fields": []}, '{"scale": true, "value": "AQ=="}'),
])
def test_non_integer_scale_is_a_decode_failure(schema: dict[str, Any], value: str) -> None:
    """A scale that is not an integer is refused, not truncated."""
    out = Decoder().decode(_raw(_message(schema, value)), eager=True)
    assert isinstance(out, DecodeFailure) and "scale" in out.detail


@pytest.mark.parametrize(("schema", "value"), [
    ({"type": "int64", "name": "io.debezium.time.MicroTimestamp"}, str(317_000_000_000 * 10**6)),  # year 12000
    ({"type": "int64", "name": "io.debezium.time.Timestamp"}, str(-10**15)),
    ({"type": "int32", "name": "io.debezium.time.Date"}, str(-10**9)),
    ({"type": "int32", "name": "io.debezium.time.Date"}, str(10**7)),
    ({"type": "string", "name": "io.debezium.time.ZonedTimestamp"}, '"+12000-01-01T00:00:00Z"'),
    ({"type": "string", "name": "io.debezium.time.ZonedTimestamp"}, '"-0044-03-15T12:00:00Z"'),
])
def test_out_of_range_dates_are_decode_failures(schema: dict[str, Any], value: str) -> None:
    """Dates/timestamps beyond years 1…9999 are a decode failure with the value, never a clamp."""
    out = Decoder().decode(_raw(_message(schema, value)), eager=True)
    assert isinstance(out, DecodeFailure) and out.reason == "out_of_range"
    assert value.strip('"') in out.detail


def test_infinity_is_the_only_clamp() -> None:
    """ZonedTimestamp ±infinity still maps to datetime.max/min (documented)."""
    got = _decoded({"type": "string", "name": "io.debezium.time.ZonedTimestamp"}, '"infinity"')
    assert got == datetime.max.replace(tzinfo=UTC)


def test_commit_times_are_exact_whichever_was_built_before() -> None:
    """Events of one transaction reuse the commit time built last; every value, in any order,
    is still its own instant (µs or ms, bools read as ints as before, out of range fails)."""
    from datetime import timedelta

    from sidecar.decode import committed_at

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    values = [0, 1, 1, -1, 1_764_460_800_000_123, 1_764_460_800_000_123, 1_764_460_800_000_124, 0,
              -62_135_596_800_000_000, 253_402_300_799_999_999, 1]
    for us in values:
        assert committed_at({"ts_us": us}) == epoch + timedelta(microseconds=us)
        assert committed_at({"ts_ms": us // 1000}) == epoch + timedelta(milliseconds=us // 1000)
    assert committed_at({"ts_us": True}) == epoch + timedelta(microseconds=1)
    assert committed_at({"ts_us": "1", "ts_ms": 2}) == epoch + timedelta(milliseconds=2)
    assert committed_at({}) is None
    with pytest.raises(OverflowError):
        committed_at({"ts_us": 253_402_300_800_000_000})
    assert committed_at({"ts_us": 5}) == epoch + timedelta(microseconds=5)  # (a failure cached nothing)
