"""The HTTP port: /metrics in Prometheus format, /healthz and /readyz status codes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime

import structlog

from sidecar.health import Health
from sidecar.http import serve
from sidecar.metrics import Metrics


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_metrics_and_probes_over_http() -> None:
    """Counters appear with their labels; probes answer 503 then 200 as the state changes."""
    m, h = Metrics(), Health()
    server = serve("127.0.0.1", 0, m, h, structlog.get_logger())
    port = server.server_address[1]
    try:
        m.event("public.orders", "c", int(datetime.now(UTC).timestamp() * 1e6))
        m.hook_attempt("audit", "success", 0.01, int(datetime.now(UTC).timestamp() * 1e6))
        m.decode_error("not_json")
        code, body = get(port, "/metrics")
        text = body.decode()
        assert code == 200
        assert 'checkpoint_events_total{op="c",table="public.orders"} 1.0' in text
        assert 'checkpoint_hook_runs_total{hook="audit",outcome="success"} 1.0' in text
        assert 'checkpoint_decode_errors_total{reason="not_json"} 1.0' in text
        assert 'checkpoint_build_info{version="' in text and "_created" not in text
        assert get(port, "/readyz")[0] == 503
        h.started = True
        code, body = get(port, "/readyz")
        assert code == 200 and json.loads(body) == {"ready": True, "reason": "ok"}
        assert get(port, "/healthz")[0] == 200
        assert get(port, "/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_idle_connections_cannot_pile_up_threads() -> None:
    """Hundreds of idle half-open connections hold at most max_threads threads, each for at most timeout_s."""
    import socket
    import threading
    import time

    before = threading.active_count()
    server = serve("127.0.0.1", 0, Metrics(), Health(), structlog.get_logger(), timeout_s=0.5, max_threads=8)
    port = server.server_address[1]
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", port)))  # connect, send nothing
        time.sleep(0.2)
        peak = threading.active_count() - before
        assert peak <= 8 + 1, f"{peak} threads for 200 idle connections"  # + the accept thread
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and threading.active_count() - before > 1:
            time.sleep(0.05)
        assert threading.active_count() - before <= 1  # the idle ones were dropped after timeout_s
        code, _ = get(port, "/healthz")
        assert code in (200, 503)
    finally:
        for s in idle:
            s.close()
        server.shutdown()
        server.server_close()
