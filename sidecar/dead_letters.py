"""Dead letters: what could not be processed, kept whole, replayable.

Entry format `checkpoint-sidecar/dead-letter/v1` (one JSON object):

    format, id (uuid4), pipeline, kind ("hook_failed" | "decode_failed"), hook (or null),
    reason, error ("Type: message"), traceback (last frames, text), attempts, event_id (or null),
    first_failed_at, dead_lettered_at (ISO 8601 UTC),
    message: {topic, partition, offset, key, value, headers: [[name, value]], timestamp_ms,
              encoding: "utf-8" | "base64"}   (key/value/header values encoded as said)

Stores: a JSON-lines file (embedded/file mode, default `.run/dead-letters.jsonl`, created
owner-only 0600: it holds whole rows) or a Kafka topic (Kafka mode; the writer lives in
sources/kafka_dead_letters.py). A write is durable (fsync / acks=all + flush) before the
record's offset may be committed. Replays record which ids succeeded in a ledger
(`<store>.replayed`), so a second replay does not repeat them; nothing is discarded except
by an explicit purge.

Entries are bounded (`bound_entry`): an entry over the store's limit (`max_entry_bytes`, and
for Kafka the producer's `message.max.bytes`) and every `too_large` entry keep the message's
head and its coordinates plus `truncated: {key_bytes, value_bytes, value_sha256, kept_bytes}`
— enough to find the original (topic/partition/offset) and to recognise it — never the
whole message. Error texts and tracebacks carry no frame locals and pass the secret scrubber.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from sidecar.errors import DeadLetterError, SidecarError
from sidecar.events import RawMessage
from sidecar.secrets import scrub

FORMAT = "checkpoint-sidecar/dead-letter/v1"
DEFAULT_MAX_ENTRY_BYTES = 1_000_000  # fits Kafka's default message.max.bytes with room for key and headers
TOO_LARGE_HEAD_BYTES = 64 * 1024     # what a too_large entry keeps of the message value
_ENVELOPE_ROOM = 16 * 1024           # error, traceback and the other fields of an entry


class DeadLetterWriter(Protocol):
    """Entries are written as they come and made durable together: `sync` runs before every
    offset commit (one fsync or one producer flush per commit, not one per entry) and raises
    `DeadLetterError` when they cannot be — then nothing is committed and `run` stops."""

    def write(self, entry: dict[str, Any]) -> None:
        """Hand one entry to the store (an error now: the record stays unfinished, retried)."""

    def sync(self) -> None:
        """Everything written so far is durable when this returns."""

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
    at = datetime.now(UTC).isoformat()
    tb = ""
    if error is not None:
        # Frames and messages only (no locals); registered secrets masked before they are stored.
        tb = scrub("".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-8)))[-4000:]
    return {
        "format": FORMAT,
        "id": str(uuid.uuid4()),
        "pipeline": pipeline,
        "kind": kind,
        "hook": hook,
        "reason": reason,
        "error": scrub(f"{type(error).__name__}: {error}" if error is not None else (detail or reason)),
        "traceback": tb,
        "attempts": attempts,
        "event_id": event_id,
        "first_failed_at": first_failed_at.isoformat() if first_failed_at is not None else at,
        "dead_lettered_at": at,
        "message": encode_message(raw),
    }


def _head(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    cut = text[:limit].encode("utf-8")[:limit]  # at most `limit` characters are ever encoded
    return cut.decode("utf-8", "ignore")


def bound_entry(entry: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """The entry serialised within `max_bytes`: oversized (or `too_large`) messages keep their head.

    Returns the (possibly reduced) entry and its bytes. Coordinates, error and ids are kept.
    """
    msg = dict(entry["message"])
    key, value = msg.get("key"), msg.get("value")
    # Serialise whole only when it can fit: a 20 MiB message is not copied again just to be cut.
    if entry.get("reason") != "too_large" and len(key or "") + len(value or "") < max_bytes:
        data = orjson.dumps(entry)
        if len(data) <= max_bytes:
            return entry, data
    head = max(256, min(TOO_LARGE_HEAD_BYTES, max_bytes - _ENVELOPE_ROOM))
    value_bytes = (value or "").encode()
    msg["truncated"] = {
        "key_bytes": len((key or "").encode()),
        "value_bytes": len(value_bytes),
        "value_sha256": hashlib.sha256(value_bytes).hexdigest(),
        "kept_bytes": head,
    }
    del value_bytes  # sizes of the key/value text as stored in the entry (utf-8, or base64 when `encoding` says so)
    msg["value"] = _head(value, head)
    msg["key"] = _head(key, 4096)
    msg["headers"] = [[str(n)[:256], _head(v, 1024)] for n, v in (msg.get("headers") or [])[:20]]
    reduced = {**entry, "message": msg, "traceback": (entry.get("traceback") or "")[-4000:],
               "error": (entry.get("error") or "")[:2000]}
    data = orjson.dumps(reduced)
    if len(data) > max_bytes:  # a store limit below our own head sizes: keep the coordinates only
        msg["value"] = msg["key"] = None
        msg["headers"] = []
        reduced = {**reduced, "traceback": "", "error": reduced["error"][:500]}
        data = orjson.dumps(reduced)
    return reduced, data


class FileDeadLetters:
    """Append-only JSON lines, fsynced before each offset commit (`sync`) and at close;
    owner-only (0600) since entries hold whole rows."""

    def __init__(self, path: str | Path, max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> None:
        self.path = Path(path)
        self.max_entry_bytes = max_entry_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):  # another owner's file: leave it, appending still works
            os.fchmod(fd, 0o600)  # an existing file made by an older version: tighten it too
        self._fh = os.fdopen(fd, "ab")
        self._unsynced = False
        # A last line without its newline is an entry whose write was cut off (a crash, a full
        # disk): end that line, so the next entry is a line of its own (readers skip the cut one).
        with contextlib.suppress(OSError), self.path.open("rb") as tail:
            if tail.seek(0, os.SEEK_END) and (tail.seek(-1, os.SEEK_END), tail.read(1))[1] != b"\n":
                self._fh.write(b"\n")
                self._fh.flush()
                self._unsynced = True

    def write(self, entry: dict[str, Any]) -> None:
        _, data = bound_entry(entry, self.max_entry_bytes)
        try:
            self._fh.write(data + b"\n")
            self._fh.flush()  # readers see it now; durable at the next sync
        except OSError as exc:
            raise DeadLetterError(f"could not write a dead letter to {self.path}: {exc.strerror}") from None
        self._unsynced = True

    def sync(self) -> None:
        if not self._unsynced:
            return
        try:
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise DeadLetterError(f"could not make dead letters durable in {self.path}: {exc.strerror}") from None
        self._unsynced = False

    def close(self) -> None:
        if not self._fh.closed:
            try:
                self.sync()
            finally:
                self._fh.close()


CUT_OFF_HEAD: Final = b'{"format":'
"""How every entry this store writes begins: a line that does, and is JSON only up to its end, is
a cut-off entry."""

MAX_CALL_RECORDS: Final = 10_000_000


def _str(doc: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = doc.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        return f"{name!r} must be a{' non-empty' if required else ''} string{'' if required else ' or null'}"
    return None


def _int(doc: dict[str, Any], name: str, where: str = "") -> str | None:
    value = doc.get(name)
    if value is not None and (type(value) is not int):
        return f"'{where}{name}' must be an integer or null"
    return None


def entry_problem(doc: dict[str, Any]) -> str | None:
    """What makes a parsed entry unusable by the dead-letter commands (None: nothing): every
    field they read, with its type — so a hand-edited or foreign entry is named, not a traceback."""
    for name in ("id", "kind", "reason", "dead_lettered_at"):
        if (problem := _str(doc, name)) is not None:
            return problem
    if "\n" in doc["id"] or "\r" in doc["id"]:
        return "'id' must not hold a line break"
    for name in ("pipeline", "hook", "error", "traceback", "event_id", "first_failed_at"):
        if (problem := _str(doc, name, required=False)) is not None:
            return problem
    if (problem := _int(doc, "attempts")) is not None:
        return problem
    msg = doc.get("message")
    if not isinstance(msg, dict):
        return "'message' must be an object"
    if not isinstance(msg.get("topic"), str):
        return "'message.topic' must be a string"
    for name in ("partition", "offset", "timestamp_ms"):
        if (problem := _int(msg, name, "message.")) is not None:
            return problem
    for name in ("key", "value"):
        if msg.get(name) is not None and not isinstance(msg[name], str):
            return f"'message.{name}' must be a string or null"
    headers = msg.get("headers")
    if headers is not None and not (isinstance(headers, list) and all(
            isinstance(h, list) and len(h) == 2 and isinstance(h[0], str) and (h[1] is None or isinstance(h[1], str))
            for h in headers)):
        return "'message.headers' must be a list of [name, value] pairs of strings (value or null)"
    if msg.get("encoding", "utf-8") not in ("utf-8", "base64"):
        return "'message.encoding' must be utf-8 or base64"
    try:
        decode_message(msg)
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        return f"'message' cannot be decoded ({type(exc).__name__}: {exc})"
    call = doc.get("call")
    if call is None:
        return None
    if not isinstance(call, dict):
        return "'call' must be an object or null"
    if _str(call, "id") is not None:
        return "'call.id' must be a non-empty string"
    if _str(call, "link", required=False) is not None:
        return "'call.link' must be a string or null"
    count, index = call.get("count"), call.get("index")
    if type(count) is not int or not 1 <= count <= MAX_CALL_RECORDS:
        return f"'call.count' must be an integer from 1 to {MAX_CALL_RECORDS:,}"
    if type(index) is not int or not 0 <= index < count:
        return "'call.index' must be an integer from 0 to 'call.count' - 1"
    tx = call.get("transaction")
    if tx is None:
        return None
    if not isinstance(tx, dict):
        return "'call.transaction' must be an object or null"
    if tx.get("id") is not None and not isinstance(tx["id"], str):
        return "'call.transaction.id' must be a string or null"
    for name in ("event_count", "part"):
        if (problem := _int(tx, name, "call.transaction.")) is not None:
            return problem
    if tx.get("last") is not None and not isinstance(tx["last"], bool):
        return "'call.transaction.last' must be true, false or null"
    collections = tx.get("data_collections")
    if collections is not None and not (isinstance(collections, list) and all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and type(c[1]) is int for c in collections)):
        return "'call.transaction.data_collections' must be a list of [table, count] pairs"
    return None


def read_file(path: str | Path, cut_off: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """The store's entries. A line that begins like an entry but is not JSON is one whose write was
    cut off (a crash or a full disk before the fsync that precedes an offset commit: its record was
    delivered again): skipped, its line number appended to `cut_off`. Anything else that is not a
    whole, well-typed entry stops the read with an error naming the line."""
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
            except orjson.JSONDecodeError as exc:
                if line.startswith(CUT_OFF_HEAD) and exc.pos >= len(line):  # whole up to where it ends
                    if cut_off is not None:
                        cut_off.append(n)
                    continue
                raise SidecarError(f"{p}:{n}: not a dead-letter entry (not JSON): fix or remove that line "
                                   "(the store holds one JSON entry per line)") from None
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                fmt = doc.get("format") if isinstance(doc, dict) else None
                raise SidecarError(f"{p}:{n}: unknown dead-letter format {fmt!r}")
            problem = entry_problem(doc)
            if problem is not None:
                raise SidecarError(f"{p}:{n}: not a usable dead-letter entry: {problem}. Fix or remove that line "
                                   "(the store holds one JSON entry per line)")
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
        with os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as fh:
            fh.write(entry_id + "\n")
            fh.flush()
            os.fsync(fh.fileno())
