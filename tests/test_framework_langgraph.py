"""framework="langgraph": LangChain messages in, graph.astream(stream_mode="messages") out, through
real servers; a ReAct agent driven by LangChain's fake chat model (streaming reasoning, text, tool
call chunks and usage), its request history as LangChain messages, and a stop sent to another
instance that cancels the graph's tool call."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from agentpack import AgentApp
from agentpack.frameworks.langgraph import LangGraphFramework
from agentpack.protocol.events import ResponseBuilder
from agentpack.protocol.schemas import AgentRequest
from tests.nodes.cluster import Node
from tests.nodes.framework_node import ScriptedChatModel
from tests.support import check_protocol, read_events, sse_events, text_of, user_body, wait_until, http

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # create_react_agent moved to langchain's create_agent (langchain is not installed)
    from langgraph.prebuilt import create_react_agent

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8).decode()


@tool
async def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class ListChatModel(FakeMessagesListChatModel):
    """LangChain's fake model that answers whole messages (no streaming), with the bind_tools it lacks."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ListChatModel":
        return self


def react_agent(*replies: Any, model_class: type = ScriptedChatModel) -> tuple[Any, Any]:
    """A ReAct agent with the one tool ``weather``, and its model, which answers ``replies`` in turn."""
    model = model_class(messages=iter(replies)) if model_class is ScriptedChatModel else model_class(responses=list(replies))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(model, [weather]), model


def app_streaming(graph: Any, seen: dict | None = None) -> AgentApp:
    app = AgentApp()

    @app.query(framework="langgraph")
    async def handler(self, msgs, request=None, **kwargs):
        if seen is not None:
            seen["msgs"] = msgs
        async for item in graph.astream({"messages": msgs}, stream_mode="messages"):
            yield item

    return app


CALL = {"name": "weather", "args": {"city": "Paris"}, "id": "call_1"}


def test_a_react_agent_streams_reasoning_text_the_tool_call_its_result_and_usage(serve):
    agent, _ = react_agent(
        AIMessage(
            content="Let me check.",
            additional_kwargs={"reasoning_content": "I need the weather"},
            tool_calls=[CALL],
            usage_metadata={"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        ),
        AIMessage(content="It is sunny in Paris.", usage_metadata={"input_tokens": 9, "output_tokens": 6, "total_tokens": 15}),
    )
    events = read_events(f"{serve(app_streaming(agent))}/process", user_body("weather in Paris?"))
    terminal = check_protocol(events)
    assert terminal["status"] == "completed"
    messages = [(e["type"], e["role"], e["status"]) for e in events if e["object"] == "message"]
    assert messages == [
        ("reasoning", "assistant", "in_progress"),
        ("reasoning", "assistant", "completed"),
        ("message", "assistant", "in_progress"),
        ("message", "assistant", "completed"),
        ("plugin_call", "assistant", "in_progress"),
        ("plugin_call", "assistant", "completed"),
        ("plugin_call_output", "tool", "in_progress"),
        ("plugin_call_output", "tool", "completed"),
        ("message", "assistant", "in_progress"),
        ("message", "assistant", "completed"),
    ]
    reasoning, said, call, result, answer = terminal["output"]
    by_message = {m["id"]: [e for e in events if e["object"] == "content" and e["msg_id"] == m["id"]] for m in terminal["output"]}
    # every chunk is a delta of its own, sent as it arrives
    assert [e["text"] for e in by_message[reasoning["id"]] if e["delta"]] == ["I ", "need ", "the ", "weather "]
    assert [e["text"] for e in by_message[said["id"]] if e["delta"]] == ["Let ", "me ", "check."]
    assert [e["text"] for e in by_message[answer["id"]] if e["delta"]] == ["It ", "is ", "sunny ", "in ", "Paris."]
    assert text_of(events) == "I need the weather Let me check.It is sunny in Paris."
    assert reasoning["content"][0]["text"] == "I need the weather "
    assert answer["content"][0]["text"] == "It is sunny in Paris."
    # the tool call streams its arguments so far, then completes with all of them
    call_deltas = [e["data"] for e in by_message[call["id"]] if e["delta"]]
    assert call_deltas == [
        {"call_id": "call_1", "name": "weather", "arguments": '{"city":'},
        {"call_id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'},
    ]
    assert call["content"][0]["type"] == "data"
    assert call["content"][0]["data"] == {"call_id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'}
    assert result["content"][0]["data"] == {"call_id": "call_1", "name": "weather", "output": "sunny in Paris", "is_error": False}
    # usage: on the messages of the model call it measures, and the response's is the last call's
    assert call["usage"] == {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}
    assert answer["usage"] == terminal["usage"] == {"input_tokens": 9, "output_tokens": 6, "total_tokens": 15}
    assert {m["metadata"]["langgraph_node"] for m in terminal["output"]} == {"agent", "tools"}


def test_text_deltas_reach_the_client_while_the_model_is_still_streaming(serve):
    gate = threading.Event()
    app = AgentApp()

    @app.query(framework="langgraph")
    async def handler(self, msgs, request=None, **kwargs):
        yield AIMessageChunk(content="Once", id="run-1"), {"langgraph_step": 1, "langgraph_checkpoint_ns": "agent:1"}
        await asyncio.to_thread(gate.wait, 20)
        yield AIMessageChunk(content=" upon a time", id="run-1", chunk_position="last"), {"langgraph_step": 1, "langgraph_checkpoint_ns": "agent:1"}

    events = []
    with http.stream("POST", f"{serve(app)}/process", json=user_body(), timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1].get("text") == "Once" and events[-1].get("delta"):
                    gate.set()
    assert gate.is_set()
    assert check_protocol(events)["output"][0]["content"][0]["text"] == "Once upon a time"


def test_to_msgs_gives_langchain_messages_with_tool_calls_results_and_images(serve):
    request = AgentRequest(
        input=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image", "image_url": f"data:image/png;base64,{PNG}"}]},
            {"role": "assistant", "content": "Let me look at the weather."},
            {"type": "reasoning", "role": "assistant", "content": "left out"},
            {"type": "plugin_call", "role": "assistant", "content": [{"type": "data", "data": {"call_id": "c1", "name": "weather", "arguments": '{"city": "Paris"}'}}]},
            {"type": "function_call", "role": "assistant", "content": [{"type": "data", "data": {"call_id": "c2", "name": "weather", "arguments": "not json"}}]},
            {"type": "plugin_call_output", "role": "tool", "content": [{"type": "data", "data": {"call_id": "c1", "name": "weather", "output": "sunny"}}]},
            {"type": "function_call_output", "role": "tool", "content": [{"type": "data", "data": {"call_id": "c2", "output": "bad arguments", "is_error": True}}]},
            {"role": "user", "content": [{"type": "text", "text": "And this one?"}, {"type": "image", "image_url": "https://example.com/b.png"}]},
        ]
    )
    msgs = LangGraphFramework().to_msgs(request)
    assert [type(m) for m in msgs] == [SystemMessage, HumanMessage, AIMessage, ToolMessage, ToolMessage, HumanMessage]
    system, user, assistant, result1, result2, last = msgs
    assert system.content == "Be brief."
    assert user.content == [{"type": "text", "text": "What is this?"}, {"type": "image", "mime_type": "image/png", "base64": PNG}]
    # the text said before the calls and both calls are one AIMessage, as the model produced them
    assert assistant.content == "Let me look at the weather."
    assert [(c["id"], c["name"], c["args"]) for c in assistant.tool_calls] == [("c1", "weather", {"city": "Paris"})]
    assert [(c["id"], c["args"]) for c in assistant.invalid_tool_calls] == [("c2", "not json")]
    assert (result1.tool_call_id, result1.name, result1.content, result1.status) == ("c1", "weather", "sunny", "success")
    assert (result2.tool_call_id, result2.content, result2.status) == ("c2", "bad arguments", "error")
    assert last.content == [{"type": "text", "text": "And this one?"}, {"type": "image", "url": "https://example.com/b.png"}]

    # a real graph takes them as they are: the model receives the whole history
    agent, model = react_agent(AIMessage(content="A tiny PNG."))
    seen: dict = {}
    events = read_events(f"{serve(app_streaming(agent, seen))}/process", request.model_dump(mode="json"))
    assert check_protocol(events)["status"] == "completed"
    assert [m.model_dump(exclude={"id"}) for m in seen["msgs"]] == [m.model_dump(exclude={"id"}) for m in msgs]
    received = model.seen[0]
    assert [type(m).__name__ for m in received] == ["SystemMessage", "HumanMessage", "AIMessage", "ToolMessage", "ToolMessage", "HumanMessage"]
    assert received[2].tool_calls[0]["id"] == "c1" and received[-1].content[1]["url"] == "https://example.com/b.png"


def adapt(items: list[Any]) -> tuple[list[dict], dict]:
    async def run() -> tuple[list[dict], dict]:
        builder = ResponseBuilder()

        async def source():
            for item in items:
                yield item

        events = [builder.stamp(e) async for e in LangGraphFramework().adapt(source(), builder)]
        return events, builder.stamp(builder.completed())

    return asyncio.run(run())


def test_whole_messages_of_a_model_that_does_not_stream(serve):
    agent, _ = react_agent(
        AIMessage(content="", tool_calls=[CALL], usage_metadata={"input_tokens": 2, "output_tokens": 1, "total_tokens": 3}),
        AIMessage(content="Sunny."),
        model_class=ListChatModel,
    )
    terminal = check_protocol(read_events(f"{serve(app_streaming(agent))}/process", user_body("weather?")))
    output = terminal["output"]
    assert [(m["type"], m["role"]) for m in output] == [("plugin_call", "assistant"), ("plugin_call_output", "tool"), ("message", "assistant")]
    assert output[0]["content"][0]["data"] == {"call_id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'}
    assert output[0]["usage"] == {"input_tokens": 2, "output_tokens": 1, "total_tokens": 3}
    assert output[2]["content"][0]["text"] == "Sunny."


def test_every_shape_astream_yields_and_agentscope_runtime_handlers_yield():
    meta = {"langgraph_node": "agent", "langgraph_step": 1, "langgraph_checkpoint_ns": "agent:t"}
    items = [
        ("updates", {"agent": {}}),  # another stream mode: skipped
        ("messages", (AIMessageChunk(content="a", id="m1"), meta)),  # a list of stream modes
        ((), (AIMessageChunk(content="b", id="m1"), meta)),  # subgraphs=True
        ((), "messages", (AIMessageChunk(content="c", id="m1"), meta)),  # both
        {"type": "messages", "ns": (), "data": (AIMessageChunk(content="d", id="m1"), meta)},  # version="v2"
        {"type": "values", "ns": (), "data": {}, "interrupts": ()},
        (AIMessageChunk(content="e", id="m1"), True),  # AgentScope Runtime's (chunk, is_last)
        AIMessageChunk(content="bare", id="m2"),  # bare chunks end when the next message begins
        AIMessage(content="whole", id="m3"),
    ]
    events, terminal = adapt(items)
    assert [m["content"][0]["text"] for m in terminal["output"]] == ["abcde", "bare", "whole"]
    assert [e["text"] for e in events if e["object"] == "content" and e["delta"]] == ["a", "b", "c", "d", "e", "bare", "whole"]


def test_concurrent_model_calls_of_one_step_are_not_cut_by_each_other():
    def meta(step: int, node: str) -> dict:
        return {"langgraph_node": node, "langgraph_step": step, "langgraph_checkpoint_ns": f"{node}:x"}

    events, terminal = adapt(
        [
            (AIMessageChunk(content="a1", id="A"), meta(1, "left")),
            (AIMessageChunk(content="b1", id="B"), meta(1, "right")),
            (AIMessageChunk(content=" a2", id="A"), meta(1, "left")),
            (AIMessageChunk(content=" b2", id="B", chunk_position="last"), meta(1, "right")),
            (AIMessageChunk(content=" a3", id="A"), meta(1, "left")),  # no last chunk: ends with its step
            (ToolMessage(content="done", tool_call_id="t", name="tool", id="T"), meta(2, "tools")),
        ]
    )
    assert [(m["type"], m["content"][0].get("text")) for m in terminal["output"]] == [
        ("message", "b1 b2"),
        ("message", "a1 a2 a3"),
        ("plugin_call_output", None),
    ]
    assert len([e for e in events if e["object"] == "message" and e["status"] == "in_progress"]) == 3


def test_parallel_tool_calls_stream_side_by_side_and_usage_sent_in_pieces_is_summed():
    chunk = AIMessageChunk
    _, terminal = adapt(
        [
            chunk(content="", id="m", usage_metadata={"input_tokens": 7, "output_tokens": 0, "total_tokens": 7}),
            chunk(content="", id="m", tool_call_chunks=[{"name": "weather", "id": "a", "args": '{"city": ', "index": 0}]),
            chunk(content="", id="m", tool_call_chunks=[{"name": "weather", "id": "b", "args": '{"city": "Rome"}', "index": 1}]),
            chunk(content="", id="m", tool_call_chunks=[{"name": None, "id": None, "args": '"Oslo"}', "index": 0}]),
            chunk(content="", id="m", chunk_position="last", usage_metadata={"input_tokens": 0, "output_tokens": 4, "total_tokens": 4}),
            AIMessage(content=[{"type": "text", "text": "Here:"}, {"type": "image", "url": "https://example.com/map.png"}], id="n"),
        ]
    )
    a, b, shown = terminal["output"]
    assert [m["content"][0]["data"] for m in (a, b)] == [
        {"call_id": "a", "name": "weather", "arguments": '{"city": "Oslo"}'},
        {"call_id": "b", "name": "weather", "arguments": '{"city": "Rome"}'},
    ]
    assert a["usage"] == b["usage"] == {"input_tokens": 7, "output_tokens": 4, "total_tokens": 11}
    assert [(c["type"], c.get("text") or c.get("image_url")) for c in shown["content"]] == [("text", "Here:"), ("image", "https://example.com/map.png")]


def test_anthropic_style_thinking_blocks_and_a_failing_tool():
    _, terminal = adapt(
        [
            AIMessageChunk(content=[{"type": "thinking", "thinking": "hmm", "index": 0}], id="r"),
            AIMessageChunk(content=[{"type": "text", "text": "ok", "index": 1}], id="r", chunk_position="last"),
            ToolMessage(content=[{"type": "text", "text": "Error: "}, {"type": "text", "text": "boom"}], tool_call_id="c", name="t", status="error"),
        ]
    )
    output = terminal["output"]
    assert [m["type"] for m in output] == ["reasoning", "message", "plugin_call_output"]
    assert output[0]["content"][0]["text"] == "hmm"
    assert output[2]["content"][0]["data"] == {"call_id": "c", "name": "t", "output": "Error: boom", "is_error": True}


def test_a_failing_graph_ends_failed_and_strings_are_refused_with_a_hint(serve, monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    app = AgentApp()

    @app.query(framework="langgraph")
    async def handler(self, msgs, request=None, **kwargs):
        yield AIMessageChunk(content="partial", id="x")
        raise RuntimeError("the graph broke")

    terminal = check_protocol(read_events(f"{serve(app)}/process", user_body()))
    assert terminal["status"] == "failed" and "the graph broke" in terminal["error"]["message"]

    with pytest.raises(TypeError, match="framework='text'"):
        adapt(["plain text"])


# -- a stop sent to another instance --------------------------------------------------------------
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


@pytest.fixture
def pair(redis_server) -> Iterator[tuple[Node, Node]]:
    env = {"AGENTPACK_TEST_FRAMEWORK": "langgraph"}
    with ThreadPoolExecutor(2) as pool:  # each node takes seconds to import LangGraph: start them together
        nodes = list(pool.map(lambda _: Node(redis_server.url, app="tests/nodes/framework_node.py", env=env), range(2)))
    yield nodes[0], nodes[1]
    for node in nodes:
        node.close()


def test_a_stop_sent_to_another_instance_cancels_the_graph_and_its_tool_call(pair, redis_server):
    a, b = pair
    redis = redis_server.client()
    reader = Reader(f"{a.url}/process", user_body("weather in Paris?", session_id="lg-stop", user_id="u"))
    reader.start()
    wait_until(lambda: redis.get("tool:lg-stop") == "started", 30, lambda: f"the tool never started: {reader.text[-2000:]}")
    assert b.stop_session("lg-stop").json()["stopped"] is True
    events = reader.events()
    terminal = check_protocol(events)
    assert terminal["status"] == "canceled"
    assert [(m["type"], m["status"]) for m in terminal["output"]] == [("message", "completed"), ("plugin_call", "completed")]
    assert terminal["output"][1]["content"][0]["data"]["name"] == "wait_for_ever"
    wait_until(lambda: redis.get("tool:lg-stop") == "cancelled", 10, "the tool call was not cancelled")
    assert redis.keys("agentpack:{*:lease") == []
