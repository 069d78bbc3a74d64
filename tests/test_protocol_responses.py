"""The OpenAI Responses API at /compatible-mode/v1/responses: in-process for the mapping and the
errors, over real sockets for what the official ``openai`` client sees (incremental streaming,
``output_text``)."""

from __future__ import annotations

import asyncio
import time
import typing

import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.responses import Response, ResponseStreamEvent

from tests.nodes.protocol_node import ENDINGS, make_app
from tests.support import in_process, sse_events, user_body, wait_until, http

PATH = "/compatible-mode/v1/responses"
#: the openai package's model of each stream event, by its type
MODELS = {m.model_fields["type"].annotation.__args__[0]: m for m in typing.get_args(typing.get_args(ResponseStreamEvent)[0])}


def stream_of(body: str) -> list[dict]:
    """Every event, checked against the openai package's own model of its type, and the numbering."""
    events = sse_events(body)
    for event in events:
        MODELS[event["type"]].model_validate(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_a_streamed_run_is_openais_event_sequence_with_reasoning_tool_calls_results_and_usage():
    async def scenario() -> None:
        async with in_process(make_app()) as client:
            response = await client.post(PATH, json={"model": "probe", "input": "hi", "stream": True})
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-agentpack-session-id"]
            lines = [line for line in response.text.splitlines() if line]
            assert lines[0] == "event: response.created"  # every frame names its type, as OpenAI's do
            events = stream_of(response.text)
            kinds = [e["type"] for e in events]
            assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
            added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
            assert added == ["reasoning", "function_call", "function_call_output", "message"]
            assert [e["delta"] for e in events if e["type"] == "response.reasoning_text.delta"] == ["The user greets me; I add first."]
            arguments = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
            assert arguments == '{"a": 1, "b": 2}'
            assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["Hello", " there", "!"]
            final = Response.model_validate(events[-1]["response"])
            assert final.output_text == "Hello there!" and final.status == "completed"
            call, result = final.output[1], final.output[2]
            assert (call.type, call.name, call.call_id, call.arguments) == ("function_call", "add", "call_1", '{"a": 1, "b": 2}')
            assert (result.type, result.call_id, result.output) == ("function_call_output", "call_1", "3")
            assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (7, 3, 10)
            assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1, 2, 3]

    asyncio.run(scenario())


def test_without_stream_the_body_is_a_real_response_and_carries_upstreams_wrapper_key_too():
    async def scenario() -> None:
        app = make_app()
        async with in_process(app) as http:
            client = AsyncOpenAI(base_url="http://agent.test/compatible-mode/v1", api_key="unused", http_client=http)
            answer = await client.responses.create(model="probe", input="hi")
            assert answer.output_text == "Hello there!"
            assert answer.status == "completed" and answer.id.startswith("resp_")
            raw = (await http.post(PATH, json={"model": "probe", "input": "hi"})).json()
            assert raw["response"]["output"][-1]["content"][0]["text"] == "Hello there!"  # what AgentScope Runtime's clients read
            assert raw["object"] == "response"

    asyncio.run(scenario())


def test_previous_response_id_and_conversation_continue_the_same_session_on_any_instance():
    async def scenario() -> None:
        first_app, second_app = make_app(), make_app()
        async with in_process(first_app) as one, in_process(second_app) as two:
            c1 = AsyncOpenAI(base_url="http://agent.test/compatible-mode/v1", api_key="x", http_client=one)
            c2 = AsyncOpenAI(base_url="http://agent.test/compatible-mode/v1", api_key="x", http_client=two)
            first = await c1.responses.create(model="probe", input="session", user="张三")
            session, user = first.output_text.split("|")
            assert user == "张三"
            follow_up = await c2.responses.create(model="probe", input="session", previous_response_id=first.id)
            assert follow_up.output_text == f"{session}|张三"  # the id carries the session: no shared store needed
            named = await c1.responses.create(model="probe", input="session", conversation="会话-🙂")
            assert named.output_text == "会话-🙂|会话-🙂"
            assert named.conversation is not None and named.conversation.id == "会话-🙂"

    asyncio.run(scenario())


def test_input_items_become_the_agent_api_request_developer_instructions_calls_and_results_included():
    seen = {}

    async def scenario() -> None:
        app = make_app()

        @app.query(framework="text")
        async def handler(msgs, request):
            seen["input"] = [(m.role, m.type, [c.model_dump(exclude_none=True) for c in m.content]) for m in request.input]
            seen["request"] = request
            yield "ok"

        async with in_process(app) as client:
            body = {
                "model": "probe",
                "instructions": "Be brief.",
                "input": [
                    {"role": "developer", "content": "Use tools."},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "看图"}, {"type": "input_image", "image_url": "https://x/cat.png"}]},
                    {"type": "function_call", "call_id": "c9", "name": "lookup", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c9", "output": "found"},
                ],
                "max_output_tokens": 64,
                "temperature": 0.2,
                "tools": [{"type": "function", "name": "lookup", "description": "find", "parameters": {"type": "object"}}],
            }
            answer = await client.post(PATH, json=body)
            assert answer.status_code == 200, answer.text
        roles = [(role, kind) for role, kind, _ in seen["input"]]
        assert roles == [("system", "message"), ("system", "message"), ("user", "message"), ("assistant", "function_call"), ("tool", "function_call_output")]
        assert seen["input"][0][2][0]["text"] == "Be brief."
        image = seen["input"][2][2][1]
        assert (image["type"], image["image_url"]) == ("image", "https://x/cat.png")
        assert seen["input"][3][2][0]["data"] == {"call_id": "c9", "name": "lookup", "arguments": "{}"}
        assert seen["input"][4][2][0]["data"] == {"call_id": "c9", "output": "found"}
        request = seen["request"]
        assert (request.max_tokens, request.temperature) == (64, 0.2)
        assert request.tools[0].function.name == "lookup"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "body, status, param, needle",
    [
        (b"{not json", 400, None, "could not parse the JSON body"),
        (b'{"model": "m"}', 400, "input", "input"),
        (b'{"input": "hi", "stream": "yes"}', 400, "stream", "stream"),
        (b'{"input": [{"type": "item_reference", "id": "x"}]}', 400, "input.0.type", "not supported"),
        (b'{"input": "hi", "conversation": "a", "previous_response_id": "resp_x.YQ"}', 400, "conversation", "either"),
        (b'{"input": "hi", "previous_response_id": "resp_from_somewhere_else"}', 400, "previous_response_id", "not issued by this agent"),
        (b'{"input": "hi", "conversation": "bad\\u0000id"}', 400, "session_id", "control character"),
        (b'{"input": "\\ud800"}', 400, None, "surrogate"),
    ],
)
def test_requests_that_cannot_run_get_openais_error_shape(body, status, param, needle):
    async def scenario() -> None:
        async with in_process(make_app()) as client:
            answer = await client.post(PATH, content=body, headers={"content-type": "application/json"})
            assert answer.status_code == status, answer.text
            error = answer.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
            assert needle in error["message"]
            if param is not None:
                assert error["param"] == param

    asyncio.run(scenario())


def test_a_busy_conversation_is_a_409_and_failed_or_stopped_runs_end_failed_or_incomplete(monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    async def scenario() -> None:
        app = make_app()
        async with in_process(app) as client:
            hold = asyncio.create_task(client.post("/process", json=user_body("hang", session_id="c1")))
            await asyncio.to_thread(wait_until, lambda: len(app.runtime.guard) == 1, 10, "the first run never started")
            busy = await client.post(PATH, json={"input": "hi", "conversation": "c1"})
            assert busy.status_code == 409 and busy.json()["error"]["code"] == "conversation_locked"
            assert (await client.post("/process/stop", json={"session_id": "c1"})).json()["stopped"] is True
            await hold

            failed = stream_of((await client.post(PATH, json={"input": "fail", "stream": True})).text)
            assert failed[-1]["type"] == "response.failed"
            assert "failed on purpose" in failed[-1]["response"]["error"]["message"]
            body = (await client.post(PATH, json={"input": "fail"})).json()
            assert body["status"] == "failed" and body["error"]["code"] == "server_error"

            async def stop_soon() -> None:
                await asyncio.to_thread(wait_until, lambda: len(app.runtime.guard) == 1, 10, "the run never started")
                await client.post("/process/stop", json={"session_id": "c2"})

            stopper = asyncio.create_task(stop_soon())
            stopped = stream_of((await client.post(PATH, json={"input": "hang", "conversation": "c2", "stream": True})).text)
            await stopper
            assert stopped[-1]["type"] == "response.incomplete"
            assert stopped[-1]["response"]["incomplete_details"] == {"reason": None, "message": "stopped by a stop request"}
            message = [e for e in stopped if e["type"] == "response.output_item.done"][-1]["item"]
            assert message["status"] == "incomplete" and message["content"][0]["text"] == "Hello"
            assert ENDINGS["c2"] == "cancelled"

    asyncio.run(scenario())


def test_the_official_client_receives_tokens_as_they_are_produced(serve):
    url = serve(make_app())
    client = OpenAI(base_url=f"{url}/compatible-mode/v1", api_key="unused")
    arrivals = []
    with client.responses.create(model="probe", input="slow", stream=True) as events:
        for event in events:
            if event.type == "response.output_text.delta":
                arrivals.append((event.delta, time.monotonic()))
            final = event
    assert [d for d, _ in arrivals] == ["Hello", " there", "!"]
    gaps = [b - a for (_, a), (_, b) in zip(arrivals, arrivals[1:])]
    assert all(gap > 0.15 for gap in gaps), gaps  # each delta arrived when produced, not all at the end
    assert final.type == "response.completed" and final.response.output_text == "Hello there!"
    assert client.responses.create(model="probe", input="hi").output_text == "Hello there!"


def test_a_client_that_drops_a_responses_stream_stops_the_run(serve):
    app = make_app()
    url = serve(app)
    with http.stream("POST", f"{url}{PATH}", json={"input": "hang", "conversation": "gone", "stream": True}, timeout=30) as response:
        for line in response.iter_lines():
            if '"response.output_text.delta"' in line:
                break
    wait_until(lambda: ENDINGS.get("gone") == "cancelled", 10, "the run was not stopped when its client left")
    wait_until(lambda: len(app.runtime.guard) == 0, 10, "the session stayed held")


@pytest.mark.parametrize("delta", ["plain", "中文🙂", 'quote " and \\ back', "\u2028", "\ud800"])
def test_the_text_delta_fast_frame_is_byte_for_byte_the_generic_one(delta):
    from agentpack.frontends.responses.events import _frame, frames

    event = {"type": "response.output_text.delta", "sequence_number": 12, "item_id": "msg_1", "output_index": 0, "content_index": 2, "delta": delta, "logprobs": []}
    assert frames([event]) == _frame(event)
