"""pyproject.toml in the form current setuptools accepts without deprecation warnings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_license_is_an_spdx_string_and_setuptools_knows_it() -> None:
    """A `license = {text=…}` table prints ~50 lines of deprecation warnings on every cold install."""
    doc = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert doc["project"]["license"] == "Apache-2.0"
    setuptools = [r for r in doc["build-system"]["requires"] if r.startswith("setuptools")]
    found = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools[0])
    assert found and int(found.group(1)) >= 77, setuptools  # SPDX strings need setuptools >= 77
