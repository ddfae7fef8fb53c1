"""librdkafka's log lines go through structlog, and a line repeated during an outage is held back."""

from __future__ import annotations

import logging
import time

from structlog.testing import capture_logs

from sidecar.sources.kafka_logs import KafkaLogHandler

REFUSED = "[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: " \
          "Connection refused (after {ms}ms in state CONNECT)"


def record(level: int, facility: str, message: str) -> logging.LogRecord:
    # confluent-kafka calls logger.log(level, "%s [%s] %s", facility, client name, message)
    return logging.LogRecord("rdk", level, __file__, 1, "%s [%s] %s", (facility, "rdkafka#consumer-1", message), None)


def test_lines_become_structured_events_and_repeats_are_counted() -> None:
    handler = KafkaLogHandler(window_s=0.2)
    with capture_logs() as logs:
        for ms in range(5):  # the same line, timings differ
            handler.emit(record(logging.ERROR, "FAIL", REFUSED.format(ms=ms)))
        handler.emit(record(logging.INFO, "FAIL", "127.0.0.1:9092/1: Disconnected"))
        time.sleep(0.25)
        handler.emit(record(logging.ERROR, "FAIL", REFUSED.format(ms=9)))
    assert [(e["log_level"], e["event"], e.get("repeated")) for e in logs] == [
        ("error", "librdkafka: 127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: "
                  "Connection refused (after 0ms in state CONNECT)", None),
        ("info", "librdkafka: 127.0.0.1:9092/1: Disconnected", None),
        ("error", "librdkafka: 127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: "
                  "Connection refused (after 9ms in state CONNECT)", 4),
    ]
    assert all(e["facility"] == "FAIL" and e["client"] == "rdkafka#consumer-1" for e in logs)


def test_a_client_logs_through_the_handler_not_to_stderr(capfd: object) -> None:
    """A real confluent-kafka consumer against a closed loopback port: no raw `%3|...` line."""
    import socket

    from confluent_kafka import Consumer

    from sidecar.sources.kafka_logs import kafka_logger

    with socket.socket() as s, capture_logs() as logs:
        s.bind(("127.0.0.1", 0))
        c = Consumer({"bootstrap.servers": f"127.0.0.1:{s.getsockname()[1]}", "group.id": "logs-test",
                      "logger": kafka_logger()})
        c.subscribe(["t"])
        for _ in range(5):
            c.poll(0.1)
        c.close()
    err = capfd.readouterr().err  # type: ignore[attr-defined]
    assert "%3|" not in err and "%6|" not in err, err[:300]
    assert any("Connection refused" in e["event"] for e in logs), logs[:3]
