"""The A2A server: a2a-sdk's JSON-RPC dispatcher (A2A 1.0, and 0.3 on the same endpoint)
over a request handler that runs every task through the app's run source.

Method by method (1.0 name / 0.3 name):

- ``SendMessage`` / ``message/send``: starts a task and answers it when it ends (or at once,
  with ``returnImmediately`` / ``blocking: false``).  ``contextId`` is the session (a new one
  when absent); the user is the message's (or the request's) metadata ``user_id``, else the
  session's.  A message naming a ``taskId`` must name a known task; one that has ended cannot
  take more input (send the message without ``taskId``, same ``contextId``, to go on).
- ``SendStreamingMessage`` / ``message/stream``: the task, then its status and artifact
  updates as the run produces them, until its final status.
- ``GetTask`` / ``tasks/get``: the task's state, artifacts and history, from any instance
  sharing the app's interrupt backend.
- ``CancelTask`` / ``tasks/cancel``: stops the run wherever it runs; answers the task once it
  is ``canceled`` (an ended task is not cancelable: -32002).
- ``SubscribeToTask`` / ``tasks/resubscribe``: a running task's updates, on any instance.
- Not offered: ``ListTasks`` (-32004), push notifications (-32003), the extended card (-32007).

With auth on, a task is its submitter's: ``GetTask``, ``CancelTask``, ``SubscribeToTask`` and a
message naming its ``taskId`` answer any other principal ``TaskNotFound`` (-32001), exactly as
for an id never issued, so ids cannot be probed (see :func:`visible_to`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.request_handlers.response_helpers import build_error_response
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types import a2a_pb2
from a2a.utils.errors import (
    A2AError,
    ExtendedAgentCardNotConfiguredError,
    InternalError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict, ParseDict
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from agentpack._aio import wait_bounded
from agentpack.frontends.a2a.tasks import (
    FAILED,
    LOST_AFTER,
    REJECTED,
    TERMINAL_STATES,
    TaskRun,
    agent_message,
    request_input,
    state_name,
    task_from_record,
)
from agentpack.frontends.base import run_headers
from agentpack.interrupt.base import BackendUnavailable, SessionBusy
from agentpack.interrupt.records import MemoryRecords, Records
from agentpack.protocol.schemas import AgentRequest
from agentpack.protocol.sse import encode_json_bytes
from agentpack.run.agent_run import RunLimits
from agentpack.run.json_response import json_response
from agentpack.run.stream import CANCELLED_BY_SERVER, StreamResponse, settle_task

logger = logging.getLogger("agentpack.a2a")

#: How long ``tasks/cancel`` waits for the stopped run to say it is canceled.
CANCEL_WAIT = 10.0
#: How often a task running on another instance is read while waiting on it.
POLL_INTERVAL = 0.1
#: Where the handler leaves the run's session headers for the route to send.
_HEADERS = "agentpack_headers"


class ContextBuilder(DefaultServerCallContextBuilder):
    """Keeps the HTTP request in the call context, so the handler can hand the route the
    run's session headers (the platform adapters read them to stop a run before a deadline)."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state["agentpack_request"] = request
        return context


def _metadata_user(*structs: Any) -> str | None:
    for struct in structs:
        if struct is None or not len(struct):
            continue
        values = MessageToDict(struct)
        user = values.get("user_id") or values.get("userId")
        if isinstance(user, str) and user:
            return user
    return None


def visible_to(task_owner: str | None, reader: str | None) -> bool:
    """A task stored without an owner (an app without auth) is anyone's; one with an owner is
    its owner's alone.  Compared in constant time, as keys are."""
    if task_owner is None:
        return True
    return reader is not None and hmac.compare_digest(task_owner.encode(), reader.encode())


#: The owner key of the principal calling now (an AgentApp's ``authentication.owner``).
Owner = Callable[[], "str | None"]


class TaskHandler(RequestHandler):
    """A2A methods over runs of ``source``; tasks live in ``source.records`` (see the module doc).
    ``owner`` tells who is calling, so a task is shown only to the principal that started it."""

    def __init__(self, source: Any, limits: RunLimits, retention: float, owner: Owner | None = None) -> None:
        self.source = source
        self._owner: Owner = owner if owner is not None else (lambda: None)
        make_records = getattr(source, "records", None)
        self.records: Records = make_records("a2a-tasks") if callable(make_records) else MemoryRecords()
        self.limits = limits
        self.retention = retention
        #: tasks running in this process
        self.live: dict[str, TaskRun] = {}

    # -- tasks -----------------------------------------------------------------------------------
    def _live(self, task_id: str) -> TaskRun | None:
        """The task running here, if the caller may see it."""
        live = self.live.get(task_id)
        return live if live is not None and visible_to(live.owner, self._owner()) else None

    async def _load(self, task_id: str) -> tuple[dict[str, Any], str] | None:
        """A task not running here, from the records (A2A JSON); one whose run died is answered
        failed.  None for an unknown id, and for another principal's task."""
        try:
            raw = await self.records.get(task_id)
        except Exception as exc:
            raise InternalError(message=f"the task store is unreachable: {exc}") from exc
        if raw is None:
            return None
        task, user_id, updated, owner = task_from_record(raw)
        if not visible_to(owner, self._owner()):
            return None
        if task["status"]["state"] not in TERMINAL_STATES:
            running = getattr(self.source, "running", None)
            if (
                time.time() - updated > LOST_AFTER
                and callable(running)
                and not await running(user_id, task["contextId"])
            ):
                lost = agent_message(
                    task_id, task["contextId"], "the instance running this task stopped before it finished"
                )
                task["status"] = {**task["status"], "state": FAILED, "message": lost}
        return task, user_id

    async def _task(self, task_id: str) -> tuple[dict[str, Any], str]:
        live = self._live(task_id)
        if live is not None:
            return live.json(), live.user_id
        found = await self._load(task_id)
        if found is None:
            raise TaskNotFoundError(message=f"task {task_id!r} is not known here (or has expired)")
        return found

    async def start_task(self, params: a2a_pb2.SendMessageRequest, context: ServerCallContext) -> TaskRun:
        """A task for the message, its run started (or the task rejected: the session is busy)."""
        message = params.message
        if not message.parts:
            raise InvalidParamsError(message="the message has no parts; send at least one (e.g. a text part)")
        context_id = message.context_id
        if message.task_id:
            earlier, _ = await self._task(message.task_id)
            if earlier["status"]["state"] in TERMINAL_STATES:
                raise InvalidParamsError(
                    message=f"task {message.task_id!r} is {state_name(earlier['status']['state'])} and takes no more input; "
                    "send the message without taskId (same contextId) to continue the conversation"
                )
            context_id = context_id or earlier["contextId"]
        context_id = context_id or uuid.uuid4().hex
        task_id = uuid.uuid4().hex
        try:
            request = AgentRequest.model_validate(
                {
                    "input": request_input(message),
                    "session_id": context_id,
                    "user_id": _metadata_user(message.metadata, params.metadata),
                    "id": task_id,
                    "stream": True,
                }
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidParamsError(message=f"{where}: {first['msg']}") from None
        stored = {**MessageToDict(message), "contextId": context_id, "taskId": task_id}
        task = TaskRun(
            task_id, context_id, request.user_id or context_id, stored, self.records, self.retention, self._owner()
        )
        try:
            run = await self.source.open_run(request, self.limits)
        except SessionBusy:
            await task.end_without_run(
                REJECTED, f"context {context_id!r} is running another task; cancel it or wait until it ends"
            )
            return task
        except BackendUnavailable as exc:
            await task.end_without_run(FAILED, str(exc))
            return task
        except PermissionError as exc:  # another principal's user id (bind_user_to_principal)
            await task.end_without_run(REJECTED, str(exc))
            return task
        task.user_id = run.request.user_id or task.user_id  # the app may bind it (bind_user_to_principal)
        request_state = context.state.get("agentpack_request")
        if request_state is not None:
            setattr(request_state.state, _HEADERS, run_headers(run))
        # the record first: a client given the task's id may ask any instance for it at once, and
        # one that answered "not found" would have lost the task for that client
        try:
            await task.save()
        except BaseException:  # cancelled before the run started: it never will, so give its session back
            await asyncio.shield(run.release())
            raise
        self.live[task_id] = task
        task.start(run, on_end=lambda: self.live.pop(task_id, None))
        return task

    async def stop_all(self, reason: str, timeout: float) -> None:
        """Stop every task running here and wait (bounded) until each has said so."""
        tasks = list(self.live.values())
        for task in tasks:
            task.stop(reason)
        if tasks:
            await wait_bounded(asyncio.gather(*(t.done.wait() for t in tasks)), timeout)

    # -- the methods -----------------------------------------------------------------------------
    async def on_message_send(self, params: a2a_pb2.SendMessageRequest, context: ServerCallContext) -> a2a_pb2.Task:
        task = await self.start_task(params, context)
        length = params.configuration.history_length if params.configuration.HasField("history_length") else None
        if not params.configuration.return_immediately:
            await task.done.wait()  # a client that leaves does not cancel the task
        return task.snapshot(length)

    async def on_message_send_stream(
        self, params: a2a_pb2.SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any, None]:
        task = await self.start_task(params, context)
        async for event in task.subscribe():
            yield event

    async def on_get_task(self, params: a2a_pb2.GetTaskRequest, context: ServerCallContext) -> a2a_pb2.Task | None:
        length = params.history_length if params.HasField("history_length") else None
        live = self._live(params.id)
        if live is not None:
            return live.snapshot(length)
        found = await self._load(params.id)
        if found is None:
            return None
        task = found[0]
        if length is not None:
            task["history"] = task.get("history", [])[-length:] if length > 0 else []
        return _proto(task)

    async def on_cancel_task(
        self, params: a2a_pb2.CancelTaskRequest, context: ServerCallContext
    ) -> a2a_pb2.Task | None:
        live = self._live(params.id)
        if live is not None:
            if live.terminal:
                raise TaskNotCancelableError(message=f"task {params.id!r} is already {state_name(live.state)}")
            live.stop("canceled by tasks/cancel")
            await wait_bounded(live.done.wait(), CANCEL_WAIT)
            return live.snapshot()
        found = await self._load(params.id)
        if found is None:
            return None
        task, user_id = found
        if task["status"]["state"] in TERMINAL_STATES:
            raise TaskNotCancelableError(message=f"task {params.id!r} is already {state_name(task['status']['state'])}")
        stop = getattr(self.source, "stop", None)
        if callable(stop):
            try:
                await stop(user_id, task["contextId"])
            except BackendUnavailable as exc:
                raise InternalError(message=f"could not reach the run to cancel it: {exc}") from exc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_WAIT
        while loop.time() < deadline:  # the run is elsewhere: its instance writes how it ended
            await asyncio.sleep(POLL_INTERVAL)
            found = await self._load(params.id)
            if found is not None and found[0]["status"]["state"] in TERMINAL_STATES:
                return _proto(found[0])
        return _proto(task)

    async def on_subscribe_to_task(
        self, params: a2a_pb2.SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any, None]:
        live = self._live(params.id)
        if live is not None:
            async for event in live.subscribe():
                yield event
            return
        task, _ = await self._task(params.id)
        if task["status"]["state"] in TERMINAL_STATES:
            raise UnsupportedOperationError(
                message=f"task {params.id!r} is already {state_name(task['status']['state'])}; read it with GetTask"
            )
        yield _proto(task)
        last = task
        while True:  # running on another instance: follow its record
            await asyncio.sleep(POLL_INTERVAL)
            found = await self._load(params.id)
            if found is None:
                return
            if found[0] != last:
                last = found[0]
                yield _proto(last)
            if last["status"]["state"] in TERMINAL_STATES:
                return

    async def on_list_tasks(
        self, params: a2a_pb2.ListTasksRequest, context: ServerCallContext
    ) -> a2a_pb2.ListTasksResponse:
        raise UnsupportedOperationError(message="ListTasks is not offered; read each task with GetTask")

    async def on_create_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError()

    async def on_get_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError()

    async def on_list_task_push_notification_configs(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError()

    async def on_delete_task_push_notification_config(self, params: Any, context: ServerCallContext) -> None:
        raise PushNotificationNotSupportedError()

    async def on_get_extended_agent_card(self, params: Any, context: ServerCallContext) -> Any:
        raise ExtendedAgentCardNotConfiguredError()


def _proto(task: dict[str, Any]) -> a2a_pb2.Task:
    parsed: a2a_pb2.Task = ParseDict(task, a2a_pb2.Task(), ignore_unknown_fields=True)
    return parsed


class Subscription:
    """A task's updates as one A2A 1.0 JSON-RPC stream, on agentpack's streaming response (a
    :class:`~agentpack.run.stream.Producer`).  The client leaving ends the subscription, not the
    task; the server shutting down stops the task, whose last update still goes out."""

    def __init__(self, task: TaskRun, request_id: Any) -> None:
        self.task = task
        self.request_id = request_id
        self.job: asyncio.Task[None] | None = None

    async def begin(self, write: Any) -> None:
        return None  # the task's updates come from its own run

    def start(self, write: Any) -> asyncio.Task[None]:
        self.job = asyncio.create_task(self._pump(write), name=f"agentpack-a2a-stream-{self.task.task_id}")
        return self.job

    async def _pump(self, write: Any) -> None:
        prefix = b'data: {"jsonrpc":"2.0","id":' + encode_json_bytes(self.request_id) + b',"result":'
        async for batch in self.task.updates():
            await write(b"".join(prefix + encode_json_bytes(update) + b"}\n\n" for update in batch))

    def stop(self, reason: str = CANCELLED_BY_SERVER) -> None:
        self.task.stop(reason)

    async def settle(self) -> None:
        await settle_task(self.job, False, "an A2A stream")

    async def release(self) -> None:
        return None


class A2AServer:
    """The routes' implementation, made on the first A2A request (or at start-up when the app
    configures A2A), so apps that never speak A2A never import the SDK.

    The SDK's dispatcher answers every method, but one: an A2A 1.0 ``SendStreamingMessage`` is
    streamed here, from the task's JSON updates on agentpack's own streaming response — the
    SDK would turn each update into protobuf and back into JSON, then send it through a second
    SSE stack, several times the cost of the update itself ([benchmarks.md]).  A request that is
    not well formed goes to the dispatcher, whose errors are the protocol's.
    """

    def __init__(
        self,
        source: Any,
        limits: RunLimits,
        retention: float,
        card: Callable[[Any], dict[str, Any]],
        owner: Owner | None = None,
    ) -> None:
        self.handler = TaskHandler(source, limits, retention, owner)
        self.context_builder = ContextBuilder()
        self.dispatcher = JsonRpcDispatcher(self.handler, context_builder=self.context_builder, enable_v0_3_compat=True)
        self._card = card

    async def rpc(self, request: Request) -> Response:
        streamed = await self._stream(request)
        if streamed is not None:
            return streamed
        response = await self.dispatcher.handle_requests(request)
        for name, value in (getattr(request.state, _HEADERS, None) or {}).items():
            response.headers[name] = value
        return response

    async def _stream(self, request: Request) -> Response | None:
        """A well-formed A2A 1.0 ``SendStreamingMessage``, streamed; ``None`` for anything else."""
        version = request.headers.get("a2a-version") or ""
        if not version.startswith("1."):
            return None
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return None
        if (
            not isinstance(payload, dict)
            or payload.get("jsonrpc") != "2.0"
            or payload.get("method") != "SendStreamingMessage"
        ):
            return None
        request_id = payload.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int, type(None))):
            return None
        try:
            params = ParseDict(payload.get("params") or {}, a2a_pb2.SendMessageRequest(), ignore_unknown_fields=True)
        except Exception:  # the dispatcher says what is wrong with them
            return None
        context = self.context_builder.build(request)
        context.state["method"], context.state["request_id"] = "SendStreamingMessage", request_id
        try:
            task = await self.handler.start_task(params, context)
        except A2AError as exc:
            return json_response(build_error_response(request_id, exc))
        return StreamResponse(Subscription(task, request_id), headers=getattr(request.state, _HEADERS, None) or {})

    def card(self, where: Any) -> dict[str, Any]:
        """The served card for a request: ``where`` is its base URL and root path."""
        return self._card(where)


__all__ = ["A2AServer", "TaskHandler"]
