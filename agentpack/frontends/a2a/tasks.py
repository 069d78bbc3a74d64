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

The task is kept as A2A 1.0 JSON (what goes on the wire and into the record), so the updates of
a stream are written without protobuf; the SDK's paths get protobuf messages made from it.  In
the stored task each answer's text is one part (the deltas joined).  The record — the task, its
user and when it was written — goes to the interrupt backend's records (Redis with the Redis
backend) when the run starts and whenever its state changes, at most every
:data:`FLUSH_INTERVAL` while artifacts grow, and when it ends; it is kept for the app's
``task_result_seconds``.  With auth on, the record also holds its owner: the app's hash of the
principal that sent the message (never the principal itself), which alone may read, follow or
cancel the task.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from a2a.types import a2a_pb2
from google.protobuf.json_format import MessageToDict, ParseDict

from agentpack._aio import wait_bounded
from agentpack.frontends.base import Translator
from agentpack.interrupt.records import Records

logger = logging.getLogger("agentpack.a2a")

SUBMITTED, WORKING = "TASK_STATE_SUBMITTED", "TASK_STATE_WORKING"
COMPLETED, FAILED, CANCELED, REJECTED = (
    "TASK_STATE_COMPLETED",
    "TASK_STATE_FAILED",
    "TASK_STATE_CANCELED",
    "TASK_STATE_REJECTED",
)
TERMINAL_STATES = frozenset({COMPLETED, FAILED, CANCELED, REJECTED})
#: Seconds between two writes of a running task's record while only its artifacts grow.
FLUSH_INTERVAL = 0.5
#: Longest a run keeps the readers of its stream waiting for a turn (see ``TaskRun._write``).
HAND_OVER = 0.002
#: A record not written for this long, whose session no run holds, belongs to a run that died.
LOST_AFTER = 5.0

_CALLS = {"function_call", "plugin_call", "component_call", "mcp_call"}
_OUTPUTS = {"function_call_output", "plugin_call_output", "component_call_output", "mcp_call_output"}
_MEDIA_KEY = {"image": "image_url", "video": "video_url", "audio": "data", "file": "file_url"}


def state_name(state: str) -> str:
    """``completed`` for ``TASK_STATE_COMPLETED`` (for messages)."""
    return state.removeprefix("TASK_STATE_").lower()


def _timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def agent_message(task_id: str, context_id: str, text: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messageId": f"msg_{task_id}_{time.monotonic_ns()}",
        "contextId": context_id,
        "taskId": task_id,
        "role": "ROLE_AGENT",
        "parts": [{"text": text}],
    }
    if metadata:
        message["metadata"] = metadata
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
    import base64

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
def _part(content: dict[str, Any]) -> dict[str, Any] | None:
    """A completed non-text content of an answer as an A2A part (JSON)."""
    kind = content.get("type") or ""
    key = _MEDIA_KEY.get(kind)
    if key is not None:
        link = content.get(key) or ""
        media = {"image": "image/*", "video": "video/*", "audio": f"audio/{content.get('format') or '*'}"}.get(kind, "")
        if link.startswith("data:") and ";base64," in link:
            media, _, data = link[5:].partition(";base64,")
            return {"raw": data, "mediaType": media}
        if kind == "file" and not link and content.get("file_data"):
            return {
                "raw": content["file_data"],
                **({"filename": content["filename"]} if content.get("filename") else {}),
            }
        part = {"url": link, "mediaType": media}
        if content.get("filename"):
            part["filename"] = content["filename"]
        return part
    if kind == "data":
        return {"data": content.get("data") or {}}
    return None


@dataclass
class _Artifact:
    artifact_id: str
    name: str
    metadata: dict[str, Any]
    #: each part: a list of text pieces (joined when the task is read) or a finished part
    parts: list[Any] = field(default_factory=list)
    sent: dict[int, list[str]] = field(default_factory=dict)  # Agent API content index -> pieces
    done: set[int] = field(default_factory=set)  # Agent API content indexes completed

    def append_text(self, piece: str) -> None:
        if self.parts and isinstance(self.parts[-1], list):
            self.parts[-1].append(piece)
        else:
            self.parts.append([piece])

    def json(self) -> dict[str, Any]:
        parts = [{"text": "".join(p)} if isinstance(p, list) else p for p in self.parts]
        artifact: dict[str, Any] = {"artifactId": self.artifact_id, "name": self.name, "parts": parts or [{"text": ""}]}
        if self.metadata:
            artifact["metadata"] = self.metadata
        return artifact


class TaskRun(Translator):
    """One task: its state, its artifacts so far, who is watching, and the run behind it."""

    def __init__(
        self,
        task_id: str,
        context_id: str,
        user_id: str,
        message: dict[str, Any],
        records: Records,
        retention: float,
        owner: str | None = None,
    ) -> None:
        super().__init__()
        self.task_id = task_id
        #: who may see the task (the app's owner key of the principal that sent it), None: anyone
        self.owner = owner
        self.context_id = context_id
        self.user_id = user_id
        self.history = [message]
        self.status: dict[str, Any] = {"state": SUBMITTED, "timestamp": _timestamp()}
        self.metadata: dict[str, Any] = {}
        self.artifacts: dict[str, _Artifact] = {}
        self.records = records
        self.retention = retention
        self.run: Any = None
        self.done = asyncio.Event()
        self._ids = {"taskId": task_id, "contextId": context_id}
        self._watchers: set[asyncio.Queue[Any]] = set()
        self._written_at = 0.0  # monotonic time of the last record write
        self._handed_over = 0.0  # monotonic time the readers were last given a turn
        self._due: float | None = None  # when the record must be written next (None: it is current)
        self._wake = asyncio.Event()  # set when the record is due
        self._writing = False  # the writer stops on this flag (a cancel alone can be swallowed before 3.12)
        self._writer: asyncio.Task[None] | None = None
        self._driver: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        state: str = self.status["state"]
        return state

    @property
    def terminal(self) -> bool:
        return self.status["state"] in TERMINAL_STATES

    # -- reading -------------------------------------------------------------------------------
    def json(self, history_length: int | None = None) -> dict[str, Any]:
        """The task as A2A 1.0 JSON."""
        history = (
            self.history if history_length is None else self.history[-history_length:] if history_length > 0 else []
        )
        task = {
            "id": self.task_id,
            "contextId": self.context_id,
            "status": self.status,
            "artifacts": [a.json() for a in self.artifacts.values()],
            "history": history,
        }
        if self.metadata:
            task["metadata"] = self.metadata
        return task

    def snapshot(self, history_length: int | None = None) -> a2a_pb2.Task:
        """The task as the SDK's message (for the SDK's routes)."""
        task: a2a_pb2.Task = ParseDict(self.json(history_length), a2a_pb2.Task(), ignore_unknown_fields=True)
        return task

    def record(self) -> str:
        record = {"task": self.json(), "user_id": self.user_id, "updated": time.time()}
        if self.owner is not None:
            record["owner"] = self.owner
        return json.dumps(record, ensure_ascii=False)

    async def updates(self) -> AsyncIterator[list[dict[str, Any]]]:
        """``{"task": …}`` as it is now, then each ``{"statusUpdate": …}`` / ``{"artifactUpdate": …}``
        until it ends — a stream's results, as A2A 1.0 JSON — in batches: whatever piled up while
        the reader was writing comes at once, so a fast run costs a slow reader fewer writes."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        yield [{"task": self.json()}]
        if self.terminal:
            return
        self._watchers.add(queue)
        try:
            while True:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                ended = batch[-1] is None
                if ended:
                    batch.pop()
                if batch:
                    yield batch
                if ended:
                    return
        finally:
            self._watchers.discard(queue)

    async def subscribe(self) -> AsyncIterator[Any]:
        """:meth:`updates` as the SDK's messages (for its routes: A2A 0.3 streams, resubscription)."""
        async for batch in self.updates():
            for update in batch:
                response = ParseDict(update, a2a_pb2.StreamResponse(), ignore_unknown_fields=True)
                yield getattr(response, response.WhichOneof("payload"))

    # -- the run -------------------------------------------------------------------------------
    def start(self, run: Any, on_end: Callable[[], Any] | None = None) -> None:
        """Run the task in the background; ``on_end`` is called once its final record is written."""
        self.run = run
        self._driver = asyncio.create_task(self._drive(run), name=f"agentpack-a2a-task-{self.task_id}")
        if on_end is not None:
            self._driver.add_done_callback(lambda _: on_end())

    def stop(self, reason: str) -> None:
        if self.run is not None and not self.terminal:
            self.run.stop(reason)

    async def _drive(self, run: Any) -> None:
        self._writing, self._due = True, time.monotonic()  # the first record, written beside the run's start
        self._wake.set()
        self._writer = asyncio.create_task(self._keep_written(), name=f"agentpack-a2a-record-{self.task_id}")
        task = run.start(self._write)
        try:
            await asyncio.wait({task})
        finally:
            await asyncio.shield(run.settle())
            await asyncio.shield(run.release())
            if not self.terminal:  # the run ended without its terminal event (a bug, or cancelled)
                self._set_status(FAILED, "the run ended without a result")
            self._writing = False
            self._wake.set()
            await asyncio.shield(wait_bounded(asyncio.gather(self._writer, return_exceptions=True), 2.0))
            await asyncio.shield(self.save())
            self._end_watchers()
            self.done.set()

    async def end_without_run(self, state: str, reason: str) -> None:
        """Rejected (the session is busy) or failed before it could start; the record is written."""
        self._set_status(state, reason)
        self._end_watchers()
        self.done.set()
        await self.save()

    def _end_watchers(self) -> None:
        for queue in list(self._watchers):
            queue.put_nowait(None)

    async def _write(self, event: dict[str, Any]) -> None:
        state = self.status["state"]
        updates = self.feed(event)
        if updates and self._watchers:
            for update in updates:
                for queue in self._watchers:
                    queue.put_nowait(update)
            now = time.monotonic()
            if now - self._handed_over >= HAND_OVER:
                # A handler that yields without awaiting never lets the readers run: give them a
                # turn at least this often, so what it produces streams out as it is produced.
                self._handed_over = now
                await asyncio.sleep(0)
        if self.status["state"] != state:  # a new state is written at once, new artifacts at most every FLUSH_INTERVAL
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
            await self._write_record()

    async def _write_record(self) -> None:
        self._written_at = time.monotonic()
        try:
            await self.records.put(self.task_id, self.record(), self.retention)
        except Exception as exc:  # the task goes on; tasks/get elsewhere sees it later, or not at all
            logger.warning("could not store A2A task %s: %s", self.task_id, exc)

    async def save(self) -> None:
        """Write the record now (bounded: a store that does not answer is given up on)."""
        await wait_bounded(self._write_record(), 5.0)

    # -- translation ---------------------------------------------------------------------------
    def _set_status(
        self, state: str, text: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        status: dict[str, Any] = {"state": state, "timestamp": _timestamp()}
        if text:
            status["message"] = agent_message(self.task_id, self.context_id, text, metadata)
        self.status = status
        return {"statusUpdate": {**self._ids, "status": status}}

    def _update(self, artifact: _Artifact, parts: list[dict[str, Any]], append: bool, last: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"artifactId": artifact.artifact_id, "name": artifact.name, "parts": parts}
        if artifact.metadata:
            body["metadata"] = artifact.metadata
        update: dict[str, Any] = {**self._ids, "artifact": body}
        if append:
            update["append"] = True
        if last:
            update["lastChunk"] = True
        return {"artifactUpdate": update}

    def on_response(self, event: dict[str, Any], out: list[Any]) -> None:
        status = event.get("status")
        if status == "in_progress":
            out.append(self._set_status(WORKING))
            return
        if event.get("usage"):
            self.metadata["usage"] = event["usage"]
        error = event.get("error") or {}
        if status == "completed":
            out.append(self._set_status(COMPLETED))
        elif status == "failed":
            out.append(
                self._set_status(FAILED, error.get("message") or "the agent failed", {"code": error.get("code")})
            )
        elif status == "canceled":
            out.append(
                self._set_status(CANCELED, error.get("message") or "the task was canceled", {"code": error.get("code")})
            )

    def _artifact(self, msg_id: str) -> _Artifact | None:
        known = self.artifacts.get(msg_id)
        if known is not None:
            return known
        message_type, role = self.open.get(msg_id, ("", ""))
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

    def on_message(self, event: dict[str, Any], out: list[Any]) -> None:
        msg_id = event.get("id") or ""
        if event.get("status") == "in_progress":
            self.open[msg_id] = (event.get("type") or "message", event.get("role") or "assistant")
            return
        if event.get("usage"):
            self.metadata["usage"] = event["usage"]
        self.open.setdefault(msg_id, (event.get("type") or "message", event.get("role") or "assistant"))
        for content in event.get("content") or []:  # whatever the deltas did not carry
            self.on_content(None, {**content, "msg_id": msg_id, "delta": None}, out)
        artifact = self.artifacts.get(msg_id)
        message_type = self.open.pop(msg_id)[0]
        if artifact is not None and message_type not in _CALLS and message_type not in _OUTPUTS:
            out.append(self._update(artifact, [{"text": ""}], True, True))

    def on_content(self, item: Any, event: dict[str, Any], out: list[Any]) -> None:
        msg_id = event.get("msg_id") or ""
        message_type = self.open.get(msg_id, ("", ""))[0]
        is_delta = event.get("delta") is True
        if message_type in _CALLS or message_type in _OUTPUTS:
            artifact = self._artifact(msg_id)
            if is_delta or not isinstance(event.get("data"), dict) or artifact is None or artifact.parts:
                return  # a call is one data part, sent when complete
            data_part = {"data": event["data"]}
            artifact.parts.append(data_part)
            out.append(self._update(artifact, [data_part], False, True))
            return
        artifact = self._artifact(msg_id)
        if artifact is None:
            return
        kind, index = event.get("type"), event.get("index") or 0
        if index in artifact.done:
            return
        if not is_delta:
            artifact.done.add(index)
        appending = bool(artifact.parts)
        if kind in ("text", "refusal"):
            text = event.get(kind) or ""
            pieces = artifact.sent.setdefault(index, [])
            if not is_delta:
                so_far = "".join(pieces)
                text = text[len(so_far) :] if text.startswith(so_far) else ""
            if text:
                pieces.append(text)
                artifact.append_text(text)
                out.append(self._update(artifact, [{"text": text}], appending, False))
            return
        if is_delta:
            return  # other payloads are replaced as they grow: sent whole when complete
        part = _part(event)
        if part is not None:
            artifact.parts.append(part)
            out.append(self._update(artifact, [part], appending, False))


def task_from_record(raw: str) -> tuple[dict[str, Any], str, float, str | None]:
    """``(task as A2A JSON, user_id, when it was written, owner)`` from a stored record."""
    record = json.loads(raw)
    owner = record.get("owner")
    return (
        record["task"],
        record.get("user_id") or "",
        float(record.get("updated") or 0),
        owner if isinstance(owner, str) else None,
    )


__all__ = [
    "COMPLETED",
    "FLUSH_INTERVAL",
    "LOST_AFTER",
    "TERMINAL_STATES",
    "TaskRun",
    "agent_message",
    "content_of",
    "request_input",
    "state_name",
    "task_from_record",
]
