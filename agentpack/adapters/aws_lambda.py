"""Run an ASGI app behind an AWS-Lambda-style handler (buffered responses).

``make_handler("app.py:agent_app")`` returns ``handler(event, context)`` for function URL and
API Gateway HTTP API (payload 2.0) events, plus REST API (1.0) events.  The app is loaded and
its lifespan started once per execution environment — on the first invocation — not on
every call; one event loop lives as long as the environment does.

This adapter buffers the whole response, as Lambda's managed Python runtime requires; an
SSE stream from ``/process`` arrives as one body.  Token-by-token streaming needs the
response-streaming custom runtime, which a later agentpack release adds.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
from typing import Any, Callable, Optional
from urllib.parse import urlencode

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")


class _Environment:
    """The app, its event loop and its running lifespan, kept for the environment's lifetime."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.loop = asyncio.new_event_loop()
        self.app: Any = None
        self._lifespan_queue: Optional[asyncio.Queue] = None

    def ensure_started(self) -> None:
        if self.app is not None:
            return
        from agentpack.app.loader import load_app

        self.app, _ = load_app(self.spec)
        self.loop.run_until_complete(self._start_lifespan())

    async def _start_lifespan(self) -> None:
        receive_queue: asyncio.Queue = asyncio.Queue()
        started: asyncio.Future = self.loop.create_future()

        async def receive() -> dict:
            return await receive_queue.get()

        async def send(message: dict) -> None:
            if message["type"] == "lifespan.startup.complete" and not started.done():
                started.set_result(None)
            elif message["type"] == "lifespan.startup.failed" and not started.done():
                started.set_exception(RuntimeError(message.get("message", "start-up failed")))

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self.state = scope["state"]
        self._lifespan_task = self.loop.create_task(self.app(scope, receive, send))
        await receive_queue.put({"type": "lifespan.startup"})
        await started
        self._lifespan_queue = receive_queue
        atexit.register(self.close)

    def close(self) -> None:
        """Run the app's shutdown when the environment ends (Lambda sends SIGTERM to extensions' runtime)."""
        if self._lifespan_queue is None or self.loop.is_closed():
            return
        self._lifespan_queue.put_nowait({"type": "lifespan.shutdown"})
        try:
            self.loop.run_until_complete(asyncio.wait_for(self._lifespan_task, 10))
        except Exception:  # shutting down regardless
            pass
        self.loop.close()


def _scope(event: dict, state: dict) -> tuple[dict, bytes]:
    version = event.get("version", "1.0")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if version == "2.0":
        http = event["requestContext"]["http"]
        method, path = http["method"], event.get("rawPath", http.get("path", "/"))
        query = event.get("rawQueryString", "")
        if event.get("cookies"):
            headers["cookie"] = "; ".join(event["cookies"])
        source = http.get("sourceIp", "127.0.0.1")
    else:
        method, path = event.get("httpMethod", "GET"), event.get("path", "/")
        query = urlencode(event.get("multiValueQueryStringParameters") or event.get("queryStringParameters") or {}, doseq=True)
        source = (event.get("requestContext", {}).get("identity") or {}).get("sourceIp", "127.0.0.1")
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": headers.get("x-forwarded-proto", "https"),
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.encode(), str(v).encode()) for k, v in headers.items()],
        "client": (source, 0),
        "server": (headers.get("host", "lambda"), 443),
        "state": dict(state),
    }
    return scope, raw


async def _invoke(app: Any, scope: dict, body: bytes) -> dict:
    chunks: list[bytes] = []
    response: dict[str, Any] = {"status": 500, "headers": []}
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the request never disconnects mid-invocation
        return {"type": "http.disconnect"}  # pragma: no cover

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            response["status"] = message["status"]
            response["headers"] = message.get("headers", [])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    payload = b"".join(chunks)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for key, value in response["headers"]:
        name, text = key.decode().lower(), value.decode()
        if name == "set-cookie":
            cookies.append(text)
        else:
            headers[name] = f"{headers[name]},{text}" if name in headers else text
    textual = headers.get("content-type", "").startswith(_TEXT_TYPES)
    result = {
        "statusCode": response["status"],
        "headers": headers,
        "body": payload.decode() if textual else base64.b64encode(payload).decode(),
        "isBase64Encoded": not textual,
    }
    if cookies:
        result["cookies"] = cookies
    return result


def make_handler(spec: str) -> Callable[[dict, Any], dict]:
    """A Lambda handler serving the app named by ``spec``."""
    environment = _Environment(spec)

    def handler(event: dict, context: Any = None) -> dict:
        environment.ensure_started()
        scope, body = _scope(event, environment.state)
        return environment.loop.run_until_complete(_invoke(environment.app, scope, body))

    return handler
