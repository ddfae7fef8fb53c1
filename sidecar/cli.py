"""`checkpoint-sidecar` command line.

Exit codes of `check` (also for `run` failing at start):
  0 all good · 2 config invalid · 3 a hook failed to load · 4 a database is unreachable ·
  5 the Kafka broker is unreachable · 6 Kafka Connect / connector problem
"""

from __future__ import annotations

import math
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sidecar.errors import (
    ConfigError,
    ConnectorError,
    DependencyError,
    HookLoadError,
    SidecarError,
    SourceError,
)
from sidecar.hook_cli import counted, finite, first_line, hooks

if TYPE_CHECKING:
    from sidecar.config import Settings
from sidecar.secrets import mask_url, scrub

EXIT_CONFIG, EXIT_HOOK, EXIT_DATABASE, EXIT_BROKER, EXIT_CONNECT = 2, 3, 4, 5, 6


def _fail(exc: SidecarError) -> None:
    codes: dict[type, int] = {
        ConfigError: EXIT_CONFIG,
        HookLoadError: EXIT_HOOK,
        DependencyError: EXIT_DATABASE,
        SourceError: EXIT_BROKER,  # also its subclasses (a dead letter that cannot be stored)
        ConnectorError: EXIT_CONNECT,
    }
    code = next((codes[c] for c in type(exc).__mro__ if c in codes), 1)
    click.echo(f"checkpoint-sidecar: {scrub(str(exc))}", err=True)
    sys.exit(code)


def _scrubbing_excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """An unexpected crash still prints its traceback, with every registered secret masked."""
    sys.stderr.write(scrub("".join(traceback.format_exception(kind, exc, tb))))


def _scrubbing_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    sys.stderr.write(f"Exception in thread {name}:\n")
    _scrubbing_excepthook(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)


sys.excepthook = _scrubbing_excepthook
threading.excepthook = _scrubbing_thread_excepthook


config_option = click.option(
    "--config", "config_path", envvar="SIDECAR_CONFIG", type=click.Path(dir_okay=False), help="YAML config file"
)


def load_config(config_path: str | None) -> Settings:
    """The settings of `--config FILE`; without a file every required key must come from env,
    and when it does not the error says to pass --config rather than listing missing keys."""
    from sidecar.config import load_settings

    try:
        return load_settings(config_path)
    except ConfigError as exc:
        if config_path:
            raise
        raise ConfigError(
            "no configuration: pass --config FILE (or set SIDECAR_CONFIG=FILE); without a file every "
            f"required key must come from SIDECAR_… environment variables, and these are missing:\n{exc}"
        ) from None


def connector_files(files: tuple[str, ...]) -> list[Path]:
    """FILES, or connectors/*.json of the working directory; none at all is an error, not a silent no-op."""
    paths = [Path(f) for f in files] or sorted(Path("connectors").glob("*.json"))
    if not paths:
        raise ConnectorError(
            f"no connector files: {Path('connectors').resolve()}/*.json does not exist; "
            "run from the repository or pass the files: connectors status FILE.json …"
        )
    return paths


@click.group()
@click.version_option(package_name="checkpoint-sidecar")
def main() -> None:
    """Run Python checkpoint hooks after every commit to a pipeline's destination database."""


main.add_command(hooks)


@main.command()
@config_option
def run(config_path: str | None) -> None:
    """Consume Debezium change events and run the configured hooks (until SIGTERM)."""
    from sidecar.app import build_app, install_signal_handlers
    from sidecar.app import run as run_sidecar
    from sidecar.logs import configure_logging

    try:
        settings = load_config(config_path)
        configure_logging(settings.log.level, settings.log.format)
        app = build_app(settings, base_dir=Path(config_path).parent if config_path else None)
        stop = threading.Event()
        install_signal_handlers(stop, app.log, app.health)
        run_sidecar(app, stop)
    except SidecarError as exc:
        _fail(exc)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@config_option
@click.option("--hook", "hook_target", help="run only this hook file: PATH.py[:FUNCTION] (no config needed)")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(min=1),
              help="attempts per call before it counts as failed (in place of each hook's retry.max_attempts)")
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, callback=finite,
              type=click.FloatRange(min=0, min_open=True),
              help="seconds one call may take (for hooks without their own timeout_s); then it counts as failed")
def replay(file: str, config_path: str | None, hook_target: str | None, attempts: int, timeout_s: float) -> None:
    """Run hooks on captured Debezium messages from a JSON-lines FILE; non-zero exit if a hook failed."""
    from dataclasses import replace

    from sidecar.app import build_app, replay_file
    from sidecar.config import Settings, load_settings, register_secrets
    from sidecar.hooks import load_hook
    from sidecar.logs import configure_logging

    try:
        if config_path:
            settings = load_settings(config_path)
        else:
            settings = Settings(pipeline="replay", source={"kind": "file", "file": {"path": file}})  # type: ignore[arg-type]
            register_secrets(settings)  # secret-named environment variables, as a loaded config registers them
        configure_logging(settings.log.level, settings.log.format)
        only = [load_hook(Path(hook_target.split(":")[0]).stem, path=hook_target)] if hook_target else None
        app = build_app(settings, Path(config_path).parent if config_path else None, max_attempts=attempts,
                        hooks=only)
        if not app.hooks:
            raise ConfigError("no hooks to run: give --hook PATH.py or a --config with hooks")
        # A hung hook must not hang `replay`: every call is bounded (so on a worker: `thread: loop` cannot be).
        app.hooks[:] = [h if h.timeout_s is not None else replace(h, timeout_s=timeout_s, thread="workers")
                        for h in app.hooks]
        app.settings = app.settings.model_copy(update={"dispatch": app.settings.dispatch.model_copy(
            update={"shutdown_grace_s": min(app.settings.dispatch.shutdown_grace_s, timeout_s)})})
        stats = replay_file(app, file)
    except SidecarError as exc:
        _fail(exc)
    click.echo(
        f"replayed {counted(stats.messages, 'message')}: {counted(stats.events, 'change event')}, "
        f"{counted(stats.calls_ok, 'hook call')} ok, {counted(stats.hook_failures, 'event')} with a failed hook, "
        f"{counted(stats.decode_failures, 'undecodable message')}"
    )
    for reason, detail in stats.failures[:20]:
        click.echo(scrub(f"  {reason}: {detail}"), err=True)
    if stats.hook_failures or stats.decode_failures:
        sys.exit(1)


@main.command()
@config_option
@click.option("--timeout", default=5.0, show_default=True, callback=finite,
              type=click.FloatRange(min=0, min_open=True, max=600),
              help="seconds per reachability probe (each database, the broker)")
def check(config_path: str | None, timeout: float) -> None:
    """Check config, hook imports, database and broker reachability (exit code says which failed)."""

    from sidecar.app import build_hooks, build_settings_databases
    from sidecar.logs import configure_logging

    try:
        settings = load_config(config_path)
        configure_logging(settings.log.level, settings.log.format)
        if settings.source.kind == "kafka" and settings.source.kafka is not None:
            from sidecar.sources.kafka_probe import check_settings

            check_settings(settings.source.kafka.librdkafka())  # a config error, before anything is reached
        click.echo("config: ok")
        hooks = build_hooks(settings, Path(config_path).parent if config_path else None)
        click.echo(f"hooks: ok ({', '.join(h.name for h in hooks) or 'none'})")
        dbs = build_settings_databases(settings)
        for name, engine in dbs.all().items():
            _probe_database(f"database {name}", engine, timeout)
            click.echo(f"database {name}: ok")
        dbs.dispose()
        if settings.source.kind == "embedded" and settings.source.embedded is not None:
            from sidecar.sources.embedded_check import check_embedded

            click.echo(check_embedded(settings.source.embedded, Path(config_path).parent if config_path else None))
        if settings.source.kind == "kafka" and settings.source.kafka is not None:
            from sidecar.sources.kafka_probe import ping

            ping(settings.source.kafka.librdkafka(), timeout)
            click.echo("kafka: ok")
    except SidecarError as exc:
        _fail(exc)


MIN_PRUNE_DAYS = 1 / 24
"""`ledger prune` keeps at least an hour of claims: a crash's or a rebalance's redelivery comes
within minutes, and pruning its claims would count those records again."""


def _prune_age(value: float) -> float:
    """A pruning age: finite and at least MIN_PRUNE_DAYS (less would delete fresh claims, 0 every one)."""
    if not math.isfinite(value) or value < MIN_PRUNE_DAYS:
        raise click.BadParameter(f"must be a number of days of at least {MIN_PRUNE_DAYS:.3f} (one hour), not "
                                 f"{value:g}: less would remove the claims of records still being delivered "
                                 "or redelivered (a crash or a rebalance redelivers within minutes), 0 every claim")
    return value


def _probe_database(label: str, engine: Any, timeout_s: float) -> None:
    """`SELECT 1` bounded by `timeout_s` (a server that accepts and never answers must not hang a
    command); DependencyError (exit 4) with the masked URL and one line of the cause."""
    from sqlalchemy import text

    from sidecar.execute import GaveUp, within

    def select_one() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    shown = mask_url(engine.url.render_as_string(hide_password=False))
    try:
        within(select_one, timeout_s, "probe-database")
    except GaveUp:
        raise DependencyError(f"{label} ({shown}) did not answer within {timeout_s:g} s (--timeout)") from None
    except Exception as exc:
        raise DependencyError(f"{label} ({shown}) is unreachable or refused the connection: "
                              f"{first_line(exc, type(exc).__name__)}") from None


def _ledger_run(database: str, engine: Any, fn: Callable[[], _T], timeout_s: float) -> _T:
    """A ledger command's database work: first the bounded probe, then the work itself, not
    bounded — giving up on a long prune would leave its DELETE running on the server with nothing
    gained. A database error is exit 4 with one line, as `check` reports one."""
    from sqlalchemy.exc import SQLAlchemyError

    label = f"auxiliary database {database}"
    _probe_database(label, engine, timeout_s)
    try:
        return fn()
    except (SQLAlchemyError, ValueError) as exc:
        shown = mask_url(engine.url.render_as_string(hide_password=False))
        hint = ""
        if not engine.url.database and engine.dialect.name in ("mysql", "mariadb"):
            # (MariaDB/MySQL: a URL without a database reaches none; "No database selected" alone
            # does not say that the fix is in the URL: show where the name goes)
            named = mask_url(engine.url.set(database="DBNAME").render_as_string(hide_password=False))
            hint = f"; the URL names no database: give one, as in {named}"
        raise DependencyError(f"{label} ({shown}): {first_line(exc, type(exc).__name__)}{hint}") from None


_T = TypeVar("_T")


@main.group("ledger")
def ledger() -> None:
    """The ledger of applied record ids that exactly-counted hooks use (sidecar.ledger)."""


database_option = click.option("--database", "database", default="audit", show_default=True,
                               help="the auxiliary database (databases.auxiliary.NAME) holding the ledger")
ledger_timeout_option = click.option(
    "--timeout", "timeout_s", default=30.0, show_default=True, callback=finite,
    type=click.FloatRange(min=0, min_open=True, max=600),
    help="seconds the database has to answer a first SELECT 1 before the command gives up (exit 4); the work "
    "itself is not cut short")


@ledger.command("create")
@config_option
@database_option
@ledger_timeout_option
def ledger_create(config_path: str | None, database: str, timeout_s: float) -> None:
    """Create the checkpoint_ledger table (MariaDB/MySQL or PostgreSQL) if it does not exist."""
    from sidecar import ledger as ledger_ops

    try:
        engine = _ledger_engine(config_path, database)
        created = _ledger_run(database, engine, lambda: ledger_ops.create_table(engine), timeout_s)
        engine.dispose()
    except SidecarError as exc:
        _fail(exc)
    click.echo(f"{ledger_ops.TABLE} created in auxiliary database {database}" if created else
               f"{ledger_ops.TABLE} already exists in auxiliary database {database} (left as it is)")


@ledger.command("prune")
@config_option
@database_option
@click.option("--older-than-days", type=float, required=True, callback=lambda _c, _p, v: _prune_age(v),
              help="delete ids applied before this (more than 0); a record redelivered after its id is pruned is "
              "applied again")
@ledger_timeout_option
def ledger_prune(config_path: str | None, database: str, older_than_days: float, timeout_s: float) -> None:
    """Delete ledger rows older than --older-than-days (at least 1 hour). A record redelivered
    after its claim was pruned is counted again: keep claims as long as a redelivery can reach
    back (README, "Bulk calls", exactly-counted writes: days, not hours)."""
    from sidecar import ledger as ledger_ops

    try:
        engine = _ledger_engine(config_path, database)
        removed = _ledger_run(database, engine, lambda: ledger_ops.prune(engine, older_than_days), timeout_s)
        engine.dispose()
    except SidecarError as exc:
        _fail(exc)
    click.echo(f"removed {counted(removed, 'ledger row')} older than {older_than_days:g} days")


def _where(message: dict[str, Any]) -> str:
    """`topic[partition]@offset` (Kafka), or the topic alone (embedded, replay: no coordinates)."""
    if message.get("partition") is None and message.get("offset") is None:
        return str(message["topic"])
    return f"{message['topic']}[{message.get('partition')}]@{message.get('offset')}"


@main.group("dead-letters")
def dead_letters() -> None:
    """Inspect, replay and purge dead letters (the store configured in dead_letters:)."""


def _ledger_engine(config_path: str | None, database: str) -> Any:
    """The auxiliary database a ledger command works on (its hooks are not loaded: a hook that
    does not import has nothing to do with the ledger's table)."""
    from sidecar.app import build_settings_databases
    from sidecar.logs import configure_logging

    settings = load_config(config_path)
    configure_logging(settings.log.level, settings.log.format)
    databases = build_settings_databases(settings)
    engine = databases.auxiliary.get(database)
    if engine is None:
        raise ConfigError(f"no auxiliary database {database!r} in the config (databases.auxiliary)")
    return engine


def _app_for(config_path: str | None) -> Any:
    from sidecar.app import build_app
    from sidecar.logs import configure_logging

    settings = load_config(config_path)
    configure_logging(settings.log.level, settings.log.format)
    return build_app(settings, base_dir=Path(config_path).parent if config_path else None)


@dead_letters.command("list")
@config_option
@click.option("--hook", "hook_name", help="only this hook's entries")
def dead_letters_list(config_path: str | None, hook_name: str | None) -> None:
    """One line per entry: id, kind, hook, reason, event_id, when, replayed."""
    from sidecar import dead_letter_ops as ops

    try:
        app = _app_for(config_path)
        done = ops.ledger(app).done()
        entries = [e for e in ops.load_entries(app) if hook_name is None or e.get("hook") == hook_name]
    except SidecarError as exc:
        _fail(exc)
    for e in entries:
        m = e["message"]
        click.echo(f"{e['id']}  {e['kind']:13s} hook={e.get('hook') or '-'}  reason={e['reason']}  "
                   f"event_id={e.get('event_id') or '-'}  {_where(m)}  "
                   f"{e['dead_lettered_at']}  {'replayed' if e['id'] in done else 'pending'}")
    click.echo(f"{counted(len(entries), 'dead letter')}, "
               f"{sum(e['id'] in done for e in entries)} replayed", err=True)


@dead_letters.command("show")
@click.argument("entry_id")
@config_option
def dead_letters_show(entry_id: str, config_path: str | None) -> None:
    """The whole entry (original message, error, traceback) as JSON."""
    import json

    from sidecar import dead_letter_ops as ops

    try:
        app = _app_for(config_path)
        found = [e for e in ops.load_entries(app) if e["id"] == entry_id]
    except SidecarError as exc:
        _fail(exc)
    if not found:
        click.echo(f"checkpoint-sidecar: no dead letter with id {entry_id}", err=True)
        sys.exit(1)
    click.echo(scrub(json.dumps(found[0], indent=2)))


@dead_letters.command("replay")
@config_option
@click.option("--hook", "hook_name", help="only this hook's entries")
def dead_letters_replay(config_path: str | None, hook_name: str | None) -> None:
    """Re-run pending entries through the current hook code; successes are recorded and not repeated."""
    from sidecar import dead_letter_ops as ops

    try:
        app = _app_for(config_path)
        result = ops.replay(app, hook_name)
        app.databases.dispose()
    except SidecarError as exc:
        _fail(exc)
    click.echo(f"replayed {len(result.ok)} ok, {len(result.failed)} failed (kept), "
               f"{result.already} already replayed before")
    for entry_id, why in result.failed[:50]:
        click.echo(scrub(f"  {entry_id}: {why}"), err=True)
    if result.failed:
        sys.exit(1)


@dead_letters.command("purge")
@config_option
@click.option("--replayed-only/--all", default=True, show_default=True)
@click.option("--yes", is_flag=True, help="really delete")
def dead_letters_purge(config_path: str | None, replayed_only: bool, yes: bool) -> None:
    """Delete replayed entries (or all with --all) from the file store. Needs --yes."""
    from sidecar import dead_letter_ops as ops

    if not yes:
        click.echo("checkpoint-sidecar: purge deletes dead letters; add --yes to confirm", err=True)
        sys.exit(2)
    try:
        removed, kept = ops.purge(_app_for(config_path), replayed_only)
    except SidecarError as exc:
        _fail(exc)
    click.echo(f"purged {removed}, kept {kept}")


@main.group()
def connectors() -> None:
    """Register and inspect Debezium connectors on Kafka Connect (configs in connectors/)."""


connect_url_option = click.option(
    "--connect-url", envvar="CONNECT_URL", default="http://127.0.0.1:8083", show_default=True
)


@connectors.command("apply")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@connect_url_option
@click.option("--wait/--no-wait", default=True, help="wait until the connector and its tasks run")
@click.option("--timeout", default=90.0, show_default=True)
def connectors_apply(files: tuple[str, ...], connect_url: str, wait: bool, timeout: float) -> None:
    """Create or update connectors from FILES (default: connectors/*.json)."""
    from sidecar import connectors as cx

    try:
        for path in connector_files(files):
            name = cx.apply(connect_url, path)
            click.echo(f"{name}: applied from {path}")
            if wait:
                cx.wait_running(connect_url, name, timeout)
                click.echo(f"{name}: RUNNING")
    except SidecarError as exc:
        _fail(exc)


@connectors.command("status")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@connect_url_option
def connectors_status(files: tuple[str, ...], connect_url: str) -> None:
    """Show state of the connectors in FILES (default: connectors/*.json); exit 6 if one failed."""
    from sidecar import connectors as cx

    failed = False
    try:
        for path in connector_files(files):
            name, _ = cx.load_connector(path)
            st: dict[str, Any] = cx.status(connect_url, name)
            tasks = ", ".join(f"task {t.get('id')}: {t.get('state')}" for t in st.get("tasks", []))
            click.echo(f"{name}: {st.get('connector', {}).get('state')} ({tasks or 'no tasks'})")
            trace = cx.failure_trace(st)
            if trace:
                failed = True
                click.echo(scrub(trace), err=True)
    except SidecarError as exc:
        _fail(exc)
    if failed:
        sys.exit(EXIT_CONNECT)
