"""Row filters (`where:`): what the language allows, and the one rule for records it cannot judge."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from sidecar import UNAVAILABLE
from sidecar.config import Settings, _format_error
from sidecar.where import Verdict, compile_where

CONDITION = "total > 10000 and status != 'cancelled'"


@pytest.mark.parametrize(
    ("record", "verdict"),
    [
        ({"total": Decimal("10000.01"), "status": "new"}, Verdict.MATCH),
        ({"total": Decimal("10000.00"), "status": "new"}, Verdict.NO_MATCH),
        ({"total": Decimal("20000"), "status": "cancelled"}, Verdict.NO_MATCH),
    ],
)
def test_condition_on_native_values(record: dict[str, object], verdict: Verdict) -> None:
    """Decimals compare exactly with integer literals; strings with string literals."""
    assert compile_where("big", CONDITION).test(record)[0] is verdict


@pytest.mark.parametrize(
    ("record", "cause"),
    [
        ({"status": "new"}, "field total is not in the record"),
        ({"total": None, "status": "new"}, "field total is None"),
        ({"total": UNAVAILABLE, "status": "new"}, "field total is UNAVAILABLE"),
        ({"total": "a lot", "status": "new"}, "TypeError"),
    ],
)
def test_unevaluable_records_do_not_match(record: dict[str, object], cause: str) -> None:
    """Missing, None, UNAVAILABLE, or a condition that raises: UNEVALUABLE with its cause, never an exception."""
    verdict, why = compile_where("big", CONDITION).test(record)
    assert verdict is Verdict.UNEVALUABLE
    assert cause in why


def test_metadata_fields_and_membership() -> None:
    """`_op` and the other metadata keys are fields like any other; `in` takes a tuple of literals."""
    where = compile_where("h", "_op in ('c', 'u') and amount * 2 >= 10")
    assert where.test({"_op": "u", "amount": Decimal(5)})[0] is Verdict.MATCH
    assert where.test({"_op": "d", "amount": Decimal(5)})[0] is Verdict.NO_MATCH


@pytest.mark.parametrize(
    "expr", ["__import__('os').system('true')", "record.total", "items[0]", "x = 1", "2 ** 99999", "lambda: 1", ""]
)
def test_code_is_refused_at_load_with_the_hook_name(expr: str) -> None:
    """Calls, attributes, subscripts, assignments, powers, lambdas, empty: refused when compiled."""
    with pytest.raises(ValueError, match="hook big: where"):
        compile_where("big", expr)


def test_config_error_names_the_hook() -> None:
    """A bad condition fails the config load at hooks.NAME.where (exit 2), not at the first record."""
    with pytest.raises(ValidationError) as info:
        Settings(pipeline="p", source={"kind": "file", "file": {"path": "x"}},  # type: ignore[arg-type]
                 hooks={"big_orders": {"path": "h.py", "where": "total >"}})  # type: ignore[dict-item]
    message = _format_error(info.value, None)
    assert "hooks.big_orders.where" in message and "not a valid expression" in message
