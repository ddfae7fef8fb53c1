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


def test_a_cut_off_last_entry_is_skipped_and_the_next_write_starts_a_line_of_its_own(tmp_path: Path) -> None:
    """A crash or a full disk mid-write leaves a cut-off last line: readers name and skip it (its
    record's offset was never committed), and the writer's next entry is not glued onto it."""
    calls = tmp_path / "calls.txt"
    cfg = setup(tmp_path, f"def checkpoint(param):\n    open({str(calls)!r}, 'a').write(param.ctx.event_id + '\\n')\n")
    store = tmp_path / "dl.jsonl"
    whole = store.read_bytes()
    store.write_bytes(whole + whole.splitlines()[0][:150])  # a fifth entry cut off after 150 bytes
    code, out = cli("dead-letters", "list", "--config", str(cfg))
    assert code == 0 and out.count("pending") == 4 and "line 5: an entry whose write was cut off" in out
    first = next(read_file(store))
    writer = FileDeadLetters(store)
    writer.write({**first, "id": "after-the-cut"})
    writer.close()
    cut: list[int] = []
    ids = [e["id"] for e in read_file(store, cut)]
    assert cut == [5] and len(ids) == 5 and ids[-1] == "after-the-cut"
    code, out = cli("dead-letters", "replay", "--config", str(cfg))
    assert "replayed 4 ok, 1 failed (kept)" in out  # the undecodable one; every whole entry ran
    code, out = cli("dead-letters", "purge", "--config", str(cfg), "--yes")
    assert code == 0 and "purged 4, kept 1" in out


def test_entries_that_are_not_usable_are_named_not_a_traceback(tmp_path: Path) -> None:
    """Every field the commands read is checked when the store is read: a hand-edited or foreign
    entry gives an error naming its line and field (exit 1), never a traceback."""
    import orjson

    cfg = setup(tmp_path, "def checkpoint(param):\n    pass\n")
    store = tmp_path / "dl.jsonl"
    good = orjson.loads(store.read_bytes().splitlines()[0])
    call = {"id": "c1", "mode": "transaction", "count": 1, "index": 0, "transaction": None}
    manglings = {
        "'id' must be a non-empty string": {"id": 5},
        "'id' must not hold a line break": {"id": "a\nb"},
        "'message' must be an object": {"message": None},
        "'message.topic' must be a string": {"message": {**good["message"], "topic": None}},
        "'message.value' must be a string or null": {"message": {**good["message"], "value": 5}},
        "'message.headers' must be a list": {"message": {**good["message"], "headers": "ab"}},
        "'message' cannot be decoded": {"message": {**good["message"], "encoding": "base64", "value": "abc"}},
        "'call.count' must be an integer from 1": {"call": {**call, "count": 10**12}},
        "'call.index' must be an integer from 0": {"call": {**call, "index": "x"}},
        "'call.transaction.data_collections' must be": {"call": {**call, "transaction": {"data_collections": 5}}},
    }
    for problem, change in manglings.items():
        store.write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps({**good, **change}) + b"\n")
        for command in (["list"], ["show", good["id"]], ["replay"]):
            code, out = cli("dead-letters", *command, "--config", str(cfg))
            assert code == 1 and ":2: not a usable dead-letter entry: " + problem in out, (command, problem, out)
            assert "Traceback" not in out


def test_a_call_whose_entries_disagree_is_not_replayed(tmp_path: Path) -> None:
    import orjson

    calls = tmp_path / "calls.txt"
    cfg = setup(tmp_path, f"def checkpoint(param):\n    open({str(calls)!r}, 'a').write('call\\n')\n")
    store = tmp_path / "dl.jsonl"
    lines = [orjson.loads(x) for x in store.read_bytes().splitlines()[:2]]
    call = {"id": "c1", "mode": "transaction", "count": 2, "transaction": None}
    lines[0]["call"], lines[1]["call"] = {**call, "index": 0}, {**call, "index": 1}
    lines[1]["hook"] = "other"
    store.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    code, out = cli("dead-letters", "replay", "--config", str(cfg))
    assert code == 1 and "its entries disagree on the hook or the record count" in out
    assert not calls.exists()
