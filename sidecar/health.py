"""Liveness and readiness, as Kubernetes probes want them.

- live: the main loop's heartbeat is recent — it keeps ticking while backing off, waiting
  for a broker or database, or halted by policy; inside a synchronous offset commit (which
  librdkafka bounds by session.timeout.ms when the coordinator is gone) it counts as live up
  to that bound. It is false only when the loop itself is stuck (no tick for `loop_stall_s`),
  a blocking call runs past its bound, a hook call runs longer than `hook_timeout_s`, or
  more timed-out calls than allowed have not returned (abandoned calls pile up). Never tied to the
  broker or databases (an outage must not restart every pod).
- ready: false until the first partition assignment (an empty one counts) or, embedded,
  the engine's start; while a required dependency is down; while halted; while shutting down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Health:
    loop_stall_s: float = 60.0
    hook_timeout_s: float = 300.0
    last_beat: float = field(default_factory=time.monotonic)
    started: bool = False
    halted: bool = False
    shutting_down: bool = False
    busy: tuple[str, float, float] | None = None  # (what, started, limit_s) of a bounded call in progress
    oldest_call: tuple[str, float] | None = None  # (hook, started) of the longest-running hook call
    abandoned_calls: int = 0
    max_abandoned_calls: int = 16
    down: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def call_begin(self, what: str, limit_s: float) -> None:
        """The loop is inside a call that cannot tick, live until `limit_s`: a hook
        (`hook_timeout_s`) or a synchronous offset commit (librdkafka gives up after
        session.timeout.ms when the coordinator is gone)."""
        self.busy = (what, time.monotonic(), limit_s)

    def call_end(self) -> None:
        self.busy = None
        self.beat()

    def calls(self, oldest: tuple[str, float] | None, abandoned: int, max_abandoned: int) -> None:
        """The dispatcher's view of hook calls running on workers (updated every loop turn)."""
        self.oldest_call = oldest
        self.abandoned_calls = abandoned
        self.max_abandoned_calls = max_abandoned

    def dependency(self, name: str, up: bool) -> bool:
        """Record a dependency's state; True when that changed it."""
        with self._lock:
            was_up = name not in self.down
            if up:
                self.down.discard(name)
            else:
                self.down.add(name)
            return was_up != up

    def live(self) -> tuple[bool, str]:
        now = time.monotonic()
        busy = self.busy
        if busy is not None:
            what, started, limit_s = busy
            if now - started > limit_s:
                return False, f"{what} running for {now - started:.0f}s (limit {limit_s:.0f}s)"
        call = self.oldest_call
        if call is not None and now - call[1] > self.hook_timeout_s:
            return False, f"hook {call[0]} running for {now - call[1]:.0f}s (limit {self.hook_timeout_s:.0f}s)"
        if self.abandoned_calls > self.max_abandoned_calls:
            return False, (f"{self.abandoned_calls} timed-out hook calls have not returned "
                           f"(limit {self.max_abandoned_calls})")
        if busy is not None:  # (the loop cannot tick inside it: no stall check)
            return True, f"{busy[0]} running"
        idle = now - self.last_beat
        if idle > self.loop_stall_s:
            return False, f"main loop has not ticked for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.shutting_down:
            return False, "shutting down"
        if not self.started:
            return False, "waiting for the first partition assignment / engine start"
        if self.halted:
            return False, "halted by policy"
        with self._lock:
            down = sorted(self.down)
        if down:
            return False, "dependency down: " + ", ".join(down)
        return True, "ok"
