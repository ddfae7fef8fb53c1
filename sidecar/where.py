"""Row filters on hooks: `where: total > 10000 and status != 'cancelled'`.

The condition is a Python-like expression over the record's fields (the hook's
`param.record`: the row plus `_op`, `_destination_table`, …), checked when the config loads
and evaluated by `simpleeval` — no calls, attributes, subscripts, imports or assignments, so
a config can never run code. Allowed: field names, literals (numbers, strings, True/False/None,
tuples/lists of them for `in`), comparisons (`== != < <= > >= in not in`), `and or not`,
and `+ - * / %`.

**The rule for records a condition cannot be evaluated on**: when a field the condition names
is missing from the record, is None, or is `sidecar.UNAVAILABLE` (a TOASTed value an update
did not touch), or when evaluating raises (e.g. comparing a string with a number), the record
**does not match**: the hook is not called for it, and it is counted as
`checkpoint_records_filtered_total{hook, reason="unevaluable"}` (records the condition is false
for: `reason="no_match"`). It never stops the loop. The first such record per hook and reason
is logged as a warning with the cause.
"""

from __future__ import annotations

import ast
import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simpleeval import EvalWithCompoundTypes, InvalidExpression

from sidecar.events import UNAVAILABLE

_ALLOWED = (
    ast.Expression, ast.Expr, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE,
    ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List,
)


class Verdict(enum.Enum):
    MATCH = "match"
    NO_MATCH = "no_match"
    UNEVALUABLE = "unevaluable"


def check_where(expr: str) -> tuple[ast.expr, frozenset[str]]:
    """Parse and validate; returns the tree and the field names it reads. ValueError says what is wrong."""
    if not expr.strip():
        raise ValueError("where is empty; leave it out to run the hook on every record")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"where {expr!r} is not a valid expression: {exc.msg} (column {exc.offset})") from None
    fields: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ValueError(
                f"where {expr!r}: {type(node).__name__} is not allowed (use field names, literals, comparisons, "
                "and/or/not, + - * / %; no calls, attributes or indexing)"
            )
        if isinstance(node, ast.Name):
            fields.add(node.id)
    return tree.body, frozenset(fields)


@dataclass(frozen=True)
class Where:
    """A compiled condition of one hook."""

    hook: str
    expr: str
    fields: frozenset[str]
    tree: ast.expr

    def test(self, record: Mapping[str, Any]) -> tuple[Verdict, str]:
        """The verdict and, for UNEVALUABLE, why."""
        for name in self.fields:
            if name not in record:
                return Verdict.UNEVALUABLE, f"field {name} is not in the record"
            value = record[name]
            if value is None or value is UNAVAILABLE:
                return Verdict.UNEVALUABLE, f"field {name} is {'None' if value is None else 'UNAVAILABLE'}"
        evaluator = EvalWithCompoundTypes(names={n: record[n] for n in self.fields}, functions={})
        try:
            result = evaluator.eval(self.expr.strip(), previously_parsed=self.tree)
        except (InvalidExpression, ArithmeticError, TypeError, ValueError) as exc:
            return Verdict.UNEVALUABLE, f"{type(exc).__name__}: {exc}"
        return (Verdict.MATCH, "") if result else (Verdict.NO_MATCH, "")


def compile_where(hook: str, expr: str) -> Where:
    """Validate at load; a bad condition raises ValueError naming the hook."""
    try:
        tree, fields = check_where(expr)
    except ValueError as exc:
        raise ValueError(f"hook {hook}: {exc}") from None
    return Where(hook=hook, expr=expr, fields=fields, tree=tree)


class FilterCounts:
    """checkpoint_records_filtered_total{hook, reason}, process-wide (Metrics exports it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, hook: str, verdict: Verdict) -> bool:
        """Count one filtered record; True the first time this hook is filtered for this reason."""
        key = (hook, verdict.value)
        with self._lock:
            n = self.counts.get(key, 0)
            self.counts[key] = n + 1
        return n == 0

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self.counts)


FILTERED = FilterCounts()
