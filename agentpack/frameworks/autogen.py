"""``framework="autogen"``: AutoGen AgentChat messages in, ``run_stream`` items out.

The handler gets ``msgs``, the request's messages as AgentChat chat messages, ready for
``run_stream(task=msgs)`` of an agent or a team, and yields what ``run_stream`` yields, unchanged::

    from agentpack.frameworks.autogen import cancellation_token

    @app.query(framework="autogen")
    async def handler(self, msgs, request=None, **kwargs):
        agent = AssistantAgent("assistant", model_client=client, tools=[...], model_client_stream=True)
        async for item in agent.run_stream(task=msgs, cancellation_token=cancellation_token()):
            yield item

Request -> ``msgs`` (what ``run_stream(task=...)`` accepts: chat messages only):

- a message with text only -> ``TextMessage``; with images -> ``MultiModalMessage`` (``data:`` URIs
  become ``autogen_core.Image``; an image given by URL, and audio, video and files, which AgentChat
  messages cannot hold, become a text line naming them);
- ``source`` is the role (``user``, ``assistant``, ``system``, ``tool``) and ``id`` the Agent API
  message's id;
- tool calls and their results (``function_call`` / ``plugin_call`` / ``mcp_call`` and their
  ``*_output`` messages) -> ONE ``ToolCallSummaryMessage`` per run of consecutive calls and results:
  ``tool_calls`` holds the ``FunctionCall``s, ``results`` the ``FunctionExecutionResult``s (``is_error``
  kept) and ``content`` one line per call, ``name(arguments) -> output``, which is what an agent's
  model reads (AgentChat hands every incoming chat message to the model as a user message);
- ``reasoning`` messages are left out.

For a model history in the model's own roles (assistant turns, tool calls and tool results as
such), :func:`llm_messages` turns ``msgs`` into ``autogen_core.models`` messages for an agent's
``model_context``.

Yields -> events:

- ``ModelClientStreamingChunkEvent`` -> text deltas of a ``message`` (one per model call, by
  ``full_message_id``); text inside ``<think>…</think>`` (how AutoGen's OpenAI client streams
  reasoning) -> a separate ``reasoning`` message;
- ``ThoughtEvent`` -> a ``reasoning`` message, unless its text was streamed already;
- ``ToolCallRequestEvent`` -> one ``plugin_call`` per ``FunctionCall`` ``{call_id, name, arguments}``;
- ``ToolCallExecutionEvent`` -> one ``plugin_call_output`` (role ``tool``) per
  ``FunctionExecutionResult`` ``{call_id, name, output, is_error}``;
- a chat message (``TextMessage``, ``ToolCallSummaryMessage``, ``HandoffMessage``, ``StructuredMessage``,
  ``MultiModalMessage``…) completes the message its text was streamed in, or becomes a ``message``
  of its own when nothing was streamed; the task's own messages echoed back are skipped;
- ``models_usage`` -> ``usage`` of that model call's messages;
- ``TaskResult`` completes whatever is open (a ``TaskResult`` yielded on its own, as from
  ``return await agent.run(task=msgs)``, gives its messages); a ``Response`` (``on_messages_stream``)
  counts as its ``chat_message``; other agent events (memory queries, speaker selection…) are skipped.
  Every output message's ``metadata`` has the ``source`` (the agent's name).

Stopping: AutoGen cancels work through a ``CancellationToken``: the tool calls an agent runs are
linked to the token given to ``run_stream``, and a team hands its token to every participant.  A
cancelled ``run_stream`` alone does not reach them — a single agent leaves its running tool calls
behind, and a team's ``run_stream`` waits for its runtime to go idle before it lets the
cancellation through, so the stop would hang until the team is done.  So the handler runs in a
task of its own, and a stop (or the run's time limit) first cancels the run's token —
:func:`cancellation_token` gives it to the handler — then the handler's task; a handler still
running :data:`STOP_GRACE` seconds later is cancelled again (a team stopped during a tool call
needs it), and one still running after another grace is left behind with a warning.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentpack.protocol.events import OpenContent, OpenMessage, ResponseBuilder
from agentpack.protocol.schemas import AgentRequest, Message, MessageType

if TYPE_CHECKING:  # pragma: no cover
    from autogen_agentchat.messages import BaseChatMessage
    from autogen_core import CancellationToken

logger = logging.getLogger("agentpack.frameworks.autogen")

_CALLS = {MessageType.FUNCTION_CALL, MessageType.PLUGIN_CALL, MessageType.MCP_CALL}
_OUTPUTS = {MessageType.FUNCTION_CALL_OUTPUT, MessageType.PLUGIN_CALL_OUTPUT, MessageType.MCP_CALL_OUTPUT}

#: Seconds a stopped handler gets to finish (its clean-up) before it is cancelled again.
STOP_GRACE = 2.0


class _AutoGen:
    """The AutoGen names this module uses, imported on first use (never when agentpack is imported)."""

    _loaded: _AutoGen | None = None

    def __init__(self) -> None:
        from autogen_agentchat import messages
        from autogen_agentchat.base import Response, TaskResult
        from autogen_core import CancellationToken, FunctionCall, Image, models

        self.messages, self.models = messages, models
        self.Response, self.TaskResult = Response, TaskResult
        self.CancellationToken, self.FunctionCall, self.Image = CancellationToken, FunctionCall, Image

    @classmethod
    def get(cls) -> _AutoGen:
        if cls._loaded is None:
            cls._loaded = cls()
        return cls._loaded


# -- the run: its cancellation token and the ids of its input ---------------------------------
@dataclass
class _Run:
    input_ids: frozenset[str] = frozenset()
    token: CancellationToken | None = None

    def cancellation_token(self) -> CancellationToken:
        if self.token is None:
            self.token = _AutoGen.get().CancellationToken()
        return self.token

    def cancel(self) -> None:
        if self.token is not None and not self.token.is_cancelled():
            self.token.cancel()


_RUN: ContextVar[_Run | None] = ContextVar("agentpack_autogen_run", default=None)


def cancellation_token() -> CancellationToken:
    """The ``CancellationToken`` of the run being handled: pass it to ``run_stream`` so that a stop
    cancels what AutoGen runs for it (tool calls, model calls, a team's participants)."""
    run = _RUN.get()
    if run is None:
        raise RuntimeError("cancellation_token() is called inside a framework='autogen' query handler, while it runs")
    return run.cancellation_token()


# -- request -> msgs --------------------------------------------------------------------------
def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _image(ag: _AutoGen, url: str | None, message_id: str) -> Any:
    """An ``autogen_core.Image`` for a ``data:`` URI, else a text line naming the image."""
    if url and url.startswith("data:") and ";base64," in url:
        try:
            return ag.Image.from_base64(url.partition(";base64,")[2])
        except (ValueError, OSError, binascii.Error) as exc:
            raise ValueError(
                f"input message {message_id!r}: its image is not a base64 image AutoGen can decode ({exc})"
            ) from exc
    return f"[image: {url}]"


def _parts(ag: _AutoGen, message: Message) -> list[Any]:
    parts: list[Any] = []
    for item in message.content or []:
        if item.type == "text":
            parts.append(item.text or "")
        elif item.type == "image":
            parts.append(_image(ag, item.image_url, message.id))
        elif item.type == "audio":
            parts.append(f"[audio: {item.data}]")
        elif item.type == "video":
            parts.append(f"[video: {item.video_url}]")
        elif item.type == "file":
            parts.append(f"[file: {item.filename or item.file_url or item.file_id}]")
        elif item.type == "data":
            parts.append(_json_text(item.data))
        elif item.type == "refusal":
            parts.append(item.refusal or "")
    return parts


def _datas(message: Message) -> list[dict[str, Any]]:
    return [item.data for item in message.content or [] if item.type == "data" and isinstance(item.data, dict)]


def _summary(calls: list[Any], results: list[Any]) -> str:
    by_id = {r.call_id: r for r in results}
    lines = []
    for call in calls:
        result = by_id.pop(call.id, None)
        if result is None:
            lines.append(f"{call.name}({call.arguments}) -> (no result)")
        else:
            lines.append(f"{call.name}({call.arguments}) -> {'error: ' if result.is_error else ''}{result.content}")
    lines.extend(f"{r.name}(…) -> {'error: ' if r.is_error else ''}{r.content}" for r in by_id.values())
    return "\n".join(lines)


def to_autogen_messages(messages: list[Message]) -> list[BaseChatMessage]:
    """Agent API messages -> AgentChat chat messages (the ``msgs`` of a ``framework="autogen"`` handler)."""
    ag = _AutoGen.get()
    out: list[Any] = []
    calls: list[Any] = []
    results: list[Any] = []
    first_id: str | None = None

    def flush() -> None:
        nonlocal first_id
        if calls or results:
            out.append(
                ag.messages.ToolCallSummaryMessage(
                    id=first_id,
                    source="assistant",
                    content=_summary(calls, results),
                    tool_calls=list(calls),
                    results=list(results),
                )
            )
        calls.clear()
        results.clear()
        first_id = None

    for message in messages:
        kind = message.type
        if kind == MessageType.REASONING:
            continue
        if kind in _CALLS or kind in _OUTPUTS:
            if kind in _CALLS and results:  # a new round of calls: the previous one is complete
                flush()
            first_id = first_id or message.id
            for data in _datas(message):
                call_id = str(data.get("call_id") or "")
                if kind in _CALLS:
                    arguments = data.get("arguments")
                    arguments = "{}" if arguments in (None, "") else _json_text(arguments)
                    calls.append(ag.FunctionCall(id=call_id, name=str(data.get("name") or ""), arguments=arguments))
                else:
                    name = data.get("name") or next((c.name for c in calls if c.id == call_id), "")
                    output = data.get("output")
                    results.append(
                        ag.models.FunctionExecutionResult(
                            content=_json_text(output if output is not None else ""),
                            name=str(name),
                            call_id=call_id,
                            is_error=bool(data.get("is_error", False)),
                        )
                    )
            continue
        flush()
        parts = _parts(ag, message)
        if any(not isinstance(p, str) for p in parts):
            out.append(ag.messages.MultiModalMessage(id=message.id, source=message.role, content=parts))
        else:
            out.append(ag.messages.TextMessage(id=message.id, source=message.role, content="\n".join(parts)))
    flush()
    return out


def llm_messages(msgs: list[Any]) -> list[Any]:
    """``msgs`` as ``autogen_core.models`` messages in the model's own roles — ``SystemMessage``,
    ``UserMessage``, ``AssistantMessage`` (text, or the ``FunctionCall``s of a ``ToolCallSummaryMessage``)
    and ``FunctionExecutionResultMessage`` — to seed an agent's ``model_context`` with the history::

        context = UnboundedChatCompletionContext(initial_messages=llm_messages(msgs[:-1]))
        agent = AssistantAgent(..., model_context=context)
        agent.run_stream(task=msgs[-1], cancellation_token=cancellation_token())
    """
    ag = _AutoGen.get()
    models = ag.models
    out: list[Any] = []
    for message in msgs:
        if isinstance(message, ag.messages.ToolCallSummaryMessage):
            if message.tool_calls:
                out.append(models.AssistantMessage(content=list(message.tool_calls), source=message.source))
            if message.results:
                out.append(models.FunctionExecutionResultMessage(content=list(message.results)))
        elif message.source == "system":
            out.append(models.SystemMessage(content=message.to_model_text()))
        elif message.source in ("user", "tool"):
            out.append(message.to_model_message())
        else:
            out.append(models.AssistantMessage(content=message.to_model_text(), source=message.source))
    return out


# -- yields -> events -------------------------------------------------------------------------
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


class _ThinkSplitter:
    """Splits streamed text into ``(kind, text)`` pieces, ``kind`` being ``reasoning`` inside
    ``<think>…</think>`` and ``text`` outside; a tag cut across two chunks is recognised."""

    def __init__(self) -> None:
        self.thinking = False
        self.held = ""

    def feed(self, chunk: str) -> list[tuple[str, str]]:
        text = self.held + chunk
        self.held = ""
        pieces: list[tuple[str, str]] = []
        while text:
            tag = _THINK_CLOSE if self.thinking else _THINK_OPEN
            at = text.find(tag)
            if at >= 0:
                if at:
                    pieces.append(("reasoning" if self.thinking else "text", text[:at]))
                text = text[at + len(tag) :]
                self.thinking = not self.thinking
                continue
            keep = next((n for n in range(min(len(tag) - 1, len(text)), 0, -1) if tag.startswith(text[-n:])), 0)
            if keep:
                self.held, text = text[-keep:], text[:-keep]
            if text:
                pieces.append(("reasoning" if self.thinking else "text", text))
            break
        return pieces

    def flush(self) -> list[tuple[str, str]]:
        held, self.held = self.held, ""
        return [("reasoning" if self.thinking else "text", held)] if held else []


@dataclass
class _Stream:
    """The output of one streamed model call (its chunks share a ``full_message_id``)."""

    source: str
    splitter: _ThinkSplitter = field(default_factory=_ThinkSplitter)
    segment: tuple[str, OpenMessage, OpenContent] | None = None
    opened: list[OpenMessage] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _usage(usage: Any) -> dict[str, Any] | None:
    if usage is None:
        return None
    prompt, completion = getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
    return {"input_tokens": prompt, "output_tokens": completion, "total_tokens": (prompt or 0) + (completion or 0)}


class AutoGenFramework:
    name = "autogen"

    async def prepare(self) -> None:
        _AutoGen.get()

    def to_msgs(self, request: AgentRequest) -> list[BaseChatMessage]:
        msgs = to_autogen_messages(request.input)
        _RUN.set(_Run(input_ids=frozenset(m.id for m in request.input)))
        return msgs

    async def adapt(self, items: AsyncIterator[Any], builder: ResponseBuilder) -> AsyncGenerator[dict[str, Any], None]:
        run = _RUN.get()
        if run is None:
            run = _Run()
            _RUN.set(run)
        # The handler runs in a task of its own, so that a stop reaches this generator at once,
        # whatever AutoGen awaits: the token is cancelled first (see the module's docstring).  The
        # queue needs no bound: it never holds more than the response the builder keeps anyway.
        queue: asyncio.Queue[Any] = asyncio.Queue()
        worker = asyncio.create_task(self._feed(items, queue), name="agentpack-autogen-handler")
        converter = _Converter(builder, run.input_ids)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, _Failed):
                    raise item.error
                for event in converter.convert(item):
                    yield event
            for event in converter.finish_all():
                yield event
        finally:
            if not worker.done():
                await self._stop(worker, run)

    @staticmethod
    async def _feed(items: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
        end: Any = _END
        try:
            async for item in items:
                queue.put_nowait(item)
        except BaseException as exc:
            end = _Failed(exc)
            if not isinstance(exc, Exception):
                raise  # a cancellation stays one
        finally:
            queue.put_nowait(end)

    @staticmethod
    async def _stop(worker: asyncio.Task[None], run: _Run) -> None:
        """Cancel what AutoGen runs for the handler (through the token), then the handler itself."""
        run.cancel()
        for _ in range(2):
            worker.cancel()
            done, _ = await asyncio.wait({worker}, timeout=STOP_GRACE)
            if done:
                return
        logger.warning("an autogen query handler ignored cancellation for %.0fs; leaving it behind", 2 * STOP_GRACE)


class _Converter:
    """Turns AutoGen's run_stream items into protocol events, for one run."""

    def __init__(self, builder: ResponseBuilder, input_ids: frozenset[str]) -> None:
        self.ag = _AutoGen.get()
        self.builder = builder
        self.input_ids = input_ids
        self.streams: dict[Any, _Stream] = {}
        self.streamed: set[Any] = set()  # full_message_ids that were streamed (their stream may be over)
        self.started = False  # anything but the echo of the task seen
        self.items = 0  # items seen since the last TaskResult

    # -- dispatch ------------------------------------------------------------------------------
    def convert(self, item: Any) -> list[dict[str, Any]]:
        ag = self.ag
        if isinstance(item, ag.TaskResult):
            events: list[dict[str, Any]] = []
            if not self.items:  # a TaskResult on its own (``return await agent.run(...)``): its messages are the output
                for message in item.messages:
                    events.extend(self._convert(message))
            events.extend(self.finish_all())
            self.started = False  # a later run_stream echoes its task again
            self.items = 0
            return events
        self.items += 1
        return self._convert(item)

    def _convert(self, item: Any) -> list[dict[str, Any]]:
        ag = self.ag
        messages = ag.messages
        if isinstance(item, ag.Response):
            item = item.chat_message
        if isinstance(item, messages.BaseChatMessage):
            if item.id in self.input_ids or (not self.started and item.source == "user"):
                return []  # the task's own messages, echoed back
            self.started = True
            return self._chat_message(item)
        if isinstance(item, messages.BaseAgentEvent):
            self.started = True
            if isinstance(item, messages.ModelClientStreamingChunkEvent):
                return self._chunk(item)
            if isinstance(item, messages.ThoughtEvent):
                return self._thought(item)
            if isinstance(item, messages.ToolCallRequestEvent):
                return self._calls(item)
            if isinstance(item, messages.ToolCallExecutionEvent):
                return self._results(item)
            return []  # memory queries, speaker selection, user input requests…
        raise TypeError(
            "a framework='autogen' handler yields the items of run_stream() (AgentChat messages, events and"
            f" the TaskResult), got {type(item).__name__}"
            + (" (use framework='text' to stream plain strings)" if isinstance(item, (str, bytes)) else "")
        )

    # -- streamed model output -----------------------------------------------------------------
    def _open(self, kind: str, source: str, role: str = "assistant") -> tuple[OpenMessage, dict[str, Any]]:
        return self.builder.open_message(kind, role, {"source": source})

    def _chunk(self, event: Any) -> list[dict[str, Any]]:
        key = event.full_message_id or ("source", event.source)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = _Stream(event.source)
            self.streamed.add(key)
        return self._pieces(stream, stream.splitter.feed(event.content or ""))

    def _pieces(self, stream: _Stream, pieces: list[tuple[str, str]]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for kind, text in pieces:
            if stream.segment is None or stream.segment[0] != kind:
                events.extend(self._close_segment(stream))
                opened, started = self._open(
                    MessageType.REASONING if kind == "reasoning" else MessageType.MESSAGE, stream.source
                )
                stream.opened.append(opened)
                events.append(started)
                stream.segment = (kind, opened, opened.new_content("text"))
            _, opened, content = stream.segment
            if kind == "text":
                stream.text.append(text)
            events.append(self.builder.delta(opened, content, {"text": text}))
        return events

    def _close_segment(self, stream: _Stream) -> list[dict[str, Any]]:
        if stream.segment is None:
            return []
        _, opened, _ = stream.segment
        stream.segment = None
        return self.builder.complete_message(opened)

    def _finish(self, key: Any, usage: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        stream = self.streams.pop(key)
        events = self._pieces(stream, stream.splitter.flush())
        for opened in stream.opened:
            if not opened.completed:
                if usage:
                    opened.usage = usage
                events.extend(self.builder.complete_message(opened))
        return events

    def finish_all(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for key in list(self.streams):
            events.extend(self._finish(key))
        return events

    def _finish_source(self, source: str, usage: dict[str, Any] | None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for key, stream in list(self.streams.items()):
            if stream.source == source:
                events.extend(self._finish(key, usage))
        return events

    def _thought(self, event: Any) -> list[dict[str, Any]]:
        stream = self.streams.get(event.id)
        if event.id in self.streamed:  # streamed already (as <think> reasoning, or text before tool calls)
            if stream is not None and stream.segment is not None and stream.segment[0] == "reasoning":
                return self._close_segment(stream)
            return []
        opened, started = self._open(MessageType.REASONING, event.source)
        return [
            started,
            self.builder.complete_content(opened, opened.new_content("text"), {"text": event.content}),
            *self.builder.complete_message(opened),
        ]

    # -- tool calls ----------------------------------------------------------------------------
    def _calls(self, event: Any) -> list[dict[str, Any]]:
        usage = _usage(event.models_usage)
        events = self._finish_source(event.source, usage)  # what the model said before its calls is final
        for call in event.content:
            opened, started = self._open(MessageType.PLUGIN_CALL, event.source)
            opened.usage = usage
            data = {"call_id": call.id, "name": call.name, "arguments": call.arguments}
            events += [started, self.builder.complete_content(opened, opened.new_content("data"), {"data": data})]
            events += self.builder.complete_message(opened)
        return events

    def _results(self, event: Any) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for result in event.content:
            opened, started = self._open(MessageType.PLUGIN_CALL_OUTPUT, event.source, "tool")
            data = {
                "call_id": result.call_id,
                "name": result.name,
                "output": result.content,
                "is_error": bool(result.is_error),
            }
            events += [started, self.builder.complete_content(opened, opened.new_content("data"), {"data": data})]
            events += self.builder.complete_message(opened)
        return events

    # -- chat messages -------------------------------------------------------------------------
    def _chat_message(self, message: Any) -> list[dict[str, Any]]:
        usage = _usage(message.models_usage)
        if message.id in self.streamed and message.id not in self.streams:
            return []  # its text was streamed, and that message is already complete
        key = self._streamed_as(message)
        if key is not None:
            return self._finish(key, usage)
        events: list[dict[str, Any]] = []
        parts = (
            message.content if isinstance(message, self.ag.messages.MultiModalMessage) else [message.to_model_text()]
        )
        opened, started = self._open(MessageType.MESSAGE, message.source)
        opened.usage = usage
        events.append(started)
        for part in parts:
            if isinstance(part, str):
                events.append(self.builder.complete_content(opened, opened.new_content("text"), {"text": part}))
            else:
                events.append(
                    self.builder.complete_content(opened, opened.new_content("image"), {"image_url": part.data_uri})
                )
        return events + self.builder.complete_message(opened)

    def _streamed_as(self, message: Any) -> Any:
        """The open stream ``message`` is the final form of: the one of its id, or — when a thought
        gave the answer a new id — the latest stream of its source that streamed exactly its text."""
        if message.id in self.streams:
            return message.id
        text = message.to_model_text().strip()
        for key in reversed(list(self.streams)):
            stream = self.streams[key]
            if stream.source == message.source and "".join(stream.text).strip() == text:
                return key
        return None
