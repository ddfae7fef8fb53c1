"""`where:` through the real loop: only matching records reach the hook, the rest are counted."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from prometheus_client import generate_latest

from sidecar.app import build_app
from sidecar.cli import main
from sidecar.config import load_settings
from sidecar.where import FILTERED, Verdict

EXAMPLES = Path(__file__).resolve().parents[2] / "sidecar" / "examples" / "changes.jsonl"


def write_config(tmp_path: Path, hooks: dict[str, dict[str, object]]) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps({"pipeline": "p", "source": {"kind": "file", "file": {"path": str(EXAMPLES)}},
                               "hooks": hooks}))
    return cfg


def recording_hook(tmp_path: Path, name: str) -> tuple[Path, Path]:
    out = tmp_path / f"{name}.seen"
    hook = tmp_path / f"{name}.py"
    hook.write_text(f"def checkpoint(param):\n    open({str(out)!r}, 'a').write(str(param.record['id']) + '\\n')\n")
    return hook, out


def test_where_passes_only_matching_records_and_counts_the_rest(tmp_path: Path) -> None:
    """amount > 100 on the bundled examples: 3 calls; 9 counted no_match; a field no record has: 12 unevaluable."""
    big, big_seen = recording_hook(tmp_path, "big")
    ghost, ghost_seen = recording_hook(tmp_path, "ghost")
    cfg = write_config(tmp_path, {"big": {"path": str(big), "where": "amount > 100"},
                                  "ghost": {"path": str(ghost), "where": "no_such_field == 1"}})
    before = FILTERED.snapshot()
    result = CliRunner().invoke(main, ["replay", str(EXAMPLES), "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert big_seen.read_text().split() == ["1", "1", "1001"]
    assert not ghost_seen.exists()
    after = FILTERED.snapshot()
    delta = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    assert delta == {("big", "no_match"): 9, ("ghost", "unevaluable"): 12}


def test_filtered_records_are_a_metric(tmp_path: Path) -> None:
    """checkpoint_records_filtered_total{hook,reason} is exported on /metrics."""
    big, _ = recording_hook(tmp_path, "big")
    app = build_app(load_settings(write_config(tmp_path, {"big": {"path": str(big), "where": "amount > 100"}})))
    FILTERED.add("big", Verdict.NO_MATCH)
    text = generate_latest(app.metrics.registry).decode()
    assert 'checkpoint_records_filtered_total{hook="big",reason="no_match"}' in text


def test_bad_where_stops_start_up_with_the_hook_name(tmp_path: Path) -> None:
    """`check` fails with exit 2 and names hooks.NAME.where."""
    big, _ = recording_hook(tmp_path, "big")
    result = CliRunner().invoke(main, ["check", "--config", str(write_config(tmp_path, {
        "big": {"path": str(big), "where": "open('/etc/passwd')"}}))])
    assert result.exit_code == 2, result.output
    assert "hooks.big.where" in result.output and "Call is not allowed" in result.output
