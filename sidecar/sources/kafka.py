"""Kafka source: a confluent-kafka consumer group member that commits what it is told.

Offsets are committed by us, never by librdkafka's auto-commit, synchronously, with the
positions `Checkpoint` hands over (only finished records; revoked partitions before they
go; nothing for a lost assignment). Cooperative-sticky rebalancing; the rebalance
callbacks (run inside poll) tell `Assignments`. `pause`/`resume` keep the member polling
while too many records are in flight, so it never leaves the group.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from sidecar.errors import SourceError
from sidecar.events import RawMessage
from sidecar.health import Health
from sidecar.metrics import Metrics, NoMetrics
from sidecar.sources import Assignments
from sidecar.sources.kafka_coverage import check_coverage, is_marker_topic
from sidecar.sources.kafka_dead_letters import KafkaDeadLetterWriter, read_dead_letter_topic
from sidecar.sources.kafka_logs import kafka_logger
from sidecar.sources.kafka_messages import raw_messages
from sidecar.sources.kafka_probe import BrokerProbe, ping
from sidecar.transactions import topic_scope

_RETRIABLE_COMMIT = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET,
}

Unit = tuple[str, int]


class _NoListener:
    def assigned(self, units: Collection[Hashable]) -> None:
        pass

    def revoked(self, units: Collection[Hashable]) -> None:
        pass

    def lost(self, units: Collection[Hashable]) -> None:
        pass


class KafkaSource:
    exhausted = False
    auto_units = False

    def __init__(
        self,
        conf: dict[str, str],
        topics: Sequence[str],
        logger: Any,
        batch_size: int = 500,
        metrics: Metrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.log = logger
        self.metrics = metrics or NoMetrics()
        self.health = health or Health()
        # `locate` gives ((topic, partition), offset): the checkpoint does it itself (not a subclass's).
        self.units_are_partitions = type(self).locate is KafkaSource.locate
        self.listener: Assignments = _NoListener()
        # Transaction hooks: which topics must all be owned here (None: no check). Set by the app.
        self.must_own: Callable[[str], bool] | None = None
        self._coverage_due = False
        self._conf: dict[str, Any] = {**conf, "error_cb": self._error_cb, "logger": kafka_logger(),
                                      "on_commit": self._commit_result}
        self._retry: dict[Unit, int] = {}  # offsets an asynchronous commit failed to store: sent again
        try:
            self._consumer = Consumer(self._conf)
        except KafkaException as exc:
            raise SourceError(f"cannot create the Kafka consumer: {exc.args[0]}") from None
        self._owned: set[Unit] = set()
        self._halted: set[Unit] = set()
        self._paused: set[Unit] = set()
        self._all_paused = False
        self._batch_size = batch_size
        # With the coordinator gone a synchronous commit blocks until session.timeout.ms
        # (measured: 45 s at the default, 10 s at 10000); liveness allows that plus a margin.
        self._commit_bound_s = float(conf.get("session.timeout.ms", 45000)) / 1000 + 15
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
        units = [(tp.topic, tp.partition) for tp in partitions]
        self._owned.update(units)
        self._halted.difference_update(units)
        if partitions:
            if self._all_paused:  # keep the backpressure on new partitions too (never on marker topics)
                self._pause_units([u for u in units if not is_marker_topic(u[0])])
                # (librdkafka keeps a pause flag across unassign/assign: a marker partition halted
                # before a revoke must not come back paused)
                markers = [tp for tp in partitions if is_marker_topic(tp.topic)]
                if markers:
                    self._consumer.resume(markers)
            else:
                # librdkafka keeps a partition's pause flag across unassign/assign: one paused
                # before a revoke would come back paused and never be fetched again.
                self._consumer.resume(partitions)
        self.listener.assigned(units)
        self.health.started = True
        self._broker_up()
        self.log.info("partitions assigned", partitions=[f"{t}[{p}]" for t, p in units])
        if units:  # cooperative rebalancing hands out an empty assignment first: nothing changed
            self._check_coverage()

    def _revoke(self, consumer: Any, partitions: list[Any]) -> None:
        units = [(tp.topic, tp.partition) for tp in partitions]
        self.listener.revoked(units)  # waits for their calls, commits what finished
        self._drop(units)
        for t, p in units:
            self.metrics.forget_lag(t, p)
        self.log.info("partitions revoked", partitions=[f"{t}[{p}]" for t, p in units])
        if units:
            self._check_coverage()

    def _check_coverage(self) -> None:
        # Not here: a rebalance callback runs inside consume()/poll(), and confluent-kafka aborts the
        # process (CallState_get assertion) when a call like list_topics() is nested in it. The
        # next poll() checks, before it calls librdkafka.
        if self.must_own is not None:
            self._coverage_due = True

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        units = [(tp.topic, tp.partition) for tp in partitions]
        self.listener.lost(units)
        self._drop(units)
        self.log.warning("partitions lost; committing nothing for them", partitions=[f"{t}[{p}]" for t, p in units])

    def _drop(self, units: list[Unit]) -> None:
        self._owned.difference_update(units)
        self._halted.difference_update(units)
        self._paused.difference_update(units)

    # ------------------------------------------------------------------ Source protocol
    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        consumer = self._consumer
        if self._coverage_due:
            self._coverage_due = False
            if self.must_own is not None:
                check_coverage(consumer, self._owned, self.must_own, self.log, self.metrics.partitions_missing)
        msgs = consumer.consume(num_messages=self._batch_size, timeout=0)
        if not msgs and timeout_s > 0:
            one = consumer.poll(timeout_s)
            msgs = [one] if one is not None else []
        out, errors = raw_messages(msgs)
        for err in errors:  # a fatal one raises: nothing of this batch is handed over or committed
            self._on_error(err)
        return out

    def locate(self, raw: RawMessage) -> tuple[Hashable, int]:
        assert raw.partition is not None and raw.offset is not None
        return (raw.topic, raw.partition), raw.offset

    def _on_error(self, err: Any) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise SourceError(f"fatal Kafka error: {err.str()}")
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            self.log.warning("topic not found yet (waiting for it to be created)", error=err.str())
            return
        self.log.warning("kafka error (librdkafka retries)", error=err.str())

    def pause(self) -> None:
        # Transaction markers are never paused: held records wait for them (they are tiny).
        self._all_paused = True
        self._pause_units([u for u in self._owned if not is_marker_topic(u[0])])

    def resume(self) -> None:
        self._all_paused = False
        back = [u for u in self._paused if u in self._owned and u not in self._halted]
        if back:
            self._consumer.resume([TopicPartition(t, p) for t, p in back])
            self._paused.difference_update(back)

    def markers_behind(self, scopes: Collection[str]) -> bool:
        """The transaction topic (`<scope>.transaction`) of one of `scopes` has a partition this
        member owns (and reads: not halted) with messages the loop may not have taken yet: not
        fetched at all (librdkafka may start on a data backlog first), or its position (nothing
        taken since the assignment: unknown) below its high watermark. Asked only while every
        record in flight is held and the first transaction of those scopes waits for its END: the
        END may be there, so the data is paused past `max_in_flight` instead of taken in whole.
        Another connector's transaction topic never counts (one idle since a restart has an
        unknown position below its high watermark until its next message). A partition that stays
        behind (its leader down) holds the data back at the bound until that END comes or the
        transaction's END timeout ends it (`dispatch.transaction_end_timeout_s`)."""
        consumer = self._consumer
        for unit in self._owned:
            topic = unit[0]
            if not is_marker_topic(topic) or unit in self._halted or topic_scope(topic) not in scopes:
                continue
            tp = TopicPartition(*unit)
            try:
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                position = consumer.position([tp])[0].offset
            except KafkaException:
                continue  # (unknown: as before, the data is not held back for it)
            if high < 0 or (position < 0 and high > low) or 0 <= position < high:
                return True
        return False

    def halt(self, unit: Hashable) -> None:
        assert isinstance(unit, tuple)
        self._halted.add(unit)
        self._pause_units([unit])

    def _pause_units(self, units: list[Unit]) -> None:
        new = [u for u in units if u not in self._paused]
        if new:
            self._consumer.pause([TopicPartition(t, p) for t, p in new])
            self._paused.update(new)

    def seek(self, unit: Hashable, offset: int) -> None:
        """Fetch this (kept) partition again from `offset` (records the checkpoint gave up on after
        a partial revoke). librdkafka drops what it prefetched past it; `Checkpoint` skips what
        was already handed over."""
        topic, partition = cast(Unit, unit)
        try:
            self._consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            raise SourceError(f"cannot fetch {topic}[{partition}] again from offset {offset}: "
                              f"{exc.args[0]}; restarting redelivers from the last commit") from None
        self.log.info("partition fetched again from an earlier offset", partition=f"{topic}[{partition}]",
                      offset=offset)

    def commit_async(self, offsets: dict[Hashable, int]) -> bool:
        """The periodic commit: sent without waiting for the broker (a synchronous one costs a
        round trip — 5–10 ms on a busy broker — every `max_uncommitted` records). The result
        comes to `_commit_result` during a later poll; a failed one is sent again with the next
        commit. Revokes and shutdown commit synchronously (`commit`)."""
        units = {**self._retry, **cast(dict[Unit, int], offsets)}
        self._retry = {}
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, off) for (t, p), off in units.items()],
                                  asynchronous=True)
        except KafkaException as exc:
            self._retry = {**units, **self._retry}
            self.log.warning("offset commit failed; will retry", error=exc.args[0].str())
            return False
        self._update_lag(units)
        return True

    def _commit_result(self, err: Any, partitions: list[Any]) -> None:
        """on_commit (served by poll on the loop's thread): an asynchronous commit's outcome."""
        if err is None:
            failed = [tp for tp in partitions if tp.error is not None and tp.offset >= 0]
            if not failed:
                self.metrics.committed()
                return
            err = failed[0].error
            partitions = failed
        for tp in partitions:
            if tp.offset >= 0:
                unit = (tp.topic, tp.partition)
                if unit in self._owned:
                    self._retry[unit] = max(tp.offset, self._retry.get(unit, tp.offset))
        if err.code() in _RETRIABLE_COMMIT:
            self.log.info("commit refused during a rebalance; records will be redelivered", error=err.str())
        else:
            self.log.warning("offset commit failed; will retry with the next commit", error=err.str())

    def commit(self, offsets: dict[Hashable, int]) -> bool:
        """Synchronous: when it returns, a crash redelivers at most what finished since."""
        units = {**self._retry, **cast(dict[Unit, int], offsets)}
        self._retry = {}
        tps = [TopicPartition(t, p, off) for (t, p), off in units.items()]
        try:
            self.health.call_begin("kafka offset commit", self._commit_bound_s)
            try:
                self._consumer.commit(offsets=tps, asynchronous=False)
            finally:
                self.health.call_end()
        except KafkaException as exc:
            self._retry = {**units, **self._retry}
            err = exc.args[0]
            if err.code() in _RETRIABLE_COMMIT:
                self.log.info("commit refused during a rebalance; records will be redelivered", error=err.str())
            else:
                self.log.warning("offset commit failed; will retry", error=err.str())
            return False
        self.metrics.committed()
        self._update_lag(units)
        self.log.debug("offsets committed", offsets={f"{t}[{p}]": o for (t, p), o in units.items()})
        return True

    def _update_lag(self, offsets: dict[Unit, int]) -> None:
        for (topic, partition), committed in offsets.items():
            try:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except KafkaException:
                continue
            if high is not None and high >= 0:
                self.metrics.lag(topic, partition, max(0, high - committed))

    def close(self) -> None:
        self.must_own = None  # leaving the group revokes everything: not a coverage problem
        self._consumer.close()


# The probe and the dead-letter store live in their own modules; re-exported for existing imports.
__all__ = ["BrokerProbe", "KafkaDeadLetterWriter", "KafkaSource", "build_kafka_source", "ping",
           "read_dead_letter_topic"]


def build_kafka_source(
    conf: dict[str, str],
    topics: Sequence[str],
    topic_pattern: str | None,
    logger: Any,
    **kwargs: Any,
) -> KafkaSource:
    # librdkafka refuses a subscription naming a topic twice (Invalid argument): once each.
    subs = list(dict.fromkeys([*topics, *([topic_pattern] if topic_pattern else [])]))
    return KafkaSource(conf, subs, logger, **kwargs)
