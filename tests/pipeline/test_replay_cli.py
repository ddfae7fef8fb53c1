"""`checkpoint-sidecar replay` on captured messages."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sidecar.cli import main
from sidecar.events import ChangeEvent
from tests.fixtures import decoded, load

REPO = Path(__file__).resolve().parents[2]

CHANGES = [e for e in decoded("postgres-schemas") if isinstance(e, ChangeEvent)]
HOOKED = [e for e in CHANGES if e.op != "t"]  # default ops: c, u, d, r


def write_jsonl(tmp_path: Path, wrapped: bool) -> Path:
    out = tmp_path / "events.jsonl"
    lines = []
    for m in load("postgres-schemas")["messages"]:
        if m["value"] is None:
            continue
        lines.append(json.dumps(m) if wrapped else m["value"])
    out.write_text("\n".join(lines) + "\n")
    return out


def hook(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "my_hook.py"
    p.write_text(body)
    return p


def test_replay_runs_hook_without_config(tmp_path: Path) -> None:
    """--hook runs one hook file over a file of bare message values and prints a summary."""
    out = tmp_path / "seen.txt"
    h = hook(tmp_path, f"def checkpoint(param):\n    open({str(out)!r}, 'a').write(param.ctx.event_id + '\\n')\n")
    result = CliRunner().invoke(main, ["replay", str(write_jsonl(tmp_path, False)), "--hook", str(h)])
    assert result.exit_code == 0, result.output
    seen = out.read_text().split()
    assert seen == [e.event_id for e in HOOKED]
    assert f"{len(CHANGES)} change events" in result.output


def test_replay_wrapped_lines_give_same_event_ids(tmp_path: Path) -> None:
    """Wrapped {topic,partition,offset,key,value} lines give the same events as bare values."""
    outs = []
    for wrapped in (False, True):
        out = tmp_path / f"seen-{wrapped}.txt"
        h = hook(tmp_path, f"def checkpoint(param):\n    open({str(out)!r}, 'a').write(param.ctx.event_id + '\\n')\n")
        r = CliRunner().invoke(main, ["replay", str(write_jsonl(tmp_path, wrapped)), "--hook", str(h)])
        assert r.exit_code == 0, r.output
        outs.append(out.read_text())
    assert outs[0] == outs[1]


def test_replay_exits_nonzero_when_hook_fails(tmp_path: Path) -> None:
    """A failing hook makes replay exit 1 and report it."""
    h = hook(tmp_path, "def checkpoint(param):\n    raise ValueError('nope')\n")
    r = CliRunner().invoke(main, ["replay", str(write_jsonl(tmp_path, False)), "--hook", str(h)])
    assert r.exit_code == 1
    assert f"{len(HOOKED)} events with a failed hook" in r.output


def test_replay_reports_undecodable_lines(tmp_path: Path) -> None:
    """A garbage line is counted and reported, the rest still run."""
    f = write_jsonl(tmp_path, False)
    f.write_text(f.read_text() + "this is not json\n")
    h = hook(tmp_path, "def checkpoint(param):\n    pass\n")
    r = CliRunner().invoke(main, ["replay", str(f), "--hook", str(h)])
    assert r.exit_code == 1
    assert "1 undecodable" in r.output and f"{len(CHANGES)} change events" in r.output


def test_replay_broken_hook_exit_code(tmp_path: Path) -> None:
    """A hook that fails to import exits with the hook-load code (3) naming the line."""
    h = hook(tmp_path, "import nonexistent_module_xyz\n")
    r = CliRunner().invoke(main, ["replay", str(write_jsonl(tmp_path, False)), "--hook", str(h)])
    assert r.exit_code == 3
    assert "my_hook.py:1" in r.output


def test_replay_bounds_a_hung_hook(tmp_path: Path) -> None:
    """A hook that never returns does not hang `replay`: the call times out, counts as failed, exit 1."""
    import subprocess
    import sys
    import time

    hook = tmp_path / "hang.py"
    hook.write_text("import time\n\ndef checkpoint(param):\n    time.sleep(3600)\n")
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sidecar", "replay", str(REPO / "examples" / "orders.jsonl"),
                        "--hook", str(hook), "--timeout", "0.5"], capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 60
    assert r.returncode == 1 and "events with a failed hook" in r.stdout


def test_replay_summary_counts_one_message_in_the_singular(tmp_path: Path) -> None:
    """The summary line says "1 message", not "1 messages" (and plural for the others)."""
    data = tmp_path / "one.jsonl"
    first = next(m for m in load("postgres-schemas")["messages"] if m["value"] is not None)
    data.write_text(first["value"] + "\n")
    h = hook(tmp_path, "def checkpoint(param):\n    pass\n")
    result = CliRunner().invoke(main, ["replay", str(data), "--hook", str(h)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("replayed 1 message: "), result.output
    assert ", 0 events with a failed hook, 0 undecodable messages" in result.output, result.output


def test_replay_runs_a_thread_loop_hook_from_the_config(tmp_path: Path) -> None:
    """A config hook set to `thread: loop` replays like any other (replay bounds every call, so it
    runs it on a worker: a call on the loop's thread could not be given up on)."""
    out = tmp_path / "seen.txt"
    h = hook(tmp_path, f"def checkpoint(param):\n    open({str(out)!r}, 'a').write(param.ctx.event_id + '\\n')\n")
    data = write_jsonl(tmp_path, False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"pipeline: p\nsource: {{kind: file, file: {{path: {data}}}}}\n"
                   f"hooks:\n  h: {{path: {h}, thread: loop}}\n")
    result = CliRunner().invoke(main, ["replay", str(data), "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert out.read_text().split() == [e.event_id for e in HOOKED]
