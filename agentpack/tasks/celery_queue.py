"""``CeleryQueue``: background jobs on Celery workers, in other processes or machines.

Tasks are registered with Celery under stable names when they are decorated, so a worker
that imports the same app (``agentpack worker APP``) knows every one of them.  Celery
itself cannot tell an unknown task id from a pending one (both read PENDING forever), so
each submission also leaves a small marker in the result backend: an id without a marker
is answered with 404.  A cancel leaves a marker too, which a worker checks before it
starts a job, so a cancel sent while no worker was online is still honoured.

Every Celery call blocks, so each runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

import anyio

from agentpack.tasks.base import (
    BrokerUnavailable,
    TaskInfo,
    TaskQueue,
    TaskSpec,
    TaskStatus,
    is_async_job,
    run_job,
    run_job_sync,
    status_reported_to,
)

logger = logging.getLogger("agentpack.tasks.celery")

#: A job that is waiting inside the worker (a background run for a busy session).
_WAITING = "WAITING"

_STATUS = {
    "PENDING": TaskStatus.PENDING,
    _WAITING: TaskStatus.PENDING,
    "RECEIVED": TaskStatus.PENDING,
    "STARTED": TaskStatus.RUNNING,
    "RETRY": TaskStatus.RUNNING,
    "SUCCESS": TaskStatus.FINISHED,
    "FAILURE": TaskStatus.ERROR,
    "REVOKED": TaskStatus.CANCELED,
}


def redacted(url: str) -> str:
    """A broker URL fit for messages: scheme, host and port, never the password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}"


def _marker(task_id: str) -> str:
    return f"agentpack-task-{task_id}"


def _cancel_marker(task_id: str) -> str:
    return f"agentpack-task-cancel-{task_id}"


class CeleryQueue(TaskQueue):
    label = "Celery queue"

    def __init__(
        self,
        app_name: str,
        broker_url: str,
        backend_url: str,
        result_ttl: float = 3600.0,
        default_queue: str = "celery",
    ) -> None:
        super().__init__()
        from celery import Celery

        self.broker_url = broker_url
        self.name = f"Celery broker at {redacted(broker_url)}"
        self.celery = Celery(app_name, broker=broker_url, backend=backend_url)
        self.celery.conf.update(
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            task_track_started=True,  # "running" is visible, not just pending/finished
            task_acks_late=True,  # a job whose worker dies is delivered again, not lost
            task_reject_on_worker_lost=True,
            worker_prefetch_multiplier=1,
            result_expires=int(result_ttl),
            task_default_queue=default_queue,
            broker_connection_retry_on_startup=True,
            broker_connection_timeout=2,
            redis_socket_connect_timeout=2,
            redis_socket_timeout=5,
            # Fail fast when the result backend is down (celery retries 20 times by default),
            # so a submission is answered with 503 in about a second instead of hanging.
            result_backend_transport_options={
                "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
            },
            worker_hijack_root_logger=False,
        )
        self._kv = hasattr(self.celery.backend, "set") and hasattr(self.celery.backend, "get")
        if not self._kv:
            logger.warning(
                "result backend %s keeps no markers: unknown task ids will read as pending, not 404",
                type(self.celery.backend).__name__,
            )

    # -- registration (also what the worker runs) ---------------------------------------
    def register(self, spec: TaskSpec) -> None:
        super().register(spec)
        queue = self

        def run(task: Any, payload: Any) -> Any:
            return queue._run_in_worker(task, spec, payload)

        run.__qualname__ = f"agentpack task {spec.name}"  # __name__ must stay an identifier for Celery
        self.celery.task(name=spec.name, bind=True, queue=spec.queue)(run)

    def _run_in_worker(self, task: Any, spec: TaskSpec, payload: Any) -> Any:
        from celery import states
        from celery.exceptions import Ignore

        if self._kv and self.celery.backend.get(_cancel_marker(task.request.id)):
            task.update_state(state=states.REVOKED)
            raise Ignore()

        def report(status: str) -> None:
            state = _WAITING if status == TaskStatus.PENDING else states.STARTED
            try:
                task.update_state(state=state)
            except Exception as exc:  # only the status shown to pollers is stale
                logger.warning("could not record state %s of task %s: %s", state, task.request.id, exc)

        with status_reported_to(report):
            if is_async_job(spec):
                return asyncio.run(run_job(spec, payload))  # a loop of its own per job: workers have none
            return run_job_sync(spec, payload)

    # -- the queue interface -------------------------------------------------------------
    async def submit(self, name: str, payload: Any) -> str:
        spec = self.specs[name]
        task_id = uuid.uuid4().hex

        def send() -> None:
            if self._kv:
                self.celery.backend.set(_marker(task_id), json.dumps({"name": name, "queue": spec.queue}))
            self.celery.send_task(
                name,
                args=[payload],
                task_id=task_id,
                queue=spec.queue,
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
            )

        try:
            await anyio.to_thread.run_sync(send)
        except Exception as exc:
            if _is_connection_error(exc):
                raise BrokerUnavailable(f"{self.name} is unreachable: {exc}") from exc
            raise
        return task_id

    def _read(self, task_id: str) -> TaskInfo | None:
        backend = self.celery.backend
        meta = backend.get_task_meta(task_id)
        state = meta.get("status", "PENDING")
        if state == "PENDING" and self._kv:
            if not backend.get(_marker(task_id)):
                return None
            if backend.get(_cancel_marker(task_id)):
                state = "REVOKED"
        info = TaskInfo(task_id, _STATUS.get(state, TaskStatus.RUNNING))
        if state == "SUCCESS":
            info.result = meta.get("result")
        elif state == "FAILURE":
            info.error = _failure(meta.get("result"))
        return info

    async def info(self, task_id: str) -> TaskInfo | None:
        try:
            return await anyio.to_thread.run_sync(self._read, task_id)
        except Exception as exc:
            if _is_connection_error(exc):
                raise BrokerUnavailable(f"the result backend of {self.name} is unreachable: {exc}") from exc
            raise

    async def cancel(self, task_id: str) -> TaskInfo | None:
        def revoke() -> TaskInfo | None:
            from celery import states

            info = self._read(task_id)
            if info is None or info.status in TaskStatus.FINAL:
                return info
            if self._kv:
                self.celery.backend.set(_cancel_marker(task_id), "1")
            self.celery.control.revoke(task_id, terminate=True, signal="SIGTERM")
            self.celery.backend.store_result(task_id, None, states.REVOKED)
            return TaskInfo(task_id, TaskStatus.CANCELED)

        try:
            return await anyio.to_thread.run_sync(revoke)
        except Exception as exc:
            if _is_connection_error(exc):
                raise BrokerUnavailable(f"{self.name} is unreachable: {exc}") from exc
            raise

    async def problem(self) -> str | None:
        def check() -> None:
            with self.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)

        try:
            await anyio.to_thread.run_sync(check)
        except Exception as exc:
            return f"{self.name} is unreachable: {exc}"
        return None


def _failure(result: Any) -> dict[str, str]:
    """A stored Celery failure as ``{type, message}``, rebuilt exception or raw metadata alike."""
    if isinstance(result, BaseException):
        return {"type": type(result).__name__, "message": str(result)}
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(m) for m in message)
        return {"type": str(result["exc_type"]), "message": str(message or "")}
    return {"type": "Error", "message": str(result)}


def _is_connection_error(exc: BaseException) -> bool:
    """Broker and backend connection failures, whatever library raised them."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"OperationalError", "ConnectionError", "TimeoutError", "OSError", "BackendError"})
