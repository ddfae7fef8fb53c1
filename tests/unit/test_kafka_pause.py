"""Backpressure on the Kafka source never pauses transaction-marker topics (held records wait for them)."""

from __future__ import annotations

from typing import Any

import structlog

from sidecar.sources.kafka import KafkaSource


class StubConsumer:
    def __init__(self) -> None:
        self.paused: list[tuple[str, int]] = []
        self.resumed: list[tuple[str, int]] = []

    def pause(self, tps: list[Any]) -> None:
        self.paused += [(tp.topic, tp.partition) for tp in tps]

    def resume(self, tps: list[Any]) -> None:
        self.resumed += [(tp.topic, tp.partition) for tp in tps]

    def close(self) -> None:
        pass


def test_pause_skips_marker_topics_and_resume_restores_the_rest() -> None:
    """pause() pauses data partitions only; `<prefix>.transaction` keeps being fetched."""
    source = KafkaSource({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, ["shop.public.orders"],
                         structlog.get_logger())
    stub = StubConsumer()
    source._consumer = stub
    source._owned = {("shop.public.orders", 0), ("shop.public.orders", 1), ("shop.transaction", 0)}
    source.pause()
    assert sorted(stub.paused) == [("shop.public.orders", 0), ("shop.public.orders", 1)]
    source.resume()
    assert sorted(stub.resumed) == sorted(stub.paused)


class WatermarkConsumer(StubConsumer):
    """Cached watermarks and positions per partition, as librdkafka reports them."""

    def __init__(self, offsets: dict[tuple[str, int], tuple[int, int, int]]) -> None:
        super().__init__()
        self.offsets = offsets  # (low, high, position)

    def get_watermark_offsets(self, tp: Any, cached: bool = False) -> tuple[int, int]:
        low, high, _ = self.offsets[(tp.topic, tp.partition)]
        return low, high

    def position(self, tps: list[Any]) -> list[Any]:
        from confluent_kafka import TopicPartition
        return [TopicPartition(tp.topic, tp.partition, self.offsets[(tp.topic, tp.partition)][2]) for tp in tps]


def test_markers_behind_looks_only_at_the_waiting_connectors_transaction_topic() -> None:
    """A connector idle since a restart has an unknown position (-1001) below its transaction topic's
    high watermark until its next message: that must not hold back another connector's data. Its
    own scope still counts it as behind (nothing taken yet), as does one never fetched (high -1)
    and one whose position is below the high watermark; a halted partition never counts."""
    source = KafkaSource({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, ["shop.public.orders"],
                         structlog.get_logger())
    offsets = {("shop.transaction", 0): (0, 10, 10), ("idle.transaction", 0): (0, 50, -1001),
               ("shop.public.orders", 0): (0, 900, 3)}
    source._consumer = WatermarkConsumer(offsets)
    source._owned = set(offsets)
    assert not source.markers_behind({"shop"})
    assert source.markers_behind({"idle"})
    assert source.markers_behind({"shop", "idle"})
    assert not source.markers_behind(set())
    offsets[("shop.transaction", 0)] = (0, 10, 7)
    assert source.markers_behind({"shop"})
    offsets[("shop.transaction", 0)] = (0, -1, -1001)
    assert source.markers_behind({"shop"})
    source._halted.add(("shop.transaction", 0))
    assert not source.markers_behind({"shop"})
