"""Build: the hot-path modules compiled to C extensions with mypyc (the project's own type checker,
mypy --strict, is what makes them compilable). Everything else is in pyproject.toml.

SIDECAR_COMPILE=0 builds pure Python (same behaviour, slower: see README "Compiled build").
Without mypyc or a C compiler the build fails and says so, rather than silently installing the
slow build; set SIDECAR_COMPILE=0 to choose it.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import tomllib
from pathlib import Path

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


def missing_dependencies() -> list[str]:
    """The runtime dependencies (pyproject.toml) not installed here: the compiled modules are
    type-checked against them."""
    project = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = [re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0] for spec in project["dependencies"]]
    missing = []
    for name in names:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


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
    missing = missing_dependencies()
    if missing:
        sys.exit(f"checkpoint-sidecar: the compiled build type-checks against the runtime dependencies, "
                 f"and {', '.join(missing)} is not installed here: install them first (requirements.lock) "
                 f"and build with `pip install --no-build-isolation .` (as make venv and the Dockerfile "
                 f"do), or set SIDECAR_COMPILE=0 for the pure-Python build")
    return list(mypycify(COMPILED, opt_level="3", debug_level="0"))


setup(ext_modules=ext_modules())
