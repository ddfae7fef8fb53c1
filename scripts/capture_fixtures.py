"""Record real Debezium messages from the local stack into test fixtures.

    deploy/local/stack up && .venv/bin/python scripts/capture_fixtures.py

For each database (PostgreSQL, MariaDB) and each schema mode (JsonConverter with and
without embedded schemas) it registers a throwaway connector over the `type_zoo` tables,
commits a scripted set of changes (every type the decoder handles, the edge cases:
NaN/Infinity, ±infinity timestamps, TOAST, default replica identity, TRUNCATE, a
multi-row transaction, a DDL), reads every message the connector wrote and saves them to
tests/fixtures/debezium/<db>-<mode>.json, stamped with the Debezium version from the
messages' own `source.version`. The connectors and their slots are removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sidecar import connectors as cx  # noqa: E402

CONNECT = f"http://127.0.0.1:{os.environ.get('STACK_CONNECT_PORT', '8083')}"
KAFKA = f"127.0.0.1:{os.environ.get('STACK_KAFKA_PORT', '9092')}"
PG_PORT = os.environ.get("STACK_PG_PORT", "5432")
MARIADB_PORT = os.environ.get("STACK_MARIADB_PORT", "3306")
OUT = REPO / "tests" / "fixtures" / "debezium"

PG_SETUP = """
TRUNCATE public.type_zoo, public.events_default_identity;
INSERT INTO public.type_zoo (id, c_numeric, c_numeric_var, c_real, c_double, c_date, c_time, c_timetz, c_ts,
  c_tstz, c_interval, c_uuid, c_json, c_jsonb, c_bytea, c_bits, c_int_array, c_text_array, c_bool, c_big_text)
VALUES (1, 12345.678901, 3.14159265358979, 1.5, 2.25, '2024-02-29', '13:14:15.123456', '13:14:15.5+02',
  '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+00', '1 day 02:03:04.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"k": [1, 2, {"n": null}]}', '{"b": true}', '\\xdeadbeef', B'1011', '{1,2,3}', '{"x","y"}', true, 'snapshot row');
"""

PG_CHANGES = """
INSERT INTO public.type_zoo (id, c_numeric, c_numeric_var, c_real, c_double, c_date, c_time, c_timetz, c_ts,
  c_tstz, c_interval, c_uuid, c_json, c_jsonb, c_bytea, c_bits, c_int_array, c_text_array, c_bool, c_big_text)
VALUES (2, -0.000001, 'NaN', 'NaN', 'Infinity', '1969-12-31', '00:00:00', '23:59:59.999999-05:30',
  '1900-01-01 00:00:00', 'infinity', '-3 mons -1 day', '00000000-0000-0000-0000-000000000000',
  '[]', 'null', '\\x', B'', '{}', '{NULL,"a"}', false,
  (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) AS i));
INSERT INTO public.type_zoo (id, c_double, c_real, c_tstz, c_date) VALUES (3, '-Infinity', '-Infinity', '-infinity', '2262-04-11');
UPDATE public.type_zoo SET c_bool = NOT c_bool, c_numeric = 42 WHERE id = 2;
BEGIN;
INSERT INTO public.type_zoo (id, c_numeric) VALUES (10, 1), (11, 2), (12, 3);
UPDATE public.type_zoo SET c_numeric = c_numeric + 1 WHERE id IN (10, 11);
COMMIT;
UPDATE public.type_zoo SET id = 13 WHERE id = 12;
DELETE FROM public.type_zoo WHERE id = 3;
INSERT INTO public.events_default_identity (id, note)
  VALUES (1, (SELECT string_agg(md5((i * 7)::text), '') FROM generate_series(1, 400) AS i));
UPDATE public.events_default_identity SET id = id WHERE id = 1;
DELETE FROM public.events_default_identity WHERE id = 1;
INSERT INTO public.events_default_identity (id, note) VALUES (2, 'short');
TRUNCATE public.events_default_identity;
"""

MARIADB_SETUP = """
DELETE FROM inventory.type_zoo;
INSERT INTO inventory.type_zoo VALUES (1, 12345.678901, 1.5, 2.25, '2024-02-29', '13:14:15.123456',
  '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456', 2024, 'medium', 'red,blue', b'101100111000',
  x'deadbeef', '{"k": [1, 2, {"n": null}]}', 'snapshot row', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
"""

MARIADB_CHANGES = """
INSERT INTO inventory.type_zoo VALUES (2, -0.000001, -1.25, 1e300, '1969-12-31', '-838:59:59.000000',
  '1000-01-01 00:00:00', '1970-01-01 00:00:01', 1901, 'small', '', b'0', x'', '[]', '', false,
  '00000000-0000-0000-0000-000000000000');
INSERT INTO inventory.type_zoo (id, c_time, c_set) VALUES (3, '838:59:59', 'red,green,blue');
UPDATE inventory.type_zoo SET c_bool = NOT c_bool, c_decimal = 42 WHERE id = 2;
START TRANSACTION;
INSERT INTO inventory.type_zoo (id, c_decimal) VALUES (10, 1), (11, 2), (12, 3);
UPDATE inventory.type_zoo SET c_decimal = c_decimal + 1 WHERE id IN (10, 11);
COMMIT;
UPDATE inventory.type_zoo SET id = 13 WHERE id = 12;
DELETE FROM inventory.type_zoo WHERE id = 3;
ALTER TABLE inventory.type_zoo ADD COLUMN c_added INT NULL;
INSERT INTO inventory.type_zoo (id, c_added) VALUES (20, 7);
ALTER TABLE inventory.type_zoo DROP COLUMN c_added;
"""


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", PG_PORT, "-U", "cdc", "-d", "shop"],
        input=sql.encode(),
        check=True,
        env={**os.environ, "PGPASSWORD": "cdc"},
    )


def mariadb(sql: str, user: str = "cdc", password: str = "cdc") -> None:
    subprocess.run(
        ["mariadb", "-h", "127.0.0.1", "-P", MARIADB_PORT, f"-u{user}", f"-p{password}"],
        input=sql.encode(),
        check=True,
    )


def drain(prefix: str, expect_min: int, quiet_s: float = 6.0, limit_s: float = 120.0) -> list[dict[str, Any]]:
    consumer = Consumer(
        {"bootstrap.servers": KAFKA, "group.id": f"fixture-capture-{time.time()}", "auto.offset.reset": "earliest",
         "enable.auto.commit": "false", "topic.metadata.refresh.interval.ms": "1000"}
    )
    consumer.subscribe([f"^{prefix}(\\..*)?$"])
    out: list[dict[str, Any]] = []
    start = last = time.monotonic()
    while time.monotonic() - start < limit_s:
        msg = consumer.poll(0.5)
        if msg is None:
            if len(out) >= expect_min and time.monotonic() - last > quiet_s:
                break
            continue
        if msg.error():
            continue
        last = time.monotonic()
        out.append(
            {
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": None if msg.key() is None else msg.key().decode(),
                "value": None if msg.value() is None else msg.value().decode(),
            }
        )
    consumer.close()
    # A regex subscription rebalances as topics appear; without commits that re-reads.
    unique = {(m["topic"], m["partition"], m["offset"]): m for m in out}
    out = list(unique.values())
    out.sort(key=lambda m: (m["topic"], m["partition"], m["offset"]))
    return out


def version_of(messages: list[dict[str, Any]]) -> str:
    for m in messages:
        if not m["value"]:
            continue
        doc = json.loads(m["value"])
        payload = doc.get("payload", doc) if isinstance(doc, dict) else None
        if isinstance(payload, dict) and isinstance(payload.get("source"), dict) and "version" in payload["source"]:
            return str(payload["source"]["version"])
    raise SystemExit("no Debezium change event captured: is the stack up and the connector running?")


def capture(db: str, schemas: bool) -> None:
    mode = "schemas" if schemas else "noschemas"
    prefix = f"fx{db[:2]}{'s' if schemas else 'n'}{int(time.time()) % 100000}"
    env = dict(os.environ, CONNECT_SCHEMAS_ENABLE=str(schemas).lower(), KAFKA_BOOTSTRAP_SERVERS=KAFKA)
    if db == "postgres":
        env.update(PG_CONNECTOR_NAME=f"fixture-{prefix}", PG_TOPIC_PREFIX=prefix, PG_SLOT_NAME=f"fx_{prefix}",
                   PG_PUBLICATION_NAME=f"fx_{prefix}", PG_PORT=PG_PORT,
                   PG_TABLE_INCLUDE_LIST="public.type_zoo,public.events_default_identity")
        path = REPO / "connectors" / "postgres-shop.json"
        psql(PG_SETUP)
    else:
        env.update(MARIADB_CONNECTOR_NAME=f"fixture-{prefix}", MARIADB_TOPIC_PREFIX=prefix,
                   MARIADB_SERVER_ID=str(200000 + int(time.time()) % 1000 + (0 if schemas else 1000)),
                   MARIADB_SCHEMA_HISTORY_TOPIC=f"_schema-history.{prefix}", MARIADB_PORT=MARIADB_PORT)
        path = REPO / "connectors" / "mariadb-inventory.json"
        mariadb(MARIADB_SETUP)
    name = cx.apply(CONNECT, path, env)
    try:
        cx.wait_running(CONNECT, name, 90)
        time.sleep(5)  # let the snapshot finish before the scripted changes
        if db == "postgres":
            psql(PG_CHANGES)
        else:
            mariadb(MARIADB_CHANGES)
        messages = drain(prefix, expect_min=10)
    finally:
        cx.delete(CONNECT, name)
        if db == "postgres":
            time.sleep(2)
            subprocess.run(
                ["psql", "-q", "-h", "127.0.0.1", "-p", PG_PORT, "-U", "cdc", "-d", "shop", "-c",
                 f"SELECT pg_drop_replication_slot('fx_{prefix}') FROM pg_replication_slots WHERE slot_name='fx_{prefix}';"
                 f"DROP PUBLICATION IF EXISTS fx_{prefix};"],
                env={**os.environ, "PGPASSWORD": "cdc"}, check=False,
            )
    # Normalise the generated prefix so fixtures are stable across captures.
    text = json.dumps(messages).replace(prefix, f"fx{db[:2]}")
    messages = json.loads(text)
    doc = {
        "debezium_version": version_of(messages),
        "connector": db,
        "schemas_enable": schemas,
        "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "messages": messages,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / f"{db}-{mode}.json"
    target.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"{target.relative_to(REPO)}: {len(messages)} messages, Debezium {doc['debezium_version']}")


def main() -> None:
    which = sys.argv[1:] or ["postgres", "mariadb"]
    for db in which:
        for schemas in (True, False):
            capture(db, schemas)


if __name__ == "__main__":
    main()
