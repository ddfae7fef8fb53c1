"""A call that ends while the loop dispatches a fetched batch lets the hook's next call start
at once, not after the whole batch (a serial hook behind a busy loop)."""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

from sidecar.checkpoint import Checkpoint
from sidecar.databases import Databases
from sidecar.decode import Decoder
from sidecar.dispatch import Dispatcher
from sidecar.events import RawMessage
from sidecar.hooks import HookSpec
from sidecar.loop import run_loop
from sidecar.param import ParamFactory
from sidecar.testing import MemorySource
from tests.pipeline.test_inline_calls import messages

BATCH = 50
DECODE_S = 0.002  # loop work per message: a batch takes 100 ms to dispatch


class SlowDecoder(Decoder):
    def __init__(self) -> None:
        super().__init__()
        self.decoded = 0

    def decode(self, raw: RawMessage) -> Any:
        time.sleep(DECODE_S)
        self.decoded += 1
        return super().decode(raw)


def test_a_serial_hooks_next_call_starts_while_the_batch_is_still_dispatched() -> None:
    msgs = messages(2 * BATCH)
    decoder = SlowDecoder()
    at_call: dict[int, int] = {}  # record id → messages decoded when its call started
    order: list[int] = []

    def hook(p: Any) -> None:
        order.append(p.record["id"])
        at_call[p.record["id"]] = decoder.decoded

    source = MemorySource(msgs, batch_size=BATCH)
    log = structlog.get_logger()
    cp = Checkpoint(source, 0.0, 1)
    d = Dispatcher([HookSpec("serial", hook, "p")], ParamFactory("p", Databases(), log), cp, log,
                   inline_below_s=0.0)  # every call on a worker, one at a time (ordering: partition)
    try:
        run_loop(source, decoder, d, cp, threading.Event(), until_exhausted=True, shutdown_grace_s=1)
    finally:
        d.close()
    assert order == list(range(2 * BATCH))  # each record once, in offset order
    assert source.committed[(msgs[0].topic, 0)] == 2 * BATCH
    # The first batch's calls (~ms) end early in the second batch's 100 ms of dispatching: the
    # second batch's first records are called then, long before its last record is decoded.
    second = [at_call[i] for i in range(BATCH, 2 * BATCH)]
    assert min(second) < 2 * BATCH - 10, second


def test_a_mid_batch_service_keeps_the_turns_inline_budget() -> None:
    """Fast hooks on the loop's thread get INLINE_TURN_S per loop turn; a service in the middle of a
    batch must not hand them a fresh budget (the loop would poll less often than documented)."""
    source = MemorySource(messages(1), batch_size=BATCH)
    log = structlog.get_logger()
    d = Dispatcher([HookSpec("h", lambda p: None, "p")], ParamFactory("p", Databases(), log),
                   Checkpoint(source, 0.0, 1), log)
    try:
        d.service()
        budget = d._inline_until
        time.sleep(0.01)
        d.service(new_turn=False)
        assert d._inline_until == budget
        d.service()
        assert d._inline_until > budget
    finally:
        d.close()
