"""Test tiers: unit (no I/O), pipeline (in-memory source), integration and faults (real stack).

Integration tests need the local stack (`deploy/local/stack up`, done by `make test`).
Without it they are skipped locally; with CI=true a missing stack fails them instead.
"""

from __future__ import annotations

import os
import socket

import pytest

from tests.integration.stack import PORTS


def _stack_up() -> list[str]:
    down = []
    for name, port in PORTS.items():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            down.append(f"{name}:{port}")
    return down


@pytest.fixture(scope="session")
def stack() -> None:
    down = _stack_up()
    if down:
        msg = f"local stack not running ({', '.join(down)} down): run `make stack-up`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if "/integration/" in path:
            item.add_marker(pytest.mark.integration)
            item.fixturenames.insert(0, "stack")
        elif "/faults/" in path:
            item.add_marker(pytest.mark.faults)
            item.fixturenames.insert(0, "stack")
