"""Which hooks a change event goes to: table and op filters, cached per (table, op)."""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.hooks import HookSpec


class Router:
    def __init__(self, hooks: Sequence[HookSpec]) -> None:
        self._hooks = tuple(hooks)
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
