"""The JSON answer every route of agentpack sends, whatever protocol it speaks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from agentpack.protocol.sse import encode_json_bytes


class SafeJSONResponse(JSONResponse):
    """JSON encoded like the stream's events: a lone surrogate in echoed text is escaped, not a crash."""

    def render(self, content: Any) -> bytes:
        return encode_json_bytes(content)


def json_response(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> SafeJSONResponse:
    return SafeJSONResponse(content, status_code=status, headers=dict(headers) if headers else None)


__all__ = ["SafeJSONResponse", "json_response"]
