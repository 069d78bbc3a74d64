"""In-process tests of the adapter FC and AgentRun artifacts serve behind (raw ASGI and httpx's
ASGITransport, no sockets): the lifecycle hooks, the request id, and the role's temporary
credentials reaching the handler but never a log line.  The emulator tests drive the same
adapter through real processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import logging.config
from typing import Iterator

import httpx

from agentpack import AgentApp
from agentpack.adapters.http_function import FunctionAdapter, current_invocation, log_config

SECRET = "fc-secret-9f8e7d6c5b"
TOKEN = "sts-token-CAIS-0123456789"
ROLE_HEADERS = {
    "x-fc-request-id": "1-6745a1b2-0f1e2d3c4b5a",
    "x-fc-access-key-id": "STS.key-id",
    "x-fc-access-key-secret": SECRET,
    "x-fc-security-token": TOKEN,
    "x-fc-function-name": "my-agent",
    "x-fc-region": "cn-hangzhou",
    "x-fc-function-memory": "1024",
}


def _app() -> AgentApp:
    app = AgentApp(app_name="fc-adapter")

    @app.endpoint("/who", methods=["GET"])
    def who() -> dict:
        invocation = current_invocation()
        assert invocation is not None
        # what a careless handler might do: log the whole invocation
        logging.getLogger("agentpack.user").warning("handling %r", invocation)
        credentials = invocation.credentials
        return {
            "request_id": invocation.request_id,
            "function": invocation.function_name,
            "region": invocation.region,
            "memory_mb": invocation.memory_mb,
            "key_id": credentials.access_key_id if credentials else None,
            "secret_matches": bool(credentials and credentials.access_key_secret == SECRET),
            "token_matches": bool(credentials and credentials.security_token == TOKEN),
        }

    return app


class Lifespan:
    """Drives the ASGI lifespan protocol by hand, as uvicorn does."""

    def __init__(self, app) -> None:
        self.app = app
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sent: list[dict] = []
        self.task: asyncio.Task | None = None

    async def _send(self, message: dict) -> None:
        self.sent.append(message)

    def run(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, self.inbox.get, self._send))

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


def test_the_handler_gets_the_role_credentials_and_no_log_line_shows_them(capsys):
    adapter = FunctionAdapter(_app(), request_shutdown=lambda: None)

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=adapter), base_url="http://fc.test") as client:
            return await client.get("/who", headers=ROLE_HEADERS)

    with logging_as_served() as logged:  # the logging configuration the artifact's server runs with
        answer = asyncio.run(scenario())
    assert answer.status_code == 200, answer.text
    request_id = ROLE_HEADERS["x-fc-request-id"]
    assert answer.json() == {"request_id": request_id, "function": "my-agent", "region": "cn-hangzhou", "memory_mb": 1024,
                             "key_id": "STS.key-id", "secret_matches": True, "token_matches": True}
    assert answer.headers["x-fc-request-id"] == request_id, "the request id is echoed on the response"
    # JSON lines (the buffer is no terminal, as FC's output is not), each with the request id
    lines = [line for line in logged.getvalue().splitlines() if "handling" in line]
    assert lines and all(json.loads(line)["request_id"] == request_id for line in lines), logged.getvalue()
    assert "STS.key-id" in lines[0], "the invocation was logged (a key id is not a secret)"
    printed = capsys.readouterr().out
    assert f"FC Invoke Start RequestId: {request_id}" in printed
    for text in (logged.getvalue(), printed):
        assert SECRET not in text and TOKEN not in text, "credentials never reach a log line"


@contextlib.contextmanager
def logging_as_served() -> Iterator[io.StringIO]:
    """Configure logging with :func:`log_config` (what ``serve`` gives uvicorn), writing to a
    buffer; the loggers it touches are put back afterwards."""
    config = log_config()
    buffer = io.StringIO()
    for handler in config["handlers"].values():
        handler["stream"] = buffer
    names = ["", *config.get("loggers", {})]
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level, logging.getLogger(name).propagate)
             for name in names}
    logging.config.dictConfig(config)
    try:
        yield buffer
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def test_without_a_role_there_are_no_credentials_and_a_request_id_is_made_up():
    adapter = FunctionAdapter(_app(), request_shutdown=lambda: None)

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=adapter), base_url="http://fc.test") as client:
            return await client.get("/who")

    seen = asyncio.run(scenario()).json()
    assert seen["key_id"] is None and seen["secret_matches"] is False
    assert len(seen["request_id"]) == 32, "a request id of its own, so log lines still group by request"


def test_lifecycle_hooks_initialize_after_start_up_and_pre_stop_starts_the_shutdown(capsys):
    shutdowns: list[str] = []
    adapter = FunctionAdapter(_app(), request_shutdown=lambda: shutdowns.append("requested"))

    async def scenario() -> dict[str, httpx.Response]:
        answers: dict[str, httpx.Response] = {}
        lifespan = Lifespan(adapter)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=adapter), base_url="http://fc.test") as client:
            initialize = asyncio.create_task(client.post("/initialize", headers={"x-fc-request-id": "init-1"}))
            for _ in range(20):  # the hook waits while the app has not started
                await asyncio.sleep(0)
            assert not initialize.done(), "/initialize answered before the app started"
            await lifespan.inbox.put({"type": "lifespan.startup"})
            lifespan.run()
            answers["initialize"] = await asyncio.wait_for(initialize, 10)
            assert {"type": "lifespan.startup.complete"} in lifespan.sent
            answers["pre-freeze"] = await client.get("/pre-freeze", headers={"x-fc-request-id": "freeze-1"})
            assert shutdowns == []
            answers["pre-stop"] = await client.get("/pre-stop", headers={"x-fc-request-id": "stop-1"})
        await lifespan.shutdown()
        return answers

    answers = asyncio.run(scenario())
    for hook, request_id in (("initialize", "init-1"), ("pre-freeze", "freeze-1"), ("pre-stop", "stop-1")):
        assert answers[hook].status_code == 200, (hook, answers[hook].text)
        assert answers[hook].headers["x-fc-request-id"] == request_id
    assert shutdowns == ["requested"], "pre-stop (and only pre-stop) starts the server's graceful shutdown"
    out = capsys.readouterr().out
    assert "FC Initialize Start RequestId: init-1" in out and "FC PreStop End RequestId: stop-1" in out


def test_a_caller_of_the_public_url_cannot_reach_the_lifecycle_hooks():
    """FC marks what comes through the trigger x-fc-control-path: /http-invoke (and refuses x-fc-*
    headers from callers): such a request for /pre-stop reaches the app, never the shutdown."""
    shutdowns: list[str] = []
    adapter = FunctionAdapter(_app(), request_shutdown=lambda: shutdowns.append("requested"))

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=adapter), base_url="http://fc.test") as client:
            invoked = {"x-fc-request-id": "r-1", "x-fc-control-path": "/http-invoke"}
            public = await client.get("/pre-stop", headers=invoked)
            hook = await client.get("/pre-stop", headers={"x-fc-request-id": "r-2", "x-fc-control-path": "/pre-stop"})
            return public, hook

    public, hook = asyncio.run(scenario())
    assert public.status_code == 404 and hook.status_code == 200
    assert shutdowns == ["requested"], "only the platform's own hook call starts the shutdown"
