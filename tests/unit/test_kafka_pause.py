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
