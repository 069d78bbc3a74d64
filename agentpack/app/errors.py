"""How AgentApp answers requests it refuses: the same shapes FastAPI uses, rendered so that no
input — however odd its text — turns a 4xx into a 500."""

from __future__ import annotations

from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentpack.protocol.sse import encode_json_bytes


class SafeJSONResponse(JSONResponse):
    """JSON encoded like the stream's events: a lone surrogate in echoed text is escaped, not a crash."""

    def render(self, content: Any) -> bytes:
        return encode_json_bytes(content)


async def validation_error(request: Request, exc: RequestValidationError) -> SafeJSONResponse:
    """FastAPI's 422 body (``{"detail": [...]}`` with ``loc``, ``msg``, ``type``, ``input``)."""
    return SafeJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


def install(app: Any) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, validation_error)
