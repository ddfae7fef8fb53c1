"""Regenerate sidecar/examples/changes.jsonl: the captured orders messages of examples/orders.jsonl
with the transaction BEGIN/END markers Debezium sends around them (marker format copied from a
real captured marker in tests/fixtures/debezium/postgres-schemas.json) and the tombstone after
the delete. `checkpoint-sidecar hooks test NAME` runs a hook on these by default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "sidecar" / "examples" / "changes.jsonl"


def marker_template() -> tuple[dict[str, Any], dict[str, Any]]:
    fixture = json.loads((REPO / "tests" / "fixtures" / "debezium" / "postgres-schemas.json").read_text())
    for m in fixture["messages"]:
        if m["topic"].endswith(".transaction"):
            return json.loads(m["key"]), json.loads(m["value"])
    raise SystemExit("no transaction marker in the fixture")


def marker(key_t: dict[str, Any], value_t: dict[str, Any], status: str, tx: str, ts_ms: int,
           counts: dict[str, int] | None) -> dict[str, Any]:
    key = {**key_t, "payload": {"id": tx}}
    payload = {"status": status, "id": tx, "event_count": None, "data_collections": None, "ts_ms": ts_ms}
    if counts is not None:
        payload["event_count"] = sum(counts.values())
        payload["data_collections"] = [{"data_collection": t, "event_count": n} for t, n in counts.items()]
    return {"topic": "shop.transaction", "partition": 0, "key": json.dumps(key, separators=(",", ":")),
            "value": json.dumps({**value_t, "payload": payload}, separators=(",", ":"))}


def main() -> None:
    key_t, value_t = marker_template()
    lines = [json.loads(line) for line in (REPO / "examples" / "orders.jsonl").read_text().splitlines() if line]
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(lines):
        first = json.loads(lines[i]["value"])["payload"]
        tx = first["transaction"]["id"]
        tx_id = tx.split(":")[0]  # PostgreSQL: the LSN part differs between markers and events
        group = [lines[i]]
        i += 1
        while i < len(lines) and json.loads(lines[i]["value"])["payload"]["source"]["txId"] == int(tx_id):
            group.append(lines[i])
            i += 1
        ts = first["source"]["ts_ms"]
        out.append(marker(key_t, value_t, "BEGIN", tx, ts, None))
        counts: dict[str, int] = {}
        for m in group:
            p = json.loads(m["value"])["payload"]
            table = f"{p['source']['schema']}.{p['source']['table']}"
            counts[table] = counts.get(table, 0) + 1
            out.append(m)
            if p["op"] == "d":
                out.append({**m, "value": None})  # the tombstone Debezium sends after a delete
        out.append(marker(key_t, value_t, "END", tx, ts, counts))
    for n, m in enumerate(out):
        m["offset"] = n
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(m) + "\n" for m in out))
    print(f"wrote {len(out)} messages to {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
