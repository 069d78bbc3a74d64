"""``POST /compatible-mode/v1/responses``: the OpenAI Responses API over the agent's runs.

The official ``openai`` client works against it (``OpenAI(base_url=".../compatible-mode/v1")``):
``client.responses.create(..., stream=True)`` streams OpenAI's events as the run produces
them; without ``stream`` the answer is a real ``Response`` object, so ``resp.output_text``
works.  That body also carries the same object under ``response``, the key AgentScope
Runtime's clients read (docs/migrating.md).

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 for a
request that cannot be run, 409 (``conversation_locked``) when the conversation's session is
running another run, 503 when the interrupt backend cannot be reached.  Once a run has started,
its outcome is its last event: ``response.completed``, ``response.failed`` or, when it was
stopped (``stop_chat``, a client that left, a shutdown), ``response.incomplete``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agentpack.frontends import paths
from agentpack.frontends.base import (
    ProtocolAdapter,
    json_body,
    open_or_refuse,
    run_headers,
    run_source,
    run_to_end,
    stream,
)
from agentpack.run.json_response import json_response

logger = logging.getLogger("agentpack.frontends.responses")

#: AgentScope Runtime's path for the Responses API.
RESPONSES_ENDPOINT_PATH = paths.RESPONSES_PATH


def openai_error(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> Response:
    return json_response({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def refuse(status: int, exc: Exception) -> Response:
    if status == 409:
        return openai_error(
            409, f"{exc}; wait for its response to end, or stop it", param="conversation", code="conversation_locked"
        )
    if status == 403:
        return openai_error(403, str(exc), param="user", code="permission_denied")
    return openai_error(status, str(exc), kind="server_error", code="service_unavailable")


_OPENAI_ERROR = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"message": {"type": "string"}, "type": {}, "param": {}, "code": {}},
                }
            },
        }
    }
}

#: What the route answers, for the OpenAPI schema (the body is read by the route itself).
RESPONSES_ANSWERS: dict[str, Any] = {
    "200": {
        "description": "With `stream: true`, OpenAI's Responses events as server-sent events, ending with "
        "response.completed, response.failed or response.incomplete; otherwise the Response object as JSON",
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
                    "required": ["data"],
                }
            },
            "application/json": {"schema": {"type": "object"}},
        },
    },
    "400": {"description": "The body is not JSON or not a request this API can run", "content": _OPENAI_ERROR},
    "403": {"description": "The user is not the authenticated principal's", "content": _OPENAI_ERROR},
    "409": {"description": "The conversation is running another response", "content": _OPENAI_ERROR},
    "413": {"description": "The body is larger than the app's max_body_bytes"},
    "503": {
        "description": "The interrupt backend cannot be reached, or the instance is full",
        "content": _OPENAI_ERROR,
    },
}


def _request_schema() -> dict[str, Any]:
    from agentpack.frontends.responses.request import ResponsesRequest

    return ResponsesRequest.model_json_schema()


class ResponseAPIDefaultAdapter(ProtocolAdapter):
    """Serves the Responses API; ``path`` (agentpack's keyword) moves it from AgentScope Runtime's
    ``/compatible-mode/v1/responses``.  ``timeout`` and ``max_concurrent_requests`` are accepted
    as upstream's keywords; runs are bounded by the app's own limits instead."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path: str = kwargs.get("path", RESPONSES_ENDPOINT_PATH)

    def describe_endpoints(self) -> dict[str, str]:
        return {"responses": self.path}

    def add_endpoint(self, app: Any, func: Callable[..., Any], **kwargs: Any) -> Any:
        source = run_source(func)

        async def responses(request: Request) -> Response:
            from agentpack.frontends.responses.events import ResponsesStream, frames
            from agentpack.frontends.responses.request import RequestError, new_response_id, parse, to_agent_request

            try:
                body = parse(json.loads(await request.body()))
                agent_request, conversation = to_agent_request(body)
            except json.JSONDecodeError as exc:
                return openai_error(
                    400, f"We could not parse the JSON body of your request ({exc.msg} at position {exc.pos})."
                )
            except RequestError as exc:
                return openai_error(400, str(exc), param=exc.param)
            run = await open_or_refuse(source, agent_request, refuse)
            if isinstance(run, Response):
                return run
            try:
                base = {
                    "model": body.model or "",
                    "instructions": body.instructions,
                    "max_output_tokens": body.max_output_tokens,
                    "parallel_tool_calls": body.parallel_tool_calls if body.parallel_tool_calls is not None else True,
                    "previous_response_id": body.previous_response_id,
                    "temperature": body.temperature,
                    "top_p": body.top_p,
                    "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
                    "tools": body.tools or [],
                    "text": {"format": {"type": "text"}},
                    "truncation": "disabled",
                    "store": False,
                    "metadata": body.metadata or {},
                    "user": body.user,
                    "conversation": {"id": conversation} if conversation is not None else None,
                }
                translator = ResponsesStream(new_response_id(run.request.session_id, run.request.user_id), base)
                if body.stream:
                    return stream(run, lambda event: frames(translator.feed(event)))
            except BaseException:
                await run.release()
                raise

            async def keep(event: dict[str, Any]) -> None:
                translator.feed(event)

            await run_to_end(run, keep)
            answer = translator.response
            return json_response({**answer, "response": answer}, 200, run_headers(run))

        app.add_api_route(
            self.path,
            responses,
            methods=["POST"],
            tags=["openai-responses"],
            summary="OpenAI Responses API",
            response_model=None,
            openapi_extra=json_body(_request_schema, RESPONSES_ANSWERS),
        )
        return app


__all__ = ["RESPONSES_ENDPOINT_PATH", "ResponseAPIDefaultAdapter"]
