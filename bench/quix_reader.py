"""The Quix Streams reader of bench/no_op_path.py: runs in bench/.venv-quix (quixstreams pinned in
bench/quix-requirements.txt), never in the project's venv.

A Quix Streams Application with the JSON value deserializer and a no-op function, a fresh consumer
group, auto_offset_reset earliest. Undeserialisable (poison) messages reach `on_consumer_error`,
which counts them and lets the app go on. The first and the last message handled are timed here
(time.perf_counter) and written as JSON to --out, so start-up and the group join are not timed.

    bench/.venv-quix/bin/python bench/quix_reader.py --broker 127.0.0.1:9092 --topic T --expect N --out F
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import uuid
from typing import Any

from quixstreams import Application


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--expect", type=int, required=True, help="messages in the topic (poison included)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    state: dict[str, Any] = {"calls": 0, "errors": 0, "first": 0.0, "last": 0.0}
    app: Application | None = None

    def seen() -> None:
        now = time.perf_counter()
        if state["calls"] + state["errors"] == 1:
            state["first"] = now
        state["last"] = now
        if state["calls"] + state["errors"] >= args.expect and app is not None:
            app.stop()

    def noop(value: Any) -> None:
        state["calls"] += 1
        seen()

    def on_consumer_error(exc: Exception, message: Any, logger: logging.Logger) -> bool:
        if message is None:  # a broker/consumer error, not a message
            return False
        state["errors"] += 1
        seen()
        return True

    app = Application(
        broker_address=args.broker,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:10]}",
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="bench-quix-state-"),
        on_consumer_error=on_consumer_error,
        loglevel="WARNING",
    )
    topic = app.topic(args.topic, value_deserializer="json")
    sdf = app.dataframe(topic)
    sdf.update(noop)
    app.run()
    with open(args.out, "w") as f:
        json.dump(state, f)


if __name__ == "__main__":
    main()
