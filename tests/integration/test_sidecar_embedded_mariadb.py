"""Embedded mode on the stack's MariaDB: the engine runs the Maven-resolved Debezium release of
deploy/local/pom.xml (the one Kafka Connect runs), which has the MariaDB connector."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import yaml

from sidecar.sources.embedded_classpath import choose, pom_profile
from tests.integration.scenario import RECORD, rec
from tests.integration.stack import AUX_URL, INV_URL, PORTS, REPO, calls, execute, new_id_base, sidecar, wait_for


def mariadb_config(tmp: Path, run: str) -> Path:
    cfg = {
        "pipeline": "it-pipeline",
        "source": {"kind": "embedded", "embedded": {
            "connector": str(REPO / "connectors" / "mariadb-inventory.json"),
            "properties": {"database.port": str(PORTS["mariadb"]), "topic.prefix": "inv",
                           "table.include.list": "inventory.products", "snapshot.mode": "no_data",
                           # its own replication client id: Kafka Connect's connector uses the file's default
                           "database.server.id": str(random.randint(200_000, 900_000))},
            "state_dir": str(tmp / "state"),
            "jvm_opts": ["-Xmx512m"],
        }},
        "databases": {"auxiliary": {"calls": AUX_URL}},
        "hooks": {"record": {"path": RECORD, "tables": ["inventory.products"]}},
        "log": {"level": "info", "format": "json"},
    }
    path = tmp / f"embedded-mariadb-{run}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_jar_set_is_the_stacks_debezium_release() -> None:
    """The embedded engine's jars come from the pom the stack uses, with the MariaDB connector."""
    jar_set = choose(REPO / "connectors" / "mariadb-inventory.json")
    assert jar_set.kind == "maven" and jar_set.has_mariadb
    assert jar_set.debezium_version == pom_profile(REPO / "deploy" / "local" / "pom.xml")[0]


def test_embedded_mariadb_insert_update_delete(tmp_path: Path) -> None:
    """Insert, update and delete on inventory.products reach the hook with native values, in order."""
    run = f"embmaria-{uuid.uuid4().hex[:8]}"
    base = new_id_base()
    probe, pid = base, base + 1
    log = tmp_path / "sidecar.log"
    upsert = ("INSERT INTO products (id, sku, name, price) VALUES (:id, 'PROBE', 'probe', 0) "
              "ON DUPLICATE KEY UPDATE price = price + 1")

    def streaming() -> bool:
        execute(INV_URL, upsert, {"id": probe})
        return any(r.record_id == probe for r in calls(run))

    with sidecar(mariadb_config(tmp_path, run), run, log):
        wait_for("the embedded MariaDB engine to stream", streaming, timeout=180, every=1.0)
        execute(INV_URL, "INSERT INTO products (id, sku, name, price) VALUES (:p, 'S-1', 'Widget', 9.99)", {"p": pid})
        execute(INV_URL, "UPDATE products SET price = 12.50 WHERE id = :p", {"p": pid})
        execute(INV_URL, "DELETE FROM products WHERE id = :p", {"p": pid})
        rows = wait_for("c, u, d of the product", lambda: (r := [x for x in calls(run) if x.record_id == pid])
                        and len(r) >= 3 and r, timeout=60)
    assert [r.op for r in rows] == ["c", "u", "d"], log.read_text()[-3000:]
    records = [rec(r)["record"] for r in rows]
    assert [x["price"] for x in records] == ["Decimal:9.99", "Decimal:12.50", "Decimal:12.50"]
    assert {x["_destination_table"] for x in records} == {"inventory.products"}
    assert all(x["_transaction_id"] for x in records)  # MariaDB transaction metadata reaches the record
