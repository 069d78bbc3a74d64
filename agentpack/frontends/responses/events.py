"""A run's Agent API events as the OpenAI Responses API's stream, and its final ``Response``.

:class:`ResponsesStream` is fed the run's events one by one and returns the Responses events
each one becomes (as dicts, numbered by ``sequence_number``); after the terminal event,
:attr:`ResponsesStream.response` is the ``Response`` object a non-streaming call returns.

=====================================  ==============================================================
Agent API                               Responses API
=====================================  ==============================================================
response created / in_progress          ``response.created`` / ``response.in_progress``
assistant ``message``                   a ``message`` output item: ``output_item.added``,
                                        ``content_part.added``, ``output_text.delta`` … ``.done``,
                                        ``content_part.done``, ``output_item.done`` (refusals as
                                        ``refusal`` parts; images, files and data as text)
``reasoning`` message                   a ``reasoning`` item with ``reasoning_text`` parts
                                        (``response.reasoning_text.delta`` / ``.done``)
``function_call``/``plugin_call``       a ``function_call`` item; arguments streamed as
(``mcp_call``)                          ``function_call_arguments.delta`` (``mcp_call_arguments``)
``*_call_output``                       a ``function_call_output`` item (call id, output)
usage                                   ``usage`` (input, output, total tokens)
completed / failed / canceled           ``response.completed`` / ``response.failed`` (error) /
                                        ``response.incomplete`` (the stop's cause in
                                        ``incomplete_details.message``)
=====================================  ==============================================================
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from agentpack.frontends.base import Translator
from agentpack.protocol.sse import encode_json, encode_json_bytes

_CALLS = {"function_call", "plugin_call", "component_call", "mcp_call"}
_OUTPUTS = {"function_call_output", "plugin_call_output", "component_call_output", "mcp_call_output"}


@dataclass
class _Item:
    """One output item being streamed, with what the client has been sent of it."""

    kind: str  # message | reasoning | function_call | mcp_call | function_call_output
    index: int = -1  # its output_index once announced
    body: dict[str, Any] = field(default_factory=dict)
    parts: dict[int, int] = field(default_factory=dict)  # Agent API content index -> content_index
    part_types: dict[int, str] = field(default_factory=dict)  # content_index -> part type
    texts: dict[int, list[str]] = field(default_factory=dict)  # open content_index -> text sent so far
    done: set[int] = field(default_factory=set)  # Agent API content indexes already completed
    arguments: str = ""  # function call arguments sent so far

    @property
    def announced(self) -> bool:
        return self.index >= 0


def usage_of(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Agent API usage (input/output tokens, or prompt/completion) in the Responses API's shape."""
    if not usage:
        return None
    tokens_in = int(usage.get("input_tokens") or usage.get("prompt_tokens") or 0)
    tokens_out = int(usage.get("output_tokens") or usage.get("completion_tokens") or 0)
    return {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": int(usage.get("total_tokens") or tokens_in + tokens_out),
    }


def _rendered(content: dict[str, Any]) -> str:
    """Non-text content of an answer, as the text an output_text part can carry."""
    kind = content.get("type")
    if kind == "image":
        return f"![image]({content.get('image_url') or ''})"
    if kind == "video":
        return content.get("video_url") or ""
    if kind == "audio":
        return content.get("data") or ""
    if kind == "file":
        return content.get("file_url") or content.get("filename") or content.get("file_id") or ""
    return json.dumps(content.get("data"), ensure_ascii=False)


class ResponsesStream(Translator):
    """Translates one run; see the module doc for the mapping."""

    def __init__(self, response_id: str, base: dict[str, Any]) -> None:
        #: the ``Response`` object, kept current: ``output`` fills as items complete
        self.response: dict[str, Any] = {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "error": None,
            "incomplete_details": None,
            "output": [],
            "usage": None,
            "completed_at": None,
            **base,
        }
        super().__init__()
        self._sequence = 0

    def _emit(self, out: list[dict[str, Any]], kind: str, **fields: Any) -> None:
        out.append({"type": kind, "sequence_number": self._sequence, **fields})
        self._sequence += 1

    def _snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": [dict(item) for item in self.response["output"]]}

    def on_response(self, event: dict[str, Any], out: list[Any]) -> None:
        status = event.get("status")
        if status == "created":
            self._emit(out, "response.created", response=self._snapshot())
        elif status == "in_progress":
            self._emit(out, "response.in_progress", response=self._snapshot())
        elif status in ("completed", "failed", "canceled"):
            for item in list(self.open.values()):  # cut short: announced items end incomplete
                if item.announced:
                    self._finish(item, "incomplete", out)
            self.open.clear()
            response = self.response
            response["usage"] = usage_of(event.get("usage")) or response["usage"]
            response["completed_at"] = event.get("completed_at") or int(time.time())
            if status == "completed":
                response["status"] = "completed"
                self._emit(out, "response.completed", response=self._snapshot())
            elif status == "failed":
                error = event.get("error") or {}
                response["status"] = "failed"
                response["error"] = {
                    "code": "server_error",
                    "message": error.get("message") or "the agent failed",
                    "type": error.get("code"),
                }
                self._emit(out, "response.failed", response=self._snapshot())
            else:
                error = event.get("error") or {}
                response["status"] = "incomplete"
                # OpenAI's reasons (token limits, content filters…) name none of a stop's causes: the
                # reason stays null, as its schema allows, and the cause is said in ``message``.
                response["incomplete_details"] = {"reason": None, "message": error.get("message")}
                self._emit(out, "response.incomplete", response=self._snapshot())

    # -- items ---------------------------------------------------------------------------------
    def on_message(self, event: dict[str, Any], out: list[Any]) -> None:
        msg_id = event.get("id")
        if event.get("status") == "in_progress":
            kind = self._kind(event)
            if kind is None:
                return
            item = self.open[msg_id] = _Item(kind)  # type: ignore[index]
            if kind in ("message", "reasoning"):
                self._announce(item, msg_id, out)  # type: ignore[arg-type]
            return
        item = self.open.pop(msg_id, None)  # type: ignore[arg-type]
        if item is None:
            return
        if event.get("usage"):
            self.response["usage"] = usage_of(event["usage"])
        for content in event.get("content") or []:  # anything not yet sent (a message sent whole)
            if content.get("index") not in item.done:
                self.on_content(item, content, out)
        if not item.announced:  # a call whose data never came: nothing to show
            if item.kind in ("function_call", "mcp_call", "function_call_output") and item.body:
                self._announce(item, msg_id, out)  # type: ignore[arg-type]
            else:
                return
        self._finish(item, "completed", out)

    @staticmethod
    def _kind(event: dict[str, Any]) -> str | None:
        message_type = event.get("type")
        if message_type == "message":
            return "message" if event.get("role") == "assistant" else None
        if message_type == "reasoning":
            return "reasoning"
        if message_type in _CALLS:
            return "mcp_call" if message_type == "mcp_call" else "function_call"
        if message_type in _OUTPUTS:
            return "function_call_output"
        return None

    def _announce(self, item: _Item, msg_id: str, out: list[dict[str, Any]]) -> None:
        """Give the item its place in ``output`` (kept there, updated in place, until it ends)."""
        item.index = len(self.response["output"])
        if item.kind == "message":
            item.body = {"id": msg_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        elif item.kind == "reasoning":
            item.body = {"id": msg_id, "type": "reasoning", "summary": [], "content": [], "status": "in_progress"}
        elif item.kind == "function_call_output":
            item.body = {"id": msg_id, "type": "function_call_output", "status": "in_progress", **item.body}
        else:
            item.body = {"id": msg_id, "type": item.kind, "status": "in_progress", "arguments": "", **item.body}
        self.response["output"].append(item.body)
        added = {**item.body, **({"content": []} if "content" in item.body else {})}
        self._emit(out, "response.output_item.added", output_index=item.index, item=added)

    def _finish(self, item: _Item, status: str, out: list[dict[str, Any]]) -> None:
        for content_index, pieces in item.texts.items():  # parts still open
            self._close_part(item, content_index, "".join(pieces), out)
        item.texts.clear()
        if item.kind in ("function_call", "mcp_call"):
            item.body["arguments"] = item.arguments
            name = (
                "response.mcp_call_arguments.done"
                if item.kind == "mcp_call"
                else "response.function_call_arguments.done"
            )
            self._emit(
                out,
                name,
                item_id=item.body["id"],
                output_index=item.index,
                arguments=item.arguments,
                name=item.body.get("name"),
            )
        item.body["status"] = status
        self._emit(out, "response.output_item.done", output_index=item.index, item=item.body)

    # -- contents --------------------------------------------------------------------------
    def on_content(self, item: _Item, event: dict[str, Any], out: list[Any]) -> None:
        if item.kind in ("message", "reasoning"):
            self._text_content(item, event, out)
        else:
            self._call_content(item, event, out)

    def _text_content(self, item: _Item, event: dict[str, Any], out: list[dict[str, Any]]) -> None:
        index, kind = event.get("index") or 0, event.get("type")
        if kind == "text" and event.get("delta") is True and item.kind == "message":
            content_index = item.parts.get(index)
            if content_index is not None:  # the most frequent event of all: a further text delta
                piece = event.get("text")
                if piece:
                    item.texts[content_index].append(piece)
                    out.append(
                        {
                            "type": "response.output_text.delta",
                            "sequence_number": self._sequence,
                            "item_id": item.body["id"],
                            "output_index": item.index,
                            "content_index": content_index,
                            "delta": piece,
                            "logprobs": [],
                        }
                    )
                    self._sequence += 1
                return
        if index in item.done:
            return
        is_delta = event.get("delta") is True
        if kind in ("text", "refusal"):
            key = kind
            piece = event.get(key) or ""
        elif is_delta:
            return  # other payloads are replaced, not extended: send them whole when complete
        else:
            key, piece = "text", _rendered(event)
        part_type = "reasoning_text" if item.kind == "reasoning" else ("refusal" if key == "refusal" else "output_text")
        content_index = item.parts.get(index)
        if content_index is None:
            content_index = item.parts[index] = len(item.parts)
            item.part_types[content_index] = part_type
            item.texts[content_index] = []
            part: dict[str, Any] = {"type": part_type, ("refusal" if part_type == "refusal" else "text"): ""}
            if part_type == "output_text":
                part["annotations"] = []
            self._emit(
                out,
                "response.content_part.added",
                item_id=item.body["id"],
                output_index=item.index,
                content_index=content_index,
                part=part,
            )
        sent = item.texts.setdefault(content_index, [])
        if not is_delta:  # the completed content: send what the deltas did not
            so_far = "".join(sent)
            piece = piece[len(so_far) :] if piece.startswith(so_far) else piece
        if piece:
            sent.append(piece)
            self._emit(
                out,
                self._delta_name(part_type),
                item_id=item.body["id"],
                output_index=item.index,
                content_index=content_index,
                delta=piece,
                **({"logprobs": []} if part_type == "output_text" else {}),
            )
        if not is_delta:
            item.done.add(index)
            self._close_part(item, content_index, "".join(sent), out)
            del item.texts[content_index]

    @staticmethod
    def _delta_name(part_type: str) -> str:
        return {
            "output_text": "response.output_text.delta",
            "refusal": "response.refusal.delta",
            "reasoning_text": "response.reasoning_text.delta",
        }[part_type]

    def _close_part(self, item: _Item, content_index: int, text: str, out: list[dict[str, Any]]) -> None:
        ids = {"item_id": item.body["id"], "output_index": item.index, "content_index": content_index}
        part_type = item.part_types[content_index]
        part: dict[str, Any]
        if part_type == "reasoning_text":
            part = {"type": "reasoning_text", "text": text}
            self._emit(out, "response.reasoning_text.done", **ids, text=text)
        elif part_type == "refusal":
            part = {"type": "refusal", "refusal": text}
            self._emit(out, "response.refusal.done", **ids, refusal=text)
        else:
            part = {"type": "output_text", "text": text, "annotations": []}
            self._emit(out, "response.output_text.done", **ids, text=text, logprobs=[])
        self._emit(out, "response.content_part.done", **ids, part=part)
        item.body["content"].append(part)

    def _call_content(self, item: _Item, event: dict[str, Any], out: list[dict[str, Any]]) -> None:
        data = event.get("data")
        if not isinstance(data, dict):
            return
        if item.kind == "function_call_output":
            if event.get("delta") is True:
                return  # the result is sent once, complete
            output = data.get("output")
            fields = {
                "call_id": data.get("call_id"),
                "output": output if isinstance(output, str) else json.dumps(output, ensure_ascii=False),
            }
            if data.get("name"):
                fields["name"] = data["name"]
            if item.announced:
                item.body.update(fields)
            else:
                item.body = fields
                self._announce(item, self._id_of(event), out)
            return
        if not item.announced:
            if not data.get("name"):
                return  # announced once its name is known
            item.body = {"call_id": data.get("call_id") or "", "name": data["name"]}
            if item.kind == "mcp_call":
                item.body["server_label"] = data.get("server_label") or ""
            self._announce(item, self._id_of(event), out)
        arguments = data.get("arguments")
        if isinstance(arguments, (dict, list)):
            arguments = json.dumps(arguments, ensure_ascii=False)
        if isinstance(arguments, str) and arguments.startswith(item.arguments) and len(arguments) > len(item.arguments):
            piece = arguments[len(item.arguments) :]
            item.arguments = arguments
            name = (
                "response.mcp_call_arguments.delta"
                if item.kind == "mcp_call"
                else "response.function_call_arguments.delta"
            )
            self._emit(out, name, item_id=item.body["id"], output_index=item.index, delta=piece)
        elif isinstance(arguments, str) and event.get("delta") is not True:
            item.arguments = arguments  # rewritten rather than extended: the done event carries it whole

    @staticmethod
    def _id_of(event: dict[str, Any]) -> str:
        return event.get("msg_id") or event.get("id") or ""


def frames(events: list[dict[str, Any]]) -> bytes:
    """Server-sent events as OpenAI sends them: ``event: <type>`` then ``data: <json>``."""
    return b"".join(_text_delta(e) if e["type"] == "response.output_text.delta" else _frame(e) for e in events)


def _frame(event: dict[str, Any]) -> bytes:
    frame: bytes = b"event: " + event["type"].encode("ascii") + b"\ndata: " + encode_json_bytes(event) + b"\n\n"
    return frame


def _text_delta(event: dict[str, Any]) -> bytes:
    """The most frequent frame, written without walking the dict: byte for byte what
    :func:`_frame` makes of it (same keys, same order)."""
    try:
        return (
            'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":%d,'  # noqa: UP031 (a JSON template)
            '"item_id":%s,"output_index":%d,"content_index":%d,"delta":%s,"logprobs":[]}\n\n'
            % (
                event["sequence_number"],
                encode_json(event["item_id"]),
                event["output_index"],
                event["content_index"],
                encode_json(event["delta"]),
            )
        ).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the generic encoder escapes it
        return _frame(event)


__all__ = ["ResponsesStream", "frames", "usage_of"]
