"""One HTTP request of a Lambda invocation through the ASGI app, buffered or streamed.

Event shapes are Mangum's business: its event handlers (ALB, API Gateway REST v1, HTTP API
v1/v2, function URL, Lambda@Edge) turn an event into an ASGI scope and body, and turn a
finished response back into what that event source expects.  What this module adds is the
run itself — on agentpack's own event loop rather than Mangum's — so that the buffered
handler and the streaming Runtime API loop share one answer to the hard questions: what the
client gets when the app fails (the 500 already sent stands; a failure before any response
is a 500; a failure halfway through a body is reported to the caller), and what happens
as the invocation's deadline nears (an agent run is stopped so its stream ends with the
terminal ``canceled`` event instead of being cut off by the platform).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentpack.headers import run_session

logger = logging.getLogger("agentpack.lambda")

Headers = list[tuple[bytes, bytes]]
#: Called once with the status and headers, before any body.
OnStart = Callable[[int, Headers], Awaitable[None]]
#: Called with each non-empty piece of body, as the app sends it.
OnBody = Callable[[bytes], Awaitable[None]]
#: Stops the agent run of ``(user_id, session_id)`` (``AgentApp.stop_chat``).
StopRun = Callable[[str, str], Awaitable[Any]]

#: How long before the deadline an agent run is asked to stop, at most (a tenth of the
#: time the invocation had, if that is less), so its terminal event still gets out.
DEADLINE_MARGIN = 0.5
#: Ends the JSON prelude of a streamed HTTP response.
PRELUDE_END = b"\0" * 8
#: The content type that tells Lambda a streamed response starts with the prelude.
HTTP_INTEGRATION_RESPONSE = "application/vnd.awslambda.http-integration-response"

INTERNAL_ERROR_HEADERS: Headers = [(b"content-type", b"text/plain; charset=utf-8")]
INTERNAL_ERROR_BODY = b"Internal Server Error"


class ResponseIncomplete(Exception):
    """The app failed after its response had started: the status is out, the body is not whole."""

    def __init__(self, reason: str, error_type: str) -> None:
        super().__init__(reason)
        self.error_type = error_type


@dataclass
class HTTPRequest:
    """An event as an ASGI request, with Mangum's handler that turns a response into the event's answer."""

    scope: dict[str, Any]
    body: bytes
    answer: Callable[[dict[str, Any]], dict[str, Any]]
    #: True for payload format 2.0 (function URL, HTTP API): the shapes that can stream.
    streamable: bool


def event_adapter(app: Any) -> Any:
    """Mangum, used only for its event handlers (lifespan off: the environment runs the lifespan once)."""
    from mangum import Mangum

    return Mangum(app, lifespan="off")


def http_request(adapter: Any, event: dict[str, Any], context: Any, state: dict[str, Any]) -> HTTPRequest:
    """Translate ``event`` with Mangum; raises ``RuntimeError`` for events that are not HTTP requests."""
    if not isinstance(event, dict):
        raise TypeError(f"the event is a {type(event).__name__}, not an HTTP request event (a JSON object)")
    handler = adapter.infer(event, context)
    scope = handler.scope
    scope["state"] = dict(state)  # each request gets its own copy of the lifespan state, as in uvicorn
    return HTTPRequest(scope, handler.body, handler, event.get("version") == "2.0")


def split_headers(headers: Headers) -> tuple[dict[str, str], list[str]]:
    """Response headers as payload 2.0 wants them: one string per name (repeats joined by commas), cookies apart."""
    single: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in headers:
        # bytes the app sent that are not UTF-8 survive the JSON round trip as surrogates
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("utf-8", "surrogateescape")
        if name == "set-cookie":
            cookies.append(value)
        else:
            single[name] = f"{single[name]},{value}" if name in single else value
    return single, cookies


def stream_prelude(status: int, headers: Headers) -> bytes:
    """The head of a streamed HTTP response: JSON status, headers and cookies, then eight NUL bytes.

    This is what Lambda's HTTP integrations (function URLs) expect ahead of the raw body
    when the response is posted with the ``application/vnd.awslambda.http-integration-response``
    content type; JSON escapes control characters, so the NULs cannot occur before the end.
    """
    single, cookies = split_headers(headers)
    return json.dumps({"statusCode": status, "headers": single, "cookies": cookies}).encode() + PRELUDE_END


class Exchange:
    """Runs the app for one request: feeds it the body, relays what it sends, watches the deadline.

    The request body is delivered whole; ``http.disconnect`` follows once the response is
    complete (nobody hangs up on a Lambda invocation halfway).
    """

    def __init__(self, scope: dict[str, Any], body: bytes, on_start: OnStart, on_body: OnBody) -> None:
        self.scope = scope
        self.body = body
        self.on_start = on_start
        self.on_body = on_body
        self.status: int | None = None
        self.headers: Headers = []
        self.complete = False
        self._body_delivered = False
        self._finished = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if not self._body_delivered:
            self._body_delivered = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._finished.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start" and self.status is None:
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            await self.on_start(self.status, self.headers)
        elif kind == "http.response.body" and self.status is not None and not self.complete:
            chunk = bytes(message.get("body", b""))
            if chunk:
                await self.on_body(chunk)
            if not message.get("more_body", False):
                self.complete = True
                self._finished.set()
        else:
            raise RuntimeError(
                f"unexpected ASGI message {kind!r} (response started: {self.status is not None}, complete: {self.complete})"
            )

    async def run(self, app: Any, deadline: float | None = None, stop_run: StopRun | None = None) -> None:
        """Serve the request; ``deadline`` is a ``time.time()`` value.

        A failure before the response started becomes a 500; a failure after it completed
        is logged and the response stands (Starlette sends its 500 and then re-raises).
        Raises :class:`ResponseIncomplete` when the app failed halfway through a body.
        """
        task = asyncio.ensure_future(app(self.scope, self.receive, self.send))
        try:
            await self._supervise(task, deadline, stop_run)
        except BaseException:
            task.cancel()
            raise
        error: BaseException | None = asyncio.CancelledError() if task.cancelled() else task.exception()
        if error is None and self.complete:
            return
        if self.complete:
            logger.error("the app raised after its response was sent", exc_info=error)
            return
        if self.status is None:
            logger.error("the app failed before responding; answering 500", exc_info=error)
            await self.on_start(500, list(INTERNAL_ERROR_HEADERS))
            await self.on_body(INTERNAL_ERROR_BODY)
            self.complete = True
            return
        reason = (
            f"{type(error).__name__}: {error}"
            if error is not None
            else "the app returned without finishing its response body"
        )
        logger.error("the response broke off after status %s: %s", self.status, reason, exc_info=error)
        raise ResponseIncomplete(reason, type(error).__name__ if error is not None else "Runtime.IncompleteResponse")

    async def _supervise(self, task: asyncio.Future[Any], deadline: float | None, stop_run: StopRun | None) -> None:
        if deadline is None:
            await asyncio.wait({task})
            return
        remaining = deadline - time.time()
        margin = min(DEADLINE_MARGIN, max(remaining, 0.0) / 10)
        done, _ = await asyncio.wait({task}, timeout=max(0.0, remaining - margin))
        if not done:
            await self._stop_agent_run(stop_run)
            await asyncio.wait({task})  # past the deadline the platform ends the environment

    async def _stop_agent_run(self, stop_run: StopRun | None) -> None:
        """Near the deadline, stop a ``/process`` run so its stream ends with a terminal event.

        Other requests are left alone: the platform's timeout is their answer.
        """
        named = run_session(self.headers)
        if stop_run is None or named is None:
            return
        user, session = named
        logger.warning("the invocation is about to time out: stopping the agent run of session %s", session)
        try:
            await stop_run(user, session)
        except Exception:
            logger.exception("could not stop session %s before the deadline", session)
