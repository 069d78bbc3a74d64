"""``framework="agentscope"``: the handler yields ``(msg, last)`` tuples of AgentScope-style messages.

An AgentScope message is *cumulative*: every yield for one ``msg.id`` carries the whole
content so far, and ``last=True`` marks its final form.  This converter sends only what is
new, as soon as it arrives, whether ``content`` is a string or a list of blocks (AgentScope
Runtime holds string content back until the end of the stream; we stream it).

Block types map to output messages the way Agent API clients expect:
``text`` -> ``message``, ``thinking`` -> ``reasoning``, ``tool_use`` -> ``plugin_call``
(``mcp_call`` for MCP tools), ``tool_result`` -> ``plugin_call_output`` (role ``tool``),
and image/audio/video/file blocks -> media contents of the ``message`` output.

Messages are read by attribute or key, so real ``agentscope.message.Msg`` objects, this
module's lightweight :class:`Msg` and plain dicts all work.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agentpack.protocol.events import OpenContent, OpenMessage, ResponseBuilder
from agentpack.protocol.schemas import AgentRequest, MessageType, new_id

_MEDIA = ("image", "audio", "video", "file")


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


@dataclass
class Msg:
    """A stand-in for ``agentscope.message.Msg`` when agentscope is not installed.

    It has the attributes handlers and this converter use (``name``, ``content``, ``role``,
    ``metadata``, ``id``) and the two helpers agents call most.
    """

    name: str
    content: Any
    role: str
    metadata: dict[str, Any] | None = None
    id: str = field(default_factory=lambda: new_id("msg"))
    timestamp: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    usage: dict[str, Any] | None = None

    def get_text_content(self) -> str | None:
        if isinstance(self.content, str):
            return self.content
        texts = [b.get("text", "") for b in self.content or [] if _get(b, "type") == "text"]
        return "\n".join(texts) if texts else None

    def get_content_blocks(self, block_type: str | None = None) -> list[dict[str, Any]]:
        blocks = [{"type": "text", "text": self.content}] if isinstance(self.content, str) else list(self.content or [])
        return [b for b in blocks if block_type is None or _get(b, "type") == block_type]


def _source(url: str | None) -> dict[str, Any]:
    """An AgentScope media ``source`` from a URL, unpacking ``data:`` URIs into base64 sources."""
    url = url or ""
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _url(source: Any) -> str | None:
    """The inverse of :func:`_source`: a URL or a ``data:`` URI for a media block's source."""
    if source is None:
        return None
    if isinstance(source, str):
        return source
    if _get(source, "type") == "base64":
        return f"data:{_get(source, 'media_type', 'application/octet-stream')};base64,{_get(source, 'data', '')}"
    url: str | None = _get(source, "url")
    return url


def _request_blocks(message: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for item in message.content or []:
        kind = item.type
        if kind == "text":
            blocks.append({"type": "text", "text": item.text or ""})
        elif kind == "image":
            blocks.append({"type": "image", "source": _source(item.image_url)})
        elif kind == "audio":
            blocks.append({"type": "audio", "source": _source(item.data)})
        elif kind == "video":
            blocks.append({"type": "video", "source": _source(item.video_url)})
        elif kind == "data":
            blocks.append({"type": "text", "text": json.dumps(item.data, ensure_ascii=False)})
        elif kind == "refusal":
            blocks.append({"type": "text", "text": item.refusal or ""})
        elif kind == "file":
            blocks.append({"type": "text", "text": item.file_url or item.filename or ""})
    return blocks


def _media_payload(block: Any) -> tuple[str, dict[str, Any]]:
    kind = _get(block, "type")
    url = _url(_get(block, "source")) or _get(block, "url")
    if kind == "image":
        return "image", {"image_url": url}
    if kind == "video":
        return "video", {"video_url": url}
    if kind == "audio":
        source = _get(block, "source")
        fmt = _get(source, "media_type") if source is not None and not isinstance(source, str) else None
        return "audio", {"data": url, "format": fmt}
    return "file", {"file_url": url, "filename": _get(block, "filename")}


def _text_of(blocks: list[Any], kind: str) -> str:
    """Text and thinking blocks keep their text under a key named like the block type."""
    return "\n".join(str(_get(b, kind) or "") for b in blocks if _get(b, "type") == kind)


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


@dataclass
class _Stream:
    """One open output message fed by a cumulative string (text or thinking)."""

    msg: OpenMessage
    item: OpenContent
    seen: str = ""


@dataclass
class _MsgState:
    """Everything produced so far for one AgentScope message id."""

    born: int = 0  # the position of its first yield among all yields
    touched: int = 0  # the position of its latest yield
    streams: dict[str, _Stream] = field(default_factory=dict)
    media_sent: int = 0
    calls: dict[str, tuple[OpenMessage, OpenContent, Any]] = field(default_factory=dict)
    opened: list[OpenMessage] = field(default_factory=list)


class AgentScopeFramework:
    name = "agentscope"
    _msg_class: Any = None

    async def prepare(self) -> None:
        self._message_class()

    def _message_class(self) -> Any:
        """``agentscope.message.Msg`` when agentscope is installed, else :class:`Msg`."""
        if AgentScopeFramework._msg_class is None:
            if importlib.util.find_spec("agentscope") is not None:
                from agentscope.message import Msg as AgentScopeMsg

                AgentScopeFramework._msg_class = AgentScopeMsg
            else:
                AgentScopeFramework._msg_class = Msg
        return AgentScopeFramework._msg_class

    def to_msgs(self, request: AgentRequest) -> list[Any]:
        msg_class = self._message_class()
        msgs = []
        for message in request.input:
            role = "system" if message.role == "tool" else message.role
            msgs.append(msg_class(name=message.role, content=_request_blocks(message), role=role))
        return msgs

    async def adapt(self, items: AsyncIterator[Any], builder: ResponseBuilder) -> AsyncGenerator[dict[str, Any], None]:
        """Convert the handler's ``(msg, last)`` yields, completing messages in the order they end.

        A message ends when it is marked ``last``.  One never marked ``last`` ends when the
        agent has moved past it: it is completed just before the next message that ends,
        if nothing was yielded for it since that message began (messages printed one after
        another); a message still receiving chunks (agents printing concurrently) stays
        open.  Whatever is left open is completed when the handler returns.  So ``output``
        lists the messages in the order the agent finished them.
        """
        states: dict[Any, _MsgState] = {}
        tick = 0
        async for item in items:
            tick += 1
            msg, last = self._unpack(item)
            key = _get(msg, "id") or id(msg)
            state = states.get(key)
            if state is None:
                state = states[key] = _MsgState(born=tick)
            state.touched = tick
            for event in self._update(builder, state, msg):
                yield event
            if last:
                for other_key, other in list(states.items()):
                    if other.born < state.born and other.touched < state.born:
                        for event in self._finish_all(builder, other):
                            yield event
                        del states[other_key]
                for event in self._finish_all(builder, state):
                    yield event
                del states[key]

    def _finish_all(self, builder: ResponseBuilder, state: _MsgState) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for opened in state.opened:
            if not opened.completed:
                events.extend(self._finish(builder, state, opened))
        return events

    @staticmethod
    def _unpack(item: Any) -> tuple[Any, bool]:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bool):
            return item
        if isinstance(item, (str, bytes)) or item is None:
            raise TypeError(
                f"a framework='agentscope' handler must yield (msg, last) tuples, got {type(item).__name__}"
                " (use framework='text' to stream plain strings)"
            )
        if _get(item, "content", ...) is ...:
            raise TypeError(f"a framework='agentscope' handler yielded {type(item).__name__}, which has no 'content'")
        return item, False

    def _open(
        self, builder: ResponseBuilder, state: _MsgState, msg: Any, kind: str, role: str = "assistant"
    ) -> tuple[OpenMessage, dict[str, Any]]:
        opened, event = builder.open_message(kind, role, dict(_get(msg, "metadata") or {}))
        state.opened.append(opened)
        return opened, event

    def _update(self, builder: ResponseBuilder, state: _MsgState, msg: Any) -> list[dict[str, Any]]:
        content = _get(msg, "content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        events: list[dict[str, Any]] = []
        has_call = any(_get(b, "type") in ("tool_use", "tool_result") for b in blocks)

        for kind, message_type in (("thinking", MessageType.REASONING), ("text", MessageType.MESSAGE)):
            text = _text_of(blocks, kind)
            stream = state.streams.get(kind)
            if stream is None and not text:
                continue
            if stream is None:
                opened, event = self._open(builder, state, msg, message_type)
                events.append(event)
                stream = state.streams[kind] = _Stream(opened, opened.new_content("text"))
            if stream.msg.completed:
                continue
            if text.startswith(stream.seen):
                piece = text[len(stream.seen) :]
            else:  # the text was rewritten, not extended: resend it whole; it is the new full text
                piece = text
                stream.item.restart()
            if piece:
                events.append(builder.delta(stream.msg, stream.item, {"text": piece}))
            stream.seen = text

        media = [b for b in blocks if _get(b, "type") in _MEDIA]
        for block in media[state.media_sent :]:
            stream = state.streams.get("text")
            if stream is None:
                opened, event = self._open(builder, state, msg, MessageType.MESSAGE)
                events.append(event)
                stream = state.streams["text"] = _Stream(opened, opened.new_content("text"))
            kind, payload = _media_payload(block)
            events.append(builder.delta(stream.msg, stream.msg.new_content(kind), payload))
        state.media_sent = max(state.media_sent, len(media))

        if has_call:  # the model moved on to tool calls: what it said before them is final
            for kind in ("thinking", "text"):
                stream = state.streams.get(kind)
                if stream is not None and not stream.msg.completed:
                    events.extend(self._finish(builder, state, stream.msg))

        for block in blocks:
            kind = _get(block, "type")
            if kind not in ("tool_use", "tool_result"):
                continue
            call_key = f"{kind}:{_get(block, 'id')}"
            known = state.calls.get(call_key)
            if known is None:
                mcp = _get(block, "tool_type") == "mcp"
                if kind == "tool_use":
                    message_type, role = (MessageType.MCP_CALL if mcp else MessageType.PLUGIN_CALL), "assistant"
                else:
                    message_type, role = (
                        (MessageType.MCP_CALL_OUTPUT if mcp else MessageType.PLUGIN_CALL_OUTPUT),
                        "tool",
                    )
                opened, event = self._open(builder, state, msg, message_type, role)
                events.append(event)
                state.calls[call_key] = (opened, opened.new_content("data"), block)
            else:
                state.calls[call_key] = (known[0], known[1], block)

        usage = _get(msg, "usage")
        for opened in state.opened:
            if not opened.completed and usage:
                opened.usage = dict(usage) if not isinstance(usage, dict) else usage
        return events

    def _finish(self, builder: ResponseBuilder, state: _MsgState, opened: OpenMessage) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for call_key, (call_msg, item, block) in state.calls.items():
            if call_msg is opened:
                data = {"call_id": _get(block, "id"), "name": _get(block, "name")}
                if call_key.startswith("tool_use:"):
                    data["arguments"] = _json_text(_get(block, "input") or {})
                else:
                    data["output"] = _json_text(_get(block, "output"))
                if _get(block, "server_label"):
                    data["server_label"] = _get(block, "server_label")
                events.append(builder.complete_content(opened, item, {"data": data}))
        return events + builder.complete_message(opened)
