"""checkpoint-sidecar: Python checkpoint hooks after every commit, via Debezium CDC.

The hook API (stable): `CheckpointParam`, `PipelineContext`, `UNAVAILABLE`.
"""

from sidecar.control import Retry, SkipEvent
from sidecar.events import UNAVAILABLE, DecodeError, Geometry, TransactionInfo
from sidecar.param import CheckpointParam, PipelineContext

__version__ = "0.1.0"
__all__ = [
    "UNAVAILABLE",
    "CheckpointParam",
    "DecodeError",
    "Geometry",
    "PipelineContext",
    "Retry",
    "SkipEvent",
    "TransactionInfo",
    "__version__",
]
