"""Example hook: a structured `high_value_order` log event for amounts over a threshold.

Threshold: env HIGH_VALUE_THRESHOLD (default 1000). Deletes are not notified.
"""

from __future__ import annotations

import os
from decimal import Decimal

from sidecar import CheckpointParam

THRESHOLD = Decimal(os.environ.get("HIGH_VALUE_THRESHOLD", "1000"))


def checkpoint(param: CheckpointParam) -> None:
    amount = param.record.get("amount")
    if param.ctx.op == "d" or not isinstance(amount, Decimal):
        return
    if amount > THRESHOLD:
        param.logger.warning(
            "high_value_order", record_id=param.record.get("id"), amount=str(amount), threshold=str(THRESHOLD)
        )
