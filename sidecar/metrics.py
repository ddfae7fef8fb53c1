"""Prometheus metrics: names prefixed `checkpoint_`, base units, only bounded labels.

The per-record and per-call metrics (events, hook runs, hook duration, commit→hook lag,
records per call, open transactions) are plain Python counters and bucket arrays updated
on the hot path (~0.1 µs each) and turned into Prometheus families only when scraped
(`_HotPathCollector`): prometheus-client's own Counter/Histogram take a lock per update and
cost ~12 % of replay throughput here (bench/metrics_overhead.py); its labelled histogram and
gauge updated once per transaction call cost ~1 µs per record of the transaction loop.
Everything else uses prometheus-client directly.
`NoMetrics` has the same methods and records nothing (the benchmark's baseline).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar import __version__
from sidecar.histograms import Hist
from sidecar.transactions import INCOMPLETE_REASONS
from sidecar.where import FILTERED

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: they double the scrape

DECODE_REASONS = ("not_json", "not_envelope", "flattened", "unsupported_format", "unknown_logical_type",
                  "schema_mismatch", "out_of_range", "too_deep", "too_large")
HOOK_OUTCOMES = ("success", "error", "retry")
HOOK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Table names come from the messages: past this many distinct tables, new ones count as "other".
MAX_TABLE_LABELS = 500
OTHER_TABLE = "other"
CALL_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)


EVENTS_HELP = "Change events decoded, by data collection and op."
RUNS_HELP = ("Hook attempts by outcome: success, error, timeout (one per attempt); plus the fate of an event "
             "whose attempt did not succeed: retry (another attempt is scheduled), dead_letter, skipped.")
DURATION_HELP = "Duration of one hook attempt."
FILTERED_HELP = ("Records a hook's where condition kept from it: no_match (false) or unevaluable (a field missing, "
                 "None or UNAVAILABLE, or the condition raised).")
LAG_HELP = "From the source commit time (_committed_at) to the hook finishing successfully."
CALL_RECORDS_HELP = "Records in one hook call (transaction and batch hooks)."
OPEN_TRANSACTIONS_HELP = "Source transactions being assembled (not yet handed to hooks)."


def _hist_family(name: str, doc: str, bounds: tuple[float, ...], hists: dict[str, Hist]) -> Metric:
    fam = HistogramMetricFamily(name, doc, labels=["hook"])
    for hook, h in list(hists.items()):
        cum = 0
        buckets: list[tuple[str, float]] = []
        for le, c in zip(bounds, h.counts, strict=False):
            cum += c
            buckets.append((repr(float(le)), cum))
        buckets.append(("+Inf", cum + h.counts[-1]))
        fam.add_metric([hook], buckets, h.sum)
    return fam


class _HotPathCollector(Collector):
    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily("checkpoint_events", EVENTS_HELP, labels=["table", "op"])
        for (table, op), n in list(self.m._event_counts.items()):
            events.add_metric([table, op], n)
        yield events
        runs = CounterMetricFamily("checkpoint_hook_runs", RUNS_HELP, labels=["hook", "outcome"])
        for (hook, outcome), n in list(self.m._run_counts.items()):
            runs.add_metric([hook, outcome], n)
        yield runs
        filtered = CounterMetricFamily("checkpoint_records_filtered", FILTERED_HELP, labels=["hook", "reason"])
        for (hook, reason), n in FILTERED.snapshot().items():
            filtered.add_metric([hook, reason], n)
        yield filtered
        newest = self.m._newest_source
        yield GaugeMetricFamily("checkpoint_last_event_source_timestamp_seconds",
                                "Source commit time of the newest event processed (freshness).",
                                0.0 if newest is None else newest / 1e6)
        yield _hist_family("checkpoint_hook_duration_seconds", DURATION_HELP, HOOK_BUCKETS, self.m._durations)
        yield _hist_family("checkpoint_commit_to_hook_seconds", LAG_HELP, LAG_BUCKETS, self.m._lags)
        yield _hist_family("checkpoint_hook_call_records", CALL_RECORDS_HELP, CALL_BUCKETS, self.m._call_records)
        yield GaugeMetricFamily("checkpoint_open_transactions", OPEN_TRANSACTIONS_HELP, self.m._open_transactions)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._event_counts: dict[tuple[str, str], int] = {}
        self._tables: set[str] = set()
        self._run_counts: dict[tuple[str, str], int] = {}
        self._durations: dict[str, Hist] = {}
        self._lags: dict[str, Hist] = {}
        self._call_records: dict[str, Hist] = {}  # per hook: records per call (one update per call)
        self._open_transactions = 0
        r.register(_HotPathCollector(self))
        self.decode_errors = Counter("checkpoint_decode_errors", "Messages that could not be decoded, by reason.",
                                     ["reason"], registry=r)
        self._decode_error_children: dict[str, Any] = {}  # reason → its labelled counter
        self.in_flight = Gauge("checkpoint_in_flight_events", "Records taken from the source and not yet finished.",
                               registry=r)
        self.hook_calls_in_flight = Gauge("checkpoint_hook_calls_in_flight",
                                          "Hook calls running now (runs of a lane), per hook.", ["hook"], registry=r)
        self.consumer_lag = Gauge("checkpoint_consumer_lag_messages",
                                  "Kafka high watermark minus the committed offset, per assigned partition.",
                                  ["topic", "partition"], registry=r)
        self.last_commit = Gauge("checkpoint_last_offset_commit_timestamp_seconds",
                                 "When offsets (or an embedded batch) were last committed.", registry=r)
        self.build_info = Gauge("checkpoint_build_info", "Always 1; the version label says which build runs.",
                                ["version"], registry=r)
        self.slot_retained = Gauge("checkpoint_replication_slot_retained_bytes",
                                   "WAL a PostgreSQL replication slot holds back (destination database).",
                                   ["slot"], registry=r)
        self.source_failures = Counter("checkpoint_source_failures",
                                       "The source stopped with an error (embedded engine, fatal broker error).",
                                       ["reason"], registry=r)
        self.partitions_missing_gauge = Gauge(
            "checkpoint_transaction_partitions_missing",
            "Kafka mode with transaction hooks: partitions of the subscribed topics this member does not own "
            "(checked after every assignment change; should be 0 — one member must own them all).",
            registry=r)
        self.transactions_incomplete = Counter(
            "checkpoint_transactions_incomplete",
            "Transactions ended without their END or some of their events (handed to hooks with what arrived; "
            "no_end_empty: nothing to call), by reason "
            "(end_timeout: END or events not seen within transaction_end_timeout_s; end_of_input: a replay file ended; "
            "no_end_empty: a BEGIN with no event and no END, e.g. MariaDB DDL; revoked: partition revoked).",
            ["reason"], registry=r)
        for reason in INCOMPLETE_REASONS:
            self.transactions_incomplete.labels(reason=reason)
        self.build_info.labels(version=__version__).set(1)
        # Known label values start at 0, so alerts using increase()/rate() see them from the first scrape.
        for reason in DECODE_REASONS:
            self.decode_errors.labels(reason=reason)
        self._newest_source: int | None = None

    def declare_hooks(self, hooks: list[str]) -> None:
        """Create each hook's series at 0 (outcomes and histograms) before its first call."""
        for hook in hooks:
            for outcome in HOOK_OUTCOMES:
                self._run_counts.setdefault((hook, outcome), 0)
            self._durations.setdefault(hook, Hist(HOOK_BUCKETS))
            self._lags.setdefault(hook, Hist(LAG_BUCKETS))
            self.hook_in_flight(hook, 0)

    def event(self, table: str, op: str, commit_us: int | None) -> None:
        """One change event; `commit_us`: its source commit time, µs since the epoch."""
        self.events(table, op, 1, commit_us)

    def events(self, table: str, op: str, count: int, newest_us: int | None) -> None:
        """`count` change events of a (table, op) (the dispatcher counts them per turn);
        `newest_us`: the latest source commit time among them (or any later), µs since the epoch."""
        tables = self._tables
        if table not in tables:
            if len(tables) >= MAX_TABLE_LABELS:
                table = OTHER_TABLE
            else:
                tables.add(table)
        counts = self._event_counts
        key = (table, op)
        counts[key] = counts.get(key, 0) + count
        if newest_us is not None and (self._newest_source is None or newest_us > self._newest_source):
            self._newest_source = newest_us  # exported when scraped

    def hook_attempt(self, hook: str, outcome: str, seconds: float, commit_us: int | None) -> None:
        self.hook_run(hook, outcome)
        h = self._durations.get(hook)
        if h is None:
            h = self._durations[hook] = Hist(HOOK_BUCKETS)
        h.observe(seconds)
        if outcome == "success" and commit_us is not None:
            g = self._lags.get(hook)
            if g is None:
                g = self._lags[hook] = Hist(LAG_BUCKETS)
            g.observe_ages(time.time(), (commit_us,))

    def hook_successes(self, hook: str, durations: Sequence[float], commits_us: Sequence[int | None]) -> None:
        """Several successful calls at once (a worker's bundle): as many `hook_attempt`s."""
        key = (hook, "success")
        self._run_counts[key] = self._run_counts.get(key, 0) + len(durations)
        h = self._durations.get(hook)
        if h is None:
            h = self._durations[hook] = Hist(HOOK_BUCKETS)
        h.observe_many(durations)
        g = self._lags.get(hook)
        if g is None:
            g = self._lags[hook] = Hist(LAG_BUCKETS)
        g.observe_ages(time.time(), commits_us)

    def hook_run(self, hook: str, outcome: str) -> None:
        counts = self._run_counts
        key = (hook, outcome)
        counts[key] = counts.get(key, 0) + 1

    def decode_error(self, reason: str) -> None:
        child = self._decode_error_children.get(reason)  # (reasons are a short fixed list)
        if child is None:
            child = self._decode_error_children[reason] = self.decode_errors.labels(reason=reason)
        child.inc()

    def set_in_flight(self, n: int) -> None:
        self.in_flight.set(n)

    def hook_in_flight(self, hook: str, n: int) -> None:
        self.hook_calls_in_flight.labels(hook=hook).set(n)

    def committed(self) -> None:
        self.last_commit.set(time.time())

    def lag(self, topic: str, partition: int, messages: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(messages)

    def forget_lag(self, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

    def source_failed(self, reason: str) -> None:
        self.source_failures.labels(reason=reason).inc()

    def records_per_call(self, hook: str, n: int) -> None:
        h = self._call_records.get(hook)
        if h is None:
            h = self._call_records[hook] = Hist(CALL_BUCKETS)
        h.observe(n)

    def open_transactions(self, n: int) -> None:
        self._open_transactions = n

    def transaction_incomplete(self, reason: str) -> None:
        self.transactions_incomplete.labels(reason=reason).inc()

    def partitions_missing(self, n: int) -> None:
        self.partitions_missing_gauge.set(n)


class NoMetrics(Metrics):
    """Same interface, records nothing (the `metrics on vs off` benchmark's baseline)."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())

    def events(self, table: str, op: str, count: int, newest_us: int | None) -> None:
        pass

    def hook_attempt(self, hook: str, outcome: str, seconds: float, commit_us: int | None) -> None:
        pass

    def hook_successes(self, hook: str, durations: Sequence[float], commits_us: Sequence[int | None]) -> None:
        pass

    def hook_run(self, hook: str, outcome: str) -> None:
        pass

    def set_in_flight(self, n: int) -> None:
        pass

    def hook_in_flight(self, hook: str, n: int) -> None:
        pass

    def committed(self) -> None:
        pass

    def records_per_call(self, hook: str, n: int) -> None:
        pass

    def open_transactions(self, n: int) -> None:
        pass
