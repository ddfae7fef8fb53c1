"""The ledger of applied ids on the stack's MariaDB (auxiliary) and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from sidecar.cli import main
from sidecar.ledger import claim_ids, create_table, prune
from tests.integration.stack import AUX_URL, PG_URL, engine, sidecar_config


@pytest.mark.parametrize("url", [AUX_URL, PG_URL], ids=["mariadb", "postgresql"])
def test_claim_returns_ids_applied_before_and_rolls_back_with_the_hook(url: str) -> None:
    """A claim reports the ids an earlier (committed) claim took; a rolled-back claim took none;
    hooks are independent; chunks of >500 ids work; prune removes old ids."""
    e = engine(url)
    create_table(e)
    create_table(e)  # idempotent
    pipeline = f"it-ledger-{uuid.uuid4().hex[:8]}"
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["a", "b"]) == set()
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["b", "c", "c"]) == {"b"}
    with pytest.raises(RuntimeError), e.begin() as c:
        claim_ids(c, pipeline, "h", ["d"])
        raise RuntimeError("the hook's write failed")
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["d"]) == set()
        assert claim_ids(c, pipeline, "other", ["a"]) == set()
    ids = [f"x{i}" for i in range(1200)]
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ids) == set()
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", [*ids, "new"]) == set(ids)
    assert prune(e, 0.0) >= 1206
    with e.begin() as c:
        assert claim_ids(c, pipeline, "h", ["a"]) == set()


def test_cli_ledger_create(tmp_path: Path) -> None:
    """`checkpoint-sidecar ledger create --database audit` creates the table (exit 0); an unknown
    database name is a config error (exit 2)."""
    cfg = sidecar_config(tmp_path, group="it-ledger", topics=["shop.public.orders"])
    ok = CliRunner().invoke(main, ["ledger", "create", "--config", str(cfg), "--database", "audit"])
    assert ok.exit_code == 0 and "checkpoint_ledger ready" in ok.output, ok.output
    bad = CliRunner().invoke(main, ["ledger", "create", "--config", str(cfg), "--database", "nope"])
    assert bad.exit_code == 2 and "no auxiliary database 'nope'" in bad.output
