"""Run in a subprocess (one JVM per process): save offsets twice through a store and report what a
hard link to the first file and the file itself hold afterwards, as JSON on stdout.

usage: python -m tests.integration.offset_store_probe STATE_DIR atomic|kafka
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import structlog


def main(state_dir: Path, kind: str) -> dict[str, Any]:
    import jpype

    from sidecar.sources.embedded import start_jvm
    from sidecar.sources.java import find_java
    from sidecar.sources.java_helpers import helper_loader

    start_jvm(find_java(None), [])
    loader = helper_loader(state_dir, structlog.get_logger())
    assert loader is not None, "the helpers did not compile"
    byte_buffer = jpype.JClass("java.nio.ByteBuffer")
    hash_map = jpype.JClass("java.util.HashMap")
    offsets = state_dir / "offsets.dat"
    config = hash_map()
    for key, value in {
        "offset.storage.file.filename": str(offsets),
        "bootstrap.servers": "127.0.0.1:1",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    }.items():
        config.put(key, value)
    worker_config = jpype.JClass("org.apache.kafka.connect.runtime.standalone.StandaloneConfig")(config)
    converter = jpype.JClass("io.debezium.embedded.KafkaConnectUtil").converterForOffsetStore()

    def store(name: str) -> Any:
        if name == "atomic":
            s = jpype.JClass("SidecarOffsetStore", loader=loader)()
        else:
            s = jpype.JClass("org.apache.kafka.connect.storage.FileOffsetBackingStore")(converter)
        s.configure(worker_config)
        s.start()
        return s

    def put(s: Any, value: bytes) -> None:
        m = hash_map()
        m.put(byte_buffer.wrap(b'["probe",{"server":"x"}]'), byte_buffer.wrap(value))
        s.set(m, None).get()

    def read(path: Path) -> str | None:
        """What Kafka's own FileOffsetBackingStore loads from `path` (None: nothing)."""
        cfg = hash_map(config)
        cfg.put("offset.storage.file.filename", str(path))
        reader = jpype.JClass("org.apache.kafka.connect.storage.FileOffsetBackingStore")(converter)
        reader.configure(jpype.JClass("org.apache.kafka.connect.runtime.standalone.StandaloneConfig")(cfg))
        reader.start()
        key = byte_buffer.wrap(b'["probe",{"server":"x"}]')
        got = reader.get(jpype.JClass("java.util.List").of(key)).get().get(key)
        reader.stop()
        return None if got is None else bytes(got.array()).decode()

    s = store(kind)
    put(s, b'{"lsn":1}')
    os.link(offsets, state_dir / "first.dat")  # the inode of the first save
    put(s, b'{"lsn":2}')
    s.stop()
    return {
        "file": read(offsets),
        "first_inode": read(state_dir / "first.dat"),
        "leftovers": sorted(p.name for p in state_dir.glob("offsets.dat*")),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2])))
