"""The ``POST {endpoint_path}`` route: validate, hold the session, stream the run.

Everything that can be refused is refused *before* the stream starts, as a real HTTP
error: an invalid body is a 422 with field paths (FastAPI's answer for a body of type
:class:`AgentRequest`, :mod:`agentpack.app.bodies`), a session that is already running is a 409, an unreachable
interrupt backend a 503 (the app's exception handlers answer those).  Once the stream has
started, every outcome — completed, failed or canceled — is its terminal event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agentpack import logs
from agentpack.app.bodies import read_body, reading_body
from agentpack.app.limits import RunSlots
from agentpack.headers import session_headers
from agentpack.interrupt.base import session_key
from agentpack.protocol.schemas import AgentRequest, SessionId, UserId, fill_ids
from agentpack.protocol.status import RunStatus, session_state
from agentpack.run.agent_run import AgentRun, Release, RunLimits
from agentpack.run.handler import QueryHandler
from agentpack.run.json_response import SafeJSONResponse
from agentpack.run.stream import StreamResponse, run_to_end

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp
    from agentpack.interrupt.records import Records


run_log = logging.getLogger("agentpack.run")


def logged(run: AgentRun, release: Release) -> Release:
    """Bind the run's session and user to every line logged from here on (and in the tasks
    started after it: the run's, the handler's), write its "run started" line, and return
    ``release`` writing its "run ended" line once it has run (docs/logs.md)."""
    bound = logs.bind_run(run.request.session_id, run.request.user_id)
    route = bound.route or "background"
    started = time.monotonic()
    run_log.info("run started: %s", route, extra={"event": "run_started", "route": route})

    async def release_and_log(status: str) -> None:
        try:
            await release(status)
        finally:
            _log_run_end(run, route, status, started)

    return release_and_log


def _log_run_end(run: AgentRun, route: str, status: str, started: float) -> None:
    """The run's "run ended" line: its status (a timeout is ``failed`` with ``error_code``
    ``timeout``; a run whose client went away before its end is ``canceled`` by the client)
    and how long it held its session."""
    fields: dict[str, Any] = {"event": "run_ended", "route": route}
    if status == RunStatus.IN_PROGRESS:
        status, fields["reason"] = RunStatus.CANCELED, "client disconnected"
    elif status == RunStatus.CREATED:
        status, fields["reason"] = RunStatus.CANCELED, "never started"
    if run.failure is not None:
        fields["error_code"] = run.failure[0]
    fields["status"], fields["duration_ms"] = status, round((time.monotonic() - started) * 1000, 1)
    run_log.info("run ended: %s in %.0f ms", status, fields["duration_ms"], extra=fields)


class AppRuns:
    """Where every run of the app's query handler starts — ``/process`` and every protocol
    front-end alike: ids filled, the session taken through the guard (a busy session raises
    :class:`~agentpack.interrupt.SessionBusy`, an unreachable backend
    :class:`~agentpack.interrupt.BackendUnavailable`), and the release wired to the run's end.

    The caller owns the run from then on: it starts it, and must :meth:`AgentRun.release` it
    on every path where the run never starts.
    """

    def __init__(self, app: AgentApp) -> None:
        self.app = app
        #: runs open on this instance, against ``max_concurrent_runs`` (a full instance: 503)
        self.slots = RunSlots(app.limits.max_concurrent_runs)

    async def open_run(
        self, request: AgentRequest, limits: RunLimits | None = None, dependencies: dict[str, Any] | None = None
    ) -> AgentRun:
        """The run, holding a run slot and its session; a protocol's own ``limits`` replace the
        app's ``run_timeout_seconds``.  Raises :class:`~agentpack.app.limits.RunsFull` (503 with
        ``Retry-After``) when the instance runs its ``max_concurrent_runs`` already."""
        handler = self.app.query_handler
        if handler is None:
            raise RuntimeError("the app has no @app.query handler to run")
        request = fill_ids(self.app.authentication.bind_request(request))  # 403 for another's user_id
        timeout = self.app.limits.run_timeout_seconds
        if limits is None and timeout is not None:
            limits = RunLimits(total=timeout)
        guard, slots = self.app.runtime.guard, self.slots
        slots.take()
        try:
            run = AgentRun(self.app, handler, request, dependencies or {}, limits, debug=self.app.debug_errors)
            active = await guard.begin(session_key(request.user_id, request.session_id), run)
        except BaseException:
            slots.give_back()
            raise

        async def release(status: str) -> None:
            try:
                await guard.end(active, session_state(status))
            finally:
                slots.give_back()

        run.on_release(logged(run, release))  # the ids on every line of the run; its start and end
        return run

    def __call__(self, request: AgentRequest) -> AsyncIterator[dict[str, Any]]:
        """The run's events, for code written against AgentScope Runtime's ``add_endpoint(app, func)``."""
        from agentpack.run.iterate import iterate_run  # the protocols' way in; /process never needs it

        return iterate_run(self, request)

    async def stop(self, user_id: str | None, session_id: str | None) -> bool:
        """Stop the session's run wherever it runs (``stop_chat``)."""
        return await self.app.stop_chat(user_id, session_id)

    async def running(self, user_id: str | None, session_id: str | None) -> bool:
        """Whether a run holds the session, on any instance."""
        return await self.app.get_chat_state(user_id, session_id) == "RUNNING"

    def records(self, namespace: str) -> Records:
        """Records every instance sharing the app's interrupt backend sees."""
        return self.app.runtime.backend.records(namespace)


_ERROR_BODY = {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}

#: What the Agent API's routes answer besides their 200, for the OpenAPI schema (so clients and
#: schema-driven testers know every answer the routes really give).
REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read as JSON", "content": _ERROR_BODY},
    413: {"description": "The body is larger than the app's max_body_bytes", "content": _ERROR_BODY},
    422: {"description": "The body is not a valid request; `detail` names each field", "content": _ERROR_BODY},
    503: {
        "description": "The interrupt backend cannot be reached, or the instance runs its max_concurrent_runs "
        "already (then with Retry-After)",
        "content": _ERROR_BODY,
    },
}

#: ``POST {endpoint_path}``: a stream of events (``"stream": true``, the default) or the final
#: response as JSON; 409 when the session is already running.
PROCESS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Agent API events as server-sent events, one `data: <json>` line each, ending with one "
        'terminal response event; with `"stream": false`, the terminal response as JSON',
        "content": {
            # one server-sent event (OpenAPI 3.1 has a stream's ``schema`` describe each event)
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "properties": {"data": {"type": "string", "contentMediaType": "application/json"}},
                    "required": ["data"],
                }
            },
            "application/json": {"schema": {"type": "object"}},
        },
    },
    409: {"description": "The session already has a run in progress", "content": _ERROR_BODY},
    **REFUSALS,
}

#: ``POST {endpoint_path}/stop``.
STOP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Whether a run was holding the session and has been told to stop"},
    **REFUSALS,
}


def run_headers(request: AgentRequest) -> dict[str, str]:
    """Tell the client which session it is in, so it can stop a run it started without ids."""
    return session_headers(request.session_id, request.user_id)


def build_process_endpoint(app: AgentApp, handler: QueryHandler) -> Callable[..., Any]:
    """The route function, with the handler's ``Depends`` parameters added to its signature; it
    reads its :class:`AgentRequest` itself (:mod:`agentpack.app.bodies` says why)."""

    async def process(http_request: Request, **dependencies: Any) -> Response:
        agent_request = await read_body(http_request, AgentRequest)  # 422 / 400 as FastAPI's
        run = await app.runs.open_run(agent_request, dependencies=dependencies)  # 409 / 503 when refused
        request = run.request
        try:
            headers = run_headers(request)
            if request.stream:
                return StreamResponse(run, headers=headers)
            await run_to_end(run)  # a server's cancel still ends it with its canceled event, sent here
            return SafeJSONResponse(run.final, headers=headers)
        except BaseException:  # whatever fails before the response owns the run, the session is released
            await asyncio.shield(run.release())
            raise

    return reading_body(process, "agent_request", AgentRequest, handler.dependencies)


class StopRequest(BaseModel):
    """Body of ``POST {endpoint_path}/stop``; extra keys (an ``AgentRequest``'s ``input``…) are ignored."""

    model_config = ConfigDict(extra="ignore")

    session_id: SessionId
    user_id: UserId = None


def build_stop_endpoint(app: AgentApp) -> Callable[..., Any]:
    async def stop(http_request: Request) -> JSONResponse:
        body = await read_body(http_request, StopRequest)
        user_id = app.authentication.bound_user(body.user_id) or body.session_id
        stopped = await app.stop_chat(user_id, body.session_id)  # 503 when the backend is unreachable
        return JSONResponse({"stopped": stopped, "user_id": user_id, "session_id": body.session_id})

    return reading_body(stop, "body", StopRequest)
