"""`sidecar.testing`: the public helpers hook authors use."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sidecar.testing import capture_logs, decode_message, make_event, run_hook
from tests.fixtures import load

REPO = Path(__file__).resolve().parents[2]


def test_run_example_hook_and_capture_logs() -> None:
    """An example hook run on a built event logs through the bound logger."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hv", REPO / "hooks" / "high_value_notify.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with capture_logs() as logs:
        param = run_hook(mod.checkpoint, make_event("public.orders", after={"id": 9, "amount": Decimal("5000")}))
    assert param.record["_op"] == "c" and param.record["id"] == 9
    assert logs and logs[0]["event"] == "high_value_order" and logs[0]["event_id"] == param.ctx.event_id
    assert logs[0]["hook"] == "hook" and logs[0]["table"] == "public.orders"


def test_decode_message_matches_the_sidecar() -> None:
    """decode_message gives the same event a running sidecar would."""
    m = next(m for m in load("postgres-schemas")["messages"] if m["topic"].endswith("orders") or m["value"])
    ev = decode_message(m["value"], m["key"], topic=m["topic"])
    assert ev is not None


def test_make_event_ids_are_stable() -> None:
    """The same built event has the same id twice."""
    a = make_event("public.orders", after={"id": 1}, committed_at=None)
    b = make_event("public.orders", after={"id": 1}, source=a.source)
    assert a.event_id == b.event_id
