"""Dead letters in a Kafka topic: the writer (acks=all, idempotent, flushed) and the reader.

The producer gets every setting of the consumer that is not consumer-only (see
`kafka_settings`), then `dead_letters.kafka_settings` on top. Entries are bounded to the
producer's `message.max.bytes` (and `dead_letters.max_entry_bytes`) before they are produced,
and every producer failure — a full queue, a refused or undelivered message — is a
`DeadLetterError` (a SourceError) with the reason, never a raw KafkaException.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from sidecar.dead_letters import DEFAULT_MAX_ENTRY_BYTES, bound_entry
from sidecar.errors import DeadLetterError
from sidecar.secrets import scrub
from sidecar.sources.kafka_logs import kafka_logger
from sidecar.sources.kafka_probe import no_answer, settings_refused
from sidecar.sources.kafka_settings import shared_settings

_KAFKA_DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
_RECORD_OVERHEAD = 1024  # key (uuid), record headers and batch framing under message.max.bytes


def _producer(conf: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return Producer(conf)


class KafkaDeadLetterWriter:
    """Dead letters to a Kafka topic: acks=all, idempotent, flushed (`sync`) before offsets move on."""

    def __init__(
        self,
        conf: Mapping[str, str],
        topic: str,
        settings: Mapping[str, str] | None = None,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        producer_factory: Callable[[dict[str, Any]], Any] = _producer,
        flush_timeout_s: float = 30.0,
    ) -> None:
        pconf: dict[str, Any] = shared_settings(conf)
        pconf.update({"acks": "all", "enable.idempotence": "true", "linger.ms": "0"})
        pconf.update(settings or {})
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s
        limit = int(pconf.get("message.max.bytes", _KAFKA_DEFAULT_MESSAGE_MAX_BYTES))
        self.max_entry_bytes = min(max_entry_bytes, limit - _RECORD_OVERHEAD)
        # Its log lines are handed over in flush(), i.e. with the next dead letter or at close.
        self._errors: list[tuple[str, Any]] = []  # (entry id, delivery error) not yet reported
        self._unsynced = False
        try:
            self._producer = producer_factory({**pconf, "logger": kafka_logger()})
        except KafkaException as exc:
            raise DeadLetterError(scrub(f"cannot create the dead-letter producer: {exc.args[0]}")) from None

    def write(self, entry: dict[str, Any]) -> None:
        entry, data = bound_entry(entry, self.max_entry_bytes)
        entry_id = str(entry["id"])
        where = f"could not write dead letter {entry_id} to Kafka topic {self.topic}"
        errors = self._errors
        try:
            self._producer.produce(
                self.topic, key=entry_id.encode(), value=data,
                on_delivery=lambda err, msg: errors.append((entry_id, err)) if err is not None else None,
            )
            self._producer.poll(0)  # delivery reports of earlier entries
        except BufferError:
            raise DeadLetterError(f"{where}: the producer queue is full") from None
        except KafkaException as exc:
            raise DeadLetterError(scrub(f"{where}: {_reason(exc.args[0] if exc.args else exc)}")) from None
        self._unsynced = True

    def sync(self) -> None:
        """Wait until every entry produced so far is acknowledged (acks=all)."""
        if not self._unsynced and not self._errors:
            return
        try:
            left = self._producer.flush(self.flush_timeout_s)
        except KafkaException as exc:
            raise DeadLetterError(scrub(f"could not write dead letters to Kafka topic {self.topic}: "
                                        f"{_reason(exc.args[0] if exc.args else exc)}")) from None
        if self._errors:
            entry_id, err = self._errors[0]
            raise DeadLetterError(scrub(f"could not write dead letter {entry_id} to Kafka topic {self.topic}: "
                                        f"{_reason(err)}"))
        if left:
            raise DeadLetterError(f"could not write dead letters to Kafka topic {self.topic}: {left} not delivered "
                                  f"within {self.flush_timeout_s:.0f} s (is Kafka reachable?)")
        self._unsynced = False

    def close(self) -> None:
        # Closing: anything unflushed was never acknowledged, so its record's offset was not committed.
        with contextlib.suppress(KafkaException):
            self._producer.flush(10)


def _reason(err: Any) -> str:
    text = err.str() if hasattr(err, "str") else str(err)
    name = err.name() if hasattr(err, "name") else ""
    return f"{name}: {text}" if name else text


def read_dead_letter_topic(conf: Mapping[str, str], topic: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every entry of the dead-letter topic, from the beginning to the current end."""
    try:
        consumer = Consumer({**conf, "group.id": f"checkpoint-sidecar-dlq-reader-{uuid.uuid4().hex}",
                             "enable.auto.commit": "false", "auto.offset.reset": "earliest",
                             "logger": kafka_logger()})
    except KafkaException as exc:
        raise settings_refused(exc) from None
    try:
        try:
            md = consumer.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            raise no_answer(conf.get("bootstrap.servers", ""), exc) from None
        if topic not in md.topics or md.topics[topic].error is not None:
            return []
        parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout_s)[1] for tp in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[dict[str, Any]] = []
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s * 3
        while remaining and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            value, offset, partition = msg.value(), msg.offset(), msg.partition()
            if value is not None:
                try:
                    out.append(orjson.loads(value))
                except orjson.JSONDecodeError:  # not written by a sidecar: named, not a traceback
                    sys.stderr.write(f"note: {topic} [{partition}] offset {offset} is not a dead-letter entry "
                                     "(not JSON); skipped\n")
            if offset is not None and partition is not None and offset + 1 >= ends[partition]:
                remaining.discard(partition)
        return out
    finally:
        consumer.close()


__all__ = ["KafkaDeadLetterWriter", "read_dead_letter_topic"]
