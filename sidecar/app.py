"""Wiring: config → hooks, databases, source, checkpoint, dispatcher. The loop lives in `loop.py`.

`run` is one path for every source kind: only `open_source` knows which kind it builds.
"""

from __future__ import annotations

import contextlib
import gc
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from sidecar.checkpoint import Checkpoint
from sidecar.config import Settings
from sidecar.databases import Databases, build_databases
from sidecar.dead_letters import DeadLetterWriter, FileDeadLetters
from sidecar.decode import Decoder
from sidecar.dispatch import Dispatcher, DispatchStats
from sidecar.errors import ConfigError, ExitNow, SourceError
from sidecar.events import COMPILED
from sidecar.health import Health
from sidecar.hooks import HookSpec, load_hook
from sidecar.logs import get_logger
from sidecar.loop import run_loop
from sidecar.metrics import Metrics, NoMetrics
from sidecar.param import ParamFactory
from sidecar.rebalance import Rebalance
from sidecar.sources import Source
from sidecar.watch import Check, Watcher


def build_hooks(settings: Settings, base_dir: Path | None = None) -> list[HookSpec]:
    return [
        load_hook(name, path=cfg.path, module=cfg.module, function=cfg.function, base_dir=base_dir, config=cfg)
        for name, cfg in settings.hooks.items()
    ]


def build_settings_databases(settings: Settings) -> Databases:
    source, destination, auxiliary = settings.databases.urls()
    calls = sum(h.concurrency for h in settings.hooks.values())
    return build_databases(source, destination, auxiliary, pool_size=max(2, min(calls, 256)))


@dataclass
class App:
    settings: Settings
    hooks: list[HookSpec]
    databases: Databases
    params: ParamFactory
    log: Any
    metrics: Metrics
    health: Health
    base_dir: Path | None = None
    max_attempts: int | None = None


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
    params = ParamFactory(settings.pipeline, databases, get_logger(),
                          source_tables={t: c.source_table for t, c in settings.tables.items()})
    return App(settings, hooks, databases, params, log, metrics, health, base_dir, max_attempts)


def build_dispatcher(app: App, checkpoint: Checkpoint, dead_letters: DeadLetterWriter | None,
                     report: bool = False) -> Dispatcher:
    cfg = app.settings.dispatch
    return Dispatcher(
        app.hooks, app.params, checkpoint, app.log, dead_letters=dead_letters, metrics=app.metrics,
        health=app.health, max_attempts=app.max_attempts, report=report, max_abandoned=cfg.max_abandoned_calls,
        max_message_bytes=app.settings.dead_letters.max_message_bytes,
        max_transaction_records=cfg.max_transaction_records, transaction_end_timeout_s=cfg.transaction_end_timeout_s,
        subscribed=subscription(app.settings) if not report else None,
        inline_below_s=cfg.inline_below_us / 1e6,
    )


def subscription(settings: Settings) -> Callable[[str], bool] | None:
    """Kafka mode: which topic names the consumer subscribes to (exact names or the pattern)."""
    kafka = settings.source.kafka
    if settings.source.kind != "kafka" or kafka is None:
        return None
    names = set(kafka.topics)
    pattern = re.compile(kafka.topic_pattern) if kafka.topic_pattern else None
    return lambda topic: topic in names or (pattern is not None and pattern.match(topic) is not None)


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
            raise ExitNow(1)
        log.info("signal received: finishing in-flight work, committing, exiting", signal=signum)
        stop.set()
        if health is not None:
            health.shutting_down = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def open_source(app: App) -> tuple[Source, Checkpoint, dict[str, tuple[Check, float]]]:
    """The configured source, its checkpoint, and the watcher's extra checks."""
    settings = app.settings
    if settings.source.kind == "kafka":
        from sidecar.sources.kafka import build_kafka_source
        from sidecar.sources.kafka_probe import BrokerProbe

        kafka = settings.source.kafka
        assert kafka is not None
        consumer = build_kafka_source(kafka.librdkafka(), kafka.topics, kafka.topic_pattern, app.log,
                                      batch_size=kafka.batch_size, metrics=app.metrics, health=app.health)
        if any(h.mode == "transaction" for h in app.hooks):
            consumer.must_own = subscription(settings)  # checked after every assignment change
        source: Source = consumer
        checkpoint = Checkpoint(source, kafka.commit_interval_s, kafka.max_uncommitted, app.health, "kafka")
        probe = BrokerProbe(kafka.librdkafka())
        return source, checkpoint, {"kafka": (probe, settings.health.kafka_check_interval_s)}
    if settings.source.kind == "embedded":
        from sidecar.sources.embedded import EmbeddedSource
        from sidecar.sources.embedded_config import engine_properties
        from sidecar.sources.preflight import preflight

        cfg = settings.source.embedded
        assert cfg is not None
        state_dir = Path(cfg.state_dir)
        connector = Path(cfg.connector)
        if not connector.exists() and app.base_dir is not None and (app.base_dir / connector).exists():
            connector = app.base_dir / connector
        props = engine_properties(
            connector, state_dir, dict(cfg.properties), cfg.poll_interval_ms, cfg.max_batch_size,
            Path(cfg.offsets_file) if cfg.offsets_file else None, cfg.extra_classpath,
        )
        if cfg.preflight:
            preflight(props)
        embedded = EmbeddedSource(
            props, app.log, state_dir, java_home=cfg.java_home, jvm_opts=[*cfg.jvm_opts],
            engine_log_level=cfg.engine_log_level, poll_timeout_s=cfg.poll_timeout_s,
            metrics=app.metrics, health=app.health,
        )
        # Each engine batch is acknowledged as soon as its records finish.
        return embedded, Checkpoint(embedded, 0.0, 1, app.health), {}
    raise ConfigError(f"source.kind {settings.source.kind!r} cannot be run; use `replay FILE` for files")


def run(app: App, stop: threading.Event) -> DispatchStats:
    """The main job: until `stop` is set (SIGTERM/SIGINT) or the source fails."""
    settings = app.settings
    interval = sys.getswitchinterval()
    thresholds = gc.get_threshold()
    sys.setswitchinterval(settings.dispatch.switch_interval_s)
    if settings.dispatch.gc_threshold:
        gc.freeze()  # what start-up made lives as long as the process: full collections skip it
        gc.set_threshold(settings.dispatch.gc_threshold, thresholds[1], thresholds[2])
    try:
        return _run(app, stop)
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _run(app: App, stop: threading.Event) -> DispatchStats:
    settings = app.settings
    source, checkpoint, checks = open_source(app)
    install_signal_handlers(stop, app.log, app.health)  # again: starting a JVM may have replaced them
    dead_letters = build_dead_letters(settings)
    dispatcher = build_dispatcher(app, checkpoint, dead_letters)
    if hasattr(source, "listener"):
        source.listener = Rebalance(dispatcher, checkpoint, settings.dispatch.revoke_wait_s)
    warn_transaction_mode(app)
    app.log.info("sidecar started", hooks=[h.name for h in app.hooks], source=settings.source.kind,
                 build="compiled" if COMPILED else "python")
    try:
        with operations(app, checks):
            return run_loop(source, Decoder(), dispatcher, checkpoint, stop, poll_timeout_s=_poll_timeout(settings),
                            max_in_flight=settings.dispatch.max_in_flight,
                            shutdown_grace_s=settings.dispatch.shutdown_grace_s,
                            yield_every_records=settings.dispatch.yield_every_records,
                            soft_max_in_flight=settings.dispatch.soft_max_in_flight)
    except SourceError:
        app.metrics.source_failed("engine" if settings.source.kind == "embedded" else "broker")
        raise
    finally:
        if not checkpoint.reachable():
            app.log.warning("kafka unreachable at shutdown: not committing; finished records will be redelivered")
        source.close()
        dispatcher.close()
        dead_letters.close()
        app.databases.dispose()
        app.log.info("sidecar stopped")


def warn_transaction_mode(app: App) -> None:
    """Transaction hooks in Kafka mode: one member must own every captured partition, and the
    transaction topic must be read (else every transaction ends by timeout)."""
    kafka = app.settings.source.kafka
    txn = [h.name for h in app.hooks if h.mode == "transaction"]
    if not txn or app.settings.source.kind != "kafka" or kafka is None:
        return
    app.log.info("transaction hooks need one sidecar member that owns every captured partition and the "
                 "transaction topic (<topic.prefix>.transaction): run a single replica; checked after every "
                 "assignment (warning, gauge checkpoint_transaction_partitions_missing)", hooks=txn)
    if kafka.topics and not any(t.endswith(".transaction") for t in kafka.topics):
        app.log.warning("no transaction topic in source.kafka.topics: transactions cannot be assembled "
                        "(add <topic.prefix>.transaction)", topics=kafka.topics)


def _poll_timeout(settings: Settings) -> float:
    if settings.source.kafka is not None and settings.source.kind == "kafka":
        return settings.source.kafka.poll_timeout_s
    if settings.source.embedded is not None and settings.source.kind == "embedded":
        return settings.source.embedded.poll_timeout_s
    return 0.2


def replay_file(app: App, path: str) -> DispatchStats:
    """`replay FILE`: the same dispatcher over a file; failures are counted and reported."""
    from sidecar.sources.file import FileSource

    source = FileSource(path)
    checkpoint = Checkpoint(source, 0.0, 1)
    dispatcher = build_dispatcher(app, checkpoint, None, report=True)
    try:
        return run_loop(source, Decoder(), dispatcher, checkpoint, threading.Event(), until_exhausted=True,
                        max_in_flight=app.settings.dispatch.max_in_flight,
                        soft_max_in_flight=app.settings.dispatch.soft_max_in_flight,
                        shutdown_grace_s=app.settings.dispatch.shutdown_grace_s)
    finally:
        dispatcher.close()
        app.databases.dispose()
