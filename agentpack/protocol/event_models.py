"""Pydantic models of the streamed events: the wire format, as documentation and for clients.

The server builds plain dicts of these shapes (:mod:`agentpack.protocol.events`) because
validating every delta of every stream would cost more than it tells; tests and clients
use these models to check what they receive.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict


class Error(BaseModel):
    code: str
    message: str


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="allow")

    sequence_number: int
    status: str
    error: Optional[Error] = None


class ContentEvent(_EventBase):
    object: Literal["content"] = "content"
    type: str
    index: Optional[int] = None
    delta: Optional[bool] = None
    msg_id: str


class MessageEvent(_EventBase):
    object: Literal["message"] = "message"
    id: str
    type: str
    role: str
    content: Optional[list[dict[str, Any]]] = None
    code: Optional[str] = None
    message: Optional[str] = None
    usage: Optional[dict[str, Any]] = None
    metadata: Optional[dict[str, Any]] = None


class ResponseEvent(_EventBase):
    """The ``response`` object; the terminal one is also the body of a ``"stream": false`` call."""

    object: Literal["response"] = "response"
    id: str
    created_at: int
    completed_at: Optional[int] = None
    output: Optional[list[dict[str, Any]]] = None
    usage: Optional[dict[str, Any]] = None
    session_id: Optional[str] = None
