"""framework="agno": a real agno agent (agno's ``OpenAIChat`` model pointed at the OpenAI chat
stand-in) streamed through a real server, the request's history handed to agno, and a run whose
tool is running stopped from another instance."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Iterator

import pytest

from agentpack import AgentApp
from agentpack.frameworks import get_framework
from agentpack.frameworks.agno import AgnoFramework
from agentpack.protocol.schemas import AgentRequest
from tests.nodes.cluster import Node
from tests.standins.openai_chat import ChatRequest, OpenAIChatStandIn, Reply, ToolCall, tool_then_answer
from tests.support import BackgroundStream, check_protocol, read_events, text_of, user_body, wait_until, http

MODEL = "stand-in-model"


def agno_agent(stand_in: OpenAIChatStandIn, tools: list) -> Any:
    from agno.agent import Agent
    from agno.models.openai import OpenAIChat

    return Agent(model=OpenAIChat(id=MODEL, base_url=stand_in.base_url, api_key="test-key"), tools=tools, telemetry=False)


async def get_weather(city: str) -> str:
    """The weather of a city."""
    return f"sunny in {city}"


def agno_app(stand_in: OpenAIChatStandIn, tools: list | None = None) -> AgentApp:
    app = AgentApp()

    @app.query(framework="agno")
    async def handler(self, msgs, request=None, **kwargs):
        agent = agno_agent(stand_in, [get_weather] if tools is None else tools)
        async for event in agent.arun(input=msgs, stream=True, stream_events=True):
            yield event

    return app


def react_script(request: ChatRequest) -> Reply:
    """Think and call get_weather; once its result is in, answer."""
    if request.last["role"] == "tool":
        return Reply(text="It is sunny in Paris.", usage={"prompt_tokens": 23, "completion_tokens": 5})
    return Reply(reasoning="I need the weather.", tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_weather_1")],
                 usage={"prompt_tokens": 11, "completion_tokens": 7})


def messages_of(events: list[dict]) -> list[tuple[str, str, str]]:
    return [(e["status"], e["type"], e["role"]) for e in events if e["object"] == "message"]


def deltas(events: list[dict], msg_id: str) -> list[Any]:
    return [e.get("text", e.get("data")) for e in events if e["object"] == "content" and e["msg_id"] == msg_id and e["delta"]]


def test_a_react_agent_streams_reasoning_tool_call_result_and_answer(serve):
    with OpenAIChatStandIn(react_script) as stand_in:
        events = read_events(f"{serve(agno_app(stand_in))}/process", user_body("Weather in Paris?"))
    terminal = check_protocol(events)
    assert terminal["status"] == "completed"
    assert messages_of(events) == [
        ("in_progress", "reasoning", "assistant"), ("completed", "reasoning", "assistant"),
        ("in_progress", "plugin_call", "assistant"), ("completed", "plugin_call", "assistant"),
        ("in_progress", "plugin_call_output", "tool"), ("completed", "plugin_call_output", "tool"),
        ("in_progress", "message", "assistant"), ("completed", "message", "assistant"),
    ]
    reasoning, call, result, answer = terminal["output"]
    assert deltas(events, reasoning["id"]) == ["I", " need", " the", " weather."]
    assert reasoning["content"][0]["text"] == "I need the weather."
    # agno reports a tool call once its arguments are whole: one data delta
    (call_data,) = deltas(events, call["id"])
    assert call_data == call["content"][0]["data"]
    assert (call_data["call_id"], call_data["name"], json.loads(call_data["arguments"])) == ("call_weather_1", "get_weather", {"city": "Paris"})
    assert result["content"][0]["data"] == {"call_id": "call_weather_1", "name": "get_weather", "output": "sunny in Paris"}
    assert deltas(events, answer["id"]) == ["It", " is", " sunny", " in", " Paris."]  # each piece as it came
    assert answer["content"][0]["text"] == "It is sunny in Paris."
    # usage: the run's so far -- the first model call's on its messages, both calls' on the answer
    first = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
    assert reasoning["usage"] == first and call["usage"] == first and result["usage"] is None
    assert answer["usage"] == terminal["usage"] == {"input_tokens": 34, "output_tokens": 12, "total_tokens": 46}
    # the model got the tool's result under the call's id (the stand-in checked the pairing)
    assert stand_in.requests()[1].tool_results() == [{"role": "tool", "content": "sunny in Paris", "tool_call_id": "call_weather_1"}]


def test_history_with_a_tool_call_its_result_and_an_image_reaches_the_model(serve):
    history = {
        "input": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is on this picture, and the weather there?"},
                                         {"type": "image", "image_url": "https://example.com/paris.png"}]},
            {"role": "assistant", "type": "reasoning", "content": [{"type": "text", "text": "Paris, so the weather of Paris."}]},
            {"role": "assistant", "type": "plugin_call",
             "content": [{"type": "data", "data": {"call_id": "call_a", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "assistant", "type": "function_call",
             "content": [{"type": "data", "data": {"call_id": "call_b", "name": "get_weather", "arguments": "{\"city\": \"Lyon\"}"}}]},
            {"role": "tool", "type": "plugin_call_output", "content": [{"type": "data", "data": {"call_id": "call_a", "name": "get_weather", "output": "sunny"}}]},
            {"role": "tool", "type": "function_call_output", "content": [{"type": "data", "data": {"call_id": "call_b", "output": "rain"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "The Eiffel tower; sunny."}]},
            {"role": "user", "content": [{"type": "text", "text": "And this one?"},
                                         {"type": "image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]},
        ]
    }
    msgs = get_framework("agno").to_msgs(AgentRequest.model_validate(history))
    from agno.models.message import Message

    assert all(isinstance(m, Message) for m in msgs)
    assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "tool", "assistant", "user"]
    assert msgs[1].content == "What is on this picture, and the weather there?"
    assert [image.url for image in msgs[1].images] == ["https://example.com/paris.png"]
    calls = msgs[2].tool_calls  # the two parallel calls share one assistant message
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_weather", {"city": "Lyon"})]
    assert msgs[2].reasoning_content == "Paris, so the weather of Paris."
    assert [(m.tool_call_id, m.content) for m in msgs[3:5]] == [("call_a", "sunny"), ("call_b", "rain")]

    # and agno sends it to the model as a valid conversation (the stand-in checks every rule)
    with OpenAIChatStandIn([Reply(text="A cat.")]) as stand_in:
        events = read_events(f"{serve(agno_app(stand_in, tools=[get_weather]))}/process", history)
        assert check_protocol(events)["status"] == "completed"
        sent = stand_in.requests()[0].messages
    # agno's OpenAIChat sends system messages as "developer" (its default_role_map)
    assert [m["role"] for m in sent] == ["developer", "user", "assistant", "tool", "tool", "assistant", "user"]
    first_user, assistant, *tools, _, last_user = sent[-6:]
    assert first_user["content"][1] == {"type": "image_url", "image_url": {"url": "https://example.com/paris.png"}}
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_a", "call_b"]
    assert [(t["tool_call_id"], t["content"]) for t in tools] == [("call_a", "sunny"), ("call_b", "rain")]
    assert last_user["content"][1]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="


def test_a_stop_while_the_model_streams_cancels_the_run_and_its_model_call(serve):
    with OpenAIChatStandIn(lambda r: Reply(text="one two three four five", hold_after=2)) as stand_in:
        url = serve(agno_app(stand_in))
        stream = BackgroundStream(url, user_body("count", session_id="agno-mid", user_id="u")).begin()
        assert stand_in.holding.wait(10)
        wait_until(lambda: text_of(stream.events) == "one two", 10, lambda: f"the client saw {text_of(stream.events)!r}")
        assert http.post(f"{url}/process/stop", json={"session_id": "agno-mid", "user_id": "u"}, timeout=10).json()["stopped"] is True
        events = stream.result()
        stand_in.release()
        wait_until(lambda: stand_in.calls[0].disconnected, 10, "the model's HTTP stream was not abandoned")
    terminal = check_protocol(events)
    assert terminal["status"] == "canceled"
    (partial,) = terminal["output"]
    assert partial["status"] == "incomplete" and partial["content"][0]["text"] == "one two"


def test_a_model_error_fails_the_response_with_its_message(serve, monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    with OpenAIChatStandIn([Reply(error=(400, "context_length_exceeded", "This model's maximum context length is 8 tokens."))]) as stand_in:
        terminal = check_protocol(read_events(f"{serve(agno_app(stand_in))}/process", user_body()))
    assert terminal["status"] == "failed"
    assert "maximum context length is 8 tokens" in terminal["error"]["message"]


def test_a_failing_tool_is_reported_as_its_output_and_the_run_goes_on(serve):
    async def get_weather(city: str) -> str:
        """The weather of a city."""
        raise ValueError("the weather service is down")

    with OpenAIChatStandIn(tool_then_answer("get_weather", {"city": "Paris"}, "Sorry.")) as stand_in:
        terminal = check_protocol(read_events(f"{serve(agno_app(stand_in, tools=[get_weather]))}/process", user_body()))
    assert [m["type"] for m in terminal["output"]] == ["plugin_call", "plugin_call_output", "message"]
    assert terminal["output"][1]["content"][0]["data"]["output"] == "the weather service is down"


def test_anything_but_agno_events_fails_with_a_hint(serve, monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    app = AgentApp()

    @app.query(framework="agno")
    async def handler(self, msgs, request=None, **kwargs):
        yield "plain text"

    terminal = check_protocol(read_events(f"{serve(app)}/process", user_body()))
    assert terminal["status"] == "failed" and "framework='text'" in terminal["error"]["message"]


def test_the_converter_does_not_import_agno_until_asked():
    code = ("import sys, asyncio, agentpack.frameworks.agno as m\n"
            "assert not any(n == 'agno' or n.startswith('agno.') for n in sys.modules)\n"
            "asyncio.run(m.AgnoFramework().prepare())\n"
            "assert 'agno.models.message' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert isinstance(get_framework("agno"), AgnoFramework)


# -- a stop from another instance ------------------------------------------------------------------


@pytest.fixture
def pair(redis_server) -> Iterator[tuple[Node, Node, OpenAIChatStandIn]]:
    with OpenAIChatStandIn(tool_then_answer("slow_lookup", {"topic": "tides"}, "Found nothing.", call_id="call_slow")) as stand_in:
        env = {"AGENTPACK_TEST_FRAMEWORK": "agno", "AGENTPACK_TEST_OPENAI_URL": stand_in.base_url}
        nodes = [Node(redis_server.url, app="tests/nodes/framework_node2.py", env=env) for _ in range(2)]
        try:
            yield nodes[0], nodes[1], stand_in
        finally:
            for node in nodes:
                node.close()


def test_a_stop_sent_to_another_instance_cancels_the_run_and_its_running_tool(pair, redis_server):
    a, b, stand_in = pair
    redis = redis_server.client()
    stream = BackgroundStream(a.url, user_body("Look up the tides.", session_id="agno-tool", user_id="u")).begin()
    wait_until(lambda: redis.get("tool:agno-tool") == "started", 20, "the tool never started")
    assert b.stop_session("agno-tool", user_id="u").json()["stopped"] is True
    terminal = check_protocol(stream.result())
    assert terminal["status"] == "canceled"
    assert [(m["type"], m["status"]) for m in terminal["output"]] == [("plugin_call", "completed")]
    wait_until(lambda: redis.get("tool:agno-tool") == "cancelled", 10, lambda: f"the tool was not cancelled: {redis.get('tool:agno-tool')}")
    assert redis.keys("agentpack:{*:lease") == []
    assert len(stand_in.completions()) == 1  # the model never got an answer from the tool


def test_audio_video_files_data_and_refusals_land_where_agno_reads_them():
    request = AgentRequest.model_validate({"input": [
        {"role": "user", "content": [
            {"type": "text", "text": "Listen, watch, read."},
            {"type": "audio", "data": "data:audio/wav;base64,AAAA", "format": "wav"},
            {"type": "audio", "data": "https://example.com/a.mp3"},
            {"type": "video", "video_url": "https://example.com/v.mp4"},
            {"type": "file", "file_url": "https://example.com/doc.pdf", "filename": "doc.pdf"},
            {"type": "file", "file_data": "data:application/pdf;base64,AAAA", "filename": "inline.pdf"},
            {"type": "data", "data": {"k": 1}},
        ]},
        {"role": "tool", "content": "a note that answers no call"},
    ]})
    user, note = get_framework("agno").to_msgs(request)
    assert user.content == 'Listen, watch, read.\n{"k": 1}'
    assert [(a.url, a.format, a.content) for a in user.audio] == [(None, "wav", b"\x00\x00\x00"), ("https://example.com/a.mp3", None, None)]
    assert [v.url for v in user.videos] == ["https://example.com/v.mp4"]
    assert [(f.url, f.filename, f.content) for f in user.files] == [("https://example.com/doc.pdf", "doc.pdf", None), (None, "inline.pdf", b"\x00\x00\x00")]
    assert (note.role, note.content) == ("system", "a note that answers no call")
