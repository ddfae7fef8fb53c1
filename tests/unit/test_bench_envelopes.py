"""The no-op path bench's generated envelopes (bench/envelopes.py) are what the sidecar reads from
Kafka Connect: compact JSON, every good message a change event whose values decode to native
types, every poison message a decode failure, 1 % of them."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest

from sidecar.decode import Decoder
from sidecar.events import ChangeEvent, DecodeFailure, RawMessage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import envelopes


@pytest.mark.parametrize("table", ["orders", "customer_accounts"])
@pytest.mark.parametrize("schemas", [True, False])
def test_envelopes_decode_and_poison_fails(table: str, schemas: bool) -> None:
    decoder = Decoder()
    good = bad = 0
    for i, (key, value) in enumerate(envelopes.messages(table, schemas, 300)):
        assert b": " not in value[:200] and b", " not in value[:200]  # compact, as JsonConverter writes
        decoded = decoder.decode(RawMessage(f"bench.public.{table}", 0, i, key, value))
        if envelopes.is_poison(i):
            assert isinstance(decoded, DecodeFailure)
            bad += 1
            continue
        assert isinstance(decoded, ChangeEvent), decoded
        assert decoded.table == f"public.{table}" and decoded.op == ("u" if i % 5 == 4 else "c")
        good += 1
    assert bad == envelopes.poison_count(300) == 3 and good == 297


def test_wide_table_values_are_native_with_schemas() -> None:
    key, value = envelopes.Table("customer_accounts", True).message(7)
    decoded = Decoder().decode(RawMessage("bench.public.customer_accounts", 0, 7, key, value))
    assert isinstance(decoded, ChangeEvent)
    row = decoded.after
    assert row is not None and len(row) == 28
    assert isinstance(row["balance"], Decimal) and isinstance(row["score"], Decimal)
    assert isinstance(row["external_id"], UUID) and isinstance(row["birth_date"], dt.date)
    assert isinstance(row["created_at"], dt.datetime) and row["created_at"].tzinfo is not None
    assert isinstance(row["preferred_time"], dt.time) and isinstance(row["preferences"], dict)
