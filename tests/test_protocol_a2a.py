"""A2A through a2a-sdk 1.x's own client, in-process (the card, the task model, the mapping, the
refusals and the time limits) and over real sockets (tokens arriving as produced)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator

import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import a2a_pb2 as pb
from a2a.utils.errors import InvalidParamsError, TaskNotCancelableError, TaskNotFoundError
from google.protobuf.json_format import MessageToDict

from tests.nodes.protocol_node import ENDINGS, make_app
from tests.support import in_process, user_body, wait_until

S = pb.TaskState


def message(text: str, context: str = "", task: str = "", **metadata: Any) -> pb.SendMessageRequest:
    msg = pb.Message(message_id=f"m-{time.monotonic_ns()}", role=pb.ROLE_USER, parts=[pb.Part(text=text)], context_id=context, task_id=task)
    if metadata:
        msg.metadata.update(metadata)
    return pb.SendMessageRequest(message=msg)


@contextlib.asynccontextmanager
async def a2a_client(app, streaming: bool = True) -> AsyncIterator[Any]:
    async with in_process(app) as http:
        client = await create_client("http://agent.test", ClientConfig(streaming=streaming, httpx_client=http))
        yield client, http


async def collect(client, request) -> list[pb.StreamResponse]:
    return [event async for event in client.send_message(request)]


def artifacts_by_name(task: pb.Task) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for artifact in task.artifacts:
        found.setdefault(artifact.name, []).append(MessageToDict(artifact))
    return found


def test_the_card_streams_names_both_protocol_lines_and_the_url_the_agent_answers_on():
    async def scenario() -> None:
        async with in_process(make_app()) as http:
            card = (await http.get("/.well-known/agent-card.json")).json()
            assert card["capabilities"]["streaming"] is True
            assert [(i["url"], i["protocolVersion"]) for i in card["supportedInterfaces"]] == [
                ("http://agent.test/a2a", "1.0"),
                ("http://agent.test/a2a", "0.3.0"),
            ]
            assert (card["url"], card["preferredTransport"], card["protocolVersion"]) == ("http://agent.test/a2a", "JSONRPC", "0.3.0")
            assert (card["name"], card["description"]) == ("Probe", "an agent that shows every kind of output")
            assert (await http.get("/.well-known/agent.json")).json() == card  # where 0.3 SDKs also look
            proxied = await http.get("/.well-known/agent-card.json", headers={"x-forwarded-proto": "https", "x-forwarded-host": "agent.example.com"})
            assert proxied.json()["url"] == "https://agent.example.com/a2a"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "config, url",
    [
        ({"host": "agent.internal", "port": 9100}, "http://agent.internal:9100/a2a"),
        ({"host": "https://agent.example.com"}, "https://agent.example.com/a2a"),
        ({"public_url": "https://public.example.com/base/"}, "https://public.example.com/base/a2a"),
        ({"agent_card": {"url": "https://card.example.com/rpc", "name": "Named", "skills": []}}, "https://card.example.com/rpc"),
    ],
)
def test_the_card_url_comes_from_the_config_before_the_request(config, url):
    async def scenario() -> None:
        async with in_process(make_app(a2a_config=config)) as http:
            card = (await http.get("/.well-known/agent-card.json")).json()
            assert card["url"] == url and card["supportedInterfaces"][0]["url"] == url

    asyncio.run(scenario())


def test_the_deployed_url_in_the_environment_is_the_card_url(monkeypatch):
    monkeypatch.setenv("AGENTPACK_PUBLIC_URL", "https://fn-abc.cn-hangzhou.fcapp.run")

    async def scenario() -> None:
        async with in_process(make_app()) as http:
            assert (await http.get("/.well-known/agent-card.json")).json()["url"] == "https://fn-abc.cn-hangzhou.fcapp.run/a2a"

    asyncio.run(scenario())


def test_a_users_card_may_be_a_dict_or_an_agent_card_of_either_sdk_line():
    from a2a.compat.v0_3 import types as v03

    skill = {"id": "math", "name": "Math", "description": "adds", "tags": ["math"]}
    cards = [
        {"name": "Calc", "version": "2.0.0", "skills": [skill], "provider": "Example Org"},
        {"name": "Calc", "version": "2.0.0", "defaultInputModes": ["text"], "skills": [skill], "provider": {"organization": "Example Org", "url": "https://example.org"}},
        v03.AgentCard(
            name="Calc", description="adds", url="", version="2.0.0", capabilities=v03.AgentCapabilities(), default_input_modes=["text"],
            default_output_modes=["text"], skills=[v03.AgentSkill(**skill)], provider=v03.AgentProvider(organization="Example Org", url="https://example.org"),
        ),
        pb.AgentCard(name="Calc", description="adds", version="2.0.0", skills=[pb.AgentSkill(id="math", name="Math", description="adds", tags=["math"])],
                     provider=pb.AgentProvider(organization="Example Org", url="https://example.org")),
    ]

    async def scenario() -> None:
        for given in cards:
            async with in_process(make_app(a2a_config={"agent_card": given})) as http:
                card = (await http.get("/.well-known/agent-card.json")).json()
                assert (card["name"], card["version"], card["skills"][0]["id"]) == ("Calc", "2.0.0", "math"), given
                assert card["provider"]["organization"] == "Example Org"
                assert card["capabilities"]["streaming"] is True  # the runtime's, whatever the card said

    asyncio.run(scenario())


def test_send_answers_a_completed_task_with_the_answer_reasoning_calls_and_results_as_artifacts():
    async def scenario() -> None:
        async with a2a_client(make_app(), streaming=False) as (client, _):
            [response] = await collect(client, message("hi", user_id="用户-1"))
            task = response.task
            assert task.status.state == S.TASK_STATE_COMPLETED
            artifacts = artifacts_by_name(task)
            assert [a["parts"][0]["text"] for a in artifacts["answer"]] == ["Hello there!"]
            assert artifacts["reasoning"][0]["parts"][0]["text"] == "The user greets me; I add first."
            assert artifacts["reasoning"][0]["metadata"] == {"type": "reasoning"}
            call, result = artifacts["plugin_call"][0], artifacts["plugin_call_output"][0]
            assert call["parts"][0]["data"] == {"call_id": "call_1", "name": "add", "arguments": '{"a": 1, "b": 2}'}
            assert result["parts"][0]["data"] == {"call_id": "call_1", "name": "add", "output": "3"}
            assert MessageToDict(task.metadata)["usage"] == {"input_tokens": 7, "output_tokens": 3}
            assert [m.parts[0].text for m in task.history] == ["hi"]
            again = await client.get_task(pb.GetTaskRequest(id=task.id))
            assert again.status.state == S.TASK_STATE_COMPLETED and len(again.artifacts) == 4
            with pytest.raises(TaskNotFoundError):
                await client.get_task(pb.GetTaskRequest(id="no-such-task"))

    asyncio.run(scenario())


def test_stream_is_the_task_then_working_then_each_piece_then_the_final_status():
    async def scenario() -> None:
        async with a2a_client(make_app()) as (client, _):
            events = await collect(client, message("hi", context="ctx-流"))
        kinds = [e.WhichOneof("payload") for e in events]
        assert kinds[0] == "task" and events[0].task.status.state == S.TASK_STATE_SUBMITTED
        assert events[0].task.context_id == "ctx-流"
        assert kinds[1] == "status_update" and events[1].status_update.status.state == S.TASK_STATE_WORKING
        assert kinds[-1] == "status_update" and events[-1].status_update.status.state == S.TASK_STATE_COMPLETED
        answer = [e.artifact_update for e in events if e.WhichOneof("payload") == "artifact_update" and e.artifact_update.artifact.name == "answer"]
        assert [u.artifact.parts[0].text for u in answer] == ["Hello", " there", "!", ""]
        assert [u.append for u in answer] == [False, True, True, True] and [u.last_chunk for u in answer] == [False, False, False, True]

    asyncio.run(scenario())


def test_cancel_stops_the_run_and_an_ended_task_cannot_be_canceled_again():
    async def scenario() -> None:
        app = make_app()
        async with a2a_client(app, streaming=False) as (client, _):
            request = message("hang", context="cancel-me")
            request.configuration.return_immediately = True
            [submitted] = await collect(client, request)
            task_id = submitted.task.id
            await asyncio.to_thread(wait_until, lambda: len(app.runtime.guard) == 1, 10, "the task never started")
            working = await client.get_task(pb.GetTaskRequest(id=task_id))
            assert working.status.state == S.TASK_STATE_WORKING
            canceled = await client.cancel_task(pb.CancelTaskRequest(id=task_id))
            assert canceled.status.state == S.TASK_STATE_CANCELED
            assert canceled.status.message.parts[0].text == "canceled by tasks/cancel"
            assert [a.parts[0].text for a in canceled.artifacts if a.name == "answer"] == ["Hello"]  # what it had said
            assert ENDINGS["cancel-me"] == "cancelled"
            with pytest.raises(TaskNotCancelableError):
                await client.cancel_task(pb.CancelTaskRequest(id=task_id))
            with pytest.raises(InvalidParamsError, match="takes no more input"):
                await collect(client, message("more", context="cancel-me", task=task_id))
            with pytest.raises(TaskNotFoundError):
                await collect(client, message("more", task="unknown-task"))

    asyncio.run(scenario())


def test_a_task_is_in_the_shared_store_before_its_client_learns_its_id(monkeypatch):
    """Another instance reads a task from the store the instances share: the id must not reach
    the client before the record does, or a tasks/get sent elsewhere at once finds nothing.
    The store here takes 0.2 s per write, as a loaded Redis might.  (A stream's first event
    waits for the same first record: both start the task through ``start_task``.)"""
    from agentpack.interrupt.records import MemoryRecords

    stored: list[str] = []
    put = MemoryRecords.put

    async def slow_put(self, key, value, ttl_seconds):
        await asyncio.sleep(0.2)
        await put(self, key, value, ttl_seconds)
        stored.append(key)

    monkeypatch.setattr(MemoryRecords, "put", slow_put)

    async def scenario() -> None:
        app = make_app()
        async with a2a_client(app, streaming=False) as (client, _):
            request = message("hang", context="recorded")
            request.configuration.return_immediately = True
            [submitted] = await collect(client, request)
            assert submitted.task.id in stored, "the client has the id before the store has the task"
            await client.cancel_task(pb.CancelTaskRequest(id=submitted.task.id))

    asyncio.run(scenario())


def test_a_busy_context_is_rejected_and_a_failing_handler_fails_its_task_with_the_reason(monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    async def scenario() -> None:
        app = make_app()
        async with a2a_client(app, streaming=False) as (client, http):
            hold = asyncio.create_task(http.post("/process", json=user_body("hang", session_id="busy-ctx")))
            await asyncio.to_thread(wait_until, lambda: len(app.runtime.guard) == 1, 10, "the first run never started")
            [rejected] = await collect(client, message("hi", context="busy-ctx"))
            assert rejected.task.status.state == S.TASK_STATE_REJECTED
            assert "running another task" in rejected.task.status.message.parts[0].text
            assert (await client.get_task(pb.GetTaskRequest(id=rejected.task.id))).status.state == S.TASK_STATE_REJECTED
            await http.post("/process/stop", json={"session_id": "busy-ctx"})
            await hold

            [failed] = await collect(client, message("fail"))
            assert failed.task.status.state == S.TASK_STATE_FAILED
            assert "failed on purpose" in failed.task.status.message.parts[0].text
            assert MessageToDict(failed.task.status.message.metadata) == {"code": "AGENT_UNKNOWN_ERROR"}

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "config, reason",
    [({"task_timeout": 1}, "took longer than its 1s limit"), ({"task_event_timeout": 1}, "sent nothing for 1s")],
)
def test_the_task_time_limits_end_a_task_failed_saying_which(config, reason):
    async def scenario() -> None:
        async with a2a_client(make_app(a2a_config=config), streaming=False) as (client, _):
            started = time.monotonic()
            [response] = await collect(client, message("hang", context=f"limit-{reason[:4]}"))
            assert response.task.status.state == S.TASK_STATE_FAILED
            assert reason in response.task.status.message.parts[0].text
            assert MessageToDict(response.task.status.message.metadata) == {"code": "timeout"}
            assert time.monotonic() - started < 10

    asyncio.run(scenario())


def test_unoffered_methods_answer_a2a_errors_not_internal_ones():
    async def scenario() -> None:
        async with in_process(make_app()) as http:
            for method, code in (("ListTasks", -32004), ("GetExtendedAgentCard", -32007), ("CreateTaskPushNotificationConfig", -32003)):
                answer = await http.post("/a2a", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}, headers={"A2A-Version": "1.0"})
                assert answer.json()["error"]["code"] == code, (method, answer.json())
            empty = await http.post("/a2a", json={"jsonrpc": "2.0", "id": 2, "method": "SendMessage", "params": {"message": {"messageId": "x", "role": "ROLE_USER", "parts": []}}}, headers={"A2A-Version": "1.0"})
            assert empty.json()["error"]["code"] in (-32602, -32600)

    asyncio.run(scenario())


def test_a2a_tokens_arrive_as_they_are_produced_over_a_real_socket(serve):
    url = serve(make_app())

    async def scenario() -> None:
        import httpx

        async with httpx.AsyncClient(timeout=30) as http:
            card = (await http.get(f"{url}/.well-known/agent-card.json")).json()
            assert card["url"] == f"{url}/a2a"  # the port it really serves on
            client = await create_client(url, ClientConfig(streaming=True, httpx_client=http))
            arrivals = []
            async for event in client.send_message(message("slow")):
                if event.WhichOneof("payload") == "artifact_update" and event.artifact_update.artifact.name == "answer":
                    text = event.artifact_update.artifact.parts[0].text
                    if text:
                        arrivals.append((text, time.monotonic()))
        gaps = [b - a for (_, a), (_, b) in zip(arrivals, arrivals[1:])]
        assert [t for t, _ in arrivals] == ["Hello", " there", "!"] and all(gap > 0.15 for gap in gaps), gaps

    asyncio.run(scenario())
