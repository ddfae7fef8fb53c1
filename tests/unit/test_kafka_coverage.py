"""Transaction hooks in Kafka mode: after every assignment change the member compares what it
owns with every partition of the subscribed topics and warns (and sets a gauge) when it misses some."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from sidecar.metrics import Metrics
from sidecar.sources.kafka import KafkaSource
from sidecar.sources.kafka_coverage import missing_partitions
from sidecar.testing import capture_logs


def topic(n: int, error: Any = None) -> SimpleNamespace:
    return SimpleNamespace(partitions={p: object() for p in range(n)}, error=error)


class StubConsumer:
    def __init__(self, topics: dict[str, SimpleNamespace] | None) -> None:
        self.topics = topics
        self.timeouts: list[float] = []

    def list_topics(self, timeout: float) -> SimpleNamespace:
        self.timeouts.append(timeout)
        if self.topics is None:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return SimpleNamespace(topics=self.topics)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        return []

    def poll(self, timeout: float) -> None:
        return None

    def resume(self, tps: list[Any]) -> None:
        pass

    def close(self) -> None:
        pass


TOPICS = {"shop.public.orders": topic(3), "shop.transaction": topic(1), "other.t": topic(2),
          "__consumer_offsets": topic(50), "shop.public.broken": topic(2, error=KafkaError(KafkaError._UNKNOWN_TOPIC))}
SUBSCRIBED = re.compile(r"^shop\.").match


def test_missing_partitions_of_subscribed_topics_only() -> None:
    """Partitions of subscribed topics not owned, sorted; other topics, internal ones and topics with
    a metadata error are left out; the metadata request is bounded."""
    c = StubConsumer(TOPICS)
    owned = [("shop.public.orders", 1), ("other.t", 0)]
    assert missing_partitions(c, owned, lambda t: SUBSCRIBED(t) is not None, 2.0) == [
        ("shop.public.orders", 0), ("shop.public.orders", 2), ("shop.transaction", 0)]
    assert c.timeouts == [2.0]
    everything = [("shop.public.orders", p) for p in range(3)] + [("shop.transaction", 0)]
    assert missing_partitions(c, everything, lambda t: SUBSCRIBED(t) is not None) == []
    assert missing_partitions(StubConsumer(None), owned, lambda t: True) is None  # no metadata: unknown


def source_with(consumer: StubConsumer, metrics: Metrics, monkeypatch: pytest.MonkeyPatch) -> KafkaSource:
    # No real client: one would log connection errors through the process-wide librdkafka logger.
    monkeypatch.setattr("sidecar.sources.kafka.Consumer", lambda conf: consumer)
    source = KafkaSource({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, ["shop.public.orders"],
                         structlog.get_logger(), metrics=metrics)
    source.must_own = lambda t: SUBSCRIBED(t) is not None
    return source


def gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("checkpoint_transaction_partitions_missing")


def test_assignment_missing_partitions_warns_with_names_and_sets_the_gauge(monkeypatch: pytest.MonkeyPatch) -> None:
    """A member assigned part of the captured partitions (a second replica took the rest) warns after
    the assignment, naming the missing partitions and the remedy; the gauge says how many. Once it
    owns them all, the gauge goes back to 0 and nothing is warned."""
    metrics = Metrics()
    consumer = StubConsumer(TOPICS)
    source = source_with(consumer, metrics, monkeypatch)
    with capture_logs() as logs:  # cooperative rebalancing's first, empty assignment: nothing to say yet
        source._assign(None, [])
        source.poll(0.0)
    assert not [e for e in logs if e["log_level"] == "warning"] and consumer.timeouts == []
    with capture_logs() as logs:
        source._assign(None, [TopicPartition("shop.public.orders", 0), TopicPartition("shop.transaction", 0)])
        # Never inside the rebalance callback (it runs inside consume/poll: a nested list_topics call
        # aborts the process in confluent-kafka): at the next poll, before librdkafka is called.
        assert consumer.timeouts == []
        source.poll(0.0)
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert len(warned) == 1 and warned[0]["missing"] == ["shop.public.orders[1]", "shop.public.orders[2]"]
    assert "one replica" in warned[0]["event"] and "group.instance.id" in warned[0]["event"]
    assert gauge(metrics) == 2
    with capture_logs() as logs:
        source._assign(None, [TopicPartition("shop.public.orders", 1), TopicPartition("shop.public.orders", 2)])
        source.poll(0.0)
    assert not [e for e in logs if e["log_level"] == "warning"] and gauge(metrics) == 0
    with capture_logs() as logs:  # a revoke changes ownership too
        source._revoke(None, [TopicPartition("shop.public.orders", 2)])
        source.poll(0.0)
    assert [e["missing"] for e in logs if e["log_level"] == "warning"] == [["shop.public.orders[2]"]]
    assert gauge(metrics) == 1
    with capture_logs() as logs:  # leaving the group (close) revokes everything: nothing to warn about
        source.close()
        source._revoke(None, [TopicPartition("shop.public.orders", 0), TopicPartition("shop.public.orders", 1)])
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_no_metadata_is_said_not_guessed_and_no_check_without_transaction_hooks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = Metrics()
    source = source_with(StubConsumer(None), metrics, monkeypatch)
    with capture_logs() as logs:
        source._assign(None, [TopicPartition("shop.public.orders", 0)])
        source.poll(0.0)
    assert any("cannot check" in e["event"] for e in logs) and gauge(metrics) == 0
    consumer = StubConsumer(TOPICS)
    plain = source_with(consumer, Metrics(), monkeypatch)
    plain.must_own = None  # no transaction hooks: nothing asked of the broker
    plain._assign(None, [TopicPartition("shop.public.orders", 0)])
    plain.poll(0.0)
    assert consumer.timeouts == []


def test_a_topic_listed_twice_is_subscribed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka refuses a subscription naming a topic twice; the source subscribes to each once."""
    from sidecar.sources.kafka import build_kafka_source

    got: list[list[str]] = []
    consumer = StubConsumer(TOPICS)
    monkeypatch.setattr(consumer, "subscribe", lambda topics, **cb: got.append(topics))
    monkeypatch.setattr("sidecar.sources.kafka.Consumer", lambda conf: consumer)
    build_kafka_source({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, ["a", "b", "a"], "^c",
                       structlog.get_logger())
    assert got == [["a", "b", "^c"]]


def test_a_transaction_topic_of_more_than_one_partition_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit order is the order of BEGIN markers, which only a one-partition transaction topic keeps
    (and "a later END came, so the first one's never comes" relies on it): a member owning all of a
    three-partition transaction topic still warns, naming the topic, its partitions and the remedy."""
    consumer = StubConsumer({"shop.public.orders": topic(1), "shop.transaction": topic(3)})
    source = source_with(consumer, Metrics(), monkeypatch)
    with capture_logs() as logs:
        source._assign(None, [TopicPartition("shop.public.orders", 0)] +
                       [TopicPartition("shop.transaction", p) for p in range(3)])
        source.poll(0.0)
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert len(warned) == 1 and warned[0]["topics"] == {"shop.transaction": 3}, warned
    assert "1 partition" in warned[0]["event"]
    consumer.topics = {"shop.public.orders": topic(4), "shop.transaction": topic(1)}
    with capture_logs() as logs:  # one partition (data topics may have many): nothing to say
        source._assign(None, [TopicPartition("shop.public.orders", p) for p in range(1, 4)])
        source.poll(0.0)
    assert not [e for e in logs if e["log_level"] == "warning"]
