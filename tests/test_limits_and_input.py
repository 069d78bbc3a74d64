"""Issue 21, "Limits" and "Strict input": every limit answers clearly, in process (httpx over
ASGI, or raw ASGI where the test must see what the server reads), and the example app's
OpenAPI schema holds under schemathesis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from agentpack import AgentApp
from agentpack.app.limits import DEFAULT_MAX_BODY_BYTES
from agentpack.protocol.schemas import MAX_CONTENT_ITEMS, MAX_INPUT_MESSAGES, MAX_MESSAGE_CHARS
from agentpack.tasks.embedded import EmbeddedQueue
from agentpack.tasks.base import TaskSpec
from tests.support import in_process, sse_events, user_body


def echo_app(**kwargs: Any) -> tuple[AgentApp, list[str]]:
    """An app whose handler notes each run it starts (so a test sees that a refused request ran nothing)."""
    app = AgentApp(**kwargs)
    ran: list[str] = []

    @app.query(framework="text")
    async def handler(self, msgs, request, **_):
        ran.append(request.session_id)
        yield "ok"

    return app, ran


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- request body size ---------------------------------------------------------------------------
def test_a_body_over_the_limit_is_a_413_before_anything_runs():
    app, ran = echo_app(max_body_bytes=1000)

    async def scenario() -> None:
        async with in_process(app) as client:
            big = await client.post("/process", json=user_body("x" * 2000))
            assert big.status_code == 413
            assert "limit of 1000 bytes" in big.json()["detail"]
            small = await client.post("/process", json=user_body("hi"))
            assert small.status_code == 200

    run(scenario())
    assert len(ran) == 1  # only the small one ran


def test_the_default_limit_is_4_mib_and_a_5_mb_body_is_refused():
    app, ran = echo_app()
    assert app.limits.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 4 * 1024 * 1024

    async def scenario() -> None:
        async with in_process(app) as client:
            response = await client.post("/process", json=user_body("x" * 5_000_000))
            assert response.status_code == 413

    run(scenario())
    assert ran == []


async def raw_post(app: Any, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, int]:
    """POST ``chunks`` as a chunked body (no Content-Length) straight into the ASGI app; returns
    the status, the body and how many chunks the app read."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
        await asyncio.Event().wait()  # the client is still there; nothing more to read
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"agent.test"), (b"transfer-encoding", b"chunked"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("agent.test", 80),
    }
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app(scope, receive, send), 10)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, read


def test_a_chunked_body_is_counted_as_it_arrives_and_never_read_past_the_limit():
    app, ran = echo_app(max_body_bytes=10_000)
    chunks = [b"x" * 4096] * 100  # 400 KB offered, 4 KB at a time
    status, body, read = run(raw_post(app, "/process", chunks, [(b"content-type", b"application/json")]))
    assert status == 413
    assert "limit of 10000 bytes" in json.loads(body)["detail"]
    assert read == 3  # 12 KB read: the first chunk past the limit, and not one more
    assert ran == []


def test_a_chunked_body_under_the_limit_is_served():
    app, ran = echo_app(max_body_bytes=10_000)
    payload = json.dumps(user_body("hi", session_id="chunked")).encode()
    chunks = [payload[:10], payload[10:]]
    status, body, _ = run(raw_post(app, "/process", chunks, [(b"content-type", b"application/json")]))
    assert status == 200
    assert sse_events(body.decode())[-1]["status"] == "completed"
    assert ran == ["chunked"]


def test_the_body_limit_comes_from_the_environment_and_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("AGENTPACK_MAX_BODY_BYTES", "2048")
    assert AgentApp().limits.max_body_bytes == 2048
    monkeypatch.setenv("AGENTPACK_MAX_BODY_BYTES", "0")
    assert AgentApp().limits.max_body_bytes is None  # 0 turns it off
    monkeypatch.setenv("AGENTPACK_MAX_BODY_BYTES", "4MB")
    with pytest.raises(ValueError, match="AGENTPACK_MAX_BODY_BYTES='4MB' is not a whole number"):
        AgentApp()
    with pytest.raises(ValueError, match="max_body_bytes must be a number >= 0"):
        AgentApp(max_body_bytes=-1)


# -- concurrent runs -----------------------------------------------------------------------------
def blocking_app(**kwargs: Any) -> tuple[AgentApp, asyncio.Event]:
    app = AgentApp(**kwargs)
    go = asyncio.Event()

    @app.query(framework="text")
    async def handler(self, msgs, request, **_):
        yield "started"
        await go.wait()

    return app, go


def test_a_full_instance_answers_503_with_retry_after_and_frees_the_slot_when_a_run_ends():
    async def scenario() -> None:
        app, go = blocking_app(max_concurrent_runs=1)
        async with in_process(app) as client:
            first = asyncio.create_task(client.post("/process", json=user_body(session_id="a")))
            while app.runs.slots.active == 0:
                await asyncio.sleep(0.001)
            full = await client.post("/process", json=user_body(session_id="b"))
            assert full.status_code == 503
            assert full.headers["retry-after"] == "1"
            assert "limit of 1 runs" in full.json()["detail"]
            go.set()
            assert (await first).status_code == 200
            assert app.runs.slots.active == 0
            again = await client.post("/process", json=user_body(session_id="b"))
            assert again.status_code == 200 and sse_events(again.text)[-1]["status"] == "completed"

    run(scenario())


def test_the_run_limit_holds_for_every_protocol():
    async def scenario() -> None:
        app, go = blocking_app(max_concurrent_runs=1)
        async with in_process(app) as client:
            first = asyncio.create_task(client.post("/process", json=user_body(session_id="a")))
            while app.runs.slots.active == 0:
                await asyncio.sleep(0.001)
            responses = await client.post("/compatible-mode/v1/responses", json={"input": "hi"})
            assert responses.status_code == 503 and responses.json()["error"]["code"] == "service_unavailable"
            agui = await client.post("/ag-ui", json={"threadId": "t", "runId": "r", "messages": []})
            assert agui.status_code == 503 and "BACKEND_UNAVAILABLE" in agui.text
            go.set()
            await first

    run(scenario())


def test_a_refused_run_gives_its_slot_back():
    async def scenario() -> None:
        app, go = blocking_app(max_concurrent_runs=2)
        async with in_process(app) as client:
            first = asyncio.create_task(client.post("/process", json=user_body(session_id="s", user_id="u")))
            while app.runs.slots.active == 0:
                await asyncio.sleep(0.001)
            busy = await client.post("/process", json=user_body(session_id="s", user_id="u"))
            assert busy.status_code == 409
            assert app.runs.slots.active == 1  # the 409's slot is back
            go.set()
            await first
            assert app.runs.slots.active == 0

    run(scenario())


# -- per-run timeout -----------------------------------------------------------------------------
def test_a_run_past_its_timeout_ends_failed_with_code_timeout(monkeypatch):
    cleaned: list[str] = []

    def app_with(**kwargs: Any) -> AgentApp:
        app = AgentApp(**kwargs)

        @app.query(framework="text")
        async def handler(self, msgs, request, **_):
            try:
                yield "thinking"
                await asyncio.Event().wait()
            finally:
                cleaned.append(request.session_id)

        return app

    async def terminal(app: AgentApp) -> dict[str, Any]:
        async with in_process(app) as client:
            response = await client.post("/process", json=user_body(session_id="slow"))
            assert response.status_code == 200
            return sse_events(response.text)[-1]

    end = run(terminal(app_with(run_timeout_seconds=0.2)))
    assert end["status"] == "failed"
    assert end["error"] == {"code": "timeout", "message": "the run took longer than its 0.2s limit"}
    monkeypatch.setenv("AGENTPACK_RUN_TIMEOUT_SECONDS", "0.1")
    end = run(terminal(app_with()))
    assert end["error"]["code"] == "timeout"
    assert cleaned == ["slow", "slow"]  # the handler was interrupted and cleaned up both times
    assert AgentApp(run_timeout_seconds=0).limits.run_timeout_seconds is None


def test_the_json_answer_of_a_timed_out_run_is_failed_too():
    app = AgentApp(run_timeout_seconds=0.1)

    @app.query(framework="text")
    async def handler(self, msgs, request, **_):
        await asyncio.Event().wait()
        yield "never"

    async def scenario() -> None:
        async with in_process(app) as client:
            response = await client.post("/process", json=user_body(stream=False))
            assert response.json()["status"] == "failed" and response.json()["error"]["code"] == "timeout"

    run(scenario())


@pytest.mark.parametrize("keywords", [{"stream_task_timeout": 0.2}, {"stream_task_timeout": 60, "run_timeout_seconds": 0.2}])
def test_a_background_run_past_stream_task_timeout_ends_failed_and_frees_its_session(keywords):
    app = AgentApp(enable_stream_task=True, **keywords)

    @app.query(framework="text")
    async def handler(self, msgs, request, **_):
        yield "started"
        if msgs[-1].text() == "hang":
            await asyncio.Event().wait()

    async def scenario() -> dict[str, Any]:
        async with app.router.lifespan_context(app), in_process(app) as client:
            submitted = await client.post("/process/task", json=user_body("hang", session_id="长任务-🕒"))
            task_id = submitted.json()["task_id"]
            deadline = asyncio.get_running_loop().time() + 30
            while (answer := (await client.get(f"/process/task/{task_id}")).json())["status"] != "finished":
                assert asyncio.get_running_loop().time() < deadline, answer
                await asyncio.sleep(0.02)
            again = await client.post("/process", json=user_body(session_id="长任务-🕒", stream=False))
            assert again.status_code == 200, "the timed-out run released its session"
            return answer

    result = run(scenario())["result"]
    assert result["status"] == "failed" and result["error"]["code"] == "timeout", result
    assert "0.2s" in result["error"]["message"], "the shorter of the two limits holds"


def test_stream_task_timeout_is_checked():
    with pytest.raises(ValueError, match="stream_task_timeout=-1"):
        AgentApp(stream_task_timeout=-1)


# -- input messages ------------------------------------------------------------------------------
def post_json(app: AgentApp, body: Any, path: str = "/process") -> httpx.Response:
    async def scenario() -> httpx.Response:
        async with in_process(app) as client:
            return await client.post(path, json=body)

    return run(scenario())


def test_too_many_input_messages_is_a_422_naming_input():
    app, ran = echo_app()
    message = {"role": "user", "content": "hi"}
    response = post_json(app, {"input": [message] * (MAX_INPUT_MESSAGES + 1)})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "input"] and error["type"] == "too_long"
    assert post_json(app, {"input": [message] * MAX_INPUT_MESSAGES}).status_code == 200
    assert len(ran) == 1


def test_a_message_with_too_many_items_or_characters_is_a_422_naming_it():
    app, ran = echo_app()
    items = [{"type": "text", "text": "a"}] * (MAX_CONTENT_ITEMS + 1)
    response = post_json(app, {"input": [{"role": "user", "content": "hi"}, {"role": "user", "content": items}]})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "input", 1]
    assert f"at most {MAX_CONTENT_ITEMS}" in error["msg"]
    response = post_json(app, {"input": [{"role": "user", "content": "y" * (MAX_MESSAGE_CHARS + 1)}]})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "input", 0] and f"at most {MAX_MESSAGE_CHARS}" in error["msg"]
    assert ran == []


def test_a_422_echoes_only_an_excerpt_of_the_bad_input():
    app, _ = echo_app()
    response = post_json(app, {"input": "z" * 2_000_000})
    assert response.status_code == 422
    assert len(response.content) < 2000  # was the whole 2 MB
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "input"]
    assert error["input"].startswith('"zzz') and error["input"].endswith("… (2000002 characters)")


def test_ag_ui_s_own_422_is_bounded_too():
    app, _ = echo_app()
    response = post_json(app, {"threadId": "t", "runId": "r", "messages": "m" * 2_000_000}, "/ag-ui")
    assert response.status_code == 422
    assert len(response.content) < 2000
    assert response.json()["detail"][0]["input"].endswith("… (2000002 characters)")


def test_a_422_lists_a_bounded_number_of_errors():
    app, _ = echo_app()
    response = post_json(app, {"input": [{"role": "nobody", "content": "x"}] * 500})
    assert response.status_code == 422
    assert len(response.json()["detail"]) == 20 and response.json()["more_errors"] == 480


# -- failed events -------------------------------------------------------------------------------
def failing_app(**kwargs: Any) -> AgentApp:
    app = AgentApp(**kwargs)

    @app.query(framework="text")
    async def handler(self, msgs, request, **_):
        yield "partial"
        raise RuntimeError("could not connect to postgres://admin:hunter2@db")

    return app


def test_a_failed_event_carries_a_safe_message_unless_debug_is_on(monkeypatch):
    def terminal(app: AgentApp) -> dict[str, Any]:
        return sse_events(post_json(app, user_body()).text)[-1]

    safe = terminal(failing_app())
    assert safe["status"] == "failed"
    assert safe["error"] == {"code": "AGENT_UNKNOWN_ERROR", "message": "Unknown agent error; the server's log has the details"}
    debug = terminal(failing_app(debug=True))
    assert debug["error"]["code"] == "AGENT_UNKNOWN_ERROR" and "hunter2" in debug["error"]["message"]
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")
    assert "RuntimeError: could not connect" in terminal(failing_app())["error"]["message"]


# -- strict input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("stream", "yes"), ("stream", 1), ("seed", False), ("seed", "7"), ("max_tokens", 10.5), ("temperature", "0.5"),
        ("n", True), ("n", 0), ("n", 6), ("n", 2.5),
    ],
)
def test_a_value_of_the_wrong_type_is_a_422_naming_the_field(field, value):
    app, ran = echo_app()
    response = post_json(app, user_body(**{field: value}))
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]
    assert ran == []


@pytest.mark.parametrize("field, value", [("delta", "yes"), ("delta", 1), ("index", "1"), ("index", True), ("sequence_number", 1.5)])
def test_a_content_item_of_the_wrong_type_is_a_422_naming_its_field(field, value):
    app, ran = echo_app()
    body = {"input": [{"role": "user", "content": [{"type": "text", "text": "hi", field: value}]}]}
    response = post_json(app, body)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "input", 0, "content", 0, "text", field]]
    assert ran == []


def test_what_upstream_clients_send_is_still_accepted():
    app, ran = echo_app()
    body = user_body(stream=True, seed=7, max_tokens=100, temperature=1, top_p=0.9, n=2, stop=["\n"], model="qwen")
    assert post_json(app, body).status_code == 200
    assert post_json(app, user_body(stream=False, temperature=None, seed=None)).json()["status"] == "completed"
    items = [{"type": "text", "text": "hi", "delta": None, "index": 0.0, "sequence_number": 3}]  # JSON has one number type
    assert post_json(app, {"input": [{"role": "user", "content": items}], "n": 2.0, "stream": False}).status_code == 200
    assert len(ran) == 3


def task_app(**kwargs: Any) -> AgentApp:
    app = AgentApp(**kwargs)

    @app.task("/jobs")
    async def job(payload):
        return payload

    return app


@pytest.mark.parametrize(
    "headers, content",
    [
        ({"content-type": "text/plain"}, b'{"a": 1}'),
        ({"content-type": "application/x-www-form-urlencoded"}, b"a=1"),
        ({"content-type": "multipart/form-data; boundary=x"}, b"--x\r\n\r\n--x--\r\n"),
        ({}, b'{"a": 1}'),
    ],
)
def test_a_task_submission_must_be_json(headers, content):
    app = task_app()

    async def scenario() -> None:
        async with in_process(app) as client:
            response = await client.post("/jobs", content=content, headers=headers)
            assert response.status_code == 415
            assert "Content-Type: application/json" in response.json()["detail"]
            assert len(app.task_queue) == 0  # nothing was submitted
            ok = await client.post("/jobs", json={"a": 1})
            assert ok.status_code == 200 and ok.json()["status"] == "submitted"
            vendor = await client.post("/jobs", content=b"{}", headers={"content-type": "application/vnd.x+json"})
            assert vendor.status_code == 200

    run(scenario())


# -- CORS ----------------------------------------------------------------------------------------
def cors_answer(app: AgentApp, origin: str) -> tuple[httpx.Response, httpx.Response]:
    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with in_process(app) as client:
            simple = await client.get("/health", headers={"origin": origin})
            preflight = await client.options(
                "/process",
                headers={"origin": origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type"},
            )
            return simple, preflight

    return run(scenario())


def test_cors_is_off_by_default():
    app, _ = echo_app()
    simple, preflight = cors_answer(app, "https://evil.example")
    assert "access-control-allow-origin" not in simple.headers
    assert "access-control-allow-origin" not in preflight.headers and preflight.status_code == 405


def test_cors_origins_opt_in_for_those_origins_only(monkeypatch):
    app, _ = echo_app(cors_origins=["https://app.example"])
    simple, preflight = cors_answer(app, "https://app.example")
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in simple.headers
    other, other_preflight = cors_answer(app, "https://evil.example")
    assert "access-control-allow-origin" not in other.headers and other_preflight.status_code == 400
    monkeypatch.setenv("AGENTPACK_CORS_ORIGINS", "https://a.example, https://b.example")
    from_env, _ = cors_answer(echo_app()[0], "https://b.example")
    assert from_env.headers["access-control-allow-origin"] == "https://b.example"


def test_a_wildcard_with_credentials_is_refused():
    with pytest.raises(ValueError, match="any web page"):
        AgentApp(cors_origins=["*"], cors_allow_credentials=True)
    with pytest.raises(ValueError, match="needs cors_origins"):
        AgentApp(cors_allow_credentials=True)
    app, _ = echo_app(cors_origins=["https://app.example"], cors_allow_credentials=True)
    simple, _ = cors_answer(app, "https://app.example")
    assert simple.headers["access-control-allow-credentials"] == "true"


# -- embedded task results -----------------------------------------------------------------------
def test_embedded_results_are_bounded_by_count_and_bytes_oldest_first():
    async def job(payload: Any) -> Any:
        return payload

    async def finished(queue: EmbeddedQueue, payloads: list[Any]) -> list[str]:
        ids = []
        for payload in payloads:
            task_id = await queue.submit("job", payload)
            while (info := await queue.info(task_id)) is not None and info.status != "finished":
                await asyncio.sleep(0.001)
            ids.append(task_id)
        return ids

    async def scenario() -> None:
        by_count = EmbeddedQueue(max_results=3)
        by_count.register(TaskSpec("job", job, "q"))
        ids = await finished(by_count, list(range(5)))
        assert [await by_count.info(i) is not None for i in ids] == [False, False, True, True, True]
        assert (await by_count.info(ids[-1])).result == 4

        by_bytes = EmbeddedQueue(max_result_bytes=25_000)
        by_bytes.register(TaskSpec("job", job, "q"))
        ids = await finished(by_bytes, ["x" * 10_000] * 4)
        assert [await by_bytes.info(i) is not None for i in ids] == [False, False, True, True]
        huge = await finished(by_bytes, ["y" * 50_000])  # larger than the bound: kept alone
        assert [await by_bytes.info(i) is not None for i in ids + huge] == [False, False, False, False, True]
        assert len(by_bytes) == 1

    run(scenario())


def test_the_app_passes_its_task_result_bounds_to_the_embedded_queue():
    queue = AgentApp(task_results_max=7, task_results_max_bytes=1234).task_queue
    assert isinstance(queue, EmbeddedQueue)
    assert (queue.max_results, queue.max_result_bytes) == (7, 1234)


# -- OpenAPI ---------------------------------------------------------------------------------------
def test_the_openapi_schema_says_what_the_routes_answer():
    app, _ = echo_app()
    task_app_schema = task_app().openapi()
    schema = app.openapi()
    process = schema["paths"]["/process"]["post"]["responses"]
    assert set(process) >= {"200", "400", "409", "413", "422", "503"}
    assert "text/event-stream" in process["200"]["content"]
    request = schema["components"]["schemas"]["AgentRequest"]["properties"]
    session_id = request["session_id"]["anyOf"][0]
    assert session_id["maxLength"] == 256 and session_id["pattern"]
    assert request["input"]["maxItems"] == MAX_INPUT_MESSAGES
    assert request["stream"]["type"] == "boolean"
    assert set(task_app_schema["paths"]["/jobs"]["post"]["responses"]) >= {"200", "413", "415", "503"}


# -- schemathesis against the example app ----------------------------------------------------------
#: The operations of examples/quickstart/app.py's schema (a test below checks this list is all of them).
QUICKSTART_OPERATIONS = [
    "GET /",
    "GET /health",
    "GET /readiness",
    "GET /liveness",
    "POST /process/stop",
    "POST /process",
    "GET /.well-known/agent-card.json",
    "GET /.well-known/agent.json",
    "POST /a2a",
    "POST /compatible-mode/v1/responses",
    "POST /ag-ui",
    "POST /echo",
]


@pytest.fixture(scope="module")
def quickstart_schema() -> Any:
    import schemathesis

    from agentpack.loader import load_app

    app, _ = load_app("examples/quickstart/app.py:app")
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.integration  # schemathesis: a contract run, not a unit of logic
def test_the_schemathesis_run_covers_every_operation(quickstart_schema):
    assert [result.ok().label for result in quickstart_schema.get_all_operations()] == QUICKSTART_OPERATIONS


#: Front-end routes that read their body themselves, so their schema has no request body yet
#: (the Responses API and AG-UI): for them only "no 5xx" is checked, not conformance.
UNDOCUMENTED_BODIES = {"POST /compatible-mode/v1/responses", "POST /ag-ui"}


#: The operations whose schema describes input (a body or parameters), so also get invalid requests.
TAKES_INPUT = ["POST /process/stop", "POST /process", "POST /echo"]


@pytest.mark.integration  # schemathesis: a contract run, not a unit of logic
@pytest.mark.parametrize(
    "label, mode", [(label, "positive") for label in QUICKSTART_OPERATIONS] + [(label, "negative") for label in TAKES_INPUT]
)
def test_the_example_app_answers_as_its_schema_says(quickstart_schema, label, mode):
    """Generated requests for one operation, valid (positive) or not (negative): never a 5xx,
    and every answer's status and content type are in the schema (schemathesis's default
    checks)."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    method, path = label.split(" ", 1)
    operation = quickstart_schema[path][method]
    checks = [not_a_server_error] if label in UNDOCUMENTED_BODIES else None

    @given(case=operation.as_strategy(GenerationMode(mode)))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def answers(case: Any) -> None:
        case.call_and_validate(checks=checks)

    answers()
