"""A consumed batch becomes RawMessages (sidecar.sources.kafka_messages, compiled) exactly as one
message at a time did: every field, headers as a tuple, no timestamp when librdkafka has none."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE

from sidecar.events import RawMessage
from sidecar.sources.kafka_messages import raw_messages


class Msg:
    """What the loop reads of a confluent_kafka.Message (its class cannot be built from Python)."""

    def __init__(self, offset: int, *, error: Any = None, headers: Any = None,
                 ts: tuple[int, int] = (TIMESTAMP_CREATE_TIME, 1_764_460_800_123)) -> None:
        self._offset, self._error, self._headers, self._ts = offset, error, headers, ts

    def error(self) -> Any:
        return self._error

    def timestamp(self) -> tuple[int, int]:
        return self._ts

    def headers(self) -> Any:
        return self._headers

    def topic(self) -> str:
        return "shop.public.orders"

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b'{"id":%d}' % self._offset

    def value(self) -> bytes | None:
        return None if self._offset == 12 else b'{"op":"c"}'


def test_a_batch_keeps_every_field_and_order_and_sets_errors_apart() -> None:
    err = object()
    msgs = [Msg(10, headers=[("h", b"1"), ("h", None)]), Msg(11, error=err), Msg(12),
            Msg(13, ts=(TIMESTAMP_NOT_AVAILABLE, -1))]
    out, errors = raw_messages(msgs)
    assert errors == [err]
    assert out == [
        RawMessage("shop.public.orders", 3, 10, b'{"id":10}', b'{"op":"c"}', (("h", b"1"), ("h", None)),
                   1_764_460_800_123),
        RawMessage("shop.public.orders", 3, 12, b'{"id":12}', None, (), 1_764_460_800_123),  # a tombstone
        RawMessage("shop.public.orders", 3, 13, b'{"id":13}', b'{"op":"c"}', (), None),
    ]


def test_an_empty_batch_gives_nothing() -> None:
    assert raw_messages([]) == ([], [])
