"""Transaction hooks in Kafka mode need one member owning every captured partition: after each
assignment change, compare what this member owns with every partition of the subscribed topics
(broker metadata, bounded wait) and say which are missing; and a transaction topic of one
partition (commit order is the order of its BEGIN markers)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from confluent_kafka import KafkaException

METADATA_TIMEOUT_S = 5.0
Unit = tuple[str, int]


def is_marker_topic(topic: str) -> bool:
    """Debezium's transaction metadata topic (`<topic.prefix>.transaction`)."""
    return topic.endswith(".transaction")


def _topics(consumer: Any, subscribed: Callable[[str], bool], timeout_s: float) -> dict[str, list[int]] | None:
    """Partitions of each subscribed topic (broker metadata); None when it cannot be had in time."""
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
    except (KafkaException, RuntimeError):
        return None
    return {name: list(topic.partitions) for name, topic in metadata.topics.items()
            if not name.startswith("__") and subscribed(name) and topic.error is None}


def _missing(topics: dict[str, list[int]], owned: Collection[Unit]) -> list[Unit]:
    have = set(owned)
    return sorted((name, p) for name, partitions in topics.items() for p in partitions if (name, p) not in have)


def missing_partitions(consumer: Any, owned: Collection[Unit], subscribed: Callable[[str], bool],
                       timeout_s: float = METADATA_TIMEOUT_S) -> list[Unit] | None:
    """Partitions of subscribed topics this member does not own, sorted; None when the broker's
    metadata cannot be had within `timeout_s` (or has an error)."""
    topics = _topics(consumer, subscribed, timeout_s)
    return None if topics is None else _missing(topics, owned)


def check_coverage(consumer: Any, owned: Collection[Unit], subscribed: Callable[[str], bool], log: Any,
                   gauge: Callable[[int], None], timeout_s: float = METADATA_TIMEOUT_S) -> list[Unit] | None:
    """Warn (and set the gauge) when this member misses partitions transaction hooks need."""
    topics = _topics(consumer, subscribed, timeout_s)
    if topics is None:
        log.warning("cannot check that this member owns every partition transaction hooks need "
                    "(no broker metadata); checked again at the next assignment", timeout_s=timeout_s)
        return None
    missing = _missing(topics, owned)
    gauge(len(missing))
    split = {name: len(partitions) for name, partitions in sorted(topics.items())
             if is_marker_topic(name) and len(partitions) > 1}
    if split:
        log.warning("transaction hooks: a transaction topic has more than one partition. Debezium writes "
                    "BEGIN/END markers in commit order, which only one partition keeps: with more, calls may "
                    "come out of commit order, and a transaction may wait for an END already read. Create "
                    "<topic.prefix>.transaction with 1 partition (topic.creation.default.partitions, or "
                    "kafka-topics --create --partitions 1)", topics=split)
    if missing:
        shown = [f"{t}[{p}]" for t, p in missing[:50]]
        log.warning("transaction hooks: this member does not own every captured partition, so transactions "
                    "spanning them are split between members (called incomplete, after "
                    "transaction_end_timeout_s). Run one replica (replicas: 1) per consumer group, updated by "
                    "Recreate (not RollingUpdate, which runs two members for a moment), with static membership "
                    "(group.instance.id) so a restart does not hand partitions to another member",
                    missing=shown, missing_count=len(missing), owned_count=len(owned))
    return missing


__all__ = ["METADATA_TIMEOUT_S", "check_coverage", "is_marker_topic", "missing_partitions"]
