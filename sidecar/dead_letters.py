"""Dead letters: what could not be processed, kept whole, replayable.

Entry format `checkpoint-sidecar/dead-letter/v1` (one JSON object):

    format, id (uuid4), pipeline, kind ("hook_failed" | "decode_failed"), hook (or null),
    reason, error ("Type: message"), traceback (last frames, text), attempts, event_id (or null),
    first_failed_at, dead_lettered_at (ISO 8601 UTC),
    message: {topic, partition, offset, key, value, headers: [[name, value]], timestamp_ms,
              encoding: "utf-8" | "base64"}   (key/value/header values encoded as said)

Stores: a JSON-lines file (embedded/file mode, default `.run/dead-letters.jsonl`) or a Kafka
topic (Kafka mode; the writer lives in sources/kafka.py). A write is durable (fsync /
acks=all + flush) before the record's offset may be committed. Replays record which ids
succeeded in a ledger (`<store>.replayed`), so a second replay does not repeat them;
nothing is discarded except by an explicit purge.
"""

from __future__ import annotations

import base64
import os
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from sidecar.errors import SidecarError
from sidecar.events import RawMessage

FORMAT = "checkpoint-sidecar/dead-letter/v1"


class DeadLetterWriter(Protocol):
    def write(self, entry: dict[str, Any]) -> None:
        """Store one entry durably (return only once it is safe to commit past the record)."""

    def close(self) -> None: ...


def _encode(value: bytes | None) -> tuple[str | None, bool]:
    if value is None:
        return None, True
    try:
        return value.decode("utf-8"), True
    except UnicodeDecodeError:
        return base64.b64encode(value).decode(), False


def encode_message(raw: RawMessage) -> dict[str, Any]:
    key, key_utf8 = _encode(raw.key)
    value, value_utf8 = _encode(raw.value)
    headers = [[name, _encode(v)[0]] for name, v in raw.headers]
    all_utf8 = key_utf8 and value_utf8 and all(_encode(v)[1] for _, v in raw.headers)
    if not all_utf8:
        key = None if raw.key is None else base64.b64encode(raw.key).decode()
        value = None if raw.value is None else base64.b64encode(raw.value).decode()
        headers = [[n, None if v is None else base64.b64encode(v).decode()] for n, v in raw.headers]
    return {
        "topic": raw.topic,
        "partition": raw.partition,
        "offset": raw.offset,
        "key": key,
        "value": value,
        "headers": headers,
        "timestamp_ms": raw.timestamp_ms,
        "encoding": "utf-8" if all_utf8 else "base64",
    }


def decode_message(doc: dict[str, Any]) -> RawMessage:
    b64 = doc.get("encoding") == "base64"

    def back(v: str | None) -> bytes | None:
        if v is None:
            return None
        return base64.b64decode(v) if b64 else v.encode("utf-8")

    return RawMessage(
        topic=doc["topic"],
        partition=doc.get("partition"),
        offset=doc.get("offset"),
        key=back(doc.get("key")),
        value=back(doc.get("value")),
        headers=tuple((str(n), back(v)) for n, v in doc.get("headers") or []),
        timestamp_ms=doc.get("timestamp_ms"),
    )


def make_entry(
    *,
    pipeline: str,
    kind: str,
    raw: RawMessage,
    reason: str,
    hook: str | None = None,
    error: BaseException | None = None,
    detail: str | None = None,
    attempts: int = 0,
    event_id: str | None = None,
    first_failed_at: datetime | None = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    tb = ""
    if error is not None:
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-8))[-4000:]
    return {
        "format": FORMAT,
        "id": str(uuid.uuid4()),
        "pipeline": pipeline,
        "kind": kind,
        "hook": hook,
        "reason": reason,
        "error": f"{type(error).__name__}: {error}" if error is not None else (detail or reason),
        "traceback": tb,
        "attempts": attempts,
        "event_id": event_id,
        "first_failed_at": (first_failed_at or now).isoformat(),
        "dead_lettered_at": now.isoformat(),
        "message": encode_message(raw),
    }


class FileDeadLetters:
    """Append-only JSON lines, fsynced per entry."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab")

    def write(self, entry: dict[str, Any]) -> None:
        self._fh.write(orjson.dumps(entry) + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def read_file(path: str | Path) -> Iterator[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return
    with p.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise SidecarError(f"{p}:{n}: not a dead-letter entry (not JSON)") from None
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                fmt = doc.get("format") if isinstance(doc, dict) else None
                raise SidecarError(f"{p}:{n}: unknown dead-letter format {fmt!r}")
            yield doc


@dataclass
class Ledger:
    """Ids of dead letters whose replay succeeded (append-only, next to the store)."""

    path: Path

    def done(self) -> set[str]:
        if not self.path.exists():
            return set()
        return {line.strip() for line in self.path.read_text().splitlines() if line.strip()}

    def add(self, entry_id: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(entry_id + "\n")
            fh.flush()
            os.fsync(fh.fileno())
