"""A run's events as an async iterator, for code that pulls instead of being written to.

AgentScope Runtime hands protocol adapters a function ``func(request)`` that yields the
Agent API events of one run; custom adapters written for it call the function they get
and iterate.  :func:`iterate_run` gives them exactly that over a guarded run: the session
is held while they read, released when the run ends or the reader stops early (which
cancels the run, as a client leaving ``/process`` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from agentpack.protocol.schemas import AgentRequest
from agentpack.run.agent_run import RunLimits
from agentpack.run.stream import Producer

_END = object()


class RunSource(Protocol):
    """Opens runs: takes the session and returns the run, ready to start."""

    async def open_run(self, request: AgentRequest, limits: RunLimits | None = None) -> Producer: ...


async def iterate_run(
    source: RunSource, request: AgentRequest, limits: RunLimits | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Open a run of ``source`` and yield its events as they are produced."""
    run = await source.open_run(request, limits)
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def write(event: Any) -> None:
        queue.put_nowait(event)

    task = run.start(write)
    task.add_done_callback(lambda _: queue.put_nowait(_END))
    try:
        while (event := await queue.get()) is not _END:
            yield event
        task.result()  # a bug in the run surfaces here rather than as a stream that just ends
    finally:
        await asyncio.shield(run.settle())  # cancels the run if the reader left early
        await asyncio.shield(run.release())


__all__ = ["RunSource", "iterate_run"]
