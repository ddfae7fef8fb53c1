"""Test hook that takes a known time: SLEEP_MS (default 60) milliseconds per call."""

from __future__ import annotations

import os
import time

from sidecar import CheckpointParam

SLEEP_S = int(os.environ.get("SLEEP_MS", "60")) / 1000


def checkpoint(param: CheckpointParam) -> None:
    time.sleep(SLEEP_S)
