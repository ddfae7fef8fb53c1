"""`checkpoint-sidecar hooks new|list|test`: create a hook from a template, see what is configured,
try one hook on captured messages."""

from __future__ import annotations

import contextlib
import errno
import keyword
import math
import os
import re
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import click

from sidecar.errors import ConfigError, HookLoadError, SidecarError
from sidecar.secrets import scrub

if TYPE_CHECKING:
    from sidecar.config import Settings
    from sidecar.hooks import HookSpec

TEMPLATES = ("blank", "audit", "stats", "notify")
EXAMPLES = "examples/changes.jsonl"


def _cli() -> Any:
    from sidecar import cli

    return cli


def _fail(exc: SidecarError) -> None:
    _cli()._fail(exc)


def _base_dir(config_path: str) -> Path:
    return Path(config_path).resolve().parent


def _need_config(config_path: str | None) -> str:
    if not config_path:
        raise ConfigError("pass --config FILE (or set SIDECAR_CONFIG=FILE): the hooks commands work on a config file")
    return config_path


def load_one(settings: Settings, name: str, base_dir: Path) -> HookSpec:
    """One configured hook, loaded exactly as `run` loads it (the other hooks are not imported)."""
    from sidecar.app import build_hooks

    if name not in settings.hooks:
        raise ConfigError(f"no hook {name!r} in the config (configured: {', '.join(settings.hooks) or 'none'})")
    return build_hooks(settings.model_copy(update={"hooks": {name: settings.hooks[name]}}), base_dir)[0]


@click.group("hooks")
def hooks() -> None:
    """Create hooks from templates, list the configured ones, try one on captured messages."""


def finite(_ctx: Any, _param: Any, value: float) -> float:
    """A click callback: a number of seconds must be finite (nan passes FloatRange's bounds)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"must be a number of seconds, not {value:g}")
    return value


def counted(n: int, noun: str) -> str:
    """`1 message`, `2 messages`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def first_line(exc: BaseException, default: str = "") -> str:
    """An error's message for one output line: masked, its first line (drivers add more)."""
    return (scrub(str(exc)).strip().splitlines() or [default])[0]


config_option = click.option(
    "--config", "config_path", envvar="SIDECAR_CONFIG", type=click.Path(dir_okay=False), help="YAML config file"
)


def render(template: str, **values: str) -> str:
    text = resources.files("sidecar").joinpath(f"templates/{template}.tmpl").read_text(encoding="utf-8")
    return Template(text).substitute(values)


@hooks.command("new")
@click.argument("name")
@config_option
@click.option("--template", "template", type=click.Choice(TEMPLATES), default="blank", show_default=True)
@click.option("--mode", type=click.Choice(["record"]), default="record", show_default=True,
              help="how the hook is called: the templates are written for once per record; for one call per "
              "transaction or batch see the README (Bulk calls)")
@click.option("--table", "tables", multiple=True, help="data collection to listen to (repeat); default: all")
@click.option("--op", "ops", multiple=True, type=click.Choice(["c", "u", "d", "r", "t"]),
              help="ops to listen to (repeat); default: c u d r")
@click.option("--database", default="audit", show_default=True,
              help="auxiliary database the audit/stats templates write to (databases.auxiliary.NAME)")
def hooks_new(name: str, config_path: str | None, template: str, mode: str, tables: tuple[str, ...],
              ops: tuple[str, ...], database: str) -> None:
    """Write hooks/NAME.py from a template, a test for it (tests/hooks/test_NAME.py, using
    sidecar.testing) and a hooks.NAME entry in the --config file. An existing name is refused."""
    from sidecar.config import load_settings
    from sidecar.config_edit import add_hook_entry

    try:
        path = _need_config(config_path)
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", name) or keyword.iskeyword(name):
            raise ConfigError(f"hook name {name[:80]!r}: use up to 64 lowercase letters, digits and _ (it names a "
                              "Python module and the hook's metric label)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", database):
            raise ConfigError(f"--database {database[:80]!r}: name an auxiliary database (databases.auxiliary.NAME: "
                              "letters, digits, _ and -); it is written into the hook's code")
        bad = [t for t in tables if not t or any(not c.isprintable() or c in "'\"\\" for c in t)]
        if bad:
            raise ConfigError(f"--table {bad[0][:80]!r}: a data collection name (schema.table) without quotes, "
                              "backslashes or control characters")
        settings = load_settings(path)
        if name in settings.hooks:
            raise ConfigError(f"a hook named {name!r} is already in {path}; choose another name")
        base = _base_dir(path)
        hook_file = base / "hooks" / f"{name}.py"
        test_file = base / "tests" / "hooks" / f"test_{name}.py"
        for f in (hook_file, test_file):
            if f.exists():
                raise ConfigError(f"{f} exists already; choose another name (nothing was written)")
        if template in ("audit", "stats") and database not in settings.databases.auxiliary:
            click.echo(f"note: databases.auxiliary.{database} is not in {path}; add it before `run`", err=True)
        values = {"name": name, "db": database, "env": f"{name.upper()}_THRESHOLD", "depth": "2",
                  "hook_path": f"hooks/{name}.py"}
        entry: dict[str, object] = {"path": f"hooks/{name}.py"}
        if tables:
            entry["tables"] = list(tables)
        if ops:
            entry["ops"] = list(ops)
        elif template == "notify":
            entry["ops"] = ["c", "u"]
        with open(path, encoding="utf-8", newline="") as fh:
            original = fh.read()
        crlf = "\r\n" in original  # written back with the line ends it had
        updated = add_hook_entry(original.replace("\r\n", "\n"), name, entry)
        written: list[Path] = []
        made: list[Path] = []  # directories this command created
        try:
            for target, body in ((hook_file, render(f"{template}.py", **values)),
                                 (test_file, render(f"test_{template}.py", **values))):
                made[:0] = [d for d in (target.parent, *target.parent.parents) if not d.exists()]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(body, encoding="utf-8")
                written.append(target)
            _replace_file(Path(path), updated.replace("\n", "\r\n") if crlf else updated)
            written.append(Path(path))
            if name not in load_settings(path).hooks:
                raise ConfigError(f"the new entry did not land under hooks: in {path}")
        except (ConfigError, OSError) as exc:
            if Path(path) in written:
                try:
                    _replace_file(Path(path), original)
                except OSError as again:
                    raise ConfigError(f"cannot put {path} back as it was ({again.strerror or again}): its previous "
                                      f"text is saved in {_save_copy(Path(path), original)}; copy it back") from None
            for f in written:
                if f != Path(path):
                    f.unlink()
            for d in sorted(set(made), key=lambda d: len(d.parts), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()  # only if empty
            if isinstance(exc, OSError):
                raise ConfigError(f"cannot write {exc.filename or path}: {exc.strerror or exc} (nothing was "
                                  "left written)") from None
            raise
    except SidecarError as exc:
        _fail(exc)
    click.echo(f"wrote {hook_file.relative_to(base)} ({template} template, mode {mode})")
    click.echo(f"wrote {test_file.relative_to(base)} (run it: python -m pytest {test_file.relative_to(base)})")
    click.echo(f"added hooks.{name} to {path}")
    click.echo(f"try it: checkpoint-sidecar hooks test {name} --config {path}"
               + (f" (calls it for real: it writes to databases.auxiliary.{database})"
                  if template in ("audit", "stats") else ""))


def _replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: a temporary file beside it, with the original's
    permissions and owner, renamed over it (a symbolic link's target is replaced; a hard link to
    the old file keeps the old text). A failed write then never leaves a truncated config. Where
    the folder takes no new file (read-only folder, a single-file bind mount) it is written in place."""
    path = path.resolve()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        if exc.errno not in _IN_PLACE:
            raise
        _write_in_place(path, text)
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            _write_synced(f, text)
        st = path.stat()
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        with contextlib.suppress(PermissionError):
            os.chown(tmp, st.st_uid, st.st_gid)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno not in _IN_PLACE:
                raise
            os.unlink(tmp)
            _write_in_place(path, text)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_IN_PLACE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EBUSY, errno.EXDEV}
"""Errors of making or renaming a file beside the config after which it is written in place."""


def _write_in_place(path: Path, text: str) -> None:
    """Overwrite `path`; if that fails part-way (disk full, a file size limit), its previous text
    is written back before the error is raised (it is no longer than the new one)."""
    with open(path, encoding="utf-8", newline="") as f:
        previous = f.read()
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            _write_synced(f, text)
    except OSError as exc:
        try:
            with open(path, "w", encoding="utf-8", newline="") as f:
                _write_synced(f, previous)
        except OSError as again:  # the config is now cut off: keep its text where it can be found
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}, and putting its previous text back "
                              f"failed too ({again.strerror or again}): it is saved in {_save_copy(path, previous)}; "
                              "copy it back") from None
        raise


def _write_synced(f: Any, text: str) -> None:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())


def _save_copy(path: Path, text: str) -> str:
    """Keep a config's text in the system's temporary folder (its own folder may take no file)."""
    fd, saved = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".saved")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return saved


@hooks.command("list")
@config_option
def hooks_list(config_path: str | None) -> None:
    """Name, source, tables, ops, mode, ordering × concurrency (and `thread: loop`), failure policy,
    where and whether it imports, per configured hook."""
    cli = _cli()
    try:
        path = _need_config(config_path)
        settings = cli.load_config(path)
    except SidecarError as exc:
        _fail(exc)
    rows = [("NAME", "SOURCE", "TABLES", "OPS", "MODE", "ORDERING (CONCURRENCY)", "ON_FAILURE", "WHERE", "IMPORT")]
    broken = 0
    for name, cfg in settings.hooks.items():
        source = (f"path:{cfg.path}" if cfg.path else f"module:{cfg.module}" if cfg.module
                  else f"entry_point:{cfg.entry_point}")
        if cfg.function != "checkpoint":
            source += f" ({cfg.function})"
        try:
            load_one(settings, name, _base_dir(path))
            status = "ok"
        except (HookLoadError, ConfigError) as exc:
            status = f"FAILED: {scrub(str(exc))}"
            broken += 1
        rows.append((name, source, ",".join(cfg.tables) if cfg.tables else "*", ",".join(cfg.ops), cfg.mode,
                     f"{cfg.ordering} ({cfg.concurrency}{', thread loop' if cfg.thread == 'loop' else ''})",
                     cfg.on_failure, cfg.where or "-", status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    if broken:
        sys.exit(cli.EXIT_HOOK)


@dataclass
class Tally:
    calls: int = 0
    ok: int = 0
    failed: int = 0
    filtered: int = 0
    not_routed: int = 0
    other: int = 0
    last_error: str | None = None  # the last call's error if it raised (an unreachable database: every call alike)


@hooks.command("test")
@click.argument("name")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@config_option
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, callback=finite,
              type=click.FloatRange(min=0, min_open=True, max=86400),
              help="seconds one call may take (for a hook without its own timeout_s); then it counts as failed")
def hooks_test(name: str, file: str | None, config_path: str | None, timeout_s: float) -> None:
    """Run one configured hook on captured messages (FILE, JSON lines; default: the bundled examples,
    orders with transaction markers and a tombstone) and print each call's result. Exit 1 if a call failed.
    The hook runs for real, against the databases its config names: what it writes is written."""
    from sidecar.app import build_settings_databases
    from sidecar.decode import Decoder
    from sidecar.events import ChangeEvent
    from sidecar.logs import configure_logging, get_logger
    from sidecar.param import ParamFactory
    from sidecar.sources.file import read_messages
    from sidecar.where import Verdict, compile_where

    cli = _cli()
    try:
        path = _need_config(config_path)
        settings = cli.load_config(path)
        configure_logging(settings.log.level, settings.log.format)
        hook = load_one(settings, name, _base_dir(path))
        where = compile_where(name, hook.where) if hook.where else None
        databases = build_settings_databases(settings)
        factory = ParamFactory(settings.pipeline, databases, get_logger(),
                               source_tables={t: c.source_table for t, c in settings.tables.items()})
        with resources.as_file(resources.files("sidecar").joinpath(EXAMPLES)) as default:
            messages = list(read_messages(file or default))
    except ValueError as exc:  # a where that does not compile (config validation normally finds it first)
        _fail(ConfigError(str(exc)))
    except SidecarError as exc:
        _fail(exc)
    decoder = Decoder()
    tally = Tally()
    bound = hook.timeout_s or timeout_s
    # each call its own ctx.cancelled and deadline, as in a run (so never `thread: loop`, which has none)
    hook = replace(hook, timeout_s=bound, thread="workers")
    shown = counted(len(messages), "message")
    click.echo(f"hook {name} ({hook.origin}) on {file or 'the bundled examples'}: {shown}"
               + ("" if hook.mode == "record" else f" (mode {hook.mode}: one call per "
                  + ("transaction, rows without one in batches" if hook.mode == "transaction" else "batch") + ")"))
    if hook.mode != "record":
        _test_bulk(hook, messages, decoder, settings, databases, tally, bound)
    for n, raw in enumerate(messages if hook.mode == "record" else (), start=1):
        result = decoder.decode(raw, eager=True, key=False)
        if not isinstance(result, ChangeEvent):
            tally.other += 1
            click.echo(f"#{n:<4} {raw.topic}: {_describe(result)}, not for record hooks")
            continue
        head = f"#{n:<4} {result.table} {result.op} key={(result.after or result.before or {}).get('id', '-')}"
        if not hook.matches(result.table, result.op):
            tally.not_routed += 1
            click.echo(f"{head}  not routed (tables/ops)")
            continue
        param = factory.params(result, [hook])[0]
        if where is not None:
            verdict, why = where.test(param.record)
            if verdict is not Verdict.MATCH:
                tally.filtered += 1
                click.echo(f"{head}  filtered by where ({verdict.value}{': ' + why if why else ''})")
                continue
        _test_call(head, hook.fn, param, bound, tally)
    databases.dispose()
    click.echo(f"{counted(tally.calls, 'call')}: {tally.ok} ok, {tally.failed} failed; {tally.filtered} filtered "
               f"by where, {tally.not_routed} not routed, {counted(tally.other, 'other message')} (transaction "
               "markers, tombstones…)")
    if tally.failed:
        sys.exit(1)


def _test_call(head: str, fn: Any, param: Any, timeout_s: float, tally: Tally) -> None:
    """One call of `hooks test`: bounded, its outcome printed and counted."""
    from sidecar.control import Retry, SkipEvent
    from sidecar.execute import GaveUp, call_once, within

    tally.calls += 1
    previous, tally.last_error = tally.last_error, None
    started = time.perf_counter()
    try:
        within(lambda: call_once(fn, param), timeout_s, "hooks-test-call")
    except GaveUp:
        param.cancel()  # its own flag: the hook spec carries the bound, so the param has its own
        tally.failed += 1
        click.echo(f"{head}  FAILED: the call did not finish within {timeout_s:g} s (timeout_s, or --timeout); "
                   "given up on")
    except SystemExit as exc:  # a hook must not end the command (nor skip its summary)
        tally.failed += 1
        click.echo(f"{head}  FAILED SystemExit: the hook called sys.exit({scrub(repr(exc.code))})")
    except SkipEvent as exc:
        tally.ok += 1
        click.echo(f"{head}  skipped by the hook (SkipEvent{': ' + scrub(str(exc)) if str(exc) else ''})")
    except Retry as exc:
        tally.failed += 1
        click.echo(f"{head}  FAILED: the hook asked to retry (Retry, delay {exc.delay}s)")
    except Exception as exc:
        tally.failed += 1
        error = f"{type(exc).__name__}: {first_line(exc)}"
        click.echo(f"{head}  FAILED " + ("(the same error as the call above)" if error == previous else error))
        tally.last_error = error
    else:
        tally.ok += 1
        click.echo(f"{head}  ok {(time.perf_counter() - started) * 1000:.1f} ms")


def _test_bulk(hook: HookSpec, messages: list[Any], decoder: Any, settings: Settings, databases: Any,
               tally: Tally, timeout_s: float) -> None:
    """`hooks test` for a transaction or batch hook: the file's matching records grouped as a run
    groups them when the file is in stream order — a transaction's records (by its id, up to its
    END) in one call, other records (snapshot rows, no transaction metadata) in batches of up to
    `max_records` — each call printed once with the messages it holds. (The file is read in
    order; a run also waits for every event an END counts, across topics.)"""
    from sidecar.events import ChangeEvent, TransactionInfo, TransactionMarker
    from sidecar.param import ParamFactory
    from sidecar.testing import make_call_param
    from sidecar.where import Verdict, compile_where

    where = compile_where(hook.name, hook.where) if hook.where else None
    pending: list[tuple[int, ChangeEvent]] = []
    pending_tx: str | None = None
    later: list[str] = []  # lines of messages read while a call was open: printed after it, in number order

    def flush() -> None:
        nonlocal pending_tx
        if not pending:
            return
        events = [e for _, e in pending]
        first, last = pending[0][0], pending[-1][0]
        tx_id = pending_tx
        batch = None if tx_id is not None else TransactionInfo(id=None, committed_at=events[0].committed_at)
        param = make_call_param(events, pipeline=settings.pipeline, hook_name=hook.name, transaction=batch,
                                source_tables={t: c.source_table for t, c in settings.tables.items()},
                                source_db=databases.source, destination_db=databases.destination,
                                auxiliary_db=databases.auxiliary)
        ParamFactory.timed(param, timeout_s)  # its own ctx.cancelled and deadline, as in a run
        what = f"transaction {tx_id}" if tx_id is not None else "batch"
        span = f"#{first}" if first == last else f"#{first}-#{last}"
        head = f"{span:<11} {what}, {counted(len(events), 'record')}"
        if where is not None:  # tested on each record: the hook gets the ones that match
            keep = [i for i, r in enumerate(param.records) if where.test(r)[0] is Verdict.MATCH]
            tally.filtered += len(events) - len(keep)
            if len(keep) < len(events):
                head += f", {len(keep)} matching where"
            if keep and len(keep) < len(events):
                param = param.narrowed(keep)
        if where is not None and not keep:
            click.echo(f"{head}  filtered by where: no call")
        else:
            _test_call(head, hook.fn, param, timeout_s, tally)
        pending.clear()
        pending_tx = None
        for line in later:
            click.echo(line)
        later.clear()

    for n, raw in enumerate(messages, start=1):
        result = decoder.decode(raw, eager=True, key=False)
        if isinstance(result, TransactionMarker):
            tally.other += 1
            if result.status == "END" and pending and pending_tx == result.group_id:
                flush()
            continue
        if not isinstance(result, ChangeEvent):
            tally.other += 1
            line = f"#{n:<4} {raw.topic}: {_describe(result)}, not for the hook"
            if pending:
                later.append(line)
            else:
                click.echo(line)
            continue
        if not hook.matches(result.table, result.op):
            tally.not_routed += 1
            continue
        tx = result.transaction.group_id if hook.mode == "transaction" and result.transaction else None
        if pending and (pending_tx != tx or (tx is None and len(pending) >= hook.max_records)):
            flush()
        pending.append((n, result))
        pending_tx = tx
    flush()


def _describe(decoded: Any) -> str:
    from sidecar.events import DecodeFailure, TransactionMarker

    if isinstance(decoded, TransactionMarker):
        counts = f", {counted(decoded.event_count, 'event')}" if decoded.event_count is not None else ""
        return f"transaction {decoded.status} {decoded.id}{counts}"
    if isinstance(decoded, DecodeFailure):
        return f"undecodable ({decoded.reason}: {decoded.detail})"
    return type(decoded).__name__.lower()
