"""librdkafka's own log lines, routed into the sidecar's structured logs.

Left alone, librdkafka prints `%3|<time>|FAIL|rdkafka#consumer-1| ...` straight to stderr,
which breaks JSON-lines logs, and during a broker outage it repeats a reconnect failure
every ~50 ms. `kafka_logger()` is the stdlib Logger for confluent-kafka's `logger` setting:
each line is re-emitted through structlog (`facility`, `client`, message) and the same line
(digits ignored) passes at most once per `window_s`; the next one that passes carries
`repeated=N`, how many were held back meanwhile. confluent-kafka hands the lines over from
poll()/flush(), so this runs in the thread that polls.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import structlog

_DIGITS = re.compile(r"\d+")
_THREAD = re.compile(r"^\[thrd:[^\]]*\]: ")
_MAX_KEYS = 1000


class KafkaLogHandler(logging.Handler):
    def __init__(self, window_s: float = 30.0) -> None:
        super().__init__(level=logging.DEBUG)
        self.window_s = window_s
        # Unbound: the logging configuration in force when a line comes, not when the first Kafka
        # client of the process was made (a bound logger keeps the processors of its day).
        self._log = structlog.get_logger("checkpoint-sidecar")
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # key → (last emitted, held back)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 3:
            facility, client, message = (str(a) for a in args)
        else:
            facility, client, message = "", "", record.getMessage()
        message = _THREAD.sub("", message)
        key = (facility, _DIGITS.sub("#", message))
        now = time.monotonic()
        with self._guard:
            last, held = self._seen.get(key, (float("-inf"), 0))
            if now - last < self.window_s:
                self._seen[key] = (last, held + 1)
                return
            if len(self._seen) >= _MAX_KEYS:
                self._seen.clear()
            self._seen[key] = (now, 0)
        fields: dict[str, Any] = {"facility": facility, "client": client}
        if held:
            fields["repeated"] = held
        level = record.levelno
        method = "error" if level >= logging.ERROR else "warning" if level >= logging.WARNING else "info"
        if level < logging.INFO:
            method = "debug"
        getattr(self._log, method)(f"librdkafka: {message}", **fields)


_logger: logging.Logger | None = None


def kafka_logger() -> logging.Logger:
    """One shared logger for every Kafka client of the process (not propagated to root)."""
    global _logger
    if _logger is None:
        logger = logging.getLogger("checkpoint-sidecar.librdkafka")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(KafkaLogHandler())
        _logger = logger
    return _logger
