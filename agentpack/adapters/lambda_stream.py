"""Token-by-token SSE on Lambda in pure Python: agentpack's own Runtime API loop.

The managed Python runtime can only buffer a response.  A function whose
``AWS_LAMBDA_EXEC_WRAPPER`` points at the generated ``agentpack-lambda-stream`` script runs
this module instead of the runtime's client, inside the same managed runtime (no custom
runtime, no extra binary)::

    python -m agentpack.adapters.lambda_stream app.py:app

It loads the app and starts its lifespan once (init; a failure goes to
``/runtime/init/error``), then loops on ``GET /2018-06-01/runtime/invocation/next``.  A
function-URL event (payload 2.0) is answered in streaming mode: one chunked ``POST
…/response`` with ``Lambda-Runtime-Function-Response-Mode: streaming`` whose body is the
HTTP prelude (JSON status, headers, cookies; eight NUL bytes) followed by the body exactly
as the app sends it — each SSE event leaves the moment the app writes it.  Other event
shapes (ALB, REST, Lambda@Edge cannot stream) get the buffered answer.  A failure before
anything was sent goes to ``…/error``; one in the middle of a stream is reported in the
``Lambda-Runtime-Function-Error-Type`` / ``-Body`` trailers, the only place left for it.

HTTP to the Runtime API is h11 (already in every artifact, as uvicorn's parser) over
asyncio streams: it can send a chunked body piece by piece and trailers after it.

The Runtime API's paths and header names (and, in :mod:`.lambda_http`, the streaming prelude)
are written here and, again, in the emulator (:mod:`agentpack.emulators.aws_lambda.runtime_api`,
``.function_url``) on purpose: the emulator is this loop's test oracle, written from AWS's
documentation, so sharing the constants would let one mistake pass both sides.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import h11

from agentpack import logs
from agentpack.adapters.aws_lambda import buffered_answer
from agentpack.adapters.lambda_environment import LambdaEnvironment
from agentpack.adapters.lambda_http import (
    HTTP_INTEGRATION_RESPONSE,
    Exchange,
    Headers,
    HTTPRequest,
    ResponseIncomplete,
    stream_prelude,
)

logger = logging.getLogger("agentpack.lambda")

API = "/2018-06-01/runtime"
ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY = "Lambda-Runtime-Function-Error-Body"


class RuntimeAPIError(Exception):
    """The Runtime API refused a call; the environment cannot go on (the platform will replace it)."""


def error_payload(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """The JSON Lambda expects for an error: message, type and the stack as a list of lines."""
    return {
        "errorMessage": str(exc) or type(exc).__name__,
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[1:],
    }


@dataclass
class Invocation:
    """One event from ``/invocation/next`` and the headers that came with it."""

    request_id: str
    deadline_ms: int
    function_arn: str
    body: bytes
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def deadline(self) -> float | None:
        return self.deadline_ms / 1000 if self.deadline_ms else None


class InvocationContext:
    """What a handler's ``context`` offers on Lambda (``scope["aws.context"]`` for the app)."""

    def __init__(self, invocation: Invocation) -> None:
        self.aws_request_id = invocation.request_id
        self.invoked_function_arn = invocation.function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.client_context = json.loads(invocation.client_context) if invocation.client_context else None
        self.identity = json.loads(invocation.cognito_identity) if invocation.cognito_identity else None
        self._deadline_ms = invocation.deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class RuntimeAPIClient:
    """The Runtime API over one kept-alive HTTP/1.1 connection (h11 on asyncio streams)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._conn: h11.Connection | None = None
        self._headers: dict[str, str] = {}

    # -- plumbing ------------------------------------------------------------------------
    async def _ready(self) -> h11.Connection:
        conn = self._conn
        if conn is not None and conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        if conn is None or conn.our_state is not h11.IDLE or (self._reader is not None and self._reader.at_eof()):
            await self.close()
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self._conn = h11.Connection(h11.CLIENT)
        assert self._conn is not None
        return self._conn

    async def _send(self, *events: Any) -> None:
        assert self._conn is not None and self._writer is not None
        for event in events:
            data = self._conn.send(event)
            if data:
                self._writer.write(data)
        await self._writer.drain()

    async def _receive(self) -> tuple[int, bytes]:
        assert self._conn is not None and self._reader is not None
        status, body = 0, bytearray()
        self._headers = {}
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                self._conn.receive_data(await self._reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                self._headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the Runtime API closed the connection")

    async def _call(
        self, method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> tuple[int, bytes]:
        await self._ready()
        request_headers = [("Host", f"{self.host}:{self.port}"), ("Content-Length", str(len(body))), *(headers or [])]
        events: list[Any] = [h11.Request(method=method, target=path, headers=request_headers)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        try:
            await self._send(*events)
            return await self._receive()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._conn = None

    # -- the API ---------------------------------------------------------------------------
    async def next_invocation(self) -> Invocation:
        """Wait (as long as it takes: the environment may be frozen meanwhile) for the next event."""
        status, body = await self._call("GET", f"{API}/invocation/next")
        if status != 200:
            raise RuntimeAPIError(f"GET /invocation/next answered {status}: {body[:500]!r}")
        headers = self._headers
        return Invocation(
            request_id=headers["lambda-runtime-aws-request-id"],
            deadline_ms=int(headers.get("lambda-runtime-deadline-ms", "0") or 0),
            function_arn=headers.get("lambda-runtime-invoked-function-arn", ""),
            body=body,
            trace_id=headers.get("lambda-runtime-trace-id"),
            client_context=headers.get("lambda-runtime-client-context"),
            cognito_identity=headers.get("lambda-runtime-cognito-identity"),
            headers=dict(headers),
        )

    async def post_response(self, request_id: str, body: bytes, content_type: str = "application/json") -> None:
        status, answer = await self._call(
            "POST", f"{API}/invocation/{request_id}/response", body, [("Content-Type", content_type)]
        )
        if status != 202:
            logger.error("the Runtime API refused the response of %s (%s): %s", request_id, status, answer[:500])

    async def post_error(self, request_id: str, error: dict[str, Any]) -> None:
        body = json.dumps(error).encode()
        status, answer = await self._call(
            "POST",
            f"{API}/invocation/{request_id}/error",
            body,
            [("Content-Type", "application/json"), (ERROR_TYPE, error["errorType"])],
        )
        if status != 202:
            logger.error("the Runtime API refused the error of %s (%s): %s", request_id, status, answer[:500])

    async def post_init_error(self, error: dict[str, Any]) -> None:
        body = json.dumps(error).encode()
        await self._call(
            "POST", f"{API}/init/error", body, [("Content-Type", "application/json"), (ERROR_TYPE, error["errorType"])]
        )

    async def open_stream(self, request_id: str, content_type: str = HTTP_INTEGRATION_RESPONSE) -> ResponseStream:
        """Start ``POST …/response`` in streaming mode; write the body through the returned stream."""
        await self._ready()
        headers = [
            ("Host", f"{self.host}:{self.port}"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", content_type),
            ("Lambda-Runtime-Function-Response-Mode", "streaming"),
            ("Trailer", f"{ERROR_TYPE}, {ERROR_BODY}"),
        ]
        stream = ResponseStream(self, request_id)
        await stream.guard(
            self._send(h11.Request(method="POST", target=f"{API}/invocation/{request_id}/response", headers=headers))
        )
        return stream


class ResponseStream:
    """The body of a streamed response: each ``write`` is one chunk on the wire, sent at once."""

    def __init__(self, client: RuntimeAPIClient, request_id: str) -> None:
        self.client = client
        self.request_id = request_id
        self.broken: BaseException | None = None

    async def guard(self, operation: Any) -> None:
        if self.broken is not None:
            operation.close()
            raise ConnectionError(f"the response stream of {self.request_id} is broken: {self.broken}")
        try:
            await operation
        except (OSError, h11.LocalProtocolError) as exc:
            self.broken = exc
            await self.client.close()
            raise

    async def write(self, data: bytes) -> None:
        await self.guard(self.client._send(h11.Data(data=data)))

    async def finish(self, error: dict[str, Any] | None = None) -> None:
        """End the body; an ``error`` goes into the trailers (the status line is long gone)."""
        if self.broken is not None:
            logger.error("the response stream of %s broke: %s", self.request_id, self.broken)
            return
        trailers = []
        if error is not None:
            encoded = base64.b64encode(json.dumps(error).encode()).decode()
            trailers = [(ERROR_TYPE, error["errorType"]), (ERROR_BODY, encoded)]
        try:
            await self.guard(self.client._send(h11.EndOfMessage(headers=trailers)))
            status, answer = await self.client._receive()
        except (OSError, h11.ProtocolError, ConnectionError) as exc:
            logger.error("the Runtime API dropped the response stream of %s: %s", self.request_id, exc)
            await self.client.close()
            return
        if status != 202:
            logger.error(
                "the Runtime API refused the streamed response of %s (%s): %s", self.request_id, status, answer[:500]
            )


# -- the loop --------------------------------------------------------------------------------
async def serve(environment: LambdaEnvironment, client: RuntimeAPIClient) -> None:
    """Answer invocations, one at a time, for as long as the environment lives."""
    while True:
        invocation = await client.next_invocation()
        await handle(environment, client, invocation)


async def handle(environment: LambdaEnvironment, client: RuntimeAPIClient, invocation: Invocation) -> None:
    token = logs.bind_request(invocation.request_id)  # every line of the invocation carries its id
    try:
        await _handle(environment, client, invocation)
    finally:
        logs.reset(token)


async def _handle(environment: LambdaEnvironment, client: RuntimeAPIClient, invocation: Invocation) -> None:
    if invocation.trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id  # the X-Ray SDK reads it from here
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        event = json.loads(invocation.body)
        request = environment.request(event, InvocationContext(invocation))
        if request.streamable:
            answer = None
        else:  # ALB, REST, Lambda@Edge: these sources take one whole answer
            answer = json.dumps(await buffered_answer(environment, request, invocation.deadline)).encode()
    except Exception as exc:  # not an event we can serve: the invocation fails before any response
        logger.exception("invocation %s failed", invocation.request_id)
        await client.post_error(invocation.request_id, error_payload(exc))
        return
    if answer is not None:
        await client.post_response(invocation.request_id, answer)
    else:
        await stream_answer(environment, client, invocation, request)


async def stream_answer(
    environment: LambdaEnvironment, client: RuntimeAPIClient, invocation: Invocation, request: HTTPRequest
) -> None:
    """Post the app's response in streaming mode, prelude first, each piece as it is sent."""
    stream: ResponseStream | None = None

    async def on_start(status: int, headers: Headers) -> None:
        nonlocal stream
        stream = await client.open_stream(invocation.request_id)
        await stream.write(stream_prelude(status, headers))

    async def on_body(chunk: bytes) -> None:
        assert stream is not None
        await stream.write(chunk)

    failure: dict[str, Any] | None = None
    try:
        await Exchange(request.scope, request.body, on_start, on_body).run(
            environment.app, invocation.deadline, environment.stop_run
        )
    except ResponseIncomplete as exc:
        failure = {"errorMessage": str(exc), "errorType": exc.error_type, "stackTrace": []}
    except Exception as exc:
        logger.exception("invocation %s failed", invocation.request_id)
        failure = error_payload(exc)
    if stream is None:  # nothing reached the Runtime API: report the failure the ordinary way
        await client.post_error(
            invocation.request_id,
            failure
            or {"errorMessage": "the app sent no response", "errorType": "Runtime.NoResponse", "stackTrace": []},
        )
    else:
        await stream.finish(failure)


def _init_error(exc: BaseException) -> dict[str, Any]:
    from agentpack.loader import AppLoadError

    if isinstance(exc, (ImportError, AppLoadError)):
        return error_payload(exc, "Runtime.ImportModuleError")
    return error_payload(exc)


def _configure_logging() -> None:
    """agentpack's format with the ids on stderr (docs/logs.md): JSON lines, as Lambda's
    output is no terminal."""
    logs.configure_root(os.environ.get("AGENTPACK_LOG_LEVEL") or os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "info")


def main(argv: list[str] | None = None) -> int:
    """Run the loop for the app named by the first argument (or ``$AGENTPACK_APP``)."""
    args = sys.argv[1:] if argv is None else argv
    spec = args[0] if args else os.environ.get("AGENTPACK_APP", "")
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address or not spec:
        print(
            "usage: AWS_LAMBDA_RUNTIME_API=host:port python -m agentpack.adapters.lambda_stream APP_SPEC (inside a Lambda execution environment)",
            file=sys.stderr,
        )
        return 2
    _configure_logging()
    client = RuntimeAPIClient(address)
    environment: LambdaEnvironment | None = None
    try:
        environment = LambdaEnvironment.from_spec(spec)
        environment.start()
    except Exception as exc:
        traceback.print_exc()
        if environment is not None:
            environment.shutdown()
        asyncio.run(client.post_init_error(_init_error(exc)))
        return 1
    try:
        environment.run(serve(environment, client))
    except (RuntimeAPIError, OSError, h11.ProtocolError) as exc:
        logger.error("the Runtime API failed: %s; the runtime exits", exc)
        environment.shutdown()  # the app's lifespan shutdown still runs: sessions are released
        return 1
    return 0  # pragma: no cover - serve() never returns


if __name__ == "__main__":
    sys.exit(main())
