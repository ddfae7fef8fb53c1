"""structlog setup: JSON lines when not on a TTY, readable console on a TTY.

In every format exceptions are rendered without frame locals (they hold connection strings
and passwords: psycopg's conninfo, PyMySQL's password) and every line passes the secret
scrubber (`sidecar.secrets`) just before it is rendered; stdlib logging lines too.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from sidecar.secrets import REDACTOR

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


# Frame locals never: they hold connection strings. Same frames and messages otherwise.
dict_tracebacks_without_locals = structlog.processors.ExceptionRenderer(
    ExceptionDictTransformer(show_locals=False, use_rich=False)
)


def scrub_secrets(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: every registered secret in any value becomes ***."""
    scrubbed: dict[str, Any] = REDACTOR.scrub_value(event)
    return scrubbed


def scrub_rendered(logger: Any, method: str, line: Any) -> Any:
    """After the renderer: what objects' reprs put into the line is scrubbed too."""
    return REDACTOR.scrub(line) if isinstance(line, str) else line


class ScrubbingFormatter(logging.Formatter):
    """stdlib logging (third-party libraries) through the same scrubber."""

    def format(self, record: logging.LogRecord) -> str:
        return REDACTOR.scrub(super().format(record))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (like structlog's lines)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def processors_for(use_json: bool) -> list[Any]:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        processors += [dict_tracebacks_without_locals, scrub_secrets, structlog.processors.JSONRenderer(),
                       scrub_rendered]
    else:
        # The console renderer would format exceptions itself (with rich/better-exceptions:
        # with locals); format them as plain text first, then scrub.
        processors += [structlog.processors.format_exc_info, scrub_secrets,
                       structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
                       scrub_rendered]
    return processors


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    structlog.configure(
        processors=processors_for(use_json),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.setLevel(max(_LEVELS[level], logging.WARNING))
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(ScrubbingFormatter(logging.BASIC_FORMAT))
        root.addHandler(handler)


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger("checkpoint-sidecar").bind(**bind)


_METHOD_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
                  "error": logging.ERROR, "exception": logging.ERROR, "critical": logging.CRITICAL,
                  "fatal": logging.CRITICAL}


def _discard(event: Any = None, *args: Any, **kw: Any) -> None:
    """A filtered-out level's log call (as structlog's own filtered methods: returns None)."""


class LazyLogger:
    """A logger bound to a context only when a hook actually logs.

    Every record gets a logger bound to pipeline, hook, table, op and event_id; most hooks
    log rarely, so the structlog bind (a few µs) is deferred to the first log call.
    """

    __slots__ = ("_base", "_bound", "_ctx")

    def __init__(self, base: Any, ctx: dict[str, Any]) -> None:
        self._base = base
        self._ctx = ctx
        self._bound: Any = None

    def bind(self, **kw: Any) -> LazyLogger:
        return LazyLogger(self._base, {**self._ctx, **kw})

    def __getattr__(self, name: str) -> Any:
        bound = self._bound
        if bound is None:
            # A level the configuration filters out: nothing to bind (the bind costs ~14 µs).
            level = _METHOD_LEVELS.get(name)
            if level is not None:
                enabled = getattr(self._base, "is_enabled_for", None)
                if enabled is not None and not enabled(level):
                    return _discard
            bound = self._bound = self._base.bind(**self._ctx)
        return getattr(bound, name)

    def __repr__(self) -> str:
        return f"<LazyLogger {self._ctx!r}>"
