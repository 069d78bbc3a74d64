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
from collections.abc import Callable
from typing import Any

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

#: Keys every content event has besides its payload.
_CONTENT_KEYS = frozenset({"sequence_number", "object", "status", "error", "type", "index", "delta", "msg_id"})


class OpenContent:
    """One content item of an open message, with its payload accumulated so far.

    Text that grows delta by delta is kept as a list of pieces and joined once, when the
    content completes: concatenating on every delta would make long answers quadratic.

    (This module's records are plain slotted classes, not dataclasses: they are touched on
    every event, and a dataclass costs ``import agentpack`` a quarter of a millisecond each.)
    """

    __slots__ = ("completed", "index", "payload", "pieces", "type")

    def __init__(self, index: int, type: str, payload: dict[str, Any]) -> None:
        self.index = index
        self.type = type
        self.payload = payload
        self.completed: dict[str, Any] | None = None
        self.pieces: list[str] = []

    def restart(self) -> None:
        """Forget the text so far (the agent rewrote it rather than extending it)."""
        self.pieces.clear()

    def accumulated(self) -> dict[str, Any]:
        appendable = _APPENDABLE.get(self.type)
        if appendable is None:
            return dict(self.payload)
        return {**self.payload, appendable: "".join(self.pieces)}


class OpenMessage:
    """An output message that has been announced (``in_progress``) and not yet completed."""

    __slots__ = ("completed", "contents", "id", "metadata", "role", "type", "usage")

    def __init__(self, id: str, type: str, role: str, metadata: dict[str, Any] | None = None) -> None:
        self.id = id
        self.type = type
        self.role = role
        self.metadata: dict[str, Any] = {} if metadata is None else metadata
        self.usage: dict[str, Any] | None = None
        self.contents: list[OpenContent] = []
        self.completed = False

    def new_content(self, content_type: str) -> OpenContent:
        item = OpenContent(index=len(self.contents), type=content_type, payload={})
        self.contents.append(item)
        return item


def incomplete_message(announced: dict[str, Any], sent: list[dict[str, Any]]) -> dict[str, Any]:
    """A message the client saw start but not finish: its ``in_progress`` event, with the content
    folded from the content events ``sent`` since, marked ``incomplete``."""
    contents: dict[int, dict[str, Any]] = {}
    pieces: dict[int, list[str]] = {}
    for event in sent:
        index = event["index"]
        if event["status"] == RunStatus.COMPLETED:
            contents[index] = event
            pieces.pop(index, None)
            continue
        item = contents.get(index)
        if item is None:
            item = contents[index] = {
                "sequence_number": None,
                "object": "content",
                "status": RunStatus.INCOMPLETE,
                "error": None,
                "type": event["type"],
                "index": index,
                "delta": None,
                "msg_id": event["msg_id"],
                **dict.fromkeys(PAYLOAD_KEYS.get(event["type"], ())),
            }
        elif item["status"] == RunStatus.COMPLETED:
            continue
        item["sequence_number"] = event["sequence_number"]
        appendable = _APPENDABLE.get(event["type"])
        for key, value in event.items():
            if key in _CONTENT_KEYS:
                continue
            if key == appendable:
                pieces.setdefault(index, []).append(value or "")
            else:
                item[key] = value
    for index, parts in pieces.items():
        item = contents[index]
        key = _APPENDABLE[item["type"]]
        item[key] = (item.get(key) or "") + "".join(parts)
    return {
        **announced,
        "sequence_number": sent[-1]["sequence_number"] if sent else announced["sequence_number"],
        "status": RunStatus.INCOMPLETE,
        "content": [contents[i] for i in sorted(contents)],
    }


class ResponseBuilder:
    """Turns "what happened" into numbered protocol events for one response."""

    def __init__(
        self,
        response_id: str | None = None,
        session_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.response_id = response_id or new_id("response")
        self.session_id = session_id
        self._clock = clock
        self.created_at = int(clock())
        self._sequence = 0
        self.output: list[dict[str, Any]] = []
        self.usage: dict[str, Any] | None = None
        self.terminal: dict[str, Any] | None = None
        self._open: list[OpenMessage] = []
        # messages announced to the client and not yet completed: their in_progress event, and
        # the content events sent since (folded into content only if the run is canceled)
        self._announced: dict[str, dict[str, Any]] = {}
        self._sent: dict[str, list[dict[str, Any]]] = {}

    # -- numbering ---------------------------------------------------------------------
    def stamp(self, event: dict[str, Any]) -> dict[str, Any]:
        """Number ``event`` as it is sent, and record what the client now has.

        Numbers are given at send time, not build time: a run that is stopped drops the
        events it had built but not sent, and the client must still see 0, 1, 2… with no
        gap.  For the same reason the output is kept here: a completed message joins it
        as it is sent (so ``output`` lists messages in the order they were completed), and
        the content of messages still open is accumulated from the deltas actually sent,
        so a ``canceled`` response can carry exactly what the client received.
        """
        sequence = self._sequence
        event["sequence_number"] = sequence
        self._sequence = sequence + 1
        kind = event["object"]
        if kind == "content":  # by far the most frequent: one lookup, one append
            sent = self._sent.get(event["msg_id"])
            if sent is not None:
                sent.append(event)
        elif kind == "message":
            status = event["status"]
            if status == RunStatus.COMPLETED:
                self._announced.pop(event["id"], None)
                self._sent.pop(event["id"], None)
                self.output.append(event)
                if event.get("usage"):
                    self.usage = event["usage"]
            elif status == RunStatus.IN_PROGRESS:
                self._announced[event["id"]] = event
                self._sent[event["id"]] = []
        return event

    # -- response ----------------------------------------------------------------------
    def _response(
        self,
        status: str,
        *,
        error: dict[str, str] | None = None,
        completed_at: int | None = None,
        output: list[dict[str, Any]] | None = None,
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

    def _terminal(self, status: str, error: dict[str, str] | None = None, partial: bool = False) -> dict[str, Any]:
        """The one terminal event; build it only when everything before it has been stamped.

        ``partial`` adds the messages the client saw start but not finish, each as it
        received it, with status ``incomplete``, after the completed ones.
        """
        if self.terminal is not None:
            raise RuntimeError("a response has exactly one terminal event; it was already built")
        output = list(self.output)
        if partial:
            output.extend(incomplete_message(self._announced[key], sent) for key, sent in self._sent.items())
        event = self._response(
            status,
            error=error,
            completed_at=int(self._clock()),
            output=output,
        )
        self.terminal = event
        return event

    def completed(self) -> dict[str, Any]:
        return self._terminal(RunStatus.COMPLETED)

    def failed(self, code: str, message: str) -> dict[str, Any]:
        return self._terminal(RunStatus.FAILED, {"code": code, "message": message})

    def canceled(self, reason: str = "the run was stopped") -> dict[str, Any]:
        """Stopped: the output also holds the messages cut short, as far as they were sent."""
        return self._terminal(RunStatus.CANCELED, {"code": "CANCELED", "message": reason}, partial=True)

    # -- messages ----------------------------------------------------------------------
    def _message(self, msg: OpenMessage, status: str, content: list[dict[str, Any]] | None) -> dict[str, Any]:
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
        metadata: dict[str, Any] | None = None,
    ) -> tuple[OpenMessage, dict[str, Any]]:
        """Announce a new output message; returns it and its ``in_progress`` event."""
        msg = OpenMessage(id=new_id("msg"), type=message_type, role=role, metadata=metadata or {})
        self._open.append(msg)
        return msg, self._message(msg, RunStatus.IN_PROGRESS, None)

    def _content(
        self, msg: OpenMessage, item: OpenContent, status: str, delta: bool | None, payload: dict[str, Any]
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
        if appendable is not None and len(payload) == 1 and appendable in payload:
            # the frequent case (one more piece of text), built in one go: what _content builds
            text = payload[appendable]
            item.pieces.append(text or "")
            return {
                "sequence_number": None,
                "object": "content",
                "status": RunStatus.IN_PROGRESS,
                "error": None,
                "type": item.type,
                "index": item.index,
                "delta": True,
                "msg_id": msg.id,
                appendable: text,
            }
        for key, value in payload.items():
            if key == appendable:
                item.pieces.append(value or "")
            else:
                item.payload[key] = value
        return self._content(msg, item, RunStatus.IN_PROGRESS, True, payload)

    def complete_content(
        self, msg: OpenMessage, item: OpenContent, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Close a content item with its full payload (``payload`` overrides what was accumulated)."""
        if payload is not None:
            appendable = _APPENDABLE.get(item.type)
            if appendable in payload:
                item.pieces[:] = [payload[appendable] or ""]
            item.payload.update({k: v for k, v in payload.items() if k != appendable})
        accumulated = item.accumulated()
        full = {key: accumulated.get(key) for key in PAYLOAD_KEYS.get(item.type, ())}
        full.update({k: v for k, v in accumulated.items() if k not in full})
        event = self._content(msg, item, RunStatus.COMPLETED, None, full)
        item.completed = event
        return event

    def complete_message(self, msg: OpenMessage) -> list[dict[str, Any]]:
        """Close every open content of ``msg``, then ``msg`` itself; the message joins the output."""
        events = [self.complete_content(msg, c) for c in msg.contents if c.completed is None]
        # every content is completed by now (the line above)
        completed = self._message(
            msg, RunStatus.COMPLETED, [c.completed for c in msg.contents if c.completed is not None]
        )
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
