"""In-process tests of the pieces under AgentApp: the sync-or-async call helper, the one
streaming response, the Runtime object and the task job runner (raw ASGI, no sockets)."""

from __future__ import annotations

import asyncio
import functools
import json

import pytest

from agentpack import AgentApp
from agentpack._aio import call, is_async_callable, is_async_gen_callable
from agentpack.app.runtime import Runtime
from agentpack.interrupt.local import LocalInterruptBackend
from agentpack.run.stream import IteratorProducer, StreamResponse
from agentpack.tasks.base import TaskSpec, run_job
from agentpack.tasks.embedded import EmbeddedQueue
from tests.support import in_process


class AsyncCallable:
    async def __call__(self, value: int = 1) -> int:
        await asyncio.sleep(0)
        return value * 2


class AsyncGenCallable:
    async def __call__(self):
        yield 1
        yield 2


def sync_double(value: int = 1) -> int:
    return value * 2


async def async_double(value: int = 1) -> int:
    return value * 2


@pytest.mark.parametrize(
    "func, is_async",
    [(async_double, True), (functools.partial(async_double, 3), True), (AsyncCallable(), True), (sync_double, False), (functools.partial(sync_double, 3), False)],
)
def test_one_rule_for_what_is_async(func, is_async):
    assert is_async_callable(func) is is_async
    assert asyncio.run(call(func)) in (2, 6)


def test_async_generators_are_recognised_behind_call_objects():
    assert is_async_gen_callable(AsyncGenCallable()) and not is_async_callable(AsyncGenCallable())


def test_a_task_that_is_an_object_with_an_async_call_returns_its_value_not_a_coroutine():
    async def scenario() -> None:
        assert await run_job(TaskSpec("double", AsyncCallable(), "q"), None) == 2
        assert await run_job(TaskSpec("gen", AsyncGenCallable(), "q"), None) == [1, 2]
        assert await run_job(TaskSpec("sync", sync_double, "q"), None) == 2
        queue = EmbeddedQueue()
        queue.register(TaskSpec("double", AsyncCallable(), "q"))
        task_id = await queue.submit("double", None)
        while (info := await queue.info(task_id)).status not in ("finished", "error"):
            await asyncio.sleep(0.001)
        assert (info.status, info.result) == ("finished", 2)

    asyncio.run(scenario())


async def _drive(response: StreamResponse, leave_after: int = 0) -> list[dict]:
    """Run ``response`` over raw ASGI; the client leaves after ``leave_after`` body chunks (0: never)."""
    sent: list[dict] = []
    left = asyncio.Event()

    async def receive() -> dict:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if leave_after and len([m for m in sent if m["type"] == "http.response.body"]) >= leave_after:
            left.set()

    await response({"type": "http"}, receive, send)
    return sent


def test_an_endpoint_stream_sends_each_item_and_ends_a_failure_with_one_error_event():
    async def source():
        yield {"n": 1}
        yield "two"
        raise ValueError("broken generator")

    sent = asyncio.run(_drive(StreamResponse(IteratorProducer(source(), debug=True))))
    assert sent[0]["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    frames = [m["body"] for m in sent[1:] if m["body"]]
    assert [json.loads(f[6:]) for f in frames] == [
        {"n": 1},
        "two",
        {"error": "broken generator", "error_type": "ValueError", "message": "Error in streaming generator"},
    ]
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_a_client_leaving_an_endpoint_stream_closes_the_generator():
    closed = asyncio.Event()

    async def source():
        try:
            while True:
                yield "tick"
                await asyncio.sleep(0)
        finally:
            closed.set()

    async def scenario() -> None:
        await _drive(StreamResponse(IteratorProducer(source())), leave_after=3)
        assert closed.is_set()

    asyncio.run(scenario())


def _cancel_mid_stream(end_fails: bool) -> tuple["asyncio.Task[None]", list[dict]]:
    """Cancel a streaming response, as a server's shutdown does, once its first item is out."""

    async def source():
        yield "first"
        await asyncio.Event().wait()

    async def scenario() -> tuple["asyncio.Task[None]", list[dict]]:
        sent: list[dict] = []
        first = asyncio.Event()

        async def receive() -> dict:
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)
            if end_fails and message.get("more_body") is False:
                raise OSError("connection reset by peer")
            if b"first" in message.get("body", b""):
                first.set()

        task = asyncio.create_task(StreamResponse(IteratorProducer(source()))({"type": "http"}, receive, send))
        await first.wait()
        task.cancel()
        await asyncio.wait({task})
        return task, sent

    return asyncio.run(scenario())


def test_a_server_cancel_ends_an_endpoint_stream_cleanly():
    task, sent = _cancel_mid_stream(end_fails=False)
    # the response ended whole, so the request ends normally (a server would otherwise log a
    # traceback for every stream its shutdown ended)
    assert not task.cancelled() and task.result() is None
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_a_server_cancel_goes_on_when_the_stream_cannot_be_ended():
    task, sent = _cancel_mid_stream(end_fails=True)
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}, "the end was tried"
    assert task.cancelled(), "it could not be written, so the cancel goes on"


def test_the_runtime_starts_reports_readiness_and_closes():
    async def scenario() -> None:
        made = []

        def make_queue() -> EmbeddedQueue:
            made.append(1)
            return EmbeddedQueue()

        runtime = Runtime(LocalInterruptBackend(), 10, 600, make_queue)
        assert await runtime.readiness_problem() == "start-up has not finished"
        assert made == [] and not runtime.has_task_queue  # no queue unless something asks for one
        await runtime.start()
        runtime.mark_ready()
        assert runtime.started and await runtime.readiness_problem() is None

        async def database_down() -> str:
            return "the database is down"

        runtime.readiness_checks.append(database_down)
        assert await runtime.readiness_problem() == "the database is down"
        runtime.readiness_checks.remove(database_down)
        async with runtime.session_guard() as guard:
            assert guard is runtime.guard  # the web process's own guard
        await runtime.aclose()
        assert not runtime.started and await runtime.readiness_problem() == "the app is shutting down"
        async with runtime.session_guard() as guard:
            assert guard is not runtime.guard  # a worker's guard on its own backend

    asyncio.run(scenario())


def test_session_busy_and_backend_down_are_answered_by_the_app_handlers():
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "x"
        await asyncio.Event().wait()

    async def scenario() -> None:
        async with in_process(app) as client:
            first = asyncio.create_task(client.post("/process", json={"input": [], "session_id": "会话", "user_id": "u"}))
            while len(app.runtime.guard) == 0:
                await asyncio.sleep(0.001)
            busy = await client.post("/process", json={"input": [], "session_id": "会话", "user_id": "u"})
            assert busy.status_code == 409
            assert busy.json() == {"detail": "session '会话' of user 'u' is already running; stop it or wait for it to finish", "session_id": "会话"}
            await app.stop_chat("u", "会话")
            await first

    asyncio.run(scenario())


def _limited_app(cleanups: list[str], pause: float) -> AgentApp:
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        try:
            yield "first"
            await asyncio.sleep(pause)
            yield "second"
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleanups.append("cancelled")
            raise

    return app


@pytest.mark.parametrize(
    "limits, reason",
    [
        ({"total": 0.3}, "the run took longer than its 0.3s limit"),
        ({"idle": 0.2}, "the run sent nothing for 0.2s (its limit between two events)"),
    ],
)
def test_a_run_over_a_time_limit_ends_failed_with_code_timeout_and_its_handler_is_cancelled(limits, reason):
    from agentpack.protocol.schemas import AgentRequest
    from agentpack.run.agent_run import RunLimits
    from agentpack.run.iterate import iterate_run

    cleanups: list[str] = []
    app = _limited_app(cleanups, pause=0.05)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            request = AgentRequest(input=[{"role": "user", "content": "hi"}], session_id="limited")
            events = [event async for event in iterate_run(app.runs, request, RunLimits(**limits))]
            assert len(app.runtime.guard) == 0
            assert await app.get_chat_state("limited", "limited") == "ERROR"
        terminal = events[-1]
        assert (terminal["status"], terminal["error"]) == ("failed", {"code": "timeout", "message": reason})
        assert [e["text"] for e in events if e["object"] == "content" and e.get("delta")] == ["first", "second"]
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert cleanups == ["cancelled"]

    asyncio.run(scenario())


def test_a_reader_that_stops_iterating_a_run_cancels_it_and_frees_the_session():
    from agentpack.protocol.schemas import AgentRequest
    from agentpack.run.iterate import iterate_run

    cleanups: list[str] = []
    app = _limited_app(cleanups, pause=10)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            request = AgentRequest(input=[{"role": "user", "content": "hi"}], session_id="reader")
            events = iterate_run(app.runs, request)
            async for event in events:
                if event["object"] == "content":
                    break
            await events.aclose()
            assert len(app.runtime.guard) == 0
        assert cleanups == ["cancelled"]

    asyncio.run(scenario())


def _raw_process(app: AgentApp, session_id: str) -> tuple[dict, object]:
    """The scope and ``receive`` of one ``POST /process`` as a server hands it to the app, for
    tests that drive ``send`` themselves; ``receive`` then waits as for a client still there."""
    body = json.dumps({"input": [], "session_id": session_id}).encode()
    given = False

    async def receive() -> dict:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()

    scope = {"type": "http", "method": "POST", "path": "/process", "raw_path": b"/process", "query_string": b"", "headers": [(b"content-type", b"application/json")], "app": app, "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": ""}
    return scope, receive


def _app_noting_runs(ran: list[str]) -> AgentApp:
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        ran.append(request.session_id)
        yield "Hello"

    return app


def test_a_client_gone_before_the_first_event_leaves_the_run_unstarted_and_its_session_free():
    ran: list[str] = []
    app = _app_noting_runs(ran)

    async def scenario() -> None:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body":
                raise OSError("the client is gone")
            sent.append(message)

        scope, receive = _raw_process(app, "走了-👋")
        async with app.router.lifespan_context(app):
            await asyncio.wait_for(app(scope, receive, send), 10)
            assert await app.get_chat_state("走了-👋", "走了-👋") != "RUNNING" and len(app.runtime.guard) == 0
        assert [m["type"] for m in sent] == ["http.response.start"] and ran == []

    asyncio.run(scenario())


def test_a_server_cancel_while_the_first_events_are_written_still_ends_the_stream_with_canceled():
    ran: list[str] = []
    app = _app_noting_runs(ran)

    async def scenario() -> None:
        sent: list[dict] = []
        blocked, unblock = asyncio.Event(), asyncio.Event()

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body" and not blocked.is_set():
                blocked.set()
                await unblock.wait()  # a socket that does not drain: cancelled here
            sent.append(message)

        scope, receive = _raw_process(app, "开始-⏳")
        async with app.router.lifespan_context(app):
            request = asyncio.create_task(app(scope, receive, send))
            await asyncio.wait_for(blocked.wait(), 10)
            request.cancel()  # the server's grace ran out
            await asyncio.wait_for(request, 10)
            assert len(app.runtime.guard) == 0
        events = [json.loads(m["body"][6:]) for m in sent if m.get("body", b"").startswith(b"data: ")]
        assert events[-1]["status"] == "canceled" and events[-1]["error"]["message"] == "the server is shutting down"
        assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False} and ran == []

    asyncio.run(scenario())


def test_the_shutdown_returns_only_once_the_streams_it_ended_have_written_their_last_word():
    """As uvicorn does past its grace: cancel the request, run the lifespan's shutdown, and
    the process exits the moment that returns (uvicorn re-raises its signal there).  The run
    releases its session before its terminal event, so the shutdown must also wait for the
    stream itself (here a slow reader's): what the client has by then is the whole stream."""
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "Hello"
        await asyncio.Event().wait()

    async def scenario() -> None:
        sent: list[dict] = []
        delta = asyncio.Event()

        async def send(message: dict) -> None:
            if delta.is_set():
                await asyncio.sleep(0.05)  # a slow reader: uvicorn's send waits for the socket to drain
            sent.append(message)
            if b'"delta":true' in message.get("body", b""):
                delta.set()

        scope, receive = _raw_process(app, "关-🛑")
        async with app.router.lifespan_context(app):
            request = asyncio.create_task(app(scope, receive, send))
            await asyncio.wait_for(delta.wait(), 10)
            request.cancel()  # the server's grace ran out
        # the shutdown has returned: nothing more may run before the process is gone
        body = b"".join(message.get("body", b"") for message in sent)
        assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
        assert json.loads(body.decode().split("data: ")[-1])["status"] == "canceled"
        await request

    asyncio.run(scenario())
