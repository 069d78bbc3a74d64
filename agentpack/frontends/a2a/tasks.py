"""A2A tasks: one per run of the agent, its state kept where every instance can read it.

A task's life is the run's: ``submitted`` when the message arrives, ``working`` once the run
has started, then ``completed``, ``failed`` (the handler raised, a time limit passed) or
``canceled`` (``tasks/cancel``, ``stop_chat``, a shutdown).  A task whose session was busy is
``rejected`` without running.  The run goes on when a streaming client disconnects, as A2A
tasks do: the client may come back with ``tasks/resubscribe`` / ``SubscribeToTask`` or
``tasks/get``; its time limits bound it.

What the run produces becomes the task's artifacts as it is produced:

=============================  ==================================================================
Agent API                       A2A
=============================  ==================================================================
assistant ``message`` text      artifact ``answer`` (id = the message's id): each delta appended
                                as a text part, a last empty chunk when the message completes
images, audio, video, files     parts with a URL (or raw bytes for ``data:`` URIs), media type
data                            a data part
``reasoning`` message           artifact ``reasoning`` (metadata ``type: reasoning``), kept apart
``*_call``, ``*_call_output``   an artifact per call and per result, one data part
                                (``call_id``, ``name``, ``arguments`` / ``output``), metadata
                                ``type`` = the Agent API message type
usage                           the task's metadata ``usage``
failed / canceled               the final status carries the reason as an agent message
=============================  ==================================================================

In the stored task each answer's text is one part (the deltas joined).  The record —
the task as A2A JSON, with its user and when it was last written — goes to the interrupt
backend's records (Redis with the Redis backend), when the run starts, at most every
:data:`FLUSH_INTERVAL` while it produces, and when it ends; it is kept for the app's
``task_result_seconds``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional

from a2a.types import a2a_pb2
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

from agentpack._aio import wait_bounded
from agentpack.interrupt.records import Records

logger = logging.getLogger("agentpack.a2a")

S = a2a_pb2.TaskState
TERMINAL_STATES = frozenset({S.TASK_STATE_COMPLETED, S.TASK_STATE_FAILED, S.TASK_STATE_CANCELED, S.TASK_STATE_REJECTED})
#: Seconds between two writes of a running task's record (its artifacts so far).
FLUSH_INTERVAL = 0.5
#: A record not written for this long, whose session no run holds, belongs to a run that died.
LOST_AFTER = 5.0

_CALLS = {"function_call", "plugin_call", "component_call", "mcp_call"}
_OUTPUTS = {"function_call_output", "plugin_call_output", "component_call_output", "mcp_call_output"}


def state_name(state: int) -> str:
    return S.Name(state).removeprefix("TASK_STATE_").lower()


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _struct(value: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(json.loads(json.dumps(value, default=str)))
    return struct


def agent_message(task_id: str, context_id: str, text: str, metadata: Optional[dict[str, Any]] = None) -> a2a_pb2.Message:
    message = a2a_pb2.Message(
        message_id=f"msg_{task_id}_{int(time.time() * 1000)}",
        context_id=context_id,
        task_id=task_id,
        role=a2a_pb2.ROLE_AGENT,
        parts=[a2a_pb2.Part(text=text)],
    )
    if metadata:
        message.metadata.CopyFrom(_struct(metadata))
    return message


# -- what the client sent -> the Agent API ---------------------------------------------------
def _media(part: a2a_pb2.Part, url: str) -> dict[str, Any]:
    media_type = part.media_type or ""
    if media_type.startswith("image/"):
        return {"type": "image", "image_url": url}
    if media_type.startswith("audio/"):
        return {"type": "audio", "data": url, "format": media_type.split("/", 1)[1]}
    if media_type.startswith("video/"):
        return {"type": "video", "video_url": url}
    return {"type": "file", "file_url": url, "filename": part.filename or None}


def content_of(part: a2a_pb2.Part) -> dict[str, Any]:
    """One A2A part as an Agent API content item."""
    kind = part.WhichOneof("content")
    if kind == "text":
        return {"type": "text", "text": part.text}
    if kind == "url":
        return _media(part, part.url)
    if kind == "raw":
        encoded = base64.b64encode(part.raw).decode("ascii")
        if (part.media_type or "").startswith(("image/", "audio/", "video/")):
            return _media(part, f"data:{part.media_type};base64,{encoded}")
        return {"type": "file", "file_data": encoded, "filename": part.filename or None}
    if kind == "data":
        value = MessageToDict(part.data)
        return {"type": "data", "data": value if isinstance(value, dict) else {"value": value}}
    return {"type": "text", "text": ""}


def request_input(message: a2a_pb2.Message) -> list[dict[str, Any]]:
    role = "assistant" if message.role == a2a_pb2.ROLE_AGENT else "user"
    return [{"role": role, "content": [content_of(part) for part in message.parts]}]


# -- the Agent API -> artifacts ----------------------------------------------------------------
def _part(content: dict[str, Any]) -> Optional[a2a_pb2.Part]:
    """A completed non-text content of an answer as an A2A part."""
    kind = content.get("type")
    url = {"image": "image_url", "video": "video_url", "audio": "data", "file": "file_url"}.get(kind or "")
    if url is not None:
        link = content.get(url) or ""
        media = {"image": "image/*", "video": "video/*", "audio": f"audio/{content.get('format') or '*'}"}.get(kind or "", "")
        if link.startswith("data:") and ";base64," in link:
            media, _, data = link[5:].partition(";base64,")
            return a2a_pb2.Part(raw=base64.b64decode(data), media_type=media)
        if kind == "file" and not link and content.get("file_data"):
            return a2a_pb2.Part(raw=base64.b64decode(content["file_data"]), filename=content.get("filename") or "")
        return a2a_pb2.Part(url=link, media_type=media, filename=content.get("filename") or "")
    if kind == "data":
        return a2a_pb2.Part(data=Value(struct_value=_struct(content.get("data") or {})))
    return None


@dataclass
class _Artifact:
    artifact_id: str
    name: str
    metadata: dict[str, Any]
    #: each part: a list of text pieces (joined when the task is read) or a finished Part
    parts: list[Any] = field(default_factory=list)
    sent: dict[int, list[str]] = field(default_factory=dict)  # Agent API content index -> pieces
    done: set[int] = field(default_factory=set)  # Agent API content indexes completed

    def append_text(self, piece: str) -> None:
        if self.parts and isinstance(self.parts[-1], list):
            self.parts[-1].append(piece)
        else:
            self.parts.append([piece])

    def proto(self) -> a2a_pb2.Artifact:
        parts = [a2a_pb2.Part(text="".join(p)) if isinstance(p, list) else p for p in self.parts]
        artifact = a2a_pb2.Artifact(artifact_id=self.artifact_id, name=self.name, parts=parts or [a2a_pb2.Part(text="")])
        if self.metadata:
            artifact.metadata.CopyFrom(_struct(self.metadata))
        return artifact


class TaskRun:
    """One task: its state, its artifacts so far, who is watching, and the run behind it."""

    def __init__(self, task_id: str, context_id: str, user_id: str, message: a2a_pb2.Message, records: Records, retention: float) -> None:
        self.task_id = task_id
        self.context_id = context_id
        self.user_id = user_id
        self.history = [message]
        self.state: int = S.TASK_STATE_SUBMITTED
        self.status_message: Optional[a2a_pb2.Message] = None
        self.stamp = _now()
        self.metadata: dict[str, Any] = {}
        self.artifacts: dict[str, _Artifact] = {}
        self.records = records
        self.retention = retention
        self.run: Any = None
        self.done = asyncio.Event()
        self._kinds: dict[str, tuple[str, str]] = {}  # open message id -> (message type, role)
        self._watchers: set[asyncio.Queue[Any]] = set()
        self._written_at = 0.0  # monotonic time of the last record write
        self._due: Optional[float] = None  # when the record must be written next (None: it is current)
        self._writer: Optional[asyncio.Task[None]] = None
        self._wake = asyncio.Event()  # set when the record is due
        self._writing = False  # the writer stops on this flag (a cancel alone can be swallowed before 3.12)
        self._driver: Optional[asyncio.Task[None]] = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    # -- reading -------------------------------------------------------------------------------
    def snapshot(self, history_length: Optional[int] = None) -> a2a_pb2.Task:
        status = a2a_pb2.TaskStatus(state=self.state, timestamp=self.stamp)  # type: ignore[arg-type]
        if self.status_message is not None:
            status.message.CopyFrom(self.status_message)
        history = self.history if history_length is None else self.history[-history_length:] if history_length > 0 else []
        task = a2a_pb2.Task(id=self.task_id, context_id=self.context_id, status=status, artifacts=[a.proto() for a in self.artifacts.values()], history=history)
        if self.metadata:
            task.metadata.CopyFrom(_struct(self.metadata))
        return task

    def record(self) -> str:
        return json.dumps({"task": MessageToDict(self.snapshot()), "user_id": self.user_id, "updated": time.time()})

    async def subscribe(self) -> AsyncIterator[Any]:
        """The task as it is now, then every update until it ends."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        yield self.snapshot()
        if self.terminal:
            return
        self._watchers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._watchers.discard(queue)

    # -- the run -------------------------------------------------------------------------------
    def start(self, run: Any, on_end: Optional[Callable[[], Any]] = None) -> None:
        """Run the task in the background; ``on_end`` is called once its final record is written."""
        self.run = run
        self._driver = asyncio.create_task(self._drive(run), name=f"agentpack-a2a-task-{self.task_id}")
        if on_end is not None:
            self._driver.add_done_callback(lambda _: on_end())

    def stop(self, reason: str) -> None:
        if self.run is not None and not self.terminal:
            self.run.stop(reason)

    async def _drive(self, run: Any) -> None:
        await self._save()
        self._writing = True
        self._writer = asyncio.create_task(self._keep_written(), name=f"agentpack-a2a-record-{self.task_id}")
        task = run.start(self._write)
        try:
            await asyncio.wait({task})
        finally:
            await asyncio.shield(run.settle())
            await asyncio.shield(run.release())
            if not self.terminal:  # the run ended without its terminal event (a bug, or cancelled)
                self._set_status(S.TASK_STATE_FAILED, "the run ended without a result")
            self._writing = False
            self._wake.set()
            await asyncio.shield(wait_bounded(asyncio.gather(self._writer, return_exceptions=True), 2.0))
            await asyncio.shield(self._save_final())
            self._end_watchers()
            self.done.set()

    def end_without_run(self, state: int, reason: str) -> None:
        """Rejected (the session is busy) or failed before it could start."""
        self._set_status(state, reason)
        self._end_watchers()
        self.done.set()

    def _end_watchers(self) -> None:
        for queue in list(self._watchers):
            queue.put_nowait(None)

    async def _write(self, event: dict[str, Any]) -> None:
        state = self.state
        updates = self.feed(event)
        for update in updates:
            for queue in self._watchers:
                queue.put_nowait(update)
        if self.state != state:  # a new state is written at once, new artifacts at most every FLUSH_INTERVAL
            self._due = time.monotonic()
        elif updates and self._due is None:
            self._due = self._written_at + FLUSH_INTERVAL
        else:
            return
        self._wake.set()

    async def _keep_written(self) -> None:
        """The one writer of a running task's record, so writes never overtake each other."""
        while self._writing:
            await self._wake.wait()
            self._wake.clear()
            if self._due is None:
                continue
            await asyncio.sleep(max(0.0, self._due - time.monotonic()))
            if not self._writing:
                return
            self._due = None
            await self._save()

    async def _save(self) -> None:
        self._written_at = time.monotonic()
        try:
            await self.records.put(self.task_id, self.record(), self.retention)
        except Exception as exc:  # the task goes on; tasks/get elsewhere sees it later, or not at all
            logger.warning("could not store A2A task %s: %s", self.task_id, exc)

    async def _save_final(self) -> None:
        await wait_bounded(self._save(), 5.0)

    # -- translation ---------------------------------------------------------------------------
    def _set_status(self, state: int, text: Optional[str] = None, metadata: Optional[dict[str, Any]] = None) -> a2a_pb2.TaskStatusUpdateEvent:
        self.state, self.stamp = state, _now()
        self.status_message = agent_message(self.task_id, self.context_id, text, metadata) if text else None
        status = a2a_pb2.TaskStatus(state=state, timestamp=self.stamp)  # type: ignore[arg-type]
        if self.status_message is not None:
            status.message.CopyFrom(self.status_message)
        return a2a_pb2.TaskStatusUpdateEvent(task_id=self.task_id, context_id=self.context_id, status=status)

    def _update(self, artifact: _Artifact, parts: list[a2a_pb2.Part], append: bool, last: bool) -> a2a_pb2.TaskArtifactUpdateEvent:
        proto = a2a_pb2.Artifact(artifact_id=artifact.artifact_id, name=artifact.name, parts=parts)
        if artifact.metadata:
            proto.metadata.CopyFrom(_struct(artifact.metadata))
        return a2a_pb2.TaskArtifactUpdateEvent(task_id=self.task_id, context_id=self.context_id, artifact=proto, append=append, last_chunk=last)

    def feed(self, event: dict[str, Any]) -> list[Any]:
        """The A2A events one Agent API event becomes; the task's state follows."""
        kind = event.get("object")
        if kind == "content":
            return self._content(event)
        if kind == "message":
            return self._message(event)
        if kind != "response":
            return []
        status = event.get("status")
        if status == "in_progress":
            return [self._set_status(S.TASK_STATE_WORKING)]
        if event.get("usage"):
            self.metadata["usage"] = event["usage"]
        error = event.get("error") or {}
        if status == "completed":
            return [self._set_status(S.TASK_STATE_COMPLETED)]
        if status == "failed":
            return [self._set_status(S.TASK_STATE_FAILED, error.get("message") or "the agent failed", {"code": error.get("code")})]
        if status == "canceled":
            return [self._set_status(S.TASK_STATE_CANCELED, error.get("message") or "the task was canceled", {"code": error.get("code")})]
        return []

    def _artifact(self, msg_id: str) -> Optional[_Artifact]:
        known = self.artifacts.get(msg_id)
        if known is not None:
            return known
        message_type, role = self._kinds.get(msg_id, ("", ""))
        if message_type == "message" and role == "assistant":
            name, metadata = "answer", {}
        elif message_type == "reasoning":
            name, metadata = "reasoning", {"type": "reasoning"}
        elif message_type in _CALLS or message_type in _OUTPUTS:
            name, metadata = message_type, {"type": message_type}
        else:
            return None
        artifact = self.artifacts[msg_id] = _Artifact(msg_id, name, metadata)
        return artifact

    def _message(self, event: dict[str, Any]) -> list[Any]:
        msg_id = event.get("id") or ""
        if event.get("status") == "in_progress":
            self._kinds[msg_id] = (event.get("type") or "message", event.get("role") or "assistant")
            return []
        if event.get("usage"):
            self.metadata["usage"] = event["usage"]
        self._kinds.setdefault(msg_id, (event.get("type") or "message", event.get("role") or "assistant"))
        updates: list[Any] = []
        for content in event.get("content") or []:  # whatever the deltas did not carry
            updates += self._content({**content, "msg_id": msg_id, "delta": None})
        artifact = self.artifacts.get(msg_id)
        message_type = self._kinds.pop(msg_id)[0]
        if artifact is not None and message_type not in _CALLS and message_type not in _OUTPUTS:
            updates.append(self._update(artifact, [a2a_pb2.Part(text="")], True, True))
        return updates

    def _content(self, event: dict[str, Any]) -> list[Any]:
        msg_id = event.get("msg_id") or ""
        message_type = self._kinds.get(msg_id, ("", ""))[0]
        is_delta = event.get("delta") is True
        if message_type in _CALLS or message_type in _OUTPUTS:
            if is_delta or not isinstance(event.get("data"), dict):
                return []  # a call is one data part, sent when complete
            artifact = self._artifact(msg_id)
            if artifact is None or artifact.parts:
                return []
            part = a2a_pb2.Part(data=Value(struct_value=_struct(event["data"])))
            artifact.parts.append(part)
            return [self._update(artifact, [part], False, True)]
        artifact = self._artifact(msg_id)
        if artifact is None:
            return []
        kind, index = event.get("type"), event.get("index") or 0
        if index in artifact.done:
            return []
        if not is_delta:
            artifact.done.add(index)
        appending = bool(artifact.parts)
        if kind in ("text", "refusal"):
            text = event.get(kind) or ""
            pieces = artifact.sent.setdefault(index, [])
            if not is_delta:
                so_far = "".join(pieces)
                text = text[len(so_far):] if text.startswith(so_far) else ""
            if not text:
                return []
            pieces.append(text)
            artifact.append_text(text)
            return [self._update(artifact, [a2a_pb2.Part(text=text)], appending, False)]
        if is_delta:
            return []  # other payloads are replaced as they grow: sent whole when complete
        part = _part(event)
        if part is None:
            return []
        artifact.parts.append(part)
        return [self._update(artifact, [part], appending, False)]


def task_from_record(raw: str) -> tuple[a2a_pb2.Task, str, float]:
    """``(task, user_id, last written)`` from a stored record."""
    record = json.loads(raw)
    return ParseDict(record["task"], a2a_pb2.Task(), ignore_unknown_fields=True), record.get("user_id") or "", float(record.get("updated") or 0)


__all__ = ["FLUSH_INTERVAL", "LOST_AFTER", "TERMINAL_STATES", "TaskRun", "agent_message", "content_of", "request_input", "state_name", "task_from_record"]
