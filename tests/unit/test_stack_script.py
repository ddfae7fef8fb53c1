"""Helpers of deploy/local/stack that can be checked without starting anything."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack"


def test_kafka_cluster_ids_never_start_with_a_dash() -> None:
    """`kafka-storage format -t -abc…` reads the id as an option: 1 fresh start in 64 failed so."""
    script = (f"source <(sed -n '/^kafka_cluster_id()/,/^}}/p' {STACK}); "
              "kafka_cluster_id 5000")
    ids = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True, timeout=120).stdout.split()
    assert len(ids) == 5000 and len(set(ids)) == 5000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids), [i for i in ids if i[0] == "-"]
