"""`checkpoint-sidecar dead-letters list|show|replay|purge` on a file store."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from sidecar.cli import main
from sidecar.dead_letters import FileDeadLetters, make_entry, read_file
from tests.pipeline.test_loop import one_partition


def setup(tmp_path: Path, hook_body: str) -> Path:
    store = tmp_path / "dl.jsonl"
    writer = FileDeadLetters(store)
    msgs = [m for m in one_partition("postgres-schemas", "fxpo.public.type_zoo") if m.value][:3]
    for m in msgs:
        writer.write(make_entry(pipeline="p", kind="hook_failed", raw=m, reason="attempts_exhausted", hook="h",
                                error=ValueError("boom"), attempts=5))
    writer.write(make_entry(pipeline="p", kind="decode_failed", raw=msgs[0].__class__(
        "fxpo.public.type_zoo", 0, 99, None, b"garbage"), reason="not_json", detail="the message value is not JSON"))
    writer.close()
    hook = tmp_path / "h.py"
    hook.write_text(hook_body)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "pipeline": "p", "source": {"kind": "file", "file": {"path": str(store)}},
        "hooks": {"h": {"path": str(hook)}}, "dead_letters": {"kind": "file", "path": str(store)},
    }))
    return cfg


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def test_list_show_replay_twice_and_purge(tmp_path: Path) -> None:
    """Replay after a fix runs each entry once; a second replay repeats nothing; purge keeps unreplayed ones."""
    calls = tmp_path / "calls.txt"
    cfg = setup(tmp_path, f"def checkpoint(param):\n    open({str(calls)!r}, 'a').write(param.ctx.event_id + '\\n')\n")
    code, out = cli("dead-letters", "list", "--config", str(cfg))
    assert code == 0 and out.count("pending") == 4
    entry_id = out.split()[0]
    code, out = cli("dead-letters", "show", entry_id, "--config", str(cfg))
    assert code == 0 and '"error": "ValueError: boom"' in out and '"message"' in out
    code, out = cli("dead-letters", "replay", "--config", str(cfg))
    assert code == 1  # the undecodable one still fails and is kept
    assert "replayed 3 ok, 1 failed (kept)" in out
    assert len(calls.read_text().split()) == 3
    code, out = cli("dead-letters", "replay", "--config", str(cfg))
    assert "replayed 0 ok, 1 failed (kept), 3 already replayed before" in out
    assert len(calls.read_text().split()) == 3  # nothing ran twice
    assert cli("dead-letters", "purge", "--config", str(cfg))[0] == 2  # needs --yes
    code, out = cli("dead-letters", "purge", "--config", str(cfg), "--yes")
    assert code == 0 and "purged 3, kept 1" in out
    assert [e["reason"] for e in read_file(tmp_path / "dl.jsonl")] == ["not_json"]


def test_replay_with_still_broken_hook_keeps_entries(tmp_path: Path) -> None:
    """A hook that still fails leaves every entry pending."""
    cfg = setup(tmp_path, "def checkpoint(param):\n    raise RuntimeError('still broken')\n")
    code, out = cli("dead-letters", "replay", "--config", str(cfg), "--hook", "h")
    assert code == 1 and "replayed 0 ok, 3 failed (kept)" in out
    assert cli("dead-letters", "list", "--config", str(cfg))[1].count("pending") == 4
