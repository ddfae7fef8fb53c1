"""The hot path's histogram counts (sidecar.histograms, compiled) bucket exactly as bisect does."""

from __future__ import annotations

import bisect

from hypothesis import given
from hypothesis import strategies as st

from sidecar.histograms import Hist
from sidecar.metrics import HOOK_BUCKETS, LAG_BUCKETS

values = st.one_of(st.floats(allow_nan=False, allow_infinity=True), st.sampled_from(HOOK_BUCKETS + LAG_BUCKETS))


@given(st.lists(values, max_size=50))
def test_counts_and_sum_equal_bisect_and_sum(observed: list[float]) -> None:
    one, many = Hist(HOOK_BUCKETS), Hist(HOOK_BUCKETS)
    for v in observed:
        one.observe(v)
    many.observe_many(observed)
    expected = [0] * (len(HOOK_BUCKETS) + 1)
    for v in observed:
        expected[bisect.bisect_left(HOOK_BUCKETS, v)] += 1
    assert one.counts == many.counts == expected
    if all(abs(v) < 1e300 for v in observed):
        assert many.sum == 0.0 + sum(observed)


def test_a_value_on_a_bound_counts_in_that_bucket_and_ages_never_go_below_zero() -> None:
    h = Hist(LAG_BUCKETS)
    h.observe(LAG_BUCKETS[0])
    assert h.counts[0] == 1
    ages = Hist(LAG_BUCKETS)
    now = 1_000.0
    ages.observe_ages(now, [int(now * 1e6) + 5_000_000, None, int((now - 0.3) * 1e6)])  # 5 s in the future: 0
    assert ages.counts[0] == 1 and ages.counts[bisect.bisect_left(LAG_BUCKETS, 0.3)] == 1 and sum(ages.counts) == 2
    assert abs(ages.sum - 0.3) < 1e-6
