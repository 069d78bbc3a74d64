"""Deep conversion of whatever an endpoint returns or yields into JSON-ready values.

Agent code returns framework objects: pydantic models, dataclasses, SDK responses with
``to_dict()``/``to_map()``, datetimes, enums, bytes.  ``jsonable`` turns all of them into
plain JSON values so one slow or odd object never breaks a stream; a depth guard keeps
self-referencing objects from recursing forever.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from pathlib import PurePath
from typing import Any

MAX_DEPTH = 32


def _bytes(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")


class NotSerializable(TypeError):
    """A value has no JSON form (raised only in strict mode)."""


def jsonable(value: Any, _depth: int = 0, strict: bool = False) -> Any:
    """Return ``value`` as JSON-compatible data (dict, list, str, int, float, bool, None).

    Leniently (for streams), an object with no known conversion becomes ``str(obj)``;
    with ``strict=True`` (for task results, which callers read back as data) it raises
    :class:`NotSerializable` naming the type instead.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if _depth >= MAX_DEPTH:
        if strict:
            raise NotSerializable(f"value nested deeper than {MAX_DEPTH} levels (a reference cycle?)")
        return f"<nested deeper than {MAX_DEPTH} levels: {type(value).__name__}>"
    depth = _depth + 1
    if isinstance(value, dict):
        return {
            str(jsonable(k, depth, strict)) if not isinstance(k, str) else k: jsonable(v, depth, strict)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth, strict) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [jsonable(v, depth, strict) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, enum.Enum):
        return jsonable(value.value, depth, strict)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(bytes(value))
    if isinstance(value, (uuid.UUID, decimal.Decimal, PurePath)):
        return str(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic v2
        return jsonable(dump(mode="json"), depth, strict)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), depth, strict) for f in dataclasses.fields(value)}
    for method in ("to_dict", "to_map", "dict"):
        converter = getattr(value, method, None)
        if callable(converter):
            try:
                return jsonable(converter(), depth, strict)
            except TypeError:
                continue
    if hasattr(value, "__iter__") and not isinstance(value, type):
        try:
            return [jsonable(v, depth, strict) for v in value]
        except NotSerializable:
            raise
        except TypeError:
            pass
    if strict:
        raise NotSerializable(f"{type(value).__module__}.{type(value).__qualname__} object is not JSON serializable")
    return str(value)
