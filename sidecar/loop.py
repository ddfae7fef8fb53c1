"""The run loop: poll → decode → dispatch → checkpoint, until stopped or exhausted.

Hooks run on workers (`dispatch.py`; fast ones on this thread, bounded per turn); this thread
feeds them, applies what finished and commits. Past `soft_max_in_flight` unfinished records,
while calls run and others are ready behind them (none slow or stuck: `Dispatcher.waiting`),
the loop takes nothing from the source (nothing is paused: Kafka keeps what librdkafka
prefetched) until half as many are in flight, polling once every `SOFT_HOLD_S` meanwhile; past
`max_in_flight` the source is paused (Kafka: still polled, so the member stays in the group;
embedded: the engine waits) and resumed at half — not while every record in flight is held for an
incomplete transaction, unless a connector's first one waits for its END and that connector's
transaction topic (Kafka) has unread messages.
A finite source (replay) that ends calls what open batches and transactions hold. On stop:
no new call starts, running calls get `shutdown_grace_s`, the finished prefix is committed;
the rest is redelivered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence

from sidecar.checkpoint import Checkpoint
from sidecar.decode import Decoder
from sidecar.dispatch import Dispatcher, DispatchStats
from sidecar.events import RawMessage
from sidecar.sources import Source

IDLE_WAIT_S = 0.005
"""With calls running and nothing fetched: how long to wait for a run of calls to end or a call to
fail (successes inside runs going on do not end the wait; they are applied when it ends)."""

YIELD_S = 20e-6
"""How long the loop thread sleeps to hand the interpreter to a hook thread (`yield_every_records`).
A real sleep, not `sleep(0)`: a waiting thread must be woken and scheduled before it can take the
interpreter, and a thread that only releases it for a moment takes it back first."""

SOFT_HOLD_S = 0.5
"""Past `soft_max_in_flight`: the longest the loop goes without polling the source (rebalance
callbacks run in the poll; each poll past it takes one batch, so slow hooks still reach
`max_in_flight`, where the source is paused and polled on every turn)."""

YIELD_BACKLOG = 1000
"""The loop sleeps (`yield_every_records`) only while at least this many records are in flight: it
is then ahead of the calls. With fewer, the calls wait for the intake and it must not slow down."""


def run_loop(
    source: Source,
    decoder: Decoder,
    dispatcher: Dispatcher,
    checkpoint: Checkpoint,
    stop: threading.Event,
    *,
    poll_timeout_s: float = 0.2,
    max_in_flight: int = 10_000,
    shutdown_grace_s: float = 30.0,
    until_exhausted: bool = False,
    yield_every_records: int = 0,
    soft_max_in_flight: int = 0,
) -> DispatchStats:
    health = dispatcher.health
    paused = False
    release = getattr(source, "release", None)
    markers_behind: Callable[[Collection[str]], bool] | None = getattr(source, "markers_behind", None)
    begin, dispatch = checkpoint.begin, dispatcher.dispatch
    decode = decoder.decode_whole if dispatcher.reads_every_field else decoder.decode
    too_large = dispatcher.too_large if dispatcher.max_message_bytes is not None else None
    no_results = dispatcher.no_results
    # Hook threads give the interpreter back at every database round trip and need it again when
    # the answer comes; the loop thread, taking in a backlog, holds it up to a whole switch
    # interval each time. Sleeping briefly every few records while calls run on workers and the
    # intake is ahead bounds that wait: the calls (the pipeline's pace) go first. Off by default
    # (`dispatch.yield_every_records` 0) since the loop wakes only at run ends: measured slower.
    countdown = yield_every_records
    # The loop's records in flight are its working set: every one is decoded, held, called and
    # freed by this thread. Taking in far ahead of the hooks (up to max_in_flight) makes it larger
    # than the CPU caches; holding back while calls wait (`soft_max_in_flight`) keeps it small —
    # measured: the loop's CPU per record 34 → 26 µs, the process's CPU −10 %. Pausing
    # instead would cost more than it saves: librdkafka drops a paused partition's prefetched
    # messages and fetches them again on resume.
    holding = False
    hold_until = 0.0
    # While the loop holds back or the source is paused, a transaction's END or events may sit
    # unread in the source: that time does not count toward the END timeout (measured before: a
    # hook-bound backlog timed out transactions whose END was in the source, and called them in
    # two pieces). Kafka mode polls while paused: its marker topics are still read.
    reading = (True, True)  # (polled, data read)
    while not stop.is_set():
        health.beat()
        dispatcher.service()
        # Commit what that just finished before the poll below may block: the embedded engine
        # hands over its next batch only once this one is committed, so a finished batch left
        # uncommitted here stalled the pipeline for a whole poll_timeout_s.
        checkpoint.maybe_commit()
        # Records held for incomplete transactions (nothing else runnable) do not keep the source
        # paused: the messages that complete them are still to come. Except while a connector's
        # first transaction waits for its END and that connector's transaction topic (Kafka mode:
        # never paused) has unread messages: the END may be there, and a data backlog fetched
        # first was otherwise taken in whole (seen: 1,200 records past a max_in_flight of 100). A
        # transaction whose END came waits only for data: never paused for it (its END timeout
        # would not run).
        starved = dispatcher.starved
        if starved and release is not None:
            release()  # embedded: a transaction spans engine batches; let the engine go on
        in_flight = checkpoint.in_flight
        over = in_flight >= (max_in_flight // 2 if paused else max_in_flight) and (
            not starved
            or (markers_behind is not None and bool(scopes := dispatcher.awaiting_end()) and markers_behind(scopes)))
        if paused != over:
            paused = not paused
            source.pause() if paused else source.resume()
        hold = False
        if soft_max_in_flight and not paused:
            # (the clock is read only past the bound, not on every turn below it)
            if (in_flight >= (soft_max_in_flight // 2 if holding else soft_max_in_flight)
                    and dispatcher.waiting(now := time.monotonic())):
                if not holding:
                    holding, hold_until = True, now + SOFT_HOLD_S
                hold = now < hold_until
                if not hold:  # held long enough: poll once (rebalances, liveness), then hold again
                    hold_until = now + SOFT_HOLD_S
            else:
                holding = False
        polled = not (hold or (paused and source.auto_units))
        if reading != (now_reading := (polled, polled and not paused)):
            reading = now_reading
            dispatcher.intake(*reading)
        batch: Sequence[RawMessage]
        if not polled:
            batch = ()
        elif dispatcher.busy or paused:
            batch = source.poll(0.0)
        else:
            # Nothing runs: wait on the source, but not past what is due (a batch hook's
            # max_wait_ms, a retry): the embedded engine hands nothing over while it waits for the
            # commit of records that a batch call still holds.
            due = dispatcher.next_due()
            batch = source.poll(poll_timeout_s if due is None else
                                min(poll_timeout_s, max(0.0, due - time.monotonic())))
        if not batch:
            if until_exhausted and source.exhausted:
                dispatcher.drain()  # open batches and transactions: the input ends here
                if not dispatcher.pending():
                    break
            if dispatcher.busy:
                dispatcher.service(IDLE_WAIT_S)
            elif source.exhausted or paused:  # nothing blocks in poll: wait for the next retry
                due = dispatcher.next_due()
                stop.wait(min(poll_timeout_s, max(0.0, due - time.monotonic())) if due else poll_timeout_s)
        for raw in batch:
            if countdown:
                countdown -= 1
                if not countdown:
                    countdown = yield_every_records
                    if dispatcher.workers_busy and checkpoint.in_flight >= YIELD_BACKLOG:
                        time.sleep(YIELD_S)
            token = begin(raw)
            if token is not None:  # None: its partition was revoked or halted since it was fetched
                dispatch(raw, (too_large(raw) if too_large else None) or decode(raw), token)
            if not no_results():
                # A run ended (or a call failed) while this batch is dispatched: start what that
                # readies now (a serial hook's next run), not once the whole batch (up to 500
                # records) is through. Successes inside runs going on wait for the turn's end.
                dispatcher.service(new_turn=False)  # inline runs keep the turn's budget (INLINE_TURN_S)
        dispatcher.service()
        checkpoint.maybe_commit()
    dispatcher.shutdown(shutdown_grace_s)
    if checkpoint.reachable():
        checkpoint.commit()
    return dispatcher.stats


__all__ = ["run_loop"]
