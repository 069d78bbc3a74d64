"""The one SSE response of agentpack: ``/process`` runs and generator ``@app.endpoint`` routes.

A *producer* — an :class:`~agentpack.run.agent_run.AgentRun`, or an
:class:`IteratorProducer` around an endpoint's generator — writes each event from its own
task straight to the connection, so an event costs one hop instead of a queue hand-off,
and the producer decides the last word (a run's terminal event) even when it is being
stopped.  The response adds what remains: the headers, a disconnect watch that cancels the
producer the moment the client leaves, comment pings on idle streams, and the end of the
body.

When the server cancels the request (its graceful shutdown ran out of time), the producer
is stopped rather than cut: a run still sends its terminal ``canceled`` event, with the
reason, and the body ends cleanly; the session is released either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
from starlette.responses import Response

from agentpack._aio import uncancel, wait_bounded
from agentpack.protocol.serialize import jsonable
from agentpack.protocol.sse import STREAM_HEADERS, encode_event

logger = logging.getLogger("agentpack.stream")

#: Seconds of silence after which a comment line is sent, so proxies keep the stream open.
PING_INTERVAL = 15.0
_PING = b": ping\n\n"

#: How long a producer's clean-up may take after it was cancelled before it is abandoned.
CLEANUP_GRACE = 5.0

#: Why a producer ends when the server cancels its request (a graceful shutdown that ran out).
CANCELLED_BY_SERVER = "the server is shutting down"

#: Writes one event: a JSON value, which the writer encodes as one SSE ``data:`` frame, or
#: bytes already framed by the producer (another protocol's frames over the same response).
Write = Callable[[Any], Awaitable[None]]


#: One future per response being written, done when its ``__call__`` returns (see
#: :func:`streams_ended`).
_open_streams: set[asyncio.Future[None]] = set()


async def streams_ended(within: float) -> bool:
    """Wait, at most ``within`` seconds, until every stream this event loop is writing has
    ended; ``False`` if some had not.

    The app's shutdown calls it last.  A server exits the moment the app's shutdown returns
    (uvicorn re-raises the signal it caught right then, before its loop winds down), and a run
    releases its session *before* writing its terminal event, so without this wait a stream
    the shutdown ended could lose its last word and the end of its body.
    """
    loop = asyncio.get_running_loop()
    open_here = [done for done in _open_streams if done.get_loop() is loop and not done.done()]
    if not open_here:
        return True
    _, pending = await asyncio.wait(open_here, timeout=within)
    if pending:
        logger.warning("shutdown: %d stream(s) had not ended after %.0fs; leaving them", len(pending), within)
    return not pending


class WriteFailed(BaseException):
    """Writing an event failed (the client is gone).  A BaseException so that it is never
    mistaken for the producer failing: it passes every ``except Exception`` on its way out."""


class Producer(Protocol):
    """What :class:`StreamResponse` streams from."""

    async def begin(self, write: Write) -> None:
        """Write what is known before anything runs (a run's ``created`` and ``in_progress``),
        from the request's own task: the first event goes out without waiting a loop turn
        for the producer's task to begin.  May write nothing."""

    def start(self, write: Write) -> asyncio.Task[None]: ...

    def stop(self, reason: str = ...) -> None: ...

    async def settle(self) -> None: ...

    async def release(self) -> None: ...


async def settle_task(task: asyncio.Task[Any] | None, already_stopped: bool, what: str) -> None:
    """Make sure ``task`` is over: cancel it (unless a stop already did), with a grace for
    clean-up; a task still running after that is cancelled again, then abandoned with a warning."""
    if task is None or task.done():
        return
    if not already_stopped:
        task.cancel()
    for _ in range(2):
        done, _ = await asyncio.wait({task}, timeout=CLEANUP_GRACE)
        if done:
            return
        task.cancel()
    logger.warning("%s ignored cancellation for %.0fs; abandoning it", what, 2 * CLEANUP_GRACE)


async def _wait_through_cancels(task: asyncio.Task[Any], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``task`` to end, absorbing cancels of the caller (see
    :func:`through_cancels`) without a task of its own, which the closing loop would cancel too."""
    deadline = time.monotonic() + seconds
    while not task.done() and time.monotonic() < deadline:
        try:
            await asyncio.wait({task}, timeout=deadline - time.monotonic())
        except asyncio.CancelledError:
            uncancel()
    return task.done()


def _stopped_cleanly(task: asyncio.Task[Any]) -> bool:
    """A stopped producer's task ended without an error (cancelled counts: a stop cancels an
    endpoint's stream); retrieves the outcome, always."""
    return task.cancelled() or task.exception() is None


async def through_cancels(work: Awaitable[Any], seconds: float) -> tuple[Any, bool]:
    """Give ``work`` up to ``seconds`` to finish even if the caller is cancelled meanwhile;
    ``(its result, or None when it did not finish in time, cancelled_meanwhile)``.

    A server shutting down cancels a request once when its grace runs out and, if the request
    is still ending its stream, again as its event loop closes (uvicorn does not wait for the
    tasks it cancelled).  ``anyio``'s shield does not stop those native cancels, so the
    bounded wait absorbs them here and the caller decides what a cancel meant.  An exception
    raised by ``work`` is re-raised.
    """
    inner = asyncio.ensure_future(work)
    deadline = time.monotonic() + seconds
    cancelled = False
    while not inner.done():
        left = deadline - time.monotonic()
        if left <= 0:
            inner.cancel()
            inner.add_done_callback(_retrieve)
            return None, cancelled
        try:
            await asyncio.wait({inner}, timeout=left)
        except asyncio.CancelledError:
            cancelled = True
            uncancel()
    if inner.cancelled():  # the closing loop cancels every task, this one's work too
        return None, cancelled
    return inner.result(), cancelled


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _discard(event: Any) -> None:
    pass


async def run_to_end(
    producer: Producer, write: Write = _discard, cancel_reason: str = CANCELLED_BY_SERVER, keep_cancel: bool = False
) -> None:
    """Run ``producer`` with nobody reading live (a non-streaming answer, a background job);
    everything it writes goes to ``write``.

    If the caller is cancelled (the server is shutting down, a job is cancelled) the producer is
    stopped with ``cancel_reason`` and still writes its last word; the cancellation propagates
    when ``keep_cancel`` is set or that could not be written.  The producer is settled and
    released on every path.
    """
    task = producer.start(write)
    try:
        await asyncio.wait({task})
    except asyncio.CancelledError:
        producer.stop(cancel_reason)
        await asyncio.shield(wait_bounded(asyncio.wait({task}), 2 * CLEANUP_GRACE))
        if keep_cancel or not task.done() or task.cancelled() or task.exception() is not None:
            raise
        uncancel()
    finally:
        await asyncio.shield(producer.settle())
        await asyncio.shield(producer.release())
    task.result()


def error_event(exc: BaseException, debug: bool | None = None) -> dict[str, str]:
    """The event a failing endpoint stream ends with (AgentScope Runtime's shape).  ``error`` is
    the exception's text only with debug on (``None``: as AGENTPACK_DEBUG says): the text may hold
    anything, as for a run's ``failed`` event (see ``error_of``)."""
    # the error path only (agent_run imports this module)
    from agentpack.run.agent_run import SAFE_ERROR_MESSAGE, debug_from_env

    if debug is None:
        debug = debug_from_env()
    text = str(exc) if debug else SAFE_ERROR_MESSAGE
    return {"error": text, "error_type": type(exc).__name__, "message": "Error in streaming generator"}


class IteratorProducer:
    """Streams the items of an endpoint's (async) iterator, each deep-serialized to JSON;
    an exception becomes one final error event instead of a cut connection."""

    def __init__(self, source: AsyncIterator[Any], debug: bool | None = None) -> None:
        self.source = source
        self.debug = debug
        self.task: asyncio.Task[None] | None = None
        self.stopped = False

    async def begin(self, write: Write) -> None:
        return None

    def start(self, write: Write) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._pump(write), name="agentpack-endpoint-stream")
        return self.task

    async def _pump(self, write: Write) -> None:
        try:
            async for item in self.source:
                await write(jsonable(item))
        except (asyncio.CancelledError, WriteFailed):
            raise
        except Exception as exc:
            logger.exception("streaming endpoint failed")
            await write(error_event(exc, self.debug))
        finally:
            closer = getattr(self.source, "aclose", None)
            if closer is not None:
                await closer()  # the generator's own finally blocks run now, not at GC time

    def stop(self, reason: str = CANCELLED_BY_SERVER) -> None:
        self.stopped = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def settle(self) -> None:
        await settle_task(self.task, self.stopped, "a streaming endpoint")

    async def release(self) -> None:
        return None


class StreamResponse(Response):
    """``text/event-stream`` written by a :class:`Producer`."""

    media_type = "text/event-stream"

    def __init__(
        self,
        producer: Producer,
        headers: Mapping[str, str] | None = None,
        ping_interval: float = PING_INTERVAL,
    ) -> None:
        # Not Response.__init__: with no body it would declare "content-length: 0".
        self.status_code = 200
        self.background = None
        self.init_headers({**STREAM_HEADERS, **(headers or {})})
        self.producer = producer
        self.ping_interval = ping_interval

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        ended = asyncio.get_running_loop().create_future()
        _open_streams.add(ended)
        try:
            await self._stream(receive, send)
        finally:
            ended.set_result(None)
            _open_streams.discard(ended)

    async def _stream(self, receive: Any, send: Any) -> None:
        connected = True
        last_write = time.monotonic()
        producer = self.producer

        async def write(event: Any) -> None:
            nonlocal last_write
            last_write = time.monotonic()
            try:
                body = event if type(event) is bytes else encode_event(event)
                await send({"type": "http.response.body", "body": body, "more_body": True})
            except Exception as exc:  # the client is gone: not the producer's failure
                raise WriteFailed(exc) from exc

        async def watch_client() -> None:
            nonlocal connected
            while (await receive())["type"] != "http.disconnect":
                pass
            connected = False

        async def ping() -> None:
            nonlocal last_write
            while True:
                await asyncio.sleep(max(0.0, last_write + self.ping_interval - time.monotonic()))
                if time.monotonic() - last_write >= self.ping_interval:
                    last_write = time.monotonic()
                    await send({"type": "http.response.body", "body": _PING, "more_body": True})

        async def end_body() -> None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        def ended_well(task: asyncio.Task[None]) -> bool:
            return task.done() and not task.cancelled() and task.exception() is None  # retrieves it, always

        shutdown = False  # the server cancelled us (its graceful shutdown ran out of time)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            helpers: list[asyncio.Task[None]] = []
            whole = False  # the server cancelled us, and the response still ended properly
            task: asyncio.Task[None] | None = None
            try:
                try:
                    await producer.begin(write)
                except WriteFailed:  # the client left before anything ran: nothing starts
                    connected = False
                    return
                task = producer.start(write)
                helpers = [asyncio.create_task(watch_client()), asyncio.create_task(ping())]
                await asyncio.wait({task, helpers[0]}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # The server gives up on this request: end the producer with its last word
                # while the connection is still open, then end the body.  The cancel has done
                # its job either way, so the request ends here without re-raising it: a
                # CancelledError leaving the app is logged by the server as a crash with two
                # tracebacks, for every stream a shutdown (an FC scale-in, Ctrl+C) ended.
                shutdown = True
                uncancel()
                producer.stop(CANCELLED_BY_SERVER)
                if task is None:  # cancelled while beginning: the producer still writes its last word
                    task = producer.start(write)
                broken = False
                with anyio.CancelScope(shield=True):  # anyio's scopes; native cancels are absorbed below
                    if await _wait_through_cancels(task, 2 * CLEANUP_GRACE) and connected and _stopped_cleanly(task):
                        try:
                            await end_body()
                            whole = True
                        except asyncio.CancelledError:  # the event loop is closing: the client has what it has
                            uncancel()
                        except Exception:  # the connection broke under the end of the body
                            broken = True
                logger.info(
                    "shutdown: an open stream was ended %s",
                    "with its canceled event" if whole else "(its client had left or its run did not end in time)",
                )
                if broken:  # a transport failure, not a stream the shutdown ended: the cancel goes on
                    raise
            finally:
                for helper in helpers:
                    helper.cancel()
                with anyio.CancelScope(shield=True):
                    try:
                        await producer.settle()  # cancels the producer if the client left first
                        await asyncio.gather(*helpers, return_exceptions=True)
                    except asyncio.CancelledError:
                        if not shutdown:
                            raise
                        uncancel()
            if connected and not whole and not shutdown and task is not None and ended_well(task):
                await end_body()
        except OSError:  # the client vanished while we were writing
            connected = False
        finally:
            with anyio.CancelScope(shield=True):  # release the session even when cancelled
                _, cancelled = await through_cancels(producer.release(), 2 * CLEANUP_GRACE)
                if cancelled:  # a closing loop may have cancelled the release too: once more (idempotent)
                    await through_cancels(producer.release(), 2 * CLEANUP_GRACE)
            if cancelled and not shutdown:
                raise asyncio.CancelledError
