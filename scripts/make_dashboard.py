"""Writes deploy/grafana/checkpoint-sidecar.json (run after changing the panels below)."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "checkpoint-sidecar.json"
DS = {"type": "prometheus", "uid": "${datasource}"}

PANELS = [
    ("Throughput by table and op (events/s)", "reqps",
     ['sum by (table, op) (rate(checkpoint_events_total{job=~"$job"}[$__rate_interval]))'], ["{{table}} {{op}}"]),
    ("Hook latency p50 / p99 (s)", "s",
     ['histogram_quantile(0.5, sum by (hook, le) (rate(checkpoint_hook_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))',
      'histogram_quantile(0.99, sum by (hook, le) (rate(checkpoint_hook_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))'],
     ["p50 {{hook}}", "p99 {{hook}}"]),
    ("Commit → hook lag p50 / p99 (s)", "s",
     ['histogram_quantile(0.5, sum by (hook, le) (rate(checkpoint_commit_to_hook_seconds_bucket{job=~"$job"}[$__rate_interval])))',
      'histogram_quantile(0.99, sum by (hook, le) (rate(checkpoint_commit_to_hook_seconds_bucket{job=~"$job"}[$__rate_interval])))'],
     ["p50 {{hook}}", "p99 {{hook}}"]),
    ("Hook runs by outcome (/s)", "ops",
     ['sum by (hook, outcome) (rate(checkpoint_hook_runs_total{job=~"$job"}[$__rate_interval]))'], ["{{hook}} {{outcome}}"]),
    ("Decode errors by reason (/s)", "ops",
     ['sum by (reason) (rate(checkpoint_decode_errors_total{job=~"$job"}[$__rate_interval]))'], ["{{reason}}"]),
    ("Consumer lag (messages)", "short",
     ['sum by (topic, partition) (checkpoint_consumer_lag_messages{job=~"$job"})'], ["{{topic}}[{{partition}}]"]),
    ("Freshness: now − newest source commit (s)", "s",
     ['time() - max(checkpoint_last_event_source_timestamp_seconds{job=~"$job"})',
      'time() - max(checkpoint_last_offset_commit_timestamp_seconds{job=~"$job"})'],
     ["since newest event's commit", "since last offset commit"]),
    ("Replication slot retained WAL (bytes)", "bytes",
     ['max by (slot) (checkpoint_replication_slot_retained_bytes{job=~"$job"})'], ["{{slot}}"]),
    ("In-flight events", "short", ['sum(checkpoint_in_flight_events{job=~"$job"})'], ["in flight"]),
    ("Build", "short", ['count by (version) (checkpoint_build_info{job=~"$job"})'], ["{{version}}"]),
]


def panel(i: int, title: str, unit: str, exprs: list[str], legends: list[str]) -> dict[str, object]:
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
        "targets": [
            {"refId": chr(65 + j), "datasource": DS, "expr": e, "legendFormat": legend}
            for j, (e, legend) in enumerate(zip(exprs, legends, strict=True))
        ],
    }


def main() -> None:
    dashboard = {
        "uid": "checkpoint-sidecar",
        "title": "checkpoint-sidecar",
        "tags": ["checkpoint-sidecar", "debezium"],
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "job", "type": "query", "datasource": DS, "label": "Job", "includeAll": True, "multi": True,
             "query": {"query": "label_values(checkpoint_build_info, job)", "refId": "jobs"}, "refresh": 2},
        ]},
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dashboard, indent=2) + "\n")


if __name__ == "__main__":
    main()
