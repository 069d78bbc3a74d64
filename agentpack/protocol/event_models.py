"""Pydantic models of the streamed events: the wire format, as documentation and for clients.

The server builds plain dicts of these shapes (:mod:`agentpack.protocol.events`) because
validating every delta of every stream would cost more than it tells; tests and clients
use these models to check what they receive.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Error(BaseModel):
    code: str
    message: str


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="allow")

    sequence_number: int
    status: str
    error: Error | None = None


class ContentEvent(_EventBase):
    object: Literal["content"] = "content"
    type: str
    index: int | None = None
    delta: bool | None = None
    msg_id: str


class MessageEvent(_EventBase):
    object: Literal["message"] = "message"
    id: str
    type: str
    role: str
    content: list[dict[str, Any]] | None = None
    code: str | None = None
    message: str | None = None
    usage: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class ResponseEvent(_EventBase):
    """The ``response`` object; the terminal one is also the body of a ``"stream": false`` call."""

    object: Literal["response"] = "response"
    id: str
    created_at: int
    completed_at: int | None = None
    output: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None
    session_id: str | None = None
