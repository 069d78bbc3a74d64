"""A Lambda function URL on 127.0.0.1: HTTP requests in, payload-2.0 events out, answers back.

The request side builds the event as AWS documents it for function URLs (``version``
2.0, ``rawPath``, ``rawQueryString``, ``cookies``, lower-cased ``headers``,
``requestContext.http``, a base64 ``body`` for binary content).  The response side follows
the URL's invoke mode:

* ``BUFFERED`` — the function's return value is read the documented way: an object with
  ``statusCode`` gives the status, ``headers``, ``cookies`` (as ``Set-Cookie``) and
  ``body`` (base64-decoded when ``isBase64Encoded``); any other JSON value is the body of a
  200 ``application/json`` response.  A streamed response is collected and sent whole.
* ``RESPONSE_STREAM`` — a streamed response is forwarded as it arrives: the HTTP prelude
  (JSON status, headers, cookies before eight NUL bytes) becomes the status line and
  headers, every later chunk goes to the client at once; a function that fails mid-stream
  leaves the client with a body that breaks off.  A buffered return value is sent as above.

A failed invocation (error, timeout, crash, response too large) is a 502.  The request's
own payload limit applies to the event, as on the platform (413).

The prelude's content type and its eight-NUL end are written here and in the adapter
(:mod:`agentpack.adapters.lambda_http`) on purpose: the emulator is the adapter's test oracle,
written from AWS's documentation, so a mistake in either shows up as a failing test.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from agentpack.emulators.aws_lambda.runtime_api import (
    BUFFERED_RESPONSE_LIMIT,
    REQUEST_PAYLOAD_LIMIT,
    Buffered,
    Chunk,
    Failed,
    Invocation,
    StreamEnd,
    StreamStart,
)
from agentpack.emulators.h11_server import BodyTooLarge, Exchange, H11Server

BUFFERED = "BUFFERED"
RESPONSE_STREAM = "RESPONSE_STREAM"
HTTP_INTEGRATION_RESPONSE = "application/vnd.awslambda.http-integration-response"
PRELUDE_END = b"\0" * 8
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "+json",
    "+xml",
)
#: Framing is the front's to decide (chunked when streaming, a length when whole), never the function's.
_FRAMING = {"content-length", "transfer-encoding", "connection", "keep-alive"}
#: Emulator-only response header naming why an invocation failed (the platform says only 502).
ERROR_HEADER = "x-agentpack-emulator-error"

Submit = Callable[[Invocation], Awaitable[None]]
Log = Callable[[str], None]


class BadAnswer(Exception):
    """The function's answer cannot be turned into an HTTP response."""


def function_url_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    source_ip: str,
    request_id: str,
    url_id: str,
    region: str,
    account_id: str,
    trace: str,
) -> dict[str, Any]:
    """The function URL event (payload format 2.0) for one HTTP request."""
    raw_path, _, raw_query = target.partition("?")
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        if name == "cookie":
            cookies += [part.strip() for part in value.split(";") if part.strip()]
            continue
        merged[name] = f"{merged[name]},{value}" if name in merged else value
    merged.setdefault("x-forwarded-for", source_ip)
    merged.setdefault("x-forwarded-proto", "http")
    merged["x-amzn-trace-id"] = trace.split(";")[0]
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path or "/",
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": account_id,
            "apiId": url_id,
            "domainName": merged.get("host", f"{url_id}.lambda-url.{region}.on.aws"),
            "domainPrefix": url_id,
            "http": {
                "method": method,
                "path": raw_path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if raw_query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    if body:
        content_type = merged.get("content-type", "")
        textual = any(marker in content_type for marker in _TEXT_TYPES)
        try:
            event["body"] = body.decode("utf-8") if textual else None
        except UnicodeDecodeError:
            event["body"] = None
        if event["body"] is None:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def http_answer(payload: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body from a function's buffered return value (the documented inference)."""
    try:
        data = json.loads(payload) if payload else None
    except ValueError:
        raise BadAnswer("the function's response is not JSON") from None
    if not isinstance(data, dict) or "statusCode" not in data:
        return 200, [("content-type", "application/json")], payload
    try:
        status = int(data["statusCode"])
    except (TypeError, ValueError):
        raise BadAnswer(f"statusCode {data['statusCode']!r} is not a number") from None
    headers = _headers(data)
    body = data.get("body")
    if body is None:
        content = b""
    elif data.get("isBase64Encoded"):
        try:
            content = base64.b64decode(body, validate=True)
        except (ValueError, TypeError):
            raise BadAnswer("isBase64Encoded is true but the body is not base64") from None
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = json.dumps(body).encode()
    return status, headers, content


def prelude_head(prelude: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Status and headers from a streamed response's JSON prelude."""
    try:
        data = json.loads(prelude)
        status = int(data.get("statusCode", 200))
    except (ValueError, TypeError, AttributeError):
        raise BadAnswer("the response stream's prelude is not the JSON object a function URL expects") from None
    return status, _headers(data)


def _headers(data: dict[str, Any]) -> list[tuple[str, str]]:
    headers = [
        (str(k).lower(), str(v)) for k, v in (data.get("headers") or {}).items() if str(k).lower() not in _FRAMING
    ]
    return headers + [("set-cookie", str(cookie)) for cookie in data.get("cookies") or []]


class FunctionURL:
    """The HTTP front: one invocation per request, answered per the URL's invoke mode."""

    def __init__(
        self,
        submit: Submit,
        *,
        invoke_mode: str,
        log: Log,
        region: str,
        account_id: str,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if invoke_mode not in (BUFFERED, RESPONSE_STREAM):
            raise ValueError(f"invoke mode {invoke_mode!r}: use {BUFFERED} or {RESPONSE_STREAM}")
        self.submit = submit
        self.invoke_mode = invoke_mode
        self.log = log
        self.region = region
        self.account_id = account_id
        self.url_id = "agentpackemulator"
        self.server = H11Server(self.handle, host, port)

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()

    async def handle(self, exchange: Exchange) -> None:
        invocation = Invocation(b"")
        try:
            body = await exchange.body(limit=REQUEST_PAYLOAD_LIMIT)
        except BodyTooLarge as too_large:
            await self._too_large(exchange, too_large.args[0])
            return
        event = function_url_event(
            exchange.method,
            exchange.target,
            exchange.header_list,
            body,
            source_ip=exchange.peer[0],
            request_id=invocation.request_id,
            url_id=self.url_id,
            region=self.region,
            account_id=self.account_id,
            trace=invocation.trace_id,
        )
        invocation.event = json.dumps(event).encode()
        if len(invocation.event) > REQUEST_PAYLOAD_LIMIT:
            await self._too_large(exchange, len(invocation.event))
            return
        await self.submit(invocation)
        try:
            await self._relay(exchange, invocation)
        except (ConnectionError, OSError):
            pass  # the client left; the function runs on, as on the platform

    async def _too_large(self, exchange: Exchange, size: int) -> None:
        message = f"{size} byte payload is too large for the RequestResponse invocation type (limit {REQUEST_PAYLOAD_LIMIT} bytes)"
        await exchange.respond(413, json.dumps({"Message": message}).encode(), [("content-type", "application/json")])

    async def _relay(self, exchange: Exchange, invocation: Invocation) -> None:
        first = await invocation.messages.get()
        ids = [("x-amzn-requestid", invocation.request_id)]
        if isinstance(first, Failed):
            await self._failed(exchange, invocation, first.error_type)
        elif isinstance(first, Buffered):
            try:
                status, headers, body = http_answer(first.payload)
            except BadAnswer as exc:
                self.log(f"RequestId: {invocation.request_id} Error: {exc}")
                await self._failed(exchange, invocation, "Runtime.InvalidResponse")
                return
            await exchange.respond(status, body, [*headers, *ids])
        elif isinstance(first, StreamStart):
            await self._stream(exchange, invocation, first.content_type)

    async def _stream(self, exchange: Exchange, invocation: Invocation, content_type: str) -> None:
        head: tuple[int, list[tuple[str, str]]] | None = None
        if not content_type.startswith(HTTP_INTEGRATION_RESPONSE):
            head = (200, [("content-type", content_type or "application/octet-stream")])
        pending = b""  # the prelude until its NULs, then (buffered mode) the body
        live = self.invoke_mode == RESPONSE_STREAM
        ids = [("x-amzn-requestid", invocation.request_id)]
        while True:
            message = await invocation.messages.get()
            if isinstance(message, Chunk):
                data = message.data
                if head is None:
                    pending += data
                    end = pending.find(PRELUDE_END)
                    if end < 0:
                        continue
                    try:
                        head = prelude_head(pending[:end])
                    except BadAnswer as exc:
                        self.log(f"RequestId: {invocation.request_id} Error: {exc}")
                        await self._failed(exchange, invocation, "Runtime.InvalidResponse")
                        return
                    data, pending = pending[end + len(PRELUDE_END) :], b""
                    if live:
                        await exchange.start(head[0], [*head[1], *ids])
                if live:
                    await exchange.write(data)
                else:
                    pending += data
                    if len(pending) > BUFFERED_RESPONSE_LIMIT:
                        self.log(
                            f"RequestId: {invocation.request_id} Error: a streamed response over "
                            f"{BUFFERED_RESPONSE_LIMIT} bytes to a BUFFERED function URL"
                        )
                        await self._failed(exchange, invocation, "Function.ResponseSizeTooLarge")
                        return
            elif isinstance(message, StreamEnd) and message.error is None:
                if head is None:
                    head = (
                        (200, [("content-type", "application/octet-stream")]) if not pending else prelude_head(pending)
                    )
                    pending = b""
                if exchange.started:
                    await exchange.end()
                else:
                    await exchange.respond(head[0], pending, [*head[1], *ids])
                return
            else:  # failed midway: trailers, timeout, crash
                error_type = (
                    message.error["errorType"]
                    if isinstance(message, StreamEnd) and message.error
                    else getattr(message, "error_type", "Unhandled")
                )
                if exchange.started:
                    exchange.abort()
                else:
                    await self._failed(exchange, invocation, error_type)
                return

    async def _failed(self, exchange: Exchange, invocation: Invocation, error_type: str) -> None:
        await exchange.respond(
            502,
            b"Internal Server Error",
            [
                ("content-type", "application/json"),
                ("x-amzn-requestid", invocation.request_id),
                (ERROR_HEADER, error_type),
            ],
        )
