"""framework="ms_agent_framework": a real Microsoft Agent Framework agent (its OpenAI chat-completions
client pointed at the OpenAI chat stand-in) streamed through a real server, the request's history
handed to the agent, and a run whose tool is running stopped from another instance."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Iterator

import pytest

from agentpack import AgentApp
from agentpack.frameworks import get_framework
from agentpack.frameworks.ms_agent_framework import AgentFrameworkFramework
from agentpack.protocol.schemas import AgentRequest
from tests.nodes.cluster import Node
from tests.standins.openai_chat import ChatRequest, OpenAIChatStandIn, Reply, ToolCall, tool_then_answer
from tests.support import BackgroundStream, check_protocol, read_events, text_of, user_body, wait_until, http

MODEL = "stand-in-model"


def reasoning_content(delta: Any, contents: list) -> list:
    """DeepSeek / DashScope send reasoning as ``delta.reasoning_content``, which Agent Framework's
    chat-completions client leaves to a ``response_parser`` (it reads only ``reasoning_details``)."""
    from agent_framework import Content

    text = getattr(delta, "reasoning_content", None)
    return ([Content.from_text_reasoning(text=text)] if text else []) + list(contents)


def af_agent(stand_in: OpenAIChatStandIn, tools: list) -> Any:
    from agent_framework import Agent
    from agent_framework.openai import OpenAIChatCompletionClient

    client = OpenAIChatCompletionClient(model=MODEL, base_url=stand_in.base_url, api_key="test-key", response_parser=reasoning_content)
    return Agent(client=client, tools=tools)


async def get_weather(city: str) -> str:
    """The weather of a city."""
    return f"sunny in {city}"


def af_app(stand_in: OpenAIChatStandIn, tools: list | None = None) -> AgentApp:
    app = AgentApp()

    @app.query(framework="ms_agent_framework")
    async def handler(self, msgs, request=None, **kwargs):
        agent = af_agent(stand_in, [get_weather] if tools is None else tools)
        async for update in agent.run(msgs, stream=True):
            yield update

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


def test_a_react_agent_streams_reasoning_tool_call_arguments_result_and_answer(serve):
    with OpenAIChatStandIn(react_script) as stand_in:
        events = read_events(f"{serve(af_app(stand_in))}/process", user_body("Weather in Paris?"))
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
    # the arguments stream as the model sends them: each data delta carries the arguments so far
    streamed = deltas(events, call["id"])
    assert {(d["call_id"], d["name"]) for d in streamed} == {("call_weather_1", "get_weather")}
    assert [d["arguments"] for d in streamed] == ["", '{"city', '{"city": "Pa', '{"city": "Paris"}']
    assert call["content"][0]["data"] == {"call_id": "call_weather_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert result["content"][0]["data"] == {"call_id": "call_weather_1", "name": "get_weather", "output": "sunny in Paris"}
    assert deltas(events, answer["id"]) == ["It", " is", " sunny", " in", " Paris."]
    assert answer["content"][0]["text"] == "It is sunny in Paris."
    # usage: Agent Framework reports the run's so far; the call carries the first model call's, the
    # answer both calls' (the reasoning was complete before any usage was known)
    assert reasoning["usage"] is None and result["usage"] is None
    assert call["usage"] == {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
    assert answer["usage"] == terminal["usage"] == {"input_tokens": 34, "output_tokens": 12, "total_tokens": 46}
    assert stand_in.requests()[-1].tool_results() == [{"role": "tool", "tool_call_id": "call_weather_1", "content": "sunny in Paris"}]


def test_history_with_a_tool_call_its_result_and_an_image_reaches_the_model(serve):
    history = {
        "input": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is on this picture, and the weather there?"},
                                         {"type": "image", "image_url": "https://example.com/paris.png"}]},
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
    request = AgentRequest.model_validate(history)
    msgs = get_framework("ms_agent_framework").to_msgs(request)
    from agent_framework import Message

    assert all(isinstance(m, Message) for m in msgs)
    assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "tool", "assistant", "user"]
    assert [c.type for c in msgs[1].contents] == ["text", "uri"]
    image = msgs[1].contents[1]
    assert (image.uri, image.media_type) == ("https://example.com/paris.png", "image/png")
    calls = msgs[2].contents  # the two parallel calls share one assistant message
    assert [(c.type, c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("function_call", "call_a", "get_weather", {"city": "Paris"}), ("function_call", "call_b", "get_weather", {"city": "Lyon"})]
    assert [(m.contents[0].type, m.contents[0].call_id, m.contents[0].result) for m in msgs[3:5]] == [
        ("function_result", "call_a", "sunny"), ("function_result", "call_b", "rain")]
    inline = msgs[6].contents[1]
    assert (inline.type, inline.media_type) == ("data", "image/png")
    assert [m.message_id for m in msgs] == [m.id for i, m in enumerate(request.input) if i != 3]

    # and the agent sends it to the model as a valid conversation (the stand-in checks every rule)
    with OpenAIChatStandIn([Reply(text="A cat.")]) as stand_in:
        events = read_events(f"{serve(af_app(stand_in))}/process", history)
        assert check_protocol(events)["status"] == "completed"
        sent = stand_in.requests()[0].messages
    # the chat-completions client sends each content item of a user message as a message of its own
    assert [m["role"] for m in sent] == ["system", "user", "user", "assistant", "tool", "tool", "assistant", "user", "user"]
    assert sent[1]["content"] == "What is on this picture, and the weather there?"
    assert sent[2]["content"] == [{"type": "image_url", "image_url": {"url": "https://example.com/paris.png"}}]
    assert [c["id"] for c in sent[3]["tool_calls"]] == ["call_a", "call_b"]
    assert [(t["tool_call_id"], t["content"]) for t in sent[4:6]] == [("call_a", "sunny"), ("call_b", "rain")]
    assert sent[8]["content"][0]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="


def test_reasoning_in_history_becomes_reasoning_content():
    request = AgentRequest.model_validate({"input": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "type": "reasoning", "content": [{"type": "text", "text": "They greet me."}]},
        {"role": "assistant", "content": "Hello!"},
    ]})
    msgs = get_framework("ms_agent_framework").to_msgs(request)
    assert [(m.role, [c.type for c in m.contents]) for m in msgs] == [
        ("user", ["text"]), ("assistant", ["text_reasoning"]), ("assistant", ["text"])]
    assert msgs[1].contents[0].text == "They greet me."


def test_a_stop_while_the_model_streams_cancels_the_run_and_its_model_call(serve):
    with OpenAIChatStandIn(lambda r: Reply(text="one two three four five", hold_after=2)) as stand_in:
        url = serve(af_app(stand_in))
        stream = BackgroundStream(url, user_body("count", session_id="af-mid", user_id="u")).begin()
        assert stand_in.holding.wait(10)
        wait_until(lambda: text_of(stream.events) == "one two", 10, lambda: f"the client saw {text_of(stream.events)!r}")
        assert http.post(f"{url}/process/stop", json={"session_id": "af-mid", "user_id": "u"}, timeout=10).json()["stopped"] is True
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
        terminal = check_protocol(read_events(f"{serve(af_app(stand_in))}/process", user_body()))
    assert terminal["status"] == "failed"
    assert "maximum context length is 8 tokens" in terminal["error"]["message"]


def test_an_error_content_fails_the_response(serve, monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    from agent_framework import AgentResponseUpdate, Content

    app = AgentApp()

    @app.query(framework="ms_agent_framework")
    async def handler(self, msgs, request=None, **kwargs):
        yield AgentResponseUpdate(contents=[Content.from_text("Partial ")], role="assistant", message_id="m1")
        yield AgentResponseUpdate(contents=[Content.from_error(message="quota exhausted", error_code="quota")], role="assistant", message_id="m1")

    events = read_events(f"{serve(app)}/process", user_body())
    terminal = check_protocol(events)
    assert terminal["status"] == "failed" and "quota: quota exhausted" in terminal["error"]["message"]


def test_a_whole_agent_response_and_media_are_converted(serve):
    from agent_framework import AgentResponse, Content, Message

    app = AgentApp()

    @app.query(framework="ms_agent_framework")
    async def handler(self, msgs, request=None, **kwargs):
        yield AgentResponse(
            messages=[Message("assistant", [Content.from_text("Here:"), Content.from_uri("https://example.com/a.png", media_type="image/png")],
                              message_id="m1")],
            usage_details={"input_token_count": 4, "output_token_count": 2, "total_token_count": 6},
        )

    terminal = check_protocol(read_events(f"{serve(app)}/process", user_body()))
    (message,) = terminal["output"]
    assert [c["type"] for c in message["content"]] == ["text", "image"]
    assert message["content"][1]["image_url"] == "https://example.com/a.png"
    assert message["usage"] == {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6}


def test_anything_but_updates_fails_with_a_hint(serve, monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    app = AgentApp()

    @app.query(framework="ms_agent_framework")
    async def handler(self, msgs, request=None, **kwargs):
        yield "plain text"

    terminal = check_protocol(read_events(f"{serve(app)}/process", user_body()))
    assert terminal["status"] == "failed" and "framework='text'" in terminal["error"]["message"]


def test_the_converter_does_not_import_agent_framework_until_asked():
    code = ("import sys, asyncio, agentpack.frameworks.ms_agent_framework as m\n"
            "assert not any(n == 'agent_framework' or n.startswith('agent_framework.') for n in sys.modules)\n"
            "asyncio.run(m.AgentFrameworkFramework().prepare())\n"
            "assert 'agent_framework' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert isinstance(get_framework("ms_agent_framework"), AgentFrameworkFramework)


# -- a stop from another instance ------------------------------------------------------------------


@pytest.fixture
def pair(redis_server) -> Iterator[tuple[Node, Node, OpenAIChatStandIn]]:
    with OpenAIChatStandIn(tool_then_answer("slow_lookup", {"topic": "tides"}, "Found nothing.", call_id="call_slow")) as stand_in:
        env = {"AGENTPACK_TEST_FRAMEWORK": "ms_agent_framework", "AGENTPACK_TEST_OPENAI_URL": stand_in.base_url}
        nodes = [Node(redis_server.url, app="tests/nodes/framework_node2.py", env=env) for _ in range(2)]
        try:
            yield nodes[0], nodes[1], stand_in
        finally:
            for node in nodes:
                node.close()


def test_a_stop_sent_to_another_instance_cancels_the_run_and_its_running_tool(pair, redis_server):
    a, b, stand_in = pair
    redis = redis_server.client()
    stream = BackgroundStream(a.url, user_body("Look up the tides.", session_id="af-tool", user_id="u")).begin()
    wait_until(lambda: redis.get("tool:af-tool") == "started", 20, "the tool never started")
    assert b.stop_session("af-tool", user_id="u").json()["stopped"] is True
    terminal = check_protocol(stream.result())
    assert terminal["status"] == "canceled"
    assert [(m["type"], m["status"]) for m in terminal["output"]] == [("plugin_call", "completed")]
    assert json.loads(terminal["output"][0]["content"][0]["data"]["arguments"]) == {"topic": "tides"}
    wait_until(lambda: redis.get("tool:af-tool") == "cancelled", 10, lambda: f"the tool was not cancelled: {redis.get('tool:af-tool')}")
    assert redis.keys("agentpack:{*:lease") == []
    assert len(stand_in.completions()) == 1  # the model never got an answer from the tool


def test_audio_video_files_and_data_become_contents_with_media_types():
    request = AgentRequest.model_validate({"input": [
        {"role": "user", "content": [
            {"type": "audio", "data": "data:audio/wav;base64,AAAA", "format": "wav"},
            {"type": "audio", "data": "https://example.com/a.mp3"},
            {"type": "video", "video_url": "https://example.com/v.mp4"},
            {"type": "file", "file_url": "https://example.com/doc.pdf", "filename": "doc.pdf"},
            {"type": "data", "data": {"k": 1}},
        ]},
        {"role": "tool", "content": "a note that answers no call"},
    ]})
    user, note = get_framework("ms_agent_framework").to_msgs(request)
    assert [(c.type, c.media_type) for c in user.contents] == [
        ("data", "audio/wav"), ("uri", "audio/mpeg"), ("uri", "video/mp4"), ("uri", "application/pdf"), ("text", None)]
    assert user.contents[3].name == "doc.pdf" and user.contents[4].text == '{"k": 1}'
    assert (note.role, note.text) == ("system", "a note that answers no call")
