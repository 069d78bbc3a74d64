"""Every protocol through the same session guard and stops, across instances: two node processes
sharing a real redis-server.  A session held on one instance is refused on the other in each
protocol's own words; a run started in any protocol stops from ``/process/stop`` elsewhere; an
A2A task is read and canceled from the instance that does not run it.  And A2A 0.3 clients: the
real a2a-sdk 0.3 client, in a virtualenv of its own, against the same endpoint."""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
import threading
import time
import venv
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.nodes.cluster import Node
from tests.support import sse_events, user_body, wait_until, http

A2A_03 = "0.3.26"


@pytest.fixture
def pair(redis_server) -> Iterator[tuple[Node, Node]]:
    nodes = [Node(redis_server.url, app="tests/nodes/protocol_node.py") for _ in range(2)]
    yield nodes[0], nodes[1]
    for node in nodes:
        node.close()


#: the A2A task timeout of the nodes the A2A client tests run against
A2A_TIMEOUT = 4


@pytest.fixture
def a2a_pair(redis_server) -> Iterator[tuple[Node, Node]]:
    # AGENTPACK_DEBUG: a failed task's message carries the handler's exception text only with debug on
    env = {"AGENTPACK_TEST_A2A_TIMEOUT": str(A2A_TIMEOUT), "AGENTPACK_DEBUG": "1"}
    nodes = [Node(redis_server.url, app="tests/nodes/protocol_node.py", env=env) for _ in range(2)]
    yield nodes[0], nodes[1]
    for node in nodes:
        node.close()


class Reader(threading.Thread):
    """Reads one SSE response in a thread; ``seen`` is set once ``marker`` has been read."""

    def __init__(self, url: str, body: dict, marker: str, headers: dict | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.marker, self.headers = url, body, marker, headers or {}
        self.text = ""
        self.status = 0
        self.seen = threading.Event()

    def run(self) -> None:
        with http.stream("POST", self.url, json=self.body, headers=self.headers, timeout=60) as response:
            self.status = response.status_code
            for line in response.iter_lines():
                self.text += line + "\n"
                if self.marker in line:
                    self.seen.set()

    def begin(self) -> "Reader":
        self.start()
        assert self.seen.wait(30), f"never saw {self.marker!r}: {self.text[-2000:]}"
        return self

    def events(self) -> list[dict]:
        self.join(30)
        assert not self.is_alive(), "the stream did not end"
        return sse_events(self.text)


def rpc(url: str, method: str, params: dict, version: str = "1.0") -> dict:
    answer = http.post(f"{url}/a2a", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, headers={"A2A-Version": version}, timeout=30)
    return answer.json()


def a2a_message(text: str, context: str) -> dict:
    return {"message": {"messageId": f"m{time.monotonic_ns()}", "role": "ROLE_USER", "parts": [{"text": text}], "contextId": context}}


def test_a_session_held_on_one_instance_is_refused_on_the_other_in_every_protocol(pair, redis_server):
    a, b = pair
    holder = Reader(f"{a.url}/process", user_body("hang", session_id="会话-held"), '"delta":true').begin()
    try:
        assert http.post(f"{b.url}/process", json=user_body("hi", session_id="会话-held"), timeout=10).status_code == 409
        responses = http.post(f"{b.url}/compatible-mode/v1/responses", json={"input": "hi", "conversation": "会话-held"}, timeout=10)
        assert responses.status_code == 409 and responses.json()["error"]["code"] == "conversation_locked"
        agui = http.post(f"{b.url}/ag-ui", json={"threadId": "会话-held", "runId": "r", "messages": []}, timeout=10)
        assert agui.status_code == 409 and sse_events(agui.text)[0]["code"] == "SESSION_BUSY"
        task = rpc(b.url, "SendMessage", a2a_message("hi", "会话-held"))["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_REJECTED"
    finally:
        assert http.post(f"{b.url}/process/stop", json={"session_id": "会话-held"}, timeout=10).json()["stopped"] is True
    assert holder.events()[-1]["status"] == "canceled"


def test_runs_started_in_each_protocol_stop_from_process_stop_on_another_instance(pair, redis_server):
    a, b = pair
    redis = redis_server.client()
    responses = Reader(f"{a.url}/compatible-mode/v1/responses", {"input": "hang", "conversation": "r-stop", "stream": True}, "output_text.delta").begin()
    agui = Reader(f"{a.url}/ag-ui", {"threadId": "g-stop", "runId": "run", "messages": [{"id": "1", "role": "user", "content": "hang"}]}, "TEXT_MESSAGE_CONTENT").begin()
    for session in ("r-stop", "g-stop"):
        assert http.post(f"{b.url}/process/stop", json={"session_id": session}, timeout=10).json()["stopped"] is True
    assert responses.events()[-1]["type"] == "response.incomplete"
    finished = agui.events()[-1]
    assert finished["type"] == "RUN_FINISHED" and finished["outcome"] == {"type": "cancelled"}
    assert redis.get("ending:r-stop") == "cancelled" and redis.get("ending:g-stop") == "cancelled"


def test_an_a2a_task_is_read_and_canceled_from_the_instance_that_does_not_run_it(pair, redis_server):
    a, b = pair
    stream = Reader(f"{a.url}/a2a", {"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": a2a_message("hang", "a2a-ctx")}, '"artifactUpdate"', {"A2A-Version": "1.0"}).begin()
    task_id = json.loads(stream.text.split("data: ", 1)[1].splitlines()[0])["result"]["task"]["id"]

    def working_on_b() -> bool:
        return rpc(b.url, "GetTask", {"id": task_id})["result"]["status"]["state"] == "TASK_STATE_WORKING"

    wait_until(working_on_b, 10, "the other instance never saw the task working")
    canceled = rpc(b.url, "CancelTask", {"id": task_id})["result"]
    assert canceled["status"]["state"] == "TASK_STATE_CANCELED"
    assert [a["parts"][0]["text"] for a in canceled["artifacts"] if a["name"] == "answer"] == ["Hello"]
    last = stream.events()[-1]["result"]["statusUpdate"]["status"]["state"]
    assert last == "TASK_STATE_CANCELED"
    assert rpc(b.url, "CancelTask", {"id": task_id})["error"]["code"] == -32002
    assert redis_server.client().get("ending:a2a-ctx") == "cancelled"


def test_sigterm_ends_open_protocol_streams_with_their_own_last_word(redis_server):
    node = Node(redis_server.url, app="tests/nodes/protocol_node.py", grace=1)
    try:
        a2a = Reader(f"{node.url}/a2a", {"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": a2a_message("hang", "term-a2a")}, '"artifactUpdate"', {"A2A-Version": "1.0"}).begin()
        agui = Reader(f"{node.url}/ag-ui", {"threadId": "term-agui", "runId": "r", "messages": [{"id": "1", "role": "user", "content": "hang"}]}, "TEXT_MESSAGE_CONTENT").begin()
        responses = Reader(f"{node.url}/compatible-mode/v1/responses", {"input": "hang", "conversation": "term-r", "stream": True}, "output_text.delta").begin()
        node.terminate()
    finally:
        node.kill()
    status = a2a.events()[-1]["result"]["statusUpdate"]["status"]
    assert status["state"] == "TASK_STATE_CANCELED" and status["message"]["parts"][0]["text"] == "the server is shutting down"
    assert agui.events()[-1] == {"type": "RUN_FINISHED", "threadId": "term-agui", "runId": "r", "outcome": {"type": "cancelled"}, "result": {"reason": "the server is shutting down"}}
    assert responses.events()[-1]["type"] == "response.incomplete"
    assert redis_server.client().keys("agentpack:{*:lease") == []


def test_the_a2a_1_x_client_against_two_live_instances(a2a_pair):
    from a2a.client import ClientConfig, create_client
    from a2a.types import a2a_pb2 as pb

    a, b = a2a_pair

    def message(text: str, immediately: bool = False) -> "pb.SendMessageRequest":
        request = pb.SendMessageRequest(message=pb.Message(message_id=f"m{time.monotonic_ns()}", role=pb.ROLE_USER, parts=[pb.Part(text=text)]))
        request.configuration.return_immediately = immediately
        return request

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            on_a = await create_client(a.url, ClientConfig(streaming=True, httpx_client=http))
            on_b = await create_client(b.url, ClientConfig(streaming=True, httpx_client=http))
            blocking_a = await create_client(a.url, ClientConfig(streaming=False, httpx_client=http))
            arrivals, last = [], None
            async for event in on_a.send_message(message("slow")):
                last = event
                if event.WhichOneof("payload") == "artifact_update" and event.artifact_update.artifact.name == "answer" and event.artifact_update.artifact.parts[0].text:
                    arrivals.append(time.monotonic())
            assert len(arrivals) == 3 and all(b - a > 0.15 for a, b in zip(arrivals, arrivals[1:]))
            assert last.status_update.status.state == pb.TASK_STATE_COMPLETED
            done = await on_b.get_task(pb.GetTaskRequest(id=last.status_update.task_id))  # read on the other instance
            assert done.status.state == pb.TASK_STATE_COMPLETED and done.artifacts[-1].parts[0].text == "Hello there!"

            [submitted] = [e async for e in blocking_a.send_message(message("hang", immediately=True))]
            task_id = submitted.task.id
            deadline = time.monotonic() + 10
            while (await on_b.get_task(pb.GetTaskRequest(id=task_id))).status.state != pb.TASK_STATE_WORKING:
                assert time.monotonic() < deadline, "the other instance never saw the task working"
                await asyncio.sleep(0.05)
            canceled = await on_b.cancel_task(pb.CancelTaskRequest(id=task_id))  # canceled where it does not run
            assert canceled.status.state == pb.TASK_STATE_CANCELED
            assert (await on_a.get_task(pb.GetTaskRequest(id=task_id))).status.state == pb.TASK_STATE_CANCELED

            [failed] = [e async for e in blocking_a.send_message(message("fail"))]
            assert failed.task.status.state == pb.TASK_STATE_FAILED and "failed on purpose" in failed.task.status.message.parts[0].text
            started = time.monotonic()
            [late] = [e async for e in blocking_a.send_message(message("hang"))]
            assert late.task.status.state == pb.TASK_STATE_FAILED
            assert f"took longer than its {A2A_TIMEOUT}s limit" in late.task.status.message.parts[0].text
            assert A2A_TIMEOUT - 0.5 < time.monotonic() - started < A2A_TIMEOUT + 5

    asyncio.run(scenario())


# -- A2A 0.3 clients -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def a2a_03_python() -> Path:
    """A virtualenv with the a2a-sdk 0.3 line (its client), made once per machine and Python:
    kept in the user's cache (``~/.cache/agentpack-tests``), built under a lock so that parallel
    workers and runs make it once, and marked complete only once pip has installed it."""
    import fcntl
    import hashlib
    import os
    import shutil
    import sys

    key = hashlib.sha256(f"{sys.version}|{sys.base_prefix}|{A2A_03}".encode()).hexdigest()[:12]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agentpack-tests"
    root.mkdir(parents=True, exist_ok=True)
    home = root / f"a2a-sdk-{A2A_03}-{key}"
    python = home / "bin" / "python"
    with open(root / f"{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / ".complete").is_file():
            shutil.rmtree(home, ignore_errors=True)
            venv.EnvBuilder(with_pip=True).create(home)
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", f"a2a-sdk=={A2A_03}", "httpx"], capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stdout + done.stderr
            (home / ".complete").write_text(A2A_03)
    return python


CLIENT_03 = textwrap.dedent(
    """
    import asyncio, json, sys, time, uuid
    import httpx
    from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
    from a2a.types import Message, Part, Role, TextPart, TaskQueryParams, TaskIdParams, MessageSendConfiguration

    def msg(text, context=None):
        return Message(message_id=uuid.uuid4().hex, role=Role.user, parts=[Part(root=TextPart(text=text))], context_id=context)

    async def main(url, other):
        out = {}
        async with httpx.AsyncClient(timeout=30) as http:
            card = await A2ACardResolver(http, url).get_agent_card()
            out["card"] = {"url": card.url, "streaming": card.capabilities.streaming, "protocol": card.protocol_version}
            client = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(card)
            kinds, texts, arrivals = [], [], []
            async for event in client.send_message(msg("slow")):
                task, update = event if isinstance(event, tuple) else (event, None)
                kind = type(update).__name__ if update is not None else type(task).__name__
                kinds.append(kind)
                if update is not None and getattr(update, "kind", "") == "artifact-update" and update.artifact.name == "answer":
                    text = update.artifact.parts[0].root.text
                    if text:
                        texts.append(text); arrivals.append(time.monotonic())
                last_task = task
            out["stream"] = {"kinds": kinds, "texts": texts, "gaps": [b - a for a, b in zip(arrivals, arrivals[1:])],
                             "state": last_task.status.state.value, "id": last_task.id}
            on_other = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(await A2ACardResolver(http, other).get_agent_card())
            got = await on_other.get_task(TaskQueryParams(id=last_task.id))
            out["get"] = {"state": got.status.state.value, "answer": [a.parts[0].root.text for a in got.artifacts if a.name == "answer"]}
            blocking = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
            async for event in blocking.send_message(msg("hi")):
                task = event[0] if isinstance(event, tuple) else event
            out["send"] = {"state": task.status.state.value, "names": sorted(a.name for a in task.artifacts)}
            background = ClientFactory(ClientConfig(streaming=False, polling=True, httpx_client=http)).create(card)
            async for event in background.send_message(msg("hang", context="ctx-03-cancel")):
                task = event[0] if isinstance(event, tuple) else event
            for _ in range(200):
                if (await client.get_task(TaskQueryParams(id=task.id))).status.state.value == "working":
                    break
                await asyncio.sleep(0.05)
            canceled = await on_other.cancel_task(TaskIdParams(id=task.id))
            out["cancel"] = {"state": canceled.status.state.value}
            async for event in blocking.send_message(msg("fail")):
                task = event[0] if isinstance(event, tuple) else event
            out["fail"] = {"state": task.status.state.value, "reason": task.status.message.parts[0].root.text}
            started = time.monotonic()
            async for event in blocking.send_message(msg("hang")):
                task = event[0] if isinstance(event, tuple) else event
            out["timeout"] = {"state": task.status.state.value, "reason": task.status.message.parts[0].root.text, "took": time.monotonic() - started}
        print(json.dumps(out))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.network
def test_the_a2a_0_3_client_against_two_live_instances(a2a_pair, a2a_03_python, tmp_path):
    a, b = a2a_pair
    url = a.url
    script = tmp_path / "client_03.py"
    script.write_text(CLIENT_03)
    done = subprocess.run([str(a2a_03_python), str(script), a.url, b.url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["card"] == {"url": f"{url}/a2a", "streaming": True, "protocol": "0.3.0"}
    stream = seen["stream"]
    assert stream["texts"] == ["Hello", " there", "!"] and all(gap > 0.15 for gap in stream["gaps"]), stream
    assert stream["state"] == "completed" and stream["kinds"][0] == "Task"
    assert seen["get"] == {"state": "completed", "answer": ["Hello there!"]}
    assert seen["send"]["state"] == "completed" and "answer" in seen["send"]["names"]
    assert seen["cancel"] == {"state": "canceled"}  # canceled through the instance that does not run it
    assert seen["fail"]["state"] == "failed" and "failed on purpose" in seen["fail"]["reason"]
    assert seen["timeout"]["state"] == "failed" and f"took longer than its {A2A_TIMEOUT}s limit" in seen["timeout"]["reason"]
