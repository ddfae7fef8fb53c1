"""One HTTP port: /metrics (Prometheus text format), /healthz (liveness), /readyz (readiness).

Connections are served by at most `max_threads` threads, each connection bounded by
`timeout_s` for reading the request and writing the answer: idle or half-open connections
(a port scan, a stuck client) cannot pile up threads. Past the bound a new connection is
closed at once; probes retry, and the bound frees within `timeout_s`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.health import Health
from sidecar.metrics import Metrics

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_THREADS = 16


class BoundedThreadingHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on concurrent handler threads."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # listen backlog (socketserver's 5 makes bursts of connects wait seconds)

    def __init__(self, address: tuple[str, int], handler: Any, max_threads: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_threads)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: close now rather than queue a thread
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(
    host: str,
    port: int,
    metrics: Metrics,
    health: Health,
    logger: Any,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_threads: int = DEFAULT_MAX_THREADS,
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # socket timeout for the whole exchange (StreamRequestHandler applies it)

        def handle(self) -> None:
            try:
                super().handle()
            except (TimeoutError, ConnectionError):
                self.close_connection = True  # an idle or vanished client: just drop it

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

    server = BoundedThreadingHTTPServer((host, port), Handler, max_threads)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    logger.info("http listening", host=host, port=server.server_address[1], paths=["/metrics", "/healthz", "/readyz"])
    return server
