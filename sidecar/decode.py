"""Debezium JSON messages → `ChangeEvent` and friends. Pure: no I/O, never raises.

Reads Kafka Connect's JsonConverter output with (`{"schema", "payload"}`) or without
embedded schemas. With schemas every logical type becomes a native Python value
(see `logical_types`); without them values stay JSON types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import orjson

from sidecar import envelope_fields, logical_types
from sidecar.events import (
    ChangeEvent,
    Decoded,
    DecodeError,
    DecodeFailure,
    Heartbeat,
    Op,
    RawMessage,
    SchemaChange,
    Tombstone,
    TransactionInfo,
    TransactionMarker,
    event_transaction,
)

_OPS: Final = frozenset({"c", "u", "d", "r", "t"})
_UNSET: Final = envelope_fields.UNSET
_SCHEMA_QUALIFIED: Final = frozenset({"postgresql", "sqlserver", "oracle", "db2", "informix", "vitess"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_PAYLOAD_SPLIT: Final = b',"payload":'
_MAX_CACHED_SCHEMAS: Final = 1024
_UNKNOWN: Final = object()
_DECIMAL: Final = "org.apache.kafka.connect.data.Decimal"
# Python datetimes span years 1…9999: a commit time outside is a decode failure, found at once.
_MIN_US: Final = -62_135_596_800_000_000
_MAX_US: Final = 253_402_300_799_999_999

FLATTENED_HINT: Final = (
    "the message has no Debezium envelope (op/source missing): the connector flattens records "
    "(ExtractNewRecordState / 'unwrap' SMT). Remove that transform from the connector the sidecar reads; "
    "it needs op, before and source"
)
AVRO_HINT: Final = (
    "the message is in the Schema Registry wire format (Avro/Protobuf/JSON Schema): the sidecar reads "
    "Kafka Connect's JsonConverter output. Set key.converter and value.converter to "
    "org.apache.kafka.connect.json.JsonConverter on the connector"
)


class _EnvelopePlan:
    """Converters for one envelope schema (cached by the schema's raw bytes)."""

    __slots__ = ("_route_decoder", "after", "before", "decimals", "key", "nested_decimals")

    def __init__(self, value_schema: Mapping[str, Any]) -> None:
        fields = {f.get("field"): f for f in value_schema.get("fields") or []}
        connector = _connector_from_schema(fields.get("source"))
        self.before = _maybe_row(fields.get("before"), connector)
        self.after = _maybe_row(fields.get("after"), connector)
        self.key: logical_types.RowConverter | None = None
        # decimal.format=NUMERIC sends decimals as JSON numbers, which orjson reads as floats:
        # such a message is read again exactly (the decoder looks at these fields at once).
        top: set[str] = set()
        nested = False
        for image in ("before", "after"):
            for f in (fields.get(image) or {}).get("fields") or []:
                if f.get("name") == _DECIMAL:
                    top.add(str(f.get("field")))
                elif f.get("type") in ("struct", "array", "map") and _names_decimal(f):
                    nested = True
        self.decimals = tuple(top)
        self.nested_decimals = nested
        self._route_decoder: Any = None

    def route_decoder(self) -> Any:
        """Routing's decoder for this schema's payloads: the envelope fields and the decimal columns."""
        found = self._route_decoder
        if found is None:
            found = self._route_decoder = envelope_fields.with_decimals(self.decimals)
        return found

    def inexact(self, payload: Mapping[str, Any]) -> bool:
        """A decimal arrived as a float (NUMERIC format): the message must be read exactly."""
        for image in (payload.get("before"), payload.get("after")):
            if isinstance(image, dict):
                for name in self.decimals:
                    if type(image.get(name)) is float:
                        return True
        return False


def _names_decimal(schema: Any) -> bool:
    """Does a Connect schema use the Decimal logical type anywhere inside (iterative: any depth)?"""
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if node.get("name") == _DECIMAL:
                return True
            todo.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            todo.extend(node)
    return False


def _connector_from_schema(source_schema: Mapping[str, Any] | None) -> str:
    name = (source_schema or {}).get("name") or ""
    # e.g. io.debezium.connector.postgresql.Source
    parts = str(name).split(".")
    return parts[-2] if len(parts) >= 2 else ""


def _maybe_row(schema: Mapping[str, Any] | None, connector: str) -> logical_types.RowConverter | None:
    if not schema or schema.get("type") != "struct":
        return None
    return logical_types.row_converter(schema, connector)


class Decoder:
    """Decodes messages; keeps a bounded cache of converters per distinct schema."""

    def __init__(self) -> None:
        self._plans: dict[bytes, _EnvelopePlan] = {}
        self._by_length: dict[int, bytes] = {}  # where `,"payload":` is → the schema last seen there
        self._key_plans: dict[bytes, logical_types.RowConverter | None] = {}

    def decode(self, raw: RawMessage, eager: bool = False, route: bool = True, key: bool = True) -> Decoded:
        """What the message is. A change event's values are converted when first read (a
        failure then raises `DecodeError`); `eager`: convert everything now, a failure is a
        `DecodeFailure` (tools, and the tests that lazy and eager values are the same) — with
        `key=False` everything but the message key, which no hook reads (what the live path
        decodes before a call: `dead-letters replay`, `hook run`); `route=False`: see `decode_whole`."""
        value = raw.value
        if value is not None and route and not eager:
            routed = self._route(raw, value)
            if routed is not None:
                return routed
        try:
            try:
                decoded = self._decode(raw, _loads)
            except logical_types.InexactNumber:
                # decimal.format=NUMERIC: orjson made a float of a decimal; read the text exactly.
                decoded = self._decode(raw, _exact_loads)
        except _CONVERSION_ERRORS as exc:
            return DecodeFailure(raw, *failure_reason(exc))
        if eager and isinstance(decoded, ChangeEvent):
            try:
                decoded.materialize(key)
            except DecodeError as exc:
                return DecodeFailure(raw, exc.reason, exc.detail)
        return decoded

    def decode_whole(self, raw: RawMessage) -> Decoded:
        """`decode` without routing first: the message is parsed whole, once. For a caller that
        reads every field of every change right away (the dispatcher with transaction or batch
        hooks), where routing would parse each message twice. The same events as `decode`
        (a repeated envelope key: the last value, on both paths)."""
        return self.decode(raw, route=False)

    # ------------------------------------------------------------------ internals
    def _decode(self, raw: RawMessage, loads: Callable[[bytes], Any]) -> Decoded:
        value = raw.value
        if value is None:
            return Tombstone(raw)
        if value[:1] == b"\x00" and len(value) >= 5:
            return DecodeFailure(raw, "unsupported_format", AVRO_HINT)
        schema_bytes, payload, envelope_schema = self._split(value, loads)
        if payload is _NOT_JSON:
            return DecodeFailure(raw, "not_json", "the message value is not JSON")
        if payload is None:
            return Tombstone(raw)
        if not isinstance(payload, dict):
            return DecodeFailure(raw, "not_envelope", "the message value is not a JSON object")
        op = payload.get("op")
        source = payload.get("source")
        if (op in _OPS and type(source) is dict and "status" not in payload and "ddl" not in payload
                and "tableChanges" not in payload and "databaseName" not in payload
                and not raw.topic.startswith("__debezium-heartbeat")):
            # The common case (a row change), decided with the fewest lookups; the same checks as below.
            table = data_collection(source)
            if (source.get("table") or source.get("collection")) and "\x00" not in table:
                plan = self._plan(schema_bytes, envelope_schema) if envelope_schema is not None else None
                return self._change(raw, payload, op, source, plan, table)
        return self._other(raw, payload, schema_bytes, envelope_schema)

    def _route(self, raw: RawMessage, value: bytes) -> ChangeEvent | None:
        """A plain row change decided without building its rows: msgspec checks the whole
        payload's JSON and reads only the envelope fields routing needs (op, the source block;
        with NUMERIC decimals also those columns); the rest is parsed when first read. None:
        anything else, or any doubt — the full path decides (first sight of a schema, NUMERIC
        decimals sent as numbers, errors, markers, heartbeats…)."""
        plan: _EnvelopePlan | None = None
        body: bytes | memoryview = value
        if raw.topic.startswith("__debezium-heartbeat"):
            return None
        if value.startswith(b'{"schema":'):
            cut = value.find(_PAYLOAD_SPLIT)
            known = self._by_length.get(cut)
            if known is None or not value.endswith(b"}") or not value.startswith(known, 10):
                return None
            plan = self._plans.get(known)
            if plan is None or plan.nested_decimals:
                return None
            body = memoryview(value)[cut + len(_PAYLOAD_SPLIT): -1]
        if not value.isascii():  # msgspec does not check the UTF-8 of the strings it skips
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return None
        if len(body) > _MAX_INT_DIGITS and _longer_number(body):
            return None  # nor the length of the numbers it skips: no parser reads one this long
        try:
            if plan is not None and plan.decimals:
                env = plan.route_decoder().decode(body)
                if envelope_fields.inexact(env, len(plan.decimals)):
                    return None
            else:
                env = envelope_fields.PLAIN.decode(body)
        except (envelope_fields.DecodeError, RecursionError):  # the full path says what is wrong
            return None
        op = env.op
        source = env.source
        if (type(op) is not str or op not in _OPS or source is _UNSET or env.status is not _UNSET
                or env.ddl is not _UNSET or env.tableChanges is not _UNSET or env.databaseName is not _UNSET):
            return None
        name = source.table or source.collection
        connector = source.connector
        if connector is not None and type(connector) is not str:
            return None  # the full path says what is wrong with it
        prefix = source.schema if connector in _SCHEMA_QUALIFIED else None
        if not prefix:
            prefix = source.db
        us = source.ts_us
        if not isinstance(us, int):  # (as `committed_at` reads it)
            ms = source.ts_ms
            us = ms * 1000 if isinstance(ms, int) else None
        if not name or type(name) is not str or (prefix is not None and type(prefix) is not str):
            return None
        if us is not None:
            us = int(us)
            if not _MIN_US <= us <= _MAX_US:
                return None
        table = f"{prefix}.{name}" if prefix else name
        if "\x00" in table:
            return None
        conn = str(connector or "")
        change: Op = op  # type: ignore[assignment]  # one of _OPS (checked above)
        pending = _Deferred(self, raw, None, change, None, plan, table, conn)
        pending.body = body
        return ChangeEvent.deferred(raw, change, table, conn, op == "r", us, pending)

    def _other(self, raw: RawMessage, payload: dict[str, Any], schema_bytes: bytes | None,
               envelope_schema: Mapping[str, Any] | None) -> Decoded:
        """Anything but a plain row change: heartbeats, markers, schema changes, and the errors."""
        if raw.topic.startswith("__debezium-heartbeat") or (payload.keys() == {"ts_ms"}):
            return Heartbeat(raw)
        op = payload.get("op")
        if op == "m" or ("message" in payload and op is None and "source" in payload):
            return Heartbeat(raw)
        status = payload.get("status")
        if status in ("BEGIN", "END") and "id" in payload:
            return _marker(raw, payload)
        if "ddl" in payload or "tableChanges" in payload or "databaseName" in payload:
            return SchemaChange(raw, _text_or_none(payload.get("ddl")), _text_or_none(payload.get("databaseName")))
        source = payload.get("source")
        if op not in _OPS or not isinstance(source, dict):
            if op is None and "source" not in payload and "status" in payload:
                return DecodeFailure(raw, "not_envelope", "a transaction marker needs status BEGIN or END and an id "
                                     f"(status {str(status)[:40]!r}, id present: {'id' in payload})")
            if op is None and "source" not in payload:
                return DecodeFailure(raw, "flattened", FLATTENED_HINT)
            return DecodeFailure(
                raw, "not_envelope", f"not a Debezium change event (op={op!r}, source present: {source is not None})"
            )
        table = data_collection(source)
        if not (source.get("table") or source.get("collection")) or "\x00" in table:
            return DecodeFailure(
                raw, "not_envelope", f"the source block names no usable table ({table!r}: empty or with NUL)"
            )
        plan = self._plan(schema_bytes, envelope_schema) if envelope_schema is not None else None
        return self._change(raw, payload, op, source, plan, table)

    def _split(
        self, value: bytes, loads: Callable[[bytes], Any]
    ) -> tuple[bytes | None, Any, Mapping[str, Any] | None]:
        """Parse the message; with schemas, reuse the parsed schema of a byte-identical one."""
        if value.startswith(b'{"schema":'):
            cut = value.find(_PAYLOAD_SPLIT)
            if cut > 0 and value.endswith(b"}"):
                known = self._by_length.get(cut)
                if known is not None and loads is _loads and value.startswith(known, 10):
                    # The schema seen last with this length, byte for byte: no copy, no hashing.
                    try:
                        return known, _loads(memoryview(value)[cut + len(_PAYLOAD_SPLIT): -1]), {}
                    except ValueError:
                        pass
                schema_bytes = value[10:cut]
                plan_known = schema_bytes in self._plans
                try:
                    payload = loads(value[cut + len(_PAYLOAD_SPLIT) : -1])
                    schema = None if plan_known else _loads(schema_bytes)
                    return schema_bytes, payload, (schema if schema is not None else {})
                except ValueError:  # orjson.JSONDecodeError and json's are ValueErrors
                    pass  # the cut fell inside a value: parse the whole message below
        try:
            doc = _read(value) if loads is _loads else loads(value)
        except ValueError:
            return None, _NOT_JSON, None
        if isinstance(doc, dict) and doc.keys() == {"schema", "payload"}:
            schema = doc["schema"]
            schema_bytes = _canonical(schema)
            return schema_bytes, doc["payload"], schema if isinstance(schema, dict) else {}
        return None, doc, None

    def _plan(self, schema_bytes: bytes | None, schema: Mapping[str, Any]) -> _EnvelopePlan:
        assert schema_bytes is not None
        plan = self._plans.get(schema_bytes)
        if plan is None:
            plan = _EnvelopePlan(schema)
            if len(self._plans) >= _MAX_CACHED_SCHEMAS:
                self._plans.clear()
                self._by_length.clear()
            self._plans[schema_bytes] = plan
        self._by_length[len(schema_bytes) + 10] = schema_bytes
        return plan

    def _key(self, raw: RawMessage, connector: str) -> Mapping[str, Any] | None:
        key = raw.key
        if key is None:
            return None
        schema_bytes: bytes | None = None
        try:
            cut = key.find(_PAYLOAD_SPLIT) if key.startswith(b'{"schema":') else -1
            if cut > 0 and key.endswith(b"}"):
                schema_bytes = key[10:cut]
                payload = _loads(key[cut + len(_PAYLOAD_SPLIT) : -1])
            else:
                doc = _loads(key)
                if isinstance(doc, dict) and doc.keys() == {"schema", "payload"}:
                    schema_bytes = _canonical(doc["schema"])
                    payload = doc["payload"]
                else:
                    return doc if isinstance(doc, dict) else None
        except (ValueError, RecursionError):  # not JSON (orjson's and json's errors are ValueErrors), too deep
            return None
        if not isinstance(payload, dict):
            return None
        if schema_bytes is None:
            return payload
        conv = self._key_plans.get(schema_bytes, _UNKNOWN)
        if conv is _UNKNOWN:
            schema = _loads(schema_bytes)
            conv = (logical_types.row_converter(schema, connector)
                    if isinstance(schema, dict) and schema.get("type") == "struct" else None)
            if len(self._key_plans) >= _MAX_CACHED_SCHEMAS:
                self._key_plans.clear()
            self._key_plans[schema_bytes] = conv
        return conv(payload) if conv is not None else payload  # type: ignore[operator]

    def _change(
        self,
        raw: RawMessage,
        payload: dict[str, Any],
        op: Op,
        source: dict[str, Any],
        plan: _EnvelopePlan | None,
        table: str,
    ) -> ChangeEvent:
        """The event; what a hook may never read is computed when first read (`_Deferred`)."""
        if plan is not None and plan.decimals and plan.inexact(payload):
            raise logical_types.InexactNumber
        connector = str(source.get("connector") or "")
        pending = _Deferred(self, raw, payload, op, source, plan, table, connector)
        if plan is not None and plan.nested_decimals:
            pending.before()  # a decimal inside a struct/array: exactness shows only by converting
            pending.after()
        us = source.get("ts_us")
        if not isinstance(us, int):
            ms = source.get("ts_ms")
            us = ms * 1000 if isinstance(ms, int) else None
        if us is not None:
            us = int(us)  # a bool is an int to `committed_at` too
        if us is not None and not _MIN_US <= us <= _MAX_US:
            committed_at(source)  # raises: outside Python's datetime range
        return ChangeEvent.deferred(raw, op, table, connector, op == "r", us, pending)


class _Deferred:
    """The parts of a change event computed when first read: row images, key, event id,
    transaction, commit time. A value that cannot be converted raises `DecodeError`."""

    __slots__ = ("_payload", "_src", "body", "connector", "decoder", "op", "plan", "raw", "table")

    def __init__(self, decoder: Decoder, raw: RawMessage, payload: dict[str, Any] | None, op: Op,
                 source: dict[str, Any] | None, plan: _EnvelopePlan | None, table: str, connector: str) -> None:
        self.decoder = decoder
        self.raw = raw
        self._payload = payload
        self.op = op
        self._src = source
        self.plan = plan
        self.table = table
        self.connector = connector
        self.body: bytes | memoryview | None = None  # the payload's JSON when routed without parsing it

    @property
    def payload(self) -> dict[str, Any]:
        payload = self._payload
        if payload is None:
            assert self.body is not None
            payload = _load_payload(self.body)
            if not isinstance(payload, dict) or payload.get("op") != self.op:
                # Routing and this parse read the same op (the last of duplicate keys, as orjson): a
                # difference would be a disagreement between the parsers; refuse to guess.
                raise DecodeError("not_envelope", "the envelope repeats a key (op, source…) with different values")
            self._payload = payload
        return payload

    @property
    def src(self) -> dict[str, Any]:
        src = self._src
        if src is None:
            src = self.payload.get("source")
            if not isinstance(src, dict) or data_collection(src) != self.table:
                raise DecodeError("not_envelope", "the envelope repeats a key (op, source…) with different values")
            self._src = src
        return src

    def _image(self, name: str) -> dict[str, Any] | None:
        value = self.payload.get(name)
        if value is None:
            return None
        try:
            if self.plan is None:
                return logical_types.schemaless_row(value)
            conv = self.plan.before if name == "before" else self.plan.after
            return None if conv is None else conv(value)
        except _CONVERSION_ERRORS as exc:
            raise DecodeError(*failure_reason(exc)) from None

    def before(self) -> dict[str, Any] | None:
        return self._image("before")

    def after(self) -> dict[str, Any] | None:
        return self._image("after")

    def key(self) -> Mapping[str, Any] | None:
        try:
            return self.decoder._key(self.raw, self.connector)
        except _CONVERSION_ERRORS as exc:
            raise DecodeError(*failure_reason(exc)) from None

    def event_id(self) -> str:
        payload = self.payload
        return self._event_id(self.src, payload.get("before"), payload.get("after"))

    def _event_id(self, src: dict[str, Any], before: Any, after: Any) -> str:
        try:
            return event_id(src, self.table, self.op, before, after)
        except _CONVERSION_ERRORS as exc:  # a row nested too deep to write canonically (RecursionError)
            raise DecodeError(*failure_reason(exc)) from None

    def transaction(self) -> TransactionInfo | None:
        tx = self.payload.get("transaction")
        if isinstance(tx, dict):
            tx_id = tx.get("id")
            if tx_id is not None:
                order, dco = tx.get("total_order"), tx.get("data_collection_order")
                if (order is not None and type(order) is not int) or (dco is not None and type(dco) is not int):
                    # (a string among ints would stop the sort that puts a transaction in commit order)
                    raise DecodeError("not_envelope", "the transaction block's total_order and data_collection_order "
                                      f"must be integers, not {order!r} and {dco!r}")
                return event_transaction(str(tx_id), order, dco)
        return None

    def everything(self, key: bool = True) -> tuple[str, Mapping[str, Any] | None, dict[str, Any] | None,
                                                    dict[str, Any] | None, Mapping[str, Any], TransactionInfo | None,
                                                    datetime | None]:
        """Every field at once, in `ChangeEvent.materialize`'s order (the first that fails raises);
        `key=False`: the key is not computed (None in its place)."""
        payload = self.payload
        src = self.src
        before, after = payload.get("before"), payload.get("after")
        eid = self._event_id(src, before, after)
        row_key = self.key() if key else None
        before_row = None if before is None else self._image("before")
        after_row = None if after is None else self._image("after")
        return eid, row_key, before_row, after_row, src, self.transaction(), committed_at(src)

    def committed_at(self) -> datetime | None:
        return committed_at(self.src)

    def source(self) -> Mapping[str, Any]:
        return self.src


class _NotJson:
    pass


_CONVERSION_ERRORS: Final = (TypeError, ValueError, KeyError, ArithmeticError, AttributeError, RecursionError,
                             logical_types.InexactNumber)


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """(reason, detail) of a value that cannot be converted, as dead letters and metrics name it."""
    if isinstance(exc, logical_types.UnknownLogicalType):
        return "unknown_logical_type", str(exc)
    if isinstance(exc, logical_types.OutOfRange):
        return "out_of_range", str(exc)
    if isinstance(exc, RecursionError):
        return "too_deep", "the message nests structs/arrays deeper than the decoder follows"
    return "schema_mismatch", f"the payload does not match its schema: {type(exc).__name__}: {exc}"


_MAX_INT_DIGITS: Final = 4300
"""Python's limit for an integer read from text (sys.int_info.default_max_str_digits): a longer
one is no JSON to any of the decoder's parsers."""
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_TOO_MANY_DIGITS: Final = b"0" * (_MAX_INT_DIGITS + 1)


def _as_bytes(data: bytes | memoryview) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


def _longer_number(data: bytes | memoryview) -> bool:
    """A run of more than `_MAX_INT_DIGITS` digits (only a payload that long can hold one)."""
    return _TOO_MANY_DIGITS in _as_bytes(data).translate(_DIGITS_AS_ZERO)


def _int_exact_loads(data: bytes | memoryview) -> Any:
    """JSON with integers of any size exact (the standard library), floats as orjson reads them."""
    return json.loads(_as_bytes(data))


def _loads(data: bytes | memoryview) -> Any:
    """The decoder's JSON parser: integers of any size exact (a NUMERIC column sent as a JSON number
    without a schema; orjson would read one beyond 64 bits as a float), floats the same doubles
    orjson reads, in one pass (msgspec). Not JSON: orjson's ValueError, whose message says whether
    the document is cut off."""
    try:
        return envelope_fields.JSON.decode(data)
    except envelope_fields.DecodeError:
        pass
    orjson.loads(data)  # raises, saying why
    return _int_exact_loads(data)  # (what orjson reads and msgspec did not: read exactly all the same)


def _read(data: bytes | memoryview) -> Any:
    """A whole document as the decoder reads one: `_loads`, or, where orjson refuses what is still
    JSON (a number beyond a double: 1e400), every number exact. Not JSON (cut-off JSON is no JSON
    to any parser: not read twice): ValueError."""
    try:
        return _loads(data)
    except ValueError as exc:
        if str(exc).startswith(_CUT_OFF):
            raise
    return _exact_loads(data)


def _load_payload(body: bytes | memoryview) -> Any:
    """A routed payload parsed when first read, as the full path parses it (`_split`): integers
    beyond 64 bits and numbers beyond a double exact; JSON no parser reads: `DecodeError`."""
    try:
        return _read(body)
    except ValueError as exc:
        raise DecodeError("not_json", f"the message value is not JSON: {exc}") from None
    except RecursionError as exc:
        raise DecodeError(*failure_reason(exc)) from None


def _exact_loads(data: bytes | memoryview) -> Any:
    """JSON with every number exact: non-integers as Decimal (ints are exact in Python anyway)."""
    return json.loads(_as_bytes(data), parse_float=Decimal)


_NOT_JSON: Final = _NotJson()
_CUT_OFF: Final = "unexpected end of data"
"""How orjson says a document ends too early (no other parser reads it either)."""


def data_collection(source: Mapping[str, Any]) -> str:
    """Debezium's data collection name: `schema.table` (PostgreSQL…), `db.table` (MariaDB/MySQL)."""
    connector = source.get("connector")
    table = source.get("table") or source.get("collection") or ""
    if connector in _SCHEMA_QUALIFIED and source.get("schema"):
        return f"{source['schema']}.{table}"
    db = source.get("db")
    return f"{db}.{table}" if db else str(table)


class _LastTime:
    """The last commit time built, by its microseconds: a transaction's events share one commit
    time, so most events reuse it (datetimes are immutable). `pair` is one reference to a
    (microseconds, datetime) tuple, replaced whole (typed `Any` so that the compiled build keeps
    it boxed: a typed tuple attribute is stored as two fields), so a reader on another thread
    sees a matching pair."""

    def __init__(self) -> None:
        self.pair: Any = (0, _EPOCH)


_LAST_TIME: Final = _LastTime()


def _commit_time(us: int) -> datetime:
    pair: tuple[int, datetime] = _LAST_TIME.pair
    if pair[0] == us:
        return pair[1]
    at = _EPOCH + timedelta(0, 0, us)  # (positional: keyword arguments cost a dict per call)
    _LAST_TIME.pair = (us, at)
    return at


def committed_at(source: Mapping[str, Any]) -> datetime | None:
    """Source commit time as aware UTC (snapshot rows: the snapshot's read time)."""
    us = source.get("ts_us")
    if isinstance(us, int):
        return _commit_time(int(us))
    ms = source.get("ts_ms")
    if isinstance(ms, int):
        return _commit_time(int(ms) * 1000)
    return None


def _position(source: Mapping[str, Any], op: str) -> str:
    connector = source.get("connector")
    if op == "r":
        return "snapshot"
    if connector == "postgresql":
        return f"lsn={source.get('lsn')};tx={source.get('txId')}"
    if connector in ("mysql", "mariadb"):
        return f"file={source.get('file')};pos={source.get('pos')};row={source.get('row')}"
    rest = {k: v for k, v in source.items() if k not in ("ts_ms", "ts_us", "ts_ns", "snapshot", "version")}
    return _canonical(rest).decode()


def _canonical(value: Any) -> bytes:
    """Sorted-key compact JSON of a decoded value (str() for what JSON has no type for).

    orjson refuses integers beyond 64 bits (an exact NUMERIC decimal, a source field of a
    foreign connector); the standard library writes the same text for those.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str, separators=(",", ":")).encode()


_SHA256: Final = hashlib.sha256()


def event_id(source: Mapping[str, Any], table: str, op: str, before: Any, after: Any) -> str:
    """Stable id of a change however it arrives (Kafka, embedded, replay, after a restart).

    sha256 over: connector name (topic prefix), data collection, source position
    (PostgreSQL lsn+txId; MariaDB/MySQL binlog file+pos+row; snapshot rows: none), op, and
    the row images as sent. The images tell apart rows that share one position
    (COPY / multi-row inserts share an LSN) and make a re-snapshot of an unchanged row the
    same event while a changed row is a new one. Never Kafka coordinates.
    """
    head = f"{source.get('name')}|{table}|{_position(source, op)}|{op}|".encode()
    digest = _SHA256.copy()  # (a copy of a fresh one: no digest lookup by name per event)
    digest.update(head + _canonical([before, after]))
    return digest.hexdigest()[:32]


def _marker(raw: RawMessage, payload: Mapping[str, Any]) -> TransactionMarker | DecodeFailure:
    count = payload.get("event_count")
    if count is not None and type(count) is not int:
        return DecodeFailure(raw, "not_envelope", f"the transaction marker's event_count must be an integer, "
                             f"not {str(count)[:40]!r}")
    listed = payload.get("data_collections")
    if listed is not None and not (isinstance(listed, list) and all(
            isinstance(c, dict) and type(c.get("event_count", 0)) is int for c in listed)):
        return DecodeFailure(raw, "not_envelope", "the transaction marker's data_collections must be a list of "
                             "{data_collection, event_count} objects with integer counts")
    collections = tuple((str(c.get("data_collection")), int(c.get("event_count", 0))) for c in listed or [])
    return TransactionMarker(
        raw=raw,
        status=payload["status"],
        id=str(payload["id"]),
        event_count=count,
        data_collections=collections,
    )


def _text_or_none(value: Any) -> str | None:
    """A schema change's `ddl`/`databaseName` as text, whatever JSON type the connector used (a
    schema change is skipped either way; the compiled build checks the field's type)."""
    return value if value is None or isinstance(value, str) else str(value)
