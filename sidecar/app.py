"""Wiring: config → hooks, databases, source, runner. The loop lives in `loop.py`."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from sidecar.config import Settings
from sidecar.databases import Databases, build_databases
from sidecar.dead_letters import DeadLetterWriter, FileDeadLetters
from sidecar.decode import Decoder
from sidecar.errors import ConfigError, SourceError
from sidecar.health import Health
from sidecar.hooks import HookSpec, load_hook
from sidecar.logs import get_logger
from sidecar.loop import LoopStats, run_loop
from sidecar.metrics import Metrics, NoMetrics
from sidecar.route import Router
from sidecar.run import HookRunner
from sidecar.watch import Check, Watcher


def build_hooks(settings: Settings, base_dir: Path | None = None) -> list[HookSpec]:
    return [
        load_hook(
            name,
            path=cfg.path,
            module=cfg.module,
            function=cfg.function,
            tables=cfg.tables,
            ops=cfg.ops,
            base_dir=base_dir,
            initial_backoff_s=cfg.retry.initial_backoff_s,
            max_backoff_s=cfg.retry.max_backoff_s,
            multiplier=cfg.retry.multiplier,
            max_attempts=cfg.retry.max_attempts,
            timeout_s=cfg.timeout_s,
            on_failure=cfg.on_failure,
        )
        for name, cfg in settings.hooks.items()
    ]


def build_settings_databases(settings: Settings) -> Databases:
    source, destination, auxiliary = settings.databases.urls()
    return build_databases(source, destination, auxiliary)


@dataclass
class App:
    settings: Settings
    hooks: list[HookSpec]
    databases: Databases
    runner: HookRunner
    router: Router
    log: Any
    metrics: Metrics
    health: Health


def build_app(
    settings: Settings,
    base_dir: Path | None = None,
    max_attempts: int | None = None,
    hooks: list[HookSpec] | None = None,
) -> App:
    """Everything `run`/`replay` need; `hooks` replaces the configured ones (replay --hook)."""
    log = get_logger(pipeline=settings.pipeline)
    hooks = build_hooks(settings, base_dir) if hooks is None else hooks
    databases = build_settings_databases(settings)
    metrics: Metrics = Metrics() if settings.metrics_enabled else NoMetrics()
    metrics.declare_hooks([h.name for h in hooks])
    health = Health(loop_stall_s=settings.health.loop_stall_s, hook_timeout_s=settings.health.hook_timeout_s)
    runner = HookRunner(
        settings.pipeline,
        databases,
        get_logger(),
        source_tables={t: c.source_table for t, c in settings.tables.items()},
        max_attempts=max_attempts,
        metrics=metrics,
        health=health,
    )
    return App(settings, hooks, databases, runner, Router(hooks), log, metrics, health)


@contextlib.contextmanager
def operations(app: App, checks: Mapping[str, tuple[Check, float]] | None = None) -> Iterator[None]:
    """HTTP (/metrics, /healthz, /readyz) and the background watcher for the life of `run`;
    `checks` are extra dependency checks for the watcher (Kafka mode: the brokers)."""
    from sidecar.http import serve

    server = None
    if app.settings.http.enabled:
        try:
            server = serve(app.settings.http.host, app.settings.http.port, app.metrics, app.health, app.log)
        except OSError as exc:
            raise ConfigError(
                f"http.port {app.settings.http.port}: cannot listen ({exc.strerror}); free it or set http.port"
            ) from None
    watcher = Watcher(app.databases, app.metrics, app.health, app.log, app.settings.health.watch_interval_s, checks)
    watcher.start()
    try:
        yield
    finally:
        app.health.shutting_down = True
        watcher.stop()
        if server is not None:
            server.shutdown()
            server.server_close()


def build_dead_letters(settings: Settings) -> DeadLetterWriter:
    """Kafka topic in Kafka mode (unless configured otherwise), a JSON-lines file elsewhere."""
    cfg = settings.dead_letters
    kafka = settings.source.kafka
    if cfg.kind == "kafka" or (cfg.kind == "auto" and settings.source.kind == "kafka"):
        if kafka is None:
            raise ConfigError("dead_letters.kind is kafka but there is no source.kafka block (brokers)")
        from sidecar.sources.kafka_dead_letters import KafkaDeadLetterWriter

        return KafkaDeadLetterWriter(kafka.librdkafka(), dead_letter_topic(settings), cfg.producer_settings(),
                                     cfg.max_entry_bytes)
    return FileDeadLetters(cfg.path, cfg.max_entry_bytes)


def dead_letter_topic(settings: Settings) -> str:
    kafka = settings.source.kafka
    group = kafka.group_id if kafka else "checkpoint-sidecar"
    return settings.dead_letters.topic or f"{group}.dead-letters"


def install_signal_handlers(stop: threading.Event, log: Any, health: Health | None = None) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            raise SystemExit(1)
        log.info("signal received: finishing in-flight work, committing, exiting", signal=signum)
        stop.set()
        if health is not None:
            health.shutting_down = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_embedded(app: App, stop: threading.Event, base_dir: Path | None = None) -> LoopStats:
    from sidecar.sources.embedded import EmbeddedSource
    from sidecar.sources.embedded_config import engine_properties
    from sidecar.sources.preflight import preflight

    cfg = app.settings.source.embedded
    assert cfg is not None
    state_dir = Path(cfg.state_dir)
    connector = Path(cfg.connector)
    if not connector.exists() and base_dir is not None and (base_dir / connector).exists():
        connector = base_dir / connector
    props = engine_properties(
        connector, state_dir, dict(cfg.properties), cfg.poll_interval_ms, cfg.max_batch_size,
        Path(cfg.offsets_file) if cfg.offsets_file else None, cfg.extra_classpath,
    )
    if cfg.preflight:
        preflight(props)
    source = EmbeddedSource(
        props, app.log, state_dir, java_home=cfg.java_home, jvm_opts=[*cfg.jvm_opts],
        engine_log_level=cfg.engine_log_level, poll_timeout_s=cfg.poll_timeout_s,
        metrics=app.metrics, health=app.health,
    )
    install_signal_handlers(stop, app.log, app.health)  # again: starting the JVM may have replaced them
    app.runner.dead_letters = build_dead_letters(app.settings)
    app.log.info("sidecar started", hooks=[h.name for h in app.hooks], source="embedded",
                 connector=props.get("name"), java=source.java.version)
    try:
        with operations(app):
            return run_loop(source, Decoder(), app.router, app.runner, stop, app.log,
                            max_message_bytes=app.settings.dead_letters.max_message_bytes)
    except SourceError:
        app.metrics.source_failed("engine")
        raise
    finally:
        source.close()
        app.databases.dispose()
        app.log.info("sidecar stopped")


def run_kafka(app: App, stop: threading.Event) -> LoopStats:
    from sidecar.sources.kafka import BrokerProbe, build_kafka_source

    kafka = app.settings.source.kafka
    assert kafka is not None
    source = build_kafka_source(
        kafka.librdkafka(),
        kafka.topics,
        kafka.topic_pattern,
        app.log,
        batch_size=kafka.batch_size,
        poll_timeout_s=kafka.poll_timeout_s,
        commit_interval_s=kafka.commit_interval_s,
        max_uncommitted=kafka.max_uncommitted,
        metrics=app.metrics,
        health=app.health,
    )
    app.runner.dead_letters = build_dead_letters(app.settings)
    app.log.info("sidecar started", hooks=[h.name for h in app.hooks], source="kafka")
    probe = BrokerProbe(kafka.librdkafka())
    try:
        with operations(app, {"kafka": (probe, app.settings.health.kafka_check_interval_s)}):
            return run_loop(source, Decoder(), app.router, app.runner, stop, app.log,
                            max_message_bytes=app.settings.dead_letters.max_message_bytes)
    finally:
        source.stopping = True
        source.close()
        if app.runner.dead_letters is not None:
            app.runner.dead_letters.close()
        app.databases.dispose()
        app.log.info("sidecar stopped")
