"""Bad input is a DecodeFailure value with a reason, never an exception."""

from __future__ import annotations

import base64

import orjson
import pytest

from sidecar.decode import AVRO_HINT, FLATTENED_HINT, Decoder
from sidecar.events import DecodeFailure, Heartbeat, RawMessage, Tombstone


def raw(value: bytes | None, topic: str = "shop.public.orders") -> RawMessage:
    return RawMessage(topic=topic, partition=0, offset=7, key=None, value=value)


def envelope(after_schema: dict, after: dict) -> bytes:
    schema = {
        "type": "struct",
        "name": "x.Envelope",
        "fields": [
            {"field": "before", **after_schema, "optional": True},
            {"field": "after", **after_schema, "optional": True},
            {"field": "source", "type": "struct", "name": "io.debezium.connector.postgresql.Source", "fields": []},
            {"field": "op", "type": "string"},
        ],
    }
    payload = {"before": None, "after": after, "op": "c",
               "source": {"connector": "postgresql", "name": "t", "schema": "public", "table": "x", "lsn": 1,
                          "txId": 2, "ts_us": 1}}
    return orjson.dumps({"schema": schema, "payload": payload})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json at all", "not_json"),
        (b"[1, 2, 3]", "not_envelope"),
        (b'{"op": "x", "source": {}}', "not_envelope"),
        (b'{"id": 1, "amount": "5.00", "__deleted": "false"}', "flattened"),
        (b"\x00\x00\x00\x00\x01\x02avro", "unsupported_format"),
    ],
)
def test_malformed_values(value: bytes, reason: str) -> None:
    """Each kind of malformed message gets its own reason and keeps the raw message."""
    out = Decoder().decode(raw(value), eager=True)
    assert isinstance(out, DecodeFailure)
    assert out.reason == reason
    assert out.raw.value == value


def test_flattened_and_avro_errors_say_what_to_change() -> None:
    """Refusals name the connector change that fixes them."""
    assert "ExtractNewRecordState" in FLATTENED_HINT
    assert "JsonConverter" in AVRO_HINT


def test_tombstone_and_heartbeat() -> None:
    """A null value is a tombstone; a heartbeat topic message is a heartbeat."""
    assert isinstance(Decoder().decode(raw(None)), Tombstone)
    hb = raw(b'{"schema":{"type":"struct","fields":[]},"payload":{"ts_ms":1}}', topic="__debezium-heartbeat.shop")
    assert isinstance(Decoder().decode(hb), Heartbeat)


def test_unknown_logical_type_is_a_failure() -> None:
    """A logical type the sidecar does not know is refused by name."""
    value = envelope(
        {"type": "struct", "fields": [{"field": "v", "type": "string", "name": "io.debezium.data.FutureThing"}]},
        {"v": "x"},
    )
    out = Decoder().decode(raw(value), eager=True)
    assert isinstance(out, DecodeFailure) and out.reason == "unknown_logical_type"
    assert "io.debezium.data.FutureThing" in out.detail


def test_schema_payload_mismatch_is_a_failure() -> None:
    """A value that does not fit its declared schema is refused, not crashed on."""
    value = envelope(
        {"type": "struct", "fields": [{"field": "d", "type": "int32", "name": "io.debezium.time.Date"}]},
        {"d": "yesterday"},
    )
    out = Decoder().decode(raw(value), eager=True)
    assert isinstance(out, DecodeFailure) and out.reason == "schema_mismatch"


@pytest.mark.parametrize(("field_type", "value", "says"), [
    ("int32", "notint", "integer: expected an integer, got str"),
    ("int64", 1.5, "integer: expected an integer, got float"),
    ("int16", True, "integer: expected an integer, got bool"),
    ("boolean", 1, "boolean: expected true or false, got int"),
    ("string", 5, "string: expected text, got int"),
])
def test_a_primitive_that_does_not_match_its_schema_is_a_failure(field_type: str, value: object, says: str) -> None:
    """A plain int/boolean/string column whose JSON value has another type never reaches hooks as
    if it were right: read lazily it raises DecodeError, decoded eagerly it is a DecodeFailure."""
    from sidecar.events import ChangeEvent, DecodeError

    message = raw(envelope({"type": "struct", "fields": [{"field": "v", "type": field_type, "optional": True}]},
                           {"v": value}))
    out = Decoder().decode(message, eager=True)
    assert isinstance(out, DecodeFailure) and out.reason == "schema_mismatch" and says in out.detail, out
    lazy = Decoder().decode(message)
    assert isinstance(lazy, ChangeEvent)
    with pytest.raises(DecodeError, match=says):
        lazy.after  # noqa: B018


def test_decimal_and_variable_scale_decimal() -> None:
    """Decimal uses the schema's scale; VariableScaleDecimal carries its own."""
    from decimal import Decimal

    from sidecar.events import ChangeEvent

    unscaled = (-12345).to_bytes(2, "big", signed=True)
    value = envelope(
        {
            "type": "struct",
            "fields": [
                {"field": "a", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                 "parameters": {"scale": "2"}},
                {"field": "b", "type": "struct", "name": "io.debezium.data.VariableScaleDecimal",
                 "fields": [{"field": "scale", "type": "int32"}, {"field": "value", "type": "bytes"}]},
            ],
        },
        {"a": base64.b64encode(unscaled).decode(), "b": {"scale": 3, "value": base64.b64encode(b"\x01\x00").decode()}},
    )
    out = Decoder().decode(raw(value), eager=True)
    assert isinstance(out, ChangeEvent) and out.after is not None
    assert out.after["a"] == Decimal("-123.45")
    assert out.after["b"] == Decimal("0.256")


def test_schema_cache_reused_and_correct_for_second_message() -> None:
    """The second message with the same schema decodes the same way (cached converters)."""
    from sidecar.events import ChangeEvent

    schema = {"type": "struct", "fields": [{"field": "d", "type": "int32", "name": "io.debezium.time.Date"}]}
    d = Decoder()
    first = d.decode(raw(envelope(schema, {"d": 0})))
    second = d.decode(raw(envelope(schema, {"d": 1})))
    assert isinstance(first, ChangeEvent) and isinstance(second, ChangeEvent)
    assert str(first.after and first.after["d"]) == "1970-01-01"
    assert str(second.after and second.after["d"]) == "1970-01-02"


@pytest.mark.parametrize(("marker", "says"), [
    ({"status": "begin", "id": "571:1"}, "needs status BEGIN or END and an id (status 'begin'"),
    ({"status": ["BEGIN"], "id": "571:1"}, "needs status BEGIN or END and an id"),
    ({"status": "END", "event_count": 1}, "id present: False"),
    ({"status": "END", "id": "571:1", "event_count": {"n": 1}, "data_collections": []},
     "event_count must be an integer"),
    ({"status": "END", "id": "571:1", "event_count": "2", "data_collections": []}, "event_count must be an integer"),
    ({"status": "END", "id": "571:1", "event_count": True}, "event_count must be an integer"),
    ({"status": "END", "id": "571:1", "event_count": 1, "data_collections": 5}, "data_collections must be a list"),
    ({"status": "END", "id": "571:1", "event_count": 1,
      "data_collections": [{"data_collection": "a", "event_count": "1"}]}, "data_collections must be a list"),
])
def test_a_broken_transaction_marker_says_so(marker: dict, says: str) -> None:
    """A marker with a wrong status, no id or ill-typed counts is named as a broken marker — not as a
    flattened event (wrong advice) nor as a schema mismatch (it has no schema)."""
    for value in (orjson.dumps({**marker, "ts_ms": 1}),
                  orjson.dumps({"schema": {"type": "struct", "fields": []}, "payload": {**marker, "ts_ms": 1}})):
        got = Decoder().decode(raw(value, "shop.transaction"))
        assert isinstance(got, DecodeFailure) and got.reason == "not_envelope" and says in got.detail, got
