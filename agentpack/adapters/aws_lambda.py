"""The Lambda handler for the managed Python runtime (buffered responses).

``make_handler("app.py:app")`` loads the app and starts its lifespan right away — in the
environment's init phase, where Lambda expects expensive set-up and where a failure is
reported as an init error — and returns ``handler(event, context)``.  Every invocation then
reuses that app, its event loop and its lifespan state (see :mod:`lambda_environment`).

Events are translated by Mangum's event handlers, so function URL, API Gateway HTTP API
(payload 1.0 and 2.0), REST API, ALB and Lambda@Edge events all work, with their own
response conventions (cookies on 2.0, ``multiValueHeaders`` on REST, base64 for bodies
that are not UTF-8 text).  The managed runtime buffers the response: an SSE stream from
``/process`` arrives as one body.  For token-by-token streaming, build with
``streaming = true`` (see :mod:`agentpack.adapters.lambda_stream`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from agentpack import logs
from agentpack.adapters.lambda_environment import LambdaEnvironment
from agentpack.adapters.lambda_http import (
    INTERNAL_ERROR_BODY,
    INTERNAL_ERROR_HEADERS,
    Exchange,
    Headers,
    HTTPRequest,
    ResponseIncomplete,
)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def deadline_of(context: Any) -> float | None:
    """The invocation's deadline as a ``time.time()`` value, from a Lambda context object."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    deadline: float = time.time() + remaining() / 1000
    return deadline


async def buffered_response(environment: LambdaEnvironment, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Serve one HTTP event and return the whole answer in the event source's format."""
    return await buffered_answer(environment, environment.request(event, context), deadline_of(context))


async def buffered_answer(
    environment: LambdaEnvironment, request: HTTPRequest, deadline: float | None
) -> dict[str, Any]:
    """Serve a translated request and return Mangum's answer for its event source.

    An app that fails halfway through its body gets the 500 the client would otherwise
    never see (a buffered answer can still be replaced).
    """
    started: dict[str, Any] = {"status": 500, "headers": []}
    chunks: list[bytes] = []

    async def on_start(status: int, headers: Headers) -> None:
        started["status"], started["headers"] = status, headers

    async def on_body(chunk: bytes) -> None:
        chunks.append(chunk)

    exchange = Exchange(request.scope, request.body, on_start, on_body)
    try:
        await exchange.run(environment.app, deadline, environment.stop_run)
    except ResponseIncomplete:
        started["status"], started["headers"], chunks[:] = 500, list(INTERNAL_ERROR_HEADERS), [INTERNAL_ERROR_BODY]
    response = {
        "status": started["status"],
        "headers": [list(pair) for pair in started["headers"]],
        "body": b"".join(chunks),
    }
    return request.answer(response)


def make_handler(spec: str) -> Handler:
    """Load the app named by ``spec``, start its lifespan, and return the Lambda handler serving it.

    Inside Lambda (``AWS_LAMBDA_RUNTIME_API`` set) the runtime client's log handler is given
    agentpack's format with the ids (docs/logs.md), once the app had its chance to configure
    logging itself."""
    environment = LambdaEnvironment.from_spec(spec)
    if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
        logs.configure_root(os.environ.get("AGENTPACK_LOG_LEVEL") or os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "info")
    environment.start()
    return handler_for(environment)


def handler_for(environment: LambdaEnvironment) -> Handler:
    """The Lambda handler serving a started environment (``make_handler`` without the loading)."""

    def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        request_id = getattr(context, "aws_request_id", None)
        token = logs.bind_request(request_id if isinstance(request_id, str) and request_id else logs.new_request_id())
        try:
            return environment.run(buffered_response(environment, event, context))
        finally:
            logs.reset(token)

    handler.environment = environment  # type: ignore[attr-defined]
    return handler
