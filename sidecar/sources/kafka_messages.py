"""confluent-kafka messages to `RawMessage`s, a consumed batch at a time (compiled: see setup.py;
this runs for every message)."""

from __future__ import annotations

from typing import Any

from sidecar.events import RawMessage


def raw_messages(msgs: list[Any]) -> tuple[list[RawMessage], list[Any]]:
    """The batch's messages, in order, and the errors it carried (in their order), apart."""
    out: list[RawMessage] = []
    errors: list[Any] = []
    for msg in msgs:
        err = msg.error()
        if err is not None:
            errors.append(err)
            continue
        ts_type, ts = msg.timestamp()
        headers = msg.headers()
        out.append(RawMessage(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                              tuple(headers) if headers else (), ts if ts_type else None))
    return out, errors
