"""The conversation session a session-history service stores (AgentScope Runtime 1.0's
``agentscope_runtime.engine.schemas.session.Session``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agentpack.protocol.schemas import Message


class Session(BaseModel):
    """One conversation of one user: its id, its owner and its messages, oldest first.

    Services return messages as :class:`~agentpack.protocol.schemas.Message` objects; a dict
    given here is validated into one.  :meth:`SessionHistoryService.list_sessions` returns
    sessions with ``messages`` left empty.
    """

    id: str
    user_id: str
    messages: list[Message | dict[str, Any]] = []
