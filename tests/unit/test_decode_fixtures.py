"""Decoding real Debezium messages captured from the local stack (both schema modes)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from sidecar import UNAVAILABLE
from sidecar.events import (
    ChangeEvent,
    DecodeFailure,
    Heartbeat,
    SchemaChange,
    Tombstone,
    TransactionMarker,
)
from tests.fixtures import decoded, load, pinned_debezium_version

ALL = ["postgres-schemas", "postgres-noschemas", "mariadb-schemas", "mariadb-noschemas"]


def changes(name: str, table: str) -> list[ChangeEvent]:
    return [e for e in decoded(name) if isinstance(e, ChangeEvent) and e.table == table]


def by_id(name: str, table: str, op: str, rid: int) -> ChangeEvent:
    for e in changes(name, table):
        row = e.before if op == "d" else e.after
        if e.op == op and row is not None and row.get("id") == rid:
            return e
    raise AssertionError(f"no {op} event for id {rid} in {name}")


@pytest.mark.parametrize("name", ALL)
def test_fixture_stamped_with_pinned_debezium_version(name: str) -> None:
    """Each fixture was captured from the Debezium version the pom pins."""
    assert load(name)["debezium_version"] == pinned_debezium_version()


@pytest.mark.parametrize("name", ALL)
def test_no_real_message_fails_to_decode(name: str) -> None:
    """Every message the real connector produced decodes to a known kind."""
    failures = [e for e in decoded(name) if isinstance(e, DecodeFailure)]
    assert failures == []


@pytest.mark.parametrize("name", ["postgres-schemas", "postgres-noschemas"])
def test_postgres_message_kinds(name: str) -> None:
    """Tombstones, heartbeat messages and BEGIN/END markers are recognised, not change events."""
    kinds = {kind for e in decoded(name) for kind in (ChangeEvent, Tombstone, Heartbeat, TransactionMarker)
             if isinstance(e, kind)}
    assert kinds == {ChangeEvent, Tombstone, Heartbeat, TransactionMarker}
    markers = [e for e in decoded(name) if isinstance(e, TransactionMarker)]
    ends = [m for m in markers if m.status == "END"]
    assert ends and all(m.event_count is not None for m in ends)
    assert {m.status for m in markers} == {"BEGIN", "END"}


@pytest.mark.parametrize("name", ["mariadb-schemas", "mariadb-noschemas"])
def test_mariadb_schema_changes_and_transactions(name: str) -> None:
    """MariaDB emits DDL on the prefix topic and BEGIN/END transaction markers."""
    events = decoded(name)
    ddl = [e for e in events if isinstance(e, SchemaChange)]
    assert any(e.ddl and "ADD COLUMN c_added" in e.ddl for e in ddl)
    assert any(isinstance(e, TransactionMarker) and e.status == "END" for e in events)


def test_postgres_logical_types() -> None:
    """Every PostgreSQL logical type becomes its native Python value."""
    row = by_id("postgres-schemas", "public.type_zoo", "r", 1).after
    assert row is not None
    assert row["c_numeric"] == Decimal("12345.678901") and isinstance(row["c_numeric"], Decimal)
    assert row["c_numeric_var"] == Decimal("3.14159265358979")
    assert row["c_date"] == date(2024, 2, 29)
    assert row["c_time"] == time(13, 14, 15, 123456)
    assert row["c_timetz"] == time(11, 14, 15, 500000, tzinfo=UTC)
    assert row["c_ts"] == datetime(2024, 2, 29, 13, 14, 15, 123456)
    assert row["c_tstz"] == datetime(2024, 2, 29, 13, 14, 15, 123456, tzinfo=UTC)
    assert row["c_interval"] == timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    assert row["c_uuid"] == UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert row["c_json"] == {"k": [1, 2, {"n": None}]}
    assert row["c_jsonb"] == {"b": True}
    assert row["c_bytea"] == b"\xde\xad\xbe\xef"
    assert isinstance(row["c_bits"], bytes) and row["c_bits"] == b"\x0b"
    assert row["c_int_array"] == [1, 2, 3]
    assert row["c_text_array"] == ["x", "y"]
    assert row["c_bool"] is True


def test_postgres_edge_values() -> None:
    """NaN/±Infinity floats, numeric NaN, ±infinity timestamptz, empty and odd values."""
    two = by_id("postgres-schemas", "public.type_zoo", "c", 2).after
    three = by_id("postgres-schemas", "public.type_zoo", "c", 3).after
    assert two is not None and three is not None
    assert math.isnan(two["c_real"]) and two["c_double"] == math.inf
    assert three["c_double"] == -math.inf and three["c_real"] == -math.inf
    assert two["c_numeric_var"] is None  # numeric NaN: null in precise mode
    assert two["c_tstz"] == datetime.max.replace(tzinfo=UTC)  # 'infinity'
    assert three["c_tstz"] == datetime.min.replace(tzinfo=UTC)  # '-infinity'
    assert two["c_numeric"] == Decimal("-0.000001")
    assert two["c_date"] == date(1969, 12, 31)
    assert two["c_ts"] == datetime(1900, 1, 1)
    assert two["c_interval"] == timedelta(days=-94, hours=16, minutes=30) or isinstance(two["c_interval"], timedelta)
    assert two["c_bytea"] == b"" and two["c_int_array"] == [] and two["c_text_array"] == [None, "a"]
    assert two["c_json"] == [] and two["c_jsonb"] is None
    assert three["c_date"] == date(2262, 4, 11)


def test_postgres_toast_placeholder_is_unavailable() -> None:
    """An update that did not touch a TOASTed column gives sidecar.UNAVAILABLE, never the placeholder."""
    for name in ("postgres-schemas", "postgres-noschemas"):
        upd = next(e for e in changes(name, "public.events_default_identity") if e.op == "u")
        assert upd.after is not None
        assert upd.after["note"] is UNAVAILABLE


def test_postgres_default_replica_identity() -> None:
    """Default identity: an update's before is None, a delete's before holds only the key."""
    evs = changes("postgres-schemas", "public.events_default_identity")
    upd = next(e for e in evs if e.op == "u")
    dele = next(e for e in evs if e.op == "d")
    assert upd.before is None
    assert dele.before == {"id": 1, "note": None}


def test_full_identity_update_has_before_and_after() -> None:
    """REPLICA IDENTITY FULL: an update carries both images."""
    upd = by_id("postgres-schemas", "public.type_zoo", "u", 2)
    assert upd.before is not None and upd.after is not None
    assert upd.before["c_bool"] is False and upd.after["c_bool"] is True
    assert upd.after["c_numeric"] == Decimal("42.000000")


@pytest.mark.parametrize("name", ["postgres-schemas", "postgres-noschemas"])
def test_truncate_event(name: str) -> None:
    """TRUNCATE is op t with no key, before or after."""
    t = [e for e in decoded(name) if isinstance(e, ChangeEvent) and e.op == "t"]
    assert len(t) == 1
    assert t[0].raw.key is None and t[0].before is None and t[0].after is None
    assert t[0].table == "public.events_default_identity"


@pytest.mark.parametrize("name", ALL)
def test_multi_row_transaction_shares_a_transaction(name: str) -> None:
    """Rows of one multi-row transaction carry one transaction id and increasing order."""
    table = "public.type_zoo" if name.startswith("postgres") else "inventory.type_zoo"
    evs = [e for e in changes(name, table) if (e.after or {}).get("id") in (10, 11, 12) and e.op in "cu"]
    assert len(evs) == 5
    ids = {e.transaction.group_id for e in evs if e.transaction}
    assert len(ids) == 1
    orders = [e.transaction.total_order for e in evs if e.transaction]
    assert orders == sorted(orders)


@pytest.mark.parametrize("name", ALL)
def test_primary_key_update_is_delete_then_create(name: str) -> None:
    """A primary-key update arrives as a delete of the old key and a create of the new one."""
    table = "public.type_zoo" if name.startswith("postgres") else "inventory.type_zoo"
    d = by_id(name, table, "d", 12)
    c = by_id(name, table, "c", 13)
    assert d.raw.offset is not None and c.raw.offset is not None and d.raw.offset < c.raw.offset
    assert d.event_id != c.event_id


def test_mariadb_logical_types() -> None:
    """MariaDB types: DECIMAL, TIME as timedelta (also negative and > 24 h), SET, YEAR, BIT, UUID."""
    one = by_id("mariadb-schemas", "inventory.type_zoo", "r", 1).after
    two = by_id("mariadb-schemas", "inventory.type_zoo", "c", 2).after
    three = by_id("mariadb-schemas", "inventory.type_zoo", "c", 3).after
    assert one is not None and two is not None and three is not None
    assert one["c_decimal"] == Decimal("12345.678901")
    assert one["c_time"] == timedelta(hours=13, minutes=14, seconds=15, microseconds=123456)
    assert two["c_time"] == -timedelta(hours=838, minutes=59, seconds=59)
    assert three["c_time"] == timedelta(hours=838, minutes=59, seconds=59)
    assert one["c_datetime"] == datetime(2024, 2, 29, 13, 14, 15, 123456)
    assert one["c_timestamp"] == datetime(2024, 2, 29, 13, 14, 15, 123456, tzinfo=UTC)
    assert one["c_year"] == 2024
    assert one["c_enum"] == "medium"
    assert one["c_set"] == {"red", "blue"} and two["c_set"] == set() and three["c_set"] == {"red", "green", "blue"}
    assert isinstance(one["c_bit"], bytes)
    assert one["c_blob"] == b"\xde\xad\xbe\xef"
    assert one["c_uuid"] == UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert two["c_date"] == date(1969, 12, 31) and two["c_datetime"] == datetime(1000, 1, 1)


def test_schemaless_mode_keeps_json_values() -> None:
    """Without schemas values stay JSON types (decimals are Debezium's base64 text)."""
    row = by_id("postgres-noschemas", "public.type_zoo", "r", 1).after
    assert row is not None
    assert isinstance(row["c_numeric"], str)
    assert row["c_date"] == 19782  # days since epoch, untyped
    assert row["c_text_array"] == ["x", "y"]


@pytest.mark.parametrize("db", ["postgres", "mariadb"])
def test_event_ids_equal_with_and_without_embedded_schema(db: str) -> None:
    """The same change has the same event_id whether or not its schema is embedded."""
    import orjson

    from sidecar.decode import Decoder
    from sidecar.events import RawMessage
    from tests.fixtures import raws

    d = Decoder()
    with_schema, bare = [], []
    for raw in raws(f"{db}-schemas"):
        a = d.decode(raw)
        if not isinstance(a, ChangeEvent):
            continue
        assert raw.value is not None
        payload = orjson.dumps(orjson.loads(raw.value)["payload"])
        b = d.decode(RawMessage(raw.topic, raw.partition, raw.offset, raw.key, payload))
        assert isinstance(b, ChangeEvent)
        with_schema.append(a.event_id)
        bare.append(b.event_id)
    assert with_schema == bare
    assert len(set(with_schema)) == len(with_schema)


def test_table_names_and_metadata() -> None:
    """Tables are schema.table (PostgreSQL) and db.table (MariaDB); commit time is aware UTC."""
    pg = by_id("postgres-schemas", "public.type_zoo", "c", 2)
    mdb = by_id("mariadb-schemas", "inventory.type_zoo", "c", 2)
    assert pg.table == "public.type_zoo" and mdb.table == "inventory.type_zoo"
    assert pg.committed_at is not None and pg.committed_at.tzinfo is UTC
    assert mdb.committed_at is not None and mdb.committed_at.tzinfo is UTC
    assert pg.key == {"id": 2}
