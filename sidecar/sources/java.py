"""Finding a Java 17+ runtime for the embedded engine, with errors that say what to install.

Order: the configured `java_home`, then `JAVA_HOME`, then `java` on PATH. Nothing else is
searched, so "no Java" means exactly that.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sidecar.errors import SourceError

MIN_JAVA = 17
INSTALL_HINT = "install a JDK/JRE 17+ (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME to one"


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    version: str
    libjvm: Path

    @property
    def major(self) -> int:
        return _major(self.version)


def _major(version: str) -> int:
    head = version.split(".")[0]
    if head == "1" and "." in version:  # 1.8.0_x
        head = version.split(".")[1]
    return int(re.sub(r"\D.*", "", head) or 0)


def _version(home: Path) -> str:
    release = home / "release"
    if release.is_file():
        m = re.search(r'^JAVA_VERSION="([^"]+)"', release.read_text(errors="replace"), re.M)
        if m:
            return m.group(1)
    java = home / "bin" / "java"
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise SourceError(f"cannot run {java}: {exc.strerror}; {INSTALL_HINT}") from None
    m = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    if not m:
        raise SourceError(f"cannot tell the Java version of {java} (it printed: {out.stderr.strip()[:200]})")
    return m.group(1)


def find_java(java_home: str | None = None) -> JavaRuntime:
    """Locate Java and check its version; raise SourceError naming the fix."""
    where: str
    if java_home:
        home, where = Path(java_home), "source.embedded.java_home"
    elif os.environ.get("JAVA_HOME"):
        home, where = Path(os.environ["JAVA_HOME"]), "JAVA_HOME"
    else:
        java = shutil.which("java")
        if java is None:
            raise SourceError(f"Java not found: no `java` on PATH and JAVA_HOME is not set; {INSTALL_HINT}")
        home, where = Path(java).resolve().parent.parent, "PATH"
    if not home.is_dir():
        raise SourceError(f"Java not found: {where} points to {home}, which does not exist; {INSTALL_HINT}")
    version = _version(home)
    if _major(version) < MIN_JAVA:
        raise SourceError(
            f"Java {version} at {home} (from {where}) is too old: the Debezium embedded engine needs Java "
            f"{MIN_JAVA} or newer; {INSTALL_HINT}"
        )
    candidates = [home / "lib" / "server" / "libjvm.so", home / "jre" / "lib" / "server" / "libjvm.so",
                  home / "lib" / "server" / "libjvm.dylib"]
    libjvm = next((c for c in candidates if c.is_file()), None)
    if libjvm is None:
        raise SourceError(f"Java at {home} has no lib/server/libjvm.so (a JRE without the server VM?); {INSTALL_HINT}")
    return JavaRuntime(home=home, version=version, libjvm=libjvm)
