"""Session setup on the real stack: the sample connectors registered and running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sidecar import connectors as cx
from tests.integration.stack import CONNECT, REPO


@pytest.fixture(scope="session")
def connectors(stack: None) -> Iterator[list[str]]:
    names = []
    for path in sorted((REPO / "connectors").glob("*.json")):
        name = cx.apply(CONNECT, path)
        cx.wait_running(CONNECT, name, 120)
        names.append(name)
    yield names
