"""Kafka source: a confluent-kafka consumer group member with at-least-once commits.

The only module that imports confluent_kafka. Offsets are committed by us, never by
librdkafka's auto-commit: only offsets whose records finished (`OffsetTracker`), every
`commit_interval_s` or every `max_uncommitted` finished records (whichever comes first),
synchronously, also for partitions being revoked and on close, and never for a lost
assignment. A crash therefore redelivers at most `max_uncommitted` finished records plus
the one in progress. Cooperative-sticky rebalancing; while a hook backs off the member
pauses its partitions and keeps polling so it never leaves the group.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from sidecar.checkpoint import OffsetTracker, PartitionTracker
from sidecar.errors import SourceError
from sidecar.events import RawMessage
from sidecar.health import Health
from sidecar.metrics import Metrics, NoMetrics
from sidecar.sources.kafka_dead_letters import KafkaDeadLetterWriter, read_dead_letter_topic
from sidecar.sources.kafka_logs import kafka_logger
from sidecar.sources.kafka_settings import shared_settings

# Moved to kafka_dead_letters; re-exported for existing imports.
__all__ = ["BrokerProbe", "KafkaDeadLetterWriter", "KafkaSource", "build_kafka_source", "ping",
           "read_dead_letter_topic"]

_RETRIABLE_COMMIT = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET,
}


class KafkaSource:
    def __init__(
        self,
        conf: dict[str, str],
        topics: Sequence[str],
        logger: Any,
        batch_size: int = 500,
        poll_timeout_s: float = 0.2,
        commit_interval_s: float = 1.0,
        max_uncommitted: int = 1000,
        metrics: Metrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.log = logger
        self.metrics = metrics or NoMetrics()
        self.health = health or Health()
        self._conf: dict[str, Any] = {**conf, "error_cb": self._error_cb, "logger": kafka_logger()}
        try:
            self._consumer = Consumer(self._conf)
        except KafkaException as exc:
            raise SourceError(f"cannot create the Kafka consumer: {exc.args[0]}") from None
        self._tracker = OffsetTracker()
        self._fetched_with: dict[tuple[str, int], PartitionTracker] = {}
        self._halted: set[tuple[str, int]] = set()
        self._paused: set[tuple[str, int]] = set()
        self._buffer: deque[Any] = deque()
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout_s
        self._commit_interval = commit_interval_s
        self._last_commit = time.monotonic()
        self._max_uncommitted = max_uncommitted
        # With the coordinator gone a synchronous commit blocks until session.timeout.ms
        # (measured: 45 s at the default, 10 s at 10000); liveness allows that plus a margin.
        self._commit_bound_s = float(conf.get("session.timeout.ms", 45000)) / 1000 + 15
        self._uncommitted = 0
        self.stopping = False
        self._consumer.subscribe(
            list(topics), on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lost
        )

    def _error_cb(self, err: Any) -> None:
        # Called from poll() (so it can come late); readiness follows the broker, liveness
        # does not. The watcher's BrokerProbe marks it down too, and is what marks it up.
        down = err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT)
        if down and self.health.dependency("kafka", False):
            self.log.warning("kafka unreachable; not ready until it answers again", error=err.str())

    def _broker_up(self) -> None:
        # Evidence only from the broker itself (an assignment); the watcher's BrokerProbe
        # clears it too. Prefetched messages are no evidence: they outlive the broker.
        if self.health.dependency("kafka", True):
            self.log.info("kafka reachable again")

    # ------------------------------------------------------------------ rebalance callbacks
    def _assign(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._tracker.assign(tp.topic, tp.partition)
            self._halted.discard((tp.topic, tp.partition))
        self.health.started = True
        self._broker_up()
        self.log.info("partitions assigned", partitions=[f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # Records of these partitions still in our hands are abandoned (`current` turns
        # False); commit only what finished, before the partitions go to another member.
        self._commit(only={(tp.topic, tp.partition) for tp in partitions})
        for tp in partitions:
            self._drop(tp.topic, tp.partition)
            self.metrics.forget_lag(tp.topic, tp.partition)
        self.log.info("partitions revoked", partitions=[f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._drop(tp.topic, tp.partition)
        self.log.warning(
            "partitions lost; committing nothing for them",
            partitions=[f"{tp.topic}[{tp.partition}]" for tp in partitions],
        )

    def _drop(self, topic: str, partition: int) -> None:
        self._tracker.revoke(topic, partition)
        self._halted.discard((topic, partition))
        self._paused.discard((topic, partition))

    # ------------------------------------------------------------------ Source protocol
    def poll_batch(self) -> Sequence[RawMessage]:
        if self._buffer:
            msgs = list(self._buffer)
            self._buffer.clear()
        else:
            msgs = self._consumer.consume(num_messages=self._batch_size, timeout=0)
            if not msgs:
                one = self._consumer.poll(self._poll_timeout)
                msgs = [one] if one is not None else []
        out: list[RawMessage] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._on_error(err)
                continue
            raw = _raw(msg)
            key = (raw.topic, msg.partition())
            tracker = self._tracker.get(*key)
            if tracker is None or key in self._halted:
                continue
            self._fetched_with[key] = tracker
            out.append(raw)
        return out

    def _on_error(self, err: Any) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise SourceError(f"fatal Kafka error: {err.str()}")
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            self.log.warning("topic not found yet (waiting for it to be created)", error=err.str())
            return
        self.log.warning("kafka error (librdkafka retries)", error=err.str())

    def current(self, raw: RawMessage) -> bool:
        assert raw.partition is not None
        key = (raw.topic, raw.partition)
        tracker = self._tracker.get(*key)
        return tracker is not None and tracker is self._fetched_with.get(key) and key not in self._halted

    def begin(self, raw: RawMessage) -> None:
        assert raw.partition is not None and raw.offset is not None
        tracker = self._tracker.get(raw.topic, raw.partition)
        if tracker is not None:
            tracker.begin(raw.offset)

    def finish(self, raw: RawMessage) -> None:
        assert raw.partition is not None and raw.offset is not None
        tracker = self._tracker.get(raw.topic, raw.partition)
        if tracker is not None:
            tracker.finish(raw.offset)
            self._uncommitted += 1
            if self._uncommitted >= self._max_uncommitted:
                self._commit_now()

    def halt(self, raw: RawMessage, reason: str) -> None:
        assert raw.partition is not None
        key = (raw.topic, raw.partition)
        self._halted.add(key)
        self._pause([key])
        self.health.halted = True  # needs a person: not ready until restarted
        self.log.error(
            "partition halted: nothing at or after this offset is committed",
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            reason=reason,
        )

    def wait(self, seconds: float) -> bool:
        """Back off while staying in the group: pause everything, keep serving poll()."""
        owned = [k for k, _ in self._tracker.items()]
        self._pause(owned)
        deadline = time.monotonic() + seconds
        try:
            while not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                msg = self._consumer.poll(min(left, 0.2))
                if msg is not None:
                    self._buffer.append(msg)  # from a partition assigned meanwhile
                self.maybe_commit()
            return False
        finally:
            self._resume([k for k in owned if k not in self._halted])

    def maybe_commit(self) -> None:
        if time.monotonic() - self._last_commit >= self._commit_interval:
            self._commit_now()

    def _update_lag(self) -> None:
        for (topic, partition), tracker in self._tracker.items():
            try:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except KafkaException:
                continue
            if high is not None and high >= 0 and tracker.committed is not None:
                self.metrics.lag(topic, partition, max(0, high - tracker.committed))

    def _commit_now(self) -> None:
        # Synchronous: when it returns, a crash redelivers at most `max_uncommitted` records.
        self._last_commit = time.monotonic()
        if "kafka" in self.health.down:
            # A synchronous commit waits for the coordinator (seconds, while the loop serves
            # nothing); it would fail anyway. Finished records stay finished and are
            # committed once the probe sees the broker again (revoke/close still try).
            return
        self._uncommitted = 0
        self._commit()
        self._update_lag()

    def close(self) -> None:
        try:
            if "kafka" in self.health.down:
                # The commit would block up to session.timeout.ms and still fail, eating the
                # shutdown grace period; finished records are redelivered (at least once).
                self.log.warning("kafka unreachable at shutdown: not committing; finished records will be redelivered")
            else:
                self._commit()
        finally:
            self._consumer.close()

    # ------------------------------------------------------------------ helpers
    def _pause(self, keys: list[tuple[str, int]]) -> None:
        new = [k for k in keys if k not in self._paused]
        if new:
            self._consumer.pause([TopicPartition(t, p) for t, p in new])
            self._paused.update(new)

    def _resume(self, keys: list[tuple[str, int]]) -> None:
        back = [k for k in keys if k in self._paused and self._tracker.owns(*k)]
        if back:
            self._consumer.resume([TopicPartition(t, p) for t, p in back])
            self._paused.difference_update(back)

    def _commit(self, only: set[tuple[str, int]] | None = None) -> None:
        """Synchronously commit what finished (all partitions, or `only` those)."""
        due: list[tuple[tuple[str, int], PartitionTracker, int]] = []
        for key, tracker in self._tracker.items():
            if only is not None and key not in only:
                continue
            offset = tracker.commit_due()
            if offset is not None:
                due.append((key, tracker, offset))
        if not due:
            return
        offsets = [TopicPartition(t, p, off) for (t, p), _, off in due]
        try:
            self.health.call_begin("kafka offset commit", self._commit_bound_s)
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            finally:
                self.health.call_end()
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() in _RETRIABLE_COMMIT:
                self.log.info("commit refused during a rebalance; records will be redelivered", error=err.str())
                return
            self.log.warning("offset commit failed; will retry", error=err.str())
            return
        for _, tracker, off in due:
            tracker.committed = off
        self.metrics.committed()
        self.log.debug("offsets committed", offsets={f"{t}[{p}]": o for (t, p), _, o in due})


def _raw(msg: Any) -> RawMessage:
    ts_type, ts = msg.timestamp()
    headers = msg.headers()
    return RawMessage(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        key=msg.key(),
        value=msg.value(),
        headers=tuple(headers) if headers else (),
        timestamp_ms=ts if ts_type else None,
    )


def build_kafka_source(
    conf: dict[str, str],
    topics: Sequence[str],
    topic_pattern: str | None,
    logger: Any,
    **kwargs: Any,
) -> KafkaSource:
    subs = list(topics) + ([topic_pattern] if topic_pattern else [])
    return KafkaSource(conf, subs, logger, **kwargs)


def ping(conf: dict[str, str], timeout_s: float = 5.0) -> None:
    """Raise SourceError unless the brokers answer a metadata request."""
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
        self._admin = AdminClient(aconf)

    def __call__(self) -> None:
        try:
            self._admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise SourceError(f"Kafka at {self.servers} did not answer: {exc.args[0].str()}") from None
