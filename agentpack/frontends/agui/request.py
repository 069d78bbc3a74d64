"""An AG-UI ``RunAgentInput`` as an Agent API request.

Imports ``ag_ui`` (the ``agentpack[agui]`` extra): the messages, tools and context of the
input are validated with AG-UI's own types.

- ``threadId`` is the session, ``runId`` the request id; the user is ``forwardedProps.user_id``
  (or ``userId``), else the session's, as on ``/process``.
- Messages: ``system`` and ``developer`` → system; ``user`` text and media parts (image, audio,
  video, document, and the legacy binary part) → text and media contents; ``assistant`` text →
  an assistant message and each of its ``toolCalls`` → a ``function_call`` message; ``tool`` →
  ``function_call_output``; ``reasoning`` → a reasoning message.  ``activity`` messages are
  UI state, not conversation, and are left out.
- ``tools`` become Agent API function tools; ``state``, ``forwardedProps``, ``parentRunId`` and
  ``context`` are kept on the request (``request.state``, ``request.forwarded_props``…).
"""

from __future__ import annotations

from typing import Any

from ag_ui.core.types import Context, Message, Tool
from pydantic import BaseModel, ConfigDict, Field

from agentpack.protocol.schemas import AgentRequest

_MEDIA = {"image": ("image", "image_url"), "audio": ("audio", "data"), "video": ("video", "video_url")}


class FlexibleRunAgentInput(BaseModel):
    """AG-UI's ``RunAgentInput`` with only ``threadId`` and ``runId`` required (either spelling,
    camelCase or snake_case), as AgentScope Runtime accepts it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    thread_id: str = Field(..., alias="threadId")
    run_id: str = Field(..., alias="runId")
    parent_run_id: str | None = Field(None, alias="parentRunId")
    state: Any = None
    messages: list[Message] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    context: list[Context] = Field(default_factory=list)
    forwarded_props: Any = Field(None, alias="forwardedProps")


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(_get(part, "text") or "" for part in content if _get(part, "type") == "text")


def _source_url(source: Any) -> str | None:
    if source is None:
        return None
    if _get(source, "type") == "data":
        return f"data:{_get(source, 'mime_type') or 'application/octet-stream'};base64,{_get(source, 'value')}"
    url: str | None = _get(source, "value")
    return url


def _part(part: Any) -> dict[str, Any] | None:
    kind = _get(part, "type")
    if kind == "text":
        return {"type": "text", "text": _get(part, "text") or ""}
    if kind in _MEDIA:
        content_type, key = _MEDIA[kind]
        return {"type": content_type, key: _source_url(_get(part, "source"))}
    if kind == "document":
        return {"type": "file", "file_url": _source_url(_get(part, "source"))}
    if kind == "binary":  # before AG-UI 1.0
        mime = _get(part, "mime_type") or _get(part, "mimeType") or ""
        url = _get(part, "url") or (f"data:{mime};base64,{_get(part, 'data')}" if _get(part, "data") else None)
        if mime.startswith("image/"):
            return {"type": "image", "image_url": url}
        return {"type": "file", "file_url": url, "file_id": _get(part, "id"), "filename": _get(part, "filename")}
    return None


def _messages(message: Any) -> list[dict[str, Any]]:
    role = _get(message, "role")
    content = _get(message, "content")
    if role in ("system", "developer"):
        return [{"role": "system", "content": [{"type": "text", "text": _text(content)}]}]
    if role == "user":
        parts = (
            [{"type": "text", "text": content}]
            if isinstance(content, str)
            else [p for p in map(_part, content or []) if p]
        )
        return [{"role": "user", "content": parts}]
    if role == "assistant":
        converted = [{"role": "assistant", "content": [{"type": "text", "text": content}]}] if content else []
        for call in _get(message, "tool_calls") or []:
            function = _get(call, "function")
            data = {
                "call_id": _get(call, "id"),
                "name": _get(function, "name"),
                "arguments": _get(function, "arguments") or "",
            }
            converted.append(
                {"role": "assistant", "type": "function_call", "content": [{"type": "data", "data": data}]}
            )
        return converted
    if role == "tool":
        data = {"call_id": _get(message, "tool_call_id"), "output": _text(content)}
        return [{"role": "tool", "type": "function_call_output", "content": [{"type": "data", "data": data}]}]
    if role == "reasoning":
        return [{"role": "assistant", "type": "reasoning", "content": [{"type": "text", "text": _text(content)}]}]
    return []


def user_of(forwarded_props: Any) -> str | None:
    if isinstance(forwarded_props, dict):
        user = forwarded_props.get("user_id") or forwarded_props.get("userId")
        return user if isinstance(user, str) and user else None
    return None


def to_agent_request(body: FlexibleRunAgentInput) -> AgentRequest:
    tools = [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in body.tools
    ]
    return AgentRequest.model_validate(
        {
            "input": [converted for message in body.messages for converted in _messages(message)],
            "session_id": body.thread_id,
            "id": body.run_id,
            "user_id": user_of(body.forwarded_props),
            "stream": True,
            "tools": tools or None,
            "state": body.state,
            "forwarded_props": body.forwarded_props,
            "parent_run_id": body.parent_run_id,
            "context": body.context,
        }
    )


__all__ = ["FlexibleRunAgentInput", "to_agent_request", "user_of"]
