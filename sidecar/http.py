"""One HTTP port: /metrics (Prometheus text format), /healthz (liveness), /readyz (readiness)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.health import Health
from sidecar.metrics import Metrics


def serve(host: str, port: int, metrics: Metrics, health: Health, logger: Any) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = generate_latest(metrics.registry)
                self._send(200, body, CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/livez"):
                ok, why = health.live()
                self._send(200 if ok else 503, json.dumps({"live": ok, "reason": why}).encode(), "application/json")
            elif path == "/readyz":
                ok, why = health.ready()
                self._send(200 if ok else 503, json.dumps({"ready": ok, "reason": why}).encode(), "application/json")
            else:
                self._send(404, b"not found: try /metrics, /healthz, /readyz\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the logs

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    logger.info("http listening", host=host, port=server.server_address[1], paths=["/metrics", "/healthz", "/readyz"])
    return server
