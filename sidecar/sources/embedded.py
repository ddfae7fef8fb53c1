"""Embedded source: the Debezium Embedded Engine in this process (pydbzengine, JPype).

The engine runs in its own thread and hands over one batch at a time through
`handleBatch`. Each batch is a checkpoint unit of its own (offsets = positions in the
batch); `commit` tells the batch how long its finished prefix is. The call blocks until
the whole batch is committed — that is the embedded backpressure — then marks every
record processed; when stopping or halted it marks only the committed prefix. The
engine's offsets (flushed after every batch: `offset.flush.interval.ms=0`) therefore never
pass an unfinished record, and a crash redelivers at most one batch (`max.batch.size`).
The offsets file is replaced whole on every flush (`SidecarOffsetStore`, compiled from
sidecar/java/) instead of Kafka's in-place rewrite, and an existing file that cannot be
read is refused at start (Kafka would read it as "no offsets").
Transaction hooks: a transaction may span batches. When the loop reports that everything
unfinished is held for a transaction still missing records (`release`), the handler
returns without marking the held tail; later handler calls mark deferred records, oldest
first, as they are committed, and mark no later record before them — so offsets still
never pass an unfinished record (a crash redelivers from the held transaction on).

The engine never fails silently: its completion callback's error (bad property, lost
database connection, wal_level, privileges…) becomes a SourceError out of the run loop,
with a hint for the known causes, and a non-zero exit.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from sidecar.errors import SourceError
from sidecar.events import RawMessage
from sidecar.health import Health
from sidecar.metrics import Metrics, NoMetrics
from sidecar.sources.engine_logs import EngineLogForwarder, write_log4j2_config
from sidecar.sources.java import JavaRuntime, find_java

HINTS = (
    ("wal_level", "set wal_level = logical in postgresql.conf and restart PostgreSQL"),
    ("replication", "grant the connector's user replication: ALTER ROLE <user> WITH REPLICATION"),
    ("REPLICATION", "grant the connector's user replication: ALTER ROLE <user> WITH REPLICATION"),
    ("password authentication failed", "check the database user and password in the connector config"),
    ("Connection refused", "the database is not reachable at the configured host/port"),
    ("binlog_format", "set binlog_format = ROW (SET GLOBAL binlog_format = 'ROW' and in my.cnf)"),
)

_STOP = object()
FILE_OFFSET_STORE = "org.apache.kafka.connect.storage.FileOffsetBackingStore"
ATOMIC_OFFSET_STORE = "SidecarOffsetStore"  # sidecar/java/SidecarOffsetStore.java: same file format, atomic


def offsets_unopenable(path: Path, error: str) -> SourceError:
    """The offsets file exists but cannot be opened (not its content: a permission, a directory)."""
    return SourceError(f"the embedded engine's offsets file {path} cannot be read ({error}): fix its path or "
                       "permissions; it is not deleted or replaced")


def offsets_unreadable(path: Path, reason: str) -> SourceError:
    """The offsets file's content cannot be read: what starting with it would do, and the choice."""
    return SourceError(
        f"the embedded engine's offsets file {path} cannot be read: {reason}. Started with it, the engine would "
        "silently snapshot again, or begin at its replication slot or the binlog's current position. Restore the "
        "file from a backup, or delete it to accept that start point (changes between the last good offsets and "
        "that point may not reach hooks)")


CRASHED_MID_WRITE = ", e.g. after a crash while it was written in place"


def offsets_path_refused(path: Path) -> SourceError | None:
    """What is wrong with the offsets path itself, before its content is read: a symbolic link
    (the sidecar's store replaces the file by a rename, which would replace the link and leave
    its target behind, and a dangling one — a volume not mounted? — would look like a first
    start), or a directory that cannot be searched (exit 5, not a traceback). None: fine."""
    try:
        if not path.is_symlink():
            path.exists()  # a directory without search permission raises here
            return None
        target = os.readlink(path)
    except OSError as exc:
        return offsets_unopenable(path, str(exc.strerror or exc))
    return offsets_unopenable(path, f"it is a symbolic link (to {target}); the offsets are saved by writing a new "
                              "file and renaming it over this path, which would replace the link. Set "
                              "`offsets_file` (or `state_dir`) to the real location instead")


def start_jvm(java: JavaRuntime, jvm_opts: Sequence[str]) -> None:
    """Start the one JVM of this process. `-Xrs` and interrupt=False leave SIGTERM/SIGINT to the
    sidecar (otherwise the JVM's handler would exit the process without finishing hooks)."""
    import jpype

    if jpype.isJVMStarted():
        return
    from sidecar.sources.embedded_classpath import jvm_classpath

    opts = ["-Xms128m", "-XX:+UseG1GC", "-Xrs", *jvm_opts]
    classpath = jvm_classpath()  # the Maven-resolved Debezium release of deploy/local/pom.xml (see there)
    try:
        jpype.startJVM(str(java.libjvm), *opts, classpath=classpath, interrupt=False)
    except Exception as exc:
        raise SourceError(f"cannot start the JVM from {java.home}: {exc}") from None


def _java_error(exc: BaseException) -> str:
    """`SimpleName: message` of a Java exception (JPype's str() repeats the class name)."""
    if hasattr(exc, "getClass"):
        java: Any = exc  # a JPype JException
        name, message = str(java.getClass().getSimpleName()), java.getMessage()
        return f"{name}: {message}" if message else name
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def hint_for(message: str) -> str:
    for needle, hint in HINTS:
        if needle in message:
            return f" — fix: {hint}"
    return ""


class _Batch:
    __slots__ = ("acked", "done", "messages", "unit")

    def __init__(self, unit: tuple[str, int], messages: list[RawMessage]) -> None:
        self.unit = unit
        self.messages = messages
        self.acked = 0  # the committed (finished) prefix, set by the loop's thread
        self.done = threading.Event()


class EmbeddedSource:
    """Source protocol over the embedded engine (one JVM per process)."""

    auto_units = True

    def __init__(
        self,
        properties: dict[str, str],
        logger: Any,
        state_dir: Path,
        java_home: str | None = None,
        jvm_opts: Sequence[str] = (),
        engine_log_level: str = "warn",
        poll_timeout_s: float = 0.2,
        batch_packer: bool = True,
        metrics: Metrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.log = logger
        self.metrics = metrics or NoMetrics()
        self.health = health or Health()
        self.properties = dict(properties)
        self.state_dir = state_dir
        self.poll_timeout_s = poll_timeout_s
        self._batches: queue.Queue[_Batch | object] = queue.Queue()
        self._deferred: deque[tuple[_Batch, list[Any], int]] = deque()  # engine thread only
        self._release = threading.Event()
        self.batches_deferred = 0
        self._open: dict[Hashable, _Batch] = {}  # handed to the loop, not yet fully committed
        self._seq = 0
        self._position = 0
        self._halted = False
        self.stopping = False
        self.exhausted = False
        self._unit: Hashable = ("embedded", 0)
        self.error: str | None = None
        self.ready = threading.Event()
        self.batches_handled = 0
        self.records_handled = 0
        self.crossing_seconds = 0.0  # time spent pulling records across JPype (reported by bench/)
        self.java: JavaRuntime = find_java(java_home)
        log_cfg, log_file = write_log4j2_config(state_dir, engine_log_level)
        self._forwarder = EngineLogForwarder(log_file, logger.bind(component="engine"))
        self._forwarder.start()
        self._helpers: Any = None  # the class loader of the sidecar's compiled Java helpers, if any
        self._engine = self._build([*list(jvm_opts), f"-Dlog4j2.configurationFile={log_cfg.as_posix()}"])
        from sidecar.sources.batch_packer import load_packer

        self._packer = load_packer(self._helpers, logger) if batch_packer else None
        self._thread = threading.Thread(target=self._run_engine, name="debezium-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ engine side
    def _build(self, jvm_opts: list[str]) -> Any:
        import jpype

        start_jvm(self.java, jvm_opts)
        from sidecar.sources.java_helpers import helper_loader

        self._helpers = helper_loader(self.state_dir, self.log)
        source = self

        @jpype.JImplements("io.debezium.engine.DebeziumEngine$ChangeConsumer")
        class Consumer:
            @jpype.JOverride  # type: ignore[untyped-decorator]  # JPype ships no type hints
            def handleBatch(self, records: Any, committer: Any) -> None:
                source._handle(records, committer)

            @jpype.JOverride  # type: ignore[untyped-decorator]  # JPype ships no type hints
            def supportsTombstoneEvents(self) -> bool:
                return True

        @jpype.JImplements("io.debezium.engine.DebeziumEngine$ConnectorCallback")
        class Started:
            @jpype.JOverride  # type: ignore[untyped-decorator]  # JPype ships no type hints
            def taskStarted(self) -> None:
                source.health.started = True
                source.log.info("embedded engine started")

        @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
        class Completion:
            @jpype.JOverride  # type: ignore[untyped-decorator]  # JPype ships no type hints
            def handle(self, success: bool, message: Any, error: Any) -> None:
                source._completed(bool(success), str(message), None if error is None else str(error))

        self._utf8 = jpype.JClass("java.nio.charset.StandardCharsets").UTF_8
        props = jpype.JClass("java.util.Properties")()
        for key, value in self._engine_properties().items():
            props.setProperty(key, value)
        engine_cls = jpype.JClass("io.debezium.engine.DebeziumEngine")
        json_format = jpype.JClass("io.debezium.engine.format.Json")
        self._keepalive = (Consumer(), Completion(), Started())
        # The engine loads its offset store (and connector) through the context class loader of
        # the thread that builds it: make the helpers' loader that (its parent is the current one).
        thread = jpype.JClass("java.lang.Thread").currentThread()
        previous = thread.getContextClassLoader()
        if self._helpers is not None:
            thread.setContextClassLoader(self._helpers)
        try:
            return (
                engine_cls.create(json_format)
                .using(props)
                .using(self._keepalive[1])
                .using(self._keepalive[2])
                .notifying(self._keepalive[0])
                .build()
            )
        finally:
            thread.setContextClassLoader(previous)

    def _engine_properties(self) -> dict[str, str]:
        """The engine's properties; Kafka's file offset store is replaced by the sidecar's atomic one."""
        props = dict(self.properties)
        if props.get("offset.storage") != FILE_OFFSET_STORE:
            return props  # another store (Kafka, JDBC…) chosen by the user: theirs to keep
        if props.get("offset.storage.file.filename"):
            self._check_offsets_file(Path(props["offset.storage.file.filename"]))
        if self._helpers is not None:
            props["offset.storage"] = ATOMIC_OFFSET_STORE
        else:
            self.log.warning(
                "the offsets file is written in place (Kafka's FileOffsetBackingStore): a kill -9 during a "
                "write can leave it empty, and the engine then restarts from its slot or binlog position, "
                "past records whose hooks never ran — run the sidecar with a JDK (not a JRE only) so it "
                "can use its atomic offset store", file=props.get("offset.storage.file.filename"))
        return props

    def _check_offsets_file(self, path: Path) -> None:
        """Refuse an offsets file that exists but cannot be read: Kafka's store would read an empty
        or cut file as "no offsets" and the engine would start over from its slot or binlog
        position without a word (what a crash during Kafka's in-place write leaves behind)."""
        import jpype

        refused = offsets_path_refused(path)
        if refused is not None:
            raise refused
        if not path.exists():
            return
        try:
            stream = jpype.JClass("org.apache.kafka.connect.util.SafeObjectInputStream")(
                jpype.JClass("java.nio.file.Files").newInputStream(jpype.JClass("java.io.File")(str(path)).toPath()))
            try:
                stream.readObject()
            finally:
                stream.close()
        except Exception as exc:
            cls = exc.getClass().getName() if hasattr(exc, "getClass") else type(exc).__name__
            if cls not in ("java.io.EOFException", "java.io.StreamCorruptedException"):
                raise offsets_unopenable(path, _java_error(exc)) from None  # a permission, a directory…
            reason = "it is empty" if path.stat().st_size == 0 else f"it is cut off or corrupt ({_java_error(exc)})"
            raise offsets_unreadable(path, reason + CRASHED_MID_WRITE) from None

    def _run_engine(self) -> None:
        try:
            self._engine.run()
        except Exception as exc:  # the engine's own thread: never let it die silently
            self._completed(False, f"engine crashed: {exc}", None)
        finally:
            self._batches.put(_STOP)

    def _completed(self, success: bool, message: str, error: str | None) -> None:
        if self.stopping:
            return
        detail = message if error is None or error in message else f"{message}: {error}"
        recent = "; ".join(self._forwarder.last_errors[-2:])
        if recent and recent not in detail:
            detail = f"{detail} (engine log: {recent})"
        self.error = f"the Debezium engine stopped: {detail}{hint_for(detail)}"
        self.metrics.source_failed("engine")
        self.health.dependency("engine", False)
        self.log.error("embedded engine stopped", success=success, error=self.error)
        self._batches.put(_STOP)

    def _handle(self, records: Any, committer: Any) -> None:
        """Engine thread: hand the batch to the run loop; acknowledge only when all of it finished."""
        started = time.perf_counter()
        utf8 = self._utf8
        try:
            msgs = self._packer(records) if self._packer is not None else self._one_by_one(records, utf8)
        except Exception as exc:
            self._completed(False, f"could not read a batch from the engine: {exc}", None)
            return
        self.crossing_seconds += time.perf_counter() - started
        if not msgs:
            committer.markBatchFinished()
            return
        self._deliver(msgs, records, committer)

    @staticmethod
    def _one_by_one(records: Any, utf8: Any) -> list[RawMessage]:
        # Java encodes to UTF-8 and Python copies the byte[] in one go: cheaper than
        # converting each java.lang.String to str (measured: 15 vs 22 µs for a 3 kB value).
        return [
            RawMessage(
                topic=str(r.destination()),
                partition=None,
                offset=None,
                key=None if (k := r.key()) is None else bytes(k.getBytes(utf8)),
                value=None if (v := r.value()) is None else bytes(v.getBytes(utf8)),
            )
            for r in records
        ]

    def _mark_deferred(self, committer: Any) -> bool:
        """Engine thread: mark the committed prefix of deferred batches, oldest first; True when
        none is left (only then may a later record be marked: offsets only move forward)."""
        deferred = self._deferred
        while deferred:
            batch, records, marked = deferred[0]
            upto = min(batch.acked, len(records))
            for r in records[marked:upto]:
                committer.markProcessed(r)
            if upto < len(records):
                deferred[0] = (batch, records, upto)
                return False
            deferred.popleft()
        return True

    def release(self) -> None:
        """Loop thread: records of the current batch are held for a transaction whose rest is in
        later batches: let the engine go on without marking them (marked once committed)."""
        self._release.set()

    def _deliver(self, msgs: list[RawMessage], records: Any, committer: Any) -> None:
        self._seq += 1
        batch = _Batch(("embedded", self._seq), msgs)
        self._batches.put(batch)
        while True:
            done = batch.done.wait(0.05 if self._deferred else 0.2)
            clear = self._mark_deferred(committer)
            if done and clear:
                break
            if self.stopping or self._halted:
                # Acknowledge only the committed prefix (hooks finish records out of order);
                # the rest comes again after a restart.
                if clear:
                    for r in list(records)[: batch.acked]:
                        committer.markProcessed(r)
                committer.markBatchFinished()
                return
            if self._release.is_set():
                # A transaction spans engine batches: hand this batch's unmarked tail over to
                # later handler calls, which mark it (in order) once its hooks finished.
                self._release.clear()
                self._deferred.append((batch, list(records), 0))
                self._mark_deferred(committer)
                committer.markBatchFinished()
                self.batches_deferred += 1
                self.log.debug("engine batch deferred: its records wait for a transaction in later batches",
                               acked=batch.acked, records=len(msgs), deferred=len(self._deferred))
                return
        for r in records:
            committer.markProcessed(r)
        committer.markBatchFinished()
        self.metrics.committed()
        self.health.started = True
        self.batches_handled += 1
        self.records_handled += len(msgs)
        self.ready.set()

    # ------------------------------------------------------------------ Source protocol
    def poll(self, timeout_s: float) -> Sequence[RawMessage]:
        if self._halted:
            threading.Event().wait(timeout_s)  # nothing more is read after a halt
            return []
        try:
            item = self._batches.get(timeout=timeout_s) if timeout_s > 0 else self._batches.get_nowait()
        except queue.Empty:
            return []
        if item is _STOP:
            self.exhausted = True
            if self.error and not self.stopping:
                raise SourceError(self.error)
            return []
        assert isinstance(item, _Batch)
        self._open[item.unit] = item
        self._position = 0
        self._unit = item.unit
        return item.messages

    def locate(self, raw: RawMessage) -> tuple[Hashable, int]:
        # The loop locates every message of a batch once, in order, before the next poll.
        position = self._position
        self._position += 1
        return self._unit, position

    def pause(self) -> None:
        pass  # the engine waits in handleBatch until its batch is committed

    def resume(self) -> None:
        pass

    def halt(self, unit: Hashable) -> None:
        self._halted = True
        self.health.halted = True
        self.log.error("embedded source halted: this batch is acknowledged only up to the halted record "
                       "and nothing after it is read")

    def commit(self, offsets: dict[Hashable, int]) -> bool:
        for unit, position in offsets.items():
            batch = self._open.get(unit)
            if batch is None:
                continue
            batch.acked = position
            if position >= len(batch.messages):
                del self._open[unit]
                batch.done.set()
        return True

    def close(self) -> None:
        self.stopping = True
        try:
            self._engine.close()
        except Exception as exc:
            self.log.warning("error while closing the engine", error=str(exc))
        self._thread.join(timeout=30)
        self._forwarder.stop()
        self._forwarder.join(timeout=2)
