"""Background runs of the agent itself: ``POST {endpoint_path}/task`` and friends.

A background run is an ordinary ``/process`` run whose events nobody reads live: the job
keeps only the final response (status, output).  It takes the session like any run — a
second run of a busy session fails with ``SessionBusy`` — and ``stop_chat`` stops it, on
the web process or, with the Redis interrupt backend, on a Celery worker.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator

from starlette.responses import JSONResponse

from agentpack.interrupt.base import session_key
from agentpack.interrupt.guard import SessionGuard
from agentpack.protocol.schemas import AgentRequest
from agentpack.tasks.base import TaskSpec
from agentpack.tasks.routes import add_task_routes, submit_response

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp


def task_name(app: "AgentApp") -> str:
    return f"agentpack.agent_run:{app.endpoint_path}"


@asynccontextmanager
async def job_guard(app: "AgentApp") -> AsyncIterator[SessionGuard]:
    """The app's guard in the web process; in a worker (no lifespan ran) one of its own."""
    if app._runtime_started:
        yield app._guard
        return
    backend = app.interrupt_backend.clone()
    await backend.start()
    try:
        yield SessionGuard(backend, app._guard.lease_seconds, app._guard.state_seconds)
    finally:
        await backend.aclose()


def add_agent_task(app: "AgentApp") -> None:
    from agentpack.app.process import fill_ids, final_state
    from agentpack.app.runner import AgentRun

    name = task_name(app)
    queue = app.stream_task_queue

    async def run_agent(payload: dict[str, Any]) -> dict[str, Any]:
        request = AgentRequest.model_validate(payload)
        run = AgentRun(app, app.query_handler, request, {})
        async with job_guard(app) as guard:
            active = await guard.begin(session_key(request.user_id, request.session_id), run)
            try:
                final = await run.final_response()
            finally:
                await run.settle()
                await guard.end(active, final_state(run.status))
        return final

    async def submit(agent_request: AgentRequest) -> JSONResponse:
        request = fill_ids(agent_request)
        return await submit_response(app, name, queue, request.model_dump(mode="json"))

    if name not in app.task_queue.specs:  # the job reads app.query_handler when it runs
        app.task_queue.register(TaskSpec(name, run_agent, queue))
        add_task_routes(app, f"{app.endpoint_path}/task", name, queue, submit)
