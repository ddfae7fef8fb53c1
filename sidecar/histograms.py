"""Histogram counts the hot path keeps (compiled: see setup.py); `sidecar.metrics` exports them
when Prometheus scrapes. A bundle of a worker's calls is counted in one call, in C."""

from __future__ import annotations

from collections.abc import Sequence


class Hist:
    """Counts per bucket (`counts[i]`: values ≤ `bounds[i]` and above the bound before it; the last:
    above every bound, +Inf) and their sum, as Prometheus' histogram keeps them."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[_bucket(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, values: Sequence[float]) -> None:
        bounds = self.bounds
        counts = self.counts
        for value in values:
            counts[_bucket(bounds, value)] += 1
        self.sum += sum(values)  # (as `sum` adds them: the same float as before)

    def observe_ages(self, now: float, times_us: Sequence[int | None]) -> None:
        """For each time given (µs since the epoch; None: skipped), its age at `now` (s, never below 0)."""
        bounds = self.bounds
        counts = self.counts
        total = self.sum
        for us in times_us:
            if us is not None:
                age = now - us / 1e6
                if age < 0.0:
                    age = 0.0
                counts[_bucket(bounds, age)] += 1
                total += age
        self.sum = total


def _bucket(bounds: tuple[float, ...], value: float) -> int:
    """The index `bisect.bisect_left(bounds, value)` gives: how many bounds are below `value`."""
    i = 0
    n = len(bounds)
    while i < n and bounds[i] < value:
        i += 1
    return i
