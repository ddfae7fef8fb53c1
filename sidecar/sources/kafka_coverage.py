"""Transaction hooks in Kafka mode need one member owning every captured partition: after each
assignment change, compare what this member owns with every partition of the subscribed topics
(broker metadata, bounded wait) and say which are missing."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from confluent_kafka import KafkaException

METADATA_TIMEOUT_S = 5.0
Unit = tuple[str, int]


def missing_partitions(consumer: Any, owned: Collection[Unit], subscribed: Callable[[str], bool],
                       timeout_s: float = METADATA_TIMEOUT_S) -> list[Unit] | None:
    """Partitions of subscribed topics this member does not own, sorted; None when the broker's
    metadata cannot be had within `timeout_s` (or has an error)."""
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
    except (KafkaException, RuntimeError):
        return None
    have = set(owned)
    missing: list[Unit] = []
    for name, topic in metadata.topics.items():
        if name.startswith("__") or not subscribed(name) or topic.error is not None:
            continue
        missing += [(name, p) for p in topic.partitions if (name, p) not in have]
    return sorted(missing)


def check_coverage(consumer: Any, owned: Collection[Unit], subscribed: Callable[[str], bool], log: Any,
                   gauge: Callable[[int], None], timeout_s: float = METADATA_TIMEOUT_S) -> list[Unit] | None:
    """Warn (and set the gauge) when this member misses partitions transaction hooks need."""
    missing = missing_partitions(consumer, owned, subscribed, timeout_s)
    if missing is None:
        log.warning("cannot check that this member owns every partition transaction hooks need "
                    "(no broker metadata); checked again at the next assignment", timeout_s=timeout_s)
        return None
    gauge(len(missing))
    if missing:
        shown = [f"{t}[{p}]" for t, p in missing[:50]]
        log.warning("transaction hooks: this member does not own every captured partition, so transactions "
                    "spanning them are split between members (called incomplete, after "
                    "transaction_end_timeout_s). Run one replica (replicas: 1) per consumer group, or static "
                    "membership (group.instance.id) so a restart does not hand partitions to another member",
                    missing=shown, missing_count=len(missing), owned_count=len(owned))
    return missing


__all__ = ["METADATA_TIMEOUT_S", "check_coverage", "missing_partitions"]
