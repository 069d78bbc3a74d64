"""HTTP routes of a task: submit, poll, cancel.  Same contract for embedded and Celery queues.

``POST`` and ``GET`` answer as AgentScope Runtime's task routes do (200 with ``status``
``submitted``; ``GET`` always 200, an unknown id ``{"error": "Task <id> not found"}``), so
its clients work unchanged; ``task_id``, the ``error`` object and ``DELETE`` are additions.
A submission must be declared ``application/json`` (415 otherwise, see :func:`require_json`).
A broker that cannot be reached is a 503 (the app's exception handler answers it).

With auth on, a task is bound to the principal that submitted it: its status and its cancel
answer that principal alone, and anyone else gets exactly the answer of an unknown id (so ids
cannot be probed).  The queue keeps a hash of the principal (:func:`~agentpack.app.auth.owner_key`),
not the principal.  Without auth (or on routes opened with ``auth=False``) nothing is bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import Body, Depends, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentpack.app.auth import current_principal, owner_key
from agentpack.app.errors import install_task_answers
from agentpack.tasks.base import BrokerUnavailable, TaskQueue

if TYPE_CHECKING:
    from agentpack.app.runtime import Runtime

#: Builds a submission's ``message`` from the task id (AgentScope Runtime's wording).
SubmitMessage = Callable[[str], str]


def not_found(task_id: str) -> dict[str, str]:
    return {"error": f"Task {task_id} not found", "task_id": task_id}


def request_owner() -> str | None:
    """Who the task being submitted or read belongs to: the caller's owner key (None without auth)."""
    return owner_key(current_principal())


async def submit_response(
    queue: TaskQueue, name: str, queue_name: str, payload: Any, message: SubmitMessage | None = None
) -> JSONResponse:
    """Queue the job and answer 200 ``{"task_id", "status": "submitted", "queue", "message"}``."""
    try:
        task_id = await queue.submit(name, payload, owner=request_owner())
    except BrokerUnavailable as exc:
        # the keys AgentScope Runtime's clients read on a failed submission
        exc.answer = {"type": "task", "queue": queue_name, "status": "failed"}
        raise
    text = message(task_id) if message else f"Task {task_id} submitted to {queue.label} {queue_name}"
    return JSONResponse({"task_id": task_id, "status": "submitted", "queue": queue_name, "message": text})


def require_json(request: Request) -> None:
    """A 415 unless the body is declared JSON (``application/json`` or ``application/*+json``).

    A web page may make a browser send ``text/plain`` or form bodies to any site without asking
    it first; a JSON body needs the site's CORS consent.  Requiring it keeps other pages from
    submitting jobs with a visitor's browser.
    """
    declared = request.headers.get("content-type", "")
    media = declared.split(";")[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    got = f"Content-Type {declared[:100]!r}" if declared else "no Content-Type"
    raise HTTPException(415, detail=f"send the task's input as JSON with Content-Type: application/json (got {got})")


#: The answers of a submission besides 200, for the OpenAPI schema.
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "The body is larger than the app's max_body_bytes"},
    415: {"description": "The body is not declared as application/json"},
    503: {"description": "The broker cannot be reached"},
}


def submit_endpoint(runtime: Runtime, name: str, queue_name: str) -> Callable[..., Any]:
    async def submit(body: Any = Body(None), _: None = Depends(require_json)) -> JSONResponse:
        return await submit_response(runtime.task_queue, name, queue_name, body)

    return submit


def _status_endpoint(runtime: Runtime) -> Callable[..., Any]:
    """``GET``: the task's state, always 200 (an unknown or expired id, or another principal's
    task, says so in ``error``)."""

    async def status(task_id: str) -> JSONResponse:
        info = await runtime.task_queue.info(task_id, owner=request_owner())
        return JSONResponse(not_found(task_id) if info is None else info.to_json())

    return status


def _cancel_endpoint(runtime: Runtime) -> Callable[..., Any]:
    """``DELETE`` (agentpack's own route): the state after the cancel; an unknown id (or another
    principal's task) is a 404."""

    async def cancel(task_id: str) -> JSONResponse:
        info = await runtime.task_queue.cancel(task_id, owner=request_owner())
        if info is None:
            return JSONResponse(not_found(task_id), status_code=404)
        return JSONResponse(info.to_json())

    return cancel


def add_task_routes(app: Any, runtime: Runtime, path: str, name: str, submit: Callable[..., Any]) -> None:
    """``POST path`` (submit), ``GET path/{task_id}`` (status), ``DELETE path/{task_id}`` (cancel)."""
    install_task_answers(app)
    app.add_api_route(
        path,
        submit,
        methods=["POST"],
        tags=["tasks"],
        response_model=None,
        name=f"submit {name}",
        responses=SUBMIT_RESPONSES,
    )
    app.add_api_route(
        f"{path}/{{task_id}}",
        _status_endpoint(runtime),
        methods=["GET"],
        tags=["tasks"],
        response_model=None,
        name=f"status of {name}",
    )
    app.add_api_route(
        f"{path}/{{task_id}}",
        _cancel_endpoint(runtime),
        methods=["DELETE"],
        tags=["tasks"],
        response_model=None,
        name=f"cancel {name}",
    )
