"""``Runtime``: what an AgentApp runs on — its interrupt backend and session guard, its task
queue, its readiness — with one public way in and out (:meth:`start`, :meth:`aclose`).

The lifespan, the routes and background runs all go through this object, so nothing
reaches into ``AgentApp``'s private attributes, and a worker process (which never runs the
app's lifespan) gets a runtime of its own from :meth:`for_worker`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from agentpack.interrupt.base import BaseInterruptBackend
from agentpack.interrupt.guard import SessionGuard
from agentpack.run.stream import CLEANUP_GRACE

if TYPE_CHECKING:  # the task layer loads with the first task route or job, not with every app
    from agentpack.tasks.base import TaskQueue

#: A readiness check returns ``None`` when its dependency answers, else the reason it does not.
ReadinessCheck = Callable[[], Awaitable[str | None]]


class Runtime:
    def __init__(
        self,
        backend: BaseInterruptBackend,
        lease_seconds: float,
        state_seconds: float,
        make_task_queue: Callable[[], TaskQueue],
    ) -> None:
        self.backend = backend
        self.guard = SessionGuard(backend, lease_seconds, state_seconds)
        self.readiness_checks: list[ReadinessCheck] = [backend.problem]
        #: ``True`` between :meth:`start` and :meth:`aclose` (in the web process, not in workers)
        self.started = False
        self._make_task_queue = make_task_queue
        self._task_queue: TaskQueue | None = None
        self._not_ready: str | None = "start-up has not finished"

    @classmethod
    def configure(
        cls,
        *,
        app_name: str,
        interrupt_redis_url: str | None,
        interrupt_backend: BaseInterruptBackend | None,
        lease_seconds: float,
        state_seconds: float,
        broker_url: str | None,
        backend_url: str | None,
        task_concurrency: int,
        task_result_seconds: float,
        task_results_max: int = 1000,
        task_results_max_bytes: int = 64 * 1024 * 1024,
    ) -> Runtime:
        """The runtime AgentApp's keywords describe (already checked by ``app.checks``): Redis or
        in-process interrupts, Celery or the embedded queue.  Redis and Celery are imported only
        when named, so an app that uses neither never loads them."""
        if interrupt_backend is None:
            if interrupt_redis_url is not None:
                from agentpack.interrupt.redis import RedisInterruptBackend

                interrupt_backend = RedisInterruptBackend(interrupt_redis_url)
            else:
                from agentpack.interrupt.local import LocalInterruptBackend

                interrupt_backend = LocalInterruptBackend()

        def make_task_queue() -> TaskQueue:
            if broker_url:
                from agentpack.tasks.celery_queue import CeleryQueue

                return CeleryQueue(app_name, broker_url, backend_url or broker_url, task_result_seconds)
            from agentpack.tasks.embedded import EmbeddedQueue

            return EmbeddedQueue(task_concurrency, task_result_seconds, task_results_max, task_results_max_bytes)

        runtime = cls(interrupt_backend, lease_seconds, state_seconds, make_task_queue)
        if broker_url:  # workers import the app and need its Celery application right away
            runtime.task_queue  # noqa: B018 - builds it
        return runtime

    @property
    def task_queue(self) -> TaskQueue:
        """Where ``@app.task`` jobs run; built on first use, so apps without tasks never load it."""
        if self._task_queue is None:
            self._task_queue = self._make_task_queue()
            self.readiness_checks.append(self._task_queue.problem)
        return self._task_queue

    @property
    def has_task_queue(self) -> bool:
        return self._task_queue is not None

    # -- life ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the backend and the task queue; runs are taken from here on."""
        self.guard.open()
        await self.backend.start()
        if self._task_queue is not None:
            await self._task_queue.start()
        self.started = True

    async def aclose(self) -> None:
        """Stop every run (each still sends its terminal event and frees its session) before the
        connections that needs are closed; then close the queue and the backend."""
        self.started = False
        self.mark_not_ready("the app is shutting down")
        await self.guard.close(timeout=2 * CLEANUP_GRACE + self.guard.release_timeout)
        if self._task_queue is not None:
            await self._task_queue.aclose()
        await self.backend.aclose()

    # -- readiness -----------------------------------------------------------------------
    def mark_ready(self) -> None:
        self._not_ready = None

    def mark_not_ready(self, reason: str) -> None:
        self._not_ready = reason

    async def readiness_problem(self) -> str | None:
        """``None`` when the app can take work; else why it cannot (start-up, a backend down)."""
        if self._not_ready is not None:
            return self._not_ready
        for check in self.readiness_checks:
            reason = await check()
            if reason is not None:
                return reason
        return None

    # -- workers -------------------------------------------------------------------------
    @asynccontextmanager
    async def session_guard(self) -> AsyncIterator[SessionGuard]:
        """The guard to run under: this runtime's in the web process; in a worker (whose
        lifespan never ran, and whose jobs each have an event loop of their own) a guard
        on a fresh copy of the backend, connected for the job's duration."""
        if self.started:
            yield self.guard
            return
        backend = self.backend.clone()
        await backend.start()
        try:
            yield SessionGuard(backend, self.guard.lease_seconds, self.guard.state_seconds)
        finally:
            await backend.aclose()

    def __repr__(self) -> str:
        return f"<Runtime backend={self.backend.name!r} started={self.started}>"


__all__ = ["ReadinessCheck", "Runtime"]
