"""Moving a batch of engine records into Python in one JPype call.

`SidecarBatch.pack` (sidecar/java/SidecarBatch.java) frames every record's destination,
key and value into one byte[]; Python splits it with memoryview slices. It is compiled
once per state directory with the JDK's in-process compiler. Without a compiler (a JRE
only) `load_packer` returns None and records cross one by one (slower, same result).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from sidecar.events import RawMessage

_INT = struct.Struct(">i")
Packer = Callable[[Any], list[RawMessage]]


def load_packer(state_dir: Path, logger: Any) -> Packer | None:
    import jpype

    source = files("sidecar.java").joinpath("SidecarBatch.java").read_text(encoding="utf-8")
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    out_dir = state_dir / f"java-{digest}"
    try:
        if not (out_dir / "SidecarBatch.class").exists():
            compiler = jpype.JClass("javax.tools.ToolProvider").getSystemJavaCompiler()
            if compiler is None:
                logger.info("no Java compiler (JRE only): records cross one by one")
                return None
            out_dir.mkdir(parents=True, exist_ok=True)
            src = out_dir / "SidecarBatch.java"
            src.write_text(source, encoding="utf-8")
            system = jpype.JClass("java.lang.System")
            args = jpype.JArray(jpype.JString)(
                ["-d", str(out_dir), "-cp", str(system.getProperty("java.class.path")), "-nowarn", str(src)]
            )
            if compiler.run(None, None, None, args) != 0:
                logger.warning("compiling the batch packer failed: records cross one by one")
                return None
        url = jpype.JClass("java.io.File")(str(out_dir)).toURI().toURL()
        loader = jpype.JClass("java.net.URLClassLoader")(
            jpype.JArray(jpype.JClass("java.net.URL"))([url]),
            jpype.JClass("java.lang.Thread").currentThread().getContextClassLoader(),
        )
        pack = jpype.JClass("SidecarBatch", loader=loader).pack
    except Exception as exc:  # any JVM/compiler surprise: fall back, never fail the sidecar
        logger.warning("batch packer unavailable: records cross one by one", error=str(exc))
        return None

    def unpack(records: Any) -> list[RawMessage]:
        data = memoryview(bytes(pack(records)))
        unpack_int = _INT.unpack_from
        out: list[RawMessage] = []
        pos = 0
        end = len(data)
        while pos < end:
            fields: list[bytes | None] = []
            for _ in range(3):
                (n,) = unpack_int(data, pos)
                pos += 4
                if n < 0:
                    fields.append(None)
                else:
                    fields.append(bytes(data[pos : pos + n]))
                    pos += n
            dest = fields[0]
            out.append(RawMessage(topic=dest.decode() if dest else "", partition=None, offset=None,
                                  key=fields[1], value=fields[2]))
        return out

    return unpack
