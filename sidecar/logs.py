"""structlog setup: JSON lines when not on a TTY, readable console on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        processors.append(structlog.processors.dict_tracebacks)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(_LEVELS[level], logging.WARNING), stream=sys.stderr)


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger("checkpoint-sidecar").bind(**bind)


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
            bound = self._bound = self._base.bind(**self._ctx)
        return getattr(bound, name)

    def __repr__(self) -> str:
        return f"<LazyLogger {self._ctx!r}>"
