"""The few envelope fields routing reads, parsed with msgspec without building the rows.

msgspec checks the whole payload's JSON syntax while it skips what no field names (the row
images, the rest of the source block); it does not check the UTF-8 of skipped strings, nor
the range of skipped numbers — the decoder checks the first itself (`Decoder._route`) and
reads the rows with the full path's parsers when they are read, so a number beyond a double
or 64 bits comes out as the full path gives it. Duplicate keys: the last one counts, as in
orjson. Not compiled (msgspec structs are not native classes).
"""

from __future__ import annotations

from typing import Any

import msgspec

UNSET: Any = msgspec.UNSET


class RouteSource(msgspec.Struct):
    """The source block's routing fields; missing and null are both None (as `dict.get`)."""

    table: Any = None
    collection: Any = None
    connector: Any = None
    schema: Any = None
    db: Any = None
    ts_us: Any = None
    ts_ms: Any = None


class RouteEnvelope(msgspec.Struct):
    """op and source; the keys that make an envelope a marker or a schema change are UNSET
    when absent (present with null counts as present). A source that is not an object raises."""

    op: Any = None
    source: RouteSource = UNSET
    status: Any = UNSET
    ddl: Any = UNSET
    tableChanges: Any = UNSET  # (Debezium's names)
    databaseName: Any = UNSET


PLAIN: msgspec.json.Decoder[RouteEnvelope] = msgspec.json.Decoder(RouteEnvelope)
"""Decodes an envelope payload to a `RouteEnvelope`; JSON that is not valid raises msgspec.DecodeError
(a field of the wrong type: msgspec.ValidationError, a subclass)."""


def with_decimals(decimals: tuple[str, ...]) -> msgspec.json.Decoder[Any]:
    """`PLAIN` plus each row image's decimal fields (`decimal.format=NUMERIC` sends a decimal as a
    JSON number, which must then be read exactly): `.before`/`.after` are None or a struct whose
    fields are those columns (None when absent). An image that is not an object raises."""
    names = [f"c{i}" for i in range(len(decimals))]
    image: Any = msgspec.defstruct("_Image", [(n, Any, None) for n in names],
                                   rename=dict(zip(names, decimals, strict=True)))
    images = [("before", image | None, None), ("after", image | None, None)]
    envelope = msgspec.defstruct("_EnvelopeWithDecimals", images, bases=(RouteEnvelope,))
    return msgspec.json.Decoder(envelope)


def inexact(env: Any, count: int) -> bool:
    """A decimal field of `with_decimals`' result holds a float (the message must be read exactly)."""
    for image in (env.before, env.after):
        if image is not None:
            for i in range(count):
                if type(getattr(image, f"c{i}")) is float:
                    return True
    return False


JSON: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
"""Any JSON document to Python objects: integers of any size exact, floats the nearest double."""

DecodeError = msgspec.DecodeError
