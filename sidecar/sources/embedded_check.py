"""`check` for an embedded source: what `run` would refuse at start, found without starting a JVM."""

from __future__ import annotations

from pathlib import Path

from sidecar.config import EmbeddedSourceConfig
from sidecar.sources.embedded_config import engine_properties
from sidecar.sources.preflight import preflight


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
    if cfg.preflight:
        preflight(props)
    return f"embedded connector: ok ({props.get('name')} from {path})"
