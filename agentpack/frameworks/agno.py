"""``framework="agno"``: the handler runs an agno agent (or team) and yields its run events.

::

    @app.query(framework="agno")
    async def handler(self, msgs, request=None, **kwargs):
        async for event in agent.arun(input=msgs, stream=True, stream_events=True):
            yield event

**msgs** is a list of ``agno.models.message.Message`` — what ``Agent.arun(input=...)`` takes as
a conversation (agno appends the list to the run's messages, after the system prompt and any
session history agno keeps itself).  Real ``Message`` objects rather than OpenAI-style dicts,
because only they carry images, audio, video and files in the fields agno's model classes read
(a dict's ``content`` list would reach the model unchecked and bypass agno's media handling):

* user / system / assistant text -> ``Message(role, content=<the text items joined by newlines>)``;
  ``data`` items are added as JSON text, refusals as text;
* image / audio / video / file items -> ``images=[Image(url=…)]``, ``audio=[Audio(url=… | content=…)]``,
  ``videos=[Video(url=…)]``, ``files=[File(url=…)]`` of that message (``data:`` URIs are decoded
  into ``content`` bytes where agno wants bytes);
* ``plugin_call`` / ``function_call`` / ``mcp_call`` messages (data ``{call_id, name, arguments}``)
  -> one assistant ``Message(tool_calls=[{id, type: "function", function: {name, arguments}}])``;
  consecutive calls (parallel tool calls) share one assistant message, as the OpenAI format
  requires;
* ``plugin_call_output`` / ``function_call_output`` / ``mcp_call_output`` (data ``{call_id,
  output}``) -> ``Message(role="tool", tool_call_id=…, content=<output>)``;
* ``reasoning`` messages -> ``reasoning_content`` of the next assistant message (agno keeps it for
  display and does not send it to the model);
* a ``tool``-role message that is not a call output becomes a system message (as with agentscope).

**Yields** are agno's run events (agent or team: the ``Team…`` event names are read the same):

* ``RunContent`` ``content`` -> text deltas of a ``message``; ``reasoning_content`` -> text deltas
  of a separate ``reasoning`` message (completed as soon as the answer starts); a non-text
  ``content`` (structured output) -> a ``data`` content; an ``image`` -> an ``image`` content;
* ``ModelRequestStarted`` -> what follows belongs to a new model call: its text is a new message;
* ``ModelRequestCompleted`` -> ``usage``: the run's usage so far (``input_tokens``,
  ``output_tokens``, ``total_tokens``, ``reasoning_tokens`` when known, summed over the model calls
  reported), set on the call's messages still open and on every message opened after it (so the
  tool calls it asked for, and the answer's message at the end, carry it; the response's usage is
  the last message's, i.e. the whole run's);
* ``ToolCallStarted`` -> a ``plugin_call`` message with data ``{call_id, name, arguments}`` (agno
  reports a tool call once its arguments are complete, so they arrive whole, in one delta);
* ``ToolCallCompleted`` (and ``ToolCallError`` when no result was reported) -> a
  ``plugin_call_output`` message (role ``tool``) with data ``{call_id, name, output}`` — a string
  result as it is, anything else as JSON;
* ``RunContentCompleted`` / ``RunCompleted`` -> the open messages are completed;
* ``RunError`` -> raised as :class:`AgnoRunError` (the response fails with its message);
  ``RunCancelled`` (agno's own ``cancel_run``) also fails the response; other events (hooks,
  memory, session summaries…) are ignored, and so is a final ``RunOutput``.

A stop cancels the handler's task: agno's ``arun`` stream re-raises the ``CancelledError`` after
recording the run as cancelled, and tools awaited inside it are cancelled with it (agno runs a
turn's tool calls in ``asyncio.gather``).  A *sync* tool runs in a worker thread, which Python
cannot interrupt: the run ends at once, the thread finishes on its own.

This module imports agno only when converting (``prepare()`` at start-up, or the first request).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agentpack.frameworks.base import TextStream, switch_text_stream
from agentpack.protocol.events import OpenMessage, ResponseBuilder
from agentpack.protocol.schemas import AgentRequest, MessageType

#: Agent API message types that are tool calls / tool results (their data is {call_id, name, ...}).
CALL_TYPES = (MessageType.PLUGIN_CALL, MessageType.FUNCTION_CALL, MessageType.MCP_CALL)
OUTPUT_TYPES = (MessageType.PLUGIN_CALL_OUTPUT, MessageType.FUNCTION_CALL_OUTPUT, MessageType.MCP_CALL_OUTPUT)


class AgnoRunError(RuntimeError):
    """agno reported the run as failed (a ``RunError`` event) or cancelled by agno itself."""


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    return json.dumps(value, ensure_ascii=False, default=str)


def _data_uri_bytes(url: str) -> tuple[bytes | None, str | None]:
    """``(bytes, media type)`` of a base64 ``data:`` URI, else ``(None, None)``."""
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        try:
            return base64.b64decode(data), media_type or None
        except ValueError:
            return None, None
    return None, None


def _call_data(message: Any) -> dict[str, Any]:
    for item in message.content or []:
        if item.type == "data" and isinstance(item.data, dict):
            return item.data
    return {}


# -- request -> msgs ---------------------------------------------------------------------------------


class _Agno:
    """The agno classes, imported on first use."""

    loaded = False
    Message: Any = None
    Image: Any = None
    Audio: Any = None
    Video: Any = None
    File: Any = None

    @classmethod
    def load(cls) -> type[_Agno]:
        if not cls.loaded:
            from agno.media import Audio, File, Image, Video
            from agno.models.message import Message

            cls.Message, cls.Image, cls.Audio, cls.Video, cls.File = Message, Image, Audio, Video, File
            cls.loaded = True
        return cls


def _media(agno: Any, items: list[Any]) -> dict[str, list[Any]]:
    media: dict[str, list[Any]] = {}
    for item in items:
        kind = item.type
        if kind == "image" and item.image_url:
            media.setdefault("images", []).append(agno.Image(url=item.image_url))
        elif kind == "audio" and item.data:
            data, media_type = _data_uri_bytes(item.data)
            fmt = item.format or (media_type.split("/")[-1] if media_type else None)
            audio = agno.Audio(content=data, format=fmt) if data is not None else agno.Audio(url=item.data, format=fmt)
            media.setdefault("audio", []).append(audio)
        elif kind == "video" and item.video_url:
            data, media_type = _data_uri_bytes(item.video_url)
            video = (
                agno.Video(content=data, mime_type=media_type) if data is not None else agno.Video(url=item.video_url)
            )
            media.setdefault("videos", []).append(video)
        elif kind == "file" and (item.file_url or item.file_data):
            source = item.file_url or item.file_data
            data, media_type = _data_uri_bytes(source)
            if data is not None:
                media.setdefault("files", []).append(
                    agno.File(content=data, mime_type=media_type, filename=item.filename)
                )
            elif item.file_url:
                media.setdefault("files", []).append(agno.File(url=item.file_url, filename=item.filename))
    return media


def _text(items: list[Any]) -> str:
    parts: list[str] = []
    for item in items:
        if item.type == "text" and item.text:
            parts.append(item.text)
        elif item.type == "refusal" and item.refusal:
            parts.append(item.refusal)
        elif item.type == "data" and item.data is not None:
            parts.append(json.dumps(item.data, ensure_ascii=False))
    return "\n".join(parts)


def request_to_agno(request: AgentRequest) -> list[Any]:
    """The request's messages as agno ``Message`` objects (see the module docstring)."""
    agno = _Agno.load()
    msgs: list[Any] = []
    reasoning: list[str] = []
    calling: Any = None  # the assistant message collecting consecutive tool calls
    for message in request.input:
        kind = message.type
        if kind == MessageType.REASONING:
            reasoning.append(_text(message.content or []))
            continue
        if kind in CALL_TYPES:
            data = _call_data(message)
            call = {
                "id": data.get("call_id") or message.id,
                "type": "function",
                "function": {"name": data.get("name") or "", "arguments": _json_text(data.get("arguments") or "{}")},
            }
            if calling is None:
                calling = agno.Message(
                    role="assistant", content=None, tool_calls=[], reasoning_content="\n".join(reasoning) or None
                )
                msgs.append(calling)
                reasoning = []
            calling.tool_calls.append(call)
            continue
        calling = None
        if kind in OUTPUT_TYPES:
            data = _call_data(message)
            msgs.append(
                agno.Message(
                    role="tool",
                    tool_call_id=data.get("call_id"),
                    tool_name=data.get("name"),
                    content=_json_text(data.get("output", "")),
                )
            )
            continue
        role = "system" if message.role == "tool" else message.role
        items = list(message.content or [])
        extra: dict[str, Any] = _media(agno, items)
        if role == "assistant" and reasoning:
            extra["reasoning_content"] = "\n".join(reasoning)
            reasoning = []
        msgs.append(agno.Message(role=role, content=_text(items), **extra))
    return msgs


# -- yields -> events ----------------------------------------------------------------------------------


def _usage(totals: dict[str, int]) -> dict[str, int]:
    usage = {
        "input_tokens": totals.get("input_tokens", 0),
        "output_tokens": totals.get("output_tokens", 0),
        "total_tokens": totals.get("total_tokens", 0),
    }
    if totals.get("reasoning_tokens"):
        usage["reasoning_tokens"] = totals["reasoning_tokens"]
    return usage


@dataclass
class _State:
    """What is open: the text and reasoning of the current model call, and its messages."""

    text: TextStream | None = None
    reasoning: TextStream | None = None
    call_messages: list[OpenMessage] = field(default_factory=list)  # messages of the current model call
    call_usage: dict[str, int] | None = None  # the run's usage as last reported
    totals: dict[str, int] = field(default_factory=dict)
    tool_names: dict[str, str] = field(default_factory=dict)  # call_id -> tool name
    answered: set[str] = field(default_factory=set)  # call ids whose output was sent


def _event_name(item: Any) -> str | None:
    name = getattr(item, "event", None)
    if not isinstance(name, str):
        return None
    return name[4:] if name.startswith("Team") else name


class AgnoFramework:
    name = "agno"

    async def prepare(self) -> None:
        _Agno.load()

    def to_msgs(self, request: AgentRequest) -> list[Any]:
        return request_to_agno(request)

    async def adapt(self, items: AsyncIterator[Any], builder: ResponseBuilder) -> AsyncGenerator[dict[str, Any], None]:
        state = _State()
        async for item in items:
            name = _event_name(item)
            if name is None:
                if type(item).__name__ in ("RunOutput", "TeamRunOutput"):
                    continue  # yield_run_output=True: the run's summary, already streamed
                hint = " (use framework='text' to stream plain strings)" if isinstance(item, str) else ""
                raise TypeError(
                    f"a framework='agno' handler must yield agno run events, got {type(item).__name__}{hint}"
                )
            for event in self._on(name, item, state, builder):
                yield event
        for event in self._close_all(state, builder):
            yield event

    # -- one event ---------------------------------------------------------------------------------
    def _on(self, name: str, item: Any, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        if name == "RunContent":
            return self._content(item, state, builder)
        if name == "ModelRequestStarted":
            events = self._close_all(state, builder)
            state.call_messages = []
            return events
        if name == "ModelRequestCompleted":
            return self._usage(item, state)
        if name == "ToolCallStarted":
            return self._tool_call(item, state, builder)
        if name == "ToolCallCompleted":
            tool = getattr(item, "tool", None)
            return self._tool_output(tool, getattr(tool, "result", None), state, builder)
        if name == "ToolCallError":
            tool = getattr(item, "tool", None)
            result = getattr(tool, "result", None)
            return self._tool_output(
                tool, result if result is not None else getattr(item, "error", None), state, builder
            )
        if name in ("RunContentCompleted", "RunCompleted", "RunPaused"):
            return self._close_all(state, builder)
        if name == "RunError":
            kind = getattr(item, "error_type", None)
            text = getattr(item, "content", None) or "the agno run failed"
            raise AgnoRunError(f"{kind}: {text}" if kind else str(text))
        if name == "RunCancelled":
            raise AgnoRunError(f"the agno run was cancelled: {getattr(item, 'reason', None) or 'no reason given'}")
        return []

    def _open(
        self, state: _State, builder: ResponseBuilder, kind: str, role: str = "assistant"
    ) -> tuple[OpenMessage, dict[str, Any]]:
        msg, event = builder.open_message(kind, role)
        if role == "assistant":
            state.call_messages.append(msg)
            msg.usage = state.call_usage
        return msg, event

    def _text_stream(
        self, state: _State, builder: ResponseBuilder, reasoning: bool, events: list[dict[str, Any]]
    ) -> TextStream:
        return switch_text_stream(state, reasoning, lambda kind: self._open(state, builder, kind), builder, events)

    def _content(self, item: Any, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        reasoning = getattr(item, "reasoning_content", None)
        if reasoning:
            stream = self._text_stream(state, builder, True, events)
            events.append(builder.delta(stream.msg, stream.item, {"text": reasoning}))
        content = getattr(item, "content", None)
        if isinstance(content, str):
            if content:
                stream = self._text_stream(state, builder, False, events)
                events.append(builder.delta(stream.msg, stream.item, {"text": content}))
        elif content is not None:  # structured output (output_schema): one data content
            stream = self._text_stream(state, builder, False, events)
            value = content.model_dump() if hasattr(content, "model_dump") else content
            data = value if isinstance(value, dict) else {"value": value}
            events.append(builder.delta(stream.msg, stream.msg.new_content("data"), {"data": data}))
        image = getattr(item, "image", None)
        if image is not None:
            url = getattr(image, "url", None)
            raw = getattr(image, "content", None)
            if url is None and raw is not None:
                mime = getattr(image, "mime_type", None) or "image/png"
                url = f"data:{mime};base64,{base64.b64encode(raw).decode()}"
            if url:
                stream = self._text_stream(state, builder, False, events)
                events.append(builder.delta(stream.msg, stream.msg.new_content("image"), {"image_url": url}))
        return events

    def _usage(self, item: Any, state: _State) -> list[dict[str, Any]]:
        for key in ("input_tokens", "output_tokens", "total_tokens", "reasoning_tokens"):
            state.totals[key] = state.totals.get(key, 0) + int(getattr(item, key, None) or 0)
        state.call_usage = _usage(state.totals)
        for msg in state.call_messages:
            if not msg.completed:
                msg.usage = state.call_usage
        return []

    def _tool_call(self, item: Any, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        tool = getattr(item, "tool", None)
        events = self._close_text(state, builder)
        call_id = getattr(tool, "tool_call_id", None) or ""
        name = getattr(tool, "tool_name", None) or ""
        state.tool_names[call_id] = name
        msg, started = self._open(state, builder, MessageType.PLUGIN_CALL)
        events.append(started)
        data = {"call_id": call_id, "name": name, "arguments": _json_text(getattr(tool, "tool_args", None) or {})}
        events.append(builder.delta(msg, msg.new_content("data"), {"data": data}))
        events.extend(builder.complete_message(msg))
        return events

    def _tool_output(self, tool: Any, result: Any, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        call_id = getattr(tool, "tool_call_id", None) or ""
        if call_id in state.answered:
            return []
        state.answered.add(call_id)
        events = self._close_text(state, builder)
        msg, started = self._open(state, builder, MessageType.PLUGIN_CALL_OUTPUT, role="tool")
        events.append(started)
        name = getattr(tool, "tool_name", None) or state.tool_names.get(call_id, "")
        data = {"call_id": call_id, "name": name, "output": _json_text(result if result is not None else "")}
        events.append(builder.delta(msg, msg.new_content("data"), {"data": data}))
        events.extend(builder.complete_message(msg))
        return events

    # -- closing -----------------------------------------------------------------------------------
    @staticmethod
    def _close_text(state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for stream in (state.reasoning, state.text):
            if stream is not None and not stream.msg.completed:
                events.extend(builder.complete_message(stream.msg))
        state.reasoning = state.text = None
        return events

    def _close_all(self, state: _State, builder: ResponseBuilder) -> list[dict[str, Any]]:
        events = self._close_text(state, builder)
        for msg in state.call_messages:
            if not msg.completed:
                events.extend(builder.complete_message(msg))
        return events


__all__ = ["AgnoFramework", "AgnoRunError", "request_to_agno"]
