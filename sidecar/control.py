"""Exceptions hook authors raise to steer failure handling (public API, exported by `sidecar`).

    from sidecar import Retry, SkipEvent

    def checkpoint(param):
        if not ready_yet(param.record):
            raise Retry(delay=5)          # try again in 5 s (counts as an attempt)
        if param.record["status"] == "test":
            raise SkipEvent("test rows are not audited")   # done, counted as skipped
"""

from __future__ import annotations


class Retry(Exception):
    """Retry this record after `delay` seconds (instead of the hook's backoff); counts as an attempt."""

    def __init__(self, delay: float = 1.0, reason: str = "retry requested by the hook") -> None:
        super().__init__(reason)
        self.delay = float(delay)


class SkipEvent(Exception):
    """Do not process this record in this hook: it counts as done (outcome `skipped`) and is logged."""


class HookTimeout(Exception):
    """A hook ran longer than its `timeout_s` (the sidecar moves on; the call is marked cancelled)."""
