"""Build: the hot-path modules compiled to C extensions with mypyc (the project's own type checker,
mypy --strict, is what makes them compilable). Everything else is in pyproject.toml.

SIDECAR_COMPILE=0 builds pure Python (same behaviour, slower: see README "Compiled build").
Without mypyc or a C compiler the build fails and says so, rather than silently installing the
slow build; set SIDECAR_COMPILE=0 to choose it.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from setuptools import setup

# Every module a record passes through between the source and a hook. They import one another
# compiled; the rest of the package (CLI, config, sources, dead letters…) stays Python.
COMPILED = [
    "sidecar/checkpoint.py",
    "sidecar/decode.py",
    "sidecar/dispatch.py",
    "sidecar/events.py",
    "sidecar/execute.py",
    "sidecar/histograms.py",
    "sidecar/lanes.py",
    "sidecar/logical_types.py",
    "sidecar/loop.py",
    "sidecar/param.py",
    "sidecar/route.py",
    "sidecar/sources/kafka_messages.py",
    "sidecar/transactions.py",
    "sidecar/where.py",
]

# What the compiled modules (and what they import) need to be type-checked.
RUNTIME_IMPORTS = ["confluent_kafka", "sqlalchemy", "pydantic", "pydantic_settings", "yaml", "structlog", "orjson",
                   "simdjson", "click", "prometheus_client", "simpleeval"]


def ext_modules() -> list[object]:
    choice = os.environ.get("SIDECAR_COMPILE", "1").strip().lower()
    if choice in ("0", "false", "no", "off"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit("checkpoint-sidecar: the compiled build needs mypy (mypyc) in the build environment: "
                 "install mypy>=1.11,<2 (requirements-build.lock), or set SIDECAR_COMPILE=0 for the "
                 "pure-Python build")
    # mypyc compiles from the types: it checks the modules against the runtime dependencies, so
    # they must be importable where it builds (an isolated `pip install .` has only the backend).
    missing = [name for name in RUNTIME_IMPORTS if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(f"checkpoint-sidecar: the compiled build type-checks against the runtime dependencies, "
                 f"and {', '.join(missing)} cannot be imported here: install them first (requirements.lock) "
                 f"and build with `pip install --no-build-isolation .` (as make venv and the Dockerfile "
                 f"do), or set SIDECAR_COMPILE=0 for the pure-Python build")
    return list(mypycify(COMPILED, opt_level="3", debug_level="0"))


setup(ext_modules=ext_modules())
