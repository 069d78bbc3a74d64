"""POST /process over real HTTP: event order and shapes, flushing, failures, validation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import Depends, Header

from agentpack import AgentApp, AgentRequest
from tests.support import check_protocol, read_events, text_of, user_body, wait_until, http


def text_app(chunks=("Hello", " ", "World!")) -> AgentApp:
    app = AgentApp(app_name="t")

    @app.query(framework="text")
    async def handler(self, msgs, request, **kwargs):
        for chunk in chunks:
            yield chunk

    return app


def test_text_stream_has_the_protocol_shape(serve):
    url = serve(text_app())
    before = int(time.time())
    events = read_events(f"{url}/process", user_body(session_id="s1", user_id="u1"))
    after = int(time.time())
    terminal = check_protocol(events)
    kinds = [(e["object"], e["status"]) for e in events]
    assert kinds == [
        ("response", "created"),
        ("response", "in_progress"),
        ("message", "in_progress"),
        ("content", "in_progress"),
        ("content", "in_progress"),
        ("content", "in_progress"),
        ("content", "completed"),
        ("message", "completed"),
        ("response", "completed"),
    ]
    assert text_of(events) == "Hello World!"
    assert events[6]["text"] == "Hello World!" and events[6]["delta"] is None
    assert events[7]["content"][0]["text"] == "Hello World!"
    assert terminal["output"] == [events[7]]
    assert terminal["session_id"] == "s1"
    assert before <= terminal["created_at"] <= terminal["completed_at"] <= after


def test_created_at_is_the_time_of_each_response(serve):
    url = serve(text_app())
    first = read_events(f"{url}/process", user_body())[0]
    # wait (with a deadline) until the clock has moved to the next second, then ask again
    wait_until(lambda: int(time.time()) > first["created_at"], 3, "the clock did not move")
    second = read_events(f"{url}/process", user_body())[0]
    assert second["created_at"] > first["created_at"]
    assert second["id"] != first["id"]


def test_requests_without_ids_never_collide(serve):
    gate = threading.Event()
    app = AgentApp()

    @app.query(framework="text")
    async def handler(self, msgs, request, **kwargs):
        yield "waiting"
        await asyncio.to_thread(gate.wait, 20)
        yield " done"

    url = serve(app)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(read_events, f"{url}/process", user_body()) for _ in range(4)]
        wait_until(lambda: http.get(f"{url}/health").json()["running_sessions"] == 4, 20, "four anonymous runs should run at once")
        gate.set()
        results = [f.result(timeout=30) for f in futures]
    sessions = {events[0]["session_id"] for events in results}
    assert len(sessions) == 4 and None not in sessions
    assert all(check_protocol(events)["status"] == "completed" for events in results)


def test_first_delta_is_flushed_before_the_handler_finishes(serve):
    gate = threading.Event()
    finished = threading.Event()
    app = AgentApp()

    @app.query(framework="text")
    async def handler(self, msgs, request, **kwargs):
        yield "first"
        await asyncio.to_thread(gate.wait, 20)
        yield "second"
        finished.set()

    url = serve(app)
    seen = []
    with http.stream("POST", f"{url}/process", json=user_body(), timeout=30) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            seen.append(event)
            if event["object"] == "content" and event.get("text") == "first":
                assert not finished.is_set()
                gate.set()
    assert finished.is_set()
    assert text_of(seen) == "firstsecond"


def test_sync_generator_handler_streams_without_blocking(serve):
    gate = threading.Event()
    app = AgentApp()

    @app.query(framework="text")
    def handler(msgs, request):
        yield "sync-1 "
        gate.wait(20)
        yield "sync-2"

    url = serve(app)
    with http.stream("POST", f"{url}/process", json=user_body(), timeout=30) as response:
        for line in response.iter_lines():
            if "sync-1" in line:
                # the event loop is free while the generator blocks in its thread
                assert http.get(f"{url}/health", timeout=5).status_code == 200
                gate.set()
    assert gate.is_set()


@pytest.mark.parametrize(
    "handler_source",
    [
        "async def h(self, msgs, request, **kwargs):\n    return 'plain'",
        "def h(msgs):\n    return 'plain'",
        "async def h(request):\n    yield 'pla'\n    yield 'in'",
        "def h():\n    return iter(['pla', 'in'])",
    ],
)
def test_handler_shapes(serve, handler_source):
    namespace: dict = {}
    exec(handler_source, namespace)
    app = AgentApp()
    app.query(framework="text")(namespace["h"])
    events = read_events(f"{serve(app)}/process", user_body())
    assert check_protocol(events)["status"] == "completed"
    assert text_of(events) == "plain"


def test_handler_receives_request_and_input(serve):
    app = AgentApp()

    @app.query(framework="text")
    async def handler(self, msgs, request: AgentRequest, **kwargs):
        assert self is app
        yield f"{request.user_id}/{request.session_id}/{msgs[0].text()}/{request.model}/{request.custom_key}"

    events = read_events(
        f"{serve(app)}/process",
        user_body("question", user_id="u", session_id="s", model="m", custom_key="kept"),
    )
    assert text_of(events) == "u/s/question/m/kept"


def test_string_content_and_session_headers(serve):
    app = text_app()
    url = serve(app)
    with http.stream("POST", f"{url}/process", json={"input": [{"role": "user", "content": "hi"}]}) as response:
        assert response.status_code == 200
        session = response.headers["x-agentpack-session-id"]
        assert session and response.headers["x-agentpack-user-id"] == session
        response.read()


def test_failure_mid_stream_is_one_failed_terminal_event(serve):
    app = AgentApp()

    @app.query(framework="text")
    async def handler(self, msgs, request, **kwargs):
        yield "partial"
        raise ValueError("boom")

    events = read_events(f"{serve(app)}/process", user_body())
    terminal = check_protocol(events)
    assert terminal["status"] == "failed"
    # the exception's text stays in the server's log (debug=True sends it: tests/test_limits_and_input.py)
    assert terminal["error"] == {"code": "AGENT_UNKNOWN_ERROR", "message": "Unknown agent error; the server's log has the details"}
    assert terminal["output"] == []
    assert text_of(events) == "partial"


def test_exception_with_its_own_code(serve):
    class QuotaExceeded(Exception):
        code = "QUOTA_EXCEEDED"

        def __init__(self):
            super().__init__("monthly quota used up")
            self.message = "monthly quota used up"

    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs):
        raise QuotaExceeded()
        yield  # pragma: no cover

    terminal = check_protocol(read_events(f"{serve(app)}/process", user_body()))
    assert terminal["error"] == {"code": "QUOTA_EXCEEDED", "message": "monthly quota used up"}


def test_wrong_yield_type_fails_with_a_hint(serve):
    app = AgentApp(debug=True)  # the exception's text reaches the client only with debug on

    @app.query(framework="text")
    async def handler(msgs):
        yield ("not", True)

    terminal = check_protocol(read_events(f"{serve(app)}/process", user_body()))
    assert terminal["status"] == "failed"
    assert "framework='agentscope'" in terminal["error"]["message"]


@pytest.mark.parametrize(
    "body, loc",
    [
        ({"session_id": "x"}, ["body", "input"]),
        ({"input": [{"role": "robot", "content": []}]}, ["body", "input", 0, "role"]),
        ({"input": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}, ["body", "input", 0, "content", 0, "text", "text"]),
        ({"input": [], "n": 9}, ["body", "n"]),
    ],
)
def test_invalid_body_is_a_422_with_field_paths(serve, body, loc):
    response = http.post(f"{serve(text_app())}/process", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert loc in [error["loc"] for error in response.json()["detail"]]


def test_non_json_body_is_a_422(serve):
    response = http.post(f"{serve(text_app())}/process", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_stream_false_returns_the_final_response(serve):
    url = serve(text_app())
    response = http.post(f"{url}/process", json=user_body(stream=False, session_id="s"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    final = response.json()
    assert final["object"] == "response" and final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "Hello World!"
    assert final["session_id"] == "s"


def test_stream_false_failure(serve):
    app = AgentApp(debug=True)  # the exception's text reaches the client only with debug on

    @app.query(framework="text")
    def handler(msgs):
        raise RuntimeError("nope")

    final = http.post(f"{serve(app)}/process", json=user_body(stream=False)).json()
    assert final["status"] == "failed" and "RuntimeError: nope" in final["error"]["message"]


def test_depends_parameters_reach_the_handler(serve):
    app = AgentApp()

    def tenant(x_tenant: str = Header(...)) -> str:
        return x_tenant.upper()

    @app.query(framework="text")
    async def handler(self, msgs, request, tenant_name: str = Depends(tenant), **kwargs):
        yield f"tenant={tenant_name}"

    url = serve(app)
    events = []
    with http.stream("POST", f"{url}/process", json=user_body(), headers={"X-Tenant": "acme"}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert text_of(events) == "tenant=ACME"
    assert http.post(f"{url}/process", json=user_body()).status_code == 422  # header missing


def test_second_run_of_a_running_session_gets_409(serve):
    gate = threading.Event()
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs):
        yield "busy"
        await asyncio.to_thread(gate.wait, 20)

    url = serve(app)
    body = user_body(session_id="same", user_id="u")
    with http.stream("POST", f"{url}/process", json=body, timeout=30) as first:
        for line in first.iter_lines():
            if "busy" in line and not gate.is_set():
                second = http.post(f"{url}/process", json=body)
                assert second.status_code == 409
                assert "already running" in second.json()["detail"]
                gate.set()
    # once the first run ended, the session is free again
    assert check_protocol(read_events(f"{url}/process", body))["status"] == "completed"


def test_query_decorated_twice_replaces_the_handler(serve):
    app = text_app(("old",))

    @app.query(framework="text")
    async def new_handler(msgs):
        yield "new"

    url = serve(app)
    assert text_of(read_events(f"{url}/process", user_body())) == "new"
    assert sum(1 for r in app.routes if getattr(r, "path", None) == "/process") == 1


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
def test_a_handler_raising_systemexit_or_keyboardinterrupt_fails_its_run_and_nothing_else(serve, raised):
    import threading

    from tests.support import BackgroundStream

    release = threading.Event()
    app = AgentApp(debug=True)  # the failed event names the exception only with debug on

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "working "
        if request.session_id == "bad":
            raise raised("a handler bug")
        while not release.is_set():
            await asyncio.sleep(0.01)
        yield "done"

    url = serve(app)
    other = BackgroundStream(url, user_body(session_id="good")).begin()
    events = read_events(f"{url}/process", user_body(session_id="bad"))
    terminal = check_protocol(events)
    assert terminal["status"] == "failed" and raised.__name__ in terminal["error"]["message"]
    release.set()
    good = other.result()
    assert check_protocol(good)["status"] == "completed"  # the other stream was not cut
    assert http.get(f"{url}/health").status_code == 200  # and the server still serves


def test_line_separators_in_events_are_escaped_so_line_splitting_clients_read_them_whole(serve):
    from agentpack.client import stream_events

    text = "one\u2028two\u2029three\x85four"
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        yield text

    url = serve(app)
    events = read_events(f"{url}/process", user_body())  # httpx's iter_lines: splitlines() semantics
    assert "".join(e["text"] for e in events if e["object"] == "content" and e.get("delta")) == text
    with http.stream("POST", f"{url}/process", json=user_body(), timeout=30) as response:
        raw = response.read().decode()
    assert "\u2028" not in raw and "\\u2028" in raw and "\\u0085" in raw
    ours = list(stream_events(f"{url}/process", user_body()))
    assert check_protocol(ours)["output"][0]["content"][0]["text"] == text
