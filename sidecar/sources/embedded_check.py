"""`check` for an embedded source: what `run` would refuse at start, found without starting a JVM."""

from __future__ import annotations

from pathlib import Path

from sidecar.config import EmbeddedSourceConfig
from sidecar.sources.embedded import (
    CRASHED_MID_WRITE,
    FILE_OFFSET_STORE,
    offsets_path_refused,
    offsets_unopenable,
    offsets_unreadable,
)
from sidecar.sources.embedded_config import engine_properties
from sidecar.sources.preflight import preflight

JAVA_STREAM_MAGIC = b"\xac\xed\x00\x05"
"""How a Java serialization stream (Kafka's and the sidecar's offsets file) begins."""


def connector_path(cfg: EmbeddedSourceConfig, base_dir: Path | None) -> Path:
    """The connector file as `run` finds it: the working directory first, then the config's folder."""
    connector = Path(cfg.connector)
    if not connector.exists() and base_dir is not None and (base_dir / connector).exists():
        return base_dir / connector
    return connector


def check_embedded(cfg: EmbeddedSourceConfig, base_dir: Path | None) -> str:
    """Load the connector file and build the engine properties (ConfigError: exit 2), then the
    database preflight when enabled (SourceError: exit 5). Returns the line `check` prints."""
    path = connector_path(cfg, base_dir)
    props = engine_properties(
        path, Path(cfg.state_dir), dict(cfg.properties), cfg.poll_interval_ms, cfg.max_batch_size,
        Path(cfg.offsets_file) if cfg.offsets_file else None, cfg.extra_classpath,
    )
    if props.get("offset.storage") == FILE_OFFSET_STORE and props.get("offset.storage.file.filename"):
        check_offsets_file(Path(props["offset.storage.file.filename"]))
    if cfg.preflight:
        preflight(props)
    return f"embedded connector: ok ({props.get('name')} from {path})"


def check_offsets_file(path: Path) -> None:
    """What can be told without a JVM of the offsets file `run` would refuse (SourceError: exit 5):
    one that exists but cannot be opened, is empty, or does not begin as a Java serialization
    stream, or is a symbolic link. (A stream cut off later is found by `run`, which reads it whole.)"""
    refused = offsets_path_refused(path)
    if refused is not None:
        raise refused
    if not path.exists():
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(len(JAVA_STREAM_MAGIC))
    except OSError as exc:
        raise offsets_unopenable(path, str(exc.strerror or exc)) from None
    if head != JAVA_STREAM_MAGIC:
        raise offsets_unreadable(path, "it is empty" + CRASHED_MID_WRITE if not head else
                                 "it is not an offsets file (no Java serialization header)")
