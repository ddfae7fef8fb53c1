"""Reading topics directly with confluent-kafka (what Debezium wrote, before the sidecar)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

from tests.integration.stack import KAFKA


def read_until(topics: list[str], done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0,
               ) -> list[dict[str, Any]]:
    """All messages of `topics` from the beginning until `done(messages)` or timeout."""
    consumer = Consumer({
        "bootstrap.servers": KAFKA, "group.id": f"it-read-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
        "enable.auto.commit": "false", "topic.metadata.refresh.interval.ms": "1000",
    })
    consumer.subscribe(topics)
    seen: dict[tuple[str, int, int], dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                value = msg.value()
                seen[(msg.topic(), msg.partition(), msg.offset())] = {
                    "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                    "key": None if msg.key() is None else msg.key().decode(),
                    "value": None if value is None else value.decode(),
                    "payload": None if value is None else json.loads(value).get("payload"),
                }
            elif msg is None and done(list(seen.values())):
                break
    finally:
        consumer.close()
    return sorted(seen.values(), key=lambda m: (m["topic"], m["partition"], m["offset"]))


def watermark(topic: str, partition: int = 0) -> int | None:
    """The partition's high watermark, or None when the topic does not exist yet."""
    from confluent_kafka import TopicPartition

    c = Consumer({"bootstrap.servers": KAFKA, "group.id": "probe-hw"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    except Exception:  # topic not created yet
        return None
    finally:
        c.close()


def committed(group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset (0 when it has none)."""
    from confluent_kafka import TopicPartition

    c = Consumer({"bootstrap.servers": KAFKA, "group.id": group})
    try:
        return max(int(c.committed([TopicPartition(topic, partition)], timeout=10)[0].offset), 0)
    finally:
        c.close()


def start_group_at_end(group: str, topics: list[str]) -> None:
    """Commit the current end of every partition of `topics` for `group`: a member of it then reads
    only what is written afterwards (the stack's topics hold every earlier test's changes). A
    topic not created yet holds nothing: the member reads it from its start."""
    from confluent_kafka import TopicPartition

    c = Consumer({"bootstrap.servers": KAFKA, "group.id": group, "enable.auto.commit": "false"})
    try:
        ends = []
        for topic in topics:
            for partition in c.list_topics(topic, timeout=10).topics[topic].partitions:
                tp = TopicPartition(topic, partition)
                ends.append(TopicPartition(topic, partition, c.get_watermark_offsets(tp, timeout=10)[1]))
        if ends:
            c.commit(offsets=ends, asynchronous=False)
    finally:
        c.close()
