"""Test tiers: unit (no I/O), pipeline (in-memory source), integration and faults (real stack).

Integration tests need the local stack (`deploy/local/stack up`, done by `make test`).
Without it they are skipped locally; with CI=true a missing stack fails them instead.

Builds: `make venv` compiles the hot-path modules (mypyc, setup.py); `make test-pure` runs the
unit and pipeline tiers again on the pure-Python sources. Tests marked `pure_python` observe
internals the compiled build does not expose (a subclass of a compiled class, a patched method):
they run in that pass and are skipped, with the reason, in the compiled one.
SIDECAR_TEST_BUILD=compiled|pure makes a run fail at once when the other build was imported.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sidecar.events import COMPILED
from tests.integration.stack import PORTS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pure_python: observes internals of the pure-Python build (make test-pure)")
    import sidecar.events

    if COMPILED:  # a source edited after `make venv` would be tested as its old compiled self
        here = Path(sidecar.events.__file__).parent
        stale = [str(py.relative_to(here)) for so in here.rglob("*.so")
                 if (py := so.with_name(so.name.split(".")[0] + ".py")).stat().st_mtime > so.stat().st_mtime]
        if stale:
            raise pytest.UsageError(f"compiled modules older than their sources ({', '.join(sorted(stale))}): "
                                    "run `make venv` to compile them again")
    want = os.environ.get("SIDECAR_TEST_BUILD", "")
    if want and want != ("compiled" if COMPILED else "pure"):
        raise pytest.UsageError(f"SIDECAR_TEST_BUILD={want}, but sidecar was imported "
                                f"{'compiled' if COMPILED else 'as Python'} from {sidecar.events.__file__}"
                                " (compiled: make venv; pure: make test-pure)")


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
        if COMPILED and item.get_closest_marker("pure_python"):
            item.add_marker(pytest.mark.skip(reason="observes pure-Python internals: runs in `make test-pure`"))
        path = str(item.fspath)
        if "/integration/" in path:
            item.add_marker(pytest.mark.integration)
            item.fixturenames.insert(0, "stack")
        elif "/faults/" in path:
            item.add_marker(pytest.mark.faults)
            item.fixturenames.insert(0, "stack")
