"""``EmbeddedQueue``: background jobs inside the web process, when no broker is configured.

Jobs run on the app's event loop with bounded concurrency; sync functions run in worker
threads so they never block the loop.  A job's failure is its own: it is recorded and
nothing else is affected.  Finished jobs are kept for ``result_ttl`` seconds, then
forgotten (their ids then answer 404, not an eternal "pending").

The kept results are also bounded, because they live in the web process's memory: at most
``max_results`` finished jobs and ``max_result_bytes`` of their results (measured as JSON).
Past either, the jobs that finished first are forgotten first — the newest result is always
kept, even one larger than the whole bound, so a job's own client can read it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from agentpack._aio import wait_bounded
from agentpack.tasks.base import (
    TaskInfo,
    TaskQueue,
    TaskSpec,
    TaskStatus,
    error_info,
    run_job,
    status_reported_to,
    visible_to,
)

logger = logging.getLogger("agentpack.tasks")

#: Seconds a cancelled job gets to end before the cancel (or shutdown) stops waiting for it.
CANCEL_GRACE = 5.0


@dataclass(eq=False)
class _Job:
    info: TaskInfo
    task: asyncio.Task[None] | None = None
    expires: float = float("inf")
    #: size of the stored result and error, as JSON (counted once the job has finished)
    size: int = 0
    #: who submitted it (the app's owner key), None for anyone's
    owner: str | None = None


def _size(info: TaskInfo) -> int:
    return len(json.dumps([info.result, info.error], ensure_ascii=False, default=str).encode("utf-8", "replace"))


class EmbeddedQueue(TaskQueue):
    name = "embedded task queue"

    def __init__(
        self,
        concurrency: int = 8,
        result_ttl: float = 3600.0,
        max_results: int = 1000,
        max_result_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        super().__init__()
        if concurrency < 1:
            raise ValueError("task concurrency must be at least 1")
        if max_results < 1 or max_result_bytes < 1:
            raise ValueError("task_results_max and task_results_max_bytes must be at least 1")
        self.concurrency = concurrency
        self.result_ttl = result_ttl
        self.max_results = max_results
        self.max_result_bytes = max_result_bytes
        self._jobs: dict[str, _Job] = {}
        #: finished jobs, oldest first, and the bytes of their results
        self._finished: OrderedDict[str, _Job] = OrderedDict()
        self._finished_bytes = 0
        self._slots: asyncio.Semaphore | None = None

    async def submit(self, name: str, payload: Any, owner: str | None = None) -> str:
        spec = self.specs[name]
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        self._sweep()
        job = _Job(TaskInfo(uuid.uuid4().hex, TaskStatus.PENDING), owner=owner)
        self._jobs[job.info.task_id] = job
        job.task = asyncio.create_task(self._run(job, spec, payload), name=f"agentpack-task-{job.info.task_id}")
        return job.info.task_id

    async def _run(self, job: _Job, spec: TaskSpec, payload: Any) -> None:
        info = job.info
        try:
            assert self._slots is not None
            async with self._slots:
                info.status, info.started_at = TaskStatus.RUNNING, time.time()
                with status_reported_to(lambda status: _report(info, status)):
                    info.result = await run_job(spec, payload)
                info.status = TaskStatus.FINISHED
        except asyncio.CancelledError:
            info.status = TaskStatus.CANCELED  # a cancel is the job's end, not an error to propagate
        except Exception as exc:
            logger.info("task %s (%s) failed: %r", info.task_id, spec.name, exc)
            info.status, info.error = TaskStatus.ERROR, error_info(exc)
        finally:
            job.expires = time.monotonic() + self.result_ttl
            self._keep(job)

    def _keep(self, job: _Job) -> None:
        """Count the finished job's result, forgetting the oldest results past the bounds."""
        job.size = _size(job.info)
        self._finished[job.info.task_id] = job
        self._finished_bytes += job.size
        while len(self._finished) > 1 and (
            len(self._finished) > self.max_results or self._finished_bytes > self.max_result_bytes
        ):
            task_id, _ = next(iter(self._finished.items()))
            self._forget(task_id)

    def _forget(self, task_id: str) -> None:
        self._jobs.pop(task_id, None)
        gone = self._finished.pop(task_id, None)
        if gone is not None:
            self._finished_bytes -= gone.size

    def _sweep(self) -> None:
        now = time.monotonic()
        for task_id in [i for i, job in self._jobs.items() if job.expires <= now]:
            self._forget(task_id)

    def _job(self, task_id: str, owner: str | None) -> _Job | None:
        job = self._jobs.get(task_id)
        return job if job is not None and visible_to(job.owner, owner) else None

    async def info(self, task_id: str, owner: str | None = None) -> TaskInfo | None:
        self._sweep()
        job = self._job(task_id, owner)
        return job.info if job is not None else None

    async def cancel(self, task_id: str, owner: str | None = None) -> TaskInfo | None:
        job = self._job(task_id, owner)
        if job is None:
            return None
        if job.info.status not in TaskStatus.FINAL and job.task is not None:
            job.task.cancel()
            # bounded: a job that swallows its cancellation must not hang the DELETE
            await wait_bounded(asyncio.gather(job.task, return_exceptions=True), CANCEL_GRACE)
            if job.task.cancelled() and job.info.status not in TaskStatus.FINAL:
                # canceled before its coroutine began, so _run never saw it: end it here
                job.info.status = TaskStatus.CANCELED
                job.expires = time.monotonic() + self.result_ttl
                self._keep(job)
        return job.info

    async def aclose(self) -> None:
        running = [job.task for job in self._jobs.values() if job.task is not None and not job.task.done()]
        for task in running:
            task.cancel()
        if running:  # bounded: a job that swallows its cancellation must not hang shutdown
            await wait_bounded(asyncio.gather(*running, return_exceptions=True), CANCEL_GRACE)

    def __len__(self) -> int:
        return len(self._jobs)


def _report(info: TaskInfo, status: str) -> None:
    """A job that waits (a background run for a busy session) has not started yet: its
    ``started_at`` is when it runs, not when it took a slot."""
    info.status = status
    if status == TaskStatus.PENDING:
        info.started_at = None
    elif status == TaskStatus.RUNNING:
        info.started_at = time.time()
