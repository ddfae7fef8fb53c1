"""The transaction assembler on synthetic markers and events (interleavings the fixtures lack)."""

from __future__ import annotations

import random

from sidecar.events import ChangeEvent, RawMessage, TransactionInfo, TransactionMarker
from sidecar.testing import make_event
from sidecar.transactions import Assembler, batch_call_id, transaction_call_id


def marker(status: str, tx: str, count: int | None = None) -> TransactionMarker:
    return TransactionMarker(RawMessage("test.transaction", 0, None, None, None), status,  # type: ignore[arg-type]
                             tx, count, (("public.t", count),) if count else ())


def event(tx: str, order: int, row: int) -> ChangeEvent:
    e = make_event("public.t", after={"id": row, "tx": tx})
    return e.replace(transaction=TransactionInfo(f"{tx}:{1000 + order}", order, order))


def test_three_interleaved_transactions_separated_in_commit_order() -> None:
    """Events of three transactions arriving interleaved (and before their markers) make three
    deliveries, each with its own events in total_order, in BEGIN order."""
    rng = random.Random(1)
    txs = {"10": 4, "11": 7, "12": 3}
    evs = [event(tx, o, int(tx) * 100 + o) for tx, n in txs.items() for o in range(1, n + 1)]
    rng.shuffle(evs)
    a: Assembler[int] = Assembler()
    for i, e in enumerate(evs):
        a.event(e, i, 0.0)
    assert not a.out and a.open_count == 3
    for tx, n in txs.items():
        a.marker(marker("BEGIN", f"{tx}:1"), -1, 0.0)
        a.marker(marker("END", f"{tx}:9", n), -1, 0.0)
    got = [(d.info.id, [e.after["id"] for e in d.events if e.after]) for d in a.out]
    assert got == [(tx, [int(tx) * 100 + o for o in range(1, n + 1)]) for tx, n in txs.items()]
    assert a.open_count == 0


def test_later_complete_transaction_waits_for_earlier() -> None:
    """A complete transaction is not handed over before an earlier-begun one is."""
    a: Assembler[int] = Assembler()
    a.marker(marker("BEGIN", "1"), 0, 0.0)
    a.marker(marker("END", "1", 1), 0, 0.0)
    a.marker(marker("BEGIN", "2"), 0, 0.0)
    a.event(event("2", 1, 1), 1, 0.0)
    a.marker(marker("END", "2", 1), 0, 0.0)
    assert not a.out  # 1's event (another topic) has not arrived yet
    a.event(event("1", 1, 2), 2, 0.0)
    assert [d.info.id for d in a.out] == ["1", "2"]


def test_duplicates_of_a_restreamed_transaction_are_held_not_delivered_twice() -> None:
    """A connector restarted mid-transaction streams it again from BEGIN: the repeated events
    are held (released with it) but each is delivered once."""
    a: Assembler[int] = Assembler()
    a.marker(marker("BEGIN", "5"), 0, 0.0)
    a.event(event("5", 1, 1), 1, 0.0)
    a.marker(marker("BEGIN", "5"), 2, 0.0)  # restart: again from the start
    a.event(event("5", 1, 1), 3, 0.0)
    a.event(event("5", 2, 2), 4, 0.0)
    a.marker(marker("END", "5", 2), 5, 0.0)
    (d,) = a.out
    assert [e.after["id"] for e in d.events if e.after] == [1, 2]
    assert sorted(d.transaction.holds) == [0, 1, 2, 3, 4, 5]


def test_end_timeout_hands_over_what_arrived_and_says_so() -> None:
    """No END within end_timeout_s of the last message: delivered with event_count None, last=True,
    reported as end_timeout; a later transaction then follows."""
    a: Assembler[int] = Assembler(end_timeout_s=10)
    a.marker(marker("BEGIN", "7"), 0, 0.0)
    a.event(event("7", 1, 1), 1, 1.0)
    a.marker(marker("BEGIN", "8"), 0, 2.0)
    a.event(event("8", 1, 2), 1, 2.0)
    a.marker(marker("END", "8", 1), 0, 2.0)
    a.expire(5.0)
    assert not a.out
    a.expire(11.5)
    assert [(d.info.id, d.info.event_count, d.info.last) for d in a.out] == [("7", None, True), ("8", 1, True)]
    assert [(t.group_id, reason) for t, reason in a.ended] == [("7", "end_timeout")]


def test_end_timeout_clock_stops_while_the_source_is_not_polled() -> None:
    """Time the caller takes nothing from its source (it holds back while hooks are behind) does
    not count: the END may be waiting unread. (Measured before: a hook-bound backlog timed out
    transactions whose END was still in Kafka and called them in two pieces.)"""
    a: Assembler[int] = Assembler(end_timeout_s=10)
    a.marker(marker("BEGIN", "7"), 0, 0.0)
    a.event(event("7", 1, 1), 1, 1.0)
    a.intake(False, False, 2.0)  # from 2 s to 50 s nothing is polled
    a.expire(30.0)
    assert not a.out and not a.ended
    a.intake(False, False, 40.0)  # a repeated report changes nothing
    a.intake(True, True, 50.0)    # 48 s not polled: it has waited 1 s (1 → 2) + (50 → now)
    a.expire(58.5)
    assert not a.out
    a.marker(marker("END", "7", 1), 2, 58.6)  # the END was waiting in the source
    assert [(d.info.id, d.info.event_count, len(d.events)) for d in a.out] == [("7", 1, 1)]
    assert not a.ended
    a.marker(marker("BEGIN", "8"), 0, 60.0)  # without a stop, the clock runs as before
    a.event(event("8", 1, 2), 1, 60.0)
    a.expire(70.5)
    assert [(t.group_id, reason) for t, reason in a.ended] == [("8", "end_timeout")]


def test_a_data_pause_stops_the_clock_only_for_transactions_whose_end_came() -> None:
    """Kafka mode polls while the data topics are paused: the marker topics are read, so a
    transaction without its END times out as usual, while one whose END came waits for events that
    may sit in a paused partition: that time does not count. A message that comes during a stop
    starts its transaction's clock from then (no credit for the part of the stop before it)."""
    with_end: Assembler[int] = Assembler(end_timeout_s=10)
    with_end.marker(marker("BEGIN", "1"), 0, 0.0)
    with_end.event(event("1", 1, 1), 1, 0.0)
    with_end.intake(True, False, 1.0)  # data paused from 1 s to 30 s
    with_end.marker(marker("END", "1", 2), 2, 5.0)  # one of its two events still to come
    with_end.expire(20.0)
    with_end.intake(True, True, 30.0)  # waited from 5 s: 25 s paused, then (30 → now)
    with_end.expire(39.5)
    assert not with_end.out
    with_end.expire(40.5)
    assert [(d.info.id, d.info.event_count, len(d.events)) for d in with_end.out] == [("1", 2, 1)]
    assert [reason for _, reason in with_end.ended] == ["end_timeout"]

    no_end: Assembler[int] = Assembler(end_timeout_s=10)
    no_end.marker(marker("BEGIN", "2"), 0, 0.0)
    no_end.event(event("2", 1, 1), 1, 5.0)
    no_end.intake(True, False, 6.0)  # data paused, markers read: its END would have come
    no_end.expire(14.0)
    assert not no_end.out
    no_end.expire(15.5)
    assert [(t.group_id, reason) for t, reason in no_end.ended] == [("2", "end_timeout")]


def test_end_timeout_counts_from_becoming_the_head() -> None:
    """A transaction whose markers came long before its events (the marker topic read far ahead of
    a data backlog) is timed only from when the one before it was handed over: later ones wait
    for the head anyway."""
    a: Assembler[int] = Assembler(end_timeout_s=10)
    for tx in ("1", "2"):
        a.marker(marker("BEGIN", tx), 0, 0.0)
        a.marker(marker("END", tx, 1), 0, 0.0)
    a.event(event("1", 1, 1), 1, 25.0)  # "1" complete at 25 s: "2" is the head from then
    assert [d.info.id for d in a.out] == ["1"]
    a.expire(34.0)
    assert not a.ended
    assert a.next_expiry() == 35.0
    a.event(event("2", 1, 2), 2, 34.5)
    assert [d.info.id for d in a.out] == ["1", "2"] and not a.ended
    b: Assembler[int] = Assembler(end_timeout_s=10)  # the same, "2"'s event never comes
    for tx in ("1", "2"):
        b.marker(marker("BEGIN", tx), 0, 0.0)
        b.marker(marker("END", tx, 1), 0, 0.0)
    b.event(event("1", 1, 1), 1, 25.0)
    b.expire(35.0)
    assert [(t.group_id, reason) for t, reason in b.ended] == [("2", "end_timeout")]


def test_a_revoke_that_drops_the_head_starts_the_next_ones_clock() -> None:
    """The head's records were on a revoked partition: the next transaction, complete, is handed
    over at once, and the one after it is timed from the revoke, not from its old markers."""
    a: Assembler[int] = Assembler(end_timeout_s=10)
    for tx, count in (("1", 2), ("2", 1), ("3", 1)):
        a.marker(marker("BEGIN", tx), 0, 0.0)
        a.marker(marker("END", tx, count), 0, 0.0)
    a.event(event("1", 1, 1), 11, 1.0)  # one of its two: the other is on the revoked partition
    a.event(event("2", 1, 2), 12, 1.0)
    assert not a.out
    dropped = a.drop(lambda item: item == 11, now=20.0)
    assert [t.group_id for t in dropped] == ["1"]
    assert [d.info.id for d in a.out] == ["2"]  # complete, handed over by the drop
    a.expire(29.5)
    assert not a.ended  # "3" became the head at 20 s (its markers came at 0 s)
    a.expire(30.5)
    assert [(t.group_id, reason) for t, reason in a.ended] == [("3", "end_timeout")]


def test_superseded_begin_without_events_ends_at_once() -> None:
    """A BEGIN with no event and no END (MariaDB DDL) does not block the next transaction."""
    a: Assembler[int] = Assembler()
    a.marker(marker("BEGIN", "0-1-26"), 0, 0.0)
    a.marker(marker("BEGIN", "0-1-27"), 1, 0.0)
    a.event(event("0-1-27", 1, 1), 2, 0.0)
    a.marker(marker("END", "0-1-27", 1), 3, 0.0)
    assert [d.info.id for d in a.out] == ["0-1-26", "0-1-27"]
    assert a.out[0].events == [] and a.ended[0][1] == "no_end_empty"


def test_parts_past_max_part_last_part_never_empty() -> None:
    """max_part=3, 6 events: parts of 3 then 3 (the second one last); 7 events: 3, 3, 1."""
    for n, sizes in ((6, [3, 3]), (7, [3, 3, 1]), (3, [3])):
        a: Assembler[int] = Assembler(max_part=3)
        a.marker(marker("BEGIN", "9"), 0, 0.0)
        for o in range(1, n + 1):
            a.event(event("9", o, o), o, 0.0)
        a.marker(marker("END", "9", n), 0, 0.0)
        assert [len(d.events) for d in a.out] == sizes
        assert [d.info.last for d in a.out] == [False] * (len(sizes) - 1) + [True]
        assert [d.info.part for d in a.out] == list(range(1, len(sizes) + 1))


def test_only_tables_whose_topics_are_read_are_waited_for() -> None:
    """END counts every captured table; with `consumed` the transaction completes once the events of
    the tables actually read have arrived (Kafka subscribing to some topics only)."""
    a: Assembler[int] = Assembler(consumed=lambda scope, table: f"{scope}.{table}" == "test.public.t")
    a.marker(marker("BEGIN", "3"), 0, 0.0)
    a.event(event("3", 1, 1), 1, 0.0)
    end = TransactionMarker(RawMessage("test.transaction", 0, None, None, None), "END", "3", 3,
                            (("public.t", 1), ("public.other", 2)))
    a.marker(end, 2, 0.0)
    assert [(d.info.id, d.info.event_count, len(d.events)) for d in a.out] == [("3", 3, 1)]


def test_subscription_from_config_names_and_pattern() -> None:
    """Kafka mode waits for the tables whose topics the config subscribes (names or pattern),
    whether or not they are assigned yet; other source kinds wait for every table."""
    from sidecar.app import subscription
    from sidecar.config import Settings

    def settings(**kafka: object) -> Settings:
        return Settings(pipeline="p", source={"kind": "kafka", "kafka": kafka})  # type: ignore[arg-type]

    named = subscription(settings(topics=["shop.public.orders", "shop.transaction"]))
    assert named is not None and named("shop.public.orders") and not named("shop.public.customers")
    pattern = subscription(settings(topic_pattern=r"^shop\.public\.(orders|customers)$"))
    assert pattern is not None and pattern("shop.public.customers") and not pattern("shop.public.load_rows")
    assert subscription(Settings(pipeline="p", source={"kind": "file", "file": {"path": "x"}})) is None  # type: ignore[arg-type]


def test_late_records_of_a_handed_over_transaction_get_a_call_id_of_their_own() -> None:
    """A transaction handed over at its END timeout, whose other records come later, is called
    again under the same transaction id and part: its call id (a hook's idempotency key for the
    call) must differ, or a hook keyed by it would drop those records as a repeat. The same
    records delivered again keep their id."""
    def run(late: bool) -> list[tuple[str | None, int | None, str]]:
        a: Assembler[int] = Assembler(end_timeout_s=10)
        a.marker(marker("BEGIN", "7"), 0, 0.0)
        a.event(event("7", 1, 1), 1, 0.0)
        a.expire(11.0)
        if late:
            a.event(event("7", 2, 2), 2, 12.0)
            a.expire(23.0)
        return [(d.info.id, d.info.part, d.call_id) for d in a.out]

    (first,) = run(late=False)
    again, late = run(late=True)
    assert again == first  # a redelivery: the same id
    assert late[:2] == first[:2] == ("7", 1) and late[2] != first[2]


def test_test_call_params_of_other_records_of_one_transaction_have_other_ids() -> None:
    """`sidecar.testing.make_call_param` ids as a run's: the records are part of the id."""
    from sidecar.testing import make_call_param

    first, late = make_call_param([event("7", 1, 1)]), make_call_param([event("7", 2, 2)])
    assert first.ctx.transaction.id == late.ctx.transaction.id == "7"
    assert first.ctx.event_id != late.ctx.event_id
    assert make_call_param([event("7", 1, 1)]).ctx.event_id == first.ctx.event_id


def test_call_ids_are_stable() -> None:
    """A call's id is what dead letters, replays and hooks' idempotency keys rely on: it never
    changes between releases (values from the first implementation, one hash update per id)."""
    assert transaction_call_id("s", "g", 0, []) == "ff1255eb66bf8d482789872b116b0959"
    assert transaction_call_id("s", "g", 1, ["a", "bé"]) == "b97f24ec1daaff0ce93540714f16c7d2"
    assert batch_call_id([]) == "e3b0c44298fc1c149afbf4c8996fb924"
    assert batch_call_id(["x", "y"]) == "2b8238f72a011b3bce03ca26a1aa0928"


def test_awaiting_end_names_the_scopes_whose_markers_can_still_complete_something() -> None:
    """`awaiting_end` (the loop pauses a data backlog for a scope's transaction topic only while it is
    non-empty): the head without END when no later transaction has its END; a transaction whose
    events came before its BEGIN until its BEGIN or END comes, it is handed over or dropped; never
    the rest of one that ended by its END timeout; never a transaction that waits only for data."""
    a: Assembler[int] = Assembler(end_timeout_s=1.0)
    assert a.awaiting_end() == set()
    a.marker(marker("BEGIN", "1"), 0, 0.0)
    assert a.awaiting_end() == {"test"}                      # head: END still to come
    a.marker(marker("END", "1", 2), 0, 0.0)
    a.event(event("1", 1, 1), 1, 0.0)
    assert a.awaiting_end() == set()                         # its END came: waits for data only
    a.event(event("1", 2, 2), 2, 0.0)
    a.marker(marker("BEGIN", "2"), 0, 0.0)                   # a DDL statement's BEGIN: no events, no END
    assert a.awaiting_end() == {"test"}
    a.marker(marker("BEGIN", "3"), 0, 0.0)
    a.marker(marker("END", "3", 1), 0, 0.0)
    assert a.awaiting_end() == set()                         # 3's END came after 2's would have
    a.event(event("3", 1, 3), 3, 0.0)                        # 3 complete: 2 dropped empty, 3 handed over
    assert [d.info.id for d in a.out] == ["1", "2", "3"] and a.open_count == 0
    a.event(event("4", 1, 4), 4, 0.0)                        # events before their BEGIN
    a.event(event("5", 1, 5), 5, 0.0)
    assert a.awaiting_end() == {"test"}
    a.marker(marker("BEGIN", "4"), 0, 0.0)
    a.marker(marker("END", "4", 1), 0, 0.0)                  # 4 handed over
    assert a.awaiting_end() == {"test"}                      # 5 still has neither
    a.drop(lambda item: item == 5)
    assert a.awaiting_end() == set() and a.open_count == 0
    a.event(event("6", 1, 6), 6, 0.0)
    a.expire(5.0)                                            # ended by its END timeout
    assert [d.info.id for d in a.out][-1] == "6" and a.awaiting_end() == set()
    a.event(event("6", 2, 7), 7, 5.0)                        # its rest waits for no marker
    assert a.open_count == 1 and a.awaiting_end() == set()


def test_a_run_of_begins_without_events_ends_when_a_later_end_comes() -> None:
    """A migration on MariaDB: a BEGIN per DDL statement, none with an event or an END, then a
    transaction with data. Its END (markers come in commit order) ends every BEGIN before it at
    once, before its own events arrive (each waited end_timeout_s for the next: found in CI)."""
    a: Assembler[int] = Assembler(end_timeout_s=60.0)
    for n in range(5):
        a.marker(marker("BEGIN", f"0-1-{n}"), n, 0.0)
    a.marker(marker("BEGIN", "0-1-5"), 5, 0.0)
    a.marker(marker("END", "0-1-5", 1), 6, 0.0)
    assert [d.info.id for d in a.out] == [f"0-1-{n}" for n in range(5)]
    assert [r for _, r in a.ended] == ["no_end_empty"] * 5
    a.event(event("0-1-5", 1, 1), 7, 0.1)
    assert [d.info.id for d in a.out][-1] == "0-1-5" and a.open_count == 0


def test_a_begin_without_events_waits_while_no_later_end_came() -> None:
    """Two BEGINs and nothing else yet: the first may still get its events and END; it is not ended."""
    a: Assembler[int] = Assembler(end_timeout_s=60.0)
    a.marker(marker("BEGIN", "7"), 0, 0.0)
    a.marker(marker("BEGIN", "8"), 1, 0.0)
    assert not a.out and a.open_count == 2
    a.event(event("7", 1, 1), 2, 0.0)
    a.marker(marker("END", "7", 1), 3, 0.0)
    assert [d.info.id for d in a.out] == ["7"] and a.ended == []
