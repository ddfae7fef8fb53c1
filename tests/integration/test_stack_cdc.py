"""The local stack's data path: a committed row becomes a Debezium event on Kafka."""

from __future__ import annotations

from typing import Any

from tests.integration.kafka_read import read_until
from tests.integration.stack import AUX_URL, INV_URL, PG_URL, execute, new_id_base


def _rows(msgs: list[dict[str, Any]], topic: str, rid: int) -> list[dict[str, Any]]:
    return [m for m in msgs if m["topic"] == topic and m["payload"]
            and (m["payload"].get("after") or {}).get("id") == rid]


def _tx_markers(msgs: list[dict[str, Any]], topic: str, txid: str) -> set[str]:
    return {m["payload"]["status"] for m in msgs if m["topic"] == topic and m["payload"]
            and str(m["payload"]["id"]).split(":")[0] == txid}


def test_postgres_row_arrives_with_begin_end(connectors: list[str]) -> None:
    """One PostgreSQL row → a change event on shop.public.orders, BEGIN/END on shop.transaction."""
    rid = new_id_base() + 1
    execute(PG_URL, "INSERT INTO orders (id, amount, status) VALUES (:id, 12.34, 'new')", {"id": rid})

    def done(msgs: list[dict[str, Any]]) -> bool:
        rows = _rows(msgs, "shop.public.orders", rid)
        if not rows:
            return False
        txid = rows[0]["payload"]["transaction"]["id"].split(":")[0]
        return _tx_markers(msgs, "shop.transaction", txid) == {"BEGIN", "END"}

    msgs = read_until(["shop.public.orders", "shop.transaction"], done)
    rows = _rows(msgs, "shop.public.orders", rid)
    assert len(rows) == 1
    p = rows[0]["payload"]
    assert p["op"] == "c" and p["source"]["connector"] == "postgresql" and p["source"]["table"] == "orders"
    txid = p["transaction"]["id"].split(":")[0]
    assert _tx_markers(msgs, "shop.transaction", txid) == {"BEGIN", "END"}


def test_mariadb_row_arrives_with_begin_end(connectors: list[str]) -> None:
    """One MariaDB row → a change event on inv.inventory.products, BEGIN/END on inv.transaction."""
    rid = new_id_base() + 2
    execute(INV_URL, "INSERT INTO products (id, sku, name, price) VALUES (:id, 'S', 'N', 1.50)", {"id": rid})

    def done(msgs: list[dict[str, Any]]) -> bool:
        rows = _rows(msgs, "inv.inventory.products", rid)
        return bool(rows) and _tx_markers(
            msgs, "inv.transaction", str(rows[0]["payload"]["transaction"]["id"])) == {"BEGIN", "END"}

    msgs = read_until(["inv.inventory.products", "inv.transaction"], done)
    rows = _rows(msgs, "inv.inventory.products", rid)
    assert len(rows) == 1 and rows[0]["payload"]["source"]["connector"] == "mariadb"
    assert _tx_markers(msgs, "inv.transaction", str(rows[0]["payload"]["transaction"]["id"])) == {"BEGIN", "END"}


def test_auxiliary_database_is_not_captured(connectors: list[str]) -> None:
    """A write into sidecar_aux (where hooks write) produces no event; a later inventory write does."""
    rid = new_id_base() + 3
    execute(AUX_URL, "INSERT INTO pipeline_stats (pipeline, destination_table, events) VALUES (:p, 't', 1)",
            {"p": f"aux-probe-{rid}"})
    execute(INV_URL, "INSERT INTO products (id, sku, name, price) VALUES (:id, 'S', 'after-aux', 1)", {"id": rid})
    msgs = read_until(["^inv.*"], lambda m: bool(_rows(m, "inv.inventory.products", rid)))
    assert _rows(msgs, "inv.inventory.products", rid), "the inventory write after the aux write must arrive"
    # Data change events only: the schema topic may still mention the database by name.
    aux = [m for m in msgs if m["payload"] and "op" in m["payload"] and (
        (m["payload"].get("source") or {}).get("db") == "sidecar_aux" or f"aux-probe-{rid}" in (m["value"] or ""))]
    assert aux == []
    assert not any(m["topic"].startswith("inv.sidecar_aux") for m in msgs)
