"""Logs you can follow (issue 21, docs/logs.md): every line of a run carries its request,
session and user ids -- agentpack's lines and the handler's own ``logging`` calls --, a run
has one "started" and one "ended" line with its status and duration, the request id is the
platform's or the caller's (when sane) and is answered in ``X-Request-Id``, lines are JSON
when the output is no terminal, and no key or secret reaches a log line."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from agentpack import AgentApp, logs
from agentpack.adapters.http_function import FunctionAdapter
from tests.support import free_port, http, user_body, wait_until

KEY = "ak-logs-test-4f1c9e2b7d"
OTHER_KEY = "ak-logs-test-second-77aa01"
ENV_SECRET = "sk-model-provider-secret-9d8e7f"
HEX32 = set("0123456789abcdef")


class Lines(logging.Handler):
    """Formats each record as the server does (JSON, with the ids) and keeps the lines."""

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter or logs.JsonFormatter())
        self.addFilter(logs.RunContextFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def captured(formatter: logging.Formatter | None = None) -> Iterator[Lines]:
    """Every line any logger writes, at INFO and up, through one :class:`Lines` on the root
    logger; the loggers touched are put back afterwards."""
    lines = Lines(formatter)
    root, ours = logging.getLogger(), logging.getLogger("agentpack")
    saved = (root.level, ours.level, ours.propagate, ours.handlers[:])
    root.addHandler(lines)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.INFO)
    ours.propagate, ours.handlers[:] = True, []
    try:
        yield lines
    finally:
        root.removeHandler(lines)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
        ours.propagate, ours.handlers[:] = saved[2], saved[3]


def make_app(**options: Any) -> AgentApp:
    app = AgentApp(**options)
    own = logging.getLogger("the_agent")

    @app.query(framework="text")
    async def handle(msgs: Any, request: Any = None, **kwargs: Any) -> Any:
        text = request.input[-1].content[0].text
        own.info("the handler thinks about %r", text)
        if text == "fail":
            raise RuntimeError("the model provider answered 500")
        if text == "hang":
            await asyncio.Event().wait()
        yield f"you said {text}"

    return app


async def post(app: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent.test") as client:
        return await client.post("/process", json=body, headers=headers or {})


def of_run(lines: Lines, session: str) -> list[dict[str, Any]]:
    return [r for r in lines.records() if r.get("session_id") == session]


def test_every_line_of_a_run_carries_the_ids_and_the_run_starts_and_ends_once() -> None:
    app = make_app()
    with captured() as lines:
        answer = asyncio.run(
            post(app, user_body("hello", session_id="s-1", user_id="u-1"), {"X-Request-Id": "caller-req-42"})
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == "caller-req-42", "a sane incoming id is kept and answered back"
    run = of_run(lines, "s-1")
    assert [r["logger"] for r in run] == ["agentpack.run", "the_agent", "agentpack.run"], lines.text()
    assert all(r["request_id"] == "caller-req-42" and r["user_id"] == "u-1" for r in run), lines.text()
    started, own, ended = run
    assert started["event"] == "run_started" and started["route"] == "/process"
    assert own["message"] == "the handler thinks about 'hello'", "the handler's own logging calls carry the ids"
    assert ended["event"] == "run_ended" and ended["status"] == "completed" and ended["route"] == "/process"
    assert isinstance(ended["duration_ms"], float) and ended["duration_ms"] >= 0
    assert "error_code" not in ended


def test_a_run_of_another_protocol_is_logged_the_same_way() -> None:
    app = make_app()
    path = app.protocols.endpoints()["responses"]

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent.test") as client:
            return await client.post(path, json={"model": "agent", "input": "hi"}, headers={"X-Request-Id": "resp-1"})

    with captured() as lines:
        answer = asyncio.run(call())
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "resp-1"
    run = [r for r in lines.records() if r.get("request_id") == "resp-1" and r.get("session_id")]
    assert [r.get("event") for r in run] == ["run_started", None, "run_ended"], lines.text()
    assert run[0]["route"] == path and run[-1]["status"] == "completed"


@pytest.mark.parametrize(
    "incoming",
    ["x" * (logs.MAX_REQUEST_ID + 1), "two words", "请求-1", "tab\tinside", ""],
    ids=["too-long", "space", "chinese", "control", "empty"],
)
def test_a_request_id_that_is_not_sane_is_replaced_by_a_new_one(incoming: str) -> None:
    app = make_app()
    headers: Any = {"X-Request-Id": incoming.encode("utf-8")}  # UTF-8 bytes, as a client may send them
    with captured() as lines:
        answer = asyncio.run(post(app, user_body("hi", session_id="s-2"), headers))
    assert answer.status_code == 200
    made = answer.headers["x-request-id"]
    assert len(made) == 32 and set(made) <= HEX32, made
    assert {r["request_id"] for r in of_run(lines, "s-2")} == {made}


def test_each_request_gets_its_own_id_when_none_is_sent() -> None:
    app = make_app()

    async def two() -> list[httpx.Response]:
        return [await post(app, user_body("hi", session_id=f"s-{n}")) for n in (3, 4)]

    with captured() as lines:
        first, second = asyncio.run(two())
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert {r["request_id"] for r in of_run(lines, "s-4")} == {second.headers["x-request-id"]}


def test_chinese_and_emoji_ids_are_written_as_they_are() -> None:
    app = make_app()
    with captured() as lines:
        answer = asyncio.run(post(app, user_body("hi", session_id="会话🙂", user_id="用户")))
    assert answer.status_code == 200
    assert "会话🙂" in lines.text(), "ids readable in the line, not \\u escapes"
    run = of_run(lines, "会话🙂")
    assert len(run) == 3 and all(r["user_id"] == "用户" for r in run)


def test_a_failed_run_ends_failed_and_a_timed_out_run_says_timeout() -> None:
    app = make_app(run_timeout_seconds=0.2)

    async def both() -> None:
        for text, session in (("fail", "s-fail"), ("hang", "s-hang")):
            answer = await post(app, user_body(text, session_id=session))
            assert answer.status_code == 200

    with captured() as lines:
        asyncio.run(both())
    failed = of_run(lines, "s-fail")
    assert failed[-1]["status"] == "failed" and "error_code" not in failed[-1]
    traceback = [r for r in failed if r["level"] == "ERROR"]
    assert traceback and "exception" in traceback[0], "the handler's failure is logged with its traceback, ids on"
    assert "\n" not in lines.lines[lines.records().index(traceback[0])], "a traceback stays on its JSON line"
    hung = of_run(lines, "s-hang")
    assert hung[-1]["event"] == "run_ended" and hung[-1]["status"] == "failed" and hung[-1]["error_code"] == "timeout"


def test_a_stopped_run_ends_canceled() -> None:
    app = AgentApp()
    entered: list[asyncio.Event] = []

    @app.query(framework="text")
    async def handle(msgs: Any, request: Any = None, **kwargs: Any) -> Any:
        entered[0].set()
        await asyncio.Event().wait()
        yield "never"

    async def scenario() -> None:
        entered.append(asyncio.Event())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent.test") as client:
            running = asyncio.create_task(client.post("/process", json=user_body("hang", session_id="s-stop")))
            await entered[0].wait()
            stopped = await client.post("/process/stop", json={"session_id": "s-stop"})
            assert stopped.json()["stopped"] is True
            assert (await running).status_code == 200

    with captured() as lines:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    ended = [r for r in of_run(lines, "s-stop") if r.get("event") == "run_ended"]
    assert [r["status"] for r in ended] == ["canceled"], lines.text()


def test_a_background_run_is_logged_with_the_submitting_request_id() -> None:
    app = make_app(enable_stream_task=True)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            submitted = await c.post(
                "/process/task", json=user_body("hi", session_id="s-bg"), headers={"X-Request-Id": "submit-1"}
            )
            task_id = submitted.json()["task_id"]
            deadline = asyncio.get_running_loop().time() + 30
            while (status := (await c.get(f"/process/task/{task_id}")).json()["status"]) != "finished":
                assert status in ("pending", "running") and asyncio.get_running_loop().time() < deadline, status
                await asyncio.sleep(0.02)

    with captured() as lines:
        asyncio.run(scenario())
    run = of_run(lines, "s-bg")
    assert [r.get("event") for r in run] == ["run_started", None, "run_ended"], lines.text()
    assert all(r["request_id"] == "submit-1" and r["route"] == "/process/task" for r in run if "event" in r)
    assert run[-1]["status"] == "completed"


def test_the_function_adapter_request_id_is_the_one_in_every_line_and_answered_back() -> None:
    adapter = FunctionAdapter(make_app(), request_shutdown=lambda: None)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=adapter), base_url="http://fc.test") as client:
            return await client.post(
                "/process",
                json=user_body("hi", session_id="s-fc"),
                headers={"x-fc-request-id": "fc-req-1", "X-Request-Id": "caller-id"},
            )

    with captured() as lines, contextlib.redirect_stdout(io.StringIO()):
        answer = asyncio.run(call())
    assert answer.headers["x-fc-request-id"] == "fc-req-1"
    assert answer.headers["x-request-id"] == "fc-req-1", "the platform's id wins over the caller's"
    assert {r["request_id"] for r in of_run(lines, "s-fc")} == {"fc-req-1"}


def test_the_lambda_invocation_id_is_the_request_id() -> None:
    seen: list[str | None] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        bound = logs.current()
        seen.append(bound.request_id if bound else None)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/", "headers": [(b"x-request-id", b"caller")]}
    scope["aws.context"] = SimpleNamespace(aws_request_id="lambda-req-9")
    asyncio.run(logs.RequestIds(app)(scope, None, send))
    assert seen == ["lambda-req-9"]
    assert (b"x-request-id", b"lambda-req-9") in sent[0]["headers"]
    assert logs.current() is None, "nothing stays bound after the request"


def test_the_lambda_handler_logs_a_run_with_the_invocation_id() -> None:
    from agentpack.adapters.aws_lambda import handler_for
    from agentpack.adapters.lambda_environment import LambdaEnvironment
    from tests import lambda_events

    environment = LambdaEnvironment(make_app(), exit=lambda code: None)
    environment.start()
    try:
        handler = handler_for(environment)
        event = lambda_events.function_url("POST", "/process", user_body("hi", session_id="s-lambda"))
        with captured() as lines:
            answer = handler(event, SimpleNamespace(aws_request_id="lambda-inv-3"))
    finally:
        environment.shutdown()
    assert answer["statusCode"] == 200
    assert answer["headers"]["x-request-id"] == "lambda-inv-3"
    run = of_run(lines, "s-lambda")
    assert len(run) == 3 and {r["request_id"] for r in run} == {"lambda-inv-3"}, lines.text()


def test_under_a_lambda_runtime_client_its_handler_writes_our_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """awslambdaric's handler on its plain sink writes what it is given; its own format ended in
    a newline, so ours does there too."""
    written = io.StringIO()

    class RuntimeClientHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            written.write(self.format(record))

    theirs = RuntimeClientHandler()
    theirs.setFormatter(logging.Formatter("[%(levelname)s]\t%(message)s\n"))
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers[:] = [theirs]
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    try:
        logs.configure_root("info")
        token = logs.bind_request("inv-5")
        try:
            logging.getLogger("the_agent").info("inside the invocation")
        finally:
            logs.reset(token)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    assert written.getvalue().endswith("\n") and written.getvalue().count("\n") == 1
    line = json.loads(written.getvalue())
    assert line["message"] == "inside the invocation" and line["request_id"] == "inv-5"


def test_a_response_that_names_its_own_request_id_keeps_it() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"X-Request-Id", b"the-apps")]})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(logs.RequestIds(app)({"type": "http", "path": "/", "headers": []}, None, send))
    assert [v for k, v in sent[0]["headers"] if k.lower() == b"x-request-id"] == [b"the-apps"]


def test_an_unhandled_error_s_500_carries_the_request_id() -> None:
    """Starlette's error middleware answers the 500 outside every middleware an app adds: the
    request id is put on the answer around the whole stack, so a user's report of a 500 leads
    to the server's traceback line, which carries the same id."""
    app = make_app()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/boom", headers={"X-Request-Id": "boom-1"})

    answer = asyncio.run(scenario())
    assert answer.status_code == 500 and answer.headers["x-request-id"] == "boom-1"


def test_every_server_configured_by_agentpack_writes_warnings_as_log_lines() -> None:
    """``logs.log_config`` is what ``agentpack run``/``serve``, ``app.run()`` and the function
    adapter configure uvicorn with: each routes Python's warnings to logging (``py.warnings``)."""
    import warnings

    logging.captureWarnings(False)
    try:
        logs.log_config()
        with captured() as lines:
            warnings.warn("a library is deprecated", DeprecationWarning, stacklevel=1)
        assert any(r["logger"] == "py.warnings" and "a library is deprecated" in r["message"] for r in lines.records()), lines.text()
    finally:
        logging.captureWarnings(False)


def test_the_text_format_shows_the_ids_and_json_keeps_one_record_on_one_line() -> None:
    record = logging.LogRecord("the_agent", logging.INFO, __file__, 1, "line\u2028break\nand more", None, None)
    token = logs.bind_request("req-7", "/process")
    try:
        logs.bind_run("s-7", "u-7")
        text = logs.TextFormatter().format(logs_filtered(record))
        encoded = logs.JsonFormatter().format(logs_filtered(record))
    finally:
        logs.reset(token)
    assert text.startswith("INFO:     [req-7] line") and text.endswith("(session s-7, user u-7)"), text
    assert len(encoded.splitlines()) == 1, "no reader splits a JSON line (U+2028 escaped too)"
    assert json.loads(encoded)["message"] == "line\u2028break\nand more"


def logs_filtered(record: logging.LogRecord) -> logging.LogRecord:
    logs.RunContextFilter().filter(record)
    return record


def test_the_format_follows_the_terminal_unless_agentpack_log_format_says(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    assert logs.log_format(Terminal()) == "text" and logs.log_format(io.StringIO()) == "json"
    monkeypatch.setenv(logs.FORMAT_ENV, "JSON")
    assert logs.log_format(Terminal()) == "json"
    monkeypatch.setenv(logs.FORMAT_ENV, "text")
    assert logs.log_format(io.StringIO()) == "text"
    config = logs.log_config("debug", root=False)
    assert config["formatters"]["default"]["()"] is logs.TextFormatter
    assert config["loggers"]["agentpack"]["level"] == "DEBUG" and "root" not in config


def test_a_log_format_that_names_no_format_is_reported_and_ignored(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(logs.FORMAT_ENV, "xml-please")
    assert logs.log_format(io.StringIO()) == "json"
    assert "AGENTPACK_LOG_FORMAT='xml-please' is not a log format (json or text)" in capsys.readouterr().err


def test_no_key_or_secret_reaches_a_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPACK_API_KEYS", OTHER_KEY)
    monkeypatch.setenv("MODEL_PROVIDER_API_KEY", ENV_SECRET)
    app = make_app(api_keys=[KEY])

    async def requests() -> list[int]:
        codes = []
        for headers, text in (
            ({"Authorization": f"Bearer {KEY}"}, "hello"),
            ({"Authorization": f"Bearer {KEY}"}, "fail"),
            ({"Authorization": f"Bearer {KEY}x"}, "hello"),
            ({"Authorization": f"Bearer {ENV_SECRET}"}, "hello"),
            ({}, "hello"),
        ):
            codes.append((await post(app, user_body(text, session_id="s-auth"), headers)).status_code)
        return codes

    with captured() as lines:
        codes = asyncio.run(requests())
    assert codes == [200, 200, 401, 401, 401]
    assert [r["status"] for r in lines.records() if r.get("event") == "run_ended"] == ["completed", "failed"]
    for secret in (KEY, OTHER_KEY, ENV_SECRET, "Bearer"):
        assert secret not in lines.text(), f"{secret!r} was logged"


SERVED_APP = textwrap.dedent(
    """
    import logging
    import os

    from agentpack import AgentApp

    app = AgentApp(api_keys=[os.environ["TEST_KEY"]])
    own = logging.getLogger("the_agent")

    @app.query(framework="text")
    async def handle(msgs, request=None, **kwargs):
        text = request.input[-1].content[0].text
        own.info("the handler thinks about %r", text)
        if text == "fail":
            raise RuntimeError("the model provider answered 500")
        yield "you said " + text

    @app.endpoint("/boom")
    async def boom():
        raise RuntimeError("an endpoint's bug")
    """
)


@pytest.mark.integration
def test_a_served_app_writes_json_lines_with_the_ids_and_no_secret(tmp_path: Path) -> None:
    """A real ``python -m agentpack.serve``, stderr and stdout pipes (no terminal): every line
    is one JSON object; authenticated, refused and failing requests; keys and secrets grepped for."""
    (tmp_path / "app.py").write_text(SERVED_APP)
    port = free_port()
    env = {
        **os.environ,
        "TEST_KEY": KEY,
        "AGENTPACK_API_KEYS": OTHER_KEY,
        "MODEL_PROVIDER_API_KEY": ENV_SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop(logs.FORMAT_ENV, None)
    server = subprocess.Popen(
        [sys.executable, "-m", "agentpack.serve", "--app", "app.py:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/health"), 30, "the server did not start")
        good = {"Authorization": f"Bearer {KEY}"}
        ok = http.post(
            f"{url}/process",
            json=user_body("hello", session_id="会话-1", user_id="u-1"),
            headers={**good, "X-Request-Id": "from-the-caller-1"},
        )
        failing = http.post(f"{url}/process", json=user_body("fail", session_id="s-fail"), headers=good)
        refused = http.post(
            f"{url}/process", json=user_body("hello"), headers={"Authorization": f"Bearer {ENV_SECRET}"}
        )
        broken = http.post(f"{url}/boom", headers={**good, "X-Request-Id": "boom-1"})
        assert (ok.status_code, failing.status_code, refused.status_code, broken.status_code) == (200, 200, 401, 500)
        assert ok.headers["x-request-id"] == "from-the-caller-1" and len(refused.headers["x-request-id"]) == 32
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a stderr line that is not JSON: {line!r}\n{err}")
    access = [json.loads(line) for line in out.splitlines() if line.strip()]
    run = [r for r in records if r.get("session_id") == "会话-1"]
    assert [(r["logger"], r.get("event")) for r in run] == [
        ("agentpack.run", "run_started"),
        ("the_agent", None),
        ("agentpack.run", "run_ended"),
    ], err
    assert all(r["request_id"] == "from-the-caller-1" and r["user_id"] == "u-1" for r in run)
    assert run[-1]["status"] == "completed"
    assert [r["status"] for r in records if r.get("session_id") == "s-fail" and r.get("event") == "run_ended"] == [
        "failed"
    ]
    assert any(r.get("request_id") == "from-the-caller-1" and "POST /process" in r["message"] for r in access), out
    crash = [r for r in records if r["level"] == "ERROR" and "an endpoint's bug" in r.get("exception", "")]
    assert crash and all(r["request_id"] == "boom-1" for r in crash), "the server's own traceback line has the id"
    for secret in (KEY, OTHER_KEY, ENV_SECRET):
        assert secret not in err and secret not in out, f"{secret!r} was logged"


def _answers(url: str) -> bool:
    try:
        return http.get(url).status_code == 200
    except httpx.TransportError:
        return False
