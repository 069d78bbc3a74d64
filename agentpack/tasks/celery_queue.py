"""``CeleryQueue``: background jobs on Celery workers, in other processes or machines.

Tasks are registered with Celery under stable names when they are decorated, so a worker
that imports the same app (``agentpack worker APP``) knows every one of them.  Celery
itself cannot tell an unknown task id from a pending one (both read PENDING forever), so
each submission also leaves a small marker in the result backend: an id without a marker
is answered with 404.  A cancel leaves a marker too, which a worker checks before it
starts a job, so a cancel sent while no worker was online is still honoured.

The submission's marker also holds its owner (the app's hash of the submitting principal, never
the principal itself) when the app has auth: the task is then shown to that owner alone, and to
anyone else it reads exactly as an unknown id.  The marker is written again when the job ends
(and when it is canceled), so it lives as long as the result it guards; a result whose marker
is gone is shown only to readers without an owner (as before), never to one with an owner.
A result backend without ``get``/``set`` keeps no markers, so it can bind no task to its owner.

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
    visible_to,
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
                "result backend %s keeps no markers: unknown task ids will read as pending, not 404, "
                "and results are not bound to who submitted them",
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

        try:
            with status_reported_to(report):
                if is_async_job(spec):
                    return asyncio.run(run_job(spec, payload))  # a loop of its own per job: workers have none
                return run_job_sync(spec, payload)
        finally:
            self._renew_marker(task.request.id)

    def _renew_marker(self, task_id: str, marker: dict[str, Any] | None = None) -> None:
        """Write the submission's marker again, so it (and the owner in it) expires with the result
        stored now, not ``result_ttl`` after the submission."""
        if not self._kv:
            return
        try:
            marker = marker if marker is not None else self._marker_of(task_id)
            if marker is not None:
                self.celery.backend.set(_marker(task_id), json.dumps(marker))
        except Exception as exc:  # the result stands; its marker expires a little early
            logger.warning("could not renew the marker of task %s: %s", task_id, exc)

    def _marker_of(self, task_id: str) -> dict[str, Any] | None:
        """The submission's marker (``{"name", "queue", "owner"}``), or None where there is none."""
        raw = self.celery.backend.get(_marker(task_id))
        if not raw:
            return None
        try:
            marker = json.loads(raw)
        except ValueError:
            return {}
        return marker if isinstance(marker, dict) else {}

    # -- the queue interface -------------------------------------------------------------
    async def submit(self, name: str, payload: Any, owner: str | None = None) -> str:
        spec = self.specs[name]
        task_id = uuid.uuid4().hex

        def send() -> None:
            if self._kv:
                marker = {"name": name, "queue": spec.queue, "owner": owner}
                self.celery.backend.set(_marker(task_id), json.dumps(marker))
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

    def _read(self, task_id: str, owner: str | None) -> tuple[TaskInfo, dict[str, Any] | None] | None:
        """The task and its marker; None for an id never issued, forgotten, or not ``owner``'s."""
        backend = self.celery.backend
        marker = self._marker_of(task_id) if self._kv else None
        if marker is None and self._kv and owner is not None:
            return None  # nothing proves the reader submitted it
        if marker is not None and not visible_to(marker.get("owner"), owner):
            return None
        meta = backend.get_task_meta(task_id)
        state = meta.get("status", "PENDING")
        if state == "PENDING" and self._kv:
            if marker is None:
                return None
            if backend.get(_cancel_marker(task_id)):
                state = "REVOKED"
        info = TaskInfo(task_id, _STATUS.get(state, TaskStatus.RUNNING))
        if state == "SUCCESS":
            info.result = meta.get("result")
        elif state == "FAILURE":
            info.error = _failure(meta.get("result"))
        return info, marker

    async def info(self, task_id: str, owner: str | None = None) -> TaskInfo | None:
        def read() -> TaskInfo | None:
            found = self._read(task_id, owner)
            return found[0] if found is not None else None

        try:
            return await anyio.to_thread.run_sync(read)
        except Exception as exc:
            if _is_connection_error(exc):
                raise BrokerUnavailable(f"the result backend of {self.name} is unreachable: {exc}") from exc
            raise

    async def cancel(self, task_id: str, owner: str | None = None) -> TaskInfo | None:
        def revoke() -> TaskInfo | None:
            from celery import states

            found = self._read(task_id, owner)
            if found is None or found[0].status in TaskStatus.FINAL:
                return found[0] if found is not None else None
            marker = found[1]
            if self._kv:
                self.celery.backend.set(_cancel_marker(task_id), "1")
            self.celery.control.revoke(task_id, terminate=True, signal="SIGTERM")
            self.celery.backend.store_result(task_id, None, states.REVOKED)
            if marker is not None:
                self._renew_marker(task_id, marker)
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
