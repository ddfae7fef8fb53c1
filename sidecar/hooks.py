"""Loading user hooks: a file path or module, a function name, table/op filters → `HookSpec`."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.errors import HookLoadError
from sidecar.events import DEFAULT_OPS

if TYPE_CHECKING:
    from sidecar.config import HookConfig

HookFn = Callable[[Any], Any]


@dataclass(frozen=True)
class HookSpec:
    """A loaded hook: its name (the metric/log label), the callable and what it listens to."""

    name: str
    fn: HookFn
    origin: str
    tables: frozenset[str] | None = None
    ops: frozenset[str] = frozenset(DEFAULT_OPS)
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    multiplier: float = 2.0
    max_attempts: int | None = 5
    timeout_s: float | None = None
    on_failure: str = "dead_letter"
    ordering: str = "partition"  # partition | key | none
    concurrency: int = 1
    is_async: bool = False  # `async def` (or an object with `async def __call__`): runs on the event loop
    where: str | None = None  # row filter (sidecar.where), applied by the Router
    mode: str = "record"  # record | transaction | batch
    max_records: int = 500  # batch calls
    max_wait_ms: int = 200  # batch calls
    thread: str = "workers"  # workers | loop (calls on the loop's thread: serial, no timeout, not async)

    def __post_init__(self) -> None:
        if self.mode not in ("record", "transaction", "batch"):
            raise HookLoadError(f"hook {self.name}: mode must be record, transaction or batch (not {self.mode!r})")
        if self.mode != "record" and self.ordering == "key":
            raise HookLoadError(
                f"hook {self.name}: mode {self.mode} calls the hook with many records at once, so ordering key "
                "does not apply; use ordering partition (one call at a time, in commit order) or none"
            )
        if self.thread not in ("workers", "loop"):
            raise HookLoadError(f"hook {self.name}: thread must be workers or loop (not {self.thread!r})")
        if self.thread == "loop" and self.is_async:
            raise HookLoadError(
                f"hook {self.name} ({self.origin}) is async: thread: loop takes plain functions only (async hooks "
                "run on the event loop's thread); remove thread: loop"
            )
        if self.thread == "loop" and (self.concurrency != 1 or self.timeout_s is not None):
            raise HookLoadError(
                f"hook {self.name}: thread: loop runs one call at a time on the loop's thread, where a call cannot "
                f"be given up on: it needs concurrency 1 (is {self.concurrency}) and no timeout_s (is "
                f"{self.timeout_s}); or set thread: workers"
            )

    @classmethod
    def from_config(cls, name: str, fn: HookFn, origin: str, cfg: HookConfig) -> HookSpec:
        """The one place config options become a hook's runtime options."""
        return cls(
            name=name,
            fn=fn,
            origin=origin,
            tables=frozenset(cfg.tables) if cfg.tables is not None else None,
            ops=frozenset(cfg.ops),
            initial_backoff_s=cfg.retry.initial_backoff_s,
            max_backoff_s=cfg.retry.max_backoff_s,
            multiplier=cfg.retry.multiplier,
            max_attempts=cfg.retry.max_attempts,
            timeout_s=cfg.timeout_s,
            on_failure=cfg.on_failure,
            ordering=cfg.ordering,
            concurrency=cfg.concurrency,
            is_async=is_async_callable(fn),
            where=cfg.where,
            mode=cfg.mode,
            max_records=cfg.max_records,
            max_wait_ms=cfg.max_wait_ms,
            thread=cfg.thread,
        )

    def matches(self, table: str, op: str) -> bool:
        return op in self.ops and (self.tables is None or table in self.tables)


def split_target(target: str, default_function: str = "checkpoint") -> tuple[str, str]:
    """`hooks/x.py:fn` → ("hooks/x.py", "fn"); `pkg.mod` → ("pkg.mod", default)."""
    head, sep, tail = target.rpartition(":")
    if sep and tail.isidentifier() and head:
        return head, tail
    return target, default_function


def _import_error(origin: str, exc: BaseException) -> HookLoadError:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(origin.split("/")[-1])]
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}"
    elif frames:
        where = f"{frames[-1].filename}:{frames[-1].lineno}"
    else:
        where = origin
    return HookLoadError(f"hook {origin} failed to import at {where}: {type(exc).__name__}: {exc}")


def resolve_hook_path(path: str, base_dir: Path | None) -> Path:
    """A relative path is looked up next to the config file first, then in the working directory.

    The config's folder comes first so that hooks mounted beside it (a ConfigMap) are never
    shadowed by same-named files in the image's working directory.
    """
    file = Path(path)
    if file.is_absolute() or base_dir is None:
        return file
    beside = base_dir / file
    return beside if beside.exists() or not file.exists() else file


def _load_module_from_path(path: str, base_dir: Path | None) -> Any:
    file = resolve_hook_path(path, base_dir)
    if not file.is_file():
        raise HookLoadError(f"hook file {path} does not exist (looked in {file.resolve()})")
    mod_name = f"sidecar_hook_{file.stem}_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    if spec is None or spec.loader is None:
        raise HookLoadError(f"hook file {path} cannot be loaded as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise _import_error(str(file), exc) from None
    return module


def is_async_callable(fn: Any) -> bool:
    """`async def`, or an object whose `__call__` is `async def`."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004  # the bound __call__ itself is what we inspect
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def _check_signature(fn: Any, origin: str, function: str) -> None:
    if not callable(fn):
        raise HookLoadError(f"hook {origin}: {function} is not a function (it is a {type(fn).__name__})")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    required_kwonly = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    ok = (len(required) <= 1 and (positional or has_varargs)) and not required_kwonly
    if not ok:
        try:
            line = inspect.getsourcelines(fn)[1]
            where = f"{inspect.getsourcefile(fn)}:{line}"
        except (OSError, TypeError):
            where = origin
        raise HookLoadError(
            f"hook {origin}: {function}{sig} at {where} has the wrong signature; "
            f"expected def {function}(param: CheckpointParam) -> None (one positional parameter)"
        )
    _refuse_generator(fn, origin, function)


def _refuse_generator(fn: Any, origin: str, function: str) -> None:
    """A generator function's call returns an unstarted generator: its body would never run."""
    call = fn if inspect.isroutine(fn) else type(fn).__call__
    if inspect.isasyncgenfunction(call) or inspect.isasyncgenfunction(fn):
        kind = "an async generator function (async def with yield)"
    elif inspect.isgeneratorfunction(call) or inspect.isgeneratorfunction(fn):
        kind = "a generator function (it contains yield)"
    else:
        return
    raise HookLoadError(
        f"hook {origin}: {function} is {kind}; calling it would only create a generator and never run "
        f"its body. Remove the yield: def {function}(param: CheckpointParam) -> None"
    )


def load_hook(
    name: str,
    *,
    path: str | None = None,
    module: str | None = None,
    function: str = "checkpoint",
    base_dir: Path | None = None,
    config: HookConfig | None = None,
    entry_point: str | None = None,
) -> HookSpec:
    """Import a hook now, so a broken one stops start-up with file, line and reason.
    `config` gives its options (tables, ops, retry, ordering…); None: the defaults."""
    entry_point = entry_point or (config.entry_point if config is not None else None)
    if entry_point:
        module = _entry_point_target(name, entry_point)
    if path:
        target, function = split_target(path, function)
        mod = _load_module_from_path(target, base_dir)
        origin = target
    elif module:
        target, function = split_target(module, function)
        origin = target
        try:
            mod = importlib.import_module(target)
        except Exception as exc:
            raise _import_error(target.replace(".", "/") + ".py", exc) from None
    else:
        raise HookLoadError(f"hook {name}: give a path or a module")
    fn = getattr(mod, function, None)
    if fn is None:
        available = sorted(n for n, v in vars(mod).items() if callable(v) and not n.startswith("_"))
        raise HookLoadError(
            f"hook {origin} has no function {function!r} (functions there: {', '.join(available) or 'none'}); "
            f"define def {function}(param) or set the hook's function"
        )
    _check_signature(fn, origin, function)
    if config is None:
        from sidecar.config import HookConfig

        if entry_point:
            config = HookConfig(entry_point=entry_point)
        else:
            config = HookConfig(path=path) if path else HookConfig(module=module)
    return HookSpec.from_config(name, fn, f"{origin}:{function}", config)


ENTRY_POINT_GROUP = "checkpoint_sidecar.hooks"


def _entry_point_target(name: str, entry_point: str) -> str:
    """An installed package's hook, `[project.entry-points."checkpoint_sidecar.hooks"] NAME = "pkg.mod:fn"`,
    as the module:function target it names."""
    from importlib.metadata import entry_points

    found = entry_points(group=ENTRY_POINT_GROUP, name=entry_point)
    if not found:
        known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        raise HookLoadError(
            f"hook {name}: no entry point {entry_point!r} in group {ENTRY_POINT_GROUP} "
            f"(installed: {', '.join(known) or 'none'}); is the package that provides it installed?"
        )
    return next(iter(found)).value
