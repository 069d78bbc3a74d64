"""A run's Agent API events as AG-UI events.

=====================================  ==============================================================
Agent API                               AG-UI
=====================================  ==============================================================
response created                        ``RUN_STARTED`` (threadId, runId)
assistant ``message``                   ``TEXT_MESSAGE_START`` → ``TEXT_MESSAGE_CONTENT``… →
                                        ``TEXT_MESSAGE_END``; images, files and data as ``CUSTOM``
                                        (name ``agentpack.content``)
``reasoning`` message                   ``REASONING_START``, ``REASONING_MESSAGE_START`` →
                                        ``REASONING_MESSAGE_CONTENT``… → ``REASONING_MESSAGE_END``,
                                        ``REASONING_END`` — never text
``function_call``/``plugin_call``/…     ``TOOL_CALL_START`` → ``TOOL_CALL_ARGS``… → ``TOOL_CALL_END``
``*_call_output``                       ``TOOL_CALL_RESULT`` (role ``tool``)
completed                               ``RUN_FINISHED`` (outcome ``success``, usage)
canceled (stop, client gone, shutdown)  ``RUN_FINISHED`` (outcome ``cancelled``)
failed                                  ``RUN_ERROR`` (message, code)
=====================================  ==============================================================

Whatever was open when the run ended is closed (``…_END``) before its last event, so every
start has its end.  Events are dicts with AG-UI's camelCase keys, ``None`` left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentpack.frontends.base import Translator
from agentpack.protocol.sse import encode_json, encode_json_bytes

_CALLS = {"function_call", "plugin_call", "component_call", "mcp_call"}
_OUTPUTS = {"function_call_output", "plugin_call_output", "component_call_output", "mcp_call_output"}


@dataclass
class _Open:
    kind: str  # text | reasoning | call | output
    msg_id: str
    sent: str = ""  # call arguments sent so far
    texts: dict[int, list[str]] = field(default_factory=dict)  # content index -> pieces of text sent
    call_id: str | None = None
    started: bool = False


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def token_usage(usage: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    if not usage:
        return None
    tokens_in = usage.get("input_tokens", usage.get("prompt_tokens"))
    tokens_out = usage.get("output_tokens", usage.get("completion_tokens"))
    entry = {k: v for k, v in (("inputTokens", tokens_in), ("outputTokens", tokens_out)) if v is not None}
    if tokens_in is not None and tokens_out is not None:
        entry["totalTokens"] = tokens_in + tokens_out
    return [entry] if entry else None


class AGUIStream(Translator):
    """Translates one run; see the module doc for the mapping."""

    def __init__(self, thread_id: str, run_id: str) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        super().__init__()
        self.usage: dict[str, Any] | None = None
        self._started = False

    # -- run ---------------------------------------------------------------------------------
    def _run(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "threadId": self.thread_id, "runId": self.run_id, **fields}

    def on_response(self, event: dict[str, Any], out: list[Any]) -> None:
        status = event.get("status")
        if status == "created" and not self._started:
            self._started = True
            out.append(self._run("RUN_STARTED"))
            return
        if status not in ("completed", "failed", "canceled"):
            return
        for item in list(self.open.values()):
            self._close(item, out)
        self.open.clear()
        usage = token_usage(event.get("usage") or self.usage)
        if status == "failed":
            error = event.get("error") or {}
            out.append(
                {"type": "RUN_ERROR", "message": error.get("message") or "the agent failed", "code": error.get("code")}
            )
            return
        outcome = {"type": "success" if status == "completed" else "cancelled"}
        finished = self._run("RUN_FINISHED", outcome=outcome)
        if status == "canceled":
            finished["result"] = {"reason": (event.get("error") or {}).get("message")}
        if usage:
            finished["usage"] = usage
        out.append(finished)

    # -- messages ----------------------------------------------------------------------------
    def on_message(self, event: dict[str, Any], out: list[Any]) -> None:
        msg_id, message_type = event.get("id") or "", event.get("type")
        if event.get("status") == "in_progress":
            if message_type == "message" and event.get("role") == "assistant":
                item = self.open[msg_id] = _Open("text", msg_id)
            elif message_type == "reasoning":
                item = self.open[msg_id] = _Open("reasoning", msg_id)
            elif message_type in _CALLS:
                self.open[msg_id] = _Open("call", msg_id)
                return
            elif message_type in _OUTPUTS:
                self.open[msg_id] = _Open("output", msg_id)
                return
            else:
                return
            self._start(item, out)
            return
        item = self.open.pop(msg_id, None)
        if item is None:
            return
        if event.get("usage"):
            self.usage = event["usage"]
        for content in event.get("content") or []:  # whatever the stream did not carry (a message sent whole)
            self.on_content(item, content, out)
        self._close(item, out)

    def _start(self, item: _Open, out: list[dict[str, Any]]) -> None:
        item.started = True
        if item.kind == "text":
            out.append({"type": "TEXT_MESSAGE_START", "messageId": item.msg_id, "role": "assistant"})
        elif item.kind == "reasoning":
            out.append({"type": "REASONING_START", "messageId": item.msg_id})
            out.append({"type": "REASONING_MESSAGE_START", "messageId": item.msg_id, "role": "reasoning"})

    def _close(self, item: _Open, out: list[dict[str, Any]]) -> None:
        if not item.started:
            return
        item.started = False
        if item.kind == "text":
            out.append({"type": "TEXT_MESSAGE_END", "messageId": item.msg_id})
        elif item.kind == "reasoning":
            out.append({"type": "REASONING_MESSAGE_END", "messageId": item.msg_id})
            out.append({"type": "REASONING_END", "messageId": item.msg_id})
        elif item.kind == "call":
            out.append({"type": "TOOL_CALL_END", "toolCallId": item.call_id})

    # -- contents ----------------------------------------------------------------------------
    def on_content(self, item: _Open, event: dict[str, Any], out: list[Any]) -> None:
        if item.kind in ("text", "reasoning"):
            kind = event.get("type")
            if kind in ("text", "refusal"):
                self._text(item, event.get("index") or 0, event.get(kind) or "", event.get("delta") is True, out)
            elif event.get("delta") is not True and item.kind == "text":
                content = {
                    k: v for k, v in event.items() if k not in ("sequence_number", "object", "status", "error", "delta")
                }
                out.append({"type": "CUSTOM", "name": "agentpack.content", "value": content})
            return
        data = event.get("data")
        if not isinstance(data, dict):
            return
        if item.kind == "output":
            if event.get("delta") is not True and not item.started:
                item.started = True  # one result per message
                out.append(
                    {
                        "type": "TOOL_CALL_RESULT",
                        "messageId": item.msg_id,
                        "toolCallId": data.get("call_id") or "",
                        "content": _json_text(data.get("output")),
                        "role": "tool",
                    }
                )
            return
        if not item.started:
            if not data.get("name"):
                return
            item.started = True
            item.call_id = data.get("call_id") or item.msg_id
            out.append({"type": "TOOL_CALL_START", "toolCallId": item.call_id, "toolCallName": data["name"]})
        arguments = data.get("arguments")
        if arguments is None:
            return
        arguments = _json_text(arguments)
        if arguments.startswith(item.sent) and len(arguments) > len(item.sent):
            out.append({"type": "TOOL_CALL_ARGS", "toolCallId": item.call_id, "delta": arguments[len(item.sent) :]})
            item.sent = arguments

    def _text(self, item: _Open, index: int, text: str, is_delta: bool, out: list[dict[str, Any]]) -> None:
        pieces = item.texts.setdefault(index, [])
        if not is_delta:  # a completed content: only what the deltas did not carry (joined once, here)
            sent = "".join(pieces)
            text = text[len(sent) :] if text.startswith(sent) else ""
        if not text:
            return
        pieces.append(text)
        kind = "TEXT_MESSAGE_CONTENT" if item.kind == "text" else "REASONING_MESSAGE_CONTENT"
        out.append({"type": kind, "messageId": item.msg_id, "delta": text})


def frames(events: list[dict[str, Any]]) -> bytes:
    """``data: <json>`` frames, as AG-UI's own encoder writes them."""
    return b"".join(_text_content(e) if e["type"] == "TEXT_MESSAGE_CONTENT" else _frame(e) for e in events)


def _frame(event: dict[str, Any]) -> bytes:
    return b"data: " + encode_json_bytes(event) + b"\n\n"


def _text_content(event: dict[str, Any]) -> bytes:
    """The most frequent frame, written without walking the dict (what :func:`_frame` makes of it)."""
    try:
        return (
            'data: {"type":"TEXT_MESSAGE_CONTENT","messageId":%s,"delta":%s}\n\n'  # noqa: UP031 (a JSON template)
            % (encode_json(event["messageId"]), encode_json(event["delta"]))
        ).encode("utf-8")
    except UnicodeEncodeError:
        return _frame(event)


__all__ = ["AGUIStream", "frames", "token_usage"]
