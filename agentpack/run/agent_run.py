"""One run of the query handler for one request, written out as protocol events.

The run lives in a task of its own that calls the handler and writes each event the
moment it exists — one hop from the handler's ``yield`` to the socket.  Stopping is a
cancellation of that task: the handler sees ``CancelledError`` at its next await and may
clean up; the cancellation then reaches the run, which, knowing it was *asked* to stop,
writes the terminal ``canceled`` event.  A client that goes away cancels the task the same
way, and nothing is written.  Because the task is a plain asyncio task (no cancel scope
around it), a handler's clean-up may await as much as it needs.

The session is released *before* the terminal event is written, on every path: a client
that sends its next message the moment it reads the terminal event must find the session
free.

A run may have time limits (:class:`RunLimits`): a whole-run deadline and a longest silence
between two events.  Passing one ends the run the way a stop does — the handler is cancelled
and may clean up — but the terminal event is ``failed`` with code ``timeout`` and a reason,
because the run did not end by anyone's choice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agentpack._aio import uncancel
from agentpack.protocol.events import ResponseBuilder
from agentpack.protocol.schemas import AgentRequest
from agentpack.protocol.status import RunStatus
from agentpack.run.handler import QueryHandler
from agentpack.run.stream import CANCELLED_BY_SERVER, Write, run_to_end, settle_task

logger = logging.getLogger("agentpack.run")

#: Releases the run's session, given the run's final status (e.g. ``SessionGuard.end`` bound to the run).
Release = Callable[[str], Awaitable[None]]


#: What a handler may raise that fails its run and nothing else.  ``SystemExit`` and
#: ``KeyboardInterrupt`` are among them: raised in a handler they are a bug of that handler (the
#: server's own signals never reach it that way), and let through they would stop the event loop
#: and cut every other stream of the process.
HANDLER_FAILURES: tuple[type[BaseException], ...] = (Exception, SystemExit, KeyboardInterrupt)

#: The error code of a run ended by one of its :class:`RunLimits`.
TIMEOUT_CODE = "timeout"


class RunLimits:
    """Time limits of one run, in seconds; ``None`` means no limit.  (A plain slotted class: a
    dataclass's generated methods cost every start ~0.5 ms to make.)"""

    __slots__ = ("idle", "total")

    def __init__(self, total: float | None = None, idle: float | None = None) -> None:
        #: from the start of the run to its terminal event
        self.total = total
        #: between two events (a handler silent for longer is stuck, or waiting on something that is)
        self.idle = idle

    def __bool__(self) -> bool:
        return self.total is not None or self.idle is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunLimits) and (self.total, self.idle) == (other.total, other.idle)

    def __hash__(self) -> int:
        return hash((self.total, self.idle))

    def __repr__(self) -> str:
        return f"RunLimits(total={self.total!r}, idle={self.idle!r})"


#: What enforces a run's limits until the run cancels it at its end.
Watchdog = asyncio.TimerHandle | asyncio.Task[None]


def enforce_limits(
    limits: RunLimits, write: Write, fail: Callable[[str, str], None], name: str | None = None
) -> tuple[Write, Watchdog]:
    """``write`` that notes when each event goes out, and the watchdog that calls ``fail`` once a
    limit has passed (the caller cancels it when the run ends).

    A whole-run deadline alone — every run has one by default (``run_timeout_seconds``) — is one
    timer in the event loop and leaves ``write`` as it is: no task per run and no extra call
    per event.  Only a limit between two events needs to note when each event goes out."""
    total, idle = limits.total, limits.idle
    if idle is None:
        assert total is not None  # RunLimits is false without either
        message = f"the run took longer than its {total:g}s limit"
        return write, asyncio.get_running_loop().call_later(total, fail, TIMEOUT_CODE, message)
    started = last = time.monotonic()

    async def noted(event: Any) -> None:
        nonlocal last
        last = time.monotonic()
        await write(event)

    async def enforce() -> None:
        while True:
            now = time.monotonic()
            if total is not None and now >= started + total:
                return fail(TIMEOUT_CODE, f"the run took longer than its {total:g}s limit")
            if idle is not None and now >= last + idle:
                return fail(TIMEOUT_CODE, f"the run sent nothing for {idle:g}s (its limit between two events)")
            deadlines = ([started + total] if total is not None else []) + ([last + idle] if idle is not None else [])
            await asyncio.sleep(max(0.0, min(deadlines) - now))

    return noted, asyncio.create_task(enforce(), name=f"agentpack-run-limits-{name}")


#: The message of a failed event for an exception the handler did not mean for the client: its
#: text may hold anything (a connection string, a file path, a user's data), so it goes to the
#: server's log and, only with debug on, to the client.
SAFE_ERROR_MESSAGE = "Unknown agent error; the server's log has the details"


#: Set to 1 (true, yes, on), failed events carry the exception's type and text, as with
#: ``AgentApp(debug=True)``; it also covers runs no AgentApp owns (upstream's ``add_endpoint``).
DEBUG_ENV = "AGENTPACK_DEBUG"


def debug_from_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def error_of(exc: BaseException, debug: bool | None = None) -> tuple[str, str]:
    """``(code, message)`` for a failed response.  An exception with its own ``code`` was meant
    for the client and keeps its message; any other says :data:`SAFE_ERROR_MESSAGE`, or its
    type and text when ``debug`` is on (``None``: as :data:`DEBUG_ENV` says)."""
    if debug is None:
        debug = debug_from_env()
    code = getattr(exc, "code", None)  # SystemExit's ``code`` is its exit status, not an error code
    if isinstance(exc, Exception) and isinstance(code, str) and code:
        return code, str(getattr(exc, "message", None) or exc)
    if debug:
        return "AGENT_UNKNOWN_ERROR", f"Unknown agent error: {type(exc).__name__}: {exc}"
    return "AGENT_UNKNOWN_ERROR", SAFE_ERROR_MESSAGE


class StoppableRun:
    """How a run that runs in ``self.task`` is stopped or failed from outside.

    ``_finishing`` is set once the run's end is decided (it is releasing and writing its
    terminal event): from then on nothing cancels it.
    """

    task: asyncio.Task[None] | None
    stop_reason: str | None
    failure: tuple[str, str] | None
    _finishing: bool

    def stop(self, reason: str = "the run was stopped") -> None:
        """Interrupt the handler; the run ends with a ``canceled`` response."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self.task is not None and not self.task.done() and not self._finishing:
            self.task.cancel()

    def fail(self, code: str, message: str) -> None:
        """End the run as failed (a time limit passed): the handler is interrupted as by
        :meth:`stop`, and the terminal event is ``failed`` with ``code`` and ``message``."""
        if self.stop_reason is not None:
            return
        self.failure = (code, message)
        self.stop(message)


class AgentRun(StoppableRun):
    """Runs ``handler`` for ``request``; :meth:`pump` writes its events in order."""

    def __init__(
        self,
        owner: Any,
        handler: QueryHandler,
        request: AgentRequest,
        extra: dict[str, Any],
        limits: RunLimits | None = None,
        debug: bool = False,
    ):
        self.owner = owner
        #: a failed event then carries the exception's type and text (see :func:`error_of`)
        self.debug = debug
        self.handler = handler
        self.request = request
        self.extra = extra
        self.builder = ResponseBuilder(request.id, request.session_id)
        self.limits = limits
        self.stop_reason: str | None = None
        #: ``(code, message)`` when the run was ended as failed from outside (a time limit)
        self.failure: tuple[str, str] | None = None
        self.status: str = RunStatus.CREATED
        self.task: asyncio.Task[None] | None = None
        self.final: dict[str, Any] | None = None
        self._release: Release | None = None
        self._released: asyncio.Event | None = None
        #: the handler is over and the run is releasing and writing its terminal event:
        #: nothing may cancel it any more (a stop now changes nothing; the end is decided)
        self._finishing = False
        self._begun = False

    def on_release(self, release: Release) -> None:
        """Set what releases the session; it runs once, before the terminal event is written."""
        self._release = release

    async def release(self) -> None:
        """Release the session (once; later calls wait for the first).  Bounded by the release
        itself (``SessionGuard.end`` never waits without a bound)."""
        if self._release is None:
            return
        if self._released is not None:
            await self._released.wait()
            return
        self._released = asyncio.Event()
        try:
            await self._release(self.status)
        finally:
            self._released.set()

    def start(self, write: Write) -> asyncio.Task[None]:
        """Run :meth:`pump` in a task of its own (the task ``stop()`` cancels).

        ``write`` raises :class:`WriteFailed` when it cannot deliver an event.
        """
        self.task = asyncio.create_task(self.pump(write), name=f"agentpack-run-{self.request.session_id}")
        return self.task

    async def final_response(self, cancel_reason: str = CANCELLED_BY_SERVER) -> dict[str, Any]:
        """Run to the end with nobody reading live; returns the terminal response event.

        If the caller is cancelled (a job is cancelled) the run is stopped with
        ``cancel_reason`` — its terminal ``canceled`` event is then in :attr:`final` — and the
        cancellation propagates.  The run is settled and its session released either way.
        """
        await run_to_end(self, cancel_reason=cancel_reason, keep_cancel=True)
        assert self.final is not None
        return self.final

    async def begin(self, write: Write) -> None:
        """``created`` and ``in_progress``: written by :meth:`pump` unless a streaming response
        wrote them first (see ``Producer.begin``)."""
        self._begun = True
        self.status = RunStatus.IN_PROGRESS
        builder = self.builder
        await write(builder.stamp(builder.created()))
        await write(builder.stamp(builder.in_progress()))

    async def pump(self, write: Write) -> None:
        """Write created, in_progress, the handler's events and exactly one terminal event."""
        builder = self.builder
        error: BaseException | None = None
        watchdog: Watchdog | None = None
        if self.limits:
            write, watchdog = enforce_limits(self.limits, write, self.fail, self.request.session_id)
        try:
            if not self._begun:
                await self.begin(write)
            if self.stop_reason is None:
                error = await self._run_handler(write)
        except asyncio.CancelledError:
            if self.stop_reason is None:
                raise  # the client left: nothing to write
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if self.stop_reason is not None:
            uncancel()  # the stop is handled here (or was swallowed by the handler)
        self._finishing = True
        terminal = self._terminal(error)
        await self.release()  # before the client can read the end of the run
        self.final = builder.stamp(terminal)
        await write(self.final)

    async def _run_handler(self, write: Write) -> BaseException | None:
        framework = self.handler.framework
        builder = self.builder
        try:
            items = self.handler.stream(self.owner, framework.to_msgs(self.request), self.request, self.extra)
            events = framework.adapt(items, builder)
            try:
                async for event in events:
                    if self.stop_reason is not None:  # the handler swallowed the stop: end it here
                        return None
                    await write(builder.stamp(event))
            finally:
                await events.aclose()  # the handler's own finally blocks run now, not at GC time
            for event in builder.complete_open_messages():
                await write(builder.stamp(event))
        except asyncio.CancelledError:
            raise
        except HANDLER_FAILURES as exc:  # the handler failed: the client gets a failed response
            logger.exception("query handler failed for session %s", self.request.session_id)
            return exc
        return None

    def _terminal(self, error: BaseException | None) -> dict[str, Any]:
        if self.failure is not None:
            self.status = RunStatus.FAILED
            return self.builder.failed(*self.failure)
        if self.stop_reason is not None:
            self.status = RunStatus.CANCELED
            return self.builder.canceled(self.stop_reason)
        if error is not None:
            self.status = RunStatus.FAILED
            return self.builder.failed(*error_of(error, self.debug))
        self.status = RunStatus.COMPLETED
        return self.builder.completed()

    async def settle(self) -> None:
        """Make sure the run's task is over: cancel it if needed, with a grace for clean-up."""
        already_ending = self.stop_reason is not None or self._finishing
        await settle_task(self.task, already_ending, f"query handler for session {self.request.session_id}")
