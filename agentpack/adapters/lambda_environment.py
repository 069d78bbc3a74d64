"""The app for the life of one Lambda execution environment.

An execution environment serves many invocations, one at a time, until Lambda retires it.
The app is therefore loaded once, gets one event loop that outlives every invocation (so
connections, caches and background tasks made during start-up stay usable), and its
lifespan starts once — at init, before the first invocation — and shuts down once, when
Lambda ends the environment.

Lambda announces the end with SIGTERM (when the function has extensions; otherwise it just
kills the process, and nothing can run).  The handler installed here runs the app's
lifespan shutdown and exits.  If the signal lands in the middle of an invocation — a
timeout being enforced — that invocation is cancelled first: its answer no longer has
anywhere to go.  Whether Python code can run at all when SIGTERM arrives depends on the
runtime client: agentpack's streaming loop waits on asyncio, and awslambdaric on
python3.12+ waits for the next event in a thread, so the main thread takes the signal at
once; awslambdaric on python3.10/3.11 waits inside C code, and the handler only runs if an
invocation arrives before the platform's SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agentpack.adapters.lambda_http import HTTPRequest, event_adapter, http_request

logger = logging.getLogger("agentpack.lambda")
T = TypeVar("T")

#: How long the app's lifespan shutdown may take (Lambda allows 500 ms after SIGTERM before SIGKILL).
SHUTDOWN_TIMEOUT = 5.0


class LifespanFailed(RuntimeError):
    """The app reported that its start-up failed (``lifespan.startup.failed``)."""


class EnvironmentEnded(Exception):
    """SIGTERM ended the environment; raised only when ``exit`` returns (tests), never in Lambda."""


def _exit_process(code: int) -> None:
    """Leave now: flush what was logged, skip interpreter teardown (a runtime client thread may
    still be blocked waiting for the next event, and joining it would hang until SIGKILL)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


class LambdaEnvironment:
    """One app, one event loop and one lifespan for the whole execution environment.

    ``start()`` runs the lifespan start-up; :meth:`run` executes a coroutine on the
    environment's loop (one invocation at a time); :meth:`shutdown` runs the lifespan
    shutdown.  ``exit`` is what happens after a SIGTERM's shutdown (tests replace it).
    """

    def __init__(
        self, app: Any, *, exit: Callable[[int], None] = _exit_process, shutdown_timeout: float = SHUTDOWN_TIMEOUT
    ) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.loop = asyncio.new_event_loop()
        self._exit = exit
        self._shutdown_timeout = shutdown_timeout
        self._adapter: Any = None
        self._lifespan_task: asyncio.Task[None] | None = None
        self._lifespan_inbox: asyncio.Queue[dict[str, Any]] | None = None
        self._lifespan_events: asyncio.Queue[dict[str, Any]] | None = None
        self._current: asyncio.Future[Any] | None = None
        self._started = False
        self._closed = False
        self._terminating = False
        self._previous_sigterm: Any = None
        self._sigterm_installed = False

    @classmethod
    def from_spec(cls, spec: str, **options: Any) -> LambdaEnvironment:
        """Load the app named by ``spec`` (``app.py:app`` or ``package.module:attr``)."""
        from agentpack.loader import load_app

        app, _ = load_app(spec)
        return cls(app, **options)

    # -- start-up ------------------------------------------------------------------------
    def start(self) -> None:
        """Run the app's lifespan start-up (once) and take over SIGTERM; raises if start-up fails."""
        if self._started:
            return
        asyncio.set_event_loop(self.loop)  # libraries that ask for "the" loop get this one
        self._adapter = event_adapter(self.app)
        self._install_sigterm()
        self.run(self._start_lifespan())
        self._started = True

    async def _start_lifespan(self) -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def receive() -> dict[str, Any]:
            return await inbox.get()

        async def send(message: dict[str, Any]) -> None:
            await events.put(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        task = asyncio.ensure_future(self.app(scope, receive, send))
        await inbox.put({"type": "lifespan.startup"})
        reply = asyncio.ensure_future(events.get())
        await asyncio.wait({task, reply}, return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()
            error = task.exception()
            # An app that does not speak lifespan raises on the scope: run it without one, as uvicorn does.
            logger.info("the app does not support the ASGI lifespan protocol (%s); running without it", error)
            return
        message = reply.result()
        if message["type"] == "lifespan.startup.failed":
            task.cancel()
            raise LifespanFailed(message.get("message") or "the app's start-up failed")
        self._lifespan_task, self._lifespan_inbox, self._lifespan_events = task, inbox, events

    # -- invocations -----------------------------------------------------------------------
    def request(self, event: dict[str, Any], context: Any) -> HTTPRequest:
        """The invocation's event as an ASGI request (Mangum's event handlers)."""
        if self._adapter is None:
            raise RuntimeError("start() the environment before serving invocations")
        return http_request(self._adapter, event, context, self.state)

    async def stop_run(self, user_id: str, session_id: str) -> Any:
        """Stop an agent run through the app's public ``stop_chat`` (AgentApp); other apps have no runs."""
        stop_chat = getattr(self.app, "stop_chat", None)
        if stop_chat is not None:
            return await stop_chat(user_id, session_id)
        return None

    def run(self, work: Awaitable[T]) -> T:
        """Run ``work`` on the environment's loop; a SIGTERM meanwhile cancels it and ends the environment."""
        current = asyncio.ensure_future(work, loop=self.loop)
        self._current = current
        try:
            result = self.loop.run_until_complete(current)
        except BaseException:
            if not self._terminating:
                raise
            # cancelled by SIGTERM: the answer has nowhere to go (the environment ends below)
        finally:
            self._current = None
        if self._terminating:
            self._terminate()
            raise EnvironmentEnded("SIGTERM ended the execution environment")
        return result

    # -- shutdown ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Run the app's lifespan shutdown (bounded in time) and close the loop; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._lifespan_task is not None and not self.loop.is_running():
                self.loop.run_until_complete(self._stop_lifespan())
        finally:
            self._restore_sigterm()
            if not self.loop.is_running():
                self._cancel_leftovers()
                self.loop.close()
                if threading.current_thread() is threading.main_thread():
                    asyncio.set_event_loop(None)  # nobody should be handed a closed loop

    async def _stop_lifespan(self) -> None:
        assert (
            self._lifespan_inbox is not None and self._lifespan_events is not None and self._lifespan_task is not None
        )
        await self._lifespan_inbox.put({"type": "lifespan.shutdown"})
        reply = asyncio.ensure_future(self._lifespan_events.get())
        done, _ = await asyncio.wait(
            {reply, self._lifespan_task}, timeout=self._shutdown_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if reply in done and reply.result()["type"] == "lifespan.shutdown.failed":
            logger.error("the app's shutdown failed: %s", reply.result().get("message", ""))
        elif not done:
            logger.error("the app's shutdown did not finish within %.1fs", self._shutdown_timeout)
        reply.cancel()
        if not self._lifespan_task.done():
            await asyncio.wait({self._lifespan_task}, timeout=1.0)

    def _cancel_leftovers(self) -> None:
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending, timeout=1.0))

    # -- SIGTERM ---------------------------------------------------------------------------
    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may take signals; the runtime clients call us there
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._sigterm_installed = True

    def _restore_sigterm(self) -> None:
        if self._sigterm_installed and threading.current_thread() is threading.main_thread():
            signal.signal(
                signal.SIGTERM, self._previous_sigterm if self._previous_sigterm is not None else signal.SIG_DFL
            )
            self._sigterm_installed = False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        logger.info("SIGTERM: the execution environment is ending")
        self._terminating = True
        if self.loop.is_running():
            # Mid-invocation (or mid-start-up): stop that work; run() shuts down once it unwinds.
            current = self._current
            if current is not None:
                self.loop.call_soon_threadsafe(current.cancel)
            return
        self._terminate()

    def _terminate(self) -> None:
        previous = self._previous_sigterm
        try:
            self.shutdown()
        except Exception:
            logger.exception("shutting down after SIGTERM failed")
        if callable(previous) and previous not in (signal.SIG_DFL, signal.SIG_IGN):
            previous(signal.SIGTERM, None)  # a handler the app installed still gets its turn
        self._exit(0)
