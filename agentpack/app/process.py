"""The ``POST {endpoint_path}`` route: validate, hold the session, stream the run.

Everything that can be refused is refused *before* the stream starts, as a real HTTP
error: an invalid body is a 422 with field paths (FastAPI's validation of
:class:`AgentRequest`), a session that is already running is a 409, an unreachable
interrupt backend a 503 (the app's exception handlers answer those).  Once the stream has
started, every outcome — completed, failed or canceled — is its terminal event.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse, Response

from agentpack._aio import uncancel
from agentpack.app.errors import SafeJSONResponse
from agentpack.headers import session_headers
from agentpack.interrupt.base import session_key
from agentpack.protocol.schemas import AgentRequest, SessionId, UserId
from agentpack.protocol.status import session_state
from agentpack.run.agent_run import AgentRun
from agentpack.run.handler import QueryHandler
from agentpack.run.stream import StreamResponse

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp


def fill_ids(request: AgentRequest) -> AgentRequest:
    """Give a request without ids fresh ones, so anonymous requests never share a session."""
    if not request.session_id:
        request.session_id = uuid.uuid4().hex
    if not request.user_id:
        request.user_id = request.session_id
    return request


def run_headers(request: AgentRequest) -> dict[str, str]:
    """Tell the client which session it is in, so it can stop a run it started without ids."""
    return session_headers(request.session_id, request.user_id)


def build_process_endpoint(app: "AgentApp", handler: QueryHandler) -> Callable[..., Any]:
    """The route function, with the handler's ``Depends`` parameters added to its signature."""

    async def process(agent_request: AgentRequest, **dependencies: Any) -> Response:
        request = fill_ids(agent_request)
        run = AgentRun(app, handler, request, dependencies)
        guard = app.runtime.guard
        active = await guard.begin(session_key(request.user_id, request.session_id), run)  # 409 / 503 when refused
        run.on_release(lambda status: guard.end(active, session_state(status)))
        try:
            headers = run_headers(request)
            if request.stream:
                return StreamResponse(run, headers=headers)
            try:
                final = await run.final_response()
            except asyncio.CancelledError:
                if run.final is None:
                    raise
                uncancel()  # the server cancelled us; the run ended with its canceled event: send it
                final = run.final
            finally:
                await asyncio.shield(run.settle())
            return SafeJSONResponse(final, headers=headers)
        except BaseException:  # whatever fails before the response owns the run, the session is released
            await asyncio.shield(run.release())
            raise

    parameters = [inspect.Parameter("agent_request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=AgentRequest)]
    parameters += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in handler.dependencies]
    process.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return process


class StopRequest(BaseModel):
    """Body of ``POST {endpoint_path}/stop``; extra keys (an ``AgentRequest``'s ``input``…) are ignored."""

    model_config = ConfigDict(extra="ignore")

    session_id: SessionId
    user_id: UserId = None


def build_stop_endpoint(app: "AgentApp") -> Callable[..., Any]:
    async def stop(body: StopRequest) -> JSONResponse:
        user_id = body.user_id or body.session_id
        stopped = await app.stop_chat(user_id, body.session_id)  # 503 when the backend is unreachable
        return JSONResponse({"stopped": stopped, "user_id": user_id, "session_id": body.session_id})

    return stop
