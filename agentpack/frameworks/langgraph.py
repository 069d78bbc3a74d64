"""``framework="langgraph"``: LangChain messages in, ``graph.astream(..., stream_mode="messages")`` out.

The handler gets ``msgs``, the request's messages as LangChain ``BaseMessage`` objects, and yields
what LangGraph streams, unchanged::

    @app.query(framework="langgraph")
    async def handler(self, msgs, request=None, **kwargs):
        async for item in graph.astream({"messages": msgs}, stream_mode="messages"):
            yield item

Request -> ``msgs``:

- ``user`` / ``system`` messages -> ``HumanMessage`` / ``SystemMessage``; text stays a string, and
  images, audio, video and files become LangChain's standard content blocks (``url``, or
  ``base64`` + ``mime_type`` for ``data:`` URIs);
- ``assistant`` text -> ``AIMessage``; ``function_call`` / ``plugin_call`` / ``mcp_call`` messages
  -> ``tool_calls`` of an ``AIMessage`` (the assistant text just before them and consecutive calls
  make ONE ``AIMessage``, as the model produced them); arguments that are not a JSON object become
  ``invalid_tool_calls``;
- ``function_call_output`` / ``plugin_call_output`` / ``mcp_call_output`` -> ``ToolMessage``
  (``status="error"`` when the output says ``is_error``);
- ``reasoning`` messages are left out: models do not take their own reasoning back as input.

Yields -> events (each item may be ``(message, metadata)`` from ``stream_mode="messages"``, a bare
message, AgentScope Runtime's ``(message, is_last)``, ``(mode, data)`` of a list of stream modes,
``(namespace, data)`` with ``subgraphs=True``, or a ``version="v2"`` stream part; only messages are
used, other modes are skipped):

- the text of ``AIMessageChunk`` / ``AIMessage`` -> a ``message`` whose text deltas are the chunks,
  as they arrive;
- reasoning (``reasoning`` / ``thinking`` content blocks, ``additional_kwargs["reasoning_content"]``)
  -> a separate ``reasoning`` message;
- ``tool_call_chunks`` -> one ``plugin_call`` message per call, streamed as ``data`` deltas holding
  ``{call_id, name, arguments}`` with the arguments so far; complete ``tool_calls`` -> the same, at
  once;
- ``ToolMessage`` -> ``plugin_call_output`` (role ``tool``) with ``{call_id, name, output, is_error}``;
- ``usage_metadata`` (summed over the chunks of one model call) -> ``usage`` of that call's messages;
- ``HumanMessage`` / ``SystemMessage`` a node produced -> a ``message`` with role ``user`` / ``system``.

A model call's messages are completed when it ends: at its chunk with ``chunk_position="last"``
(or ``is_last``), when the graph has moved to a later step, or — for items without metadata — when
the next message begins.  Text is completed when the model moves on to its tool calls.

LangGraph cancels the nodes it runs, tool calls included, when the stream's consumer is cancelled,
so a stop reaches the tools with nothing more to do here.  (A synchronous tool runs in a thread,
which Python cannot interrupt; its result is then discarded.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentpack.protocol.events import OpenContent, OpenMessage, ResponseBuilder
from agentpack.protocol.schemas import AgentRequest, Message, MessageType

if TYPE_CHECKING:  # pragma: no cover
    from langchain_core.messages import BaseMessage

_CALLS = {MessageType.FUNCTION_CALL, MessageType.PLUGIN_CALL, MessageType.MCP_CALL}
_OUTPUTS = {MessageType.FUNCTION_CALL_OUTPUT, MessageType.PLUGIN_CALL_OUTPUT, MessageType.MCP_CALL_OUTPUT}
_USAGE_KEYS = ("input_tokens", "output_tokens", "total_tokens", "input_token_details", "output_token_details")


def _lc() -> Any:
    """``langchain_core.messages``, imported on first use (never when agentpack is imported)."""
    import langchain_core.messages as messages

    return messages


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _split_data_uri(url: str | None) -> tuple[str, str] | None:
    """``(mime_type, base64)`` of a ``data:…;base64,…`` URI, else ``None``."""
    if url and url.startswith("data:") and ";base64," in url:
        mime, _, data = url[5:].partition(";base64,")
        return mime or "application/octet-stream", data
    return None


# -- request -> msgs --------------------------------------------------------------------------
def _media_block(kind: str, url: str | None, mime: str | None = None, **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"type": kind}
    inline = _split_data_uri(url)
    if inline is not None:
        block["mime_type"], block["base64"] = inline
    elif url:
        block["url"] = url
        if mime:
            block["mime_type"] = mime
    block.update({k: v for k, v in extra.items() if v})
    return block


def _content_blocks(message: Message) -> list[Any]:
    """LangChain content blocks of one request message (standard blocks for media)."""
    blocks: list[Any] = []
    for item in message.content or []:
        if item.type == "text":
            blocks.append({"type": "text", "text": item.text or ""})
        elif item.type == "image":
            blocks.append(_media_block("image", item.image_url))
        elif item.type == "audio":
            fmt = item.format
            mime = fmt if fmt and "/" in fmt else (f"audio/{fmt}" if fmt else None)
            blocks.append(_media_block("audio", item.data, mime))
        elif item.type == "video":
            blocks.append(_media_block("video", item.video_url))
        elif item.type == "file":
            if item.file_id and not (item.file_data or item.file_url):
                block: dict[str, Any] = {"type": "file", "file_id": item.file_id}
            else:
                block = _media_block("file", item.file_data or item.file_url)
            if item.filename:
                block["extras"] = {"filename": item.filename}
            blocks.append(block)
        elif item.type == "data":
            blocks.append({"type": "text", "text": _json_text(item.data)})
        elif item.type == "refusal":
            blocks.append({"type": "text", "text": item.refusal or ""})
    return blocks


def _content(message: Message) -> Any:
    """A plain string when the message is text only (what every model takes), else blocks."""
    blocks = _content_blocks(message)
    if all(b["type"] == "text" for b in blocks):
        return "\n".join(b["text"] for b in blocks)
    return blocks


def _datas(message: Message) -> list[dict[str, Any]]:
    return [item.data for item in message.content or [] if item.type == "data" and isinstance(item.data, dict)]


def _tool_call(data: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """``(valid, call)``: a LangChain tool call, or an invalid one when the arguments are no JSON object."""
    raw = data.get("arguments")
    call_id, name = data.get("call_id"), data.get("name") or ""
    if raw is None or raw == "":
        return True, {"name": name, "args": {}, "id": call_id, "type": "tool_call"}
    if isinstance(raw, dict):
        return True, {"name": name, "args": raw, "id": call_id, "type": "tool_call"}
    try:
        args = json.loads(raw)
    except (TypeError, ValueError) as exc:
        error = f"arguments are not JSON: {exc}"
    else:
        if isinstance(args, dict):
            return True, {"name": name, "args": args, "id": call_id, "type": "tool_call"}
        error = "arguments are not a JSON object"
    return False, {"name": name, "args": _json_text(raw), "id": call_id, "error": error, "type": "invalid_tool_call"}


def to_langchain_messages(messages: list[Message]) -> list[BaseMessage]:
    """Agent API messages -> LangChain messages (the ``msgs`` of a ``framework="langgraph"`` handler)."""
    lc = _lc()
    out: list[Any] = []
    for message in messages:
        kind = message.type
        if kind == MessageType.REASONING:
            continue
        if kind in _CALLS:
            calls = [_tool_call(data) for data in _datas(message)]
            valid = [call for ok, call in calls if ok]
            invalid = [call for ok, call in calls if not ok]
            last = out[-1] if out else None
            # consecutive calls, and the text the model said just before them, are one AIMessage
            # (nothing can have answered them yet: a ToolMessage would come after it)
            if isinstance(last, lc.AIMessage):
                out[-1] = lc.AIMessage(
                    content=last.content,
                    tool_calls=[*last.tool_calls, *valid],
                    invalid_tool_calls=[*last.invalid_tool_calls, *invalid],
                )
            else:
                out.append(lc.AIMessage(content="", tool_calls=valid, invalid_tool_calls=invalid))
            continue
        if kind in _OUTPUTS:
            for data in _datas(message):
                output = data.get("output")
                out.append(
                    lc.ToolMessage(
                        content=_json_text(output if output is not None else ""),
                        tool_call_id=str(data.get("call_id") or ""),
                        name=data.get("name"),
                        status="error" if data.get("is_error") else "success",
                    )
                )
            continue
        content = _content(message)
        if message.role == "user":
            out.append(lc.HumanMessage(content=content))
        elif message.role == "system":
            out.append(lc.SystemMessage(content=content))
        elif message.role == "tool":
            meta = message.metadata or {}
            call_id = meta.get("tool_call_id") or meta.get("call_id") or _unanswered_call(out) or ""
            out.append(lc.ToolMessage(content=content, tool_call_id=str(call_id)))
        else:
            out.append(lc.AIMessage(content=content))
    return out


def _unanswered_call(out: list[Any]) -> str | None:
    """The id of the latest tool call no ToolMessage has answered yet."""
    lc = _lc()
    answered = {m.tool_call_id for m in out if isinstance(m, lc.ToolMessage)}
    for message in reversed(out):
        if isinstance(message, lc.AIMessage):
            for call in reversed(message.tool_calls):
                if call.get("id") and call["id"] not in answered:
                    call_id: str = call["id"]
                    return call_id
            return None
    return None


# -- yields -> events -------------------------------------------------------------------------
@dataclass
class _Call:
    """One tool call of a model message, streamed as data deltas."""

    msg: OpenMessage
    item: OpenContent
    call_id: str | None = None
    name: str = ""
    arguments: str = ""

    def data(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "name": self.name, "arguments": self.arguments}


@dataclass
class _Model:
    """Everything produced so far for one model message (all chunks sharing an id)."""

    born: int
    touched: int
    where: tuple[tuple[str, ...], int] | None  # (graph namespace, step) when the metadata says
    metadata: dict[str, Any]
    segment: tuple[str, OpenMessage, OpenContent] | None = None  # the text or reasoning being streamed
    calls: dict[Any, _Call] = field(default_factory=dict)
    last_call: Any = None
    opened: list[OpenMessage] = field(default_factory=list)
    usage: dict[str, Any] | None = None


def _where(metadata: dict[str, Any] | None) -> tuple[tuple[str, ...], int] | None:
    if not metadata or "langgraph_step" not in metadata:
        return None
    ns = str(metadata.get("langgraph_checkpoint_ns") or "")
    return tuple(ns.split("|")[:-1]), int(metadata["langgraph_step"])


def _usage(usage: Any) -> dict[str, Any] | None:
    if not usage:
        return None
    usage = dict(usage)
    return {k: usage[k] for k in _USAGE_KEYS if usage.get(k) is not None} or None


def _tool_output(content: Any) -> str:
    """A ToolMessage's content as text: text blocks joined, anything else as JSON."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text") for b in content
    ):
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content)
    return _json_text(content)


def _pieces(message: Any) -> list[tuple[str, Any]]:
    """``(kind, value)`` of a message's content in order: ``text`` / ``reasoning`` strings, ``image`` URLs."""
    try:
        blocks = message.content_blocks  # LangChain's standard view (it reads provider formats too)
    except Exception:  # an odd provider payload: fall back on the raw content
        content = message.content
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        reasoning = (message.additional_kwargs or {}).get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            blocks.insert(0, {"type": "reasoning", "reasoning": reasoning})
    pieces: list[tuple[str, Any]] = []
    for block in blocks:
        if isinstance(block, str):
            pieces.append(("text", block))
            continue
        kind = block.get("type")
        if kind == "non_standard" and isinstance(block.get("value"), dict):  # a provider's block LangChain left as is
            block = block["value"]
            kind = block.get("type")
        if kind == "text" and block.get("text"):
            pieces.append(("text", block["text"]))
        elif kind == "reasoning" and block.get("reasoning"):
            pieces.append(("reasoning", block["reasoning"]))
        elif kind == "thinking" and block.get("thinking"):
            pieces.append(("reasoning", block["thinking"]))
        elif kind == "image":
            url = block.get("url")
            if not url and block.get("base64"):
                url = f"data:{block.get('mime_type') or 'image/png'};base64,{block['base64']}"
            if url:
                pieces.append(("image", url))
    return pieces


def _unwrap(item: Any) -> tuple[Any, dict[str, Any] | None, bool] | None:
    """``(message, metadata, is_last)`` of one yielded item, or ``None`` for another stream mode's data."""
    lc = _lc()
    if isinstance(item, lc.BaseMessage):
        return item, None, False
    if isinstance(item, tuple):
        if len(item) == 2:
            first, second = item
            if isinstance(first, lc.BaseMessage):
                if isinstance(second, bool):  # AgentScope Runtime's (message, is_last)
                    return first, None, second
                if second is None or isinstance(second, dict):  # stream_mode="messages"
                    return first, second, False
            elif isinstance(first, str):  # a list of stream modes: (mode, data)
                return _unwrap(second) if first == "messages" else None
            elif isinstance(first, tuple):  # subgraphs=True: (namespace, data)
                return _unwrap(second)
        elif len(item) == 3 and isinstance(item[0], tuple) and isinstance(item[1], str):
            return _unwrap(item[2]) if item[1] == "messages" else None  # (namespace, mode, data)
    if isinstance(item, dict) and {"type", "ns", "data"} <= item.keys():  # version="v2" stream parts
        return _unwrap(item["data"]) if item["type"] == "messages" else None
    raise TypeError(
        f"a framework='langgraph' handler yields the items of graph.astream(..., stream_mode='messages')"
        f" — (message, metadata) tuples or LangChain messages — got {type(item).__name__}"
        + (" (use framework='text' to stream plain strings)" if isinstance(item, (str, bytes)) else "")
    )


class LangGraphFramework:
    name = "langgraph"

    async def prepare(self) -> None:
        _lc()

    def to_msgs(self, request: AgentRequest) -> list[BaseMessage]:
        return to_langchain_messages(request.input)

    async def adapt(self, items: AsyncIterator[Any], builder: ResponseBuilder) -> AsyncGenerator[dict[str, Any], None]:
        lc = _lc()
        models: dict[Any, _Model] = {}  # open model messages by id, in the order they began
        finished: set[Any] = set()  # ids of model messages already completed
        tick = 0
        async for item in items:
            unwrapped = _unwrap(item)
            if unwrapped is None:
                continue
            message, metadata, is_last = unwrapped
            tick += 1
            where = _where(metadata)
            chunk = isinstance(message, lc.AIMessageChunk)
            key = message.id if message.id is not None else ("anonymous" if chunk else object())
            if not chunk and key in finished:
                continue  # the whole form of a message already streamed as chunks
            for event in self._end_others(builder, models, key, where, tick):
                yield event
            if isinstance(message, lc.AIMessage):  # AIMessageChunk included
                model = models.get(key)
                if model is None:
                    model = models[key] = _Model(
                        born=tick, touched=tick, where=where, metadata=self._metadata(message, metadata)
                    )
                model.touched = tick
                if chunk or not (model.segment or model.calls):
                    for event in self._update(builder, model, message, chunk):
                        yield event
                elif message.usage_metadata and not model.usage:
                    model.usage = _usage(message.usage_metadata)
                if is_last or not chunk or getattr(message, "chunk_position", None) == "last":
                    for event in self._finish(builder, models.pop(key)):
                        yield event
                    finished.add(key)
            elif isinstance(message, (lc.ToolMessage, lc.FunctionMessage)):
                for event in self._tool_output(builder, message, metadata):
                    yield event
            elif isinstance(message, lc.RemoveMessage):
                continue
            else:
                for event in self._plain(builder, message, metadata):
                    yield event
        for key in list(models):
            for event in self._finish(builder, models.pop(key)):
                yield event

    # -- model messages ----------------------------------------------------------------------
    @staticmethod
    def _metadata(message: Any, metadata: dict[str, Any] | None) -> dict[str, Any]:
        """The output message's metadata: the graph node that produced it, and the agent's name
        when the message carries one (multi-agent graphs)."""
        out: dict[str, Any] = {}
        if metadata and metadata.get("langgraph_node"):
            out["langgraph_node"] = metadata["langgraph_node"]
        if getattr(message, "name", None) and message.type != "tool":
            out["name"] = message.name
        return out

    def _end_others(
        self, builder: ResponseBuilder, models: dict[Any, _Model], key: Any, where: Any, tick: int
    ) -> list[dict[str, Any]]:
        """Complete the model messages this item shows to be over.

        With LangGraph's metadata: those of an earlier step of the same graph (a step begins only
        when every node of the previous one has finished).  Without it: all others, as the items of
        one model call arrive together.
        """
        events: list[dict[str, Any]] = []
        for other_key, other in list(models.items()):
            if other_key == key:
                continue
            if where is not None and other.where is not None:
                over = other.where[0] == where[0] and other.where[1] < where[1]
            else:
                over = where is None and other.where is None
            if over:
                events.extend(self._finish(builder, models.pop(other_key)))
        return events

    def _open(
        self, builder: ResponseBuilder, model: _Model, kind: str, role: str = "assistant"
    ) -> tuple[OpenMessage, dict[str, Any]]:
        opened, event = builder.open_message(kind, role, dict(model.metadata))
        model.opened.append(opened)
        if model.usage:
            opened.usage = model.usage
        return opened, event

    def _close_segment(self, builder: ResponseBuilder, model: _Model) -> list[dict[str, Any]]:
        if model.segment is None:
            return []
        _, opened, _ = model.segment
        model.segment = None
        return builder.complete_message(opened) if not opened.completed else []

    def _update(self, builder: ResponseBuilder, model: _Model, message: Any, chunk: bool) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for kind, value in _pieces(message):
            if kind == "image":
                if model.segment is None or model.segment[0] != "text":
                    events.extend(self._close_segment(builder, model))
                    opened, event = self._open(builder, model, MessageType.MESSAGE)
                    events.append(event)
                    model.segment = ("text", opened, opened.new_content("text"))
                opened = model.segment[1]
                events.append(builder.delta(opened, opened.new_content("image"), {"image_url": value}))
                continue
            if model.segment is None or model.segment[0] != kind:
                events.extend(self._close_segment(builder, model))
                opened, event = self._open(
                    builder, model, MessageType.REASONING if kind == "reasoning" else MessageType.MESSAGE
                )
                events.append(event)
                model.segment = (kind, opened, opened.new_content("text"))
            _, opened, content = model.segment
            events.append(builder.delta(opened, content, {"text": value}))

        if chunk:
            for piece in message.tool_call_chunks or []:
                index = piece.get("index")
                call_key = index if index is not None else (piece.get("id") or model.last_call or 0)
                events.extend(
                    self._call(builder, model, call_key, piece.get("id"), piece.get("name"), piece.get("args") or "")
                )
        else:  # parsed calls carry their arguments as a dict, invalid ones as the model's raw text
            whole = [(call, _json_text(call.get("args") or {})) for call in message.tool_calls or []]
            whole += [(call, call.get("args") or "") for call in message.invalid_tool_calls or []]
            for call, arguments in whole:
                call_key = call.get("id") or len(model.calls)
                events.extend(self._call(builder, model, call_key, call.get("id"), call.get("name"), arguments))

        usage = message.usage_metadata
        if usage:
            model.usage = _usage(_lc().ai.add_usage(model.usage, usage) if chunk and model.usage else usage)
            for opened in model.opened:
                if not opened.completed:
                    opened.usage = model.usage
        return events

    def _call(
        self, builder: ResponseBuilder, model: _Model, call_key: Any, call_id: Any, name: Any, args: str
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        call = model.calls.get(call_key)
        if call is None:
            events.extend(self._close_segment(builder, model))  # the model moved on from its text
            opened, event = self._open(builder, model, MessageType.PLUGIN_CALL)
            events.append(event)
            call = model.calls[call_key] = _Call(opened, opened.new_content("data"))
        model.last_call = call_key
        call.call_id = call.call_id or call_id
        call.name = call.name or name or ""
        call.arguments += args
        events.append(builder.delta(call.msg, call.item, {"data": call.data()}))
        return events

    def _finish(self, builder: ResponseBuilder, model: _Model) -> list[dict[str, Any]]:
        events = self._close_segment(builder, model)
        for call in model.calls.values():
            if not call.msg.completed:
                call.arguments = call.arguments or "{}"
                events.append(builder.complete_content(call.msg, call.item, {"data": call.data()}))
        for opened in model.opened:
            if not opened.completed:
                if model.usage:
                    opened.usage = model.usage
                events.extend(builder.complete_message(opened))
        return events

    # -- other messages ----------------------------------------------------------------------
    def _tool_output(
        self, builder: ResponseBuilder, message: Any, metadata: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        opened, started = builder.open_message(
            MessageType.PLUGIN_CALL_OUTPUT, "tool", self._metadata(message, metadata)
        )
        data = {
            "call_id": getattr(message, "tool_call_id", None),
            "name": message.name,
            "output": _tool_output(message.content),
            "is_error": getattr(message, "status", "success") == "error",
        }
        return [
            started,
            builder.complete_content(opened, opened.new_content("data"), {"data": data}),
            *builder.complete_message(opened),
        ]

    def _plain(self, builder: ResponseBuilder, message: Any, metadata: dict[str, Any] | None) -> list[dict[str, Any]]:
        """A Human/System/ChatMessage a node produced: one whole message with that role."""
        role = {"human": "user", "user": "user", "system": "system", "ai": "assistant", "assistant": "assistant"}.get(
            str(getattr(message, "role", None) or message.type), "assistant"
        )
        opened, started = builder.open_message(MessageType.MESSAGE, role, self._metadata(message, metadata))
        events = [started]
        for kind, value in _pieces(message):
            if kind == "image":
                events.append(builder.complete_content(opened, opened.new_content("image"), {"image_url": value}))
            else:
                events.append(builder.complete_content(opened, opened.new_content("text"), {"text": value}))
        return events + builder.complete_message(opened)
