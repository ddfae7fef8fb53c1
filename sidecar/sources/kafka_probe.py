"""Kafka readiness: a metadata request on a client of its own (the watcher's check, `check`)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException

from sidecar.errors import SourceError
from sidecar.sources.kafka_settings import shared_settings


def ping(conf: dict[str, str], timeout_s: float = 5.0) -> None:
    """Raise SourceError unless the brokers answer a metadata request."""
    BrokerProbe(conf, timeout_s)()


class BrokerProbe:
    """Readiness check for the watcher thread: a metadata request on a client of its own.

    The consumer's error callback runs only inside poll(), which a synchronous commit or a
    long hook can hold off for many seconds; this probe does not depend on the loop.
    """

    def __init__(self, conf: dict[str, str], timeout_s: float = 3.0) -> None:
        from confluent_kafka.admin import AdminClient

        self.timeout_s = timeout_s
        self.servers = conf.get("bootstrap.servers", "")
        aconf: dict[str, Any] = shared_settings(conf)
        # Quiet below critical: during an outage it would repeat the consumer's "Connect
        # failed" lines every few ms; its reason reaches the log once, through the watcher.
        aconf["log_level"] = 2
        self._admin = AdminClient(aconf)

    def __call__(self) -> None:
        try:
            self._admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise SourceError(f"Kafka at {self.servers} did not answer: {exc.args[0].str()}") from None
