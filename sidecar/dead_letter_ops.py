"""`checkpoint-sidecar dead-letters list|show|replay|purge`: read, re-run and clean the store."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sidecar.app import App, dead_letter_topic
from sidecar.control import SkipEvent
from sidecar.dead_letters import FORMAT, Ledger, decode_message, entry_problem, read_file
from sidecar.decode import Decoder
from sidecar.errors import ConfigError, SidecarError
from sidecar.events import ChangeEvent, DecodeFailure, TransactionInfo
from sidecar.execute import call_once
from sidecar.hooks import HookSpec
from sidecar.route import Router, with_where


def store_kind(app: App) -> str:
    cfg = app.settings.dead_letters
    if cfg.kind == "auto":
        return "kafka" if app.settings.source.kind == "kafka" else "file"
    return cfg.kind


def load_entries(app: App) -> list[dict[str, Any]]:
    if store_kind(app) == "kafka":
        from sidecar.sources.kafka_dead_letters import read_dead_letter_topic

        kafka = app.settings.source.kafka
        if kafka is None:
            raise ConfigError("dead_letters.kind is kafka but there is no source.kafka block")
        entries = [e for e in read_dead_letter_topic(kafka.librdkafka(), dead_letter_topic(app.settings))
                   if e.get("format") == FORMAT]
        for i, entry in enumerate(entries):
            problem = entry_problem(entry)
            if problem is not None:
                raise SidecarError(f"dead-letter topic entry {i + 1} (id {str(entry.get('id'))[:80]!r}) is not usable: "
                                   f"{problem}")
        return entries
    return read_store(app.settings.dead_letters.path)


def read_store(path: str | Path, purging: bool = False) -> list[dict[str, Any]]:
    """The file store's entries; cut-off lines (an interrupted write) are named on stderr and skipped."""
    cut_off: list[int] = []
    entries = list(read_file(path, cut_off))
    if cut_off:
        lines = f"{'line' if len(cut_off) == 1 else 'lines'} {', '.join(map(str, cut_off))}"
        sys.stderr.write(
            f"note: {path}: {lines}: an entry whose write was cut off (a crash or a full disk); "
            f"{'removed' if purging else 'skipped'}. Its record's offset was not committed then, so the record was "
            "delivered again and dead-lettered again if it failed again\n")
    return entries


def ledger(app: App) -> Ledger:
    return Ledger(Path(app.settings.dead_letters.path + ".replayed"))


@dataclass
class ReplayResult:
    ok: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    already: int = 0


def replay(app: App, hook_name: str | None = None) -> ReplayResult:
    """Re-run each not-yet-replayed entry through the current hook code; record successes."""
    result = ReplayResult()
    done = ledger(app)
    seen = done.done()
    hooks = {h.name: h for h in app.hooks}
    decoder = Decoder()
    router = Router(app.hooks)
    calls: dict[str, list[dict[str, Any]]] = {}
    for entry in load_entries(app):
        if hook_name is not None and entry.get("hook") != hook_name:
            continue
        if entry["id"] in seen:
            result.already += 1
            continue
        if isinstance(entry.get("call"), dict):  # part of a transaction/batch call: reassembled below
            call = entry["call"]  # grouped by the call's link (older entries: its id)
            calls.setdefault(str(call.get("link") or call["id"]), []).append(entry)
            continue
        event = decoder.decode(decode_message(entry["message"]), eager=True, key=False)
        if isinstance(event, DecodeFailure):
            result.failed.append((entry["id"], f"still undecodable: {event.reason}: {event.detail}"))
            continue
        if not isinstance(event, ChangeEvent):
            done.add(entry["id"])  # nothing for hooks (tombstone, marker…): nothing left to do
            result.ok.append(entry["id"])
            continue
        if entry.get("hook"):
            target = hooks.get(entry["hook"])
            if target is None:
                result.failed.append((entry["id"], f"hook {entry['hook']!r} is not in the config"))
                continue
            targets = [target] if target.matches(event.table, event.op) else []
        else:
            targets = list(router.route(event.table, event.op))
        error = None
        for hook, param in zip(targets, app.params.params(event, targets), strict=True):
            try:
                call_once(hook.fn, param)
            except SkipEvent:
                pass
            except Exception as exc:
                param.logger.error("hook failed again", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
                error = f"the hook {hook.name} failed again: {type(exc).__name__} (see the log)"
                break
        if error is None:
            done.add(entry["id"])
            result.ok.append(entry["id"])
        else:
            result.failed.append((entry["id"], error))
    for entries in calls.values():
        _replay_call(app, str(entries[0]["call"]["id"]), entries, hooks, decoder, done, result)
    return result


def _replay_call(app: App, call_id: str, entries: list[dict[str, Any]], hooks: dict[str, HookSpec],
                 decoder: Decoder, done: Ledger, result: ReplayResult) -> None:
    """A call's linked entries → the same call again (records in their original order)."""
    entries = sorted(entries, key=lambda e: int(e["call"]["index"]))  # (types checked when read)
    call = entries[0]["call"]
    first = entries[0]["id"]
    count = call["count"]
    if len(entries) != count or any(e["call"]["index"] != i for i, e in enumerate(entries)):
        result.failed.append((first, f"call {call_id}: {len(entries)} of its {count} entries found"))
        return
    if len({e.get("hook") for e in entries}) > 1 or any(e["call"].get("count") != count for e in entries):
        result.failed.append((first, f"call {call_id}: its entries disagree on the hook or the record count "
                                     "(edited, or from two stores?); fix them to replay it"))
        return
    hook = hooks.get(entries[0].get("hook") or "")
    if hook is None:
        result.failed.append((first, f"hook {entries[0].get('hook')!r} is not in the config"))
        return
    events = []
    for entry in entries:
        event = decoder.decode(decode_message(entry["message"]), eager=True, key=False)
        if not isinstance(event, ChangeEvent):
            result.failed.append((entry["id"], f"call {call_id}: a record is no longer a change event"))
            return
        events.append(event)
    tx = call.get("transaction") or {}
    info = TransactionInfo(
        id=tx.get("id"), event_count=tx.get("event_count"),
        data_collections=tuple((str(t), int(n)) for t, n in tx.get("data_collections") or []) or None,
        committed_at=events[0].committed_at, part=tx.get("part"), last=tx.get("last"))
    param = app.params.call_param(events, hook, call_id, info)
    try:  # through its `where:` as in the run: the call's entries hold all its records, matching or not
        call_once(with_where(hook).fn, param)
    except SkipEvent:
        pass
    except Exception as exc:
        param.logger.error("hook failed again", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        result.failed.append((first, f"the hook {hook.name} failed again on call {call_id}: {type(exc).__name__}"))
        return
    for entry in entries:
        done.add(entry["id"])
        result.ok.append(entry["id"])


def purge(app: App, replayed_only: bool) -> tuple[int, int]:
    """Rewrite the file store without replayed entries (or empty it). Returns (removed, kept)."""
    if store_kind(app) != "file":
        raise ConfigError(
            "purge works on the file store; a Kafka dead-letter topic is cleaned by its retention "
            "(retention.ms) or kafka-delete-records"
        )
    path = Path(app.settings.dead_letters.path)
    entries = read_store(path, purging=True)
    replayed = ledger(app).done()
    keep = [e for e in entries if replayed_only and e["id"] not in replayed]
    tmp = path.with_suffix(".tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        fh.write(b"".join(orjson.dumps(e) + b"\n" for e in keep))
    tmp.replace(path)
    return len(entries) - len(keep), len(keep)
