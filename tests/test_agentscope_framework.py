"""framework="agentscope": cumulative (msg, last) yields become streamed protocol events."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from agentscope.message import Msg as AgentScopeMsg

from agentpack import AgentApp, Msg
from agentpack.frameworks import FrameworkNotAvailable, get_framework
from agentpack.frameworks.agentscope import AgentScopeFramework
from agentpack.protocol.events import ResponseBuilder
from tests.support import check_protocol, read_events, text_of, user_body, http

MSG_CLASSES = pytest.mark.parametrize("msg_class", [AgentScopeMsg, Msg], ids=["agentscope.Msg", "agentpack.Msg"])


def app_yielding(items) -> AgentApp:
    app = AgentApp()

    @app.query(framework="agentscope")
    async def handler(self, msgs, request=None, **kwargs):
        for item in items:
            yield item

    return app


@MSG_CLASSES
def test_cumulative_text_blocks_stream_only_what_is_new(serve, msg_class):
    msg = msg_class("Friday", [{"type": "text", "text": "Hel"}], "assistant")
    later = msg_class("Friday", [{"type": "text", "text": "Hello"}], "assistant")
    later.id = msg.id
    events = read_events(f"{serve(app_yielding([(msg, False), (later, True)]))}/process", user_body())
    terminal = check_protocol(events)
    assert [(e["object"], e["status"]) for e in events] == [
        ("response", "created"),
        ("response", "in_progress"),
        ("message", "in_progress"),
        ("content", "in_progress"),
        ("content", "in_progress"),
        ("content", "completed"),
        ("message", "completed"),
        ("response", "completed"),
    ]
    assert [e["text"] for e in events[3:5]] == ["Hel", "lo"]
    assert events[5]["text"] == "Hello"
    assert terminal["output"][0]["type"] == "message" and terminal["output"][0]["role"] == "assistant"


def test_string_content_is_streamed_as_it_grows(serve):
    gate = threading.Event()
    app = AgentApp()

    @app.query(framework="agentscope")
    async def handler(self, msgs, request=None, **kwargs):
        msg = AgentScopeMsg("Friday", "Once", "assistant")
        yield msg, False
        await asyncio.to_thread(gate.wait, 20)
        msg.content = "Once upon a time"
        yield msg, True

    url = serve(app)
    events = []
    with http.stream("POST", f"{url}/process", json=user_body(), timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                events.append(event)
                if event.get("text") == "Once" and event.get("delta"):
                    gate.set()  # the first piece arrived while the handler was still waiting
    assert gate.is_set()
    check_protocol(events)
    assert text_of(events) == "Once upon a time"


def test_thinking_tool_use_and_tool_result(serve):
    thinking = AgentScopeMsg("Friday", [{"type": "thinking", "thinking": "Need the weather."}], "assistant")
    call = AgentScopeMsg(
        "Friday",
        [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "assistant",
        metadata={"step": 1},
    )
    result = AgentScopeMsg(
        "system",
        [{"type": "tool_result", "id": "call_1", "name": "weather", "output": [{"type": "text", "text": "sunny"}]}],
        "system",
    )
    answer = AgentScopeMsg("Friday", [{"type": "text", "text": "It is sunny."}], "assistant")
    answer.usage = {"input_tokens": 3, "output_tokens": 4}
    items = [(thinking, True), (call, True), (result, True), (answer, True)]
    events = read_events(f"{serve(app_yielding(items))}/process", user_body())
    terminal = check_protocol(events)
    output = terminal["output"]
    assert [(m["type"], m["role"]) for m in output] == [
        ("reasoning", "assistant"),
        ("message", "assistant"),
        ("plugin_call", "assistant"),
        ("plugin_call_output", "tool"),
        ("message", "assistant"),
    ]
    assert output[0]["content"][0]["text"] == "Need the weather."
    assert output[1]["metadata"] == {"step": 1}
    call_data = output[2]["content"][0]
    assert call_data["type"] == "data"
    assert call_data["data"]["call_id"] == "call_1" and call_data["data"]["name"] == "weather"
    assert json.loads(call_data["data"]["arguments"]) == {"city": "Paris"}
    assert json.loads(output[3]["content"][0]["data"]["output"]) == [{"type": "text", "text": "sunny"}]
    assert output[4]["content"][0]["text"] == "It is sunny."
    assert output[4]["usage"] == {"input_tokens": 3, "output_tokens": 4}
    assert terminal["usage"] == {"input_tokens": 3, "output_tokens": 4}


def test_mcp_tool_call_type(serve):
    call = {"id": "m1", "content": [{"type": "tool_use", "id": "t", "name": "search", "input": {}, "tool_type": "mcp", "server_label": "docs"}]}
    events = read_events(f"{serve(app_yielding([(call, True)]))}/process", user_body())
    message = check_protocol(events)["output"][0]
    assert message["type"] == "mcp_call"
    assert message["content"][0]["data"]["server_label"] == "docs"


def test_media_blocks_become_media_contents(serve):
    msg = Msg(
        "Friday",
        [
            {"type": "text", "text": "Here you go"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "audio", "source": {"type": "base64", "media_type": "audio/wav", "data": "AAA="}},
        ],
        "assistant",
    )
    events = read_events(f"{serve(app_yielding([(msg, True)]))}/process", user_body())
    contents = check_protocol(events)["output"][0]["content"]
    assert [c["type"] for c in contents] == ["text", "image", "audio"]
    assert contents[1]["image_url"] == "https://example.com/a.png"
    assert contents[2]["data"] == "data:audio/wav;base64,AAA=" and contents[2]["format"] == "audio/wav"


def test_messages_left_open_are_completed_at_the_end(serve):
    msg = Msg("Friday", "never marked last", "assistant")
    terminal = check_protocol(read_events(f"{serve(app_yielding([(msg, False)]))}/process", user_body()))
    assert terminal["status"] == "completed"
    assert terminal["output"][0]["content"][0]["text"] == "never marked last"


def test_output_lists_messages_in_the_order_they_were_completed(serve):
    """AgentScope Runtime's own background-task test handler: three messages never marked
    last, then a final one marked last.  Each earlier message ends when the agent moves on."""
    steps = [(AgentScopeMsg("assistant", f"Thinking step {i}", "assistant"), False) for i in range(3)]
    final = (AgentScopeMsg("assistant", "Final answer", "assistant"), True)
    events = read_events(f"{serve(app_yielding([*steps, final]))}/process", user_body())
    terminal = check_protocol(events)
    completed = [e for e in events if e["object"] == "message" and e["status"] == "completed"]
    assert [m["id"] for m in terminal["output"]] == [m["id"] for m in completed]
    assert [m["content"][0]["text"] for m in terminal["output"]] == [
        "Thinking step 0",
        "Thinking step 1",
        "Thinking step 2",
        "Final answer",
    ]


def test_messages_streamed_concurrently_are_not_cut_by_each_other():
    """Two agents printing at once: a message still receiving chunks stays open until its own end."""

    async def run():
        builder = ResponseBuilder()
        a, b = Msg("a", "", "assistant"), Msg("b", "", "assistant")

        def chunk(msg, text):
            copy = Msg(msg.name, text, msg.role)
            copy.id = msg.id
            return copy

        async def items():
            yield chunk(a, "a1"), False
            yield chunk(b, "b1"), False
            yield chunk(a, "a1 a2"), False
            yield chunk(b, "b1 b2"), True
            yield chunk(a, "a1 a2 a3"), True

        events = [builder.stamp(e) async for e in AgentScopeFramework().adapt(items(), builder)]
        return events, builder.completed()

    events, terminal = asyncio.run(run())
    assert [m["content"][0]["text"] for m in terminal["output"]] == ["b1 b2", "a1 a2 a3"]
    assert len([e for e in events if e["object"] == "message" and e["status"] == "in_progress"]) == 2


def test_a_bare_string_fails_with_a_hint(serve, monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    terminal = check_protocol(read_events(f"{serve(app_yielding(['oops']))}/process", user_body()))
    assert terminal["status"] == "failed"
    assert "framework='text'" in terminal["error"]["message"]


def test_handler_gets_agentscope_messages(serve):
    app = AgentApp()
    seen = {}

    @app.query(framework="agentscope")
    async def handler(self, msgs, request=None, **kwargs):
        seen["types"] = {type(m).__name__ for m in msgs}
        seen["text"] = msgs[0].get_text_content()
        seen["roles"] = [m.role for m in msgs]
        yield AgentScopeMsg("Friday", "ok", "assistant"), True

    body = {
        "input": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "image_url": "https://x/y.png"}]},
            {"role": "tool", "content": "tool said"},
        ]
    }
    check_protocol(read_events(f"{serve(app)}/process", body))
    assert seen == {"types": {"Msg"}, "text": "hi", "roles": ["user", "system"]}


def test_rewritten_text_is_sent_again_and_completed_with_the_final_text():
    async def run():
        builder = ResponseBuilder()
        first = Msg("a", "abc", "assistant")
        second = Msg("a", "xyz", "assistant")
        second.id = first.id

        async def items():
            yield first, False
            yield second, True

        return [e async for e in AgentScopeFramework().adapt(items(), builder)]

    events = asyncio.run(run())
    deltas = [e["text"] for e in events if e["object"] == "content" and e["delta"]]
    assert deltas == ["abc", "xyz"]
    assert [e for e in events if e["object"] == "content" and e["status"] == "completed"][0]["text"] == "xyz"


def test_a_framework_whose_package_is_missing_fails_at_decoration_naming_its_extra(monkeypatch):
    import agentpack.frameworks as frameworks

    monkeypatch.setattr(frameworks, "_installed", lambda package: False)
    for name, extra in (("langgraph", "langgraph"), ("agno", "agno"), ("autogen", "autogen"), ("ms_agent_framework", "ms_agent_framework")):
        with pytest.raises(FrameworkNotAvailable, match=rf"pip install 'agentpack\[{extra}\]'"):
            AgentApp().query(framework=name)
    with pytest.raises(ValueError, match="unknown framework 'crewai'"):
        get_framework("crewai")
