"""framework="autogen": AgentChat messages in, run_stream() items out, through real servers; an
AssistantAgent driven by autogen-ext's ReplayChatCompletionClient (a tool call, then a streamed
answer), its request history as AgentChat messages, a team, and stops sent to another instance that
cancel the agent's tool call, alone and inside a team."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import MultiModalMessage, TextMessage, ToolCallSummaryMessage
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import FunctionCall, Image
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResultMessage,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_ext.models.replay import ReplayChatCompletionClient
from PIL import Image as PILImage

from agentpack import AgentApp
from agentpack.frameworks.autogen import AutoGenFramework, cancellation_token, llm_messages
from agentpack.protocol.events import ResponseBuilder
from agentpack.protocol.schemas import AgentRequest
from tests.nodes.cluster import Node
from tests.nodes.framework_node import autogen_model_info
from tests.support import check_protocol, read_events, sse_events, text_of, user_body, wait_until, http


def png_base64() -> str:
    buffer = io.BytesIO()
    PILImage.new("RGB", (2, 2), (255, 0, 0)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def broken(city: str) -> str:
    """A tool that fails."""
    raise ValueError(f"no station in {city}")


def call_result(name: str = "weather", thought: str | None = None) -> CreateResult:
    return CreateResult(
        finish_reason="function_calls",
        content=[FunctionCall(id="call_1", name=name, arguments='{"city": "Paris"}')],
        usage=RequestUsage(prompt_tokens=5, completion_tokens=3),
        cached=False,
        thought=thought,
    )


def client(*replies: Any) -> ReplayChatCompletionClient:
    return ReplayChatCompletionClient(list(replies), model_info=autogen_model_info())


def app_running(make_runner: Any, seen: dict | None = None) -> AgentApp:
    app = AgentApp()

    @app.query(framework="autogen")
    async def handler(self, msgs, request=None, **kwargs):
        if seen is not None:
            seen["msgs"] = msgs
        async for item in make_runner().run_stream(task=msgs, cancellation_token=cancellation_token()):
            yield item

    return app


def test_an_assistant_agent_streams_its_thought_the_tool_call_its_result_the_answer_and_usage(serve):
    def agent() -> AssistantAgent:
        replies = client(call_result(thought="I need the weather"), "<think>Sunny, it says.</think>It is sunny in Paris.")
        return AssistantAgent("assistant", model_client=replies, tools=[weather], model_client_stream=True, reflect_on_tool_use=True)

    events = read_events(f"{serve(app_running(agent))}/process", user_body("weather in Paris?"))
    terminal = check_protocol(events)
    assert terminal["status"] == "completed"
    # the user's own message, echoed back by run_stream, is not output
    assert [(e["type"], e["role"], e["status"]) for e in events if e["object"] == "message"] == [
        ("reasoning", "assistant", "in_progress"),
        ("reasoning", "assistant", "completed"),
        ("plugin_call", "assistant", "in_progress"),
        ("plugin_call", "assistant", "completed"),
        ("plugin_call_output", "tool", "in_progress"),
        ("plugin_call_output", "tool", "completed"),
        ("reasoning", "assistant", "in_progress"),
        ("reasoning", "assistant", "completed"),
        ("message", "assistant", "in_progress"),
        ("message", "assistant", "completed"),
    ]
    thought, call, result, reasoning, answer = terminal["output"]
    assert thought["content"][0]["text"] == "I need the weather"
    assert call["content"][0]["data"] == {"call_id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'}
    assert result["content"][0]["data"] == {"call_id": "call_1", "name": "weather", "output": "sunny in Paris", "is_error": False}
    # the answer streams chunk by chunk; its reasoning, streamed inside <think>, is a message of its own
    deltas = {m["id"]: [e["text"] for e in events if e["object"] == "content" and e["msg_id"] == m["id"] and e["delta"]] for m in (reasoning, answer)}
    assert deltas[reasoning["id"]] == ["Sunny, ", "it ", "says."]
    assert deltas[answer["id"]] == ["It ", "is ", "sunny ", "in ", "Paris."]
    assert reasoning["content"][0]["text"] == "Sunny, it says."
    assert answer["content"][0]["text"] == "It is sunny in Paris."  # the final TextMessage is not sent again
    assert text_of(events) == "Sunny, it says.It is sunny in Paris."
    assert call["usage"] == {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}
    assert answer["usage"]["output_tokens"] == 7 and terminal["usage"] == answer["usage"]
    assert {m["metadata"]["source"] for m in terminal["output"]} == {"assistant"}


def test_answer_chunks_reach_the_client_while_the_model_is_still_streaming(serve):
    from autogen_agentchat.messages import ModelClientStreamingChunkEvent

    gate = threading.Event()
    app = AgentApp()

    @app.query(framework="autogen")
    async def handler(self, msgs, request=None, **kwargs):
        yield ModelClientStreamingChunkEvent(content="Once", source="assistant", full_message_id="m")
        await asyncio.to_thread(gate.wait, 20)
        yield ModelClientStreamingChunkEvent(content=" upon a time", source="assistant", full_message_id="m")
        yield TextMessage(id="m", content="Once upon a time", source="assistant")

    import json

    events = []
    with http.stream("POST", f"{serve(app)}/process", json=user_body(), timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1].get("text") == "Once" and events[-1].get("delta"):
                    gate.set()
    assert gate.is_set()
    output = check_protocol(events)["output"]
    assert [m["content"][0]["text"] for m in output] == ["Once upon a time"]


def test_to_msgs_gives_agentchat_messages_with_tool_calls_results_and_images(serve):
    png = png_base64()
    request = AgentRequest(
        input=[
            {"role": "system", "content": "Be brief."},
            {"id": "u1", "role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image", "image_url": f"data:image/png;base64,{png}"}]},
            {"role": "assistant", "content": "Let me check the weather."},
            {"type": "reasoning", "role": "assistant", "content": "left out"},
            {"id": "c", "type": "plugin_call", "role": "assistant", "content": [{"type": "data", "data": {"call_id": "c1", "name": "weather", "arguments": '{"city": "Paris"}'}}]},
            {"type": "function_call", "role": "assistant", "content": [{"type": "data", "data": {"call_id": "c2", "name": "weather", "arguments": '{"city": "Rome"}'}}]},
            {"type": "plugin_call_output", "role": "tool", "content": [{"type": "data", "data": {"call_id": "c1", "name": "weather", "output": "sunny"}}]},
            {"type": "function_call_output", "role": "tool", "content": [{"type": "data", "data": {"call_id": "c2", "output": "no station", "is_error": True}}]},
            {"id": "u2", "role": "user", "content": [{"type": "text", "text": "And this one?"}, {"type": "image", "image_url": "https://example.com/b.png"}]},
        ]
    )
    msgs = AutoGenFramework().to_msgs(request)
    assert [type(m) for m in msgs] == [TextMessage, MultiModalMessage, TextMessage, ToolCallSummaryMessage, TextMessage]
    system, user, assistant, tools, last = msgs
    assert (system.source, system.content) == ("system", "Be brief.")
    assert user.id == "u1" and user.source == "user"
    assert user.content[0] == "What is this?" and isinstance(user.content[1], Image) and user.content[1].image.size == (2, 2)
    assert (assistant.source, assistant.content) == ("assistant", "Let me check the weather.")
    assert tools.id == "c" and tools.source == "assistant"
    assert [(c.id, c.name, c.arguments) for c in tools.tool_calls] == [("c1", "weather", '{"city": "Paris"}'), ("c2", "weather", '{"city": "Rome"}')]
    assert [(r.call_id, r.name, r.content, r.is_error) for r in tools.results] == [("c1", "weather", "sunny", False), ("c2", "weather", "no station", True)]
    assert tools.content == 'weather({"city": "Paris"}) -> sunny\nweather({"city": "Rome"}) -> error: no station'
    assert (last.id, last.content) == ("u2", "And this one?\n[image: https://example.com/b.png]")

    # an agent takes them as they are; none of them is output again
    replies = client("A red square.")
    seen: dict = {}
    events = read_events(
        f"{serve(app_running(lambda: AssistantAgent('assistant', model_client=replies), seen))}/process", request.model_dump(mode="json")
    )
    terminal = check_protocol(events)
    assert [m["content"][0]["text"] for m in terminal["output"]] == ["A red square."]
    assert [type(m) for m in seen["msgs"]] == [type(m) for m in msgs]
    received = replies.create_calls[0]["messages"]
    assert [type(m).__name__ for m in received] == ["SystemMessage", "UserMessage", "UserMessage", "UserMessage", "UserMessage", "UserMessage"]
    assert isinstance(received[2].content[1], Image) and received[4].content == tools.content

    # the same history in the model's own roles, for an agent's model_context
    history = llm_messages(msgs)
    assert [type(m) for m in history] == [SystemMessage, UserMessage, AssistantMessage, AssistantMessage, FunctionExecutionResultMessage, UserMessage]
    assert history[3].content == tools.tool_calls and history[4].content == tools.results


def adapt(items: list[Any], request: AgentRequest | None = None) -> tuple[list[dict], dict]:
    async def run() -> tuple[list[dict], dict]:
        builder = ResponseBuilder()
        framework = AutoGenFramework()
        if request is not None:
            framework.to_msgs(request)

        async def source():
            for item in items:
                yield item

        events = [builder.stamp(e) async for e in framework.adapt(source(), builder)]
        return events, builder.stamp(builder.completed())

    return asyncio.run(run())


def test_a_tool_error_is_kept_and_the_summary_answer_is_a_message(serve):
    def agent() -> AssistantAgent:
        return AssistantAgent("assistant", model_client=client(call_result("broken")), tools=[broken], model_client_stream=True)

    terminal = check_protocol(read_events(f"{serve(app_running(agent))}/process", user_body("weather?")))
    call, result, summary = terminal["output"]
    assert (call["type"], result["type"], summary["type"]) == ("plugin_call", "plugin_call_output", "message")
    data = result["content"][0]["data"]
    assert data["is_error"] is True and "no station in Paris" in data["output"]
    assert summary["content"][0]["text"] == data["output"]  # the ToolCallSummaryMessage, not streamed: sent once


def test_a_team_streams_each_agent_as_its_source(serve):
    def team() -> RoundRobinGroupChat:
        alice = AssistantAgent("alice", model_client=client("Hello from Alice."), model_client_stream=True)
        bob = AssistantAgent("bob", model_client=client("And Bob."), model_client_stream=True)
        return RoundRobinGroupChat([alice, bob], max_turns=2)

    events = read_events(f"{serve(app_running(team))}/process", user_body("hi"))
    terminal = check_protocol(events)
    assert [(m["metadata"]["source"], m["content"][0]["text"]) for m in terminal["output"]] == [("alice", "Hello from Alice."), ("bob", "And Bob.")]
    assert len([e for e in events if e["object"] == "content" and e["delta"]]) == 5


def test_echoed_task_messages_are_skipped_by_id_and_other_events_ignored():
    from autogen_agentchat.messages import MemoryQueryEvent, ModelClientStreamingChunkEvent, ThoughtEvent

    request = AgentRequest(input=[{"id": "h1", "role": "assistant", "content": "earlier"}, {"id": "q", "role": "user", "content": "now"}])
    items = [
        TextMessage(id="h1", content="earlier", source="assistant"),
        TextMessage(id="q", content="now", source="user"),
        MemoryQueryEvent(content=[], source="assistant"),
        ModelClientStreamingChunkEvent(content="<thi", source="assistant", full_message_id="m"),
        ModelClientStreamingChunkEvent(content="nk>deep</th", source="assistant", full_message_id="m"),
        ModelClientStreamingChunkEvent(content="ink>Answer", source="assistant", full_message_id="m"),
        ThoughtEvent(id="m", content="deep", source="assistant"),
        TextMessage(id="other", content="Answer", source="assistant"),  # a thought gave the answer a new id
    ]
    _, terminal = adapt(items, request)
    assert [(m["type"], m["content"][0]["text"]) for m in terminal["output"]] == [("reasoning", "deep"), ("message", "Answer")]


def test_a_handler_returning_the_result_of_run_gives_its_messages(serve):
    app = AgentApp()

    @app.query(framework="autogen")
    async def handler(self, msgs, request=None, **kwargs):
        agent = AssistantAgent("assistant", model_client=client(call_result(), "Sunny."), tools=[weather], reflect_on_tool_use=True)
        return await agent.run(task=msgs, cancellation_token=cancellation_token())

    terminal = check_protocol(read_events(f"{serve(app)}/process", user_body("weather?")))
    assert [m["type"] for m in terminal["output"]] == ["plugin_call", "plugin_call_output", "message"]
    assert terminal["output"][-1]["content"][0]["text"] == "Sunny."


def test_a_multimodal_answer_keeps_its_images():
    image = Image.from_base64(png_base64())
    _, terminal = adapt([MultiModalMessage(content=["A red square:", image], source="painter")])
    [message] = terminal["output"]
    assert message["metadata"] == {"source": "painter"}
    assert [c["type"] for c in message["content"]] == ["text", "image"]
    assert message["content"][1]["image_url"] == image.data_uri


def test_a_failing_agent_ends_failed_and_strings_are_refused_with_a_hint(serve, monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    app = AgentApp()

    @app.query(framework="autogen")
    async def handler(self, msgs, request=None, **kwargs):
        yield TextMessage(content="partial", source="assistant")
        raise RuntimeError("the team broke")

    terminal = check_protocol(read_events(f"{serve(app)}/process", user_body()))
    assert terminal["status"] == "failed" and "the team broke" in terminal["error"]["message"]
    assert [m["content"][0]["text"] for m in terminal["output"]] == ["partial"]

    with pytest.raises(TypeError, match="framework='text'"):
        adapt(["plain text"])
    with pytest.raises(RuntimeError, match="inside a framework='autogen' query handler"):
        contextvars.Context().run(cancellation_token)  # outside any run


# -- stops sent to another instance ---------------------------------------------------------------
class Reader(threading.Thread):
    """Reads one /process stream in a thread."""

    def __init__(self, url: str, body: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.text = url, body, ""

    def run(self) -> None:
        with http.stream("POST", self.url, json=self.body, timeout=60) as response:
            for line in response.iter_lines():
                self.text += line + "\n"

    def events(self) -> list[dict]:
        self.join(30)
        assert not self.is_alive(), "the stream did not end"
        return sse_events(self.text)


#: the nodes' STOP_GRACE: a team stopped during a tool call is cancelled a second time after it
GRACE = 0.5


@pytest.fixture
def pair(redis_server) -> Iterator[tuple[Node, Node]]:
    env = {"AGENTPACK_TEST_FRAMEWORK": "autogen", "AGENTPACK_TEST_STOP_GRACE": str(GRACE)}
    with ThreadPoolExecutor(2) as pool:  # each node takes seconds to import AutoGen: start them together
        nodes = list(pool.map(lambda _: Node(redis_server.url, app="tests/nodes/framework_node.py", env=env), range(2)))
    yield nodes[0], nodes[1]
    for node in nodes:
        node.close()


def test_a_stop_sent_to_another_instance_cancels_the_agent_and_its_tool_call_alone_and_in_a_team(pair, redis_server):
    a, b = pair
    redis = redis_server.client()
    readers = {
        session: Reader(f"{a.url}/process", user_body(text, session_id=session, user_id="u"))
        for session, text in (("ag-alone", "weather in Paris?"), ("ag-team", "team"))
    }
    for session, reader in readers.items():
        reader.start()
        wait_until(lambda key=f"tool:{session}": redis.get(key) == "started", 30, lambda r=reader: f"the tool never started: {r.text[-2000:]}")
    for session, reader in readers.items():
        assert b.stop_session(session).json()["stopped"] is True
        terminal = check_protocol(reader.events())
        assert terminal["status"] == "canceled"
        assert [m["type"] for m in terminal["output"]] == ["plugin_call"]
        assert terminal["output"][0]["content"][0]["data"]["name"] == "wait_for_ever"
        wait_until(lambda key=f"tool:{session}": redis.get(key) == "cancelled", 10, f"{session}: the tool call was not cancelled")
    assert redis.keys("agentpack:{*:lease") == []
    assert "leaving it behind" not in a.log_text()
