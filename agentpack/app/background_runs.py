"""Background runs of the agent itself: ``POST {endpoint_path}/task`` and friends.

A background run is an ordinary ``/process`` run whose events nobody reads live: the job
keeps only the final response (status, output).  It takes the session like any run, and
``stop_chat`` stops it, on the web process or, with the Redis interrupt backend, on a
Celery worker.

A run submitted while its session is busy is not refused: it waits its turn, reported as
``pending``, and starts as soon as the session is free — runs waiting in one process start
in the order they were submitted — or fails with :class:`SessionStillBusy` once
``stream_task_wait_seconds`` have passed.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from fastapi import Depends
from starlette.responses import JSONResponse

from agentpack.app.process import logged
from agentpack.app.task_routes import add_task_routes, require_json, submit_response
from agentpack.interrupt.base import SessionBusy, session_key
from agentpack.interrupt.guard import SessionGuard
from agentpack.protocol.schemas import AgentRequest, fill_ids
from agentpack.protocol.status import TaskStatus, session_state
from agentpack.run.agent_run import AgentRun, RunLimits
from agentpack.tasks.base import TaskSpec, report_status

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp
    from agentpack.interrupt.guard import ActiveRun, Stoppable

#: First and longest pause between two tries to take a busy session.
_FIRST_RETRY = 0.05
_LONGEST_RETRY = 0.5


class SessionStillBusy(RuntimeError):
    """A background run waited its whole allowance for its session and did not start."""

    def __init__(self, session: str, waited: float) -> None:
        super().__init__(
            f"{session} was still running another run after {waited:g}s, so this background run "
            "did not start; stop the other run (stop_chat) or raise AgentApp(stream_task_wait_seconds=...)",
        )


#: Background runs waiting for a session, per guard and session key, first submitted first.
_waiting: weakref.WeakKeyDictionary[SessionGuard, dict[str, deque[object]]] = weakref.WeakKeyDictionary()


async def take_session(
    guard: SessionGuard, key: str, run: Stoppable, wait_seconds: float, session: str = "the session"
) -> ActiveRun:
    """Hold ``key`` for ``run``, waiting (reported as ``pending``) while another run holds it.

    Only the first waiter of a session tries to take it, so waiters in this process start
    in order.  The tries back off up to half a second; raises :class:`SessionStillBusy`
    after ``wait_seconds``, or :class:`~agentpack.interrupt.BackendUnavailable`.
    """
    waiting = _waiting.setdefault(guard, {})
    if not waiting.get(key):  # nobody is waiting ahead of this run: try at once
        try:
            return await guard.begin(key, run)
        except SessionBusy:
            pass
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    queue = waiting.setdefault(key, deque())
    ticket = object()
    queue.append(ticket)
    report_status(TaskStatus.PENDING)
    delay = _FIRST_RETRY
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise SessionStillBusy(session, wait_seconds)
            await asyncio.sleep(min(delay * random.uniform(0.8, 1.2), remaining))
            delay = min(delay * 2, _LONGEST_RETRY)
            if queue[0] is not ticket:
                continue
            try:
                active = await guard.begin(key, run)
            except SessionBusy:
                continue
            report_status(TaskStatus.RUNNING)
            return active
    finally:
        queue.remove(ticket)
        if not queue and waiting.get(key) is queue:
            del waiting[key]


def add_background_runs(app: AgentApp) -> None:
    """``POST {endpoint_path}/task`` and friends, running ``app.query_handler`` in the background."""
    name = app.stream_task_name
    queue_name = app.stream_task_queue
    runtime = app.runtime

    async def run_agent(payload: dict[str, Any]) -> dict[str, Any]:
        request = AgentRequest.model_validate(payload)
        assert app.query_handler is not None, "background runs need @app.query"
        # the app's limits hold for background runs too, and stream_task_timeout for them alone
        limits_set = [t for t in (app.limits.run_timeout_seconds, app.stream_task_timeout) if t is not None]
        limits = RunLimits(total=min(limits_set)) if limits_set else None
        run = AgentRun(app, app.query_handler, request, {}, limits, debug=app.debug_errors)
        async with runtime.session_guard() as guard:
            key = session_key(request.user_id, request.session_id)
            session = f"session {request.session_id!r} of user {request.user_id!r}"
            active = await take_session(guard, key, run, app.stream_task_wait_seconds, session)
            # released before the job reads as finished; logged as every run is (docs/logs.md)
            run.on_release(logged(run, lambda status: guard.end(active, session_state(status))))
            final = await run.final_response(cancel_reason="the background run was canceled")  # settles and releases it
        return final

    def message(task_id: str) -> str:
        where = " to Celery" if runtime.task_queue.label.startswith("Celery") else ""
        return f"Stream query task submitted{where} successfully"

    async def submit(agent_request: AgentRequest, _: None = Depends(require_json)) -> JSONResponse:
        request = fill_ids(app.authentication.bind_request(agent_request))  # 403 for another's user_id
        return await submit_response(runtime.task_queue, name, queue_name, request.model_dump(mode="json"), message)

    if name not in runtime.task_queue.specs:  # the job reads app.query_handler when it runs
        runtime.task_queue.register(TaskSpec(name, run_agent, queue_name))
    add_task_routes(app, runtime, f"{app.endpoint_path}/task", name, submit)
