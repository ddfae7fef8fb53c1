"""Moving a batch of engine records into Python in one JPype call.

`SidecarBatch.pack` (sidecar/java/SidecarBatch.java) frames every record's destination,
key and value into one byte[]; Python splits it with memoryview slices. It is compiled at
run time with the other Java helpers (`java_helpers`). Without a compiler (a JRE only)
`load_packer` returns None and records cross one by one (slower, same result).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from sidecar.events import RawMessage

_INT = struct.Struct(">i")
Packer = Callable[[Any], list[RawMessage]]


def load_packer(loader: Any | None, logger: Any) -> Packer | None:
    """The packer from the compiled helpers' class loader (`java_helpers.helper_loader`), or None."""
    import jpype

    if loader is None:
        logger.info("records cross one by one (no compiled batch packer)")
        return None
    try:
        pack = jpype.JClass("SidecarBatch", loader=loader).pack
    except Exception as exc:  # any JVM surprise: fall back, never fail the sidecar
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
