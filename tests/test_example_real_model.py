"""examples/real_model: the guide's agent on a real model's HTTP path — the official openai client
streaming from an OpenAI-compatible endpoint (the loopback stand-in), a tool call, history kept in
the session-history service across turns and instances, and a stop."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.standins.openai_chat import ChatRequest, OpenAIChatStandIn, Reply, ToolCall
from tests.support import ROOT, check_protocol, read_events, user_body, wait_until, http

EXAMPLE = ROOT / "examples" / "real_model" / "app.py"


def script(request: ChatRequest) -> Reply:
    """Asked the time: think, call the tool, then answer from its result; asked anything else:
    answer with how many earlier turns the model was shown (to check the history)."""
    if request.last["role"] == "tool":
        return Reply(text=["It", " is", f" {request.last['content'].split(' on ')[0]}", " in", " Paris."], usage={"prompt_tokens": 40, "completion_tokens": 6})
    asked = request.text_of()
    if "time" in asked:
        return Reply(reasoning=["The user", " wants the time."], tool_calls=[ToolCall("current_time", {"city": "Paris"}, "call_7")])
    if "hang" in asked:
        return Reply(text=["Let", " me", " think", " about", " it"], hold_after=3)
    earlier = [m for m in request.messages[1:-1] if m["role"] in ("user", "assistant")]
    return Reply(text=f"You said {len(earlier)} things before.")


@pytest.fixture
def model() -> Iterator[OpenAIChatStandIn]:
    with OpenAIChatStandIn(script, models=None) as stand_in:
        yield stand_in


def load_example(model: OpenAIChatStandIn, monkeypatch: pytest.MonkeyPatch, redis_url: str = "") -> Any:
    """A fresh copy of the example's module, configured for the stand-in (each call is one instance)."""
    monkeypatch.setenv("OPENAI_BASE_URL", model.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("MODEL", "friday-test")
    monkeypatch.setenv("REDIS_URL", redis_url)
    spec = importlib.util.spec_from_file_location(f"real_model_{id(object())}", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def test_a_question_streams_reasoning_a_tool_call_its_result_and_the_answer(serve, model, monkeypatch):
    url = serve(load_example(model, monkeypatch))
    events = read_events(f"{url}/process", user_body("What time is it in Paris?", session_id="s1", user_id="u1"))
    terminal = check_protocol(events)
    assert terminal["status"] == "completed"
    output = terminal["output"]
    assert [(m["type"], m["role"]) for m in output] == [
        ("reasoning", "assistant"),
        ("plugin_call", "assistant"),
        ("plugin_call_output", "tool"),
        ("message", "assistant"),
    ]
    assert output[0]["content"][0]["text"] == "The user wants the time."
    call = next(m for m in output if m["type"] == "plugin_call")["content"][0]["data"]
    assert (call["name"], call["call_id"]) == ("current_time", "call_7") and '"Paris"' in call["arguments"]
    result = next(m for m in output if m["type"] == "plugin_call_output")["content"][0]["data"]["output"]
    assert "in Paris" in result
    deltas = [e["text"] for e in events if e["object"] == "content" and e.get("delta") and e["msg_id"] == output[-1]["id"]]
    assert len(deltas) == 5 and "".join(deltas).endswith(" in Paris.")  # token by token
    assert terminal["usage"] == {"input_tokens": 40, "output_tokens": 6}
    second = model.requests()[1]
    assert second.last["role"] == "tool" and second.last["tool_call_id"] == "call_7"
    assert model.completions()[0].headers["authorization"] == "Bearer test-key"


def test_the_conversation_is_kept_across_turns_and_across_instances_on_redis(serve, model, monkeypatch, redis_server):
    first = serve(load_example(model, monkeypatch, redis_server.url))
    second = serve(load_example(model, monkeypatch, redis_server.url))
    body = {"session_id": "会话", "user_id": "用户"}
    read_events(f"{first}/process", user_body("Hello!", **body))
    events = read_events(f"{second}/process", user_body("And now?", **body))  # another instance
    assert check_protocol(events)["output"][-1]["content"][0]["text"] == "You said 2 things before."
    history = [(m["role"], m["content"]) for m in model.requests()[-1].messages]
    assert history[1:] == [("user", "Hello!"), ("assistant", "You said 0 things before."), ("user", "And now?")]


def test_a_stop_ends_the_answer_canceled_and_the_conversation_keeps_what_was_said(serve, model, monkeypatch):
    url = serve(load_example(model, monkeypatch))
    done: dict[str, list[dict]] = {}
    reader = threading.Thread(target=lambda: done.setdefault("events", read_events(f"{url}/process", user_body("hang on", session_id="s3", user_id="u3"))))
    reader.start()
    wait_until(model.holding.is_set, 20, "the model never started streaming")
    assert http.post(f"{url}/process/stop", json={"session_id": "s3", "user_id": "u3"}, timeout=10).json()["stopped"] is True
    reader.join(30)
    terminal = check_protocol(done["events"])
    assert terminal["status"] == "canceled"
    assert terminal["output"][-1]["status"] == "incomplete" and terminal["output"][-1]["content"][0]["text"] == "Let me think"
    model.release()  # the stand-in writes again, and finds the connection the agent closed
    wait_until(lambda: model.calls[-1].disconnected, 10, "the model's stream was left open")
    events = read_events(f"{url}/process", user_body("And?", session_id="s3", user_id="u3"))
    assert check_protocol(events)["output"][-1]["content"][0]["text"] == "You said 2 things before."
