"""``POST /ag-ui``: the AG-UI protocol over the agent's runs.

The body is an AG-UI ``RunAgentInput`` (only ``threadId`` and ``runId`` required); the answer
is an SSE stream of AG-UI events (:mod:`agentpack.frontends.agui.events`).  A run that cannot
start is answered before any stream with a ``RUN_ERROR`` event — status 409, code
``SESSION_BUSY``, when the thread's session is running another run; 503,
``BACKEND_UNAVAILABLE``, when the interrupt backend cannot be reached — and an invalid body
with 422, FastAPI's ``{"detail": [...]}``.  A client that drops the stream stops the run, as
on ``/process``.

``ag_ui`` (the ``agentpack[agui]`` extra) is imported by the first request, not before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from agentpack.frontends import paths
from agentpack.frontends.base import ProtocolAdapter, json_body, open_or_refuse, run_source, stream
from agentpack.protocol.excerpts import bounded_errors
from agentpack.run.json_response import json_response

if TYPE_CHECKING:
    from agentpack.frontends.agui.config import AGUIAdaptorConfig

#: AgentScope Runtime's path for AG-UI.
AGUI_ENDPOINT_PATH = paths.AGUI_PATH


def refused(status: int, code: str, message: str) -> Response:
    """A run that never started, in AG-UI's own words: one ``RUN_ERROR`` event."""
    from agentpack.frontends.agui.events import frames

    body = frames([{"type": "RUN_ERROR", "message": message, "code": code}])
    return Response(body, status_code=status, media_type="text/event-stream")


def refuse(status: int, exc: Exception) -> Response:
    if status == 409:
        return refused(409, "SESSION_BUSY", f"{exc}; wait for its run to finish, or stop it")
    if status == 403:
        return refused(403, "FORBIDDEN", str(exc))
    return refused(status, "BACKEND_UNAVAILABLE", str(exc))


def invalid(errors: list[Any]) -> Response:
    """422 with FastAPI's ``{"detail": [...]}``, each bad value shown as a bounded excerpt."""
    from fastapi.encoders import jsonable_encoder

    listed, more = bounded_errors(errors)
    body: dict[str, Any] = {"detail": jsonable_encoder(listed)}
    if more:
        body["more_errors"] = more
    return json_response(body, 422)


_RUN_ERROR = {"text/event-stream": {"schema": {"type": "object", "properties": {"data": {"type": "string"}}}}}

#: What the route answers, for the OpenAPI schema (the body is read by the route itself).
AGUI_ANSWERS: dict[str, Any] = {
    "200": {
        "description": "AG-UI events as server-sent events, ending with RUN_FINISHED or RUN_ERROR",
        "content": _RUN_ERROR,
    },
    "403": {
        "description": "A RUN_ERROR (FORBIDDEN): the user is not the authenticated principal's",
        "content": _RUN_ERROR,
    },
    "409": {"description": "A RUN_ERROR (SESSION_BUSY): the thread is running another run", "content": _RUN_ERROR},
    "413": {"description": "The body is larger than the app's max_body_bytes"},
    "422": {
        "description": "The body is not JSON or not a RunAgentInput; `detail` names each field",
        "content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}},
    },
    "503": {
        "description": "A RUN_ERROR (BACKEND_UNAVAILABLE): the interrupt backend cannot be reached, or the instance is full",
        "content": _RUN_ERROR,
    },
}


def _request_schema() -> dict[str, Any]:
    """AG-UI's ``RunAgentInput`` as accepted here (needs the ``agui`` extra, as the route does)."""
    try:
        from agentpack.frontends.agui.request import FlexibleRunAgentInput
    except ModuleNotFoundError:  # the route answers that itself; the schema says what it can
        return {
            "type": "object",
            "properties": {"threadId": {"type": "string"}, "runId": {"type": "string"}},
            "required": ["threadId", "runId"],
        }
    return FlexibleRunAgentInput.model_json_schema()


class AGUIDefaultAdapter(ProtocolAdapter):
    """Serves AG-UI at ``config.route_path``; ``config`` may be an ``AGUIAdaptorConfig`` or a dict
    (its model is built only when asked for, so the default adapter costs an app nothing)."""

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._config = config
        path = config.get("route_path") if isinstance(config, dict) else getattr(config, "route_path", None)
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise ValueError(f"agui_config route_path={path!r} must be a path starting with '/', e.g. '/ag-ui'")
        self.route_path: str = path or AGUI_ENDPOINT_PATH

    @property
    def config(self) -> AGUIAdaptorConfig:
        from agentpack.frontends.agui.config import AGUIAdaptorConfig

        if not isinstance(self._config, AGUIAdaptorConfig):
            self._config = AGUIAdaptorConfig(route_path=self.route_path)
        return self._config

    def describe_endpoints(self) -> dict[str, str]:
        return {"ag_ui": self.route_path}

    def add_endpoint(self, app: Any, func: Callable[..., Any], **kwargs: Any) -> Any:
        source = run_source(func)

        async def ag_ui(request: Request) -> Response:
            from agentpack.frontends.agui.events import AGUIStream, frames
            from agentpack.frontends.agui.request import FlexibleRunAgentInput, to_agent_request

            try:
                body = FlexibleRunAgentInput.model_validate(json.loads(await request.body()))
                agent_request = to_agent_request(body)
            except json.JSONDecodeError as exc:
                return invalid(
                    [
                        {
                            "type": "json_invalid",
                            "loc": ["body", exc.pos],
                            "msg": f"JSON decode error: {exc.msg}",
                            "input": {},
                        }
                    ]
                )
            except ValidationError as exc:
                return invalid([{**error, "loc": ["body", *error["loc"]]} for error in exc.errors(include_url=False)])
            run = await open_or_refuse(source, agent_request, refuse)
            if isinstance(run, Response):
                return run
            translator = AGUIStream(body.thread_id, body.run_id)
            return stream(run, lambda event: frames(translator.feed(event)))

        app.add_api_route(
            self.route_path,
            ag_ui,
            methods=["POST"],
            tags=["ag-ui"],
            summary="AG-UI run",
            response_model=None,
            openapi_extra=json_body(_request_schema, AGUI_ANSWERS),
        )
        return app


__all__ = ["AGUIDefaultAdapter", "AGUI_ENDPOINT_PATH"]
