"""One run of the query handler for one request, as a stream of protocol events.

The handler runs in a task of its own that feeds a small queue; the response reads the
queue.  That split is what makes a run stoppable: ``stop()`` cancels the handler's task
(the handler sees ``CancelledError`` at its next await) while the reader is still free
to send the terminal ``canceled`` event.  A client that goes away cancels the reader,
and the reader takes the handler down with it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional

from agentpack.app.handler import QueryHandler
from agentpack.protocol.events import ResponseBuilder
from agentpack.protocol.schemas import AgentRequest, RunStatus

logger = logging.getLogger("agentpack.run")

#: How many built events may wait for a slow client before the handler is paused.
QUEUE_SIZE = 64
#: How long a stopped handler gets to finish its cleanup before the run gives up on it.
CLEANUP_GRACE = 5.0


@dataclass(frozen=True)
class _End:
    """Marks the end of the handler's output: how it ended, and the error if it raised."""

    error: Optional[BaseException] = None
    cancelled: bool = False


#: Put in the queue by ``stop()`` so a reader waiting on an idle handler wakes at once.
_WAKE = object()


def error_of(exc: BaseException) -> tuple[str, str]:
    """``(code, message)`` for a failed response; exceptions may bring their own ``code``."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code, str(getattr(exc, "message", None) or exc)
    return "AGENT_UNKNOWN_ERROR", f"Unknown agent error: {type(exc).__name__}: {exc}"


class AgentRun:
    """Runs ``handler`` for ``request`` and yields its events, stamped in send order."""

    def __init__(self, owner: Any, handler: QueryHandler, request: AgentRequest, extra: dict[str, Any]):
        self.owner = owner
        self.handler = handler
        self.request = request
        self.extra = extra
        self.builder = ResponseBuilder(request.id, request.session_id)
        self.stop_reason: Optional[str] = None
        self.status: str = RunStatus.CREATED
        self._task: Optional[asyncio.Task] = None
        self._queue: asyncio.Queue = asyncio.Queue()

    def stop(self, reason: str = "the run was stopped") -> None:
        """Interrupt the handler; the stream ends with a ``canceled`` response."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self._task is not None:
            self._task.cancel()
            self._queue.put_nowait(_WAKE)

    async def _produce(self, room: asyncio.Semaphore) -> None:
        framework = self.handler.framework
        end = _End()
        items = self.handler.stream(self.owner, framework.to_msgs(self.request), self.request, self.extra)
        events = framework.adapt(items, self.builder)
        try:
            async for event in events:
                if self.stop_reason is not None:  # the handler swallowed the stop: end it here
                    raise asyncio.CancelledError()
                await room.acquire()
                self._queue.put_nowait(event)
            for event in self.builder.complete_open_messages():
                self._queue.put_nowait(event)
        except asyncio.CancelledError:
            end = _End(cancelled=True)
            raise
        except Exception as exc:  # the handler failed: the client gets a failed response
            logger.exception("query handler failed for session %s", self.request.session_id)
            end = _End(exc)
        finally:
            self._queue.put_nowait(end)
            await events.aclose()  # runs the handler's own finally blocks now, not at GC time

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The response's events; the last one is always the single terminal response event."""
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The events in batches of whatever was ready together.

        Nothing waits to fill a batch: the first event ends the wait, and only events the
        handler had already produced join it.  A fast handler thus costs one socket write
        per batch instead of one per token, while a slow one still gets each token out the
        moment it is yielded.
        """
        builder = self.builder
        self.status = RunStatus.IN_PROGRESS
        first = [builder.stamp(builder.created()), builder.stamp(builder.in_progress())]
        # Unbounded queue, bounded by the semaphore: the handler waits for a slow client,
        # yet the end marker and the stop wake-up can always be put without waiting.
        room = asyncio.Semaphore(QUEUE_SIZE)
        self._task = task = asyncio.create_task(self._produce(room))
        if self.stop_reason is not None:  # stopped before it started
            task.cancel()
        queue = self._queue
        end: Optional[_End] = None
        try:
            yield first
            while end is None and self.stop_reason is None:
                item = await queue.get()
                batch = []
                while True:
                    if self.stop_reason is not None:
                        break
                    if isinstance(item, _End):
                        end = item
                        break
                    if item is not _WAKE:
                        room.release()
                        batch.append(builder.stamp(item))
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                if end is None and self.stop_reason is None:
                    yield batch
                    continue
                batch.append(builder.stamp(self._terminal(end)))
                yield batch
        finally:
            await self._settle(task)

    def _terminal(self, end: Optional[_End]) -> dict[str, Any]:
        if self.stop_reason is not None or end is None or end.cancelled:
            self.status = RunStatus.CANCELED
            return self.builder.canceled(self.stop_reason or "the handler was cancelled")
        if end.error is not None:
            self.status = RunStatus.FAILED
            return self.builder.failed(*error_of(end.error))
        self.status = RunStatus.COMPLETED
        return self.builder.completed()

    async def _settle(self, task: asyncio.Task) -> None:
        """Wait for the handler's task to end before the run is reported as ended.

        A stopped handler has already been cancelled and gets ``CLEANUP_GRACE`` seconds
        to save its state; a run whose client left is cancelled here.  A handler still
        running after its grace is cancelled again, and abandoned (with a warning) if it
        ignores that too.
        """
        if task.done():
            return
        if self.stop_reason is None:
            task.cancel()
        for attempt in range(2):
            done, _ = await asyncio.wait({task}, timeout=CLEANUP_GRACE)
            if done:
                return
            task.cancel()
        logger.warning(
            "query handler for session %s ignored cancellation for %.0fs; abandoning it",
            self.request.session_id,
            2 * CLEANUP_GRACE,
        )
