"""What every task queue offers the HTTP layer, and the shapes it answers with.

Two queues implement it: :class:`~agentpack.tasks.embedded.EmbeddedQueue` (in-process, when no
broker is configured) and :class:`~agentpack.tasks.celery_queue.CeleryQueue`.  Both give the
same HTTP contract, so moving a service from one to the other changes no client.
"""

from __future__ import annotations

import hmac
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from agentpack._aio import call, is_async_callable, is_async_gen_callable
from agentpack.protocol.serialize import NotSerializable, jsonable
from agentpack.protocol.status import TaskStatus as TaskStatus  # re-exported: agentpack.tasks names it


class BrokerUnavailable(RuntimeError):
    """The broker cannot be reached; submissions answer 503 naming it."""

    #: extra keys for the 503 body, set by the route that knows them (a submission's queue)
    answer: dict[str, Any] = {}  # noqa: RUF012 (replaced per instance, never mutated)


@dataclass
class TaskInfo:
    """A task's state as clients see it on ``GET {path}/{task_id}``."""

    task_id: str
    status: str
    result: Any = None
    error: dict[str, str] | None = None
    started_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """``status`` and ``result`` as AgentScope Runtime answers them (a failed task's
        ``result`` is its error message), plus ``task_id``, ``error`` and ``started_at``."""
        result = self.result
        if self.status == TaskStatus.ERROR and result is None and self.error is not None:
            result = self.error.get("message")
        body = {"task_id": self.task_id, "status": self.status, "result": result, "error": self.error}
        if self.started_at is not None:
            body["started_at"] = self.started_at
        return body


#: Where the job running in this context reports a change of status (set by the queue).
_status_sink: ContextVar[Callable[[str], None] | None] = ContextVar("agentpack_job_status", default=None)


def report_status(status: str) -> None:
    """Tell the queue the job running here is now ``status`` (e.g. ``pending`` while it waits
    for its session); a no-op outside a queued job."""
    sink = _status_sink.get()
    if sink is not None:
        sink(status)


@contextmanager
def status_reported_to(sink: Callable[[str], None]) -> Iterator[None]:
    """Route :func:`report_status` calls of the job run inside this block to ``sink``."""
    token = _status_sink.set(sink)
    try:
        yield
    finally:
        _status_sink.reset(token)


def error_info(exc: BaseException) -> dict[str, str]:
    """How a job's failure is reported: its exception type and message, not a bare string."""
    return {"type": type(exc).__name__, "message": str(exc)}


@dataclass
class TaskSpec:
    """A function registered with ``@app.task``: its stable name, queue and calling convention."""

    name: str
    func: Callable[..., Any]
    queue: str
    takes_payload: bool = field(init=False)

    def __post_init__(self) -> None:
        params = [
            p
            for p in inspect.signature(self.func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        if len(params) > 1:
            raise TypeError(
                f"@app.task function {self.name} takes {len(params)} arguments; "
                "it may take none or one (the JSON body of the request)"
            )
        self.takes_payload = bool(params) or any(
            p.kind is p.VAR_POSITIONAL for p in inspect.signature(self.func).parameters.values()
        )

    def arguments(self, payload: Any) -> tuple[Any, ...]:
        return (payload,) if self.takes_payload else ()


def _stored(spec: TaskSpec, result: Any) -> Any:
    try:
        return jsonable(result, strict=True)
    except NotSerializable as exc:
        raise NotSerializable(f"the result of {spec.name} cannot be stored as JSON: {exc}") from None


def run_job_sync(spec: TaskSpec, payload: Any) -> Any:
    """Call a sync task function in this thread (a Celery worker's) and return its JSON-ready result."""
    result = spec.func(*spec.arguments(payload))
    return _stored(spec, list(result) if inspect.isgenerator(result) else result)


def is_async_job(spec: TaskSpec) -> bool:
    return is_async_callable(spec.func) or is_async_gen_callable(spec.func)


async def run_job(spec: TaskSpec, payload: Any) -> Any:
    """Call a task function of any shape — async, async generator (its items, as a list), an
    object with an async ``__call__``, or sync (in a worker thread) — and return its
    JSON-ready result."""
    func, args = spec.func, spec.arguments(payload)
    if is_async_gen_callable(func):
        return _stored(spec, [item async for item in func(*args)])
    if is_async_callable(func):
        return _stored(spec, await call(func, *args))
    import anyio.to_thread

    return await anyio.to_thread.run_sync(run_job_sync, spec, payload, abandon_on_cancel=True)


def stable_name(func: Callable[..., Any], script_name: str | None = None) -> str:
    """``module.qualname`` of ``func``, the same in the web process and in any worker.

    A script run as ``__main__`` is named after its file, as ``agentpack run``/``worker``
    import it, so both sides agree.
    """
    module = func.__module__
    if module == "__main__":
        module = script_name or "__main__"
    return f"{module}.{func.__qualname__}"


class TaskQueue(ABC):
    """Runs registered functions in the background and reports on them by id."""

    #: Shown in readiness and error messages.
    name: str = "task queue"
    #: How a submission's message names the queue: "submitted to <label> <queue>".
    label: str = "queue"

    def __init__(self) -> None:
        self.specs: dict[str, TaskSpec] = {}

    def register(self, spec: TaskSpec) -> None:
        if spec.name in self.specs and self.specs[spec.name].func is not spec.func:
            raise ValueError(f"two @app.task functions are named {spec.name!r}; give one of them name=")
        self.specs[spec.name] = spec

    async def start(self) -> None:
        """Called at app start-up."""

    async def aclose(self) -> None:
        """Called at app shutdown."""

    async def problem(self) -> str | None:
        """``None`` when the queue can take work, else why not (used by ``/readiness``)."""
        return None

    @abstractmethod
    async def submit(self, name: str, payload: Any, owner: str | None = None) -> str:
        """Queue ``name`` with ``payload``; returns the task id.  Raises :class:`BrokerUnavailable`.

        ``owner`` (an opaque key, the app's hash of the submitting principal) binds the task:
        see :func:`visible_to`."""

    @abstractmethod
    async def info(self, task_id: str, owner: str | None = None) -> TaskInfo | None:
        """The task's state, or ``None`` for an id this queue never issued (or forgot), or one
        ``owner`` may not see."""

    @abstractmethod
    async def cancel(self, task_id: str, owner: str | None = None) -> TaskInfo | None:
        """Cancel a pending or running task; ``None`` for an unknown id or one ``owner`` may not see."""


def visible_to(task_owner: str | None, reader: str | None) -> bool:
    """Whether a task submitted by ``task_owner`` is shown to ``reader``.

    A task submitted without an owner (an app without auth, a route opened with ``auth=False``)
    is anyone's, as before; one with an owner is its owner's alone, and to everyone else it is
    exactly an unknown id, so ids cannot be probed.  Compared in constant time, as keys are."""
    if task_owner is None:
        return True
    return reader is not None and hmac.compare_digest(
        task_owner.encode("utf-8", "replace"), reader.encode("utf-8", "replace")
    )
