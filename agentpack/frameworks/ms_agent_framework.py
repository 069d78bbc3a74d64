"""``framework="ms_agent_framework"``: the handler runs a Microsoft Agent Framework agent and yields
its streamed updates.

::

    @app.query(framework="ms_agent_framework")
    async def handler(self, msgs, request=None, **kwargs):
        async for update in agent.run(msgs, stream=True):
            yield update

Written against agent-framework-core 1.x (checked on 1.23), where messages are
``agent_framework.Message`` with unified ``Content`` items told apart by ``content.type``, and
``Agent.run(..., stream=True)`` streams ``AgentResponseUpdate`` objects (the 1.0 previews'
``ChatMessage``, ``TextContent``… and ``run_stream`` are gone).

**msgs** is a list of ``agent_framework.Message``, one per Agent API message:

* text items -> ``Content.from_text``; ``data`` items -> their JSON as text; refusals -> text;
* image / audio / video / file items -> ``Content.from_uri(url, media_type=…)`` (a ``data:`` URI
  becomes a ``data`` content, anything else a ``uri`` content; the media type comes from the URI,
  the audio ``format``, or the file name, and is ``image/*``-style when unknown);
* ``plugin_call`` / ``function_call`` / ``mcp_call`` (data ``{call_id, name, arguments}``) ->
  ``Content.from_function_call`` in an ``assistant`` message; consecutive calls (parallel tool
  calls) share one message;
* ``plugin_call_output`` / ``function_call_output`` / ``mcp_call_output`` (data ``{call_id,
  output}``) -> ``Content.from_function_result`` in a ``tool`` message;
* ``reasoning`` -> ``Content.from_text_reasoning`` in an ``assistant`` message (what a chat client
  does with it is the client's business: ``OpenAIChatCompletionClient`` sends it back as assistant
  text);
* a ``tool``-role message that is not a call output becomes a system message (as with agentscope).
Each message keeps the Agent API message id as ``message_id``.

**Yields** are ``AgentResponseUpdate`` (or ``ChatResponseUpdate``) objects; an ``AgentResponse``
(``await agent.run(msgs)``) is accepted too.  A model call is recognised by the updates'
``message_id`` (the chat client puts the provider's completion id there):

* ``text`` -> text deltas of a ``message``; ``text_reasoning`` (with text) -> text deltas of a
  separate ``reasoning`` message, completed when the answer or a tool call starts;
* ``function_call`` -> a ``plugin_call`` message with data ``{call_id, name, arguments}``, streamed:
  each piece of arguments sends a data delta carrying the arguments so far (pieces are matched by
  ``call_id``, else by the client's ``tool_call_index``);
* ``function_result`` -> a ``plugin_call_output`` message (role ``tool``) with data ``{call_id,
  name, output}`` — a string result as it is, anything else as JSON;
* ``mcp_server_tool_call`` / ``mcp_server_tool_result`` -> ``mcp_call`` / ``mcp_call_output``;
* ``data`` / ``uri`` contents of the answer -> image / audio / video / file contents of the
  ``message``;
* ``usage`` -> the ``usage`` (``input_tokens``, ``output_tokens``, ``total_tokens``,
  ``reasoning_tokens`` when known) of the model call's messages still open, and of those it opens
  later (``Agent.run`` reports the run's usage so far);
* ``error`` -> raised as :class:`AgentFrameworkError`; an exception from the stream is not caught.

A model call's messages are completed once its stream is over (its finish reason and its usage
have arrived), at the latest when the next model call starts, a tool result arrives or the
handler ends.

A stop cancels the handler's task, and with it the agent's stream and its running tools: the
function-invocation loop runs a turn's tool calls as tasks and cancels them all when it is
interrupted.  A *sync* tool runs in a worker thread, which Python cannot interrupt: the run ends at
once, the thread finishes on its own.

This module imports agent_framework only when converting (``prepare()`` at start-up, or the first
request).
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agentpack.frameworks.base import TextStream, switch_text_stream
from agentpack.protocol.events import OpenContent, OpenMessage, ResponseBuilder
from agentpack.protocol.schemas import AgentRequest, MessageType

CALL_TYPES = (MessageType.PLUGIN_CALL, MessageType.FUNCTION_CALL, MessageType.MCP_CALL)
OUTPUT_TYPES = (MessageType.PLUGIN_CALL_OUTPUT, MessageType.FUNCTION_CALL_OUTPUT, MessageType.MCP_CALL_OUTPUT)


class AgentFrameworkError(RuntimeError):
    """The agent reported an ``error`` content."""


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    elif hasattr(value, "model_dump"):
        value = value.model_dump()
    return json.dumps(value, ensure_ascii=False, default=str)


def _call_data(message: Any) -> dict[str, Any]:
    for item in message.content or []:
        if item.type == "data" and isinstance(item.data, dict):
            return item.data
    return {}


# -- request -> msgs ---------------------------------------------------------------------------------


def _media_type(url: str, kind: str, fmt: str | None = None, filename: str | None = None) -> str | None:
    if url.startswith("data:"):
        return None  # the URI says it
    if fmt:
        return fmt if "/" in fmt else f"{kind}/{fmt}"
    guessed = mimetypes.guess_type(filename or url.split("?", 1)[0])[0]
    if guessed:
        return guessed
    return "application/octet-stream" if kind == "application" else f"{kind}/*"


def _contents(content_class: Any, items: list[Any]) -> list[Any]:
    contents: list[Any] = []
    for item in items:
        kind = item.type
        if kind == "text" and item.text is not None:
            contents.append(content_class.from_text(item.text))
        elif kind == "refusal" and item.refusal:
            contents.append(content_class.from_text(item.refusal))
        elif kind == "data" and item.data is not None:
            contents.append(content_class.from_text(json.dumps(item.data, ensure_ascii=False)))
        elif kind == "image" and item.image_url:
            contents.append(content_class.from_uri(item.image_url, media_type=_media_type(item.image_url, "image")))
        elif kind == "audio" and item.data:
            contents.append(content_class.from_uri(item.data, media_type=_media_type(item.data, "audio", item.format)))
        elif kind == "video" and item.video_url:
            contents.append(content_class.from_uri(item.video_url, media_type=_media_type(item.video_url, "video")))
        elif kind == "file" and (item.file_url or item.file_data):
            url = item.file_url or item.file_data
            contents.append(
                content_class.from_uri(
                    url, media_type=_media_type(url, "application", filename=item.filename), name=item.filename
                )
            )
    return contents


def request_to_agent_framework(request: AgentRequest) -> list[Any]:
    """The request's messages as ``agent_framework.Message`` objects (see the module docstring)."""
    from agent_framework import Content, Message

    msgs: list[Any] = []
    calling: Any = None  # the assistant message collecting consecutive tool calls
    for message in request.input:
        kind = message.type
        if kind in CALL_TYPES:
            data = _call_data(message)
            call = Content.from_function_call(
                data.get("call_id") or message.id,
                data.get("name") or "",
                arguments=_json_text(data.get("arguments") or "{}"),
            )
            if calling is None:
                calling = Message("assistant", [], message_id=message.id)
                msgs.append(calling)
            calling.contents.append(call)
            continue
        calling = None
        if kind in OUTPUT_TYPES:
            data = _call_data(message)
            result = Content.from_function_result(data.get("call_id") or "", result=_json_text(data.get("output", "")))
            msgs.append(Message("tool", [result], message_id=message.id))
        elif kind == MessageType.REASONING:
            text = "\n".join(item.text for item in message.content or [] if item.type == "text" and item.text)
            msgs.append(Message("assistant", [Content.from_text_reasoning(text=text)], message_id=message.id))
        else:
            role = "system" if message.role == "tool" else message.role
            msgs.append(Message(role, _contents(Content, list(message.content or [])), message_id=message.id))
    return msgs


# -- yields -> events ----------------------------------------------------------------------------------


def _usage(details: Any) -> dict[str, int] | None:
    if not details:
        return None
    get = details.get if hasattr(details, "get") else (lambda key, default=None: getattr(details, key, default))
    usage = {
        "input_tokens": int(get("input_token_count") or 0),
        "output_tokens": int(get("output_token_count") or 0),
    }
    usage["total_tokens"] = int(get("total_token_count") or usage["input_tokens"] + usage["output_tokens"])
    reasoning = get("reasoning_output_token_count")
    if reasoning:
        usage["reasoning_tokens"] = int(reasoning)
    return usage


@dataclass
class _Call:
    msg: OpenMessage
    item: OpenContent
    call_id: str
    name: str
    arguments: str = ""


@dataclass
class _State:
    key: Any = None  # the current model call's message_id
    text: TextStream | None = None
    reasoning: TextStream | None = None
    messages: list[OpenMessage] = field(default_factory=list)  # assistant messages of the current model call
    calls: dict[Any, _Call] = field(default_factory=dict)  # open tool calls of the current model call
    last_call: _Call | None = None
    usage: dict[str, int] | None = None
    finishing: bool = False  # the current model call reported its finish reason
    names: dict[str, str] = field(default_factory=dict)  # call_id -> tool name, for the results


def _tool_call_index(content: Any) -> int | None:
    props = getattr(content, "additional_properties", None) or {}
    index = props.get("tool_call_index")
    if index is None and isinstance(props.get("openai"), dict):
        index = props["openai"].get("tool_call_index")
    return index if isinstance(index, int) else None


def _updates(item: Any) -> list[Any]:
    """The update-shaped parts of a yielded item: an update itself, or an AgentResponse's messages."""
    if hasattr(item, "contents"):
        return [item]
    messages = getattr(item, "messages", None)
    if isinstance(messages, list):
        parts = list(messages)
        usage = getattr(item, "usage_details", None)
        if usage:
            from agent_framework import Content

            parts.append(
                _Usage(
                    Content.from_usage(usage_details=usage),
                    getattr(messages[-1], "message_id", None) if messages else None,
                )
            )
        return parts
    hint = " (use framework='text' to stream plain strings)" if isinstance(item, str) else ""
    raise TypeError(
        f"a framework='ms_agent_framework' handler must yield AgentResponseUpdate objects, got {type(item).__name__}{hint}"
    )


@dataclass
class _Usage:
    """An AgentResponse's usage, seen as one more update."""

    content: Any
    message_id: Any
    role: str = "assistant"
    finish_reason: Any = None

    @property
    def contents(self) -> list[Any]:
        return [self.content]


class AgentFrameworkFramework:
    name = "ms_agent_framework"

    async def prepare(self) -> None:
        import agent_framework  # noqa: F401 - imported once, at start-up

    def to_msgs(self, request: AgentRequest) -> list[Any]:
        return request_to_agent_framework(request)

    async def adapt(self, items: AsyncIterator[Any], builder: ResponseBuilder) -> AsyncGenerator[dict[str, Any], None]:
        state = _State()
        async for item in items:
            for update in _updates(item):
                for event in self._update(update, state, builder):
                    yield event
        for event in self._end_call(state, builder):
            yield event

    # -- one update --------------------------------------------------------------------------------
    def _update(self, update: Any, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        role = getattr(update, "role", None) or "assistant"
        key = getattr(update, "message_id", None)
        contents = list(getattr(update, "contents", None) or [])
        if role != "tool" and key is not None and key != state.key and any(c.type != "usage" for c in contents):
            events.extend(self._end_call(state, builder))  # a new model call
            state.key = key
        for content in contents:
            kind = content.type
            if kind == "text":
                if content.text:
                    stream = self._text_stream(state, builder, False, events)
                    events.append(builder.delta(stream.msg, stream.item, {"text": content.text}))
            elif kind == "text_reasoning":
                if content.text:
                    stream = self._text_stream(state, builder, True, events)
                    events.append(builder.delta(stream.msg, stream.item, {"text": content.text}))
            elif kind == "function_call":
                events.extend(self._function_call(content, state, builder))
            elif kind == "function_result":
                events.extend(self._end_call(state, builder))
                events.extend(
                    self._output(
                        MessageType.PLUGIN_CALL_OUTPUT, content.call_id or "", self._result(content), state, builder
                    )
                )
            elif kind == "mcp_server_tool_call":
                events.extend(self._close_text(state, builder))
                data = {
                    "call_id": content.call_id or "",
                    "name": content.tool_name or "",
                    "arguments": _json_text(content.arguments if content.arguments is not None else {}),
                    "server_label": content.server_name,
                }
                state.names[content.call_id or ""] = content.tool_name or ""
                msg, started = self._open(state, builder, MessageType.MCP_CALL)
                events.append(started)
                events.append(builder.delta(msg, msg.new_content("data"), {"data": data}))
                events.extend(builder.complete_message(msg))
            elif kind == "mcp_server_tool_result":
                events.extend(
                    self._output(MessageType.MCP_CALL_OUTPUT, content.call_id or "", content.output, state, builder)
                )
            elif kind == "usage":
                events.extend(self._usage(content, state, builder))
            elif kind == "error":
                code = f"{content.error_code}: " if content.error_code else ""
                raise AgentFrameworkError(
                    f"{code}{content.message or content.error_details or 'the agent reported an error'}"
                )
            elif kind in ("data", "uri") and content.uri:
                events.extend(self._media(content, state, builder))
        if getattr(update, "finish_reason", None):
            state.finishing = True
        return events

    def _open(
        self, state: _State, builder: ResponseBuilder, kind: str, role: str = "assistant"
    ) -> tuple[OpenMessage, dict[str, Any]]:
        msg, event = builder.open_message(kind, role)
        if role == "assistant":
            msg.usage = state.usage
            state.messages.append(msg)
        return msg, event

    def _text_stream(
        self, state: _State, builder: ResponseBuilder, reasoning: bool, events: list[dict[str, Any]]
    ) -> TextStream:
        return switch_text_stream(state, reasoning, lambda kind: self._open(state, builder, kind), builder, events)

    def _media(self, content: Any, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        stream = self._text_stream(state, builder, False, events)
        media_type = content.media_type or ""
        uri = content.uri
        if media_type.startswith("image/"):
            kind, payload = "image", {"image_url": uri}
        elif media_type.startswith("audio/"):
            kind, payload = "audio", {"data": uri, "format": media_type.split("/", 1)[1] or None}
        elif media_type.startswith("video/"):
            kind, payload = "video", {"video_url": uri}
        else:
            kind, payload = "file", {"file_url": uri, "filename": getattr(content, "name", None)}
        events.append(builder.delta(stream.msg, stream.msg.new_content(kind), payload))
        return events

    def _function_call(self, content: Any, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        call_id = content.call_id or ""
        index = _tool_call_index(content)
        call = state.calls.get(call_id) if call_id else None
        if call is None and index is not None:
            call = state.calls.get(("index", index))
        if call is None and not call_id and index is None:
            call = state.last_call
        if call is None:
            events.extend(self._close_text(state, builder))  # the model moved on to tool calls
            msg, started = self._open(state, builder, MessageType.PLUGIN_CALL)
            events.append(started)
            call = _Call(msg, msg.new_content("data"), call_id, content.name or "")
            if call_id:
                state.calls[call_id] = call
            if index is not None:
                state.calls[("index", index)] = call
        state.last_call = call
        if content.name and not call.name:
            call.name = content.name
        if call_id and not call.call_id:
            call.call_id = call_id
            state.calls[call_id] = call
        arguments = content.arguments
        if isinstance(arguments, str):
            call.arguments += arguments
        elif arguments is not None:  # a whole mapping (non-streamed clients)
            call.arguments = _json_text(arguments)
        state.names[call.call_id] = call.name
        if call.msg.completed:
            return events
        data = {"call_id": call.call_id, "name": call.name, "arguments": call.arguments}
        events.append(builder.delta(call.msg, call.item, {"data": data}))
        return events

    @staticmethod
    def _result(content: Any) -> Any:
        if content.result is not None:
            return content.result
        if content.exception:
            return content.exception
        return ""

    def _output(
        self, kind: str, call_id: str, result: Any, state: _State, builder: ResponseBuilder
    ) -> list[dict[str, Any]]:
        events = self._close_text(state, builder)
        msg, started = self._open(state, builder, kind, role="tool")
        events.append(started)
        data = {
            "call_id": call_id,
            "name": state.names.get(call_id, ""),
            "output": _json_text(result if result is not None else ""),
        }
        events.append(builder.delta(msg, msg.new_content("data"), {"data": data}))
        events.extend(builder.complete_message(msg))
        return events

    def _usage(self, content: Any, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        usage = _usage(getattr(content, "usage_details", None))
        if usage is None:
            return []
        state.usage = usage
        for msg in state.messages:
            if not msg.completed:
                msg.usage = usage
        if state.finishing:  # the model call is over: its messages are final
            return self._end_call(state, builder)
        return []

    # -- closing -----------------------------------------------------------------------------------
    @staticmethod
    def _close_text(state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for stream in (state.reasoning, state.text):
            if stream is not None and not stream.msg.completed:
                events.extend(builder.complete_message(stream.msg))
        state.reasoning = state.text = None
        return events

    def _end_call(self, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        """Complete everything the current model call left open."""
        events = self._close_text(state, builder)
        for call in state.calls.values():
            if not call.msg.completed:
                data = {"call_id": call.call_id, "name": call.name, "arguments": call.arguments}
                events.append(builder.complete_content(call.msg, call.item, {"data": data}))
                events.extend(builder.complete_message(call.msg))
        for msg in state.messages:
            if not msg.completed:
                events.extend(builder.complete_message(msg))
        state.messages, state.calls, state.last_call, state.finishing = [], {}, None, False
        return events


__all__ = ["AgentFrameworkError", "AgentFrameworkFramework", "request_to_agent_framework"]
