"""Lambda's Runtime API as one execution environment sees it, with the platform's limits.

Facts from the AWS documentation of the Runtime API (version 2018-06-01) and the platform's
quotas, as the emulator applies them:

* ``GET /2018-06-01/runtime/invocation/next`` waits until there is an event and answers it
  with ``Lambda-Runtime-Aws-Request-Id``, ``-Deadline-Ms``, ``-Invoked-Function-Arn`` and
  ``-Trace-Id`` (``-Client-Context`` and ``-Cognito-Identity`` only when the caller gave them).
  The first such call ends the environment's init phase.
* ``POST …/invocation/{id}/response`` answers 202.  A buffered response may be 6 MB
  (6,291,556 bytes); more fails the invocation with ``Function.ResponseSizeTooLarge``.
  With ``Lambda-Runtime-Function-Response-Mode: streaming`` the chunked body is relayed as
  it arrives (up to 200 MB) and errors come in the ``Lambda-Runtime-Function-Error-Type`` /
  ``-Body`` trailers.
* ``POST …/invocation/{id}/error`` and ``POST /runtime/init/error`` take the error JSON
  (``errorMessage``, ``errorType``) and answer 202.
* When the function's timeout passes, the invocation fails ("Task timed out after N
  seconds") and the environment is reset: its runtime is stopped and a new one initialised.

The paths and header names are written here and in agentpack's own Runtime API client
(:mod:`agentpack.adapters.lambda_stream`) on purpose: this side is that client's test oracle,
written from the documentation, so a mistake in either shows up as a failing test.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentpack.emulators.h11_server import BodyTooLarge, Exchange, H11Server

logger = logging.getLogger("agentpack.emulate")

API = "/2018-06-01/runtime"
#: The most a synchronous invocation's event may weigh (Invoke's RequestResponse limit).
REQUEST_PAYLOAD_LIMIT = 6 * 1024 * 1024
#: The most a buffered response may weigh (the platform's message names 6291556 bytes).
BUFFERED_RESPONSE_LIMIT = 6 * 1024 * 1024 + 100
#: The most a streamed response may weigh.
STREAMED_RESPONSE_LIMIT = 200 * 1024 * 1024
ERROR_TYPE = "lambda-runtime-function-error-type"
ERROR_BODY = "lambda-runtime-function-error-body"
_RESPONSE = re.compile(rf"^{API}/invocation/([^/]+)/(response|error)$")

Log = Callable[[str], None]


# -- what an invocation's caller receives, in order -----------------------------------------
@dataclass
class Buffered:
    """The whole response, as the runtime posted it."""

    payload: bytes
    content_type: str


@dataclass
class StreamStart:
    content_type: str


@dataclass
class Chunk:
    data: bytes


@dataclass
class StreamEnd:
    """The stream is over; ``error`` is the trailers' error (type, message) if the function failed midway."""

    error: dict[str, Any] | None = None


@dataclass
class Failed:
    """The invocation failed; ``error_type`` as the platform names it (``Sandbox.Timedout``, ``Runtime.ExitError``…)."""

    error_type: str
    message: str


Message = Buffered | StreamStart | Chunk | StreamEnd | Failed


def trace_id() -> str:
    """An X-Ray trace header as Lambda sends it."""
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"


class Invocation:
    """One event on its way through an environment; the caller reads :attr:`messages`."""

    def __init__(
        self,
        event: bytes,
        request_id: str | None = None,
        client_context: str | None = None,
        cognito_identity: str | None = None,
    ) -> None:
        self.request_id = request_id or str(uuid.uuid4())
        self.event = event
        self.client_context = client_context
        self.cognito_identity = cognito_identity
        self.trace_id = trace_id()
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.finished = False
        self.deadline_ms: int | None = None

    def deliver(self, message: Message) -> None:
        if self.finished:
            return
        self.messages.put_nowait(message)
        if isinstance(message, (Buffered, StreamEnd, Failed)):
            self.finished = True


class Dispatcher:
    """Invocations waiting for an environment; each free environment takes the oldest one.

    Nothing is ever lost between the two sides: an invocation handed to a waiter that was
    cancelled in the same instant is put back at the front.
    """

    def __init__(self) -> None:
        self._pending: collections.deque[Invocation] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[Invocation]] = collections.deque()
        self._demand = asyncio.Event()

    def put(self, invocation: Invocation, first: bool = False) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(invocation)
                return
        (self._pending.appendleft if first else self._pending.append)(invocation)
        self._demand.set()

    async def submit(self, invocation: Invocation) -> None:
        self.put(invocation)

    async def take(self) -> Invocation:
        if self._pending:
            return self._popleft()
        waiter: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.put(waiter.result(), first=True)
            raise

    async def wait_for_demand(self) -> None:
        await self._demand.wait()

    def take_nowait(self) -> Invocation | None:
        return self._popleft() if self._pending else None

    def _popleft(self) -> Invocation:
        invocation = self._pending.popleft()
        if not self._pending:
            self._demand.clear()
        return invocation

    def __len__(self) -> int:
        return len(self._pending)


class RuntimeAPI:
    """The Runtime API of one runtime process (a new one per process, so a killed runtime's
    late posts can never touch a later invocation)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        timeout: float,
        function_arn: str,
        memory: int,
        log: Log,
        on_timeout: Callable[[], None],
    ) -> None:
        self.dispatcher = dispatcher
        self.timeout = timeout
        self.function_arn = function_arn
        self.memory = memory
        self.log = log
        self.on_timeout = on_timeout
        self.server = H11Server(self.handle)
        self.ready = asyncio.Event()
        self.init_error: dict[str, Any] | None = None
        self.init_failed = asyncio.Event()
        self.current: Invocation | None = None
        self._started_at = 0.0
        self._timer: asyncio.Task[None] | None = None
        self._waiting: asyncio.Task[Invocation] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
        if self._timer is not None:
            self._timer.cancel()
        await self.server.close()

    def fail_current(self, error_type: str, message: str) -> None:
        """End the invocation in progress (the runtime died under it)."""
        invocation = self.current
        if invocation is not None and not invocation.finished:
            self.log(f"RequestId: {invocation.request_id} Error: {message}")
            invocation.deliver(Failed(error_type, message))
            self._end(invocation)

    # -- routes ----------------------------------------------------------------------------
    async def handle(self, exchange: Exchange) -> None:
        path = exchange.target.split("?", 1)[0]
        if exchange.method == "GET" and path == f"{API}/invocation/next":
            await self._next(exchange)
        elif exchange.method == "POST" and path == f"{API}/init/error":
            await self._init_error(exchange)
        elif exchange.method == "POST" and (response_path := _RESPONSE.match(path)):
            request_id, kind = response_path.groups()
            invocation = self.current
            if invocation is None or invocation.request_id != request_id or invocation.finished:
                await exchange.body()
                await _error(
                    exchange, 400, "InvalidRequestID", f"no invocation {request_id} is in progress in this environment"
                )
            elif kind == "response":
                await self._response(exchange, invocation)
            else:
                await self._function_error(exchange, invocation)
        else:
            await exchange.body()
            await _error(exchange, 404, "InvalidRequest", f"{exchange.method} {path} is not part of the Runtime API")

    async def _next(self, exchange: Exchange) -> None:
        if self.current is not None and not self.current.finished:
            await _error(exchange, 400, "InvalidStateTransition", "the previous invocation has not been answered")
            return
        self.ready.set()  # the first call ends init
        self._waiting = asyncio.ensure_future(self.dispatcher.take())
        try:
            invocation = await self._waiting
        finally:
            self._waiting = None
        now = time.time()
        invocation.deadline_ms = int((now + self.timeout) * 1000)
        headers = [
            ("content-type", "application/json"),
            ("lambda-runtime-aws-request-id", invocation.request_id),
            ("lambda-runtime-deadline-ms", str(invocation.deadline_ms)),
            ("lambda-runtime-invoked-function-arn", self.function_arn),
            ("lambda-runtime-trace-id", invocation.trace_id),
        ]
        if invocation.client_context is not None:
            headers.append(("lambda-runtime-client-context", invocation.client_context))
        if invocation.cognito_identity is not None:
            headers.append(("lambda-runtime-cognito-identity", invocation.cognito_identity))
        try:
            await exchange.respond(200, invocation.event, headers)
        except (ConnectionError, OSError):
            self.dispatcher.put(invocation, first=True)  # the runtime is gone: another takes it
            return
        except asyncio.CancelledError:
            self.dispatcher.put(invocation, first=True)
            raise
        self.current = invocation
        self._started_at = time.monotonic()
        self.log(f"START RequestId: {invocation.request_id} Version: $LATEST")
        self._timer = asyncio.ensure_future(self._time_out(invocation))

    async def _time_out(self, invocation: Invocation) -> None:
        await asyncio.sleep(self.timeout)
        if invocation.finished:
            return
        message = f"Task timed out after {self.timeout:.2f} seconds"
        self.log(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}Z {invocation.request_id} {message}")
        invocation.deliver(Failed("Sandbox.Timedout", message))
        self._end(invocation, timer=False)
        self.on_timeout()

    async def _response(self, exchange: Exchange, invocation: Invocation) -> None:
        content_type = exchange.headers.get("content-type", "application/json")
        if exchange.headers.get("lambda-runtime-function-response-mode", "").lower() == "streaming":
            await self._streamed(exchange, invocation, content_type)
            return
        try:
            payload = await exchange.body(limit=BUFFERED_RESPONSE_LIMIT)
        except BodyTooLarge as too_large:
            message = f"Response payload size exceeded maximum allowed payload size ({BUFFERED_RESPONSE_LIMIT} bytes)."
            self.log(
                f"RequestId: {invocation.request_id} Error: {message} (the function returned {too_large.args[0]}+ bytes)"
            )
            invocation.deliver(Failed("Function.ResponseSizeTooLarge", message))
            self._end(invocation)
            await _error(exchange, 413, "RequestEntityTooLarge", message)
            return
        invocation.deliver(Buffered(payload, content_type))
        self._end(invocation)
        await exchange.respond(202, b'{"status":"OK"}', [("content-type", "application/json")])

    async def _streamed(self, exchange: Exchange, invocation: Invocation, content_type: str) -> None:
        invocation.deliver(StreamStart(content_type))
        size = 0
        async for data in exchange.chunks():
            size += len(data)
            if size > STREAMED_RESPONSE_LIMIT:
                message = (
                    f"Response payload size exceeded maximum allowed payload size ({STREAMED_RESPONSE_LIMIT} bytes)."
                )
                invocation.deliver(Failed("Function.ResponseSizeTooLarge", message))
                self._end(invocation)
                await _error(exchange, 413, "RequestEntityTooLarge", message)
                return
            invocation.deliver(Chunk(data))
        error = None
        if ERROR_TYPE in exchange.trailers:
            error = {
                "errorType": exchange.trailers[ERROR_TYPE],
                "errorMessage": _decode_error_body(exchange.trailers.get(ERROR_BODY, "")),
            }
            self.log(
                f"RequestId: {invocation.request_id} Error: the response stream failed: {error['errorType']}: {error['errorMessage']}"
            )
        invocation.deliver(StreamEnd(error))
        self._end(invocation)
        await exchange.respond(202, b'{"status":"OK"}', [("content-type", "application/json")])

    async def _function_error(self, exchange: Exchange, invocation: Invocation) -> None:
        error = _error_json(await exchange.body(), exchange.headers.get(ERROR_TYPE))
        self.log(f"RequestId: {invocation.request_id} Error: {error['errorType']}: {error['errorMessage']}")
        invocation.deliver(Failed(error["errorType"], error["errorMessage"]))
        self._end(invocation)
        await exchange.respond(202, b'{"status":"OK"}', [("content-type", "application/json")])

    async def _init_error(self, exchange: Exchange) -> None:
        self.init_error = _error_json(await exchange.body(), exchange.headers.get(ERROR_TYPE))
        self.log(
            f"INIT_REPORT Status: error Error Type: {self.init_error['errorType']}: {self.init_error['errorMessage']}"
        )
        self.init_failed.set()
        await exchange.respond(202, b'{"status":"OK"}', [("content-type", "application/json")])

    def _end(self, invocation: Invocation, timer: bool = True) -> None:
        if timer and self._timer is not None:
            self._timer.cancel()
        self._timer = None
        duration = (time.monotonic() - self._started_at) * 1000
        self.log(f"END RequestId: {invocation.request_id}")
        self.log(
            f"REPORT RequestId: {invocation.request_id}\tDuration: {duration:.2f} ms"
            f"\tBilled Duration: {max(1, int(duration + 0.999))} ms\tMemory Size: {self.memory} MB"
        )


def _decode_error_body(encoded: str) -> str:
    try:
        decoded = base64.b64decode(encoded).decode("utf-8", "replace")
    except ValueError:
        return encoded
    try:
        data = json.loads(decoded)
    except ValueError:
        return decoded
    return str(data.get("errorMessage", decoded)) if isinstance(data, dict) else decoded


def _error_json(body: bytes, header_type: str | None) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {"errorMessage": body.decode("utf-8", "replace")}
    if not isinstance(data, dict):
        data = {"errorMessage": str(data)}
    data.setdefault("errorType", header_type or "Unhandled")
    data.setdefault("errorMessage", "")
    return data


async def _error(exchange: Exchange, status: int, error_type: str, message: str) -> None:
    body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
    await exchange.respond(status, body, [("content-type", "application/json")])
