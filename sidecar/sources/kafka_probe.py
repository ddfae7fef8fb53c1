"""Kafka readiness: a metadata request on a client of its own (the watcher's check, `check`)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from confluent_kafka import KafkaException

from sidecar.errors import ConfigError, SourceError
from sidecar.secrets import scrub
from sidecar.sources.kafka_settings import shared_settings


def _text(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else exc
    return str(err.str() if hasattr(err, "str") else err)


def settings_refused(exc: KafkaException) -> ConfigError:
    """librdkafka refused a client setting (unknown property, invalid value, unsupported SASL
    mechanism…): a config error naming it (registered secrets masked), not a traceback."""
    return ConfigError(f"source.kafka.settings: librdkafka refuses them: {scrub(_text(exc))}")


LOCAL_HINT = "; is a broker running there? (`deploy/local/stack up kafka` starts the local stack's broker)"


def _loopback(entry: str) -> bool:
    """Is one `bootstrap.servers` entry (`[SCHEME://]host[:port]`, IPv6 in brackets) a loopback host?"""
    host = entry.strip().split("://", 1)[-1]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not host or host.strip("0123456789.") or host.startswith("."):
            return False  # a name (other than localhost)
        try:  # IPv4 shorthand as the resolver reads it (`127.1` is 127.0.0.1)
            address = ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def no_answer(servers: str, exc: KafkaException) -> SourceError:
    """The brokers did not answer a metadata request (all on loopback: where to start one)."""
    entries = [e for e in servers.split(",") if e.strip()]
    local = bool(entries) and all(_loopback(e) for e in entries)
    return SourceError(f"Kafka at {servers} did not answer: {_text(exc)}" + (LOCAL_HINT if local else ""))


def check_settings(conf: dict[str, str]) -> None:
    """Raise ConfigError if librdkafka refuses the consumer's settings, as `run` would (the admin
    client of `ping` ignores consumer-only settings such as session.timeout.ms)."""
    from confluent_kafka import Consumer

    try:
        Consumer({**conf, "group.id": conf.get("group.id") or "checkpoint-sidecar-check", "log_level": 2}).close()
    except KafkaException as exc:
        raise settings_refused(exc) from None


def ping(conf: dict[str, str], timeout_s: float = 5.0) -> None:
    """Raise SourceError unless the brokers answer a metadata request (ConfigError: settings refused)."""
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
        try:
            self._admin = AdminClient(aconf)
        except KafkaException as exc:
            raise settings_refused(exc) from None

    def __call__(self) -> None:
        try:
            self._admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise no_answer(self.servers, exc) from None
