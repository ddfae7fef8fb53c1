"""Which hooks a change event goes to: table and op filters, cached per (table, op), and each
hook's `where:` row filter (sidecar.where) applied to the record before the hook is called."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sidecar.errors import ConfigError
from sidecar.hooks import HookSpec
from sidecar.where import FILTERED, Verdict, Where, compile_where


def with_where(hook: HookSpec) -> HookSpec:
    """The hook, called only for records its `where` matches; the others are counted in
    checkpoint_records_filtered_total{hook, reason} and finish at once (their offsets move on)."""
    if hook.where is None:
        return hook
    try:
        where = compile_where(hook.name, hook.where)
    except ValueError as exc:
        raise ConfigError(f"hooks.{hook.name}.where: {exc}") from None
    return replace(hook, fn=_Filtered(hook.fn, where))


class _Filtered:
    """The call the run loop makes: evaluate the condition on `param.record`, then the hook or nothing;
    on a transaction or batch call, on each record: the hook gets the records that match (none: no call)."""

    __slots__ = ("fn", "where")

    def __init__(self, fn: Any, where: Where) -> None:
        self.fn = fn
        self.where = where

    def __call__(self, param: Any) -> Any:
        if getattr(param, "bulk", False):  # a transaction or batch call: every record is tested
            records = param.records
            keep = getattr(param, "_where_kept", None)
            if keep is None:  # the first attempt: tested (and the others counted) once per call
                keep = [i for i, record in enumerate(records) if self._matches(param, record)]
                if hasattr(param, "_where_kept"):
                    param._where_kept = keep
            if not keep:
                return None  # no record matches: no call
            return self.fn(param if len(keep) == len(records) else param.narrowed(keep))
        if self._matches(param, param.record):
            return self.fn(param)
        return None

    def _matches(self, param: Any, record: Any) -> bool:
        verdict, why = self.where.test(record)
        if verdict is Verdict.MATCH:
            return True
        first = FILTERED.add(self.where.hook, verdict)
        if first and verdict is Verdict.UNEVALUABLE:
            param.logger.warning("where cannot be evaluated on this record: it does not match (counted, "
                                 "logged once per hook)", where=self.where.expr, cause=why)
        return False


class Router:
    def __init__(self, hooks: Sequence[HookSpec]) -> None:
        self._hooks = tuple(with_where(h) for h in hooks)
        self._cache: dict[tuple[str, str], tuple[HookSpec, ...]] = {}

    @property
    def hooks(self) -> tuple[HookSpec, ...]:
        return self._hooks

    def route(self, table: str, op: str) -> tuple[HookSpec, ...]:
        key = (table, op)
        found = self._cache.get(key)
        if found is None:
            found = tuple(h for h in self._hooks if h.matches(table, op))
            self._cache[key] = found
        return found
