"""Writes deploy/kubernetes/strimzi/connector-*.yaml (KafkaConnector, Strimzi v1) from connectors/*.json.

Placeholders take their defaults, hosts point at in-cluster services, and passwords come
from a Secret through Strimzi's KubernetesSecretConfigProvider. A test checks the files are
up to date, so the Kafka Connect configs have one source.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sidecar import connectors as cx

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "deploy" / "kubernetes" / "strimzi"
ENV = {
    "PG_HOST": "postgres.shop.svc",
    "MARIADB_HOST": "mariadb.shop.svc",
    "PG_CDC_PASSWORD": "${secrets:pipelines/debezium-credentials:postgres-password}",
    "MARIADB_CDC_PASSWORD": "${secrets:pipelines/debezium-credentials:mariadb-password}",
    "KAFKA_BOOTSTRAP_SERVERS": "my-cluster-kafka-bootstrap:9092",
}
FILES = (("postgres-shop.json", "connector-postgres.yaml"), ("mariadb-inventory.json", "connector-mariadb.yaml"))


def render(src: str) -> str:
    name, config = cx.load_connector(REPO / "connectors" / src, ENV)
    cls = config.pop("connector.class")
    doc = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaConnector",
        "metadata": {"name": name, "labels": {"strimzi.io/cluster": "checkpoint-connect"}},
        "spec": {"class": cls, "tasksMax": 1, "config": config},
    }
    header = f"# Generated from connectors/{src} by scripts/make_strimzi.py — edit that file, then regenerate.\n"
    return header + yaml.safe_dump(doc, sort_keys=False)


def main() -> None:
    for src, out in FILES:
        (OUT / out).write_text(render(src))


if __name__ == "__main__":
    main()
