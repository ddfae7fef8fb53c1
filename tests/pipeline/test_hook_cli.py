"""`checkpoint-sidecar hooks new|list|test`: from a template to a tested, configured hook."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sidecar.cli import EXIT_CONFIG, EXIT_HOOK, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's folder: a config with one hook and a file-source (no databases needed)."""
    for key in list(os.environ):
        if key.startswith("SIDECAR_"):
            monkeypatch.delenv(key)
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "first.py").write_text("def checkpoint(param):\n    pass\n")
    (tmp_path / "config.yaml").write_text(
        "# my pipeline\npipeline: p\nsource: {kind: file, file: {path: x.jsonl}}\n"
        "databases:\n  auxiliary:\n    audit: sqlite:///" + str(tmp_path / "aux.db") + "\n"
        "hooks:\n  first:\n    path: hooks/first.py\n"
    )
    return tmp_path


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("template", ["blank", "audit", "stats", "notify"])
def test_new_writes_hook_test_and_config_entry(project: Path, template: str) -> None:
    """hooks new: hooks/NAME.py, tests/hooks/test_NAME.py (which passes), hooks.NAME in the config."""
    cfg = str(project / "config.yaml")
    code, out = cli("hooks", "new", "mine", "--template", template, "--config", cfg)
    assert code == 0, out
    assert (project / "hooks" / "mine.py").is_file()
    doc = yaml.safe_load((project / "config.yaml").read_text())
    assert doc["hooks"]["mine"]["path"] == "hooks/mine.py"
    assert (project / "config.yaml").read_text().startswith("# my pipeline\n")
    test = project / "tests" / "hooks" / "test_mine.py"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)], cwd=project,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    lint = subprocess.run([str(REPO / ".venv" / "bin" / "ruff"), "check", "--config", str(REPO / "pyproject.toml"),
                           str(project / "hooks" / "mine.py"), str(test)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout


def test_new_refuses_an_existing_name_and_writes_nothing(project: Path) -> None:
    """A configured name, or an existing hook file, is refused; the config is unchanged."""
    cfg = project / "config.yaml"
    before = cfg.read_text()
    code, out = cli("hooks", "new", "first", "--config", str(cfg))
    assert code == EXIT_CONFIG and "already in" in out
    (project / "hooks" / "taken.py").write_text("")
    code, out = cli("hooks", "new", "taken", "--config", str(cfg))
    assert code == EXIT_CONFIG and "exists already" in out
    assert cfg.read_text() == before
    code, out = cli("hooks", "new", "Bad-Name", "--config", str(cfg))
    assert code == EXIT_CONFIG and "lowercase" in out


def test_list_shows_each_hook_and_fails_on_a_broken_import(project: Path) -> None:
    """One row per hook with source, tables, ops, policy, where and import status; exit 3 if one fails."""
    cfg = str(project / "config.yaml")
    code, out = cli("hooks", "list", "--config", cfg)
    assert code == 0, out
    assert "first" in out and "path:hooks/first.py" in out and "c,u,d,r" in out and "dead_letter" in out
    (project / "hooks" / "broken.py").write_text("import no_such_module_here\n")
    with open(cfg, "a") as f:
        f.write("  broken:\n    path: hooks/broken.py\n    where: amount > 1\n"
                "    mode: transaction\n    ordering: none\n    concurrency: 4\n")
    code, out = cli("hooks", "list", "--config", cfg)
    assert code == EXIT_HOOK, out
    broken = next(line for line in out.splitlines() if line.startswith("broken"))
    assert "amount > 1" in broken and "FAILED" in broken and "no_such_module_here" in broken
    assert "transaction" in broken and "none (4)" in broken
    assert "record" in next(line for line in out.splitlines() if line.startswith("first"))


def test_test_runs_one_hook_on_the_bundled_examples(project: Path) -> None:
    """Default messages: 12 orders changes among transaction markers and a tombstone; one line per message."""
    code, out = cli("hooks", "test", "first", "--config", str(project / "config.yaml"))
    assert code == 0, out
    assert out.count("  ok ") == 12
    assert "transaction BEGIN" in out and "transaction END" in out and "tombstone" in out
    assert "12 calls: 12 ok, 0 failed" in out


def add_hook(project: Path, name: str, body: str, extra: str = "") -> Path:
    """hooks/NAME.py with `body`, and hooks.NAME in the project's config (plus `extra` lines); the config."""
    (project / "hooks" / f"{name}.py").write_text(body)
    cfg = project / "config.yaml"
    with open(cfg, "a") as f:
        f.write(f"  {name}:\n    path: hooks/{name}.py\n{extra}")
    return cfg


def test_test_reports_failures_and_where(project: Path) -> None:
    """A failing call is printed with its error and exit 1; where-filtered records are shown as such."""
    cfg = add_hook(project, "picky", "def checkpoint(param):\n    if param.record['id'] == 1001:\n"
                   "        raise ValueError('not this one')\n", "    where: amount > 100\n")
    code, out = cli("hooks", "test", "picky", "--config", str(cfg))
    assert code == 1, out
    assert "key=1001  FAILED ValueError: not this one" in out
    assert out.count("filtered by where (no_match)") == 9
    assert "3 calls: 2 ok, 1 failed; 9 filtered by where" in out


def test_test_says_once_what_every_call_fails_with(project: Path) -> None:
    """An error that repeats (an unreachable database fails every call alike) is printed in full once;
    the calls right after it that fail the same way say so; a different error, or a call after an ok
    one, is printed in full again."""
    cfg = add_hook(project, "down",
        "calls = 0\n\n\n"
        "def checkpoint(param):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls == 3:\n"
        "        return\n"
        "    raise ConnectionError('another error' if calls == 5\n"
        "                          else 'database at 127.0.0.1:1 refused the connection')\n")
    code, out = cli("hooks", "test", "down", "--config", str(cfg))
    assert code == 1, out
    calls = [re.split(r" key=\S+  ", line, maxsplit=1)[1] for line in out.splitlines() if " key=" in line]
    full = "FAILED ConnectionError: database at 127.0.0.1:1 refused the connection"
    same = "FAILED (the same error as the call above)"
    assert calls[:7] == [full, same, calls[2], full, "FAILED ConnectionError: another error", full, same], out
    assert calls[2].startswith("ok ") and calls[7:] == [same] * 5, out
    assert "12 calls: 1 ok, 11 failed" in out, out


def test_test_on_a_file_and_unknown_hook(project: Path, tmp_path: Path) -> None:
    """FILE replaces the examples; an unknown hook name is a config error listing the configured ones."""
    one = tmp_path / "one.jsonl"
    one.write_text((REPO / "sidecar" / "examples" / "changes.jsonl").read_text().splitlines()[1] + "\n")
    code, out = cli("hooks", "test", "first", str(one), "--config", str(project / "config.yaml"))
    assert code == 0 and "1 call: 1 ok" in out and ": 1 message\n" in out, out
    code, out = cli("hooks", "test", "nope", "--config", str(project / "config.yaml"))
    assert code == EXIT_CONFIG and "configured: first" in out


def test_test_calls_a_transaction_or_batch_hook_as_a_run_groups_its_records(project: Path) -> None:
    """A transaction hook gets one call per transaction of the bundled examples (its records up
    to the END), a batch hook calls of up to max_records; `where:` narrows each call's records."""
    (project / "hooks" / "bulk.py").write_text(
        "def checkpoint(param):\n"
        "    t = param.ctx.transaction\n"
        "    print('CALL', t.id, len(param.records), ','.join(sorted({r['_op'] for r in param.records})))\n")
    with open(project / "config.yaml", "a") as f:
        f.write("  txn: {path: hooks/bulk.py, mode: transaction}\n"
                "  bat: {path: hooks/bulk.py, mode: batch, max_records: 5}\n"
                "  upd: {path: hooks/bulk.py, mode: batch, where: \"_op == 'u'\"}\n")
    cfg = str(project / "config.yaml")
    code, out = cli("hooks", "test", "txn", "--config", cfg)
    assert code == 0, out
    assert "#2-#3       transaction 746, 2 records  ok" in out and "CALL 746 2 c,u" in out
    assert "10 calls: 10 ok, 0 failed" in out and out.count("CALL ") == 10
    # one record: singular; lines in message-number order (the tombstone read while its delete's
    # transaction was open comes after that transaction's call, not before it)
    numbers = [int(line[1:].split()[0].split("-")[0]) for line in out.splitlines() if line.startswith("#")]
    assert numbers == sorted(numbers), out
    assert ", 1 record  ok" in out and "tombstone, not for the hook" in out, out
    code, out = cli("hooks", "test", "bat", "--config", cfg)
    assert code == 0 and "3 calls: 3 ok" in out, out
    assert [line.split()[2] for line in out.splitlines() if line.startswith("CALL")] == ["5", "5", "2"]
    code, out = cli("hooks", "test", "upd", "--config", cfg)
    assert code == 0 and "batch, 12 records, 2 matching where  ok" in out and "CALL None 2 u" in out, out
