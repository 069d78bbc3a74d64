"""An OpenAI Responses API request (``POST …/responses``) as an Agent API request.

What maps to what (docs/protocols.md has the table):

- ``input``: a string is one user message; items of type ``message`` (or with a ``role`` and
  no type) keep their role — ``developer`` becomes ``system``, as the Agent API has no
  developer role — and their parts (``input_text``/``output_text`` → text, ``input_image`` →
  image, ``input_file`` → file, ``input_audio`` → audio, ``refusal``); ``function_call`` and
  ``function_call_output`` items become the Agent API's function-call messages, ``reasoning``
  items reasoning messages.  ``instructions`` is a system message first.
- The session: ``conversation`` (an id, or ``{"id": …}``) is the session id;
  ``previous_response_id`` continues the session of the response it names (response ids
  carry their session, so any instance can continue any conversation without a store);
  otherwise a new session.  The user: ``user_id`` (AgentScope Runtime's key), else ``user``,
  else the session's.
- ``model``, ``temperature``, ``top_p``, ``max_output_tokens`` (→ ``max_tokens``), function
  ``tools``; the rest of the body is kept on the request for the handler.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from agentpack.protocol.schemas import AgentRequest

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = {"input_text", "output_text", "text", "summary_text", "reasoning_text"}


class RequestError(ValueError):
    """A request the API refuses with 400; ``param`` names the offending field, as OpenAI does."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Conversation(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str


class ResponsesRequest(BaseModel):
    """The body of ``POST …/responses`` (only what is read here is declared; the rest is kept)."""

    model_config = ConfigDict(extra="allow")

    input: str | list[dict[str, Any]]
    model: str | None = None
    instructions: str | None = None
    stream: StrictBool = False
    conversation: str | Conversation | None = None
    previous_response_id: str | None = None
    user: str | None = None
    user_id: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, Any] | None = None


def parse(body: Any) -> ResponsesRequest:
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    try:
        return ResponsesRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise RequestError(f"Invalid value for '{param}': {first['msg']}.", param) from None


# -- response ids that carry their session ----------------------------------------------------
def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii").rstrip("=")


def new_response_id(session_id: str, user_id: str) -> str:
    """``resp_<random>.<session>[.<user>]``: continuing a conversation from its last response
    needs no shared store, on any instance."""
    parts = [f"resp_{uuid.uuid4().hex}", _b64(session_id)]
    if user_id != session_id:
        parts.append(_b64(user_id))
    return ".".join(parts)


def session_of(response_id: str) -> tuple[str, str]:
    """``(session_id, user_id)`` of a response id made by :func:`new_response_id`."""
    parts = response_id.split(".")
    try:
        if not parts[0].startswith("resp_") or len(parts) not in (2, 3):
            raise ValueError
        decoded = [base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)).decode("utf-8") for p in parts[1:]]
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise RequestError(
            f"previous_response_id {response_id[:80]!r} was not issued by this agent; "
            "pass the id of one of its responses, or continue with conversation=<id>",
            "previous_response_id",
        ) from None
    return decoded[0], decoded[-1]


# -- input -------------------------------------------------------------------------------------
def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def _part(part: Any, where: str) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise RequestError(f"{where} must be an object with a type, e.g. {{'type': 'input_text', 'text': '…'}}", where)
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "refusal", "refusal": part.get("refusal") or ""}
    if kind == "input_image":
        url = part.get("image_url") or part.get("file_id")
        return {"type": "image", "image_url": url}
    if kind == "input_file":
        return {
            "type": "file",
            "file_url": part.get("file_url"),
            "file_id": part.get("file_id"),
            "filename": part.get("filename"),
            "file_data": part.get("file_data"),
        }
    if kind == "input_audio":
        audio = part.get("input_audio") or part
        return {"type": "audio", "data": audio.get("data"), "format": audio.get("format")}
    raise RequestError(
        f"{where}.type {kind!r} is not supported; use input_text, input_image, input_file or input_audio",
        f"{where}.type",
    )


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise RequestError(f"{where}.role must be one of user, assistant, system or developer", f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        parts = [{"type": "text", "text": content}]
    elif isinstance(content, list):
        parts = [_part(p, f"{where}.content.{i}") for i, p in enumerate(content)]
    else:
        raise RequestError(f"{where}.content must be a string or a list of parts", f"{where}.content")
    return {"role": role, "content": parts}


def _item(item: Any, where: str) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        raise RequestError(f"{where} must be an object (a message or another input item)", where)
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        return _message(item, where)
    if kind == "function_call":
        data = {"call_id": item.get("call_id"), "name": item.get("name"), "arguments": item.get("arguments") or ""}
        return {"role": "assistant", "type": "function_call", "content": [{"type": "data", "data": data}]}
    if kind == "function_call_output":
        data = {"call_id": item.get("call_id"), "output": _text_of(item.get("output"))}
        return {"role": "tool", "type": "function_call_output", "content": [{"type": "data", "data": data}]}
    if kind == "reasoning":
        text = _text_of(item.get("content")) or _text_of(item.get("summary"))
        return {"role": "assistant", "type": "reasoning", "content": [{"type": "text", "text": text}]}
    raise RequestError(
        f"{where}.type {kind!r} is not supported; send message, function_call, function_call_output or reasoning items",
        f"{where}.type",
    )


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") == "function" and "function" not in tool:
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        return {"type": "function", "function": function}
    return tool


def to_agent_request(body: ResponsesRequest) -> tuple[AgentRequest, str | None]:
    """The Agent API request, and the conversation id the response echoes (``None`` without one)."""
    if body.conversation is not None and body.previous_response_id is not None:
        raise RequestError("Pass either conversation or previous_response_id, not both.", "conversation")
    conversation = body.conversation.id if isinstance(body.conversation, Conversation) else body.conversation
    session_id, user_id = conversation, None
    if body.previous_response_id is not None:
        session_id, user_id = session_of(body.previous_response_id)
    items = (
        [{"role": "user", "content": [{"type": "text", "text": body.input}]}]
        if isinstance(body.input, str)
        else [_item(item, f"input.{i}") for i, item in enumerate(body.input)]
    )
    if body.instructions:
        items.insert(0, {"role": "system", "content": [{"type": "text", "text": body.instructions}]})
    declared = set(ResponsesRequest.model_fields)
    extra = {k: v for k, v in body.model_dump(exclude_unset=True).items() if k not in declared}
    fields = {
        "input": items,
        "session_id": session_id,
        "user_id": body.user_id or body.user or user_id,
        "model": body.model,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_tokens": body.max_output_tokens,
        "tools": [_tool(t) for t in body.tools] if body.tools else None,
        "stream": body.stream,
        **{
            k: v
            for k, v in (
                ("tool_choice", body.tool_choice),
                ("parallel_tool_calls", body.parallel_tool_calls),
                ("metadata", body.metadata),
            )
            if v is not None
        },
        **extra,
    }
    try:
        return AgentRequest.model_validate(fields), conversation
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise RequestError(f"Invalid value for '{param}': {first['msg']}.", param) from None


__all__ = ["RequestError", "ResponsesRequest", "new_response_id", "parse", "session_of", "to_agent_request"]
