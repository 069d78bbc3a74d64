"""What the protocol front-ends share: where their runs come from, and how a run's Agent API
events become another protocol's frames on agentpack's one streaming response.

A front-end gets runs from a *run source* (:class:`~agentpack.run.iterate.RunSource`):

- inside an :class:`~agentpack.AgentApp`, the app's own: every run from every protocol is
  taken through the same session guard, interrupt backend, time limits and terminal states
  as ``/process`` (a busy session is refused, a stop reaches the run on any instance);
- given a plain function — AgentScope Runtime's ``add_endpoint(app, func)`` convention, where
  ``func(request)`` yields the Agent API events of one run — a :class:`FuncSource`, which adds
  what such a function cannot promise: exactly one terminal event, a stop, time limits.

Either way the front-end reads plain event dicts in the Agent API's shapes and writes its own
wire; it never calls the handler itself.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from agentpack._aio import uncancel
from agentpack.headers import session_headers
from agentpack.interrupt.base import BackendUnavailable, SessionBusy
from agentpack.interrupt.records import MemoryRecords
from agentpack.protocol.events import ResponseBuilder
from agentpack.protocol.schemas import AgentRequest, fill_ids
from agentpack.protocol.serialize import jsonable
from agentpack.protocol.status import RunStatus
from agentpack.run.agent_run import HANDLER_FAILURES, RunLimits, StoppableRun, enforce_limits, error_of
from agentpack.run.handler import as_async_iterator
from agentpack.run.iterate import RunSource
from agentpack.run.stream import CANCELLED_BY_SERVER, StreamResponse, Write, run_to_end, settle_task

logger = logging.getLogger("agentpack.frontends")

#: The statuses that end a response.
TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})

#: Turns one Agent API event into the protocol's frames (``b""`` when it has nothing to say).
Translate = Callable[[dict[str, Any]], bytes]


class Translator:
    """Turns one run's Agent API events into a protocol's events: :meth:`feed` hands each event
    to the method for its object (content, message, response) and returns what it appended.

    ``open`` holds what the protocol keeps per message being streamed, by message id; a content
    event of a message with no entry there is ignored (the protocol does not show that kind).
    """

    def __init__(self) -> None:
        self.open: dict[str, Any] = {}

    def feed(self, event: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        kind = event.get("object")
        if kind == "content":  # by far the most frequent
            item = self.open.get(event.get("msg_id"))  # type: ignore[arg-type]
            if item is not None:
                self.on_content(item, event, out)
        elif kind == "message":
            self.on_message(event, out)
        elif kind == "response":
            self.on_response(event, out)
        return out

    def on_content(self, item: Any, event: dict[str, Any], out: list[Any]) -> None:
        """A content delta or a completed content of the message ``item`` stands for."""

    def on_message(self, event: dict[str, Any], out: list[Any]) -> None:
        """A message announced (``in_progress``) or completed."""

    def on_response(self, event: dict[str, Any], out: list[Any]) -> None:
        """The response created, in progress, or ended."""


class ProtocolAdapter(ABC):
    """A protocol served beside ``/process`` (AgentScope Runtime's adapter interface).

    ``add_endpoint(app, func)`` adds the protocol's routes to ``app``; ``func`` is where runs
    come from (see the module doc).  :meth:`startup` and :meth:`shutdown` are agentpack's
    additions: an :class:`~agentpack.AgentApp` calls them from its lifespan, so work such as
    registering with a service registry happens when the app starts serving — never when a
    build or a worker merely imports it.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs

    @abstractmethod
    def add_endpoint(self, app: Any, func: Callable[..., Any], **kwargs: Any) -> Any:
        """Add the protocol's routes to ``app``; runs come from ``func``."""

    async def startup(self, app: Any) -> None:
        """Called once the app has started (its backends are connected)."""

    async def shutdown(self, app: Any) -> None:
        """Called when the app stops, before its backends are closed."""


class LazyOpenAPI(dict):  # type: ignore[type-arg]
    """A route's ``openapi_extra`` made the first time the app's schema is built, not when the
    route is added: a request body's JSON schema needs the protocol's pydantic models (AG-UI's
    SDK), which an app that never serves its schema -- an artifact, whose docs are off -- should
    not import at start-up.  FastAPI reads ``openapi_extra`` only while building the schema."""

    def __init__(self, make: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self._make: Callable[[], dict[str, Any]] | None = make

    def _fill(self) -> None:
        if self._make is not None:
            make, self._make = self._make, None
            self.update(make())

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def __iter__(self) -> Any:
        self._fill()
        return super().__iter__()

    def __contains__(self, key: object) -> bool:
        self._fill()
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self._fill()
        return super().__getitem__(key)

    def keys(self) -> Any:
        self._fill()
        return super().keys()

    def items(self) -> Any:
        self._fill()
        return super().items()

    def values(self) -> Any:
        self._fill()
        return super().values()

    def get(self, key: str, default: Any = None) -> Any:
        self._fill()
        return super().get(key, default)


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic model's JSON schema with its ``$defs`` written in place of each ``$ref``, so it
    can sit inside an OpenAPI operation (where ``#/$defs/...`` would point at the document's root).
    A model that refers to itself is cut at the second visit with an open schema (``{}``)."""
    defs = schema.get("$defs", {})

    def walk(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in seen or name not in defs:
                    return {}
                rest = {k: walk(v, seen) for k, v in node.items() if k != "$ref"}
                return {**walk(defs[name], seen | {name}), **rest}
            return {k: walk(v, seen) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        return node

    inlined: dict[str, Any] = walk(schema, frozenset())
    return inlined


def json_body(schema: Callable[[], dict[str, Any]], responses: dict[str, Any]) -> LazyOpenAPI:
    """``openapi_extra`` documenting a route that reads its JSON body itself (so FastAPI sees no
    body parameter): the body's schema, required, and the answers the route gives."""
    return LazyOpenAPI(
        lambda: {
            "requestBody": {"required": True, "content": {"application/json": {"schema": inline_schema(schema())}}},
            "responses": responses,
        }
    )


def run_source(func: Any) -> RunSource:
    """The run source behind what ``add_endpoint`` was given: the app's own, or a function's."""
    if callable(getattr(func, "open_run", None)):
        source: RunSource = func  # the app (or anything else with open_run)
        return source
    if not callable(func):
        raise TypeError(
            f"add_endpoint() needs a function that yields Agent API events for a request, got {type(func).__name__}"
        )
    return FuncSource(func)


def as_event(item: Any) -> dict[str, Any]:
    """An event a function yielded (a pydantic model of the Agent API, or a dict) as a dict."""
    if type(item) is dict:
        return item
    value = jsonable(item)
    if not isinstance(value, dict) or "object" not in value:
        raise TypeError(
            f"expected an Agent API event (a response, message or content object), got {type(item).__name__}"
        )
    return value


def is_terminal(event: dict[str, Any]) -> bool:
    return event.get("object") == "response" and event.get("status") in TERMINAL


class FuncSource:
    """Runs of a function ``func(request)`` that yields Agent API events (no session guard:
    the function is whatever its author made it)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self._records: dict[str, MemoryRecords] = {}

    async def open_run(self, request: AgentRequest, limits: RunLimits | None = None) -> FuncRun:
        return FuncRun(self.func, fill_ids(request), limits)

    def records(self, namespace: str) -> MemoryRecords:
        return self._records.setdefault(namespace, MemoryRecords())


class FuncRun(StoppableRun):
    """One run of a :class:`FuncSource`: the function's events, then exactly one terminal event
    (its own, or one this run adds when the function stops short, fails, is stopped or passes a
    time limit)."""

    def __init__(self, func: Callable[..., Any], request: AgentRequest, limits: RunLimits | None = None) -> None:
        self.func = func
        self.request = request
        self.limits = limits
        self.task: asyncio.Task[None] | None = None
        self.final: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        self.failure: tuple[str, str] | None = None
        self._finishing = False

    async def begin(self, write: Write) -> None:
        return None  # the function's own events come first

    def start(self, write: Write) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._pump(write), name=f"agentpack-func-run-{self.request.session_id}")
        return self.task

    async def _pump(self, write: Write) -> None:
        watchdog = None
        if self.limits:
            write, watchdog = enforce_limits(self.limits, write, self.fail, self.request.session_id)
        sent = 0
        error: BaseException | None = None
        try:
            result = self.func(self.request)
            if asyncio.iscoroutine(result):
                result = await result
            async for item in as_async_iterator(result):
                event = as_event(item)
                await write(event)
                sent += 1
                if is_terminal(event):
                    self.final = event
                    break
        except asyncio.CancelledError:
            if self.stop_reason is None:
                raise
        except HANDLER_FAILURES as exc:
            logger.exception("the run function failed for session %s", self.request.session_id)
            error = exc
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if self.stop_reason is not None:
            uncancel()
        self._finishing = True
        if self.final is None or self.stop_reason is not None:
            self.final = self._terminal(error)
            self.final["sequence_number"] = sent
            await write(self.final)

    def _terminal(self, error: BaseException | None) -> dict[str, Any]:
        builder = ResponseBuilder(self.request.id, self.request.session_id)
        if self.failure is not None:
            return builder.failed(*self.failure)
        if self.stop_reason is not None:
            return builder.canceled(self.stop_reason)
        if error is not None:
            return builder.failed(*error_of(error))
        return builder.completed()

    async def settle(self) -> None:
        await settle_task(self.task, self.stop_reason is not None or self._finishing, "a protocol run function")

    async def release(self) -> None:
        return None


class Translated:
    """A run whose events go out as another protocol's frames (a :class:`Producer` itself)."""

    def __init__(self, run: Any, translate: Translate) -> None:
        self.run = run
        self.translate = translate

    def _translating(self, write: Write) -> Write:
        translate = self.translate

        async def translated(event: dict[str, Any]) -> None:
            frames = translate(event)
            if frames:
                await write(frames)

        return translated

    async def begin(self, write: Write) -> None:
        await self.run.begin(self._translating(write))

    def start(self, write: Write) -> asyncio.Task[None]:
        task: asyncio.Task[None] = self.run.start(self._translating(write))
        return task

    def stop(self, reason: str = CANCELLED_BY_SERVER) -> None:
        self.run.stop(reason)

    async def settle(self) -> None:
        await self.run.settle()

    async def release(self) -> None:
        await self.run.release()


async def open_or_refuse(source: RunSource, request: AgentRequest, refuse: Callable[[int, Exception], Any]) -> Any:
    """The run, or the protocol's answer when it cannot start: ``refuse(409, exc)`` for a busy
    session, ``refuse(503, exc)`` for an unreachable interrupt backend, ``refuse(403, exc)`` for
    another principal's user id (the app's ``bind_user_to_principal``)."""
    try:
        return await source.open_run(request)
    except SessionBusy as exc:
        return refuse(409, exc)
    except PermissionError as exc:
        return refuse(403, exc)
    except BackendUnavailable as exc:
        return refuse(503, exc)


def run_headers(run: Any) -> dict[str, str]:
    """The session headers ``/process`` sends: platform adapters read them to stop a run
    before the function's timeout, and clients to stop a run they started without ids."""
    return session_headers(run.request.session_id, run.request.user_id)


def stream(run: Any, translate: Translate, headers: dict[str, str] | None = None) -> StreamResponse:
    """The run as a stream of the protocol's frames: disconnects stop it, pings keep proxies
    open, a server shutdown ends it with its terminal frames."""
    return StreamResponse(Translated(run, translate), headers={**run_headers(run), **(headers or {})})


__all__ = [
    "LazyOpenAPI",
    "Translator",
    "FuncRun",
    "FuncSource",
    "ProtocolAdapter",
    "TERMINAL",
    "Translate",
    "Translated",
    "as_event",
    "inline_schema",
    "is_terminal",
    "json_body",
    "open_or_refuse",
    "run_headers",
    "run_source",
    "run_to_end",
    "stream",
]
