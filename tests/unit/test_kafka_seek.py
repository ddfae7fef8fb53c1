"""The Kafka source fetches a kept partition again from an earlier offset (after a partial revoke)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException

from sidecar.errors import SourceError
from sidecar.sources.kafka import KafkaSource


class StubConsumer:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seeks: list[tuple[str, int, int]] = []

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        pass

    def seek(self, tp: Any) -> None:
        if self.fail:
            raise KafkaException(KafkaError(KafkaError._STATE))
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def source(consumer: StubConsumer, monkeypatch: pytest.MonkeyPatch) -> KafkaSource:
    monkeypatch.setattr("sidecar.sources.kafka.Consumer", lambda conf: consumer)
    return KafkaSource({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, ["t"], structlog.get_logger())


def test_seek_sets_the_partitions_fetch_position(monkeypatch: pytest.MonkeyPatch) -> None:
    c = StubConsumer()
    source(c, monkeypatch).seek(("shop.public.a", 1), 42)
    assert c.seeks == [("shop.public.a", 1, 42)]


def test_a_failed_seek_stops_the_source_rather_than_leaving_the_partition_stuck(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the seek the given-up records would never come again: the source fails (a restart
    redelivers from the last commit)."""
    with pytest.raises(SourceError, match=r"cannot fetch shop.public.a\[1\] again from offset 42"):
        source(StubConsumer(fail=True), monkeypatch).seek(("shop.public.a", 1), 42)
