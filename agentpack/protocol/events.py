"""Build the event sequence of one Agent API response.

:class:`ResponseBuilder` owns the bookkeeping a client relies on: sequence numbers that
count 0, 1, 2… with no gaps, ``created_at`` taken when *this* response starts, messages
opened before their deltas, contents completed before their message, and exactly one
terminal response event.  Framework converters only say *what* happened ("a text delta
for that message"); the builder decides *how* it looks on the wire.

Events are plain dicts: they are encoded once and sent, so building pydantic models for
every delta would only add cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from agentpack.protocol.schemas import MessageType, RunStatus, new_id

#: Payload keys per content type, so a completed content carries the full payload.
PAYLOAD_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "data": ("data",),
    "image": ("image_url",),
    "audio": ("data", "format"),
    "video": ("video_url",),
    "file": ("file_url", "file_id", "filename", "file_data"),
    "refusal": ("refusal",),
}

#: Types whose deltas concatenate (text grows); every other type's delta replaces the payload.
_APPENDABLE = {"text": "text", "refusal": "refusal"}


@dataclass
class OpenContent:
    """One content item of an open message, with its payload accumulated so far."""

    index: int
    type: str
    payload: dict[str, Any]
    completed: Optional[dict[str, Any]] = None


@dataclass
class OpenMessage:
    """An output message that has been announced (``in_progress``) and not yet completed."""

    id: str
    type: str
    role: str
    metadata: dict[str, Any] = field(default_factory=dict)
    usage: Optional[dict[str, Any]] = None
    contents: list[OpenContent] = field(default_factory=list)
    completed: bool = False

    def new_content(self, content_type: str) -> OpenContent:
        item = OpenContent(index=len(self.contents), type=content_type, payload={})
        self.contents.append(item)
        return item


class ResponseBuilder:
    """Turns "what happened" into numbered protocol events for one response."""

    def __init__(
        self,
        response_id: Optional[str] = None,
        session_id: Optional[str] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.response_id = response_id or new_id("response")
        self.session_id = session_id
        self._clock = clock
        self.created_at = int(clock())
        self._sequence = 0
        self.output: list[dict[str, Any]] = []
        self.usage: Optional[dict[str, Any]] = None
        self.terminal: Optional[dict[str, Any]] = None
        self._open: list[OpenMessage] = []

    # -- numbering ---------------------------------------------------------------------
    def stamp(self, event: dict[str, Any]) -> dict[str, Any]:
        """Number ``event`` as it is sent, and record a completed message in the output.

        Numbers are given at send time, not build time: a run that is stopped drops the
        events it had built but not sent, and the client must still see 0, 1, 2… with no
        gap, and an output holding only messages it actually received.
        """
        event["sequence_number"] = self._sequence
        self._sequence += 1
        if event["object"] == "message" and event["status"] == RunStatus.COMPLETED:
            self.output.append(event)
            if event.get("usage"):
                self.usage = event["usage"]
        return event

    # -- response ----------------------------------------------------------------------
    def _response(
        self,
        status: str,
        *,
        error: Optional[dict[str, str]] = None,
        completed_at: Optional[int] = None,
        output: Optional[list[dict[str, Any]]] = None,
    ) -> dict[str, Any]:
        return {
            "sequence_number": None,
            "object": "response",
            "status": status,
            "error": error,
            "id": self.response_id,
            "created_at": self.created_at,
            "completed_at": completed_at,
            "output": output,
            "usage": self.usage,
            "session_id": self.session_id,
        }

    def created(self) -> dict[str, Any]:
        return self._response(RunStatus.CREATED)

    def in_progress(self) -> dict[str, Any]:
        return self._response(RunStatus.IN_PROGRESS)

    def _terminal(self, status: str, error: Optional[dict[str, str]] = None) -> dict[str, Any]:
        """The one terminal event; build it only when everything before it has been stamped."""
        if self.terminal is not None:
            raise RuntimeError("a response has exactly one terminal event; it was already built")
        event = self._response(
            status,
            error=error,
            completed_at=int(self._clock()),
            output=list(self.output),
        )
        self.terminal = event
        return event

    def completed(self) -> dict[str, Any]:
        return self._terminal(RunStatus.COMPLETED)

    def failed(self, code: str, message: str) -> dict[str, Any]:
        return self._terminal(RunStatus.FAILED, {"code": code, "message": message})

    def canceled(self, reason: str = "the run was stopped") -> dict[str, Any]:
        return self._terminal(RunStatus.CANCELED, {"code": "CANCELED", "message": reason})

    # -- messages ----------------------------------------------------------------------
    def _message(self, msg: OpenMessage, status: str, content: Optional[list]) -> dict[str, Any]:
        return {
            "sequence_number": None,
            "object": "message",
            "status": status,
            "error": None,
            "id": msg.id,
            "type": msg.type,
            "role": msg.role,
            "content": content,
            "code": None,
            "message": None,
            "usage": msg.usage,
            "metadata": msg.metadata,
        }

    def open_message(
        self,
        message_type: str = MessageType.MESSAGE,
        role: str = "assistant",
        metadata: Optional[dict[str, Any]] = None,
    ) -> tuple[OpenMessage, dict[str, Any]]:
        """Announce a new output message; returns it and its ``in_progress`` event."""
        msg = OpenMessage(id=new_id("msg"), type=message_type, role=role, metadata=metadata or {})
        self._open.append(msg)
        return msg, self._message(msg, RunStatus.IN_PROGRESS, None)

    def _content(
        self, msg: OpenMessage, item: OpenContent, status: str, delta: Optional[bool], payload: dict
    ) -> dict[str, Any]:
        event = {
            "sequence_number": None,
            "object": "content",
            "status": status,
            "error": None,
            "type": item.type,
            "index": item.index,
            "delta": delta,
            "msg_id": msg.id,
        }
        event.update(payload)
        return event

    def delta(self, msg: OpenMessage, item: OpenContent, payload: dict[str, Any]) -> dict[str, Any]:
        """A piece of content: text appends to what came before, other payloads replace it."""
        appendable = _APPENDABLE.get(item.type)
        for key, value in payload.items():
            if key == appendable:
                item.payload[key] = item.payload.get(key, "") + (value or "")
            else:
                item.payload[key] = value
        return self._content(msg, item, RunStatus.IN_PROGRESS, True, payload)

    def complete_content(
        self, msg: OpenMessage, item: OpenContent, payload: Optional[dict[str, Any]] = None
    ) -> dict[str, Any]:
        """Close a content item with its full payload (``payload`` overrides what was accumulated)."""
        if payload is not None:
            item.payload.update(payload)
        full = {key: item.payload.get(key) for key in PAYLOAD_KEYS.get(item.type, ())}
        full.update({k: v for k, v in item.payload.items() if k not in full})
        event = self._content(msg, item, RunStatus.COMPLETED, None, full)
        item.completed = event
        return event

    def complete_message(self, msg: OpenMessage) -> list[dict[str, Any]]:
        """Close every open content of ``msg``, then ``msg`` itself; the message joins the output."""
        events = [self.complete_content(msg, c) for c in msg.contents if c.completed is None]
        completed = self._message(msg, RunStatus.COMPLETED, [c.completed for c in msg.contents])
        msg.completed = True
        self._open.remove(msg)
        events.append(completed)
        return events

    def complete_open_messages(self) -> list[dict[str, Any]]:
        """Close whatever the handler left open when it finished normally."""
        events: list[dict[str, Any]] = []
        for msg in list(self._open):
            events.extend(self.complete_message(msg))
        return events
