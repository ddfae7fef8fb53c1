"""Which librdkafka settings of the consumer also apply to the other clients we create.

The dead-letter producer, the readiness probe's admin client and the dead-letter reader talk
to the same brokers as the consumer, so they need every connection setting the user gave it
(security.protocol, sasl.*, ssl.* including endpoint verification and CA, client.dns.lookup,
message.max.bytes, socket.*, broker.address.family, …). Only consumer-only properties are
left out (librdkafka would ignore them with a warning); the list is librdkafka's
CONFIGURATION.md rows marked `C`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

CONSUMER_ONLY: Final = frozenset({
    "group.id", "group.instance.id", "partition.assignment.strategy", "session.timeout.ms",
    "heartbeat.interval.ms", "group.protocol.type", "group.protocol", "group.remote.assignor",
    "coordinator.query.interval.ms", "max.poll.interval.ms", "enable.auto.commit", "auto.commit.enable",
    "auto.commit.interval.ms", "enable.auto.offset.store", "queued.min.messages", "queued.max.messages.kbytes",
    "fetch.wait.max.ms", "fetch.queue.backoff.ms", "fetch.message.max.bytes", "max.partition.fetch.bytes",
    "fetch.max.bytes", "fetch.min.bytes", "fetch.error.backoff.ms", "offset.store.method", "offset.store.path",
    "offset.store.sync.interval.ms", "isolation.level", "consume_cb", "rebalance_cb", "offset_commit_cb",
    "on_commit", "enable.partition.eof", "check.crcs", "auto.offset.reset", "consume.callback.max.messages",
})


def shared_settings(conf: Mapping[str, str]) -> dict[str, str]:
    """The consumer's settings minus the consumer-only ones: for producers and admin clients."""
    return {k: v for k, v in conf.items() if k not in CONSUMER_ONLY}


__all__ = ["CONSUMER_ONLY", "shared_settings"]
