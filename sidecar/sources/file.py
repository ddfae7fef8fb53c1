"""JSON-lines files of captured Debezium messages (`replay`).

Each line is either a bare Debezium message value (a JSON object) or a wrapper
`{"topic", "partition", "offset", "key", "value"}` whose key and value are nested JSON
or JSON text. A line that is not JSON becomes a raw message the decoder refuses (kept, counted).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from sidecar.errors import SourceError
from sidecar.events import RawMessage

_WRAPPER_KEYS = frozenset({"topic", "value"})


def _as_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)


def parse_line(line: bytes, lineno: int, default_topic: str) -> RawMessage:
    """Never raises: a line that cannot be unwrapped is handed on whole, for the decoder to refuse."""
    as_is = RawMessage(topic=default_topic, partition=None, offset=lineno, key=None, value=line)
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return as_is
    if isinstance(doc, dict) and doc.keys() >= _WRAPPER_KEYS and not ({"payload", "op"} & doc.keys()):
        partition, offset = doc.get("partition"), doc.get("offset", lineno)
        try:
            return RawMessage(
                topic=str(doc["topic"]),
                partition=partition if isinstance(partition, int) else None,
                offset=offset if isinstance(offset, int) else lineno,
                key=_as_bytes(doc.get("key")),
                value=_as_bytes(doc.get("value")),
            )
        except (TypeError, ValueError, RecursionError):  # e.g. nested deeper than orjson writes back
            return as_is
    return as_is


def read_messages(path: str | Path) -> Iterator[RawMessage]:
    file = Path(path)
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read {file}: {exc.strerror}") from None
    with handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.strip()
            if line:
                yield parse_line(line, lineno, default_topic=f"file:{file.name}")


class FileSource:
    """A finite source over a file; `poll` returns [] once the file is exhausted. Nothing is
    committed anywhere: records are numbered in the order they are read."""

    auto_units = True

    def __init__(self, path: str | Path, batch_size: int = 500) -> None:
        self._it = read_messages(path)
        self._batch = batch_size
        self.exhausted = False
        self._n = -1

    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        out: list[RawMessage] = []
        for raw in self._it:
            out.append(raw)
            if len(out) >= self._batch:
                break
        else:
            self.exhausted = True
        return out

    def locate(self, raw: RawMessage) -> tuple[Hashable, int]:
        self._n += 1
        return "file", self._n

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def halt(self, unit: Hashable) -> None:
        pass

    def commit(self, offsets: dict[Hashable, int]) -> bool:
        return True

    def close(self) -> None:
        pass
