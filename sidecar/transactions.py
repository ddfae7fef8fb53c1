"""Transaction assembly: Debezium BEGIN/END markers + data events → whole source transactions.

Pure bookkeeping, fed by the dispatcher on the loop's thread (no I/O, no hooks).

- A transaction is identified by (scope, group id): scope = the connector's topic prefix
  (a data event's `source.name`; a marker's topic without its last `.`-part, Debezium's
  `<topic.prefix>.transaction`), group id = `TransactionInfo.group_id` (PostgreSQL ids are
  `txId:LSN` and the LSN part differs between BEGIN, data events and END: the txId part).
- Commit order = the order of BEGIN markers in a scope (one marker stream per connector).
  A transaction is handed over (`Delivery`) when its END arrived, every event the END
  counted arrived, and every transaction begun before it in its scope was handed over.
  Data events may arrive before or after their markers (Kafka: other topics, other partitions).
  END counts every captured table; in Kafka mode only the tables whose topics
  (`<prefix>.<table>`, Debezium's naming) are subscribed are waited for (`consumed`).
- Duplicates (a connector restarted mid-transaction streams it again from its BEGIN) are
  recognised by event id: held, not delivered twice; a second BEGIN changes nothing.
- Bounded memory: past `max_part` undelivered events, the transaction at the head of its
  scope is handed over in parts of `max_part` (`part` 1, 2, …; `last` on the final one,
  which always has at least one record).
- A transaction without END: superseded by a later, complete transaction, or by any later
  transaction's END, while it has no event of its own (MariaDB emits BEGIN for DDL-only
  transactions, one per statement of a migration) → ended (`no_end_empty`); otherwise, after
  `end_timeout_s` without a message of its (a begun one: nor since it became the head of its
  scope), time the caller did not read what may complete it excepted (`intake`) → handed over
  with what arrived (`end_timeout`,
  `event_count` None unless the END came). At the end of a finite input (replay) →
  `end_of_input`. Each of these is counted by the caller; nothing is dropped silently.

Every record given to the assembler is *held*: it is finished only when the caller releases
the transaction (all calls of its parts done) — the checkpoint never commits part of one.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from sidecar.events import ChangeEvent, TransactionInfo, TransactionMarker

Item = TypeVar("Item")

INCOMPLETE_REASONS = ("end_timeout", "end_of_input", "no_end_empty", "revoked")
MAX_DROPPED = 10_000


def topic_scope(topic: str) -> str:
    """The connector a transaction-metadata topic belongs to: `<topic.prefix>.transaction` → its
    prefix (what its data events' `source.name` says)."""
    return topic.rpartition(".")[0] or topic


def marker_scope(marker: TransactionMarker) -> str:
    return topic_scope(marker.raw.topic)


def event_scope(event: ChangeEvent) -> str:
    return str(event.source.get("name") or "")


class StallClock:
    """How long a condition has held in all (the caller not reading something), and since when."""

    def __init__(self) -> None:
        self.total = 0.0
        self.since: float | None = None

    def set(self, stalled: bool, now: float) -> None:
        since = self.since
        if stalled and since is None:
            self.since = now
        elif not stalled and since is not None:
            self.total += now - since
            self.since = None

    def at(self, now: float) -> float:
        since = self.since
        return self.total if since is None else self.total + (now - since)


class Transaction(Generic[Item]):
    """One transaction being assembled. (A plain class: the compiled build has no generic dataclasses.)"""

    def __init__(self, scope: str, group_id: str, touched: float) -> None:
        self.scope = scope
        self.group_id = group_id
        self.touched = touched  # its last message, or when it became its scope's head (`Assembler._touch`)
        self.unpolled_mark = 0.0  # the assembler's not-polled time then (`Assembler.intake`)
        self.unread_mark = 0.0    # the assembler's data-not-read time then
        self.begun = False
        self.end: TransactionMarker | None = None
        self.seen: set[str] = set()  # event ids received (duplicates are held, not delivered)
        # received, not yet delivered: (total_order or 0, arrival, item, event) — sorted, commit order
        self.pending: list[tuple[int, int, Item, ChangeEvent]] = []
        self.holds: list[Item] = []  # every record held until release
        self.parts = 0
        self.delivered = 0
        self.closed = False   # the last part was handed over
        self.calls = 0          # calls of its parts not yet done (kept by the caller)
        self.incomplete: str | None = None
        self.expected: int | None = None  # events its END counts on consumed topics (`complete` caches it)
        self.unbegun = False  # counted in `Assembler._unbegun` (open, no BEGIN, no END)

    def __repr__(self) -> str:
        return (f"Transaction(scope={self.scope!r}, group_id={self.group_id!r}, received={self.received}, "
                f"parts={self.parts}, closed={self.closed}, incomplete={self.incomplete!r})")

    @property
    def received(self) -> int:
        return len(self.seen)

    def complete(self, consumed: Callable[[str, str], bool] | None = None) -> bool:
        end = self.end
        if end is None:
            return False
        expected = self.expected
        if expected is None:  # once per END (asked again at every event that arrives after it)
            if consumed is None or not end.data_collections:
                expected = end.event_count or 0
            else:  # only the tables whose topics are consumed can arrive (END counts every captured table)
                expected = sum(n for table, n in end.data_collections if consumed(self.scope, table))
            self.expected = expected
        return self.received >= expected

    def call_id(self, part: int, event_ids: Sequence[str]) -> str:
        return transaction_call_id(self.scope, self.group_id, part, event_ids)


def transaction_call_id(scope: str, group_id: str, part: int, event_ids: Sequence[str]) -> str:
    """The id of one delivery (`ctx.event_id` of its calls): scope, transaction id, part and the
    ids of its records. A redelivered transaction gets its ids again; records that come after
    their transaction was handed over (past its END's count, or its END timeout) make a call of
    a different id, though their transaction and part are the same."""
    text = f"txn|{scope}|{group_id}|{part}"
    if event_ids:  # "|" before each id, hashed in one piece (the same bytes as one update per id)
        text = text + "|" + "|".join(event_ids)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Delivery(Generic[Item]):
    """A transaction (or one part of it) to hand to transaction hooks, in commit order."""

    def __init__(self, transaction: Transaction[Item], items: list[Item], events: list[ChangeEvent],
                 info: TransactionInfo, call_id: str) -> None:
        self.transaction = transaction
        self.items = items
        self.events = events
        self.info = info
        self.call_id = call_id


class Assembler(Generic[Item]):
    def __init__(self, max_part: int = 10_000, end_timeout_s: float = 60.0,
                 consumed: Callable[[str, str], bool] | None = None) -> None:
        self.max_part = max_part
        self.end_timeout_s = end_timeout_s
        self.consumed = consumed  # (scope, table) → its topic is read; None: every table's is
        self._open: dict[tuple[str, str], Transaction[Item]] = {}
        self._order: dict[str, deque[Transaction[Item]]] = {}
        self._arrival = 0
        self.out: deque[Delivery[Item]] = deque()
        self.ended: list[tuple[Transaction[Item], str]] = []  # incomplete ends, for the caller to count/log
        self._dropped: dict[tuple[str, str], None] = {}  # transactions dropped on a revoke (bounded)
        self._timed_out: dict[tuple[str, str], None] = {}  # transactions ended by their END timeout (bounded)
        self._unbegun: dict[str, int] = {}  # per scope: open transactions with neither BEGIN nor END yet
        # Time the caller did not poll its source at all, and did not read its data (not polled, or
        # data paused; markers are read whenever it polls) (`intake`).
        self._unpolled = StallClock()
        self._unread = StallClock()
        self._now = 0.0  # the latest time given (`_deliver` touches a new head with it)

    # ------------------------------------------------------------------ intake
    def _get(self, scope: str, group: str, now: float) -> Transaction[Item]:
        key = (scope, group)
        txn = self._open.get(key)
        if txn is None:
            txn = self._open[key] = Transaction(scope, group, now)
            if key not in self._timed_out:  # (the rest of one that timed out waits for no marker)
                txn.unbegun = True
                self._unbegun[scope] = self._unbegun.get(scope, 0) + 1
        self._now = now
        self._touch(txn, now)
        return txn

    def _settled(self, txn: Transaction[Item]) -> None:
        """It has its BEGIN or END, or is no longer open: it no longer counts in `_unbegun`."""
        if txn.unbegun:
            txn.unbegun = False
            left = self._unbegun[txn.scope] - 1
            if left:
                self._unbegun[txn.scope] = left
            else:
                del self._unbegun[txn.scope]

    def _touch(self, txn: Transaction[Item], now: float) -> None:
        """A message of it came, or it became its scope's head: its END timeout starts again."""
        txn.touched = now
        txn.unpolled_mark = self._unpolled.at(now)
        txn.unread_mark = self._unread.at(now)

    def marker(self, marker: TransactionMarker, item: Item, now: float) -> bool:
        """Take a BEGIN/END; False when it is not held (its transaction was dropped on a revoke)."""
        scope = marker_scope(marker)
        if (scope, marker.group_id) in self._dropped:
            return False
        txn = self._get(scope, marker.group_id, now)
        txn.holds.append(item)
        if marker.status == "BEGIN":
            if not txn.begun:
                txn.begun = True
                self._order.setdefault(scope, deque()).append(txn)
        else:
            txn.end = marker
            txn.expected = None
        self._settled(txn)
        self._advance(scope)
        return True

    def event(self, event: ChangeEvent, item: Item, now: float) -> bool:
        """Take a data event; False when it is not held (its transaction was dropped on a revoke)."""
        info = event.transaction
        assert info is not None
        scope = event_scope(event)
        group = info.group_id
        if self._dropped and (scope, group) in self._dropped:
            return False
        txn = self._get(scope, group, now)
        txn.holds.append(item)
        eid = event.event_id
        if eid not in txn.seen:
            txn.seen.add(eid)
            self._arrival += 1
            order = info.total_order
            txn.pending.append((order if order is not None else 0, self._arrival, item, event))
        self._advance(scope)
        return True

    # ------------------------------------------------------------------ hand-over
    def _advance(self, scope: str) -> None:
        queue = self._order.get(scope)
        while queue:
            head = queue[0]
            if head.complete(self.consumed):
                self._deliver(head, last=True)
            elif head.end is None and not head.seen and any(t.end is not None for t in queue):
                # No END and no event, and a later transaction's END came: markers are in commit
                # order, so this one's END will not come (MariaDB: a DDL-only transaction has a
                # BEGIN, no END). Not only the next one: a run of DDL statements (a migration)
                # is a run of such BEGINs, and each waited end_timeout_s for the one after it.
                self._deliver(head, last=True, incomplete="no_end_empty")
            elif len(head.pending) > self.max_part:  # > : the last part always has a record
                self._deliver(head, last=False)
                continue
            else:
                return

    def _deliver(self, txn: Transaction[Item], last: bool, incomplete: str | None = None) -> None:
        pending = sorted(txn.pending)  # (arrivals are unique: items and events are never compared)
        if last:
            txn.pending = []
        else:
            pending, txn.pending = pending[: self.max_part], pending[self.max_part :]
        txn.parts += 1
        txn.delivered += len(pending)
        end = txn.end
        first = pending[0][3] if pending else None
        info = TransactionInfo(
            id=txn.group_id,
            event_count=end.event_count if end is not None else None,
            data_collections=end.data_collections if end is not None else None,
            committed_at=first.committed_at if first is not None else None,
            part=txn.parts,
            last=last,
        )
        events = [e for _, _, _, e in pending]
        self.out.append(Delivery(txn, [i for _, _, i, _ in pending], events, info,
                                 txn.call_id(txn.parts, [e.event_id for e in events])))
        if last:
            txn.closed = True
            txn.incomplete = incomplete
            self._settled(txn)
            if incomplete is not None:
                self.ended.append((txn, incomplete))
            self._open.pop((txn.scope, txn.group_id), None)
            queue = self._order.get(txn.scope)
            if queue and queue[0] is txn:
                queue.popleft()
                self._new_head(queue)
            elif queue and txn in queue:
                queue.remove(txn)

    def _new_head(self, queue: deque[Transaction[Item]]) -> None:
        """The head of `queue` was removed: the next one waited for it, its END timeout starts now."""
        if queue:
            self._touch(queue[0], self._now)

    def intake(self, polled: bool, data_read: bool, now: float) -> None:
        """What the caller reads of its source: `polled` False while it takes nothing from it (it
        holds back while hooks are behind; embedded mode's pause), `data_read` False while that or
        while its data is paused (Kafka mode polls on, reading the never-paused marker topics).
        Time the missing pieces of a transaction may have waited unread does not count toward
        `end_timeout_s`: not-polled time for every open transaction, data-paused time for one whose
        END came (it waits for events)."""
        self._unpolled.set(not polled, now)
        self._unread.set(not data_read, now)

    def _waited(self, txn: Transaction[Item], now: float, unpolled: float, unread: float) -> float:
        """How long it has waited since its last message (or since it became its scope's head),
        less the time what it waits for may have sat unread (`intake`)."""
        unseen = unread - txn.unread_mark if txn.end is not None else unpolled - txn.unpolled_mark
        return now - txn.touched - unseen

    def _stalls(self, now: float) -> tuple[float, float]:
        return self._unpolled.at(now), self._unread.at(now)

    def expire(self, now: float) -> None:
        """End transactions whose END or events did not come within `end_timeout_s` (`_waited`):
        the head of each scope (later ones wait for it anyway) and those never begun."""
        self._now = now
        unpolled, unread = self._stalls(now)
        for txn in list(self._open.values()):
            if txn.closed or self._waited(txn, now, unpolled, unread) < self.end_timeout_s:
                continue
            queue = self._order.get(txn.scope)
            if txn.begun and queue and queue[0] is not txn:
                continue
            self._deliver(txn, last=True, incomplete="end_timeout")
            self._timed_out[(txn.scope, txn.group_id)] = None
            while len(self._timed_out) > MAX_DROPPED:
                del self._timed_out[next(iter(self._timed_out))]
            self._advance(txn.scope)

    def drain(self, reason: str = "end_of_input") -> None:
        """A finite input ended: hand over every open transaction in commit order."""
        for queue in list(self._order.values()):
            while queue:
                head = queue[0]
                self._deliver(head, last=True, incomplete=None if head.complete(self.consumed) else reason)
        for txn in list(self._open.values()):
            self._deliver(txn, last=True, incomplete=reason)

    def drop(self, holds: Callable[[Item], bool], remember: bool = True,
             now: float | None = None) -> list[Transaction[Item]]:
        """Forget open transactions holding a record for which `holds` is true (their units were
        revoked: the next owner gets the whole transaction). Returns them.

        `remember`: their later messages here are not held (they would wait for records that now
        go to another member). Without it (the caller has the records it held here fetched
        again) they are assembled afresh, as a transaction never seen. A scope whose head was
        dropped has a new head: its END timeout starts at `now`, and it is handed over if complete."""
        dropped = [t for t in self._open.values() if any(holds(i) for i in t.holds)]
        if now is not None:
            self._now = now
        heads: set[str] = set()
        for txn in dropped:
            txn.closed = True
            txn.incomplete = "revoked"
            self._settled(txn)
            del self._open[(txn.scope, txn.group_id)]
            if remember:
                self._dropped[(txn.scope, txn.group_id)] = None
                while len(self._dropped) > MAX_DROPPED:
                    del self._dropped[next(iter(self._dropped))]
            queue = self._order.get(txn.scope)
            if queue is not None and txn in queue:
                if queue[0] is txn:
                    heads.add(txn.scope)
                queue.remove(txn)
        for scope in heads:
            self._new_head(self._order[scope])
            self._advance(scope)
        return dropped

    # ------------------------------------------------------------------ state
    @property
    def open_count(self) -> int:
        return len(self._open)

    def awaiting_end(self) -> set[str]:
        """The scopes where a transaction waits for an END that its marker stream can still bring:
        the first transaction of the scope, when no later one there has its END (markers come in
        commit order: a later END means this one's never comes, e.g. a DDL-only BEGIN), and one
        whose events came before its BEGIN (except the rest of one that ended by its END timeout:
        those would otherwise wait a timeout per piece). (A transaction whose END came waits only
        for data.) Cheap: one look per scope."""
        scopes = set(self._unbegun)
        scopes.update(scope for scope, queue in self._order.items()
                      if queue and scope not in scopes and all(t.end is None for t in queue))
        return scopes

    def __iter__(self) -> Iterator[Transaction[Item]]:
        return iter(list(self._open.values()))

    def next_expiry(self) -> float | None:
        """The earliest time an open transaction may expire (earlier while the source is not read)."""
        if not self._open:
            return None
        now = self._now
        unpolled, unread = self._stalls(now)
        return now + self.end_timeout_s - max(self._waited(t, now, unpolled, unread) for t in self._open.values())


def batch_call_id(event_ids: list[str]) -> str:
    """A batch call's id: the same records give the same id."""
    # Each id followed by "|", hashed in one piece (the same bytes as one update per id).
    return hashlib.sha256(("|".join(event_ids) + "|" if event_ids else "").encode()).hexdigest()[:32]


__all__ = ["INCOMPLETE_REASONS", "Assembler", "Delivery", "StallClock", "Transaction", "batch_call_id", "topic_scope",
           "transaction_call_id"]
