"""HTTP routes of a task: submit, poll, cancel.  Same contract for embedded and Celery queues."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from fastapi import Body
from starlette.responses import JSONResponse

from agentpack.tasks.base import BrokerUnavailable, TaskInfo

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp


def _unknown(task_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"no task {task_id!r}: the id is unknown or its result has expired"}, status_code=404)


def _unavailable(exc: BrokerUnavailable) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


def _answer(info: TaskInfo) -> JSONResponse:
    return JSONResponse(info.to_json())


async def submit_response(app: "AgentApp", name: str, queue: str, payload: Any) -> JSONResponse:
    """Queue the job and answer 202 with its id (503 naming the broker when it is down)."""
    try:
        task_id = await app.task_queue.submit(name, payload)
    except BrokerUnavailable as exc:
        return _unavailable(exc)
    return JSONResponse(
        {"task_id": task_id, "status": "submitted", "queue": queue, "message": f"task {task_id} submitted to queue {queue}"},
        status_code=202,
    )


def submit_endpoint(app: "AgentApp", name: str, queue: str) -> Callable[..., Any]:
    async def submit(body: Any = Body(None)) -> JSONResponse:
        return await submit_response(app, name, queue, body)

    return submit


def _lookup_endpoint(app: "AgentApp", operation: str) -> Callable[..., Any]:
    """``GET`` (``info``) or ``DELETE`` (``cancel``) of one task: its state, 404 or 503."""

    async def endpoint(task_id: str) -> JSONResponse:
        try:
            info = await getattr(app.task_queue, operation)(task_id)
        except BrokerUnavailable as exc:
            return _unavailable(exc)
        return _unknown(task_id) if info is None else _answer(info)

    return endpoint


def add_task_routes(app: "AgentApp", path: str, name: str, queue: str, submit: Callable[..., Any]) -> None:
    """``POST path`` (202 + id), ``GET path/{task_id}``, ``DELETE path/{task_id}``."""
    app.add_api_route(path, submit, methods=["POST"], tags=["tasks"], response_model=None, status_code=202, name=f"submit {name}")
    app.add_api_route(f"{path}/{{task_id}}", _lookup_endpoint(app, "info"), methods=["GET"], tags=["tasks"], response_model=None, name=f"status of {name}")
    app.add_api_route(f"{path}/{{task_id}}", _lookup_endpoint(app, "cancel"), methods=["DELETE"], tags=["tasks"], response_model=None, name=f"cancel {name}")
