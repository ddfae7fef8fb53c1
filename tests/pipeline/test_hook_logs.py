"""Every log line a hook writes carries pipeline, hook, table, op and event_id."""

from __future__ import annotations

from typing import Any

import structlog

from sidecar.app import build_app, replay_file
from sidecar.config import Settings
from sidecar.hooks import HookSpec
from tests.fixtures import load


def test_hook_log_lines_are_bound(tmp_path: Any) -> None:
    """A hook's param.logger lines have the five context fields, whatever the hook passes."""
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(m["value"] for m in load("postgres-schemas")["messages"] if m["value"]) + "\n")

    def hook(param: Any) -> None:
        param.logger.info("checkpoint triggered", extra_field=1)

    app = build_app(Settings(pipeline="orders-pipeline", source={"kind": "file", "file": {"path": str(path)}}),
                    hooks=[HookSpec("audit", hook, "t")])  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        replay_file(app, str(path))
    lines = [entry for entry in logs if entry["event"] == "checkpoint triggered"]
    assert lines
    for entry in lines:
        assert entry["pipeline"] == "orders-pipeline" and entry["hook"] == "audit"
        assert entry["table"].startswith("public.") and entry["op"] in "cudr"
        assert len(entry["event_id"]) == 32 and entry["extra_field"] == 1


def test_json_logs_when_not_a_tty(capsys: Any) -> None:
    """Without a TTY the log format is one JSON object per line."""
    import json

    from sidecar.logs import configure_logging, get_logger

    configure_logging("info", "auto")  # pytest's capture is not a TTY
    try:
        get_logger(pipeline="p").info("hello", n=1)
        err = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        structlog.reset_defaults()
    doc = json.loads(err)
    assert doc["event"] == "hello" and doc["pipeline"] == "p" and doc["level"] == "info" and "timestamp" in doc


def test_an_undecodable_message_is_one_log_line_naming_its_dead_letter(tmp_path: Any) -> None:
    """A poison message costs one log line, not two (the error, then a warning with the dead
    letter's id): it carries reason, position, the value's head and the dead letter's id; the
    message's value is cut off JSON (which no parser reads) and is said to be not JSON."""
    from sidecar.dead_letters import FileDeadLetters, read_file
    from sidecar.events import RawMessage
    from sidecar.testing import run_pipeline

    store = tmp_path / "dl.jsonl"
    poison = [RawMessage("shop.public.orders", 0, 0, None, b'{"before":null,"after":{"id":1'),
              RawMessage("shop.public.orders", 0, 1, None, b"not json at all")]
    with structlog.testing.capture_logs() as logs:
        source, stats = run_pipeline(poison, [HookSpec("h", lambda p: None, "t")],
                                     dead_letters=FileDeadLetters(str(store)))
    assert source.committed == {("shop.public.orders", 0): 2}  # both finished: dead-lettered
    entries = read_file(str(store))
    lines = [e for e in logs if "decode" in e["event"] or "dead-letter" in e["event"]]
    assert [e["event"] for e in lines] == ["cannot decode message; dead-lettered"] * 2, lines
    assert [e["dead_letter_id"] for e in lines] == [e["id"] for e in entries]
    assert [(e["reason"], e["offset"]) for e in lines] == [("not_json", 0), ("not_json", 1)]
    assert lines[0]["value_head"].startswith('{"before"') and stats.decode_failures == 2
