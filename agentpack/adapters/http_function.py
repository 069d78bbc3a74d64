"""How an app runs inside a Function Compute custom runtime or an AgentRun code runtime.

Both platforms start the artifact's ``bootstrap``, which serves the app on ``0.0.0.0`` at
the platform's port, and send it plain HTTP.  This ASGI wrapper adds what the platforms'
contract asks of the server beyond the app itself:

- the instance lifecycle hooks: ``POST /initialize`` (answered once the app has started),
  ``GET /pre-freeze``, and ``GET /pre-stop``, which starts the server's graceful shutdown —
  every open stream then ends with its terminal event and every session is released;
- the request id (``x-fc-request-id``): in every log line written while the request is
  handled, around it as ``FC Invoke Start/End RequestId:`` lines, and echoed on the response;
- the invocation's context — function name, region, qualifier and, when the function has a
  role, its temporary credentials — for handler code, through :func:`current_invocation`
  (never logged: the credentials' repr is masked);
- with ``AGENTPACK_REQUEST_TIMEOUT`` set (the deployer sets it to the function's timeout), a
  ``/process`` run still going shortly before that timeout is stopped, so its client gets
  the terminal ``canceled`` event instead of a stream the platform cuts.

Streams need nothing special: uvicorn sends chunked responses, which is what both
platforms pass through as a stream.

The platform's header names and hook paths are written here and, again, in the emulator
(:mod:`agentpack.emulators.http_function.profiles`) on purpose: the emulator is this adapter's
test oracle, written from the platform's documentation, so sharing the constants would let one
mistake pass both sides.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agentpack import logs
from agentpack.headers import run_session

logger = logging.getLogger("agentpack.platform")

#: Seconds before the function's timeout at which a still-running ``/process`` run is stopped.
DEADLINE_MARGIN = 1.0
LIFECYCLE_PATHS = {("POST", "/initialize"), ("GET", "/pre-freeze"), ("GET", "/pre-stop")}


@dataclass(frozen=True)
class Credentials:
    """The function role's temporary credentials (``x-fc-access-key-*`` headers)."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Invocation:
    """What the platform says about the request being handled."""

    request_id: str
    function_name: str = ""
    region: str = ""
    account_id: str = ""
    qualifier: str = ""
    memory_mb: int | None = None
    credentials: Credentials | None = None


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("agentpack_invocation", default=None)


def current_invocation() -> Invocation | None:
    """The invocation being handled, from anywhere in its request (handlers, their tasks, logs)."""
    return _current.get()


def _is_hook_call(headers: dict[str, str], path: str) -> bool:
    """Whether a request to a hook's path comes from the platform's hook, not from a caller.

    FC marks every request with ``x-fc-control-path``: ``/http-invoke`` for what reaches the
    trigger, the hook's own path for a hook call [fc-hooks, tests/standins/README.md].  A caller
    of the public URL asking for ``/pre-stop`` arrives as ``/http-invoke`` and reaches the app
    (a 404), so it can never shut instances down.  Without the header (``agentpack serve
    --platform fc`` driven by hand, tests) the path alone decides.  That FC sets the header
    itself, whatever a caller sent, is assumed."""
    control = headers.get("x-fc-control-path")
    return control is None or control == path


def _invocation(headers: dict[str, str]) -> Invocation:
    key_id = headers.get("x-fc-access-key-id")
    credentials = None
    if key_id:
        credentials = Credentials(
            key_id, headers.get("x-fc-access-key-secret", ""), headers.get("x-fc-security-token", "")
        )
    memory = headers.get("x-fc-function-memory", "")
    return Invocation(
        request_id=headers.get("x-fc-request-id") or uuid.uuid4().hex,
        function_name=headers.get("x-fc-function-name", ""),
        region=headers.get("x-fc-region", ""),
        account_id=headers.get("x-fc-account-id", ""),
        qualifier=headers.get("x-fc-qualifier", ""),
        memory_mb=int(memory) if memory.isdigit() else None,
        credentials=credentials,
    )


def log_config(log_level: str = "info") -> dict[str, Any]:
    """The server's logging configuration (:func:`agentpack.logs.log_config`): the request id
    is in every line (FC's log search finds a request's lines by it), as a JSON field on the
    platform, where the output is no terminal."""
    return logs.log_config(log_level)


class FunctionAdapter:
    """Wraps the app for a custom runtime; ``request_shutdown`` starts the server's graceful
    shutdown (``/pre-stop``)."""

    def __init__(self, app: Any, request_shutdown: Callable[[], None], platform: str = "fc") -> None:
        self.app = app
        self.request_shutdown = request_shutdown
        self.platform = platform
        self.started = asyncio.Event()
        timeout = os.environ.get("AGENTPACK_REQUEST_TIMEOUT", "")
        self.timeout = float(timeout) if timeout.replace(".", "", 1).isdigit() else None

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._watch_startup(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        invocation = _invocation(headers)
        token = _current.set(invocation)
        log_token = logs.bind_request(invocation.request_id, scope.get("path"))  # the app's lines carry it too
        try:
            if (scope["method"], scope["path"]) in LIFECYCLE_PATHS and _is_hook_call(headers, scope["path"]):
                await self._lifecycle(scope["path"], invocation, send)
                return
            print(f"FC Invoke Start RequestId: {invocation.request_id}", flush=True)
            deadline: list[asyncio.Task[None]] = []
            try:
                await self.app(scope, receive, self._wrap_send(send, invocation, time.monotonic(), deadline))
            finally:
                for task in deadline:  # the run is over: a later stop would hit the session's next run
                    task.cancel()
                print(f"FC Invoke End RequestId: {invocation.request_id}", flush=True)
        finally:
            logs.reset(log_token)
            _current.reset(token)

    def _watch_startup(
        self, send: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def watched(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.started.set()
            await send(message)

        return watched

    def _wrap_send(
        self,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        invocation: Invocation,
        started: float,
        deadline: list[asyncio.Task[None]],
    ) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-fc-request-id", invocation.request_id.encode("latin-1", "replace")))
                message = {**message, "headers": headers}
                task = self._guard_deadline(headers, started)
                if task is not None:
                    deadline.append(task)
            await send(message)

        return wrapped

    def _guard_deadline(self, headers: list[tuple[bytes, bytes]], started: float) -> asyncio.Task[None] | None:
        """Stop a ``/process`` run shortly before the function's timeout (see the module doc)."""
        if self.timeout is None:
            return None
        named = run_session(headers)
        stop_chat = getattr(self.app, "stop_chat", None)
        if named is None or stop_chat is None:
            return None
        user_id, session_id = named
        delay = max(0.0, started + self.timeout - DEADLINE_MARGIN - time.monotonic())

        async def stop_near_deadline() -> None:
            await asyncio.sleep(delay)
            reason = f"stopped before the function timeout ({self.timeout:g} s) would end the request"
            try:
                if await stop_chat(user_id, session_id, reason=reason):
                    logger.warning("stopped session %s: the function's %.0fs timeout is near", session_id, self.timeout)
            except Exception:
                logger.exception("could not stop session %s before the timeout", session_id)

        task = asyncio.get_running_loop().create_task(stop_near_deadline(), name="agentpack-deadline")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _lifecycle(
        self, path: str, invocation: Invocation, send: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        status, body = 200, b"OK"
        if path == "/initialize":
            print(f"FC Initialize Start RequestId: {invocation.request_id}", flush=True)
            try:
                await asyncio.wait_for(self.started.wait(), 120)
            except asyncio.TimeoutError:
                status, body = 500, b"the app did not finish starting"
            print(f"FC Initialize End RequestId: {invocation.request_id}", flush=True)
        elif path == "/pre-stop":
            print(f"FC PreStop Start RequestId: {invocation.request_id}", flush=True)
            self.request_shutdown()  # open streams get the graceful period, then their terminal event
            print(f"FC PreStop End RequestId: {invocation.request_id}", flush=True)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"x-fc-request-id", invocation.request_id.encode("latin-1", "replace")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
