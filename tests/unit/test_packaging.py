"""Packaging: hash-checked lock files for the image and `make venv`; examples cannot shadow hooks;
pyproject.toml in the form current setuptools accepts without deprecation warnings."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\],]+)==([^\s\\;]+)", re.M)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _locked(lock: str) -> dict[str, str]:
    text = (REPO / lock).read_text()
    return {m.group(1).lower().replace("_", "-"): m.group(2) for m in PIN.finditer(text)}


@pytest.mark.parametrize(("lock", "extras"), [
    ("requirements.lock", ()),
    ("requirements-dev.lock", ("dev", "embedded")),
])
def test_lock_pins_every_dependency_with_hashes(lock: str, extras: tuple[str, ...]) -> None:
    """Each requirement of pyproject (and the build backend) is pinned, and every pin carries sha256 hashes."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for extra in extras:
        wanted += project["project"]["optional-dependencies"][extra]
    pins = _locked(lock)
    assert {_name(r) for r in wanted} <= set(pins), f"{lock} is stale: run make lock"
    text = (REPO / lock).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text)
    for block in blocks:
        if PIN.match(block):
            assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"


def test_dockerfile_installs_from_the_lock_with_hashes_only() -> None:
    """The image's pip runs are --require-hashes from the lock, then the project itself without deps."""
    text = (REPO / "Dockerfile").read_text()
    runs = [line for line in text.splitlines() if "pip install" in line]
    assert runs and all("--require-hashes -r requirements.lock" in r or "--no-deps --no-build-isolation" in r
                        or "--require-hashes --no-deps --target /opt/build-tools -r requirements-build.lock" in r
                        for r in runs), runs


def test_the_build_lock_pins_the_dev_locks_build_tools() -> None:
    """The image compiles with the mypy the venv (and CI) compiles with: the same pins and hashes."""
    def pins(name: str) -> dict[str, str]:
        text = (REPO / name).read_text()
        block = r"^([a-z0-9._-]+)==\S+(?: \\\n(?:\s+--hash=\S+(?: \\)?\n?)+)"
        return {m.group(1): m.group(0) for m in re.finditer(block, text, re.M)}
    build, dev = pins("requirements-build.lock"), pins("requirements-dev.lock")
    assert {"mypy", "mypy-extensions", "types-pyyaml"} <= build.keys()
    for name, block in build.items():
        assert block.strip() == dev[name].strip(), name
    final = (REPO / "Dockerfile").read_text().rsplit("FROM ", 1)[1]
    assert "build-tools" not in final and "gcc" not in final  # only in the build stage


def test_image_keeps_example_hooks_out_of_the_working_directory() -> None:
    """No example hook is copied where a mounted config's relative hook paths would find it first."""
    text = (REPO / "Dockerfile").read_text()
    workdirs = re.findall(r"^WORKDIR (\S+)", text, re.M)
    final = text.rsplit("FROM ", 1)[1]
    workdir = re.findall(r"^WORKDIR (\S+)", final, re.M)[-1]
    for src, dest in re.findall(r"^COPY (?:--\S+ )*(\S+) (\S+)$", final, re.M):
        if src.startswith("hooks"):
            assert not (dest.startswith(workdir) or dest in ("./", ".", "./hooks", "hooks")), (src, dest)
    assert workdirs


def test_make_venv_uses_the_dev_lock() -> None:
    """make venv installs from requirements-dev.lock with --require-hashes (CI runs make venv)."""
    text = (REPO / "Makefile").read_text()
    recipe = text.split(".venv/.deps:", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes -r requirements-dev.lock" in recipe
    assert "requirements-dev.lock" in recipe.splitlines()[0]  # a new lock re-installs
    install = text.split(".venv/.installed:", 1)[1].split("\n\n", 1)[0]
    assert ".venv/.deps" in install.splitlines()[0] and "--no-build-isolation -e ." in install


def test_make_venv_compiles_again_when_a_compiled_source_changes() -> None:
    """The compiled modules are what runs: a source edited after `make venv` must be compiled again,
    so the install depends on every module setup.py compiles (the Makefile reads the list from it)."""
    text = (REPO / "Makefile").read_text()
    assert "COMPILED_SRC := $(shell grep -o '\"sidecar/[a-z_/]*\\.py\"' setup.py" in text
    first = text.split(".venv/.installed:", 1)[1].splitlines()[0]
    assert "setup.py" in first and "$(COMPILED_SRC)" in first
    listed = re.findall(r'"(sidecar/[a-z_/]*\.py)"', (REPO / "setup.py").read_text())
    made = subprocess.run(["make", "-s", "--eval=print-compiled: ; @echo $(COMPILED_SRC)", "print-compiled"],
                          cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert made == listed  # every compiled module, sources/ too
    assert len(listed) >= 10 and all((REPO / p).is_file() for p in listed)
    assert "sidecar/decode.py" in listed and "sidecar/dispatch.py" in listed


def test_license_is_an_spdx_string_and_setuptools_knows_it() -> None:
    """A `license = {text=…}` table prints ~50 lines of deprecation warnings on every cold install."""
    doc = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert doc["project"]["license"] == "Apache-2.0"
    setuptools = [r for r in doc["build-system"]["requires"] if r.startswith("setuptools")]
    found = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools[0])
    assert found and int(found.group(1)) >= 77, setuptools  # SPDX strings need setuptools >= 77
