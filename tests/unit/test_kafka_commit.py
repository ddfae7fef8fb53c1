"""Periodic offset commits are sent without waiting; a failed one is sent again with the next."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from confluent_kafka import KafkaError, TopicPartition

from sidecar.checkpoint import Checkpoint
from sidecar.events import RawMessage
from sidecar.sources.kafka import KafkaSource


class StubConsumer:
    def __init__(self) -> None:
        self.commits: list[tuple[bool, dict[tuple[str, int], int]]] = []

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        pass

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append((asynchronous, {(tp.topic, tp.partition): tp.offset for tp in offsets}))

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, 100


def make(monkeypatch: pytest.MonkeyPatch) -> tuple[KafkaSource, StubConsumer]:
    consumer = StubConsumer()
    monkeypatch.setattr("sidecar.sources.kafka.Consumer", lambda conf: consumer)
    src = KafkaSource({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, ["t"], structlog.get_logger())
    src._owned.update({("t", 0), ("t", 1)})
    return src, consumer


def test_periodic_commits_do_not_wait_revokes_and_shutdown_do(monkeypatch: pytest.MonkeyPatch) -> None:
    src, consumer = make(monkeypatch)
    cp = Checkpoint(src, interval_s=0.0, max_uncommitted=1)
    cp.assign([("t", 0)])
    token = cp.begin(RawMessage("t", 0, 5, None, b"x"))
    assert token is not None
    cp.finish(token)
    cp.maybe_commit()
    assert consumer.commits == [(True, {("t", 0): 6})]
    token = cp.begin(RawMessage("t", 0, 6, None, b"x"))
    assert token is not None
    cp.finish(token)
    cp.commit(only=[("t", 0)])  # a revoke (and the final commit) waits for the broker
    assert consumer.commits[-1] == (False, {("t", 0): 7})


def test_a_failed_asynchronous_commit_is_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    src, consumer = make(monkeypatch)
    assert src.commit_async({("t", 0): 10, ("t", 1): 3})
    failed = TopicPartition("t", 0, 10)
    src._commit_result(KafkaError(KafkaError.REQUEST_TIMED_OUT), [failed, TopicPartition("t", 1, 3)])
    assert src.commit_async({("t", 1): 4})  # t[0] had nothing new: its failed offset goes again
    assert consumer.commits[-1] == (True, {("t", 0): 10, ("t", 1): 4})
    src._commit_result(None, [TopicPartition("t", 0, 10), TopicPartition("t", 1, 4)])
    assert src.commit_async({("t", 1): 5})
    assert consumer.commits[-1] == (True, {("t", 1): 5})  # nothing left to retry
