"""The README keeps its promises about the code: commands, metric reasons, demo credentials."""

from __future__ import annotations

import re
from pathlib import Path

import click

from sidecar.cli import main
from sidecar.metrics import DECODE_REASONS

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_command_table_lists_every_command() -> None:
    """Each top-level CLI command (and each subcommand of a group) has a row in the Commands table."""
    table = section("Commands")
    assert isinstance(main, click.Group)
    for name, cmd in main.commands.items():
        assert f"`checkpoint-sidecar {name}" in table, f"{name} missing from the README's Commands table"
        if isinstance(cmd, click.Group):
            row = next(line for line in table.splitlines() if f"`checkpoint-sidecar {name}" in line)
            for sub in cmd.commands:
                assert sub in row, f"{name} {sub} missing from the README's Commands table"


def test_metrics_table_names_every_decode_reason() -> None:
    """Every reason label checkpoint_decode_errors_total can carry is in the metrics table."""
    row = next(line for line in README.splitlines() if line.startswith("| `checkpoint_decode_errors_total`"))
    for reason in DECODE_REASONS:
        assert re.search(rf"\b{reason}\b", row), f"reason {reason} missing from the metrics table"


def test_demo_users_and_passwords_are_stated() -> None:
    """Every login the stack's init scripts create appears in the README as `user` / `password`."""
    sql = (REPO / "deploy" / "local" / "postgres-init.sql").read_text() + (
        REPO / "deploy" / "local" / "mariadb-init.sql").read_text()
    logins = set(re.findall(r"CREATE ROLE (\w+) WITH LOGIN[^;]*PASSWORD '([^']*)'", sql))
    logins |= set(re.findall(r"CREATE USER IF NOT EXISTS '(\w+)'@'[^']*' IDENTIFIED BY '([^']*)'", sql))
    assert {u for u, _ in logins} >= {"cdc", "sidecar"}
    for user, password in logins:
        assert f"`{user}` / `{password}`" in README, f"README does not state the demo login {user}"


def test_the_config_reference_lists_every_key_as_the_model_has_it() -> None:
    """README's configuration table is what `scripts/config_reference.py` generates from the model:
    every key, its default and a description (the script refuses a key without one)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = f"{module.BEGIN}\n{module.table()}\n{module.END}"
    assert generated in README, "stale config reference: run .venv/bin/python scripts/config_reference.py --write"
    assert "`dispatch.yield_every_records` | `0` |" in generated and "`hooks.<NAME>.mode` | `record` |" in generated
