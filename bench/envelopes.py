"""Debezium change events as Kafka Connect's JsonConverter writes them, for the benchmarks.

Modelled on the captured PostgreSQL messages in tests/fixtures/debezium/ (connector 3.5.0.Final,
`decimal.handling.mode=precise`, `time.precision.mode=adaptive`, transaction metadata on): the
field schemas, the source block and its schema are the captured ones; the values are generated.
Compact JSON (`{"schema":…,"payload":…}`, no spaces), keys too; with embedded schemas or without
(`schemas.enable=false`: the bare payload, decimals still base64 as in the captured file).

Two tables: `public.orders` (narrow, 5 columns) and `public.customer_accounts` (wide, 28 columns
of mixed types: decimals, timestamps with and without zone, dates, times, text, bool, uuid,
json/jsonb, arrays, doubles). Updates carry a full before-image (REPLICA IDENTITY FULL).
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "debezium" / "postgres-schemas.json"
PREFIX = "bench"
EPOCH_US = 1_764_460_800_000_000  # 2025-11-30T00:00:00Z
POISON_EVERY = 100  # 1 % poison: message i with i % 100 == 50

Gen = Callable[[random.Random, int], Any]


def _decimal_schema(name: str, precision: int, scale: int, optional: bool = True) -> dict[str, Any]:
    return {"type": "bytes", "optional": optional, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
            "parameters": {"scale": str(scale), "connect.decimal.precision": str(precision)}, "field": name}


def _decimal(unscaled: int) -> str:
    """Connect's Decimal: the unscaled value as big-endian two's complement bytes, base64 in JSON."""
    length = max(1, (unscaled + (unscaled < 0)).bit_length() // 8 + 1)
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


@cache
def _zoo_fields() -> dict[str, dict[str, Any]]:
    """The captured field schemas of public.type_zoo (every type the decoder handles), by column."""
    doc = json.loads(FIXTURE.read_text())
    for m in doc["messages"]:
        if m["topic"].endswith(".type_zoo") and m["value"]:
            schema = json.loads(m["value"])["schema"]
            after = next(f for f in schema["fields"] if f["field"] == "after")
            return {f["field"]: f for f in after["fields"]}
    raise SystemExit(f"no type_zoo message in {FIXTURE}")


@cache
def _source_schema() -> dict[str, Any]:
    doc = json.loads(FIXTURE.read_text())
    for m in doc["messages"]:
        if m["topic"].endswith(".type_zoo") and m["value"]:
            schema = json.loads(m["value"])["schema"]
            return next(f for f in schema["fields"] if f["field"] == "source")
    raise SystemExit(f"no type_zoo message in {FIXTURE}")


def _like(zoo_column: str, name: str, optional: bool = True) -> dict[str, Any]:
    field = {**_zoo_fields()[zoo_column], "field": name, "optional": optional}
    return field


def _plain(type_: str, name: str, optional: bool = True) -> dict[str, Any]:
    return {"type": type_, "optional": optional, "field": name}


WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
STATUSES = ("new", "paid", "shipped", "cancelled", "refunded")


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _tstz(rng: random.Random, i: int) -> str:
    us = EPOCH_US + i * 1_000 + rng.randrange(1_000_000)
    secs, frac = divmod(us, 1_000_000)
    import datetime as dt

    t = dt.datetime.fromtimestamp(secs, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:06d}Z"


def orders_columns() -> list[tuple[dict[str, Any], Gen]]:
    return [
        (_plain("int64", "id", optional=False), lambda r, i: i),
        (_plain("int64", "customer_id"), lambda r, i: r.randrange(1, 50_000)),
        (_decimal_schema("amount", 12, 2, optional=False), lambda r, i: _decimal(r.randrange(100, 10_000_000))),
        (_plain("string", "status", optional=False), lambda r, i: r.choice(STATUSES)),
        (_like("c_tstz", "created_at", optional=False), _tstz),
    ]


def wide_columns() -> list[tuple[dict[str, Any], Gen]]:
    return [
        (_plain("int64", "id", optional=False), lambda r, i: i),
        (_plain("int64", "account_no"), lambda r, i: r.randrange(10**9, 10**10)),
        (_like("c_uuid", "external_id", optional=False), lambda r, i: str(uuid.UUID(int=r.getrandbits(128)))),
        (_plain("string", "email"), lambda r, i: f"user{i}@example.com"),
        (_plain("string", "full_name"), lambda r, i: _text(r, 2).title()),
        (_plain("string", "phone"), lambda r, i: f"+1-555-{r.randrange(10**7):07d}"),
        (_plain("string", "country"), lambda r, i: r.choice(("DE", "FR", "US", "JP", "BR"))),
        (_plain("string", "status"), lambda r, i: r.choice(STATUSES)),
        (_plain("string", "notes"), lambda r, i: _text(r, 12)),
        (_decimal_schema("balance", 14, 2), lambda r, i: _decimal(r.randrange(-10**9, 10**11))),
        (_decimal_schema("credit_limit", 12, 2), lambda r, i: _decimal(r.randrange(0, 10**9))),
        (_like("c_numeric", "interest_rate"), lambda r, i: _decimal(r.randrange(0, 200_000_000))),  # numeric(20,6)
        (_decimal_schema("tax_rate", 5, 4), lambda r, i: _decimal(r.randrange(0, 30_000))),
        (_like("c_numeric_var", "score"),
         lambda r, i: {"scale": 3, "value": _decimal(r.randrange(0, 10**7))}),  # numeric without precision
        (_plain("int32", "login_count"), lambda r, i: r.randrange(0, 10_000)),
        (_plain("double", "lifetime_value"), lambda r, i: round(r.random() * 10_000, 4)),
        (_plain("float", "risk"), lambda r, i: round(r.random(), 3)),
        (_plain("boolean", "active"), lambda r, i: r.random() < 0.9),
        (_plain("boolean", "verified"), lambda r, i: r.random() < 0.5),
        (_like("c_date", "birth_date"), lambda r, i: r.randrange(-3000, 12000)),
        (_like("c_date", "signup_date"), lambda r, i: 19000 + r.randrange(0, 1500)),
        (_like("c_time", "preferred_time"), lambda r, i: r.randrange(0, 86_400) * 1_000_000),
        (_like("c_ts", "last_login"), lambda r, i: EPOCH_US + i * 1_000),
        (_like("c_tstz", "created_at", optional=False), _tstz),
        (_like("c_tstz", "updated_at", optional=False), _tstz),
        (_like("c_jsonb", "preferences"),
         lambda r, i: orjson.dumps({"lang": r.choice(("en", "de")), "mail": r.random() < 0.5}).decode()),
        (_like("c_json", "address"),
         lambda r, i: orjson.dumps({"street": _text(r, 2), "zip": f"{r.randrange(10**5):05d}"}).decode()),
        (_like("c_text_array", "tags"), lambda r, i: [r.choice(WORDS) for _ in range(r.randrange(0, 4))]),
    ]


TABLES: dict[str, Callable[[], list[tuple[dict[str, Any], Gen]]]] = {
    "orders": orders_columns, "customer_accounts": wide_columns,
}


class Table:
    """One table's envelopes: the schema bytes are built once, the payload per message."""

    def __init__(self, table: str, schemas: bool, seed: int = 12) -> None:
        self.table = table
        self.schemas = schemas
        self.columns = TABLES[table]()
        self.rng = random.Random(seed)
        row_name = f"{PREFIX}.public.{table}"
        fields = [c[0] for c in self.columns]
        row = {"type": "struct", "fields": fields, "optional": True, "name": f"{row_name}.Value"}
        envelope = {
            "type": "struct",
            "fields": [
                {**row, "field": "before"}, {**row, "field": "after"}, _source_schema(),
                {"type": "struct", "fields": [{"type": "string", "optional": False, "field": "id"},
                                              {"type": "int64", "optional": False, "field": "total_order"},
                                              {"type": "int64", "optional": False, "field": "data_collection_order"}],
                 "optional": True, "name": "event.block", "version": 1, "field": "transaction"},
                {"type": "string", "optional": False, "field": "op"},
                {"type": "int64", "optional": True, "field": "ts_ms"},
                {"type": "int64", "optional": True, "field": "ts_us"},
                {"type": "int64", "optional": True, "field": "ts_ns"},
            ],
            "optional": False, "name": f"{row_name}.Envelope", "version": 2,
        }
        key_schema = {"type": "struct", "fields": [{"type": "int64", "optional": False, "field": "id"}],
                      "optional": False, "name": f"{row_name}.Key"}
        self._value_head = b'{"schema":' + orjson.dumps(envelope) + b',"payload":'
        self._key_head = b'{"schema":' + orjson.dumps(key_schema) + b',"payload":'

    def row(self, i: int) -> dict[str, Any]:
        return {c[0]["field"]: c[1](self.rng, i) for c in self.columns}

    def message(self, i: int) -> tuple[bytes, bytes]:
        """Message i: a create, or (every 5th) an update with its full before-image."""
        rng = self.rng
        after = self.row(i)
        update = i % 5 == 4
        before = {**after, **{k: v for k, v in self.row(i).items() if k not in ("id", "created_at")}} \
            if update else None
        commit_us = EPOCH_US + i * 1_000
        tx = 10_000 + i
        lsn = 30_000_000 + i * 512
        payload = {
            "before": before, "after": after,
            "source": {"version": "3.5.0.Final", "connector": "postgresql", "name": PREFIX,
                       "ts_ms": commit_us // 1000, "snapshot": "false", "db": "shop",
                       "sequence": f'["{lsn - 512}","{lsn}"]', "ts_us": commit_us, "ts_ns": commit_us * 1000,
                       "schema": "public", "table": self.table, "txId": tx, "lsn": lsn, "xmin": None,
                       "origin": None, "origin_lsn": None},
            "transaction": {"id": f"{tx}:{lsn}", "total_order": 1, "data_collection_order": 1},
            "op": "u" if update else "c",
            "ts_ms": commit_us // 1000 + 40, "ts_us": commit_us + 40_123 + rng.randrange(1000),
            "ts_ns": (commit_us + 40_123) * 1000,
        }
        key = {"id": i}
        if self.schemas:
            return self._key_head + orjson.dumps(key) + b"}", self._value_head + orjson.dumps(payload) + b"}"
        return orjson.dumps(key), orjson.dumps(payload)


def is_poison(i: int) -> bool:
    return i % POISON_EVERY == POISON_EVERY // 2


def poison(i: int, good: bytes) -> bytes:
    """Alternately bytes that are not JSON at all and an envelope cut off in the middle."""
    if (i // POISON_EVERY) % 2 == 0:
        return b"not json at all \xff\xfe " + str(i).encode()
    return good[: len(good) // 2]


def messages(table: str, schemas: bool, n: int) -> Iterator[tuple[bytes, bytes]]:
    t = Table(table, schemas)
    for i in range(n):
        key, value = t.message(i)
        yield key, poison(i, value) if is_poison(i) else value


def poison_count(n: int) -> int:
    return sum(1 for i in range(n) if is_poison(i))
