"""The sidecar's own Java classes (sidecar/java/*.java), compiled at run time.

They are compiled once per state directory (a directory named by the sources' digest) with
the JDK's in-process compiler, against the engine's classpath, and loaded through a class
loader whose parent is the current context loader. Without a compiler (a JRE only)
`helper_loader` returns None and each caller falls back (see `batch_packer`, `embedded`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

SOURCES = ("SidecarBatch.java", "SidecarOffsetStore.java")


def helper_loader(state_dir: Path, logger: Any) -> Any | None:
    """A java.net.URLClassLoader holding the compiled helpers, or None (no compiler, or it failed)."""
    import jpype

    texts = {name: files("sidecar.java").joinpath(name).read_text(encoding="utf-8") for name in SOURCES}
    digest = hashlib.sha256("".join(texts[n] for n in SOURCES).encode()).hexdigest()[:12]
    out_dir = state_dir / f"java-{digest}"
    try:
        if not out_dir.is_dir():
            compiler = jpype.JClass("javax.tools.ToolProvider").getSystemJavaCompiler()
            if compiler is None:
                logger.info("no Java compiler (a JRE only): the sidecar's Java helpers are not used")
                return None
            # Compiled into a directory of its own and renamed into place whole: a start killed
            # mid-compile leaves no half-written class for the next start to load.
            work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=state_dir))
            paths = []
            for name, text in texts.items():
                (work / name).write_text(text, encoding="utf-8")
                paths.append(str(work / name))
            system = jpype.JClass("java.lang.System")
            args = jpype.JArray(jpype.JString)(
                ["-d", str(work), "-cp", str(system.getProperty("java.class.path")), "-nowarn", *paths]
            )
            if compiler.run(None, None, None, args) != 0:
                shutil.rmtree(work, ignore_errors=True)
                logger.warning("compiling the sidecar's Java helpers failed: they are not used")
                return None
            try:
                work.rename(out_dir)
            except OSError:  # another process of this state directory got there first
                shutil.rmtree(work, ignore_errors=True)
        url = jpype.JClass("java.io.File")(str(out_dir)).toURI().toURL()
        loader = jpype.JClass("java.net.URLClassLoader")(
            jpype.JArray(jpype.JClass("java.net.URL"))([url]),
            jpype.JClass("java.lang.Thread").currentThread().getContextClassLoader(),
        )
        for name in SOURCES:  # load them now: a class that cannot load falls back here, not in the engine
            loader.loadClass(name.removesuffix(".java"))
        return loader
    except Exception as exc:  # any JVM/compiler surprise: fall back, never fail the sidecar
        logger.warning("the sidecar's Java helpers are unavailable", error=str(exc))
        return None


__all__ = ["SOURCES", "helper_loader"]
