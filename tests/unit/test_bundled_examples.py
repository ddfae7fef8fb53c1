"""The messages `hooks test` uses by default: real captured orders changes inside their transactions."""

from __future__ import annotations

import json
from pathlib import Path

from sidecar.decode import Decoder
from sidecar.events import ChangeEvent, Tombstone, TransactionMarker
from sidecar.sources.file import read_messages

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "sidecar" / "examples" / "changes.jsonl"


def test_bundled_examples_are_the_captured_orders_between_markers() -> None:
    """Every examples/orders.jsonl change, in order, each inside a BEGIN/END pair of its transaction."""
    decoded = [Decoder().decode(m) for m in read_messages(BUNDLED)]
    changes = [d for d in decoded if isinstance(d, ChangeEvent)]
    captured = [json.loads(line)["value"] for line in (REPO / "examples" / "orders.jsonl").read_text().splitlines()]
    assert [c.raw.value.decode() for c in changes if c.raw.value] == captured
    assert sum(isinstance(d, Tombstone) for d in decoded) == 1
    open_tx: str | None = None
    for d in decoded:
        if isinstance(d, TransactionMarker):
            assert (d.status == "BEGIN") == (open_tx is None), d
            open_tx = d.group_id if d.status == "BEGIN" else None
        elif isinstance(d, ChangeEvent):
            assert d.transaction is not None and open_tx == d.transaction.id.split(":")[0]
    assert open_tx is None
