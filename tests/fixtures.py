"""Loading the captured Debezium fixtures (tests/fixtures/debezium/*.json)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from sidecar.decode import Decoder
from sidecar.events import Decoded, RawMessage

FIXTURES = Path(__file__).parent / "fixtures" / "debezium"
REPO = Path(__file__).resolve().parent.parent


@cache
def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())  # type: ignore[no-any-return]


def raws(name: str) -> list[RawMessage]:
    return [
        RawMessage(
            topic=m["topic"],
            partition=m["partition"],
            offset=m["offset"],
            key=None if m["key"] is None else m["key"].encode(),
            value=None if m["value"] is None else m["value"].encode(),
        )
        for m in load(name)["messages"]
    ]


def decoded(name: str) -> list[Decoded]:
    d = Decoder()
    return [d.decode(r) for r in raws(name)]


def pinned_debezium_version() -> str:
    pom = (REPO / "deploy" / "local" / "pom.xml").read_text()
    m = re.search(r"<debezium.version>([^<]+)</debezium.version>", pom)
    assert m, "debezium.version missing from deploy/local/pom.xml"
    return m.group(1)
