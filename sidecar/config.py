"""Configuration: one YAML file, every key overridable by env `SIDECAR_…` (nested with `__`).

Precedence (highest first): environment variables, the YAML file, defaults.
Examples: `SIDECAR_PIPELINE=orders`, `SIDECAR_SOURCE__KAFKA__GROUP_ID=g1`,
`SIDECAR_DATABASES__AUXILIARY__AUDIT=mysql+pymysql://…`,
`SIDECAR_HOOKS__AUDIT_LOG__TABLES='["public.orders"]'` (lists and maps as JSON).

Secrets: a database URL (or a Kafka setting whose name contains password/secret) may be
given as `file:/path/to/secret`; the file's content (stripped) is used. Secrets are held
as `SecretStr` and never logged or printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from sidecar import secrets
from sidecar.errors import ConfigError
from sidecar.events import DEFAULT_OPS, Op

_SECRET_KEY = re.compile(r"password|secret|sasl\.oauthbearer\.client|ssl\.key", re.I)


def read_secret(value: str, where: str) -> str:
    """`file:/path` → the file's stripped content (registered as a secret); anything else unchanged."""
    if not value.startswith("file:"):
        return value
    path = Path(value[5:])
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: secret file {path} is not UTF-8 text") from None
    secrets.register(content.strip())
    for line in content.splitlines():
        secrets.register(line.strip())
    return content.strip()


def _yaml_error(path: str | os.PathLike[str], exc: Exception) -> str:
    """Where and what, never the offending text itself (it may be a password): PyYAML quotes the
    token it stumbled on (an alias, a tag, a scalar), so quoted parts are left out."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) if isinstance(exc, yaml.YAMLError) else None
    context = getattr(exc, "context", None) if isinstance(exc, yaml.YAMLError) else None
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    if not problem:
        if isinstance(exc, yaml.YAMLError):  # e.g. a control character (ReaderError): position, not the text
            return f"config file {path} is not valid YAML{where}: cannot be parsed ({type(exc).__name__})"
        if isinstance(exc, RecursionError):
            return f"config file {path} is not valid YAML: it nests deeper than it can be read"
        # a `!!` tag's constructor failed on its value (`!!bool x`, `!!timestamp x`…)
        return (f"config file {path} is not valid YAML: a value cannot be read as the type its tag names "
                f"({type(exc).__name__}); remove the `!!` tag or fix the value")
    problem = _QUOTED.sub("…", problem)
    context = _QUOTED.sub("…", context) if context else None
    return f"config file {path} is not valid YAML{where}: {problem}" + (f" ({context})" if context else "")


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def register_secrets(settings: Settings) -> None:
    """Every secret the config holds or points to (and secret-named env variables) joins the
    redactor before anything is printed."""
    secrets.register_environment(dict(os.environ))
    for secret in (settings.databases.source, settings.databases.destination, *settings.databases.auxiliary.values()):
        if secret is not None:
            value = secret.get_secret_value()
            try:
                url = read_secret(value, "databases")
            except ConfigError:
                url = value
            secrets.register_all(secrets.url_secrets(url))
    embedded = settings.source.embedded
    if embedded is not None:
        for key, value in embedded.properties.items():
            if secrets.SECRET_NAME.search(key):
                secrets.register(value)
    kafka = settings.source.kafka
    extra = settings.dead_letters.kafka_settings
    if kafka is not None or extra:
        for key, secret in {**(kafka.settings if kafka else {}), **extra}.items():
            if _SECRET_KEY.search(key) or secrets.SECRET_NAME.search(key):
                with contextlib.suppress(ConfigError):  # unreadable: reported where it is used
                    secrets.register(read_secret(secret.get_secret_value(), key))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSourceConfig(_Strict):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "checkpoint-sidecar"
    topics: list[str] = Field(default_factory=list, description="exact topic names")
    topic_pattern: str | None = Field(default=None, description="regex, must start with ^")
    transaction_topic: str | None = None
    settings: dict[str, SecretStr] = Field(
        default_factory=dict, description="any librdkafka setting, passed through (SASL/SSL, timeouts)"
    )
    batch_size: int = Field(default=500, ge=1, le=100_000)
    poll_timeout_s: float = Field(default=0.2, gt=0, le=10)
    commit_interval_s: float = Field(default=1.0, gt=0, le=300)
    max_uncommitted: int = Field(
        default=1000, ge=1, description="commit after this many finished records: bounds redelivery after a crash"
    )

    @field_validator("settings", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
        return value

    @field_validator("topic_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("^"):
            raise ValueError("must start with ^ (librdkafka treats only such names as regular expressions)")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _some_topic(self) -> KafkaSourceConfig:
        if not self.topics and not self.topic_pattern:
            raise ValueError("set source.kafka.topics (a list) or source.kafka.topic_pattern (a regex)")
        return self

    def librdkafka(self) -> dict[str, str]:
        """Consumer settings: ours first, the user's `settings` override them."""
        conf = {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            # librdkafka's 1,000 ms: once its local queue passes queued.min.messages (100,000) or
            # queued.max.messages.kbytes (64 MB) it fetches again only a second later, which
            # capped a reader that keeps up at ~64 MB/s on one partition (see README).
            "fetch.queue.backoff.ms": "10",
            # librdkafka's 500 ms: a fetch for partitions without new data (the transaction
            # topic, never paused) waits that long at the broker, and a partition resumed after
            # backpressure is fetched only once it returns: up to 500 ms with nothing to do.
            "fetch.wait.max.ms": "100",
        }
        for key, secret in self.settings.items():
            conf[key] = read_secret(secret.get_secret_value(), f"source.kafka.settings.{key}")
        return conf


class FileSourceConfig(_Strict):
    path: str = ""


class EmbeddedSourceConfig(_Strict):
    connector: str = Field(
        default="connectors/postgres-shop.json",
        description="a connectors/ file (Kafka Connect format, ${ENV} placeholders) reused for the engine",
    )
    properties: dict[str, str] = Field(default_factory=dict, description="Debezium properties overriding the file")
    state_dir: str = Field(default=".run/embedded", description="offsets, schema history, engine log")
    offsets_file: str | None = Field(default=None, description="default: <state_dir>/offsets.dat")
    java_home: str | None = Field(default=None, description="default: JAVA_HOME, then java on PATH")
    jvm_opts: list[str] = Field(default_factory=lambda: ["-Xmx1g"])
    extra_classpath: list[str] = Field(default_factory=list)
    engine_log_level: Literal["error", "warn", "info", "debug"] = "warn"
    poll_interval_ms: int = Field(
        default=10, ge=1, le=60_000,
        description="Debezium poll.interval.ms: the engine hands over a batch when this window (+ ~1 ms) ends "
        "(or max_batch_size is reached), so it sets the median commit→hook latency; Debezium spins through the "
        "last millisecond of every window, so an idle sidecar uses ~11 % of a core at 10, ~20 % at 5, ~50 % at 1",
    )
    max_batch_size: int = Field(default=2048, ge=1, le=100_000, description="Debezium max.batch.size")
    poll_timeout_s: float = Field(default=0.2, gt=0, le=10)
    preflight: bool = Field(default=True, description="check wal_level and privileges before starting")

    @field_validator("properties", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
        return value


class SourceConfig(_Strict):
    kind: Literal["kafka", "embedded", "file"] = "kafka"
    kafka: KafkaSourceConfig | None = None
    embedded: EmbeddedSourceConfig | None = None
    file: FileSourceConfig | None = None

    @model_validator(mode="after")
    def _matching_block(self) -> SourceConfig:
        if self.kind == "kafka" and self.kafka is None:
            raise ValueError("source.kind is kafka: add a source.kafka block (bootstrap_servers, topics…)")
        if self.kind == "embedded" and self.embedded is None:
            raise ValueError("source.kind is embedded: add a source.embedded block (connector: connectors/…json)")
        if self.kind == "file" and (self.file is None or not self.file.path):
            raise ValueError("source.kind is file: set source.file.path")
        return self


class DatabasesConfig(_Strict):
    source: SecretStr | None = None
    destination: SecretStr | None = None
    auxiliary: dict[str, SecretStr] = Field(default_factory=dict)

    def urls(self) -> tuple[str | None, str | None, dict[str, str]]:
        def get(secret: SecretStr | None, where: str) -> str | None:
            return None if secret is None else read_secret(secret.get_secret_value(), where) or None

        aux = {
            name: read_secret(s.get_secret_value(), f"databases.auxiliary.{name}")
            for name, s in self.auxiliary.items()
        }
        return get(self.source, "databases.source"), get(self.destination, "databases.destination"), aux


class TableConfig(_Strict):
    source_table: str | None = None


class RetryConfig(_Strict):
    max_attempts: int | None = Field(default=5, ge=1, description="then on_failure applies; null = retry forever")
    initial_backoff_s: float = Field(default=0.5, gt=0)
    max_backoff_s: float = Field(default=30.0, gt=0)
    multiplier: float = Field(default=2.0, ge=1)


class HookConfig(_Strict):
    path: str | None = Field(default=None, description="a .py file, optionally PATH.py:FUNCTION")
    module: str | None = Field(default=None, description="an importable module, optionally module:FUNCTION")
    entry_point: str | None = Field(
        default=None, description="a name an installed package registers in entry-point group checkpoint_sidecar.hooks"
    )
    function: str = "checkpoint"
    tables: list[str] | None = Field(default=None, description="data collections; None = all")
    ops: list[Op] = Field(default_factory=lambda: list(DEFAULT_OPS))
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeout_s: float | None = Field(default=None, gt=0, description="an attempt longer than this is a timeout")
    on_failure: Literal["dead_letter", "halt", "skip"] = Field(
        default="dead_letter", description="when attempts run out: dead-letter and go on, halt, or skip (explicit)"
    )
    ordering: Literal["partition", "key", "none"] = Field(
        default="partition",
        description="partition: one call at a time per partition, in offset order; key: in order per Kafka "
        "message key (Debezium: the primary key), different keys concurrently; none: any order",
    )
    concurrency: int = Field(default=1, ge=1, le=1024, description="calls of this hook in flight at once")
    where: str | None = Field(default=None, description="row filter on record fields, e.g. total > 10000 (where.py)")

    mode: Literal["record", "transaction", "batch"] = Field(
        default="record",
        description="record: one call per record; transaction: one call per committed source transaction "
        "(Debezium transaction metadata; rows without one, e.g. snapshot rows, come as batches); "
        "batch: one call per max_records records or max_wait_ms",
    )
    max_records: int = Field(default=500, ge=1, le=100_000, description="batch calls: at most this many records")
    max_wait_ms: int = Field(
        default=200, ge=0, le=600_000, description="batch calls: a batch is called at the latest this long after "
        "its first record arrived"
    )
    thread: Literal["workers", "loop"] = Field(
        default="workers",
        description="where the calls run. workers: worker threads. loop: the loop's own thread, between its "
        "intakes (up to 10 ms of calls per turn) — no hand-off, and the loop and this hook no longer take turns "
        "at the interpreter mid-call (measured: the two serial example hooks +15 % with pipeline_stats there; "
        "no gain beside a concurrent hook, slower with both there), but while a call runs nothing is taken in "
        "and no other call starts, and a call that hangs stops the pipeline (liveness fails after "
        "health.hook_timeout_s). Only with concurrency 1, without timeout_s (a call on the loop's thread cannot "
        "be given up on), not for async hooks",
    )


    @model_validator(mode="after")
    def _one_target(self) -> HookConfig:
        if sum(bool(t) for t in (self.path, self.module, self.entry_point)) != 1:
            raise ValueError(
                "give exactly one of path (a .py file), module (an importable module) or entry_point "
                "(a name in the checkpoint_sidecar.hooks entry-point group)"
            )
        if self.mode != "record" and self.ordering == "key":
            raise ValueError(
                f"mode {self.mode} calls the hook with many records at once: ordering key does not apply; "
                "use ordering partition (one call at a time, in commit order) or none (up to concurrency calls)"
            )
        if self.thread == "loop" and (self.concurrency != 1 or self.timeout_s is not None):
            wrong = ([f"concurrency {self.concurrency} (it needs 1)"] if self.concurrency != 1 else []) + (
                [f"timeout_s {self.timeout_s:g} (remove it)"] if self.timeout_s is not None else [])
            raise ValueError(
                "thread: loop runs one call at a time on the loop's thread, where a call cannot be given up on; "
                f"this hook sets {' and '.join(wrong)}: change that, or set thread: workers"
            )
        return self

    @field_validator("where")
    @classmethod
    def _where_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            from sidecar.where import check_where

            check_where(value)  # ValueError names the problem; pydantic adds hooks.NAME.where
        return value


class DeadLetterConfig(_Strict):
    kind: Literal["auto", "kafka", "file"] = Field(
        default="auto", description="auto: a Kafka topic in Kafka mode, a JSON-lines file otherwise"
    )
    topic: str | None = Field(default=None, description="default: <group_id>.dead-letters")
    path: str = Field(
        default=".run/dead-letters.jsonl", description="file kind; replays are recorded in <path>.replayed"
    )
    max_message_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024,
        description="larger messages are dead-lettered as too_large: their head and coordinates, not the whole",
    )
    max_entry_bytes: int = Field(
        default=1_000_000, ge=4096,
        description="an entry is kept under this size (Kafka: also under the producer's message.max.bytes)",
    )
    kafka_settings: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="librdkafka settings for the dead-letter producer only, over the consumer's shared settings",
    )

    @field_validator("kafka_settings", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
        return value

    def producer_settings(self) -> dict[str, str]:
        return {k: read_secret(v.get_secret_value(), f"dead_letters.kafka_settings.{k}")
                for k, v in self.kafka_settings.items()}


class HttpConfig(_Strict):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=9180, ge=0, le=65535, description="/metrics, /healthz, /readyz; 0 = any free port")


class HealthConfig(_Strict):
    loop_stall_s: float = Field(default=60.0, gt=0, description="liveness fails when the loop has not ticked this long")
    hook_timeout_s: float = Field(default=300.0, gt=0, description="liveness fails when one hook runs longer")
    watch_interval_s: float = Field(default=15.0, gt=0, description="database pings and slot retention checks")
    kafka_check_interval_s: float = Field(
        default=5.0, gt=0, description="Kafka mode: a metadata request on a separate client; readiness follows it"
    )


SOFT_MAX_IN_FLIGHT = 1_000
"""`dispatch.soft_max_in_flight`'s default (half of max_in_flight when that is set to this or less)."""


class DispatchConfig(_Strict):
    max_in_flight: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="records taken from the source and not finished; past it the source is paused (Kafka: still "
        "polled, the marker topics read on; embedded: the engine waits)",
    )
    soft_max_in_flight: int = Field(
        default=SOFT_MAX_IN_FLIGHT, ge=0, le=1_000_000,
        description="a brake, not a cap: past this many unfinished records, while hook calls are running (none "
        "for over 0.1 s) and others are queued behind them, the loop stops taking messages until half as many are "
        "in flight, "
        "except one batch (source.kafka.batch_size) every 0.5 s; nothing is paused (Kafka keeps what librdkafka "
        "prefetched; the embedded engine waits). With slow hooks the records in flight still grow to "
        "max_in_flight, the hard bound. Below max_in_flight (not set: 1,000, or half of max_in_flight when "
        "that is 1,000 or less); 0: off",
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="after SIGTERM: how long running hook calls may finish before cancelled"
    )
    revoke_wait_s: float = Field(
        default=10.0, ge=0, description="on a partition revoke: how long to wait for its running calls"
    )
    max_abandoned_calls: int = Field(
        default=16, ge=1, description="timed-out calls that did not return; past it liveness fails"
    )
    switch_interval_s: float = Field(
        default=0.001, gt=0, le=0.1,
        description="Python's thread switch interval while the sidecar runs (sys.setswitchinterval; Python's "
        "default 0.005): hook threads waking from I/O get the interpreter back sooner, so the loop hands out "
        "work sooner (measured: example hooks at 0.95x instead of 0.78x of a bare pool)",
    )
    yield_every_records: int = Field(
        default=0, ge=0, le=1_000_000,
        description="while hook calls run on worker threads and at least 1,000 records are in flight, the loop "
        "thread sleeps 20 µs after every this many records it takes in (0: never), so a hook thread back from "
        "a database round trip gets the interpreter sooner; off by default: measured faster without (transaction "
        "mode +2-11 %, 10-20 % less loop CPU; record mode and the example hooks' settings unchanged)",
    )
    gc_threshold: int = Field(
        default=50_000, ge=0, le=10_000_000,
        description="Python's youngest-generation garbage-collection threshold while the sidecar runs "
        "(gc.set_threshold; Python's default 700; 0 keeps Python's). Records in flight are many small "
        "objects: collecting every 700 allocations cost a third of the no-op path's time. Objects made "
        "at start-up are frozen (gc.freeze) so full collections skip them",
    )
    inline_below_us: float = Field(
        default=100.0, ge=0, le=10_000,
        description="a plain (not async) record-mode hook without timeout_s whose calls average under this "
        "many microseconds (over 1,000 calls) runs on the loop's thread instead of a worker: handing each "
        "batch of records to a worker thread and back costs more than a fast call (measured: a no-op hook "
        "2.6x faster inline). A call over ten times this sends the hook back to the workers. 0: always workers",
    )
    max_transaction_records: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="transaction hooks: a larger transaction is delivered in parts of this many records "
        "(ctx.transaction.part/last); at most max_in_flight",
    )
    transaction_end_timeout_s: float = Field(
        default=60.0, gt=0,
        description="transaction hooks: a transaction still missing its END marker or some of its events this "
        "long after its last message (or since the one before it was handed over) is called with what arrived "
        "(event_count None unless the END came) and counted; time the source is not polled (intake held back "
        "while hooks are behind; embedded mode's pause) does not count, nor, once its END came, time Kafka's "
        "data topics are paused",
    )

    @model_validator(mode="before")
    @classmethod
    def _soft_default_below_hard(cls, data: Any) -> Any:
        """Not set and max_in_flight set at or below the default soft bound: half of max_in_flight."""
        if isinstance(data, dict) and "soft_max_in_flight" not in data and "max_in_flight" in data:
            hard = data["max_in_flight"]
            if isinstance(hard, bool):
                return data
            try:
                hard = int(hard)  # (from the environment: text)
            except (TypeError, ValueError):
                return data  # the field's own validation says what is wrong with it
            if hard <= SOFT_MAX_IN_FLIGHT:
                data = {**data, "soft_max_in_flight": max(0, hard // 2)}
        return data

    @model_validator(mode="after")
    def _soft_below_hard(self) -> DispatchConfig:
        if self.soft_max_in_flight and self.soft_max_in_flight >= self.max_in_flight:
            raise ValueError(f"soft_max_in_flight ({self.soft_max_in_flight}) must be below max_in_flight "
                             f"({self.max_in_flight}), or 0 to turn it off: at or above it, it never acts")
        return self


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIDECAR_", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    pipeline: str = Field(min_length=1)
    source: SourceConfig
    databases: DatabasesConfig = Field(default_factory=DatabasesConfig)
    tables: dict[str, TableConfig] = Field(default_factory=dict)
    hooks: dict[str, HookConfig] = Field(default_factory=dict)
    http: HttpConfig = Field(default_factory=HttpConfig)
    dead_letters: DeadLetterConfig = Field(default_factory=DeadLetterConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    metrics_enabled: bool = Field(default=True, description="false: record no metrics (benchmarks)")
    log: LogConfig = Field(default_factory=LogConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Env above the YAML file (passed as init kwargs).
        return (env_settings, init_settings)

    def source_table(self, table: str) -> str | None:
        cfg = self.tables.get(table)
        return cfg.source_table if cfg else None


def _format_error(exc: ValidationError, path: str | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and nesting; see config.example.yaml)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        env = "SIDECAR_" + "__".join(str(p).upper() for p in err["loc"])
        lines.append(f"  - {key}: {msg} (env override: {env})")
    return "\n".join(lines)


def load_settings(path: str | os.PathLike[str] | None) -> Settings:
    """Load the YAML file (if any) and env overrides; a wrong config raises ConfigError naming the key."""
    data: dict[str, Any] = {}
    shown = str(path) if path else None
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start + 1} cannot be read): save it "
                              "as UTF-8") from None
        try:
            loaded = yaml.safe_load(text)
        except Exception as exc:  # YAMLError, or whatever a `!!` tag's constructor raises on its value
            raise ConfigError(_yaml_error(path, exc)) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping (pipeline:, source:, hooks: …)")
        odd = [k for k in loaded if not isinstance(k, str)]
        if odd:
            raise ConfigError(f"config file {path}: top-level keys must be names (pipeline:, source:, hooks: …), "
                              f"not {type(odd[0]).__name__} {odd[0]!r}")
        data = loaded
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, shown)) from None
    except RecursionError:  # an env override nested deeper than the JSON parser follows
        deep = [k for k, v in os.environ.items() if k.upper().startswith("SIDECAR_") and _too_deep(v)]
        raise ConfigError(f"environment variable {deep[0] if deep else 'SIDECAR_*'} is nested too deeply to read "
                          "as JSON") from None
    except SettingsError as exc:  # an env override holding a whole section that is not JSON
        field = re.search(r'field "([^"]+)"', str(exc))
        name, kind = _not_json_variable(field.group(1)) if field else ("a SIDECAR_* variable", "object")
        cause = exc.__cause__
        where = f" ({cause.msg} at character {cause.pos})" if isinstance(cause, json.JSONDecodeError) else ""
        if kind == "list":
            raise ConfigError(f"environment variable {name} must be a JSON list, e.g. {name}='[\"a\", \"b\"]'"
                              f"{where}") from None
        raise ConfigError(f"environment variable {name} must be JSON (an object for a section){where}; or set "
                          f"its keys one by one, e.g. {name}__<KEY>=value") from None
    register_secrets(settings)
    return settings


def _not_json_variable(field: str) -> tuple[str, str]:
    """The SIDECAR_* variable behind a section that is not JSON: pydantic-settings names only the
    top-level field (`databases`), while the variable may be a nested one that holds a section
    itself (SIDECAR_DATABASES__AUXILIARY, SIDECAR_SOURCE__KAFKA__TOPICS). The deepest such
    variable whose value is not JSON, spelled as it is set."""
    prefix = f"SIDECAR_{field.upper()}"
    found, found_kind, depth = prefix, "object", 0
    for key, value in os.environ.items():
        upper = key.upper()
        if not (upper == prefix or upper.startswith(prefix + "__")):
            continue
        parts = upper[len("SIDECAR_"):].lower().split("__")
        kind = _section_kind(parts)
        if len(parts) <= depth or kind is None:
            continue
        try:
            json.loads(value)
        except (ValueError, RecursionError):
            found, found_kind, depth = key, kind, len(parts)
    return found, found_kind


def _too_deep(value: str) -> bool:
    try:
        json.loads(value)
    except RecursionError:
        return True
    except ValueError:
        pass
    return False


def _section_kind(path: list[str]) -> str | None:
    """What this field path holds (a dict key, in a mapping of sections, is any name): "object"
    (a mapping or a model) or "list" — values pydantic-settings reads as JSON — or None."""
    kind: Any = Settings
    for part in path:
        kind = _unwrap(kind)
        if typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1] if len(typing.get_args(kind)) == 2 else None
        elif hasattr(kind, "model_fields"):
            info = kind.model_fields.get(part)
            kind = None if info is None else info.annotation
        else:
            return None
        if kind is None:
            return None
    kind = _unwrap(kind)
    if typing.get_origin(kind) in (list, tuple, set, frozenset):
        return "list"
    return "object" if typing.get_origin(kind) is dict or hasattr(kind, "model_fields") else None


def _unwrap(kind: Any) -> Any:
    """`X | None`, `Optional[X]`, `Annotated[X, …]` → X (the first non-None member of a union)."""
    while True:
        origin = typing.get_origin(kind)
        if origin is typing.Annotated:
            kind = typing.get_args(kind)[0]
        elif origin is typing.Union or origin is types.UnionType:
            members = [a for a in typing.get_args(kind) if a is not type(None)]
            if not members:
                return kind
            kind = members[0]
        else:
            return kind
