"""Pure protocol pieces: the builder's bookkeeping and the SSE encoding."""

from __future__ import annotations

import json

import pytest

from agentpack.protocol.events import ResponseBuilder
from agentpack.protocol.sse import _dumps, encode_event


@pytest.mark.parametrize("text", ["plain", "", 'quo"te \\ back', "new\nline\ttab", "ünïcødé 中文 🚀", "\x00\x1f control", "%d %s"])
def test_text_delta_fast_path_is_byte_identical(text):
    builder = ResponseBuilder(session_id="s")
    msg, _ = builder.open_message()
    event = builder.stamp(builder.delta(msg, msg.new_content("text"), {"text": text}))
    generic = b"data: " + _dumps(event).encode("utf-8") + b"\n\n"
    assert encode_event(event) == generic
    assert json.loads(encode_event(event)[6:])["text"] == text


def test_sequence_numbers_are_given_at_send_time():
    builder = ResponseBuilder()
    first = builder.created()
    second = builder.in_progress()
    builder.stamp(second)
    builder.stamp(first)
    assert (second["sequence_number"], first["sequence_number"]) == (0, 1)


def test_one_terminal_event_only():
    builder = ResponseBuilder()
    builder.completed()
    with pytest.raises(RuntimeError, match="exactly one terminal"):
        builder.canceled()


def test_output_holds_only_messages_that_were_sent():
    builder = ResponseBuilder()
    sent, _ = builder.open_message()
    unsent, _ = builder.open_message()
    for event in builder.complete_message(sent):
        builder.stamp(event)
    builder.complete_message(unsent)  # built but never stamped (the run was stopped)
    terminal = builder.canceled()
    assert [m["id"] for m in terminal["output"]] == [sent.id]


def test_deltas_accumulate_into_the_completed_content():
    builder = ResponseBuilder()
    msg, _ = builder.open_message()
    item = msg.new_content("text")
    builder.delta(msg, item, {"text": "Hel"})
    builder.delta(msg, item, {"text": "lo"})
    image = msg.new_content("image")
    builder.delta(msg, image, {"image_url": "a.png"})
    events = builder.complete_message(msg)
    assert [e["object"] for e in events] == ["content", "content", "message"]
    assert events[0]["text"] == "Hello" and events[1]["image_url"] == "a.png"
    assert events[2]["content"] == events[:2]
