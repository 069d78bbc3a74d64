"""AG-UI at /ag-ui: every event checked with ag-ui-protocol's own types; the mapping, the refusals,
stops, and a client that leaves."""

from __future__ import annotations

import asyncio

import pytest
from ag_ui.core import Event
from pydantic import TypeAdapter

from tests.nodes.protocol_node import ENDINGS, make_app
from tests.support import in_process, sse_events, user_body, wait_until, http

EVENT = TypeAdapter(Event)


def run_input(text: str = "hi", thread: str = "thread-1", run: str = "run-1", **extra) -> dict:
    return {"threadId": thread, "runId": run, "messages": [{"id": "m1", "role": "user", "content": text}], **extra}


def agui_events(body: str) -> list[dict]:
    events = sse_events(body)
    for event in events:
        EVENT.validate_python(event)
    return events


def test_a_run_is_agui_events_with_reasoning_kept_apart_from_text_and_tool_calls_with_results():
    async def scenario() -> None:
        async with in_process(make_app()) as client:
            response = await client.post("/ag-ui", json=run_input())
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            events = agui_events(response.text)
        kinds = [e["type"] for e in events]
        assert kinds == [
            "RUN_STARTED",
            "REASONING_START",
            "REASONING_MESSAGE_START",
            "REASONING_MESSAGE_CONTENT",
            "REASONING_MESSAGE_END",
            "REASONING_END",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "RUN_FINISHED",
        ]
        assert (events[0]["threadId"], events[0]["runId"]) == ("thread-1", "run-1")
        assert events[3]["delta"] == "The user greets me; I add first."  # reasoning, never a TEXT_MESSAGE
        start, args, result = events[6], events[7], events[9]
        assert (start["toolCallId"], start["toolCallName"], args["delta"]) == ("call_1", "add", '{"a": 1, "b": 2}')
        assert (result["toolCallId"], result["content"], result["role"]) == ("call_1", "3", "tool")
        assert "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT") == "Hello there!"
        finished = events[-1]
        assert finished["outcome"] == {"type": "success"} and finished["usage"] == [{"inputTokens": 7, "outputTokens": 3, "totalTokens": 10}]

    asyncio.run(scenario())


def test_the_input_becomes_the_agent_api_request_thread_user_state_and_history_included():
    seen = {}

    async def scenario() -> None:
        app = make_app()

        @app.query(framework="text")
        async def handler(msgs, request):
            seen["request"] = request
            yield "ok"

        body = {
            "threadId": "线程-1",
            "runId": "r-9",
            "state": {"step": 2},
            "forwardedProps": {"user_id": "用户🙂"},
            "context": [{"description": "tz", "value": "UTC+8"}],
            "tools": [{"name": "lookup", "description": "find things", "parameters": {"type": "object"}}],
            "messages": [
                {"id": "s", "role": "developer", "content": "be kind"},
                {"id": "u", "role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image", "source": {"type": "url", "value": "https://x/a.png"}}]},
                {"id": "a", "role": "assistant", "content": "calling", "toolCalls": [{"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
                {"id": "t", "role": "tool", "toolCallId": "t1", "content": "found"},
            ],
        }
        async with in_process(app) as client:
            response = await client.post("/ag-ui", json=body)
            assert response.status_code == 200
            assert agui_events(response.text)[-1]["type"] == "RUN_FINISHED"
        request = seen["request"]
        assert (request.session_id, request.user_id, request.id) == ("线程-1", "用户🙂", "r-9")
        assert request.state == {"step": 2} and request.forwarded_props == {"user_id": "用户🙂"}
        assert [(m.role, m.type) for m in request.input] == [
            ("system", "message"),
            ("user", "message"),
            ("assistant", "message"),
            ("assistant", "function_call"),
            ("tool", "function_call_output"),
        ]
        assert request.input[1].content[1].image_url == "https://x/a.png"
        assert request.input[3].content[0].data == {"call_id": "t1", "name": "lookup", "arguments": "{}"}
        assert request.input[4].content[0].data == {"call_id": "t1", "output": "found"}
        assert request.tools[0].function.name == "lookup"

    asyncio.run(scenario())


def test_refusals_failures_and_stops_each_end_the_agui_way(monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    async def scenario() -> None:
        app = make_app()
        async with in_process(app) as client:
            invalid = await client.post("/ag-ui", json={"runId": "r"})
            assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "threadId"]
            assert (await client.post("/ag-ui", content=b"{", headers={"content-type": "application/json"})).status_code == 422

            hold = asyncio.create_task(client.post("/process", json=user_body("hang", session_id="busy")))
            await asyncio.to_thread(wait_until, lambda: len(app.runtime.guard) == 1, 10, "the first run never started")
            busy = await client.post("/ag-ui", json=run_input(thread="busy"))
            assert busy.status_code == 409
            assert [(e["type"], e["code"]) for e in agui_events(busy.text)] == [("RUN_ERROR", "SESSION_BUSY")]
            await client.post("/process/stop", json={"session_id": "busy"})
            await hold

            failed = agui_events((await client.post("/ag-ui", json=run_input("fail", thread="f"))).text)
            assert failed[-1]["type"] == "RUN_ERROR" and "failed on purpose" in failed[-1]["message"]
            assert failed[-2]["type"] == "TEXT_MESSAGE_END"  # what was open is closed first

            async def stop_soon() -> None:
                await asyncio.to_thread(wait_until, lambda: len(app.runtime.guard) == 1, 10, "the run never started")
                await client.post("/process/stop", json={"session_id": "s"})

            stopper = asyncio.create_task(stop_soon())
            stopped = agui_events((await client.post("/ag-ui", json=run_input("hang", thread="s"))).text)
            await stopper
            assert stopped[-1]["type"] == "RUN_FINISHED" and stopped[-1]["outcome"] == {"type": "cancelled"}
            assert stopped[-1]["result"] == {"reason": "stopped by a stop request"}
            assert stopped[-2] == {"type": "TEXT_MESSAGE_END", "messageId": stopped[-3]["messageId"]}
            assert ENDINGS["s"] == "cancelled"

    asyncio.run(scenario())


def test_a_client_that_drops_the_agui_stream_stops_the_run(serve):
    app = make_app()
    url = serve(app)
    with http.stream("POST", f"{url}/ag-ui", json=run_input("hang", thread="dropped"), timeout=30) as response:
        for line in response.iter_lines():
            if "TEXT_MESSAGE_CONTENT" in line:
                break
    wait_until(lambda: ENDINGS.get("dropped") == "cancelled", 10, "the run was not stopped when its client left")
    wait_until(lambda: len(app.runtime.guard) == 0, 10, "the session stayed held")


@pytest.mark.parametrize("config", [{"route_path": "/copilot"}, "model"])
def test_agui_config_moves_the_route(config):
    from agentpack import AGUIAdaptorConfig

    async def scenario() -> None:
        app = make_app(agui_config=AGUIAdaptorConfig(route_path="/copilot") if config == "model" else config)
        async with in_process(app) as client:
            assert (await client.post("/copilot", json=run_input())).status_code == 200
            assert (await client.post("/ag-ui", json=run_input(thread="t2"))).status_code == 404
            assert (await client.get("/")).json()["endpoints"]["ag_ui"] == "/copilot"

    asyncio.run(scenario())


@pytest.mark.parametrize("delta", ["plain", "中文🙂", 'quote " and \\ back', "\ud800"])
def test_the_text_content_fast_frame_is_byte_for_byte_the_generic_one(delta):
    from agentpack.frontends.agui.events import _frame, frames

    event = {"type": "TEXT_MESSAGE_CONTENT", "messageId": "msg_1", "delta": delta}
    assert frames([event]) == _frame(event)
