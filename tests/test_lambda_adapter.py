"""The buffered Lambda handler, in-process: real event shapes in, each event source's answer out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi import Response
from fastapi.responses import StreamingResponse

from agentpack import AgentApp
from agentpack.adapters.aws_lambda import handler_for
from agentpack.adapters.lambda_environment import EnvironmentEnded, LambdaEnvironment
from tests import lambda_events as events
from tests.support import check_protocol, user_body


class Recorder:
    def __init__(self) -> None:
        self.starts = 0
        self.shutdowns = 0
        self.exits: list[int] = []
        self.cancelled = False


def build_app(record: Recorder) -> AgentApp:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        record.starts += 1
        yield {"greeting": "from lifespan"}
        record.shutdowns += 1

    app = AgentApp(app_name="lambda-test", lifespan=lifespan)

    @app.query(framework="text")
    async def answer(self, msgs, request, **kwargs):
        text = msgs[-1].text() if msgs else ""
        if text == "slow":
            while True:
                yield "tick "
                await asyncio.sleep(0.05)
        yield "hello "
        yield "lambda"

    @app.get("/echo")
    async def echo(text: str = "none"):
        return {"echo": text, "starts": record.starts}

    @app.post("/echo-body")
    async def echo_body(payload: dict):
        return {"body": payload}

    @app.get("/files/{name}")
    async def file(name: str):
        return {"name": name}

    @app.get("/cookies")
    async def cookies():
        response = Response("ok", media_type="text/plain")
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    @app.get("/latin1")
    async def latin1():
        return Response(b"caf\xe9", media_type="text/plain; charset=latin-1")

    @app.get("/boom")
    async def boom():
        raise RuntimeError("the endpoint failed")

    @app.get("/half")
    async def half():
        async def parts():
            yield b"first part"
            raise RuntimeError("failed halfway")

        return StreamingResponse(parts(), media_type="text/plain")

    @app.get("/sigterm")
    async def sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            record.cancelled = True
            raise
        return {"finished": True}

    return app


@pytest.fixture
def record() -> Recorder:
    return Recorder()


@pytest.fixture
def environment(record: Recorder) -> Iterator[LambdaEnvironment]:
    env = LambdaEnvironment(build_app(record), exit=record.exits.append)
    env.start()
    yield env
    env.shutdown()


@pytest.fixture
def handler(environment: LambdaEnvironment):
    return handler_for(environment)


def json_body(answer: dict) -> Any:
    return json.loads(events.body_of(answer))


def test_function_url_event(handler):
    answer = handler(events.function_url("GET", "/echo", query="text=hi%20there"), None)
    assert answer["statusCode"] == 200 and answer["headers"]["content-type"] == "application/json"
    assert json_body(answer) == {"echo": "hi there", "starts": 1}
    posted = handler(events.function_url("POST", "/echo-body", {"中文": "ids are normal"}, b64=True), None)
    assert json_body(posted) == {"body": {"中文": "ids are normal"}}


@pytest.mark.parametrize("shape", ["http_api_v2", "http_api_v1", "rest_api", "alb", "lambda_at_edge"])
def test_every_event_source(handler, shape):
    if shape == "http_api_v2":
        event = events.http_api_v2("GET", "/echo", query="text=v2")
    elif shape == "lambda_at_edge":
        event = events.lambda_at_edge("GET", "/echo", "text=v2")
    else:
        event = getattr(events, shape)("GET", "/echo", query={"text": "v2"})
    answer = handler(event, None)
    status = answer["status"] if shape == "lambda_at_edge" else answer["statusCode"]
    assert int(status) == 200
    assert json_body(answer) == {"echo": "v2", "starts": 1}


def test_raw_path_with_percent_20_is_unquoted(handler):
    answer = handler(events.function_url("GET", "/files/a%20b%E4%B8%AD"), None)
    assert answer["statusCode"] == 200 and json_body(answer) == {"name": "a b中"}


def test_set_cookie_on_rest_v1_goes_to_multi_value_headers(handler):
    answer = handler(events.rest_api("GET", "/cookies"), None)
    assert "cookies" not in answer  # v1 has no cookies field; API Gateway would drop them
    cookies = answer["multiValueHeaders"]["set-cookie"]
    assert [c.split(";")[0] for c in cookies] == ["a=1", "b=2"]
    v2 = handler(events.function_url("GET", "/cookies"), None)
    assert [c.split(";")[0] for c in v2["cookies"]] == ["a=1", "b=2"] and "set-cookie" not in v2["headers"]


def test_text_body_that_is_not_utf8_is_base64(handler):
    answer = handler(events.function_url("GET", "/latin1"), None)
    assert answer["isBase64Encoded"] and events.body_of(answer) == b"caf\xe9"


def test_an_endpoint_that_raises_returns_its_500(handler):
    answer = handler(events.function_url("GET", "/boom"), None)
    assert answer["statusCode"] == 500 and events.body_of(answer) == b"Internal Server Error"
    after = handler(events.function_url("GET", "/echo"), None)  # the environment keeps serving
    assert after["statusCode"] == 200


def test_a_body_that_breaks_off_becomes_a_500(handler):
    answer = handler(events.function_url("GET", "/half"), None)
    assert answer["statusCode"] == 500 and events.body_of(answer) == b"Internal Server Error"


def test_agent_api_through_the_handler(handler):
    stream = handler(events.function_url("POST", "/process", user_body("hi")), None)
    assert stream["statusCode"] == 200 and stream["headers"]["content-type"].startswith("text/event-stream")
    sse = [json.loads(line[6:]) for line in events.body_of(stream).decode().splitlines() if line.startswith("data: ")]
    assert check_protocol(sse)["status"] == "completed"
    final = handler(events.function_url("POST", "/process", user_body("hi", stream=False)), None)
    assert json_body(final)["output"][0]["content"][0]["text"] == "hello lambda"
    invalid = handler(events.function_url("POST", "/process", {"input": "not a list"}), None)
    assert invalid["statusCode"] == 422


def test_unknown_event_is_an_error(handler):
    with pytest.raises(RuntimeError, match="unable to infer"):
        handler({"Records": [{"eventSource": "aws:s3"}]}, None)


def test_lifespan_runs_once_over_many_invocations(handler, record):
    for number in range(25):
        answer = handler(events.function_url("GET", "/echo", query=f"text={number}"), None)
        assert json_body(answer) == {"echo": str(number), "starts": 1}
    assert record.starts == 1 and record.shutdowns == 0


class Context:
    """The part of awslambdaric's LambdaContext the handler reads."""

    def __init__(self, remaining_ms: int) -> None:
        import time

        self.deadline = time.time() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        import time

        return int(max(0.0, self.deadline - time.time()) * 1000)


def test_a_run_near_the_deadline_ends_with_its_terminal_event(handler):
    answer = handler(events.function_url("POST", "/process", user_body("slow")), Context(1500))
    sse = [json.loads(line[6:]) for line in events.body_of(answer).decode().splitlines() if line.startswith("data: ")]
    terminal = check_protocol(sse)
    assert terminal["status"] == "canceled"
    assert any(e.get("delta") for e in sse), "the events before the stop are kept"


def test_sigterm_between_invocations_runs_the_shutdown(handler, environment, record):
    handler(events.function_url("GET", "/echo"), None)
    assert signal.getsignal(signal.SIGTERM) == environment._on_sigterm
    os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread at once
    assert record.shutdowns == 1 and record.exits == [0]
    assert signal.getsignal(signal.SIGTERM) is not environment._on_sigterm, "the previous handler is back"


def test_sigterm_during_an_invocation_cancels_it_then_shuts_down(handler, record):
    with pytest.raises(EnvironmentEnded):
        handler(events.function_url("GET", "/sigterm"), None)
    assert record.cancelled is True and record.shutdowns == 1 and record.exits == [0]


def test_a_failing_start_up_raises(record):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        raise ConnectionError("database unreachable")
        yield

    env = LambdaEnvironment(AgentApp(lifespan=lifespan), exit=record.exits.append)
    with pytest.raises(Exception, match="database unreachable"):
        env.start()
    env.shutdown()


DRIVER = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from agentpack.adapters.aws_lambda import make_handler
    handler = make_handler("app.py:app")
    print("ready", flush=True)
    time.sleep(60)
    print("not interrupted", flush=True)
    """
)

APP = textwrap.dedent(
    """
    from contextlib import asynccontextmanager
    from agentpack import AgentApp

    @asynccontextmanager
    async def lifespan(app):
        print("started", flush=True)
        yield
        print("shut down", flush=True)

    app = AgentApp(lifespan=lifespan)
    """
)


def test_sigterm_ends_a_real_process_after_its_shutdown(tmp_path: Path):
    (tmp_path / "app.py").write_text(APP)
    root = str(Path(__file__).resolve().parents[1])
    process = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), root], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while "ready" not in lines:
            line = process.stdout.readline()
            assert line, process.stderr.read()
            lines.append(line.strip())
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert lines[0] == "started" and out.split() == ["shut", "down"]
