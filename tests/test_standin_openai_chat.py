"""The OpenAI Chat Completions stand-in, driven by the official ``openai`` client over loopback.

What is pinned down: the stream is what OpenAI sends (chunk shapes, the role first, reasoning,
text and tool-call arguments in pieces, the finish chunk, the usage chunk, ``[DONE]``), the
non-streamed answer and the model list parse into the SDK's own types, every request rule the
stand-in states is enforced with the SDK's real exception carrying ``param`` and ``code``, and
the scripting (function or list of replies, holding a stream, injected errors) works as documented.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterator

import openai
import pytest

from tests.standins.openai_chat import OpenAIChatStandIn, Reply, ToolCall, tool_then_answer
from tests.support import wait_until, http

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
MODEL = "stand-in-model"


@pytest.fixture
def stand_in() -> Iterator[OpenAIChatStandIn]:
    script = tool_then_answer("get_weather", {"city": "Paris"}, "It is sunny today.", reasoning="I need the weather.",
                              call_id="call_weather_1")
    with OpenAIChatStandIn(script) as server:
        yield server


def client(stand_in: OpenAIChatStandIn, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=stand_in.base_url, api_key="test-key", max_retries=0, **kwargs)


def raw_frames(stand_in: OpenAIChatStandIn, body: dict) -> list[str]:
    """The ``data:`` payloads of one streamed answer, as sent."""
    with http.stream("POST", f"{stand_in.base_url}/chat/completions", json=body,
                      headers={"Authorization": "Bearer k"}, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_a_tool_call_streams_as_openai_streams_it(stand_in):
    chunks = list(client(stand_in).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL],
        stream=True, stream_options={"include_usage": True},
    ))
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.created for c in chunks}) == 1
    assert {c.model for c in chunks} == {MODEL}
    *choices, usage_chunk = chunks
    deltas = [c.choices[0].delta for c in choices]
    assert deltas[0].role == "assistant" and all(d.role is None for d in deltas[1:])
    # reasoning first, as DeepSeek / DashScope send it: reasoning_content with content null
    assert [d.model_extra.get("reasoning_content") for d in deltas[:4]] == ["I", " need", " the", " weather."]
    assert all(d.content is None for d in deltas[:4])
    head = deltas[4].tool_calls[0]
    assert (head.index, head.id, head.type, head.function.name, head.function.arguments) == (0, "call_weather_1", "function", "get_weather", "")
    pieces = [d.tool_calls[0] for d in deltas[5:-1]]
    assert len(pieces) == 3 and all(p.id is None and p.function.name is None and p.index == 0 for p in pieces)
    assert json.loads("".join(p.function.arguments for p in pieces)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in choices] == [None] * (len(choices) - 1) + ["tool_calls"]
    assert choices[-1].choices[0].delta.content is None and choices[-1].choices[0].delta.tool_calls is None
    # include_usage: usage null on every chunk, then one chunk with no choices and the usage
    assert all(c.usage is None for c in choices)
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens_details.reasoning_tokens == 4
    assert usage_chunk.usage.total_tokens == usage_chunk.usage.prompt_tokens + usage_chunk.usage.completion_tokens


def test_text_streams_word_by_word_and_the_stream_ends_with_done(stand_in):
    body = {"model": MODEL, "stream": True, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_weather_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_weather_1", "content": "sunny"},
    ]}
    frames = raw_frames(stand_in, body)
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert "usage" not in chunks[0]  # no usage key unless stream_options.include_usage
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:-1]] == ["It", " is", " sunny", " today."]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    call = stand_in.completions()[-1]
    assert call.done and call.chunks == chunks
    assert call.request.tool_results()[0]["content"] == "sunny"


def test_a_non_streamed_answer_is_a_chat_completion(stand_in):
    sdk = client(stand_in)
    first = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL])
    assert first.object == "chat.completion" and first.choices[0].finish_reason == "tool_calls"
    message = first.choices[0].message
    assert message.role == "assistant" and message.content is None
    assert message.model_extra["reasoning_content"] == "I need the weather."
    (call,) = message.tool_calls
    assert (call.id, call.type, call.function.name, json.loads(call.function.arguments)) == ("call_weather_1", "function", "get_weather", {"city": "Paris"})
    history = [{"role": "user", "content": "Weather?"}, message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = sdk.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "It is sunny today." and second.choices[0].finish_reason == "stop"
    assert second.usage.total_tokens == second.usage.prompt_tokens + second.usage.completion_tokens


def test_models_are_listed_and_an_unknown_model_is_404(stand_in):
    sdk = client(stand_in)
    assert [m.id for m in sdk.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}

REFUSED = {
    "empty messages": ({"messages": []}, "messages", "empty_array"),
    "unknown role": ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "invalid_value"),
    "user without content": ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    "assistant with neither content nor tool calls": (
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}, "messages[1].content", "missing_required_parameter"),
    "tool result without a call": (
        {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]}, "messages[1].role", None),
    "tool result for another call": (
        {"messages": [{"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "call_2", "content": "x"}]},
        "messages[1].role", None),
    "tool result without tool_call_id": (
        {"messages": [{"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "content": "x"}]},
        "messages[1].tool_call_id", "missing_required_parameter"),
    "a call left unanswered": (
        {"messages": [{"role": "assistant", "tool_calls": [CALL]}, {"role": "user", "content": "and?"}]}, "messages", "invalid_value"),
    "a call's arguments not a string": (
        {"messages": [{"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {}}}]},
                      {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
        "messages[0].tool_calls[0].function.arguments", "invalid_type"),
    "an image in a system message": ({"messages": [{"role": "system", "content": [IMAGE]}]}, "messages[0].content[0].type", "invalid_value"),
    "an image without a url": (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        "messages[0].content[0].image_url.url", "missing_required_parameter"),
    "an unknown part type": ({"messages": [{"role": "user", "content": [{"type": "video", "video": "x"}]}]},
                             "messages[0].content[0].type", "invalid_value"),
    "a tool that is not a function": ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "retrieval"}]},
                                      "tools[0].type", "invalid_value"),
    "a function without a name": ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {}}]},
                                  "tools[0].function.name", "missing_required_parameter"),
    "a function name with a space": (
        {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "get weather"}}]},
        "tools[0].function.name", "invalid_value"),
    "tool_choice naming no listed tool": (
        {"messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER_TOOL],
         "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice", None),
    "stream_options without stream": ({"messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}},
                                      "stream_options", "invalid_value"),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_requests_against_the_api_are_refused_with_openais_error(stand_in, case):
    body, param, code = REFUSED[case]
    kwargs = {k: v for k, v in body.items()}
    with pytest.raises(openai.BadRequestError) as caught:
        client(stand_in).chat.completions.create(model=MODEL, **kwargs)
    error = caught.value
    assert error.status_code == 400 and error.type == "invalid_request_error"
    assert error.param == param and error.code == code
    assert stand_in.calls[-1].status == 400 and stand_in.calls[-1].error == error.body
    assert stand_in.completions() == []


def test_what_the_sdk_cannot_send_is_refused_too(stand_in):
    url = f"{stand_in.base_url}/chat/completions"
    auth = {"Authorization": "Bearer k"}
    missing_model = http.post(url, json={"messages": [{"role": "user", "content": "hi"}]}, headers=auth)
    assert missing_model.status_code == 400 and missing_model.json()["error"]["param"] == "model"
    not_json = http.post(url, content=b"{nope", headers={**auth, "Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
    unknown = http.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temprature": 1}, headers=auth)
    assert unknown.status_code == 400 and "temprature" in unknown.json()["error"]["message"]
    no_key = http.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert no_key.status_code == 401 and set(no_key.json()["error"]) == {"message", "type", "param", "code"}
    assert http.get(f"{stand_in.base_url}/engines", headers=auth).status_code == 404


def test_an_api_key_is_checked_when_set():
    with OpenAIChatStandIn([Reply(text="hi")], api_key="sk-right") as stand_in:
        with pytest.raises(openai.AuthenticationError) as caught:
            openai.OpenAI(base_url=stand_in.base_url, api_key="sk-wrong", max_retries=0).models.list()
        assert caught.value.code == "invalid_api_key"
        answer = openai.OpenAI(base_url=stand_in.base_url, api_key="sk-right").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "hi"
        assert stand_in.completions()[0].headers["authorization"] == "Bearer sk-right"


def test_a_list_script_answers_in_order_and_says_when_it_runs_out():
    replies = [Reply(text=["Hel", "lo"], usage={"prompt_tokens": 3, "completion_tokens": 2}),
               Reply(tool_calls=[ToolCall("a", {"x": 1}, id="c1"), ToolCall("b", "{}", id="c2")]),
               Reply(error=(429, "rate_limit_exceeded", "slow down"))]
    with OpenAIChatStandIn(replies) as stand_in:
        sdk = client(stand_in)
        first = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert first.choices[0].message.content == "Hello"
        assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.total_tokens) == (3, 2, 5)
        chunks = list(sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True))
        heads = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or [] if tc.id]
        assert [(h.index, h.id, h.function.name) for h in heads] == [(0, "c1", "a"), (1, "c2", "b")]
        with pytest.raises(openai.RateLimitError) as limited:
            sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert limited.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert [c.request.text_of() for c in stand_in.completions()] == ["hi", "hi"]


def test_a_held_stream_waits_for_release_and_a_client_that_leaves_is_seen():
    with OpenAIChatStandIn(lambda request: Reply(text="one two three four", hold_after=2)) as stand_in:
        stream = client(stand_in).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
        received = [next(stream), next(stream)]
        assert stand_in.holding.wait(10)
        assert [c.choices[0].delta.content for c in received] == ["one", " two"]
        assert len(stand_in.completions()[0].chunks) == 2  # nothing more was sent while held
        stream.close()  # the client leaves mid-stream
        stand_in.release()
        wait_until(lambda: stand_in.calls[0].disconnected, 10, "the stand-in never noticed the client left")
        assert not stand_in.calls[0].done
        # released: later streams are not held
        rest = list(client(stand_in).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in rest) == "one two three four"


def test_a_script_that_raises_is_a_500_naming_the_error():
    def broken(request):
        raise KeyError("oops")

    with OpenAIChatStandIn(broken) as stand_in:
        with pytest.raises(openai.InternalServerError) as caught:
            client(stand_in).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert "KeyError" in caught.value.message


def test_images_are_accepted_as_urls_and_data_uris(stand_in):
    data_uri = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
    client(stand_in).chat.completions.create(model=MODEL, messages=[
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE, data_uri]}])
    parts = stand_in.requests()[0].messages[1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]


def test_concurrent_streams_are_served_independently():
    with OpenAIChatStandIn(lambda r: Reply(text=r.text_of())) as stand_in:
        results: dict[int, str] = {}

        def ask(n: int) -> None:
            chunks = client(stand_in).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"n {n}"}], stream=True)
            results[n] = "".join(c.choices[0].delta.content or "" for c in chunks)

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert results == {n: f"n {n}" for n in range(4)}
