"""A real Prometheus server scrapes the sidecar while rows flow through the real stack."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.integration.stack import PG_URL, REPO, execute, new_id_base, sidecar, sidecar_config, wait_for

SLEEP_MS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prom_query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
    except OSError:  # Prometheus still starting
        return []
    assert doc["status"] == "success", doc
    return doc["data"]["result"]  # type: ignore[no-any-return]


def referenced(text: str) -> tuple[set[str], set[str]]:
    """Metric names and label names that PromQL expressions in `text` use."""
    names = set(re.findall(r"\b(checkpoint_[a-z_]+)", text))
    labels = set()
    for group in re.findall(r"\bby \(([^)]*)\)", text):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    labels |= set(re.findall(r"[{,]\s*([a-z_]+)\s*=~?\"", text))
    return names, labels - {"job", "instance", "le"}


def test_real_prometheus_scrapes_the_sidecar(connectors: list[str], tmp_path: Path) -> None:
    """Prometheus sees a positive event rate and a hook p50 within the hook's known sleep bucket."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package is required (deploy/tools/install)"
    http_port, prom_port = free_port(), free_port()
    run = f"prom-{uuid.uuid4().hex[:8]}"
    cfg = sidecar_config(tmp_path, group=f"it-{run}", topics=["shop.public.load_rows", "shop.public.orders"], hooks={
        "sleepy": {"path": str(REPO / "tests" / "hooks" / "sleepy.py"), "tables": ["public.load_rows"]},
        "audit_log": {"path": str(REPO / "hooks" / "audit_log.py"), "tables": ["public.orders"]}})
    doc = yaml.safe_load(cfg.read_text())
    doc["http"] = {"host": "127.0.0.1", "port": http_port}
    doc["health"] = {"watch_interval_s": 1}
    cfg.write_text(yaml.safe_dump(doc))
    prom_cfg = tmp_path / "prometheus.yml"
    prom_cfg.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "checkpoint-sidecar",
                            "static_configs": [{"targets": [f"127.0.0.1:{http_port}"]}]}],
    }))
    prom = subprocess.Popen([prometheus, f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"))
    stop_rows = threading.Event()

    def commit_rows() -> None:  # rows flow through the real stack while Prometheus scrapes
        base = new_id_base()
        i = 0
        while not stop_rows.is_set() and i < 3000:
            execute(PG_URL, "INSERT INTO load_rows (id, batch) VALUES (:id, 7)", {"id": base + i})
            i += 1
            stop_rows.wait(0.05)

    writer = threading.Thread(target=commit_rows, daemon=True)
    writer.start()
    try:
        with sidecar(cfg, run, tmp_path / "sidecar.log", {"SLEEP_MS": str(SLEEP_MS)}):
            rate = wait_for("a positive event rate in Prometheus", lambda: [
                r for r in prom_query(prom_port, "sum(rate(checkpoint_events_total[10s]))") if float(r["value"][1]) > 0
            ], timeout=90, every=2)
            p50 = wait_for("the sleepy hook's p50", lambda: [
                r for r in prom_query(prom_port, 'histogram_quantile(0.5, sum by (le) '
                                      '(rate(checkpoint_hook_duration_seconds_bucket{hook="sleepy"}[20s])))')
                if r["value"][1] not in ("NaN", "+Inf")
            ], timeout=90, every=2)
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
                scrape = r.read().decode()
    finally:
        stop_rows.set()
        writer.join(10)
        prom.terminate()
        prom.wait(30)
    assert float(rate[0]["value"][1]) > 0
    value = float(p50[0]["value"][1])
    assert SLEEP_MS / 1000 <= value <= 0.1, value  # the 50–100 ms bucket, where every 60 ms call lands
    # Every metric and label the alert rules and the dashboard use exists in this live scrape.
    exposed = set(re.findall(r"^# TYPE (checkpoint_[a-z_]+) ", scrape, re.M))
    series_names = set(re.findall(r"^(checkpoint_[a-z_]+)", scrape, re.M))
    label_names = set(re.findall(r'[{,]([a-z_]+)="', scrape))
    rules_and_dashboard = (REPO / "deploy" / "prometheus" / "alerts.yaml",
                           REPO / "deploy" / "grafana" / "checkpoint-sidecar.json")
    for source in rules_and_dashboard:
        names, labels = referenced(source.read_text())
        missing = {n for n in names if n not in series_names and n.removesuffix("_total") not in exposed
                   and re.sub(r"_(bucket|sum|count)$", "", n) not in exposed}
        assert not missing, f"{source.name} uses metrics the sidecar does not expose: {missing}"
        assert labels <= label_names, f"{source.name} uses labels not in the scrape: {labels - label_names}"
