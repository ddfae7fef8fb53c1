"""Prometheus metrics: names prefixed `checkpoint_`, base units, only bounded labels.

Labelled children are cached (a `.labels()` lookup costs ~1 µs; the hot path must not pay
it per record). `NoMetrics` has the same methods and does nothing (benchmarks, replay).
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from sidecar import __version__

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: they double the scrape

DECODE_REASONS = ("not_json", "not_envelope", "flattened", "unsupported_format", "unknown_logical_type",
                  "schema_mismatch")
HOOK_OUTCOMES = ("success", "error", "retry")
HOOK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("checkpoint_events", "Change events decoded, by data collection and op.",
                              ["table", "op"], registry=r)
        self.hook_runs = Counter(
            "checkpoint_hook_runs",
            "Hook attempts by outcome: success, error, timeout (one per attempt); plus the fate of an event "
            "whose attempt did not succeed: retry (another attempt is scheduled), dead_letter, skipped.",
            ["hook", "outcome"], registry=r)
        self.hook_duration = Histogram("checkpoint_hook_duration_seconds", "Duration of one hook attempt.",
                                       ["hook"], buckets=HOOK_BUCKETS, registry=r)
        self.commit_to_hook = Histogram(
            "checkpoint_commit_to_hook_seconds",
            "From the source commit time (_committed_at) to the hook finishing successfully.",
            ["hook"], buckets=LAG_BUCKETS, registry=r)
        self.decode_errors = Counter("checkpoint_decode_errors", "Messages that could not be decoded, by reason.",
                                     ["reason"], registry=r)
        self.in_flight = Gauge("checkpoint_in_flight_events", "Records taken from the source and not yet finished.",
                               registry=r)
        self.consumer_lag = Gauge("checkpoint_consumer_lag_messages",
                                  "Kafka high watermark minus the committed offset, per assigned partition.",
                                  ["topic", "partition"], registry=r)
        self.last_commit = Gauge("checkpoint_last_offset_commit_timestamp_seconds",
                                 "When offsets (or an embedded batch) were last committed.", registry=r)
        self.last_event_source = Gauge("checkpoint_last_event_source_timestamp_seconds",
                                       "Source commit time of the newest event processed (freshness).", registry=r)
        self.build_info = Gauge("checkpoint_build_info", "Always 1; the version label says which build runs.",
                                ["version"], registry=r)
        self.slot_retained = Gauge("checkpoint_replication_slot_retained_bytes",
                                   "WAL a PostgreSQL replication slot holds back (destination database).",
                                   ["slot"], registry=r)
        self.source_failures = Counter("checkpoint_source_failures",
                                       "The source stopped with an error (embedded engine, fatal broker error).",
                                       ["reason"], registry=r)
        self.build_info.labels(version=__version__).set(1)
        # Known label values start at 0, so alerts using increase()/rate() see them from the first scrape.
        for reason in DECODE_REASONS:
            self.decode_errors.labels(reason=reason)
        self._events: dict[tuple[str, str], Any] = {}
        self._runs: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}
        self._lags: dict[str, Any] = {}
        self._newest_source = 0.0

    def declare_hooks(self, hooks: list[str]) -> None:
        """Create each hook's series at 0 (outcomes and histograms) before its first call."""
        for hook in hooks:
            for outcome in HOOK_OUTCOMES:
                self._runs[(hook, outcome)] = self.hook_runs.labels(hook=hook, outcome=outcome)
            self._durations[hook] = self.hook_duration.labels(hook=hook)
            self._lags[hook] = self.commit_to_hook.labels(hook=hook)

    def event(self, table: str, op: str, committed_at: datetime | None) -> None:
        key = (table, op)
        child = self._events.get(key)
        if child is None:
            child = self._events[key] = self.events.labels(table=table, op=op)
        child.inc()
        if committed_at is not None:
            ts = committed_at.timestamp()
            if ts > self._newest_source:
                self._newest_source = ts
                self.last_event_source.set(ts)

    def hook_attempt(self, hook: str, outcome: str, seconds: float, committed_at: datetime | None) -> None:
        self.hook_run(hook, outcome)
        child = self._durations.get(hook)
        if child is None:
            child = self._durations[hook] = self.hook_duration.labels(hook=hook)
        child.observe(seconds)
        if outcome == "success" and committed_at is not None:
            lag = self._lags.get(hook)
            if lag is None:
                lag = self._lags[hook] = self.commit_to_hook.labels(hook=hook)
            lag.observe(max(0.0, time.time() - committed_at.timestamp()))

    def hook_run(self, hook: str, outcome: str) -> None:
        key = (hook, outcome)
        child = self._runs.get(key)
        if child is None:
            child = self._runs[key] = self.hook_runs.labels(hook=hook, outcome=outcome)
        child.inc()

    def decode_error(self, reason: str) -> None:
        self.decode_errors.labels(reason=reason).inc()

    def set_in_flight(self, n: int) -> None:
        self.in_flight.set(n)

    def committed(self) -> None:
        self.last_commit.set(time.time())

    def lag(self, topic: str, partition: int, messages: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(messages)

    def forget_lag(self, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

    def source_failed(self, reason: str) -> None:
        self.source_failures.labels(reason=reason).inc()


class NoMetrics(Metrics):
    """Same interface, records nothing (the `metrics on vs off` benchmark's baseline)."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())

    def event(self, table: str, op: str, committed_at: datetime | None) -> None:
        pass

    def hook_attempt(self, hook: str, outcome: str, seconds: float, committed_at: datetime | None) -> None:
        pass

    def hook_run(self, hook: str, outcome: str) -> None:
        pass

    def set_in_flight(self, n: int) -> None:
        pass

    def committed(self) -> None:
        pass
