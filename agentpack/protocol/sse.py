"""Server-sent-event encoding of protocol events.

Events are encoded to bytes here, once, so the response class only has to write them:
``data: <compact json>`` followed by a blank line, exactly what Agent API clients parse.
"""

from __future__ import annotations

import json
from typing import Any

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_json(value: Any) -> str:
    """Compact JSON with non-ASCII text kept as is (what AgentScope Runtime clients expect)."""
    return _dumps(value)


def encode_event(event: Any) -> bytes:
    """One SSE frame carrying ``event`` as a single ``data:`` line."""
    return b"data: " + _dumps(event).encode("utf-8") + b"\n\n"


#: Headers every agent stream carries: no caching, and no proxy buffering (nginx, FC gateways).
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
