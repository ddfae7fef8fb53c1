"""The embedded engine's Java logging, routed into the sidecar's structured logs.

log4j2 (inside the JVM) writes one escaped line per event to a file in the state
directory; a thread follows that file and re-emits each line through structlog with the
Java level, logger and message. Nothing goes to a `logs/` folder of the working directory.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

LOG4J2_TEMPLATE = """\
# Written by checkpoint-sidecar: the Debezium engine's logs, one line per event, for the sidecar to re-log.
status = error
rootLogger.level = {level}
appender.f.type = File
appender.f.name = F
appender.f.fileName = {path}
appender.f.append = true
appender.f.immediateFlush = true
appender.f.layout.type = PatternLayout
appender.f.layout.pattern = %p\\t%c\\t%enc{{%m}}{{CRLF}}\\t%enc{{%ex{{8}}}}{{CRLF}}%n
rootLogger.appenderRef.f.ref = F
"""

_LEVELS = {"TRACE": "debug", "DEBUG": "debug", "INFO": "info", "WARN": "warning", "ERROR": "error", "FATAL": "error"}


def write_log4j2_config(state_dir: Path, level: str) -> tuple[Path, Path]:
    """Return (config file, log file) for `-Dlog4j2.configurationFile`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_file = state_dir / "engine.log"
    cfg = state_dir / "log4j2-engine.properties"
    cfg.write_text(LOG4J2_TEMPLATE.format(level=level.upper(), path=log_file.as_posix()))
    return cfg, log_file


class EngineLogForwarder(threading.Thread):
    """Follows the engine log file and re-logs each line; keeps the last errors for failure messages."""

    def __init__(self, path: Path, logger: Any) -> None:
        super().__init__(name="engine-log-forwarder", daemon=True)
        self.path = path
        self.log = logger
        self.stopping = threading.Event()
        self.last_errors: list[str] = []

    def run(self) -> None:
        while not self.path.exists() and not self.stopping.is_set():
            time.sleep(0.1)
        try:
            handle = self.path.open("r", encoding="utf-8", errors="replace")
        except OSError:
            return
        with handle:
            handle.seek(0, 2)  # only what this process's engine writes from now on
            pending = ""
            while True:
                chunk = handle.readline()
                if chunk:
                    pending += chunk
                    if pending.endswith("\n"):
                        self._emit(pending.rstrip("\n"))
                        pending = ""
                    continue
                if self.stopping.is_set():
                    return
                time.sleep(0.05)

    def _emit(self, line: str) -> None:
        parts = line.split("\t", 3)
        if len(parts) < 3:
            self.log.info("engine", message=line)
            return
        level, name, message = parts[0], parts[1], parts[2].replace("\\r\\n", "\n").replace("\\n", "\n")
        exc = parts[3].replace("\\r\\n", "\n").replace("\\n", "\n").strip() if len(parts) > 3 else ""
        method = _LEVELS.get(level, "info")
        fields: dict[str, Any] = {"logger": name, "source": "debezium"}
        if exc:
            fields["java_exception"] = exc
        if method == "error":
            self.last_errors = [*self.last_errors[-4:], message]
        getattr(self.log, method)(message, **fields)

    def stop(self) -> None:
        self.stopping.set()
